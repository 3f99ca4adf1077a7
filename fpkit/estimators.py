"""Estimators: empirical densities of ensemble samples and drift/diffusion as functions of the weight value.

Everything here works on plain arrays (one value per ensemble member), so it is independent of how the
ensemble was produced. Conventions are fpkit's: Itô, ``dw = A(w,t) dt + sqrt(2 D(w,t)) dB`` with time
``t = η · step`` for SGD, D (never σ), densities with ``sum(p) * cell_volume == 1``.

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

Smoothing: local-linear, Gaussian kernel, one rule for every entry
-----------------------------------------------------------------
Conditional expectations are estimated by local-linear regression with a Gaussian kernel (``local_linear``).

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
* **D kept positive**: after the fallback, ``D ← max(D, d_floor · median(D over supported points))`` with
  ``d_floor = 1e-3`` (in 2-D the tensor's eigenvalues are floored the same way, relative to the median of
  ``trace/2``). Estimates of D that come out all zero (no gradient noise) stay zero.
* Kernel weights below ``exp(−32)`` (|Δw| > 8h) are skipped; their relative contribution is < 1e-13.
* Speed: on uniformly spaced evaluation points (grid cell centres) the Gaussian weights along each axis follow
  an exact multiplicative recurrence (two ``exp`` per sample instead of one per sample-point pair); results
  equal the direct evaluation to round-off (tested against a plain numpy reference).

Results come as arrays on a grid at each snapshot time (``CoefficientSeries``), with callables that
interpolate linearly in time between snapshots, ready to pass to ``fpkit.FokkerPlanck``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fpkit.solvers._numba import kernel, prange

from .errors import ConfigError, check_choice, check_positive
from .grid import Grid

BANDWIDTH_FACTOR = 0.3
"""h = BANDWIDTH_FACTOR · IQR/1.349: the one bandwidth rule for every entry."""
MIN_EFF = 20.0
"""Minimum kernel effective sample count of a well-supported evaluation point."""
D_FLOOR = 1e-3
"""D is floored at D_FLOOR × median of D over well-supported points."""
_CUT2 = 64.0  # (|Δw|/h)² beyond which kernel weights (< e^{-32}) are skipped


# ============================================================================================ densities
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


# ============================================================================================ smoothing
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


@kernel(parallel=True)
def _ll_kernel(x, Y, xe, h, want_se, beta0, beta1, se, neff):
    """Local-linear fit at each evaluation point ``xe[j]`` with bandwidth ``h[j]`` (prange over points)."""
    M = x.shape[0]
    K = Y.shape[1]
    for j in prange(xe.shape[0]):
        x0 = xe[j]
        inv_h = 1.0 / h[j]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        sk2 = 0.0
        t0 = np.zeros(K)
        t1 = np.zeros(K)
        for i in range(M):
            d = x[i] - x0
            u = d * inv_h
            u2 = u * u
            if u2 > 64.0:
                continue
            wgt = math.exp(-0.5 * u2)
            s0 += wgt
            s1 += wgt * d
            s2 += wgt * d * d
            sk2 += wgt * wgt
            for k in range(K):
                t0[k] += wgt * Y[i, k]
                t1[k] += wgt * d * Y[i, k]
        det = s0 * s2 - s1 * s1
        neff[j] = s0 * s0 / sk2 if sk2 > 0 else 0.0
        if s0 <= 0.0:
            for k in range(K):
                beta0[j, k] = np.nan
                beta1[j, k] = np.nan
                se[j, k] = np.inf
            continue
        degenerate = det <= 1e-12 * s0 * s2 or s2 <= 0.0
        for k in range(K):
            if degenerate:  # all weight at one point: local-constant
                beta0[j, k] = t0[k] / s0
                beta1[j, k] = 0.0
            else:
                beta0[j, k] = (s2 * t0[k] - s1 * t1[k]) / det
                beta1[j, k] = (s0 * t1[k] - s1 * t0[k]) / det
        if want_se:
            acc = np.zeros(K)
            for i in range(M):
                d = x[i] - x0
                u = d * inv_h
                u2 = u * u
                if u2 > 64.0:
                    continue
                wgt = math.exp(-0.5 * u2)
                if degenerate:
                    li = wgt / s0
                else:
                    li = wgt * (s2 - s1 * d) / det
                for k in range(K):
                    r = Y[i, k] - beta0[j, k] - beta1[j, k] * d
                    acc[k] += li * li * r * r
            for k in range(K):
                se[j, k] = math.sqrt(acc[k])


@kernel
def _ll_uniform_sums(x, Y, e0, de, n_e, h, S, T):
    """Kernel sums at uniformly spaced evaluation points ``e_j = e0 + j·de`` (``de <= h``), exp-free.

    For each sample the Gaussian weights over its window |x − e_j| <= 8h follow the exact recurrence
    ``w_{j+1} = w_j · r_j``, ``r_{j+1} = r_j · c²`` with ``r_j = exp((x − e_j) de / h²) · c``,
    ``c = exp(−de²/(2h²))``: two exp calls per sample instead of one per (sample, point) pair. Serial over
    samples (a scatter into the points), so sums do not depend on the thread count.
    S[j] = (Σw, Σw d, Σw d², Σw²), T[j, k] = (Σ w y_k, Σ w d y_k) with d = x − e_j.
    """
    M = x.shape[0]
    K = Y.shape[1]
    inv2h2 = 0.5 / (h * h)
    c = math.exp(-de * de * inv2h2)
    c2 = c * c
    reach = 8.0 * h
    for i in range(M):
        xi = x[i]
        jlo = max(0, math.ceil((xi - reach - e0) / de))
        jhi = min(n_e - 1, math.floor((xi + reach - e0) / de))
        if jlo > jhi:
            continue
        d0 = xi - (e0 + jlo * de)
        w = math.exp(-d0 * d0 * inv2h2)
        r = math.exp(d0 * de / (h * h)) * c
        for j in range(jlo, jhi + 1):
            d = xi - (e0 + j * de)
            S[j, 0] += w
            S[j, 1] += w * d
            S[j, 2] += w * d * d
            S[j, 3] += w * w
            for k in range(K):
                wy = w * Y[i, k]
                T[j, k, 0] += wy
                T[j, k, 1] += wy * d
            w *= r
            r *= c2


@kernel
def _ll_uniform_se(x, Y, e0, de, n_e, h, S, beta0, beta1, det, local_const, acc):
    """Second pass for the sandwich variance Σ l_j(x_i)² r_ij² at uniformly spaced points (see above)."""
    M = x.shape[0]
    K = Y.shape[1]
    inv2h2 = 0.5 / (h * h)
    c = math.exp(-de * de * inv2h2)
    c2 = c * c
    reach = 8.0 * h
    for i in range(M):
        xi = x[i]
        jlo = max(0, math.ceil((xi - reach - e0) / de))
        jhi = min(n_e - 1, math.floor((xi + reach - e0) / de))
        if jlo > jhi:
            continue
        d0 = xi - (e0 + jlo * de)
        w = math.exp(-d0 * d0 * inv2h2)
        r = math.exp(d0 * de / (h * h)) * c
        for j in range(jlo, jhi + 1):
            d = xi - (e0 + j * de)
            if local_const[j]:
                li = w / S[j, 0]
            else:
                li = w * (S[j, 2] - S[j, 1] * d) / det[j]
            for k in range(K):
                res = Y[i, k] - beta0[j, k] - beta1[j, k] * d
                acc[j, k] += li * li * res * res
            w *= r
            r *= c2


def _ll_uniform(x, Y, xe, h, want_se):
    """Local-linear at uniformly spaced ``xe`` through the exp-free recurrence; same outputs as _ll_kernel."""
    E, K = xe.size, Y.shape[1]
    e0, de = float(xe[0]), float(xe[1] - xe[0])
    S = np.zeros((E, 4))
    T = np.zeros((E, K, 2))
    _ll_uniform_sums(x, Y, e0, de, E, float(h), S, T)
    s0, s1, s2, sk2 = S.T
    det = s0 * s2 - s1 * s1
    with np.errstate(divide="ignore", invalid="ignore"):
        neff = np.where(sk2 > 0, s0 * s0 / sk2, 0.0)
        local_const = ~(det > 1e-12 * s0 * s2) | ~(s2 > 0)
        b0 = np.where(
            local_const[:, None],
            T[:, :, 0] / s0[:, None],
            (s2[:, None] * T[:, :, 0] - s1[:, None] * T[:, :, 1]) / det[:, None],
        )
        b1 = np.where(
            local_const[:, None], 0.0, (s0[:, None] * T[:, :, 1] - s1[:, None] * T[:, :, 0]) / det[:, None]
        )
    empty = ~(s0 > 0)
    b0[empty] = np.nan
    b1[empty] = np.nan
    err = np.full((E, K), np.nan)
    if want_se:
        acc = np.zeros((E, K))
        _ll_uniform_se(
            x, Y, e0, de, E, float(h), S, np.nan_to_num(b0), np.nan_to_num(b1), det, local_const, acc
        )
        err = np.sqrt(acc)
        err[empty] = np.inf
    return b0, b1, err, neff


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
    se : bool
        Compute standard errors (a second pass over the samples).
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
        beta0, beta1, err, neff = _ll_uniform(
            np.ascontiguousarray(x), np.ascontiguousarray(Y), xe, h, bool(se)
        )
    else:
        beta0 = np.empty((E, K))
        beta1 = np.empty((E, K))
        err = np.full((E, K), np.nan)
        neff = np.empty(E)
        _ll_kernel(
            np.ascontiguousarray(x),
            np.ascontiguousarray(Y),
            np.ascontiguousarray(xe),
            np.full(E, float(h)),
            bool(se),
            beta0,
            beta1,
            err,
            neff,
        )
    supported = (neff >= min_eff) & (xe >= x.min()) & (xe <= x.max()) & np.all(np.isfinite(beta0), axis=1)
    if tail == "widen" and supported.any():
        _widen(x, Y, xe, h, min_eff, supported, beta0, beta1, err, neff, bool(se))
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
    is many grid cells)."""
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
    b0, b1 = np.empty((pts.size, K)), np.empty((pts.size, K))
    e, n = np.full((pts.size, K), np.nan), np.empty(pts.size)
    _ll_kernel(np.ascontiguousarray(x), np.ascontiguousarray(Y), np.ascontiguousarray(xe[pts]), hj, want_se,
               b0, b1, e, n)  # fmt: skip
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


