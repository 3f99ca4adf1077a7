"""Drift and diffusion of ensemble samples as functions of the weight value, one snapshot or a series.

Two routes to A and D
---------------------
*Mechanistic* (``mechanistic``): for a weight entry ``w`` with full-batch gradient ``g = ∂L/∂w`` and variance
``v`` of the minibatch-mean gradient (per member), the SDE that SGD approximates (Li, Tai & E 2017) has
``A(w) = E[−g | w]`` and ``D(w) = (η/2) E[v | w]``; by Gyöngy's mimicking theorem these conditional
expectations give a 1-D diffusion with the entry's exact one-time marginals. Options:

* ``diffusion="discrete"``: ``D̃ = (η/2) E[v + g² | w]``, the second moment of one SGD step's increment
  divided by ``2η`` (on 1-D linear regression its FP stationary variance equals exact SGD's);
* ``second_order=True``: Li-Tai-E's order-2 drift ``−∇(L + (η/4)|∇L|²)``. Since
  ``∂_j |∇L|² = 2 Σ_k ∂_k L ∂_j∂_k L = 2 (H∇L)_j``, the correction is ``−(η/2)(H∇L)_j``, so
  ``A = E[−g − (η/2) hg | w]`` with ``hg`` the entry of ``H·∇L``;
* ``symmetric=True``: for sign-symmetric networks (density even, A odd, D even) the samples are augmented by
  their mirror images ``(−w, −g, v, −hg)`` before smoothing, which gives exactly odd A and even D.

*Kramers-Moyal* (``kramers_moyal``): conditional moments of the increments ``Δw`` between two snapshots,
``A ≈ E[Δw | w]/Δt``, ``D ≈ E[(Δw − E[Δw|w])² | w]/(2Δt)``; biased by ``O(Δt)`` when A changes within the lag.

The conditional expectations are local-linear fits (``fpkit.estimators.smoothing``). **D is kept positive**:
after the smoothing's tail fallback, ``D ← max(D, d_floor · median(D over supported points))`` with
``d_floor = 1e-3`` (in 2-D the tensor's eigenvalues are floored the same way, relative to the median of
``trace/2``). Estimates of D that come out all zero (no gradient noise) stay zero.

Results come as arrays on a grid at each snapshot time (``CoefficientSeries``), with callables that
interpolate linearly in time between snapshots, ready to pass to ``fpkit.FokkerPlanck``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ConfigError, check_choice, check_positive
from ..grid import Grid
from ..solvers.interp import bilinear_planned, interp_even, interp_planned
from .smoothing import MIN_EFF, LocalLinearFit, _fit_on_grid, bandwidth_rule, local_linear_2d, local_linear_fit

D_FLOOR = 1e-3
"""D is floored at D_FLOOR × median of D over well-supported points."""


@dataclass
class Estimate:
    """Drift and diffusion on a grid at one time.

    Attributes
    ----------
    grid : Grid
    drift : ndarray   1-D: ``grid.shape``; 2-D: ``(2, *grid.shape)`` (vector A)
    diffusion : ndarray   1-D: ``grid.shape``; 2-D: ``(2, 2, *grid.shape)`` (symmetric PSD tensor D)
    drift_se, diffusion_se : ndarray   standard errors of the smoothing (same shapes; NaN where not computed)
    n_eff : ndarray   kernel effective sample count on the grid
    supported : ndarray of bool   well-supported grid points
    bandwidth : float or tuple   kernel bandwidth(s), units of w
    meta : dict   route and options
    """

    grid: Grid
    drift: np.ndarray
    diffusion: np.ndarray
    drift_se: np.ndarray
    diffusion_se: np.ndarray
    n_eff: np.ndarray
    supported: np.ndarray
    bandwidth: float | tuple
    meta: dict = field(default_factory=dict)


def _mirror(odd, even=()) -> list[np.ndarray]:
    """Samples augmented by their mirror images w → −w (``symmetric=True``): the arrays in ``odd`` (positions,
    drift-like responses) change sign, those in ``even`` (diffusion-like responses) do not."""
    return [np.concatenate([a, -a]) for a in odd] + [np.concatenate([a, a]) for a in even]


def _tensor(d00, d01, d11) -> np.ndarray:
    """The symmetric 2×2 tensor field [[d00, d01], [d01, d11]], shape (2, 2, ...)."""
    return np.stack([np.stack([d00, d01]), np.stack([d01, d11])])


def _floor_d(D: np.ndarray, supported: np.ndarray, d_floor: float) -> np.ndarray:
    ref = np.median(D[supported]) if supported.any() else 0.0
    floor = d_floor * ref if ref > 0 else 0.0
    return np.maximum(D, floor)


def _vec(name: str, a, M: int) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.shape != (M,):
        raise ConfigError(f"`{name}` must have shape ({M},) (one value per member), got {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ConfigError(f"`{name}` contains non-finite values")
    return a


def _grid1(grid) -> Grid:
    if not isinstance(grid, Grid) or grid.ndim != 1:
        raise ConfigError("`grid` must be a 1-D fpkit Grid")
    return grid


def mechanistic(
    w,
    g,
    v,
    eta: float,
    grid: Grid,
    *,
    hg=None,
    diffusion: str = "standard",
    second_order: bool = False,
    symmetric: bool = False,
    bandwidth: float | None = None,
    min_eff: float = MIN_EFF,
    tail: str = "widen",
    d_floor: float = D_FLOOR,
    se: bool = True,
) -> Estimate:
    """Mechanistic drift and diffusion of one weight entry at one snapshot (units of ``t = η·step``).

    ``A(w) = E[−g | w]`` (``− (η/2) E[hg | w]`` added if ``second_order``), ``D(w) = (η/2) E[v | w]``
    (``diffusion="standard"``) or ``D̃(w) = (η/2) E[v + g² | w]`` (``"discrete"``). See the module docstring
    for the smoothing, the tail fallback and the floor of D.

    Parameters
    ----------
    w : (M,)   the entry's value in each member
    g : (M,)   full-batch gradient ∂L/∂w in each member
    v : (M,)   variance of the minibatch-mean gradient of this entry in each member (≥ 0)
    eta : float   learning rate η
    grid : Grid (1-D)
    hg : (M,), optional   the entry of H·∇L in each member; required for ``second_order``
    symmetric : bool   augment the samples by their mirror images (A odd, D even)
    bandwidth : float, optional   default ``bandwidth_rule`` (of the augmented samples if symmetric)
    se : bool   compute the smoothing's standard errors (a second pass; ``drift_se``/``diffusion_se`` are NaN
        without it)
    """
    grid = _grid1(grid)
    eta = check_positive("eta", eta)
    check_choice("diffusion", diffusion, ("standard", "discrete"))
    w = np.asarray(w, dtype=float)
    if w.ndim != 1:
        raise ConfigError(f"`w` must have shape (M,), got {w.shape}")
    M = w.size
    w = _vec("w", w, M)
    g = _vec("g", g, M)
    v = _vec("v", v, M)
    if np.any(v < 0):
        raise ConfigError("`v` (a variance) must be non-negative")
    if second_order:
        if hg is None:
            raise ConfigError("`second_order=True` needs `hg` (the entry of H·∇L per member)")
        hg = _vec("hg", hg, M)
    d_floor = check_positive("d_floor", d_floor, strict=False)
    x, resp = _mechanistic_responses(w, g, v, eta, hg, diffusion, second_order, symmetric)
    fit = _fit_on_grid(x, resp, grid, bandwidth, min_eff, tail, se)
    return _mechanistic_estimate(grid, fit, d_floor, {
        "route": "mechanistic",
        "diffusion": diffusion,
        "second_order": bool(second_order),
        "symmetric": bool(symmetric),
        "eta": eta,
        "n_members": M,
        "min_eff": min_eff,
        "tail": tail,
        "d_floor": d_floor,
    })


def _mechanistic_responses(w, g, v, eta, hg, diffusion, second_order, symmetric):
    """Sample positions and the (M, 2) responses (−g [− (η/2) hg], (η/2)(v [+ g²])) of ``mechanistic``."""
    a_s = -g - (0.5 * eta * hg if second_order else 0.0)
    d_s = 0.5 * eta * (v + (g * g if diffusion == "discrete" else 0.0))
    x = w
    if symmetric:
        x, a_s, d_s = _mirror((w, a_s), (d_s,))
    return x, np.stack([a_s, d_s], axis=1)


def _mechanistic_estimate(grid, fit, d_floor, meta) -> Estimate:
    """``mechanistic``'s Estimate from the fit of its two responses (D floored)."""
    D = _floor_d(fit.value[:, 1], fit.supported, d_floor)
    return Estimate(grid, fit.value[:, 0], D, fit.se[:, 0], fit.se[:, 1], fit.n_eff, fit.supported, fit.bandwidth,
                    meta)  # fmt: skip


