"""Distances between densities on a grid and empirical samples, and their sampling noise floors.

Conventions
-----------
A *density* is an array of cell averages on a uniform ``fpkit.Grid`` with ``sum(p) * dx == 1``; its CDF is
piecewise linear (exact at the cell faces). *Samples* are a 1-D array of points; their empirical CDF
``F_N(x) = #{x_i <= x} / N`` is a right-continuous step function. All three distances are computed exactly
for these representations (no extra discretisation):

* ``W1 = ∫ |F − G| dx`` (Wasserstein-1, units of x),
* ``KS = sup |F − G|`` (Kolmogorov-Smirnov, dimensionless),
* ``JS = sqrt(JS divergence)`` with base-2 logarithms, so ``0 <= JS <= 1``; between a density and samples
  the samples are binned on the density's grid, with one overflow bin on each side for samples outside it.

Noise floors
------------
The *noise floor* of a distance is its expected value between the true law and the empirical measure of the
``N`` judged samples: a perfect prediction scores ``distance / floor ≈ 1`` on average. For W1 it follows
from linearity, ``E W1 = ∫ E|F_N(x) − F(x)| dx``, and ``N F_N(x) ~ Binomial(N, F(x))``; the normal
approximation of the binomial mean absolute deviation gives

    floor_W1 ≈ sqrt(2/π) ∫ sqrt(F (1 − F) / N) dx,

(``w1_floor``; ``exact=True`` uses de Moivre's exact binomial mean absolute deviation instead). Two
independent empirical measures of sizes ``n1``, ``n2`` sit ``sqrt(2/π) ∫ sqrt(F(1−F)(1/n1 + 1/n2)) dx`` apart
(``w1_floor_pair``; ``√2`` floors when ``n1 = n2 = N``). For KS the floor does not depend on a continuous
``F``: ``E KS ≈ sqrt(π/2) ln 2 / sqrt(N)`` (the mean of Kolmogorov's distribution, with Stephens' finite-N
factor). For JS no closed form is
used: ``bootstrap_floor`` and ``halves_floor`` estimate any floor from the judged samples themselves. All
three distances scale as ``1/sqrt(n_eff)`` with ``1/n_eff = 1/n1 + 1/n2``, which converts a distance between
two halves into the floor of ``N`` samples.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fpkit.errors import ConfigError, check_positive
from fpkit.grid import Grid

NEG_TOL = 1e-3
"""Negative density values down to ``−NEG_TOL × max`` (a solver's undershoot, e.g. Crank-Nicolson or
cross-diffusion terms) are clipped to zero before comparing; larger ones are refused."""

KS_MEAN = float(np.sqrt(np.pi / 2.0) * np.log(2.0))
"""Mean of the Kolmogorov distribution, ``lim sqrt(N) E sup|F_N − F|`` (= 0.868731...)."""


# --------------------------------------------------------------------------------------------- inputs
def _grid_1d(grid) -> Grid:
    if not isinstance(grid, Grid):
        raise ConfigError(f"`grid` must be an fpkit Grid, got {type(grid).__name__}")
    if grid.ndim != 1:
        raise ConfigError(f"`grid` must be 1-D for this distance, got a {grid.ndim}-D grid")
    return grid


def _nonnegative(p, grid: Grid, name: str) -> np.ndarray:
    """Check a grid density; clip a solver's small undershoots (down to NEG_TOL × max) to zero."""
    p = np.asarray(p, dtype=float)
    if p.shape != grid.shape:
        raise ConfigError(f"`{name}` has shape {p.shape}, expected the grid's shape {grid.shape}")
    if not np.all(np.isfinite(p)):
        raise ConfigError(f"`{name}` contains non-finite values")
    top = float(np.max(p)) if p.size else 0.0
    if not top > 0:
        raise ConfigError(f"`{name}` has no positive values: not a density")
    if p.min() < -NEG_TOL * top:
        raise ConfigError(
            f"`{name}` has negative values down to {p.min() / top:.3g} × its maximum; a solver undershoot that "
            "large cannot be compared as a density (refine the time step or the grid)"
        )
    return np.clip(p, 0.0, None)


def _density(p, grid: Grid, name: str) -> np.ndarray:
    p = _nonnegative(p, grid, name)
    mass = float(np.sum(p) * grid.dx[0])
    # renormalise: a density that lost mass through an absorbing wall is compared as a conditional law
    return p / mass


