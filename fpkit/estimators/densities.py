"""Empirical densities of ensemble samples on a grid, and a grid that covers them.

Samples are plain arrays, one value per ensemble member (leading axes, e.g. snapshots, are kept); densities
follow fpkit's convention ``sum(p) * cell_volume == 1``.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, check_choice, check_positive
from ..grid import Grid


def _as_snapshots(samples, ndim: int) -> np.ndarray:
    """Samples as an array (..., M) in 1-D or (..., M, ndim) otherwise; non-finite values refused."""
    if isinstance(samples, (list, tuple)):
        try:
            x = np.concatenate(
                [np.asarray(s, dtype=float).reshape(-1, *([ndim] if ndim > 1 else [])) for s in samples]
            )
        except ValueError as exc:
            raise ConfigError(f"`samples` could not be combined: {exc}") from None
    else:
        x = np.asarray(samples, dtype=float)
    if ndim > 1 and (x.ndim < 2 or x.shape[-1] != ndim):
        raise ConfigError(f"`samples` for a {ndim}-D grid must have shape (..., M, {ndim}), got {x.shape}")
    if x.size == 0:
        raise ConfigError("`samples` is empty")
    if not np.all(np.isfinite(x)):
        raise ConfigError("`samples` contains non-finite values")
    return x


def choose_grid(samples, n=200, *, pad: float = 0.25, ndim: int = 1, symmetric: bool = False) -> Grid:
    """A uniform grid covering the samples' range over all snapshots, padded on each side.

    Parameters
    ----------
    samples : array (..., M) for 1-D, (..., M, ndim) otherwise, or a list of per-snapshot arrays
        Sample values, e.g. one weight entry across members at every snapshot, shape (n_snapshots, M).
    n : int or sequence of int
        Cells per axis.
    pad : float
        Padding on each side as a fraction of the range (``0.25`` leaves room for the predicted density's
        tails and for an absorbing-free reflecting wall far from the data).
    ndim : int
        1, 2 or 3.
    symmetric : bool
        Centre every axis on 0 (``[-R, R]`` with ``R`` the padded largest ``|x|``), for sign-symmetric
        networks whose densities are even.
    """
    check_choice("ndim", ndim, (1, 2, 3))
    pad = check_positive("pad", pad, strict=False)
    x = _as_snapshots(samples, ndim).reshape(-1, ndim)
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = hi - lo
    if np.any(span <= 0):
        raise ConfigError(f"`samples` have zero range on some axis ({lo} to {hi}): cannot choose a grid")
    lo, hi = lo - pad * span, hi + pad * span
    if symmetric:
        hi = np.maximum(np.abs(lo), np.abs(hi))
        lo = -hi
    if ndim == 1:
        return Grid.uniform(float(lo[0]), float(hi[0]), n)
    return Grid.uniform(tuple(lo), tuple(hi), n)


def histogram_density(samples, grid: Grid, *, outside: str = "raise") -> np.ndarray:
    """Empirical density of samples on a grid: counts / (N · cell_volume), per snapshot.

    Parameters
    ----------
    samples : array (..., M) on a 1-D grid or (..., M, ndim) on a d-D grid
        Leading axes (e.g. snapshots) are kept.
    grid : Grid
    outside : {"raise", "drop", "clip"}
        Samples outside the grid: raise a ConfigError, drop them (the density is normalised over the samples
        inside), or count them in the nearest edge cell.

    Returns
    -------
    ndarray (..., *grid.shape), each density integrating to 1.
    """
    if not isinstance(grid, Grid):
        raise ConfigError(f"`grid` must be an fpkit Grid, got {type(grid).__name__}")
    check_choice("outside", outside, ("raise", "drop", "clip"))
    nd = grid.ndim
    x = _as_snapshots(samples, nd)
    if nd == 1:
        x = x[..., None]
    lead = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:])
    out = np.empty((flat.shape[0], *grid.shape))
    for s, pts in enumerate(flat):
        inside = grid.contains(pts)
        if not inside.all():
            if outside == "raise":
                raise ConfigError(
                    f"{(~inside).sum()} samples lie outside the grid {grid!r}; widen the grid "
                    "(choose_grid) or pass outside='drop' or 'clip'"
                )
            if outside == "clip":
                pts = np.clip(pts, np.asarray(grid.lo), np.asarray(grid.hi))
            else:
                pts = pts[inside]
                if pts.shape[0] == 0:
                    raise ConfigError("no samples lie inside the grid")
        counts, _ = np.histogramdd(pts, bins=grid.edges)
        out[s] = counts / (counts.sum() * grid.cell_volume)
    return out.reshape(*lead, *grid.shape)
