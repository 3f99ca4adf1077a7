"""Langevin sampler: SDE paths checked against exact solutions, published orders and the Fokker-Planck engine.

Statistical checks state their standard error (SE) and assert within 4 SE (two-sided p ≈ 6e-5 per check),
or use the KS critical value at p = 0.001; all seeds are fixed, so the tests are deterministic.
"""

import hashlib
import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.polynomial import Polynomial as P
from scipy import stats

import fpkit
from fpkit import testing as ft
from fpkit.errors import ConfigError, StabilityError
from fpkit.paths import Paths
from fpkit.sde import SDE, sde_from_fokker_planck
from fpkit.solvers.random import draw_normals, draw_stable, seed_streams

KS_CRIT_001 = 1.949  # sqrt(n) * D_n exceeded with probability 0.001 (Kolmogorov distribution)

_PARAMS = {"k": 1.0}  # read by a callable numba cannot compile


def fitted_order(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


def ks_against_grid_density(samples, grid, p):
    """KS statistic of samples against the piecewise-constant density p on a 1-D grid."""
    cdf_edges = np.concatenate([[0.0], np.cumsum(p) * grid.dx[0]])
    cdf = lambda x: np.interp(x, grid.edges[0], cdf_edges)
    return stats.kstest(samples, cdf).statistic


# --- orders of convergence ---------------------------------------------------------------------------------
def test_strong_order_gbm_euler_half_milstein_and_heun_one():
    """Higham (2001): dX = λX dt + μX dW, λ = 2, μ = 1, X0 = 1, T = 1, against the exact path
    X_T = exp((λ − μ²/2) T + μ W_T) driven by the same Brownian increments (regenerated from the streams)."""
    lam, mu, n, seed = 2.0, 1.0, 4000, 11
    sde = SDE(P([0.0, lam]), P([0.0, 0.0, 0.5 * mu**2]))  # D = μ² x² / 2, so √(2D) = μ|x|
    hs, errs = [], {"euler": [], "milstein": [], "heun": []}
    for n_steps in (32, 64, 128, 256, 512):
        h = 1.0 / n_steps
        z = np.empty((n, n_steps))
        draw_normals(seed_streams(seed, n), z)  # path k's increments, in the order the kernel draws them
        w_t = np.sqrt(h) * z.sum(axis=1)
        exact = np.exp((lam - 0.5 * mu**2) + mu * w_t)
        for m, err in errs.items():
            x = sde.sample(1.0, [1.0], n_paths=n, method=m, dt=h, seed=seed).x[-1]
            err.append(np.mean(np.abs(x - exact)))
        hs.append(h)
    assert fitted_order(hs, errs["euler"]) == pytest.approx(0.5, abs=0.1)
    assert fitted_order(hs, errs["milstein"]) == pytest.approx(1.0, abs=0.1)
    # Heun integrates the Stratonovich form (drift λx − ½ D′ = (λ − μ²/2) x): if the conversion were wrong it
    # would converge to another process and its error would stall; it converges with order 1 instead
    assert fitted_order(hs, errs["heun"]) == pytest.approx(1.0, abs=0.1)


def _ou_discrete_var(c, noise_var, n):
    """Variance after n steps of x ← c x + ξ, Var ξ = noise_var, from x0 = 0."""
    return noise_var * (1 - c ** (2 * n)) / (1 - c**2)


@pytest.mark.parametrize("method", ["euler", "heun"])
def test_ou_variance_matches_the_discrete_time_value(method):
    """θ = 1, D = 1, Δt = 0.2: Euler-Maruyama is x ← (1 − θΔt) x + √(2DΔt) ξ, stationary variance
    (D/θ)/(1 − θΔt/2) = 1.111; Heun is x ← (1 − θΔt + θ²Δt²/2) x + (1 − θΔt/2) √(2DΔt) ξ."""
    theta, D, h, n = 1.0, 1.0, 0.2, 200_000
    times = np.array([1.0, 2.0, 4.0, 8.0])
    paths = SDE(P([0.0, -theta]), D).sample(0.0, times, n_paths=n, method=method, dt=h, seed=3)
    if method == "euler":
        c, q = 1 - theta * h, 2 * D * h
    else:
        c, q = 1 - theta * h + 0.5 * (theta * h) ** 2, (1 - 0.5 * theta * h) ** 2 * 2 * D * h
    want = _ou_discrete_var(c, q, np.rint(times / h))
    se = want * np.sqrt(2.0 / (n - 1))
    np.testing.assert_array_less(np.abs(paths.var() - want), 4 * se)
    if method == "euler":
        assert want[-1] == pytest.approx((D / theta) / (1 - theta * h / 2), rel=1e-5)
        exact = (D / theta) * (1 - np.exp(-2 * theta * times[-1]))
        assert abs(paths.var()[-1] - exact) > 20 * se[-1]  # the test resolves the O(Δt) bias


def test_weak_order_one_ou_variance_euler():
    """OU variance at T = 1 against the exact (D/θ)(1 − e^{−2θT}): error ∝ Δt (weak order 1)."""
    theta, D, n = 1.0, 1.0, 400_000
    exact = (D / theta) * (1 - np.exp(-2.0))
    hs, errs = [0.2, 0.1, 0.05], []
    for h in hs:
        v = SDE(P([0.0, -theta]), D).sample(0.0, [1.0], n_paths=n, dt=h, seed=5).var()[-1]
        se = v * np.sqrt(2 / (n - 1))  # 0.0019: below a tenth of the smallest error (0.021)
        errs.append(abs(v - exact))
        assert errs[-1] > 8 * se
    assert fitted_order(hs, errs) == pytest.approx(1.0, abs=0.15)


def test_baoab_samples_the_exact_harmonic_position_variance_at_a_large_step():
    """U = k x²/2: BAOAB's position marginal is exactly N(0, kT/k) at any stable step (Leimkuhler-Matthews)."""
    k, kT, h, n = 2.0, 0.5, 0.5, 200_000  # ω h = 0.71, far from small
    sde = SDE.underdamped(P([0.0, -k]), mass=1.0, friction=1.0, temperature=kT)
    paths = sde.sample(0.0, [20.0, 30.0], n_paths=n, method="baoab", dt=h, seed=7)
    want = kT / k
    se = want * np.sqrt(2 / (n - 1))
    np.testing.assert_array_less(np.abs(paths.var() - want), 4 * se)
    assert paths.v is not None and paths.v.shape == paths.x.shape


# --- against the Fokker-Planck engine ------------------------------------------------------------------------
def test_double_well_paths_match_fokker_planck_stationary():
    """A = x − x³, D = 1/2: paths at T = 8 from x0 = 0 against FokkerPlanck.stationary() (KS, p = 0.001)."""
    sde = SDE(P([0.0, 1.0, 0.0, -1.0]), 0.5)
    grid = fpkit.Grid.uniform(-3.0, 3.0, 300)
    p = sde.fokker_planck(grid).stationary()
    gibbs = np.exp(-(grid.x**4 / 4 - grid.x**2 / 2) / 0.5)
    np.testing.assert_allclose(p, gibbs / (gibbs.sum() * grid.dx[0]), rtol=2e-3)  # the FP is right first
    n = 40_000
    x = sde.sample(0.0, [8.0], n_paths=n, method="heun", dt=0.01, seed=13).x[-1]
    assert np.sqrt(n) * ks_against_grid_density(x, grid, p) < KS_CRIT_001


def test_ou_transient_matches_fokker_planck_solution():
    """OU from a Gaussian density (drawn from the grid density) against the FP solution at four times."""
    grid = fpkit.Grid.uniform(-5.0, 5.0, 500)
    p0 = fpkit.gaussian(grid, mean=1.5, std=0.3)
    sde = SDE(P([0.0, -1.0]), 0.5)
    times = [0.25, 0.5, 1.0, 2.0]
    sol = sde.fokker_planck(grid).solve(p0, times, method="crank-nicolson", dt=2e-3)
    n = 40_000
    paths = sde.sample((grid, p0), times, n_paths=n, method="heun", dt=5e-3, seed=17)
    for i in range(len(times)):
        assert np.sqrt(n) * ks_against_grid_density(paths.x[i], grid, sol.p[i]) < KS_CRIT_001
    # and both against the exact OU moments (mean 1.5 e^{-t}); SE of the mean = std / sqrt(n)
    mean_exact = 1.5 * np.exp(-np.array(times))
    np.testing.assert_array_less(np.abs(paths.mean() - mean_exact), 4 * np.sqrt(paths.var() / n))


def test_periodic_paths_match_a_current_carrying_stationary_state():
    """A = sin(2πx) + 1/2 on the circle [0, 1), D = 0.3: a non-gradient drift, so the FP steady state carries
    a current and is not a Gibbs state. Wrapped paths at T = 3 (relaxation time 1/(4π²D) ≈ 0.08) against
    FokkerPlanck(bc="periodic").stationary(), KS at p = 0.001."""

    @numba.njit
    def a(x, t):
        return np.sin(2 * np.pi * x) + 0.5

    sde = SDE(a, 0.3, bc="periodic", domain=(0.0, 1.0))
    grid = fpkit.Grid.uniform(0.0, 1.0, 400)
    p = sde.fokker_planck(grid).stationary()
    assert np.ptp(p) > 0.2  # far from uniform: the test can tell
    n = 20_000
    x = sde.sample(0.5, [3.0], n_paths=n, method="heun", dt=2e-3, seed=41).x[-1]
    assert np.all((x >= 0.0) & (x < 1.0))
    assert np.sqrt(n) * ks_against_grid_density(x, grid, p) < KS_CRIT_001


def test_conversions_between_sde_and_fokker_planck():
    grid = fpkit.Grid.uniform(-2.0, 2.0, 50)
    fp = fpkit.FokkerPlanck(grid, drift=lambda x, t: -x, diffusion=0.3, bc="absorbing")
    sde = sde_from_fokker_planck(fp)
    assert sde.bc == "absorbing" and sde.lo[0] == -2.0 and sde.hi[0] == 2.0
    np.testing.assert_allclose(sde.drift(grid.x, 0.0), -grid.x)
    back = sde.fokker_planck(grid)
    assert back.bc == ("absorbing",)
    np.testing.assert_allclose(back.drift[0].on_grid(), -grid.x)
    # an array coefficient on the same grid passes through unchanged
    arr = SDE(0.1 * grid.x, 0.2, grid=grid)
    np.testing.assert_array_equal(arr.fokker_planck(grid).drift[0].on_grid(), 0.1 * grid.x)
    with pytest.raises(ConfigError, match="walls"):
        SDE(0.0, 1.0, bc="reflecting", domain=(0.0, 1.0)).fokker_planck(grid)
    with pytest.raises(ConfigError, match="fractional"):
        SDE(0.0, 1.0, alpha=1.5).fokker_planck(grid)


# --- walls ---------------------------------------------------------------------------------------------------------
def test_absorbing_walls_survival_matches_the_exact_series():
    """Brownian motion on [0, 1] from 0.5, D = 1/2. Monitoring at step ends misses crossings between them;
    Broadie-Glasserman-Kou: that equals continuous monitoring with each wall moved out by 0.5826 √(2D Δt)."""
    D, h, n, x0 = 0.5, 1e-4, 20_000, 0.5
    times = np.array([0.05, 0.1, 0.2])
    paths = SDE(0.0, D, bc="absorbing", domain=(0.0, 1.0)).sample(x0, times, n_paths=n, dt=h, seed=19)
    shift = 0.5826 * np.sqrt(2 * D * h)
    L, y0 = 1.0 + 2 * shift, x0 + shift
    k = np.arange(1, 400, 2)[:, None]
    exact = (4 / (k * np.pi) * np.sin(k * np.pi * y0 / L) * np.exp(-D * (k * np.pi / L) ** 2 * times)).sum(0)
    se = np.sqrt(exact * (1 - exact) / n)
    np.testing.assert_array_less(np.abs(paths.survival() - exact), 4 * se)
    # absorbed paths are marked with their time and carry NaN afterwards
    dead = np.isfinite(paths.absorbed_at)
    assert dead.sum() == n - paths.alive(-1).sum()
    assert np.all(paths.absorbed_at[dead] <= times[-1]) and np.all(np.isnan(paths.x[-1][dead]))
    mass = grid_mass = fpkit.Grid.uniform(0.0, 1.0, 20)
    assert grid_mass.integrate(paths.histogram(mass, -1)) == pytest.approx(paths.survival()[-1], rel=1e-12)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    bc=st.sampled_from(["reflecting", "periodic", "absorbing"]),
    h=st.floats(0.01, 0.5),
    D=st.floats(0.01, 5.0),
    method=st.sampled_from(["euler", "milstein", "heun"]),
    constant_d=st.booleans(),
)
def test_walls_keep_paths_in_the_domain_and_kernel_equals_numpy(seed, bc, h, D, method, constant_d):
    """Invariant: live paths stay in [lo, hi] for any step (jumps may cross the domain several times);
    the compiled kernels and the numpy loop give the same paths for a seed."""
    sde = SDE(P([0.3, -1.0]), D if constant_d else P([D, 0.0, 0.1]), bc=bc, domain=(-0.5, 1.0))
    kw = {"n_paths": 64, "dt": h, "seed": seed, "method": method}
    a = sde.sample(0.2, [0.5, 1.0], **kw)
    b = sde.sample(0.2, [0.5, 1.0], engine="numpy", **kw)
    live = a.x[np.isfinite(a.x)]
    assert np.all((live >= -0.5) & (live <= 1.0))
    np.testing.assert_allclose(a.x, b.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(a.absorbed_at, b.absorbed_at)


@pytest.mark.parametrize("drift", [P([0.3, 1.0, 0.0, -1.0]), 0.7])
def test_fast_euler_kernel_equals_numpy_reference(drift):
    """The chunked Euler-Maruyama kernel (polynomial drift, constant D, no walls) against the numpy loop:
    the same paths to the last bit, across partial blocks and chunks (n not a multiple of 32, 301 steps)."""
    sde = SDE(drift, 0.5)
    for n in (1, 31, 33, 100):
        a = sde.sample(0.2, [0.13, 1.0, 3.01], n_paths=n, dt=0.01, seed=5)
        b = sde.sample(0.2, [0.13, 1.0, 3.01], n_paths=n, dt=0.01, seed=5, engine="numpy")
        np.testing.assert_array_equal(a.x, b.x)


def test_fast_euler_kernel_replays_a_blow_up_exactly():
    """A blow-up in the middle of a chunk is replayed path by path: the same failure time as the reference."""
    blow = SDE(P([0.0, 0.0, 1.0]), 0.01)
    times = []
    for engine in ("auto", "numpy"):
        with pytest.raises(StabilityError) as err:
            blow.sample(np.linspace(0.5, 1.0, 40), [0.5, 5.0], dt=7e-3, seed=1, engine=engine)
        times.append(err.value.time)
    assert times[0] == pytest.approx(times[1], abs=1e-12) and 0.9 < times[0] < 1.2


def test_baoab_reflecting_walls_and_numpy_reference():
    sde = SDE.underdamped(P([0.0, -1.0]), friction=0.5, temperature=2.0, bc="reflecting", domain=(-1.0, 1.0))
    a = sde.sample(0.0, [1.0, 3.0], n_paths=500, method="baoab", dt=0.05, seed=2)
    b = sde.sample(0.0, [1.0, 3.0], n_paths=500, method="baoab", dt=0.05, seed=2, engine="numpy")
    assert np.all(np.abs(a.x) <= 1.0)
    np.testing.assert_allclose(a.x, b.x, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(a.v, b.v, rtol=1e-12, atol=1e-12)


# --- coefficient forms: all evaluated identically ------------------------------------------------------------
def test_coefficient_forms_give_the_same_paths():
    """The same A = −x, D = 0.5 + 0.1 x² as a Polynomial, a numba function, a numpy callable and a table."""
    grid = fpkit.Grid.uniform(-6.0, 6.0, 1201)

    @numba.njit
    def d_jit(x, t):
        return 0.5 + 0.1 * x * x

    forms = [
        SDE(P([0.0, -1.0]), P([0.5, 0.0, 0.1])),
        SDE(numba.njit(lambda x, t: -x), d_jit),
        SDE(lambda x, t: -x, lambda x, t: 0.5 + 0.1 * x**2),
    ]
    runs = [s.sample(1.0, [0.5, 1.0], n_paths=2000, method="milstein", dt=0.01, seed=4) for s in forms]
    # plain lambdas are compiled too (fpkit.solvers.callables)
    assert [r.meta["engine"] for r in runs] == ["kernel", "kernel", "kernel"]
    for r in runs[1:]:  # numerical D' (central differences) against the exact polynomial derivative
        np.testing.assert_allclose(r.x, runs[0].x, rtol=0, atol=1e-8)
    # a table interpolates linearly: exact for the linear drift, O(dx²) = 1e-4 for D = 0.5 + 0.1 x²
    tab = SDE(-grid.x, 0.5 + 0.1 * grid.x**2, grid=grid).sample(
        1.0, [0.5, 1.0], n_paths=2000, dt=0.01, seed=4
    )
    ref = forms[0].sample(1.0, [0.5, 1.0], n_paths=2000, dt=0.01, seed=4)
    np.testing.assert_allclose(tab.x, ref.x, atol=2e-3)
    # a user-given D' is used as given
    given_dd = SDE(P([0.0, -1.0]), P([0.5, 0.0, 0.1]), diffusion_derivative=lambda x, t: 0.2 * x)
    r = given_dd.sample(1.0, [0.5, 1.0], n_paths=2000, method="milstein", dt=0.01, seed=4)
    assert r.meta["engine"] == "kernel"
    np.testing.assert_allclose(r.x, runs[0].x, rtol=1e-12, atol=1e-12)


def test_time_dependent_jit_drift():
    """dX = cos(t) dt + √(2D) dW: mean sin(T) exactly for Euler-Maruyama's left-point rule up to O(Δt)."""

    @numba.njit
    def a(x, t):
        return np.cos(t)

    n, h, T = 20_000, 1e-3, 2.0
    paths = SDE(a, 0.5).sample(0.0, [T], n_paths=n, dt=h, seed=8)
    left_riemann = np.sum(np.cos(np.arange(int(T / h)) * h)) * h
    se = np.sqrt(2 * 0.5 * T / n)
    assert abs(paths.mean()[-1] - left_riemann) < 4 * se


def test_two_dimensional_ou_variances():
    """Uncoupled 2-D OU with diagonal D = (0.5, 2): per-axis variances (D_i/θ_i)(1 − e^{−2θ_i T})."""
    theta = np.array([1.0, 2.0])
    D = np.array([0.5, 2.0])
    sde = SDE(lambda x, y, t: (-theta[0] * x, -theta[1] * y), [0.5, 2.0])
    n, T = 20_000, 1.5
    paths = sde.sample([0.0, 0.0], [T], n_paths=n, method="heun", dt=0.025, seed=21)
    want = D / theta * (1 - np.exp(-2 * theta * T))
    assert paths.x.shape == (1, n, 2)
    np.testing.assert_array_less(np.abs(paths.var()[-1] - want), 4 * want * np.sqrt(2 / n))
    g2 = fpkit.Grid.uniform((-1.0, -1.0), (1.0, 1.0), (20, 30))
    hist = paths.histogram(g2, 0)
    inside = np.mean(np.all(np.abs(paths.x[0]) <= 1.0, axis=1))
    assert hist.shape == (20, 30) and g2.integrate(hist) == pytest.approx(inside, rel=1e-12)


@pytest.mark.parametrize("nd", [2, 3])
def test_as_many_paths_as_dimensions(nd):
    """n_paths == ndim: a drift returned components first is used as such (Euler against the same scheme
    written path by path), and one returned points first, shape (n_paths, ndim) — which one call cannot tell
    from the transpose — is refused instead of being used transposed."""
    rot = np.roll(np.eye(nd), 1, axis=0) - 0.5 * np.eye(nd)  # couples the axes, so a transpose would show

    def drift(*args):
        return tuple(rot[a] @ np.array(args[:-1]) for a in range(nd))

    x0 = np.arange(1.0, 1.0 + nd * nd).reshape(nd, nd)
    dt, steps = 0.01, 10
    got = SDE(drift, 0.0, ndim=nd).sample(x0, [dt * steps], method="euler", dt=dt, seed=0).x[-1]
    want = x0.copy()
    for i in range(nd):  # path by path
        for _ in range(steps):
            want[i] = want[i] + dt * rot @ want[i]
    np.testing.assert_allclose(got, want, rtol=1e-13)

    points_first = SDE(lambda *a: np.stack(drift(*a), axis=1), 0.0, ndim=nd)
    # the message gives the shape the user's call returned first (it had shown only the probe's, one point more)
    with pytest.raises(ConfigError, match=r"shape \(n_points, %d\): \(%d, %d\) for %d points, \(%d, %d\) for "
                       r"%d: .*components first" % (nd, nd, nd, nd, nd + 1, nd, nd + 1)):  # fmt: skip
        points_first.sample(x0, [dt * steps], method="euler", dt=dt, seed=0)


# --- alpha-stable noise --------------------------------------------------------------------------------------------
def test_alpha_two_gives_gaussian_increments():
    D, h, n = 0.7, 0.1, 100_000
    x = SDE(0.0, D, alpha=2.0).sample(0.0, [h], n_paths=n, dt=h, seed=23).x[-1]
    assert np.sqrt(n) * stats.kstest(x / np.sqrt(2 * D * h), "norm").statistic < KS_CRIT_001


@pytest.mark.parametrize("alpha", [0.8, 1.5])
def test_alpha_stable_increments_tail_index_and_characteristic_function(alpha):
    D, h, n, k = 0.4, 0.05, 1_000_000, 2000
    x = SDE(0.0, D, alpha=alpha).sample(0.0, [h], n_paths=n, dt=h, seed=29).x[-1]
    # Hill estimator on the k largest |x|: SE = α/√k
    top = np.sort(np.abs(x))[-(k + 1) :]
    hill = 1.0 / np.mean(np.log(top[1:] / top[0]))
    assert abs(hill - alpha) < 4 * alpha / np.sqrt(k)
    # E cos(u X) = exp(−D h |u|^α) exactly (SE from the sample spread)
    for u in (0.5, 2.0, 8.0):
        c = np.cos(u * x)
        assert abs(c.mean() - np.exp(-D * h * u**alpha)) < 4 * c.std() / np.sqrt(n)


def test_stable_generator_at_alpha_one_is_cauchy():
    z = np.empty((1000, 200))
    draw_stable(seed_streams(5, 1000), 1.0, z)
    assert np.sqrt(z.size) * stats.kstest(z.ravel(), "cauchy").statistic < KS_CRIT_001


# --- reproducibility ----------------------------------------------------------------------------------------------
_THREADS_SCRIPT = textwrap.dedent(
    """
    import hashlib, json, numpy as np
    from numpy.polynomial import Polynomial as P
    from fpkit.sde import SDE
    out = {}
    a = SDE(P([0, 1, 0, -1]), P([0.5, 0, 0.1]), bc="reflecting", domain=(-2, 2))
    out["heun"] = a.sample(0.1, [0.5, 1.0], n_paths=3001, method="heun", dt=0.01, seed=9).x
    out["stable"] = SDE(P([0, -1]), 0.5, alpha=1.5).sample(0.0, [1.0], n_paths=3001, dt=0.01, seed=9).x
    u = SDE.underdamped(P([0, -1]), friction=2.0)
    out["baoab"] = u.sample(0.0, [1.0], n_paths=3001, method="baoab", dt=0.05, seed=9).x
    print(json.dumps({k: hashlib.sha256(np.ascontiguousarray(v).tobytes()).hexdigest() for k, v in out.items()}))
    """
)


def test_bit_identical_whatever_the_thread_count():
    digests = []
    for threads in ("1", "2"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        res = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True, text=True,
                             check=True)  # fmt: skip
        digests.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert digests[0] == digests[1]
    # and in this process, whatever its thread count
    u = SDE.underdamped(P([0, -1]), friction=2.0)
    x = u.sample(0.0, [1.0], n_paths=3001, method="baoab", dt=0.05, seed=9).x
    assert hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest() == digests[0]["baoab"]


def test_seeds_are_independent_streams():
    sde = SDE(0.0, 0.5)
    a = sde.sample(0.0, [1.0], n_paths=20_000, dt=0.1, seed=1).x[-1]
    b = sde.sample(0.0, [1.0], n_paths=20_000, dt=0.1, seed=2).x[-1]
    assert abs(np.corrcoef(a, b)[0, 1]) < 4 / np.sqrt(20_000)
    np.testing.assert_array_equal(a, sde.sample(0.0, [1.0], n_paths=20_000, dt=0.1, seed=1).x[-1])


# --- results --------------------------------------------------------------------------------------------------------
def test_paths_save_load_and_histogram(tmp_path):
    grid = fpkit.Grid.uniform(-4.0, 4.0, 80)
    paths = SDE(P([0.0, -1.0]), 0.5).sample(0.0, [0.5, 5.0], n_paths=5000, dt=0.01, seed=31)
    f = paths.save(tmp_path / "p.h5")
    back = Paths.load(f)
    np.testing.assert_array_equal(back.x, paths.x)
    np.testing.assert_array_equal(back.t, paths.t)
    assert back.meta == json.loads(json.dumps(paths.meta, default=float))
    hist = paths.histogram(grid)
    assert hist.shape == (2, 80)
    np.testing.assert_allclose(grid.integrate(hist), 1.0, rtol=1e-12)  # no path left the grid
    with pytest.raises(ConfigError, match="paths"):
        fpkit.Solution.load(f)


def test_starting_points_drawn_from_a_density():
    grid = fpkit.Grid.uniform(0.0, 2.0, 40)
    p = grid.normalise(1.0 + grid.x**2)
    n = 50_000
    x0 = SDE(0.0, 0.0).sample((grid, p), [0.0], n_paths=n, seed=3).x[0]
    assert np.sqrt(n) * ks_against_grid_density(x0, grid, p) < KS_CRIT_001


# --- bad input -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "build, call, match",
    [
        (lambda: SDE(0.0, -1.0), None, "diffusion"),
        (lambda: SDE(0.0, 1.0, alpha=2.5), None, "alpha"),
        (lambda: SDE(0.0, 1.0, bc="reflecting"), None, "domain"),
        (lambda: SDE(0.0, 1.0, bc="sticky", domain=(0, 1)), None, "bc"),
        (lambda: SDE(np.ones(5), 1.0), None, "grid"),
        (lambda: SDE(0.0, 1.0), {"n_paths": 0}, "n_paths"),
        (lambda: SDE(0.0, 1.0), {"n_paths": 10, "method": "rk4"}, "method"),
        (lambda: SDE(0.0, 1.0), {"n_paths": 10, "dt": -0.1}, "dt"),
        (lambda: SDE(0.0, 1.0), {"n_paths": 10, "t_eval": [1.0, 0.5]}, "t_eval"),
        (lambda: SDE(0.0, 1.0), {"n_paths": 10, "method": "baoab"}, "underdamped"),
        (lambda: SDE(0.0, 1.0, alpha=1.5), {"n_paths": 10, "method": "milstein"}, "method"),
        # a callable numba cannot compile (it reads a dict) has no kernel
        (lambda: SDE(lambda x, t: -x * _PARAMS["k"], 1.0), {"n_paths": 10, "engine": "kernel"}, "engine"),
        (lambda: SDE(0.0, P([-1.0, 1.0])), {"n_paths": 10}, "diffusion"),
        (lambda: SDE(0.0, 1.0), {"x0": np.zeros((3, 2))}, "x0"),
        (lambda: SDE(0.0, 1.0), {"x0": np.zeros(3), "n_paths": 4}, "x0"),
        (lambda: SDE(0.0, 1.0, bc="absorbing", domain=(0, 1)), {"x0": 2.0, "n_paths": 3}, "outside"),
    ],
)
def test_bad_input_names_the_argument(build, call, match):
    with pytest.raises(ConfigError, match=match):
        sde = build()
        kw = {"x0": 0.0, "t_eval": [1.0], "dt": 0.1}
        kw.update(call or {})
        sde.sample(kw.pop("x0"), kw.pop("t_eval"), **kw)


def test_blow_up_during_a_run_raises_stability_error_with_the_time():
    """dx = x² dt from x0 = 1 blows up at t = 1; Euler-Maruyama's path overflows a little later."""
    sde = SDE(P([0.0, 0.0, 1.0]), 0.0)
    with pytest.raises(StabilityError, match="non-finite") as err:
        sde.sample(1.0, [0.5, 3.0], n_paths=4, dt=1e-3, seed=0)
    assert 1.0 < err.value.time < 1.2


def test_negative_diffusion_met_during_a_run():
    """D = 10⁻⁴ (1 − x) with drift 1 from x0 = 0: the paths pass x = 1, where D turns negative, near t = 1
    (the noise, of spread √(2D t) ≤ 0.015, vanishes there)."""
    sde = SDE(1.0, P([1e-4, -1e-4]))
    with pytest.raises(StabilityError, match="negative") as err:
        sde.sample(0.0, [3.0], n_paths=100, dt=1e-3, seed=0)
    assert 0.95 < err.value.time < 1.05


def test_baoab_two_dimensional_harmonic_well():
    """2-D U = (k₁x² + k₂y²)/2 through the vectorised loop: position variances kT/kᵢ exactly at Δt = 0.5."""
    k = np.array([1.0, 3.0])
    kT, n = 0.8, 40_000
    sde = SDE.underdamped(lambda x, y, t: (-k[0] * x, -k[1] * y), friction=1.5, temperature=kT, ndim=2)
    paths = sde.sample([0.0, 0.0], [25.0], n_paths=n, method="baoab", dt=0.5, seed=37)
    want = kT / k
    np.testing.assert_array_less(np.abs(paths.var()[-1] - want), 4 * want * np.sqrt(2 / (n - 1)))


@settings(max_examples=8, deadline=None)
@given(ft.sde_problems())
def test_property_paths_are_bit_identical_for_a_seed(problem):
    sde = problem.sde()
    ft.assert_reproducible(lambda s: sde.sample(problem.x0, problem.t_eval, n_paths=50, dt=0.01, seed=s).x, 1,
                           other_seed=2)  # fmt: skip
