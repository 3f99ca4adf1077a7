"""Nothing lost, nothing silent (issue 15): atomic writes under injected failures, incomplete runs beside
complete files, divergence per member, loaders, output paths checked before any work, bad input.

Every test here failed before its fix (checked by reverting the fix locally)."""

import errno
import os
import re
import sys
from pathlib import Path
from unittest import mock

import h5py
import numpy as np
import pytest

import fpkit
from fpkit.cli import main
from fpkit.ensemble import Ensemble, EnsembleRun
from fpkit.errors import ConfigError, FileFormatError, LandauPoleError, OutputError, StabilityError

NO_SPACE = OSError(errno.ENOSPC, "No space left on device")


def _raise_no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _solution(n=40):
    g = fpkit.Grid.uniform(-3.0, 3.0, n)
    return fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5).solve(
        fpkit.gaussian(g, mean=0.5, std=0.4), [0.1, 0.2]
    )


def _small(**kw):
    args = {"data": {"kind": "gaussian", "d": 5, "n": 64}, "k": 2, "members": 12, "steps": 30, "snapshots": 5,
            "batch_size": 4, "seed": 1, "kernels": "generic"}  # fmt: skip
    args.update(kw)
    return Ensemble(**args)


def _one_line(err: str):
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ------------------------------------------------------------------------ one atomic-write path, ENOSPC
def _writers(tmp_path):
    """(name, path, write) for every kind of file fpkit writes; ``write`` writes a new version of it."""
    from fpkit.experiments import write_text_atomic
    from fpkit.plotting import plot_solution

    sol = _solution()
    run = _small(members=4, steps=4, snapshots=2).train()
    return [
        ("solution .h5", tmp_path / "s.h5", lambda p: sol.save(p)),
        ("ensemble .h5 (save)", tmp_path / "e.h5", lambda p: run.save(p)),
        ("figure .png", tmp_path / "f.png", lambda p: plot_solution(sol, p)),
        ("report .md", tmp_path / "r.md", lambda p: write_text_atomic(p, "# report\n" * 50)),
        ("ensemble .h5 (training)", tmp_path / "t.h5", lambda p: _small(members=4, steps=4, snapshots=2).train(p)),
    ]


@pytest.mark.parametrize("where", ["fsync", "content"])
def test_no_space_in_every_writer_keeps_the_previous_file(tmp_path, where):
    """ENOSPC injected into every writer, at the flush to disk (os.fsync) and while the content is written
    (h5py datasets, matplotlib's savefig, the text file's write): the previous file is byte-identical, the
    error is one OutputError saying so, and no temporary or .partial file is left behind."""
    import matplotlib.figure

    for name, path, write in _writers(tmp_path):
        write(path)  # the good previous version
        before = path.read_bytes()
        listing = sorted(os.listdir(tmp_path))
        if where == "fsync":
            patches = [mock.patch("os.fsync", _raise_no_space)]
        else:
            patches = [mock.patch.object(h5py.Group, "create_dataset", _raise_no_space),
                       mock.patch.object(h5py.File, "flush", _raise_no_space),
                       mock.patch.object(matplotlib.figure.Figure, "savefig", _raise_no_space),
                       mock.patch("fpkit.io.open", create=True, side_effect=_raise_no_space)]  # fmt: skip
        with pytest.raises(OutputError) as info:
            for p in patches:
                p.start()
            try:
                write(path)
            finally:
                for p in patches:
                    p.stop()
        msg = str(info.value)
        assert msg.startswith("no space left on device while writing"), (name, msg)
        assert "unchanged" in msg or "as it was" in msg, (name, msg)
        assert path.read_bytes() == before, name
        assert sorted(os.listdir(tmp_path)) == listing, (name, sorted(os.listdir(tmp_path)), listing)


def test_atomic_h5_verifies_by_reopening(tmp_path):
    """A file that does not re-open as HDF5 after writing is not renamed over the previous one."""
    from fpkit.io import atomic_h5

    path = tmp_path / "x.h5"
    _solution().save(path)
    before = path.read_bytes()
    with mock.patch("fpkit.io._verify_h5", side_effect=OSError(errno.EIO, "re-reading failed")):
        with pytest.raises(OutputError, match="could not write .*the previous x.h5 is unchanged"):
            with atomic_h5(path) as f:
                f.attrs["kind"] = "x"
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["x.h5"]


