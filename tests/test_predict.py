"""``fpkit.predict`` against references it cannot know by construction.

* Synthetic ground truth: Langevin paths with known A(w, t), D(w, t), stored as an ensemble run whose
  "gradients" make the mechanistic route's targets exact.
* Out of sample: the judged members' statistics must not reach the estimate (poisoning them changes nothing).
* The judge: W1/floor against scipy's W1 and a quadrature of |F − G|; the drift-only transport against the
  exact flow.
"""

import numpy as np
import pytest
import scipy.stats

import fpkit
from fpkit import metrics
from fpkit import prediction as P
from fpkit.ensemble import EnsembleRun
from fpkit.errors import ConfigError


def true_drift(w, t):
    return -1.5 * (w - 0.6 * np.tanh(t))


def true_diffusion(w, t):
    return 0.04 * (1 + 0.5 * w**2)


def synthetic(M=2000, eta=0.01, seed=5):
    """M Langevin paths of a known diffusion, with 'gradients' g = −A + noise and grad_var = 2D/η, so that
    E[−g | w] = A and (η/2) E[v | w] = D hold exactly."""
    t = np.concatenate([[0.0], np.geomspace(0.02, 3.0, 24)])
    sde = fpkit.SDE(drift=true_drift, diffusion=true_diffusion)
    rng = np.random.default_rng(seed)
    x0 = rng.normal(0.0, 0.3, M)
    w = np.asarray(sde.sample(x0, t, method="euler", dt=1e-3, seed=3).x).reshape(t.size, M)
    g = -true_drift(w, t[:, None]) + 0.05 * rng.standard_normal(w.shape)
    v = 2 * true_diffusion(w, t[:, None]) / eta
    four = lambda a: a[:, :, None, None]  # noqa: E731
    return EnsembleRun.from_arrays(t=t, weights={"W2": four(w)}, eta=eta, batch_size=1, grad={"W2": four(g)},
                                   grad_var={"W2": four(v)}, hess_grad={"W2": four(np.zeros_like(w))})  # fmt: skip


@pytest.fixture(scope="module")
def run():
    return synthetic()


@pytest.fixture(scope="module")
def pred(run):
    return fpkit.predict(run, "W2[0,0]", dt=0.01, js=False, compare_with=["kramers-moyal", "discrete"])


def test_prediction_of_a_known_diffusion_is_within_the_noise_floor(pred):
    fp = pred.distance["fp"][1:]
    # a correct prediction scores ≈ 1 on average; its maximum over 24 correlated snapshots stays below 3
    assert np.median(fp) < 1.5 and fp.max() < 3.0, fp
    # the baselines are far off once the density has moved (measured: frozen 16x, drift-only 5x, diffusion
    # only 9x the FP's last distance; the thresholds sit at a third of that)
    last = pred.distance["fp"][-1]
    assert pred.distance["frozen"][-1] > 5 * last
    assert pred.distance["drift_only"][-1] > 2 * last
    assert pred.distance["diffusion_only"][-1] > 3 * last
    assert pred.kind == "diffusion-driven"
    # the prediction integrates to one on its grid and is non-negative
    np.testing.assert_allclose(pred.grid.integrate(pred.density), 1.0, rtol=1e-12)
    assert pred.density.min() >= 0
    assert pred.diagnostics["messages"] == [] and pred.diagnostics["worse_than_frozen_snapshots"] == []


def test_estimated_coefficients_match_the_true_ones(pred):
    """Where the estimation half has support, the smoothed A and D are the true ones to smoothing error."""
    for s in (6, 15, 24):
        t, w = pred.t[s], pred.samples[s]
        m = pred.coefficients["supported"][s] & (np.abs(pred.grid.x - np.median(w)) < 1.5 * w.std())
        x = pred.grid.x[m]
        assert np.max(np.abs(pred.coefficients["drift"][s][m] - true_drift(x, t))) < 0.1 * np.max(np.abs(true_drift(x, t)) + 0.1)
        np.testing.assert_allclose(pred.coefficients["diffusion"][s][m], true_diffusion(x, t), rtol=0.01)


def test_kramers_moyal_comparison_ends_one_lag_early(pred, run):
    km = pred.distance["fp_kramers_moyal"]
    assert np.isnan(km[-1]) and np.all(np.isfinite(km[:-1]))
    alone = fpkit.predict(run, "W2[0,0]", route="kramers-moyal", dt=0.01, js=False)
    np.testing.assert_allclose(alone.distance["fp"], km, rtol=1e-12, equal_nan=True)


