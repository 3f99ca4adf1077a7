"""Estimators: empirical densities, local-linear smoothing, mechanistic and Kramers-Moyal drift/diffusion.

Error bars: the local-linear estimate is linear in the responses, ``m̂(x0) = Σ l_i(x0) y_i``, so given the
sampled design its expectation is exactly the smoother applied to the noise-free truth. Tests therefore
separate (i) noise, checked against the reported sandwich standard errors, from (ii) smoothing bias,
checked against ``(h²/2) m''`` where the truth is smooth.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import fpkit
from fpkit import estimators as E
from fpkit.coefficients import Coefficient, diffusion_field, drift_field
from fpkit.errors import ConfigError
from fpkit.validation import references as R


# ============================================================================================ densities
def test_histogram_density_counts_and_normalisation():
    g = fpkit.Grid.uniform(0, 4, 4)
    x = np.array([[0.5, 0.5, 1.5, 3.9], [2.2, 2.3, 2.4, 4.0]])  # x == hi belongs to the last cell
    p = E.histogram_density(x, g)
    np.testing.assert_allclose(p, [[0.5, 0.25, 0, 0.25], [0, 0, 0.75, 0.25]])
    np.testing.assert_allclose(g.integrate(p), [1.0, 1.0])
    with pytest.raises(ConfigError, match="outside the grid"):
        E.histogram_density([1.0, 5.0], g)
    np.testing.assert_allclose(E.histogram_density([1.0, 5.0], g, outside="drop"), [0, 1, 0, 0])
    np.testing.assert_allclose(E.histogram_density([1.0, 5.0], g, outside="clip"), [0, 0.5, 0, 0.5])
    g2 = fpkit.Grid.uniform((0, 0), (3, 1.5), (3, 3))
    p2 = E.histogram_density([[0.5, 0.2], [1.5, 0.7], [1.5, 0.9], [2.1, 1.4]], g2)
    np.testing.assert_allclose(p2, np.array([[1, 0, 0], [0, 2, 0], [0, 0, 1]]) / 4 / g2.cell_volume)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(5, 200))
def test_histogram_density_integrates_to_one(seed, n_snap, M):
    rng = np.random.default_rng(seed)
    x = rng.standard_t(2, size=(n_snap, M)) * rng.uniform(0.1, 5)
    g = E.choose_grid(x, n=37)
    assert g.lo[0] < x.min() and g.hi[0] > x.max()
    np.testing.assert_allclose(g.integrate(E.histogram_density(x, g)), np.ones(n_snap), rtol=1e-12)


def test_choose_grid_covers_all_snapshots_2d():
    x = np.stack([np.random.default_rng(1).normal(size=(3, 50, 2)) * [1, 3]])[0]
    g = E.choose_grid(x, n=(20, 30), pad=0.1, ndim=2)
    span = x.reshape(-1, 2).max(0) - x.reshape(-1, 2).min(0)
    np.testing.assert_allclose(np.array(g.hi) - np.array(g.lo), 1.2 * span)
    assert g.shape == (20, 30)
    with pytest.raises(ConfigError, match="zero range"):
        E.choose_grid(np.ones((2, 5)))
    gs = E.choose_grid(x[..., 0] + 5.0, n=21, symmetric=True)
    assert gs.lo[0] == -gs.hi[0] and gs.hi[0] > x[..., 0].max() + 5.0


# ============================================================================================ local-linear
@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.floats(-3, 3), st.floats(-3, 3), st.sampled_from(["hold", "linear", "widen"]))
def test_local_linear_reproduces_lines_exactly(seed, a, b, tail):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rng.integers(60, 400)) * rng.uniform(0.2, 3)
    xe = np.linspace(x.min() - 1, x.max() + 1, 57)
    fit = E.local_linear_fit(x, a + b * x, xe, min_eff=5, tail=tail)
    s = fit.supported
    np.testing.assert_allclose(
        fit.value[s], a + b * xe[s], atol=1e-9 * (1 + abs(a) + abs(b) * np.abs(xe[s]).max())
    )
    if tail == "widen":  # every point inside the samples' range is fitted
        assert np.all(s[(xe >= x.min()) & (xe <= x.max())])
    outside = xe > xe[s].max()
    if tail == "linear":  # continuing the local line is exact for a line
        np.testing.assert_allclose(
            fit.value, a + b * xe, atol=1e-8 * (1 + abs(a) + abs(b) * np.abs(xe).max())
        )
    else:  # held at the last supported point
        np.testing.assert_allclose(fit.value[outside], fit.value[s][-1], rtol=0, atol=0)
    # the bandwidth rule: 0.3 · IQR / 1.349
    q75, q25 = np.percentile(x, [75, 25])
    assert fit.bandwidth == pytest.approx(0.3 * (q75 - q25) / 1.349, rel=1e-12)


def _ll_reference(x, Y, xe, h):
    """Plain numpy local-linear (weighted least squares per point, every weight) with sandwich errors."""
    X = np.atleast_2d(x.T).T  # (M, d)
    Xe = np.atleast_2d(xe.T).T
    h = np.broadcast_to(h, (X.shape[1],))
    vals, ses, neffs = [], [], []
    for x0 in Xe:
        d = X - x0
        w = np.exp(-0.5 * np.sum((d / h) ** 2, axis=1))
        Z = np.column_stack([np.ones(len(d)), d])
        A = Z.T @ (w[:, None] * Z)
        L = np.linalg.solve(A, (w[:, None] * Z).T)  # rows: coefficient = L @ y
        coef = L @ Y
        res = Y - Z @ coef
        vals.append(coef[0])
        ses.append(np.sqrt(np.sum((L[0][:, None] * res) ** 2, axis=0)))
        neffs.append(w.sum() ** 2 / np.sum(w**2))
    return np.array(vals), np.array(ses), np.array(neffs)


def test_compiled_local_linear_matches_the_numpy_reference():
    rng = np.random.default_rng(6)
    x = rng.normal(size=700)
    Y = np.column_stack([np.sin(x) + rng.normal(size=700), rng.gamma(2, 1, 700)])
    xe = np.linspace(-2, 2, 41)  # inside the data: no fallback
    ref = _ll_reference(x, Y, xe, 0.3)
    for method in ("auto", "direct"):  # exp-free recurrence on uniform points, and every weight
        fit = E.local_linear_fit(x, Y, xe, 0.3, method=method)
        assert fit.supported.all()
        np.testing.assert_allclose(fit.value, ref[0], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(fit.se, ref[1], rtol=1e-9)
        np.testing.assert_allclose(fit.n_eff, ref[2], rtol=1e-10)
        # errors of one column only (the second pass over that column): the same numbers, NaN for the other
        one = E.local_linear_fit(x, Y, xe, 0.3, method=method, se=[1])
        np.testing.assert_allclose(one.se[:, 1], ref[1][:, 1], rtol=1e-9)
        assert np.all(np.isnan(one.se[:, 0]))
        # a scalar counts by its truth (se=1 is every column, not column 1), a bool array of K is a mask (not
        # the indices 1, 0), and indices beyond the columns are refused naming `se`
        for se, cols in [(1, [0, 1]), (0, []), (None, []), (np.array([True, False]), [0])]:
            got = E.local_linear_fit(x, Y, xe, 0.3, method=method, se=se)
            assert np.flatnonzero(np.isfinite(got.se).all(axis=0)).tolist() == cols, se
            np.testing.assert_allclose(got.se[:, cols], ref[1][:, cols], rtol=1e-9)
        for bad in ([2], [-3], [0.5], [[0]]):
            with pytest.raises(ConfigError, match="`se`"):
                E.local_linear_fit(x, Y, xe, 0.3, method=method, se=bad)
    # the uniform passes take samples two at a time: an odd count, and neighbours whose windows are disjoint
    # (two clusters, alternating) or overlap on either side
    xc = np.where(np.arange(301) % 2 == 0, -1.0, 1.0) + rng.normal(size=301) * np.where(np.arange(301) % 3, 0.3, 0.1)
    Yc = np.column_stack([np.cos(xc) + rng.normal(size=301), xc**2])
    xe = np.linspace(-1.2, 1.2, 49)
    ref = _ll_reference(xc, Yc, xe, 0.1)
    fit = E.local_linear_fit(xc, Yc, xe, 0.1, min_eff=1, tail="hold")
    np.testing.assert_allclose(fit.value, ref[0], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.se, ref[1], rtol=1e-9)
    np.testing.assert_allclose(fit.n_eff, ref[2], rtol=1e-10)
    x2 = rng.normal(size=(600, 2)) * [1.0, 0.5]
    Y2 = np.column_stack([x2[:, 0] * x2[:, 1] + rng.normal(size=600), rng.gamma(2, 1, 600)])
    grid = fpkit.Grid.uniform((-1.2, -0.6), (1.2, 0.6), (12, 10))
    ref = _ll_reference(x2, Y2, np.stack([a.ravel() for a in grid.meshgrid()], axis=1), np.array([0.3, 0.15]))
    for method in ("auto", "direct"):
        fit = E.local_linear_2d(x2, Y2, grid, (0.3, 0.15), method=method)
        assert fit.supported.all()
        np.testing.assert_allclose(fit.value.reshape(-1, 2), ref[0], rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(fit.se.reshape(-1, 2), ref[1], rtol=1e-8)
        np.testing.assert_allclose(fit.n_eff.ravel(), ref[2], rtol=1e-10)


def test_local_linear_error_bars_are_calibrated():
    """z = (estimate − smoothed truth)/se over 40 replicates × 5 points: sd(z) = 1 within 3.5 SE (≈ 0.2)."""
    rng = np.random.default_rng(12)
    xe = np.array([-1.5, -0.5, 0.0, 0.7, 1.6])
    m = lambda x: np.sin(2 * x) + 0.5 * x
    zs = []
    for _ in range(40):
        x = rng.normal(size=1500)
        y = m(x) + (0.3 + 0.4 * np.abs(x)) * rng.normal(size=x.size)  # heteroscedastic
        fit = E.local_linear_fit(x, y, xe)
        mean = E.local_linear(x, m(x), xe, fit.bandwidth)  # the estimator's exact expectation given x
        zs.append((fit.value - mean) / fit.se)
    z = np.ravel(zs)
    assert abs(z.mean()) < 3.5 / np.sqrt(z.size)
    assert z.std() == pytest.approx(1.0, abs=3.5 / np.sqrt(2 * z.size) + 0.03)  # + O(1/n_eff) sandwich bias


def _gaussian_design_bias(x0, h, sd, c2, c3):
    """Exact population bias of local-linear (Gaussian kernel h, N(0, sd²) design) for the part
    ``c2 d² + c3 d³`` of m(x0 + d): the kernel-weighted design is Gaussian in d with variance
    s² = h² sd²/(sd² + h²) and mean μ = −x0 s²/sd², and Σ l_i d_i² = s² − μ², Σ l_i d_i³ = −2μ³."""
    s2 = h**2 * sd**2 / (sd**2 + h**2)
    mu = -x0 * s2 / sd**2
    return c2 * (s2 - mu**2) + c3 * (-2 * mu**3)


def test_local_linear_bias_matches_the_exact_population_bias():
    from scipy.special import ndtri

    x = ndtri((np.arange(200_000) + 0.5) / 200_000)  # the N(0, 1) design by its quantiles: no design noise
    xe = np.linspace(-1.5, 1.5, 7)
    h = 0.15
    # m = x²: c2 = 1; m = x³ − x: c2 = 3 x0, c3 = 1. Leading order both are (h²/2) m''.
    for m, c2, c3 in ((lambda x: x**2, 1.0 + 0 * xe, 0.0), (lambda x: x**3 - x, 3 * xe, 1.0)):
        bias = E.local_linear(x, m(x), xe, h) - m(xe)
        exact = _gaussian_design_bias(xe, h, 1.0, c2, c3)
        np.testing.assert_allclose(bias, exact, atol=2e-5)  # quantile design: O(1/N) discretisation
        # the leading term (h²/2) m'' = c2 h² differs from it by O(h⁴ (1 + x0²)) (relative 2-5 % here)
        leading = c2 * h**2
        assert np.all(np.abs(exact - leading) <= 1.1 * h**4 * (1 + xe**2) * np.maximum(1, np.abs(c2)))


def test_identical_members_give_the_sample_mean():
    """All members at one value (e.g. a shared initialisation): no function of w can be estimated, so the
    estimate is the sample mean everywhere; Kramers-Moyal gives the increments' mean and variance."""
    rng = np.random.default_rng(2)
    y = rng.normal(1.0, 0.5, 400)
    fit = E.local_linear_fit(np.full(400, 0.3), y, np.linspace(-1, 1, 11))
    np.testing.assert_allclose(fit.value, y.mean())
    assert fit.bandwidth == 0.0
    grid = fpkit.Grid.uniform(-1, 1, 11)
    km = E.kramers_moyal(np.full(400, 0.3), 0.3 + 0.1 * y, 0.1, grid)
    np.testing.assert_allclose(km.drift, 0.1 * y.mean() / 0.1)
    np.testing.assert_allclose(km.diffusion, np.mean((0.1 * y - 0.1 * y.mean()) ** 2) / 0.2)


