"""The SGD sampler: backprop, optimiser steps, data, snapshots, files, reproducibility, resume, bad input.

The statistical checks against exact results are in test_ensemble_exact.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fpkit.data import arrays, load_digits, make_dataset, random_orthogonal
from fpkit.ensemble import Ensemble, EnsembleRun, snapshot_schedule
from fpkit.errors import ConfigError
from fpkit.solvers import autoencoder as ae

ACTS = {"linear": lambda z: z, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0)}
DACTS = {"linear": lambda h: np.ones_like(h), "tanh": lambda h: 1 - h * h, "relu": lambda h: (h > 0) * 1.0}


# ------------------------------------------------------------------------------- numpy reference network
def unpack(ens, theta):
    """theta (P,) -> list of (W (n_out, n_in), b or None) per layer, using the documented layout."""
    arch = ens.arch
    layers = []
    for ell in range(len(arch.sizes) - 1):
        nin, nout = int(arch.sizes[ell]), int(arch.sizes[ell + 1])
        W = theta[arch.w_off[ell] : arch.w_off[ell] + nout * nin].reshape(nout, nin)
        b = theta[arch.b_off[ell] : arch.b_off[ell] + nout] if arch.b_off[ell] >= 0 else None
        layers.append((W, b))
    return layers


def np_loss_grad(ens, theta, X, T):
    """Loss (mean of ½|out − target|²) and its gradient by a plain numpy backprop (independent code)."""
    act = ens.config["model"]["activation"]
    layers = unpack(ens, theta)
    hs = [X]
    for ell, (W, b) in enumerate(layers):
        z = hs[-1] @ W.T + (0 if b is None else b)
        hs.append(z if ell == len(layers) - 1 else ACTS[act](z))
    n = X.shape[0]
    err = (hs[-1] - T) / n
    loss = 0.5 * np.sum((hs[-1] - T) ** 2) / n
    grads = []
    delta = err
    for ell in range(len(layers) - 1, -1, -1):
        W, b = layers[ell]
        grads.append((delta.T @ hs[ell], None if b is None else delta.sum(axis=0)))
        if ell > 0:
            delta = (delta @ W) * DACTS[act](hs[ell])
    grads.reverse()
    g = np.zeros_like(theta)
    arch = ens.arch
    for ell, (gW, gb) in enumerate(grads):
        g[arch.w_off[ell] : arch.w_off[ell] + gW.size] = gW.ravel()
        if gb is not None:
            g[arch.b_off[ell] : arch.b_off[ell] + gb.size] = gb
    return loss, g


def small(members=5, **kw):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(24, 5)) * np.array([1.5, 1.0, 0.7, 0.4, 0.2])
    base = {"k": 2, "members": members, "steps": 20, "snapshots": 6, "lr": 0.05, "batch_size": 4, "seed": 2}
    base.update(kw)
    return Ensemble(data=arrays(x), **base)


# ---------------------------------------------------------------------------------------------- backprop
def test_vtanh_accuracy():
    """The vectorisable tanh is within 2 ulp of the exact value (mpmath), and 3 of libm's."""
    mp = pytest.importorskip("mpmath")
    x = np.concatenate(
        [np.linspace(-25, 25, 4001), np.linspace(-0.7, 0.7, 2001), np.geomspace(1e-12, 1, 200)]
    )
    exact = np.array([float(mp.tanh(mp.mpf(v))) for v in x])
    got = np.array([ae.vtanh(v) for v in x])
    assert (np.abs(got - exact) / np.spacing(np.abs(exact))).max() <= 2.0
    assert (np.abs(got - np.tanh(x)) / np.spacing(np.abs(exact))).max() <= 3.0


