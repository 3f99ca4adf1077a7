"""Exact references of the ``order-preserving`` experiment (issue 20, item 2): the OPT/NPT census of linear and
planted ReLU networks, the sample-space basin radius of a linear classifier (margin / ‖w‖), the weight-space
radius of a quadratic loss (√(2(τ − L*)/uᵀHu)), modular addition, and the quick run end to end."""

import numpy as np
import pytest

import fpkit
from fpkit.data import arrays
from fpkit.validation.experiments import order_preserving as op


def test_linear_network_every_unit_is_opt():
    """A linear network (trained by fpkit.Ensemble) has no zero region: every hidden unit is OPT, none dead;
    the same weights read as ReLU have NPT units (the census is not trivially 1)."""
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 5)), rng.standard_normal((40, 3))
    cfg = {"seed": 1, "model": {"kind": "mlp", "hidden": [6, 4], "activation": "linear", "bias": True},
           "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 4, "members": 6, "steps": 50, "snapshots": 2,
                     "probes": 0, "statistics": False, "kernels": "generic"}}  # fmt: skip
    run = fpkit.Ensemble(cfg, data=arrays(x, y)).train(show_progress=False)
    w = {n: run.weights[n][-1] for n in run.names}
    opt, dead = op.census(w, x, "linear")
    assert opt.shape == (6, 2)
    np.testing.assert_array_equal(opt, 1.0)
    np.testing.assert_array_equal(dead, 0.0)
    assert op.census(w, x, "relu")[0].mean() < 1.0


def test_planted_relu_census_is_exact():
    """Layer 1: unit j computes x_j − c_j on samples x_ij ∈ {0, …, 9}, so it zeroes exactly the samples with
    x_ij ≤ c_j: c = −1 → OPT, c = 9 → dead (1000 zeros), c = 4 → NPT (500). Layer 2 reads h1_0 + h1_1 + h1_2 + 1
    (OPT), h1_0 − 3.5 = x_0 − 2.5 (NPT: 300 zeros), −h1_1 − 1 (dead) and h1_2 + 1 (OPT)."""
    x = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0), np.arange(10.0), indexing="ij"), -1).reshape(-1, 3)
    x = x[np.random.default_rng(2).permutation(x.shape[0])]
    c = np.array([-1.0, 9.0, 4.0])
    W2 = np.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, 1.0]])
    b2 = np.array([1.0, -3.5, -1.0, 1.0])
    w = {"W1": np.eye(3)[None], "b1": -c[None], "W2": W2[None], "b2": b2[None], "W3": np.ones((1, 2, 4)),
         "b3": np.zeros((1, 2))}  # fmt: skip
    opt, dead = op.census(w, x, "relu")
    np.testing.assert_array_equal(opt, [[1 / 3, 2 / 4]])  # layer 1: unit 0; layer 2: units 0 and 3
    np.testing.assert_array_equal(dead, [[1 / 3, 1 / 4]])  # layer 1: unit 1; layer 2: unit 2
    # the planted zero regions, counted directly: 0 zeros ⇔ OPT, all N ⇔ dead
    h1 = np.maximum(x - c, 0)
    np.testing.assert_array_equal((x - c <= 0).sum(0), [0, 1000, 500])
    np.testing.assert_array_equal((h1 @ W2.T + b2 <= 0).sum(0), [0, 300, 1000, 0])


def _linear_classifier(C, d=4, n=30, seed=0):
    rng = np.random.default_rng(seed)
    W, b = rng.standard_normal((2, C, d)), rng.standard_normal((2, C))
    return {"W1": W, "b1": b}, rng.standard_normal((n, d))


