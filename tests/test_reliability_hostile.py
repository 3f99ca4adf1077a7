"""What a hostile user found on the command line (issue 15 follow-up): a configuration too large for the
machine, SIGTERM in the middle of an experiment, the permissions of atomically written files, Dask's log
lines on stderr, options ignored silently, damaged ensemble files read silently. Each test failed before
its fix."""

import json
import os
import re
import signal
import stat
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from fpkit.cli import main
from fpkit.io import atomic_h5, write_bytes_atomic


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _fpkit(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "fpkit.cli", *args], capture_output=True, text=True,
                          env=env, cwd=cwd)  # fmt: skip


# ------------------------------------------------------------------------ a size too large: one line, exit 2
def test_a_size_too_large_for_memory_is_one_line_and_exit_2(tmp_path, capsys):
    # 10^11 grid cells: numpy refuses the 745 GiB cell-centre array (MemoryError, was a traceback and exit 1)
    cfg = tmp_path / "huge.toml"
    cfg.write_text('[grid]\nlo = -1.0\nhi = 1.0\nn = 100000000000\n[problem]\ndrift = "-x"\ndiffusion = 0.5\n'
                   "[solve]\nt_eval = [0.1]\n")  # fmt: skip
    assert main(["solve", str(cfg), "-o", str(tmp_path / "x.h5")]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("fpkit solve: error: out of memory") and "GiB" in line, line
    assert not (tmp_path / "x.h5").exists()


# ------------------------------------------------------------------- SIGTERM mid-run: nothing half-written
SELF_TERMINATING = textwrap.dedent('''
    import os, signal
    from dataclasses import dataclass
    import numpy as np
    from fpkit.config import Schema
    from fpkit.experiments import Claim, Experiment, Verdict

    class Config(Schema):
        seed: int = 0

    @dataclass
    class Result:
        x: np.ndarray

    class Term(Experiment):
        name = "term"
        title = "SIGTERM while results.h5 is being written"
        Config = Config

        def run(self, cfg, ctx):
            return Result(np.arange(1000.0))

        def verdict(self, cfg, res):
            return Verdict([Claim("x", True, 0.0, "none", "nothing")])

        def save(self, group, cfg, res):
            group.create_dataset("x", data=res.x)
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler ending the job would, mid-write

    EXPERIMENT = Term
''')


def test_sigterm_while_writing_leaves_no_file_and_says_so_in_one_line(tmp_path):
    plugin = tmp_path / "term.py"
    plugin.write_text(SELF_TERMINATING)
    out = tmp_path / "out"
    p = _fpkit("experiment", "run", str(plugin), "--out", str(out))
    # was: killed by the signal (returncode -15), no message, the temporary .results.h5.*.tmp.h5 left behind
    assert p.returncode == 130, (p.returncode, p.stderr)
    assert _one_line(p.stderr) == "fpkit experiment: interrupted"
    assert sorted(x.name for x in out.iterdir()) == []


def test_sigterm_handler_is_put_back_after_the_command(tmp_path, capsys):
    before = signal.getsignal(signal.SIGTERM)
    assert main(["config", "list"]) == 0
    assert signal.getsignal(signal.SIGTERM) is before


# ------------------------------------------------------------------------ permissions of written files
@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_atomic_files_get_the_mode_of_a_plainly_created_file(tmp_path, mask):
    old = os.umask(mask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_bytes(b"x")  # open(2): 0666 & ~umask, the reference
        write_bytes_atomic(tmp_path / "a.md", b"report")
        with atomic_h5(tmp_path / "a.h5") as f:
            f["x"] = [1.0]
    finally:
        os.umask(old)
    want = stat.S_IMODE(plain.stat().st_mode)
    assert want == 0o666 & ~mask
    # was 0600 for every file written through atomic_path (mkstemp's mode)
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == want
    assert stat.S_IMODE((tmp_path / "a.h5").stat().st_mode) == want


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_rewriting_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "r.md"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)
    write_bytes_atomic(path, b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o640


# ------------------------------------------------------------------------------- Dask quiet without -v
DASK_LEVEL = textwrap.dedent('''
    import logging
    from dataclasses import dataclass
    from fpkit.config import Schema
    from fpkit.experiments import Claim, Experiment, Verdict

    class Config(Schema):
        seed: int = 0

    @dataclass
    class Result:
        info: bool

    class Level(Experiment):
        name = "level"
        title = "Does Dask log INFO lines?"
        Config = Config

        def run(self, cfg, ctx):
            import distributed  # configures its loggers from DASK_LOGGING__* at import, as a worker does

            return Result(logging.getLogger("distributed.scheduler").isEnabledFor(logging.INFO))

        def verdict(self, cfg, res):
            return Verdict([Claim("info", True, res.info, "none", "recorded")])

    EXPERIMENT = Level
''')


@pytest.mark.parametrize("verbose", [False, True])
def test_dask_logs_info_lines_only_with_verbose(tmp_path, verbose):
    pytest.importorskip("distributed")
    plugin = tmp_path / "level.py"
    plugin.write_text(DASK_LEVEL)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DASK_LOGGING")}
    args = (["-v"] if verbose else []) + ["experiment", "run", str(plugin), "--out", str(tmp_path / "o")]
    p = _fpkit(*args, env=env)
    assert p.returncode == 0, p.stderr
    with h5py.File(tmp_path / "o" / "results.h5", "r") as f:
        # was True without -v: `fpkit train --workers 2` printed ~48 INFO lines of the scheduler and workers
        assert json.loads(f.attrs["info"]) is verbose


# ---------------------------------------------------------------------- options that would be ignored
def test_virtual_without_a_cluster_is_refused_before_any_work(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[train]\nmembers = 4\nsteps = 3\nsnapshots = 2\n")
    # was: trained in one process and wrote a plain file, --virtual silently ignored
    assert main(["train", str(cfg), "-o", str(tmp_path / "e.h5"), "--virtual"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("fpkit train: error: `--virtual`") and "--workers N or --scheduler" in line, line
    assert not (tmp_path / "e.h5").exists()


# ------------------------------------------------------------------- a damaged ensemble file is refused
def _edit_nan_weight(f):
    w = f["weights/W1"]
    a = w[()]
    a[1, 2, 0, 0] = np.nan  # as HDF5's NaN fill reads where a snapshot was lost
    w[...] = a


def _edit_short_t(f):
    del f["t"]
    f["t"] = np.arange(2.0)


def _edit_wrong_shape(f):
    shape = f["weights/W2"].shape
    del f["weights/W2"]
    f["weights/W2"] = np.zeros(shape[:2] + (shape[2] + 1, shape[3] + 1))


def _edit_inf_loss(f):
    f["loss"][...] = np.full(f["loss"].shape, np.inf)


@pytest.mark.parametrize("edit, match", [
    (_edit_nan_weight, "`weights/W1` holds 1 non-finite"),
    (_edit_short_t, "`t`/`step` hold 2/"),
    (_edit_wrong_shape, "`weights/W2` has shape"),
    (_edit_inf_loss, "`loss` is not a finite"),
])  # fmt: skip
def test_a_damaged_ensemble_file_is_a_file_format_error_and_plot_says_so(tmp_path, capsys, edit, match):
    from fpkit.ensemble import Ensemble, EnsembleRun
    from fpkit.errors import FileFormatError

    path = tmp_path / "e.h5"
    run = Ensemble(data={"kind": "gaussian", "d": 4, "n": 32}, k=2, members=6, steps=8, snapshots=3,
                   batch_size=4, seed=1, kernels="generic").train(path)  # fmt: skip
    assert EnsembleRun.load(path).weights["W1"].shape == run.weights["W1"].shape  # intact: loads
    with h5py.File(path, "r+") as f:
        edit(f)
    # was: loaded silently (NaN in every statistic, a wrong shape passed on) and `fpkit plot` wrote a figure or
    # died in matplotlib with a traceback (exit 1)
    with pytest.raises(FileFormatError, match=re.escape(match)):
        EnsembleRun.load(path)
    assert main(["plot", str(path), "-o", str(tmp_path / "e.png")]) == 2
    assert match in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "e.png").exists()


# ------------------------------------------------------------------------- a bug: one line, status 1
BUGGY = textwrap.dedent('''
    from dataclasses import dataclass
    from fpkit.config import Schema
    from fpkit.experiments import Claim, Experiment, Verdict

    class Config(Schema):
        seed: int = 0

    class Buggy(Experiment):
        name = "buggy"
        title = "A plug-in whose figure code fails"
        Config = Config

        def run(self, cfg, ctx):
            return {"x": 1.0}

        def verdict(self, cfg, res):
            return Verdict([Claim("x", True, 1.0, "none", "nothing")])

        def figures(self, cfg, res, out):
            raise ValueError("Number of columns must be a positive integer, not 0")

    EXPERIMENT = Buggy
''')


@pytest.mark.parametrize("debug", [False, True])
def test_an_unexpected_error_is_one_line_status_1_traceback_only_with_debug(tmp_path, debug):
    plugin = tmp_path / "buggy.py"
    plugin.write_text(BUGGY)
    out = tmp_path / "o"
    p = _fpkit(*(["--debug"] if debug else []), "experiment", "run", str(plugin), "--out", str(out))
    assert p.returncode == 1, p.stderr
    if debug:
        assert "Traceback" in p.stderr and p.stderr.strip().endswith("not 0")
    else:  # was a 20-line matplotlib traceback (training-response with model.activations = [])
        line = _one_line(p.stderr)
        assert line.startswith("fpkit experiment: internal error: ValueError: Number of columns") and "--debug" in line
    with h5py.File(out / "results.h5", "r") as f:  # written before the figures: the numbers are kept
        assert json.loads(f.attrs["x"]) == 1.0