def kramers_moyal(
    w0,
    w1,
    dt: float,
    grid: Grid,
    *,
    symmetric: bool = False,
    bandwidth: float | None = None,
    min_eff: float = MIN_EFF,
    tail: str = "widen",
    d_floor: float = D_FLOOR,
    se: bool = True,
) -> Estimate:
    """Kramers-Moyal drift and diffusion from the same members at two snapshots ``dt`` apart.

    ``A(w) = E[Δw | w0 = w] / Δt``; ``D(w) = E[r² | w0 = w] / (2Δt)`` with residuals ``r = Δw − m1(w0)`` and
    ``m1`` the local-linear ``E[Δw | w0]`` (evaluated on 512 points across the samples, interpolated).
    Using residuals rather than ``E[Δw²] − m1²`` keeps the drift's variation inside the kernel out of D.
    Both are estimates over the lag (finite-``Δt`` bias when A varies along paths within it).
    ``se=False`` skips the standard errors (NaN), as for ``mechanistic``.
    """
    grid = _grid1(grid)
    dt = check_positive("dt", dt)
    d_floor = check_positive("d_floor", d_floor, strict=False)
    w0 = np.asarray(w0, dtype=float)
    if w0.ndim != 1:
        raise ConfigError(f"`w0` must have shape (M,), got {w0.shape}")
    w0 = _vec("w0", w0, w0.size)
    w1 = _vec("w1", w1, w0.size)
    x, resp, h = _km_responses(w0, w1, symmetric, bandwidth, min_eff, tail)
    fit = _fit_on_grid(x, resp, grid, h, min_eff, tail, se)
    return _km_estimate(grid, fit, dt, d_floor, {
        "route": "kramers-moyal",
        "dt": dt,
        "symmetric": bool(symmetric),
        "n_members": w0.size,
        "min_eff": min_eff,
        "tail": tail,
        "d_floor": d_floor,
    })


def _km_responses(w0, w1, symmetric, bandwidth, min_eff, tail):
    """Sample positions, the (M, 2) responses (Δw, r²) and the bandwidth of ``kramers_moyal`` (None: all
    samples at one point)."""
    dw = w1 - w0
    x, y = w0, dw
    if symmetric:
        x, y = _mirror((w0, dw))
    h = bandwidth_rule(x) if bandwidth is None else check_positive("bandwidth", bandwidth)
    aux = np.linspace(x.min(), x.max(), 512)
    h = h or None  # zero spread (all members equal): local_linear_fit's sample-mean case
    m1 = local_linear_fit(x, y, aux, h, min_eff=min_eff, tail=tail, se=False).value
    r2 = (y - np.interp(x, aux, m1)) ** 2
    return x, np.stack([y, r2], axis=1), h


