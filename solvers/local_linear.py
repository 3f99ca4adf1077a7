"""Local-linear (Gaussian kernel) regression kernels: fits at given points and on uniform grids, 1-D and 2-D.

At an evaluation point e the fit minimises ``Σ K_i (y_i − β0 − β1·(x_i − e))²`` with the Gaussian
``K_i = exp(−|x_i − e|²/(2h²))`` (a product kernel with per-axis h in 2-D); ``β0`` is the estimate, the
sandwich variance ``Σ l_i² r_i²`` (``l_i`` the equivalent-kernel weight, ``r_i`` the residual) its squared
standard error and ``(Σ K)²/Σ K²`` the effective sample count. Weights below ``exp(−CUT2/2)``
(|x − e| > REACH·h) are skipped: their relative contribution is < 1e-13.

Two evaluation strategies with the same outputs to round-off:

* direct (``fit_direct``, ``fit_direct_2d``): one exp per (sample, point) pair, parallel over points;
* uniform (``fit_uniform``, ``fit_uniform_2d``): on uniformly spaced points with spacing ≤ h the weights along
  an axis follow the exact recurrence ``w_{j+1} = w_j·r_j``, ``r_{j+1} = r_j·c²`` with
  ``r_j = exp((x − e_j)·de/h²)·c``, ``c = exp(−de²/(2h²))`` (``window_start``): three exp per sample. Serial
  scatter over samples into the points, so sums do not depend on the thread count.

A fit whose design is degenerate (all weight at one point) falls back to local-constant; a point with no
weight gets NaN estimates and an infinite standard error.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ConfigError
from ._numba import kernel, prange

REACH = 8.0  # kernel weights beyond REACH·h are skipped
CUT2 = REACH * REACH  # the same cut on (|Δx|/h)²


@kernel(parallel=True)
def fit_points(x, Y, xe, h, se_cols, beta0, beta1, se, neff):
    """Local-linear fit at each evaluation point ``xe[j]`` with bandwidth ``h[j]`` (prange over points); the
    standard errors of the columns k with ``se_cols[k]`` (bool (K,)), ``se`` left as it is for the others."""
    M = x.shape[0]
    K = Y.shape[1]
    want_se = False
    for k in range(K):
        want_se = want_se or se_cols[k]
    for j in prange(xe.shape[0]):
        x0 = xe[j]
        inv_h = 1.0 / h[j]
        s0 = 0.0
        s1 = 0.0
        s2 = 0.0
        sk2 = 0.0
        t0 = np.zeros(K)
        t1 = np.zeros(K)
        # the weights, kept for the standard-error pass (the exp is most of the cost); -1: beyond the cut
        wts = np.empty(M) if want_se else np.empty(0)
        for i in range(M):
            d = x[i] - x0
            u = d * inv_h
            u2 = u * u
            if u2 > CUT2:
                if want_se:
                    wts[i] = -1.0
                continue
            wgt = math.exp(-0.5 * u2)
            if want_se:
                wts[i] = wgt
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
                wgt = wts[i]
                if wgt < 0.0:
                    continue
                d = x[i] - x0
                if degenerate:
                    li = wgt / s0
                else:
                    li = wgt * (s2 - s1 * d) / det
                for k in range(K):
                    if se_cols[k]:
                        r = Y[i, k] - beta0[j, k] - beta1[j, k] * d
                        acc[k] += li * li * r * r
            for k in range(K):
                if se_cols[k]:
                    se[j, k] = math.sqrt(acc[k])


@kernel
def window_start(xi, e0, de, n_e, h):
    """For the points e_j = e0 + j·de within REACH·h of xi: the window (jlo, jhi) (empty if jlo > jhi) and the
    recurrence's first weight w, ratio r and ratio factor c² (module docstring)."""
    inv2h2 = 0.5 / (h * h)
    reach = REACH * h
    jlo = max(0, math.ceil((xi - reach - e0) / de))
    jhi = min(n_e - 1, math.floor((xi + reach - e0) / de))
    if jlo > jhi:
        return jlo, jhi, 0.0, 0.0, 0.0
    c = math.exp(-de * de * inv2h2)
    d0 = xi - (e0 + jlo * de)
    w = math.exp(-d0 * d0 * inv2h2)
    r = math.exp(d0 * de / (h * h)) * c
    return jlo, jhi, w, r, c * c


@kernel
def axis_weights(xi, e0, de, n_e, h, out):
    """Gaussian weights exp(−(xi − e_j)²/(2h²)) into ``out`` over the window of ``window_start``; returns it."""
    jlo, jhi, w, r, c2 = window_start(xi, e0, de, n_e, h)
    for j in range(jlo, jhi + 1):
        out[j] = w
        w *= r
        r *= c2
    return jlo, jhi


