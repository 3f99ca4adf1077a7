"""The finite-volume Fokker-Planck engine against exact solutions, conservation laws and convergence orders."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

import fpkit
from fpkit import testing as ft
from fpkit.errors import ConfigError, StabilityError


def ou_exact(grid, t, x0_mean, x0_std, theta, D):
    """OU dX = -θX dt + √(2D) dW from N(m0, s0²): Gaussian with known mean and variance (REFERENCES.md)."""
    m = x0_mean * np.exp(-theta * t)
    v = x0_std**2 * np.exp(-2 * theta * t) + D / theta * (1 - np.exp(-2 * theta * t))
    return fpkit.gaussian(grid, m, np.sqrt(v))


def l1(grid, p, q):
    return float(grid.integrate(np.abs(p - q)))


@pytest.mark.parametrize("method", ["crank-nicolson", "bdf2", "explicit"])
def test_ou_transient_matches_exact_gaussian(method):
    g = fpkit.Grid.uniform(-6, 6, 600)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
    t_eval = [0.25, 0.5, 1.0, 2.0]
    sol = fp.solve(fpkit.gaussian(g, 1.0, 0.2), t_eval, method=method, dt=1e-3 if method != "explicit" else None)
    for k, t in enumerate(t_eval):
        # spatial error at h = 0.02 is ~1e-4 in L1 (second order, see the convergence test)
        assert l1(g, sol.p[k], ou_exact(g, t, 1.0, 0.2, 1.0, 0.5)) < 2e-4
    np.testing.assert_allclose(sol.mean(), np.exp(-np.array(t_eval)), atol=1e-4)


def test_ou_spatial_convergence_order_two():
    errors = []
    for n in (100, 200, 400):
        g = fpkit.Grid.uniform(-6, 6, n)
        fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
        sol = fp.solve(fpkit.gaussian(g, 1.0, 0.3), [1.0], method="crank-nicolson", dt=2e-3)
        errors.append(l1(g, sol.p[-1], ou_exact(g, 1.0, 1.0, 0.3, 1.0, 0.5)))
    ft.assert_order([12 / n for n in (100, 200, 400)], errors, expected=2.0, tol=0.15)


def test_crank_nicolson_time_order_two_with_rannacher_start():
    # non-smooth initial data (a box) excites every mode: plain CN would ring, Rannacher keeps order 2
    g = fpkit.Grid.uniform(-4, 4, 160)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -2 * x, diffusion=0.3)
    p0 = np.where(np.abs(g.x - 0.5) < 0.5, 1.0, 0.0)
    ref = fp.solve(p0, [0.5], method="crank-nicolson", dt=1e-4).p[-1]
    errs = [l1(g, fp.solve(p0, [0.5], method="crank-nicolson", dt=dt).p[-1], ref) for dt in (0.02, 0.01, 0.005)]
    orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(orders > 1.8), orders
    assert fp.solve(p0, [0.5], method="crank-nicolson", dt=0.02).p.min() > -1e-12


def test_double_well_stationary_is_exact_gibbs_state():
    g = fpkit.Grid.uniform(-2.5, 2.5, 400)
    D = 0.1
    U = lambda x: (x**2 - 1) ** 2  # noqa: E731
    gibbs = np.exp(-U(g.x) / D)
    gibbs /= g.integrate(gibbs)
    exp_fit = fpkit.FokkerPlanck(g, drift=lambda x, t: -4 * x * (x**2 - 1), diffusion=D).stationary()
    central = fpkit.FokkerPlanck(g, drift=lambda x, t: -4 * x * (x**2 - 1), diffusion=D, scheme="central")
    err_exp = l1(g, exp_fit, gibbs)
    err_central = l1(g, central.stationary(), gibbs)
    assert err_exp < 1e-8
    assert err_central > 1e3 * err_exp  # "visibly worse": O(h^2) against round-off


def test_ou_spectrum_is_n_theta():
    g = fpkit.Grid.uniform(-8, 8, 800)
    rates = fpkit.FokkerPlanck(g, drift=lambda x, t: -1.5 * x, diffusion=0.7).spectrum(4)
    np.testing.assert_allclose(rates, [0, 1.5, 3.0, 4.5], atol=5e-3)


def test_two_dimensional_anisotropic_ou_transient():
    theta, D = np.array([1.0, 2.0]), np.array([0.3, 0.8])
    m0, s0 = np.array([1.0, -0.5]), np.array([0.3, 0.4])
    errors = []
    for n in ((48, 40), (96, 80)):
        g = fpkit.Grid.uniform((-4, -4), (4, 4), n)
        fp = fpkit.FokkerPlanck(g, drift=lambda x, y, t: (-theta[0] * x, -theta[1] * y), diffusion=list(D))
        sol = fp.solve(fpkit.gaussian(g, m0, s0), [0.3, 1.0], method="crank-nicolson", dt=2e-3)
        errs = []
        for k, t in enumerate(sol.t):
            m = m0 * np.exp(-theta * t)
            v = s0**2 * np.exp(-2 * theta * t) + D / theta * (1 - np.exp(-2 * theta * t))
            errs.append(l1(g, sol.p[k], fpkit.gaussian(g, m, np.sqrt(v))))
            errs.extend(np.abs(sol.mean()[k] - m))
            errs.extend(np.abs(sol.var()[k] - np.array(g.dx) ** 2 / 12 - v))  # Sheppard-corrected
        errors.append(errs)
    # density (L1), means and variances all converge at second order in space
    orders = np.log2(np.array(errors[0]) / np.array(errors[1]))
    assert np.all(np.abs(orders - 2) < 0.25), orders
    assert max(errors[1]) < 4e-3
    # the compiled 2-D explicit kernel agrees with the sparse operator (reference right-hand side)
    ex = fp.solve(fpkit.gaussian(g, m0, s0), [0.01], method="explicit", dt=1e-3).p[-1]
    L = fp.operator()
    p = fpkit.gaussian(g, m0, s0).ravel()
    for _ in range(10):
        p = p + 1e-3 * (L @ p)
    np.testing.assert_allclose(ex.ravel(), p, rtol=1e-12, atol=1e-14)


def test_full_diffusion_tensor_2d_ou_stationary_covariance():
    # dX = -X dt + √(2D) dW with constant symmetric D: stationary covariance Σ solves Σ + Σ = 2D, so Σ = D
    g = fpkit.Grid.uniform((-3, -3), (3, 3), 48)
    Dt = [[0.4, 0.15], [0.15, 0.3]]
    fp = fpkit.FokkerPlanck(g, drift=lambda x, y, t: (-x, -y), diffusion=Dt)
    p = fp.stationary()
    X, Y = g.meshgrid()
    cov = g.integrate(p * X * Y)
    assert cov == pytest.approx(0.15, rel=0.03)
    assert g.integrate(p * X**2) == pytest.approx(0.4, rel=0.03)
    sol = fp.solve(fpkit.gaussian(g, (0.5, 0.0), 0.3), [0.5], method="implicit", dt=0.01)
    assert sol.mass()[-1] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("drift", [0.0, 0.8])
def test_absorbing_walls_survival_probability(drift):
    # On [0, L] with absorbing ends and constant drift a, p0 ∝ e^{a x/2D} sin(πx/L) is the slowest eigenmode,
    # so the survival probability is exactly S(t) = exp(-(Dπ²/L² + a²/4D) t).
    L, D = 2.0, 0.4
    g = fpkit.Grid.uniform(0, L, 400)
    fp = fpkit.FokkerPlanck(g, drift=drift, diffusion=D, bc="absorbing")
    p0 = np.exp(drift * g.x / (2 * D)) * np.sin(np.pi * g.x / L)
    t_eval = np.linspace(0.1, 1.5, 8)
    sol = fp.solve(p0, t_eval, method="crank-nicolson", dt=1e-3)
    rate = D * np.pi**2 / L**2 + drift**2 / (4 * D)
    np.testing.assert_allclose(sol.mass(), np.exp(-rate * t_eval), rtol=5e-5)
    assert np.all(np.diff(sol.mass()) < 0)


def test_time_dependent_diffusion_variance_ode():
    # var' = -2θ var + 2 D(t) for a linear drift; compare with the quadrature of that ODE's solution
    theta, D0 = 1.0, 0.2
    Dfun = lambda t: D0 * (1 + t)  # noqa: E731
    t_eval = [0.5, 1.0, 2.0]
    errors = []
    for n in (200, 400):
        g = fpkit.Grid.uniform(-5, 5, n)
        fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -theta * x, diffusion=lambda x, t: Dfun(t) + 0 * x)
        assert fp.time_dependent
        sol = fp.solve(fpkit.gaussian(g, 0.0, 0.3), t_eval, method="crank-nicolson", dt=2e-3)
        exact = []
        for t in t_eval:
            forcing, _ = integrate.quad(lambda s: 2 * Dfun(s) * np.exp(2 * theta * s), 0, t)
            exact.append(np.exp(-2 * theta * t) * (0.09 + forcing))
        # Sheppard correction: cell averages carry h²/12 extra variance
        errors.append(np.abs(sol.var() - g.dx[0] ** 2 / 12 - np.array(exact)))
    orders = np.log2(errors[0] / errors[1])
    assert np.all(np.abs(orders - 2) < 0.1), orders
    assert np.all(errors[1] / np.array(exact) < 5e-4)


def test_central_flux_oscillates_at_high_peclet_exponential_stays_positive():
    g = fpkit.Grid.uniform(-1, 1, 50)  # h = 0.04, a = 5, D = 0.01: Pe = 20
    p0 = fpkit.gaussian(g, -0.5, 0.05)
    kw = dict(drift=5.0, diffusion=0.01, bc="absorbing")
    central = fpkit.FokkerPlanck(g, scheme="central", **kw).solve(p0, [0.1], method="implicit", dt=0.01)
    expo = fpkit.FokkerPlanck(g, **kw).solve(p0, [0.1], method="implicit", dt=0.01)
    assert central.p.min() < -1e-3
    assert expo.p.min() >= 0


@settings(max_examples=15, deadline=None)
@given(ft.fp_problems(grid=ft.grids(min_cells=60, max_cells=120)),
       st.sampled_from(["implicit", "crank-nicolson", "explicit", "bdf2"]))
def test_property_mass_conserved_and_density_positive(problem, method):
    sol = problem.fokker_planck().solve(problem.p0, [0.05, 0.3], method=method,
                                        dt=0.01 if method != "explicit" else None)
    ft.assert_mass_conserved(sol, atol=1e-12)
    if method in ("implicit", "explicit"):  # M-matrix steps; CN and BDF2 are not positivity-preserving
        ft.assert_nonnegative(sol, atol=1e-15)


@settings(max_examples=10, deadline=None)
@given(st.floats(-1, 1), st.floats(0.1, 1.0))
def test_property_symmetric_problem_keeps_symmetry(shift, D):
    g = fpkit.Grid.uniform(-3, 3, 60)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x**3, diffusion=D)
    p0 = fpkit.gaussian(g, shift, 0.5) + fpkit.gaussian(g, -shift, 0.5)
    p = fp.solve(p0, [0.4], method="implicit", dt=0.02).p[-1]
    np.testing.assert_allclose(p, p[::-1], rtol=1e-10, atol=1e-13)


def test_solution_save_load_roundtrip(tmp_path):
    g = fpkit.Grid.uniform(-3, 3, 50)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.3)
    sol = fp.solve(fpkit.gaussian(g, 0.5, 0.4), [0.1, 0.2])
    path = sol.save(tmp_path / "sol.h5")
    back = fpkit.Solution.load(path)
    np.testing.assert_array_equal(back.p, sol.p)
    assert back.grid == g and back.meta["scheme"] == "exponential" and back.meta["method"] == "crank-nicolson"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_bad_input_errors():
    g = fpkit.Grid.uniform(-1, 1, 20)
    with pytest.raises(ConfigError, match="diffusion"):
        fpkit.FokkerPlanck(g, drift=0.0, diffusion=np.nan)
    with pytest.raises(ConfigError, match="diffusion"):
        fpkit.FokkerPlanck(g, drift=0.0, diffusion=-1.0)
    with pytest.raises(ConfigError, match="drift"):
        fpkit.FokkerPlanck(g, drift=np.zeros(19), diffusion=1.0)
    with pytest.raises(ConfigError, match="bc"):
        fpkit.FokkerPlanck(g, bc="sticky")
    fp = fpkit.FokkerPlanck(g, drift=0.0, diffusion=1.0)
    with pytest.raises(ConfigError, match="method"):
        fp.solve(np.ones(20), [1.0], method="rk4")
    with pytest.raises(ConfigError, match="p0"):
        fp.solve(np.zeros(20), [1.0])
    with pytest.raises(ConfigError, match="p0"):
        fp.solve(-np.ones(20), [1.0])
    with pytest.raises(ConfigError, match="p0"):
        fp.solve(np.ones(21), [1.0])
    with pytest.raises(ConfigError, match="t_eval"):
        fp.solve(np.ones(20), [1.0, 0.5])
    with pytest.raises(StabilityError, match="dt"):
        fp.solve(np.ones(20), [1.0], method="explicit", dt=0.1)
    with pytest.raises(ConfigError, match="absorbing"):
        fpkit.FokkerPlanck(g, bc="absorbing").stationary()


def _sg_reference(A, D, x, t):
    """Interior face coefficients (alpha[f], beta[f]), f = 1..n-1, of the Scharfetter-Gummel flux from their
    definition: Pe = ∫ A/D between the centres by adaptive quadrature, B(z) = 1/exprel(z); where D vanishes
    inside the interval, the upwind flux of the interval's mean drift."""
    from scipy.special import exprel

    h = x[1] - x[0]
    alpha, beta = [], []
    for lo, hi in zip(x[:-1], x[1:]):
        if D(lo, t) > 0 and D(hi, t) > 0 and D(0.5 * (lo + hi), t) > 0:
            pe = integrate.quad(lambda y: A(y, t) / D(y, t), lo, hi, epsabs=1e-14, epsrel=1e-13)[0]
            alpha.append(D(lo, t) / exprel(-pe) / h)
            beta.append(D(hi, t) / exprel(pe) / h)
        else:
            a_mean = integrate.quad(lambda y: A(y, t), lo, hi)[0] / h
            alpha.append(max(a_mean, 0.0))
            beta.append(max(-a_mean, 0.0))
    return np.array(alpha), np.array(beta)