@pytest.mark.parametrize("C", [2, 4])
def test_sample_radius_of_a_linear_classifier_is_margin_over_norm(C):
    """Linear classifier f = W x + b: the largest ball keeping argmax f is min_j (f_k − f_j)/‖w_k − w_j‖; for
    two classes the margin |w·x + b|/‖w‖ with w = w_1 − w_0. The search finds it to 1e-7 relative."""
    w, x = _linear_classifier(C)
    r, found = op.sample_radius(w, x, "linear", competitors=C - 1, random_directions=3, r_max=50.0, scan=24,
                                bisect=40)  # fmt: skip
    assert found.all()
    f = np.einsum("mcd,nd->mnc", w["W1"], x) + w["b1"][:, None]
    k = f.argmax(-1)
    exact = np.full(k.shape, np.inf)
    for m in range(2):
        for i in range(x.shape[0]):
            for j in range(C):
                if j != k[m, i]:
                    dw = w["W1"][m, k[m, i]] - w["W1"][m, j]
                    exact[m, i] = min(exact[m, i], (f[m, i, k[m, i]] - f[m, i, j]) / np.linalg.norm(dw))
    np.testing.assert_allclose(r, exact, rtol=1e-7)
    if C == 2:
        wv = w["W1"][:, 1] - w["W1"][:, 0]
        bv = w["b1"][:, 1] - w["b1"][:, 0]
        margin = np.abs(x @ wv.T + bv).T / np.linalg.norm(wv, axis=-1)[:, None]
        np.testing.assert_allclose(r, margin, rtol=1e-7)


def test_sample_radius_of_a_relu_network_beats_brute_force():
    """ReLU network in d = 8: no closed form, so the search (DeepFool rays + boundary walk) is compared with
    brute force, the first crossing along 4000 isotropic rays per sample (an upper bound of the true radius
    as well): the search is below it for most samples and never far above it."""
    rng = np.random.default_rng(5)
    w = {"W1": rng.standard_normal((2, 16, 8)), "b1": rng.standard_normal((2, 16)),
         "W2": rng.standard_normal((2, 4, 16)), "b2": rng.standard_normal((2, 4))}  # fmt: skip
    x = rng.standard_normal((10, 8))
    r, found = op.sample_radius(w, x, "relu", competitors=3, random_directions=4, r_max=20.0)
    assert found.sum() >= 15 and np.all(r[~found] == 20.0)  # a class region may be unbounded: censored
    k = np.broadcast_to(fpkit.network.forward(w, x, "relu")[-1].argmax(-1)[..., None], (2, 10, 4000))
    u = rng.standard_normal((2, 10, 4000, 8))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)

    def g(t):
        pts = (x[None, :, None] + t[..., None] * u).reshape(2, -1, 8)
        return op.margin(fpkit.network.forward(w, pts, "relu")[-1].reshape(2, 10, 4000, 4), k)

    brute = op._first_crossing(g, 20.0, 24, 30, (2, 10, 4000))[0].min(-1)
    q = (r / brute)[found]
    assert np.mean(q <= 1.0 + 1e-9) >= 0.8 and q.max() < 1.1


