"""Grids, coefficients, random streams: checked against exact values."""

import math

import numpy as np
import pytest
from scipy import stats

import fpkit
from fpkit.coefficients import Coefficient, diffusion_field, drift_field
from fpkit.errors import ConfigError, check_times
from fpkit.solvers import random as rnd
from fpkit.solvers.random import draw_normals, fill_normals, next_normal, seed_streams


def test_uniform_grid_geometry():
    g = fpkit.Grid.uniform(-1.0, 3.0, 8)
    assert g.dx == (0.5,)
    np.testing.assert_allclose(g.x, -0.75 + 0.5 * np.arange(8))
    assert g.integrate(np.ones(8)) == pytest.approx(4.0, rel=1e-15)
    g2 = fpkit.Grid.uniform((0, 0), (1, 2), (4, 5))
    assert g2.cell_volume == pytest.approx(0.25 * 0.4)
    assert g2.integrate(np.ones(g2.shape)) == pytest.approx(2.0, rel=1e-14)


def test_gaussian_cell_averages_have_exact_moments():
    g = fpkit.Grid.uniform(-10, 10, 2000)
    p = fpkit.gaussian(g, mean=0.5, std=1.3)
    assert g.integrate(p) == pytest.approx(1.0, abs=1e-14)
    mean = g.integrate(p * g.x)
    # cell averages add h^2/12 to the variance of point samples at cell centres (Sheppard)
    var = g.integrate(p * (g.x - mean) ** 2) - g.dx[0] ** 2 / 12
    assert mean == pytest.approx(0.5, abs=1e-7)  # centre-vs-average offset, O(h^4)
    assert var == pytest.approx(1.3**2, rel=1e-5)


@pytest.mark.parametrize(
    "args, match",
    [
        ((0.0, 1.0, 2), r"`n` must be an integer >= 3 on every axis, got n=\(2,\)"),
        ((1.0, 1.0, 10), "lo"),
        ((np.nan, 1.0, 10), "finite"),
        ((0.0, np.inf, 10), "finite"),
    ],
)
def test_grid_bad_input(args, match):
    with pytest.raises(ConfigError, match=match):
        fpkit.Grid.uniform(*args)


def test_coefficients_kinds_and_time_dependence():
    g = fpkit.Grid.uniform(-1, 1, 5)
    assert not Coefficient(lambda x, t: -x, "drift", g).time_dependent
    c = Coefficient(lambda x, t: -x * (1 + t), "drift", g)
    assert c.time_dependent
    np.testing.assert_allclose(c.on_grid(2.0), -3 * g.x)
    # linear between the centres 0 (value 0) and 0.4 (value 0.16)
    np.testing.assert_allclose(Coefficient(g.x**2, "d", g).at(np.array([0.1])), [0.04], rtol=1e-14)
    with pytest.raises(ConfigError, match="diffusion"):
        Coefficient(-1.0, "diffusion", g, nonnegative=True)
    with pytest.raises(ConfigError, match="shape"):
        Coefficient(np.ones(4), "drift", g)
    with pytest.raises(ConfigError, match="non-finite"):
        Coefficient(lambda x, t: np.log(x), "drift", g)
    g2 = fpkit.Grid.uniform((0, 0), (1, 1), 4)
    assert len(drift_field(lambda x, y, t: (-x, -y), g2)) == 2
    table = diffusion_field([[1.0, 0.2], [0.2, 0.5]], g2)
    assert table[0][1].on_grid()[0, 0] == 0.2
    with pytest.raises(ConfigError, match="semi-definite"):
        diffusion_field([[1.0, 2.0], [2.0, 1.0]], g2)


def test_random_streams_are_standard_normal_and_reproducible():
    state = seed_streams(7, 200)
    out = np.empty((200, 501))
    fill_normals(state, out)
    # 100 200 normals: KS against N(0,1); mean within 4 standard errors
    assert stats.kstest(out.ravel(), "norm").pvalue > 1e-3
    assert abs(out.mean()) < 4 / np.sqrt(out.size)
    again = np.empty((200, 501))
    fill_normals(seed_streams(7, 200), again)
    np.testing.assert_array_equal(out, again)
    # stream k does not depend on how many streams were seeded alongside it
    part = np.empty((10, 501))
    fill_normals(seed_streams(7, 10, first=50), part)
    np.testing.assert_array_equal(part, out[50:60])


