"""The lane kernels of the numba trainer on general MLPs: exact H·v (forward-over-reverse) against finite
differences and dense Hessians, λmax by Lanczos on it (issue 17, item 1)."""

from __future__ import annotations

import numpy as np
import pytest

from fpkit.ensemble import Ensemble
from fpkit.ensemble.spec import _Arch
from fpkit.solvers import autoencoder as ae

ACTS = {"linear": ae.ACT_LINEAR, "tanh": ae.ACT_TANH, "relu": ae.ACT_RELU}


def rel(a, b):
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def problem(sizes, bias, act, auto, M=11, n=13, scale=0.8, seed=0):
    rng = np.random.default_rng(seed)
    arch = _Arch.build(sizes, bias, ACTS[act])
    X = rng.normal(size=(n, sizes[0]))
    T = X if auto else rng.normal(size=(n, sizes[-1]))
    theta = scale * rng.normal(size=(arch.P, M))
    return arch, X, T, theta


def grad(arch, X, T, auto, theta):
    g, sq, loss = np.empty_like(theta), np.empty((1, 1)), np.empty(theta.shape[1])
    ae.data_gradient_serial(theta, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, False, g, sq, loss)
    return g


def hess_vec(arch, X, T, auto, theta, V, parallel=False):
    out = np.empty_like(theta)
    fn = ae.data_hess_vec if parallel else ae.data_hess_vec_serial
    fn(theta, V, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, out)
    return out


def fd_hess_vec(arch, X, T, auto, theta, V, eps=1e-3):
    """Central differences of the exact gradient, Richardson-extrapolated (error O(eps^4))."""

    def c(e):
        return (grad(arch, X, T, auto, theta + e * V) - grad(arch, X, T, auto, theta - e * V)) / (2 * e)

    return (4.0 * c(eps / 2) - c(eps)) / 3.0