def test_samples_narrower_than_a_cell_still_give_estimates():
    """An entry that collapsed to less than a grid cell: the fit is made across the samples and carried to the
    grid, with the cells holding samples marked as supported."""
    rng = np.random.default_rng(8)
    w = 0.31 + 1e-3 * rng.normal(size=1000)
    g = 2.0 * (w - 0.31) - 0.5 + 0.01 * rng.normal(size=1000)  # A = −g
    grid = fpkit.Grid.uniform(-1, 1, 20)  # cells of 0.1
    est = E.mechanistic(w, g, np.full(1000, 0.4), 0.1, grid)
    assert est.supported.sum() == 1 and est.supported[13]  # the cell [0.3, 0.4]
    ref = E.local_linear(w, -g, np.linspace(w.min(), w.max(), 64))[[0, -1]]
    np.testing.assert_allclose(est.drift[[0, -1]], ref, rtol=1e-12)  # held beyond the samples
    np.testing.assert_allclose(est.diffusion, 0.02, rtol=1e-12)
    with pytest.raises(ConfigError, match="outside the grid"):
        E.mechanistic(w + 5, g, np.full(1000, 0.4), 0.1, grid)


def test_tail_fallback_holds_beyond_support_and_interpolates_gaps():
    rng = np.random.default_rng(3)
    x = np.concatenate([rng.uniform(-3, -1, 400), rng.uniform(1, 3, 400)])  # a gap in (−1, 1)
    y = x**2
    xe = np.linspace(-5, 5, 101)
    fit = E.local_linear_fit(x, y, xe, bandwidth=0.1, tail="hold")
    s = fit.supported
    assert not s[np.abs(xe) < 0.8].any() and not s[np.abs(xe) > 3.0].any()
    right = xe > 3.0
    last = np.flatnonzero(s)[-1]
    np.testing.assert_array_equal(fit.value[right], fit.value[last])
    gap = np.abs(xe) < 0.8
    lo, hi = np.flatnonzero(s & (xe < 0))[-1], np.flatnonzero(s & (xe > 0))[0]
    np.testing.assert_allclose(fit.value[gap], np.interp(xe[gap], xe[[lo, hi]], fit.value[[lo, hi]]))