# --------------------------------------------------------------------------------------------- 2-D smoothing
@kernel(parallel=True)
def _ll2_kernel(x, Y, xe, hx, hy, want_se, beta0, se, neff):
    """Local-linear (plane) fit at each 2-D evaluation point, product Gaussian kernel."""
    M = x.shape[0]
    K = Y.shape[1]
    for j in prange(xe.shape[0]):
        a = np.zeros((3, 3))
        b = np.zeros((3, K))
        sk = 0.0
        sk2 = 0.0
        for i in range(M):
            dx = x[i, 0] - xe[j, 0]
            dy = x[i, 1] - xe[j, 1]
            u2 = (dx / hx) ** 2 + (dy / hy) ** 2
            if u2 > 64.0:
                continue
            wgt = math.exp(-0.5 * u2)
            sk += wgt
            sk2 += wgt * wgt
            z0 = 1.0
            z1 = dx
            z2 = dy
            a[0, 0] += wgt
            a[0, 1] += wgt * z1
            a[0, 2] += wgt * z2
            a[1, 1] += wgt * z1 * z1
            a[1, 2] += wgt * z1 * z2
            a[2, 2] += wgt * z2 * z2
            for k in range(K):
                b[0, k] += wgt * z0 * Y[i, k]
                b[1, k] += wgt * z1 * Y[i, k]
                b[2, k] += wgt * z2 * Y[i, k]
        neff[j] = sk * sk / sk2 if sk2 > 0 else 0.0
        a[1, 0] = a[0, 1]
        a[2, 0] = a[0, 2]
        a[2, 1] = a[1, 2]
        # inverse of the symmetric 3x3 moment matrix by cofactors; only its first row is needed
        c00 = a[1, 1] * a[2, 2] - a[1, 2] * a[2, 1]
        c01 = -(a[1, 0] * a[2, 2] - a[1, 2] * a[2, 0])
        c02 = a[1, 0] * a[2, 1] - a[1, 1] * a[2, 0]
        det = a[0, 0] * c00 + a[0, 1] * c01 + a[0, 2] * c02
        scale = a[0, 0] * a[1, 1] * a[2, 2]
        if sk <= 0.0:
            for k in range(K):
                beta0[j, k] = np.nan
                se[j, k] = np.inf
            continue
        if not (det > 1e-10 * scale) or scale <= 0.0:  # degenerate design: local-constant
            r0 = 1.0 / a[0, 0]
            r1 = 0.0
            r2 = 0.0
        else:
            r0 = c00 / det
            r1 = c01 / det
            r2 = c02 / det
        for k in range(K):
            beta0[j, k] = r0 * b[0, k] + r1 * b[1, k] + r2 * b[2, k]
        if want_se:
            # the full local plane is needed for the residuals: slopes from the cofactor inverse
            coef = np.zeros((3, K))
            if det > 1e-10 * scale and scale > 0.0:
                c11 = a[0, 0] * a[2, 2] - a[0, 2] * a[2, 0]
                c12 = -(a[0, 0] * a[2, 1] - a[0, 1] * a[2, 0])
                c22 = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
                for k in range(K):
                    coef[0, k] = beta0[j, k]
                    coef[1, k] = (c01 * b[0, k] + c11 * b[1, k] + c12 * b[2, k]) / det
                    coef[2, k] = (c02 * b[0, k] + c12 * b[1, k] + c22 * b[2, k]) / det
            else:
                for k in range(K):
                    coef[0, k] = beta0[j, k]
            acc = np.zeros(K)
            for i in range(M):
                dx = x[i, 0] - xe[j, 0]
                dy = x[i, 1] - xe[j, 1]
                u2 = (dx / hx) ** 2 + (dy / hy) ** 2
                if u2 > 64.0:
                    continue
                wgt = math.exp(-0.5 * u2)
                li = wgt * (r0 + r1 * dx + r2 * dy)
                for k in range(K):
                    r = Y[i, k] - coef[0, k] - coef[1, k] * dx - coef[2, k] * dy
                    acc[k] += li * li * r * r
            for k in range(K):
                se[j, k] = math.sqrt(acc[k])


