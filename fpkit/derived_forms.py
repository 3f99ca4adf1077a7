"""The two derived forms of a 1-D Fokker-Planck problem, each solved by its own solver, and their comparison.

For ``∂t p = −∂x(A p) + ∂x²(D p)`` (Itô, ``dX = A dt + √(2D) dW``):

* **Log-density (KPZ-type) form.** With ``h = ln p`` (needs p > 0)::

      ∂t h = ν ∂x²h + (λ/2)(∂x h)² − a ∂x h − q,
      ν = D,  λ = 2D,  a = A − 2∂x D,  q = ∂x A − ∂x² D,

  for constant D: ν = D, λ = 2D, a = A, q = ∂x A. A deterministic KPZ equation with variable advection
  and a source; solved by the method of lines (Lam-Shin stencil for (∂h)², stiff BDF integrator).

* **Callan-Symanzik form.** Expanding the derivatives::

      [∂t + β ∂x + γ] p = κ ∂x² p,   β = A − 2∂x D,  γ = ∂x A − ∂x² D,  κ = D,

  the CS equation with running scale s = t; for constant D: β = A, γ = ∂A, κ = D. Solved by
  ``fpkit.CallanSymanzik``.

The derivations, assumptions and the boundary conditions are in ``docs/derivations.md``. ``compare_forms``
solves the Fokker-Planck equation and both forms on one problem and reports their mutual differences:
that they agree is a test of all three solvers, not an assumption.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.integrate import solve_ivp

from .callan_symanzik import CallanSymanzik, CSSolution
from .coefficients import Coefficient
from .errors import ConfigError, StabilityError, check_choice, check_positive, check_times
from .grid import Grid
from .solution import Solution

__all__ = [
    "FormComparison",
    "LogDensityForm",
    "LogDensitySolution",
    "callan_symanzik_form",
    "compare_forms",
    "log_density_form",
]

FORMS = ("fp", "log", "cs")


# --- coefficients and their derivatives ------------------------------------------------------------------
def _derivative(coef: Coefficient, order: int) -> Callable[[np.ndarray, float], np.ndarray]:
    """d^order/dx^order of a 1-D coefficient as a callable f(x, t).

    Constants give zero; arrays on the grid are differentiated through their cubic spline; callables by a
    fourth-order central difference with step h = 1e-3 × (domain length): truncation ~h⁴, round-off
    ~1e-16·|f|/h^order, both far below the discretisation errors of the solvers.
    """
    if coef.kind == "constant":
        return lambda x, t: np.zeros(np.shape(x))
    grid = coef.grid
    if coef.kind == "array":
        from scipy.interpolate import CubicSpline

        spline = CubicSpline(grid.x, coef.on_grid(), extrapolate=True).derivative(order)
        return lambda x, t: spline(np.asarray(x, dtype=float))
    h = 1e-3 * (grid.hi[0] - grid.lo[0])

    def f(x, t):
        x = np.asarray(x, dtype=float)
        vals = [coef.at(x + k * h, t) for k in (-2, -1, 1, 2)]
        if order == 1:
            return (8.0 * (vals[2] - vals[1]) - (vals[3] - vals[0])) / (12.0 * h)
        mid = coef.at(x, t)
        return (-(vals[0] + vals[3]) + 16.0 * (vals[1] + vals[2]) - 30.0 * mid) / (12.0 * h * h)

    return f


def _check_fp(fp) -> None:
    grid = getattr(fp, "grid", None)
    if not isinstance(grid, Grid) or not hasattr(fp, "drift") or not hasattr(fp, "diffusion"):
        raise ConfigError(f"`fp` must be an fpkit.FokkerPlanck, got {type(fp).__name__}")
    if grid.ndim != 1 or grid.kind != "uniform":
        raise ConfigError("the derived forms are implemented for 1-D uniform grids; `fp` has " + repr(grid))


class _Coefficients:
    """A, D of a 1-D FP problem and the derived a = A − 2D', q = A' − D'' (β and γ of the CS form)."""

    def __init__(self, fp):
        _check_fp(fp)
        self.grid: Grid = fp.grid
        self.A: Coefficient = fp.drift[0]
        self.D: Coefficient = fp.diffusion[0][0]
        if self.D.time_dependent:
            raise ConfigError(
                "`fp` has a time-dependent diffusion; the derived forms need D(x) independent of time "
                "(see docs/derivations.md)"
            )
        if np.any(self.D.on_grid() <= 0):
            raise ConfigError("`fp` diffusion must be > 0 everywhere for the derived forms (ν = D, κ = D)")
        self.time_dependent = bool(self.A.time_dependent)
        self.constant_D = self.D.is_constant
        self.dA = _derivative(self.A, 1)
        self.dD = _derivative(self.D, 1)
        self.d2D = _derivative(self.D, 2)

    def D_at(self, x):
        return self.D.at(np.asarray(x, dtype=float), 0.0)

    def advection(self, x, t):
        """a = β = A − 2 ∂x D."""
        return self.A.at(np.asarray(x, dtype=float), t) - 2.0 * self.dD(x, 0.0)

    def source(self, x, t):
        """q = γ = ∂x A − ∂x² D."""
        return self.dA(x, t) - self.d2D(x, 0.0)

    def wall_gradient(self, x, t):
        """∂x h at a reflecting wall: zero flux A p − ∂x(D p) = 0 ⇔ ∂x h = (A − ∂x D)/D."""
        return (self.A.at(np.asarray(x, dtype=float), t) - self.dD(x, 0.0)) / self.D_at(x)


# --- log-density form ------------------------------------------------------------------------------------
class LogDensitySolution(Solution):
    """Solution of the log-density form: ``h = ln p`` (n_t, n) and ``p = exp(h)``."""

    kind = "fpkit.LogDensitySolution"
    _datasets = ("t", "h")

    def __init__(self, t, h, grid: Grid, meta: dict | None = None):
        self.h = np.asarray(h, dtype=float)
        super().__init__(t, np.exp(self.h), grid, meta)

    @classmethod
    def _from_stored(cls, fields, meta, grid):
        return cls(fields["t"], fields["h"], grid, meta)


def log_density_rhs(h, dx, nu, lam, a, q, wall, periodic):
    """Right-hand side of ``∂t h = ν ∂²h + (λ/2)(∂h)² − a ∂h − q`` on cell centres, with its tridiagonal
    Jacobian's three diagonals.

    Face gradients ``g_{i+½} = (h_{i+1} − h_i)/dx``; the wall faces carry the given gradients ``wall``
    (reflecting) or wrap (periodic). (∂h)² is the Lam-Shin combination (g₋² + g₋g₊ + g₊²)/3, ∂h the mean of
    the two face gradients: both second order.

    Returns
    -------
    rhs : ndarray (n,)
    lower, diag, upper : ndarray (n,)
        ∂rhs_i/∂h_{i−1}, ∂rhs_i/∂h_i, ∂rhs_i/∂h_{i+1} (lower[0] and upper[-1] are the periodic wrap terms).
    """
    n = h.size
    g = np.empty(n + 1)
    g[1:n] = np.diff(h) / dx
    if periodic:
        g[0] = g[n] = (h[0] - h[-1]) / dx
    else:
        g[0], g[n] = wall
    gm, gp = g[:-1], g[1:]
    rhs = nu * (gp - gm) / dx + (lam / 6.0) * (gm * gm + gm * gp + gp * gp) - 0.5 * a * (gm + gp) - q
    r_plus = nu / dx + (lam / 6.0) * (2.0 * gp + gm) - 0.5 * a  # ∂rhs/∂g₊
    r_minus = -nu / dx + (lam / 6.0) * (2.0 * gm + gp) - 0.5 * a  # ∂rhs/∂g₋
    upper = r_plus / dx
    lower = -r_minus / dx
    diag = (r_minus - r_plus) / dx
    if not periodic:  # wall gradients do not depend on h
        diag[0] -= r_minus[0] / dx
        diag[-1] += r_plus[-1] / dx
        lower[0] = upper[-1] = 0.0
    return rhs, lower, diag, upper


@dataclass
class LogDensityForm:
    """The KPZ-type equation for ``h = ln p`` of a 1-D Fokker-Planck problem.

    ``∂t h = ν ∂x²h + (λ/2)(∂x h)² − a ∂x h − q`` with ν = D, λ = 2D, a = A − 2∂x D, q = ∂x A − ∂x² D
    (for constant D: ν = D, λ = 2D, a = A, q = ∂x A). Reflecting walls become the gradient condition
    ∂x h = (A − ∂x D)/D; periodic walls wrap.

    Attributes
    ----------
    grid : Grid
    nu, lam : ndarray (n,)
        ν and λ on the cell centres (constant arrays for constant D).
    bc : str
        ``"reflecting"`` or ``"periodic"``.
    """

    grid: Grid
    nu: np.ndarray
    lam: np.ndarray
    bc: str
    _coefs: _Coefficients = field(repr=False)

    @property
    def time_dependent(self) -> bool:
        return self._coefs.time_dependent

    def advection(self, t: float = 0.0) -> np.ndarray:
        """a(x, t) on the cell centres."""
        return np.asarray(self._coefs.advection(self.grid.x, t), dtype=float)

    def source(self, t: float = 0.0) -> np.ndarray:
        """q(x, t) on the cell centres."""
        return np.asarray(self._coefs.source(self.grid.x, t), dtype=float)

    def rhs(self, h: np.ndarray, t: float = 0.0) -> np.ndarray:
        """∂t h for a profile ``h`` on the grid (the method-of-lines right-hand side)."""
        return self._rhs_jac(h, t)[0]

    def _rhs_jac(self, h, t):
        lo, hi = self.grid.lo[0], self.grid.hi[0]
        wall = (0.0, 0.0)
        if self.bc == "reflecting":
            wall = tuple(float(v) for v in self._coefs.wall_gradient(np.array([lo, hi]), t))
        return log_density_rhs(
            h,
            self.grid.dx[0],
            self.nu,
            self.lam,
            self.advection(t),
            self.source(t),
            wall,
            self.bc == "periodic",
        )

    def _jacobian(self, h, t) -> sp.csc_matrix:
        _, lower, diag, upper = self._rhs_jac(h, t)
        n = h.size
        J = sp.diags([lower[1:], diag, upper[:-1]], [-1, 0, 1], shape=(n, n), format="lil")
        if self.bc == "periodic":
            J[0, n - 1] = lower[0]
            J[n - 1, 0] = upper[-1]
        return J.tocsc()

    def solve(
        self,
        p0=None,
        t_eval=(1.0,),
        *,
        h0=None,
        t0: float = 0.0,
        method: str = "BDF",
        rtol: float = 1e-9,
        atol: float = 1e-9,
    ) -> LogDensitySolution:
        """Evolve ``h = ln p`` from ``p0`` (or ``h0``) and return it at ``t_eval``.

        Parameters
        ----------
        p0 : array (n,) or callable p0(x)
            Initial density, strictly positive everywhere (it is not renormalised: pass what the FP solver
            gets for a like-for-like comparison).
        t_eval : sequence of float
            Strictly increasing times ≥ ``t0``.
        h0 : array (n,), optional
            The initial log-density instead of ``p0`` (allows densities below the float range).
        method : str
            A stiff scipy integrator: ``"BDF"`` (default), ``"Radau"`` or ``"LSODA"``.
        rtol, atol : float
            Tolerances of the time integrator (on h, so ``atol`` is a relative error of p).

        Raises
        ------
        ConfigError
            If ``p0`` is not positive and finite everywhere, or both/neither of ``p0`` and ``h0`` are given.
        StabilityError
            If the integrator fails (the step size collapsed).
        """
        check_choice("method", method, ("BDF", "Radau", "LSODA"))
        n = self.grid.n[0]
        if (p0 is None) == (h0 is None):
            raise ConfigError("give exactly one of `p0` (a positive density) and `h0` (its logarithm)")
        if h0 is not None:
            h = np.array(h0, dtype=float)
            if h.shape != (n,) or not np.all(np.isfinite(h)):
                raise ConfigError(f"`h0` must be a finite array of shape ({n},)")
        else:
            h = np.log(positive_density(p0, self.grid))
        t_eval = check_times(t_eval, t0)
        rtol, atol = check_positive("rtol", rtol), check_positive("atol", atol)
        out = np.empty((t_eval.size, n))
        at_start = t_eval == t0
        out[at_start] = h
        meta = {
            "form": "log-density",
            "method": method,
            "rtol": rtol,
            "atol": atol,
            "bc": self.bc,
            "equation": "dh/dt = nu h'' + (lam/2) h'^2 - a h' - q, h = ln p",
        }
        if np.all(at_start):
            return LogDensitySolution(t_eval, out, self.grid, meta)
        jac_kw: dict[str, Any] = {}
        if method != "LSODA":
            jac_kw["jac"] = lambda t, y: self._jacobian(y, t)
        sol = solve_ivp(
            lambda t, y: self.rhs(y, t),
            (t0, float(t_eval[-1])),
            h,
            method=method,
            t_eval=t_eval[~at_start],
            rtol=rtol,
            atol=atol,
            **jac_kw,
        )
        if sol.status != 0 or not np.all(np.isfinite(sol.y)):
            t_fail = float(sol.t[-1]) if sol.t.size else t0
            raise StabilityError(
                f"log-density integration failed near t={t_fail:.6g}: {sol.message}", time=t_fail
            )
        out[~at_start] = sol.y.T
        meta["n_rhs"] = int(sol.nfev)
        return LogDensitySolution(t_eval, out, self.grid, meta)


def positive_density(p0, grid: Grid, name: str = "p0") -> np.ndarray:
    """``p0`` (array or callable) on the grid's centres, checked to be finite and > 0 everywhere."""
    if callable(p0):
        try:
            p0 = p0(grid.x)
        except Exception as exc:
            raise ConfigError(f"`{name}` callable failed: {exc!r}") from exc
    if np.shape(p0) not in ((), grid.shape):
        raise ConfigError(f"`{name}` has shape {np.shape(p0)}, expected {grid.shape}")
    p = np.array(np.broadcast_to(np.asarray(p0, dtype=float), grid.shape))
    if not np.all(np.isfinite(p)):
        raise ConfigError(f"`{name}` contains non-finite values")
    if np.any(p <= 0):
        i = int(np.argmin(p))
        raise ConfigError(
            f"`{name}` must be > 0 everywhere for the log-density form (h = ln p); it is {p[i]:.3g} at "
            f"x={grid.x[i]:.6g}. Start from a density bounded away from zero (e.g. add a small floor), "
            "shrink the domain, or pass `h0` (the log-density) directly"
        )
    return p