# The 1-D passes take the samples two at a time: where their windows overlap, each point's sums are loaded and
# stored once for both (sample i's terms added before sample i+1's, the order of a one-at-a-time pass: the
# same bits), and the two weight recurrences interleave. Measured on a W1 entry's fits: 25 % less time. The
# recurrence runs inline: through an `axis_weights` buffer the passes were 25-30 % slower.
@kernel
def two_windows(x, i, e0, de, n_e, h):
    """``window_start`` of samples i and i + 1 (an empty window for the latter when i is the last)."""
    la, ha, wa, ra, ca = window_start(x[i], e0, de, n_e, h)
    if i + 1 < x.shape[0]:
        lb, hb, wb, rb, cb = window_start(x[i + 1], e0, de, n_e, h)
    else:
        lb, hb, wb, rb, cb = 1, 0, 0.0, 0.0, 0.0
    return la, ha, wa, ra, ca, lb, hb, wb, rb, cb


@kernel(inline="always")
def _sums_one(S, T, Y, i, j, w, d):
    S[j, 0] += w
    S[j, 1] += w * d
    S[j, 2] += w * d * d
    S[j, 3] += w * w
    for k in range(Y.shape[1]):
        wy = w * Y[i, k]
        T[j, k, 0] += wy
        T[j, k, 1] += wy * d


@kernel
def uniform_sums(x, Y, e0, de, n_e, h, S, T):
    """Kernel sums at ``e_j = e0 + j·de``: S[j] = (Σw, Σw d, Σw d², Σw²), T[j, k] = (Σ w y_k, Σ w d y_k),
    d = x − e_j, summed over the samples in order."""
    M = x.shape[0]
    K = Y.shape[1]
    for i in range(0, M, 2):
        la, ha, wa, ra, ca, lb, hb, wb, rb, cb = two_windows(x, i, e0, de, n_e, h)
        xa = x[i]
        xb = x[i + 1] if i + 1 < M else 0.0
        disjoint = la > ha or lb > hb or ha < lb or hb < la
        lo = max(la, lb) if not disjoint else ha + 1  # both samples at lo..hi
        hi = min(ha, hb) if not disjoint else ha
        for j in range(la, min(ha, lo - 1) + 1):  # sample i alone (before the overlap, or all when disjoint)
            _sums_one(S, T, Y, i, j, wa, xa - (e0 + j * de))
            wa *= ra
            ra *= ca
        if disjoint:
            for j in range(lb, hb + 1):
                _sums_one(S, T, Y, i + 1, j, wb, xb - (e0 + j * de))
                wb *= rb
                rb *= cb
            continue
        for j in range(lb, lo):  # sample i + 1 alone before the overlap
            _sums_one(S, T, Y, i + 1, j, wb, xb - (e0 + j * de))
            wb *= rb
            rb *= cb
        for j in range(lo, hi + 1):
            e = e0 + j * de
            da = xa - e
            db = xb - e
            S[j, 0] = S[j, 0] + wa + wb
            S[j, 1] = S[j, 1] + wa * da + wb * db
            S[j, 2] = S[j, 2] + wa * da * da + wb * db * db
            S[j, 3] = S[j, 3] + wa * wa + wb * wb
            for k in range(K):
                wya = wa * Y[i, k]
                wyb = wb * Y[i + 1, k]
                T[j, k, 0] = T[j, k, 0] + wya + wyb
                T[j, k, 1] = T[j, k, 1] + wya * da + wyb * db
            wa *= ra
            ra *= ca
            wb *= rb
            rb *= cb
        for j in range(hi + 1, ha + 1):  # after the overlap: one of the two
            _sums_one(S, T, Y, i, j, wa, xa - (e0 + j * de))
            wa *= ra
            ra *= ca
        for j in range(hi + 1, hb + 1):
            _sums_one(S, T, Y, i + 1, j, wb, xb - (e0 + j * de))
            wb *= rb
            rb *= cb


@kernel(inline="always")
def _se_weight(S, det, local_const, j, w, d):
    """The equivalent-kernel weight l_j(x_i) of a sample with kernel weight w at d = x_i − e_j."""
    if local_const[j]:
        return w / S[j, 0]
    return w * (S[j, 2] - S[j, 1] * d) / det[j]


@kernel(inline="always")
def _se_one(acc, Y, beta0, beta1, i, j, li, d):
    for k in range(Y.shape[1]):
        res = Y[i, k] - beta0[j, k] - beta1[j, k] * d
        acc[j, k] += li * li * res * res


