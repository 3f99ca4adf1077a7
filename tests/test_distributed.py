"""fpkit.distributed (issue 18): sharded training bit-identical to one process for any number of shards,
resume shard by shard, a killed worker, sweeps and per-entry predictions as Dask tasks, the CLI.

The Dask tests run on one LocalCluster of 2 worker processes (1 thread each) and skip, saying why, when
``dask[distributed]`` is not installed (``pip install "fpkit[distributed]"``).
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

import fpkit
from fpkit import distributed as dist
from fpkit.errors import ConfigError
from fpkit.solvers.autoencoder import LANES

needs_dask = pytest.mark.skipif(not dist.have_dask(), reason='needs Dask: pip install "fpkit[distributed]"')

SMALL = dict(d=6, k=2, activation="tanh", lr=0.05, batch_size=4, members=40, steps=300, snapshots=6, seed=3)


def file_items(path) -> dict:
    """Every attribute and dataset of an HDF5 file by path (the creation time left out)."""
    out = {}
    with h5py.File(path, "r") as f:
        out.update({"@" + k: v for k, v in f.attrs.items() if k != "created"})

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()]
            out.update({f"{name}@{k}": v for k, v in obj.attrs.items()})

        f.visititems(visit)
    return out


def assert_same_file(a, b):
    """Same datasets (dtype, shape, every bit, NaN where NaN) and attributes, the creation time aside."""
    A, B = file_items(a), file_items(b)
    assert sorted(A) == sorted(B)
    for k in A:
        x, y = A[k], B[k]
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and x.shape == y.shape, k
            assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), k
        else:
            assert x == y, k


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The one-process run of SMALL."""
    path = tmp_path_factory.mktemp("ref") / "full.h5"
    fpkit.Ensemble(**SMALL).train(path, show_progress=False)
    return path


