"""A parallel fpkit kernel leaves torch's intra-op thread count alone (issue 16).

numba's OpenMP threading layer calls ``omp_set_num_threads(NUMBA_NUM_THREADS)`` when the first parallel kernel
starts it, and torch reads its thread count from the same libgomp setting: ``torch.set_num_threads(k)``
followed by ``fpkit.Ensemble(...).advance`` left torch with numba's count. Each case runs in a fresh process
(the layer starts once per process). Skips without torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch", reason='needs torch: pip install "fpkit[torch]"')

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import hashlib, json, sys
import numba
import numpy as np
k = None
if sys.argv[1] == "torch":
    import torch
    k = numba.config.NUMBA_NUM_THREADS + 1  # differs from what numba's layer would set
    torch.set_num_threads(k)
    # torch work before fpkit's: torch's lazy per-thread start would otherwise re-apply k at its first op and
    # hide the overwrite (a user's real session has run torch ops by then)
    assert torch.get_num_threads() == k and float(torch.ones(64).sum()) == 64.0
import fpkit
from fpkit.data import arrays
x = np.random.default_rng(0).normal(size=(128, 8))
ens = fpkit.Ensemble(data=arrays(x), hidden=[3], activation="tanh", members=64, steps=50, lr=0.05,
                     batch_size=8, seed=3, statistics=False)
state = ens.initial_state()
ens.advance(state, 50)  # the autoencoder's parallel training kernel starts numba's threading layer
out = {"layer": numba.threading_layer(), "k": k,
       "theta": hashlib.sha256(np.ascontiguousarray(state["theta"]).tobytes()).hexdigest()}
if k is not None:
    out["torch_threads"] = torch.get_num_threads()
print(json.dumps(out))
"""


def _run(mode: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    res = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_parallel_kernel_keeps_torchs_thread_count_and_results():
    with_torch, without = _run("torch"), _run("plain")
    assert with_torch["torch_threads"] == with_torch["k"], with_torch
    # numba passes its own count to every parallel region: the same weights, bit for bit, with torch loaded
    # (and the OpenMP setting restored) as in a process that never loaded torch
    assert with_torch["theta"] == without["theta"]
    assert with_torch["layer"] == without["layer"]