@kernel
def uniform_se(x, Y, e0, de, n_e, h, S, beta0, beta1, det, local_const, acc):
    """Second pass at ``e_j = e0 + j·de``: acc[j, k] = Σ l_j(x_i)² r_ij² (the sandwich variance), summed over
    the samples in order (two at a time, as ``uniform_sums``)."""
    M = x.shape[0]
    K = Y.shape[1]
    for i in range(0, M, 2):
        la, ha, wa, ra, ca, lb, hb, wb, rb, cb = two_windows(x, i, e0, de, n_e, h)
        xa = x[i]
        xb = x[i + 1] if i + 1 < M else 0.0
        disjoint = la > ha or lb > hb or ha < lb or hb < la
        lo = max(la, lb) if not disjoint else ha + 1
        hi = min(ha, hb) if not disjoint else ha
        for j in range(la, min(ha, lo - 1) + 1):
            d = xa - (e0 + j * de)
            _se_one(acc, Y, beta0, beta1, i, j, _se_weight(S, det, local_const, j, wa, d), d)
            wa *= ra
            ra *= ca
        if disjoint:
            for j in range(lb, hb + 1):
                d = xb - (e0 + j * de)
                _se_one(acc, Y, beta0, beta1, i + 1, j, _se_weight(S, det, local_const, j, wb, d), d)
                wb *= rb
                rb *= cb
            continue
        for j in range(lb, lo):
            d = xb - (e0 + j * de)
            _se_one(acc, Y, beta0, beta1, i + 1, j, _se_weight(S, det, local_const, j, wb, d), d)
            wb *= rb
            rb *= cb
        for j in range(lo, hi + 1):
            e = e0 + j * de
            da = xa - e
            db = xb - e
            lia = _se_weight(S, det, local_const, j, wa, da)
            lib = _se_weight(S, det, local_const, j, wb, db)
            for k in range(K):
                b0 = beta0[j, k]
                b1 = beta1[j, k]
                rea = Y[i, k] - b0 - b1 * da
                reb = Y[i + 1, k] - b0 - b1 * db
                acc[j, k] = acc[j, k] + lia * lia * rea * rea + lib * lib * reb * reb
            wa *= ra
            ra *= ca
            wb *= rb
            rb *= cb
        for j in range(hi + 1, ha + 1):
            d = xa - (e0 + j * de)
            _se_one(acc, Y, beta0, beta1, i, j, _se_weight(S, det, local_const, j, wa, d), d)
            wa *= ra
            ra *= ca
        for j in range(hi + 1, hb + 1):
            d = xb - (e0 + j * de)
            _se_one(acc, Y, beta0, beta1, i + 1, j, _se_weight(S, det, local_const, j, wb, d), d)
            wb *= rb
            rb *= cb


def se_columns(want_se, K: int) -> np.ndarray:
    """The columns that get standard errors as a bool mask (K,): ``want_se`` True (all), False (none) or the
    indices of some (the second pass costs in proportion to its columns). A scalar counts by its truth, as
    before indices were taken (se=0, 1 or None: none, all, none); a bool array of K is a mask."""
    if np.ndim(want_se) == 0:
        return np.full(K, bool(want_se))
    cols = np.asarray(want_se)
    if cols.dtype == bool and cols.shape == (K,):
        return cols.copy()
    if cols.ndim != 1 or not (cols.size == 0 or cols.dtype.kind in "iu") or np.any((cols < -K) | (cols >= K)):
        raise ConfigError(f"`se` must be True, False or indices of the {K} columns of y, got {want_se!r}")
    mask = np.zeros(K, bool)
    mask[cols.astype(np.int64)] = True
    return mask


def fit_uniform(x, Y, xe, h, want_se):
    """Local-linear at uniformly spaced ``xe`` (spacing ≤ h) by the recurrence; outputs as ``fit_points``:
    (beta0, beta1, se, neff), se NaN except in the columns of ``want_se`` (``se_columns``)."""
    E, K = xe.size, Y.shape[1]
    cols = se_columns(want_se, K)
    e0, de = float(xe[0]), float(xe[1] - xe[0])
    S = np.zeros((E, 4))
    T = np.zeros((E, K, 2))
    uniform_sums(x, Y, e0, de, E, float(h), S, T)
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
    if cols.any():
        # each column's sums are its own: a pass over some columns gives them exactly as a pass over all
        if not cols.all():
            Y, b0s, b1s = np.ascontiguousarray(Y[:, cols]), b0[:, cols], b1[:, cols]
        else:
            b0s, b1s = b0, b1
        acc = np.zeros((E, int(cols.sum())))
        uniform_se(x, Y, e0, de, E, float(h), S, np.nan_to_num(b0s), np.nan_to_num(b1s), det, local_const, acc)
        err[:, cols] = np.sqrt(acc)
        err[empty[:, None] & cols[None, :]] = np.inf
    return b0, b1, err, neff


