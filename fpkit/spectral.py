"""Spectral grids and the spectral Fokker-Planck solver (1-D).

    ∂t p = −∂x(A p) + ∂x²(D p) = −∂x J,   J = A p − ∂x(D p)        (Itô; dX = A dt + √(2D) dW)

A spectral discretisation is chosen by the grid:

* ``chebyshev_grid(lo, hi, n)``: Gauss-Lobatto nodes on a bounded interval with zero-flux walls. The solver
  evolves the cumulative mass P(x) = ∫_lo^x p (a polynomial of degree n−1 at the nodes) instead of p:
  ∂t P = −J, with the Dirichlet values P(lo) = 0 and P(hi) = mass held fixed. Zero flux at both walls is then
  imposed exactly (J(lo) = −∂t P(lo) = 0) and the mass ∫ p = P(hi) − P(lo) is conserved to round-off; the
  density is p = ∂x P, a polynomial of degree n−2, so Clenshaw-Curtis integrates it exactly.
* ``fourier_grid(lo, hi, n)``: periodic, equispaced nodes; L p = −D₁(A p) + D₂(D p) with the FFT
  differentiation matrices (the columns of both sum to zero, so the trapezoidal mass is conserved).
* ``hermite_grid(n, scale, center)``: the whole line, Hermite functions ψ_k((x − center)/scale), nodes at the
  scaled Gauss-Hermite points. Good for OU-like problems: pick ``scale`` near the standard deviation of the
  densities to be represented. The outer derivative is made exactly conservative (see
  ``fpkit.solvers.spectral_ops.hermite_derivative_coefficients``).

Densities are nodal values (``Solution.p`` holds them); ``grid.integrate`` applies the quadrature that is
exact for the basis, and ``grid.interpolate(p, points)`` evaluates the spectral interpolant anywhere.
``to_finite_volume`` / ``from_finite_volume`` move a density between a spectral and a uniform
finite-volume grid, preserving mass exactly.

Time integration: for time-independent coefficients the semi-discrete system u' = M u is linear and
autonomous, so ETDRK4 (``method="etdrk4"``, the default) is exact in time: each distinct output interval
costs one matrix exponential (scipy's scaling-and-squaring Padé). The φ-functions, needed only when there is
an explicit term, come from one exponential of an augmented matrix (no cancellation near z = 0).
For time-dependent coefficients ``"etdrk4"`` and ``"imex"`` (SBDF2) freeze the operator M₀ = M(t_f) and
treat the change M(t) − M₀ explicitly (exponential / implicit in M₀, one factorisation or matrix exponential
per freeze); M₀ is refrozen whenever the coefficients have moved by more than ``REFREEZE_TOLERANCE`` of the
operator's size at some node, which keeps the explicit remainder small next to the frozen part, as the
stability of both schemes requires (``Solution.meta["n_refreeze"]`` counts the refreezes). The implicit methods
``"bdf2"`` (default then), ``"crank-nicolson"`` and ``"implicit"`` re-assemble and factorise M(t) at every
step (O(n³) per step, the most robust).
Explicit steppers are refused: spectral operators are stiff (stable steps shrink like n⁻⁴ or n⁻²).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.linalg as sla

from .coefficients import Coefficient
from .errors import ConfigError, StabilityError, check_choice, check_positive, check_times
from .grid import Grid
from .progress import progress
from .solvers import spectral_ops as so
from .solvers.time_stepping import advance_to_outputs, require_finite, stepwise

if TYPE_CHECKING:
    from .solution import Solution

SPECTRAL_KINDS = ("chebyshev", "fourier", "hermite")
METHODS = ("etdrk4", "imex", "implicit", "crank-nicolson", "bdf2")
_NATURAL_BC = {"chebyshev": "reflecting", "fourier": "periodic", "hermite": "natural"}
_ALLOWED_BC = {"chebyshev": ("reflecting",), "fourier": ("periodic",), "hermite": ("natural", "reflecting")}
REFREEZE_TOLERANCE = 0.25  # relative operator change that triggers a new frozen operator (etdrk4, imex)
NEGATIVE_TOLERANCE = 1e-10  # nodal values above −tol·max|p| count as non-negative in `normalise`
MAX_N = 2048  # dense operators: memory and O(n³) work grow fast beyond this


# =====================================================================================================
# grids
# =====================================================================================================


@functools.lru_cache(maxsize=64)
def _basis(kind: str, lo: float, hi: float, n: int, scale: float, center: float) -> dict:
    """Nodes, weights and differentiation matrices of one basis (cached and read-only: grids are immutable)."""
    out = _build_basis(kind, lo, hi, n, scale, center)
    out["nu"] = np.asarray(np.abs(out["D1"]).sum(axis=1).max())  # ‖D₁‖∞: the largest resolved derivative
    for arr in out.values():
        arr.flags.writeable = False
    return out


def _build_basis(kind: str, lo: float, hi: float, n: int, scale: float, center: float) -> dict:
    if kind == "chebyshev":
        x = so.cheb_nodes(n, lo, hi)
        D1 = so.cheb_diff(n, lo, hi)
        return {
            "x": x,
            "w": so.clenshaw_curtis_weights(n, lo, hi),
            "D1": D1,
            "Q": so.cheb_cumulative_matrix(n, lo, hi),
        }
    if kind == "fourier":
        return {
            "x": so.fourier_nodes(n, lo, hi),
            "w": so.fourier_weights(n, lo, hi),
            "D1": so.fourier_diff(n, lo, hi, 1),
            "D2": so.fourier_diff(n, lo, hi, 2),
        }
    xi, wt = so.hermite_nodes(n)
    V = so.hermite_functions(n, xi)
    m = so.hermite_integrals(n)
    fwd = V.T * wt[None, :]  # nodal values -> coefficients (exact on the span)
    T = so.hermite_derivative_coefficients(n, conservative=False)
    Tc = so.hermite_derivative_coefficients(n, conservative=True)
    return {
        "x": center + scale * xi,
        "xi": xi,
        "w": scale * (wt * (V @ m)),  # ∫ of the interpolant = s Σ_k c_k m_k
        "V": V,
        "fwd": fwd,
        "D1": (V @ T @ fwd) / scale,
        "D1c": (V @ Tc @ fwd) / scale,
    }


@dataclass(frozen=True, repr=False)
class SpectralGrid(Grid):
    """A 1-D spectral grid: nodes of a Chebyshev, Fourier or Hermite-function basis.

    Build with ``chebyshev_grid``, ``fourier_grid`` or ``hermite_grid`` (or ``Grid.chebyshev`` …).

    Attributes
    ----------
    lo, hi : tuple of float
        The interval (Chebyshev: the walls; Fourier: the period [lo, hi); Hermite: the outermost nodes, the
        basis itself covers the whole line).
    n : tuple of int
        Number of nodes.
    kind : str
        ``"chebyshev"``, ``"fourier"`` or ``"hermite"``.
    scale, center : float
        Hermite only: x = center + scale·ξ (scale in units of x). 1 and 0 otherwise.
    """

    scale: float = 1.0
    center: float = 0.0
    # spectral interpolants of positive densities can dip to about −1e-10·max|p| in their far tails
    negative_tolerance: ClassVar[float] = NEGATIVE_TOLERANCE

    @classmethod
    def uniform(cls, lo, hi, n) -> Grid:
        """A finite-volume grid (``Grid.uniform``), never a spectral one."""
        return Grid.uniform(lo, hi, n)

    # --- basis data ---------------------------------------------------------------------------------
    @property
    def _b(self) -> dict:
        return _basis(self.kind, self.lo[0], self.hi[0], self.n[0], self.scale, self.center)

    @property
    def axes(self) -> list[np.ndarray]:
        """The nodes (ascending), as a one-element list."""
        return [self._b["x"].copy()]

    @property
    def x(self) -> np.ndarray:
        return self._b["x"].copy()

    @property
    def weights(self) -> np.ndarray:
        """Quadrature weights: ``weights @ p`` is the exact integral of the interpolant of nodal values p."""
        return self._b["w"].copy()

    @property
    def period(self) -> float | None:
        return self.hi[0] - self.lo[0] if self.kind == "fourier" else None

    def _no_cells(self, what: str):
        raise ConfigError(
            f"a {self.kind} grid has nodes, not cells, so `{what}` is undefined; use grid.weights for "
            "quadrature, grid.gaussian(mean, std) for a Gaussian density, or to_finite_volume(...)"
        )

    @property
    def dx(self) -> tuple:
        self._no_cells("dx")

    @property
    def cell_volume(self) -> float:
        self._no_cells("cell_volume")

    @property
    def edges(self) -> list[np.ndarray]:
        self._no_cells("edges")

    # --- quadrature ---------------------------------------------------------------------------------
    def integrate(self, values: np.ndarray, axis: int | Sequence[int] | None = None) -> np.ndarray | float:
        """Exact integral of the interpolant of nodal ``values`` (last axis; leading axes are kept)."""
        values = np.asarray(values)
        if values.ndim < 1 or values.shape[-1] != self.n[0]:
            raise ConfigError(f"`values` has shape {values.shape}, expected (..., {self.n[0]})")
        if axis not in (None, 0, (0,), [0]):
            raise ConfigError(f"`axis` must be None or 0 on a 1-D spectral grid, got {axis!r}")
        out = values @ self._b["w"]
        return float(out) if np.ndim(out) == 0 else out

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Points inside the domain (every point for a Hermite grid, whose basis covers the line)."""
        pts = np.asarray(points, dtype=float)
        if self.kind == "hermite":
            return np.ones(pts.shape, dtype=bool)
        return (pts >= self.lo[0]) & (pts <= self.hi[0])

    # --- interpolation ------------------------------------------------------------------------------
    def _coefficients_hermite(self, values):
        return np.asarray(values, dtype=float) @ self._b["fwd"].T

    def interpolate(self, values: np.ndarray, points) -> np.ndarray:
        """The spectral interpolant of nodal ``values`` (last axis) at ``points`` (any shape).

        Chebyshev: 0 outside [lo, hi] (the density's support); Fourier: periodic extension; Hermite: the
        expansion Σ c_k ψ_k((x − center)/scale) anywhere. Result shape: values' leading axes + points' shape.
        """
        values = np.asarray(values, dtype=float)
        if values.ndim < 1 or values.shape[-1] != self.n[0]:
            raise ConfigError(f"`values` has shape {values.shape}, expected (..., {self.n[0]})")
        pts = np.asarray(points, dtype=float)
        if not np.all(np.isfinite(pts)):
            raise ConfigError("`points` must be finite")
        lo, hi = self.lo[0], self.hi[0]
        if self.kind == "chebyshev":
            return np.nan_to_num(so.cheb_interp(values, lo, hi, pts), nan=0.0)
        if self.kind == "fourier":
            return so.fourier_interp(values, lo, hi, pts)
        c = self._coefficients_hermite(values)
        psi = so.hermite_functions(self.n[0], (pts.ravel() - self.center) / self.scale)
        return (c @ psi.T).reshape(values.shape[:-1] + pts.shape)

    def antiderivative(self, values: np.ndarray, points) -> np.ndarray:
        """∫ of the interpolant from the left end (lo; −∞ for Hermite) to each of ``points``."""
        values = np.asarray(values, dtype=float)
        pts = np.asarray(points, dtype=float)
        lo, hi = self.lo[0], self.hi[0]
        if self.kind == "chebyshev":
            return so.cheb_antiderivative(values, lo, hi, pts)
        if self.kind == "fourier":
            return so.fourier_antiderivative(values, lo, hi, pts)
        c = self._coefficients_hermite(values)
        I = so.hermite_antiderivative_functions(self.n[0], (pts.ravel() - self.center) / self.scale)
        return (self.scale * (c @ I.T)).reshape(values.shape[:-1] + pts.shape)

    def gaussian(self, mean: float = 0.0, std: float = 1.0) -> np.ndarray:
        """A normalised Gaussian density at the nodes (point values; the quadrature fixes the mass)."""
        std = check_positive("std", std)
        mean = float(mean)
        if not np.isfinite(mean):
            raise ConfigError(f"`mean` must be finite, got {mean}")
        x = self.x
        if self.kind == "fourier":  # wrap the periodic images that matter
            L = self.period
            p = sum(np.exp(-0.5 * ((x - mean + j * L) / std) ** 2) for j in range(-3, 4))
        else:
            p = np.exp(-0.5 * ((x - mean) / std) ** 2)
        return self.normalise(p, "gaussian")

    # --- serialisation ------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        d = {"lo": list(self.lo), "hi": list(self.hi), "n": list(self.n), "kind": self.kind}
        if self.kind == "hermite":
            d |= {"scale": self.scale, "center": self.center}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> SpectralGrid:
        return grid_from_dict(d)

    @property
    def extra(self) -> dict:
        """Fields beyond the base Grid's (lo, hi, n, kind), for storing next to a base-Grid dict."""
        return {"scale": self.scale, "center": self.center} if self.kind == "hermite" else {}

    def __repr__(self) -> str:
        if self.kind == "hermite":
            return f"Grid.hermite({self.n[0]}, scale={self.scale}, center={self.center})"
        return f"Grid.{self.kind}({self.lo[0]}, {self.hi[0]}, {self.n[0]})"