@settings(max_examples=15, deadline=None)
@given(
    d=st.integers(2, 6),
    depth=st.integers(1, 3),
    act=st.sampled_from(["linear", "tanh", "relu"]),
    bias=st.booleans(),
    regression=st.booleans(),
    members=st.integers(1, 11),
    seed=st.integers(0, 2**31),
)
def test_backprop_matches_finite_differences(d, depth, act, bias, regression, members, seed):
    """Kernel gradients equal central finite differences of an independent numpy loss, every option."""
    rng = np.random.default_rng(seed)
    n = 7
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, 2)) if regression else None
    hidden = list(rng.integers(1, d, size=depth)) if d > 1 else [1]
    kw = {"model": "regression"} if regression else {"hidden": [int(h) for h in hidden], "activation": act}
    ens = Ensemble(
        data=arrays(x, y), bias=bias, members=members, steps=1, init_scale=1.5, seed=seed % 1000, **kw
    )
    theta = ens.initial_state()["theta"]
    if bias:  # non-zero biases so that they are tested too
        theta = theta + 0.3 * rng.normal(size=theta.shape)
    g, sq, loss = ens.full_gradient(theta, want_sq=True)
    T = x if not regression else y
    for m in range(members):
        l_np, g_np = np_loss_grad(ens, theta[:, m], x, T)
        assert loss[m] == pytest.approx(l_np, rel=1e-12)
        np.testing.assert_allclose(g[:, m], g_np, rtol=1e-10, atol=1e-12)
        # central finite differences of the numpy loss: error O(h²) ~ 1e-10
        h = 1e-5
        fd = np.empty(theta.shape[0])
        for p in range(theta.shape[0]):
            e = np.zeros(theta.shape[0])
            e[p] = h
            fd[p] = (
                np_loss_grad(ens, theta[:, m] + e, x, T)[0] - np_loss_grad(ens, theta[:, m] - e, x, T)[0]
            ) / (2 * h)
        np.testing.assert_allclose(g[:, m], fd, rtol=1e-5, atol=1e-7)
    # mean squared per-sample gradient: from per-sample numpy gradients
    m = members - 1
    per = np.array([np_loss_grad(ens, theta[:, m], x[i : i + 1], T[i : i + 1])[1] for i in range(n)])
    np.testing.assert_allclose(sq[:, m], (per**2).mean(axis=0), rtol=1e-10, atol=1e-14)


def test_specialised_kernels_bit_identical_to_generic():
    """The kernels generated for one architecture do the generic kernels' operations in the same order."""
    # 19 members: a full kernel block (BLOCK = 16) and a partial one
    kw = {"members": 19, "bias": True, "momentum": 0.3, "weight_decay": 0.01, "steps": 30, "snapshots": 5}
    _same(small(kernels="generic", **kw).train(), small(kernels="specialised", **kw).train())
    src = ae._gen_source(np.array([3, 2, 3]), np.array([0, 6]), np.array([12, 14]), ae.ACT_TANH)
    assert f"vtanh(tf[{12 * ae.BLOCK} + l] + tf[0 + l] * hf[0 + l]" in src  # flat offsets: row * BLOCK + lane


def test_generated_gather_copies_the_rows():
    """The minibatch gather written out for one shape copies the same rows as the generic one: inputs into
    h0, targets into tg unless auto, lanes beyond nl untouched."""
    sizes, w_off, b_off = np.array([5, 3, 2]), np.array([0, 18]), np.array([15, 24])
    k = ae.specialised(sizes, w_off, b_off, ae.ACT_TANH)
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(40, 5)), rng.normal(size=(40, 2))
    ids = rng.integers(0, 40, size=ae.BLOCK)
    nl = ae.BLOCK - 3
    for auto in (False, True):
        h0, tg = np.full((5, ae.BLOCK), np.nan), np.full((5, ae.BLOCK), np.nan)
        k._gather_sample(X, T, auto, ids, 5, 2, nl, h0, tg)
        assert np.array_equal(h0[:, :nl], X[ids[:nl]].T) and np.all(np.isnan(h0[:, nl:]))
        if auto:
            assert np.all(np.isnan(tg))
        else:
            assert np.array_equal(tg[:2, :nl], T[ids[:nl]].T) and np.all(np.isnan(tg[:2, nl:]))


def test_generated_module_name_follows_its_imported_kernels(monkeypatch):
    """numba's disk cache of a generated kernel file does not see the kernels and constants it imports
    from fpkit.solvers.autoencoder (they are compiled into it): a change to one must change the file's
    source, hence its hashed name, or a stale compiled copy would be loaded."""
    key = ae._key(np.array([3, 2, 3]), np.array([0, 6]), np.array([12, 14]), ae.ACT_TANH)
    src = ae._module_source(key)
    assert ae._module_source(key) == src
    changed = ae.kernel(lambda rs, nl, n, B, sampling, perm, m0, counter, idx: None)  # another body, same name
    monkeypatch.setattr(ae, "_draw_indices", changed)
    assert ae._module_source(key) != src
    monkeypatch.undo()
    monkeypatch.setattr(ae, "GROUP", ae.GROUP + 1)
    assert ae._module_source(key) != src