def test_widened_tail_matches_a_direct_nearest_neighbour_bandwidth_fit():
    """tail="widen": unsupported points inside the samples' range are refitted with the bandwidth widened to
    their 20th-nearest sample; at the directly fitted points this equals the plain numpy reference."""
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(0, 0.05, 1900), rng.normal(0, 1.0, 100)])  # narrow core, sparse tails
    y = np.sin(x) + 0.1 * rng.normal(size=x.size)
    xe = np.linspace(x.min(), x.max(), 41)  # few points: each widened one is fitted directly
    fit = E.local_linear_fit(x, y, xe, tail="widen")
    hold = E.local_linear_fit(x, y, xe, tail="hold")
    wide = fit.supported & ~hold.supported
    assert wide.sum() > 20 and np.all(fit.supported)
    hj = np.maximum(fit.bandwidth, E.nearest_neighbour_distance(x, xe[wide], 20))
    for x0, h0, v in zip(xe[wide], hj, fit.value[wide]):
        ref, _, _ = _ll_reference(x, y[:, None], np.array([x0]), h0)
        assert v == pytest.approx(ref[0, 0], rel=1e-10, abs=1e-12)


def test_widened_tail_recovers_the_conditional_mean_of_a_heavy_tailed_sample():
    """A collapsing weight entry in miniature: 95 % of the members in a narrow core, 5 % in wide tails, and
    E[y | x] = −x − x³ known exactly. The fixed bandwidth supports only the core; holding its value leaves the
    tails with the core's edge drift (wrong by O(1)), the nearest-neighbour widening recovers m(x) there
    within 4 standard errors."""
    rng = np.random.default_rng(6)
    x = np.concatenate([rng.normal(0, 0.02, 3800), rng.normal(0, 0.7, 200)])
    m = lambda u: -u - u**3  # noqa: E731
    y = m(x) + 0.05 * rng.normal(size=x.size)
    xe = np.linspace(-1.2, 1.2, 241)
    fit = E.local_linear_fit(x, y, xe)
    hold = E.local_linear_fit(x, y, xe, tail="hold")
    tails = (np.abs(xe) > 0.3) & (np.abs(xe) < 0.9 * np.abs(x).max())
    tails &= (xe > x.min()) & (xe < x.max())
    assert not hold.supported[tails].any() and fit.supported[tails].all()
    # the widened fit: within its own error bars plus its smoothing bias (h²/2)|m''| = 3 h² |x|
    h = np.interp(xe[tails], xe, np.maximum(fit.bandwidth, E.nearest_neighbour_distance(x, xe, 20)))
    err = np.abs(fit.value[tails] - m(xe[tails]))
    assert np.all(err <= 4 * fit.se[tails] + 3 * h**2 * np.abs(xe[tails]) + 1e-3)
    assert np.median(np.abs(hold.value[tails] - m(xe[tails]))) > 0.3