def fit_direct(x, Y, xe, h, want_se):
    """Local-linear fits at the points ``xe`` with per-point bandwidths ``h``: (beta0 (E, K), beta1 (E, K),
    se (E, K), neff (E,)), se NaN except in the columns of ``want_se`` (``se_columns``)."""
    E, K = xe.size, Y.shape[1]
    beta0 = np.empty((E, K))
    beta1 = np.empty((E, K))
    err = np.full((E, K), np.nan)
    neff = np.empty(E)
    fit_points(
        np.ascontiguousarray(x), np.ascontiguousarray(Y), np.ascontiguousarray(xe), h, se_columns(want_se, K),
        beta0, beta1, err, neff,
    )  # fmt: skip
    return beta0, beta1, err, neff


# --------------------------------------------------------------------------------------------- 2-D
@kernel(parallel=True)
def fit_points_2d(x, Y, xe, hx, hy, want_se, beta0, se, neff):
    """Local-linear (plane) fit at each 2-D evaluation point, product Gaussian kernel (prange over points)."""
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
            if u2 > CUT2:
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
                if u2 > CUT2:
                    continue
                wgt = math.exp(-0.5 * u2)
                li = wgt * (r0 + r1 * dx + r2 * dy)
                for k in range(K):
                    r = Y[i, k] - coef[0, k] - coef[1, k] * dx - coef[2, k] * dy
                    acc[k] += li * li * r * r
            for k in range(K):
                se[j, k] = math.sqrt(acc[k])


@kernel
def uniform_sums_2d(x, Y, e0x, dex, nx, hx, e0y, dey, ny, hy, S, T):
    """2-D kernel sums on a uniform grid (product kernel, per-axis recurrences, serial scatter).

    S[a, b] = (Σw, Σw dx, Σw dy, Σw dx², Σw dx dy, Σw dy², Σw²); T[a, b, k] = (Σ w y, Σ w dx y, Σ w dy y),
    with (dx, dy) = sample − grid point.
    """
    M = x.shape[0]
    K = Y.shape[1]
    wx = np.empty(nx)
    wy = np.empty(ny)
    for i in range(M):
        ax0, ax1 = axis_weights(x[i, 0], e0x, dex, nx, hx, wx)
        if ax0 > ax1:
            continue
        by0, by1 = axis_weights(x[i, 1], e0y, dey, ny, hy, wy)
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
def uniform_se_2d(x, Y, e0x, dex, nx, hx, e0y, dey, ny, hy, R, C, acc):
    """Sandwich variance on a uniform 2-D grid: R[a, b] is the first row of the inverse moment matrix,
    C[a, b, :, k] the local plane of response k."""
    M = x.shape[0]
    K = Y.shape[1]
    wx = np.empty(nx)
    wy = np.empty(ny)
    for i in range(M):
        ax0, ax1 = axis_weights(x[i, 0], e0x, dex, nx, hx, wx)
        if ax0 > ax1:
            continue
        by0, by1 = axis_weights(x[i, 1], e0y, dey, ny, hy, wy)
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


def fit_uniform_2d(x, Y, grid, h, want_se):
    """Local plane fits at every cell centre of a uniform 2-D grid; outputs as ``fit_direct_2d``."""
    (nx, ny), (dex, dey) = grid.shape, grid.dx
    e0x, e0y = grid.axes[0][0], grid.axes[1][0]
    K = Y.shape[1]
    S = np.zeros((nx, ny, 7))
    T = np.zeros((nx, ny, K, 3))
    args = (float(e0x), float(dex), nx, float(h[0]), float(e0y), float(dey), ny, float(h[1]))
    uniform_sums_2d(x, Y, *args, S, T)
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
        uniform_se_2d(x, Y, *args, np.ascontiguousarray(inv[..., 0, :]), np.ascontiguousarray(C), acc)
        err = np.sqrt(acc)
        err[empty] = np.inf
    return beta0.reshape(-1, K), err.reshape(-1, K), neff.ravel()


def fit_direct_2d(x, Y, xe, h, want_se):
    """Local plane fits at the points ``xe`` (E, 2): (beta0 (E, K), se (E, K), neff (E,)), se NaN unless
    ``want_se``."""
    E, K = xe.shape[0], Y.shape[1]
    beta0 = np.empty((E, K))
    err = np.full((E, K), np.nan)
    neff = np.empty(E)
    fit_points_2d(
        np.ascontiguousarray(x), np.ascontiguousarray(Y), xe, float(h[0]), float(h[1]), bool(want_se),
        beta0, err, neff,
    )  # fmt: skip
    return beta0, err, neff