def _km_estimate(grid, fit, dt, d_floor, meta) -> Estimate:
    """``kramers_moyal``'s Estimate from the fit of its two responses (scaled by the lag, D floored)."""
    A = fit.value[:, 0] / dt
    D = _floor_d(fit.value[:, 1] / (2 * dt), fit.supported, d_floor)
    return Estimate(
        grid, A, D, fit.se[:, 0] / dt, fit.se[:, 1] / (2 * dt), fit.n_eff, fit.supported, fit.bandwidth, meta
    )


# --------------------------------------------------------------------------------------------- 2-D
def _psd_floor(Dt: np.ndarray, supported: np.ndarray, d_floor: float) -> np.ndarray:
    """Symmetrise a (2, 2, ...) tensor field and floor its eigenvalues (closed form for 2×2)."""
    a, b, c = Dt[0, 0], 0.5 * (Dt[0, 1] + Dt[1, 0]), Dt[1, 1]
    half_tr = 0.5 * (a + c)
    ref = np.median(half_tr[supported]) if supported.any() else 0.0
    floor = d_floor * ref if ref > 0 else 0.0
    rad = np.sqrt(0.25 * (a - c) ** 2 + b**2)
    l1, l2 = half_tr + rad, half_tr - rad
    if np.all(l2 >= floor):
        return _tensor(a, b, c)
    # eigenvector of l1: (b, l1 − a) or (l1 − c, b); pick the better-conditioned one
    v1x = np.where(np.abs(l1 - a) + np.abs(b) >= np.abs(l1 - c) + np.abs(b), b, l1 - c)
    v1y = np.where(np.abs(l1 - a) + np.abs(b) >= np.abs(l1 - c) + np.abs(b), l1 - a, b)
    nrm = np.hypot(v1x, v1y)
    iso = nrm == 0  # a == c and b == 0: already diagonal
    v1x = np.where(iso, 1.0, v1x / np.where(iso, 1.0, nrm))
    v1y = np.where(iso, 0.0, v1y / np.where(iso, 1.0, nrm))
    l1, l2 = np.maximum(l1, floor), np.maximum(l2, floor)
    # D = l1 v1 v1ᵀ + l2 v2 v2ᵀ, v2 = (−v1y, v1x)
    d00 = l1 * v1x**2 + l2 * v1y**2
    d11 = l1 * v1y**2 + l2 * v1x**2
    d01 = (l1 - l2) * v1x * v1y
    return _tensor(d00, d01, d11)


def _cov_input(cov, M: int) -> np.ndarray:
    """Per-member 2×2 covariance as (M, 3) = (C00, C01, C11); accepts (M, 2, 2) or (M, 3)."""
    c = np.asarray(cov, dtype=float)
    if c.shape == (M, 2, 2):
        c = np.stack([c[:, 0, 0], 0.5 * (c[:, 0, 1] + c[:, 1, 0]), c[:, 1, 1]], axis=1)
    if c.shape != (M, 3):
        raise ConfigError(f"`cov` must have shape ({M}, 2, 2) or ({M}, 3) = (C00, C01, C11), got {c.shape}")
    if not np.all(np.isfinite(c)) or np.any(c[:, 0] < 0) or np.any(c[:, 2] < 0):
        raise ConfigError("`cov` must be finite with non-negative variances")
    return c


def mechanistic_2d(
    w,
    g,
    cov,
    eta: float,
    grid: Grid,
    *,
    hg=None,
    diffusion: str = "standard",
    second_order: bool = False,
    symmetric: bool = False,
    bandwidth=None,
    min_eff: float = MIN_EFF,
    d_floor: float = D_FLOOR,
    se: bool = True,
) -> Estimate:
    """Mechanistic vector drift and 2×2 diffusion tensor of a pair of weights at one snapshot.

    ``A_i(w) = E[−g_i | w]`` (``− (η/2) E[(H∇L)_i | w]`` if ``second_order``),
    ``D_ij(w) = (η/2) E[C_ij | w]`` with ``C`` the per-member covariance of the minibatch-mean gradients of the
    pair (``diffusion="discrete"`` adds ``g_i g_j``). ``symmetric`` mirrors samples through the origin
    (``A(−w) = −A(w)``, ``D(−w) = D(w)``). D is made symmetric positive semi-definite (eigenvalues floored).

    Parameters
    ----------
    w, g : (M, 2);  cov : (M, 2, 2) or (M, 3);  hg : (M, 2), optional;  grid : 2-D Grid
    se : bool   compute the smoothing's standard errors (a second pass over the samples; NaN without it)
    """
    if not isinstance(grid, Grid) or grid.ndim != 2:
        raise ConfigError("`grid` must be a 2-D fpkit Grid")
    eta = check_positive("eta", eta)
    check_choice("diffusion", diffusion, ("standard", "discrete"))
    d_floor = check_positive("d_floor", d_floor, strict=False)
    w = np.asarray(w, dtype=float)
    if w.ndim != 2 or w.shape[1] != 2:
        raise ConfigError(f"`w` must have shape (M, 2), got {w.shape}")
    M = w.shape[0]
    g = np.asarray(g, dtype=float)
    if g.shape != (M, 2) or not np.all(np.isfinite(g)) or not np.all(np.isfinite(w)):
        raise ConfigError(f"`w` and `g` must be finite with shape ({M}, 2)")
    c = _cov_input(cov, M)
    a_s = -g
    if second_order:
        if hg is None:
            raise ConfigError("`second_order=True` needs `hg` (the pair's entries of H·∇L per member)")
        hg = np.asarray(hg, dtype=float)
        if hg.shape != (M, 2):
            raise ConfigError(f"`hg` must have shape ({M}, 2), got {hg.shape}")
        a_s = a_s - 0.5 * eta * hg
    d_s = 0.5 * eta * c
    if diffusion == "discrete":
        d_s = d_s + 0.5 * eta * np.stack([g[:, 0] ** 2, g[:, 0] * g[:, 1], g[:, 1] ** 2], axis=1)
    x = w
    if symmetric:
        x, a_s, d_s = _mirror((w, a_s), (d_s,))
    fit = local_linear_2d(x, np.concatenate([a_s, d_s], axis=1), grid, bandwidth, min_eff=min_eff, se=se)
    val = np.moveaxis(fit.value, -1, 0)
    err = np.moveaxis(fit.se, -1, 0)
    A = val[:2]
    Dt = _tensor(*val[2:5])
    De = _tensor(*err[2:5])
    D = _psd_floor(Dt, fit.supported, d_floor)
    meta = {
        "route": "mechanistic",
        "diffusion": diffusion,
        "second_order": bool(second_order),
        "symmetric": bool(symmetric),
        "eta": eta,
        "n_members": M,
        "min_eff": min_eff,
        "d_floor": d_floor,
    }
    return Estimate(grid, A, D, err[:2], De, fit.n_eff, fit.supported, fit.bandwidth, meta)