# ============================================================================================ mechanistic
def _synthetic_members(rng, M, eta):
    """Members with known conditional laws: A(w) = w − w³, D(w) = 0.02 (1 + w²)/2 per unit t."""
    w = rng.normal(0, 0.9, M)
    A = w - w**3
    g = -A + 0.4 * rng.normal(size=M)  # scatter from the other weights
    Dtrue = 0.01 * (1 + w**2)
    v = (2 / eta) * Dtrue * rng.gamma(4.0, 0.25, M)  # mean (2/η) D, 50 % relative scatter
    hg = 3 * w + 0.2 * rng.normal(size=M)
    return w, g, v, hg


def test_mechanistic_recovers_a_cubic_drift_and_quadratic_diffusion_within_error_bars():
    rng = np.random.default_rng(21)
    eta, M = 0.05, 4000
    w, g, v, hg = _synthetic_members(rng, M, eta)
    grid = fpkit.Grid.uniform(-4, 4, 161)
    est = E.mechanistic(w, g, v, eta, grid)
    x = grid.x
    core = est.supported & (np.abs(x) < 1.8)
    h = est.bandwidth
    # given the sampled w, the estimate's expectation is exactly the smoother applied to the true A and D
    A_true, D_true = x - x**3, 0.01 * (1 + x**2)
    A_exp = E.local_linear(w, w - w**3, x, h)
    D_exp = E.local_linear(w, 0.01 * (1 + w**2), x, h)
    zA = (est.drift - A_exp)[core] / est.drift_se[core]
    zD = (est.diffusion - D_exp)[core] / est.diffusion_se[core]
    # ~60 correlated points; 4.5 se as the max over them
    assert np.abs(zA).max() < 4.5 and np.abs(zD).max() < 4.5
    # and that expectation is the truth plus the smoothing bias (population formula; the sampled design
    # adds ≈ 5 % relative noise to the bias)
    biasA = _gaussian_design_bias(x, h, 0.9, -3 * x, -1.0)
    biasD = _gaussian_design_bias(x, h, 0.9, 0.01, 0.0)
    mid = core & (np.abs(x) < 1.5)  # the design noise grows in the tails (≈ 20 % of the bias at 1.8)
    assert np.abs(A_exp - A_true - biasA)[mid].max() < 0.1 * np.abs(biasA[mid]).max()
    assert np.abs(D_exp - D_true - biasD)[mid].max() < 0.1 * biasD.max()
    assert np.all(est.diffusion > 0)
    quick = E.mechanistic(w, g, v, eta, grid, se=False)  # the same estimates without the error pass
    np.testing.assert_array_equal(quick.drift, est.drift)
    np.testing.assert_array_equal(quick.diffusion, est.diffusion)
    assert np.isnan(quick.drift_se).all() and np.isnan(quick.diffusion_se).all()
    # variants: discrete-step D̃ adds (η/2) E[g² | w] = (η/2)(A² + 0.16); second order adds −(η/2) E[hg | w]
    dis = E.mechanistic(w, g, v, eta, grid, diffusion="discrete")
    extra = E.local_linear_fit(w, 0.5 * eta * g**2, x, h)
    np.testing.assert_allclose(dis.diffusion[core], est.diffusion[core] + extra.value[core], rtol=1e-10)
    extra_exp = E.local_linear(w, 0.5 * eta * ((w - w**3) ** 2 + 0.16), x, h)
    assert np.abs((extra.value - extra_exp)[core] / extra.se[core]).max() < 4.5
    so = E.mechanistic(w, g, v, eta, grid, hg=hg, second_order=True)
    hfit = E.local_linear_fit(w, hg, x, h)
    np.testing.assert_allclose(so.drift - est.drift, -0.5 * eta * hfit.value, rtol=1e-10, atol=1e-14)
    assert np.abs((hfit.value - E.local_linear(w, 3 * w, x, h))[core] / hfit.se[core]).max() < 4.5


# The identity ∂_j |∇L|² = 2 (H∇L)_j behind the second-order drift is checked on the ensemble's own recorded
# hess_grad in test_ensemble_statistics.py.


def test_symmetrised_estimates_are_exactly_odd_and_even():
    rng = np.random.default_rng(22)
    eta = 0.05
    w, g, v, _ = _synthetic_members(rng, 1500, eta)
    grid = fpkit.Grid.uniform(-4, 4, 80)  # symmetric about 0
    est = E.mechanistic(w, g, v, eta, grid, symmetric=True)
    np.testing.assert_allclose(est.drift, -est.drift[::-1], atol=1e-12)
    np.testing.assert_allclose(est.diffusion, est.diffusion[::-1], rtol=1e-12)
    plain = E.mechanistic(w, g, v, eta, grid)
    core = plain.supported & (np.abs(grid.x) < 1.5)
    # twice the samples: standard errors shrink by ≈ √2
    ratio = np.median(est.drift_se[core] / plain.drift_se[core])
    assert ratio == pytest.approx(1 / np.sqrt(2), rel=0.15)


def test_diffusion_floor_keeps_d_positive():
    rng = np.random.default_rng(4)
    w = rng.normal(size=800)
    v = np.where(w > 1.0, 0.0, 1.0)  # D drops to zero on the right: local-linear undershoots below 0
    grid = fpkit.Grid.uniform(-4, 4, 81)
    est = E.mechanistic(w, np.zeros(800), v, 0.1, grid)
    ref = np.median(E.local_linear_fit(w, 0.05 * v, grid.x).value[est.supported])
    assert est.diffusion.min() == pytest.approx(1e-3 * ref, rel=1e-12)
    assert np.all(est.diffusion > 0)


