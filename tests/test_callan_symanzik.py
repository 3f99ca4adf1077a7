"""Callan-Symanzik solver: closed-form solutions, convergence orders, running couplings, fixed points, poles.

Closed forms used (derived in docs/derivations.md, section "Closed forms"):

1. β = b g², γ = c g:   G(g, s) = G0(g/(1 + b g s)) · (1 + b g s)^(−c/b).
2. β = b g³, γ = c g²:  G(g, s) = G0(g/√(1 + 2b g² s)) · (1 + 2b g² s)^(−c/(2b)).
3. β = g(1 − g), γ = c g:  G(g, s) = G0(g E/(1 − g + g E)) · (1 − g + g E)^c,  E = e^(−s).
4. β = M g (two couplings), γ = γ0 + c·g:  G = G0(e^(−Ms) g) · exp(−γ0 s − c·M⁻¹(e^(Ms) − 1) e^(−Ms) g).
5. β = −a(1 + s) g (scale dependent), γ = c g:  foot g e^(a(s + s²/2)), ∫γ by an error function.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.linalg import expm
from scipy.special import erf

import fpkit
from fpkit.callan_symanzik import CallanSymanzik, CSSolution, LandauPoleError
from fpkit.errors import ConfigError


def G0(x):
    return np.exp(-((x - 0.3) ** 2) / 0.05) + 0.5 * np.cos(2 * x)


def exact_square(b, c):
    return lambda x, s: G0(x / (1 + b * x * s)) * (1 + b * x * s) ** (-c / b)


def exact_cubic(b, c):
    return lambda x, s: G0(x / np.sqrt(1 + 2 * b * x**2 * s)) * (1 + 2 * b * x**2 * s) ** (-c / (2 * b))


def exact_logistic(c):
    def f(x, s):
        E = math.exp(-s)
        den = 1 - x + x * E
        return G0(x * E / den) * den**c

    return f


def order(errors, ns):
    """Least-squares slope of log(error) against log(1/n)."""
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


# --- characteristics: closed forms to 1e-8 --------------------------------------------------------------
@pytest.mark.parametrize(
    "beta, gamma, exact, lo, hi",
    [
        (lambda x: 0.7 * x**2, lambda x: 1.3 * x, exact_square(0.7, 1.3), -0.5, 1.0),
        (lambda x: -(x**3), lambda x: x**2, exact_cubic(-1.0, 1.0), -0.5, 0.5),
        (lambda x: 0.5 * x**3, lambda x: -0.8 * x**2, exact_cubic(0.5, -0.8), -1.5, 1.5),
        (lambda x: x * (1 - x), lambda x: 0.9 * x, exact_logistic(0.9), -0.5, 0.9),
    ],
)
def test_characteristics_match_closed_forms(beta, gamma, exact, lo, hi):
    g = fpkit.Grid.uniform(lo, hi, 101)
    cs = CallanSymanzik(g, beta=beta, gamma=gamma)
    s_eval = [0.0, 0.3, 0.8, 1.3]
    sol = cs.solve(G0, s_eval, method="characteristics")
    assert isinstance(sol, CSSolution) and sol.G.shape == (4, 101)
    for k, s in enumerate(s_eval):
        np.testing.assert_allclose(sol.G[k], exact(g.x, s), rtol=0, atol=1e-8)
    # arbitrary evaluation points, including outside the grid
    pts = np.array([lo - 0.05, 0.123456, hi * 0.77])
    sol_p = cs.solve(G0, s_eval, points=pts)
    assert sol_p.G.shape == (4, 3)
    np.testing.assert_allclose(sol_p.G[-1], exact(pts, 1.3), rtol=0, atol=1e-8)


def test_characteristics_two_couplings_linear_flow():
    M = np.array([[-1.0, 2.0], [-2.0, -1.0]])
    cvec, g0 = np.array([0.4, -0.3]), 0.25

    def beta(a, b):
        return (M[0, 0] * a + M[0, 1] * b, M[1, 0] * a + M[1, 1] * b)

    def gamma(a, b):
        return g0 + cvec[0] * a + cvec[1] * b

    def G0_2(a, b):
        return np.exp(-(a**2) - 0.5 * (b - 0.2) ** 2)

    grid = fpkit.Grid.uniform((-1, -1), (1, 1), (21, 17))
    cs = CallanSymanzik(grid, beta=beta, gamma=gamma)
    s_eval = [0.4, 1.1]
    sol = cs.solve(G0_2, s_eval)
    assert sol.G.shape == (2, 21, 17)
    X, Y = grid.meshgrid()
    pts = np.stack([X.ravel(), Y.ravel()])
    Minv = np.linalg.inv(M)
    for k, s in enumerate(s_eval):
        foot = expm(-M * s) @ pts
        integ = g0 * s + cvec @ (Minv @ ((expm(M * s) - np.eye(2)) @ foot))
        want = G0_2(*foot) * np.exp(-integ)
        np.testing.assert_allclose(sol.G[k].ravel(), want, rtol=0, atol=1e-8)


def _scale_dependent_case(a=0.8, c=0.6):
    def exact(x, s):
        foot = x * np.exp(a * (s + s * s / 2))
        r = math.sqrt(a / 2)
        integral = math.exp(a / 2) * math.sqrt(math.pi / (2 * a)) * (erf(r * (s + 1)) - erf(r))
        return G0(foot) * np.exp(-c * foot * integral)

    return (lambda x, s: -a * (1 + s) * x), (lambda x, s: c * x), exact


def test_scale_dependent_beta_characteristics_and_grid():
    beta, gamma, exact = _scale_dependent_case()
    g = fpkit.Grid.uniform(-0.5, 0.5, 161)
    cs = CallanSymanzik(g, beta=beta, gamma=gamma, scale_dependent=True)
    sol = cs.solve(G0, [0.2, 0.6])
    np.testing.assert_allclose(sol.G[-1], exact(g.x, 0.6), rtol=0, atol=1e-8)


@pytest.mark.parametrize("method, band", [("upwind", (1.85, 2.3)), ("semi-lagrangian", (2.7, 3.3))])
def test_scale_dependent_beta_grid_convergence(method, band):
    # The flow is inwards at both ends: exact inflow data keep the error interior. Semi-Lagrangian steps at a
    # fixed Courant number: (number of steps ~ 1/dx) × (cubic interpolation error ~ dx⁴) = third order.
    beta, gamma, exact = _scale_dependent_case()
    errs = []
    for n in NS:
        g = fpkit.Grid.uniform(-0.5, 0.5, n)
        cs = CallanSymanzik(g, beta=beta, gamma=gamma, scale_dependent=True)
        sol = cs.solve(G0, [0.2, 0.6], method=method, inflow=exact)
        errs.append(np.mean(np.abs(sol.G[-1] - exact(g.x, 0.6))))
    assert band[0] < order(errs, NS) < band[1], errs


# --- grid solvers: convergence orders ------------------------------------------------------------------------
NS = (80, 160, 320)


def _errors(method, ns=NS, **kw):
    """L1 errors (mean absolute over nodes) at s = 1 for the logistic flow (outflow at both ends)."""
    exact = exact_logistic(0.9)
    errs = []
    for n in ns:
        g = fpkit.Grid.uniform(-0.5, 0.9, n)
        cs = CallanSymanzik(g, beta=lambda x: x * (1 - x), gamma=lambda x: 0.9 * x)
        sol = cs.solve(G0, [0.5, 1.0], method=method, **kw)
        errs.append(np.mean(np.abs(sol.G[-1] - exact(g.x, 1.0))))
    return np.array(errs)


@pytest.mark.parametrize("limiter", ["none", "van-leer", "mc"])
def test_upwind_second_order(limiter):
    errs = _errors("upwind", limiter=limiter)
    p = order(errs, NS)
    assert 1.85 < p < 2.4, (limiter, errs, p)
    assert errs[-1] < 4e-5


def test_upwind_minmod_converges_at_least_first_order():
    # minmod clips the slope at every extremum and inflection of the slope: between first and second order
    errs = _errors("upwind", limiter="minmod")
    assert 1.4 < order(errs, NS) < 2.4


def test_semi_lagrangian_fourth_order_in_space_at_fixed_steps():
    # exact feet, cubic interpolation: error ~ (number of steps) · dx⁴
    errs = _errors("semi-lagrangian", ns=(40, 80, 160), ds=0.25)
    assert 3.6 < order(errs, (40, 80, 160)) < 4.4, errs


def test_upwind_with_exact_inflow_converges_second_order():
    exact = exact_square(0.7, 1.3)  # β = b g² > 0: the left end is an inflow boundary
    errs = []
    for n in NS:
        g = fpkit.Grid.uniform(0.1, 1.1, n)
        cs = CallanSymanzik(g, beta=lambda x: 0.7 * x**2, gamma=lambda x: 1.3 * x)
        sol = cs.solve(G0, [1.0], method="upwind", limiter="none", inflow=exact)
        errs.append(np.mean(np.abs(sol.G[-1] - exact(g.x, 1.0))))
    assert 1.85 < order(errs, NS) < 2.4, errs


def test_grid_solution_evaluated_at_points():
    exact = exact_logistic(0.9)
    g = fpkit.Grid.uniform(-0.5, 0.9, 400)
    cs = CallanSymanzik(g, beta=lambda x: x * (1 - x), gamma=lambda x: 0.9 * x)
    pts = np.array([-0.31, 0.0123, 0.5, 0.87])
    sol = cs.solve(G0, [1.0], method="semi-lagrangian", points=pts)
    np.testing.assert_allclose(sol.G[0], exact(pts, 1.0), atol=1e-7)
    full = cs.solve(G0, [1.0], method="semi-lagrangian")
    np.testing.assert_allclose(full.at(pts), sol.G[0], atol=1e-14)


# --- OU drift: the CS form of the Fokker-Planck equation ---------------------------------------------------------
TH, MU, D = 1.2, 0.3, 0.4
M0, V0 = -0.8, 0.09


def ou_density(x, t, diffusion=D):
    m = MU + (M0 - MU) * np.exp(-TH * t)
    v = V0 * np.exp(-2 * TH * t) + diffusion / TH * (1 - np.exp(-2 * TH * t))
    return np.exp(-((x - m) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)


def ou_cs(n, kappa):
    g = fpkit.Grid.uniform(-4.0, 4.0, n)
    return g, CallanSymanzik(g, beta=lambda x: -TH * (x - MU), gamma=-TH, kappa=kappa)


def test_ou_pure_drift_characteristics_exact():
    g, cs = ou_cs(200, 0.0)
    sol = cs.solve(lambda x: ou_density(x, 0.0), [0.5, 1.0])
    # pure drift: p(x, t) = p0(μ + (x − μ) e^(θt)) e^(θt), the OU density with D = 0
    for k, t in enumerate([0.5, 1.0]):
        np.testing.assert_allclose(sol.G[k], ou_density(g.x, t, diffusion=0.0), rtol=0, atol=1e-8)
        # and mass is conserved by the transport
        assert g.integrate(sol.G[k]) == pytest.approx(1.0, abs=1e-10)


@pytest.mark.parametrize("method", ["upwind", "semi-lagrangian"])
def test_ou_pure_drift_grid_solvers_converge(method):
    # The pure-drift density narrows (std 0.3 → 0.15 by t = 0.6); the unlimited upwind scheme is second order,
    # semi-Lagrangian with exact feet takes one step, so its error is the cubic interpolation error ~dx⁴.
    errs = []
    for n in NS:
        g, cs = ou_cs(n, 0.0)
        sol = cs.solve(lambda x: ou_density(x, 0.0), [0.6], method=method, limiter="none")
        errs.append(np.mean(np.abs(sol.G[-1] - ou_density(g.x, 0.6, diffusion=0.0))))
    band = (1.85, 2.3) if method == "upwind" else (3.6, 4.4)
    assert band[0] < order(errs, NS) < band[1], errs


@pytest.mark.parametrize("method", ["upwind", "semi-lagrangian"])
def test_ou_with_diffusion_matches_exact_density_second_order(method):
    # κ = D: Strang splitting with Crank-Nicolson diffusion, second order in L1 (van Leer limiter)
    ns = (160, 320, 640)
    errs = []
    for n in ns:
        g, cs = ou_cs(n, D)
        sol = cs.solve(lambda x: ou_density(x, 0.0), [0.5, 1.0], method=method)
        errs.append(np.mean(np.abs(sol.G[-1] - ou_density(g.x, 1.0))))
    p = order(errs, ns)
    assert 1.85 < p < 2.3, (errs, p)
    assert errs[-1] < 1e-5


# --- running coupling, Landau poles, fixed points ------------------------------------------------------------
def test_running_coupling_closed_form_and_landau_pole():
    b = 0.5
    cs = CallanSymanzik(fpkit.Grid.uniform(-1, 1, 11), beta=lambda x: b * x**2, gamma=0.0)
    s = np.array([-2.0, 0.0, 1.0, 4.0])
    g0 = np.array([0.4, -0.3])
    got = cs.running_coupling(g0, s)
    assert got.shape == (4, 2)
    np.testing.assert_allclose(got, g0[None] / (1 - b * g0[None] * s[:, None]), rtol=1e-10)
    with pytest.raises(LandauPoleError, match="Landau pole") as info:
        cs.running_coupling(0.4, [1.0, 6.0])
    assert info.value.s_pole == pytest.approx(1 / (b * 0.4), rel=1e-8)
    assert isinstance(info.value, ConfigError)
    assert cs.landau_pole(0.4, 10.0) == pytest.approx(5.0, rel=1e-8)
    assert cs.landau_pole(0.4, 4.9) is None
    assert cs.landau_pole(-0.4, 10.0) is None


def test_solve_reports_landau_pole_inside_range():
    # β = −g³: tracing back from g the coupling diverges after Δs = 1/(2 g²)
    g = fpkit.Grid.uniform(-1.0, 1.0, 50)
    cs = CallanSymanzik(g, beta=lambda x: -(x**3), gamma=lambda x: x**2)
    with pytest.raises(LandauPoleError, match="Landau pole") as info:
        cs.solve(G0, [0.2, 1.0])
    gmax = g.x[-1]
    assert info.value.s_pole == pytest.approx(1 / (2 * gmax**2), rel=1e-8)
    cs.solve(G0, [0.2, 0.5])  # below the pole of the outermost node, 1/(2·0.98²) ≈ 0.52: fine


def test_fixed_points_1d():
    cs = CallanSymanzik(
        fpkit.Grid.uniform(-1, 2, 30), beta=lambda x: x * (1 - x), gamma=lambda x: 0.7 * x + 0.1
    )
    fps = cs.fixed_points()
    assert [round(f.g, 12) for f in fps] == [0.0, 1.0]
    assert fps[0].stability == "unstable" and fps[0].slope == pytest.approx(1.0, abs=1e-9)
    assert fps[1].stability == "stable" and fps[1].slope == pytest.approx(-1.0, abs=1e-9)
    assert fps[1].anomalous_dimension == pytest.approx(0.8, abs=1e-12)
    # marginal points: −g³ attracts from both sides, g² only from below
    (m3,) = CallanSymanzik(fpkit.Grid.uniform(-1, 2, 30), beta=lambda x: -(x**3), gamma=0.0).fixed_points()
    assert m3.marginal and m3.stability == "stable" and abs(m3.g) < 1e-5
    (m2,) = CallanSymanzik(fpkit.Grid.uniform(-1, 2, 30), beta=lambda x: x**2, gamma=0.0).fixed_points()
    assert m2.marginal and m2.stability == "semi-stable" and abs(m2.g) < 1e-5
    # the anomalous dimension is the decay rate of G at a stable fixed point: G(1, s) = G0(1) e^(−0.8 s)
    sol = cs.solve(lambda x: 1.0 + 0 * x, [2.0], points=np.array([1.0]))
    assert sol.G[0, 0] == pytest.approx(math.exp(-0.8 * 2.0), rel=1e-10)


def test_fixed_points_two_couplings():
    grid = fpkit.Grid.uniform((-1, -1), (1, 1), 10)
    cs = CallanSymanzik(grid, beta=lambda a, b: (-a + 2 * b, -2 * a - b + 0.1), gamma=lambda a, b: 0.5 + a)
    (fp,) = cs.fixed_points()
    np.testing.assert_allclose(fp.g, [0.04, 0.02], atol=1e-12)
    np.testing.assert_allclose(sorted(fp.slope, key=lambda z: z.imag), [-1 - 2j, -1 + 2j], atol=1e-6)
    assert fp.stability == "stable" and fp.anomalous_dimension == pytest.approx(0.54, abs=1e-10)
    saddle = CallanSymanzik(grid, beta=lambda a, b: (a, -b), gamma=0.0).fixed_points()
    assert [f.stability for f in saddle] == ["saddle"]


# --- properties ----------------------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(
    g0=st.floats(-0.8, 0.8),
    s1=st.floats(0.0, 1.5),
    s2=st.floats(0.0, 1.5),
)
def test_running_coupling_is_a_flow(g0, s1, s2):
    cs = CallanSymanzik(fpkit.Grid.uniform(-1, 1, 5), beta=lambda x: x * (1 - x) - 0.3 * x**3, gamma=0.0)
    two_steps = cs.running_coupling(cs.running_coupling(g0, s1), s2)
    assert two_steps == pytest.approx(cs.running_coupling(g0, s1 + s2), abs=1e-10)


@settings(max_examples=15, deadline=None)
@given(
    beta=st.floats(-2.0, 2.0).filter(lambda v: abs(v) > 1e-3),
    seed=st.integers(0, 2**31),
    limiter=st.sampled_from(["minmod", "van-leer", "mc", "superbee"]),
)
def test_upwind_limited_schemes_keep_the_range(beta, seed, limiter):
    # with γ = 0, TVD schemes at cfl <= 0.5 create no new extrema, even from rough data
    rng = np.random.default_rng(seed)
    g = fpkit.Grid.uniform(0.0, 1.0, 40)
    G = rng.uniform(-1.0, 1.0, 40)
    cs = CallanSymanzik(g, beta=beta, gamma=0.0)
    out = cs.solve(G, [0.3], method="upwind", limiter=limiter).G[-1]
    assert out.min() >= G.min() - 1e-12 and out.max() <= G.max() + 1e-12


@settings(max_examples=10, deadline=None)
@given(a=st.floats(-2, 2), b=st.floats(-2, 2), method=st.sampled_from(["upwind", "semi-lagrangian"]))
def test_unlimited_grid_solvers_are_linear(a, b, method):
    # the equation is linear; so are the schemes without a limiter (limiters are nonlinear by design)
    g = fpkit.Grid.uniform(-1.0, 1.0, 48)
    cs = CallanSymanzik(g, beta=lambda x: 0.5 - x, gamma=lambda x: x, kappa=0.05)
    u, v = np.exp(-(g.x**2)), np.sin(3 * g.x)
    kw = {"method": method, "limiter": "none"}
    su = cs.solve(u, [0.4], **kw).G
    sv = cs.solve(v, [0.4], **kw).G
    sw = cs.solve(a * u + b * v, [0.4], **kw).G
    np.testing.assert_allclose(sw, a * su + b * sv, atol=1e-12 * (1 + abs(a) + abs(b)))


# --- storage and bad input -----------------------------------------------------------------------------------------
def test_solution_save_load(tmp_path):
    g = fpkit.Grid.uniform(-0.5, 0.9, 30)
    cs = CallanSymanzik(g, beta=lambda x: x * (1 - x), gamma=0.2)
    sol = cs.solve(G0, [0.5, 1.0], method="upwind")
    back = CSSolution.load(sol.save(tmp_path / "cs.h5"))
    np.testing.assert_array_equal(back.G, sol.G)
    assert back.meta["method"] == "upwind" and back.grid == g


GRID = fpkit.Grid.uniform(-1.0, 1.0, 20)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"grid": "grid", "beta": 1.0}, "grid"),
        ({"beta": 1.0, "kappa": -0.1}, "kappa"),
        ({"beta": np.ones(7)}, "beta"),
        ({"beta": lambda x: np.ones(3)}, "beta"),
        ({"beta": lambda x: np.where(x > 0, 1.0, np.nan)}, "beta"),
        ({"beta": 1.0, "gamma": "x"}, "gamma"),
    ],
)
def test_bad_construction(kwargs, match):
    kwargs.setdefault("grid", GRID)
    with pytest.raises(ConfigError, match=match):
        CallanSymanzik(**kwargs)


@pytest.mark.parametrize(
    "cs_kwargs, solve_kwargs, match",
    [
        ({}, {"method": "euler"}, "method"),
        ({}, {"limiter": "koren"}, "limiter"),
        ({}, {"s_eval": [0.5, 0.2]}, "s_eval"),
        ({}, {"s_eval": [-0.1, 0.2]}, "s_eval"),
        ({}, {"s_eval": []}, "s_eval"),
        ({"kappa": 0.1}, {"method": "characteristics"}, "kappa"),
        ({}, {"method": "upwind", "ds": 1.0}, "ds"),
        ({}, {"method": "upwind", "cfl": 1.5}, "cfl"),
        ({}, {"G0": np.ones(5)}, "G0"),
        ({}, {"ds": -1.0, "method": "upwind"}, "ds"),
        ({}, {"inflow": "zero", "method": "upwind"}, "inflow"),
        ({}, {"inflow": [1.0, 2.0], "method": "upwind"}, "inflow"),
    ],
)
def test_bad_solve_arguments(cs_kwargs, solve_kwargs, match):
    cs = CallanSymanzik(GRID, beta=lambda x: 1 + 0 * x, gamma=0.0, **cs_kwargs)
    args = {"G0": lambda x: np.exp(-(x**2)), "s_eval": [0.1, 0.2]} | solve_kwargs
    with pytest.raises(ConfigError, match=match):
        cs.solve(args.pop("G0"), args.pop("s_eval"), **args)


def test_grid_methods_need_one_coupling():
    cs = CallanSymanzik(fpkit.Grid.uniform((-1, -1), (1, 1), 8), beta=lambda a, b: (a, b), gamma=0.0)
    with pytest.raises(ConfigError, match="characteristics"):
        cs.solve(lambda a, b: a + b, [0.1], method="upwind")
    with pytest.raises(ConfigError, match="points"):
        cs.solve(lambda a, b: a + b, [0.1], points=np.zeros((3, 3)))
    with pytest.raises(ConfigError, match="scale_dependent"):
        CallanSymanzik(GRID, beta=lambda x, s: x, gamma=0.0, scale_dependent=True).fixed_points()


# --- compiled kernels against plain numpy references -------------------------------------------------------------
def _numpy_muscl_rhs(ext, beta, gamma, dx, limiter):
    a = ext[1:-1] - ext[:-2]  # backward differences of extended cells 1 .. n+2
    b = ext[2:] - ext[1:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        if limiter == "none":
            slope = 0.5 * (a + b)
        else:  # van Leer
            slope = np.where(a * b > 0, 2 * a * b / (a + b), 0.0)
    sl = np.concatenate([[0.0], slope, [0.0]])  # index = extended cell
    j = np.arange(beta.size) + 2
    left = (ext[j] + 0.5 * sl[j]) - (ext[j - 1] + 0.5 * sl[j - 1])
    right = (ext[j + 1] - 0.5 * sl[j + 1]) - (ext[j] - 0.5 * sl[j])
    return -beta * np.where(beta > 0, left, right) / dx - gamma * ext[j]


@pytest.mark.parametrize("limiter", ["none", "van-leer"])
def test_muscl_kernel_matches_numpy(limiter):
    from fpkit.solvers import transport as tr

    rng = np.random.default_rng(3)
    n = 37
    G, beta, gamma = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    ext = np.empty(n + 4)
    tr.fill_ghosts(G, np.zeros(4), tr.GHOST_QUADRATIC, tr.GHOST_CONSTANT, beta[0], beta[-1], ext)
    assert ext[1] == pytest.approx(3 * G[0] - 3 * G[1] + G[2]) and ext[-1] == ext[-2] == G[-1]
    out = np.empty(n)
    tr.muscl_rhs(ext, beta, gamma, 0.1, tr.LIMITERS[limiter], np.zeros(n + 4), out)
    np.testing.assert_allclose(out, _numpy_muscl_rhs(ext, beta, gamma, 0.1, limiter), rtol=1e-13, atol=1e-12)


def test_crank_nicolson_kernel_matches_dense_solve():
    from fpkit.solvers import transport as tr

    rng = np.random.default_rng(4)
    n, dx, dt = 25, 0.1, 0.03
    G, kappa = rng.standard_normal(n), rng.uniform(0.1, 1.0, n)
    L = (np.diag(-2.0 * np.ones(n)) + np.diag(np.ones(n - 1), 1) + np.diag(np.ones(n - 1), -1)) / dx**2
    L[0, 0] = L[-1, -1] = -1.0 / dx**2  # zero-gradient ghosts
    K = kappa[:, None] * L
    want = np.linalg.solve(np.eye(n) - 0.5 * dt * K, (np.eye(n) + 0.5 * dt * K) @ G)
    got = G.copy()
    tr.cn_diffusion(got, kappa, dx, dt, 0.5, False, False, np.zeros(2), np.zeros(2), np.empty((6, n)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_cubic_interpolation_reproduces_cubics():
    from fpkit.solvers.transport import cubic_interpolate

    g = fpkit.Grid.uniform(-1.0, 2.0, 17)
    poly = lambda x: 0.3 - x + 2 * x**2 - 0.7 * x**3
    pts = np.linspace(g.x[0], g.x[-1], 101)
    np.testing.assert_allclose(cubic_interpolate(poly(g.x), g.lo[0], g.dx[0], pts), poly(pts), atol=1e-12)


def test_characteristics_with_array_initial_data_interpolate_exactly_for_cubics():
    # β constant: G(g, s) = G0(g − β s) e^(−γ s); cubic (per axis) data are interpolated exactly
    g1 = fpkit.Grid.uniform(-1.0, 1.0, 30)
    poly = lambda x: 1 + x - 0.5 * x**2 + 0.3 * x**3
    sol = CallanSymanzik(g1, beta=0.2, gamma=0.4).solve(poly(g1.x), [1.0])
    inner = g1.x - 0.2 >= g1.x[0]
    np.testing.assert_allclose(sol.G[0][inner], poly(g1.x[inner] - 0.2) * np.exp(-0.4), atol=1e-12)
    g2 = fpkit.Grid.uniform((-1, -1), (1, 1), (20, 24))
    X, Y = g2.meshgrid()
    cs = CallanSymanzik(g2, beta=lambda a, b: (0.1 + 0 * a, -0.2 + 0 * b), gamma=0.0)
    out = cs.solve(poly(X) * Y**2, [0.5]).G[0]
    fx, fy = X - 0.05, Y + 0.1
    ok = (fx >= g2.axes[0][0]) & (fy <= g2.axes[1][-1])
    np.testing.assert_allclose(out[ok], (poly(fx) * fy**2)[ok], atol=1e-12)
