"""fpkit.testing: its strategies draw well-posed problems, its assertions fail when they should, and
``import fpkit`` does not import hypothesis."""

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings

import fpkit
from fpkit import testing as ft


@settings(max_examples=25, deadline=None)
@given(ft.fp_problems())
def test_fp_problems_are_well_posed(problem):
    g = problem.grid
    ft.assert_mass_conserved(problem.p0, g, atol=1e-12)
    ft.assert_nonnegative(problem.p0)
    assert problem.diffusion(g.x).min() > 0
    # confining: the drift points inwards at both walls
    assert problem.drift(g.lo[0]) > 0 > problem.drift(g.hi[0])
    assert "Drift(" in repr(problem.drift)  # a failure prints coefficients one can paste back


@settings(max_examples=10, deadline=None)
@given(ft.sde_problems())
def test_sde_problems_sample_with_fpkit(problem):
    paths = problem.sde().sample(problem.x0, problem.t_eval, n_paths=64, dt=0.01, seed=1)
    assert paths.x.shape == (len(problem.t_eval), 64) and np.isfinite(paths.x).all()


@settings(max_examples=20, deadline=None)
@given(ft.ensemble_configs())
def test_ensemble_configs_are_accepted(cfg):
    fpkit.Ensemble(**cfg)  # validated at construction: a bad key or value raises ConfigError


def test_assertions_fail_with_the_measured_number():
    g = fpkit.Grid.uniform(-3, 3, 60)
    p, q = fpkit.gaussian(g, 0.0, 0.5), fpkit.gaussian(g, 0.2, 0.5)
    got = ft.assert_densities_close(p, q, g, w1=0.25)
    assert got["w1"] == pytest.approx(0.2, rel=1e-3)
    with pytest.raises(AssertionError, match="W1 = 0.2 > tolerance 0.1"):
        ft.assert_densities_close(p, q, g, w1=0.1)
    with pytest.raises(ValueError, match="tolerance"):
        ft.assert_densities_close(p, q, g)
    with pytest.raises(AssertionError, match="mass not conserved"):
        ft.assert_mass_conserved(0.99 * p, g, atol=1e-3)
    with pytest.raises(AssertionError, match="negative"):
        ft.assert_nonnegative(p - 0.01)
    assert ft.fit_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4]) == pytest.approx(2.0)
    with pytest.raises(AssertionError, match="convergence order 2.000, expected 1"):
        ft.assert_order([0.1, 0.05, 0.025], [1e-2, 2.5e-3, 6.25e-4], expected=1.0)


def test_assert_reproducible():
    ft.assert_reproducible(lambda s: {"x": np.random.default_rng(s).normal(size=5)}, 3, other_seed=4)
    with pytest.raises(AssertionError, match="not reproducible"):
        ft.assert_reproducible(lambda s: np.random.default_rng().normal(size=5), 3)
    with pytest.raises(AssertionError, match="is the seed used"):
        ft.assert_reproducible(lambda s: np.ones(3), 3, other_seed=4)


def test_import_fpkit_does_not_import_hypothesis():
    code = "import sys, fpkit; fpkit.Grid; assert 'hypothesis' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