@pytest.mark.parametrize("act", ["tanh", "linear"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("auto", [True, False])
def test_hess_vec_against_central_differences_for_smooth_activations(act, bias, auto):
    sizes = [5, 4, 3, 4, 5] if auto else [4, 6, 3, 2]
    arch, X, T, theta = problem(sizes, bias, act, auto)
    V = np.random.default_rng(1).normal(size=theta.shape)
    hv = hess_vec(arch, X, T, auto, theta, V)
    assert rel(hv, fd_hess_vec(arch, X, T, auto, theta, V)) < 1e-7
    assert np.array_equal(hv, hess_vec(arch, X, T, auto, theta, V, parallel=True))  # lanes and threads
    # linear in V, and columns are independent members (a member's result ignores the others' vectors)
    V2 = V.copy()
    V2[:, 1:] *= -3.0
    hv2 = hess_vec(arch, X, T, auto, theta, V2)
    assert np.array_equal(hv2[:, 0], hv[:, 0])
    assert rel(hv2[:, 1:], -3.0 * hv[:, 1:]) < 1e-14


def pre_activations(arch, X, theta_m):
    """Hidden pre-activations of one member for every sample (to keep finite differences off the kinks)."""
    p = arch.split(theta_m[None, :])
    h, zs = X.T, []
    L = len(arch.sizes) - 1
    for ell in range(L):
        z = p[f"W{ell + 1}"][0] @ h
        if f"b{ell + 1}" in p:
            z = z + p[f"b{ell + 1}"][0][:, None]
        if ell < L - 1:
            zs.append(z.ravel())
            h = np.maximum(z, 0.0)
    return np.concatenate(zs)


def dense_fd_hessian(arch, X, T, auto, theta, m, eps=1e-6):
    """The member's Hessian column by column from central differences of the exact gradient."""
    P = theta.shape[0]
    H = np.empty((P, P))
    th = np.repeat(theta[:, m : m + 1], 2 * P, axis=1)
    for p in range(P):
        th[p, 2 * p] += eps
        th[p, 2 * p + 1] -= eps
    g = grad(arch, X, T, auto, th)
    for p in range(P):
        H[:, p] = (g[:, 2 * p] - g[:, 2 * p + 1]) / (2 * eps)
    return 0.5 * (H + H.T)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("auto", [True, False])
def test_relu_hess_vec_equals_the_dense_hessian_away_from_kinks(bias, auto):
    """For relu the loss is piecewise polynomial: off the kinks a central difference of the exact gradient with
    a step below the distance to the nearest kink is the Hessian up to O(eps²) (no kink crossed)."""
    sizes = [5, 4, 3, 4, 5] if auto else [4, 6, 3, 2]
    arch, X, T, theta = problem(sizes, bias, "relu", auto, M=3)
    for m in range(theta.shape[1]):
        z = pre_activations(arch, X, theta[:, m])
        # off every kink by far more than the step; z = 0 exactly only where a whole layer below is dead for a
        # sample (no bias), and then it stays 0 under every small perturbation (no kink crossed either)
        assert np.abs(z[z != 0.0]).min() > 1e-4
        H = dense_fd_hessian(arch, X, T, auto, theta, m)
        E = np.eye(arch.P)
        Hk = hess_vec(arch, X, T, auto, np.repeat(theta[:, m : m + 1], arch.P, axis=1), E)
        assert rel(Hk, H) < 1e-7
        assert np.allclose(Hk, Hk.T, rtol=0, atol=1e-12 * np.abs(Hk).max())


def test_relu_on_the_kink_is_the_almost_everywhere_hessian():
    """A unit dead for every sample (weights and bias 0: z = 0 exactly, the kink) contributes the a.e. value:
    zero curvature through it, finite (the forward difference gave |Hv| ~ 1/step)."""
    arch, X, T, theta = problem([5, 4, 3, 4, 5], True, "relu", True, M=2)
    j = 1  # second unit of the first hidden layer: z = 0 for every sample
    row0 = arch.offsets[arch.names.index("W1")] + j * 5
    theta[row0 : row0 + 5] = 0.0
    theta[arch.offsets[arch.names.index("b1")] + j] = 0.0
    V = np.random.default_rng(2).normal(size=theta.shape)
    hv = hess_vec(arch, X, T, True, theta, V)
    assert np.all(np.isfinite(hv))
    # the dead unit's incoming weights get no curvature (their gradient is identically zero nearby on one side)
    assert np.all(hv[row0 : row0 + 5] == 0.0)


def test_trainer_statistics_use_the_exact_product_and_weight_decay():
    ens = Ensemble(d=6, k=3, activation="tanh", n=32, members=20, probes=3, weight_decay=0.01, seed=2,
                   lanczos_steps=64, kernels="generic")  # fmt: skip
    th = ens.initial_state()["theta"]
    s = ens.statistics(th)
    X, T, auto = ens._eval_data()
    hv = hess_vec(ens.arch, X, T, auto, th, s["grad"], parallel=True)
    assert np.array_equal(s["hess_grad"], hv + 0.01 * s["grad"])
    lam = s["lam_max"]
    for q in range(3):  # Lanczos with m = P steps: the dense Hessian's top eigenvalue up to rounding
        H = hess_vec(ens.arch, X, T, auto, np.repeat(th[:, q : q + 1], ens.arch.P, axis=1), np.eye(ens.arch.P))
        top = np.linalg.eigvalsh(0.5 * (H + H.T))[-1] + 0.01
        assert abs(lam[q] - top) < 1e-6 * top


def masked_relu_hessian(arch, X, T, th, eps=1e-5):
    """An autograd-free reference: numpy forward/backward of one member with the relu activation pattern of
    the base point held fixed (the a.e. Hessian's definition), differentiated by central differences. With
    the pattern fixed the gradient is a polynomial in the parameters, so the difference is exact to O(eps²)."""
    L = len(arch.sizes) - 1

    def unpack(flat):
        return {n: flat[o : o + int(np.prod(s))].reshape(s) for n, s, o in zip(arch.names, arch.shapes, arch.offsets)}

    def forward(flat, masks=None):
        p, hs, ms = unpack(flat), [X], []
        for ell in range(L):
            z = hs[-1] @ p[f"W{ell + 1}"].T + (p[f"b{ell + 1}"] if f"b{ell + 1}" in p else 0.0)
            if ell < L - 1:
                m = (z > 0.0) if masks is None else masks[ell]
                ms.append(m)
                z = np.where(m, z, 0.0)
            hs.append(z)
        return p, hs, ms

    masks = forward(th)[2]

    def gradient(flat):
        p, hs, _ = forward(flat, masks)
        g = {}
        d = (hs[-1] - T) / X.shape[0]
        for ell in range(L - 1, -1, -1):
            g[f"W{ell + 1}"] = d.T @ hs[ell]
            if f"b{ell + 1}" in p:
                g[f"b{ell + 1}"] = d.sum(axis=0)
            if ell > 0:
                d = np.where(masks[ell - 1], d @ p[f"W{ell + 1}"], 0.0)
        return np.concatenate([g[n].ravel() for n in arch.names])

    P = th.size
    H = np.empty((P, P))
    for q in range(P):
        e = np.zeros(P)
        e[q] = eps
        H[:, q] = (gradient(th + e) - gradient(th - e)) / (2 * eps)
    return 0.5 * (H + H.T)


def test_relu_lam_max_acceptance_issue_17():
    """ReLU 6 → 4 → 2 → 4 → 6 with biases, η = 0.05, B = 4 (issue 17): η·λmax finite and within 10 % of the
    dense Hessian's λmax on the probe members, at the start (biases 0: units on the kink, where the forward
    difference gave η·λmax ~ 10⁴–10⁵) and after 1500 steps (near the edge of stability). References: a numpy
    Hessian with the activation pattern held fixed (torch's autograd Hessian: the slow test below)."""
    cfg = {"model": {"hidden": [4, 2, 4], "activation": "relu", "bias": True},
           "data": {"kind": "gaussian", "d": 6, "n": 256, "ratio": 0.7},
           "train": {"lr": 0.05, "batch_size": 4, "members": 16, "probes": 4, "snapshot_steps": [0, 1500],
                     "kernels": "generic"}}  # fmt: skip
    ens = Ensemble(cfg, seed=0)
    run = ens.train()
    X, T, auto = ens._eval_data()
    P = ens.arch.P
    for j in range(2):
        for q in range(4):
            th = np.concatenate([run.weights[n][j, q].ravel() for n in ens.arch.names])  # offsets in order
            H = masked_relu_hessian(ens.arch, X, T, th)
            top = np.linalg.eigvalsh(H)[-1]
            assert np.isfinite(0.05 * run.lam_max[j, q])
            assert abs(run.lam_max[j, q] - top) <= 0.1 * abs(top), (j, q, run.lam_max[j, q], top)
            Hk = hess_vec(ens.arch, X, T, auto, np.repeat(th[:, None], P, axis=1), np.eye(P))
            assert rel(Hk, H) < 1e-8


@pytest.mark.slow
def test_relu_hessian_against_torch_autograd():
    """The same a.e. Hessian from torch.func.hessian (reverse over reverse) on kinks and off them."""
    torch = pytest.importorskip("torch")
    arch, X, T, theta = problem([6, 4, 2, 4, 6], True, "relu", True, M=2, n=64)
    theta[arch.offsets[arch.names.index("b1")] :] = 0.0  # biases 0, and a dead unit: z = 0 exactly
    theta[0:6, 1] = 0.0
    for m in range(2):
        th = theta[:, m]
        Hk = hess_vec(arch, X, T, True, np.repeat(th[:, None], arch.P, axis=1), np.eye(arch.P))
        assert rel(Hk, torch_hessian(torch, arch, X, T, th)) < 1e-12
        assert rel(Hk, masked_relu_hessian(arch, X, T, th)) < 1e-8


def torch_hessian(torch, arch, X, T, th):
    """The autograd Hessian (reverse over reverse) of the mean 0.5|out − target|² for relu layers."""
    Xt, Tt = torch.tensor(X), torch.tensor(T)
    L = len(arch.sizes) - 1

    def loss(flat):
        p = {n: flat[o : o + int(np.prod(s))].reshape(s) for n, s, o in zip(arch.names, arch.shapes, arch.offsets)}
        h = Xt
        for ell in range(L):
            h = h @ p[f"W{ell + 1}"].T
            if f"b{ell + 1}" in p:
                h = h + p[f"b{ell + 1}"]
            if ell < L - 1:
                h = torch.relu(h)
        return 0.5 * ((h - Tt) ** 2).sum(-1).mean()

    return torch.func.hessian(loss)(torch.tensor(th)).numpy()


@pytest.mark.slow
def test_specialised_hess_vec_is_bit_identical_to_the_generic_kernel():
    """The generated (per-architecture) H·v kernels keep the generic kernels' summation orders."""
    for sizes, bias, act, auto in [([6, 4, 2, 4, 6], True, "relu", True), ([4, 5, 3], False, "tanh", False)]:
        arch, X, T, theta = problem(sizes, bias, act, auto, M=19, n=23)
        V = np.random.default_rng(4).normal(size=theta.shape)
        k = ae.specialised(arch.sizes, arch.w_off, arch.b_off, arch.act)
        a = hess_vec(arch, X, T, auto, theta, V, parallel=True)
        for fn in (k.data_hess_vec, k.data_hess_vec_serial):
            b = np.empty_like(theta)
            fn(theta, V, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, b)
            assert np.array_equal(a, b)


# ------------------------------------------------------------------------------------------ general MLPs
def teacher_data(D=6, n=40, seed=0, **extra):
    return {"kind": "regression", "d": D, "n": n, "spectrum": "power", "alpha": 1.5, "noise": 0.1,
            "seed": seed, **extra}  # fmt: skip


def reference_gd(X, Y, thetas, a, act, lr_theta, steps):
    """Full-batch GD on θ for f = a_L θ_L φ(… φ(a_1 θ_1 x)) in plain numpy (no fpkit kernels)."""
    phi = {"linear": (lambda z: z, lambda z: np.ones_like(z)), "tanh": (np.tanh, lambda z: 1 - np.tanh(z) ** 2)}[act]
    th = [t.copy() for t in thetas]
    L = len(th)
    for _ in range(steps):
        hs, zs = [X.T], []
        for ell in range(L):
            z = a[ell] * th[ell] @ hs[-1]
            zs.append(z)
            hs.append(phi[0](z) if ell < L - 1 else z)
        d = (hs[-1] - Y.T) / X.shape[0]
        grads = [None] * L
        for ell in range(L - 1, -1, -1):
            grads[ell] = a[ell] * d @ hs[ell].T
            if ell > 0:
                d = (a[ell] * th[ell].T @ d) * phi[1](zs[ell - 1])
        for ell in range(L):
            th[ell] = th[ell] - lr_theta[ell] * grads[ell]
    return th


@pytest.mark.parametrize("param", ["standard", "ntk", "mup"])
@pytest.mark.parametrize("act", ["linear", "tanh"])
def test_width_parameterisations_equal_training_with_layer_multipliers(param, act):
    """W_l = a_l θ_l trained at rate η c on θ (the textbook form with multipliers) equals fpkit's stored W_l
    trained at the per-layer rates η c a_l² from init std a_l: same trajectories up to rounding."""
    g0, lr, hidden = 1.7, 0.05, [7, 5]
    ens = Ensemble(model="mlp", hidden=hidden, activation=act, parameterization=param, gamma0=g0,
                   optimizer="gd", lr=lr, members=3, snapshot_steps=[0, 25], statistics=False,
                   kernels="generic", data=teacher_data(), seed=1)  # fmt: skip
    run = ens.train()
    X, Y = ens.dataset.x, ens.dataset.y
    sizes = [6, *hidden, 1]
    if param == "standard":
        a, c = [1.0, 1.0, 1.0], 1.0
    else:
        a = [1 / np.sqrt(6), 1 / np.sqrt(7), 1 / (g0 * np.sqrt(5)) if param == "ntk" else 1 / (g0 * 5)]
        c = g0**2 if param == "ntk" else g0**2 * 5
    for m in range(3):
        W0 = [run.weights[f"W{ell + 1}"][0, m] for ell in range(3)]
        if param != "standard":  # θ ~ N(0, 1): the stored initial W_l has std a_l
            stds = [W0[ell].std() / a[ell] for ell in range(3)]
            assert 0.4 < min(stds) and max(stds) < 2.0
        th = reference_gd(X, Y, [W0[ell] / a[ell] for ell in range(3)], a, act, [lr * c] * 3, 25)
        for ell in range(3):
            assert np.allclose(a[ell] * th[ell], run.weights[f"W{ell + 1}"][1, m], rtol=0, atol=1e-12)
    assert ens.arch.sizes.tolist() == sizes


def test_one_layer_mlp_is_the_regression_model_and_classification_with_one_hot_targets():
    common = dict(lr=0.1, batch_size=4, members=16, snapshot_steps=[0, 50], seed=3, kernels="generic")
    a = Ensemble(model="mlp", hidden=[], data=teacher_data(), **common).train()
    b = Ensemble(model="regression", data=teacher_data(), **common).train()
    assert np.array_equal(a.weights["W1"], b.weights["W1"])
    from fpkit.data import arrays

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    labels = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0)
    run = Ensemble(model="mlp", hidden=[8], activation="relu", bias=True, data=arrays(x, np.eye(3)[labels]),
                   lr=0.2, batch_size=8, members=8, snapshot_steps=[0, 400], seed=0, kernels="generic").train()
    assert run.weights["W2"].shape[2:] == (3, 8)
    assert run.loss[-1].mean() < 0.6 * run.loss[0].mean()


def test_mlp_needs_targets_and_autoencoder_a_hidden_layer():
    from fpkit.errors import ConfigError

    with pytest.raises(ConfigError, match="needs targets"):
        Ensemble(model="mlp", hidden=[4])
    with pytest.raises(ConfigError, match="at least one width"):
        Ensemble(hidden=[])


# ------------------------------------------------------------------- sample groups (issue 21: one RMW per group)
@pytest.mark.parametrize("generated", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_group_kernels_sum_samples_in_order_bit_for_bit(generated):
    """The group kernels (GROUP samples per call, each gradient entry loaded and stored once per group) give
    exactly the gradient sums, per-sample second moments and activations of the one-sample kernels called
    sample after sample: same terms added in the same order (so training results stay bit-identical)."""
    for sizes, bias, act in [([6, 4, 2, 4, 6], True, "tanh"), ([5, 3, 4], False, "relu")]:
        arch = _Arch.build(sizes, bias, ACTS[act])
        k = ae.specialised(arch.sizes, arch.w_off, arch.b_off, arch.act) if generated else ae
        rng = np.random.default_rng(7)
        S, L, mw, W = ae.GROUP, len(sizes) - 1, max(sizes), ae.BLOCK
        nl = W - 1  # a partial lane: the lane loops run to nl only
        th = rng.normal(size=(arch.P, W))
        hs = np.zeros((S, L + 1, mw, W))
        hs[:, 0, : sizes[0]] = rng.normal(size=(S, sizes[0], W))
        ts = np.zeros((S, mw, W))
        ts[:, : sizes[-1]] = rng.normal(size=(S, sizes[-1], W))
        g0 = rng.normal(size=(arch.P, W))  # accumulate onto non-zero sums, as the drivers do across groups
        q0 = rng.random(size=(arch.P, W))
        ref_h = hs.copy()
        ref_g, ref_q, ref_s1 = g0.copy(), q0.copy(), g0.copy()
        dc, dp = np.zeros((mw, W)), np.zeros((mw, W))
        for s in range(S):
            k._forward(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, ref_h[s])
            k._backward(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, ref_h[s], ts[s], 0.25, ref_g, dc, dp)
            k._backward_sq(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, ref_h[s], ts[s], ref_s1, ref_q, dc, dp)
        g, q, s1 = g0.copy(), q0.copy(), g0.copy()
        ds, es = np.zeros((S, mw, W)), np.zeros((S, mw, W))
        k._forward_backward_s(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, hs, ts, False, 0.25, g, ds, es)
        k._backward_sq_s(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, hs, ts, False, s1, q, ds, es)
        assert np.array_equal(hs[..., :nl], ref_h[..., :nl])
        assert np.array_equal(g, ref_g) and np.array_equal(s1, ref_s1) and np.array_equal(q, ref_q)
        assert np.array_equal(g[:, nl:], g0[:, nl:])  # the lane beyond nl is not touched
        if sizes[0] == sizes[-1]:  # auto (an autoencoder): the targets are the inputs hs[:, 0]; ts is not read
            ag, aq, as1 = g0.copy(), q0.copy(), g0.copy()
            for s in range(S):
                tgt = ref_h[s, 0].copy()
                k._backward(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, ref_h[s], tgt, 0.25, ag, dc, dp)
                k._backward_sq(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, ref_h[s], tgt, as1, aq, dc, dp)
            g, q, s1, h2, nan = g0.copy(), q0.copy(), g0.copy(), hs.copy(), np.full_like(ts, np.nan)
            k._forward_backward_s(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, h2, nan, True, 0.25, g, ds, es)
            k._backward_sq_s(th, nl, arch.sizes, arch.w_off, arch.b_off, arch.act, h2, nan, True, s1, q, ds, es)
            assert not np.array_equal(ag, ref_g)  # the targets matter
            assert np.array_equal(g, ag) and np.array_equal(s1, as1) and np.array_equal(q, aq)
        # H·v (forward-over-reverse): the group kernels against the one-sample ones, sample after sample
        vt = rng.normal(size=(arch.P, W))
        a = (th, vt, nl, arch.sizes, arch.w_off, arch.b_off, arch.act)
        ref_h, ref_r, ref_hv, hv = hs.copy(), np.zeros_like(hs), g0.copy(), g0.copy()
        w4 = [np.zeros((mw, W)) for _ in range(4)]
        for s in range(S):
            k._forward_r(*a, ref_h[s], ref_r[s])
            k._backward_r(*a, ref_h[s], ref_r[s], ts[s], 0.25, ref_hv, *w4)
        rhs = np.zeros_like(hs)
        k._forward_r_s(*a, hs, rhs)
        k._backward_r_s(*a, hs, rhs, ts, 0.25, hv, *[np.zeros((S, mw, W)) for _ in range(4)])
        assert np.array_equal(rhs[..., :nl], ref_r[..., :nl]) and np.array_equal(hv, ref_hv)
