"""Spectral Fokker-Planck solvers (Chebyshev, Fourier, Hermite) against exact solutions, the finite-volume
engine, conservation laws and convergence rates; the spectral building blocks against identities."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, special

import fpkit
from fpkit.errors import ConfigError
from fpkit.solvers import pseudospectral as ps
from fpkit.solvers import spectral_ops as so
from fpkit.spectral import (
    SpectralFokkerPlanck,
    SpectralGrid,
    chebyshev_grid,
    fourier_grid,
    from_finite_volume,
    grid_from_dict,
    hermite_grid,
    to_finite_volume,
)

# ---------------------------------------------------------------------------------------------- helpers
# OU dX = −θX dt + √(2D) dW from N(m0, s0²): Gaussian, mean m0 e^{−θt}, var s0² e^{−2θt} + (D/θ)(1 − e^{−2θt})
THETA, D_OU, M0, S0 = 1.0, 1.0, 1.0, 0.8
T_OU = (0.1, 0.5, 1.0, 3.0)


def ou_exact(x, t, m0=M0, s0=S0, theta=THETA, D=D_OU):
    m = m0 * np.exp(-theta * t)
    v = s0**2 * np.exp(-2 * theta * t) + D / theta * (1 - np.exp(-2 * theta * t))
    return np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)


def ou_max_error(grid):
    fp = fpkit.FokkerPlanck(grid, drift=lambda x, t: -THETA * x, diffusion=D_OU)
    sol = fp.solve(ou_exact(grid.x, 0.0), T_OU)
    return max(np.max(np.abs(sol.p[k] - ou_exact(grid.x, t))) for k, t in enumerate(T_OU)), sol


def tilted_exact_current(F, V0, L, D):
    """Stationary current of dX = (F − V'(x)) dt + √(2D) dW on a circle of length L, V = V0 cos(2πx/L).

    With U = V − F x, J = A p − D p' = −D e^{−U/D}(e^{U/D} p)'. Integrating (e^{U/D}p)' = −(J/D)e^{U/D} over
    one period and using p(x+L) = p(x), U(x+L) = U(x) − FL gives
    p(x) = J e^{−U(x)/D} ∫_x^{x+L} e^{U(y)/D} dy / (D(1 − e^{−FL/D})), and ∫_0^L p = 1 fixes
    J = D (1 − e^{−FL/D}) / ∫_0^L dx ∫_0^L dz e^{(U(x+z) − U(x))/D}. For the cosine, the x-integral is
    ∫_0^L e^{(V(x+z)−V(x))/D} dx = L I₀((2V0/D) sin(πz/L)) (V(x+z) − V(x) = −2V0 sin(πz/L) sin(kx + πz/L)),
    so J = D (1 − e^{−FL/D}) / (L ∫_0^L e^{−Fz/D} I₀((2V0/D) sin(πz/L)) dz): one smooth quadrature.
    """
    f = lambda z: np.exp(-F * z / D) * special.i0(2 * V0 / D * np.sin(np.pi * z / L))
    val, _ = integrate.quad(f, 0, L, epsabs=0, epsrel=1e-13, limit=200)
    return D * (1 - np.exp(-F * L / D)) / (L * val)


def tilted_exact_density(x, F, V0, L, D, J):
    U = lambda y: V0 * np.cos(2 * np.pi * y / L) - F * y
    out = []
    for xi in np.atleast_1d(x):
        inner, _ = integrate.quad(
            lambda y, x0=xi: np.exp((U(y) - U(x0)) / D), xi, xi + L, epsabs=0, epsrel=1e-13
        )
        out.append(J * inner / (D * (1 - np.exp(-F * L / D))))
    return np.array(out)


# ---------------------------------------------------------------------------------------------- building blocks
def test_chebyshev_blocks_are_exact_for_polynomials():
    n, lo, hi = 12, -2.0, 3.0
    x = so.cheb_nodes(n, lo, hi)
    assert x[0] == lo and x[-1] == hi and np.all(np.diff(x) > 0)
    rng = np.random.default_rng(3)
    poly = np.polynomial.Chebyshev(rng.uniform(-1, 1, n), domain=[lo, hi])  # degree n − 1, values O(1)
    np.testing.assert_allclose(so.cheb_diff(n, lo, hi) @ poly(x), poly.deriv()(x), rtol=0, atol=1e-11)
    w = so.clenshaw_curtis_weights(n, lo, hi)
    integral = poly.integ()(hi) - poly.integ()(lo)
    assert abs(w @ poly(x) - integral) < 1e-12 * abs(integral)
    pts = np.linspace(lo, hi, 17)
    np.testing.assert_allclose(so.cheb_interp(poly(x), lo, hi, pts), poly(pts), rtol=0, atol=1e-13)
    np.testing.assert_allclose(so.cheb_coefficients(poly(x)), poly.coef, rtol=0, atol=5e-14)
    np.testing.assert_allclose(so.cheb_values(poly.coef), poly(x), rtol=0, atol=5e-14)
    Q = so.cheb_cumulative_matrix(n, lo, hi)
    q = poly.deriv()  # degree n − 2: its antiderivative is degree n − 1
    np.testing.assert_allclose(Q @ q(x), poly(x) - poly(lo), rtol=0, atol=1e-13)


def test_fourier_blocks_are_exact_for_trigonometric_polynomials():
    n, lo, hi = 16, -1.0, 2.0
    k = 2 * np.pi / (hi - lo)
    x = so.fourier_nodes(n, lo, hi)
    f = lambda y: 0.3 + np.sin(3 * k * y) + 0.5 * np.cos(7 * k * y)
    df = lambda y: 3 * k * np.cos(3 * k * y) - 3.5 * k * np.sin(7 * k * y)
    d2f = lambda y: -9 * k * k * np.sin(3 * k * y) - 24.5 * k * k * np.cos(7 * k * y)
    np.testing.assert_allclose(so.fourier_diff(n, lo, hi, 1) @ f(x), df(x), atol=1e-11)
    np.testing.assert_allclose(so.fourier_diff(n, lo, hi, 2) @ f(x), d2f(x), atol=1e-9)
    pts = np.linspace(-5, 5, 23)
    np.testing.assert_allclose(so.fourier_interp(f(x), lo, hi, pts), f(pts), atol=1e-13)
    anti = lambda y: (
        0.3 * (y - lo)
        - (np.cos(3 * k * y) - np.cos(3 * k * lo)) / (3 * k)
        + 0.5 * (np.sin(7 * k * y) - np.sin(7 * k * lo)) / (7 * k)
    )
    np.testing.assert_allclose(so.fourier_antiderivative(f(x), lo, hi, pts), anti(pts), atol=1e-13)
    assert abs(so.fourier_weights(n, lo, hi) @ f(x) - 0.3 * (hi - lo)) < 1e-14


def test_hermite_blocks_orthonormality_integrals_and_conservative_derivative():
    n = 40
    xi, wt = so.hermite_nodes(n)
    V = so.hermite_functions(n, xi)
    np.testing.assert_allclose(V.T @ (wt[:, None] * V), np.eye(n), atol=1e-13)
    m = so.hermite_integrals(n)
    for k in (0, 3, 10):
        ref, _ = integrate.quad(
            lambda t, k=k: so.hermite_functions(n, np.array([t]))[0, k], -30, 30, limit=200
        )
        assert abs(m[k] - ref) < 1e-12
    anti = so.hermite_antiderivative_functions(n, np.array([0.7, 60.0]))
    ref, _ = integrate.quad(lambda t: so.hermite_functions(n, np.array([t]))[0, 5], -30, 0.7)
    assert abs(anti[0, 5] - ref) < 1e-13
    np.testing.assert_allclose(anti[1], m, atol=1e-13)  # ∫ over the whole line
    for size in (40, 41):  # even: corrected; odd: ψ_n is odd, nothing to correct
        Tc = so.hermite_derivative_coefficients(size, conservative=True)
        assert np.max(np.abs(so.hermite_integrals(size) @ Tc)) < 1e-13
    assert np.max(np.abs(m @ so.hermite_derivative_coefficients(n))) > 0.1  # plain truncation leaks mass


def test_phi_functions_are_stable_near_zero_and_agree_between_methods():
    z = np.array([-1e4, -30.0, -1.0, -1e-9, 0.0, 1e-9, 0.5 + 2j])
    scal = so.phi_scalar(z, 3)
    # φ_1(0) = 1, φ_2(0) = 1/2, φ_3(0) = 1/6; the closed form (e^z − 1)/z loses ~7 digits at z = 1e-9
    for j, val in ((1, 1.0), (2, 0.5), (3, 1 / 6)):
        np.testing.assert_allclose(scal[j][3:6].real, val, rtol=1e-8)
    np.testing.assert_allclose(scal[1][2], np.expm1(-1.0) / -1.0, rtol=1e-14)
    np.testing.assert_allclose(scal[3][0], (np.exp(-1e4) - 1 - (-1e4) - 0.5e8) / (-1e4) ** 3, rtol=1e-12)
    mats = so.phi_functions(np.diag(z), 1.0, 3)
    for j in range(4):
        np.testing.assert_allclose(np.diag(mats[j]), scal[j], rtol=1e-10, atol=1e-14)


def test_etdrk4_is_fourth_order_on_a_stiff_forced_problem():
    # u' = λu + sin(t) u-independent forcing plus a mild non-linearity, λ = −50 (stiff): reference by Radau
    lam = np.array([[-50.0, 1.0], [0.0, -2.0]])

    def N(u, t):
        return np.array([np.sin(t), 0.1 * u[0] ** 2])

    ref = integrate.solve_ivp(
        lambda t, u: lam @ u + N(u, t), (0, 1), [1.0, 0.5], method="Radau", rtol=1e-12, atol=1e-14
    )
    errs = []
    for n in (40, 80, 160):  # hλ from −1.25 down: the asymptotic range (measured 1.4e-6, 1.0e-7, 6.5e-9)
        scheme = so.ETDRK4(lam, 1.0 / n)
        u = np.array([1.0, 0.5])
        for i in range(n):
            u = scheme.step(u, i / n, N)
        errs.append(np.max(np.abs(u - ref.y[:, -1])))
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 3.6), (errs, orders)


def test_dealiased_product_keeps_exact_low_modes():
    n = 48
    x = 2 * np.pi * np.arange(n) / n
    keep = ps.dealias_mask((n,))  # rfft layout: modes 0 .. n/2
    assert keep.sum() == 15 + 1  # |k| < 16
    f, g = np.cos(10 * x), np.sin(12 * x)  # product has modes 2 and 22; 22 aliases onto −26 → kept out
    prod = ps.dealiased_product(ps.rfftn(f, 1), ps.rfftn(g, 1), (n,), keep)
    exact = ps.rfftn(0.5 * np.sin(2 * x), 1)  # the kept part of cos(10x) sin(12x) = ½[sin 22x + sin 2x]
    np.testing.assert_allclose(prod, exact * keep, atol=1e-12)


# ---------------------------------------------------------------------------------------------- OU transients
def test_ou_hermite_errors_decay_geometrically_and_n64_is_exact():
    ns = (8, 12, 16, 20, 24)
    errors = [ou_max_error(hermite_grid(n, scale=0.9, center=0.5))[0] for n in ns]
    # Gaussian data: coefficients fall like ((v − s²)/(v + s²))^{k/2}, so the error falls by a constant factor
    # per added mode. Measured 9.3e-5, 1.4e-6, 2.1e-8, 3.2e-10, 4.7e-12: ×1/65 … ×1/68 per 4 modes.
    ratios = np.array(errors[1:]) / np.array(errors[:-1])
    assert np.all(ratios < 1 / 30), ratios
    assert ratios.max() / ratios.min() < 2.0, ratios  # a constant ratio: geometric, not algebraic, decay
    err64, sol = ou_max_error(hermite_grid(64, scale=0.9, center=0.5))
    assert err64 <= 1e-10, err64  # measured 3.9e-15 (round-off)
    np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-13)


def test_ou_chebyshev_errors_decay_geometrically_and_n64_is_exact():
    errors, sols = {}, {}
    for n in (32, 40, 48, 56, 64):
        errors[n], sols[n] = ou_max_error(chebyshev_grid(-7.5, 7.5, n))
    # measured 6.2e-4, 1.5e-5, 3.7e-7, 5.5e-9, 3.3e-11: at least ×0.03 per 8 nodes
    ns = sorted(errors)
    for a, b in itertools.pairwise(ns):
        assert errors[b] < 0.03 * errors[a], errors
    assert errors[64] <= 1e-10, errors  # measured 3.3e-11
    sol = sols[64]
    np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-13)  # zero flux imposed exactly
    # moments from the Solution object against the exact OU mean and variance
    t = np.array(T_OU)
    np.testing.assert_allclose(sol.mean(), M0 * np.exp(-t), atol=1e-10)
    np.testing.assert_allclose(sol.var(), S0**2 * np.exp(-2 * t) + 1 - np.exp(-2 * t), atol=1e-9)
    # the interpolant is as good between the nodes
    pts = np.linspace(-5, 5, 101)
    assert np.max(np.abs(sol.grid.interpolate(sol.p[-1], pts) - ou_exact(pts, T_OU[-1]))) < 1e-10


def test_ou_spectrum_is_n_theta():
    # stationary std 0.5, basis scale 0.6: not the eigenbasis, so this tests the discretisation
    fp = fpkit.FokkerPlanck(hermite_grid(64, scale=0.6), drift=lambda x, t: -2.0 * x, diffusion=0.5)
    np.testing.assert_allclose(fp.spectrum(5), [0, 2, 4, 6, 8], atol=1e-9)  # measured 9e-12
    # walls at ±8 stationary std: the bounded-domain spectrum equals the line's to ~1e-12
    fp = fpkit.FokkerPlanck(chebyshev_grid(-4, 4, 64), drift=lambda x, t: -2.0 * x, diffusion=0.5)
    np.testing.assert_allclose(fp.spectrum(5), [0, 2, 4, 6, 8], atol=1e-8)  # measured 1.3e-9


# ---------------------------------------------------------------------------------------------- double well
DW_D = 0.25


def dw_drift(x, t):
    return x - x**3  # −U', U = x⁴/4 − x²/2, barrier ΔU = 1/4 = D


def test_double_well_spectral_converges_exponentially_and_agrees_with_finite_volume():
    lams, stats = {}, {}
    for n in (24, 40, 56, 64, 80, 96):
        fp = fpkit.FokkerPlanck(chebyshev_grid(-3, 3, n), drift=dw_drift, diffusion=DW_D)
        lams[n] = fp.spectrum(2)[1]
        stats[n] = fp
    ref = lams[96]
    diffs = [abs(lams[n] - ref) for n in (24, 40, 56, 80)]
    # measured 8.3e-4, 2.3e-7, 5.0e-9, 2.7e-13: a factor ≥ 20 per 16 added nodes (geometric) and 3e9 overall,
    # which a power law would need an exponent near 18 to match
    assert all(b < a / 20 for a, b in itertools.pairwise(diffs)), diffs
    assert diffs[-1] < 1e-11 and diffs[0] / diffs[-1] > 1e8, diffs
    # stationary density against the Gibbs state e^{−U/D} (exact), spectrally accurate
    g = stats[64].grid
    gibbs = np.exp(-(g.x**4 / 4 - g.x**2 / 2) / DW_D)
    gibbs /= g.integrate(gibbs)
    assert np.max(np.abs(stats[64].stationary() - gibbs)) < 1e-6  # measured 3.9e-7; 1.2e-9 at n = 80
    # finite volumes (second order) approach the spectral rate; Richardson removes their h² error
    fv_lam = {}
    fv_err_stat = {}
    for n in (160, 320):
        gf = fpkit.Grid.uniform(-3, 3, n)
        fvp = fpkit.FokkerPlanck(gf, drift=dw_drift, diffusion=DW_D)
        fv_lam[n] = fvp.spectrum(2)[1]
        p_spec = to_finite_volume(stats[64].stationary(), g, gf)  # exact cell averages of the spectral state
        fv_err_stat[n] = float(gf.integrate(np.abs(fvp.stationary() - p_spec)))
    e_coarse, e_fine = abs(fv_lam[160] - ref), abs(fv_lam[320] - ref)
    assert 3.6 < e_coarse / e_fine < 4.4, (e_coarse, e_fine)  # measured 2.1e-5, 5.3e-6
    assert abs((4 * fv_lam[320] - fv_lam[160]) / 3 - ref) < 1e-7 * ref  # measured 9.6e-9 = 5e-8 relative
    assert 3.6 < fv_err_stat[160] / fv_err_stat[320] < 4.4, fv_err_stat  # densities agree to O(h²)
    assert fv_err_stat[320] < 1.5e-4  # measured 1.0e-4 in L1 (h = 6/320)


# ---------------------------------------------------------------------------------------------- tilted periodic
def test_tilted_periodic_current_matches_exact_formula():
    F, V0, L, D = 1.0, 1.0, 2 * np.pi, 0.4
    J = tilted_exact_current(F, V0, L, D)
    drift = lambda x, t: F + V0 * (2 * np.pi / L) * np.sin(2 * np.pi * x / L)
    fp = fpkit.FokkerPlanck(fourier_grid(0, L, 64), drift=drift, diffusion=D, bc="periodic")
    p = fp.stationary()
    current = fp.flux(p)
    assert np.max(np.abs(current - J)) < 1e-12 * max(1.0, J), (J, current[:3])
    pts = np.array([0.3, 2.0, 4.5])
    np.testing.assert_allclose(fp.interpolate(p, pts), tilted_exact_density(pts, F, V0, L, D, J), rtol=1e-11)
    # the transient relaxes to the same current (ETDRK4 exact in time); a non-equilibrium state has
    # complex relaxation modes (drifting waves) in conjugate pairs
    sol = fp.solve(fp.grid.gaussian(1.0, 0.5), [5.0, 60.0])
    assert np.max(np.abs(fp.flux(sol.p[-1]) - J)) < 1e-10
    lam = fp.eigenvalues()[1:3]
    assert abs(lam[0].imag) > 0.1 and abs(lam[0] - np.conj(lam[1])) < 1e-10


def test_zero_tilt_periodic_has_no_current_and_gibbs_state():
    L, D = 2.0, 0.3
    fp = fpkit.FokkerPlanck(fourier_grid(0, L, 48), drift=lambda x, t: np.pi * np.sin(np.pi * x), diffusion=D)
    p = fp.stationary()
    gibbs = np.exp(-np.cos(np.pi * fp.grid.x) / D)
    np.testing.assert_allclose(p, gibbs / fp.grid.integrate(gibbs), rtol=1e-11, atol=1e-14)
    assert np.max(np.abs(fp.flux(p))) < 1e-12


# ---------------------------------------------------------------------------------------------- time-dependent
def test_time_dependent_ou_bdf2_cn_imex_order_two_and_etdrk4_order_four():
    th = lambda t: 1 + 0.5 * np.sin(2 * t)
    Df = lambda t: 0.5 * (1 + 0.3 * np.cos(3 * t))
    ref = integrate.solve_ivp(
        lambda t, y: [-th(t) * y[0], -2 * th(t) * y[1] + 2 * Df(t)],
        (0, 2),
        [1.0, 0.36],
        rtol=1e-13,
        atol=1e-15,
    )
    m, v = ref.y[:, -1]
    g = hermite_grid(48, scale=0.7, center=0.3)
    exact = np.exp(-((g.x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -th(t) * x, diffusion=lambda x, t: Df(t) + 0 * x)
    assert fp.time_dependent
    p0 = np.exp(-((g.x - 1) ** 2) / 0.72)
    for method, order in (("bdf2", 2), ("crank-nicolson", 2), ("imex", 2), ("etdrk4", 4)):
        errs = [
            np.max(np.abs(fp.solve(p0, [2.0], method=method, dt=dt).p[-1] - exact))
            for dt in (0.1, 0.05, 0.025)
        ]
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all(np.abs(orders - order) < 0.3), (method, errs, orders)


# ---------------------------------------------------------------------------------------------- conversion
def test_conversion_to_finite_volume_is_exact_and_conservative():
    fv = fpkit.Grid.uniform(-4, 5, 90)
    exact = fpkit.gaussian(fv, 0.4, 0.7)  # exact cell averages
    for sg in (chebyshev_grid(-4, 5, 64), hermite_grid(40, 0.7, 0.4)):
        p = sg.gaussian(0.4, 0.7)
        cells = to_finite_volume(p, sg, fv)
        assert abs(fv.integrate(cells) - sg.integrate(p)) < 1e-14
        np.testing.assert_allclose(cells, exact, atol=2e-9)  # tails beyond 4.0σ folded into the end cells
    sg = fourier_grid(0, 3, 32)
    p = 1 + 0.5 * np.sin(2 * np.pi * sg.x / 3)
    cells = to_finite_volume(p, sg, fpkit.Grid.uniform(0.5, 3.5, 30))  # one period, shifted
    assert abs(cells.sum() * 0.1 - sg.integrate(p)) < 1e-13
    with pytest.raises(ConfigError, match="one period"):
        to_finite_volume(p, sg, fpkit.Grid.uniform(0, 2, 20))


@pytest.mark.parametrize("kind", ["chebyshev", "fourier", "hermite"])
def test_conversion_from_finite_volume_conserves_mass_and_is_second_order(kind):
    errs = []
    for n in (100, 200):
        if kind == "fourier":
            fv, sg = fpkit.Grid.uniform(0, 4, n), fourier_grid(0, 4, 48)
            f = lambda y: 1 + 0.6 * np.cos(np.pi * y / 2) + 0.2 * np.sin(np.pi * y)
            edges = fv.edges[0]
            F = lambda y: y + 1.2 / np.pi * np.sin(np.pi * y / 2) - 0.2 / np.pi * np.cos(np.pi * y)
            p_fv = np.diff(F(edges)) / fv.dx[0]
        else:
            fv = fpkit.Grid.uniform(-5, 5, n)
            sg = chebyshev_grid(-5, 5, 64) if kind == "chebyshev" else hermite_grid(48, 0.8, 0.3)
            p_fv = fpkit.gaussian(fv, 0.3, 0.8)
            f = lambda y: np.exp(-((y - 0.3) ** 2) / 1.28) / np.sqrt(1.28 * np.pi)
        p = from_finite_volume(p_fv, fv, sg)
        assert abs(sg.integrate(p) - fv.integrate(p_fv)) < 1e-13
        errs.append(np.max(np.abs(p - f(sg.x))))
    assert errs[1] < errs[0] / 3.0 and errs[1] < 1e-4, errs


# ---------------------------------------------------------------------------------------------- properties
coef = st.floats(-1.0, 1.0, allow_nan=False, allow_infinity=False)


@settings(max_examples=12, deadline=None)
@given(
    kind=st.sampled_from(["chebyshev", "fourier", "hermite"]),
    a=st.tuples(coef, coef, coef),
    d=st.tuples(st.floats(0.2, 1.0), st.floats(-0.15, 0.15)),
    phase=st.floats(0, 2 * np.pi),
)
def test_mass_conserved_and_solution_real_for_smooth_random_coefficients(kind, a, d, phase):
    if kind == "chebyshev":
        g = chebyshev_grid(-2, 3, 32)
    elif kind == "fourier":
        g = fourier_grid(-2, 3, 32)
    else:
        g = hermite_grid(32, 0.8, 0.2)
    k = 2 * np.pi / 5
    if kind == "hermite":  # confining on the line, smooth perturbation
        drift = lambda x, t: -(1.5 + a[0]) * x + a[1] * np.sin(k * x + phase) + a[2]
    else:
        drift = lambda x, t: a[0] + a[1] * np.sin(k * x + phase) + a[2] * np.cos(2 * k * x)
    diffusion = lambda x, t: d[0] + d[1] * np.cos(k * x - phase)
    moving = lambda x, t: d[0] + d[1] * np.cos(k * x - phase - 2 * t)  # a travelling modulation of D
    fp = fpkit.FokkerPlanck(g, drift=drift, diffusion=diffusion)
    p0 = g.gaussian(0.4, 0.6) + 0.3 * g.gaussian(-0.5, 0.4)
    fp_t = fpkit.FokkerPlanck(g, drift=drift, diffusion=moving, time_dependent=True)  # even when d[1] = 0
    for problem, method in (
        (fp, "etdrk4"),
        (fp, "bdf2"),
        (fp_t, "etdrk4"),
        (fp_t, "imex"),
        (fp_t, "crank-nicolson"),
    ):
        t_end = (
            2.0 if problem is fp else 1.0
        )  # time-dependent: shorter (each refreeze of etdrk4 costs an expm)
        sol = problem.solve(p0, [0.05, 0.5, t_end], method=method, dt=0.05)
        assert sol.p.dtype == np.float64 and np.all(np.isfinite(sol.p))
        np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-12)
    # reality of the generator: eigenvalues closed under conjugation, steady state real with unit mass
    lam = fp.eigenvalues()
    lam_c = lam[np.abs(lam) < 50]
    assert all(np.min(np.abs(np.conj(z) - lam)) < 1e-6 * max(1, abs(z)) for z in lam_c)
    assert abs(g.integrate(fp.stationary()) - 1) < 1e-12


# ---------------------------------------------------------------------------------------------- API
def test_grid_api_serialisation_and_solution_roundtrip(tmp_path):
    for g in (chebyshev_grid(-1, 2, 9), fourier_grid(0, 1, 8), hermite_grid(10, 0.5, -1.0)):
        assert isinstance(g, fpkit.Grid) and isinstance(g, SpectralGrid)
        assert g.shape == (g.n[0],) and g.ndim == 1 and len(g.axes) == 1
        assert grid_from_dict(g.to_dict()) == g
        assert SpectralGrid.from_dict(g.to_dict()) == g
        np.testing.assert_allclose(g.meshgrid()[0], g.x)
    g = hermite_grid(16, 0.7, 0.2)
    # a Hermite grid survives a dict without scale/center (inferred from lo and hi)
    h2 = grid_from_dict({k: v for k, v in g.to_dict().items() if k not in ("scale", "center")})
    assert abs(h2.scale - 0.7) < 1e-13 and abs(h2.center - 0.2) < 1e-13
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.3)
    assert isinstance(fp, SpectralFokkerPlanck)
    sol = fp.solve(g.gaussian(0.5, 0.4), [0.1, 0.2])
    back = type(sol).load(sol.save(tmp_path / "s.h5"))
    assert back.grid == g
    np.testing.assert_array_equal(back.p, sol.p)
    assert back.meta["method"] == "etdrk4"


def test_bad_input_raises_config_error_naming_the_argument():
    with pytest.raises(ConfigError, match="`n`"):
        chebyshev_grid(0, 1, 3)
    with pytest.raises(ConfigError, match="`n`"):
        hermite_grid(10_000)
    with pytest.raises(ConfigError, match="`lo`"):
        fourier_grid(1, 0, 8)
    with pytest.raises(ConfigError, match="`scale`"):
        hermite_grid(10, scale=-1.0)
    g = chebyshev_grid(0, 1, 8)
    with pytest.raises(ConfigError, match="cell_volume"):
        _ = g.cell_volume
    with pytest.raises(ConfigError, match="`bc`"):
        fpkit.FokkerPlanck(g, drift=0.0, diffusion=1.0, bc="periodic")
    with pytest.raises(ConfigError, match="`bc`"):
        fpkit.FokkerPlanck(fourier_grid(0, 1, 8), drift=0.0, diffusion=1.0, bc="reflecting")
    with pytest.raises(ConfigError, match="`scheme`"):
        fpkit.FokkerPlanck(g, drift=0.0, diffusion=1.0, scheme="central")
    with pytest.raises(ConfigError, match="`diffusion`"):
        fpkit.FokkerPlanck(g, drift=0.0, diffusion=-1.0)
    fp = fpkit.FokkerPlanck(g, drift=0.0, diffusion=1.0)
    with pytest.raises(ConfigError, match="`method`"):
        fp.solve(np.ones(8), [1.0], method="explicit")
    with pytest.raises(ConfigError, match="`method`"):
        fp.solve(np.ones(8), [1.0], method="rk45")
    with pytest.raises(ConfigError, match="`p0`"):
        fp.solve(np.ones(7), [1.0])
    with pytest.raises(ConfigError, match="`t_eval`"):
        fp.solve(np.ones(8), [1.0, 0.5])
    with pytest.raises(ConfigError, match="`dt`"):
        fp.solve(np.ones(8), [1.0], dt=0.0)
    with pytest.raises(ConfigError, match="`k`"):
        fp.spectrum(8)
    with pytest.raises(ConfigError, match="`grid`"):
        SpectralFokkerPlanck(fpkit.Grid.uniform(0, 1, 8))
    with pytest.raises(ConfigError, match="`fv_grid`"):
        to_finite_volume(np.ones(8), g, g)
    with pytest.raises(ConfigError, match="`p`"):
        to_finite_volume(np.ones(5), g, fpkit.Grid.uniform(0, 1, 8))


@pytest.mark.parametrize("kind", ["chebyshev", "fourier", "hermite"])
def test_matrix_free_apply_matches_assembled_operator(kind):
    g = {
        "chebyshev": chebyshev_grid(-2, 2, 20),
        "fourier": fourier_grid(-2, 2, 20),
        "hermite": hermite_grid(20),
    }[kind]
    fp = fpkit.FokkerPlanck(
        g, drift=lambda x, t: np.sin(x + t) - x, diffusion=lambda x, t: 0.5 + 0.2 * np.cos(x - t)
    )
    u = np.random.default_rng(1).normal(size=20)
    for t in (0.0, 0.7):
        np.testing.assert_allclose(fp.apply(u, t), fp.operator(t) @ u, rtol=1e-12, atol=1e-12)


def test_frozen_operator_schemes_refreeze_and_stay_stable_when_coefficients_move_far():
    # D travels and changes by up to ±57 % at a node: with the operator frozen at t0 for the whole run,
    # the explicit remainder of etdrk4/imex blew up (found by the property test above); refreezing fixes it
    g = chebyshev_grid(-2, 3, 32)
    k = 2 * np.pi / 5
    fp = fpkit.FokkerPlanck(g, drift=0.0, diffusion=lambda x, t: 0.21875 + 0.125 * np.cos(k * x - 2 * t))
    p0 = g.gaussian(0.4, 0.6) + 0.3 * g.gaussian(-0.5, 0.4)
    t_eval = [0.05, 0.5, 1.0]
    ref = fp.solve(p0, t_eval, method="bdf2", dt=5e-4).p  # time error ~2e-7
    for method, dt, tol in (("etdrk4", 0.05, 1e-6), ("imex", 0.05, 2e-3), ("imex", 0.01, 1e-4)):
        sol = fp.solve(p0, t_eval, method=method, dt=dt)
        assert sol.meta["n_refreeze"] > 0
        assert np.max(np.abs(sol.p - ref)) < tol, (method, dt, np.max(np.abs(sol.p - ref)))
        np.testing.assert_allclose(sol.mass(), 1.0, atol=1e-13)
