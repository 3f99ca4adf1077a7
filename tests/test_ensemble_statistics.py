"""The ensemble's recorded gradient statistics against independent references (issue 23).

``grad_var`` is the variance of the minibatch-mean gradient, ``(⟨g²⟩ − ⟨g⟩²)·factor`` with a factor per
sampling scheme (fpkit/ensemble.py): iid ``1/B``; distinct and reshuffled epochs ``(n − B)/(B(n − 1))`` (a
batch is a uniform B-subset: finite-population correction); online ``n_e/(n_e − 1)/B`` (unbiased variance
over the fixed evaluation sample). Here the variance is recomputed (i) exactly, by enumerating every possible
minibatch with the test suite's own numpy backprop, and (ii) by Monte Carlo over the sampler's actual first
step. ``hess_grad`` (H·∇L) is checked against ½∇|∇L|² by central differences (the identity behind the
second-order drift −(η/2)E[H∇L | w] = −(η/4)∂|∇L|²). The data are axis-aligned (``rotate = false``, the
experiment's default), which the older ensemble tests never used.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from test_ensemble import np_loss_grad

from fpkit.data import arrays, make_dataset
from fpkit.ensemble import Ensemble

D_IN = 5
SPECTRUM = [1.5**2, 1.0, 0.7**2, 0.4**2, 0.2**2]


def _axis_aligned(n, seed=11):
    ds = make_dataset({"kind": "gaussian", "d": D_IN, "n": n, "spectrum": SPECTRUM, "rotate": False}, seed)
    return ds.x


def _exact_minibatch_variance(ens, theta_m, X, B, sampling):
    """Variance of the minibatch-mean gradient over every equally likely minibatch (exact enumeration)."""
    n = X.shape[0]
    if sampling == "iid":
        batches = itertools.product(range(n), repeat=B)  # ordered tuples with replacement, n^B
    else:
        batches = itertools.combinations(range(n), B)  # uniform B-subsets
    G = np.array([np_loss_grad(ens, theta_m, X[list(b)], X[list(b)])[1] for b in batches])
    return G.var(axis=0)


@pytest.mark.parametrize("sampling, n, B", [("iid", 7, 3), ("distinct", 8, 3), ("epochs", 9, 3), ("distinct", 6, 6)])
def test_grad_var_equals_the_exact_variance_over_all_minibatches(sampling, n, B):
    """Relative agreement ≤ 1e-10 (measured ~1e-15; both are exact formulas in float64). Distinct with B = n
    has zero variance (every batch is the whole set)."""
    X = _axis_aligned(n)
    ens = Ensemble(data=arrays(X), k=2, members=3, steps=2, snapshots=2, lr=0.05, batch_size=B, seed=4,
                   sampling=sampling)  # fmt: skip
    theta = ens.initial_state()["theta"]
    stats = ens.statistics(theta)
    for m in range(theta.shape[1]):
        exact = _exact_minibatch_variance(ens, theta[:, m], X, B, sampling)
        np.testing.assert_allclose(stats["grad_var"][:, m], exact, rtol=1e-10, atol=1e-14 * exact.max())
    if B == n:
        assert np.all(stats["grad_var"] == 0.0)


def test_online_grad_var_is_the_unbiased_per_sample_variance_over_b():
    """Online data: fresh iid samples every step; the recorded variance is the unbiased (ddof = 1) variance
    of the per-sample gradient over the fixed evaluation sample, divided by B. With n_eval = 10 the ddof
    matters by 11 %; agreement asserted to 1e-10."""
    ens = Ensemble(data={"kind": "gaussian", "d": D_IN, "online": True, "n_eval": 10, "spectrum": SPECTRUM,
                         "rotate": False}, k=2, members=3, steps=2, snapshots=2, lr=0.05, batch_size=4, seed=4)  # fmt: skip
    X = ens.dataset.x_eval
    theta = ens.initial_state()["theta"]
    stats = ens.statistics(theta)
    for m in range(3):
        G = np.array([np_loss_grad(ens, theta[:, m], X[i : i + 1], X[i : i + 1])[1] for i in range(10)])
        np.testing.assert_allclose(stats["grad_var"][:, m], G.var(axis=0, ddof=1) / 4, rtol=1e-10)


@pytest.mark.parametrize("sampling, n", [("iid", 8), ("distinct", 8), ("epochs", 9)])
def test_first_sgd_step_spread_matches_grad_var_by_monte_carlo(sampling, n):
    """The sampler itself: 4000 members from one shared initialisation take one SGD step (η = 0.01); the
    spread of (θ₁ − θ₀)/η across members is the minibatch-mean gradient's variance, which the run records
    as grad_var at snapshot 0. Per parameter, z = (sample variance − grad_var)/SE with SE² = (m₄ − s⁴)/M
    (the sample variance's standard error, fourth moment estimated); 24 parameters (those with nonzero
    variance), |z| < 4.5 each: false-alarm rate ≤ 24 × 6.8e-6 ≈ 2e-4 per case (≈ 1e-3 allowing for the
    estimated SE), whatever the seed. The wrong factor (iid's 1/B for distinct, or the reverse: 5/7 vs 1 at
    n = 8, B = 3) is ≈ 10 SE off."""
    B, M, eta = 3, 4000, 0.01
    X = _axis_aligned(n)
    run = Ensemble(data=arrays(X), k=2, members=M, steps=1, snapshots=2, lr=eta, batch_size=B, seed=2,
                   same_init=True, sampling=sampling, optimizer="sgd").train()  # fmt: skip
    w = run.flat("weights")
    step = (w[1] - w[0]) / eta  # (M, P) = −g_B
    gv = run.flat("grad_var")[0]  # (M, P), identical across members (same θ₀)
    assert np.all(gv == gv[:1])
    dev = step - step.mean(axis=0)
    s2 = (dev**2).mean(axis=0)
    se = np.sqrt(((dev**4).mean(axis=0) - s2**2) / M)
    live = gv[0] > 1e-12
    assert live.sum() >= 20
    z = (s2 * M / (M - 1) - gv[0])[live] / se[live]
    assert np.abs(z).max() < 4.5, z


def test_hess_grad_is_half_the_gradient_of_the_squared_gradient_norm():
    """∂_j |∇L|² = 2 (H∇L)_j, the identity behind the second-order drift correction, on the ensemble's own
    recorded hess_grad: central differences (step 1e-5) of |∇L|² from full-batch gradients. The forward-
    difference H·v the library uses is accurate to ~1e-7 relative (its docstring); asserted to 1e-5 relative
    to the largest entry. Weight decay 0.03 enters both sides (∇L includes wd·θ)."""
    X = _axis_aligned(12)
    wd = 0.03
    ens = Ensemble(data=arrays(X), k=2, members=3, steps=2, snapshots=2, lr=0.05, batch_size=4, seed=5,
                   activation="tanh", weight_decay=wd)  # fmt: skip
    theta = ens.initial_state()["theta"]
    stats = ens.statistics(theta)

    def sqnorm(th):
        g = ens.full_gradient(th)[0] + wd * th
        return (g * g).sum(axis=0)

    P = theta.shape[0]
    fd = np.empty_like(theta)
    for p in range(P):
        e = np.zeros((P, 1))
        e[p] = 1e-5
        fd[p] = (sqnorm(theta + e) - sqnorm(theta - e)) / 2e-5
    scale = np.abs(fd).max(axis=0)
    assert np.all(np.abs(stats["hess_grad"] - 0.5 * fd) < 1e-5 * scale), np.abs(stats["hess_grad"] - 0.5 * fd).max()
    assert np.all(scale > 1e-3)  # a non-trivial check