def _samples(x, name: str, min_size: int = 1) -> np.ndarray:
    x = np.asarray(x, dtype=float)
    if x.ndim != 1:
        raise ConfigError(f"`{name}` must be a 1-D array of sample values, got shape {x.shape}")
    if x.size < min_size:
        raise ConfigError(f"`{name}` needs at least {min_size} samples, got {x.size}")
    if not np.all(np.isfinite(x)):
        raise ConfigError(f"`{name}` contains non-finite values")
    return np.sort(x)


def grid_cdf(p, grid: Grid) -> np.ndarray:
    """CDF of a 1-D grid density at the ``n + 1`` cell faces (0 at ``lo``, 1 at ``hi``).

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).

    Returns
    -------
    array (n + 1,)
        F at the cell faces.
    """
    grid = _grid_1d(grid)
    p = _density(p, grid, "p")
    c = np.concatenate([[0.0], np.cumsum(p) * grid.dx[0]])
    return c / c[-1]


def _abs_linear_integral(d0: np.ndarray, d1: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Exact ``∫ |d(x)| dx`` over intervals on which ``d`` is linear from ``d0`` to ``d1``."""
    a0, a1 = np.abs(d0), np.abs(d1)
    same = d0 * d1 >= 0
    out = np.empty_like(a0)
    out[same] = 0.5 * (a0[same] + a1[same]) * width[same]
    s = ~same  # a sign change inside: two triangles
    out[s] = 0.5 * (a0[s] ** 2 + a1[s] ** 2) / (a0[s] + a1[s]) * width[s]
    return out


def _density_vs_steps(p, grid: Grid, x_sorted: np.ndarray):
    """Breakpoints z, the grid CDF at them and the empirical CDF on [z_k, z_{k+1})."""
    cdf = grid_cdf(p, grid)
    edges = grid.edges[0]
    z = np.union1d(edges, x_sorted)
    Fp = np.interp(z, edges, cdf, left=0.0, right=1.0)
    FN = np.searchsorted(x_sorted, z, side="right") / x_sorted.size
    return z, Fp, FN


def marginal(p, grid: Grid, axis: int) -> tuple[Grid, np.ndarray]:
    """The 1-D marginal of a 2-D/3-D grid density along ``axis``: ``(grid_1d, density_1d)``, so the 1-D
    distances and floors apply to each coordinate of a joint density (e.g. a pair of weights).

    Parameters
    ----------
    p : array
        A 2-D or 3-D density on ``grid``.
    grid : fpkit.Grid
        Its grid.
    axis : int
        The coordinate to keep.

    Returns
    -------
    (fpkit.Grid, array)
        The 1-D grid of that axis and the marginal density on it (Σ p·dx = 1).
    """
    if not isinstance(grid, Grid) or grid.ndim < 2:
        raise ConfigError("`grid` must be an fpkit Grid with 2 or 3 axes")
    if not 0 <= axis < grid.ndim:
        raise ConfigError(f"`axis` must be in [0, {grid.ndim - 1}], got {axis}")
    p = np.asarray(p, dtype=float)
    if p.shape != grid.shape:
        raise ConfigError(f"`p` has shape {p.shape}, expected the grid's shape {grid.shape}")
    others = tuple(a for a in range(grid.ndim) if a != axis)
    g1 = Grid.uniform(grid.lo[axis], grid.hi[axis], grid.n[axis])
    return g1, grid.integrate(p, axis=others)


# --------------------------------------------------------------------------------------------- W1
def w1_grid(p, q, grid: Grid) -> float:
    """Wasserstein-1 distance between two 1-D densities on the same grid (units of x).

    Exact for cell-average densities: ``F_p − F_q`` is linear inside each cell.

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    q : array (n,)
        A second density on the same grid.
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).

    Returns
    -------
    float
        W1 in units of x.
    """
    grid = _grid_1d(grid)
    d = grid_cdf(p, grid) - grid_cdf(q, grid)
    return float(np.sum(_abs_linear_integral(d[:-1], d[1:], np.full(grid.n[0], grid.dx[0]))))


def w1_samples(p, grid: Grid, samples) -> float:
    """Wasserstein-1 distance between a 1-D grid density and the empirical measure of ``samples``.

    Exact: on each interval between consecutive cell faces and sample points the empirical CDF is constant
    and the density's CDF linear. Samples outside the grid are included (the density's CDF is 0 below the
    grid and 1 above it).

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).
    samples : array (N,)
        The judged samples (units of x).

    Returns
    -------
    float
        W1 in units of x.
    """
    grid = _grid_1d(grid)
    x = _samples(samples, "samples")
    z, Fp, FN = _density_vs_steps(p, grid, x)
    d0 = Fp[:-1] - FN[:-1]
    d1 = Fp[1:] - FN[:-1]
    return float(np.sum(_abs_linear_integral(d0, d1, np.diff(z))))


def w1_two_samples(a, b) -> float:
    """Exact Wasserstein-1 distance between the empirical measures of two 1-D samples.

    Parameters
    ----------
    a, b : array
        The two samples (1-D, units of x).

    Returns
    -------
    float
        W1 in units of x.
    """
    a = _samples(a, "a")
    b = _samples(b, "b")
    z = np.union1d(a, b)
    Fa = np.searchsorted(a, z[:-1], side="right") / a.size
    Fb = np.searchsorted(b, z[:-1], side="right") / b.size
    return float(np.sum(np.abs(Fa - Fb) * np.diff(z)))


# --------------------------------------------------------------------------------------------- KS
def ks_grid(p, q, grid: Grid) -> float:
    """Kolmogorov-Smirnov distance ``sup|F_p − F_q|`` between two grid densities (extremes at cell faces).

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    q : array (n,)
        A second density on the same grid.
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).

    Returns
    -------
    float
        The KS distance, in [0, 1].
    """
    grid = _grid_1d(grid)
    return float(np.max(np.abs(grid_cdf(p, grid) - grid_cdf(q, grid))))


def ks_samples(p, grid: Grid, samples) -> float:
    """Kolmogorov-Smirnov distance between a grid density and the empirical CDF of ``samples``.

    The supremum is attained at a sample point, from the left or the right (the one-sample KS statistic).

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).
    samples : array (N,)
        The judged samples (units of x).

    Returns
    -------
    float
        The KS distance, in [0, 1].
    """
    grid = _grid_1d(grid)
    x = _samples(samples, "samples")
    n = x.size
    Fx = np.interp(x, grid.edges[0], grid_cdf(p, grid), left=0.0, right=1.0)
    # with ties, F_N just right of x_i is (#x <= x_i)/N and just left is (#x < x_i)/N
    right = np.searchsorted(x, x, side="right") / n
    left = np.searchsorted(x, x, side="left") / n
    return float(max(np.max(right - Fx), np.max(Fx - left), 0.0))


def ks_two_samples(a, b) -> float:
    """Two-sample Kolmogorov-Smirnov distance between empirical CDFs.

    Parameters
    ----------
    a, b : array
        The two samples (1-D, units of x).

    Returns
    -------
    float
        The KS distance, in [0, 1].
    """
    a = _samples(a, "a")
    b = _samples(b, "b")
    z = np.union1d(a, b)
    return float(
        np.max(
            np.abs(
                np.searchsorted(a, z, side="right") / a.size - np.searchsorted(b, z, side="right") / b.size
            )
        )
    )


# --------------------------------------------------------------------------------------------- JS
def _js_from_masses(P: np.ndarray, Q: np.ndarray) -> float:
    P = P / P.sum()
    Q = Q / Q.sum()
    S = P + Q  # 2 M; dividing by S instead of M = S/2 avoids underflow to 0 for subnormal masses

    def kl(a):
        m = a > 0
        return float(np.sum(a[m] * np.log2(2.0 * a[m] / S[m])))

    div = 0.5 * kl(P) + 0.5 * kl(Q)
    return float(np.sqrt(max(div, 0.0)))


def js_grid(p, q, grid: Grid) -> float:
    """Jensen-Shannon distance (square root of the base-2 JS divergence, in [0, 1]) between grid densities.

    Works on grids of any dimension: cell masses ``p * cell_volume`` are compared.

    Parameters
    ----------
    p, q : array
        Densities on ``grid`` (any dimension; Σ p·cell_volume = 1).
    grid : fpkit.Grid
        Their grid.

    Returns
    -------
    float
        The JS distance, in [0, 1].
    """
    if not isinstance(grid, Grid):
        raise ConfigError(f"`grid` must be an fpkit Grid, got {type(grid).__name__}")
    P = _nonnegative(p, grid, "p")
    Q = _nonnegative(q, grid, "q")
    return _js_from_masses(P.ravel(), Q.ravel())


def binned_masses(samples, grid: Grid) -> np.ndarray:
    """Sample counts per cell of a grid, with one overflow bin below and one above (1-D: ``n + 2`` values);
    on 2-D/3-D grids samples have shape ``(N, ndim)`` and points outside the grid go to one overflow bin
    appended at the end.

    Parameters
    ----------
    samples : array (N,) or (N, ndim)
        The samples.
    grid : fpkit.Grid
        The grid whose cells bin them.

    Returns
    -------
    array
        Counts per cell, then the overflow bin(s) (1-D: below first, above last).
    """
    if not isinstance(grid, Grid):
        raise ConfigError(f"`grid` must be an fpkit Grid, got {type(grid).__name__}")
    x = np.asarray(samples, dtype=float)
    if grid.ndim == 1:
        x = _samples(x, "samples")
        edges = grid.edges[0]
        idx = np.searchsorted(edges, x, side="right")  # 0: below, n+1: above (x == hi counts inside)
        idx[x == edges[-1]] = grid.n[0]
        return np.bincount(idx, minlength=grid.n[0] + 2).astype(float)
    if x.ndim != 2 or x.shape[1] != grid.ndim:
        raise ConfigError(
            f"`samples` must have shape (N, {grid.ndim}) on a {grid.ndim}-D grid, got {x.shape}"
        )
    counts, _ = np.histogramdd(x, bins=grid.edges)
    outside = x.shape[0] - counts.sum()
    return np.concatenate([counts.ravel(), [outside]])


def js_samples(p, grid: Grid, samples) -> float:
    """Jensen-Shannon distance between a grid density and samples binned on the same grid.

    Samples outside the grid fall in overflow bins (where the density has no mass), so they count fully.
    The value depends on the binning and is biased upwards by sampling noise (≈ sqrt(cells / N) for
    broad densities): compare it with its noise floor (``bootstrap_floor`` / ``halves_floor``).

    Parameters
    ----------
    p : array
        A density on ``grid`` (any dimension).
    grid : fpkit.Grid
        Its grid, which also bins the samples.
    samples : array (N,) or (N, ndim)
        The judged samples.

    Returns
    -------
    float
        The JS distance, in [0, 1].
    """
    if not isinstance(grid, Grid):
        raise ConfigError(f"`grid` must be an fpkit Grid, got {type(grid).__name__}")
    P = _nonnegative(p, grid, "p")
    counts = binned_masses(samples, grid)
    if grid.ndim == 1:
        Pm = np.concatenate([[0.0], P, [0.0]])
    else:
        Pm = np.concatenate([P.ravel(), [0.0]])
    return _js_from_masses(Pm, counts)


def js_two_samples(a, b, grid: Grid) -> float:
    """Jensen-Shannon distance between two samples binned on the same grid (with overflow bins).

    Parameters
    ----------
    a, b : array (N,) or (N, ndim)
        The two samples.
    grid : fpkit.Grid
        The grid that bins both.

    Returns
    -------
    float
        The JS distance, in [0, 1].
    """
    return _js_from_masses(binned_masses(a, grid), binned_masses(b, grid))


# --------------------------------------------------------------------------------------------- floors
def _sqrt_f1mf_integral(Fa: np.ndarray, Fb: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Exact ``∫ sqrt(F(1 − F)) dx`` over intervals on which F is linear from Fa to Fb."""

    def G(u):  # antiderivative of sqrt(u(1-u)) in u
        u = np.clip(u, 0.0, 1.0)
        return 0.25 * (2 * u - 1) * np.sqrt(u * (1 - u)) + 0.125 * np.arcsin(2 * u - 1)

    dF = Fb - Fa
    out = np.sqrt(np.clip(Fa * (1 - Fa), 0, None)) * width
    steep = np.abs(dF) > 1e-9
    out[steep] = (G(Fb[steep]) - G(Fa[steep])) / dF[steep] * width[steep]
    return out