def tiny_experiment(figures):
    """An experiment whose run gives {"x": [0, 1, 2]} and whose figures step is ``figures(out)``."""
    from fpkit import experiments as ex

    class Tiny(ex.Experiment):
        name, title = "tiny", "tiny"

        class Config(fpkit.config.Schema):
            seed: int = 0

        def run(self, cfg, ctx):
            return {"x": np.arange(3.0)}

        def verdict(self, cfg, res):
            return ex.Verdict([])

        def figures(self, cfg, res, out):
            return figures(out)

    return Tiny()


def test_reproduce_writes_results_first(tmp_path):
    """A failure while writing figures leaves results.h5 written (it used to be written after them)."""
    from fpkit import experiments as ex

    def figures(out):
        raise OutputError("no space left on device while writing fig.png; the previous fig.png is unchanged")

    with pytest.raises(OutputError):
        ex.run(tiny_experiment(figures), out=tmp_path / "o")
    with h5py.File(tmp_path / "o" / "results.h5") as f:
        assert np.array_equal(f["x"][()], np.arange(3.0))


def test_ctrl_c_while_drawing_figures_keeps_results_and_report(tmp_path):
    """Ctrl-C (or SIGTERM, which the CLI turns into it) during the figures: results.h5 and report.md are
    written, the report says the figures were interrupted, no temporary file is left, and the interrupt goes on."""
    from fpkit import experiments as ex

    def figures(out):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ex.run(tiny_experiment(figures), out=tmp_path / "o")
    with h5py.File(tmp_path / "o" / "results.h5") as f:
        assert np.array_equal(f["x"][()], np.arange(3.0))
    report = (tmp_path / "o" / "report.md").read_text()
    assert report.startswith("# tiny\n") and "Not finished (interrupted); results.h5 is complete." in report
    assert sorted(os.listdir(tmp_path / "o")) == ["report.md", "results.h5"]


@pytest.mark.skipif(os.name != "posix", reason="liveness of a PID is tested with os.kill(pid, 0)")
def test_the_next_write_removes_what_a_killed_writer_left(tmp_path):
    """SIGKILL in the middle of an atomic write leaves its temporary file (no clean-up runs); the next write of
    the same file removes it, but not a live writer's, another host's or another file's."""
    import signal
    import subprocess

    from fpkit.io import _HOST, write_bytes_atomic

    target = tmp_path / "fig.png"
    code = (f"import os, signal\nfrom fpkit.io import atomic_path\nwith atomic_path({str(target)!r}) as tmp:\n"
            "    tmp.write_bytes(b'half')\n    os.kill(os.getpid(), signal.SIGKILL)\n")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code]).returncode == -signal.SIGKILL
    (orphan,) = os.listdir(tmp_path)
    assert orphan.startswith(f".fig.png.{_HOST}-") and orphan.endswith(".tmp.png")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        keep = [f".fig.png.{_HOST}-{live.pid}.abc.tmp.png", ".fig.png.otherhost-1.abc.tmp.png",
                f".other.png.{_HOST}-{orphan.split('-')[-1].split('.')[0]}.abc.tmp.png", "notes.txt"]  # fmt: skip
        for name in keep:
            (tmp_path / name).write_bytes(b"")
        write_bytes_atomic(target, b"whole")
        assert target.read_bytes() == b"whole"
        assert sorted(os.listdir(tmp_path)) == sorted(keep + ["fig.png"])
    finally:
        live.kill()
        live.wait()


