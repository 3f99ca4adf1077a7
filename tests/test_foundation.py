"""Grids, coefficients, random streams: checked against exact values."""

import numpy as np
import pytest
from scipy import stats

import fpkit
from fpkit.coefficients import Coefficient, diffusion_field, drift_field
from fpkit.errors import ConfigError
from fpkit.solvers.random import fill_normals, seed_streams


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
    [((0.0, 1.0, 2), "n"), ((1.0, 1.0, 10), "lo"), ((np.nan, 1.0, 10), "finite"), ((0.0, np.inf, 10), "finite")],
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
