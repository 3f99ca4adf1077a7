"""The Callan-Symanzik (CS) equation: running couplings, fixed points, Landau poles, and its solution.

The equation, for a function ``G(g, s)`` of one or several couplings ``g`` and the running scale ``s``::

    [∂s + β(g)·∇g + γ(g)] G = κ ∇g² G,

with the beta function β (one component per coupling), the anomalous dimension γ and a diffusion κ ≥ 0 in
coupling space. For κ = 0 it is solved exactly along characteristics: the running coupling obeys
``dḡ/ds = β(ḡ)`` and, along it, ``G`` picks up the factor ``exp(−∫γ(ḡ) ds)``. So ``G(g, s) = G0(g₀) ·
exp(−∫₀ˢ γ(ḡ) ds')``, where ``ḡ`` is the characteristic with ``ḡ(0) = g₀`` and ``ḡ(s) = g``.

A Fokker-Planck equation with constant D is a CS equation with s = t, β = A, γ = ∂A and κ = D
(see ``docs/derivations.md`` and ``fpkit.derived_forms``).

Sign conventions: s increases in the direction the equation is solved (the FP time); a fixed point g* with
β'(g*) < 0 attracts the running coupling as s → +∞ and is called ``"stable"``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .coefficients import check_components, check_values
from .errors import ConfigError, LandauPoleError, StabilityError, check_choice, check_positive
from .grid import Grid
from .results import Result
from .solvers import transport as tr
from .solvers.characteristics import integrate_characteristics
from .solvers.time_stepping import advance_to_outputs, require_finite, stepwise

__all__ = ["CSSolution", "CallanSymanzik", "FixedPoint", "LandauPoleError"]

METHODS = ("characteristics", "upwind", "semi-lagrangian")


# --- results -------------------------------------------------------------------------------------------
class CSSolution(Result):
    """Values of ``G`` at the scales ``s``.

    Attributes
    ----------
    s : ndarray (n_s,)
        Running scales.
    G : ndarray
        ``(n_s, *grid.shape)`` at the grid nodes, or ``(n_s, m)`` at the ``points`` asked for.
    points : ndarray or None
        The evaluation points (``(m,)`` in 1-D, ``(m, ndim)`` otherwise), None for grid nodes.
    grid : Grid
    meta : dict
        Method, step sizes, limiter, coefficient descriptions.
    """

    kind = "fpkit.CSSolution"
    _datasets = ("s", "G", "points")

    def __init__(self, s, G, grid: Grid, points=None, meta: dict | None = None):
        self.s = np.asarray(s, dtype=float)
        self.G = np.asarray(G)
        self.grid = grid
        self.points = None if points is None else np.asarray(points, dtype=float)
        self.meta = dict(meta or {})

    @classmethod
    def _from_stored(cls, fields, meta, grid):
        return cls(fields["s"], fields["G"], grid, fields.get("points"), meta)

    def __len__(self) -> int:
        return self.s.size

    def __repr__(self) -> str:
        return f"CSSolution(n_s={self.s.size}, grid={self.grid!r}, method={self.meta.get('method')!r})"

    def at(self, points, index: int = -1) -> np.ndarray:
        """``G`` at arbitrary points (1-D grid-node solutions only) at the stored scale ``s[index]``, by cubic
        Lagrange interpolation between nodes (nearest end value beyond the grid)."""
        if self.points is not None or self.grid.ndim != 1:
            raise ConfigError("`at` interpolates 1-D grid-node solutions; pass `points=` to solve instead")
        return tr.cubic_interpolate(self.G[index], self.grid.lo[0], self.grid.dx[0], np.asarray(points))


@dataclass(frozen=True)
class FixedPoint:
    """A zero of the beta function.

    Attributes
    ----------
    g : float or ndarray
        The fixed point g*.
    slope : float or ndarray
        β'(g*) in 1-D; the eigenvalues of the stability matrix ∂βᵢ/∂gⱼ at g* with several couplings.
        Near g*, ``ḡ − g* ∝ exp(slope · s)``: the critical exponents.
    stability : str
        ``"stable"`` (attracts the running coupling as s → +∞), ``"unstable"``, ``"semi-stable"`` (1-D marginal
        point attracting from one side), ``"saddle"`` or ``"marginal"`` (several couplings).
    anomalous_dimension : float
        γ(g*): at the fixed point G scales as ``exp(−γ(g*) s)``.
    marginal : bool
        β'(g*) vanishes (to round-off): the approach is a power law in s, not exponential.
    """

    g: Any
    slope: Any
    stability: str
    anomalous_dimension: float
    marginal: bool = False


# --- coefficient wrapping ------------------------------------------------------------------------------
def _describe(v) -> str:
    if callable(v):
        return getattr(v, "__qualname__", repr(v))
    if np.ndim(v) == 0:
        return repr(float(v))
    return f"array{np.shape(v)}"


class CallanSymanzik:
    """The Callan-Symanzik equation ``[∂s + β(g)·∇g + γ(g)] G = κ ∇g² G``.

    Parameters
    ----------
    grid : Grid
        Coupling space: a 1-D grid (grid solvers and characteristics) or a 2-/3-D grid for several couplings
        (characteristics only). Cell centres are the nodes where ``G`` is reported.
    beta : number, ndarray or callable
        The beta function. A callable is vectorised: ``beta(g)`` in 1-D, ``beta(g1, g2[, g3])`` returning the
        components as a sequence/array of shape ``(ndim, ...)`` with several couplings; with
        ``scale_dependent=True`` it takes the scale as a last argument, ``beta(g, s)``. A number is the same
        constant for every component. A 1-D array on the grid is interpolated by a cubic spline.
    gamma : number, ndarray or callable
        The anomalous dimension γ(g) (same conventions, scalar-valued).
    kappa : number, ndarray or callable
        Diffusion κ ≥ 0 in coupling space (1-D grid solvers only when > 0). A 1-D array or a callable
        ``kappa(g)`` gives the non-conservative ``κ(g) ∂g² G``.
    scale_dependent : bool
        Whether the callables take the running scale ``s`` as a last argument.

    Examples
    --------
    >>> g = Grid.uniform(-1.0, 1.0, 200)
    >>> cs = CallanSymanzik(g, beta=lambda g_: -g_**3, gamma=lambda g_: g_**2)
    >>> sol = cs.solve(lambda g_: np.exp(-g_**2), [0.1, 0.2], method="characteristics")
    """

    def __init__(
        self, grid: Grid, beta: Any, gamma: Any = 0.0, kappa: Any = 0.0, *, scale_dependent: bool = False
    ):
        if not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        if grid.kind != "uniform":
            raise ConfigError(f"`grid` must be a uniform grid (Grid.uniform), got kind {grid.kind!r}")
        self.grid = grid
        self.ndim = grid.ndim
        self.scale_dependent = bool(scale_dependent)
        self._beta_spec, self._gamma_spec, self._kappa_spec = beta, gamma, kappa
        self._beta = self._wrap(beta, "beta", vector=True)
        self._gamma = self._wrap(gamma, "gamma", vector=False)
        self._kappa_nodes = self._kappa(kappa)
        # validate the callables once on the nodes (shape and finiteness), so errors surface here
        nodes = self._nodes()
        for name, fn, shape in (
            ("beta", self._beta, (self.ndim, nodes.shape[1])),
            ("gamma", self._gamma, None),
        ):
            vals = fn(nodes, 0.0)
            want = shape if shape is not None else (nodes.shape[1],)
            if vals.shape != want:
                raise ConfigError(f"`{name}` returned shape {vals.shape} on the grid, expected {want}")
            if not np.all(np.isfinite(vals)):
                raise ConfigError(f"`{name}` has non-finite values on the grid")

    # --- coefficients ------------------------------------------------------------------------------------
    def _nodes(self) -> np.ndarray:
        """Grid nodes as an array (ndim, m), C order over the grid shape."""
        return np.stack([c.ravel() for c in self.grid.meshgrid()], axis=0)

    def _wrap(self, spec: Any, name: str, vector: bool) -> Callable[[np.ndarray, float], np.ndarray]:
        nd = self.ndim
        sd = self.scale_dependent
        if callable(spec):

            def fn(y: np.ndarray, s: float) -> np.ndarray:
                args = [y[a] for a in range(nd)] + ([s] if sd else [])
                try:
                    out = spec(*args)
                except Exception as exc:
                    raise ConfigError(f"`{name}` callable failed: {exc!r}") from exc
                if vector and nd > 1:
                    return np.stack(check_components(out, nd, y.shape[1:], name, s))
                out = check_values(out, y.shape[1:], name, s)
                return out[None] if vector else out

            return fn
        if np.ndim(spec) == 0:
            try:
                c = float(spec)
            except (TypeError, ValueError):
                raise ConfigError(f"`{name}` must be a number, an array on the grid or a callable") from None
            if not math.isfinite(c):
                raise ConfigError(f"`{name}` must be finite, got {spec!r}")

            def const(y: np.ndarray, s: float) -> np.ndarray:
                return np.full(y.shape if vector else y.shape[1:], c)

            return const
        arr = np.asarray(spec, dtype=float)
        if nd != 1:
            raise ConfigError(f"`{name}` as an array is supported on 1-D grids only; pass a callable")
        if arr.shape != self.grid.shape:
            raise ConfigError(
                f"`{name}` array has shape {arr.shape}, expected the grid's shape {self.grid.shape}"
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError(f"`{name}` array has non-finite values")
        from scipy.interpolate import CubicSpline

        spline = CubicSpline(self.grid.x, arr, extrapolate=True)

        def interp(y: np.ndarray, s: float) -> np.ndarray:
            out = spline(y[0])
            return out[None] if vector else out

        return interp

    def _kappa(self, spec: Any) -> np.ndarray:
        if callable(spec):
            try:
                out = spec(*self.grid.meshgrid())
            except Exception as exc:
                raise ConfigError(f"`kappa` callable failed: {exc!r}") from exc
            vals = check_values(out, self.grid.shape, "kappa", 0.0)
        elif np.ndim(spec) == 0:
            vals = np.full(self.grid.shape, check_positive("kappa", spec, strict=False))
        else:
            vals = np.asarray(spec, dtype=float)
            if vals.shape != self.grid.shape:
                raise ConfigError(f"`kappa` array has shape {vals.shape}, expected {self.grid.shape}")
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ConfigError("`kappa` must be finite and >= 0 everywhere")
        return np.ascontiguousarray(vals, dtype=float)

    @property
    def has_diffusion(self) -> bool:
        """Whether κ > 0 somewhere (then characteristics alone do not solve the problem)."""
        return bool(np.any(self._kappa_nodes > 0))

    def beta(self, g, s: float = 0.0) -> np.ndarray:
        """β at points ``g`` (shape ``(...)`` in 1-D, ``(..., ndim)`` otherwise); same shape back.

        Parameters
        ----------
        g : float or array
            Couplings.
        s : float
            The scale.

        Returns
        -------
        array
            β(g, s).
        """
        y = self._as_points(g, "g")
        out = self._beta(y.reshape(self.ndim, -1), float(s))
        return self._from_points(out, np.shape(g))

    def gamma(self, g, s: float = 0.0) -> np.ndarray:
        """γ at points ``g`` (shape ``(...)`` in 1-D, ``(..., ndim)`` otherwise).

        Parameters
        ----------
        g : float or array
            Couplings.
        s : float
            The scale.

        Returns
        -------
        array
            γ(g, s), the shape of the points.
        """
        y = self._as_points(g, "g")
        return self._gamma(y.reshape(self.ndim, -1), float(s)).reshape(self._lead_shape(g))

    def _lead_shape(self, g) -> tuple:
        shp = np.shape(g)
        return shp if self.ndim == 1 else shp[:-1]

    def _as_points(self, g, name: str) -> np.ndarray:
        """User points → array (ndim, m)."""
        arr = np.asarray(g, dtype=float)
        if self.ndim == 1:
            flat = arr.reshape(1, -1)
        else:
            if arr.ndim == 0 or arr.shape[-1] != self.ndim:
                raise ConfigError(f"`{name}` must have shape (..., {self.ndim}) for {self.ndim} couplings")
            flat = arr.reshape(-1, self.ndim).T
        if not np.all(np.isfinite(flat)):
            raise ConfigError(f"`{name}` must be finite")
        return np.ascontiguousarray(flat)

    def _from_points(self, y: np.ndarray, shape: tuple) -> np.ndarray:
        """Array (ndim, m) → user layout (``shape`` in 1-D, ``(..., ndim)`` otherwise)."""
        if self.ndim == 1:
            return y[0].reshape(shape)
        return y.T.reshape(shape)

    # --- running coupling ---------------------------------------------------------------------------------
    def running_coupling(
        self, g0, s, *, s0: float = 0.0, rtol: float = 1e-12, atol: float = 1e-13
    ) -> np.ndarray:
        """The running coupling ḡ(s) with ``dḡ/ds = β(ḡ, s)`` and ``ḡ(s0) = g0``.

        Parameters
        ----------
        g0 : float or ndarray
            Start couplings: shape ``(...)`` in 1-D, ``(..., ndim)`` with several couplings.
        s : float or sequence of float
            Scales (either side of ``s0``).
        s0 : float
            Scale of ``g0``.
        rtol, atol : float
            Tolerances of the characteristic integrator.

        Returns
        -------
        ndarray, shape ``(len(s), *np.shape(g0))`` (a scalar ``s`` drops the first axis).

        Raises
        ------
        LandauPoleError
            If the coupling diverges between ``s0`` and a requested scale; ``.s_pole`` says where.
        """
        s_arr = np.atleast_1d(np.asarray(s, dtype=float))
        if s_arr.ndim != 1 or not np.all(np.isfinite(s_arr)):
            raise ConfigError("`s` must be a finite number or a 1-D sequence of finite numbers")
        y0 = self._as_points(g0, "g0")
        out = np.empty((s_arr.size, *y0.shape))
        for side in (1.0, -1.0):
            sel = np.nonzero((s_arr - s0) * side >= 0)[0]
            if side < 0:
                sel = sel[s_arr[sel] != s0]
            if sel.size == 0:
                continue
            order = sel[np.argsort((s_arr[sel] - s0) * side, kind="stable")]
            y, _ = integrate_characteristics(
                self._beta, None, y0, float(s0), s_arr[order], rtol=rtol, atol=atol
            )
            out[order] = y
        res = np.stack([self._from_points(o, np.shape(g0)) for o in out])
        return res[0] if np.ndim(s) == 0 else res

    def landau_pole(self, g0, s_max: float, *, s0: float = 0.0):
        """Scale at which the running coupling from ``g0`` diverges, if that happens before ``s_max``.

        Parameters
        ----------
        g0 : float or array (ndim,)
            The start coupling.
        s_max : float
            The last scale searched.
        s0 : float
            The scale of ``g0``.

        Returns
        -------
        float or None
            ``s_pole`` (estimated to the integrator's tolerance in 1-D) or None if the coupling stays finite
            up to ``s_max`` (the search runs backwards for ``s_max < s0``). ``g0`` is a single coupling point.
        """
        y0 = self._as_points(g0, "g0")
        if y0.shape[1] != 1:
            raise ConfigError("`g0` must be a single coupling point for landau_pole")
        try:
            integrate_characteristics(self._beta, None, y0, float(s0), np.array([float(s_max)]))
        except LandauPoleError as err:
            return err.s_pole
        return None

    # --- fixed points ---------------------------------------------------------------------------------------
    def fixed_points(self, bounds=None, *, n_scan: int = 4001, n_starts: int = 7) -> list[FixedPoint]:
        """Zeros of β inside ``bounds`` with their stability and the anomalous dimension γ there.

        Parameters
        ----------
        bounds : (lo, hi) or sequence of (lo, hi) per coupling, optional
            Search region; default the grid's domain.
        n_scan : int
            1-D: sample points scanned for sign changes and touching zeros (double roots).
        n_starts : int
            Several couplings: starts per axis for the root finder.

        Returns
        -------
        list of FixedPoint, sorted by position (lexicographically with several couplings).
        """
        if self.scale_dependent:
            raise ConfigError("fixed points need a scale-independent beta; `scale_dependent` is True")
        if bounds is None:
            bounds = list(zip(self.grid.lo, self.grid.hi))
        elif self.ndim == 1 and np.ndim(bounds) == 1:
            bounds = [tuple(bounds)]
        bounds = [(float(a), float(b)) for a, b in bounds]
        if len(bounds) != self.ndim or any(not (a < b) for a, b in bounds):
            raise ConfigError(f"`bounds` must be {self.ndim} pair(s) (lo, hi) with lo < hi, got {bounds}")
        if self.ndim == 1:
            return self._fixed_points_1d(*bounds[0], int(n_scan))
        return self._fixed_points_nd(bounds, int(n_starts))

    def _b1(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        return self._beta(x.reshape(1, -1), 0.0)[0].reshape(x.shape)

    def _fixed_points_1d(self, lo: float, hi: float, n_scan: int) -> list[FixedPoint]:
        from scipy.optimize import brentq, minimize_scalar

        xs = np.linspace(lo, hi, max(n_scan, 11))
        b = self._b1(xs)
        scale = float(np.max(np.abs(b))) or 1.0
        width = hi - lo
        roots: list[float] = []
        f = lambda x: float(self._b1(np.array([x]))[0])
        for i in range(xs.size):
            if b[i] == 0.0:
                roots.append(float(xs[i]))
        for i in np.nonzero(b[:-1] * b[1:] < 0)[0]:
            roots.append(brentq(f, xs[i], xs[i + 1], xtol=1e-15 * max(1.0, width), rtol=1e-15, maxiter=200))
        ab = np.abs(b)
        # touching zeros (even multiplicity): local minima of |β| without a sign change next to them
        for i in range(1, xs.size - 1):
            if ab[i] <= ab[i - 1] and ab[i] <= ab[i + 1] and b[i - 1] * b[i + 1] > 0 and b[i] * b[i - 1] > 0:
                res = minimize_scalar(
                    lambda x: abs(f(x)),
                    bounds=(xs[i - 1], xs[i + 1]),
                    method="bounded",
                    options={"xatol": 1e-12},
                )
                if abs(res.fun) <= 1e-12 * scale:
                    roots.append(float(res.x))
        roots.sort()
        uniq: list[float] = []
        for r in roots:
            if not uniq or abs(r - uniq[-1]) > 1e-8 * max(1.0, width):
                uniq.append(r)
        out = []
        h = 1e-4 * width
        for r in uniq:
            # fourth-order central difference; error ~h^4 β^(5), round-off ~1e-16 scale/h
            d = (8 * (f(r + h) - f(r - h)) - (f(r + 2 * h) - f(r - 2 * h))) / (12 * h)
            marginal = abs(d) <= 1e-7 * scale / width
            if not marginal:
                stab = "stable" if d < 0 else "unstable"
            else:
                d = 0.0
                left, right = f(r - 1e-3 * width), f(r + 1e-3 * width)
                if left > 0 and right < 0:
                    stab = "stable"
                elif left < 0 and right > 0:
                    stab = "unstable"
                else:
                    stab = "semi-stable"
            gam = float(self._gamma(np.array([[r]]), 0.0)[0])
            out.append(
                FixedPoint(g=r, slope=float(d), stability=stab, anomalous_dimension=gam, marginal=marginal)
            )
        return out

    def _fixed_points_nd(self, bounds, n_starts: int) -> list[FixedPoint]:
        from scipy.optimize import root

        nd = self.ndim
        lows = np.array([a for a, _ in bounds])
        highs = np.array([b for _, b in bounds])
        width = float(np.max(highs - lows))

        def fun(x):
            return self._beta(x.reshape(nd, 1), 0.0)[:, 0]

        def jac(x, h=1e-6):
            J = np.empty((nd, nd))
            for j in range(nd):
                e = np.zeros(nd)
                e[j] = h * max(1.0, abs(x[j]))
                J[:, j] = (fun(x + e) - fun(x - e)) / (2 * e[j])
            return J

        grids = np.meshgrid(*[np.linspace(a, b, n_starts) for a, b in bounds], indexing="ij")
        starts = np.stack([gg.ravel() for gg in grids], axis=1)
        scale = float(np.max(np.abs(self._beta(starts.T.copy(), 0.0)))) or 1.0
        found: list[np.ndarray] = []
        for x0 in starts:
            res = root(fun, x0, jac=jac, method="hybr", options={"xtol": 1e-13})
            x = res.x
            if not (np.all(np.isfinite(x)) and np.all(x >= lows) and np.all(x <= highs)):
                continue
            if np.max(np.abs(fun(x))) > 1e-10 * scale:
                continue
            if all(np.max(np.abs(x - y)) > 1e-7 * max(1.0, width) for y in found):
                found.append(x)
        found.sort(key=lambda v: tuple(v))
        out = []
        for x in found:
            ev = np.linalg.eigvals(jac(x))
            tol = 1e-7 * scale / width
            re = ev.real
            if np.all(re < -tol):
                stab = "stable"
            elif np.all(re > tol):
                stab = "unstable"
            elif np.any(re < -tol) and np.any(re > tol):
                stab = "saddle"
            else:
                stab = "marginal"
            gam = float(self._gamma(x.reshape(nd, 1), 0.0)[0])
            marg = bool(np.any(np.abs(re) <= tol))
            out.append(FixedPoint(g=x, slope=ev, stability=stab, anomalous_dimension=gam, marginal=marg))
        return out

    # --- solving ---------------------------------------------------------------------------------------------
    def solve(
        self,
        G0,
        s_eval,
        method: str = "characteristics",
        *,
        points=None,
        ds: float | None = None,
        cfl: float | None = None,
        limiter: str = "van-leer",
        inflow: Callable | None = None,
        rtol: float = 1e-12,
        atol: float = 1e-13,
    ) -> CSSolution:
        """Solve from ``G(g, 0) = G0(g)`` and return ``G`` at the scales ``s_eval``.

        Parameters
        ----------
        G0 : callable or ndarray
            Initial data at s = 0: a vectorised callable ``G0(g)`` / ``G0(g1, g2, ...)`` (exact everywhere,
            the best choice for characteristics) or an array on the grid (interpolated by cubics; beyond the
            grid the nearest end value is used).
        s_eval : sequence of float
            Strictly increasing scales ≥ 0.
        method : str
            ``"characteristics"`` (κ = 0 only; exact up to the ODE tolerance ``rtol``/``atol``, any number
            of couplings); ``"upwind"`` (1-D; second-order MUSCL upwind with ``limiter`` and SSP-RK3; Courant
            number ``cfl`` ≤ 1, default 0.5, the bound under which the limited scheme is TVD);
            ``"semi-lagrangian"`` (1-D; exact characteristics over each step, cubic interpolation at their
            feet, no step limit; default one step per output interval when κ = 0 and β does not depend on s,
            otherwise Courant number ``cfl`` = 2). For κ > 0 both grid methods add Crank-Nicolson diffusion
            by Strang splitting (second order).
        points : ndarray, optional
            Evaluate at these couplings instead of the grid nodes (``(m,)`` in 1-D, ``(m, ndim)`` otherwise).
            Characteristics evaluate there directly; grid methods interpolate their node values by cubics.
        ds : float, optional
            Largest step of the grid methods (each output interval is split into equal steps).
        limiter : str
            ``"van-leer"`` (default), ``"minmod"``, ``"mc"``, ``"superbee"`` or ``"none"`` (unlimited
            centred slope, Fromm's scheme: second order also at extrema, not TVD).
        inflow : callable or number, optional
            ``inflow(g, s)`` or a constant: values of G beyond the grid, used where the flow enters the
            domain (grid methods: ghost nodes and feet of characteristics outside; Dirichlet ghosts for the
            diffusion). ``inflow=0`` says "nothing outside the domain", the right choice for a density.
            Without it, inflow boundaries hold the end value (zero gradient) and outflow boundaries
            extrapolate quadratically.
        rtol, atol : float
            Tolerances of the characteristic integrator.
        cfl : float, optional
            Courant number of the grid methods (see ``method``).

        Returns
        -------
        CSSolution

        Raises
        ------
        LandauPoleError
            If a characteristic needed for the solution runs to infinity within the requested scales.
        StabilityError
            If a grid solution turns non-finite.
        """
        check_choice("method", method, METHODS)
        check_choice("limiter", limiter, tr.LIMITERS)
        try:
            s_eval = np.atleast_1d(np.asarray(s_eval, dtype=float))
        except (TypeError, ValueError):
            raise ConfigError(f"`s_eval` must be a sequence of numbers, got {s_eval!r}") from None
        if s_eval.ndim != 1 or s_eval.size == 0 or not np.all(np.isfinite(s_eval)):
            raise ConfigError("`s_eval` must be a non-empty 1-D sequence of finite scales")
        if s_eval[0] < 0 or np.any(np.diff(s_eval) <= 0):
            raise ConfigError("`s_eval` must be strictly increasing and >= 0 (G0 is given at s = 0)")
        if ds is not None:
            ds = check_positive("ds", ds)
        if cfl is not None:
            cfl = check_positive("cfl", cfl)
        if inflow is not None and not callable(inflow):
            if np.ndim(inflow) != 0 or isinstance(inflow, (str, bytes)):
                raise ConfigError("`inflow` must be a callable inflow(g, s), a number or None")
            value = check_positive("inflow", abs(float(inflow)), strict=False) * np.sign(float(inflow))
            inflow = lambda g, s: np.full(np.shape(g), value)
        pts = None
        if points is not None:
            pts = self._as_points(points, "points")
        meta = {
            "method": method,
            "beta": _describe(self._beta_spec),
            "gamma": _describe(self._gamma_spec),
            "kappa": _describe(self._kappa_spec),
            "scale_dependent": self.scale_dependent,
        }
        if method == "characteristics":
            if self.has_diffusion:
                raise ConfigError(
                    "method='characteristics' solves kappa = 0 only; use method='upwind' or 'semi-lagrangian'"
                )
            G = self._solve_characteristics(G0, s_eval, pts, rtol, atol)
            meta |= {"rtol": rtol, "atol": atol}
            if pts is None:
                G = G.reshape(s_eval.size, *self.grid.shape)
            return CSSolution(
                s_eval, G, self.grid, None if points is None else np.asarray(points, float), meta
            )
        if self.ndim != 1:
            raise ConfigError(
                f"method={method!r} runs on 1-D grids; use method='characteristics' for {self.ndim} couplings"
            )
        G0n = self._initial_on_nodes(G0)
        if method == "upwind":
            cfl = 0.5 if cfl is None else cfl
            if cfl > 1.0:
                raise ConfigError(f"`cfl` must be <= 1 for method='upwind' (SSP-RK3 TVD bound), got {cfl}")
            G, info = self._solve_upwind(G0n, s_eval, ds, cfl, tr.LIMITERS[limiter], inflow)
            meta |= {"limiter": limiter, "cfl": cfl}
        else:
            G, info = self._solve_semi_lagrangian(G0n, s_eval, ds, cfl, inflow, rtol, atol)
        meta |= info
        if pts is not None:
            G = tr.cubic_interpolate(G, self.grid.lo[0], self.grid.dx[0], pts[0])
        return CSSolution(s_eval, G, self.grid, None if points is None else np.asarray(points, float), meta)

    # characteristics ----------------------------------------------------------------------------------------
    def _initial_function(self, G0) -> Callable[[np.ndarray], np.ndarray]:
        """G0 as a function of points (ndim, m) → (m,)."""
        if callable(G0):

            def fn(y):
                try:
                    out = G0(*[y[a] for a in range(self.ndim)])
                except Exception as exc:
                    raise ConfigError(f"`G0` callable failed: {exc!r}") from exc
                return np.broadcast_to(np.asarray(out, dtype=float), y.shape[1:])

            return fn
        arr = self._check_initial_array(G0)
        if self.ndim == 1:
            lo, dx = self.grid.lo[0], self.grid.dx[0]
            return lambda y: tr.cubic_interpolate(arr, lo, dx, y[0])
        lo, dx = self.grid.lo, self.grid.dx

        def nd(y):
            return tr.cubic_interpolate_nd(arr, lo, dx, y)

        return nd

    def _check_initial_array(self, G0) -> np.ndarray:
        arr = np.asarray(G0, dtype=float)
        if arr.shape != self.grid.shape:
            raise ConfigError(f"`G0` has shape {arr.shape}, expected the grid's shape {self.grid.shape}")
        if not np.all(np.isfinite(arr)):
            raise ConfigError("`G0` contains non-finite values")
        return np.ascontiguousarray(arr)

    def _initial_on_nodes(self, G0) -> np.ndarray:
        if callable(G0):
            vals = self._initial_function(G0)(self._nodes())
            vals = np.array(vals, dtype=float).reshape(self.grid.shape)
            if not np.all(np.isfinite(vals)):
                raise ConfigError("`G0` has non-finite values on the grid")
            return vals
        return self._check_initial_array(G0).copy()

    def _solve_characteristics(self, G0, s_eval, pts, rtol, atol) -> np.ndarray:
        y = self._nodes() if pts is None else pts
        g0 = self._initial_function(G0)
        out = np.empty((s_eval.size, y.shape[1]))
        try:
            if not self.scale_dependent:
                # autonomous flow: one backward integration serves every output scale
                feet, integral = integrate_characteristics(
                    self._beta, self._gamma, y, 0.0, -s_eval, rtol=rtol, atol=atol
                )
                for k in range(s_eval.size):
                    out[k] = g0(feet[k]) * np.exp(integral[k])
            else:
                for k, s in enumerate(s_eval):
                    feet, integral = integrate_characteristics(
                        self._beta, self._gamma, y, float(s), np.array([0.0]), rtol=rtol, atol=atol
                    )
                    out[k] = g0(feet[0]) * np.exp(integral[0])
        except LandauPoleError as err:
            back = abs(err.s_pole - err.s_start)
            s_bad = back if not self.scale_dependent else err.s_start
            raise LandauPoleError(
                f"Landau pole: the characteristic through g={_fmt_point(err.g_start)} runs to infinity when "
                f"traced back by Δs≈{back:.10g}, so G there at s >= {s_bad:.10g} would depend on data at "
                f"infinity (requested s up to {s_eval[-1]:g}); shorten `s_eval` or shrink the grid/points",
                s_bad,
                err.g_start,
                err.s_start,
            ) from None
        return out

    # grid methods ---------------------------------------------------------------------------------------------
    def _coef_nodes(self, s: float) -> tuple[np.ndarray, np.ndarray]:
        y = self._nodes()
        return (
            np.ascontiguousarray(self._beta(y, s)[0], dtype=float),
            np.ascontiguousarray(self._gamma(y, s), dtype=float),
        )

    def _ghost_points(self) -> np.ndarray:
        lo, hi, dx = self.grid.lo[0], self.grid.hi[0], self.grid.dx[0]
        return np.array([lo - 1.5 * dx, lo - 0.5 * dx, hi + 0.5 * dx, hi + 1.5 * dx])

    def _inflow_vals(self, inflow, g: np.ndarray, s: float) -> np.ndarray:
        try:
            vals = np.broadcast_to(np.asarray(inflow(g, s), dtype=float), g.shape)
        except Exception as exc:
            raise ConfigError(f"`inflow` callable failed: {exc!r}") from exc
        if not np.all(np.isfinite(vals)):
            raise ConfigError(f"`inflow` returned non-finite values at s={s}")
        return np.ascontiguousarray(vals)

    def _diffuse(self, G, dt, s_old, s_new, inflow, work):
        if not self.has_diffusion:
            return
        if inflow is not None:
            gp = self._ghost_points()[1:3]
            g_old = self._inflow_vals(inflow, gp, s_old)
            g_new = self._inflow_vals(inflow, gp, s_new)
        else:
            g_old = g_new = np.zeros(2)
        d = inflow is not None
        tr.cn_diffusion(G, self._kappa_nodes, self.grid.dx[0], dt, 0.5, d, d, g_old, g_new, work)

    def _solve_upwind(self, G, s_eval, ds, cfl, lim, inflow):
        n = G.size
        dx = self.grid.dx[0]
        out = np.empty((s_eval.size, n))
        beta0, gamma0 = self._coef_nodes(0.0)
        bmax = float(np.max(np.abs(beta0)))
        gmax = float(np.max(np.abs(gamma0)))
        # SSP-RK3: the transport needs ds·|β|/dx <= cfl; the decay ds·|γ| <= cfl keeps the stage factors positive
        bound = cfl / max(bmax / dx, gmax, 1e-300)
        if ds is not None and ds > bound * (1 + 1e-12) and not self.scale_dependent:
            raise ConfigError(
                f"`ds`={ds:.4g} exceeds the upwind stability bound {bound:.4g} (cfl={cfl}); use ds <= {bound:.4g}"
            )
        if self.scale_dependent:
            ds_max = ds  # None: chosen per output interval from β at both ends (checked at every step)
        else:
            ds_max = bound if ds is None else min(ds, bound)
        mode = tr.GHOST_GIVEN if inflow is not None else tr.GHOST_AUTO
        fast = inflow is None and not self.scale_dependent and not self.has_diffusion
        ext, slopes = np.empty(n + 4), np.zeros(n + 4)
        k, u1, u2 = np.empty(n), np.empty(n), np.empty(n)
        work = np.empty((6, n))
        gp = self._ghost_points()
        beta3 = np.ascontiguousarray(np.broadcast_to(beta0, (3, n)))
        gamma3 = np.ascontiguousarray(np.broadcast_to(gamma0, (3, n)))
        ghosts3 = np.zeros((3, 4))

        def interval_bound(s_from, s_to):  # the bound from β and γ at both ends of an output interval
            b_ends = max(float(np.max(np.abs(self._coef_nodes(sv)[0]))) for sv in (s_from, s_to))
            g_ends = max(float(np.max(np.abs(self._coef_nodes(sv)[1]))) for sv in (s_from, s_to))
            return cfl / max(b_ends / dx, g_ends, 1e-300)

        def step(G, s_i, h):
            stage = (s_i, s_i + h, s_i + 0.5 * h)
            self._diffuse(G, 0.5 * h, s_i, s_i + 0.5 * h, inflow, work)
            if self.scale_dependent:
                for r, sr in enumerate(stage):
                    beta3[r], gamma3[r] = self._coef_nodes(sr)
                local = float(np.max(np.abs(beta3))) * h / dx
                if local > 1.0 + 1e-12:
                    raise StabilityError(
                        f"upwind Courant number {local:.3g} > 1 at s={s_i:.6g}; lower `ds`", time=s_i
                    )
            if inflow is not None:
                for r, sr in enumerate(stage):
                    ghosts3[r] = self._inflow_vals(inflow, gp, sr)
            tr.ssprk3_step(G, beta3, gamma3, ghosts3, mode, mode, dx, h, lim, ext, slopes, k, u1, u2)
            self._diffuse(G, 0.5 * h, s_i + 0.5 * h, s_i + h, inflow, work)
            return G

        def fast_steps(G, s, h, m):  # stops early at a non-finite value, which the check reports
            tr.ssprk3_advance(G, beta0, gamma0, mode, mode, dx, h, m, lim)
            return G

        finite = require_finite("upwind solution turned non-finite before s={t:g}")
        advance = fast_steps if fast else stepwise(step)
        largest = interval_bound if ds_max is None else ds_max
        n_total = advance_to_outputs(G, s_eval, advance, out.__setitem__, dt=largest, check=finite)
        return out, {"ds": ds_max, "n_steps": n_total}

    def _solve_semi_lagrangian(self, G, s_eval, ds, cfl, inflow, rtol, atol):
        n = G.size
        dx, lo = self.grid.dx[0], self.grid.lo[0]
        nodes = self._nodes()
        out = np.empty((s_eval.size, n))
        beta0, _ = self._coef_nodes(0.0)
        bmax = float(np.max(np.abs(beta0)))
        if ds is None:
            if self.has_diffusion or self.scale_dependent:
                c = 2.0 if cfl is None else cfl
                ds_max = c * dx / max(bmax, 1e-300)
            else:
                ds_max = np.inf  # exact characteristics: one interpolation per output interval
        else:
            ds_max = ds
        idx = np.empty(n, dtype=np.int64)
        w = np.empty((n, 4))
        outside = np.empty(n, dtype=np.bool_)
        buf = np.empty(n)
        work = np.empty((6, n))
        cache: dict[float, tuple] = {}

        def step_map(s_new: float, h: float):
            key = round(h, 15)
            if not self.scale_dependent and key in cache:
                return cache[key]
            try:
                feet, integral = integrate_characteristics(
                    self._beta, self._gamma, nodes, s_new, np.array([s_new - h]), rtol=rtol, atol=atol
                )
            except LandauPoleError as err:
                raise LandauPoleError(
                    f"Landau pole: the characteristic through g={_fmt_point(err.g_start)} diverges within one "
                    f"step back from s={s_new:g}; use a smaller `ds` or a grid away from the pole",
                    err.s_pole,
                    err.g_start,
                    err.s_start,
                ) from None
            f = np.ascontiguousarray(feet[0, 0])
            fac = np.exp(integral[0])
            i2, w2, o2 = idx.copy(), w.copy(), outside.copy()
            tr.sl_weights(f, lo, dx, n, i2, w2, o2)
            res = (f, fac, i2, w2, o2)
            if not self.scale_dependent:
                cache[key] = res
            return res

        def step(G, s_i, h):
            self._diffuse(G, 0.5 * h, s_i, s_i + 0.5 * h, inflow, work)
            f, fac, i2, w2, o2 = step_map(s_i + h, h)
            if inflow is not None and o2.any():
                ov = np.zeros(n)
                ov[o2] = self._inflow_vals(inflow, f[o2], s_i)
            else:
                ov = np.where(f < lo, G[0], G[-1])
            tr.sl_apply(G, i2, w2, o2, ov, fac, buf)
            G[:] = buf
            self._diffuse(G, 0.5 * h, s_i + 0.5 * h, s_i + h, inflow, work)
            return G

        finite = require_finite("semi-Lagrangian solution turned non-finite before s={t:g}")
        advance = stepwise(step)
        n_total = advance_to_outputs(G, s_eval, advance, out.__setitem__, dt=ds_max, check=finite)
        return out, {"ds": float(ds_max) if np.isfinite(ds_max) else None, "n_steps": n_total}


def _fmt_point(v) -> str:
    v = np.atleast_1d(np.asarray(v, dtype=float))
    return f"{v[0]:.6g}" if v.size == 1 else "(" + ", ".join(f"{x:.6g}" for x in v) + ")"
