"""Smoothing: local-linear regression with a Gaussian kernel, one rule for every entry.

Conditional expectations ``E[y | x]`` are estimated by local-linear regression with a Gaussian kernel
(``local_linear``; the kernels are in ``fpkit.solvers.local_linear``).

* **Bandwidth**: ``h = 0.3 · IQR(w) / 1.349`` of the snapshot's samples (``bandwidth_rule``; the IQR/1.349
  is a robust standard deviation; if the IQR is zero the standard deviation is used). Never tuned per entry.
* **Support**: an evaluation point is *well supported* when it lies inside the samples' range and the
  kernel's effective sample count ``n_eff = (Σ K)² / Σ K²`` is at least ``min_eff = 20``.
* **Tail fallback** (``tail="widen"``, default): inside the samples' range, a point that is not well
  supported is refitted with its bandwidth widened to the distance of its ``ceil(min_eff)``-th nearest
  sample (a nearest-neighbour bandwidth, as in LOESS), so sparse tails get the drift of the members that
  are actually there. Beyond the samples' range the value of the outermost point is held. Heavy tails need
  this: late in training W1 entries collapse to a narrow core with kurtosis ~50, the fixed bandwidth
  supports only the core, and a drift held constant across the tail leaves ~1 % of the predicted mass
  stranded far out (5–20 noise floors of W1 distance; see issue 10). The older rules stay as options:
  hold the value beyond the outermost supported points (``"hold"``) or continue its local line
  (``"linear"``), with gaps between supported points interpolated linearly. In 2-D, unsupported grid
  points take the value of the nearest supported grid point.
* Kernel weights below ``exp(−32)`` (|Δw| > 8h) are skipped; their relative contribution is < 1e-13.
* Speed: on uniformly spaced evaluation points (grid cell centres) the Gaussian weights along each axis follow
  an exact multiplicative recurrence (a few ``exp`` per sample instead of one per sample-point pair); results
  equal the direct evaluation to round-off (tested against a plain numpy reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, check_choice, check_positive
from ..grid import Grid
from ..solvers import local_linear as ll

BANDWIDTH_FACTOR = 0.3
"""h = BANDWIDTH_FACTOR · IQR/1.349: the one bandwidth rule for every entry."""
MIN_EFF = 20.0
"""Minimum kernel effective sample count of a well-supported evaluation point."""


def bandwidth_rule(w, factor: float = BANDWIDTH_FACTOR) -> float:
    """The kernel bandwidth ``factor · IQR(w)/1.349`` (standard deviation if the IQR is 0; 0 if all equal)."""
    w = np.asarray(w, dtype=float).ravel()
    if w.size == 0 or w.max() == w.min():
        return 0.0
    q75, q25 = np.percentile(w, [75, 25])
    s = (q75 - q25) / 1.349
    if not s > 0:
        s = float(np.std(w))
    return float(factor * s)


@dataclass
class LocalLinearFit:
    """Result of ``local_linear_fit`` at the evaluation points.

    Attributes
    ----------
    value : (E,) or (E, K)   local intercept = the estimate of E[y | x] (after the tail fallback)
    slope : (E,) or (E, K)   local slope (of the point used, after the fallback)
    se : (E,) or (E, K)      sandwich standard error ``sqrt(Σ l_i² r_i²)`` of the raw fit (held values keep
                             their source point's error; gaps interpolate it)
    n_eff : (E,)             kernel effective sample count (Σ K)² / Σ K²
    supported : (E,) bool    well-supported points (inside the samples' range and n_eff >= min_eff)
    bandwidth : float
    """

    value: np.ndarray
    slope: np.ndarray
    se: np.ndarray
    n_eff: np.ndarray
    supported: np.ndarray
    bandwidth: float


def _check_xy(x_samples, y_samples):
    x = np.asarray(x_samples, dtype=float)
    y = np.asarray(y_samples, dtype=float)
    if x.ndim != 1:
        raise ConfigError(f"`x_samples` must be 1-D (one value per member), got shape {x.shape}")
    if y.shape[:1] != x.shape or y.ndim > 2:
        raise ConfigError(f"`y_samples` must have shape ({x.size},) or ({x.size}, K), got {y.shape}")
    if x.size < 2:
        raise ConfigError(f"`x_samples` needs at least 2 samples, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError("`x_samples` and `y_samples` must be finite")
    return x, y


def local_linear_fit(
    x_samples,
    y_samples,
    x_eval,
    bandwidth: float | None = None,
    *,
    min_eff: float = MIN_EFF,
    tail: str = "widen",
    se: bool = True,
    method: str = "auto",
) -> LocalLinearFit:
    """Local-linear kernel regression of ``y`` on ``x`` (Gaussian kernel), with the documented tail fallback.

    At each ``x0`` minimises ``Σ K((x_i − x0)/h) (y_i − β0 − β1 (x_i − x0))²``, ``K(u) = exp(−u²/2)``; the
    estimate is ``β0``. Local-linear has no first-order bias at boundaries and reproduces linear functions
    exactly; for smooth ``m`` its interior bias is ``≈ (h²/2) m''(x0)``.

    Parameters
    ----------
    x_samples : (M,)
    y_samples : (M,) or (M, K)
        K responses share the kernel weights (one pass for several conditional expectations).
    x_eval : (E,)
    bandwidth : float, optional
        Kernel standard deviation h, in units of x; default ``bandwidth_rule(x_samples)``. If all samples
        share one value the rule gives 0 and the estimate is the sample mean of y everywhere.
    min_eff : float
        Minimum effective sample count of a well-supported point.
    tail : {"widen", "hold", "linear"}
        Unsupported points: ``"widen"`` refits those inside the samples' range with a nearest-neighbour
        bandwidth and holds the outermost value beyond it; ``"hold"``/``"linear"`` hold the value or continue
        the local line beyond the outermost supported points and interpolate gaps. See the module docstring.
    se : bool or sequence of int
        Compute standard errors (a second pass over the samples): of every column, of none, or of the columns
        of ``y_samples`` given by index (NaN for the others; the pass costs in proportion to its columns).
    method : {"auto", "direct"}
        ``"auto"`` uses an exp-free recurrence for the kernel weights when ``x_eval`` is uniformly spaced
        with spacing ≤ h (e.g. a grid's cell centres; same results to round-off, several times faster);
        ``"direct"`` evaluates every weight.
    """
    x, y = _check_xy(x_samples, y_samples)
    xe = np.asarray(x_eval, dtype=float)
    if xe.ndim != 1 or xe.size == 0 or not np.all(np.isfinite(xe)):
        raise ConfigError(f"`x_eval` must be a non-empty finite 1-D array, got shape {xe.shape}")
    check_choice("tail", tail, ("hold", "linear", "widen"))
    check_choice("method", method, ("auto", "direct"))
    min_eff = check_positive("min_eff", min_eff)
    h = bandwidth_rule(x) if bandwidth is None else check_positive("bandwidth", bandwidth)
    Y = y.reshape(x.size, -1)
    K = Y.shape[1]
    E = xe.size
    if h == 0.0:  # every sample at one point: the only information is the mean
        mean = Y.mean(axis=0)
        std = Y.std(axis=0) / np.sqrt(x.size)
        val = np.broadcast_to(mean, (E, K)).copy()
        fit = LocalLinearFit(
            val,
            np.zeros((E, K)),
            np.broadcast_to(std, (E, K)).copy(),
            np.full(E, float(x.size)),
            np.ones(E, bool),
            0.0,
        )
        return _squeeze(fit, y.ndim)
    steps = np.diff(xe)
    uniform = E >= 2 and steps[0] > 0 and steps[0] <= h and np.allclose(steps, steps[0], rtol=1e-9, atol=0)
    if uniform and method != "direct":
        beta0, beta1, err, neff = ll.fit_uniform(np.ascontiguousarray(x), np.ascontiguousarray(Y), xe, h, se)
    else:
        beta0, beta1, err, neff = ll.fit_direct(x, Y, xe, np.full(E, float(h)), se)
    supported = (neff >= min_eff) & (xe >= x.min()) & (xe <= x.max()) & np.all(np.isfinite(beta0), axis=1)
    if tail == "widen" and supported.any():
        _widen(x, Y, xe, h, min_eff, supported, beta0, beta1, err, neff, se)
    if not supported.any():
        raise ConfigError(
            f"no evaluation point has {min_eff:g} effective samples within the data's range "
            f"(M = {x.size}, bandwidth {h:.3g}): too few samples, or `x_eval` misses the data"
        )
    value, slope, err = _fallback_1d(xe, beta0, beta1, err, supported, tail)
    return _squeeze(LocalLinearFit(value, slope, err, neff, supported, float(h)), y.ndim)


WIDEN_POINTS = 64
"""At most this many direct fits per run of widened points; values in between are interpolated."""


def nearest_neighbour_distance(x, points, k: int) -> np.ndarray:
    """Distance from each of ``points`` to its ``k``-th nearest sample of ``x``."""
    xs = np.sort(np.asarray(x, dtype=float))
    k = min(int(k), xs.size)
    # the k nearest samples lie among the k on either side of the insertion point; window slots that fall
    # outside the sample array count as infinitely far
    idx = np.searchsorted(xs, points)[:, None] + np.arange(-k, k)[None, :]
    outside = (idx < 0) | (idx >= xs.size)
    dist = np.where(outside, np.inf, np.abs(xs[np.clip(idx, 0, xs.size - 1)] - points[:, None]))
    return np.partition(dist, k - 1, axis=1)[:, k - 1]


def _widen(x, Y, xe, h, min_eff, supported, beta0, beta1, err, neff, want_se):
    """The "widen" tail rule: refit the unsupported evaluation points inside the samples' range with the
    bandwidth widened to the distance of their ``ceil(min_eff)``-th nearest sample (a nearest-neighbour
    bandwidth, as in LOESS), then mark them supported. Up to ``WIDEN_POINTS`` direct fits per run of such
    points, linear interpolation in between (the widened fits vary on the scale of their bandwidth, which
    is many grid cells). ``want_se`` as ``local_linear_fit``'s ``se``."""
    inside = (~supported) & (xe >= x.min()) & (xe <= x.max())
    if not inside.any():
        return
    idx = np.flatnonzero(inside)
    runs = np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1)
    if not np.all(np.diff(xe) > 0):  # unsorted evaluation points: fit every one of them directly
        runs = [idx]
        picks = [idx]
    else:
        picks = [r[np.unique(np.linspace(0, r.size - 1, min(r.size, WIDEN_POINTS)).round().astype(int))]
                 for r in runs]  # fmt: skip
    pts = np.concatenate(picks)
    hj = np.maximum(h, nearest_neighbour_distance(x, xe[pts], math.ceil(min_eff)))
    K = Y.shape[1]
    b0, b1, e, n = ll.fit_direct(x, Y, xe[pts], hj, want_se)
    beta0[pts], beta1[pts], err[pts], neff[pts] = b0, b1, e, n
    at = 0
    for r, pk in zip(runs, picks):
        sl = slice(at, at + pk.size)
        at += pk.size
        rest = np.setdiff1d(r, pk, assume_unique=True)
        if rest.size:
            for arr, src in ((beta0, b0), (beta1, b1), (err, e)):
                for k in range(K):
                    arr[rest, k] = np.interp(xe[rest], xe[pk], src[sl, k])
            neff[rest] = np.interp(xe[rest], xe[pk], n[sl])
    supported |= inside


def _squeeze(fit: LocalLinearFit, ndim_y: int) -> LocalLinearFit:
    if ndim_y == 1:
        fit.value, fit.slope, fit.se = fit.value[:, 0], fit.slope[:, 0], fit.se[:, 0]
    return fit


def _fallback_1d(xe, b0, b1, err, supported, tail):
    """Fill unsupported evaluation points: hold/extend beyond the outermost supported ones, interpolate gaps."""
    b0, b1, err = b0.copy(), b1.copy(), err.copy()
    sup_idx = np.flatnonzero(supported)
    order = sup_idx[np.argsort(xe[sup_idx], kind="stable")]
    first, last = order[0], order[-1]
    xs_sup = xe[order]
    todo = ~supported
    left = todo & (xe < xe[first])
    right = todo & (xe > xe[last])
    gap = todo & ~left & ~right
    for mask, src in ((left, first), (right, last)):
        if not mask.any():
            continue
        if tail == "linear":
            b0[mask] = b0[src] + b1[src] * (xe[mask] - xe[src])[:, None]
            b1[mask] = b1[src]
        else:
            b0[mask] = b0[src]
            b1[mask] = 0.0
        err[mask] = err[src]
    if gap.any():  # gaps between supported points: linear interpolation
        for arr in (b0, b1, err):
            for k in range(arr.shape[1]):
                arr[gap, k] = np.interp(xe[gap], xs_sup, arr[order, k])
    return b0, b1, err


def local_linear(
    x_samples,
    y_samples,
    x_eval,
    bandwidth: float | None = None,
    *,
    min_eff: float = MIN_EFF,
    tail: str = "widen",
) -> np.ndarray:
    """Local-linear estimate of ``E[y | x]`` at ``x_eval`` (Gaussian kernel of standard deviation
    ``bandwidth``, default ``0.3·IQR/1.349``), with the module's tail fallback. See ``local_linear_fit``."""
    return local_linear_fit(
        x_samples, y_samples, x_eval, bandwidth, min_eff=min_eff, tail=tail, se=False
    ).value


def local_linear_2d(
    x_samples,
    y_samples,
    grid: Grid,
    bandwidth=None,
    *,
    min_eff: float = MIN_EFF,
    se: bool = True,
    method: str = "auto",
) -> LocalLinearFit:
    """Local-linear (local plane) regression of ``y`` on 2-D ``x`` at the cell centres of a 2-D grid.

    Product Gaussian kernel with per-axis bandwidths (default ``bandwidth_rule`` of each coordinate).
    Unsupported grid points (outside the samples' bounding box or ``n_eff < min_eff``) take the value of the
    nearest supported grid point. Returns a ``LocalLinearFit`` whose arrays have shape ``grid.shape`` (+ (K,)),
    ``slope`` is not computed (zeros) and ``bandwidth`` is the pair ``(hx, hy)``. ``method="auto"`` uses the
    exp-free per-axis recurrence when the grid spacing is ≤ the bandwidth on both axes; ``"direct"``
    evaluates every weight (same results to round-off).
    """
    check_choice("method", method, ("auto", "direct"))
    if not isinstance(grid, Grid) or grid.ndim != 2:
        raise ConfigError("`grid` must be a 2-D fpkit Grid")
    x = np.asarray(x_samples, dtype=float)
    y = np.asarray(y_samples, dtype=float)
    if x.ndim != 2 or x.shape[1] != 2:
        raise ConfigError(f"`x_samples` must have shape (M, 2), got {x.shape}")
    if y.shape[:1] != x.shape[:1] or y.ndim > 2:
        raise ConfigError(f"`y_samples` must have shape ({x.shape[0]},) or ({x.shape[0]}, K), got {y.shape}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ConfigError("`x_samples` and `y_samples` must be finite")
    min_eff = check_positive("min_eff", min_eff)
    if bandwidth is None:
        h = np.array([bandwidth_rule(x[:, 0]), bandwidth_rule(x[:, 1])])
    else:
        h = np.broadcast_to(np.asarray(bandwidth, dtype=float), (2,)).copy()
    if not np.all(h > 0):
        raise ConfigError(f"`bandwidth` must be positive on both axes (samples with zero spread?), got {h}")
    Y = y.reshape(x.shape[0], -1)
    K = Y.shape[1]
    X, Yg = grid.meshgrid()
    xe = np.stack([X.ravel(), Yg.ravel()], axis=1)
    if method != "direct" and grid.kind == "uniform" and all(d <= hh for d, hh in zip(grid.dx, h)):
        beta0, err, neff = ll.fit_uniform_2d(np.ascontiguousarray(x), np.ascontiguousarray(Y), grid, h, se)
    else:
        beta0, err, neff = ll.fit_direct_2d(x, Y, xe, h, se)
    lo, hi = x.min(axis=0), x.max(axis=0)
    inside = np.all((xe >= lo) & (xe <= hi), axis=1)
    supported = (neff >= min_eff) & inside & np.all(np.isfinite(beta0), axis=1)
    if not supported.any():
        raise ConfigError(
            f"no grid point has {min_eff:g} effective samples: too few samples or grid misses data"
        )
    from scipy.ndimage import distance_transform_edt

    sup2 = supported.reshape(grid.shape)
    _, (ix, iy) = distance_transform_edt(~sup2, sampling=grid.dx, return_indices=True)
    src = np.ravel_multi_index((ix.ravel(), iy.ravel()), grid.shape)
    value = beta0[src].reshape(*grid.shape, K)
    err = err[src].reshape(*grid.shape, K)
    fit = LocalLinearFit(value, np.zeros_like(value), err, neff.reshape(grid.shape), sup2, tuple(h))
    if y.ndim == 1:
        fit.value, fit.slope, fit.se = value[..., 0], fit.slope[..., 0], err[..., 0]
    return fit


def _fit_on_grid(x, Y, grid: Grid, bandwidth, min_eff, tail, se: bool = True) -> LocalLinearFit:
    """``local_linear_fit`` at the grid's cell centres; if the grid cannot resolve the samples (fewer than
    two well-supported centres, e.g. an entry that collapsed to less than a cell), fit on 64 points across
    the samples instead and interpolate onto the grid (held constant outside them). The cells that contain
    samples are then marked as supported."""
    try:
        fit = local_linear_fit(x, Y, grid.x, bandwidth, min_eff=min_eff, tail=tail, se=se)
        if fit.supported.sum() >= 2:
            return fit
    except ConfigError:
        pass
    xg = grid.x
    half = 0.5 * grid.dx[0]
    lo, hi = x.min(), x.max()
    covering = (xg >= lo - half) & (xg <= hi + half)
    if not covering.any():
        raise ConfigError(f"the samples ({lo:.3g} to {hi:.3g}) lie outside the grid {grid!r}")
    aux = np.linspace(lo, hi, 64) if hi > lo else np.array([lo])
    fa = local_linear_fit(x, Y, aux, bandwidth, min_eff=min_eff, tail=tail, se=se)
    if aux.size == 1:
        value, se = np.repeat(fa.value, xg.size, axis=0), np.repeat(fa.se, xg.size, axis=0)
        neff = np.full(xg.size, fa.n_eff[0])
    else:
        value = np.stack([np.interp(xg, aux, fa.value[:, k]) for k in range(Y.shape[1])], axis=1)
        se = np.stack([np.interp(xg, aux, fa.se[:, k]) for k in range(Y.shape[1])], axis=1)
        neff = np.interp(xg, aux, fa.n_eff)
    return LocalLinearFit(value, np.zeros_like(value), se, neff, covering, fa.bandwidth)
