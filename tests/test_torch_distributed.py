"""The torch bridge sharded on Dask (issues 16 and 18): ``TorchEnsemble(...).train(path, client=client)`` gives,
bit for bit, the file of the one-process run for 1, 2 and 3 shards (float64, CPU), shard pieces merged in
this process agree the same way (momentum, epochs and SGLD included), resume goes shard by shard.

The Dask tests (slow: CI runs them with the slow tests) run on one LocalCluster of 2 worker processes (1 thread
each) and skip, saying why, when Dask is not installed (``pip install "fpkit[distributed]"``); the whole file
skips without torch.
"""

from __future__ import annotations

import json
import pickle

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='needs torch: pip install "fpkit[torch]"')

import fpkit  # noqa: E402
import fpkit.torch as ft  # noqa: E402
from fpkit import distributed as dist  # noqa: E402
from fpkit.errors import ConfigError  # noqa: E402
from test_distributed import assert_same_file  # noqa: E402

needs_dask = pytest.mark.skipif(not dist.have_dask(), reason='needs Dask: pip install "fpkit[distributed]"')

# Everything here pickles by reference to torch (a module, a loss module): the workers can import it.
MODEL = torch.nn.Sequential(torch.nn.Linear(6, 3), torch.nn.Tanh(), torch.nn.Linear(3, 6)).double()
LOSS = torch.nn.MSELoss()  # mean over the batch (and the 6 outputs) of a per-sample loss
X = np.random.default_rng(5).normal(size=(48, 6))
SMALL = dict(members=40, lr=0.05, batch_size=4, steps=120, snapshots=5, lanczos_steps=6, seed=3)


def ensemble(**kw) -> ft.TorchEnsemble:
    return ft.TorchEnsemble(MODEL, LOSS, X, **{**SMALL, **kw})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    path = tmp_path_factory.mktemp("torch-ref") / "full.h5"
    ensemble().train(path, show_progress=False)
    return path


def test_shard_checks_its_range():
    ens = ensemble()
    with pytest.raises(ConfigError, match="multiple of 8"):
        ens.shard(4, 16)
    with pytest.raises(ConfigError, match="non-empty range"):
        ens.shard(16, 16)
    s = ens.shard(8, 24)
    assert s.config["train"]["members"] == 16 and s.config["train"]["probes"] == 0 and s.member_offset == 8
    assert s.config["shard"] == {"first": 8, "stop": 24, "members": 40}
    assert ens.shard(0, 8).config["train"]["probes"] == ens.config["train"]["probes"]
    # a shard's initial weights and streams are those of its members in the whole ensemble
    st, sst = ens.initial_state(), s.initial_state()
    assert np.array_equal(st["theta"][:, 8:24], sst["theta"]) and np.array_equal(st["rng"][:, 8:24], sst["rng"])


def test_shard_pickles():
    """A shard travels to a worker by pickle: the vmapped functions are rebuilt and give the same numbers."""
    s = ensemble().shard(8, 24)
    s2 = pickle.loads(pickle.dumps(s))
    a, b = s.initial_state(), s2.initial_state()
    s.advance(a, 7)
    s2.advance(b, 7)
    assert np.array_equal(a["theta"], b["theta"])


@pytest.mark.parametrize("extra", [{}, {"members": 37, "momentum": 0.5, "sampling": "epochs"},
                                   {"optimizer": "sgld", "temperature": 1e-3}])  # fmt: skip
def test_pieces_merge_bit_identical(tmp_path, extra):
    """Shards trained one after the other in this process and merged = the one-process file (members not a
    multiple of the lane width, momentum, per-member permutations and SGLD noise included)."""
    ens = ensemble(**extra)
    ens.train(tmp_path / "full.h5", show_progress=False)
    pieces = []
    for i, (a, b) in enumerate(dist.plan_shards(ens.config["train"]["members"], 3)):
        piece = tmp_path / f"piece{i}.h5"
        st = dist._run_shard(ens.shard(a, b), str(piece), None, i, "topic", None, None)
        assert st["complete"] and st["n_done"] == len(ens.schedule)
        pieces.append(((a, b), piece))
    dist.merge_pieces(ens, tmp_path / "merged.h5", pieces)
    assert_same_file(tmp_path / "full.h5", tmp_path / "merged.h5")


def test_chunks_are_the_whole_ensembles(monkeypatch):
    """With small per-sample-gradient chunks a shard sums over the whole ensemble's chunks, so its statistics
    keep the one-process bits (chunks sized by the shard's own member count would differ in the last bits)."""
    from fpkit.torch import _functional

    ens = ensemble()
    # 5 samples per chunk for the 40 members (a shard of 24 sized by itself: 8)
    monkeypatch.setattr(_functional, "CHUNK_BYTES", 3 * 40 * ens.layout.P * 8 * 5)
    th = ens.initial_state()["theta"]
    whole = ens.statistics(th)
    part = ens.shard(16, 40).statistics(th[:, 16:])
    for k in ("grad", "grad_var", "hess_grad"):
        assert np.array_equal(whole[k][:, 16:], part[k]), k
    assert np.array_equal(whole["loss"][16:], part["loss"])


# --------------------------------------------------------------------------------------- with Dask
@pytest.fixture(scope="module")
def client():
    if not dist.have_dask():
        pytest.skip('needs Dask: pip install "fpkit[distributed]"')
    with dist.local_client(2, numba_threads=1) as c:
        yield c


@needs_dask
@pytest.mark.slow  # a LocalCluster and three sharded runs: ~45 CPU s (the in-process merges above are quick)
@pytest.mark.parametrize("shards", [1, 2, 3])
def test_sharded_training_bit_identical(client, reference, tmp_path, shards):
    out = tmp_path / "merged.h5"
    run = ensemble().train(out, client=client, shards=shards, show_progress=False)
    assert_same_file(reference, out)
    assert run.members == SMALL["members"] and not (tmp_path / "merged.h5.shards").exists()
    assert run.names == ("0.weight", "0.bias", "2.weight", "2.bias")


@needs_dask
@pytest.mark.slow
def test_resume_shard_by_shard(client, reference, tmp_path):
    """stop_after: every shard stops at the same snapshot, the merged file is an incomplete run; resume on the
    cluster finishes it -> the one-process file."""
    out = tmp_path / "run.h5"
    ensemble().train(out, client=client, shards=3, stop_after=2, show_progress=False)
    with h5py.File(out) as f:
        meta = json.loads(f.attrs["meta"])
    assert meta["n_done"] == 2 and not meta["complete"]
    ensemble().train(out, client=client, resume=True, show_progress=False)
    assert_same_file(reference, out)
