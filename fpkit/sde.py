"""Ensembles of SDE paths for the same drift and diffusion as a Fokker-Planck problem.

    dX = A(X, t) dt + √(2 D(X, t)) dW        (Itô; D is the diffusion, never σ; D diagonal in d-D)

Its density obeys ∂t p = −∇·(A p) + ∇·∇·(D p), the equation ``fpkit.FokkerPlanck`` solves, so one problem
description drives both: ``SDE.fokker_planck(grid, bc)`` and ``sde_from_fokker_planck(fp)`` convert.

How coefficients are evaluated (the speed of a run depends on it)
-----------------------------------------------------------------
In 1-D the compiled kernels (``fpkit.solvers.sde_kernels``, parallel over paths) evaluate

* numbers, and ``numpy.polynomial.Polynomial`` objects (Horner's rule, exact): inline, the fastest;
* arrays on a uniform ``grid`` (linear interpolation between cell centres, constant beyond the outer ones,
  as ``Coefficient.at``): inline;
* numba-jitted functions ``f(x, t)`` of scalars (``numba.njit``), and plain Python functions ``f(x, t)`` that
  numba can compile for numbers (arithmetic, ``math`` and numpy ufuncs such as ``np.exp``/``np.tanh``,
  ``np.where``, closures over numbers: ``fpkit.solvers.callables``): called from inside the kernel. For
  Euler-Maruyama with constant D and no walls (the common case) the drift is inlined into a per-function
  routine that advances a block of paths through a chunk of steps (as fast as a polynomial); otherwise it is
  called through a function pointer, a few ns per call. A compiled plain function is checked against its
  vectorised self at the starting points first. Compiling costs ~0.1-1 s per function and process (not
  cached on disk: numba cannot see changes to the globals a user's function reads).

Any other callable (one numba cannot compile, e.g. using scipy or a dict of arrays; or ``f(x, y, t)``
returning all components in d-D) runs the vectorised step loop instead: one call per time step over all paths,
at numpy speed, with one log line (logger ``fpkit``) saying why. So does every d-dimensional problem. Both
routes draw the same random numbers for a seed and agree to round-off. An exception: a drift and a diffusion
that are both ``fpkit.estimators.SnapshotInterpolator`` arrays on uniform 1-D grids (estimated coefficients,
e.g. the FP prediction's Langevin cross-check) run Euler-Maruyama in one compiled loop with the vectorised
loop's bits (``sde_kernels.euler_snapshots_1d``).

Random numbers: path ``k`` uses stream ``k`` of ``seed`` (``fpkit.solvers.random``) for its increments, so a
seed gives bit-identical paths whatever the number of threads. Starting points drawn from a density use the
streams of ``derive_seed(seed, 1)``, initial velocities those of ``derive_seed(seed, 2)``.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.polynomial import Polynomial

from .coefficients import Coefficient, check_components, check_values
from .errors import ConfigError, StabilityError, check_choice, check_positive, check_seed, check_times
from .grid import Grid
from .paths import Paths
from .progress import progress
from .solvers import sde_kernels as K
from .solvers.callables import compile_scalar, explain_fallback
from .solvers.random import derive_seed, draw_normals, seed_streams
from .solvers.time_stepping import advance_to_outputs

METHODS = ("euler", "milstein", "heun", "baoab")
BOUNDARY_CONDITIONS = ("none", "reflecting", "absorbing", "periodic")
ENGINES = ("auto", "kernel", "numpy")
_WALL_CODE = {"none": K.NO_WALL, "reflecting": K.REFLECTING, "absorbing": K.ABSORBING, "periodic": K.PERIODIC}
_METHOD_CODE = {"euler": K.EULER, "milstein": K.MILSTEIN, "heun": K.HEUN}
_NUMERIC_STEP = 6.0e-6  # relative step of central differences, ~ eps^(1/3)


def _is_jitted(value) -> bool:
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return isinstance(value, CPUDispatcher)


def _call_vectorised(fn, args, name: str):
    """Call ``fn(*args)`` on arrays; a numba function written for scalars is mapped element by element."""
    try:
        return fn(*args)
    except Exception as exc:
        if _is_jitted(fn):
            return np.vectorize(fn, otypes=[float])(*args)
        raise ConfigError(f"`{name}` callable failed: {exc!r}") from exc


class _Coef1D:
    """A 1-D coefficient (times a constant ``scale``) in the form the kernels and the numpy loop need."""

    def __init__(self, value: Any, name: str, grid: Grid | None, *, nonnegative: bool, scale: float = 1.0):
        self.name, self.scale, self.value = name, float(scale), value
        if isinstance(value, Polynomial):
            coefs = value.convert(kind=Polynomial, domain=[-1, 1], window=[-1, 1]).coef.astype(float)
            if not np.all(np.isfinite(coefs)):
                raise ConfigError(f"`{name}` polynomial has non-finite coefficients")
            self.kind, self.poly = "polynomial", Polynomial(coefs * self.scale)
        elif _is_jitted(value):
            self.kind, self.jitted = "jit", value
        elif callable(value):
            # compiled lazily, when a kernel first needs it (``compiled``); "callable" = runs vectorised
            self.kind, self.jitted, self.why_not = "callable?", None, None
        elif np.ndim(value) == 0:
            v = float(np.asarray(value, dtype=float))
            if not math.isfinite(v):
                raise ConfigError(f"`{name}` must be finite, got {value!r}")
            if nonnegative and v < 0:
                raise ConfigError(f"`{name}` must be non-negative (it is D, not σ), got {v!r}")
            self.kind, self.const = "constant", v * self.scale
        else:
            if grid is None:
                raise ConfigError(f"`{name}` is an array: pass the `grid` it is given on")
            if grid.kind != "uniform" or grid.ndim != 1:
                raise ConfigError(f"`{name}` arrays need a 1-D Grid.uniform, got {grid!r}")
            arr = Coefficient(value, name, grid, nonnegative=nonnegative).on_grid()
            self.kind, self.grid, self.table = "table", grid, arr * self.scale
        self._fn_ptr = None

    def __getstate__(self):
        """Pickles without the compiled pieces (function pointers are not picklable); they are rebuilt on use."""
        state = self.__dict__.copy()
        state["_fn_ptr"] = None
        state.pop("_block_ptr", None)
        if state.get("kind") == "compiled":
            state.update(kind="callable?", jitted=None)
        return state

    @property
    def compiled(self) -> bool:
        """Whether the kernels can evaluate this coefficient (compiling a plain callable on first use)."""
        if self.kind == "callable?":
            disp, self.why_not = compile_scalar(self.value, 2)
            if disp is None:
                self.kind = "callable"
            else:
                self.kind, self.jitted, self._verified = "compiled", disp, False
        return self.kind != "callable"

    def verify(self, x: np.ndarray, t: float) -> bool:
        """For a compiled plain callable: whether the compiled function agrees with the vectorised one at (up
        to 256 of) the points ``x`` and time ``t``, to round-off. A function that means something else on
        scalars than on arrays (a sum, a mean, an array's length) is sent back to the vectorised path."""
        if self.kind != "compiled" or self._verified:
            return self.compiled
        self._verified = True
        pts = np.ravel(x)[:: max(1, np.size(x) // 256)]
        # spread points too: starting points often coincide, and f(x) must be elementwise to compile safely
        c = float(np.mean(pts))
        spread = c + max(1.0, abs(c)) * np.array([-1.0, -0.5, -0.1, 0.1, 0.5, 1.0])
        mode, par, fn = self.spec()
        for i, xs in enumerate((pts, spread)):
            xs = np.ascontiguousarray(xs, dtype=float)
            comp = np.empty_like(xs)
            K.eval_coef(mode, par, fn, xs, float(t), comp)
            try:
                with np.errstate(all="ignore"):
                    vec = self.scale * check_values(self.value(xs, t), xs.shape, self.name, t)
            except Exception:  # written for scalars only, or not defined off the starting points
                if i == 0:
                    return True  # the compiled version is the one that works
                continue
            tol = 1e-9 * np.maximum(np.abs(vec), np.nanmax(np.abs(vec), initial=0.0) * 1e-3) + 1e-300
            same = (np.abs(comp - vec) <= tol) | (np.isnan(comp) & np.isnan(vec)) | (comp == vec)
            if not same.all():
                j = int(np.flatnonzero(~same)[0])
                self.kind, self.why_not = "callable", (
                    f"compiled for numbers it gives {comp[j]!r} at x={xs[j]!r}, t={t!r}; on arrays {vec[j]!r}"
                )
                return False
        return True

    def spec(self):
        """(mode, par, fn) for the kernels."""
        if self.kind == "constant":
            return K.CONST, np.array([self.const]), None
        if self.kind == "polynomial":
            c = self.poly.coef
            return K.POLY, np.array(c if c.size else [0.0], dtype=float), None
        if self.kind == "table":
            x0, dx = float(self.grid.x[0]), self.grid.dx[0]
            return K.TABLE, np.concatenate([[x0, 1.0 / dx], self.table]), None
        if self._fn_ptr is None:
            self._fn_ptr = K.function_pointer(self.jitted)
        return K.FUNC, np.array([self.scale]), self._fn_ptr

    def block_pointer(self):
        """The per-block Euler-Maruyama routine with this (compiled) drift inlined, for em_func_free_stretch."""
        if getattr(self, "_block_ptr", None) is None:
            self._block_ptr = K.block_function_pointer(self.jitted)
        return self._block_ptr

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        """Vectorised values at points ``x`` (any shape)."""
        if self.kind == "constant":
            return np.full(np.shape(x), self.const)
        if self.kind == "polynomial":
            return self.poly(x)
        if self.kind == "table":
            return np.interp(x, self.grid.x, self.table)
        if self.kind == "jit":
            xs = np.ascontiguousarray(x, dtype=float).ravel()
            out = np.empty_like(xs)
            mode, par, fn = self.spec()
            K.eval_coef(mode, par, fn, xs, float(t), out)
            return out.reshape(np.shape(x))
        if self.kind in ("compiled", "callable?"):
            try:
                out = self.value(x, t)
            except Exception:  # a function written for scalars: the compiled version evaluates it
                if not self.compiled:
                    return self.scale * check_values(_call_vectorised(self.value, (x, t), self.name),
                                                     np.shape(x), self.name, t)  # fmt: skip (raises)
                xs = np.ascontiguousarray(x, dtype=float).ravel()
                out = np.empty_like(xs)
                mode, par, fn = self.spec()
                K.eval_coef(mode, par, fn, xs, float(t), out)
                return out.reshape(np.shape(x))
            return self.scale * check_values(out, np.shape(x), self.name, t)
        out = _call_vectorised(self.value, (x, t), self.name)
        return self.scale * check_values(out, np.shape(x), self.name, t)

    def derivative(self):
        """A ``_Coef1D``-like object for d/dx, or None when it must be computed numerically."""
        if self.kind == "constant":
            return _Coef1D(0.0, f"d{self.name}/dx", None, nonnegative=False)
        if self.kind == "polynomial":
            return _Coef1D(self.poly.deriv(), f"d{self.name}/dx", None, nonnegative=False)
        if self.kind == "table":
            grad = np.gradient(self.table, self.grid.dx[0], edge_order=2)
            return _Coef1D(grad, f"d{self.name}/dx", self.grid, nonnegative=False)
        return None

    def for_fokker_planck(self, grid: Grid):
        """The same coefficient in ``FokkerPlanck``'s conventions on ``grid``."""
        if self.kind == "constant":
            return self.const
        if self.kind == "polynomial":
            poly = self.poly
            return lambda x, t: poly(x)
        if self.kind == "table" and self.grid == grid:
            return self.table.copy()
        return lambda x, t: self(x, t)

    def describe(self) -> str:
        if self.kind == "constant":
            return repr(self.const)
        if self.kind == "polynomial":
            return f"Polynomial({self.poly.coef.tolist()})"
        if self.kind == "table":
            return f"array{self.table.shape} on {self.grid!r}"
        s = getattr(self.value, "__qualname__", repr(self.value))
        return s if self.scale == 1.0 else f"{self.scale!r} * {s}"


class _CoefND:
    """A vector (drift) or diagonal (diffusion) coefficient in d-D, evaluated at points (n, d) → (n, d)."""

    def __init__(self, value: Any, name: str, ndim: int, grid: Grid | None, *, nonnegative: bool, scale=1.0):
        self.name, self.ndim, self.scale, self.value = name, ndim, float(scale), value
        self.nonnegative = nonnegative
        self.parts: list | None = None
        self.orientation_checked = False
        if callable(value):
            self.kind = "vector-callable"
        elif np.ndim(value) == 0:
            v = check_positive(name, value, strict=False) if nonnegative else float(value)
            if not math.isfinite(v):
                raise ConfigError(f"`{name}` must be finite, got {value!r}")
            self.kind, self.const = "constant", np.full(ndim, v * self.scale)
        elif isinstance(value, (list, tuple)) and len(value) == ndim:
            self.kind = "per-axis"
            self.parts = [self._part(v, f"{name}[{a}]", grid) for a, v in enumerate(value)]
        elif isinstance(value, np.ndarray) and grid is not None and value.shape == (ndim, *grid.shape):
            self.kind = "per-axis"
            self.parts = [self._part(value[a], f"{name}[{a}]", grid) for a in range(ndim)]
        elif isinstance(value, np.ndarray) and value.shape == (ndim,):
            self.kind = "per-axis"
            self.parts = [self._part(float(v), f"{name}[{a}]", grid) for a, v in enumerate(value)]
        else:
            raise ConfigError(
                f"`{name}` in {ndim}-D must be a number, a callable f(x, y, ..., t) returning {ndim} components, "
                f"a sequence of {ndim} coefficients, or an array of shape ({ndim}, *grid.shape) with `grid`"
            )

    def _part(self, v, name, grid):
        if callable(v):
            return ("callable", v)
        if np.ndim(v) == 0:
            f = float(v)
            if not math.isfinite(f) or (self.nonnegative and f < 0):
                raise ConfigError(
                    f"`{name}` must be finite{' and non-negative' if self.nonnegative else ''}, got {v!r}"
                )
            return ("constant", f * self.scale)
        if grid is None:
            raise ConfigError(f"`{name}` is an array: pass the `grid` it is given on")
        return ("array", Coefficient(v, name, grid, nonnegative=self.nonnegative))

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        n = x.shape[0]
        coords = [x[:, a] for a in range(self.ndim)]
        if self.kind == "constant":
            return np.broadcast_to(self.const, (n, self.ndim)).copy()
        if self.kind == "vector-callable":
            raw = _call_vectorised(self.value, (*coords, t), self.name)
            if not self.orientation_checked:
                self._check_orientation(raw, coords, t)
            out = check_components(raw, self.ndim, (n,), self.name, t)
            return self.scale * np.stack(out, axis=1)
        cols = []
        for kind, v in self.parts:
            if kind == "constant":
                cols.append(np.full(n, v))
            elif kind == "callable":
                out = _call_vectorised(v, (*coords, t), self.name)
                cols.append(self.scale * check_values(out, (n,), self.name, t))
            else:
                cols.append(self.scale * v.at(x, t))
        return np.stack(cols, axis=1)

    def _check_orientation(self, raw, coords: list, t: float) -> None:
        """The callable returns components first: shape (ndim, n) or ndim arrays of n values. An array of
        shape (n, ndim) (points first) is refused; with n == ndim the two cannot be told apart from one call,
        so the callable is called once more on n + 1 points (the first repeated) to see which axis follows
        the points."""
        nd, n = self.ndim, coords[0].shape[0]
        arr = raw if isinstance(raw, np.ndarray) else None
        shape = np.shape(raw)
        probed = arr is not None and arr.ndim == 2 and n == nd
        if probed:
            probe = _call_vectorised(self.value, (*[np.append(c, c[:1]) for c in coords], t), self.name)
            arr = probe if isinstance(probe, np.ndarray) else None
            n += 1
        if arr is not None and arr.ndim == 2 and arr.shape == (n, nd) and n != nd:
            # the user's own shape first; with n_points = d, the probe's shape is what told the axes apart
            seen = f": {shape} for {n - 1} points, {arr.shape} for {n}" if probed else f" = {arr.shape}"
            raise ConfigError(
                f"`{self.name}` callable returned an array of shape (n_points, {nd}){seen}: return the "
                f"components first, shape ({nd}, n_points), e.g. a tuple ({', '.join(f'a{i}' for i in range(nd))}) "
                "or np.stack([...]) with the default axis=0"
            )
        self.orientation_checked = True

    def for_fokker_planck(self, grid: Grid):
        if self.kind == "constant" and np.all(self.const == self.const[0]):
            return float(self.const[0])
        if self.scale == 1.0 and self.kind == "vector-callable":
            return self.value
        nd = self.ndim

        def comp(a):
            return lambda *args: self(np.stack([np.ravel(c) for c in args[:-1]], axis=1), args[-1])[
                :, a
            ].reshape(np.shape(args[0]))

        return [comp(a) for a in range(nd)]

    def describe(self) -> str:
        if self.kind == "constant":
            return repr(self.const.tolist())
        return f"{self.kind} {getattr(self.value, '__qualname__', type(self.value).__name__)}"


class SDE:
    """An Itô SDE dX = A(X, t) dt + √(2 D(X, t)) dW with diagonal D, and samplers for ensembles of its paths.

    Parameters
    ----------
    drift : number, Polynomial, array, callable or sequence
        A. 1-D: a number, a ``numpy.polynomial.Polynomial`` in x, an array on ``grid`` (linearly
        interpolated), a numba-jitted ``f(x, t)`` of scalars, or a vectorised numpy ``f(x, t)``. d-D: a number,
        a callable ``f(x, y[, z], t)`` returning d components (a tuple of d arrays, or one array of shape
        (d, n_points): components first; points first is refused), a sequence of d coefficients, or an array of
        shape (d, *grid.shape). The module docstring says which forms run in the compiled kernels.
    diffusion : same forms as ``drift``
        D ≥ 0 (not σ: the noise amplitude is √(2D)); diagonal in d-D (a number is isotropic).
    ndim : int, optional
        Dimension; taken from ``grid``, from sequence lengths, or 1.
    grid : Grid, optional
        The grid array coefficients live on; also the default ``domain`` of walls.
    diffusion_derivative : coefficient, optional
        ∂D/∂x (1-D) for Milstein and Heun; computed when omitted (exactly for polynomials, by differences of
        the table for arrays, by central differences for functions).
    alpha : float, optional
        Symmetric α-stable noise instead of Brownian, α ∈ (0, 2]: increments (D Δt)^(1/α) S with S of
        characteristic function exp(−|u|^α) (Chambers-Mallows-Stuck). α = 2 gives N(0, 2DΔt), the Gaussian
        case. Only ``method="euler"``; the density then follows a fractional FP, not ``FokkerPlanck``.
    bc : {"none", "reflecting", "absorbing", "periodic"}
        Walls at the ends of ``domain`` (all axes alike). Reflected paths are mirrored back; absorbed paths
        are stopped, marked in ``Paths.absorbed_at`` and carry NaN afterwards (never dropped silently).
    domain : (lo, hi), optional
        Wall positions (numbers in 1-D, sequences in d-D; ±inf for a single wall). Default: the grid's bounds.

    Notes
    -----
    Methods (``sample(method=...)``): ``"euler"`` (Euler-Maruyama, strong order ½, weak 1), ``"milstein"``
    (adds ½ ∂D/∂x (ΔW² − Δt), since b b′ = D′ for b = √(2D); strong order 1 in 1-D; in d-D the diagonal term
    ½ ∂ᵢDᵢᵢ (ΔWᵢ² − Δt) only, which is order 1 when Dᵢᵢ depends on xᵢ alone, as Lévy areas are not
    simulated), ``"heun"`` (stochastic Heun, a predictor-corrector that converges to the *Stratonovich*
    solution of the SDE it is given; fpkit gives it the Stratonovich form of our Itô SDE, drift
    Aᵢ − ½ b ∂ᵢb = Aᵢ − ½ ∂ᵢDᵢᵢ with the same b = √(2D), so it converges to the same Itô process as the
    others; strong order 1 for diagonal noise, weak order 2 for additive noise), and ``"baoab"`` for
    underdamped Langevin (see ``SDE.underdamped``).
    """

    def __init__(
        self,
        drift: Any,
        diffusion: Any,
        *,
        ndim: int | None = None,
        grid: Grid | None = None,
        diffusion_derivative: Any = None,
        alpha: float | None = None,
        bc: str = "none",
        domain: Sequence | None = None,
    ):
        if grid is not None and not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        self.grid = grid
        self.ndim = self._infer_ndim(ndim, grid, drift, diffusion)
        self.bc = check_choice("bc", bc, BOUNDARY_CONDITIONS)
        self.lo, self.hi = self._resolve_domain(domain)
        if alpha is not None:
            a = check_positive("alpha", alpha)
            if a > 2.0:
                raise ConfigError(f"`alpha` must be in (0, 2], got {alpha!r}")
            alpha = a
        self.alpha = alpha
        self.mass = self.friction = self.temperature = None
        self._build(drift, diffusion, diffusion_derivative, drift_scale=1.0)

    # --- construction ---------------------------------------------------------------------------------
    @classmethod
    def underdamped(
        cls,
        force: Any,
        *,
        mass: float = 1.0,
        friction: float = 1.0,
        temperature: float = 1.0,
        ndim: int | None = None,
        grid: Grid | None = None,
        bc: str = "none",
        domain: Sequence | None = None,
    ) -> SDE:
        """Underdamped Langevin dynamics dx = v dt, m dv = F(x, t) dt − γ m v dt + √(2 γ m kT) dW.

        Sample it with ``method="baoab"``. The object also stands for its overdamped (Smoluchowski) limit
        A = F/(mγ), D = kT/(mγ): ``fokker_planck`` returns that FP, whose stationary state exp(−U/kT) is the
        exact stationary position marginal of the underdamped dynamics for F = −∇U. ``temperature`` is kT.

        Parameters
        ----------
        force : number, array or callable
            F(x, t) (units of mass·x per t²); a vectorised callable like a drift.
        mass : float
            m > 0.
        friction : float
            γ > 0 (per unit t).
        temperature : float
            kT > 0 (units of mass·x² per t²).
        ndim : int, optional
            Dimension of x (inferred from the force or grid when not given).
        grid : fpkit.Grid, optional
            A grid for tabulated forces and for walls.
        bc : str
            Walls for x: ``"none"``, ``"reflecting"``, ``"absorbing"`` or ``"periodic"``.
        domain : sequence, optional
            The walls' positions when there is no grid.

        Returns
        -------
        SDE
            The problem; sample it with ``method="baoab"``.
        """
        m = check_positive("mass", mass)
        g = check_positive("friction", friction)
        kt = check_positive("temperature", temperature)
        self = cls.__new__(cls)
        if grid is not None and not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        self.grid = grid
        self.ndim = cls._infer_ndim(ndim, grid, force, 1.0)
        self.bc = check_choice("bc", bc, BOUNDARY_CONDITIONS)
        self.lo, self.hi = self._resolve_domain(domain)
        self.alpha = None
        self.mass, self.friction, self.temperature = m, g, kt
        self._build(force, kt / (m * g), None, drift_scale=1.0 / (m * g))
        return self

    @staticmethod
    def _infer_ndim(ndim, grid, drift, diffusion) -> int:
        if ndim is not None:
            if int(ndim) != ndim or not 1 <= int(ndim) <= 3:
                raise ConfigError(f"`ndim` must be 1, 2 or 3, got {ndim!r}")
            nd = int(ndim)
        elif grid is not None:
            nd = grid.ndim
        else:
            lens = [len(v) for v in (drift, diffusion) if isinstance(v, (list, tuple))]
            nd = lens[0] if lens else 1
        if grid is not None and grid.ndim != nd:
            raise ConfigError(f"`grid` is {grid.ndim}-D but `ndim` is {nd}")
        return nd

    def _resolve_domain(self, domain):
        nd = self.ndim
        if domain is None:
            if self.grid is not None:
                return np.array(self.grid.lo, float), np.array(self.grid.hi, float)
            if self.bc != "none":
                raise ConfigError(
                    f"`bc`={self.bc!r} needs the wall positions: pass `domain=(lo, hi)` or `grid`"
                )
            return np.full(nd, -np.inf), np.full(nd, np.inf)
        try:
            lo, hi = domain
            lo = np.broadcast_to(np.asarray(lo, float), (nd,)).copy()
            hi = np.broadcast_to(np.asarray(hi, float), (nd,)).copy()
        except (TypeError, ValueError):
            raise ConfigError(
                f"`domain` must be (lo, hi) with 1 or {nd} values each, got {domain!r}"
            ) from None
        if np.any(np.isnan(lo)) or np.any(np.isnan(hi)) or np.any(lo >= hi):
            raise ConfigError(f"`domain` needs lo < hi on every axis, got lo={lo}, hi={hi}")
        if self.bc == "periodic" and not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ConfigError("`bc`='periodic' needs a finite `domain`")
        return lo, hi

    def _build(self, drift, diffusion, diffusion_derivative, drift_scale):
        self._drift_value, self._diffusion_value = drift, diffusion
        if self.ndim == 1:
            self.drift = _Coef1D(drift, "drift", self.grid, nonnegative=False, scale=drift_scale)
            self.diffusion = _Coef1D(diffusion, "diffusion", self.grid, nonnegative=True)
            if diffusion_derivative is not None:
                self.ddiffusion = _Coef1D(
                    diffusion_derivative, "diffusion_derivative", self.grid, nonnegative=False
                )
            else:
                self.ddiffusion = self.diffusion.derivative()
        else:
            if isinstance(drift, Polynomial) or isinstance(diffusion, Polynomial):
                raise ConfigError("Polynomial coefficients are 1-D only; in d-D pass a callable")
            self.drift = _CoefND(drift, "drift", self.ndim, self.grid, nonnegative=False, scale=drift_scale)
            self.diffusion = _CoefND(diffusion, "diffusion", self.ndim, self.grid, nonnegative=True)
            self.ddiffusion = None
            if diffusion_derivative is not None:
                self.ddiffusion = _CoefND(diffusion_derivative, "diffusion_derivative", self.ndim, self.grid,
                                          nonnegative=False)  # fmt: skip

    # --- conversion -------------------------------------------------------------------------------------
    def fokker_planck(self, grid: Grid, bc: str | None = None, **kwargs):
        """The Fokker-Planck problem for this SDE's density on ``grid`` (an ``fpkit.FokkerPlanck``).

        ``bc`` defaults to this SDE's walls; an SDE without walls gets ``"reflecting"`` at the grid's ends (so
        pick a grid wide enough that the density never reaches them). Walls must sit at the grid's bounds.
        Extra keyword arguments go to ``FokkerPlanck``. For ``SDE.underdamped`` this is the overdamped limit.

        Parameters
        ----------
        grid : fpkit.Grid
            The grid of the density.
        bc : str, optional
            Walls (default this SDE's).
        **kwargs
            Passed to ``FokkerPlanck``.

        Returns
        -------
        fpkit.FokkerPlanck
            The problem ∂t p = −∇·(A p) + ∇·∇·(D p).
        """
        from .fokker_planck import FokkerPlanck

        if not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        if grid.ndim != self.ndim:
            raise ConfigError(f"`grid` is {grid.ndim}-D, the SDE is {self.ndim}-D")
        if self.alpha is not None:
            raise ConfigError(
                "α-stable noise has a fractional Fokker-Planck equation; FokkerPlanck is for α = None"
            )
        if bc is None:
            bc = "reflecting" if self.bc == "none" else self.bc
        check_choice("bc", bc, BOUNDARY_CONDITIONS[1:])
        if self.bc != "none":
            lo, hi = np.array(grid.lo), np.array(grid.hi)
            finite = np.isfinite(self.lo) & np.isfinite(self.hi)
            scale = np.maximum(1.0, np.abs(hi - lo))
            if not (np.all(finite) and np.allclose(self.lo, lo, atol=1e-12 * scale.max()) and
                    np.allclose(self.hi, hi, atol=1e-12 * scale.max())):  # fmt: skip
                raise ConfigError(
                    f"the SDE's walls are at lo={self.lo.tolist()}, hi={self.hi.tolist()} but `grid` spans "
                    f"lo={list(grid.lo)}, hi={list(grid.hi)}: use a grid with the walls' bounds"
                )
        drift = self.drift.for_fokker_planck(grid)
        diffusion = self.diffusion.for_fokker_planck(grid)
        return FokkerPlanck(grid, drift=drift, diffusion=diffusion, bc=bc, **kwargs)

    # --- sampling ---------------------------------------------------------------------------------------
    def sample(
        self,
        x0: Any,
        t_eval: Sequence[float],
        n_paths: int | None = None,
        *,
        method: str = "euler",
        dt: float | None = None,
        seed: int = 0,
        t0: float = 0.0,
        v0: Any = None,
        engine: str = "auto",
        show_progress: bool = False,
    ) -> Paths:
        """Simulate ``n_paths`` independent paths from time ``t0`` and record them at ``t_eval``.

        Parameters
        ----------
        x0 : number, array or (Grid, density)
            A starting point (all paths), an array of starting points (shape (n_paths,) in 1-D,
            (n_paths, d) in d-D), or a tuple ``(grid, p)`` with a density on a grid to draw them from
            (piecewise constant in each cell, as a finite-volume density).
        t_eval : sequence of float
            Non-decreasing recording times ≥ ``t0`` (model time units).
        n_paths : int, optional
            Number of paths; taken from ``x0`` when it is an array.
        method : {"euler", "milstein", "heun", "baoab"}
            See the class notes. ``"baoab"`` needs ``SDE.underdamped``.
        dt : float, optional
            Largest time step. Each stretch between recording times is cut into the fewest equal steps not
            longer than ``dt``, so recordings fall on step ends. Default: 1/1000 of the span.
        seed : int
            Seed of the per-path random streams (bit-identical results whatever the thread count).
        t0 : float
            Time of ``x0``.
        v0 : number or array, optional
            Initial velocities for ``"baoab"``; default drawn from Maxwell-Boltzmann, N(0, kT/m).
        engine : {"auto", "kernel", "numpy"}
            ``"auto"`` runs the compiled kernels when every coefficient allows (module docstring), else the
            vectorised numpy loop; ``"numpy"`` forces the loop (a reference for tests).
        show_progress : bool
            A progress bar over the model time (shown only on a terminal).

        Returns
        -------
        Paths
            ``t`` (n_t,), ``x`` (n_t, n_paths[, d]), ``absorbed_at`` (n_paths,), ``v`` for BAOAB.

        Raises
        ------
        ConfigError
            Bad arguments, or D negative / drift non-finite at the starting points.
        StabilityError
            A path turned non-finite or met a negative D during the run; ``.time`` is when it first did.
        """
        method = check_choice("method", method, METHODS)
        engine = check_choice("engine", engine, ENGINES)
        t_eval = check_times(t_eval, t0, strict=False)  # t0 a finite number too
        t0 = float(t0)
        span = float(t_eval[-1] - t0)
        if dt is None:
            dt = span / 1000.0 if span > 0 else 1.0
        dt = check_positive("dt", dt)
        seed = check_seed(seed)
        if method != "euler" and self.alpha is not None:
            raise ConfigError(f"`method`={method!r} is not defined for α-stable noise: use method='euler'")
        if method == "baoab" and self.friction is None:
            raise ConfigError(
                "`method`='baoab' needs an underdamped SDE: build it with SDE.underdamped(force, ...)"
            )
        x = self._initial_points(x0, n_paths, seed, t0)
        n = x.shape[0]
        coefs = [self.drift, self.diffusion]
        if method in ("milstein", "heun") and self.ddiffusion is not None:
            coefs.append(self.ddiffusion)
        use_kernel = engine != "numpy" and self.ndim == 1
        if use_kernel:
            for c in coefs:  # no short cut: every plain callable is compiled (or explained) now
                ok = c.compiled and c.verify(x, t0)
                if not ok and engine == "auto":
                    explain_fallback(c.name, c.value, c.why_not, "SDE.sample")
                use_kernel = use_kernel and ok
        if engine == "kernel" and not use_kernel:
            why = "; ".join(f"`{c.name}`: {c.why_not}" for c in coefs if getattr(c, "why_not", None))
            raise ConfigError(
                "`engine`='kernel' needs a 1-D SDE whose coefficients are numbers, Polynomials, arrays on a grid "
                "or functions numba can compile" + (f" ({why})" if why else "") + "; use engine='auto'"
            )
        state = seed_streams(seed, n)
        absorbed_at = np.full(n, np.inf)
        err_time = np.full(n, np.nan)
        err_code = np.zeros(n, np.int8)
        v = None
        if method == "baoab":
            v = self._initial_velocities(v0, x.shape, seed)
        xs = np.empty((t_eval.size, *x.shape))
        vs = None if v is None else np.empty((t_eval.size, *x.shape))
        wall = _WALL_CODE[self.bc]
        lo, hi = (float(self.lo[0]), float(self.hi[0])) if self.ndim == 1 else (self.lo, self.hi)
        alpha = 2.0 if self.alpha is None else self.alpha
        if method == "baoab":

            def advance(x, t, h, n):
                self._run_baoab(use_kernel, x, v, t, h, n, wall, lo, hi, state, absorbed_at, err_time,
                                err_code)  # fmt: skip
                return x

        else:

            def advance(x, t, h, n):
                self._run_overdamped(use_kernel, method, x, t, h, n, alpha, wall, lo, hi, state, absorbed_at,
                                     err_time, err_code)  # fmt: skip
                return x

        def record(i, x):
            xs[i] = x
            if vs is not None:
                vs[i] = v

        def check(x, t):
            self._raise_on_errors(err_time, err_code, x)

        with progress(span, "paths", unit="t") if show_progress else contextlib.nullcontext() as bar:
            advance_to_outputs(x, t_eval, advance, record, t0=t0, dt=dt, check=check, bar=bar)
        meta = {
            "problem": self.describe(),
            "method": method,
            "dt": dt,
            "seed": seed,
            "n_paths": n,
            "t0": t0,
            "engine": "kernel" if use_kernel else "numpy",
        }
        return Paths(t_eval, xs, absorbed_at=absorbed_at, v=vs, meta=meta, grid=self.grid)

    # --- sampling helpers ---------------------------------------------------------------------------------
    def _initial_points(self, x0, n_paths, seed, t0) -> np.ndarray:
        nd = self.ndim
        if n_paths is not None:
            if isinstance(n_paths, bool) or int(n_paths) != n_paths or int(n_paths) < 1:
                raise ConfigError(f"`n_paths` must be an integer >= 1, got {n_paths!r}")
            n_paths = int(n_paths)
        if isinstance(x0, tuple) and len(x0) == 2 and isinstance(x0[0], Grid):
            if n_paths is None:
                raise ConfigError("`n_paths` is needed to draw starting points from a density")
            x = self._draw_from_density(x0[0], x0[1], n_paths, seed)
        else:
            arr = np.asarray(x0, dtype=float)
            point_shape = () if nd == 1 else (nd,)
            if arr.shape == point_shape:
                if n_paths is None:
                    raise ConfigError("`n_paths` is needed when `x0` is a single point")
                x = np.broadcast_to(arr, (n_paths, *point_shape)).copy()
            elif arr.ndim == len(point_shape) + 1 and arr.shape[1:] == point_shape:
                if n_paths is not None and n_paths != arr.shape[0]:
                    hint = " (this SDE is 1-D: pass `ndim` for d-D callables)" if nd == 1 else ""
                    raise ConfigError(
                        f"`x0` holds {arr.shape[0]} starting points but `n_paths`={n_paths}{hint}"
                    )
                if arr.shape[0] < 1:
                    raise ConfigError("`n_paths` must be >= 1: `x0` is empty")
                x = arr.copy()
            else:
                want = "a number" if nd == 1 else f"a point of {nd} coordinates"
                raise ConfigError(
                    f"`x0` must be {want}, an array of shape (n_paths{', ' + str(nd) if nd > 1 else ''}) "
                    f"or (grid, density); got shape {arr.shape}"
                )
            if not np.all(np.isfinite(x)):
                raise ConfigError("`x0` contains non-finite values")
        if self.bc != "none":
            inside = np.all((x.reshape(len(x), -1) >= self.lo) & (x.reshape(len(x), -1) <= self.hi), axis=1)
            if not inside.all():
                raise ConfigError(
                    f"`x0` has {int((~inside).sum())} points outside the domain [{self.lo.tolist()}, {self.hi.tolist()}]"
                )
        # bad input found at the start is the caller's to fix: say so before any kernel runs
        a = self.drift(x, t0)
        if not np.all(np.isfinite(a)):
            raise ConfigError(
                f"`drift` is non-finite at {int((~np.isfinite(a)).sum())} starting points (t={t0})"
            )
        d = self.diffusion(x, t0)
        bad_d = (d < 0) | ~np.isfinite(d)
        if bad_d.ndim > 1:
            bad_d = bad_d.any(axis=-1)
        if bad_d.any():
            where = x[np.flatnonzero(bad_d)[0]]
            raise ConfigError(
                f"`diffusion` must be finite and >= 0 (it is D, not σ); at x={where} it is not (t={t0})"
            )
        return np.ascontiguousarray(x)

    def _draw_from_density(self, grid: Grid, p, n: int, seed: int) -> np.ndarray:
        if grid.ndim != self.ndim:
            raise ConfigError(f"`x0` density is on a {grid.ndim}-D grid, the SDE is {self.ndim}-D")
        if grid.kind != "uniform":
            raise ConfigError("`x0` densities must be on a Grid.uniform")
        p = grid.normalise(np.asarray(p, dtype=float), "x0 density")
        cdf = np.cumsum(p.ravel())
        u = np.empty((n, 1 + grid.ndim))
        K.draw_uniforms(seed_streams(derive_seed(seed, 1), n), u)
        cell = np.minimum(np.searchsorted(cdf, u[:, 0] * cdf[-1], side="right"), cdf.size - 1)
        idx = np.unravel_index(cell, grid.shape)
        pts = np.empty((n, grid.ndim))
        for a in range(grid.ndim):
            pts[:, a] = grid.lo[a] + (idx[a] + u[:, 1 + a]) * grid.dx[a]
        return pts[:, 0].copy() if self.ndim == 1 else pts

    def _initial_velocities(self, v0, shape, seed) -> np.ndarray:
        if v0 is None:
            z = np.empty((shape[0], 1 if len(shape) == 1 else shape[1]))
            draw_normals(seed_streams(derive_seed(seed, 2), shape[0]), z)
            v = math.sqrt(self.temperature / self.mass) * z
            return np.ascontiguousarray(v[:, 0] if len(shape) == 1 else v)
        v = np.asarray(v0, dtype=float)
        try:
            v = np.broadcast_to(v, shape).copy()
        except ValueError:
            raise ConfigError(
                f"`v0` must be a number or have the shape of the starting points {shape}"
            ) from None
        if not np.all(np.isfinite(v)):
            raise ConfigError("`v0` contains non-finite values")
        return v

    def _run_overdamped(self, use_kernel, method, x, t, h, n_steps, alpha, wall, lo, hi, state, absorbed_at,
                        err_time, err_code):  # fmt: skip
        if use_kernel:
            am, ap, af = self.drift.spec()
            dm, dp, df = self.diffusion.spec()
            if self.ddiffusion is None:
                ddm, ddp, ddf = K.NUMERIC, np.zeros(1), None
            else:
                ddm, ddp, ddf = self.ddiffusion.spec()
            if method == "euler" and alpha == 2.0 and dm == K.CONST and wall == K.NO_WALL:
                if am in (K.CONST, K.POLY):
                    K.em_poly_free_stretch(x, t, h, n_steps, ap, float(dp[0]), state, err_time, err_code)
                    return
                if am == K.FUNC:
                    K.em_func_free_stretch(x, t, h, n_steps, float(ap[0]), af, self.drift.block_pointer(),
                                           float(dp[0]), state, err_time, err_code)  # fmt: skip
                    return
            if method == "euler" and alpha == 2.0 and dm == K.CONST:
                K.em_additive_stretch(x, t, h, n_steps, am, ap, af, float(dp[0]), wall, lo, hi, state, absorbed_at,
                                      err_time, err_code)  # fmt: skip
                return
            fns = (af, df, ddf)
            if any(f is not None for f in fns):
                # all three must share one type: fill the unused slots with the no-op pointer
                af, df, ddf = (K.NO_FUNCTION if f is None else f for f in fns)
            K.overdamped_stretch(_METHOD_CODE[method], x, t, h, n_steps, am, ap, af, dm, dp, df, ddm, ddp, ddf,
                                 alpha, wall, lo, hi, state, absorbed_at, err_time, err_code)  # fmt: skip
            return
        snap = self._snapshot_arrays() if method == "euler" and alpha == 2.0 and x.ndim == 1 else None
        if snap is not None:  # estimated coefficients (the FP prediction's Langevin cross-check): compiled
            K.euler_snapshots_1d(x, t, h, n_steps, *snap, wall, lo, hi, state, absorbed_at, err_time, err_code)
            return
        dd = self._ddiffusion_vectorised() if method in ("milstein", "heun") else None
        K.integrate_vectorised(_METHOD_CODE[method], x, t, h, n_steps, self.drift, self.diffusion, dd, alpha,
                               wall, lo, hi, state, absorbed_at, err_time, err_code)  # fmt: skip

    def _snapshot_arrays(self):
        """(ts, values, nodes) of the drift then of the diffusion when both are 1-D ``SnapshotInterpolator``s on
        uniform grids (unscaled), for ``sde_kernels.euler_snapshots_1d`` (the numpy loop's bits); else None."""
        from .estimators.series import SnapshotInterpolator

        out = ()
        for c in (self.drift, self.diffusion):
            f = getattr(c, "value", None)
            arrays = f.uniform_1d() if isinstance(f, SnapshotInterpolator) and c.scale == 1.0 else None
            if arrays is None:
                return None
            out += arrays
        return out

    def _ddiffusion_vectorised(self):
        """∂ᵢDᵢᵢ as a vectorised callable (exact where known, central differences otherwise)."""
        if self.ddiffusion is not None:
            return self.ddiffusion
        diff = self.diffusion
        if self.ndim == 1:

            def dd1(x, t):
                hx = _NUMERIC_STEP * np.maximum(1.0, np.abs(x))
                return (diff(x + hx, t) - diff(x - hx, t)) / (2.0 * hx)

            return dd1

        def ddn(x, t):
            out = np.empty_like(x)
            for a in range(x.shape[1]):
                hx = _NUMERIC_STEP * np.maximum(1.0, np.abs(x[:, a]))
                xp, xm = x.copy(), x.copy()
                xp[:, a] += hx
                xm[:, a] -= hx
                out[:, a] = (diff(xp, t)[:, a] - diff(xm, t)[:, a]) / (2.0 * hx)
            return out

        return ddn

    def _run_baoab(
        self, use_kernel, x, v, t, h, n_steps, wall, lo, hi, state, absorbed_at, err_time, err_code
    ):
        d_const = self.temperature / (self.mass * self.friction)
        if use_kernel:
            am, ap, af = self.drift.spec()
            K.baoab_stretch(x, v, t, h, n_steps, am, ap, af, self.friction, d_const, wall, lo, hi, state,
                            absorbed_at, err_time, err_code)  # fmt: skip
            return
        K.baoab_vectorised(x, v, t, h, n_steps, self.drift, self.friction, d_const, wall, lo, hi, state,
                           absorbed_at, err_time, err_code)  # fmt: skip

    @staticmethod
    def _raise_on_errors(err_time, err_code, x):
        failed = np.flatnonzero(err_code)
        if failed.size == 0:
            return
        first = failed[np.argmin(err_time[failed])]
        t = float(err_time[first])
        what = (
            "met a negative or non-finite diffusion D"
            if err_code[first] == K.ERR_NEGATIVE_D
            else "turned non-finite (the drift or D blew up, or the step is too large)"
        )
        raise StabilityError(
            f"{failed.size} path(s) failed; the first, path {first}, {what} at t={t:.6g}. "
            "Check the coefficients there or reduce `dt`.",
            time=t,
        )

    def describe(self) -> dict:
        """The resolved problem, stored in results files.

        Returns
        -------
        dict
            The equation (Itô), dimension, coefficients and walls.
        """
        d = {
            "equation": "dX = A dt + sqrt(2 D) dW (Ito)",
            "ndim": self.ndim,
            "drift": self.drift.describe(),
            "diffusion": self.diffusion.describe(),
            "alpha": self.alpha,
            "bc": self.bc,
            "domain": [self.lo.tolist(), self.hi.tolist()],
        }
        if self.friction is not None:
            d.update(mass=self.mass, friction=self.friction, temperature=self.temperature)
        return d

    def __repr__(self) -> str:
        return f"SDE(drift={self.drift.describe()}, diffusion={self.diffusion.describe()}, ndim={self.ndim})"


def sde_from_fokker_planck(fp) -> SDE:
    """The SDE whose density the Fokker-Planck problem ``fp`` evolves (for ``FokkerPlanck.sde()``).

    Coefficients are passed on unchanged (numbers, arrays on ``fp.grid``, callables); the walls are
    ``fp``'s boundary conditions at the grid's bounds. Full (non-diagonal) diffusion tensors are refused.
    """
    bcs = tuple(fp.bc)
    if len(set(bcs)) != 1:
        raise ConfigError(f"SDE walls are the same on all axes; this FokkerPlanck has bc={bcs}")
    if getattr(fp, "_full_tensor", False):
        raise ConfigError("SDE supports diagonal diffusion only; this FokkerPlanck has a full tensor")
    drift, diffusion = fp._drift_spec, fp._diffusion_spec
    return SDE(drift, diffusion, grid=fp.grid, bc=bcs[0])