# ============================================================================================ Kramers-Moyal
def test_kramers_moyal_recovers_ou_drift_and_diffusion_from_exact_transitions():
    rng = np.random.default_rng(31)
    theta, mu, D, dt, M = 1.2, 0.3, 0.5, 0.05, 6000
    w0 = rng.normal(0.5, 0.8, M)
    _m, var = R.ou_moments(dt, 0.0, 0.0, theta, 0.0, D)  # transition variance from a point
    w1 = mu + (w0 - mu) * np.exp(-theta * dt) + np.sqrt(var) * rng.normal(size=M)
    grid = fpkit.Grid.uniform(-3, 4, 141)
    est = E.kramers_moyal(w0, w1, dt, grid)
    x = grid.x
    core = est.supported & (np.abs(x - 0.5) < 1.6)
    # exact finite-lag moments (linear and constant in w: no smoothing bias)
    A_lag = (mu - x) * (1 - np.exp(-theta * dt)) / dt
    D_lag = var / (2 * dt)
    assert np.abs((est.drift - A_lag)[core] / est.drift_se[core]).max() < 4.5
    assert np.abs((est.diffusion - D_lag)[core] / est.diffusion_se[core]).max() < 4.5
    # the lag moments differ from the generator's by O(θΔt): 3 % here, below the error bars at the centre
    assert D_lag == pytest.approx(D * (1 - theta * dt), rel=0.01)
    # series: three snapshots give two estimates, placed at the lag starts
    w2 = mu + (w1 - mu) * np.exp(-theta * dt) + np.sqrt(var) * rng.normal(size=M)
    ser = E.kramers_moyal_series([0.0, dt, 2 * dt], np.stack([w0, w1, w2]), grid)
    np.testing.assert_allclose(ser.t, [0.0, dt])
    np.testing.assert_allclose(ser.drift[0], est.drift)
    assert ser.drift.shape == (2, 141)


# ============================================================================================ 2-D
def test_mechanistic_2d_recovers_linear_drift_and_a_tensor():
    rng = np.random.default_rng(41)
    M, eta = 3000, 0.1
    w = rng.normal(size=(M, 2)) * [1.0, 0.6]
    Th = np.array([[1.0, 0.5], [-0.2, 2.0]])
    g = w @ Th.T + 0.3 * rng.normal(size=(M, 2))  # A = −Θ w
    C0 = np.array([0.2, 0.05, 0.1])  # (C00, C01, C11)
    cov = C0 * rng.gamma(10.0, 0.1, size=(M, 1))  # mean C0, 32 % scatter, positive
    cov[:, 0] *= 1 + 0.1 * w[:, 0]  # E[C00 | w] = 0.2 (1 + 0.1 w0)
    grid = fpkit.Grid.uniform((-3, -2), (3, 2), (30, 24))
    est = E.mechanistic_2d(w, g, cov, eta, grid)
    X, Y = grid.meshgrid()
    core = est.supported & (X**2 + (Y / 0.6) ** 2 < 2.0)
    A_true = -np.einsum("ij,jxy->ixy", Th, np.stack([X, Y]))
    for i in range(2):
        assert np.abs((est.drift[i] - A_true[i])[core] / est.drift_se[i][core]).max() < 4.5
    D_true = 0.5 * eta * np.array([[C0[0] * (1 + 0.1 * X), C0[1] + 0 * X], [C0[1] + 0 * X, C0[2] + 0 * X]])
    for i, j in ((0, 0), (0, 1), (1, 1)):
        assert np.abs((est.diffusion[i, j] - D_true[i, j])[core] / est.diffusion_se[i, j][core]).max() < 4.5
    assert est.drift.shape == (2, 30, 24) and est.diffusion.shape == (2, 2, 30, 24)
    np.testing.assert_array_equal(est.diffusion[0, 1], est.diffusion[1, 0])
    # without standard errors (the 2-D pair prediction keeps none): the same estimates, errors NaN
    bare = E.mechanistic_2d(w, g, cov, eta, grid, se=False)
    np.testing.assert_array_equal(bare.drift, est.drift)
    np.testing.assert_array_equal(bare.diffusion, est.diffusion)
    assert np.all(np.isnan(bare.drift_se)) and np.all(np.isnan(bare.diffusion_se))


def test_kramers_moyal_2d_recovers_an_anisotropic_ou_process():
    rng = np.random.default_rng(42)
    M, dt = 6000, 0.05
    Th = np.array([[1.0, 0.0], [0.4, 2.0]])
    Dm = np.array([[0.3, 0.1], [0.1, 0.2]])
    w0 = rng.normal(size=(M, 2)) * [0.8, 0.5]
    _mt, S = R.linear_sde_moments(dt, [0, 0], np.zeros((2, 2)), Th, [0, 0], Dm)
    Ed = R.linear_sde_moments(dt, [1, 0], np.zeros((2, 2)), Th, [0, 0], Dm)[0]
    Ed2 = R.linear_sde_moments(dt, [0, 1], np.zeros((2, 2)), Th, [0, 0], Dm)[0]
    Emat = np.stack([Ed, Ed2], axis=1)  # e^{−Θ Δt}
    w1 = w0 @ Emat.T + rng.multivariate_normal([0, 0], S, size=M)
    grid = fpkit.Grid.uniform((-3, -2), (3, 2), (24, 20))
    est = E.kramers_moyal_2d(w0, w1, dt, grid)
    X, Y = grid.meshgrid()
    core = est.supported & ((X / 0.8) ** 2 + (Y / 0.5) ** 2 < 2.0)
    A_lag = np.einsum("ij,jxy->ixy", (Emat - np.eye(2)) / dt, np.stack([X, Y]))
    D_lag = S / (2 * dt)
    for i in range(2):
        assert np.abs((est.drift[i] - A_lag[i])[core] / est.drift_se[i][core]).max() < 4.5
        for j in range(2):
            z = (est.diffusion[i, j] - D_lag[i, j])[core] / est.diffusion_se[i, j][core]
            assert np.abs(z).max() < 4.5


def test_psd_floor_of_the_diffusion_tensor():
    a = np.array([1.0, 0.2, 1.0])
    b = np.array([0.0, 0.5, 0.9])
    c = np.array([2.0, 0.2, 1.0])  # second and third points have a negative eigenvalue
    out = E._psd_floor(np.array([[a, b], [b, c]]), np.ones(3, bool), 0.1)
    floor = 0.1 * np.median(0.5 * (a + c))
    for k in range(3):
        ev, vec = np.linalg.eigh(out[:, :, k])
        ev0, vec0 = np.linalg.eigh(np.array([[a[k], b[k]], [b[k], c[k]]]))
        np.testing.assert_allclose(ev, np.maximum(ev0, floor), rtol=1e-12)
        np.testing.assert_allclose(np.abs(vec.T @ vec0), np.eye(2), atol=1e-10)  # same eigenvectors