# ------------------------------------------------------------------------------------ without Dask
def test_plan_shards_whole_lanes():
    for M in (1, 7, 8, 40, 37, 1001):
        for n in (1, 2, 3, 5, 64):
            plan = dist.plan_shards(M, n)
            assert plan[0][0] == 0 and plan[-1][1] == M
            assert all(plan[i][1] == plan[i + 1][0] for i in range(len(plan) - 1))
            assert all(a % LANES == 0 and a < b for a, b in plan)
            assert all(b % LANES == 0 for _, b in plan[:-1])
            assert len(plan) == min(n, -(-M // LANES))
    with pytest.raises(ConfigError, match="shards"):
        dist.plan_shards(40, 0)


def test_shard_checks_its_range():
    ens = fpkit.Ensemble(**SMALL)
    with pytest.raises(ConfigError, match="multiple of 8"):
        ens.shard(4, 16)
    with pytest.raises(ConfigError, match="non-empty range"):
        ens.shard(16, 16)
    s = ens.shard(8, 24)
    assert s.config["train"]["members"] == 16 and s.config["train"]["probes"] == 0
    assert s.config["shard"] == {"first": 8, "stop": 24, "members": 40}
    assert ens.shard(0, 8).config["train"]["probes"] == ens.config["train"]["probes"]


@pytest.mark.parametrize("extra", [{}, {"members": 37, "momentum": 0.5, "sampling": "epochs", "n": 64}])
def test_pieces_merge_bit_identical(tmp_path, extra):
    """Shards trained one after the other in this process and merged = the one-process file (members not a
    multiple of the lane width, momentum and per-member permutations included)."""
    kw = {**SMALL, **extra}
    ens = fpkit.Ensemble(**kw)
    ens.train(tmp_path / "full.h5", show_progress=False)
    plan = dist.plan_shards(ens.config["train"]["members"], 3)
    pieces = []
    for i, (a, b) in enumerate(plan):
        piece = tmp_path / f"piece{i}.h5"
        st = dist._run_shard(ens.shard(a, b), str(piece), None, i, "topic", None, None)
        assert st["complete"] and st["n_done"] == len(ens.schedule)
        pieces.append(((a, b), piece))
    dist.merge_pieces(ens, tmp_path / "merged.h5", pieces)
    assert_same_file(tmp_path / "full.h5", tmp_path / "merged.h5")


def test_virtual_merge_reads_the_same_and_consolidates(tmp_path, caplog):
    """virtual=True: the snapshot fields are HDF5 virtual datasets over the pieces (nothing copied); every
    dataset reads bit-identical to the one-process file, also after the folder is moved whole; a missing
    piece is a FileFormatError (HDF5 alone would read NaN, its fill value); consolidate gives a self-contained
    file with the same values."""
    import shutil

    ens = fpkit.Ensemble(**SMALL)
    ens.train(tmp_path / "full.h5", show_progress=False)
    work = tmp_path / "a"
    (work / "pieces").mkdir(parents=True)
    pieces = []
    for i, (a, b) in enumerate(dist.plan_shards(SMALL["members"], 3)):
        piece = work / "pieces" / f"piece{i}.h5"
        dist._run_shard(ens.shard(a, b), str(piece), None, i, "topic", None, None)
        pieces.append(((a, b), piece))
    dist.merge_pieces(ens, work / "virtual.h5", pieces, virtual=True)
    with h5py.File(work / "virtual.h5") as f:
        assert f["weights/W1"].is_virtual and not f["loss"].is_virtual
    pieces_bytes = sum(p.stat().st_size for _, p in pieces)
    assert (work / "virtual.h5").stat().st_size < 0.2 * pieces_bytes  # the snapshots were not copied
    assert_same_file(tmp_path / "full.h5", work / "virtual.h5")
    shutil.move(work, tmp_path / "moved")  # relative sources: the folder travels whole
    moved = tmp_path / "moved" / "virtual.h5"
    assert_same_file(tmp_path / "full.h5", moved)
    run = fpkit.EnsembleRun.load(moved)
    assert np.array_equal(run.weights["W2"], fpkit.EnsembleRun.load(tmp_path / "full.h5").weights["W2"])
    with caplog.at_level("WARNING", logger="fpkit.distributed"):
        dist.consolidate(moved, tmp_path / "alone.h5")
    assert "can be deleted" in caplog.text and "pieces" in caplog.text
    with h5py.File(tmp_path / "alone.h5") as f:
        assert not f["weights/W1"].is_virtual
    sol = tmp_path / "sol.h5"
    g = fpkit.Grid.uniform(-1.0, 1.0, 10)
    fpkit.FokkerPlanck(g, drift=0.0, diffusion=0.5).solve(fpkit.gaussian(g, 0.0, 0.3), [0.1]).save(sol)
    with pytest.raises(fpkit.errors.FileFormatError, match="not an ensemble"):
        dist.consolidate(sol)  # was accepted ("OK") by a hostile run
    (tmp_path / "moved" / "pieces" / "piece1.h5").unlink()
    with pytest.raises(fpkit.errors.FileFormatError, match="shard pieces that are missing: pieces/piece1.h5"):
        fpkit.EnsembleRun.load(moved)
    with pytest.raises(fpkit.errors.FileFormatError, match="missing"):
        dist.consolidate(moved)
    assert_same_file(tmp_path / "full.h5", tmp_path / "alone.h5")


def test_without_dask(monkeypatch, tmp_path, capsys):
    """Without Dask: a client-less run is unchanged, --workers is one clear error (exit 2)."""
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    assert not dist.have_dask()
    with pytest.raises(ConfigError, match="needs Dask: pip install"):
        dist.require_dask("--workers")
    cfg = tmp_path / "cfg.toml"
    cfg.write_text("seed = 1\n[train]\nmembers = 16\nsteps = 50\nsnapshots = 4\n")
    from fpkit.cli import main

    assert main(["train", str(cfg), "-o", str(tmp_path / "a.h5"), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "needs Dask" in err and "fpkit[distributed]" in err and len(err.strip().splitlines()) == 1
    assert main(["train", str(cfg), "-o", str(tmp_path / "a.h5")]) == 0


# --------------------------------------------------------------------------------------- with Dask
@pytest.fixture(scope="module")
def client():
    if not dist.have_dask():
        pytest.skip('needs Dask: pip install "fpkit[distributed]"')
    with dist.local_client(2, numba_threads=1) as c:
        yield c


@needs_dask
@pytest.mark.parametrize("shards", [1, 2, 5])
def test_sharded_training_bit_identical(client, reference, tmp_path, shards):
    out = tmp_path / "merged.h5"
    run = fpkit.Ensemble(**SMALL).train(out, client=client, shards=shards, show_progress=False)
    assert_same_file(reference, out)
    assert run.members == SMALL["members"] and not (tmp_path / "merged.h5.shards").exists()


@needs_dask
def test_sharded_training_virtual(client, reference, tmp_path):
    """train(..., virtual=True) on the cluster: the same values as the one-process file, the pieces in one
    folder of their own beside it; a second run replaces both (the old folder goes once the new file is in)."""
    out = tmp_path / "v.h5"
    for _ in range(2):
        fpkit.Ensemble(**SMALL).train(out, client=client, shards=3, show_progress=False, virtual=True)
        assert_same_file(reference, out)
        folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
        assert len(folders) == 1 and folders[0].startswith("v.h5.pieces-"), folders
    with pytest.raises(ConfigError, match="client"):
        fpkit.Ensemble(**SMALL).train(tmp_path / "x.h5", virtual=True)


@needs_dask
def test_one_progress_bar_over_all_shards(client, tmp_path, monkeypatch):
    """One bar on the client, in member-steps of the whole ensemble, fed by the shards, ending full."""
    import fpkit.progress

    bars = []

    class Bar:
        def __init__(self, total, desc, enable=None, unit="it"):
            self.total, self.n, self.seen, self.closed = total, 0, [], False
            bars.append(self)

        def refresh(self):
            self.seen.append(self.n)

        def close(self):
            self.closed = True

    monkeypatch.setattr(fpkit.progress, "progress", Bar)
    fpkit.Ensemble(**SMALL).train(tmp_path / "run.h5", client=client, shards=5, show_progress=True)
    [bar] = bars
    assert bar.total == SMALL["members"] * SMALL["steps"] and bar.closed
    assert bar.seen[-1] == bar.total and len(bar.seen) >= 5


@needs_dask
def test_sharded_in_memory(client, reference):
    run = fpkit.Ensemble(**SMALL).train(client=client, shards=2, show_progress=False)
    ref = fpkit.EnsembleRun.load(reference)
    for fld in ("weights", "grad", "grad_var", "hess_grad"):
        for name in ref.names:
            assert np.array_equal(getattr(run, fld)[name], getattr(ref, fld)[name])
    assert np.array_equal(run.lam_max, ref.lam_max) and np.array_equal(run.loss, ref.loss)


@needs_dask
def test_resume_shard_by_shard(client, reference, tmp_path):
    """stop_after: every shard stops at the same snapshot and the merged file is a resumable incomplete run;
    one shard then finished alone; resume trains only the others -> the one-process file."""
    ens = fpkit.Ensemble(**SMALL)
    out = tmp_path / "run.h5"
    ens.train(out, client=client, shards=3, stop_after=2, show_progress=False)
    with h5py.File(out) as f:
        meta = json.loads(f.attrs["meta"])
    assert meta["n_done"] == 2 and not meta["complete"]
    pieces_dir = tmp_path / "run.h5.shards"
    plan = json.loads((pieces_dir / "plan.json").read_text())["shards"]
    assert len(plan) == 3
    first = pieces_dir / dist._piece_name(*plan[0])
    dist._run_shard(ens.shard(*plan[0]), str(first), None, 0, "topic", None, None)  # finish shard 0 here
    assert dist.piece_status(first) == (len(ens.schedule), True)
    mtime = first.stat().st_mtime_ns
    ens.train(out, client=client, resume=True, show_progress=False)
    assert_same_file(reference, out)
    assert not pieces_dir.exists()
    # a complete run resumes to itself; another configuration is refused
    ens.train(out, client=client, resume=True, show_progress=False)
    with pytest.raises(ConfigError, match="no shards"):
        fpkit.Ensemble(**{**SMALL, "seed": 4}).train(out, client=client, resume=True)
    del mtime


@needs_dask
def test_resume_refuses_other_configuration(client, tmp_path):
    out = tmp_path / "run.h5"
    fpkit.Ensemble(**SMALL).train(out, client=client, shards=2, stop_after=1, show_progress=False)
    with pytest.raises(ConfigError, match="configuration differs"):
        fpkit.Ensemble(**{**SMALL, "lr": 0.04}).train(out, client=client, resume=True)


@needs_dask
@pytest.mark.slow
def test_killed_worker_same_file(client, tmp_path):
    """A worker process killed (SIGKILL) while it trains a shard: Dask reruns the task elsewhere, the shard
    resumes from its piece's last snapshot, and the merged file is the one-process file."""
    kw = dict(SMALL, members=32, steps=40000, snapshot_steps=list(range(0, 40001, 2500)))
    ens = fpkit.Ensemble(**kw)
    out = tmp_path / "run.h5"
    killed, finished = {}, threading.Event()

    def snapshots_done(path):  # read while the worker writes it (no file lock)
        try:
            with h5py.File(path, "r", locking=False) as f:
                return json.loads(f.attrs["meta"])["n_done"]
        except Exception:
            return -1

    def kill_one():
        pieces_dir = tmp_path / "run.h5.shards"
        while not finished.is_set():
            for piece in pieces_dir.glob("members-*.h5.partial"):
                n_done = snapshots_done(piece)
                if 2 <= n_done < len(ens.schedule) - 2:
                    for addr, keys in client.processing().items():
                        if keys:
                            pid = client.run(os.getpid, workers=[addr])[addr]
                            killed.update(pid=pid, n_done=n_done)
                            os.kill(pid, signal.SIGKILL)
                            return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one)
    killer.start()
    try:
        ens.train(out, client=client, shards=2, show_progress=False)
    finally:
        finished.set()
        killer.join()
    assert killed, "no worker was killed during training"
    ens.train(tmp_path / "ref.h5", show_progress=False)
    assert_same_file(tmp_path / "ref.h5", out)
    client.wait_for_workers(2, timeout=60)


@needs_dask
def test_failing_shard_stops_the_others(client, tmp_path):
    """A diverging ensemble: the shard's StabilityError reaches the caller with where the pieces are."""
    kw = dict(SMALL, lr=50.0, steps=2000, snapshots=4)
    with pytest.raises(fpkit.errors.StabilityError, match=r"shard of members \d+\.\.\d+ .*diverged.*shards"):
        fpkit.Ensemble(**kw).train(tmp_path / "run.h5", client=client, shards=2, show_progress=False)


@needs_dask
def test_map_tasks_order_and_errors(client):
    assert dist.map_tasks(client, pow, [(2, k) for k in range(7)]) == [2**k for k in range(7)]
    with pytest.raises(ZeroDivisionError):
        dist.map_tasks(client, divmod, [(1, 1), (1, 0)])


# ------------------------------------------------------------------------------- the flagship on Dask
def _tiny_flagship():
    from fpkit.experiments import resolve_config
    from fpkit.validation.experiments import fp_histograms as fh

    cfg = resolve_config(fh.EXPERIMENT(), quick=True, seed=2)
    cfg["sweep"].update(lr=[0.02, 0.1], batch_size=[8], members=200, steps=200, snapshots=8)
    cfg["analysis"].update(cells=60, max_cells=200, fp_dt=0.5)
    cfg["train"]["lanczos_steps"] = 4
    return fh, cfg


@needs_dask
def test_sweep_same_table(client):
    fh, cfg = _tiny_flagship()
    serial = fh.run_sweep(copy.deepcopy(cfg))
    parallel = fh.run_sweep_dask(client, copy.deepcopy(cfg))
    assert [(r["lr"], r["batch_size"]) for r in parallel] == [(r["lr"], r["batch_size"]) for r in serial]
    assert json.dumps(parallel, sort_keys=True) == json.dumps(serial, sort_keys=True)


@needs_dask
def test_predict_entries_same(client):
    fh, cfg = _tiny_flagship()
    run = fpkit.Ensemble(d=8, k=3, activation="tanh", lr=0.02, batch_size=8, members=200, steps=400, snapshots=10,
                         seed=1).train(show_progress=False)  # fmt: skip
    E, J = fpkit.prediction.split_members(run.members, 1, "half")
    acfg = dict(cfg["analysis"], variants=["standard", "discrete"], cells=60, max_cells=200)
    labels = ["W2[0,0]", "W1[0,1]"]
    serial = fh.predict_entries(run, labels, E, J, acfg, 1)
    parallel = fh.predict_entries_dask(client, run, labels, E, J, acfg, 1)
    assert [p.label for p in parallel] == labels
    for p, q in zip(serial, parallel):
        assert np.array_equal(p.density, q.density, equal_nan=True)
        assert sorted(p.distance) == sorted(q.distance)
        for k in p.distance:
            assert np.array_equal(p.distance[k], q.distance[k], equal_nan=True), k


# ------------------------------------------------------------------------------------------------ CLI
@needs_dask
@pytest.mark.slow
def test_cli_train_workers(tmp_path):
    """``fpkit train cfg.toml -o out.h5 --workers 2`` (its own local cluster) = the one-process file."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CFG_TOML)
    ens = fpkit.Ensemble(fpkit.config.load_toml(cfg))
    assert ens.config == fpkit.Ensemble(**SMALL).config
    ens.train(tmp_path / "ref.h5", show_progress=False)  # the same configuration, its keys in the TOML's order
    r = subprocess.run([sys.executable, "-m", "fpkit.cli", "train", str(cfg), "-o", str(tmp_path / "out.h5"),
                        "--workers", "2"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert_same_file(tmp_path / "ref.h5", tmp_path / "out.h5")
    r = subprocess.run([sys.executable, "-m", "fpkit.cli", "train", str(cfg), "-o", str(tmp_path / "v.h5"),
                        "--workers", "2", "--virtual"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert_same_file(tmp_path / "ref.h5", tmp_path / "v.h5")
    assert len(list(tmp_path.glob("v.h5.pieces-*/members-*.h5"))) >= 2


CFG_TOML = """seed = 3
[model]
hidden = [2, 2]
activation = "tanh"
[data]
d = 6
[train]
lr = 0.05
batch_size = 4
members = 40
steps = 300
snapshots = 6
"""


MINE = '''
from dataclasses import dataclass
from fpkit.config import Schema
from fpkit.experiments import Claim, Experiment, Verdict


class Config(Schema):
    n: int = 5


@dataclass
class Result:
    powers: list
    had_client: bool


class Mine(Experiment):
    name = "mine"
    title = "powers of two as Dask tasks"
    Config = Config

    def run(self, cfg, ctx):
        from fpkit.distributed import map_tasks

        calls = [(2, k) for k in range(cfg["n"])]
        out = map_tasks(ctx.client, pow, calls) if ctx.client is not None else [pow(*c) for c in calls]
        return Result(out, ctx.client is not None)

    def verdict(self, cfg, res):
        return Verdict([Claim("client", res.had_client, res.had_client, "a client", "ran on Dask")])


EXPERIMENT = Mine
'''


@needs_dask
@pytest.mark.slow
def test_cli_experiment_workers(tmp_path):
    """``fpkit experiment run FILE --workers 2`` hands the experiment a client on its own local cluster."""
    (tmp_path / "mine.py").write_text(MINE)
    r = subprocess.run([sys.executable, "-m", "fpkit.cli", "experiment", "run", str(tmp_path / "mine.py"), "--out",
                        str(tmp_path / "out"), "--workers", "2"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "1 of 1 claims held" in r.stdout
    from fpkit.io import get_json_attr

    with h5py.File(tmp_path / "out" / "results.h5") as f:
        assert get_json_attr(f, "powers") == [1, 2, 4, 8, 16]