def _check_n(n, minimum: int, maximum: int) -> int:
    if isinstance(n, (tuple, list)) and len(n) == 1:
        n = n[0]
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not minimum <= n <= maximum:
        raise ConfigError(f"`n` must be an integer in [{minimum}, {maximum}], got {n!r}")
    return int(n)


def _scalar(name: str, value) -> float:
    arr = np.ravel(np.asarray(value, dtype=object))
    if arr.size != 1:
        raise ConfigError(f"`{name}` must be a number (spectral grids are 1-D), got {value!r}")
    try:
        return float(arr[0])
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be a number, got {value!r}") from None


def _check_interval(lo, hi) -> tuple[float, float]:
    a, b = _scalar("lo", lo), _scalar("hi", hi)
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ConfigError(f"`lo` and `hi` must be finite, got lo={a}, hi={b}")
    if a >= b:
        raise ConfigError(f"`lo` must be below `hi`, got lo={a}, hi={b}")
    return a, b


def chebyshev_grid(lo: float, hi: float, n: int) -> SpectralGrid:
    """Chebyshev Gauss-Lobatto grid of n nodes on [lo, hi] (walls at lo and hi, zero flux there)."""
    a, b = _check_interval(lo, hi)
    return SpectralGrid((a,), (b,), (_check_n(n, 4, MAX_N),), "chebyshev")


