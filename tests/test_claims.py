"""The layer behind the flagship's claims, tested as hard as the solvers (issue 23, items 1-4):
verdict functions on both sides of every threshold, baselines against exact flows, the network-level
quantities (pair covariance, forward pass, quantile map) against independent computations, and the KS / JS
columns against scipy."""

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.stats

import fpkit
from fpkit import metrics
from fpkit import prediction as P
from fpkit.ensemble import EnsembleRun
from fpkit.network import reconstruction_errors, w2_pair_gradient_covariance
from fpkit.validation.experiments import fp_histograms as ex

TH = ex.THRESHOLDS


def fake(label="W2[0,0]", fp=None, frozen=10.0, drift_only=10.0, diffusion_only=10.0, S=10, t_end=80.0):
    """A Prediction with hand-set distances (only what the verdict reads is meaningful)."""
    fp = np.concatenate([[0.0], np.ones(S - 1)]) if fp is None else np.asarray(fp, dtype=float)
    S = fp.size
    last = lambda v: np.concatenate([np.full(S - 1, 1.0), [v]])  # noqa: E731
    g = fpkit.Grid.uniform(-1.0, 1.0, 4)
    z = np.zeros((S, 4))
    return P.Prediction(label, np.linspace(0, t_end, S), g, z, z, np.zeros((S, 2)),
                        {"fp": fp, "frozen": last(frozen), "drift_only": last(drift_only),
                         "diffusion_only": last(diffusion_only)},
                        fp, np.ones(S), fp, fp, {"drift": z, "diffusion": z, "supported": z > -1})  # fmt: skip


# ------------------------------------------------------------------------------- 1. verdict functions
def with_fp(values):
    return np.concatenate([[0.0], values])


@pytest.mark.parametrize("case, passes", [
    ({}, True),
    ({"fp": with_fp([1, 1, TH["drift_max"], 1, 1])}, True),           # max exactly at the threshold
    ({"fp": with_fp([1, 1, TH["drift_max"] + 0.01, 1, 1])}, False),   # max just above
    ({"fp": with_fp([TH["drift_median"]] * 5)}, True),                 # median at the threshold
    ({"fp": with_fp([TH["drift_median"] + 0.01] * 5)}, False),        # median just above, max fine
    ({"frozen": TH["drift_vs_baselines"]}, True),                      # last fp is 1
    ({"frozen": TH["drift_vs_baselines"] - 0.01}, False),
    ({"diffusion_only": TH["drift_vs_baselines"]}, True),
    ({"diffusion_only": TH["drift_vs_baselines"] - 0.01}, False),
])  # fmt: skip
def test_drift_dominated_criteria_on_both_sides_of_every_threshold(case, passes):
    c = ex.drift_dominated_criteria(fake(**case))
    assert c["pass"] is passes, (case, c)


def test_drift_dominated_criteria_numbers():
    c = ex.drift_dominated_criteria(fake(fp=with_fp([1.0, 4.0, 2.0]), frozen=8.0, diffusion_only=6.0))
    assert c == {"max": 4.0, "median": 2.0, "vs_frozen": 4.0, "vs_diffusion_only": 3.0, "pass": True}


@pytest.mark.parametrize("case, passes", [
    ({}, True),
    ({"frozen": TH["diffusion_vs_frozen"]}, True),
    ({"frozen": TH["diffusion_vs_frozen"] - 0.01}, False),
    ({"drift_only": TH["diffusion_vs_drift_only"]}, True),
    ({"drift_only": TH["diffusion_vs_drift_only"] - 0.01}, False),
    ({"fp": with_fp([1, TH["diffusion_max"], 1, 1])}, True),
    ({"fp": with_fp([1, TH["diffusion_max"] + 0.01, 1, 1])}, False),  # early
    ({"fp": with_fp([1, 1, TH["diffusion_max"] + 0.01, 1])}, False),  # late (t = 53): no snapshot exempt
])  # fmt: skip
def test_diffusion_driven_criteria_on_both_sides_of_every_threshold(case, passes):
    c = ex.diffusion_driven_criteria(fake("W1[0,5]", **case))
    assert c["pass"] is passes, (case, c)


@pytest.mark.parametrize("gain, kind", [(1.5, "drift-dominated"), (1.51, "diffusion-driven"), (1.0, "drift-dominated")])
def test_kind_at_the_gain_threshold(gain, kind):
    assert P.DIFFUSION_DRIVEN_GAIN == 1.5
    assert fake(drift_only=gain).kind == kind