# --- the ziggurat (next_normal / draw_normals / draw_normals_row; used by the SDE and KPZ kernels) ----------
def test_ziggurat_layers_have_equal_area_and_close_at_zero():
    r = rnd._ZIG_R
    x = rnd._ZIG_WI * 2.0**52  # layer widths: x[0] the base strip, x[255] = r, x[1] the top layer
    f = rnd._ZIG_FI  # f(x) = exp(-x^2/2) at the layer edges; f[0] = f(0) = 1 closes the top layer
    v = r * math.exp(-0.5 * r * r) + math.sqrt(math.pi / 2) * math.erfc(r / math.sqrt(2))
    np.testing.assert_allclose(f[1:], np.exp(-0.5 * x[1:] ** 2), rtol=1e-14)
    areas = x[1:] * (f[:-1] - f[1:])  # layer i: width x_i, heights f(x_i)..f(x_{i-1}); layer 1 up to f(0)
    np.testing.assert_allclose(areas, v, rtol=1e-9)
    assert x[0] * math.exp(-0.5 * r * r) == pytest.approx(v, rel=1e-12)  # base strip incl. the tail
    assert x[255] == pytest.approx(r, rel=1e-15)
    assert r == pytest.approx(3.6541528853610088, rel=1e-12)  # Marsaglia-Tsang / numpy, 256 layers


def test_ziggurat_normals_are_standard_normal():
    out = np.empty((4, 250_000))
    draw_normals(seed_streams(11, 4), out)
    x = out.ravel()
    n = x.size
    assert abs(x.mean()) < 5 / math.sqrt(n)
    assert abs(x.var() - 1) < 5 * math.sqrt(2 / n)
    assert stats.kstest(x[:200_000], "norm").pvalue > 1e-3
    # the tail branch (|x| > r, ~2.6e-4) and the wedges: compare tail and shoulder probabilities
    for c in (rnd._ZIG_R, 2.0, 0.3):
        p = 2 * stats.norm.sf(c)
        assert abs((np.abs(x) > c).mean() - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_ziggurat_row_fill_is_next_normal_in_order():
    # draw_normals_row keeps the state in registers; it must give next_normal's numbers and end state
    state = seed_streams(5, 3)
    row = np.empty(20_000)  # long enough to take the wedge and tail branches too
    rnd.draw_normals_row(state, 1, row)
    ref_state = seed_streams(5, 3)
    ref = np.array([next_normal(ref_state, 1) for _ in range(row.size)])
    np.testing.assert_array_equal(row, ref)
    np.testing.assert_array_equal(state, ref_state)
    serial = np.empty((3, 700))
    parallel = np.empty((3, 700))
    rnd.draw_normals_serial(seed_streams(5, 3), serial)
    draw_normals(seed_streams(5, 3), parallel)
    np.testing.assert_array_equal(serial, parallel)


def test_check_times_accepts_increasing_times_and_names_t_eval():
    np.testing.assert_array_equal(check_times([0.5, 1.0], t0=0.5), [0.5, 1.0])
    np.testing.assert_array_equal(check_times(2.0), [2.0])
    np.testing.assert_array_equal(check_times([1.0, 1.0, 2.0], strict=False), [1.0, 1.0, 2.0])
    for bad, match in (
        ([], "non-empty"),
        ([[1.0, 2.0]], "1-D"),
        ([0.0, np.nan], "finite"),
        ([1.0, 1.0], "strictly increasing"),
        ([-1.0, 1.0], "before t0"),
    ):
        with pytest.raises(ConfigError, match=f"`t_eval`.*{match}"):
            check_times(bad, t0=0.0)
    with pytest.raises(ConfigError, match="`t_eval` must be non-decreasing"):
        check_times([2.0, 1.0], strict=False)