def fourier_grid(lo: float, hi: float, n: int) -> SpectralGrid:
    """Fourier grid of n equispaced nodes on the period [lo, hi)."""
    a, b = _check_interval(lo, hi)
    return SpectralGrid((a,), (b,), (_check_n(n, 4, MAX_N),), "fourier")


def hermite_grid(n: int, scale: float = 1.0, center: float = 0.0) -> SpectralGrid:
    """Hermite-function basis of n functions on the whole line, x = center + scale·ξ.

    ``scale`` (units of x) should be near the width of the densities to be represented: a Gaussian of
    standard deviation σ has geometrically decaying coefficients, at the rate |σ² − s²|/(σ² + s²) per
    pair of modes (exactly one mode when σ = s).
    """
    n = _check_n(n, 4, so.HERMITE_MAX_N)
    s = check_positive("scale", scale)
    c = float(center)
    if not np.isfinite(c):
        raise ConfigError(f"`center` must be finite, got {center!r}")
    xi, _ = so.hermite_nodes(n)
    return SpectralGrid((c + s * xi[0],), (c + s * xi[-1],), (n,), "hermite", s, c)


def grid_from_dict(d: dict) -> SpectralGrid:
    """Rebuild a spectral grid from ``to_dict()`` output (scale and center of a Hermite grid are inferred
    from lo and hi when absent)."""
    kind = check_choice("kind", d.get("kind"), SPECTRAL_KINDS)
    lo, hi = float(np.ravel(d["lo"])[0]), float(np.ravel(d["hi"])[0])
    n = int(np.ravel(d["n"])[0])
    if kind == "chebyshev":
        return chebyshev_grid(lo, hi, n)
    if kind == "fourier":
        return fourier_grid(lo, hi, n)
    if "scale" in d and "center" in d:
        return hermite_grid(n, float(d["scale"]), float(d["center"]))
    xi, _ = so.hermite_nodes(n)
    return hermite_grid(n, (hi - lo) / (2 * xi[-1]), 0.5 * (lo + hi))