def log_density_form(fp) -> LogDensityForm:
    """The KPZ-type log-density form of a 1-D FokkerPlanck problem (see the module docstring).

    Raises
    ------
    ConfigError
        For grids other than 1-D uniform, absorbing walls (ln p = −∞ there), time-dependent or non-positive D.
    """
    coefs = _Coefficients(fp)
    bc = fp.bc[0]
    if bc == "absorbing":
        raise ConfigError(
            "`fp` has absorbing walls (p = 0 there): the log-density form needs p > 0; use bc='reflecting'"
        )
    D = np.asarray(coefs.D.on_grid(), dtype=float)
    return LogDensityForm(coefs.grid, D.copy(), 2.0 * D, bc, coefs)


def callan_symanzik_form(fp) -> CallanSymanzik:
    """The Callan-Symanzik form ``[∂t + β ∂x + γ] p = κ ∂x² p`` of a 1-D FokkerPlanck problem.

    β = A − 2∂x D, γ = ∂x A − ∂x² D, κ = D (β = A, γ = ∂x A, κ = D for constant D), scale s = t. Time-dependent
    drifts give a scale-dependent CS equation. The CS grid solvers treat the walls by ghost values, not by
    the zero-flux condition; solve with ``inflow=0`` (no density outside the domain, as ``compare_forms``
    does): the forms then agree with a reflecting FP solution while the density at the walls is negligible
    (see docs/derivations.md). The default zero-gradient inflow is wrong for a confining drift, whose
    γ = ∂A < 0 at the walls would amplify the wall value like exp(|∂A| t).

    Raises
    ------
    ConfigError
        For grids other than 1-D uniform, periodic walls, time-dependent or non-positive D.
    """
    coefs = _Coefficients(fp)
    if fp.bc[0] == "periodic":
        raise ConfigError("`fp` has periodic walls, which the CallanSymanzik grid solvers do not support")
    sd = coefs.time_dependent
    if sd:
        beta = coefs.advection
        gamma = coefs.source
    else:
        beta = lambda x: coefs.advection(x, 0.0)
        gamma = lambda x: coefs.source(x, 0.0)
    kappa = float(coefs.D.on_grid()[0]) if coefs.constant_D else np.asarray(coefs.D.on_grid(), dtype=float)
    return CallanSymanzik(coefs.grid, beta=beta, gamma=gamma, kappa=kappa, scale_dependent=sd)