def _binomial_mad(F: np.ndarray, n: int) -> np.ndarray:
    """Exact ``E|B/n − F|`` for ``B ~ Binomial(n, F)`` (de Moivre): ``2 ν (1−F) pmf(ν) / n``, ν = ⌊nF⌋ + 1."""
    from scipy.stats import binom

    F = np.clip(F, 0.0, 1.0)
    nu = np.floor(n * F) + 1
    out = 2.0 * nu * (1 - F) * binom.pmf(nu, n, F) / n
    return np.where((F <= 0) | (F >= 1), 0.0, out)


def w1_floor(n: int, *, samples=None, p=None, grid: Grid | None = None, exact: bool = False) -> float:
    """Expected W1 distance between a law and the empirical measure of ``n`` samples from it (units of x).

    ``sqrt(2/π) ∫ sqrt(F (1 − F) / n) dx`` with ``F`` either the empirical CDF of ``samples`` (the judged
    members, as the experiment uses it) or the CDF of a grid density ``p``. ``exact=True`` replaces the
    normal approximation by the exact binomial mean absolute deviation (quadrature with 8 points per
    interval; the approximation is good to a few per cent for ``n >= 100``). With ``F`` the empirical CDF of
    ``n`` samples the floor is biased low by a few per cent (≈ 3 % for a Gaussian at n = 400), because the
    tails beyond the sample extremes contribute nothing.

    Parameters
    ----------
    n : int
        Number of samples of the empirical measure being judged.
    samples : array (N,), optional
        Samples whose empirical CDF stands for ``F``.
    p, grid : optional
        A 1-D grid density standing for ``F`` (give both, not ``samples``).

    exact : bool
        Use the exact binomial mean absolute deviation instead of the normal approximation.

    Returns
    -------
    float
        The expected W1 distance (units of x).
    """
    n = int(check_positive("n", n))
    if (samples is None) == (p is None):
        raise ConfigError("give exactly one of `samples` or `p` (with `grid`) to define F")
    if samples is not None:
        x = _samples(samples, "samples", 2)
        F = np.arange(1, x.size) / x.size  # value on [x_i, x_{i+1})
        width = np.diff(x)
        if exact:
            return float(np.sum(_binomial_mad(F, n) * width))
        return float(np.sqrt(2 / np.pi / n) * np.sum(np.sqrt(F * (1 - F)) * width))
    if grid is None:
        raise ConfigError("`grid` is required with `p`")
    cdf = grid_cdf(p, grid)
    h = grid.dx[0]
    if exact:
        # Gauss-Legendre in each cell on the linear CDF
        nodes, weights = np.polynomial.legendre.leggauss(8)
        s = 0.5 * (nodes + 1)
        F = cdf[:-1, None] + (cdf[1:] - cdf[:-1])[:, None] * s[None, :]
        return float(np.sum(_binomial_mad(F, n) * (0.5 * weights)[None, :]) * h)
    integ = _sqrt_f1mf_integral(cdf[:-1], cdf[1:], np.full(grid.n[0], h))
    return float(np.sqrt(2 / np.pi / n) * np.sum(integ))