def kramers_moyal_2d(
    w0,
    w1,
    dt: float,
    grid: Grid,
    *,
    symmetric: bool = False,
    bandwidth=None,
    min_eff: float = MIN_EFF,
    d_floor: float = D_FLOOR,
) -> Estimate:
    """Kramers-Moyal vector drift and diffusion tensor of a pair of weights from two snapshots:
    ``A = E[Δw | w0]/Δt``, ``D_ij = E[r_i r_j | w0]/(2Δt)``, ``r = Δw − E[Δw | w0]`` (the conditional mean
    at each member interpolated from the grid estimate)."""
    if not isinstance(grid, Grid) or grid.ndim != 2:
        raise ConfigError("`grid` must be a 2-D fpkit Grid")
    dt = check_positive("dt", dt)
    d_floor = check_positive("d_floor", d_floor, strict=False)
    w0 = np.asarray(w0, dtype=float)
    w1 = np.asarray(w1, dtype=float)
    if w0.ndim != 2 or w0.shape[1] != 2 or w1.shape != w0.shape:
        raise ConfigError(f"`w0` and `w1` must both have shape (M, 2), got {w0.shape} and {w1.shape}")
    if not (np.all(np.isfinite(w0)) and np.all(np.isfinite(w1))):
        raise ConfigError("`w0` and `w1` must be finite")
    dw = w1 - w0
    x, y = w0, dw
    if symmetric:
        x, y = _mirror((w0, dw))
    m1 = local_linear_2d(x, y, grid, bandwidth, min_eff=min_eff, se=False)
    from scipy.interpolate import RegularGridInterpolator

    pts = np.clip(x, [a[0] for a in grid.axes], [a[-1] for a in grid.axes])
    mi = np.stack([RegularGridInterpolator(grid.axes, m1.value[..., k])(pts) for k in range(2)], axis=1)
    r = y - mi
    resp = np.concatenate([y, np.stack([r[:, 0] ** 2, r[:, 0] * r[:, 1], r[:, 1] ** 2], axis=1)], axis=1)
    fit = local_linear_2d(x, resp, grid, m1.bandwidth, min_eff=min_eff)
    val = np.moveaxis(fit.value, -1, 0)
    err = np.moveaxis(fit.se, -1, 0)
    A = val[:2] / dt
    Dt = _tensor(*val[2:5]) / (2 * dt)
    De = _tensor(*err[2:5]) / (2 * dt)
    D = _psd_floor(Dt, fit.supported, d_floor)
    meta = {
        "route": "kramers-moyal",
        "dt": dt,
        "symmetric": bool(symmetric),
        "n_members": w0.shape[0],
        "min_eff": min_eff,
        "d_floor": d_floor,
    }
    return Estimate(grid, A, D, err[:2] / dt, De, fit.n_eff, fit.supported, fit.bandwidth, meta)


