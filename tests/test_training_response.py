"""The training-response experiment (issue 19, item 2): exact references for the one-step response, the NTK,
the effective rank and the fragility, and the analysis functions on hand-made numbers with known answers.

* One-layer linear model f = w·x: the response kernel R(x, x′) = x·x′ exactly (and the NTK too), at every
  waiting time of a trained ensemble.
* δf − η_p Θ = O(η_p²): the residual of the one-step response against η_p·NTK falls 4× when η_p halves.
* The participation ratio of features with known covariance eigenvalues, and the fragility of a linear model
  (quadratic loss: L(w + δ) − L(w) = δ·∇L + ½ δᵀHδ exactly).
"""

import numpy as np
import pytest

from fpkit import experiments as X
from fpkit.network import forward
from fpkit.validation.experiments import training_response as T

EXP = X.load("training-response")


def quick_cfg(**over):
    return X.resolve_config(EXP, quick=True, overrides=over or None)


def random_mlp(M, sizes, seed, bias=False):
    rng = np.random.default_rng(seed)
    w = {f"W{l + 1}": rng.standard_normal((M, sizes[l + 1], sizes[l])) / np.sqrt(sizes[l]) for l in range(len(sizes) - 1)}
    if bias:
        w.update({f"b{l + 1}": 0.3 * rng.standard_normal((M, sizes[l + 1])) for l in range(len(sizes) - 1)})
    return w


def test_one_layer_linear_response_is_x_dot_x_at_every_waiting_time():
    cfg = quick_cfg(train={"steps": 200, "members": 16})
    data = T.problem_data(cfg)
    ens = T.ensemble(cfg, data, activation="linear", method="sgd", hidden=[])
    run = ens.train(show_progress=False)
    x, Kp = data["x_resp"], cfg["problem"]["n_probes"]
    exact = x @ x.T
    assert run.t.size >= 8 and np.ptp(run.weights["W1"], axis=0).max() > 0.01  # the weights moved
    for s in range(run.t.size):
        w = {k: v[s] for k, v in run.weights.items()}
        R = T.response(w, x, Kp, "linear", 1e-3)
        _, J = T.jacobian(w, x, "linear")
        np.testing.assert_allclose(R, np.broadcast_to(exact[:, :Kp], R.shape), rtol=0, atol=1e-9 * np.abs(exact).max())
        np.testing.assert_allclose(np.einsum("mip,mjp->mij", J, J), np.broadcast_to(exact, (R.shape[0],) + exact.shape),
                                   rtol=0, atol=1e-12 * np.abs(exact).max())  # fmt: skip


@pytest.mark.parametrize("activation,bias", [("tanh", False), ("relu", True), ("tanh", True)])
def test_one_step_response_is_eta_ntk_to_second_order(activation, bias):
    """δf − η Θ = O(η²) for a 3-layer network: q = log₂(r(η)/r(η/2)) + 1 = 2 (median over members)."""
    w = random_mlp(12, [5, 7, 6, 1], seed=3, bias=bias)
    x = np.random.default_rng(4).standard_normal((9, 5))
    _, J = T.jacobian(w, x, activation)
    ntk = np.einsum("mip,mjp->mij", J, J)[:, :, :3]
    eta = 1e-3
    r1 = np.abs(T.response(w, x, 3, activation, eta) - ntk).max(axis=(1, 2))
    r2 = np.abs(T.response(w, x, 3, activation, eta / 2) - ntk).max(axis=(1, 2))
    q = np.log2(r1 / r2) + 1
    assert np.all(r1 > 0) and abs(np.median(q) - 2) < 0.05, q


def test_jacobian_against_central_differences():
    w = random_mlp(3, [4, 5, 1], seed=5, bias=True)
    x = np.random.default_rng(6).standard_normal((6, 4))
    f, J = T.jacobian(w, x, "tanh")
    theta = T.flatten(w)
    h = 1e-6
    for p in (0, 7, theta.shape[1] - 1):
        e = np.zeros_like(theta)
        e[:, p] = h
        fp = forward(T.unflatten(theta + e, w), x, "tanh")[-1][..., 0]
        fm = forward(T.unflatten(theta - e, w), x, "tanh")[-1][..., 0]
        np.testing.assert_allclose(J[:, :, p], (fp - fm) / (2 * h), rtol=1e-7, atol=1e-9)


def test_participation_ratio_of_known_spectrum():
    # columns orthogonal over the n inputs, centred, with variances 4, 1, 1, 0: PR = 6² / 18 = 2
    rng = np.random.default_rng(0)
    c = np.ones(40) / np.sqrt(40)  # orthonormal columns orthogonal to the constant: centred exactly
    B = np.linalg.qr(np.column_stack([c, rng.standard_normal((40, 4))]))[0][:, 1:]
    h = B * np.sqrt(40 * np.array([4.0, 1.0, 1.0, 0.0]))
    pr = T.participation_ratio(h[None] + 3.0)  # a common offset changes nothing
    np.testing.assert_allclose(pr, [2.0], rtol=1e-12)