def test_estimation_uses_only_the_estimation_members(run):
    """Out of sample means the judged members' recorded statistics never reach the estimate: replacing their
    gradients and gradient variances by garbage leaves the prediction bit for bit the same, while doing the
    same to the estimation members changes it."""
    E, J = P.split_members(run.members, 0, "half")
    assert np.intersect1d(E, J).size == 0 and np.union1d(E, J).size == run.members
    ref = P.predict_entry(run, "W2[0,0]", E, J, dt=0.05, js=False, ks=False)

    def poisoned(members):
        g, v = run.grad["W2"].copy(), run.grad_var["W2"].copy()
        g[:, members] = 1e3
        v[:, members] = 1e3
        return EnsembleRun.from_arrays(t=run.t, weights=run.weights, eta=run.eta, batch_size=1, grad={"W2": g},
                                       grad_var={"W2": v}, hess_grad=run.hess_grad)  # fmt: skip

    same = P.predict_entry(poisoned(J), "W2[0,0]", E, J, dt=0.05, js=False, ks=False)
    np.testing.assert_array_equal(same.density, ref.density)
    for k in ref.distance:
        np.testing.assert_array_equal(same.distance[k], ref.distance[k])
    changed = P.predict_entry(poisoned(E[:50]), "W2[0,0]", E, J, dt=0.05, js=False, ks=False)
    assert not np.allclose(changed.density, ref.density)
    # and the judged values are those of the judged members
    np.testing.assert_array_equal(ref.judged, run.weights["W2"][:, J, 0, 0])


def test_split_reproducible_for_a_seed_and_different_across_seeds():
    a = P.split_members(1000, 7, "half")
    b = P.split_members(1000, 7, "half")
    c = P.split_members(1000, 8, "half")
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    assert a[0].size == 500 and np.union1d(*a).size == 1000
    E, J = P.split_members(1000, 0, "in-sample")
    np.testing.assert_array_equal(E, J)
    custom = P.split_members(1000, 0, (np.arange(10), np.arange(10, 30)))
    np.testing.assert_array_equal(custom[1], np.arange(10, 30))


def test_judge_against_scipy_and_quadrature():
    """W1/floor of transported samples equals scipy's W1 over the floor; of a grid density, a fine quadrature
    of |F − G| over the floor (the density's CDF is piecewise linear)."""
    rng = np.random.default_rng(0)
    judged = rng.normal(size=(3, 400))
    samples = judged + 0.3
    floors = P.judged_floors(judged)
    got = P.judge(judged, None, samples=samples, floors=floors)
    ref = [scipy.stats.wasserstein_distance(samples[s], judged[s]) / floors[s] for s in range(3)]
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    g = fpkit.Grid.uniform(-5.0, 5.0, 200)
    p = np.exp(-0.5 * (g.x - 0.2) ** 2)
    p /= g.integrate(p)
    dens = np.broadcast_to(p, (3, p.size))
    got = P.judge(judged, g, density=dens, floors=floors)
    xs = np.linspace(-8, 8, 400_001)
    F = np.interp(xs, g.edges[0], np.concatenate([[0.0], np.cumsum(p * g.dx[0])]))
    for s in range(3):
        G = np.searchsorted(np.sort(judged[s]), xs, side="right") / judged.shape[1]
        w1 = np.trapezoid(np.abs(F - G), xs)
        assert got[s] == pytest.approx(w1 / floors[s], rel=1e-4)
    # a shorter prediction (Kramers-Moyal) is NaN where it does not reach
    short = P.judge(judged, None, samples=samples[:2], floors=floors)
    assert np.isnan(short[2]) and np.all(np.isfinite(short[:2]))


class _Flow:
    """A coefficient series stand-in with a known drift A(w, t) = −k w + c t."""

    k, c = 1.3, 0.7

    def drift_callable(self):
        return lambda x, t: -self.k * x + self.c * t


def test_transport_samples_follows_the_exact_flow():
    """dw/dt = −k w + c t has w(t) = (w0 − c/k² ) e^{−k t} + c t/k − c/k² + ... ; classical RK4 with steps of 0.01
    is accurate to ~1e-10 relative (fourth order)."""
    k, c = _Flow.k, _Flow.c
    t = np.array([0.0, 0.1, 0.5, 1.0, 2.5])
    x0 = np.linspace(-2, 2, 11)
    exact = (x0[None] + c / k**2) * np.exp(-k * t[:, None]) + c * t[:, None] / k - c / k**2
    for dt, tol in ((0.01, 1e-9), (0.02, 1.6e-8)):
        got = P.transport_samples(_Flow(), x0, t, dt)
        err = np.max(np.abs(got - exact))
        assert err < tol, (dt, err)
    # fourth order: halving the step divides the error by ~16
    e1 = np.max(np.abs(P.transport_samples(_Flow(), x0, t, 0.1) - exact))
    e2 = np.max(np.abs(P.transport_samples(_Flow(), x0, t, 0.05) - exact))
    assert 12 < e1 / e2 < 20


