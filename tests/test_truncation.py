"""Exact references of the ``truncation`` experiment (issue 20, item 1): the toy flow dθ/dt = (n_tr/N)(ȳ − θ)
trained by fpkit.Ensemble, its SGD Ornstein-Uhlenbeck floor D/κ, and the cluster geometry of ReLU layers."""

import numpy as np
import pytest

from fpkit.network import forward
from fpkit.validation.experiments import truncation as tr


def _toy(fraction=0.25, n=16, optimizer="gd", lr=0.05, B=1, members=8, t_end=20.0, seed=0):
    ds, n_tr, ybar, v = tr.toy_dataset(n, fraction, 2.0, 1.0, seed)
    run = tr.toy_train(ds, optimizer=optimizer, lr=lr, batch_size=B, members=members, t_end=t_end, snapshots=15,
                       seed=seed, show_progress=False)  # fmt: skip
    return run, n_tr / n, ybar, v


@pytest.mark.parametrize("fraction", [0.25, 0.75])
def test_toy_gd_is_the_exact_flow(fraction):
    """GD on the toy: θ_k − ȳ = (1 − ηκ)^k (θ_0 − ȳ) per member, κ = n_tr/N, so the fitted rate is
    −ln(1 − ηκ)/η (→ n_tr/N as η → 0)."""
    run, kappa, ybar, _ = _toy(fraction)
    th = run.weights["W1"][:, :, 0, 0]
    exact = (1 - run.eta * kappa) ** run.step[:, None] * (th[0] - ybar)
    np.testing.assert_allclose(th - ybar, exact, rtol=1e-9, atol=1e-12)
    r = np.mean((th - ybar) ** 2, axis=1)
    assert tr.decay_rate(run.t, r) == pytest.approx(-np.log1p(-run.eta * kappa) / run.eta, rel=1e-7)
    # the recorded full-batch gradient is κ(θ − ȳ) exactly
    np.testing.assert_allclose(run.grad["W1"][:, :, 0, 0], kappa * (th - ybar), atol=1e-12)


def test_toy_sgd_floor_is_the_ou_floor():
    """SGD (iid batches of B): the residual spread saturates at D/κ = ηv/(2B), within 4 standard errors of
    the ensemble; the O(η) exact discrete floor is inside the same band."""
    lr, B = 0.02, 2
    run, kappa, ybar, v = _toy(0.5, optimizer="sgd", lr=lr, B=B, members=4000, t_end=20.0, seed=3)
    dev2 = (run.weights["W1"][-1, :, 0, 0] - ybar) ** 2
    se = dev2.std(ddof=1) / np.sqrt(dev2.size)
    floor = tr.ou_floor(lr, B, v)
    assert floor == pytest.approx(0.5 * lr * kappa * v / B / kappa)
    assert abs(dev2.mean() - floor) <= 4 * se
    assert abs(tr.exact_floor(lr, B, v, kappa) - floor) <= se
    # the recorded minibatch variance at θ = ȳ is κv/B (D = η/2 of it)
    gv = run.grad_var["W1"][-1, :, 0, 0]
    th = run.weights["W1"][-1, :, 0, 0]
    np.testing.assert_allclose(gv, (kappa * v + kappa * (1 - kappa) * (th - ybar) ** 2) / B, rtol=1e-9)


def test_toy_fp_prediction_of_theta():
    run, kappa, ybar, v = _toy(0.5, optimizer="sgd", lr=0.05, B=2, members=1500, t_end=15.0, seed=1)
    fp = tr.toy_fp(run, 0.05, cells=200, dt=0.05)
    assert fp.kappa == pytest.approx(kappa, rel=1e-9) and fp.theta_star == pytest.approx(ybar, rel=1e-9)
    assert fp.d0 == pytest.approx(0.05 / 2 * kappa * v / 2, rel=1e-6)
    assert fp.w1_over_floor[-1] < 3.0 and fp.frozen_over_floor[-1] > 20