# ============================================================================================ time series
class SnapshotInterpolator:
    """A coefficient ``f(x, t)`` (1-D) / ``f(x, y, t)`` (2-D) from arrays on a grid at snapshot times.

    Linear in ``t`` between snapshots and held constant before the first and after the last. At the grid's
    own cell centres (how ``fpkit.FokkerPlanck`` evaluates a callable) the arrays are used directly; at
    other points (e.g. a Langevin sampler's particles) they are interpolated linearly in space and held
    constant beyond the outer cell centres.

    Parameters
    ----------
    t : (S,) increasing snapshot times
    values : (S, *grid.shape), or (S, C, *grid.shape) for C components (then f returns (C, ...))
    grid : Grid
    """

    vectorised_by_design = True  # it interpolates arrays: samplers call it vectorised without a warning

    def __init__(self, t, values, grid: Grid, name: str = "coefficient"):
        t = np.asarray(t, dtype=float)
        values = np.asarray(values, dtype=float)
        if t.ndim != 1 or t.size == 0 or np.any(np.diff(t) <= 0) or not np.all(np.isfinite(t)):
            raise ConfigError(f"`t` must be a non-empty strictly increasing 1-D array of times, got {t}")
        if values.shape[0] != t.size or values.shape[-grid.ndim :] != grid.shape:
            raise ConfigError(
                f"`values` must have shape ({t.size}, [components,] *{grid.shape}), got {values.shape}"
            )
        if not np.all(np.isfinite(values)):
            raise ConfigError(f"`{name}` values contain non-finite entries")
        values = np.array(values)  # own a read-only copy: returned arrays may be views of it
        values.flags.writeable = False
        self.t, self.values, self.grid, self.name = t, values, grid, name
        self.components = values.shape[1] if values.ndim == grid.ndim + 2 else None
        self.__qualname__ = f"SnapshotInterpolator[{name}]"
        self._mesh = grid.meshgrid()
        self._axes = grid.axes  # built by linspace at every access: once here
        self._last = None
        self._plan = None  # (points, InterpPlan) for the last read-only points interpolated at
        self._at = None  # (t, arrays at t) of the last at_time between snapshots
        self._bilinear = []  # [(points, BilinearPlan)] of the last few point sets interpolated at in 2-D

    def uniform_1d(self):
        """(t, values (S, n), nodes) for the compiled 1-D snapshot steppers (``solvers.snapshot_stepping``,
        ``solvers.sde_kernels``) when this is one field on a uniform 1-D grid; else None."""
        if self.grid.ndim != 1 or self.grid.kind != "uniform" or self.components is not None:
            return None
        return self.t, np.ascontiguousarray(self.values), np.ascontiguousarray(self.grid.axes[0])

    def at_time(self, t: float) -> np.ndarray:
        """The arrays on the grid at time ``t`` (linear between snapshots, held outside; read-only)."""
        ts = self.t
        if t <= ts[0]:
            return self.values[0]
        if t >= ts[-1]:
            return self.values[-1]
        if self._at is not None and self._at[0] == t:  # a FP step asks on the grid and at the face nodes
            return self._at[1]
        k = int(np.searchsorted(ts, t, side="right")) - 1
        a = (t - ts[k]) / (ts[k + 1] - ts[k])
        vals = (1 - a) * self.values[k] + a * self.values[k + 1]
        vals.flags.writeable = False
        self._at = (t, vals)
        return vals

    def at_points(self, x: np.ndarray) -> np.ndarray:
        """The scalar 1-D coefficient at the points ``x`` at every snapshot: (S, *x.shape), by the same
        interpolation in space as a call (held constant beyond the outer cell centres)."""
        if self.grid.ndim != 1 or self.components is not None:
            raise ConfigError("at_points needs a scalar coefficient on a 1-D grid")
        x = np.asarray(x, dtype=float)
        interp = self._interp_plan(x, self._axes[0])
        return np.stack([np.asarray(interp(v)).reshape(x.shape) for v in self.values])

    def __call__(self, *args):
        *coords, t = args
        if len(coords) != self.grid.ndim:
            raise ConfigError(
                f"`{self.name}` takes {self.grid.ndim} coordinates and t, got {len(args)} arguments"
            )
        t = float(np.asarray(t))
        # a vector coefficient is evaluated once per component with the same arguments: reuse the result
        last = self._last
        arrays = [np.asarray(c, dtype=float) for c in coords]
        if (
            last is not None
            and last[0] == t
            and all((a is b and _frozen(a)) or a.shape == b.shape and np.array_equal(a, b)
                    for a, b in zip(last[1], arrays))  # fmt: skip
        ):
            return last[2]
        vals = self.at_time(t)
        if (
            all(c.shape == m.shape and np.array_equal(c, m) for c, m in zip(arrays, self._mesh))
            or self.grid.ndim == 1
            and all(c.shape == self.grid.shape and np.array_equal(c, self.grid.x) for c in arrays)
        ):
            out = vals
        else:
            out = self._interp(vals, arrays)
        out = np.asarray(out)
        out.flags.writeable = False  # cached and possibly a view of the snapshots: refuse in-place edits
        # frozen points (a FP solver's nodes) cannot change: kept by reference, others copied
        self._last = (t, [a if _frozen(a) else a.copy() for a in arrays], out)
        return out

    def _interp(self, vals, coords):
        axes = self._axes
        if self.grid.ndim == 1:
            xs = axes[0]
            interp = self._interp_plan(coords[0], xs)
            if self.components is None:
                return interp(vals)
            return np.stack([interp(vals[c]) for c in range(self.components)])
        plan = self._bilinear_plan(coords)
        if self.components is None:
            return plan(vals)
        return np.stack([plan(vals[c]) for c in range(self.components)])

    def _bilinear_plan(self, coords) -> BilinearPlan:
        """The ``BilinearPlan`` of these points (clipped to the outer cell centres); the last few are kept, so
        that a FP solver's face nodes (two sets in 2-D, asked at every step) are located once."""
        plans = self._bilinear
        for key, plan in plans:
            if all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(key, coords)):
                return plan
        shape = np.broadcast_shapes(*(c.shape for c in coords))
        pts = [np.clip(np.broadcast_to(c, shape), a[0], a[-1]) for c, a in zip(coords, self._axes)]
        plan = BilinearPlan(pts, self._axes)
        plans.insert(0, ([np.array(c) for c in coords], plan))
        del plans[4:]
        return plan


    def _interp_plan(self, x: np.ndarray, xs: np.ndarray):
        """``np.interp(x, xs, ·)``, bit for bit: for the same read-only array ``x`` as at the last call (a FP
        solver's face nodes, asked at every step) with the brackets found once (``InterpPlan``); on a uniform
        grid with the brackets from the spacing (``interp_even``)."""
        if not _frozen(x):  # may change in place between calls: nothing to reuse
            if self.grid.kind == "uniform" and x.ndim == 1:  # e.g. a Langevin sampler's particles

                def even(v):
                    out = np.empty(x.size)
                    interp_even(x, xs, np.ascontiguousarray(v, dtype=float), out)
                    return out

                return even
            return lambda v: np.interp(x, xs, v)
        if self._plan is None or self._plan[0] is not x:
            self._plan = (x, InterpPlan(x, xs))
        return self._plan[1]


def _frozen(a: np.ndarray) -> bool:
    """An array that cannot change between calls: read-only and owning its data (not a view of another)."""
    return not a.flags.writeable and a.flags.owndata