def _require_spectral(grid, name="grid") -> SpectralGrid:
    if not isinstance(grid, SpectralGrid):
        raise ConfigError(
            f"`{name}` must be a spectral grid (Grid.chebyshev / Grid.fourier / Grid.hermite), got {grid!r}"
        )
    return grid


# =====================================================================================================
# conversion to and from finite volumes
# =====================================================================================================


def _require_fv(grid, name="fv_grid") -> Grid:
    if not isinstance(grid, Grid) or grid.kind != "uniform" or grid.ndim != 1:
        raise ConfigError(f"`{name}` must be a 1-D Grid.uniform, got {grid!r}")
    return grid


def _check_periods(sg: SpectralGrid, fv: Grid):
    L, Lf = sg.period, fv.hi[0] - fv.lo[0]
    if abs(L - Lf) > 1e-9 * L:
        raise ConfigError(
            f"`fv_grid` must span exactly one period ({L}) of the Fourier grid to conserve mass, got {Lf}"
        )


def to_finite_volume(p: np.ndarray, spectral_grid: SpectralGrid, fv_grid: Grid) -> np.ndarray:
    """Cell averages on a uniform finite-volume grid of the spectral interpolant of nodal density ``p``.

    Cell integrals are differences of the exact antiderivative of the interpolant at the cell faces. Mass
    beyond the finite-volume domain (Hermite tails, or a Chebyshev domain wider than the FV one) is added to
    the first and last cells, so ``fv_grid.integrate(result) == spectral_grid.integrate(p)`` to round-off.
    A Fourier density needs an FV grid spanning exactly one period (any offset). Leading axes of ``p``
    (e.g. time) are kept.
    """
    sg = _require_spectral(spectral_grid, "spectral_grid")
    fv = _require_fv(fv_grid)
    p = np.asarray(p, dtype=float)
    if p.ndim < 1 or p.shape[-1] != sg.n[0]:
        raise ConfigError(f"`p` has shape {p.shape}, expected (..., {sg.n[0]})")
    edges = fv.edges[0]
    if sg.kind == "fourier":
        _check_periods(sg, fv)
        C = sg.antiderivative(p, edges)
        return np.diff(C, axis=-1) / fv.dx[0]
    C = sg.antiderivative(p, edges)
    total = np.asarray(sg.integrate(p))
    cells = np.diff(C, axis=-1)
    cells[..., 0] += C[..., 0]  # mass left of the FV domain
    cells[..., -1] += total - C[..., -1]  # mass right of it
    return cells / fv.dx[0]