@kernel
def _axis_weights(xi, e0, de, n_e, h, out):
    """Gaussian weights exp(−(xi − e_j)²/(2h²)) for e_j = e0 + j·de over the window |xi − e_j| <= 8h, by
    the exp-free recurrence of ``_ll_uniform_sums``; returns the window (jlo, jhi), empty if jlo > jhi."""
    inv2h2 = 0.5 / (h * h)
    reach = 8.0 * h
    jlo = max(0, math.ceil((xi - reach - e0) / de))
    jhi = min(n_e - 1, math.floor((xi + reach - e0) / de))
    if jlo > jhi:
        return jlo, jhi
    c = math.exp(-de * de * inv2h2)
    c2 = c * c
    d0 = xi - (e0 + jlo * de)
    w = math.exp(-d0 * d0 * inv2h2)
    r = math.exp(d0 * de / (h * h)) * c
    for j in range(jlo, jhi + 1):
        out[j] = w
        w *= r
        r *= c2
    return jlo, jhi


@kernel
def _ll2_uniform_sums(x, Y, e0x, dex, nx, hx, e0y, dey, ny, hy, S, T):
    """2-D kernel sums on a uniform grid (product Gaussian kernel, per-axis recurrences, serial scatter).

    S[a, b] = (Σw, Σw dx, Σw dy, Σw dx², Σw dx dy, Σw dy², Σw²); T[a, b, k] = (Σ w y, Σ w dx y, Σ w dy y),
    with (dx, dy) = sample − grid point.
    """
    M = x.shape[0]
    K = Y.shape[1]
    wx = np.empty(nx)
    wy = np.empty(ny)
    for i in range(M):
        ax0, ax1 = _axis_weights(x[i, 0], e0x, dex, nx, hx, wx)
        if ax0 > ax1:
            continue
        by0, by1 = _axis_weights(x[i, 1], e0y, dey, ny, hy, wy)
        if by0 > by1:
            continue
        for a in range(ax0, ax1 + 1):
            dx = x[i, 0] - (e0x + a * dex)
            for b in range(by0, by1 + 1):
                dy = x[i, 1] - (e0y + b * dey)
                w = wx[a] * wy[b]
                S[a, b, 0] += w
                S[a, b, 1] += w * dx
                S[a, b, 2] += w * dy
                S[a, b, 3] += w * dx * dx
                S[a, b, 4] += w * dx * dy
                S[a, b, 5] += w * dy * dy
                S[a, b, 6] += w * w
                for k in range(K):
                    wyk = w * Y[i, k]
                    T[a, b, k, 0] += wyk
                    T[a, b, k, 1] += wyk * dx
                    T[a, b, k, 2] += wyk * dy