def test_weight_radius_of_a_quadratic_loss():
    """Linear regression at its least-squares optimum θ*: L(θ* + t u) = L* + ½ t² mean‖U x + c‖², so the
    first t with L ≥ τ is √(2(τ − L*)/mean‖U x + c‖²) along every unit direction u = (U, c)."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((50, 3)), rng.standard_normal((50, 2))
    A = np.c_[x, np.ones(50)]
    sol = np.linalg.lstsq(A, y, rcond=None)[0]
    w = {"W1": np.repeat(sol[:3].T[None], 3, 0), "b1": np.repeat(sol[3][None], 3, 0)}
    Lstar = op.data_loss(w, x, y, "linear")
    tau = float(Lstar[0]) + 0.3
    U, c = rng.standard_normal((3, 5, 2, 3)), rng.standard_normal((3, 5, 2))
    norm = np.sqrt(np.sum(U**2, (-1, -2)) + np.sum(c**2, -1))
    u = {"W1": U / norm[..., None, None], "b1": c / norm[..., None]}
    r, found = op.weight_radius(w, x, y, "linear", tau, u=u, r_max=100.0, bisect=45)
    assert found.all()
    curv = np.mean(np.sum((np.einsum("mkod,nd->mkno", u["W1"], x) + u["b1"][:, :, None]) ** 2, -1), -1)
    np.testing.assert_allclose(r, np.sqrt(2 * (tau - Lstar[:, None]) / curv), rtol=1e-8)
    # above the threshold already: radius 0
    r0, _ = op.weight_radius(w, x, y, "linear", float(Lstar[0]) * 0.5, u=u)
    np.testing.assert_array_equal(r0, 0.0)


def test_modular_addition_and_first_times():
    x, y, lab, tr, te = op.modular_addition(7, 0.6, 0)
    a, b = x[:, :7].argmax(1), x[:, 7:].argmax(1)
    np.testing.assert_array_equal(lab, (a + b) % 7)
    np.testing.assert_array_equal(y.argmax(1), lab)
    assert tr.size == round(0.6 * 49) and np.intersect1d(tr, te).size == 0 and tr.size + te.size == 49
    t = np.array([0.0, 1.0, 2.0, 3.0])
    v = np.array([[0.1, 0.0], [0.5, 0.2], [0.95, 0.3], [1.0, 0.4]])
    np.testing.assert_array_equal(op.first_time(t, v, 0.9), [2.0, np.nan])
    with pytest.raises(fpkit.errors.ConfigError, match="train_fraction"):
        op.modular_addition(3, 0.01, 0)


def test_quick_run_verdict_has_numbers(tmp_path):
    """The quick experiment end to end (smaller still): the report states numbers with uncertainties."""
    from fpkit import experiments

    over = {"controls": {"members": 6, "steps": 200, "snapshots": 3, "depths": [1], "widths": [], "lrs": [],
                         "batch_sizes": []},
            "grokking": {"enabled": True, "p": 7, "steps": 200, "snapshots": 4, "width": 16, "members": 3}}  # fmt: skip
    out = experiments.run("order-preserving", quick=True, overrides=over, out=tmp_path, show_progress=False)
    names = [c.name for c in out.verdict.claims]
    assert "OPT fraction moves in training" in names and any(n.startswith("grokking delay") for n in names)
    assert {"FP prediction of the weight histograms (base sgd)", "no silent FP failure (base sgd)"} <= set(names)
    assert (tmp_path / "fp.png").exists()
    assert (tmp_path / "report.md").read_text().count("±") >= 5
    assert {"results.h5", "report.md"} <= {p.name for p in tmp_path.iterdir()}


# ------------------------------------------------------------------------------------ the FP angle
def _pred(fp, verdict, route, frozen=6.0):
    """A hand-made fpkit.predict result: W1/floor series (index 0: t = 0), diagnostics verdict and route."""
    from types import SimpleNamespace as NS

    fp = np.asarray(fp, float)
    return NS(distance={"fp": fp, "frozen": np.full(fp.size, frozen)}, options={"route": route},
              diagnostics={"verdict": verdict, "reasons": ["made by hand"]})  # fmt: skip


def test_fp_runs_are_the_noisy_controls():
    """The FP angle predicts exactly the runs whose weights move by minibatch noise: base and the η / B changes
    with 0 < B < N (N = clusters × per_cluster = 64 by default); not GD (B = 0), not B = N, not depth/width."""
    from fpkit import experiments as X

    cfg = X.resolve_config(X.load("order-preserving"), overrides={"controls": {"batch_sizes": [1, 0, 64, 63]}})
    picked = [(v, val) for v, val, _, _, _, B in op.control_settings(cfg["controls"]) if op.wants_fp(cfg, v, B)]
    assert picked == [("base", 0.0), ("lr", 0.005), ("lr", 0.06), ("batch_size", 1), ("batch_size", 63)]
    cfg["fp"]["entries"] = []
    assert not any(op.wants_fp(cfg, v, B) for v, _, _, _, _, B in op.control_settings(cfg["controls"]))


def test_fp_claims_and_report_on_hand_made_predictions():
    """Per SGD run: the worst W1/floor over entries and snapshots after t = 0 (t = 0 and the Kramers-Moyal
    route's NaN skipped) against 3 floors, and a miss is silent only when its diagnostics say 'holds'; the
    report's line per run states the same verdicts and numbers."""
    from fpkit import experiments as X
    from fpkit.validation.experiments import order_preserving_figures as figs

    res = op.Result(controls=[], threshold=1.0, grok=[], grok_threshold=np.nan)
    res.fp = {
        ("base", "sgd"): {"route": {"W1[0,0]": _pred([9.0, 1.0, 3.0, np.nan], "holds", "kramers-moyal"),
                                    "W2[0,0]": _pred([0.0, 0.4, 0.5, np.nan], "holds", "kramers-moyal", frozen=1.5)},
                          "mechanistic": {"W1[0,0]": _pred([0.0, 7.0, 8.0, 8.1], "fails", "mechanistic"),
                                          "W2[0,0]": _pred([0.0, 2.0, 3.5, 3.2], "doubtful", "mechanistic")}},
        ("lr = 0.06", "sgd"): {"route": {"W1[0,0]": _pred([0.0, 3.2, 1.0], "holds", "mechanistic"),
                                         "W2[0,0]": _pred([0.0, 0.5, 0.7], "holds", "mechanistic")}},
    }  # fmt: skip
    by = {c.name: c for c in op.fp_claims(res)}
    assert len(by) == 4
    c = by["FP prediction of the weight histograms (base sgd)"]
    assert c.held and c.value["worst W1/floor"] == 3.0 and c.value["at"] == "W1[0,0]"
    c = by["no silent FP failure (base sgd)"]
    assert c.held and (c.value["misses"], c.value["flagged"]) == (2, 2)
    c = by["FP prediction of the weight histograms (lr = 0.06 sgd)"]
    assert not c.held and c.value["worst W1/floor"] == 3.2
    c = by["no silent FP failure (lr = 0.06 sgd)"]
    assert not c.held and c.value["silent"] == "W1[0,0] (mechanistic) 3.2"
    cfg = X.resolve_config(X.load("order-preserving"), quick=True)
    text = "\n".join(figs.fp_report(cfg, res))
    assert ("- base: FP prediction of the weight histograms held (worst 3 floors over 2 entries); 2 prediction(s) "
            "beyond 3 floors, 2 flagged doubtful/fails: no silent FP failure held.") in text
    assert ("- lr = 0.06: FP prediction of the weight histograms not held (worst 3.2 floors over 2 entries); 1 "
            "prediction(s) beyond 3 floors, 0 flagged doubtful/fails: no silent FP failure not held.") in text
    assert "| base | W2[0,0] | mechanistic → mechanistic | 3.5 | 3.2 | 6 | doubtful | made by hand |" in text
    assert "frozen worst 1.5 floors" in text  # the least-moved entry of the base run is named


def test_fp_ensembles_extend_the_measured_ones():
    """A predicted run trains fp.members members with statistics and measures the first controls.members: member
    i's trajectory depends neither on the count, nor on recording statistics, nor on on_divergence = "drop"."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((16, 4)) + 2.0, np.eye(2)[rng.integers(0, 2, 16)]
    kw = dict(hidden=[5, 5], lr=0.02, batch_size=4, steps=60, snapshots=3, seed=7, show_progress=False)
    a = op.train(x, y, members=6, **kw)
    b = op.train(x, y, members=20, statistics=True, on_divergence="drop", **kw)
    assert b.grad is not None and b.without_diverged() is b
    for k in a.weights:
        np.testing.assert_array_equal(a.weights[k], b.weights[k][:, :6])