# --- comparison ----------------------------------------------------------------------------------------
@dataclass
class FormComparison:
    """The FP solution and its two derived forms on one problem, with their mutual differences.

    Attributes
    ----------
    t : ndarray (n_t,)
    grid : Grid
    p : dict
        ``{"fp": (n_t, n), "log": ..., "cs": ...}`` densities on the cell centres.
    max_abs : dict
        ``{("fp", "log"): (n_t,), ...}``: max over x of |p_a − p_b| at each time.
    l1 : dict
        ``{("fp", "log"): (n_t,), ...}``: ∫|p_a − p_b| dx at each time.
    mass : dict
        ``{"fp": (n_t,), ...}``: ∫ p dx (the log and CS forms do not conserve it exactly).
    meta : dict
        Methods and step sizes used for each form.
    """

    t: np.ndarray
    grid: Grid
    p: dict
    max_abs: dict
    l1: dict
    mass: dict
    meta: dict

    def max_difference(self, norm: str = "l1") -> float:
        """The largest difference between any two forms at any time (``"l1"`` or ``"max"``)."""
        check_choice("norm", norm, ("l1", "max"))
        table = self.l1 if norm == "l1" else self.max_abs
        return float(max(np.max(v) for v in table.values()))

    def summary(self) -> dict:
        """JSON-friendly digest: per pair the largest L1 and max-abs differences, per form the mass drift."""
        return {
            "n": self.grid.n[0],
            "t_end": float(self.t[-1]),
            "l1": {f"{a}-{b}": float(np.max(v)) for (a, b), v in self.l1.items()},
            "max_abs": {f"{a}-{b}": float(np.max(v)) for (a, b), v in self.max_abs.items()},
            "mass_drift": {k: float(np.max(np.abs(v - v[0]))) for k, v in self.mass.items()},
        }