def test_transport_of_an_estimated_series_is_compiled_and_exact():
    """A series on a uniform grid is carried in one compiled call. With A(w, t) = −θ(t)·w (θ linear between
    snapshots, so the interpolated drift is exact in space and time) it follows w0·exp(−∫θ dt) to RK4's
    accuracy, at fourth order; and it gives the numpy RK4's bits (the same drift through a plain callable),
    also for points beyond the grid's outer centres (A held) and outputs that repeat a time."""
    from fpkit.estimators.series import CoefficientSeries

    grid = fpkit.Grid.uniform(-3.0, 3.0, 120)
    ts = np.array([0.0, 0.4, 1.0, 2.2])
    theta = np.array([0.5, 1.7, -0.3, 0.9])
    drift = -theta[:, None] * grid.x[None, :]
    zero = np.zeros_like(drift)
    series = CoefficientSeries(ts, grid, drift, zero + 0.1, zero, zero, zero + 100, zero > -1, np.ones(4))
    x0 = np.linspace(-2.0, 2.0, 9)
    t = np.array([0.0, 0.4, 0.4, 1.0, 2.2])
    integral = np.concatenate([[0.0], np.cumsum(0.5 * (theta[1:] + theta[:-1]) * np.diff(ts))])[[0, 1, 1, 2, 3]]
    exact = x0[None, :] * np.exp(-integral)[:, None]
    errs = [np.max(np.abs(P.transport_samples(series, x0, t, dt) - exact)) for dt in (0.05, 0.025)]
    assert errs[1] < 1e-8 and 12 < errs[0] / errs[1] < 20, errs

    class Plain:  # the same drift through a callable: the numpy RK4
        def drift_callable(self):
            f = series.drift_callable()
            return lambda x, s: f(x, s)

    far = np.concatenate([x0, [-3.5, 3.2, grid.x[0], grid.x[-1]]])
    assert np.array_equal(P.transport_samples(series, far, t, 0.05), P.transport_samples(Plain(), far, t, 0.05))


def test_transport_step_is_checked_on_both_paths():
    """A zero, negative or NaN ``dt`` is refused naming it (the compiled step count made one step of it
    silently); None or inf is one RK4 step per interval: with A = −θ·w, x·R(−θh) for RK4's stability
    polynomial R(z) = 1 + z + z²/2 + z³/6 + z⁴/24, on the compiled and the numpy path."""
    from fpkit.estimators.series import CoefficientSeries

    grid = fpkit.Grid.uniform(-3.0, 3.0, 120)
    ts = np.array([0.0, 1.0])
    drift = -0.8 * np.repeat(grid.x[None, :], 2, axis=0)
    zero = np.zeros_like(drift)
    series = CoefficientSeries(ts, grid, drift, zero + 0.1, zero, zero, zero + 100, zero > -1, np.ones(2))

    class Plain:  # the numpy RK4
        def drift_callable(self):
            f = series.drift_callable()
            return lambda x, s: f(x, s)

    x0, t = np.array([-1.0, 0.5, 2.0]), np.array([0.0, 0.3, 1.0])
    z = -0.8 * np.diff(t)
    R = 1 + z + z**2 / 2 + z**3 / 6 + z**4 / 24
    one_step = x0[None, :] * np.concatenate([[1.0], np.cumprod(R)])[:, None]
    for s in (series, Plain()):
        for dt in (0.0, -0.1, np.nan, "x"):
            with pytest.raises(ConfigError, match="`dt`"):
                P.transport_samples(s, x0, t, dt)
        for dt in (None, np.inf):
            np.testing.assert_allclose(P.transport_samples(s, x0, t, dt), one_step, rtol=1e-14)


def test_several_entries_save_load_and_table(run, tmp_path):
    preds = fpkit.predict(run, ["W2[0,0]"], dt=0.05, js=False)
    assert isinstance(preds, P.Predictions) and list(preds) == ["W2[0,0]"]
    path = preds.save(tmp_path / "p.h5")
    back = P.Prediction.load(path)
    p = preds["W2[0,0]"]
    np.testing.assert_array_equal(back.density, p.density)
    np.testing.assert_array_equal(back.distance["drift_only"], p.distance["drift_only"])
    np.testing.assert_array_equal(back.split["judge"], p.split["judge"])
    assert back.kind == p.kind and back.grid.n == p.grid.n and back.options == p.options
    assert "| W2[0,0] |" in preds.table()
    fig = p.plot()
    assert len(fig.axes) == 2


def test_worse_than_frozen_is_diagnosed(run):
    """A prediction made from the wrong members' coefficients (a run whose gradients point the other way) is
    worse than the frozen baseline; its diagnostics must say so."""
    g = -run.grad["W2"]
    bad = EnsembleRun.from_arrays(t=run.t, weights=run.weights, eta=run.eta, batch_size=1, grad={"W2": g},
                                  grad_var=run.grad_var, hess_grad=run.hess_grad)  # fmt: skip
    p = fpkit.predict(bad, "W2[0,0]", dt=0.05, js=False)
    assert p.diagnostics["worse_than_frozen_snapshots"]
    assert any("worse than the frozen" in m for m in p.diagnostics["messages"])