class InterpPlan:
    """``np.interp(x, xs, v)`` for fixed finite points ``x`` and increasing nodes ``xs`` and any values ``v``,
    bit for bit: the bracketing interval of every point is found once, and each call evaluates numpy's own
    formula ``slope·(x − xs[j]) + v[j]`` with ``slope = (v[j+1] − v[j])/(xs[j+1] − xs[j])`` (points on a node
    or beyond the ends take the node's value, as numpy does). Saves the binary searches, most of the cost
    when the same points are interpolated at every time step."""

    def __init__(self, x: np.ndarray, xs: np.ndarray):
        x = np.asarray(x, dtype=float).ravel()
        n = xs.size
        self.shape = np.shape(x)
        j = np.searchsorted(xs, x, side="right") - 1  # xs[j] <= x < xs[j + 1]
        on_node = (j < 0) | (j >= n - 1) | (xs[np.clip(j, 0, n - 1)] == x)
        self.node_pos = np.flatnonzero(on_node)
        self.node = np.clip(j, 0, n - 1)[on_node]
        self.pos = np.flatnonzero(~on_node)
        self.j = j[~on_node]
        self.offset = x[~on_node] - xs[self.j]
        self.width = (xs[1:] - xs[:-1])[self.j]
        self.size = x.size

    def __call__(self, v: np.ndarray) -> np.ndarray:
        out = np.empty(self.size)
        interp_planned(np.ascontiguousarray(v, dtype=float), self.pos, self.j, self.offset, self.width,
                       self.node_pos, self.node, out)  # fmt: skip
        return out


class BilinearPlan:
    """Multilinear interpolation of values on the nodes ``axes`` at fixed points ``pts`` (one array per axis,
    inside the nodes), bit for bit as scipy's ``RegularGridInterpolator(axes, values)`` (method "linear") on
    read-only values: the bracketing cells and normalised distances are found once, and each call sums the
    corner terms ``values[corner]·Π weights`` in scipy's order (its Python path, which read-only values take).
    The FP solver's face nodes are the same at every step: this saves building an interpolator and searching
    the nodes per step (most of a 2-D prediction's coefficient evaluation)."""

    def __init__(self, pts, axes):
        self.shape = np.shape(pts[0])
        lo, frac = [], []
        for x, ax in zip(pts, axes):
            x = np.asarray(x, dtype=float).ravel()
            if ax.size < 2 or not np.all(np.isfinite(x)):
                raise ConfigError("BilinearPlan needs finite points and at least two nodes per axis")
            i = np.clip(np.searchsorted(ax, x, side="right") - 1, 0, ax.size - 2)  # ax[i] <= x < ax[i + 1]
            lo.append(i)
            frac.append((x - ax[i]) / (ax[i + 1] - ax[i]))
        # scipy's corner order: itertools.product over the axes of (lower node, 1 − y), (upper node, y)
        self.terms = []
        for corner in itertools.product(*[((i, 1 - y), (i + 1, y)) for i, y in zip(lo, frac)]):
            idx, ws = zip(*corner)
            weight = np.array([1.0])
            for w in ws:
                weight = weight * w
            self.terms.append((idx, weight))
        if len(axes) == 2:  # the corners' weights for the compiled sum
            self.w2 = np.ascontiguousarray(np.stack([np.broadcast_to(w, lo[0].shape) for _, w in self.terms]))
            self.i0, self.i1 = lo

    def __call__(self, v: np.ndarray) -> np.ndarray:
        if len(self.terms) == 4:
            out = np.empty(self.i0.size)
            bilinear_planned(np.ascontiguousarray(v, dtype=float), self.i0, self.i1, self.w2, out)
            return out.reshape(self.shape)
        value = np.array([0.0])
        for idx, weight in self.terms:
            value = value + v[idx] * weight
        return value.reshape(self.shape)


@dataclass
class CoefficientSeries:
    """Drift and diffusion arrays on one grid at a sequence of snapshot times.

    Attributes
    ----------
    t : (S,)   snapshot times (units of ``t = η·step``)
    grid : Grid
    drift : (S, *grid.shape) in 1-D, (S, 2, *grid.shape) in 2-D
    diffusion : (S, *grid.shape) in 1-D, (S, 2, 2, *grid.shape) in 2-D
    drift_se, diffusion_se : same shapes;  n_eff, supported : (S, *grid.shape);  bandwidth : (S,) or (S, 2)
    meta : dict   route and options

    ``fp_coefficients()`` gives ``dict(drift=..., diffusion=...)`` for ``fpkit.FokkerPlanck(grid, **coeffs)``,
    linear in time between snapshots.
    """

    t: np.ndarray
    grid: Grid
    drift: np.ndarray
    diffusion: np.ndarray
    drift_se: np.ndarray
    diffusion_se: np.ndarray
    n_eff: np.ndarray
    supported: np.ndarray
    bandwidth: np.ndarray
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_estimates(cls, t, estimates: Sequence[Estimate]) -> CoefficientSeries:
        if len(estimates) == 0 or len(estimates) != len(np.atleast_1d(t)):
            raise ConfigError(
                f"need one estimate per time, got {len(estimates)} estimates for {np.size(t)} times"
            )
        grid = estimates[0].grid
        st = lambda name: np.stack([getattr(e, name) for e in estimates])
        return cls(
            np.asarray(t, dtype=float),
            grid,
            st("drift"),
            st("diffusion"),
            st("drift_se"),
            st("diffusion_se"),
            st("n_eff"),
            st("supported"),
            np.array([e.bandwidth for e in estimates], dtype=float),
            dict(estimates[0].meta),
        )

    def drift_callable(self) -> SnapshotInterpolator:
        """A(x, t) (1-D) or the vector A(x, y, t) → (2, ...) (2-D), linear in t between snapshots."""
        return SnapshotInterpolator(self.t, self.drift, self.grid, "drift")

    def diffusion_callable(self):
        """D(x, t) in 1-D; in 2-D the nested ``[[D00, D01], [D01, D11]]`` of callables that
        ``fpkit.FokkerPlanck`` accepts for a full tensor."""
        if self.grid.ndim == 1:
            return SnapshotInterpolator(self.t, self.diffusion, self.grid, "diffusion")
        d00 = SnapshotInterpolator(self.t, self.diffusion[:, 0, 0], self.grid, "diffusion[0][0]")
        d01 = SnapshotInterpolator(self.t, self.diffusion[:, 0, 1], self.grid, "diffusion[0][1]")
        d11 = SnapshotInterpolator(self.t, self.diffusion[:, 1, 1], self.grid, "diffusion[1][1]")
        return [[d00, d01], [d01, d11]]

    def fp_coefficients(self) -> dict:
        """``dict(drift=..., diffusion=...)`` for ``fpkit.FokkerPlanck``."""
        return {"drift": self.drift_callable(), "diffusion": self.diffusion_callable()}


