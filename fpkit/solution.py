"""Solution: densities on a grid at a sequence of times, with moments and HDF5 storage."""

from __future__ import annotations

import numpy as np

from .grid import Grid
from .results import Result


class Solution(Result):
    """Densities ``p`` (n_t, *grid.shape) at times ``t`` (n_t,) on ``grid``.

    ``meta`` holds the resolved problem description (coefficients, boundary conditions, scheme, method, dt).

    Parameters
    ----------
    t : array (n_t,)
        The stored times (units of the problem's t).
    p : array (n_t, *grid.shape)
        The densities (Σ p·cell_volume = 1 for a conserving problem).
    grid : fpkit.Grid
        Their grid.
    meta : dict, optional
        The resolved problem description.
    """

    kind = "fpkit.Solution"
    _datasets = ("t", "p")

    def __init__(self, t, p, grid: Grid, meta: dict | None = None):
        self.t = np.asarray(t, dtype=float)
        self.p = np.asarray(p)
        self.grid = grid
        self.meta = dict(meta or {})

    @classmethod
    def _from_stored(cls, fields, meta, grid):
        return cls(fields["t"], fields["p"], grid, meta)

    def __len__(self) -> int:
        return self.t.size

    def __repr__(self) -> str:
        return f"Solution(n_t={self.t.size}, grid={self.grid!r}, method={self.meta.get('method')!r})"

    def mass(self) -> np.ndarray:
        """∫ p dx at each time (n_t,).

        Returns
        -------
        array (n_t,)
            The mass at each stored time.
        """
        return np.asarray(self.grid.integrate(self.p))

    def _coords(self):
        return self.grid.meshgrid()

    def mean(self) -> np.ndarray:
        """Mean position at each time: (n_t,) in 1-D, (n_t, ndim) otherwise (normalised by the mass).

        Returns
        -------
        array (n_t,) or (n_t, ndim)
            Means (units of x).
        """
        m = self.mass()
        means = [self.grid.integrate(self.p * c) / m for c in self._coords()]
        return means[0] if self.grid.ndim == 1 else np.stack(means, axis=-1)

    def var(self) -> np.ndarray:
        """Variance of each coordinate at each time, same shape as ``mean()``.

        Returns
        -------
        array (n_t,) or (n_t, ndim)
            Variances (units of x²).
        """
        m = self.mass()
        mu = self.mean().reshape(self.t.size, -1)
        out = []
        for a, c in enumerate(self._coords()):
            shape = (self.t.size,) + (1,) * self.grid.ndim
            out.append(self.grid.integrate(self.p * (c - mu[:, a].reshape(shape)) ** 2) / m)
        return out[0] if self.grid.ndim == 1 else np.stack(out, axis=-1)

    def entropy(self) -> np.ndarray:
        """Differential entropy −∫ p ln p dx at each time (0 ln 0 = 0).

        Returns
        -------
        array (n_t,)
            Entropies (nats; depend on the unit of x).
        """
        p = np.asarray(self.p, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            plogp = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
        return -np.asarray(self.grid.integrate(plogp))

    def interpolate(self, points, k: int = -1) -> np.ndarray:
        """The density of stored time ``k`` at arbitrary points: spectral interpolation on spectral grids,
        piecewise constant (the cell average) on finite-volume grids.

        Parameters
        ----------
        points : array
            Where to evaluate (units of x; (..., ndim) on multi-axis spectral grids).
        k : int
            Index of the stored time (default the last).

        Returns
        -------
        array
            The density at the points (0 outside a finite-volume grid).
        """
        pts = np.asarray(points, dtype=float)
        if self.grid.kind != "uniform":
            return self.grid.interpolate(self.p[k], pts)
        if self.grid.ndim != 1:
            raise NotImplementedError("interpolation is 1-D for finite-volume solutions")
        idx = np.clip(((pts - self.grid.lo[0]) / self.grid.dx[0]).astype(int), 0, self.grid.n[0] - 1)
        return np.where(self.grid.contains(pts), self.p[k][idx], 0.0)

    def at(self, t: float) -> np.ndarray:
        """The stored density at the stored time closest to ``t``.

        Parameters
        ----------
        t : float
            A time (units of the problem's t).

        Returns
        -------
        array (*grid.shape)
            The density.
        """
        return self.p[int(np.argmin(np.abs(self.t - t)))]