@kernel
def _ll2_uniform_se(x, Y, e0x, dex, nx, hx, e0y, dey, ny, hy, R, C, acc):
    """Sandwich variance on a uniform 2-D grid: R[a, b] is the first row of the inverse moment matrix,
    C[a, b, :, k] the local plane of response k."""
    M = x.shape[0]
    K = Y.shape[1]
    wx = np.empty(nx)
    wy = np.empty(ny)
    for i in range(M):
        ax0, ax1 = _axis_weights(x[i, 0], e0x, dex, nx, hx, wx)
        if ax0 > ax1:
            continue
        by0, by1 = _axis_weights(x[i, 1], e0y, dey, ny, hy, wy)
        if by0 > by1:
            continue
        for a in range(ax0, ax1 + 1):
            dx = x[i, 0] - (e0x + a * dex)
            for b in range(by0, by1 + 1):
                dy = x[i, 1] - (e0y + b * dey)
                w = wx[a] * wy[b]
                li = w * (R[a, b, 0] + R[a, b, 1] * dx + R[a, b, 2] * dy)
                for k in range(K):
                    res = Y[i, k] - C[a, b, 0, k] - C[a, b, 1, k] * dx - C[a, b, 2, k] * dy
                    acc[a, b, k] += li * li * res * res


def _ll2_uniform(x, Y, grid: Grid, h, want_se):
    """Local plane fits at every cell centre of a uniform 2-D grid; outputs as _ll2_kernel (flattened)."""
    (nx, ny), (dex, dey) = grid.shape, grid.dx
    e0x, e0y = grid.axes[0][0], grid.axes[1][0]
    K = Y.shape[1]
    S = np.zeros((nx, ny, 7))
    T = np.zeros((nx, ny, K, 3))
    args = (float(e0x), float(dex), nx, float(h[0]), float(e0y), float(dey), ny, float(h[1]))
    _ll2_uniform_sums(x, Y, *args, S, T)
    a = np.empty((nx, ny, 3, 3))
    a[..., 0, 0], a[..., 0, 1], a[..., 0, 2] = S[..., 0], S[..., 1], S[..., 2]
    a[..., 1, 1], a[..., 1, 2], a[..., 2, 2] = S[..., 3], S[..., 4], S[..., 5]
    a[..., 1, 0], a[..., 2, 0], a[..., 2, 1] = S[..., 1], S[..., 2], S[..., 4]
    det = np.linalg.det(a)
    scale = a[..., 0, 0] * a[..., 1, 1] * a[..., 2, 2]
    ok = (det > 1e-10 * scale) & (scale > 0)
    inv = np.zeros_like(a)
    inv[ok] = np.linalg.inv(a[ok])
    const = ~ok & (S[..., 0] > 0)  # degenerate design: local-constant
    inv[const, 0, 0] = 1.0 / S[const, 0]
    C = np.einsum("abij,abkj->abik", inv, T)  # (nx, ny, 3, K)
    beta0 = C[..., 0, :].copy()
    empty = ~(S[..., 0] > 0)
    beta0[empty] = np.nan
    with np.errstate(divide="ignore", invalid="ignore"):
        neff = np.where(S[..., 6] > 0, S[..., 0] ** 2 / S[..., 6], 0.0)
    err = np.full((nx, ny, K), np.nan)
    if want_se:
        acc = np.zeros((nx, ny, K))
        _ll2_uniform_se(x, Y, *args, np.ascontiguousarray(inv[..., 0, :]), np.ascontiguousarray(C), acc)
        err = np.sqrt(acc)
        err[empty] = np.inf
    return beta0.reshape(-1, K), err.reshape(-1, K), neff.ravel()