# -------------------------------------------------------------- ensemble files: nothing complete replaced
def test_incomplete_runs_never_replace_a_complete_file(tmp_path, capsys):
    out = tmp_path / "e.h5"
    good = _small().train(out)
    before = out.read_bytes()

    # a diverging run (lr = 5) over the complete file: stopped cleanly, the file is untouched
    with pytest.raises(StabilityError, match=r"members diverged .* members \[.*\].*left unchanged.*\.partial"):
        _small(lr=5.0).train(out)
    assert out.read_bytes() == before
    assert (tmp_path / "e.h5.partial").exists()
    os.unlink(tmp_path / "e.h5.partial")

    # a failed --resume with a changed configuration: nothing changes, no copy left behind
    with pytest.raises(ConfigError, match="configuration differs"):
        _small(lr=0.04).train(out, resume=True)
    assert out.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["e.h5"]

    # Ctrl-C of a fresh run over the complete file: the .partial stays beside it, named in the message
    def stop(j, step):
        if j == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        _small().train(out, callback=stop)
    assert out.read_bytes() == before
    assert "e.h5.partial" in info.value.fpkit_note and "--resume" in info.value.fpkit_note
    resumed = _small().train(out, resume=True)  # continues the .partial, bit-identical to the good run
    for name in good.names:
        assert np.array_equal(resumed.weights[name], good.weights[name])
    assert not (tmp_path / "e.h5.partial").exists()


def test_failed_resume_of_a_partial_keeps_it(tmp_path):
    out = tmp_path / "e.h5"
    _small().train(out, stop_after=2)
    os.replace(out, tmp_path / "e.h5.partial")
    before = (tmp_path / "e.h5.partial").read_bytes()
    with pytest.raises(ConfigError, match="configuration differs"):
        _small(lr=0.04).train(out, resume=True)
    assert (tmp_path / "e.h5.partial").read_bytes() == before and not out.exists()


# ----------------------------------------------------------------------------------- divergence per member
def test_divergence_stop_names_members_and_keeps_the_snapshots_so_far(tmp_path):
    with pytest.raises(StabilityError, match=r"^\d+ of 60 members diverged .* members \[\d+") as info:
        _small(members=60, lr=1.3, steps=200, snapshots=8).train(tmp_path / "d.h5")
    assert info.value.time > 0
    run = EnsembleRun.load(tmp_path / "d.h5")  # the snapshots before the divergence, all finite
    assert all(np.all(np.isfinite(w)) for w in run.weights.values())


def test_divergence_names_each_members_exact_first_step():
    """Full-batch GD on 1-D least squares with lr·a > 2: e_t = (1 - lr a)^t e_0 grows geometrically, so
    the first step at which |w_t| exceeds the bound is known in closed form for every member. The report
    names that step (not the end of the ≤ 256-step chunk the check runs on) for each member."""
    lr, bound = 2.5, 1e6
    ens = Ensemble(model="regression", lr=lr, sampling="full", batch_size=32, members=16, seed=3,
                   data={"kind": "regression", "d": 1, "n": 32, "x_std": 1.0, "noise": 0.3, "w_star": [0.5]},
                   snapshot_steps=[0, 300], statistics=False, divergence_bound=bound)  # fmt: skip
    x, y = ens.dataset.x[:, 0], np.asarray(ens.dataset.y).ravel()
    a, w_star = np.mean(x * x), np.mean(x * y) / np.mean(x * x)
    e0 = ens.initial_state()["theta"][0] - w_star
    w = w_star + (1 - lr * a) ** np.arange(300)[:, None] * e0
    first = np.argmax(np.abs(w) > bound, axis=0)
    members = np.arange(16)
    # no member sits within round-off of the bound, so the closed form decides every step
    assert np.all(np.abs(w[first, members]) > bound * (1 + 1e-6))
    assert np.all(np.abs(w[first - 1, members]) < bound * (1 - 1e-6))
    assert np.unique(first).size > 3  # members diverge at different steps
    with pytest.raises(StabilityError) as info:
        ens.train()
    reported = {int(m): int(s) for m, s in re.findall(r"(\d+) \(step (\d+)\)", str(info.value))}
    assert len(reported) == 12  # the first twelve named, earliest first
    assert reported == {m: int(first[m]) for m in reported}
    assert f"the first at step {first.min()} " in str(info.value)
    assert info.value.time == pytest.approx(lr * first.min())


def _all_finite_datasets(path):
    bad = []
    with h5py.File(path) as f:
        f.visititems(lambda n, d: bad.append(n) if isinstance(d, h5py.Dataset) and d.dtype.kind == "f"
                     and not np.all(np.isfinite(d[()])) else None)  # fmt: skip
    return bad