def test_bad_input_names_the_argument(run):
    with pytest.raises(ConfigError, match=r"entry 'W2\[3,0\]' does not exist"):
        fpkit.predict(run, "W2[3,0]")
    with pytest.raises(ConfigError, match="no 'W7'"):
        fpkit.predict(run, "W7[0,0]")
    with pytest.raises(ConfigError, match="not of the form"):
        fpkit.predict(run, "W2(0,0)")
    with pytest.raises(ConfigError, match="`route` must be one of"):
        fpkit.predict(run, "W2[0,0]", route="km")
    with pytest.raises(ConfigError, match="`variant` must be one of"):
        fpkit.predict(run, "W2[0,0]", variant="discret")
    with pytest.raises(ConfigError, match="`compare_with` must be one of"):
        fpkit.predict(run, "W2[0,0]", compare_with=["nope"])
    with pytest.raises(ConfigError, match="`dt` must be > 0"):
        fpkit.predict(run, "W2[0,0]", dt=0.0)
    with pytest.raises(ConfigError, match="`split` must be one of"):
        fpkit.predict(run, "W2[0,0]", split="halves")
    with pytest.raises(ConfigError, match="at least 100"):
        P.split_members(50, 0, "half")
    with pytest.raises(ConfigError, match="entries='auto' needs an autoencoder"):
        fpkit.predict(run, "auto")
    with pytest.raises(ConfigError, match="`joint=True` predicts the joint density of exactly two"):
        fpkit.predict(run, ["W2[0,0]"], joint=True)
    nostats = EnsembleRun.from_arrays(t=run.t, weights=run.weights, eta=run.eta, batch_size=1)
    with pytest.raises(ConfigError, match="route='kramers-moyal'"):
        fpkit.predict(nostats, "W2[0,0]")
    short = EnsembleRun.from_arrays(t=run.t[:2], weights={"W2": run.weights["W2"][:2]}, eta=run.eta, batch_size=1)
    with pytest.raises(ConfigError, match="at least 3 are needed"):
        fpkit.predict(short, "W2[0,0]")


def test_floor_ratio_of_the_prediction_is_w1_over_the_judged_floor(pred):
    """The stored FP distance is W1(prediction, judged)/floor(judged) at every snapshot, recomputed here with
    scipy's W1 on samples drawn from nothing but the stored arrays: the judged values and the density."""
    s = pred.t.size - 1
    F = np.concatenate([[0.0], np.cumsum(pred.density[s] * pred.grid.dx[0])])
    xs = np.linspace(pred.grid.lo[0], pred.grid.hi[0], 200_001)
    G = np.searchsorted(np.sort(pred.judged[s]), xs, side="right") / pred.judged.shape[1]
    w1 = np.trapezoid(np.abs(np.interp(xs, pred.grid.edges[0], F) - G), xs)
    assert pred.w1[s] == pytest.approx(w1, rel=1e-4)
    assert pred.w1_floor[s] == pytest.approx(metrics.w1_floor(pred.judged.shape[1], samples=pred.judged[s]), rel=1e-14)


def test_entry_labels_name_any_parameter():
    """Labels are ``<parameter name>[i,j,...]``: the numba trainer's names and torch parameter names."""
    assert P.parse_entry("W2[0,1]") == ("W2", (0, 1))
    assert P.parse_entry("b1[ 3 ]") == ("b1", (3,))
    assert P.parse_entry("encoder.0.weight[1,5]") == ("encoder.0.weight", (1, 5))
    assert P.parse_entry("conv1.weight[2,0,1,1]") == ("conv1.weight", (2, 0, 1, 1))
    assert P.parse_entry("scale[]") == ("scale", ())
    for lab in ("encoder.0.weight[1,5]", "scale[]", "W3[7,0]"):
        assert P.entry_label(*P.parse_entry(lab)) == lab
    for bad in ("W2(0,0)", "W2[0,]", "enc oder[0]x", "w[-1]", "[0]", "a[b]"):
        with pytest.raises(ConfigError, match="not of the form '<parameter name>"):
            P.parse_entry(bad)


def test_torch_parameter_names_predict_like_the_same_numbers_under_W_names(run):
    """The same entry stored under a torch module's parameter name (a 3-D weight, and a 0-d scalar) gives
    exactly the prediction it gives under the numba trainer's name."""
    def rename(d, shape):
        w = d["W2"][:, :, 0, 0]
        enc = np.broadcast_to(w[:, :, None, None, None], w.shape + shape).copy()
        return {"W2": d["W2"], "encoder.0.weight": enc, "scale": w.copy()}

    fields = {f: rename(getattr(run, f), (2, 3, 1)) for f in ("weights", "grad", "grad_var", "hess_grad")}
    torchy = EnsembleRun.from_arrays(t=run.t, eta=run.eta, batch_size=1, **fields)
    ref = fpkit.predict(torchy, "W2[0,0]", dt=0.05, js=False)
    for lab in ("encoder.0.weight[1,2,0]", "scale[]"):
        p = fpkit.predict(torchy, lab, dt=0.05, js=False)
        assert p.label == lab
        np.testing.assert_array_equal(p.distance["fp"], ref.distance["fp"])
    with pytest.raises(ConfigError, match=r"entry 'encoder.0.weight\[1,3,0\]' does not exist"):
        fpkit.predict(torchy, "encoder.0.weight[1,3,0]")
    with pytest.raises(ConfigError, match=r"entry 'scale\[0\]' does not exist"):
        fpkit.predict(torchy, "scale[0]")