@pytest.mark.parametrize("degenerate", [False, True])
def test_one_dimensional_faces_against_the_scharfetter_gummel_definition(degenerate):
    # the compiled 1-D face pass (finite_volume.exponential_faces_1d) behind every time-dependent 1-D solve
    g = fpkit.Grid.uniform(0.0, 2.0, 40)

    def A(x, t):
        return np.sin(3 * x) - 2 * (x - 1) * (1 + t)

    def D(x, t):  # degenerate: no diffusion on the left half (upwind flux there and on face 20 at x = 1)
        return 0.3 * (1 + t) * (x > 1.0) if degenerate else 0.05 + (x - 1.0) ** 2 * (1 + t)

    fp = fpkit.FokkerPlanck(g, drift=A, diffusion=D, bc="reflecting", time_dependent=True)
    L = fp.operator(0.3).toarray()
    h = g.dx[0]
    alpha, beta = _sg_reference(A, D, g.x, 0.3)
    interior = np.arange(1, g.n[0])
    ok = D(g.x[:-1], 0.3) > 0 if degenerate else np.ones(interior.size, bool)  # D > 0 across the interval
    np.testing.assert_allclose((L[interior, interior - 1] * h)[ok], alpha[ok], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose((L[interior - 1, interior] * h)[ok], beta[ok], rtol=1e-9, atol=1e-12)
    if degenerate:  # intervals where D is 0 on a Gauss node: upwind of the 4-point mean drift
        assert (~ok).sum() == 20
        np.testing.assert_allclose((L[interior, interior - 1] * h)[~ok], alpha[~ok], rtol=1e-6, atol=1e-12)
        np.testing.assert_allclose((L[interior - 1, interior] * h)[~ok], beta[~ok], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(L.sum(axis=0), 0.0, atol=1e-9)  # reflecting walls: mass is conserved
    # D < 0 from t > 0.5 between the centres either side of face 21 only: the face pass must catch it
    xm = 0.5 * (g.x[20] + g.x[21])
    bad = fpkit.FokkerPlanck(g, drift=A, diffusion=lambda x, t: 0.05 - (t > 0.5) * (np.abs(x - xm) < 0.4 * h),
                             bc="reflecting", time_dependent=True)  # fmt: skip
    bad.operator(0.3)
    with pytest.raises(ConfigError, match="diffusion.*face 21 of 41"):
        bad.operator(0.7)


def test_three_dimensional_ou_mass_and_stationary_variance():
    # 3-D OU with per-axis θ and D: stationary variances D/θ per axis, reached at second order in h
    theta, D = np.array([1.0, 2.0, 1.5]), np.array([0.5, 0.6, 0.3])
    errors = []
    for n in (12, 24):
        g = fpkit.Grid.uniform((-3, -3, -3), (3, 3, 3), n)
        fp = fpkit.FokkerPlanck(
            g, drift=lambda x, y, z, t: (-theta[0] * x, -theta[1] * y, -theta[2] * z), diffusion=list(D)
        )
        p = fp.stationary()
        X, Y, Z = g.meshgrid()
        var = np.array([g.integrate(p * c**2) - h**2 / 12 for c, h in zip((X, Y, Z), g.dx)])
        errors.append(np.abs(var - D / theta))
    orders = np.log2(errors[0] / errors[1])
    assert np.all(np.abs(orders - 2) < 0.3), orders
    sol = fp.solve(fpkit.gaussian(g, (0.5, 0, -0.5), 0.5), [0.2], method="implicit", dt=0.02)
    assert sol.mass()[-1] == pytest.approx(1.0, abs=1e-12)


def test_mixed_derivative_operator_against_analytic_derivative():
    # periodic grid, Dxy = 1: the operator applied to sin x sin y is 2 ∂x∂y (sin x sin y) = 2 cos x cos y,
    # to second order in h
    from fpkit.solvers.finite_volume import mixed_derivative_matrix

    errs = []
    for n in (32, 64):
        g = fpkit.Grid.uniform((0, 0), (2 * np.pi, 2 * np.pi), n)
        X, Y = g.meshgrid()
        M = mixed_derivative_matrix(g.shape, np.ones(g.shape), [1 / h for h in g.dx], (True, True))
        got = (M @ (np.sin(X) * np.sin(Y)).ravel()).reshape(g.shape)
        errs.append(np.max(np.abs(got - 2 * np.cos(X) * np.cos(Y))))
    assert errs[1] < 0.01 and errs[0] / errs[1] == pytest.approx(4, rel=0.1)


@pytest.mark.parametrize("periodic", [False, True])
def test_blocked_explicit_1d_kernel_matches_sparse_operator_and_plain_sweep(periodic):
    # the temporally blocked path (n >= 2 tiles, many steps; here a partial last tile and a partial last block)
    # against p <- p + dt L p with the sparse generator, and bit for bit against the plain one-step sweep
    from fpkit.solvers import finite_volume as fv

    n, steps = 2 * fv._TILE + 333, 4 * fv._DEPTH + 7
    rng = np.random.default_rng(7)
    alpha, beta = rng.uniform(0.5, 1.5, n + 1), rng.uniform(0.5, 1.5, n + 1)  # open walls: flux leaves
    if periodic:
        alpha[n], beta[n] = alpha[0], beta[0]  # face n is face 0
    inv_h = 1.0 / 0.01
    dt = 0.9 / (inv_h * 3.0)  # c (beta_i + alpha_{i+1}) <= 0.9: a stable, positive step
    p0 = rng.uniform(0.1, 1.0, n)
    L = fv.generator_matrix((n,), [(alpha, beta)], [inv_h], [periodic])
    ref = p0.copy()
    for _ in range(steps):
        ref = ref + dt * (L @ ref)
    blocked = p0.copy()
    fv.explicit_euler_1d(blocked, alpha, beta, inv_h, periodic, dt, steps, np.empty(n))
    np.testing.assert_allclose(blocked, ref, rtol=1e-12, atol=1e-14)
    plain = p0.copy()
    for _ in range(steps):
        fv.explicit_euler_1d(plain, alpha, beta, inv_h, periodic, dt, 1, np.empty(n))
    np.testing.assert_array_equal(blocked, plain)


def test_temporally_blocked_2d_step_is_bit_identical_to_the_plain_step():
    """The 2-D explicit step makes TIME_BLOCK steps per pass (overlapped bands, a wavefront within each);
    every cell gets the plain step's operations in the same order, for every wall combination and count."""
    from fpkit.solvers import finite_volume as fv

    rng = np.random.default_rng(0)
    for nx, ny in [(37, 23), (150, 16), (9, 5)]:
        for px in (False, True):
            for py in (False, True):
                for n in (1, 2, 3, 5, 9):
                    p = rng.random((nx, ny))
                    ax, bx = rng.random((2, nx + 1, ny)) * 0.1
                    ay, by = rng.random((2, nx, ny + 1)) * 0.1
                    a, b = p.copy(), p.copy()
                    fv.explicit_euler_2d(a, ax, bx, ay, by, 1.0, 1.0, px, py, 0.5, n, np.empty_like(a))
                    fv.explicit_euler_2d_plain(b, ax, bx, ay, by, 1.0, 1.0, px, py, 0.5, n, np.empty_like(b))
                    assert np.array_equal(a, b), (nx, ny, px, py, n)
