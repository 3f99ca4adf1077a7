"""Paths: an ensemble of SDE paths recorded at a set of times, with histograms on fpkit grids."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError
from .grid import Grid
from .results import Result


class Paths(Result):
    """Paths of an SDE ensemble (``SDE.sample``'s result).

    Attributes
    ----------
    t : ndarray (n_t,)
        Recording times.
    x : ndarray (n_t, n_paths) in 1-D, (n_t, n_paths, d) in d-D
        Positions; NaN once a path has been absorbed (or has failed).
    absorbed_at : ndarray (n_paths,)
        Time at which each path hit an absorbing wall (the end of that step), ``inf`` if never.
    v : ndarray or None
        Velocities (same shape as ``x``) for underdamped (BAOAB) runs.
    meta : dict
        The resolved problem, method, step, seed and engine.
    grid : Grid or None
        The SDE's grid, if it had one.
    """

    kind = "paths"
    _datasets = ("t", "x", "absorbed_at", "v")

    def __init__(self, t, x, *, absorbed_at=None, v=None, meta: dict | None = None, grid: Grid | None = None):
        self.t = np.asarray(t, dtype=float)
        self.x = np.asarray(x, dtype=float)
        if self.x.ndim < 2 or self.x.shape[0] != self.t.size:
            raise ConfigError(
                f"`x` must have shape (n_t, n_paths[, d]) with n_t={self.t.size}, got {self.x.shape}"
            )
        n = self.x.shape[1]
        self.absorbed_at = np.full(n, np.inf) if absorbed_at is None else np.asarray(absorbed_at, dtype=float)
        self.v = None if v is None else np.asarray(v, dtype=float)
        self.meta = dict(meta or {})
        self.grid = grid

    @property
    def n_paths(self) -> int:
        """Number of paths (absorbed and failed ones included)."""
        return self.x.shape[1]

    @property
    def ndim(self) -> int:
        """Dimension of the state (1, 2 or 3)."""
        return 1 if self.x.ndim == 2 else self.x.shape[2]

    def alive(self, index: int = -1) -> np.ndarray:
        """Mask of paths neither absorbed nor failed at recording ``index``.

        Parameters
        ----------
        index : int
            Recording index (default the last).

        Returns
        -------
        array of bool (n_paths,)
            True for live paths.
        """
        xi = self.x[index]
        return np.isfinite(xi) if xi.ndim == 1 else np.all(np.isfinite(xi), axis=-1)

    def survival(self) -> np.ndarray:
        """Fraction of paths alive at each recording time, shape (n_t,).

        Returns
        -------
        array (n_t,)
            Fractions in [0, 1].
        """
        fin = np.isfinite(self.x) if self.x.ndim == 2 else np.all(np.isfinite(self.x), axis=-1)
        return fin.mean(axis=1)

    def mean(self) -> np.ndarray:
        """Mean position of the live paths at each time, shape (n_t,) or (n_t, d).

        Returns
        -------
        array
            Means (units of x).
        """
        return np.nanmean(self.x, axis=1)

    def var(self) -> np.ndarray:
        """Variance (ddof = 1) of the live paths' positions at each time, shape (n_t,) or (n_t, d).

        Returns
        -------
        array
            Variances (units of x²).
        """
        return np.nanvar(self.x, axis=1, ddof=1)

    def histogram(self, grid: Grid, index: int | None = None) -> np.ndarray:
        """Density of the paths on ``grid``'s cells: counts / (n_paths · cell volume).

        Normalised by *all* paths, so the result integrates to the fraction of paths that are alive and
        inside the grid: with absorbing walls it is the surviving mass, comparable with an absorbing
        Fokker-Planck solution. Shape ``grid.shape`` for one ``index``, else (n_t, *grid.shape).

        Parameters
        ----------
        grid : fpkit.Grid
            A uniform grid of the paths' dimension.
        index : int, optional
            One recording index; default every recording time.

        Returns
        -------
        array
            Densities (per unit x^ndim).
        """
        if not isinstance(grid, Grid) or grid.kind != "uniform":
            raise ConfigError("`grid` must be an fpkit Grid.uniform")
        if grid.ndim != self.ndim:
            raise ConfigError(f"`grid` is {grid.ndim}-D, the paths are {self.ndim}-D")
        indices = range(self.t.size) if index is None else [index]
        out = []
        for i in indices:
            xi = self.x[i]
            if self.ndim == 1:
                xi = xi[np.isfinite(xi)]
                counts, _ = np.histogram(xi, bins=grid.n[0], range=(grid.lo[0], grid.hi[0]))
            else:
                xi = xi[np.all(np.isfinite(xi), axis=-1)]
                counts, _ = np.histogramdd(xi, bins=grid.n, range=list(zip(grid.lo, grid.hi)))
            out.append(counts / (self.n_paths * grid.cell_volume))
        res = np.asarray(out, dtype=float)
        return res[0] if index is not None else res

    @classmethod
    def _from_stored(cls, fields: dict, meta: dict, grid: Grid | None):
        return cls(fields["t"], fields["x"], absorbed_at=fields.get("absorbed_at"), v=fields.get("v"),
                   meta=meta, grid=grid)  # fmt: skip

    def __repr__(self) -> str:
        return f"Paths(n_t={self.t.size}, n_paths={self.n_paths}, ndim={self.ndim}, method={self.meta.get('method')})"