# ------------------------------------------------------------------------------------------ diagnostics
@pytest.mark.parametrize("ev, verdict", [
    ({"drift_disagreement": 0.49, "drift_uncertainty": 0.74, "diffusion_share": 0.5, "eta_lam_max": 0.99}, "holds"),
    ({"drift_disagreement": 0.5}, "doubtful"),
    ({"drift_disagreement": 0.8}, "fails"),
    ({"drift_uncertainty": 0.75, "diffusion_share": 0.5}, "doubtful"),
    ({"drift_uncertainty": 1.9, "diffusion_share": 0.5}, "fails"),
    ({"drift_uncertainty": 2.99, "diffusion_share": 1.0}, "holds"),  # diffusion-driven: U fails only at 3
    ({"drift_uncertainty": 3.0, "diffusion_share": 1.0}, "fails"),
    ({"eta_lam_max": 1.0}, "doubtful"),
    ({"eta_lam_max": 2.0}, "fails"),
    ({"eta_lam_max": 2.0, "drift_disagreement": 0.6}, "fails"),
    ({"drift_disagreement": 0.9, "drift_disagreement_z": 1.99}, "holds"),  # within the two estimates' noise
    ({"drift_disagreement": 0.9, "drift_disagreement_z": 2.0}, "fails"),
    ({"drift_disagreement": 0.9, "drift_disagreement_z": 1.0, "drift_uncertainty": 0.75, "diffusion_share": 0.5},
     "doubtful"),
])  # fmt: skip
def test_validity_verdict_at_every_threshold(ev, verdict):
    got, reasons = P.validity(ev, "mechanistic")
    u, share = ev.get("drift_uncertainty", 0), ev.get("diffusion_share", 1)
    assert got == verdict and len(reasons) == sum(
        [ev.get("drift_disagreement", 0) >= 0.5 and ev.get("drift_disagreement_z", 2.0) >= 2.0,
         ev.get("eta_lam_max", 0) >= 1.0, u >= 0.75 if share < 1.0 else u >= 3.0])  # fmt: skip


def test_drift_uncertainty_is_a_contracted_geometric_sum():
    """Equal lags, each with displacement error σ, and a drift that contracts by e^c per lag: an error made in
    lag j reaches snapshot s damped by e^{c(s−1−j)}, so U² = σ² (1 − e^{2cn}) / (1 − e^{2c}) / floor² after n
    lags (closed form of the geometric sum); with no contraction U = σ √n / floor, and with a floor per
    snapshot the worst snapshot counts."""
    t, sig = np.arange(11.0), np.full(11, 0.3)
    for c in (-0.7, -0.1):
        ref = 0.3 * np.sqrt((1 - np.exp(2 * c * 10)) / (1 - np.exp(2 * c))) / 0.2
        assert P.drift_uncertainty(t, sig, 0.2, np.full(10, c)) == pytest.approx(ref, rel=1e-12)
    assert P.drift_uncertainty(t, sig, 0.2) == pytest.approx(0.3 * np.sqrt(10) / 0.2, rel=1e-12)
    floors = np.full(11, 0.2)
    floors[3] = 0.01  # the third snapshot's floor is tiny: U is set there
    assert P.drift_uncertainty(t, sig, floors) == pytest.approx(0.3 * np.sqrt(3) / 0.01, rel=1e-12)


def test_noisy_snapshot_gradients_are_diagnosed_as_noise_with_the_predicted_uncertainty(run):
    """Snapshot gradients with step-to-step noise (−∂L/∂w = A + σξ, σ = 3, independent per member and
    snapshot: the ReLU run of issue 17 measured 10-20× the lag-average's spread): the drifts disagree, but only
    by ≈ 1 standard error (pure noise gives 1), and U matches its value from the known σ and the known
    contraction ∂A/∂w = −1.5 (a geometric-type sum over the lags, ``drift_uncertainty``)."""
    rng = np.random.default_rng(9)
    noisy = EnsembleRun.from_arrays(t=run.t, weights=run.weights, eta=run.eta, batch_size=1, grad_var=run.grad_var,
                                    grad={"W2": run.grad["W2"] + 3 * rng.standard_normal(run.grad["W2"].shape)},
                                    hess_grad=run.hess_grad)  # fmt: skip
    p = fpkit.predict(noisy, "W2[0,0]", dt=0.02, js=False, ks=False)
    d = p.diagnostics
    E, J = p.split["estimate"], p.split["judge"]
    t, w = run.t, run.weights["W2"][:, E, 0, 0]
    se = np.concatenate([np.diff(t), [0.0]]) * np.hypot(3.0, 0.05) / np.sqrt(E.size)
    lag = 0.5 * (se[:-1] ** 2 + se[1:] ** 2)
    floors = [metrics.w1_floor(J.size, samples=w[s]) for s in range(t.size)]
    ref = max(np.sqrt(np.sum(lag[:s] * np.exp(-3.0 * (t[s] - t[1 : s + 1])))) / floors[s] for s in range(1, t.size))
    assert d["drift_uncertainty"] == pytest.approx(ref, rel=0.1)  # measured 3 %
    assert d["drift_contraction"] == pytest.approx(-1.5 * t[-1], rel=0.15)
    assert 0.7 < d["drift_disagreement_z"] < 1.5  # measured 1.06
    assert d["verdict"] == "fails" and "noise floors, beyond the 3-floor criterion" in d["reasons"][0]
    assert p.distance["fp"][1:].max() > 3  # and it does miss the 3-floor criterion out of sample