def test_gd_momentum_weight_decay_steps_match_numpy():
    """Two full-batch steps with momentum and weight decay equal the numpy reference to round-off."""
    ens = small(
        members=3, optimizer="gd", momentum=0.9, weight_decay=0.01, bias=True, snapshot_steps=[0, 1, 2]
    )
    run = ens.train()
    X = ens.dataset.x
    theta = ens.initial_state()["theta"][:, 1].copy()
    v = np.zeros_like(theta)
    for step in (1, 2):
        _, g = np_loss_grad(ens, theta, X, X)
        v = 0.9 * v + g + 0.01 * theta
        theta = theta - 0.05 * v
        np.testing.assert_allclose(run.flat("weights")[step, 1], theta, rtol=1e-12, atol=1e-14)


def test_gd_without_noise_members_share_one_path():
    """GD from one shared initialisation: all members follow one path exactly, snapshot for snapshot."""
    run = small(members=13, optimizer="gd", same_init=True, steps=50, snapshots=10).train()
    w = run.flat("weights")
    assert np.all(w == w[:, :1])
    assert np.all(run.grad_var["W1"] == 0.0)
    assert not np.allclose(w[-1], w[0])  # and it moved


def test_statistics_hessian_and_lambda_max():
    """hess_grad = H·grad and lam_max = top eigenvalue of H, H from finite differences of the gradient."""
    ens = small(members=3, weight_decay=0.02, probes=2, lanczos_steps=60)
    theta = ens.initial_state()["theta"]
    stats = ens.statistics(theta)
    P = theta.shape[0]
    for m in range(2):
        H = np.empty((P, P))
        for p in range(P):
            e = np.zeros(P)
            e[p] = 1e-5
            H[:, p] = (
                np_loss_grad(ens, theta[:, m] + e, ens.dataset.x, ens.dataset.x)[1]
                - np_loss_grad(ens, theta[:, m] - e, ens.dataset.x, ens.dataset.x)[1]
            ) / 2e-5
        H = 0.5 * (H + H.T) + 0.02 * np.eye(P)
        np.testing.assert_allclose(stats["hess_grad"][:, m], H @ stats["grad"][:, m], rtol=1e-5, atol=1e-8)
        assert stats["lam_max"][m] == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-6)
    # grad includes the weight-decay term; grad_var is the per-sample variance / B (iid batches)
    g, sq, _ = ens.full_gradient(theta, want_sq=True)
    np.testing.assert_allclose(stats["grad"], g + 0.02 * theta)
    np.testing.assert_allclose(stats["grad_var"], (sq - g * g) / 4)


@settings(max_examples=15, deadline=None)
@given(cols=st.lists(st.integers(0, 39), min_size=1, max_size=11, unique=True))
def test_statistics_of_some_members_are_their_bits_in_the_whole_ensemble(cols):
    """Members never mix: the full-batch gradient, its mean square, the loss and H·v of any few columns
    (padded to a SIMD vector inside, lane by lane otherwise) are the bits of the same columns computed
    with all 40 members (whole vectors, two threads)."""
    ens = _stats_ensemble()
    theta = ens.initial_state()["theta"]
    v = np.random.default_rng(3).normal(size=theta.shape)
    g, sq, loss = ens.full_gradient(theta, want_sq=True)
    hv = ens._hess_vec(theta, v)
    gs, sqs, losss = ens.full_gradient(theta[:, cols], want_sq=True)
    assert gs.shape == (theta.shape[0], len(cols)) and losss.shape == (len(cols),)
    assert np.array_equal(gs, g[:, cols]) and np.array_equal(sqs, sq[:, cols]) and np.array_equal(losss, loss[cols])
    assert np.array_equal(ens._hess_vec(theta[:, cols], v[:, cols]), hv[:, cols])