# ============================================================================================ time series
def test_snapshot_interpolator_is_linear_in_time_and_in_space():
    grid = fpkit.Grid.uniform(0, 1, 5)
    t = np.array([0.0, 1.0, 3.0])
    vals = np.stack([grid.x, 2 * grid.x, -grid.x])
    f = E.SnapshotInterpolator(t, vals, grid)
    np.testing.assert_allclose(f(grid.x, 0.5), 1.5 * grid.x, rtol=1e-14)
    np.testing.assert_allclose(f(grid.x, 2.0), 0.5 * grid.x, rtol=1e-14)
    np.testing.assert_allclose(f(grid.x, -1.0), grid.x)  # held before the first snapshot
    np.testing.assert_allclose(f(grid.x, 9.0), -grid.x)  # and after the last
    np.testing.assert_allclose(f(np.array([0.2, 0.95]), 1.0), [0.4, 1.8])  # held beyond the outer centres
    # results are read-only (cached, possibly views of the snapshots) and the cache sees new arguments
    out = f(grid.x, 0.5)
    with pytest.raises(ValueError):
        out *= 2
    x = np.array([0.3, 0.5])
    np.testing.assert_allclose(f(x, 0.5), [0.45, 0.75])
    x[0] = 0.9  # mutated in place, same time: recomputed, not served from the cache
    np.testing.assert_allclose(f(x, 0.5), [1.35, 0.75])
    # FokkerPlanck's coefficient layer accepts it and detects the time dependence
    c = Coefficient(f, "drift", grid)
    assert c.time_dependent and np.allclose(c.on_grid(2.0), 0.5 * grid.x)


def test_interp_plan_is_np_interp_bit_for_bit():
    """InterpPlan (brackets found once, for a FP solver's face nodes asked at every step) against np.interp: the
    same bits at points inside, on the nodes and beyond both ends, for values of any scale; and the
    interpolator uses it for read-only points, with the same bits as np.interp of its arrays at that time."""
    rng = np.random.default_rng(3)
    for _ in range(20):
        xs = np.unique(rng.normal(size=rng.integers(2, 300)) * rng.uniform(0.01, 50))
        x = np.concatenate([rng.uniform(xs[0] - 1, xs[-1] + 1, 500), xs[rng.integers(0, xs.size, 7)], xs[[0, -1]]])
        plan = E.InterpPlan(x, xs)
        for scale in (1e-6, 1.0, 1e5):
            v = rng.normal(size=xs.size) * scale
            assert np.array_equal(plan(v), np.interp(x, xs, v))
    grid = fpkit.Grid.uniform(-1, 2, 40)
    t = np.array([0.0, 0.7, 2.0])
    vals = rng.normal(size=(3, 40))
    f = E.SnapshotInterpolator(t, vals, grid)
    nodes = np.sort(rng.uniform(-1.5, 2.5, 333))
    nodes.flags.writeable = False
    for s in (0.3, 1.1, 5.0):
        assert np.array_equal(f(nodes, s), np.interp(nodes, grid.x, f.at_time(s)))
    # points that change at every call (a Langevin sampler's particles) on a uniform grid: brackets from the
    # spacing (interp_even), also for points one ulp beside a node, on the end nodes, beyond them and NaN
    xs = grid.x
    near = xs[rng.integers(0, xs.size, 50)]
    paths = np.concatenate([rng.uniform(-1.5, 2.5, 1000), near, np.nextafter(near, np.inf),
                            np.nextafter(near, -np.inf), xs[[0, -1]], [np.nan]])  # fmt: skip
    for s in (0.3, 1.1):
        assert np.array_equal(f(paths, s), np.interp(paths, xs, f.at_time(s)), equal_nan=True)


def test_2d_interpolation_is_regular_grid_interpolator_bit_for_bit():
    """In 2-D the interpolator locates its points once (BilinearPlan, kept for the FP solver's two sets of face
    nodes) and must give scipy's RegularGridInterpolator's bits (of its arrays at that time, points clipped to
    the outer centres): inside, on nodes, on the last node, beyond both ends; a vector coefficient per
    component; alternating point sets and points edited in place are not served a stale plan."""
    from scipy.interpolate import RegularGridInterpolator

    rng = np.random.default_rng(8)
    grid = fpkit.Grid.uniform((-1.0, -2.0), (1.5, 0.5), (17, 23))
    ax = grid.axes
    f = E.SnapshotInterpolator([0.0, 1.0, 2.5], rng.normal(size=(3, 2, 17, 23)) * 1e3, grid, "drift")

    def points(n):
        x, y = rng.uniform(-1.4, 1.9, (n, 3)), rng.uniform(-2.4, 0.9, (n, 3))
        x[0] = ax[0][[0, 5, -1]]  # on nodes, the last included
        y[0] = ax[1][[-1, 0, 7]]
        return x, y

    sets = [points(40), points(31)]
    for t in (0.0, 0.4, 1.7, 2.5, 3.0):
        for x, y in sets + sets[::-1]:
            pts = np.stack([np.clip(x, *ax[0][[0, -1]]), np.clip(y, *ax[1][[0, -1]])], axis=-1)
            ref = np.stack([RegularGridInterpolator(ax, f.at_time(t)[c])(pts) for c in range(2)])
            assert np.array_equal(f(x, y, t), ref)
    x, y = sets[0]
    x[3, 1] = 0.25  # edited in place: located again
    pts = np.stack([np.clip(x, *ax[0][[0, -1]]), np.clip(y, *ax[1][[0, -1]])], axis=-1)
    assert np.array_equal(f(x, y, 0.4)[0], RegularGridInterpolator(ax, f.at_time(0.4)[0])(pts))


def test_series_feeds_2d_coefficients():
    grid = fpkit.Grid.uniform((-1, -1), (1, 1), (6, 5))
    t = np.array([0.0, 1.0])
    shape = grid.shape
    est = [
        E.Estimate(
            grid,
            np.stack([np.full(shape, s), np.full(shape, -s)]),
            np.array([[np.full(shape, 1.0 + s), np.full(shape, 0.2)], [np.full(shape, 0.2), np.ones(shape)]]),
            np.zeros((2, *shape)),
            np.zeros((2, 2, *shape)),
            np.ones(shape),
            np.ones(shape, bool),
            (0.1, 0.1),
        )
        for s in (0.0, 1.0)
    ]
    ser = E.CoefficientSeries.from_estimates(t, est)
    coeffs = ser.fp_coefficients()
    A = drift_field(coeffs["drift"], grid)
    Dt = diffusion_field(coeffs["diffusion"], grid)
    assert A[0].time_dependent and np.allclose(A[1].on_grid(0.25), -0.25)
    assert np.allclose(Dt[0][0].on_grid(0.5), 1.5) and np.allclose(Dt[0][1].on_grid(0.5), 0.2)
    assert np.allclose(Dt[0][0].at(np.array([[0.3, 0.1], [5.0, 5.0]]), 1.0), 2.0)