def _snapshots(name, a, ndim_item):
    a = np.asarray(a, dtype=float)
    if a.ndim != 1 + ndim_item:
        raise ConfigError(f"`{name}` must have shape (S, M{', 2' if ndim_item == 2 else ''}), got {a.shape}")
    return a


def mechanistic_series(t, w, g, v, eta: float, grid: Grid, *, hg=None, **options) -> CoefficientSeries:
    """``mechanistic`` at every snapshot: ``w``, ``g``, ``v`` (and ``hg``) of shape (S, M), ``t`` (S,).
    Keyword options as for ``mechanistic``; the bandwidth rule is applied per snapshot."""
    w = _snapshots("w", w, 1)
    g, v = _snapshots("g", g, 1), _snapshots("v", v, 1)
    t = np.asarray(t, dtype=float)
    if t.shape != (w.shape[0],) or g.shape != w.shape or v.shape != w.shape:
        raise ConfigError(f"`t` must have shape ({w.shape[0]},) and `g`, `v` the shape of `w` {w.shape}")
    if hg is not None:
        hg = _snapshots("hg", hg, 1)
        if hg.shape != w.shape:
            raise ConfigError(f"`hg` must have the shape of `w` {w.shape}, got {hg.shape}")
    est = [
        mechanistic(w[s], g[s], v[s], eta, grid, hg=None if hg is None else hg[s], **options)
        for s in range(w.shape[0])
    ]
    return CoefficientSeries.from_estimates(t, est)


def kramers_moyal_series(t, w, grid: Grid, *, at: str = "start", **options) -> CoefficientSeries:
    """``kramers_moyal`` between consecutive snapshots of ``w`` (S, M) at times ``t`` (S,).

    Returns S − 1 estimates placed at the start of each lag (``at="start"``, conditioning time) or at its
    midpoint (``at="mid"``).
    """
    check_choice("at", at, ("start", "mid"))
    w = _snapshots("w", w, 1)
    t = np.asarray(t, dtype=float)
    if t.shape != (w.shape[0],) or w.shape[0] < 2 or np.any(np.diff(t) <= 0):
        raise ConfigError(f"`t` must be strictly increasing with shape ({w.shape[0]},) and S >= 2")
    est = [kramers_moyal(w[s], w[s + 1], t[s + 1] - t[s], grid, **options) for s in range(w.shape[0] - 1)]
    tt = t[:-1] if at == "start" else 0.5 * (t[:-1] + t[1:])
    return CoefficientSeries.from_estimates(tt, est)