def test_kramers_moyal_route_is_judged_by_curvature_only():
    assert P.validity({"drift_disagreement": 0.9, "drift_uncertainty": 9.0, "diffusion_share": 0.1}, "kramers-moyal")[0] == "holds"


def test_known_diffusion_holds(pred):
    d = pred.diagnostics
    assert d["verdict"] == "holds" and d["reasons"] == []
    assert d["drift_disagreement"] < 0.3 and d["drift_uncertainty"] < 0.75 and d["diffusion_share"] > 1


def test_lam_max_on_no_probe_member_is_not_measured_not_nan(run):
    """probes = 0 leaves λmax with no column: the evidence says "not measured" (None and a note) instead of a
    NaN median that passed every threshold comparison with a RuntimeWarning; with λmax on probe members, the
    largest per-snapshot median of η·λmax, NaN members left out."""
    import warnings

    kw = dict(t=run.t, weights=run.weights, eta=run.eta, batch_size=1, grad=run.grad, grad_var=run.grad_var,
              hess_grad=run.hess_grad)  # fmt: skip
    none = EnsembleRun.from_arrays(lam_max=np.zeros((run.t.size, 0)), **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        d = fpkit.predict(none, "W2[0,0]", dt=0.01, js=False).diagnostics
    assert d["eta_lam_max"] is None and "not measured" in d["eta_lam_max_note"]
    lam = np.tile([1.0, 50.0, 150.0, np.nan], (run.t.size, 1))
    lam[-1] = [10.0, 300.0, 80.0, 120.0]
    d = fpkit.predict(EnsembleRun.from_arrays(lam_max=lam, **kw), "W2[0,0]", dt=0.01, js=False).diagnostics
    assert d["eta_lam_max"] == pytest.approx(run.eta * 100.0)  # median of 10, 80, 120, 300
    assert d["verdict"] == "doubtful" and any("η·λmax" in r for r in d["reasons"])


def test_members_frozen_by_a_dead_unit_are_a_mixture_the_verdict_names(run):
    """A third of the members never move (their gradient is exactly zero, as for a ReLU unit dead on every
    input) while the rest follow the known diffusion: one drift field of w cannot carry the two laws. The
    evidence measures the frozen fraction and the verdict is doubtful with that reason; the clean run is not
    affected (no increment is exactly zero)."""
    w, g = run.weights["W2"].copy(), run.grad["W2"].copy()
    v, hg = run.grad_var["W2"].copy(), run.hess_grad["W2"]
    frozen = np.arange(w.shape[1]) % 3 == 0
    w[:, frozen] = w[0, frozen]
    g[:, frozen], v[:, frozen] = 0.0, 0.0
    mixed = EnsembleRun.from_arrays(t=run.t, weights={"W2": w}, eta=run.eta, batch_size=1, grad={"W2": g},
                                    grad_var={"W2": v}, hess_grad={"W2": hg})  # fmt: skip
    d = fpkit.predict(mixed, "W2[0,0]", dt=0.01, js=False).diagnostics
    assert d["frozen_fraction"] == pytest.approx(1 / 3, abs=0.05)  # of the estimation half
    assert d["verdict"] in ("doubtful", "fails") and any("did not move at all" in r for r in d["reasons"])
    clean = fpkit.predict(run, "W2[0,0]", dt=0.01, js=False).diagnostics
    assert clean["frozen_fraction"] == 0.0 and not any("did not move" in r for r in clean["reasons"])
    assert P.validity({"frozen_fraction": 0.04}, "mechanistic")[0] == "holds"
    assert P.validity({"frozen_fraction": 0.05}, "kramers-moyal")[0] == "doubtful"
    assert P.validity({"frozen_fraction": 1.0}, "mechanistic")[0] == "holds"  # nothing moves: one law


def test_sgld_temperature_is_part_of_the_diffusion():
    """Full-batch SGLD on 1-D least squares: w ← w − η a (w − w*) + √(2ηT) ξ, an exact OU process in
    t = η·step with drift −a (w − w*) and D = T (the full-batch gradient has no minibatch variance). The
    mechanistic route's D is T — it was 0 before, the injected noise left out — and the prediction holds."""
    T, lr = 0.02, 0.05
    ens = fpkit.Ensemble(model="regression", optimizer="sgld", temperature=T, lr=lr, sampling="full",
                         batch_size=64, members=1600, steps=400, snapshots=9, seed=4, statistics=True,
                         data={"kind": "regression", "d": 1, "n": 64, "x_std": 1.0, "noise": 0.3,
                               "w_star": [0.5]})  # fmt: skip
    run = ens.train()
    assert P.sgld_temperature(run) == T
    pred = fpkit.predict(run, "W1[0,0]", dt=0.01, js=False)
    D, ok = pred.coefficients["diffusion"], pred.coefficients["supported"]
    assert np.allclose(D[ok], T, rtol=1e-9)  # grad_var = 0: D is exactly the temperature
    assert np.max(pred.distance["fp"][1:]) < 3.0
    assert np.allclose(P.diffusion_share(run, "W1").ravel(), 2 * T * run.t[-1] / run.weights["W1"][-1].var())


@pytest.fixture(scope="module")
def biased_run(run):
    """The recorded gradients carry a constant bias (−∂L/∂w = A − 0.5): the mechanistic drift is wrong where
    the motion itself (Kramers-Moyal) is right."""
    return EnsembleRun.from_arrays(t=run.t, weights=run.weights, eta=run.eta, batch_size=1, grad={"W2": run.grad["W2"] + 0.5},
                                   grad_var=run.grad_var, hess_grad=run.hess_grad)  # fmt: skip


def test_a_misleading_gradient_is_diagnosed_and_auto_takes_kramers_moyal(biased_run):
    mech = fpkit.predict(biased_run, "W2[0,0]", dt=0.02, js=False)
    assert mech.diagnostics["verdict"] == "fails" and mech.diagnostics["drift_disagreement"] >= 0.8
    assert mech.diagnostics["drift_disagreement_z"] > 4  # a bias beyond the estimates' noise (measured 6.8; noise ≈ 1)
    assert mech.distance["fp"][-1] > 5  # it does fail out of sample
    auto = fpkit.predict(biased_run, "W2[0,0]", route="auto", dt=0.02, js=False)
    assert auto.options["route"] == "kramers-moyal" and auto.diagnostics["route_choice"].startswith("kramers-moyal")
    assert np.nanmedian(auto.distance["fp"][1:]) < 2.0  # and the evidence picked the route that holds
    good = fpkit.predict(synthetic(M=400), "W2[0,0]", route="auto", dt=0.05, js=False)
    assert good.options["route"] == "mechanistic"


def test_damaged_prediction_file_is_a_file_format_error(run, tmp_path):
    import h5py

    from fpkit.errors import FileFormatError

    path = fpkit.predict(run, "W2[0,0]", dt=0.1, js=False, ks=False).save(tmp_path / "p.h5")
    with h5py.File(path, "a") as f:
        del f["W2[0,0]"]["density"]
    with pytest.raises(FileFormatError, match="not a complete prediction file"):
        P.Prediction.load(path)


# ------------------------------------------------------------------------------- joint (output) prediction
def test_tilt_to_marginals_is_the_i_projection_of_a_gaussian():
    """Members of a correlated Gaussian (ρ = 0.8) reweighted to marginals N(0.3, 1): the I-projection of
    N(0, Σ) onto them is N((0.3, 0.3), Σ) (tilting by a linear potential keeps the covariance; Csiszár 1975),
    so the weighted means move to 0.3 while the weighted covariance stays Σ; every bin's mass matches."""
    rng = np.random.default_rng(1)
    x = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.8], [0.8, 1.0]], 20000)
    g = fpkit.Grid.uniform(-7.0, 7.0, 1400)
    target = scipy.stats.norm.pdf(g.x, 0.3, 1.0)
    w, resid = P.tilt_to_marginals(x, [(g, target), (g, target)], bins=20)
    assert resid < 1e-6 and w.sum() == pytest.approx(1.0)
    mean = w @ x
    cov = (x - mean).T @ ((x - mean) * w[:, None])
    np.testing.assert_allclose(mean, [0.3, 0.3], atol=0.02)  # binned constraints: within-bin shifts free
    np.testing.assert_allclose(cov, [[1.0, 0.8], [0.8, 1.0]], atol=0.05)
    # the members' own law as the target: nothing to change (sampling noise only)
    w0, _ = P.tilt_to_marginals(x, [(g, scipy.stats.norm.pdf(g.x))] * 2, bins=20)
    assert 1.0 / np.sum(w0**2) > 0.98 * x.shape[0]