def test_fragility_of_a_linear_model_is_the_quadratic_form():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((30, 4)), rng.standard_normal(30)
    w = {"W1": rng.standard_normal((5, 1, 4))}
    dirs = T.perturbations(4, 6, 0.1, seed=2)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 0.1 * 2.0, rtol=1e-14)
    beta = w["W1"][:, 0, :]
    grad = ((beta @ x.T - y) @ x) / 30  # ∇ of ½ mean (w·x − y)²
    H = x.T @ x / 30
    exact = np.mean(dirs @ grad.T + 0.5 * np.einsum("kp,pq,kq->k", dirs, H, dirs)[:, None], axis=0)
    np.testing.assert_allclose(T.fragility(w, x, y, "linear", dirs), exact, rtol=1e-10)


def _setting(A_t, M=64, noise=0.02, seed=0, shape_drift=0.0):
    """A hand-made Setting: amplitudes A(t) (S,) with multiplicative member noise and a fixed kernel shape."""
    rng = np.random.default_rng(seed)
    S, K, Kp = A_t.size, 6, 2
    base = np.eye(K)[:, :Kp] + 0.3
    R = np.empty((S, M, K, Kp))
    for s in range(S):
        shape = base + shape_drift * s * np.eye(K)[:, ::-1][:, :Kp]
        R[s] = A_t[s] * (1 + noise * rng.standard_normal((M, 1, 1))) * shape / np.diag(shape[:Kp]).mean()
    z = np.zeros((S, M))
    t = np.concatenate([[0.0], np.logspace(-1, 2, S - 1)])
    return T.Setting("tanh", "gd", t, np.rint(t / 0.1).astype(int), z + 1, R, np.zeros((S, M, K, K)), z, z,
                     np.zeros((1, M)), t[:1])  # fmt: skip


def test_aging_recovers_a_power_law_and_a_constant():
    cfg = quick_cfg(probe={"fit_from": 1, "n_boot": 100})
    t = np.concatenate([[0.0], np.logspace(-1, 2, 15)])
    pl = T.aging(cfg, _setting(np.where(t > 0, 5 * np.maximum(t, 1e-9) ** -0.3, 5.0)))
    assert pl["model"] == "power law" and pl["a_ci"][0] < 0.3 < pl["a_ci"][1] and abs(pl["a"] - 0.3) < 0.01
    flat = T.aging(cfg, _setting(np.full(t.size, 5.0)))
    assert flat["model"] == "constant" and abs(flat["a"]) < 0.01
    slight = T.aging(cfg, _setting(5 * np.maximum(t, 0.1) ** -0.003))  # a 2 % drift over three decades
    assert slight["model"] == "constant" and slight["span"] < np.log(1.05)
    curved = T.aging(cfg, _setting(5 * np.exp(-0.2 * np.log(np.maximum(t, 1e-9)) ** 2)))
    assert curved["model"] == "neither"


def test_shape_collapse_distance():
    cfg = quick_cfg(probe={"fit_from": 1, "n_boot": 50})
    t = np.concatenate([[0.0], np.logspace(-1, 2, 9)])
    same = T.collapse(cfg, _setting(5 * np.maximum(t, 0.1) ** -0.5, noise=0.0))
    assert same["max"] < 1e-12 and same["amp_change"] > 1  # the amplitude changes, the shape does not
    moved = T.collapse(cfg, _setting(np.full(t.size, 5.0), noise=0.0, shape_drift=0.1))
    assert moved["max"] > 0.1


def test_rank_at_equal_loss_interpolates_in_log_loss():
    z = np.zeros((4, 8))
    loss_gd = np.array([1.0, 0.1, 0.01, 0.001])[:, None] + z
    loss_sgd = np.array([1.0, 0.1, 0.02, 0.01])[:, None] + z  # reaches 0.01 last: the matched loss
    gd = T.Setting("tanh", "gd", np.arange(4.0), np.arange(4), loss_gd, None, None,
                   np.array([8.0, 7.0, 6.0, 5.0])[:, None] + z, z, z[:1], np.arange(1.0))  # fmt: skip
    sgd = T.Setting("tanh", "sgd", np.arange(4.0), np.arange(4), loss_sgd, None, None,
                    np.array([8.0, 6.0, 5.0, 4.0])[:, None] + z, z, z[:1], np.arange(1.0))  # fmt: skip
    rk = T.rank_at_equal_loss(gd, sgd, n_boot=20)
    assert rk["target_loss"] == 0.01 and rk["pr_gd"] == 6.0 and rk["pr_other"] == 4.0 and rk["delta"] == -2.0
    # between snapshots: PR at loss 10^-1.5 is halfway (in log loss) from 7 to 6
    assert T._at_loss(loss_gd[:, 0], gd.rank[:, 0], 10**-1.5) == pytest.approx(6.5, rel=1e-12)


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = X.run("training-response", quick=True, out=tmp_path)
    by = {c.name: c for c in out.verdict.claims}
    assert by["one-layer linear R = x·x′"].held
    assert all(c.held for n, c in by.items() if n.startswith("R = Θ + O(η_p)"))
    assert by["drift-only exact (tanh gd)"].held  # no noise: the drift-only transport is exact to the floor
    assert {"no silent FP failure (tanh sgd)", "FP prediction of the weight histograms (tanh sgld)"} <= set(by)
    text = (tmp_path / "report.md").read_text()
    assert "## Verdict" in text and (tmp_path / "aging.png").exists() and (tmp_path / "fp.png").exists()