def test_divergence_drop_masks_members_everywhere(tmp_path, caplog):
    """lr = 1.3: some members blow up. With on_divergence = "drop" they are named, stored as a boolean mask
    (no NaN/inf anywhere in the file), left out of the loaded run, and the run plots."""
    path = tmp_path / "d.h5"
    kw = {"members": 60, "lr": 1.3, "steps": 200, "snapshots": 8, "on_divergence": "drop"}
    with caplog.at_level("WARNING"):
        run = _small(**kw).train(path)
    assert "members diverged" in caplog.text and "dropped" in caplog.text
    assert _all_finite_datasets(path) == []
    raw = EnsembleRun.load(path, drop_diverged=False)
    assert raw.alive.shape == (8, 60) and raw.alive[0].all() and not raw.alive[-1].all()
    dead = ~raw.alive[-1]
    assert np.array_equal(run.dropped, np.nonzero(dead)[0]) and run.members == 60 - dead.sum()
    assert np.array_equal(run.member_ids, np.nonzero(~dead)[0])
    assert np.array_equal(run.weights["W2"], raw.weights["W2"][:, ~dead])
    assert all(np.isfinite(v).all() for v in (run.loss, run.lam_max))
    # the surviving members are exactly those of the same run where nothing is dropped... up to the first
    # divergence: members are independent, so a healthy member's path does not depend on the others
    from fpkit.plotting import plot_ensemble

    plot_ensemble(run, tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["plot", str(path), "-o", str(tmp_path / "d2.png")]) == 0
    # in memory the same
    mem = _small(**kw).train()
    assert np.array_equal(mem.dropped, run.dropped)
    assert np.array_equal(mem.weights["W1"], run.weights["W1"])


def test_dropping_does_not_change_healthy_members():
    """Members are independent: the members that survive a run with dropped members have bit-identical
    snapshots whether the diverged ones were caught early (bound 1e6: set to zero from then on) or late
    (bound 1e300: only once non-finite)."""
    kw = {"members": 40, "lr": 1.3, "steps": 120, "snapshots": 6, "on_divergence": "drop"}
    early = _small(**kw).train()
    late = _small(divergence_bound=1e300, **kw).train()
    assert early.dropped.size > 0
    both = np.intersect1d(early.member_ids, late.member_ids)
    ie, il = np.searchsorted(early.member_ids, both), np.searchsorted(late.member_ids, both)
    for name in early.names:
        assert np.array_equal(early.weights[name][:, ie], late.weights[name][:, il])
        assert np.array_equal(early.grad_var[name][:, ie], late.grad_var[name][:, il])


def test_huge_learning_rate_is_a_clear_error_not_linalg():
    """lr = 50 raised numpy.linalg.LinAlgError ("Eigenvalues did not converge") from the Lanczos λmax."""
    with pytest.raises(StabilityError, match="members diverged"):
        _small(lr=50.0).train()
    with pytest.raises(StabilityError, match="every member has diverged"):
        _small(lr=50.0, on_divergence="drop").train()


def test_lanczos_guard_on_non_finite_parameters():
    ens = _small(members=4)
    theta = ens.initial_state()["theta"][:, :2].copy()
    theta[0, 1] = np.nan  # eigvalsh raised LinAlgError on the NaN tridiagonal matrix
    with np.errstate(all="ignore"):
        lam = ens.lam_max(theta)
    assert np.isfinite(lam[0]) and np.isnan(lam[1])