def test_cluster_geometry_by_hand():
    """S_W, S_B and the truncated fraction of a planted two-layer ReLU network against a direct loop."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 3))
    labels = np.repeat(np.arange(3), 4)
    w = {"W1": rng.standard_normal((2, 5, 3)), "b1": rng.standard_normal((2, 5)), "W2": rng.standard_normal((2, 3, 5)),
         "b2": rng.standard_normal((2, 3))}  # fmt: skip
    sw, sb, trunc = tr.cluster_geometry(w, x, labels)
    for m in range(2):
        h = np.maximum(x @ w["W1"][m].T + w["b1"][m], 0)
        out = h @ w["W2"][m].T + w["b2"][m]
        for ell, rep in enumerate([h, out]):
            mus = np.array([rep[labels == c].mean(0) for c in range(3)])
            for c in range(3):
                assert sw[m, ell, c] == pytest.approx(np.mean(np.sum((rep[labels == c] - mus[c]) ** 2, 1)))
            assert sb[m, ell] == pytest.approx(np.mean(np.sum((mus - mus.mean(0)) ** 2, 1)))
        for c in range(3):
            z = x[labels == c] @ w["W1"][m].T + w["b1"][m]
            assert trunc[m, 0, c] == pytest.approx(np.sum(z <= 0) / 5 / 12)
    # forward handles the mlp layout with biases (one more check of the shapes)
    assert [a.shape for a in forward(w, x, "relu")] == [(2, 12, 3), (2, 12, 5), (2, 12, 3)]


def test_rate_points_recover_planted_rates():
    """Per-member late rates: spreads S_W = e^{−2 r t} with r = 3·(n_tr/N) give slope 3 exactly."""
    t = np.linspace(0, 10, 12)
    f = np.random.default_rng(1).uniform(0.05, 0.2, (5, 2, 3))  # (M, H, C)
    sw = np.exp(-2 * (3 * f)[None] * t[:, None, None, None])
    sw = np.concatenate([sw, np.ones((12, 5, 1, 3))], axis=2)  # the output layer (not fitted)
    net = tr.NetRun("GD", "gd", 0.1, 1, t, sw, np.ones((12, 5, 3)), np.broadcast_to(f, (12, 5, 2, 3)).copy(),
                    np.zeros((12, 5)))  # fmt: skip
    p = tr.rate_points(net)
    np.testing.assert_allclose(p["rate"], 3 * p["f"], rtol=1e-10)
    assert tr.linear_fit(p["f"], p["rate"])[0] == pytest.approx(3.0)


def test_late_floor_and_slope_of_planted_spreads():
    """Output-layer spreads S_W = a·t^(−α) give the late log-log slope −α exactly; a constant S_W (a floor)
    gives slope 0 and its value as the late floor; the exponent of floors c·(η/B)^1 is 1."""
    t = np.r_[0.0, np.geomspace(1, 1000, 20)]
    ones = np.ones((21, 6, 3))

    def net(sw_out, lr=0.1, B=1, label="GD"):
        sw = np.stack([ones, sw_out[:, None, None] * ones], 2)  # (S, M, L = 2, C)
        return tr.NetRun(label, "sgd", lr, B, t, sw, np.ones((21, 6, 2)), np.zeros((21, 6, 1, 3)), np.zeros((21, 6)))

    pw = net(np.r_[1.0, 2.0 * t[1:] ** -0.7])
    assert tr.late_slope(pw, 0.5) == pytest.approx(-0.7, rel=1e-10)
    flat = net(np.full(21, 3e-4))
    assert tr.late_slope(flat, 0.5) == pytest.approx(0.0, abs=1e-10)
    assert tr.late_floor(flat, 0.5) == pytest.approx(3e-4, rel=1e-12)
    runs = [pw] + [net(np.full(21, 0.01 * lr / B), lr, B, f"SGD {lr} {B}") for lr, B in [(0.1, 1), (0.1, 4), (0.05, 1)]]
    st = tr.floor_stats(runs, 0.5, 10, 0)
    assert st["exponent"] == pytest.approx(1.0, rel=1e-10) and st["exponent_se"] < 1e-10
    held = {c.name: c.held for c in tr.floor_claims("x", st, "GD")}
    assert held["network SGD floor (x)"] is False  # GD's power law sits above the small floors at late t
    assert held["network SGD saturates (x)"] and held["network floor ∝ η/B (x)"]


def test_conflicting_targets_keep_the_least_squares_fit():
    """Each point twice with targets y ± ε: the pair's mean is y, so any fit's loss is that of y plus the
    irreducible mean ε²/2 per output: the minimum keeps per-sample residuals ±ε (the toy's v > 0)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((10, 3)), np.eye(2)[rng.integers(0, 2, 10)]
    x2, y2 = tr.conflicting_targets(x, y, None, 0.3, seed=1)
    np.testing.assert_array_equal(x2, np.r_[x, x])
    np.testing.assert_allclose(0.5 * (y2[:10] + y2[10:]), y, atol=1e-15)
    eps = y2[:10] - y
    f = y + 0.1 * rng.standard_normal(y.shape)  # any prediction on the 10 points
    loss2 = 0.5 * np.mean(np.sum((np.r_[f, f] - y2) ** 2, 1))
    assert loss2 == pytest.approx(0.5 * np.mean(np.sum((f - y) ** 2, 1)) + 0.5 * np.mean(np.sum(eps**2, 1)))


def test_quick_run_verdict_has_numbers(tmp_path):
    """The quick experiment end to end (small overrides): every exact-reference claim holds."""
    from fpkit import experiments

    over = {"toy": {"fractions": [0.25, 0.5], "sgd_members": 400, "gd_members": 4, "t_end": 15.0, "sgd_t_end": 10.0},
            "network": {"members": 12, "t_end": 20.0, "bootstrap": 10, "floor_members": 8}}  # fmt: skip
    out = experiments.run("truncation", quick=True, overrides=over, out=tmp_path, show_progress=False)
    held = {c.name: c.held for c in out.verdict.claims}
    assert held["toy rate"] and held["toy slope"] and held["toy FP"]
    assert (tmp_path / "report.md").read_text().count("±") >= 5
    assert {"toy.png", "toy_fp.png", "network.png", "results.h5"} <= {p.name for p in tmp_path.iterdir()}