def w1_floor_pair(n1: int, n2: int, *, samples=None, p=None, grid: Grid | None = None) -> float:
    """Expected W1 between two independent empirical measures of sizes ``n1``, ``n2`` from the same law:
    ``sqrt(2/π) ∫ sqrt(F(1−F)(1/n1 + 1/n2)) dx`` (= √2 floors for n1 = n2).

    Parameters
    ----------
    n1, n2 : int
        Sizes of the two samples.
    samples : array (N,), optional
        Samples whose empirical CDF stands for F.
    p, grid : optional
        A 1-D grid density standing for F (give both, not ``samples``).

    Returns
    -------
    float
        The expected W1 distance (units of x).
    """
    n1 = int(check_positive("n1", n1))
    n2 = int(check_positive("n2", n2))
    one = w1_floor(1, samples=samples, p=p, grid=grid)
    return float(one * np.sqrt(1.0 / n1 + 1.0 / n2))


def ks_floor(n: int) -> float:
    """Expected KS distance between a continuous law and ``n`` of its samples (any continuous F):
    Kolmogorov's mean ``sqrt(π/2) ln 2`` divided by Stephens' effective ``sqrt(n) + 0.12 + 0.11/sqrt(n)``
    (the finite-n correction is 1.3 % at n = 100).

    Parameters
    ----------
    n : int
        Number of samples.

    Returns
    -------
    float
        The expected KS distance.
    """
    n = int(check_positive("n", n))
    rn = np.sqrt(n)
    return KS_MEAN / (rn + 0.12 + 0.11 / rn)