# ------------------------------------------------------------------------------------------- loaders
def _bad_files(tmp_path):
    good = tmp_path / "good.h5"
    _solution().save(good)
    data = good.read_bytes()
    files = {
        "empty": b"",
        "truncated": data[: len(data) // 2],
        "text": b"[grid]\nlo = 0\n",
        "zeros": bytes(4096),
    }
    paths = {}
    for k, v in files.items():
        paths[k] = tmp_path / f"{k}.h5"
        paths[k].write_bytes(v)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    paths["foreign"] = foreign
    paths["folder"] = tmp_path
    paths["missing"] = tmp_path / "missing.h5"
    return paths


@pytest.mark.parametrize("loader", ["solution", "ensemble", "prediction", "plot"])
def test_every_loader_names_unreadable_files(tmp_path, loader, capsys):
    from fpkit.prediction import Prediction

    for kind, path in _bad_files(tmp_path).items():
        if loader == "plot":
            assert main(["plot", str(path), "-o", str(tmp_path / "p.png")]) == 2, kind
            line = _one_line(capsys.readouterr().err)
            assert str(path) in line, (kind, line)
            continue
        load = {"solution": fpkit.Solution.load, "ensemble": EnsembleRun.load, "prediction": Prediction.load}[loader]
        with pytest.raises(FileFormatError) as info:
            load(path)
        assert str(path) in str(info.value) and info.value.path == str(path), (kind, str(info.value))


def test_a_solution_file_missing_a_dataset_is_a_file_format_error(tmp_path):
    path = tmp_path / "s.h5"
    _solution().save(path)
    with h5py.File(path, "a") as f:
        f.attrs["meta"] = "{not json"
    with pytest.raises(FileFormatError, match="s.h5"):
        fpkit.Solution.load(path)


# ------------------------------------------------------------------- output paths, before any work
PROBLEM = ('[grid]\nlo = -3.0\nhi = 3.0\nn = 40\n[problem]\ndrift = "-x"\ndiffusion = 0.5\n'
           "[solve]\nt_eval = [0.1]\n")  # fmt: skip


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the output path was checked")


@pytest.mark.parametrize("case", ["solve-folder", "solve-input", "train-folder", "train-input",
                                  "plot-input", "reproduce-file", "experiment-file", "solve-under-a-file",
                                  "reproduce-proc", "reproduce-dangling-link", "solve-through-a-dangling-link",
                                  "reproduce-link-loop"])  # fmt: skip
def test_output_paths_are_checked_before_any_work(tmp_path, case, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text(PROBLEM if case.startswith("solve") else "[train]\nmembers = 4\nsteps = 3\nsnapshots = 2\n")
    cfg_before = cfg.read_bytes()
    (tmp_path / "d").mkdir()
    (tmp_path / "file").write_text("x")
    res = tmp_path / "r.h5"
    _solution().save(res)
    # links to nothing: Path.exists() is False for them, so the folder check looked past them to tmp_path
    # (a file written over such a link is fine: the writers' rename replaces the link)
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere" / "out")
    (tmp_path / "loop-a").symlink_to(tmp_path / "loop-b")
    (tmp_path / "loop-b").symlink_to(tmp_path / "loop-a")
    argv = {
        "solve-folder": ["solve", str(cfg), "-o", str(tmp_path / "d")],
        "solve-input": ["solve", str(cfg), "-o", str(cfg)],
        "solve-under-a-file": ["solve", str(cfg), "-o", str(tmp_path / "file" / "x.h5")],
        "train-folder": ["train", str(cfg), "-o", str(tmp_path / "d")],
        "train-input": ["train", str(cfg), "-o", str(cfg)],
        "plot-input": ["plot", str(res), "-o", str(res)],
        "reproduce-file": ["reproduce", "--quick", "--out", str(tmp_path / "file")],
        "experiment-file": ["experiment", "run", "fp-histograms", "--quick", "--out", str(tmp_path / "file")],
        # /proc refuses new entries even to root, for whom os.access says every folder is writable
        "reproduce-proc": ["reproduce", "--quick", "--out", "/proc/fpkit-out"],
        "reproduce-dangling-link": ["reproduce", "--quick", "--out", str(tmp_path / "gone")],
        "solve-through-a-dangling-link": ["solve", str(cfg), "-o", str(tmp_path / "gone" / "x.h5")],
        "reproduce-link-loop": ["reproduce", "--quick", "--out", str(tmp_path / "loop-a")],
    }[case]
    if case == "reproduce-proc" and not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    with mock.patch("fpkit.FokkerPlanck.solve", _no_work), mock.patch("fpkit.ensemble.Ensemble.train", _no_work), \
            mock.patch("fpkit.experiments.resolve_config", _no_work), \
            mock.patch("fpkit.plotting.PLOTTERS", {}):  # fmt: skip
        assert main(argv) == 2
    line = _one_line(capsys.readouterr().err)
    assert "folder" in line or "input" in line or "file" in line, line
    assert cfg.read_bytes() == cfg_before and (tmp_path / "file").read_text() == "x"


def test_api_output_path_of_training_is_checked_first(tmp_path):
    with mock.patch("fpkit.ensemble.Ensemble.advance", _no_work):
        with pytest.raises(OutputError, match="is a folder"):
            _small().train(tmp_path)


# ----------------------------------------------------------------------------- CLI: one line, exit 2
def test_numerical_failures_exit_2_on_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[data]\nkind = \"gaussian\"\nd = 5\nn = 64\n[model]\nhidden = [2, 2]\n"
                   "[train]\nmembers = 12\nsteps = 30\nsnapshots = 4\nlr = 5.0\nkernels = \"generic\"\n")  # fmt: skip
    assert main(["train", str(cfg), "-o", str(tmp_path / "e.h5")]) == 2
    assert "members diverged" in _one_line(capsys.readouterr().err)


# -------------------------------------------------------------------------------------- bad input
def test_t0_nan_is_refused():
    g = fpkit.Grid.uniform(-3.0, 3.0, 40)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
    p0 = fpkit.gaussian(g, mean=0.5, std=0.4)
    for t0 in (np.nan, np.inf, "abc"):
        with pytest.raises(ConfigError, match="t0"):
            fp.solve(p0, [1.0], t0=t0)
    with pytest.raises(ConfigError, match="t_eval"):
        fp.solve(p0, "abc")
    with pytest.raises(ConfigError, match="t0"):
        fpkit.SDE(drift=-1.0, diffusion=0.5).sample(0.0, [1.0], n_paths=4, t0=np.nan)


@pytest.mark.parametrize("seed", [1.5, -1, "abc", True, None])
def test_sde_seed_must_be_a_non_negative_integer(seed):
    with pytest.raises(ConfigError, match="seed"):
        fpkit.SDE(drift=-1.0, diffusion=0.5).sample(0.0, [0.1], n_paths=4, seed=seed)


def test_vector_callables_must_return_every_component():
    """A 2-D drift returning one component was taken as a constant (its first row); now refused, in 2-D and
    3-D, for FokkerPlanck, SDE and CallanSymanzik."""
    g2 = fpkit.Grid.uniform((-2, -2), (2, 2), (12, 12))
    g3 = fpkit.Grid.uniform((-2, -2, -2), (2, 2, 2), (6, 6, 6))
    with pytest.raises(ConfigError, match=r"`drift` callable on a 2-D problem returned shape \(12, 12\)"):
        fpkit.FokkerPlanck(g2, drift=lambda x, y, t: -x, diffusion=0.5)
    with pytest.raises(ConfigError, match="returned 2 components"):
        fpkit.FokkerPlanck(g3, drift=lambda x, y, z, t: (-x, -y), diffusion=0.5)
    with pytest.raises(ConfigError, match=r"`diffusion\[1\]` callable returned shape"):
        fpkit.FokkerPlanck(g2, drift=0.0, diffusion=lambda x, y, t: (0.5 + 0 * x, np.ones(3)))
    ok = fpkit.FokkerPlanck(g2, drift=lambda x, y, t: (-x, -y), diffusion=0.5)  # a sequence of components
    assert ok.operator().shape == (144, 144)
    sde = fpkit.SDE(drift=lambda x, y, t: -x, diffusion=0.5, ndim=2)
    with pytest.raises(ConfigError, match="2-D problem returned"):
        sde.sample(np.zeros(2), [0.1], n_paths=8)
    with pytest.raises(ConfigError, match="shape"):
        fpkit.SDE(drift=lambda x, t: np.ones(3), diffusion=0.5).sample(0.0, [0.1], n_paths=8, engine="numpy")
    with pytest.raises(ConfigError, match="must return numbers"):
        fpkit.FokkerPlanck(fpkit.Grid.uniform(-1, 1, 10), drift=lambda x, t: "x", diffusion=0.5)
    with pytest.raises(ConfigError, match="`beta` callable on a 2-D problem returned"):
        fpkit.CallanSymanzik(g2, beta=lambda g, h: -g, gamma=0.0)
    with pytest.raises(ConfigError, match="`gamma` callable returned shape"):
        fpkit.CallanSymanzik(g2, beta=lambda g, h: (-g, -h), gamma=lambda g, h: np.ones(5))


# ------------------------------------------------------------------------- Landau pole, degenerate D
@pytest.mark.parametrize("beta, g0, s_pole", [
    (lambda y, s: y**3, 1.0, 0.5),          # g = g0/√(1 − 2 g0² s)
    (lambda y, s: y**2, 2.0, 0.5),          # g = g0/(1 − g0 s)
    (lambda y, s: np.exp(y), 1.0, np.exp(-1.0)),  # g = −ln(e^{−g0} − s)
])  # fmt: skip
def test_landau_pole_after_a_failed_integration(beta, g0, s_pole):
    """The failed-integration branch raised AttributeError: 'list' object has no attribute 'size'."""
    from fpkit.solvers.characteristics import integrate_characteristics

    with pytest.raises(LandauPoleError) as info:
        integrate_characteristics(beta, None, np.array([[g0, 0.1]]), 0.0, np.array([1.0, 5.0]))
    assert info.value.s_pole == pytest.approx(s_pole, rel=1e-9)
    assert info.value.g_start[0] == g0


def test_landau_pole_from_callan_symanzik_solve():
    """CS characteristics run backwards from s to 0: β = −g³ blows up backwards at s = 1/(2 g²)."""
    g = fpkit.Grid.uniform(0.5, 2.0, 16)
    cs = fpkit.CallanSymanzik(g, beta=lambda x: -(x**3), gamma=0.0)
    with pytest.raises(LandauPoleError) as info:
        cs.solve(lambda x: np.exp(-x), [0.0, 1.0], method="characteristics")
    g_hi = g.x[-1]
    assert info.value.s_pole == pytest.approx(1.0 / (2.0 * g_hi**2), rel=1e-6)


def test_cir_diffusion_vanishing_at_the_wall():
    """CIR/Feller: D = σ²x/2, A = κ(θ − x) on [0, L], reflecting. The default exponential-fitting scheme
    refused D = 0 at the wall face; the stationary density is Gamma(2κθ/σ², rate 2κ/σ²)."""
    from scipy import stats

    L, n, kap, th, sig = 10.0, 800, 1.0, 1.0, 1.0
    g = fpkit.Grid.uniform(0.0, L, n)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: kap * (th - x), diffusion=lambda x, t: 0.5 * sig**2 * x,
                            bc="reflecting")  # fmt: skip
    exact = np.diff(stats.gamma(a=2 * kap * th / sig**2, scale=sig**2 / (2 * kap)).cdf(np.linspace(0, L, n + 1)))
    for p in (fp.stationary(), fp.solve(fpkit.gaussian(g, mean=2.0, std=0.3), [30.0]).p[-1]):
        assert np.sum(np.abs(p * g.dx[0] - exact)) < 2e-3
        assert np.sum(p) * g.dx[0] == pytest.approx(1.0, abs=1e-10)


