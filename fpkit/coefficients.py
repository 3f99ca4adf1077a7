"""Coefficients (drift A, diffusion D, and the like) given as numbers, arrays on a grid or callables.

Conventions (one for the whole code base): a scalar coefficient may be

* a number,
* an array already on the grid (shape ``grid.shape``),
* a vectorised numpy callable ``f(x, t)`` in 1-D, ``f(x, y, t)`` in 2-D, ``f(x, y, z, t)`` in 3-D.

Callables are evaluated on the grid, once for time-independent problems. A callable is taken to be
time-independent when it returns the same values at three probe times; pass ``time_dependent=True`` to a
problem class to override the probe.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .errors import ConfigError
from .grid import Grid

_PROBE_TIMES = (0.0, 0.731, 3.17)


class Coefficient:
    """One scalar coefficient bound to a grid.

    Parameters
    ----------
    value : float, ndarray or callable
        See the module docstring.
    name : str
        Argument name used in error messages (``"drift"``, ``"diffusion[0]"`` ...).
    grid : Grid
        The grid the coefficient is evaluated on.
    nonnegative : bool
        Raise a ConfigError if any value is negative (diffusions).
    """

    def __init__(self, value: Any, name: str, grid: Grid, *, nonnegative: bool = False):
        self.name, self.grid, self.nonnegative = name, grid, nonnegative
        self._value = value
        if callable(value):
            self.kind = "callable"
        elif np.ndim(value) == 0:
            self.kind = "constant"
            self._value = float(np.asarray(value, dtype=float))
        else:
            self.kind = "array"
            arr = np.asarray(value, dtype=float)
            if arr.shape != grid.shape:
                raise ConfigError(
                    f"`{name}` array has shape {arr.shape}, expected the grid's shape {grid.shape}"
                )
            self._value = arr
        self._cache: np.ndarray | None = None
        self.time_dependent = self.kind == "callable" and self._probe_time_dependence()
        first = self._evaluate(0.0)  # validates the values at t = 0 in every case
        if not self.time_dependent:
            self._cache = first

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    def _call(self, coords: list[np.ndarray], t: float) -> np.ndarray:
        try:
            out = self._value(*coords, t)
        except ConfigError:
            raise
        except Exception as exc:  # the user's function failed: say which argument
            raise ConfigError(f"`{self.name}` callable failed at t={t}: {exc!r}") from exc
        return check_values(out, coords[0].shape, self.name, t)

    def _probe_time_dependence(self) -> bool:
        coords = self.grid.meshgrid()
        ref = self._call(coords, _PROBE_TIMES[0])
        return any(not np.array_equal(ref, self._call(coords, t), equal_nan=True) for t in _PROBE_TIMES[1:])

    def _check(self, values: np.ndarray, t: float) -> np.ndarray:
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"`{self.name}` has non-finite values on the grid at t={t}")
        if self.nonnegative and np.any(values < 0):
            raise ConfigError(f"`{self.name}` must be non-negative, min {values.min():.3g} at t={t}")
        return values

    def _evaluate(self, t: float) -> np.ndarray:
        if self.kind == "constant":
            vals = np.full(self.grid.shape, self._value)
        elif self.kind == "array":
            vals = np.array(self._value)
        else:
            vals = np.array(self._call(self.grid.meshgrid(), t))
        return self._check(vals, t)

    def on_grid(self, t: float = 0.0) -> np.ndarray:
        """Values at the grid's cell centres at time ``t`` (cached when time-independent)."""
        if self._cache is not None:
            return self._cache
        return self._evaluate(t)

    def at(self, points: np.ndarray, t: float = 0.0) -> np.ndarray:
        """Values at arbitrary points (shape (m,) in 1-D, (m, ndim) otherwise); arrays are interpolated
        linearly between cell centres and held constant beyond the outer centres."""
        pts = np.asarray(points, dtype=float)
        coords = [pts] if self.grid.ndim == 1 else [pts[..., a] for a in range(self.grid.ndim)]
        if self.kind == "constant":
            return np.full(coords[0].shape, self._value)
        if self.kind == "callable":
            return self._call(coords, t)
        from scipy.interpolate import RegularGridInterpolator

        clipped = [np.clip(c, ax[0], ax[-1]) for c, ax in zip(coords, self.grid.axes)]
        interp = RegularGridInterpolator(self.grid.axes, self._value, method="linear")
        return interp(np.stack(clipped, axis=-1))

    def describe(self) -> str:
        """A short text for results files."""
        if self.kind == "constant":
            return repr(self._value)
        if self.kind == "array":
            return f"array{self._value.shape}"
        return getattr(self._value, "__qualname__", repr(self._value))