def test_weighted_judge_reduces_to_the_two_sample_judge():
    """Equal weights: the same W1/floor and KS as the unweighted two-sample judge; weights on half of the
    sample: its effective size halves and the floor widens accordingly."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=800), rng.normal(0.1, 1.0, size=600)
    w1, ks = P.judge_weighted(a, b, np.full(600, 1 / 600))
    assert w1 == pytest.approx(P.judge_two_samples(a, b), rel=1e-9)
    assert ks == pytest.approx(metrics.ks_two_samples(a, b), abs=1e-12)
    half = np.where(np.arange(600) < 300, 1 / 300, 0.0)
    w1h, _ = P.judge_weighted(a, b, half)
    assert w1h == pytest.approx(P.judge_two_samples(a, b[:300]), rel=1e-9)


# ------------------------------------------------------------------- coefficients under-resolved in time
def test_interpolation_ratio_is_linear_over_geometric_quadrature_of_an_exponential_decay():
    """ρ(r) = (1+r)/2 · ln r/(r−1) against scipy's quadrature of D₀e^{−kt} over a lag whose ends differ by r
    (60-fold: issue 17's cell 18), and the diagnostic's induced error for a pure diffusion (A = 0: the
    variance error is exactly twice the ∫D error) against the W1 of the two centred Gaussians."""
    from scipy.integrate import quad

    T, D0 = 1.5, 0.01
    for r in (1 / 60, 0.3, 1.0 + 1e-7, 4.0, 60.0):
        k = -np.log(r) / T
        geo = quad(lambda u: D0 * np.exp(-k * u), 0.0, T, epsabs=0, epsrel=1e-13)[0]
        assert P.interpolation_ratio(r) == pytest.approx(T * D0 * (1 + r) / 2 / geo, rel=1e-10)
    r, sigma, floor = 1 / 60, 0.08, 0.004
    geo = quad(lambda u: D0 * r ** (u / T), 0.0, T, epsabs=0, epsrel=1e-13)[0]
    wider = np.sqrt(sigma**2 + 2 * (T * D0 * (1 + r) / 2 - geo))
    got = P.interpolation_error([0.0, T], [D0, D0 * r], [0.05, sigma], floor)
    assert got["interpolation_error"] == pytest.approx(np.sqrt(2 / np.pi) * (wider - sigma) / floor, rel=1e-10)
    assert got["interpolation_lag"] == [0.0, T] and got["interpolation_d_ratio"] == pytest.approx(60.0)


def exact_ou(t, M=2000, theta=0.5, D0=0.02, k=np.log(60) / 1.5, eta=0.01, seed=3):
    """M members of the OU process dw = −θw dt + √(2D(t)) dW, D(t) = D₀e^{−kt} (falls 60-fold over t 0 → 1.5),
    sampled exactly at the snapshots t, with 'gradients' g = θw and grad_var = 2D/η (the mechanistic route's
    coefficients exact)."""
    rng = np.random.default_rng(seed)
    w = np.empty((t.size, M))
    w[0] = rng.normal(0.0, 0.02, M)
    for s in range(t.size - 1):
        a, b = t[s], t[s + 1]  # ∫ₐᵇ 2D(u) e^{−2θ(b−u)} du in closed form
        var = 2 * D0 * np.exp(-2 * theta * b) * (np.exp((2 * theta - k) * b) - np.exp((2 * theta - k) * a)) / (2 * theta - k)
        w[s + 1] = np.exp(-theta * (b - a)) * w[s] + np.sqrt(var) * rng.standard_normal(M)
    v = np.broadcast_to(2 * D0 * np.exp(-k * t)[:, None] / eta, w.shape)
    four = lambda a: np.ascontiguousarray(a)[:, :, None, None]  # noqa: E731
    return EnsembleRun.from_arrays(t=t, weights={"W2": four(w)}, eta=eta, batch_size=1, grad={"W2": four(theta * w)},
                                   grad_var={"W2": four(v)}, hess_grad={"W2": four(np.zeros_like(w))})  # fmt: skip


def test_coarse_snapshots_over_a_fast_diffusion_decay_are_diagnosed_and_dense_ones_are_not():
    """Exact OU ensemble whose D falls 60-fold over the first lag: with that lag one interval, the linear
    interpolation over-counts ∫D (ρ = 2.1), the prediction is too wide out of sample, and the diagnostic names
    the lag; with 10 snapshots per unit time (D falls 1.3-fold per lag), it does not fire and the prediction
    holds."""
    coarse = np.array([0.0, 1.5, 3.0, 4.5, 6.0])
    dense = np.linspace(0.0, 6.0, 61)
    out = {}
    for name, t in (("coarse", coarse), ("dense", dense)):
        out[name] = fpkit.predict(exact_ou(t), "W2[0,0]", dt=0.01, js=False)
    d = out["coarse"].diagnostics
    assert d["interpolation_error"] >= P.INTERP_DOUBTFUL and d["verdict"] == "doubtful", d
    assert d["interpolation_lag"] == [0.0, 1.5] and d["interpolation_d_ratio"] == pytest.approx(60.0, rel=1e-9)
    assert any("falls 60-fold over the lag t 0 → 1.5" in r for r in d["reasons"]), d["reasons"]
    assert out["coarse"].distance["fp"][1] > 3.0  # it does miss where it fires
    d = out["dense"].diagnostics
    assert d["interpolation_error"] < P.INTERP_DOUBTFUL and d["verdict"] == "holds", d
    assert out["dense"].distance["fp"][1:].max() < 3.0


@pytest.mark.parametrize("ie, verdict", [(0.99, "holds"), (1.0, "fails")])
def test_under_resolved_coefficients_are_doubtful_and_not_diffusion_driven(ie, verdict):
    """Both sides of INTERP_DOUBTFUL; above it the (inflated) diffusion share no longer classes the entry as
    diffusion-driven, so U = 2 fails as for a drift-driven entry (U_FAILS) instead of holding until 3."""
    ev = {"interpolation_error": ie, "interpolation_lag": [0.0, 1.5], "interpolation_d_ratio": 60.0,
          "drift_uncertainty": 2.0, "diffusion_share": 2.09}  # fmt: skip
    got, reasons = P.validity(ev, "mechanistic")
    assert got == verdict and (len(reasons) == 2) == (ie >= 1.0)
    got, reasons = P.validity(dict(ev, drift_uncertainty=0.5), "mechanistic")
    assert got == ("doubtful" if ie >= 1.0 else "holds")