def from_finite_volume(p_fv: np.ndarray, fv_grid: Grid, spectral_grid: SpectralGrid) -> np.ndarray:
    """Nodal values on a spectral grid of a finite-volume density (cell averages), with the same mass.

    The FV cumulative mass at the cell faces is exact; a cubic spline through it gives the cumulative mass
    at the nodes and its derivative the density. Chebyshev: p = D₁P with P(lo) = 0, P(hi) = mass held
    exactly (mass outside the Chebyshev interval is folded onto the walls); Fourier: the periodic part of
    the cumulative mass is differentiated spectrally and the mean added back; Hermite: the spline
    derivative at the nodes (zero outside the FV domain), rescaled to the FV mass. Second-order accurate,
    like the FV data it starts from.
    """
    from scipy.interpolate import CubicSpline

    sg = _require_spectral(spectral_grid, "spectral_grid")
    fv = _require_fv(fv_grid)
    p_fv = np.asarray(p_fv, dtype=float)
    if p_fv.shape != fv.shape:
        raise ConfigError(f"`p_fv` has shape {p_fv.shape}, expected {fv.shape}")
    edges = fv.edges[0]
    C = np.concatenate([[0.0], np.cumsum(p_fv) * fv.dx[0]])
    mass = C[-1]
    x = sg.x
    b = sg._b
    if sg.kind == "fourier":
        _check_periods(sg, fv)
        Lp = sg.period
        G = C - mass * (edges - edges[0]) / Lp  # periodic part of the cumulative mass
        G[-1] = G[0]
        spline = CubicSpline(edges, G, bc_type="periodic")
        xs = edges[0] + np.mod(x - edges[0], Lp)
        return b["D1"] @ spline(xs) + mass / Lp
    spline = CubicSpline(edges, C)
    if sg.kind == "chebyshev":
        P = np.where(
            x <= edges[0], 0.0, np.where(x >= edges[-1], mass, spline(np.clip(x, edges[0], edges[-1])))
        )
        P[0], P[-1] = 0.0, mass
        return b["D1"] @ P
    inside = (x >= edges[0]) & (x <= edges[-1])
    p = np.where(inside, spline(np.clip(x, edges[0], edges[-1]), 1), 0.0)
    m = sg.integrate(p)
    if not m > 0:
        raise ConfigError("`p_fv` has no mass where the Hermite grid's nodes lie; widen `scale`")
    return p * (mass / m)


# =====================================================================================================
# the Fokker-Planck problem
# =====================================================================================================


class _FrozenOperator:
    """The operator of a problem frozen at some time, refrozen when the coefficients move too far."""

    def __init__(self, fp: SpectralFokkerPlanck, t: float):
        self.fp = fp
        self.coef = fp._coefficients(t)
        self.current = self.coef
        self.M = fp.operator(t)
        self.version = 0

    def refresh(self, t: float) -> bool:
        """Evaluate the coefficients at ``t`` (kept in ``current``); refreeze and return True if needed."""
        self.current = self.fp._coefficients(t)
        if self.fp._needs_refreeze(self.coef, self.current):
            self.coef = self.current
            self.M = self.fp._assemble(*self.current)
            self.version += 1
            return True
        return False