def compare_forms(
    fp,
    p0,
    t_eval,
    *,
    fp_method: str = "crank-nicolson",
    dt: float | None = None,
    cs_method: str = "semi-lagrangian",
    cs_kwargs: dict | None = None,
    log_kwargs: dict | None = None,
) -> FormComparison:
    """Solve the FP equation, its log-density form and its CS form from the same initial data and compare.

    Parameters
    ----------
    fp : FokkerPlanck
        A 1-D problem with reflecting walls and D > 0 independent of time.
    p0 : array (n,) or callable p0(x)
        Initial density, > 0 everywhere; it is normalised once and the same array is given to all three
        solvers (the FP solver reads it as cell averages, the forms as centre values: an O(dx²) difference
        that is part of the discretisation error).
    t_eval : sequence of float
        Strictly increasing times > 0.
    fp_method : str
        Time stepper of ``fp.solve``; default Crank-Nicolson (second order).
    dt : float, optional
        FP time step; default dx/2, proportional to dx so that Crank-Nicolson's time error (~dt²) shrinks at
        the same second order as the space error.
    cs_method : str
        ``"semi-lagrangian"`` (default) or ``"upwind"``.
    cs_kwargs, log_kwargs : dict, optional
        Extra arguments of ``CallanSymanzik.solve`` and ``LogDensityForm.solve``.

    Returns
    -------
    FormComparison
    """
    _check_fp(fp)
    if fp.bc[0] != "reflecting":
        raise ConfigError(f"compare_forms needs reflecting walls, `fp` has bc={fp.bc[0]!r}")
    check_choice("cs_method", cs_method, ("semi-lagrangian", "upwind"))
    grid = fp.grid
    p_init = grid.normalise(positive_density(p0, grid), "p0")
    t_eval = np.atleast_1d(np.asarray(t_eval, dtype=float))
    if t_eval.ndim != 1 or t_eval.size == 0 or t_eval[0] <= 0 or np.any(np.diff(t_eval) <= 0):
        raise ConfigError("`t_eval` must be a non-empty, strictly increasing sequence of times > 0")
    if dt is None:
        # CN's error ~dt² then shrinks like the spatial error ~dx²
        dt = 0.5 * grid.dx[0]
    sol_fp = fp.solve(p_init, t_eval, method=fp_method, dt=dt)
    sol_log = log_density_form(fp).solve(p_init, t_eval, **(log_kwargs or {}))
    cs = callan_symanzik_form(fp)
    # no density outside the walls: characteristics entering the domain carry zero (see callan_symanzik_form)
    cs_args = {"inflow": 0.0} | dict(cs_kwargs or {})
    sol_cs: CSSolution = cs.solve(p_init, t_eval, method=cs_method, **cs_args)
    p = {"fp": np.asarray(sol_fp.p), "log": sol_log.p, "cs": sol_cs.G}
    pairs = [("fp", "log"), ("fp", "cs"), ("log", "cs")]
    max_abs = {pr: np.max(np.abs(p[pr[0]] - p[pr[1]]), axis=1) for pr in pairs}
    l1 = {pr: np.asarray(grid.integrate(np.abs(p[pr[0]] - p[pr[1]]))) for pr in pairs}
    mass = {k: np.asarray(grid.integrate(v)) for k, v in p.items()}
    meta = {
        "fp": {"method": fp_method, "dt": dt, "n_steps": sol_fp.meta.get("n_steps")},
        "log": {k: sol_log.meta[k] for k in ("method", "rtol", "atol") if k in sol_log.meta},
        "cs": {k: v for k, v in sol_cs.meta.items() if k in ("method", "ds", "n_steps", "limiter", "cfl")},
    }
    return FormComparison(t_eval, grid, p, max_abs, l1, mass, meta)