def _snapshot_fp_moment_errors(n, dt, t_eval=(0.5, 0.7, 2.0)):
    """FP with θ(t) = 0.5 + 0.75 t given at 5 snapshots (linear in t, so the snapshot interpolation is exact):
    errors of the mean and Sheppard-corrected variance against the moment ODEs (tight solve_ivp)."""
    grid = fpkit.Grid.uniform(-4, 4, n)
    t_snap = np.linspace(0.0, 2.0, 5)
    theta = lambda t: 0.5 + 0.75 * t
    D = 0.3
    drift = np.stack([-theta(t) * grid.x for t in t_snap])
    diff = np.full((5, n), D)
    f_a = E.SnapshotInterpolator(t_snap, drift, grid, "drift")
    f_d = E.SnapshotInterpolator(t_snap, diff, grid, "diffusion")
    fp = fpkit.FokkerPlanck(grid, drift=f_a, diffusion=f_d)
    sol = fp.solve(fpkit.gaussian(grid, 1.0, 0.3), list(t_eval), method="crank-nicolson", dt=dt)
    ode = integrate.solve_ivp(
        lambda t, y: [-theta(t) * y[0], -2 * theta(t) * y[1] + 2 * D],
        (0, 2),
        [1.0, 0.09],
        t_eval=list(t_eval),
        rtol=1e-12,
        atol=1e-13,
    )
    h2 = grid.dx[0] ** 2 / 12  # cell averages (Sheppard)
    return np.r_[sol.mean() - ode.y[0], sol.var() - h2 - ode.y[1]]


def test_fokker_planck_with_interpolated_snapshot_coefficients_matches_the_exact_moments():
    """θ(t) linear in t: the snapshot interpolation is exact, so FP must match the moment ODEs at t = 0.5,
    0.7 (between snapshots) and 2. Errors at 320 cells, Δt = 0.005 (measured): means ≤ 9.9e-5, variances
    ≤ 2.2e-5, all spatial — asserted at 2.5×. With 320 and 640 cells at Δt = 0.0025 the error falls at second
    order in h (measured 1.98–2.07) and Richardson's extrapolation leaves ≤ 8.8e-7 (the time error), asserted
    < 2.5e-6. Interpolation weights rounded to quarters miss this by ~1e-3."""
    e = _snapshot_fp_moment_errors(320, 0.005)
    assert np.all(np.abs(e[:3]) < 2.5e-4), e
    assert np.all(np.abs(e[3:]) < 5.5e-5), e
    e1, e2 = _snapshot_fp_moment_errors(320, 0.0025), _snapshot_fp_moment_errors(640, 0.0025)
    orders = np.log2(np.abs(e1 / e2))
    assert np.all(np.abs(orders - 2) < 0.15), orders
    assert np.all(np.abs((4 * e2 - e1) / 3) < 2.5e-6), (4 * e2 - e1) / 3


def test_crank_nicolson_with_interpolated_snapshot_coefficients_is_second_order_in_time():
    """Same problem on 160 cells; errors against Δt = 0.00125 on the same grid (the spatial error cancels).
    Measured for Δt = 0.04, 0.02, 0.01: orders 1.58–1.96 then 1.99–2.02 (Rannacher start and the kinks of
    the coefficients at the snapshots settle by Δt = 0.02); the last pair must fit 2 ± 0.1 and the error at
    Δt = 0.01 (measured ≤ 1.4e-5) stay below 3e-5. A first-order step (operator at t + Δt on both sides)
    fits order 1."""
    ref = _snapshot_fp_moment_errors(160, 0.00125)
    errs = np.abs([_snapshot_fp_moment_errors(160, dt) - ref for dt in (0.04, 0.02, 0.01)])
    orders = np.log2(errs[:-1] / errs[1:])
    assert np.all(np.abs(orders[1] - 2) < 0.1), orders
    assert np.all(orders[0] > 1.4), orders
    assert errs[-1].max() < 3e-5, errs


def test_synthetic_ground_truth_estimate_on_one_half_and_predict_the_other():
    """Paths of a known diffusion (Euler-Maruyama, Δt = 1e-3, 4000 members, 21 snapshots to t = 2);
    mechanistic inputs built from the known A, D with scatter. Estimated on one half, the FP prediction is
    judged on the other half (W1 / noise floor). Measured: mechanistic max 1.9, median 1.3 (true coefficients:
    1.5, 0.9); Kramers-Moyal, whose lag Δt = 0.1 biases D by O(A'Δt) ≈ 20 %, max 3.1, median 2.4."""
    from fpkit.validation import metrics as M

    A = lambda w, t: w - w**3 + 0.5 * np.sin(t)
    Dfun = lambda w, t: 0.05 * (1 + 0.5 * w**2)
    rng = np.random.default_rng(0)
    n_mem, dt = 4000, 1e-3
    t_snap = np.linspace(0, 2.0, 21)
    w = rng.normal(0.2, 0.3, n_mem)
    snaps = [w.copy()]
    for n in range(2000):
        t = n * dt
        w = w + A(w, t) * dt + np.sqrt(2 * Dfun(w, t) * dt) * rng.normal(size=n_mem)
        if (n + 1) % 100 == 0:
            snaps.append(w.copy())
    W = np.array(snaps)
    est, jud = W[:, :2000], W[:, 2000:]
    eta = 0.01
    g = -A(est, t_snap[:, None]) + 0.3 * rng.normal(size=est.shape)
    v = (2 / eta) * Dfun(est, t_snap[:, None]) * rng.gamma(4, 0.25, est.shape)
    grid = E.choose_grid(W, n=200)
    ser = E.mechanistic_series(t_snap, est, g, v, eta, grid)
    km = E.kramers_moyal_series(t_snap, est, grid)
    x = grid.x
    for s in (0, 10, 20):  # within error bars of the estimator's exact expectation given the members
        sup, h = ser.supported[s], ser.bandwidth[s]
        expA = E.local_linear(est[s], A(est[s], t_snap[s]), x, h)
        expD = E.local_linear(est[s], 0.5 * eta * (2 / eta) * Dfun(est[s], t_snap[s]), x, h)
        assert np.abs((ser.drift[s] - expA)[sup] / ser.drift_se[s][sup]).max() < 4.5
        assert np.abs((ser.diffusion[s] - expD)[sup] / ser.diffusion_se[s][sup]).max() < 4.5
    p0 = E.histogram_density(jud[0], grid)
    floors = np.array([M.w1_floor(2000, samples=jud[s]) for s in range(21)])
    ratios = {}
    for name, series, tt in (("mechanistic", ser, t_snap), ("kramers-moyal", km, t_snap[:-1])):
        fp = fpkit.FokkerPlanck(grid, **series.fp_coefficients(), time_dependent=True)
        sol = fp.solve(p0, tt, method="crank-nicolson", dt=0.005)
        ratios[name] = (
            np.array([M.w1_samples(sol.p[s], grid, jud[s]) for s in range(tt.size)]) / floors[: tt.size]
        )
    assert ratios["mechanistic"].max() < 3.0 and np.median(ratios["mechanistic"][1:]) < 2.0
    assert ratios["kramers-moyal"].max() < 4.0 and np.median(ratios["kramers-moyal"][1:]) < 3.0