def test_arrays_that_do_not_fit_the_network_are_refused_naming_them():
    """The lane kernels index parameters without bounds checks: a theta with the wrong number of rows (or
    transposed, or 1-D) read and wrote outside the arrays (heap corruption, measured); now a ConfigError."""
    ens = small(members=6, sampling="epochs", momentum=0.5)
    state = ens.initial_state()
    P = ens.arch.P
    for bad in (np.zeros((P - 1, 6)), np.zeros((6, P)), np.zeros(P), np.array([["a"] * 6] * P)):
        for call in (ens.statistics, ens.full_gradient, ens.lam_max, lambda th: ens._hess_vec(th, th)):
            with pytest.raises(ConfigError, match=r"`theta` must be a numeric array of shape \(P, M\)"):
                call(bad)
    with pytest.raises(ConfigError, match=r"`v` must have the shape of `theta`"):
        ens._hess_vec(state["theta"], state["theta"][:, :3])
    for key, bad in (("theta", state["theta"][:-1]), ("rng", state["rng"][:, :3]), ("velocity", state["velocity"].T),
                     ("perm", state["perm"].astype(np.int64))):  # fmt: skip
        with pytest.raises(ConfigError, match=rf'`state\["{key}"\]` must be'):
            ens.advance({**state, key: bad}, 1)
    before = state["theta"].copy()
    ens.advance(state, 1)  # the state that fits still trains
    assert not np.array_equal(state["theta"], before)


_STATS_ENSEMBLE = []


def _stats_ensemble():
    if not _STATS_ENSEMBLE:
        _STATS_ENSEMBLE.append(small(members=40, k=3, weight_decay=0.01))
    return _STATS_ENSEMBLE[0]


# ------------------------------------------------------------------------------------------------- data
def test_gaussian_data_covariance_spectrum():
    """Sample covariance of the rotated Gaussian has the requested eigenvalues (SE √(2/n) relative)."""
    ds = make_dataset(
        {"kind": "gaussian", "d": 6, "n": 40_000, "spectrum": "geometric", "ratio": 0.5}, seed=1
    )
    ev = np.sort(np.linalg.eigvalsh(np.cov(ds.x.T)))[::-1]
    expect = 0.5 ** np.arange(6)
    assert np.all(np.abs(ev / expect - 1) < 4 * np.sqrt(2 / 40_000) * 3)
    F = ds.factors[0]  # the population covariance F Fᵀ has exactly the requested spectrum
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(F @ F.T))[::-1], expect, rtol=1e-12, atol=1e-14)
    # unrotated (axis-aligned, the experiment's default): F = diag(√λ) and the sample covariance is diagonal
    # with those variances (SE √(2/n) relative on the diagonal, √(λ_i λ_j / n) off it; 4.5 SE on 21 entries:
    # false-alarm rate 21 × 6.8e-6 ≈ 1.4e-4)
    ax = make_dataset({"kind": "gaussian", "d": 6, "n": 40_000, "spectrum": "geometric", "ratio": 0.5,
                       "rotate": False}, seed=1)  # fmt: skip
    np.testing.assert_allclose(ax.factors[0], np.diag(np.sqrt(expect)), rtol=1e-14, atol=0)
    C = np.cov(ax.x.T)
    sd = np.sqrt(np.outer(expect, expect) / 40_000) * (1 + np.eye(6) * (np.sqrt(2) - 1))
    assert np.all(np.abs(C - np.diag(expect)) < 4.5 * sd)
    assert abs(F[0, 0]) != pytest.approx(1.0)  # rotated, not axis-aligned
    Q = random_orthogonal(5, np.random.default_rng(0))
    np.testing.assert_allclose(Q @ Q.T, np.eye(5), atol=1e-12)
    # deterministic for a seed, different for another
    again = make_dataset(
        {"kind": "gaussian", "d": 6, "n": 40_000, "spectrum": "geometric", "ratio": 0.5}, seed=1
    )
    assert np.array_equal(ds.x, again.x)


def test_mixture_and_online_data():
    ds = make_dataset({"kind": "mixture", "d": 3, "n": 3000, "components": 3, "std": 0.1, "separation": 4}, 1)
    assert ds.x.shape == (3000, 3) and ds.means.shape == (3, 3)
    nearest = np.argmin(((ds.x[:, None, :] - ds.means[None]) ** 2).sum(-1), axis=1)
    assert np.all(np.bincount(nearest, minlength=3) > 800)
    on = make_dataset({"kind": "gaussian", "d": 4, "online": True, "n_eval": 100}, 2)
    assert on.online and on.x is None and on.x_eval.shape == (100, 4)
    # online training draws x with the generator's covariance: the mean-gradient statistics at w = 0
    # of a linear regression would need it; here: members see different samples but stay finite
    run = Ensemble(
        data={"kind": "gaussian", "d": 4, "online": True, "n_eval": 50}, k=2, members=9, steps=30, snapshots=4
    ).train()
    assert np.all(np.isfinite(run.flat("weights")))