class SpectralFokkerPlanck:
    """Fokker-Planck equation on a 1-D spectral grid (chosen by ``fpkit.FokkerPlanck`` for such grids).

        ∂t p = −∂x(A p) + ∂x²(D p)        (Itô; dX = A dt + √(2D) dW, so D is the diffusion, not σ)

    Parameters
    ----------
    grid : SpectralGrid
        ``Grid.chebyshev`` (zero-flux walls), ``Grid.fourier`` (periodic) or ``Grid.hermite`` (whole line).
    drift : number, array on the nodes or callable f(x, t)
        A (units of x per unit time).
    diffusion : number, array on the nodes or callable f(x, t)
        D ≥ 0 (units of x² per unit time).
    bc : str, optional
        Must match the grid: ``"reflecting"`` on Chebyshev, ``"periodic"`` on Fourier, ``"natural"`` (or
        ``"reflecting"``: zero flux at ±∞) on Hermite. Default: the grid's own.
    scheme : str, optional
        Accepted for signature compatibility with the finite-volume ``FokkerPlanck``: ``None`` or
        ``"spectral"``; the finite-volume default ``"exponential"`` is accepted and ignored so that code
        written for either kind of grid runs unchanged, ``"central"`` is refused (no spectral meaning).
    time_dependent : bool, optional
        Override the automatic detection of time-dependent callables.
    """

    def __init__(
        self,
        grid: SpectralGrid,
        drift: Any = 0.0,
        diffusion: Any = 1.0,
        bc: str | None = None,
        scheme: str | None = None,
        time_dependent: bool | None = None,
    ):
        self.grid = _require_spectral(grid)
        kind = grid.kind
        if isinstance(bc, (list, tuple)) and len(bc) == 1:
            bc = bc[0]
        if bc is None:
            bc = _NATURAL_BC[kind]
        if bc not in _ALLOWED_BC[kind]:
            fix = {
                "chebyshev": "use Grid.fourier for periodic problems or a uniform grid for absorbing walls",
                "fourier": "Fourier grids are periodic; use Grid.chebyshev for walls",
                "hermite": "Hermite grids cover the whole line; use Grid.chebyshev for walls",
            }[kind]
            raise ConfigError(
                f"`bc`={bc!r} is not available on a {kind} grid (allowed: {list(_ALLOWED_BC[kind])}); {fix}"
            )
        self.bc = (bc,)
        if scheme not in (None, "spectral", "exponential"):
            raise ConfigError(
                f"`scheme`={scheme!r} is a finite-volume flux scheme; spectral grids take scheme=None or "
                "'spectral' (the finite-volume default 'exponential' is accepted and ignored)"
            )
        self.scheme = "spectral"
        self.drift = [Coefficient(drift, "drift", grid)]
        self.diffusion = [[Coefficient(diffusion, "diffusion", grid, nonnegative=True)]]
        detected = self.drift[0].time_dependent or self.diffusion[0][0].time_dependent
        self.time_dependent = detected if time_dependent is None else bool(time_dependent)
        self._op_cache: np.ndarray | None = None

    # --- discretisation ---------------------------------------------------------------------------------
    @property
    def _A(self) -> Coefficient:
        return self.drift[0]

    @property
    def _D(self) -> Coefficient:
        return self.diffusion[0][0]

    def operator(self, t: float = 0.0) -> np.ndarray:
        """Dense matrix M with u' = M u for the state u (Chebyshev: cumulative mass P; else the density)."""
        if self._op_cache is not None:
            return self._op_cache
        M = self._assemble(*self._coefficients(t))
        if not self.time_dependent:
            self._op_cache = M
        return M

    def _coefficients(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        return self._A.on_grid(t), self._D.on_grid(t)

    def _assemble(self, A: np.ndarray, D: np.ndarray) -> np.ndarray:
        b = self.grid._b
        kind = self.grid.kind
        if kind == "chebyshev":
            D1 = b["D1"]
            # ∂t P = −J = −A ∂x P + ∂x(D ∂x P); walls: P fixed (their rows are zero)
            M = -A[:, None] * D1 + D1 @ (D[:, None] * D1)
            M[0] = 0.0
            M[-1] = 0.0
            return M
        if kind == "fourier":
            return -b["D1"] * A[None, :] + b["D2"] * D[None, :]
        return -b["D1c"] * A[None, :] + b["D1c"] @ (D[:, None] * b["D1"])

    def apply(self, u: np.ndarray, t: float = 0.0) -> np.ndarray:
        """M(t) u without assembling M: O(n²) matrix-vector products (used by the explicit remainder)."""
        if self._op_cache is not None:
            return self._op_cache @ u
        return self._apply_with(u, *self._coefficients(t))

    def _apply_with(self, u: np.ndarray, A: np.ndarray, D: np.ndarray) -> np.ndarray:
        b = self.grid._b
        kind = self.grid.kind
        if kind == "chebyshev":
            d1u = b["D1"] @ u
            out = -A * d1u + b["D1"] @ (D * d1u)
            out[0] = out[-1] = 0.0
            return out
        if kind == "fourier":
            return -b["D1"] @ (A * u) + b["D2"] @ (D * u)
        return b["D1c"] @ (-A * u + D * (b["D1"] @ u))

    def _needs_refreeze(self, ref, cur) -> bool:
        """True when the operator at coefficients ``cur`` differs from the frozen one (``ref``) by more than
        ``REFREEZE_TOLERANCE`` of its size at some node.

        Node by node, the operator's size is estimated as |A| ν + D ν² with ν = ‖D₁‖∞ (the largest
        derivative the grid resolves) and the change as |ΔA| ν + |ΔD| ν². The explicit remainder of SBDF2
        is stable for relative changes in (−1, 1/3) and ETDRK4's for small ones; 1/4 keeps both safe.
        """
        nu = float(self.grid._b["nu"])
        (A0, D0), (A1, D1) = ref, cur
        size = np.abs(A0) * nu + D0 * nu * nu
        change = np.abs(A1 - A0) * nu + np.abs(D1 - D0) * nu * nu
        floor = 1e-12 * (np.max(size) + 1e-300)
        return bool(np.any(change > REFREEZE_TOLERANCE * np.maximum(size, floor)))

    def _to_state(self, p: np.ndarray) -> np.ndarray:
        return self.grid._b["Q"] @ p if self.grid.kind == "chebyshev" else p.copy()

    def _from_state(self, u: np.ndarray) -> np.ndarray:
        return self.grid._b["D1"] @ u if self.grid.kind == "chebyshev" else u.copy()

    def flux(self, p: np.ndarray, t: float = 0.0) -> np.ndarray:
        """Probability current J = A p − ∂x(D p) at the nodes for nodal density ``p`` (units: 1/time)."""
        p = np.asarray(p, dtype=float)
        if p.shape[-1] != self.grid.n[0]:
            raise ConfigError(f"`p` has shape {p.shape}, expected (..., {self.grid.n[0]})")
        D1 = self.grid._b["D1"]
        return self._A.on_grid(t) * p - (self._D.on_grid(t) * p) @ D1.T

    def interpolate(self, p: np.ndarray, points) -> np.ndarray:
        """The spectral interpolant of nodal density ``p`` at arbitrary ``points`` (see SpectralGrid)."""
        return self.grid.interpolate(p, points)

    # --- solving ----------------------------------------------------------------------------------------
    def _initial(self, p0) -> np.ndarray:
        if callable(p0):
            p0 = p0(self.grid.x)
        return self.grid.normalise(np.asarray(p0, dtype=float), "p0")

    def solve(
        self,
        p0,
        t_eval,
        method: str | None = None,
        dt: float | None = None,
        t0: float = 0.0,
        progress_bar: bool | None = None,
    ) -> Solution:
        """Evolve ``p0`` from ``t0`` and return the nodal density at each time in ``t_eval``.

        Parameters
        ----------
        p0 : array (n,) or callable f(x)
            Initial density at the nodes; normalised to unit mass.
        t_eval : sequence of float
            Increasing output times ≥ ``t0``.
        method : str, optional
            ``"etdrk4"`` (default for time-independent coefficients: exact in time, one step per output
            interval unless ``dt`` asks for more; with time-dependent coefficients the exponential uses a
            frozen operator and the change since the freeze is explicit), ``"imex"`` (SBDF2: the frozen
            operator implicitly, factorised once per freeze and step size, the change explicitly; O(n²) per
            step), ``"bdf2"`` (default for time-dependent coefficients: the operator re-assembled and
            factorised at every step, the most robust), ``"crank-nicolson"`` (Rannacher
            start) or ``"implicit"`` (backward Euler). Explicit stepping is
            refused: the stable step of spectral operators shrinks like n⁻⁴ (Chebyshev) or n⁻² (Fourier).
        dt : float, optional
            Largest step; each output interval is split into equal steps. Default: one step per interval
            (time-independent ``"etdrk4"``), (t_end − t0)/400 otherwise.

        Raises
        ------
        StabilityError
            If the density turns non-finite.
        """
        from .solution import Solution

        if method is None:
            method = "bdf2" if self.time_dependent else "etdrk4"
        if method == "explicit":
            raise ConfigError(
                "`method`='explicit' is not offered on spectral grids: the stable step shrinks like n^-4 "
                "(Chebyshev) or n^-2 (Fourier, Hermite); use method='etdrk4' (exact in time for "
                "time-independent coefficients) or 'bdf2'"
            )
        check_choice("method", method, METHODS)
        t0 = float(t0)
        t_eval = check_times(t_eval, t0)
        span = t_eval[-1] - t0
        if dt is not None:
            dt = check_positive("dt", dt)
        elif self.time_dependent or method != "etdrk4":
            dt = span / 400 if span > 0 else 1.0
        u = self._to_state(self._initial(p0))
        out = np.empty((t_eval.size, self.grid.n[0]))
        frozen = _FrozenOperator(self, t0) if method in ("etdrk4", "imex") else None
        if method == "etdrk4":
            advance = functools.partial(self._etdrk4_steps, frozen=frozen, cache={})
        elif method == "imex":
            imex: so.SBDF2 | None = None

            def advance(u, t, h, n):
                nonlocal imex
                if imex is None or imex.h != h:
                    imex = so.SBDF2(frozen.M, h)  # a new step size restarts with IMEX Euler
                return self._imex_steps(u, t, h, n, frozen, imex)

        else:
            advance = stepwise(so.DenseImplicitStepper(self.operator, self.time_dependent, method).step)

        def record(k, u):
            out[k] = self._from_state(u)

        finite = require_finite(
            "the density turned non-finite by t={t:.6g}; reduce `dt` or use method='bdf2'"
        )
        with progress(span, "fpkit spectral solve", enable=progress_bar, unit="t") as bar:
            n_steps = advance_to_outputs(u, t_eval, advance, record, t0=t0, dt=dt, check=finite, bar=bar)
        if frozen is not None and self.time_dependent:
            extra = {"n_refreeze": frozen.version}
        else:
            extra = {}
        meta = self.describe() | {"method": method, "dt": dt, "t0": t0, "n_steps": n_steps} | extra
        return Solution(t_eval, out, self.grid, meta)

    def _etdrk4_steps(self, u, t, h, n, frozen: _FrozenOperator, cache: dict) -> np.ndarray:
        """n ETDRK4 steps of size h: e^{hM₀} with M₀ frozen, the change M(t) − M₀ explicit (time-dependent
        coefficients only; M₀ is refrozen whenever the coefficients have moved too far)."""
        for i in range(n):
            s = t + i * h
            if self.time_dependent:
                frozen.refresh(s)
            key = (frozen.version, float(h))
            scheme = cache.get(key)
            if scheme is None:
                cache.clear()
                scheme = cache[key] = so.ETDRK4(frozen.M, h)
            remainder = None
            if self.time_dependent:
                M0 = frozen.M

                def remainder(v, s_, M0=M0):
                    return self.apply(v, s_) - M0 @ v

            u = scheme.step(u, s, remainder)
        return u

    def _imex_steps(self, u, t, h, n, frozen: _FrozenOperator, scheme: so.SBDF2) -> np.ndarray:
        """n SBDF2 steps of size h: the frozen operator implicitly (factorised once per freeze and step
        size), its change since the freeze explicitly; refrozen whenever the coefficients move too far."""
        if not self.time_dependent:
            for _ in range(n):
                u = scheme.step_with(u, np.zeros_like(u))
            return u
        for i in range(n):
            s = t + i * h
            if frozen.refresh(s):
                prev = scheme.previous_state
                r_prev = None
                if prev is not None:  # re-split R_{n−1} against the new frozen operator
                    r_prev = self.apply(prev, s - h) - frozen.M @ prev
                scheme.set_operator(frozen.M, r_prev)
            r = self._apply_with(u, *frozen.current) - frozen.M @ u
            u = scheme.step_with(u, r)
        return u

    # --- steady state and spectrum ----------------------------------------------------------------------
    def stationary(self, t: float = 0.0) -> np.ndarray:
        """The normalised steady state (nodal values) of the generator at time ``t``.

        Chebyshev: the Dirichlet problem for P with P(lo) = 0, P(hi) = 1; Fourier/Hermite: the null vector
        of M fixed by ∫p = 1 (solved as (M + r qᵀ) p = r with q the quadrature weights, nonsingular
        because qᵀM = 0 and qᵀr ≠ 0).
        """
        M = self.operator(t)
        b = self.grid._b
        if self.grid.kind == "chebyshev":
            P = np.zeros(self.grid.n[0])
            P[-1] = 1.0
            inner = slice(1, -1)
            P[inner] = np.linalg.solve(M[inner, inner], -M[inner, -1] * 1.0)
            p = b["D1"] @ P
        else:
            q = b["w"]
            r = q * (np.linalg.norm(M, 1) / (q @ q) if np.any(M) else 1.0 / (q @ q))
            p = np.linalg.solve(M + np.outer(r, q), r)
        if not np.all(np.isfinite(p)):
            raise StabilityError("the stationary solve failed (singular generator)", time=t)
        return p / self.grid.integrate(p)

    def eigenvalues(self, t: float = 0.0) -> np.ndarray:
        """All eigenvalues λ of the semi-discrete generator, sorted by decreasing real part (0 first).

        On a Chebyshev grid the eigenvalues are those of the Dirichlet problem for the cumulative mass
        (the relaxation modes) plus the exact 0 of the steady state.
        """
        M = self.operator(t)
        if self.grid.kind == "chebyshev":
            lam = np.concatenate([[0.0], sla.eigvals(M[1:-1, 1:-1])])
        else:
            lam = sla.eigvals(M)
        order = np.lexsort((np.abs(lam.imag), -lam.real))
        lam = lam[order]
        return lam.real if np.all(lam.imag == 0) else lam

    def spectrum(self, k: int = 3, t: float = 0.0) -> np.ndarray:
        """The ``k`` slowest relaxation rates −Re λ, ascending (0 first: the steady state).

        Only the slowest modes are resolved; the fastest eigenvalues of any spectral operator are
        discretisation artefacts.
        """
        n = self.grid.n[0]
        if not (isinstance(k, (int, np.integer)) and 1 <= k < n - 1):
            raise ConfigError(f"`k` must be an integer in [1, {n - 2}], got {k!r}")
        rates = np.sort(-np.real(self.eigenvalues(t))) + 0.0  # + 0.0 turns −0.0 into 0.0
        return rates[:k]

    # --- description --------------------------------------------------------------------------------------
    def describe(self) -> dict:
        """The resolved problem, for results files."""
        return {
            "problem": "FokkerPlanck",
            "grid": self.grid.to_dict(),
            "grid_extra": self.grid.extra,
            "drift": [self._A.describe()],
            "diffusion": [[self._D.describe()]],
            "bc": list(self.bc),
            "scheme": self.scheme,
            "time_dependent": self.time_dependent,
            "convention": "Ito; dX = A dt + sqrt(2D) dW",
        }

    def __repr__(self) -> str:
        return f"SpectralFokkerPlanck({self.grid!r}, bc={self.bc})"
