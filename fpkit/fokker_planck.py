"""The Fokker-Planck problem on a finite-volume grid.

    ∂t p = −∇·(A p) + ∇·∇·(D p)        (Itô; D = ½ B Bᵀ for dX = A dt + B dW)

In 1-D with scalar D this is the density of dX = A dt + √(2D) dW. The default spatial scheme is
exponential fitting (Scharfetter-Gummel / Chang-Cooper): positive, mass-conserving with reflecting walls,
and exact for the Gibbs state of a gradient drift. See ``fpkit.solvers.finite_volume``.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from .coefficients import diffusion_field, drift_field
from .errors import ConfigError, StabilityError, check_choice, check_positive, check_times
from .grid import Grid
from .progress import progress
from .solution import Solution
from .solvers import finite_volume as fv
from .solvers.time_stepping import ImplicitStepper, Tridiagonal, advance_to_outputs, require_finite, stepwise

log = logging.getLogger(__name__)

BOUNDARY_CONDITIONS = ("reflecting", "absorbing", "periodic")
SCHEMES = ("exponential", "central")
METHODS = ("explicit", "implicit", "crank-nicolson", "bdf2")
_GAUSS_NODES, _GAUSS_WEIGHTS = np.polynomial.legendre.leggauss(4)
_GAUSS_NODES = 0.5 * (_GAUSS_NODES + 1.0)  # on [0, 1]
_GAUSS_WEIGHTS = 0.5 * _GAUSS_WEIGHTS


def _bad_faces(axis: int, t: float, where: str = "") -> ConfigError:
    """The error for a coefficient that exponential fitting cannot use on a face."""
    return ConfigError(f"`diffusion` must be finite and >= 0 and `drift` finite along axis {axis} at t={t} "
                       f"for scheme='exponential'{where}")  # fmt: skip
EXPLICIT_SAFETY = 0.9  # automatic explicit dt as a fraction of the positivity bound


class FokkerPlanck:
    """Fokker-Planck equation for a density on a grid.

    Parameters
    ----------
    grid : Grid
        ``Grid.uniform`` gives finite volumes; spectral grids (``Grid.chebyshev`` ...) a spectral solver.
    drift : number, array, callable or sequence
        A. Callables are vectorised ``f(x, t)`` (1-D) or ``f(x, y, t)`` returning all components (2-D).
        In d-D also a sequence of d scalar coefficients or an array of shape (d, *grid.shape).
    diffusion : number, array, callable or sequence
        D (not σ: dX = A dt + √(2D) dW). A number is isotropic; in d-D a sequence gives a diagonal D, and in
        2-D a nested 2 × 2 sequence a full symmetric tensor. Must be non-negative; > 0 for the default scheme.
    bc : str or sequence of str
        Per axis: ``"reflecting"`` (zero flux), ``"absorbing"`` (p = 0 on the wall) or ``"periodic"``.
    scheme : str
        ``"exponential"`` (default) or ``"central"`` (comparison; oscillates at cell Péclet > 2).
    time_dependent : bool, optional
        Override the automatic detection of time-dependent callables.
    """

    def __new__(cls, grid: Grid, *args, **kwargs):
        if cls is FokkerPlanck and isinstance(grid, Grid) and grid.kind != "uniform":
            from .spectral import SpectralFokkerPlanck

            return SpectralFokkerPlanck(grid, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self,
        grid: Grid,
        drift: Any = 0.0,
        diffusion: Any = 1.0,
        bc: str | Sequence[str] = "reflecting",
        scheme: str = "exponential",
        time_dependent: bool | None = None,
    ):
        if not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        self.grid = grid
        bcs = (bc,) * grid.ndim if isinstance(bc, str) else tuple(bc)
        if len(bcs) != grid.ndim:
            raise ConfigError(f"`bc` needs 1 or {grid.ndim} entries, got {len(bcs)}")
        self.bc = tuple(check_choice("bc", b, BOUNDARY_CONDITIONS) for b in bcs)
        self.scheme = check_choice("scheme", scheme, SCHEMES)
        self.drift = drift_field(drift, grid)
        self.diffusion = diffusion_field(diffusion, grid)
        self._drift_spec, self._diffusion_spec = drift, diffusion
        coefs = self.drift + [c for row in self.diffusion for c in row if c is not None]
        detected = any(c.time_dependent for c in coefs)
        self.time_dependent = detected if time_dependent is None else bool(time_dependent)
        self._full_tensor = grid.ndim == 2 and self.diffusion[0][1] is not None
        # scheme='exponential' accepts D >= 0: where D vanishes on a face the Scharfetter-Gummel flux takes
        # its limit D -> 0, the upwind flux (see _faces); faces on reflecting walls carry no flux at all
        self._faces_cache: list | None = None
        self._faces_last: tuple | None = None  # (t, faces) of the last time-dependent evaluation
        self._dt_bound: float | None = None  # explicit_dt_bound of a time-independent problem
        self._nodes_cache: dict = {}

    # --- discretisation ---------------------------------------------------------------------------------
    def _face_geometry(self, axis: int):
        """Left end, length and validity of the interval each face's integral runs over (n + 1 faces)."""
        g = self.grid
        c = g.axes[axis]
        h = g.dx[axis]
        n = g.n[axis]
        left = np.empty(n + 1)
        dist = np.full(n + 1, h)
        left[1:n] = c[:-1]
        bc = self.bc[axis]
        if bc == "periodic":
            left[0] = left[n] = c[-1]
        elif bc == "absorbing":
            left[0], dist[0] = g.lo[axis], 0.5 * h
            left[n], dist[n] = c[-1], 0.5 * h
        else:
            left[0], left[n] = c[0] - h, c[-1]  # unused: reflecting faces carry no flux
        return left, dist

    def _points(self, axis: int, coord_along: np.ndarray) -> np.ndarray:
        """Points (n_faces, *other axes, ..., ndim) with ``coord_along`` on ``axis`` and centres elsewhere."""
        g = self.grid
        if self.bc[axis] == "periodic":
            span = g.hi[axis] - g.lo[axis]
            coord_along = np.where(coord_along > g.hi[axis], coord_along - span, coord_along)
        axes = list(g.axes)
        grids = []
        for a in range(g.ndim):
            shape = [1] * (g.ndim + coord_along.ndim - 1)
            if a == axis:
                vals = coord_along
                vals = np.moveaxis(vals.reshape(vals.shape[0], *([1] * (g.ndim - 1)), *vals.shape[1:]), 0, axis)
            else:
                shape[a] = g.n[a]
                vals = axes[a].reshape(shape)
            grids.append(vals)
        full = np.broadcast_arrays(*grids)
        return np.stack(full, axis=-1)

    def _face_nodes(self, a: int):
        """Time-independent face data along axis ``a``, computed once: indices of the cells left and right of
        each face (wrapped for face 0), face distances broadcast to the face array, and the points where the
        coefficients are evaluated (Gauss-Legendre nodes along each face interval for exponential fitting,
        face midpoints for the central flux) with the shape of their values."""
        if a not in self._nodes_cache:
            g = self.grid
            n = g.n[a]
            left, dist = self._face_geometry(a)
            face_shape = list(g.shape)
            face_shape[a] = n + 1
            shape = [1] * g.ndim
            shape[a] = n + 1
            dist_b = np.broadcast_to(dist.reshape(shape), face_shape).copy()
            if self.scheme == "exponential":
                pts = self._points(a, left[:, None] + dist[:, None] * _GAUSS_NODES[None, :])  # (..., q, ndim)
            else:
                pts = self._points(a, (left + 0.5 * dist)[:, None])[..., 0, :]
            flat = pts.reshape(-1, g.ndim)
            nodes = flat[:, 0].copy() if g.ndim == 1 else flat.copy()
            nodes.flags.writeable = False  # reused at every step: a callable must not edit it in place
            self._nodes_cache[a] = (np.r_[n - 1, np.arange(n)], np.r_[np.arange(n), 0], dist_b, nodes,
                                    pts.shape[:-1])  # fmt: skip
        return self._nodes_cache[a]

    def _faces(self, t: float):
        """(alpha, beta) per axis at time ``t``; cached when time-independent."""
        if self._faces_cache is not None:
            return self._faces_cache
        if self._faces_last is not None and self._faces_last[0] == t:
            # time-dependent explicit stepping asks twice per step (stability bound, then the step)
            return self._faces_last[1]
        g = self.grid
        faces = []
        for a in range(g.ndim):
            n = g.n[a]
            idx_l, idx_r, dist_b, nodes, nodes_shape = self._face_nodes(a)
            A, D = self.drift[a], self.diffusion[a][a]
            d_cell = D.on_grid(t)
            if g.ndim == 1 and self.scheme == "exponential":
                faces.append(self._faces_1d(A, D, d_cell, dist_b, nodes, nodes_shape, t))
                continue
            d_left = np.take(d_cell, idx_l, axis=a)
            d_right = np.take(d_cell, idx_r, axis=a)
            alpha = np.empty(d_left.shape)
            beta = np.empty(d_left.shape)
            if self.scheme == "exponential":
                a_q = A.at(nodes, t).reshape(nodes_shape)
                d_q = D.at(nodes, t).reshape(nodes_shape)
                # faces on a reflecting wall carry no flux: their coefficients (evaluated outside the domain)
                # are not used, so a diffusion that vanishes at the wall (CIR/Feller) is fine
                used = np.ones(d_left.shape, dtype=bool)
                if self.bc[a] == "reflecting":
                    wall = [slice(None)] * g.ndim
                    wall[a] = [0, n]
                    used[tuple(wall)] = False
                if np.any(d_q[used] < 0) or not np.all(np.isfinite(a_q[used])) or not np.all(
                    np.isfinite(d_q[used])
                ):
                    raise _bad_faces(a, t)
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    peclet = ((a_q / d_q) @ _GAUSS_WEIGHTS) * dist_b
                # D -> 0 on a face: Pe = ∫A/D diverges and the Scharfetter-Gummel flux tends to the upwind flux
                # J = A⁺ p_left − A⁻ p_right (A the face's mean drift)
                degenerate = used & (np.any(d_q <= 0, axis=-1) | ~np.isfinite(peclet))
                peclet = np.where(used & ~degenerate, peclet, 0.0)
                fv.exponential_fitting_faces(d_left, d_right, np.ascontiguousarray(peclet), dist_b, alpha, beta)
                if np.any(degenerate):
                    a_face = a_q @ _GAUSS_WEIGHTS
                    alpha = np.where(degenerate, np.maximum(a_face, 0.0), alpha)
                    beta = np.where(degenerate, np.maximum(-a_face, 0.0), beta)
            else:
                a_face = A.at(nodes, t).reshape(d_left.shape)
                fv.central_faces(d_left, d_right, np.ascontiguousarray(a_face), dist_b, alpha, beta)
            # boundary faces
            lo_sl = [slice(None)] * g.ndim
            hi_sl = [slice(None)] * g.ndim
            lo_sl[a], hi_sl[a] = 0, n
            lo_sl, hi_sl = tuple(lo_sl), tuple(hi_sl)
            if self.bc[a] == "reflecting":
                alpha[lo_sl] = beta[lo_sl] = alpha[hi_sl] = beta[hi_sl] = 0.0
            elif self.bc[a] == "absorbing":
                alpha[lo_sl] = 0.0  # nothing enters from the wall
                beta[hi_sl] = 0.0
            faces.append((alpha, beta))
        if not self.time_dependent:
            self._faces_cache = faces
        else:
            self._faces_last = (t, faces)
        return faces

    def _faces_1d(self, A, D, d_cell, dist, nodes, nodes_shape, t: float):
        """``_faces`` of a 1-D grid with exponential fitting: the same faces from one compiled pass
        (``finite_volume.exponential_faces_1d``; a time-dependent solve builds them at every step)."""
        a_q = np.ascontiguousarray(A.at(nodes, t).reshape(nodes_shape), dtype=float)
        d_q = np.ascontiguousarray(D.at(nodes, t).reshape(nodes_shape), dtype=float)
        alpha = np.empty(dist.size)
        beta = np.empty(dist.size)
        bad = fv.exponential_faces_1d(a_q, d_q, np.ascontiguousarray(d_cell, dtype=float), dist, _GAUSS_WEIGHTS,
                                      fv.BC_CODES[self.bc[0]], alpha, beta)  # fmt: skip
        if bad >= 0:
            raise _bad_faces(0, t, f" (face {bad} of {dist.size})")
        return alpha, beta

    def _cross_terms(self, t: float):
        if not self._full_tensor:
            return None
        u = self.diffusion[0][1].on_grid(t)
        return [fv.mixed_derivative_matrix(self.grid.shape, u, [1 / h for h in self.grid.dx], self._periodic)]

    @property
    def _periodic(self) -> tuple:
        return tuple(b == "periodic" for b in self.bc)

    def operator(self, t: float = 0.0) -> sp.csr_matrix:
        """The sparse generator L (dp/dt = L p for C-ordered flattened p) at time ``t``.

        Parameters
        ----------
        t : float
            The time at which the coefficients are evaluated.

        Returns
        -------
        scipy.sparse.csr_matrix
            L with dp/dt = L p on the flattened grid (units of 1/t).
        """
        return fv.generator_matrix(
            self.grid.shape, self._faces(t), [1 / h for h in self.grid.dx], self._periodic, self._cross_terms(t)
        )

    def _stepping_operator(self, t: float):
        """L for the implicit steppers: banded in 1-D without periodic wrap, sparse otherwise."""
        if self.grid.ndim == 1 and self.bc[0] != "periodic":
            alpha, beta = self._faces(t)[0]
            c = 1.0 / self.grid.dx[0]
            # dp_i/dt = c [alpha_i p_{i-1} - (beta_i + alpha_{i+1}) p_i + beta_{i+1} p_{i+1}]
            return Tridiagonal(c * alpha[:-1], -c * (beta[:-1] + alpha[1:]), c * beta[1:])
        return self.operator(t)

    def explicit_dt_bound(self, t: float = 0.0) -> float:
        """Largest forward-Euler step that keeps the update positive (and stable): 1 / max |L_ii|.

        Parameters
        ----------
        t : float
            The time at which the coefficients are evaluated.

        Returns
        -------
        float
            The largest stable forward-Euler step (units of t).
        """
        if not self.time_dependent and self._dt_bound is not None:
            return self._dt_bound  # a full pass over the faces: as costly as a few 2-D steps
        diag = np.zeros(self.grid.shape)
        for a, (alpha, beta) in enumerate(self._faces(t)):
            n = self.grid.n[a]
            b_lo = np.take(beta, np.arange(n), axis=a)
            a_hi = np.take(alpha, np.arange(1, n + 1), axis=a)
            diag += (b_lo + a_hi) / self.grid.dx[a]
        if self._full_tensor:
            diag = diag + np.abs(self._cross_terms(t)[0].diagonal()).reshape(self.grid.shape)
        worst = float(np.max(np.abs(diag)))
        bound = np.inf if worst == 0 else 1.0 / worst
        if not self.time_dependent:
            self._dt_bound = bound
        return bound

    # --- solving ----------------------------------------------------------------------------------------
    def _initial(self, p0) -> np.ndarray:
        if callable(p0):
            p0 = p0(*self.grid.meshgrid())
        return self.grid.normalise(np.asarray(p0, dtype=float), "p0")

    def solve(
        self,
        p0,
        t_eval,
        method: str = "crank-nicolson",
        dt: float | None = None,
        t0: float = 0.0,
        progress_bar: bool | None = None,
    ) -> Solution:
        """Evolve ``p0`` from ``t0`` and return the density at each time in ``t_eval``.

        Parameters
        ----------
        p0 : array (grid.shape) or callable f(x[, y, z])
            Initial density; normalised to unit mass. Negative, non-finite or zero-mass input is an error.
        t_eval : sequence of float
            Increasing output times ≥ ``t0`` (model time units).
        method : str
            ``"explicit"`` (forward Euler, automatic stable dt), ``"implicit"`` (backward Euler),
            ``"crank-nicolson"`` (Rannacher start: the first two steps are pairs of half backward-Euler
            steps, so non-smooth data does not ring) or ``"bdf2"`` (variable-step).
        dt : float, optional
            Step size; each interval between output times is split into equal steps no longer than ``dt``.
            Default: 0.9 × the positivity bound (explicit), (t_end − t0)/400 (implicit methods).
        t0 : float
            The start time.
        progress_bar : bool, optional
            Show a progress bar (None: when the output is a terminal and the solve is long).

        Returns
        -------
        fpkit.Solution
            The densities at the times reached (``t_eval``).

        Raises
        ------
        StabilityError
            If an explicit ``dt`` exceeds the stability bound, or the density turns non-finite.
        """
        check_choice("method", method, METHODS)
        t_eval = check_times(t_eval, t0)
        p = self._initial(p0).ravel().copy()
        span = t_eval[-1] - t0
        if dt is not None:
            dt = check_positive("dt", dt)
        if method == "explicit":
            bound = self.explicit_dt_bound(t0)
            if dt is None:
                dt = EXPLICIT_SAFETY * bound
            elif dt > bound * (1 + 1e-12):
                raise StabilityError(
                    f"explicit `dt`={dt:.4g} exceeds the stability bound {bound:.4g} at t={t0}; "
                    f"use dt <= {bound:.4g} or an implicit method",
                    time=t0,
                )
        elif dt is None:
            dt = span / 400 if span > 0 else 1.0
        if method == "crank-nicolson" and (snapshots := self._snapshot_coefficients()) is not None:
            out, n_steps = self._crank_nicolson_snapshots(p, t_eval, t0, dt, *snapshots)
            meta = self.describe() | {"method": method, "dt": dt, "t0": t0, "n_steps": n_steps}
            return Solution(t_eval, out, self.grid, meta)
        if method == "explicit":
            advance = self._explicit
        else:
            advance = stepwise(ImplicitStepper(self._stepping_operator, self.time_dependent, method).step)
        out = np.empty((t_eval.size, *self.grid.shape))

        def record(k, p):
            out[k] = p.reshape(self.grid.shape)

        finite = require_finite(
            "the density turned non-finite by t={t:.6g}; reduce `dt` or use an implicit method"
        )
        with progress(span, "fpkit solve", enable=progress_bar, unit="t") as bar:
            n_steps = advance_to_outputs(p, t_eval, advance, record, t0=t0, dt=dt, check=finite, bar=bar)
        meta = self.describe() | {"method": method, "dt": dt, "t0": t0, "n_steps": n_steps}
        return Solution(t_eval, out, self.grid, meta)

    def _snapshot_coefficients(self):
        """(drift, diffusion) when both coefficients are ``SnapshotInterpolator`` arrays on
        this 1-D grid at the same snapshot times (the FP prediction's), for the compiled Crank-Nicolson
        (``solvers.snapshot_stepping``); else None. Exponential fitting, reflecting or absorbing walls."""
        g = self.grid
        if g.ndim != 1 or self.scheme != "exponential" or self.bc[0] == "periodic" or not self.time_dependent:
            return None
        A, D = (getattr(c, "_value", None) for c in (self.drift[0], self.diffusion[0][0]))
        if not all(callable(getattr(f, "at_points", None)) and getattr(f, "components", 0) is None for f in (A, D)):
            return None
        if not (np.array_equal(A.t, D.t) and all(np.array_equal(f.grid.x, g.x) for f in (A, D))):
            return None
        return A, D

    def _crank_nicolson_snapshots(self, p, t_eval, t0, dt, A, D):
        """``solve``'s Crank-Nicolson in one compiled call (``solvers.snapshot_stepping``): (out, n_steps)."""
        from .solvers import snapshot_stepping as ss
        from .solvers.time_stepping import RANNACHER_STEPS

        ts = A.t
        if np.any(D.values < 0):
            k = int(np.argwhere(D.values < 0)[0][0])
            raise ConfigError(f"`diffusion` must be non-negative, min {D.values[k].min():.3g} at t={ts[k]}")
        _, _, dist, nodes, nodes_shape = self._face_nodes(0)
        a_nodes = np.ascontiguousarray(A.at_points(nodes).reshape(ts.size, *nodes_shape))
        d_nodes = np.ascontiguousarray(D.at_points(nodes).reshape(ts.size, *nodes_shape))
        out = np.empty((t_eval.size, *self.grid.shape))
        info = np.zeros(4)
        ss.crank_nicolson_snapshots_1d(p, t_eval, float(t0), float(dt), RANNACHER_STEPS, np.ascontiguousarray(ts),
                                       a_nodes, d_nodes, np.ascontiguousarray(D.values), dist, _GAUSS_WEIGHTS,
                                       fv.BC_CODES[self.bc[0]], 1.0 / self.grid.dx[0], out, info)  # fmt: skip
        status, when = int(info[0]), float(info[2])
        if status == ss.BAD_COEFFICIENT:
            raise _bad_faces(0, when, f" (face {int(info[3])} of {dist.size})")
        if status == ss.NOT_FINITE:
            raise StabilityError(f"the density turned non-finite by t={when:.6g}; reduce `dt` or use an implicit "
                                 "method", time=when)  # fmt: skip
        if status == ss.SINGULAR:
            raise np.linalg.LinAlgError("singular matrix")
        return out, int(info[1])

    def _explicit(self, p: np.ndarray, t: float, h: float, n: int) -> np.ndarray:
        g = self.grid
        fast = g.ndim <= 2 and not self._full_tensor
        if self.time_dependent:
            for i in range(n):
                ti = t + i * h
                bound = self.explicit_dt_bound(ti)
                if h > bound * (1 + 1e-12):
                    raise StabilityError(
                        f"explicit step {h:.4g} exceeds the stability bound {bound:.4g} at t={ti:.6g}; "
                        "reduce `dt` or use an implicit method",
                        time=ti,
                    )
                p = self._explicit_steps(p, ti, h, 1, fast)
            return p
        return self._explicit_steps(p, t, h, n, fast)

    def _explicit_steps(self, p, t, h, n, fast):
        g = self.grid
        if not fast:
            L = self.operator(t)
            for _ in range(n):
                p = p + h * (L @ p)
            return p
        faces = self._faces(t)
        work = np.empty(g.shape)
        q = p.reshape(g.shape).copy()
        if g.ndim == 1:
            alpha, beta = faces[0]
            fv.explicit_euler_1d(q, alpha, beta, 1.0 / g.dx[0], self._periodic[0], h, n, work)
        else:
            (ax, bx), (ay, by) = faces
            fv.explicit_euler_2d(
                q, ax, bx, ay, by, 1 / g.dx[0], 1 / g.dx[1], self._periodic[0], self._periodic[1], h, n, work
            )
        return q.ravel()

    # --- steady state and spectrum ----------------------------------------------------------------------
    def stationary(self, t: float = 0.0) -> np.ndarray:
        """The normalised steady state of the generator at time ``t`` (reflecting/periodic walls).

        Parameters
        ----------
        t : float
            The time at which the coefficients are evaluated.

        Returns
        -------
        array (*grid.shape)
            The steady state, Σ p·cell_volume = 1.
        """
        if "absorbing" in self.bc:
            raise ConfigError("`bc`='absorbing' has no normalisable steady state (all mass leaves)")
        L = self.operator(t).tolil()
        n = L.shape[0]
        # replace the equation of the most probable-looking row by the normalisation Σ p vol = 1
        row = n // 2
        L[row, :] = np.full(n, self.grid.cell_volume)
        rhs = np.zeros(n)
        rhs[row] = 1.0
        p = spla.spsolve(L.tocsc(), rhs)
        p = np.where(np.abs(p) < 1e-300, 0.0, p)
        if not np.all(np.isfinite(p)):
            raise StabilityError("the stationary solve failed (singular generator)", time=t)
        return (p / (p.sum() * self.grid.cell_volume)).reshape(self.grid.shape)

    def spectrum(self, k: int = 3, t: float = 0.0) -> np.ndarray:
        """The ``k`` slowest relaxation rates −Re λ of the generator, ascending (0 first for closed walls).

        Parameters
        ----------
        k : int
            How many rates.
        t : float
            The time at which the coefficients are evaluated.

        Returns
        -------
        array (k,)
            Rates (units of 1/t).
        """
        L = self.operator(t)
        n = L.shape[0]
        if not (isinstance(k, (int, np.integer)) and 1 <= k < n - 1):
            raise ConfigError(f"`k` must be an integer in [1, {n - 2}], got {k!r}")
        if n <= 1200:
            lam = np.linalg.eigvals(L.toarray())
        else:
            shift = -1e-7 * float(np.max(np.abs(L.diagonal())))
            lam = spla.eigs(L.tocsc(), k=k, sigma=shift, which="LM", return_eigenvectors=False)
        rates = np.sort(-lam.real)
        return rates[:k]

    # --- conversions and description --------------------------------------------------------------------
    def sde(self):
        """The Langevin SDE dX = A dt + √(2D) dW with this problem's coefficients and walls (fpkit.SDE).

        Returns
        -------
        fpkit.SDE
            The sampler of the same problem.
        """
        from .sde import sde_from_fokker_planck

        return sde_from_fokker_planck(self)

    def log_density_form(self):
        """The KPZ-type equation for h = ln p (ν = D, λ = 2D, advection −A∂h, source −∂A); see
        ``fpkit.derived_forms`` and docs/derivations.md.

        Returns
        -------
        fpkit.derived_forms.LogDensityForm
            The derived problem.
        """
        from .derived_forms import log_density_form

        return log_density_form(self)

    def callan_symanzik_form(self):
        """The Callan-Symanzik form [∂t + A∂w + (∂w A)] p = D ∂w² p (β = A, γ = ∂A, κ = D).

        Returns
        -------
        fpkit.CallanSymanzik
            The same problem as a CS equation.
        """
        from .derived_forms import callan_symanzik_form

        return callan_symanzik_form(self)

    def compare_forms(self, p0, t_eval, **kwargs):
        """Solve this problem as FP, log-density (KPZ-type) and CS forms; report their mutual differences.

        Parameters
        ----------
        p0 : array or callable
            The initial density.
        t_eval : sequence of float
            Output times.
        **kwargs
            Passed to ``fpkit.derived_forms.compare_forms``.

        Returns
        -------
        fpkit.derived_forms.FormComparison
            The three solutions and their mutual distances.
        """
        from .derived_forms import compare_forms

        return compare_forms(self, p0, t_eval, **kwargs)

    def describe(self) -> dict:
        """The resolved problem, for results files.

        Returns
        -------
        dict
            Grid, coefficients, walls, scheme and the convention (Itô).
        """
        return {
            "problem": "FokkerPlanck",
            "grid": self.grid.to_dict(),
            "drift": [c.describe() for c in self.drift],
            "diffusion": [[c.describe() if c is not None else None for c in row] for row in self.diffusion],
            "bc": list(self.bc),
            "scheme": self.scheme,
            "time_dependent": self.time_dependent,
            "convention": "Ito; dX = A dt + sqrt(2D) dW",
        }

    def __repr__(self) -> str:
        return f"FokkerPlanck({self.grid!r}, bc={self.bc}, scheme={self.scheme!r})"