def shared_kernel_series(t, w, grid: Grid, *, g=None, v=None, eta: float | None = None, hg=None,
                         variants: dict | None = None, kramers_moyal: bool = False, se: Sequence[str] = (),
                         min_eff: float = MIN_EFF, tail: str = "widen", d_floor: float = D_FLOOR) -> dict:  # fmt: skip
    """Several estimates of one entry from one local-linear pass per snapshot: the mechanistic series of each
    of ``variants`` (name -> ``mechanistic`` options: ``diffusion``, ``second_order``; not ``symmetric``,
    whose mirrored samples need a pass of their own) and, with ``kramers_moyal``, the Kramers-Moyal series
    (``at="start"``). ``se`` names the series that get standard errors (NaN for the others, as with
    ``se=False``). Returns name -> ``CoefficientSeries`` ("kramers-moyal" for the latter).

    Why: all of them condition on the same samples ``w[s]`` with the same bandwidth rule on the same grid, so
    they share the kernel weights and differ only in their responses. The responses become columns of one fit;
    each column's kernel sums are accumulated exactly as in a fit of its own, so every series is bit-identical
    to ``mechanistic_series`` / ``kramers_moyal_series`` (tested), at the cost of one pass instead of one per
    series. Arrays as for ``mechanistic_series``: ``w``, ``g``, ``v``, ``hg`` (S, M), ``t`` (S,)."""
    variants = dict(variants or {})
    for name, opts in variants.items():
        unknown = set(opts) - {"diffusion", "second_order"}
        if unknown:
            raise ConfigError(f"`variants`: {name!r} has options {sorted(unknown)} that cannot share the kernel "
                              "(only 'diffusion' and 'second_order'; symmetric mirrors the samples)")  # fmt: skip
    unknown_se = set(se) - set(variants) - ({"kramers-moyal"} if kramers_moyal else set())
    if unknown_se:
        raise ConfigError(f"`se` names series that are not estimated: {sorted(unknown_se)}")
    grid = _grid1(grid)
    w = _snapshots("w", w, 1)
    t = np.asarray(t, dtype=float)
    S, M = w.shape
    if t.shape != (S,):
        raise ConfigError(f"`t` must have shape ({S},), got {t.shape}")
    if variants:
        eta = check_positive("eta", eta)
        g, v = _snapshots("g", g, 1), _snapshots("v", v, 1)
        if g.shape != w.shape or v.shape != w.shape:
            raise ConfigError(f"`g` and `v` must have the shape of `w` {w.shape}")
        if any(o.get("second_order") for o in variants.values()):
            if hg is None:
                raise ConfigError("`second_order=True` needs `hg` (the entry of H·∇L per member)")
            hg = _snapshots("hg", hg, 1)
            if hg.shape != w.shape:
                raise ConfigError(f"`hg` must have the shape of `w` {w.shape}, got {hg.shape}")
    if kramers_moyal and (S < 2 or np.any(np.diff(t) <= 0)):
        raise ConfigError(f"`t` must be strictly increasing with shape ({S},) and S >= 2")
    min_eff = check_positive("min_eff", min_eff)
    d_floor = check_positive("d_floor", d_floor, strict=False)
    check_choice("tail", tail, ("hold", "linear", "widen"))
    est: dict = {name: [] for name in variants}
    if kramers_moyal:
        est["kramers-moyal"] = []
    for s in range(S):
        x = _vec("w", w[s], M)
        groups = []  # (name, (M, 2) responses, finish)
        for name, opts in variants.items():
            diffusion = check_choice("diffusion", opts.get("diffusion", "standard"), ("standard", "discrete"))
            so = bool(opts.get("second_order", False))
            gs, vs = _vec("g", g[s], M), _vec("v", v[s], M)
            if np.any(vs < 0):
                raise ConfigError("`v` (a variance) must be non-negative")
            hs = _vec("hg", hg[s], M) if so else None
            _, resp = _mechanistic_responses(x, gs, vs, eta, hs, diffusion, so, False)
            meta = {"route": "mechanistic", "diffusion": diffusion, "second_order": so, "symmetric": False,
                    "eta": eta, "n_members": M, "min_eff": min_eff, "tail": tail, "d_floor": d_floor}  # fmt: skip
            groups.append((name, resp, lambda fit, meta=meta: _mechanistic_estimate(grid, fit, d_floor, meta)))
        if kramers_moyal and s < S - 1:
            dt = float(t[s + 1] - t[s])
            _, resp, _h = _km_responses(x, _vec("w1", w[s + 1], M), False, None, min_eff, tail)
            meta = {"route": "kramers-moyal", "dt": dt, "symmetric": False, "n_members": M, "min_eff": min_eff,
                    "tail": tail, "d_floor": d_floor}  # fmt: skip
            groups.append(("kramers-moyal", resp, lambda fit, dt=dt, meta=meta: _km_estimate(grid, fit, dt, d_floor, meta)))
        h = bandwidth_rule(x)
        if h == 0.0:  # all members at one point: the sample-mean case reports errors even without se; fit apart
            fits = [_fit_on_grid(x, resp, grid, None, min_eff, tail, name in se) for name, resp, _ in groups]
        else:
            # identical columns (e.g. the drift of "standard" and "discrete") are fitted once
            cols, index = [], []
            for _, resp, _ in groups:
                for c in resp.T:
                    k = next((i for i, u in enumerate(cols) if np.array_equal(u, c)), None)
                    if k is None:
                        k = len(cols)
                        cols.append(c)
                    index.append(k)
            # errors only for the columns of the series that report them (the pass costs per column)
            se_cols = sorted({k for i, (name, _, _) in enumerate(groups) if name in se for k in index[2 * i : 2 * i + 2]})
            both = _fit_on_grid(x, np.stack(cols, axis=1), grid, h, min_eff, tail, se_cols)
            fits = []
            for i, (name, _, _) in enumerate(groups):
                ix = index[2 * i : 2 * i + 2]
                err = both.se[:, ix] if name in se else np.full((grid.n[0], 2), np.nan)
                fits.append(LocalLinearFit(both.value[:, ix], both.slope[:, ix], err, both.n_eff, both.supported,
                                           both.bandwidth))  # fmt: skip
        for (name, _, finish), fit in zip(groups, fits):
            est[name].append(finish(fit))
    out = {name: CoefficientSeries.from_estimates(t, e) for name, e in est.items() if name != "kramers-moyal"}
    if kramers_moyal:
        out["kramers-moyal"] = CoefficientSeries.from_estimates(t[:-1], est["kramers-moyal"])
    return out


def mechanistic_2d_series(t, w, g, cov, eta: float, grid: Grid, *, hg=None, **options) -> CoefficientSeries:
    """``mechanistic_2d`` at every snapshot: ``w``, ``g`` (S, M, 2), ``cov`` (S, M, 2, 2) or (S, M, 3)."""
    w = _snapshots("w", w, 2)
    t = np.asarray(t, dtype=float)
    if t.shape != (w.shape[0],):
        raise ConfigError(f"`t` must have shape ({w.shape[0]},)")
    g = np.asarray(g, dtype=float)
    cov = np.asarray(cov, dtype=float)
    if g.shape != w.shape or cov.shape[0] != w.shape[0]:
        raise ConfigError("`g` must have the shape of `w`, and `cov` one entry per snapshot")
    est = [
        mechanistic_2d(w[s], g[s], cov[s], eta, grid, hg=None if hg is None else np.asarray(hg)[s], **options)
        for s in range(w.shape[0])
    ]
    return CoefficientSeries.from_estimates(t, est)


def kramers_moyal_2d_series(t, w, grid: Grid, *, at: str = "start", **options) -> CoefficientSeries:
    """``kramers_moyal_2d`` between consecutive snapshots of ``w`` (S, M, 2)."""
    check_choice("at", at, ("start", "mid"))
    w = _snapshots("w", w, 2)
    t = np.asarray(t, dtype=float)
    if t.shape != (w.shape[0],) or w.shape[0] < 2 or np.any(np.diff(t) <= 0):
        raise ConfigError(f"`t` must be strictly increasing with shape ({w.shape[0]},) and S >= 2")
    est = [kramers_moyal_2d(w[s], w[s + 1], t[s + 1] - t[s], grid, **options) for s in range(w.shape[0] - 1)]
    tt = t[:-1] if at == "start" else 0.5 * (t[:-1] + t[1:])
    return CoefficientSeries.from_estimates(tt, est)
