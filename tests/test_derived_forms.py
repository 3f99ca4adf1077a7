"""The log-density (KPZ-type) and Callan-Symanzik forms of a Fokker-Planck problem, checked numerically.

References: exact OU densities (REFERENCES.md), including an OU process with a moving centre whose mean
solves dμ/dt = −θ(μ − m(t)); and, for the double well, agreement of three independent solvers with a
difference that shrinks at second order.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad

import fpkit
from fpkit.callan_symanzik import CallanSymanzik
from fpkit.derived_forms import (
    FormComparison,
    LogDensitySolution,
    callan_symanzik_form,
    compare_forms,
    log_density_form,
)
from fpkit.errors import ConfigError


def order(errors, ns):
    return -np.polyfit(np.log(ns), np.log(errors), 1)[0]


def double_well(n, diffusion=0.5):
    g = fpkit.Grid.uniform(-3.0, 3.0, n)
    return fpkit.FokkerPlanck(g, drift=lambda x, t: x - x**3, diffusion=diffusion)


def p0_dw(x):
    return np.exp(-((x - 0.4) ** 2) / 0.5)


# --- the forms' coefficients ----------------------------------------------------------------------------------
def test_coefficients_of_both_forms_constant_D():
    fp = double_well(60)
    x = fp.grid.x
    form = log_density_form(fp)
    np.testing.assert_array_equal(form.nu, 0.5)
    np.testing.assert_array_equal(form.lam, 1.0)  # λ = 2D
    np.testing.assert_allclose(form.advection(0.3), x - x**3, rtol=0, atol=1e-14)
    np.testing.assert_allclose(form.source(0.3), 1 - 3 * x**2, rtol=0, atol=1e-9)  # ∂A
    cs = callan_symanzik_form(fp)
    assert isinstance(cs, CallanSymanzik) and not cs.scale_dependent
    np.testing.assert_allclose(cs.beta(x), x - x**3, atol=1e-14)
    np.testing.assert_allclose(cs.gamma(x), 1 - 3 * x**2, atol=1e-9)
    np.testing.assert_array_equal(cs._kappa_nodes, 0.5)


def test_coefficients_variable_D():
    # D(x) = d0 + d1 x²: a = A − 2D' = A − 4 d1 x, q = A' − D'' = A' − 2 d1
    g = fpkit.Grid.uniform(-2.0, 2.0, 40)
    fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=lambda x, t: 0.3 + 0.1 * x**2)
    x = g.x
    form = log_density_form(fp)
    np.testing.assert_allclose(form.nu, 0.3 + 0.1 * x**2, atol=1e-15)
    np.testing.assert_allclose(form.advection(), -x - 0.4 * x, atol=1e-9)
    np.testing.assert_allclose(form.source(), -1.0 - 0.2, atol=1e-7)
    cs = callan_symanzik_form(fp)
    np.testing.assert_allclose(cs.beta(x), -1.4 * x, atol=1e-9)
    np.testing.assert_allclose(cs._kappa_nodes, 0.3 + 0.1 * x**2, atol=1e-15)


# --- exact solutions ------------------------------------------------------------------------------------------------
TH, D, C, W = 1.0, 0.3, 0.8, 2.0
M0, V0 = 0.5, 0.2


def moving_ou_mean(t):
    forced = quad(lambda s: np.exp(-TH * (t - s)) * C * np.sin(W * s), 0, t, epsabs=1e-13, epsrel=1e-12)[0]
    return M0 * np.exp(-TH * t) + TH * forced


def moving_ou(x, t):
    v = V0 * np.exp(-2 * TH * t) + D / TH * (1 - np.exp(-2 * TH * t))
    return np.exp(-((x - moving_ou_mean(t)) ** 2) / (2 * v)) / np.sqrt(2 * np.pi * v)


@pytest.mark.parametrize("form", ["log", "cs-semi-lagrangian", "cs-upwind"])
def test_forms_of_ou_with_moving_centre_converge_to_exact_density(form):
    # A = −θ(x − c sin ωt) is time dependent: the CS form is scale dependent, the log form has a moving source
    ns = (100, 200, 400)
    errs = []
    for n in ns:
        g = fpkit.Grid.uniform(-4.0, 4.0, n)
        fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -TH * (x - C * np.sin(W * t)), diffusion=D)
        p0 = lambda x: moving_ou(x, 0.0)
        if form == "log":
            p = log_density_form(fp).solve(p0, [0.5, 1.0]).p[-1]
        else:
            cs = callan_symanzik_form(fp)
            assert cs.scale_dependent
            p = cs.solve(p0, [0.5, 1.0], method=form[3:], inflow=0.0).G[-1]
        errs.append(np.mean(np.abs(p - moving_ou(g.x, 1.0))))
    assert 1.85 < order(errs, ns) < 2.3, errs
    assert errs[-1] < 3e-5


def test_log_form_stationary_gibbs_state_is_steady_to_second_order():
    # for A = −U', constant D, h = −U/D is stationary; the discrete rhs vanishes up to O(dx²)
    res = []
    for n in (50, 100, 200):
        fp = double_well(n)
        form = log_density_form(fp)
        x = fp.grid.x
        h = -(x**4 / 4 - x**2 / 2) / 0.5
        res.append(np.max(np.abs(form.rhs(h))))
    assert 1.85 < order(res, (50, 100, 200)) < 2.1, res


# --- the double well: three forms agree, the difference shrinks at second order ---------------------------------
@pytest.fixture(scope="module")
def double_well_comparisons():
    return {n: compare_forms(double_well(n), p0_dw, [0.25, 0.5, 1.0]) for n in (100, 200, 400)}


def test_double_well_three_forms_agree(double_well_comparisons):
    ns = (100, 200, 400)
    comps = [double_well_comparisons[n] for n in ns]
    assert all(isinstance(c, FormComparison) for c in comps)
    for pair in [("fp", "log"), ("fp", "cs"), ("log", "cs")]:
        errs = [np.max(c.l1[pair]) for c in comps]
        assert 1.85 < order(errs, ns) < 2.3, (pair, errs)
    finest = comps[-1]
    assert finest.max_difference("l1") < 5e-4
    assert finest.max_difference("max") < 5e-4
    # the FP solver conserves mass to round-off; the derived forms to their discretisation error
    assert np.max(np.abs(finest.mass["fp"] - 1)) < 1e-12
    assert np.max(np.abs(finest.mass["log"] - 1)) < 5e-4
    assert np.max(np.abs(finest.mass["cs"] - 1)) < 5e-4
    s = finest.summary()
    assert set(s["l1"]) == {"fp-log", "fp-cs", "log-cs"} and s["n"] == 400


def test_double_well_upwind_cs_form_agrees():
    ns = (100, 200)
    errs = [
        np.max(compare_forms(double_well(n), p0_dw, [0.5], cs_method="upwind").l1[("fp", "cs")]) for n in ns
    ]
    assert errs[-1] < 1e-3 and errs[0] / errs[1] > 3.5, errs


def test_variable_diffusion_forms_agree():
    ns = (100, 200)
    comps = []
    for n in ns:
        g = fpkit.Grid.uniform(-3.0, 3.0, n)
        fp = fpkit.FokkerPlanck(
            g, drift=lambda x, t: x - x**3, diffusion=lambda x, t: 0.4 + 0.15 * np.tanh(x)
        )
        comps.append(compare_forms(fp, p0_dw, [1.0]))
    for pair in [("fp", "log"), ("fp", "cs")]:
        e = [np.max(c.l1[pair]) for c in comps]
        assert 3.5 < e[0] / e[1] < 4.6, (pair, e)  # second order: ratio 4


# --- properties --------------------------------------------------------------------------------------------------
@settings(max_examples=15, deadline=None)
@given(shift=st.floats(-50, 50), seed=st.integers(0, 2**31))
def test_log_form_ignores_the_normalisation(shift, seed):
    # ∂t ln p does not depend on the normalisation of p: rhs(h + c) = rhs(h)
    fp = double_well(40)
    form = log_density_form(fp)
    h = -(fp.grid.x**2) + 0.1 * np.random.default_rng(seed).standard_normal(40)
    np.testing.assert_allclose(form.rhs(h + shift, 0.2), form.rhs(h, 0.2), rtol=1e-9, atol=1e-9)


def test_log_solution_save_load(tmp_path):
    fp = double_well(40)
    sol = log_density_form(fp).solve(p0_dw, [0.1, 0.2])
    assert isinstance(sol, LogDensitySolution)
    np.testing.assert_allclose(sol.p, np.exp(sol.h))
    back = LogDensitySolution.load(sol.save(tmp_path / "log.h5"))
    np.testing.assert_array_equal(back.h, sol.h)
    np.testing.assert_array_equal(back.p, sol.p)


def test_periodic_log_form_conserves_a_uniform_state():
    # with periodic walls and A = const, a uniform density stays uniform: h constant, rhs = −∂A = 0
    g = fpkit.Grid.uniform(0.0, 1.0, 32)
    fp = fpkit.FokkerPlanck(g, drift=0.7, diffusion=0.2, bc="periodic")
    sol = log_density_form(fp).solve(np.ones(32), [0.5])
    np.testing.assert_allclose(sol.p[-1], 1.0, atol=1e-12)


# --- bad input -------------------------------------------------------------------------------------------------------
def test_non_positive_density_rejected_by_log_form():
    fp = double_well(40)
    form = log_density_form(fp)
    p = p0_dw(fp.grid.x)
    p[3] = 0.0
    with pytest.raises(ConfigError, match="p0.*> 0"):
        form.solve(p, [0.1])
    p[3] = -1e-3
    with pytest.raises(ConfigError, match="p0"):
        compare_forms(fp, p, [0.1])
    with pytest.raises(ConfigError, match="p0"):
        form.solve(lambda x: np.exp(-(x**2) / 1e-4), [0.1])  # underflows to 0 at the walls
    with pytest.raises(ConfigError, match="h0"):
        form.solve(p0_dw, [0.1], h0=np.zeros(40))


@pytest.mark.parametrize(
    "make, func, match",
    [
        (
            lambda: fpkit.FokkerPlanck(
                fpkit.Grid.uniform(-1, 1, 20), drift=0.0, diffusion=1.0, bc="absorbing"
            ),
            log_density_form,
            "absorbing",
        ),
        (
            lambda: fpkit.FokkerPlanck(
                fpkit.Grid.uniform(-1, 1, 20), drift=0.0, diffusion=1.0, bc="periodic"
            ),
            callan_symanzik_form,
            "periodic",
        ),
        (
            lambda: fpkit.FokkerPlanck(fpkit.Grid.uniform((-1, -1), (1, 1), 8), drift=0.0, diffusion=1.0),
            log_density_form,
            "1-D",
        ),
        (
            lambda: fpkit.FokkerPlanck(
                fpkit.Grid.uniform(-1, 1, 20), drift=0.0, diffusion=lambda x, t: 1 + t
            ),
            callan_symanzik_form,
            "time-dependent diffusion",
        ),
        (lambda: "not a problem", log_density_form, "fp"),
    ],
)
def test_bad_problems(make, func, match):
    with pytest.raises(ConfigError, match=match):
        func(make())


def test_bad_comparison_arguments():
    fp = double_well(30)
    with pytest.raises(ConfigError, match="t_eval"):
        compare_forms(fp, p0_dw, [0.0, 0.1])
    with pytest.raises(ConfigError, match="cs_method"):
        compare_forms(fp, p0_dw, [0.1], cs_method="characteristics")
    with pytest.raises(ConfigError, match="method"):
        log_density_form(fp).solve(p0_dw, [0.1], method="RK45")
