"""The compiled Crank-Nicolson for snapshot coefficients (solvers.snapshot_stepping, behind
FokkerPlanck.solve when drift and diffusion are SnapshotInterpolator arrays, as in every FP prediction):
against an exact variance ODE, the Python stepper it replaces and LAPACK's tridiagonal solver."""

import numpy as np
import pytest
import scipy.linalg as sla
from scipy import integrate

import fpkit
from fpkit import estimators as est
from fpkit.errors import ConfigError
from fpkit.solvers.snapshot_stepping import _gtsv

T_SNAP = np.array([0.0, 0.3, 0.7, 1.5, 2.5])
D_SNAP = np.array([0.2, 0.5, 0.1, 0.3, 0.25])


def _problem(g, theta=1.0, bc="reflecting", d_values=None):
    drift = est.SnapshotInterpolator(T_SNAP, np.tile(-theta * g.x, (T_SNAP.size, 1)), g, "drift")
    d_values = D_SNAP[:, None] * (1 + 0 * g.x) if d_values is None else d_values
    diffusion = est.SnapshotInterpolator(T_SNAP, d_values, g, "diffusion")
    return fpkit.FokkerPlanck(g, drift=drift, diffusion=diffusion, bc=bc, time_dependent=True)


def test_variance_ode_with_piecewise_linear_diffusion():
    # var' = -2θ var + 2 D(t), D linear between the snapshots and held after the last: quadrature of the
    # ODE's solution; second order in space (Sheppard-corrected cell variance), as the Python stepper
    theta, t_eval = 1.0, np.array([0.5, 1.0, 2.0, 3.0])
    D = lambda s: np.interp(s, T_SNAP, D_SNAP)  # noqa: E731
    exact = []
    for t in t_eval:
        forcing = integrate.quad(lambda s: 2 * D(s) * np.exp(2 * theta * s), 0, t, points=T_SNAP[1:-1],
                                 epsabs=1e-13, epsrel=1e-13)[0]  # fmt: skip
        exact.append(np.exp(-2 * theta * t) * (0.09 + forcing))
    errors = []
    for n in (200, 400):
        g = fpkit.Grid.uniform(-5, 5, n)
        fp = _problem(g, theta)
        assert fp._snapshot_coefficients() is not None  # the compiled path
        sol = fp.solve(fpkit.gaussian(g, 0.0, 0.3), t_eval, method="crank-nicolson", dt=2e-3)
        assert np.allclose(g.integrate(sol.p), 1.0, atol=1e-12)  # mass
        errors.append(np.abs(sol.var() - g.dx[0] ** 2 / 12 - np.array(exact)))
    orders = np.log2(errors[0] / errors[1])
    assert np.all(np.abs(orders - 2) < 0.15), orders
    assert np.all(errors[1] / np.array(exact) < 5e-4)


@pytest.mark.parametrize("bc", ["reflecting", "absorbing"])
def test_same_as_the_python_stepper(bc):
    # outputs before the first snapshot's end, between snapshots, after the last; a step that does not
    # divide the intervals; spatially varying coefficients with a degenerate (D = 0) patch
    g = fpkit.Grid.uniform(-3, 3, 300)
    rng = np.random.default_rng(5)
    d_values = np.abs(0.2 + 0.1 * rng.standard_normal((T_SNAP.size, 1))) * (1 + 0.5 * np.sin(g.x)) * (np.abs(g.x + 1) > 0.2)
    fp = _problem(g, 1.3, bc, d_values)
    p0 = fpkit.gaussian(g, 0.5, 0.4)
    t_eval = [0.0, 0.05, 0.3, 1.1, 2.5, 3.2]
    compiled = fp.solve(p0, t_eval, method="crank-nicolson", dt=0.037)
    fp._snapshot_coefficients = lambda: None  # the Python stepper (time_stepping.ImplicitStepper)
    python = fp.solve(p0, t_eval, method="crank-nicolson", dt=0.037)
    assert compiled.meta["n_steps"] == python.meta["n_steps"] > 80
    np.testing.assert_allclose(compiled.p, python.p, rtol=0, atol=1e-13 * np.abs(python.p).max())
    mass = g.integrate(compiled.p[-1])
    assert (mass < 1 - 1e-7) if bc == "absorbing" else abs(mass - 1) < 1e-12  # leaves through absorbing walls


def test_negative_diffusion_at_a_later_snapshot_is_refused():
    g = fpkit.Grid.uniform(-3, 3, 50)
    d_values = D_SNAP[:, None] * (1 + 0 * g.x)
    d_values[3, 10] = -1e-3  # fpkit.FokkerPlanck checks D at t = 0 only; the snapshots are checked up front
    fp = _problem(g, d_values=d_values)
    with pytest.raises(ConfigError, match="diffusion.*non-negative.*t=1.5"):
        fp.solve(fpkit.gaussian(g, 0.0, 0.4), [2.0], method="crank-nicolson", dt=0.01)


@pytest.mark.parametrize("dominant", [True, False])
def test_tridiagonal_solve_is_lapack_gtsv(dominant):
    # the same elimination with partial pivoting as LAPACK's dgtsv (pivoting happens in the non-dominant
    # systems): bit-identical results
    rng = np.random.default_rng(2)
    for n in (2, 3, 7, 200):
        dl, du = rng.normal(size=n - 1), rng.normal(size=n - 1)
        d, b = rng.normal(size=n) + 5 * dominant, rng.normal(size=n)
        (gtsv,) = sla.get_lapack_funcs(("gtsv",), (d,))
        ref = gtsv(dl.copy(), d.copy(), du.copy(), b.copy(), True, True, True, False)[3]
        x = b.copy()
        assert _gtsv(dl.copy(), d.copy(), du.copy(), x)
        assert np.array_equal(x, ref), (n, np.abs(x - ref).max())
    assert not _gtsv(np.zeros(2), np.array([1.0, 0.0, 1.0]), np.zeros(2), np.ones(3))  # singular


def test_step_count_refuses_a_step_that_gives_no_count():
    """n_substeps (compiled, shared by every stepper): the fewest steps no longer than dt, ceil(interval/dt)
    less the 1e-12 slack; a zero or NaN dt, or more than 2**63 steps, is refused: int() of such a count gave
    one step silently (FokkerPlanck.solve with dt = 1e-30 returned at once)."""
    from fpkit.solvers.time_stepping import n_substeps

    assert [n_substeps(1.0, 0.3), n_substeps(0.9, 0.3), n_substeps(0.3, 1.0), n_substeps(1.0, np.inf)] == [4, 3, 1, 1]
    for interval, dt in [(1.0, 0.0), (1.0, np.nan), (1e300, 1e-300)]:
        with pytest.raises(ConfigError, match="`dt`"):
            n_substeps(interval, dt)
    g = fpkit.Grid.uniform(-3.0, 3.0, 50)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
    with pytest.raises(ConfigError, match="`dt`"):
        fp.solve(np.exp(-g.x**2), [0.0, 1.0], dt=1e-30)