def test_digits_vendored():
    # the UCI optdigits test set (Alpaydin & Kaynak 1998), as sklearn's load_digits ships it: 1797 images of
    # 8x8 pixel counts 0..16; class sizes as published with the data set
    x, y = load_digits()
    assert x.shape == (1797, 64) and x.min() == 0 and x.max() == 16 and np.all(x == np.round(x))
    assert np.bincount(y).tolist() == [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
    ds = make_dataset({"kind": "digits", "n": 100}, 0)
    assert ds.x.shape == (100, 64) and ds.x.max() <= 1.0
    try:
        from sklearn.datasets import load_digits as sk_digits
    except ImportError:
        return
    assert np.array_equal(sk_digits().data, x) and np.array_equal(sk_digits().target, y)


def test_snapshot_schedule():
    s = snapshot_schedule(4000, 50, 20)
    assert s[0] == 0 and s[-1] == 4000 and len(s) == 50 and np.all(np.diff(s) > 0)
    late = s[s >= 400]
    per_decade = (len(late) - 1) / np.log10(late[-1] / late[0])
    assert per_decade >= 19.5
    assert len(snapshot_schedule(10, 50)) == 11


# ----------------------------------------------------------------------------------- files and resume
def test_file_roundtrip_and_from_arrays(tmp_path):
    ens = small(members=9, bias=True)
    run = ens.train(tmp_path / "e.h5")
    mem = small(members=9, bias=True).train()
    for fld in ("weights", "grad", "grad_var", "hess_grad"):
        for name in run.names:
            assert np.array_equal(getattr(run, fld)[name], getattr(mem, fld)[name])
    assert run.names == ("W1", "W2", "W3", "b1", "b2", "b3")
    assert run.weights["W1"].shape == (len(run.t), 9, 2, 5)  # W1 maps x (d = 5) to z1 (k = 2)
    np.testing.assert_allclose(run.t, 0.05 * run.step)
    assert run.eta == 0.05 and run.batch_size == 4 and run.config["model"]["hidden"] == [2, 2]
    assert run.loss.shape == (len(run.t), 9) and run.lam_max.shape == (len(run.t), 4)
    # Langevin paths (or anything) in the same format
    t = np.linspace(0, 1, 5)
    w = {"W1": np.random.default_rng(0).normal(size=(5, 7, 2, 3))}
    syn = EnsembleRun.from_arrays(t=t, weights=w, eta=0.01, batch_size=2, grad=w, grad_var=w)
    syn.save(tmp_path / "s.h5")
    back = EnsembleRun.load(tmp_path / "s.h5")
    assert np.array_equal(back.weights["W1"], w["W1"]) and np.array_equal(back.grad_var["W1"], w["W1"])
    assert back.hess_grad is None and np.array_equal(back.step, np.rint(t / 0.01))
    with pytest.raises(ConfigError, match="weights"):
        EnsembleRun.from_arrays(t=t, weights={"W1": np.zeros((4, 3))}, eta=0.1)
    with pytest.raises(ConfigError, match="grad"):
        EnsembleRun.from_arrays(t=t, weights=w, eta=0.1, grad={"W2": w["W1"]})
    # an array where a dict of them is meant: named, not an AttributeError from inside
    with pytest.raises(ConfigError, match="`grad_var` must map the names of `weights`"):
        EnsembleRun.from_arrays(t=t, weights=w, eta=0.1, grad_var=w["W1"])
    with pytest.raises(ConfigError, match="`weights` must map"):
        EnsembleRun.from_arrays(t=t, weights=w["W1"], eta=0.1)


def test_memory_run_stopped_early_is_the_file_runs_first_snapshots(tmp_path):
    """In memory, snapshots are written straight into preallocated arrays: stopping after 3 of 8 leaves the
    first 3, contiguous and equal to the crash-safe file writer's (an independent path)."""
    kw = {"members": 7, "steps": 40, "snapshots": 8, "bias": True}
    full = small(**kw).train(tmp_path / "full.h5")
    mem = small(**kw).train(stop_after=3)
    assert len(mem.t) == 3 and np.array_equal(mem.step, full.step[:3])
    for fld in ("weights", "grad", "grad_var", "hess_grad"):
        for name in full.names:
            a = getattr(mem, fld)[name]
            assert a.flags.c_contiguous and np.array_equal(a, getattr(full, fld)[name][:3]), (fld, name)
    assert np.array_equal(mem.loss, full.loss[:3]) and np.array_equal(mem.lam_max, full.lam_max[:3])


def _overwrite_run(run):
    for fld in ("weights", "grad"):
        for a in getattr(run, fld).values():
            a[...] = -7.0


def test_memory_run_is_private_to_its_process():
    """An in-memory run's arrays (anonymous memory maps) are copied on write in a forked child, as numpy's own
    memory is: a child (multiprocessing's default start on Linux) that writes into them leaves the parent's run
    unchanged. Checked against a copy taken before the fork."""
    import multiprocessing

    run = small(members=6, steps=20, snapshots=3).train()
    before = {fld: {n: a.copy() for n, a in getattr(run, fld).items()} for fld in ("weights", "grad")}
    child = multiprocessing.get_context("fork").Process(target=_overwrite_run, args=(run,))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    for fld, arrays in before.items():
        for name, a in arrays.items():
            assert np.array_equal(getattr(run, fld)[name], a), (fld, name)


def _same(a: EnsembleRun, b: EnsembleRun):
    assert np.array_equal(a.step, b.step)
    for fld in ("weights", "grad", "grad_var", "hess_grad"):
        for name in a.names:
            assert np.array_equal(getattr(a, fld)[name], getattr(b, fld)[name]), (fld, name)
    assert np.array_equal(a.loss, b.loss) and np.array_equal(a.lam_max, b.lam_max)


def test_resume_is_bit_identical(tmp_path):
    kw = {"members": 11, "momentum": 0.5, "sampling": "epochs", "steps": 40, "snapshots": 8}
    full = small(**kw).train(tmp_path / "full.h5")
    part = small(**kw).train(tmp_path / "part.h5", stop_after=3)
    assert len(part.t) == 3
    with h5py.File(tmp_path / "part.h5") as f:  # a valid file, marked incomplete
        assert '"complete": false' in f.attrs["meta"]
    resumed = small(**kw).train(tmp_path / "part.h5", resume=True)
    _same(full, resumed)

    def stop(j, step):  # Ctrl-C after the fourth snapshot
        if j == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small(**kw).train(tmp_path / "int.h5", callback=stop)
    assert len(EnsembleRun.load(tmp_path / "int.h5").t) == 4
    assert not (tmp_path / "int.h5.partial").exists()
    _same(full, small(**kw).train(tmp_path / "int.h5", resume=True))
    with pytest.raises(ConfigError, match="configuration differs"):
        small(members=11, momentum=0.5, sampling="epochs", steps=40, snapshots=8, lr=0.04).train(
            tmp_path / "part.h5", resume=True)  # fmt: skip


def test_same_result_on_one_and_two_threads(tmp_path):
    """Same seed, NUMBA_NUM_THREADS = 1 and 2, in fresh processes: identical snapshot arrays."""
    script = textwrap.dedent(
        """
        import sys
        from fpkit.ensemble import Ensemble
        ens = Ensemble(data={"kind": "gaussian", "d": 5, "n": 64}, k=2, members=37, steps=60, snapshots=6,
                       lr=0.05, batch_size=4, seed=7, bias=True)
        ens.train(sys.argv[1])
        """
    )
    runs = []
    for threads in (1, 2):
        out = tmp_path / f"t{threads}.h5"
        env = {**os.environ, "NUMBA_NUM_THREADS": str(threads)}
        subprocess.run([sys.executable, "-c", script, str(out)], check=True, env=env, timeout=300)
        runs.append(EnsembleRun.load(out))
    _same(*runs)


def test_cli_train(tmp_path):
    from fpkit.cli import main

    cfg = tmp_path / "c.toml"
    cfg.write_text(textwrap.dedent(
        """
        seed = 3
        [model]
        hidden = [2, 2]
        [data]
        kind = "gaussian"
        d = 4
        n = 32
        [train]
        members = 10
        steps = 20
        snapshots = 5
        """
    ))  # fmt: skip
    out = tmp_path / "o.h5"
    assert main(["train", str(cfg), "-o", str(out)]) == 0
    run = EnsembleRun.load(out)
    assert run.members == 10 and run.config["seed"] == 3
    assert main(["train", str(cfg), "-o", str(out), "--resume"]) == 0  # complete already: nothing to do
    cfg.write_text("[train]\nlearning_rate = 0.1\n")
    assert main(["train", str(cfg), "-o", str(out)]) == 2


# --------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"k": 5}, "k = 5"),
        ({"k": 6}, "smaller than the data"),
        ({"lr": 0.0}, "train.lr"),
        ({"lr": -0.1}, "train.lr"),
        ({"batch_size": 30, "sampling": "epochs"}, "batch_size"),
        ({"batch_size": 30, "sampling": "distinct"}, "larger than the data set"),
        ({"optimizer": "svag", "svag_l": 0}, "svag_l"),
        ({"optimizer": "svag", "svag_l": 1.5}, "svag_l"),
        ({"activation": "sigmoid"}, "model.activation"),
        ({"optimizer": "adam"}, "train.optimizer"),
        ({"sampling": "random"}, "train.sampling"),
        ({"learning_rate": 0.1}, "learning_rate"),
        ({"optimizer": "sgld"}, "temperature"),
        ({"temperature": 1.0}, "temperature"),
        ({"momentum": 1.0}, "momentum"),
        ({"members": 0}, "members"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        small(**kwargs)


def test_bad_config_sections():
    with pytest.raises(ConfigError, match="train.eta: unknown key"):
        Ensemble({"train": {"eta": 0.1}})
    with pytest.raises(ConfigError, match="optimiser"):
        Ensemble({"optimiser": {}})
    with pytest.raises(ConfigError, match="data.kind"):
        Ensemble(data={"kind": "imagenet"})
    with pytest.raises(ConfigError, match="unknown key"):
        Ensemble(data={"kind": "gaussian", "dims": 3})
    with pytest.raises(ConfigError, match="needs targets"):
        Ensemble(model="regression", data={"kind": "gaussian", "d": 3})
    with pytest.raises(ConfigError, match="`y`"):
        arrays(np.zeros((4, 2)), np.zeros(3))
    with pytest.raises(ConfigError, match="resume"):
        small().train(resume=True)


# ------------------------------------------------------------------------------------------------ Yaida
def _yaida(members, snaps):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(16, 4)) * np.array([1.2, 0.8, 0.5, 0.3])
    eta = 0.2
    ens = Ensemble(data=arrays(x), k=2, activation="tanh", lr=eta, batch_size=1, weight_decay=0.1,
                   members=members, snapshot_steps=snaps, seed=5, probes=0)  # fmt: skip
    run = ens.train()
    th, g, gv = run.flat("weights"), run.flat("grad"), run.flat("grad_var")
    for j in range(len(snaps)):
        lhs = (th[j] * g[j]).sum(axis=1)  # θ·∇(L + wd|θ|²/2)
        rhs = 0.5 * eta * ((g[j] ** 2).sum(axis=1) + gv[j].sum(axis=1))  # (η/2) E|g_B|²
        se = (lhs - rhs).std() / np.sqrt(members)
        assert abs((lhs - rhs).mean()) <= 4 * se, (j, lhs.mean(), rhs.mean(), se)
        assert abs(lhs.mean() - 2 * rhs.mean()) > 8 * se  # η instead of η/2 would fail clearly


def test_yaida_fdr_autoencoder():
    """Multi-dimensional FDR E[θ·∇L] = (η/2) E|g_B|² on a tanh 4→2→2→4 autoencoder with weight decay
    (wd = 0.1, η = 0.2: relaxation in ~1/(η wd) = 50 steps; snapshots at 1500 and 2000 steps)."""
    _yaida(4000, [1500, 2000])


@pytest.mark.slow
def test_yaida_fdr_autoencoder_large():
    _yaida(40_000, [1500, 2000, 2500, 3000])


@pytest.mark.slow
def test_float32_option():
    """dtype = float32 runs the same kernels on float32 parameters; close to float64 over a short run."""
    a = small(members=9, steps=10, snapshots=3).train()
    b = small(members=9, steps=10, snapshots=3, dtype="float32").train()
    np.testing.assert_allclose(a.flat("weights"), b.flat("weights"), rtol=0, atol=1e-5)