def test_vanishing_diffusion_gives_the_upwind_flux():
    """D → 0 inside the domain: the Scharfetter-Gummel operator tends to the upwind one, D = 0 is that limit."""
    g = fpkit.Grid.uniform(-1.0, 1.0, 20)

    def op(D):
        return fpkit.FokkerPlanck(g, drift=lambda x, t: 0.3 - x, diffusion=D, bc="reflecting").operator().toarray()

    up = op(0.0)
    assert np.abs(op(1e-14) - up).max() < 1e-10
    A = 0.3 - np.linspace(-1, 1, 21)[1:-1]  # drift at the interior faces (linear: the face mean is exact)
    h = g.dx[0]
    flux_in_from_left = np.maximum(A, 0.0) / h  # J = A⁺ p_left − A⁻ p_right
    assert np.allclose(np.diag(up, -1), flux_in_from_left)
    assert np.allclose(up.sum(axis=0), 0.0, atol=1e-12)  # mass conserved
    half = fpkit.FokkerPlanck(g, drift=lambda x, t: 0.3 - x, diffusion=lambda x, t: np.where(x > 0, 0.2, 0.0),
                              bc="reflecting")  # fmt: skip
    p = half.solve(fpkit.gaussian(g, mean=-0.5, std=0.2), [0.5, 2.0]).p
    assert np.all(p >= 0) and np.allclose(p.sum(axis=1) * h, 1.0)
