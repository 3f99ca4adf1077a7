"""An example property-based suite for a user's own Fokker-Planck solver, written with fpkit.testing.

``my_solver`` is a small explicit finite-volume scheme (upwind drift flux, central diffusion flux, zero
flux at both walls). The properties every correct FP solver has — mass conserved, density non-negative,
agreement with an independent solver (fpkit's) within a stated W1 tolerance, first-order convergence of
this scheme in the cell width — are checked on problems hypothesis draws. The last test plants a bug (the
solver loses 1 % of its mass per step) and shows that the suite catches it.

Run it: ``pytest docs/examples/test_property_suite.py`` (a few seconds).
"""

import numpy as np
import pytest
from hypothesis import Phase, given, settings

import fpkit
from fpkit.testing import (
    assert_densities_close,
    assert_mass_conserved,
    assert_nonnegative,
    assert_order,
    fp_problems,
    grids,
)


def my_solver(grid, drift, diffusion, p0, t_end, *, leak=0.0):
    """Explicit finite volumes for ∂t p = −∂x(A p) + ∂x²(D p) with reflecting walls; ``leak`` is the planted
    bug: the fraction of mass lost per step."""
    x, h = grid.x, grid.dx[0]
    faces = grid.edges[0][1:-1]
    A, D = drift(faces, 0.0), diffusion(x, 0.0)
    dt_max = 0.45 / (np.abs(A).max() / h + 2 * D.max() / h**2)  # the explicit step's stability bound
    steps = int(np.ceil(t_end / dt_max))
    dt = t_end / steps
    p = p0.copy()
    for _ in range(steps):
        upwind = np.where(A > 0, p[:-1], p[1:])
        flux = np.zeros(p.size + 1)  # zero at both walls
        flux[1:-1] = A * upwind - (D[1:] * p[1:] - D[:-1] * p[:-1]) / h
        p = p - dt / h * np.diff(flux)
        p *= 1.0 - leak
    return p


def check_mass_and_positivity(solver):
    """The property, for any solver with my_solver's signature."""

    # no shrinking: the first failing problem is reported at once (add Phase.shrink for a minimal one)
    @settings(max_examples=20, deadline=None, derandomize=True,
              phases=[Phase.explicit, Phase.reuse, Phase.generate])
    @given(fp_problems(grid=grids(min_cells=30, max_cells=80)))
    def prop(problem):
        p = solver(problem.grid, problem.drift, problem.diffusion, problem.p0, t_end=0.3)
        assert_mass_conserved(p, problem.grid, atol=1e-10)  # round-off over a few hundred steps
        assert_nonnegative(p)

    return prop


def test_mass_conserved_and_density_nonnegative():
    check_mass_and_positivity(my_solver)()


@settings(max_examples=10, deadline=None, derandomize=True)
@given(fp_problems(grid=grids(min_cells=120, max_cells=160)))
def test_agrees_with_fpkit_within_a_stated_w1(problem):
    p = my_solver(problem.grid, problem.drift, problem.diffusion, problem.p0, t_end=0.3)
    ref = problem.fokker_planck().solve(problem.p0, [0.3], method="crank-nicolson", dt=2e-3).p[-1]
    # upwinding adds numerical diffusion ~ |A| h / 2: over t = 0.3 a W1 shift well below 0.05 (units of x)
    assert_densities_close(p, ref, problem.grid, w1=0.05)


def test_first_order_in_the_cell_width():
    drift, diffusion = (lambda x, t: -2.0 * x), (lambda x, t: 0.2 + 0 * x)
    errors, widths = [], []
    for n in (50, 100, 200):
        g = fpkit.Grid.uniform(-3, 3, n)
        p0 = fpkit.gaussian(g, 1.0, 0.4)
        ref = fpkit.FokkerPlanck(g, drift=drift, diffusion=diffusion).solve(p0, [0.5], dt=1e-3).p[-1]
        errors.append(g.integrate(np.abs(my_solver(g, drift, diffusion, p0, 0.5) - ref)))
        widths.append(g.dx[0])
    assert_order(widths, errors, expected=1.0, tol=0.25)  # upwind drift flux: first order


def test_the_suite_catches_a_solver_that_loses_one_percent_of_mass_per_step():
    def broken(*args, **kwargs):
        return my_solver(*args, leak=0.01, **kwargs)

    with pytest.raises(AssertionError, match="mass not conserved"):
        check_mass_and_positivity(broken)()