def _rng(seed):
    return np.random.default_rng(seed)


def bootstrap_floor(
    samples, distance: Callable[[np.ndarray, np.ndarray], float], *, n_boot: int = 50, seed: int = 0
) -> float:
    """Bootstrap estimate of a distance's noise floor from ``N`` samples: the mean of
    ``distance(resample, samples)`` over ``n_boot`` resamples of size ``N`` drawn with replacement.

    ``distance(a, b)`` compares two samples (e.g. ``w1_two_samples`` or
    ``lambda a, b: js_two_samples(a, b, grid)``). The bootstrap world's "true law" is the empirical measure
    of ``samples``, so this estimates ``E distance(F_N, F)`` for the ``N`` judged samples.

    Parameters
    ----------
    samples : array (N,) or (N, ndim)
        The judged samples.
    distance : callable
        ``distance(a, b) -> float`` between two samples.
    n_boot : int
        Number of resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    float
        The floor, in the distance's units.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim not in (1, 2) or x.shape[0] < 2:
        raise ConfigError(f"`samples` must hold at least 2 samples along axis 0, got shape {x.shape}")
    n_boot = int(check_positive("n_boot", n_boot))
    rng = _rng(seed)
    vals = [distance(x[rng.integers(0, x.shape[0], x.shape[0])], x) for _ in range(n_boot)]
    return float(np.mean(vals))


def halves_floor(
    samples, distance: Callable[[np.ndarray, np.ndarray], float], *, n_splits: int = 20, seed: int = 0
) -> float:
    """Noise floor of ``N`` samples from the distance between random halves of them.

    Two halves of sizes ``n1 = N // 2``, ``n2 = N − n1`` sit ``sqrt(N (1/n1 + 1/n2)) ≈ 2`` floors apart for
    W1, KS and JS alike (all scale as ``1/sqrt(n_eff)``), so the mean split distance is divided by that.

    Parameters
    ----------
    samples : array (N,) or (N, ndim)
        The judged samples (N ≥ 4).
    distance : callable
        ``distance(a, b) -> float`` between two samples.
    n_splits : int
        Number of random splits averaged.
    seed : int
        Seed of the splits.

    Returns
    -------
    float
        The floor, in the distance's units.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim not in (1, 2) or x.shape[0] < 4:
        raise ConfigError(f"`samples` must hold at least 4 samples along axis 0, got shape {x.shape}")
    n_splits = int(check_positive("n_splits", n_splits))
    N = x.shape[0]
    n1 = N // 2
    rng = _rng(seed)
    vals = []
    for _ in range(n_splits):
        perm = rng.permutation(N)
        vals.append(distance(x[perm[:n1]], x[perm[n1:]]))
    return float(np.mean(vals) / np.sqrt(N * (1.0 / n1 + 1.0 / (N - n1))))