@pytest.mark.parametrize("late, held", [(TH["late_goal"], True), (TH["late_goal"] + 0.01, False)])
def test_verdict_counts_criteria_and_the_late_goal(late, held):
    S = 12  # the last quarter is the last 3 snapshots
    w1 = fake("W1[0,5]", fp=np.concatenate([[0.0], np.ones(S - 4), [late], [1.0, 1.0]]), drift_only=2.0)
    w2 = fake("W2[0,0]", fp=with_fp([1, 6.0, 1]))  # fails the drift-dominated max
    res = ex.Result(t=w1.t, entries=[w1, w2], members=200, eta=0.02, batch_size=8, split={})
    v = ex.FpHistograms().verdict({}, res)
    names = [c.name for c in v.claims]
    assert names == ["W1[0,5]", "W2[0,0]", "W1[0,5] late"]
    assert [c.held for c in v.claims] == [True, False, held]
    assert v.held == 1 + held
    assert "diffusion-driven criteria for 1 of 1 entries" in v.summary
    assert "drift-dominated criteria for 0 of 1 entries" in v.summary
    assert set(v.thresholds) >= {"drift-dominated criteria", "diffusion-driven criteria", "late goal"}


@pytest.mark.parametrize("rec, coord, held", [
    (TH["output_goal"], TH["output_goal"], True),
    (TH["output_goal"] + 0.01, 1.0, False),
    (1.0, TH["output_goal"] + 0.01, False),
])  # fmt: skip
def test_output_goal_claim_on_both_sides_of_its_threshold(rec, coord, held):
    """The copula networks' reconstruction error and every output coordinate within the output goal (issue 17,
    goal 3): one claim, its measured numbers those stored in the outputs' summary, and the same numbers in the
    verdict's summary paragraph."""
    w2 = fake("W2[0,0]")
    res = ex.Result(t=w2.t, entries=[w2], members=200, eta=0.02, batch_size=8, split={},
                    outputs={"copula": np.ones(3), "w1_copula_over_floor": rec,
                             "copula_coords_w1_over_floor": {"xhat[0]": 0.5, "xhat[1]": coord}})  # fmt: skip
    v = ex.FpHistograms().verdict({}, res)
    c = v.claims[-1]
    assert (c.name, c.threshold, c.held) == ("output distributions", "output goal", held)
    assert c.value == {"reconstruction": rec, "worst coordinate": max(coord, 0.5), "which": "xhat[1]"}
    assert "output goal" in v.thresholds and f"{rec:.2f} floors" in v.summary
    assert ("not within the output goal" in v.summary) is not held


# ------------------------------------------------------------------------------------- 3. baselines
@pytest.fixture(scope="module")
def deterministic_run():
    """w(t) = w0 e^{−t} exactly (gradient g = w): A = −w, and a negligible gradient noise D = 1e-8 (the FP's
    exponential fitting needs D > 0; it spreads a density by √(2Dt) = 2e-4, 1 % of a floor). The drift-only
    prediction is then exact, and with A = 0 nothing moves, so diffusion-only equals frozen."""
    M = 600
    t = np.concatenate([[0.0], np.geomspace(0.05, 2.0, 12)])
    w0 = np.random.default_rng(1).normal(0.0, 1.0, M)
    w = w0[None] * np.exp(-t[:, None])
    four = lambda a: a[:, :, None, None]  # noqa: E731
    return EnsembleRun.from_arrays(t=t, weights={"W2": four(w)}, eta=0.01, batch_size=1, grad={"W2": four(w)},
                                   grad_var={"W2": four(np.full_like(w, 2e-6))}, hess_grad={"W2": four(np.zeros_like(w))})  # fmt: skip


def test_baselines_against_the_exact_flow(deterministic_run):
    p = fpkit.predict(deterministic_run, "W2[0,0]", dt=0.01, js=False)
    # drift-only carries the judged members along the exact flow: measured ≤ 3e-10 floors while the members
    # stay inside the estimation half's range, 0.025 floors at the end (the grid's edge cells); a shift of the
    # transported samples by 5e-4 (1/270 of the final spread) costs 0.1 floors
    assert np.max(p.distance["drift_only"]) < 0.1, p.distance["drift_only"]
    # diffusion-only with A = 0 and D ≈ 0 is the frozen histogram
    np.testing.assert_allclose(p.distance["diffusion_only"], p.distance["frozen"], rtol=0.02)
    # frozen: W1 between the first histogram and the shrunk samples, by quadrature of |F − G|
    s = p.t.size - 1
    F = np.concatenate([[0.0], np.cumsum(p.empirical[0] * p.grid.dx[0])])
    xs = np.linspace(p.grid.lo[0], p.grid.hi[0], 400_001)
    G = np.searchsorted(np.sort(p.judged[s]), xs, side="right") / p.judged.shape[1]
    w1 = np.trapezoid(np.abs(np.interp(xs, p.grid.edges[0], F) - G), xs)
    assert p.distance["frozen"][s] == pytest.approx(w1 / p.w1_floor[s], rel=1e-4)
    # the shrinkage e^{−2} of a unit Gaussian moves W1 by ≈ (1 − e^{−2})·√(2/π)
    assert w1 == pytest.approx((1 - np.exp(-2.0)) * np.sqrt(2 / np.pi), rel=0.1)