def _per_axis(value: Any, name: str, grid: Grid, nonnegative: bool) -> list[Coefficient]:
    """Split a vector coefficient into one Coefficient per axis."""
    nd = grid.ndim
    if nd == 1:
        return [Coefficient(value, name, grid, nonnegative=nonnegative)]
    if callable(value):
        # a callable returning all components at once, shape (ndim, *grid)
        comps = [_component(value, a, name) for a in range(nd)]
        return [Coefficient(c, f"{name}[{a}]", grid, nonnegative=nonnegative) for a, c in enumerate(comps)]
    if np.ndim(value) == 0:
        return [Coefficient(value, f"{name}[{a}]", grid, nonnegative=nonnegative) for a in range(nd)]
    if isinstance(value, np.ndarray) and value.shape == (nd, *grid.shape):
        return [Coefficient(value[a], f"{name}[{a}]", grid, nonnegative=nonnegative) for a in range(nd)]
    if isinstance(value, (list, tuple)) and len(value) == nd:
        return [Coefficient(v, f"{name}[{a}]", grid, nonnegative=nonnegative) for a, v in enumerate(value)]
    raise ConfigError(
        f"`{name}` on a {nd}-D grid must be a number, a callable returning {nd} components, "
        f"an array of shape {(nd, *grid.shape)} or a sequence of {nd} coefficients"
    )


def check_values(out, shape: tuple, name: str, t: float) -> np.ndarray:
    """A callable's return value as a float array of ``shape``: a number (broadcast) or an array of exactly
    that shape; anything else (strings, None, a wrong shape) is a ConfigError naming ``name``."""
    try:
        arr = np.asarray(out, dtype=float)
    except (TypeError, ValueError):
        raise ConfigError(
            f"`{name}` callable must return numbers, got {type(out).__name__} {str(out)[:40]!r} at t={t}"
        ) from None
    if arr.shape == tuple(shape):
        return arr
    if arr.ndim == 0:
        return np.broadcast_to(arr, shape)
    raise ConfigError(
        f"`{name}` callable returned shape {arr.shape} at t={t}; expected a number or the shape of its "
        f"coordinate arguments {tuple(shape)}"
    )


def check_components(out, nd: int, shape: tuple, name: str, t) -> list[np.ndarray]:
    """A vector callable's return value in ``nd`` dimensions: a sequence of ``nd`` components or an array of
    shape (nd, *shape) (each component a number or an array of ``shape``); anything else (one component
    instead of nd, a wrong shape) is a ConfigError naming ``name``."""
    if isinstance(out, (list, tuple)):
        parts = list(out)
    else:
        try:
            arr = np.asarray(out, dtype=float)
        except (TypeError, ValueError):
            raise ConfigError(f"`{name}` callable must return {nd} components of numbers, got {out!r:.60}") from None
        if arr.ndim not in (1, 1 + len(shape)):
            raise ConfigError(
                f"`{name}` callable on a {nd}-D problem returned shape {arr.shape} at t={t}; expected {nd} "
                f"components: a sequence of {nd} arrays or an array of shape {(nd, *shape)}"
            )
        parts = list(arr)
    if len(parts) != nd:
        raise ConfigError(
            f"`{name}` callable on a {nd}-D problem returned {len(parts)} components at t={t}; expected {nd}"
        )
    return [check_values(c, shape, f"{name}[{a}]", t) for a, c in enumerate(parts)]


def _component(fn: Callable, axis: int, name: str = "coefficient") -> Callable:
    def comp(*args):
        coords, t = args[:-1], args[-1]
        return check_components(fn(*args), len(coords), np.shape(coords[0]), name, t)[axis]

    comp.__qualname__ = f"{getattr(fn, '__qualname__', 'f')}[{axis}]"
    return comp


def drift_field(value: Any, grid: Grid) -> list[Coefficient]:
    """The drift vector A as one Coefficient per axis."""
    return _per_axis(value, "drift", grid, nonnegative=False)


def diffusion_field(value: Any, grid: Grid) -> list[list[Coefficient | None]]:
    """The diffusion tensor D as an ndim × ndim table of Coefficients (None off the diagonal when diagonal).

    Accepted: a number (isotropic), a per-axis sequence or callable (diagonal), and in 2-D a 2 × 2 nested
    sequence (full symmetric tensor; off-diagonals must agree and D must be positive semi-definite).
    """
    nd = grid.ndim
    if (
        nd == 2
        and isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(r, (list, tuple)) and len(r) == 2 for r in value)
    ):
        d00 = Coefficient(value[0][0], "diffusion[0][0]", grid, nonnegative=True)
        d11 = Coefficient(value[1][1], "diffusion[1][1]", grid, nonnegative=True)
        d01 = Coefficient(value[0][1], "diffusion[0][1]", grid)
        if value[1][0] is not value[0][1]:
            d10 = Coefficient(value[1][0], "diffusion[1][0]", grid)
            if d01.time_dependent or d10.time_dependent or not np.allclose(d01.on_grid(), d10.on_grid()):
                raise ConfigError("`diffusion` must be symmetric: diffusion[0][1] != diffusion[1][0]")
        if not (d00.time_dependent or d11.time_dependent or d01.time_dependent):
            det = d00.on_grid() * d11.on_grid() - d01.on_grid() ** 2
            if np.any(det < -1e-12 * (d00.on_grid() * d11.on_grid() + 1e-300)):
                raise ConfigError("`diffusion` tensor must be positive semi-definite everywhere")
        return [[d00, d01], [d01, d11]]
    diag = _per_axis(value, "diffusion", grid, nonnegative=True)
    table: list[list[Coefficient | None]] = [[None] * nd for _ in range(nd)]
    for a in range(nd):
        table[a][a] = diag[a]
    return table