def _pred(fp, verdict, route, drift_only=None):
    """A hand-made fpkit.predict result: W1/floor series (index 0: t = 0), diagnostics verdict and route."""
    from types import SimpleNamespace as NS

    fp = np.asarray(fp, float)
    dr = fp if drift_only is None else np.asarray(drift_only, float)
    return NS(distance={"fp": fp, "drift_only": dr, "frozen": np.full(fp.size, 6.0)}, options={"route": route},
              diagnostics={"verdict": verdict, "reasons": ["made by hand"]})  # fmt: skip


def test_fp_claims_on_hand_made_predictions():
    """Worst W1/floor over entries and snapshots after t = 0 (NaN of the Kramers-Moyal lag skipped); a miss
    (> 3 floors) is no silent failure when its diagnostics say doubtful/fails, and is one when they say holds;
    GD is judged by its drift-only transport."""
    res = T.Result(x=np.zeros((2, 2)), linear_error=np.zeros(1), linear_t=np.zeros(1))
    res.fp = {
        # everything within 3 floors (t = 0's 9.0 is the initial condition, not a prediction)
        ("tanh", "sgd"): {"route": {"W1[0,0]": _pred([9.0, 1.0, 2.5, np.nan], "holds", "kramers-moyal"),
                                    "W2[0,0]": _pred([0.0, 1.2, 3.0, 2.8], "holds", "mechanistic")},
                          "mechanistic": {"W1[0,0]": _pred([0.0, 1.0, 8.5, 8.4], "fails", "mechanistic")}},
        # the route taken misses by 3.4 flagged doubtful; the mechanistic one beside it misses by 4.0 saying holds
        ("tanh", "sgld"): {"route": {"W1[0,0]": _pred([0.0, 3.4, 1.0], "doubtful", "kramers-moyal"),
                                     "W2[0,0]": _pred([0.0, 0.5, 0.7], "holds", "mechanistic")},
                           "mechanistic": {"W1[0,0]": _pred([0.0, 4.0, 1.0], "holds", "mechanistic")}},
        ("tanh", "gd"): {"route": {"W1[0,0]": _pred([0.0, 0.9, 9.0], "holds", "mechanistic", [0.0, 0.8, 2.9]),
                                   "W2[0,0]": _pred([0.0, 0.9, 1.0], "holds", "mechanistic", [0.0, 3.5, 1.0])}},
    }  # fmt: skip
    by = {c.name: c for c in T.fp_claims(res)}
    assert len(by) == 5
    c = by["FP prediction of the weight histograms (tanh sgd)"]
    assert c.held and c.value["worst W1/floor"] == 3.0 and c.value["at"] == "W2[0,0]" and c.value["median"] == 2.5  # of 1.0, 2.5, 1.2, 3.0, 2.8
    assert c.value["routes"] == "kramers-moyal×1, mechanistic×1"
    c = by["no silent FP failure (tanh sgd)"]
    assert c.held and c.value["misses"] == 1 and c.value["flagged"] == 1
    c = by["FP prediction of the weight histograms (tanh sgld)"]
    assert not c.held and c.value["worst W1/floor"] == 3.4 and c.value["at"] == "W1[0,0]"
    c = by["no silent FP failure (tanh sgld)"]
    assert not c.held and (c.value["misses"], c.value["flagged"]) == (2, 1) and c.value["silent"] == "W1[0,0] (mechanistic) 4.0"
    c = by["drift-only exact (tanh gd)"]
    assert not c.held and c.value["worst W1/floor"] == 3.5 and c.value["at"] == "W2[0,0]"


def test_fp_ensembles_extend_the_measured_ones():
    """The FP angle trains fp.members members and measures the first train.members: member i's trajectory does
    not depend on the count (nor on recording statistics), so those are an ensemble of train.members exactly."""
    cfg = quick_cfg(train={"steps": 100})
    data = T.problem_data(cfg)
    for method in ("sgd", "sgld"):
        a = T.ensemble(cfg, data, activation="tanh", method=method, members=16).train(show_progress=False)
        b = T.ensemble(cfg, data, activation="tanh", method=method, members=40, statistics=True).train(show_progress=False)
        assert b.grad is not None and b.weights["W1"].shape[1] == 40
        for k in a.weights:
            np.testing.assert_array_equal(a.weights[k], b.weights[k][:, :16])


def test_fp_angle_needs_enough_members():
    from fpkit.errors import ConfigError

    with pytest.raises(ConfigError, match="members"):
        quick_cfg(fp={"members": 100})