def floor_ratio(distance, floor):
    """``distance / floor`` (arrays broadcast); a perfect prediction scores ≈ 1 on average.

    Parameters
    ----------
    distance : float or array
        Measured distances.
    floor : float or array
        Their noise floors (positive), in the same units.

    Returns
    -------
    array
        distance / floor (dimensionless).
    """
    floor = np.asarray(floor, dtype=float)
    if np.any(~(floor > 0)):
        raise ConfigError("`floor` must be positive")
    return np.asarray(distance, dtype=float) / floor


def compare(p, grid: Grid, samples, *, js_floor_boot: int = 30, seed: int = 0) -> dict:
    """All three distances between a 1-D grid density and judged samples, with floors and ratios.

    Floors: W1 from the judged samples' empirical CDF (``w1_floor``), KS asymptotic (``ks_floor``), JS by
    bootstrap (``js_floor_boot`` resamples). Returns a dict with keys ``w1, ks, js, w1_floor, ks_floor,
    js_floor, w1_ratio, ks_ratio, js_ratio, n``.

    Parameters
    ----------
    p : array (n,)
        A density on ``grid`` (Σ p·dx = 1; undershoots down to ``NEG_TOL``·max are clipped).
    grid : fpkit.Grid
        The 1-D grid of the densities (units of x).
    samples : array (N,)
        The judged samples (N ≥ 2, units of x).
    js_floor_boot : int
        Bootstrap resamples of the JS floor.
    seed : int
        Seed of the bootstrap.

    Returns
    -------
    dict
        The keys listed above (W1 and its floor in units of x; KS, JS and the ratios dimensionless).
    """
    x = _samples(samples, "samples", 2)
    n = x.size
    out = {
        "n": n,
        "w1": w1_samples(p, grid, x),
        "ks": ks_samples(p, grid, x),
        "js": js_samples(p, grid, x),
        "w1_floor": w1_floor(n, samples=x),
        "ks_floor": ks_floor(n),
        "js_floor": bootstrap_floor(
            x, lambda a, b: js_two_samples(a, b, grid), n_boot=js_floor_boot, seed=seed
        ),
    }
    for k in ("w1", "ks", "js"):
        out[f"{k}_ratio"] = out[k] / out[f"{k}_floor"] if out[f"{k}_floor"] > 0 else np.inf
    return out
