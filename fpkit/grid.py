"""Cell-centred grids.

A ``Grid`` is a tensor product of 1-D axes. ``Grid.uniform`` gives the finite-volume grid: ``n`` cells of
width ``dx`` between ``lo`` and ``hi``, values stored at cell centres. Densities on a grid are normalised so
that ``sum(p) * cell_volume == 1``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Sequence

import numpy as np

from .errors import ConfigError


def _as_tuple(name: str, value, ndim: int | None = None) -> tuple:
    vals = tuple(np.atleast_1d(np.asarray(value)).tolist())
    if ndim is not None and len(vals) != ndim:
        raise ConfigError(f"`{name}` has {len(vals)} entries, expected {ndim}")
    return vals


@dataclass(frozen=True)
class Grid:
    """A rectilinear grid of cell centres in 1, 2 or 3 dimensions.

    Attributes
    ----------
    lo, hi : tuple of float
        Domain bounds per axis (the outer cell faces for a uniform grid).
    n : tuple of int
        Number of cells (nodes) per axis.
    kind : str
        ``"uniform"`` for the finite-volume grid; spectral grids use other kinds.
    """

    lo: tuple
    hi: tuple
    n: tuple
    kind: str = "uniform"
    # values above −negative_tolerance·max|p| count as non-negative in `normalise` (not a dataclass field)
    negative_tolerance: ClassVar[float] = 0.0

    # --- construction -------------------------------------------------------------------------------
    @classmethod
    def uniform(cls, lo, hi, n) -> "Grid":
        """Uniform cell-centred grid on [lo, hi] with n cells per axis (numbers for 1-D, sequences for d-D).

        Parameters
        ----------
        lo, hi : float or sequence of float
            The outer cell faces per axis (units of x).
        n : int or sequence of int
            Cells per axis (≥ 3; one number for every axis).

        Returns
        -------
        Grid
            The grid.

        Raises
        ------
        ConfigError
            If the bounds are not finite, ``lo >= hi`` on an axis, ``n < 3`` or more than 3 axes.
        """
        lo_t = _as_tuple("lo", lo)
        ndim = len(lo_t)
        hi_t = _as_tuple("hi", hi, ndim)
        n_t = _as_tuple("n", n)
        if len(n_t) == 1 and ndim > 1:
            n_t = n_t * ndim
        if len(n_t) != ndim:
            raise ConfigError(f"`n` has {len(n_t)} entries, expected {ndim}")
        if ndim > 3:
            raise ConfigError(f"grids have at most 3 axes, got {ndim}")
        for ax in range(ndim):
            a, b = float(lo_t[ax]), float(hi_t[ax])
            if not (np.isfinite(a) and np.isfinite(b)):
                raise ConfigError(f"`lo` and `hi` must be finite, got lo={lo_t}, hi={hi_t}")
            if a >= b:
                raise ConfigError(f"`lo` must be below `hi` on axis {ax}, got lo={a}, hi={b}")
            if int(n_t[ax]) != n_t[ax] or int(n_t[ax]) < 3:
                raise ConfigError(f"`n` must be an integer >= 3 on every axis, got n={n_t}")
        return cls(
            tuple(float(v) for v in lo_t), tuple(float(v) for v in hi_t), tuple(int(v) for v in n_t), "uniform"
        )

    @classmethod
    def chebyshev(cls, lo: float, hi: float, n: int) -> "Grid":
        """Chebyshev Gauss-Lobatto nodes on [lo, hi] (zero-flux walls); FokkerPlanck then solves spectrally.

        Parameters
        ----------
        lo, hi : float
            The walls (units of x).
        n : int
            Number of nodes.

        Returns
        -------
        Grid
            A spectral grid (kind ``chebyshev``).
        """
        from .spectral import chebyshev_grid

        return chebyshev_grid(lo, hi, n)

    @classmethod
    def fourier(cls, lo: float, hi: float, n: int) -> "Grid":
        """Equispaced periodic Fourier nodes on [lo, hi); FokkerPlanck then solves spectrally.

        Parameters
        ----------
        lo, hi : float
            The period [lo, hi) (units of x).
        n : int
            Number of nodes.

        Returns
        -------
        Grid
            A spectral grid (kind ``fourier``).
        """
        from .spectral import fourier_grid

        return fourier_grid(lo, hi, n)

    @classmethod
    def hermite(cls, n: int, scale: float = 1.0, center: float = 0.0) -> "Grid":
        """Hermite-function nodes on the whole line (OU-type problems); FokkerPlanck then solves spectrally.

        Parameters
        ----------
        n : int
            Number of Hermite functions (and nodes).
        scale : float
            Length scale of the basis (units of x).
        center : float
            Its centre (units of x).

        Returns
        -------
        Grid
            A spectral grid (kind ``hermite``).
        """
        from .spectral import hermite_grid

        return hermite_grid(n, scale=scale, center=center)

    # --- geometry -----------------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        """Number of axes (1, 2 or 3)."""
        return len(self.n)

    @property
    def shape(self) -> tuple:
        """Number of cells per axis, as a tuple (the shape of a density on the grid)."""
        return tuple(self.n)

    @property
    def size(self) -> int:
        """Total number of cells."""
        return int(np.prod(self.n))

    @property
    def dx(self) -> tuple:
        """Cell width per axis."""
        return tuple((h - l) / n for l, h, n in zip(self.lo, self.hi, self.n))

    @property
    def cell_volume(self) -> float:
        """Volume of one cell, the product of ``dx`` (units of x^ndim; uniform grids)."""
        return float(np.prod(self.dx))

    @property
    def axes(self) -> list[np.ndarray]:
        """Cell-centre coordinates of each axis."""
        return [l + (np.arange(n) + 0.5) * d for l, n, d in zip(self.lo, self.n, self.dx)]

    @property
    def edges(self) -> list[np.ndarray]:
        """Cell-face coordinates of each axis (n + 1 values)."""
        return [np.linspace(l, h, n + 1) for l, h, n in zip(self.lo, self.hi, self.n)]

    @property
    def x(self) -> np.ndarray:
        """Cell centres of a 1-D grid (the first axis otherwise)."""
        return self.axes[0]

    def meshgrid(self) -> list[np.ndarray]:
        """Coordinate arrays of shape ``self.shape``, one per axis (``indexing='ij'``).

        Returns
        -------
        list of array
            ``ndim`` arrays of shape ``self.shape``.
        """
        return np.meshgrid(*self.axes, indexing="ij")

    def integrate(self, values: np.ndarray, axis: int | Sequence[int] | None = None) -> np.ndarray | float:
        """Integral of cell values (midpoint rule, exact for cell averages) over all or some axes.

        ``values`` may carry leading axes (e.g. time); the grid axes are its last ``ndim`` axes.

        Parameters
        ----------
        values : array (..., *shape)
            Cell values.
        axis : int or sequence of int, optional
            Grid axes to integrate over (default all).

        Returns
        -------
        float or array
            The integral (units of values × x per integrated axis).
        """
        values = np.asarray(values)
        lead = values.ndim - self.ndim
        if lead < 0 or values.shape[lead:] != self.shape:
            raise ConfigError(f"`values` has shape {values.shape}, expected (..., {self.shape})")
        if axis is None:
            axes = tuple(range(lead, values.ndim))
            return np.sum(values, axis=axes) * self.cell_volume
        axes = (axis,) if np.isscalar(axis) else tuple(axis)
        w = float(np.prod([self.dx[a] for a in axes]))
        return np.sum(values, axis=tuple(lead + a for a in axes)) * w

    def normalise(self, p: np.ndarray, name: str = "p") -> np.ndarray:
        """Return ``p`` scaled to unit integral; raise if it is negative, non-finite or not normalisable.

        "Negative" means below −``negative_tolerance``·max|p| (0 for cell averages; subclasses whose
        nodal values may dip below zero by round-off set a small positive tolerance).

        Parameters
        ----------
        p : array (*shape)
            A non-negative density.
        name : str
            The argument's name in error messages.

        Returns
        -------
        array
            ``p`` with Σ p·cell_volume = 1.
        """
        p = np.asarray(p, dtype=float)
        if p.shape != self.shape:
            raise ConfigError(f"`{name}` has shape {p.shape}, expected the grid's shape {self.shape}")
        if not np.all(np.isfinite(p)):
            raise ConfigError(f"`{name}` contains non-finite values")
        floor = -self.negative_tolerance * np.max(np.abs(p)) if self.negative_tolerance else 0.0
        if np.any(p < floor):
            raise ConfigError(f"`{name}` must be non-negative (min {p.min():.3g})")
        mass = float(self.integrate(p))
        if not mass > 0:
            raise ConfigError(f"`{name}` is not normalisable: its integral is {mass:.3g}")
        return p / mass

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Boolean mask of points (shape (..., ndim) or (...) in 1-D) inside the domain.

        Parameters
        ----------
        points : array (..., ndim), or (...) in 1-D
            Points (units of x).

        Returns
        -------
        array of bool
            True where a point lies in [lo, hi] on every axis.
        """
        pts = np.asarray(points, dtype=float)
        if self.ndim == 1 and (pts.ndim == 0 or pts.shape[-1] != 1):
            pts = pts[..., None]
        inside = np.ones(pts.shape[:-1], dtype=bool)
        for ax in range(self.ndim):
            inside &= (pts[..., ax] >= self.lo[ax]) & (pts[..., ax] <= self.hi[ax])
        return inside

    # --- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The grid as plain values (stored with results; ``from_dict`` reads it back).

        Returns
        -------
        dict
            ``lo``, ``hi``, ``n``, ``kind``.
        """
        return {"lo": list(self.lo), "hi": list(self.hi), "n": list(self.n), "kind": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "Grid":
        """A grid from ``to_dict``'s output (spectral kinds included).

        Parameters
        ----------
        d : dict
            ``lo``, ``hi``, ``n`` and optionally ``kind``.

        Returns
        -------
        Grid
            The grid.
        """
        if d.get("kind", "uniform") != "uniform":
            from .spectral import grid_from_dict

            return grid_from_dict(d)
        return cls(tuple(d["lo"]), tuple(d["hi"]), tuple(int(v) for v in d["n"]), d.get("kind", "uniform"))

    def __repr__(self) -> str:
        if self.ndim == 1:
            return f"Grid.{self.kind}({self.lo[0]}, {self.hi[0]}, {self.n[0]})"
        return f"Grid.{self.kind}({self.lo}, {self.hi}, {self.n})"


def gaussian(grid: Grid, mean=0.0, std=1.0) -> np.ndarray:
    """A normalised Gaussian density on ``grid`` (cell averages of the exact density, per axis product).

    ``mean`` and ``std`` are numbers or one value per axis. Cell averages (not point values) are used so the
    discrete density has mass 1 to round-off and matches finite-volume conventions.

    Parameters
    ----------
    grid : Grid
        The grid.
    mean : float or sequence of float
        Mean per axis (units of x).
    std : float or sequence of float
        Standard deviation per axis (units of x, positive).

    Returns
    -------
    array (*grid.shape)
        The density, Σ p·cell_volume = 1.
    """
    from scipy.special import ndtr

    if grid.kind != "uniform":  # spectral grids hold point values at their nodes
        return grid.gaussian(mean, std)
    mean_t = _as_tuple("mean", mean)
    std_t = _as_tuple("std", std)
    if len(mean_t) == 1:
        mean_t = mean_t * grid.ndim
    if len(std_t) == 1:
        std_t = std_t * grid.ndim
    if len(mean_t) != grid.ndim or len(std_t) != grid.ndim:
        raise ConfigError(f"`mean` and `std` need 1 or {grid.ndim} entries")
    if any(not (s > 0 and np.isfinite(s)) for s in std_t):
        raise ConfigError(f"`std` must be positive and finite, got {std_t}")
    p = np.ones(grid.shape)
    for ax, (m, s, e, d) in enumerate(zip(mean_t, std_t, grid.edges, grid.dx)):
        cdf = ndtr((e - m) / s)
        shape = [1] * grid.ndim
        shape[ax] = grid.n[ax]
        p = p * (np.diff(cdf) / d).reshape(shape)
    return grid.normalise(p, "gaussian")