# ------------------------------------------------------------------------------ 4. network quantities
@pytest.fixture(scope="module")
def tiny():
    ens = fpkit.Ensemble(d=6, k=2, activation="tanh", lr=0.05, batch_size=4, members=16, steps=30, snapshots=3,
                         seed=2)  # fmt: skip
    return ens, ens.train(show_progress=False)


def test_pair_gradient_and_covariance_match_the_trainers_records(tiny):
    """w2_pair_gradient_covariance (a second backprop, solvers.pair_gradients) against what the numba trainer recorded: the
    full-batch gradient and the variance of the iid minibatch-mean gradient (per-sample variance / B)."""
    _, run = tiny
    pair = [(0, 0), (1, 1)]
    x = run.data["x"]
    for s in range(run.t.size):
        ws = {n: run.weights[n][s] for n in run.weights}
        g, cov = w2_pair_gradient_covariance(ws, x, "tanh", pair, run.batch_size)
        for a, ij in enumerate(pair):
            np.testing.assert_allclose(g[:, a], run.grad["W2"][s][:, ij[0], ij[1]], rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(cov[:, a, a], run.grad_var["W2"][s][:, ij[0], ij[1]], rtol=1e-9)


def test_pair_covariance_off_diagonal_by_finite_differences(tiny):
    """The off-diagonal term against per-sample gradients by central differences of the per-sample loss."""
    _, run = tiny
    x = run.data["x"][:40]
    ws = {n: run.weights[n][-1][:3].copy() for n in run.weights}
    pair = [(0, 1), (1, 0)]
    _, cov = w2_pair_gradient_covariance(ws, x, "tanh", pair, 4)
    h = 1e-6
    per = np.empty((3, x.shape[0], 2))
    for a, (i, j) in enumerate(pair):
        up, dn = {k: v.copy() for k, v in ws.items()}, {k: v.copy() for k, v in ws.items()}
        up["W2"][:, i, j] += h
        dn["W2"][:, i, j] -= h
        for n in range(x.shape[0]):
            per[:, n, a] = (reconstruction_errors(up, x[n : n + 1], "tanh") - reconstruction_errors(dn, x[n : n + 1], "tanh")) / (2 * h)
    dev = per - per.mean(axis=1, keepdims=True)
    ref = np.einsum("mni,mnj->mij", dev, dev) / x.shape[0] / 4
    np.testing.assert_allclose(cov, ref, rtol=1e-5, atol=1e-12)


def test_forward_pass_reproduces_the_recorded_loss(tiny):
    _, run = tiny
    for s in range(run.t.size):
        ws = {n: run.weights[n][s] for n in run.weights}
        np.testing.assert_allclose(reconstruction_errors(ws, run.data["x"], "tanh"), run.loss[s], rtol=1e-12)


def test_quantile_map_takes_the_density_quantiles_and_keeps_the_order():
    rng = np.random.default_rng(3)
    v = rng.standard_normal(3000)
    g = fpkit.Grid.uniform(-12.0, 13.0, 10000)  # ±6σ: truncation moves the extreme quantiles by < 1e-6
    dens = scipy.stats.norm.pdf(g.x, loc=0.5, scale=2.0)
    mapped = ex.quantile_map(v, g, dens)
    ranks = (scipy.stats.rankdata(v) - 0.5) / v.size
    np.testing.assert_allclose(mapped, scipy.stats.norm.ppf(ranks, loc=0.5, scale=2.0), atol=2e-3)
    np.testing.assert_array_equal(np.argsort(mapped), np.argsort(v))


# --------------------------------------------------------------------------------- KS and JS columns
@pytest.fixture(scope="module")
def synthetic_pred():
    from test_predict import synthetic

    return fpkit.predict(synthetic(M=1000), "W2[0,0]", dt=0.02, compare_with=["kramers-moyal"])


def test_ks_column_against_scipy(synthetic_pred):
    p = synthetic_pred
    for s in (3, p.t.size - 1):
        F = np.concatenate([[0.0], np.cumsum(p.density[s] * p.grid.dx[0])])
        ks = scipy.stats.kstest(p.judged[s], lambda x: np.interp(x, p.grid.edges[0], F)).statistic
        assert p.ks[s] == pytest.approx(ks / metrics.ks_floor(p.judged.shape[1]), rel=1e-9)


def test_js_column_against_scipy(synthetic_pred):
    """JS(prediction, judged) with base-2 logs over the grid's cells plus one overflow bin on each side,
    divided by the mean JS between random halves of the judged members over √(N(1/n1 + 1/n2))."""
    p = synthetic_pred
    s = p.t.size - 1
    N = p.judged.shape[1]
    mass = np.concatenate([[0.0], p.density[s] * p.grid.dx[0], [0.0]])
    edges = np.concatenate([[-np.inf], p.grid.edges[0], [np.inf]])
    counts = np.histogram(p.judged[s], edges)[0] / N
    js = scipy.spatial.distance.jensenshannon(mass, counts, base=2)
    assert metrics.js_samples(p.density[s], p.grid, p.judged[s]) == pytest.approx(js, rel=1e-9)
    assert np.isfinite(p.js[1:]).all() and 0.3 < np.median(p.js[1:]) < 3  # a correct prediction: ≈ 1 floor


def test_kramers_moyal_column_is_a_prediction_within_noise(synthetic_pred):
    """On the known diffusion the Kramers-Moyal route (biased only by the lag) also predicts within a few
    floors (measured: median 1.1, max 2.4 at 1000 members)."""
    km = synthetic_pred.distance["fp_kramers_moyal"][1:-1]
    assert np.median(km) < 2.0 and km.max() < 4.0, km


def test_thresholds_are_the_published_criteria():
    """The criteria the flagship is judged by, as the main-job issue set them (drift-dominated: max 5, median 2,
    3x the frozen and diffusion-only baselines; diffusion-driven: 5x frozen, 1.5x drift-only, max 3.5; late goal
    3) and as the report's threshold definitions state them."""
    assert ex.THRESHOLDS == {"drift_max": 5.0, "drift_median": 2.0, "drift_vs_baselines": 3.0,
                             "diffusion_vs_frozen": 5.0, "diffusion_vs_drift_only": 1.5, "diffusion_max": 3.5,
                             "late_goal": 3.0, "output_goal": 5.0}  # fmt: skip
    text = ex.threshold_definitions()
    assert "≥ 5× better than frozen and ≥ 1.5× better than drift-only" in text["diffusion-driven criteria"]
    assert "W1/floor ≤ 5 at every snapshot and ≤ 2 at the median" in text["drift-dominated criteria"]


# -------------------------------------------------------------- survivors of the CI mutation sample
def test_auto_entries_default_counts_per_layer():
    """All nine W2 entries, three W1 and three W3 entries by default (kills a changed default limit)."""
    rng = np.random.default_rng(0)
    S, M = 4, 120
    shapes = {"W1": (3, 8), "W2": (3, 3), "W3": (8, 3)}
    w = {n: rng.normal(size=(S, M, *sh)) for n, sh in shapes.items()}
    run = EnsembleRun.from_arrays(t=np.arange(S, dtype=float), weights=w, eta=0.02, batch_size=8,
                                  grad={n: np.zeros_like(a) for n, a in w.items()},
                                  grad_var={n: np.abs(a) for n, a in w.items()})  # fmt: skip
    labels = P.auto_entries(run)
    assert [sum(lab.startswith(n) for lab in labels) for n in ("W2", "W1", "W3")] == [9, 3, 3]


def test_flagship_entries_list_is_checked_before_training():
    from fpkit import experiments as X

    exp = X.load("fp-histograms")
    assert X.resolve_config(exp, config={"analysis": {"entries": ["W2[0,0]", "W1[1,5]"]}})["analysis"]["entries"] == [
        "W2[0,0]", "W1[1,5]"]  # fmt: skip
    with pytest.raises(Exception, match="analysis.entries"):
        X.resolve_config(exp, config={"analysis": {"entries": []}})


def test_kramers_moyal_drift_uncertainty_vanishes_on_an_exact_linear_flow(deterministic_run):
    """w(t) = w0 e^{−t}: each lag's increment is exactly linear in w, so its residual around Δt times the
    Kramers-Moyal drift (local-linear: exact for a linear relation) is small: measured 8e-4 floors, from the
    grid's interpolation near the edges (an increment compared with Δt + A instead of Δt·A gives ≫ 1)."""
    p = fpkit.predict(deterministic_run, "W2[0,0]", dt=0.05, js=False, ks=False)
    assert p.diagnostics["drift_uncertainty_km"] < 0.01


def test_sweep_goes_on_after_a_diverging_cell():
    """The failure map records a diverging cell and still runs the next one."""
    from fpkit import experiments as X

    cfg = X.resolve_config(X.load("fp-histograms"), config={
        "train": {"members": 400, "steps": 60, "snapshots": 5},
        "sweep": {"lr": [400.0, 0.02], "batch_size": [8, 16], "members": 400, "steps": 60, "snapshots": 5}})  # fmt: skip
    rows = ex.run_sweep(cfg)
    assert [(r["lr"], r["batch_size"]) for r in rows] == [(400.0, 8), (400.0, 16), (0.02, 8), (0.02, 16)]
    assert all("error" in r for r in rows[:2])
    assert all("entries" in r and np.isfinite(r["fp_ratio_max"]) for r in rows[2:])