def _ll2_direct(x, Y, xe, h, se):
    E, K = xe.shape[0], Y.shape[1]
    beta0 = np.empty((E, K))
    err = np.full((E, K), np.nan)
    neff = np.empty(E)
    _ll2_kernel(
        np.ascontiguousarray(x),
        np.ascontiguousarray(Y),
        xe,
        float(h[0]),
        float(h[1]),
        bool(se),
        beta0,
        err,
        neff,
    )
    return beta0, err, neff


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
        beta0, err, neff = _ll2_uniform(np.ascontiguousarray(x), np.ascontiguousarray(Y), grid, h, bool(se))
    else:
        beta0, err, neff = _ll2_direct(x, Y, xe, h, se)
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


# ============================================================================================ estimates
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
    a_s = -g - (0.5 * eta * hg if second_order else 0.0)
    d_s = 0.5 * eta * (v + (g * g if diffusion == "discrete" else 0.0))
    x = w
    if symmetric:
        x = np.concatenate([w, -w])
        a_s = np.concatenate([a_s, -a_s])
        d_s = np.concatenate([d_s, d_s])
    fit = _fit_on_grid(x, np.stack([a_s, d_s], axis=1), grid, bandwidth, min_eff, tail, se)
    A = fit.value[:, 0]
    D = _floor_d(fit.value[:, 1], fit.supported, d_floor)
    meta = {
        "route": "mechanistic",
        "diffusion": diffusion,
        "second_order": bool(second_order),
        "symmetric": bool(symmetric),
        "eta": eta,
        "n_members": M,
        "min_eff": min_eff,
        "tail": tail,
        "d_floor": d_floor,
    }
    return Estimate(grid, A, D, fit.se[:, 0], fit.se[:, 1], fit.n_eff, fit.supported, fit.bandwidth, meta)


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
    dw = w1 - w0
    x, y = w0, dw
    if symmetric:
        x, y = np.concatenate([w0, -w0]), np.concatenate([dw, -dw])
    h = bandwidth_rule(x) if bandwidth is None else check_positive("bandwidth", bandwidth)
    aux = np.linspace(x.min(), x.max(), 512)
    h = h or None  # zero spread (all members equal): local_linear_fit's sample-mean case
    m1 = local_linear_fit(x, y, aux, h, min_eff=min_eff, tail=tail, se=False).value
    r2 = (y - np.interp(x, aux, m1)) ** 2
    fit = _fit_on_grid(x, np.stack([y, r2], axis=1), grid, h, min_eff, tail, se)
    A = fit.value[:, 0] / dt
    D = _floor_d(fit.value[:, 1] / (2 * dt), fit.supported, d_floor)
    meta = {
        "route": "kramers-moyal",
        "dt": dt,
        "symmetric": bool(symmetric),
        "n_members": w0.size,
        "min_eff": min_eff,
        "tail": tail,
        "d_floor": d_floor,
    }
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
        return np.stack([np.stack([a, b]), np.stack([b, c])])
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
    return np.stack([np.stack([d00, d01]), np.stack([d01, d11])])


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
) -> Estimate:
    """Mechanistic vector drift and 2×2 diffusion tensor of a pair of weights at one snapshot.

    ``A_i(w) = E[−g_i | w]`` (``− (η/2) E[(H∇L)_i | w]`` if ``second_order``),
    ``D_ij(w) = (η/2) E[C_ij | w]`` with ``C`` the per-member covariance of the minibatch-mean gradients of the
    pair (``diffusion="discrete"`` adds ``g_i g_j``). ``symmetric`` mirrors samples through the origin
    (``A(−w) = −A(w)``, ``D(−w) = D(w)``). D is made symmetric positive semi-definite (eigenvalues floored).

    Parameters
    ----------
    w, g : (M, 2);  cov : (M, 2, 2) or (M, 3);  hg : (M, 2), optional;  grid : 2-D Grid
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
        x = np.concatenate([w, -w])
        a_s = np.concatenate([a_s, -a_s])
        d_s = np.concatenate([d_s, d_s])
    fit = local_linear_2d(x, np.concatenate([a_s, d_s], axis=1), grid, bandwidth, min_eff=min_eff)
    val = np.moveaxis(fit.value, -1, 0)
    err = np.moveaxis(fit.se, -1, 0)
    A = val[:2]
    Dt = np.stack([np.stack([val[2], val[3]]), np.stack([val[3], val[4]])])
    De = np.stack([np.stack([err[2], err[3]]), np.stack([err[3], err[4]])])
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
        x, y = np.concatenate([w0, -w0]), np.concatenate([dw, -dw])
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
    Dt = np.stack([np.stack([val[2], val[3]]), np.stack([val[3], val[4]])]) / (2 * dt)
    De = np.stack([np.stack([err[2], err[3]]), np.stack([err[3], err[4]])]) / (2 * dt)
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
        self._last = None

    def at_time(self, t: float) -> np.ndarray:
        """The arrays on the grid at time ``t`` (linear between snapshots, held outside)."""
        ts = self.t
        if t <= ts[0]:
            return self.values[0]
        if t >= ts[-1]:
            return self.values[-1]
        k = int(np.searchsorted(ts, t, side="right")) - 1
        a = (t - ts[k]) / (ts[k + 1] - ts[k])
        return (1 - a) * self.values[k] + a * self.values[k + 1]

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
            and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(last[1], arrays))
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
        self._last = (t, [a.copy() for a in arrays], out)
        return out

    def _interp(self, vals, coords):
        axes = self.grid.axes
        if self.grid.ndim == 1:
            xs = axes[0]
            if self.components is None:
                return np.interp(coords[0], xs, vals)
            return np.stack([np.interp(coords[0], xs, vals[c]) for c in range(self.components)])
        from scipy.interpolate import RegularGridInterpolator

        shape = np.broadcast_shapes(*(c.shape for c in coords))
        pts = np.stack(
            [np.clip(np.broadcast_to(c, shape), a[0], a[-1]) for c, a in zip(coords, axes)], axis=-1
        )
        if self.components is None:
            return RegularGridInterpolator(axes, vals)(pts)
        return np.stack([RegularGridInterpolator(axes, vals[c])(pts) for c in range(self.components)])


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