def test_shared_kernel_series_equal_their_own_passes_bit_for_bit():
    """shared_kernel_series fits the mechanistic variants and Kramers-Moyal as columns of one local-linear pass
    per snapshot: every series must equal its own mechanistic_series / kramers_moyal_series call exactly
    (heavy tails exercise the widened-tail refits; a snapshot with all members equal the sample-mean case)."""
    from fpkit.estimators.series import shared_kernel_series

    rng = np.random.default_rng(4)
    S, M, eta = 6, 600, 0.05
    t = np.linspace(0.0, 1.0, S)
    w = rng.standard_t(3, (S, M)) * np.linspace(1.0, 0.4, S)[:, None]
    w[2] = 0.7  # every member at one point
    g = 1.3 * w + 0.2 * rng.normal(size=w.shape)
    v = rng.gamma(3.0, 0.5, w.shape)
    hg = 0.5 * w**3
    grid = E.choose_grid(w, n=300)
    variants = {"standard": {}, "discrete": {"diffusion": "discrete"}, "second_order": {"second_order": True}}
    shared = shared_kernel_series(t, w, grid, g=g, v=v, eta=eta, hg=hg, variants=variants, kramers_moyal=True,
                                  se=["standard"])  # fmt: skip
    own = {n: E.mechanistic_series(t, w, g, v, eta, grid, hg=hg, se=n == "standard", **o) for n, o in variants.items()}
    own["kramers-moyal"] = E.kramers_moyal_series(t, w, grid, se=False)
    assert shared.keys() == own.keys()
    for name, ref in own.items():
        for f in ("t", "drift", "diffusion", "drift_se", "diffusion_se", "n_eff", "supported", "bandwidth"):
            np.testing.assert_array_equal(getattr(shared[name], f), getattr(ref, f), err_msg=f"{name}.{f}")
        assert shared[name].meta == ref.meta
    # errors only where asked (the all-equal snapshot 2 reports the sample mean's error either way)
    assert np.all(np.isfinite(shared["standard"].drift_se[0])) and np.all(np.isnan(shared["discrete"].drift_se[3:]))
    with pytest.raises(ConfigError, match="symmetric"):
        shared_kernel_series(t, w, grid, g=g, v=v, eta=eta, variants={"s": {"symmetric": True}})
    with pytest.raises(ConfigError, match="hg"):
        shared_kernel_series(t, w, grid, g=g, v=v, eta=eta, variants=variants)


# ============================================================================================ bad input
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda g: E.local_linear(np.ones((3, 2)), np.ones(3), g.x), "x_samples"),
        (lambda g: E.local_linear(np.arange(5.0), np.ones(4), g.x), "y_samples"),
        (lambda g: E.local_linear(np.arange(5.0), np.ones(5), g.x, bandwidth=-1.0), "bandwidth"),
        (lambda g: E.local_linear(np.arange(5.0), np.ones(5), g.x, tail="extrapolate"), "tail"),
        (lambda g: E.local_linear(np.arange(30.0), np.ones(30), g.x), "effective samples"),
        (lambda g: E.mechanistic(np.ones(5), np.ones(4), np.ones(5), 0.1, g), "`g`"),
        (lambda g: E.mechanistic(np.arange(5.0), np.ones(5), -np.ones(5), 0.1, g), "`v`"),
        (lambda g: E.mechanistic(np.arange(5.0), np.ones(5), np.ones(5), 0.0, g), "eta"),
        (lambda g: E.mechanistic(np.arange(5.0), np.ones(5), np.ones(5), 0.1, g, second_order=True), "hg"),
        (lambda g: E.mechanistic(np.arange(5.0), np.ones(5), np.ones(5), 0.1, g, diffusion="x"), "diffusion"),
        (lambda g: E.kramers_moyal(np.arange(5.0), np.ones(5), 0.0, g), "dt"),
        (
            lambda g: E.mechanistic_2d(
                np.ones((5, 2)), np.ones((5, 2)), np.ones((5, 4)), 0.1, fpkit.Grid.uniform((0, 0), (1, 1), 4)
            ),
            "cov",
        ),
        (lambda g: E.kramers_moyal_series([0.0, 0.0], np.ones((2, 5)), g), "increasing"),
        (lambda g: E.SnapshotInterpolator([0.0, 1.0], np.ones((3, 10)), g), "values"),
        (lambda g: E.histogram_density(np.ones(4), g, outside="ignore"), "outside"),
        (lambda g: E.choose_grid([np.nan, 1.0]), "non-finite"),
    ],
)
def test_estimators_bad_input(call, match):
    g = fpkit.Grid.uniform(-1, 1, 10)
    with pytest.raises(ConfigError, match=match):
        call(g)
