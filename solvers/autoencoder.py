"""Numba kernels for ensembles of small fully connected networks trained by SGD, GD, SGLD and SVAG.

Layout (why it looks like this): ensembles of tiny networks (widths <= ~16) are not matrix work, so the
kernels put the ensemble *members in the innermost, contiguous axis* and update a block of up to ``BLOCK``
(= 16) members at once. Every inner loop runs over the block's lanes with a runtime bound (``nl``), so LLVM
emits SIMD code across members (``LANES`` = 8 per vector) instead of short dot products, and a fully unrolled
constant trip count cannot occur.

Parameters of all members live in one array ``theta`` of shape ``(P, M)``: for layer ``ell`` (0-based) the
weight matrix W of shape ``(n_out, n_in)`` occupies rows ``w_off[ell] + j * n_in + i`` (row-major, so
``W[j, i]`` maps input unit i to output unit j: ``z = act(W @ x + b)``) and its bias rows
``b_off[ell] + j`` (``b_off[ell] < 0``: no bias). Hidden layers use the activation ``act`` (0 linear,
1 tanh, 2 relu); the output layer is linear. The loss of one sample is ``0.5 * |out - target|**2``; a
minibatch loss is the *mean* over its samples.

Random numbers: every member owns one xoroshiro128+ stream (the generator of ``fpkit.solvers.random``),
stored here as ``rng[0, m], rng[1, m]`` (shape (2, M)) so lanes of members sit side by side. A member's
results depend only on its own stream, hence are bit-identical for any number of threads or any lane it
lands in (no fast-math: no reassociation or FMA contraction, so SIMD and scalar code round identically).

FMA contraction (``fastmath={"contract"}`` on these kernels) was measured for issue 21 and left out: with
vtanh contracted too, 1 thread CPU -4 to -6 % training and -10 % statistics at d = 16, k = 4, B = 16, -2 %
on the flagship's SVAG shape; with vtanh kept exact (the 2-D pair shares it) the quick ``fpkit reproduce``
already moved beyond 1e-9 (W3[0,0]'s JS ratio at t = 0, a ratio of two round-off-level divergences,
1.64e-8 -> 2.00e-8). Where the time goes: ``scripts/
bench_ensemble.py --parts`` (at d = 16 the 8 vtanh per sample are ~23 % of a training step, at the
flagship's d = 8, [3, 3] ~1/3: ~1.5 ns per value, vectorised, for 18 multiply-adds and two divisions; a
cheaper tanh would change the round-off too).
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel, prange
from .random import to_unit, xoroshiro_step

LANES = 8  # float64 members per SIMD vector (a zmm register); shards of an ensemble start on multiples of it
# Members per kernel block: two vectors, so that each lane loop (runtime bound nl) runs its vector body
# twice per entry and its set-up (runtime alias checks, hoisted tanh constants) is amortised over twice
# the members (measured with the lane-by-lane gather below, quiet machine, 1 thread: -10 % CPU time for
# training at d = 16, k = 4, B = 16, -8 % for the flagship's SVAG ensembles at d = 8; 32 per block: no
# faster at d = 16).
BLOCK = 2 * LANES

ACT_LINEAR = 0
ACT_TANH = 1
ACT_RELU = 2
ACTIVATIONS = {"linear": ACT_LINEAR, "tanh": ACT_TANH, "relu": ACT_RELU}

SAMPLE_IID = 0  # minibatch indices iid uniform, with replacement
SAMPLE_DISTINCT = 1  # distinct indices within a batch (independent across steps)
SAMPLE_EPOCHS = 2  # reshuffled epochs: a fresh permutation per member and epoch, consecutive batches
SAMPLE_FULL = 3  # full batch (GD)
SAMPLE_ONLINE = 4  # fresh samples from the generator every step
SAMPLINGS = {"iid": SAMPLE_IID, "distinct": SAMPLE_DISTINCT, "epochs": SAMPLE_EPOCHS, "full": SAMPLE_FULL}

_U16 = np.uint64(16)
_U32 = np.uint64(32)

# Lambert's continued fraction for tanh truncated at depth 18, as y * P(y^2) / Q(y^2) with positive
# coefficients (no cancellation), applied to y = x/2 (|x| <= 20; tanh(20) rounds to 1) and doubled once
# with tanh(2y) = 2 tanh(y) / (1 + tanh(y)^2), whose relative condition number is <= 1. Within 2 ulp of
# the exact value (checked against mpmath in the tests) and vectorisable, unlike a libm tanh call (~15 ns).


@kernel
def vtanh(x):
    """tanh(x) within 2 ulp in a form LLVM can vectorise (no libm call, two divisions)."""
    if x > 20.0:
        x = 20.0
    elif x < -20.0:
        x = -20.0
    y = 0.5 * x
    t = y * y
    p = 1.0
    p = p * t + 17955.0
    p = p * t + 51482970.0
    p = p * t + 54057118500.0
    p = p * t + 26428139112375.0
    p = p * t + 6557114959770375.0
    p = p * t + 8.315613971708794e17
    p = p * t + 5.06612789661028e19
    p = p * t + 1.255977541034632e21
    p = p * t + 8.200794532637892e21
    q = 190.0
    q = q * t + 1119195.0
    q = q * t + 1853386920.0
    q = q * t + 1305093289500.0
    q = q * t + 452214824811750.0
    q = q * t + 8.047368359718187e16
    q = q * t + 7.16422126793373e18
    q = q * t + 2.870805808079159e20
    q = q * t + 3.989575718580596e21
    q = q * t + 8.200794532637892e21
    r = y * p / q
    return 2.0 * r / (1.0 + r * r)


# ----------------------------------------------------------------------------------------------------------
# random numbers on a lane-local state (2, BLOCK): the same xoroshiro128+ as fpkit.solvers.random
@kernel
def _next_u64(rs, l):
    result, rs[0, l], rs[1, l] = xoroshiro_step(rs[0, l], rs[1, l])
    return result


@kernel
def _below(rs, l, n):
    """An integer uniform on 0..n-1 (n < 2**32) by multiply-shift of the top 32 bits (bias < n / 2**32)."""
    return np.int64(((_next_u64(rs, l) >> _U32) * np.uint64(n)) >> _U32)


@kernel
def _uniform(rs, l):
    return to_unit(_next_u64(rs, l))


@kernel
def _normal_pair(rs, l):
    while True:
        u = 2.0 * _uniform(rs, l) - 1.0
        v = 2.0 * _uniform(rs, l) - 1.0
        s = u * u + v * v
        if 0.0 < s < 1.0:
            f = np.sqrt(-2.0 * np.log(s) / s)
            return u * f, v * f


# ----------------------------------------------------------------------------------------------------------
# one sample, a lane of members: forward and backward passes
@kernel
def _forward(th, nl, sizes, w_off, b_off, act, h):
    """Fill h[ell + 1, :n_out, :nl] from h[ell]; h[0, :d, :nl] holds the input (one sample per member)."""
    n_layers = sizes.shape[0] - 1
    for ell in range(n_layers):
        nin = sizes[ell]
        nout = sizes[ell + 1]
        wo = w_off[ell]
        bo = b_off[ell]
        hin = h[ell]
        hout = h[ell + 1]
        for j in range(nout):
            acc = hout[j]
            if bo >= 0:
                bias = th[bo + j]
                for l in range(nl):
                    acc[l] = bias[l]
            else:
                for l in range(nl):
                    acc[l] = 0.0
            for i in range(nin):
                w = th[wo + j * nin + i]
                xi = hin[i]
                for l in range(nl):
                    acc[l] += w[l] * xi[l]
            if ell < n_layers - 1:
                if act == ACT_TANH:
                    for l in range(nl):
                        acc[l] = vtanh(acc[l])
                elif act == ACT_RELU:
                    for l in range(nl):
                        acc[l] = max(acc[l], 0.0)


@kernel
def _backward(th, nl, sizes, w_off, b_off, act, h, target, scale, g, dcur, dprev):
    """Add ``scale * d(0.5 |out - target|^2)/d theta`` of one sample to g (P, BLOCK).

    Uses ``h`` from ``_forward``; ``dcur``/``dprev`` are (max width, BLOCK) work arrays.
    """
    n_layers = sizes.shape[0] - 1
    nout = sizes[n_layers]
    out = h[n_layers]
    for j in range(nout):
        for l in range(nl):
            dcur[j, l] = (out[j, l] - target[j, l]) * scale
    for ell in range(n_layers - 1, -1, -1):
        nin = sizes[ell]
        nout = sizes[ell + 1]
        wo = w_off[ell]
        bo = b_off[ell]
        hin = h[ell]
        for j in range(nout):
            dj = dcur[j]
            for i in range(nin):
                gw = g[wo + j * nin + i]
                xi = hin[i]
                for l in range(nl):
                    gw[l] += dj[l] * xi[l]
            if bo >= 0:
                gb = g[bo + j]
                for l in range(nl):
                    gb[l] += dj[l]
        if ell > 0:
            for i in range(nin):
                di = dprev[i]
                for l in range(nl):
                    di[l] = 0.0
            for j in range(nout):
                dj = dcur[j]
                for i in range(nin):
                    w = th[wo + j * nin + i]
                    di = dprev[i]
                    for l in range(nl):
                        di[l] += w[l] * dj[l]
            for i in range(nin):
                di = dprev[i]
                xi = hin[i]
                if act == ACT_TANH:
                    for l in range(nl):
                        di[l] *= 1.0 - xi[l] * xi[l]
                elif act == ACT_RELU:
                    for l in range(nl):
                        if xi[l] <= 0.0:
                            di[l] = 0.0
            dcur, dprev = dprev, dcur


@kernel
def _backward_sq(th, nl, sizes, w_off, b_off, act, h, target, s1, s2, dcur, dprev):
    """Like ``_backward`` (scale 1) but adds the per-sample gradient v to s1 and v*v to s2 (P, BLOCK).

    One pass instead of zeroing a buffer, back-propagating into it and accumulating it: the statistics
    pass at snapshots (full-batch gradient and per-sample second moments) costs about as much as the
    training steps, so this matters.
    """
    n_layers = sizes.shape[0] - 1
    nout = sizes[n_layers]
    out = h[n_layers]
    for j in range(nout):
        for l in range(nl):
            dcur[j, l] = (out[j, l] - target[j, l]) * 1.0
    for ell in range(n_layers - 1, -1, -1):
        nin = sizes[ell]
        nout = sizes[ell + 1]
        wo = w_off[ell]
        bo = b_off[ell]
        hin = h[ell]
        for j in range(nout):
            dj = dcur[j]
            for i in range(nin):
                a = s1[wo + j * nin + i]
                b = s2[wo + j * nin + i]
                xi = hin[i]
                for l in range(nl):
                    v = dj[l] * xi[l]
                    a[l] += v
                    b[l] += v * v
            if bo >= 0:
                a = s1[bo + j]
                b = s2[bo + j]
                for l in range(nl):
                    a[l] += dj[l]
                    b[l] += dj[l] * dj[l]
        if ell > 0:
            for i in range(nin):
                di = dprev[i]
                for l in range(nl):
                    di[l] = 0.0
            for j in range(nout):
                dj = dcur[j]
                for i in range(nin):
                    w = th[wo + j * nin + i]
                    di = dprev[i]
                    for l in range(nl):
                        di[l] += w[l] * dj[l]
            for i in range(nin):
                di = dprev[i]
                xi = hin[i]
                if act == ACT_TANH:
                    for l in range(nl):
                        di[l] *= 1.0 - xi[l] * xi[l]
                elif act == ACT_RELU:
                    for l in range(nl):
                        if xi[l] <= 0.0:
                            di[l] = 0.0
            dcur, dprev = dprev, dcur


# ----------------------------------------------------------------------------------------------------------
# a group of GROUP samples at once, a lane of members (the drivers' unit of work)
#
# Why: the gradient is a sum over samples; written out for a group, each gradient entry is loaded and stored once
# per group instead of once per sample, and the group's independent forward chains interleave. The samples are
# added in their order, (((g + v0) + v1) + ...), so the sums equal the one-sample-at-a-time loop bit for bit.
GROUP = 4  # 8 measured 2x slower at d = 16, k = 4 (same results; cause not examined)


@kernel
def _forward_s(th, nl, sizes, w_off, b_off, act, hs):
    """``_forward`` for each sample s of the group: hs[s] is one sample's (n_layers + 1, max width, BLOCK)."""
    for s in range(hs.shape[0]):
        _forward(th, nl, sizes, w_off, b_off, act, hs[s])


@kernel
def _backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es):
    """``_backward`` for each sample of the group in order (work arrays ds[s], es[s]); the targets are ts[s],
    or the inputs hs[s, 0] when ``auto`` (an autoencoder: ts is then not read, nor written by the gather)."""
    for s in range(hs.shape[0]):
        _backward(th, nl, sizes, w_off, b_off, act, hs[s], hs[s, 0] if auto else ts[s], scale, g, ds[s], es[s])


@kernel
def _backward_sq_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, s1, s2, ds, es):
    """``_backward_sq`` for each sample of the group in order (targets as in ``_backward_s``)."""
    for s in range(hs.shape[0]):
        _backward_sq(th, nl, sizes, w_off, b_off, act, hs[s], hs[s, 0] if auto else ts[s], s1, s2, ds[s], es[s])


@kernel
def _forward_backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es):
    """Add the group's ``scale``-weighted gradients to g (forward passes first; they do not read g)."""
    _forward_s(th, nl, sizes, w_off, b_off, act, hs)
    _backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es)


@kernel
def _online_sample(rs, l, cdf, means, factors, wstar, noise, auto, xbuf, h0, tgt):
    """Draw one sample for member lane ``l`` from the Gaussian-mixture generator into h0[:, l] (and tgt)."""
    d = means.shape[1]
    c = 0
    if cdf.shape[0] > 1:
        u = _uniform(rs, l)
        while c < cdf.shape[0] - 1 and u > cdf[c]:
            c += 1
    i = 0
    while i < d:
        a, b = _normal_pair(rs, l)
        xbuf[i] = a
        if i + 1 < d:
            xbuf[i + 1] = b
        i += 2
    for i in range(d):
        v = means[c, i]
        for q in range(d):
            v += factors[c, i, q] * xbuf[q]
        h0[i, l] = v
    if not auto:
        for j in range(wstar.shape[0]):
            a, b = _normal_pair(rs, l)
            v = noise * a
            for i in range(d):
                v += wstar[j, i] * h0[i, l]
            tgt[j, l] = v


@kernel
def _draw_indices(rs, nl, n, B, sampling, perm, m0, counter, idx):
    """Minibatch indices idx[b, l] for the lane's members (see the SAMPLE_* codes)."""
    if sampling == SAMPLE_IID:
        nu = np.uint64(n)
        for b in range(B):
            for l in range(nl):  # inlined xoroshiro128+ so the lane loop vectorises
                s0 = rs[0, l]
                s1 = rs[1, l]
                r = s0 + s1
                s1 ^= s0
                rs[0, l] = ((s0 << np.uint64(24)) | (s0 >> np.uint64(40))) ^ s1 ^ (s1 << _U16)
                rs[1, l] = (s1 << np.uint64(37)) | (s1 >> np.uint64(27))
                idx[b, l] = np.int64(((r >> _U32) * nu) >> _U32)
    elif sampling == SAMPLE_DISTINCT:
        for l in range(nl):
            for b in range(B):
                while True:
                    k = _below(rs, l, n)
                    dup = False
                    for q in range(b):
                        if idx[q, l] == k:
                            dup = True
                    if not dup:
                        break
                idx[b, l] = k
    elif sampling == SAMPLE_EPOCHS:
        per_epoch = n // B
        pos = (counter % per_epoch) * B
        for l in range(nl):
            p = perm[m0 + l]
            if pos == 0:  # a new epoch: Fisher-Yates shuffle of the member's permutation
                for i in range(n - 1, 0, -1):
                    k = _below(rs, l, i + 1)
                    t = p[i]
                    p[i] = p[k]
                    p[k] = t
            for b in range(B):
                idx[b, l] = p[pos + b]


@kernel
def _zeros64(shape):
    """float64 zeros of ``shape`` (a tuple) starting on a 64-byte boundary (a cache line, one zmm vector of 8 lanes).

    numba aligns its arrays to 32 bytes only, so a block's (., BLOCK) rows (128 bytes) started mid-line about
    half the time and every zmm load and store of them touched two cache lines. Measured on the generated group
    kernels (d = 16, k = 4, quiet machine, 1 thread, CPU ns per member and sample, 32- vs 64-byte aligned):
    forward 22.4 -> 19.6, backward 17.6 -> 15.3, backward_sq 24.7 -> 23.2, forward_r 46.4 -> 42.6,
    backward_r 52.5 -> 47.1. Only where the data lie changes, not a value."""
    n = 1
    for size in shape:
        n *= size
    buf = np.zeros(n + 8)
    k = ((64 - buf.ctypes.data % 64) % 64) // 8
    return buf[k : k + n].reshape(shape)


@kernel
def _broadcast_samples(X, T, auto, s0, d, dout, nl, hs, ts):
    """Data samples s0 … s0 + S − 1 into every lane of the group buffers ``hs[:, 0]`` (inputs) and ``ts``
    (targets): the full-batch passes, where every member sees the same sample."""
    for s in range(hs.shape[0]):
        hs0 = hs[s, 0]
        tss = ts[s]
        for i in range(d):
            v = X[s0 + s, i]
            for l in range(nl):
                hs0[i, l] = v
        for j in range(dout):
            v = X[s0 + s, j] if auto else T[s0 + s, j]
            for l in range(nl):
                tss[j, l] = v


@kernel
def _gather_sample(X, T, auto, ids, d, dout, nl, h0, tg):
    """Data rows ids[l] into lane l of h0 (inputs, (d, BLOCK)) and, unless ``auto``, tg (targets).

    Lane by lane, each row read contiguously with one index load (the gather was ~20 % of a training step
    when walked unit by unit, reloading and wrap-checking an index per value), the target written alongside.
    An autoencoder's targets are its inputs: the backward passes read them from h0 (``auto``), which saves
    half of the gather's scalar stores.
    """
    for l in range(nl):
        x = X[ids[l]]
        for i in range(d):
            h0[i, l] = x[i]
        if not auto:
            t = T[ids[l]]
            for j in range(dout):
                tg[j, l] = t[j]


@kernel
def _batch_gradient(
    th, nl, sizes, w_off, b_off, act, X, T, auto, sampling, B, rs, perm, m0, counter,
    cdf, means, factors, wstar, noise, g, h, tg, dcur, dprev, idx, xbuf, hs, ts, ds, es,
):  # fmt: skip
    """g[:, :nl] = gradient of the minibatch-mean loss for the lane (minibatch drawn here).

    Samples from a data set go through the group kernels in groups of ``GROUP`` (hs, ts, ds, es: group work
    arrays), the rest one at a time (h, tg, dcur, dprev); the gradient sums run over samples in order either way.
    """
    P = g.shape[0]
    d = sizes[0]
    dout = sizes[sizes.shape[0] - 1]
    S = hs.shape[0]
    for p in range(P):
        for l in range(BLOCK):
            g[p, l] = 0.0
    h0 = h[0]
    if sampling == SAMPLE_FULL:
        n = X.shape[0]
        scale = 1.0 / n
        for s0 in range(0, n - n % S, S):
            _broadcast_samples(X, T, auto, s0, d, dout, nl, hs, ts)
            _forward_backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es)
        for s in range(n - n % S, n):
            for i in range(d):
                v = X[s, i]
                for l in range(nl):
                    h0[i, l] = v
            if not auto:
                for j in range(dout):
                    v = T[s, j]
                    for l in range(nl):
                        tg[j, l] = v
            _forward(th, nl, sizes, w_off, b_off, act, h)
            _backward(th, nl, sizes, w_off, b_off, act, h, h0 if auto else tg, scale, g, dcur, dprev)
        return
    scale = 1.0 / B
    if sampling == SAMPLE_ONLINE:
        for b in range(B):
            for l in range(nl):
                _online_sample(rs, l, cdf, means, factors, wstar, noise, auto, xbuf, h0, tg)
            _forward(th, nl, sizes, w_off, b_off, act, h)
            _backward(th, nl, sizes, w_off, b_off, act, h, h0 if auto else tg, scale, g, dcur, dprev)
        return
    _draw_indices(rs, nl, X.shape[0], B, sampling, perm, m0, counter, idx)
    for b0 in range(0, B - B % S, S):
        for s in range(S):
            _gather_sample(X, T, auto, idx[b0 + s], d, dout, nl, hs[s, 0], ts[s])
        _forward_backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es)
    for b in range(B - B % S, B):
        _gather_sample(X, T, auto, idx[b], d, dout, nl, h0, tg)
        _forward(th, nl, sizes, w_off, b_off, act, h)
        _backward(th, nl, sizes, w_off, b_off, act, h, h0 if auto else tg, scale, g, dcur, dprev)


@kernel(parallel=True)
def train_steps(
    theta, vel, rng, perm, X, T, auto, sizes, w_off, b_off, act,
    sampling, B, lr, lr_rows, momentum, weight_decay, temperature, svag_l, step0, n_steps,
    cdf, means, factors, wstar, noise,
):  # fmt: skip
    """Advance every member by ``n_steps`` optimiser steps, in place.

    Update per step (g the minibatch-mean gradient, or the SVAG combination, wd = weight_decay):
    ``v <- momentum * v + g + wd * w;  w <- w - lr_eff * v  (+ sqrt(2 lr_eff T) * xi for SGLD)``,
    with ``lr_eff = lr * lr_rows[p] / svag_l`` for parameter row p (per-layer learning rates of a width
    parameterisation; all ones: one rate) and ``svag_l`` inner steps per SGD step (SVAG, Li-Malladi-Arora 2021);
    ``momentum = 0`` is plain SGD (the velocity array is then not touched).

    Parameters
    ----------
    theta : (P, M) float array, parameters (updated). vel : (P, M) momentum buffer (updated).
    rng : (2, M) uint64 stream states (updated). perm : (M, n) int32 per-member permutations (epochs).
    X, T : (n, d), (n, d_out) data and regression targets (T unused when ``auto``: target = input).
    lr_rows : (P,) float array, factor on lr per parameter row. step0 : index of the first step (the
    epoch position depends on it). svag_l : int >= 1.
    cdf, means, factors, wstar, noise : the online generator (sampling == SAMPLE_ONLINE): mixture
        component CDF (c,), means (c, d), covariance factors (c, d, d); targets wstar @ x + noise * eps.
    """
    P, M = theta.shape
    n_blocks = (M + BLOCK - 1) // BLOCK
    maxw = 0
    for q in range(sizes.shape[0]):
        maxw = max(maxw, sizes[q])
    n_layers = sizes.shape[0] - 1
    inv_l = 1.0 / svag_l
    eta = lr * inv_l
    c1 = 0.5 * (1.0 + np.sqrt(2.0 * svag_l - 1.0))
    c2 = 0.5 * (1.0 - np.sqrt(2.0 * svag_l - 1.0))
    sg = np.sqrt(2.0 * (eta * lr_rows) * temperature)  # per row: lr_rows = 1 gives sqrt(2 eta T) exactly
    bmax = max(B, 1)
    for blk in prange(n_blocks):
        m0 = blk * BLOCK
        nl = min(BLOCK, M - m0)
        th = np.zeros((P, BLOCK), dtype=theta.dtype)
        vv = np.zeros((P, BLOCK), dtype=theta.dtype)
        g = np.zeros((P, BLOCK), dtype=theta.dtype)
        g2 = np.zeros((P, BLOCK), dtype=theta.dtype)
        h = np.zeros((n_layers + 1, maxw, BLOCK), dtype=theta.dtype)
        tg = np.zeros((maxw, BLOCK), dtype=theta.dtype)
        dcur = np.zeros((maxw, BLOCK), dtype=theta.dtype)
        dprev = np.zeros((maxw, BLOCK), dtype=theta.dtype)
        idx = np.zeros((bmax, BLOCK), dtype=np.int64)
        xbuf = np.zeros(sizes[0] + 1, dtype=np.float64)
        hs = np.zeros((GROUP, n_layers + 1, maxw, BLOCK), dtype=theta.dtype)
        ts = np.zeros((GROUP, maxw, BLOCK), dtype=theta.dtype)
        ds = np.zeros((GROUP, maxw, BLOCK), dtype=theta.dtype)
        es = np.zeros((GROUP, maxw, BLOCK), dtype=theta.dtype)
        rs = np.zeros((2, BLOCK), dtype=np.uint64)
        for l in range(nl):
            rs[0, l] = rng[0, m0 + l]
            rs[1, l] = rng[1, m0 + l]
            for p in range(P):
                th[p, l] = theta[p, m0 + l]
                if momentum != 0.0:
                    vv[p, l] = vel[p, m0 + l]
        for s in range(n_steps):
            for inner in range(svag_l):
                counter = step0 + s
                _batch_gradient(
                    th, nl, sizes, w_off, b_off, act, X, T, auto, sampling, B, rs, perm, m0, counter,
                    cdf, means, factors, wstar, noise, g, h, tg, dcur, dprev, idx, xbuf, hs, ts, ds, es,
                )  # fmt: skip
                if svag_l > 1:
                    _batch_gradient(
                        th, nl, sizes, w_off, b_off, act, X, T, auto, sampling, B, rs, perm, m0, counter,
                        cdf, means, factors, wstar, noise, g2, h, tg, dcur, dprev, idx, xbuf, hs, ts, ds, es,
                    )  # fmt: skip
                    for p in range(P):
                        gp = g[p]
                        g2p = g2[p]
                        for l in range(nl):
                            gp[l] = c1 * gp[l] + c2 * g2p[l]
                for p in range(P):
                    gp = g[p]
                    tp = th[p]
                    ep = eta * lr_rows[p]
                    if momentum != 0.0:
                        vp = vv[p]
                        for l in range(nl):
                            vp[l] = momentum * vp[l] + gp[l] + weight_decay * tp[l]
                            tp[l] -= ep * vp[l]
                    else:
                        for l in range(nl):
                            tp[l] -= ep * (gp[l] + weight_decay * tp[l])
                if temperature > 0.0:
                    for l in range(nl):
                        p = 0
                        while p < P:
                            a, b = _normal_pair(rs, l)
                            th[p, l] += sg[p] * a
                            if p + 1 < P:
                                th[p + 1, l] += sg[p + 1] * b
                            p += 2
        for l in range(nl):
            rng[0, m0 + l] = rs[0, l]
            rng[1, m0 + l] = rs[1, l]
            for p in range(P):
                theta[p, m0 + l] = th[p, l]
                if momentum != 0.0:
                    vel[p, m0 + l] = vv[p, l]


@kernel
def _gradient_block(theta, m0, X, T, auto, sizes, w_off, b_off, act, want_sq, gsum, gsq, loss):
    """Full-batch statistics for the lane of members m0 .. m0 + BLOCK - 1 (see ``data_gradient``)."""
    P, M = theta.shape
    n = X.shape[0]
    maxw = 0
    for q in range(sizes.shape[0]):
        maxw = max(maxw, sizes[q])
    n_layers = sizes.shape[0] - 1
    d = sizes[0]
    dout = sizes[n_layers]
    inv_n = 1.0 / n
    nl = min(BLOCK, M - m0)
    th = _zeros64((P, BLOCK))
    s1 = _zeros64((P, BLOCK))
    s2 = _zeros64((P, BLOCK))
    h = _zeros64((n_layers + 1, maxw, BLOCK))
    tg = _zeros64((maxw, BLOCK))
    dcur = _zeros64((maxw, BLOCK))
    dprev = _zeros64((maxw, BLOCK))
    ls = np.zeros(BLOCK)
    S = GROUP
    hs = _zeros64((S, n_layers + 1, maxw, BLOCK))
    ts = _zeros64((S, maxw, BLOCK))
    ds = _zeros64((S, maxw, BLOCK))
    es = _zeros64((S, maxw, BLOCK))
    for l in range(nl):
        for p in range(P):
            th[p, l] = theta[p, m0 + l]
    for s0 in range(0, n - n % S, S):
        _broadcast_samples(X, T, auto, s0, d, dout, nl, hs, ts)
        _forward_s(th, nl, sizes, w_off, b_off, act, hs)
        for s in range(S):
            out = hs[s, n_layers]
            tss = ts[s]
            for j in range(dout):
                for l in range(nl):
                    e = out[j, l] - tss[j, l]
                    ls[l] += 0.5 * e * e
        if want_sq:
            _backward_sq_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, s1, s2, ds, es)
        else:
            _backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, 1.0, s1, ds, es)
    h0 = h[0]
    for s in range(n - n % S, n):
        for i in range(d):
            v = X[s, i]
            for l in range(nl):
                h0[i, l] = v
        tgt = h0
        if not auto:
            for j in range(dout):
                v = T[s, j]
                for l in range(nl):
                    tg[j, l] = v
            tgt = tg
        _forward(th, nl, sizes, w_off, b_off, act, h)
        out = h[n_layers]
        for j in range(dout):
            for l in range(nl):
                e = out[j, l] - tgt[j, l]
                ls[l] += 0.5 * e * e
        if want_sq:
            _backward_sq(th, nl, sizes, w_off, b_off, act, h, tgt, s1, s2, dcur, dprev)
        else:
            _backward(th, nl, sizes, w_off, b_off, act, h, tgt, 1.0, s1, dcur, dprev)
    for l in range(nl):
        loss[m0 + l] = ls[l] * inv_n
        for p in range(P):
            gsum[p, m0 + l] = s1[p, l] * inv_n
            if want_sq:
                gsq[p, m0 + l] = s2[p, l] * inv_n


@kernel(parallel=True)
def data_gradient(theta, X, T, auto, sizes, w_off, b_off, act, want_sq, gsum, gsq, loss):
    """Full-batch statistics of the data loss for every member (columns of theta (P, M)).

    Writes ``gsum[:, m]`` = mean over the n samples of the per-sample gradient, ``gsq[:, m]`` = mean of its
    square (only if ``want_sq``) and ``loss[m]`` = mean over samples of 0.5 |out - target|^2.
    """
    n_blocks = (theta.shape[1] + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        _gradient_block(theta, blk * BLOCK, X, T, auto, sizes, w_off, b_off, act, want_sq, gsum, gsq, loss)


@kernel
def data_gradient_serial(theta, X, T, auto, sizes, w_off, b_off, act, want_sq, gsum, gsq, loss):
    """``data_gradient`` on the calling thread only: for a few members (Lanczos probes), a parallel launch
    on a busy machine waits milliseconds for a descheduled worker thread."""
    n_blocks = (theta.shape[1] + BLOCK - 1) // BLOCK
    for blk in range(n_blocks):
        _gradient_block(theta, blk * BLOCK, X, T, auto, sizes, w_off, b_off, act, want_sq, gsum, gsq, loss)



# ----------------------------------------------------------------------------------------------------------
# exact Hessian-vector products: forward-over-reverse (Pearlmutter's R-operator) through the same lane layout
@kernel
def _forward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh):
    """``_forward`` plus the directional derivative ``rh`` = R{h} of every layer along the parameters ``vt``.

    R{z} = V h_in + W R{h_in} (+ R{b}), R{h_out} = act'(z) R{z}; act' from the stored output: 1 − h² (tanh),
    [h > 0] (relu: the a.e. derivative, 0 at the kink as in ``_backward``), 1 (linear and the output layer).
    """
    n_layers = sizes.shape[0] - 1
    r0 = rh[0]
    for i in range(sizes[0]):
        for l in range(nl):
            r0[i, l] = 0.0
    _forward(th, nl, sizes, w_off, b_off, act, h)
    for ell in range(n_layers):
        nin = sizes[ell]
        nout = sizes[ell + 1]
        wo = w_off[ell]
        bo = b_off[ell]
        hin = h[ell]
        rin = rh[ell]
        hout = h[ell + 1]
        rout = rh[ell + 1]
        for j in range(nout):
            acc = rout[j]
            if bo >= 0:
                vb = vt[bo + j]
                for l in range(nl):
                    acc[l] = vb[l]
            else:
                for l in range(nl):
                    acc[l] = 0.0
            for i in range(nin):
                w = th[wo + j * nin + i]
                v = vt[wo + j * nin + i]
                xi = hin[i]
                ri = rin[i]
                for l in range(nl):
                    acc[l] += v[l] * xi[l] + w[l] * ri[l]
            if ell < n_layers - 1:
                hj = hout[j]
                if act == ACT_TANH:
                    for l in range(nl):
                        acc[l] *= 1.0 - hj[l] * hj[l]
                elif act == ACT_RELU:
                    for l in range(nl):
                        if hj[l] <= 0.0:
                            acc[l] = 0.0


@kernel
def _backward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh, target, scale, hv, dcur, dprev, rcur, rprev):
    """Add ``scale`` × R{∇θ 0.5 |out − target|²} (= H v for the sample) to hv (P, BLOCK).

    With δ the back-propagated error (δ_out = out − target; δ_in = act'(z) ⊙ Wᵀδ) and ∇W = δ h_inᵀ:
    R{∇W} = R{δ} h_inᵀ + δ R{h_in}ᵀ, R{∇b} = R{δ}, R{δ_in} = act'(z) ⊙ (Vᵀδ + Wᵀ R{δ}) + act''(z) R{z} ⊙ Wᵀδ,
    where for tanh act''(z) R{z} = −2 h R{h} and for relu and linear act'' = 0 (a.e.). Needs h, rh of
    ``_forward_r``; dcur/dprev/rcur/rprev are (max width, BLOCK) work arrays.
    """
    n_layers = sizes.shape[0] - 1
    nout = sizes[n_layers]
    out = h[n_layers]
    rout = rh[n_layers]
    for j in range(nout):
        for l in range(nl):
            dcur[j, l] = (out[j, l] - target[j, l]) * scale
            rcur[j, l] = rout[j, l] * scale
    for ell in range(n_layers - 1, -1, -1):
        nin = sizes[ell]
        nout = sizes[ell + 1]
        wo = w_off[ell]
        bo = b_off[ell]
        hin = h[ell]
        rin = rh[ell]
        for j in range(nout):
            dj = dcur[j]
            rj = rcur[j]
            for i in range(nin):
                gw = hv[wo + j * nin + i]
                xi = hin[i]
                ri = rin[i]
                for l in range(nl):
                    gw[l] += rj[l] * xi[l] + dj[l] * ri[l]
            if bo >= 0:
                gb = hv[bo + j]
                for l in range(nl):
                    gb[l] += rj[l]
        if ell > 0:
            for i in range(nin):
                di = dprev[i]
                ri = rprev[i]
                for l in range(nl):
                    di[l] = 0.0
                    ri[l] = 0.0
            for j in range(nout):
                dj = dcur[j]
                rj = rcur[j]
                for i in range(nin):
                    w = th[wo + j * nin + i]
                    v = vt[wo + j * nin + i]
                    di = dprev[i]
                    ri = rprev[i]
                    for l in range(nl):
                        di[l] += w[l] * dj[l]
                        ri[l] += v[l] * dj[l] + w[l] * rj[l]
            for i in range(nin):
                di = dprev[i]
                ri = rprev[i]
                xi = hin[i]
                rx = rin[i]
                if act == ACT_TANH:
                    for l in range(nl):
                        a1 = 1.0 - xi[l] * xi[l]
                        ri[l] = a1 * ri[l] - 2.0 * xi[l] * rx[l] * di[l]
                        di[l] *= a1
                elif act == ACT_RELU:
                    for l in range(nl):
                        if xi[l] <= 0.0:
                            di[l] = 0.0
                            ri[l] = 0.0
            dcur, dprev = dprev, dcur
            rcur, rprev = rprev, rcur


@kernel
def _forward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs):
    """``_forward_r`` for each sample of a group: hs[s], rhs[s] are one sample's
    (n_layers + 1, max width, BLOCK)."""
    for s in range(hs.shape[0]):
        _forward_r(th, vt, nl, sizes, w_off, b_off, act, hs[s], rhs[s])


@kernel
def _backward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs, ts, scale, hv, ds, es, rds, res):
    """``_backward_r`` for each sample of a group in order (work arrays ds[s], es[s], rds[s], res[s])."""
    for s in range(hs.shape[0]):
        _backward_r(th, vt, nl, sizes, w_off, b_off, act, hs[s], rhs[s], ts[s], scale, hv, ds[s], es[s], rds[s], res[s])


@kernel
def _hess_vec_block(theta, V, m0, X, T, auto, sizes, w_off, b_off, act, out):
    """Full-batch H v for the lane of members m0 .. m0 + BLOCK - 1 (see ``data_hess_vec``)."""
    P, M = theta.shape
    n = X.shape[0]
    maxw = 0
    for q in range(sizes.shape[0]):
        maxw = max(maxw, sizes[q])
    n_layers = sizes.shape[0] - 1
    d = sizes[0]
    dout = sizes[n_layers]
    inv_n = 1.0 / n
    nl = min(BLOCK, M - m0)
    th = _zeros64((P, BLOCK))
    vt = _zeros64((P, BLOCK))
    hv = _zeros64((P, BLOCK))
    h = _zeros64((n_layers + 1, maxw, BLOCK))
    rh = _zeros64((n_layers + 1, maxw, BLOCK))
    tg = _zeros64((maxw, BLOCK))
    dcur = _zeros64((maxw, BLOCK))
    dprev = _zeros64((maxw, BLOCK))
    rcur = _zeros64((maxw, BLOCK))
    rprev = _zeros64((maxw, BLOCK))
    S = GROUP
    hs = _zeros64((S, n_layers + 1, maxw, BLOCK))
    rhs = _zeros64((S, n_layers + 1, maxw, BLOCK))
    ts = _zeros64((S, maxw, BLOCK))
    ds = _zeros64((S, maxw, BLOCK))
    es = _zeros64((S, maxw, BLOCK))
    rds = _zeros64((S, maxw, BLOCK))
    res = _zeros64((S, maxw, BLOCK))
    for l in range(nl):
        for p in range(P):
            th[p, l] = theta[p, m0 + l]
            vt[p, l] = V[p, m0 + l]
    for s0 in range(0, n - n % S, S):  # groups of S samples (sums in sample order, as one at a time)
        _broadcast_samples(X, T, auto, s0, d, dout, nl, hs, ts)
        _forward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs)
        _backward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs, ts, 1.0, hv, ds, es, rds, res)
    h0 = h[0]
    for s in range(n - n % S, n):
        for i in range(d):
            v = X[s, i]
            for l in range(nl):
                h0[i, l] = v
        tgt = h0
        if not auto:
            for j in range(dout):
                v = T[s, j]
                for l in range(nl):
                    tg[j, l] = v
            tgt = tg
        _forward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh)
        _backward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh, tgt, 1.0, hv, dcur, dprev, rcur, rprev)
    for l in range(nl):
        for p in range(P):
            out[p, m0 + l] = hv[p, l] * inv_n


@kernel(parallel=True)
def data_hess_vec(theta, V, X, T, auto, sizes, w_off, b_off, act, out):
    """``out[:, m]`` = H_m V[:, m], H_m the Hessian of the full-batch data loss (mean over the n samples of
    0.5 |out − target|²) of member m, exactly (forward-over-reverse; for relu the almost-everywhere Hessian,
    the activation pattern held fixed)."""
    n_blocks = (theta.shape[1] + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        _hess_vec_block(theta, V, blk * BLOCK, X, T, auto, sizes, w_off, b_off, act, out)


@kernel
def data_hess_vec_serial(theta, V, X, T, auto, sizes, w_off, b_off, act, out):
    """``data_hess_vec`` on the calling thread only (a few members: the Lanczos probes)."""
    n_blocks = (theta.shape[1] + BLOCK - 1) // BLOCK
    for blk in range(n_blocks):
        _hess_vec_block(theta, V, blk * BLOCK, X, T, auto, sizes, w_off, b_off, act, out)

# ----------------------------------------------------------------------------------------------------------
# kernels specialised to one architecture (generated source, compiled once per shape, cached on disk)
#
# Why: with the widths known at compile time, each output unit's dot product is written out and the lane
# loop becomes the innermost loop around it, so every lane loop does n_in multiply-adds per member with its
# accumulator in a register (measured 4-8x faster than the generic kernels, whose inner lane loop does
# one multiply-add and reloads the accumulator). Only the passes and the minibatch gather are generated; the
# drivers (sampling, optimiser updates, statistics) are the generic ones above, re-bound to the generated
# pieces, so both paths share every other line. Summation orders equal the generic kernels'.
_DRIVERS = ("_forward_backward_s", "_batch_gradient", "train_steps", "_gradient_block", "data_gradient", "data_gradient_serial",
            "_hess_vec_block", "data_hess_vec", "data_hess_vec_serial")
_GEN_MAX_PARAMS = 3000  # larger networks: compile time grows with P; use the generic kernels


# Budget per generated lane loop. LLVM's loop vectoriser gives up when a loop has more than ~100 pairs of
# possibly dependent accesses to one array (its MaxDependences): a loop that updates r gradient entries
# has ~2 r² such pairs, one that writes r units of a layer reading n_in units of the same buffer ~r (n_in + r).
_GEN_MAX_REFS = 96


def _lane_loops(statements) -> list:
    """Pack (statement, n_refs) pairs into as few ``for l in range(nl)`` loops as the reference budget allows.

    One loop per group amortises the loop set-up and the runtime alias checks over many multiply-adds.
    """
    out, group, refs = [], [], 0
    for stmt, n in statements:
        if group and refs + n > _GEN_MAX_REFS:
            out += ["    for l in range(nl):"] + [f"        {g}" for g in group]
            group, refs = [], 0
        group.append(stmt)
        refs += n
    if group:
        out += ["    for l in range(nl):"] + [f"        {g}" for g in group]
    return out


def _gen_source(sizes, w_off, b_off, act, sq=False) -> str:
    # Every buffer is indexed flat with compile-time offsets (row * BLOCK + l): with a runtime row stride
    # each row would be a separate pointer for LLVM's alias analysis, the runtime checks would exceed
    # its budget and the lane loops would stay scalar (measured: time linear in the lane count).
    L = len(sizes) - 1
    W = BLOCK
    mw = int(max(sizes))

    def H(q, j):  # h[q, j, l] in the flat (n_layers + 1, max width, BLOCK) buffer
        return f"hf[{(q * mw + j) * W} + l]"

    def T(p):
        return f"tf[{p * W} + l]"

    out = ["@kernel", "def _forward(th, nl, sizes, w_off, b_off, act, h):"]
    out += ["    tf = th.reshape(th.size)", "    hf = h.reshape(h.size)"]
    for ell in range(L):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for j in range(nout):
            terms = [T(bo + j)] if bo >= 0 else []
            terms += [f"{T(wo + j * nin + i)} * {H(ell, i)}" for i in range(nin)]
            expr = " + ".join(terms)
            if ell < L - 1 and act == ACT_TANH:
                expr = f"vtanh({expr})"
            elif ell < L - 1 and act == ACT_RELU:
                expr = f"max({expr}, 0.0)"
            stmts.append((f"{H(ell + 1, j)} = {expr}", nin + 8))
        out += _lane_loops(stmts)
    if sq:  # _backward_sq: the per-sample gradient v added to s1 and v*v to s2
        out += ["", "", "@kernel",
                "def _backward_sq(th, nl, sizes, w_off, b_off, act, h, target, s1, s2, dcur, dprev):"]  # fmt: skip
        out += ["    scale = 1.0", "    gf = s1.reshape(s1.size)", "    qf = s2.reshape(s2.size)"]
    else:
        out += ["", "", "@kernel",
                "def _backward(th, nl, sizes, w_off, b_off, act, h, target, scale, g, dcur, dprev):"]  # fmt: skip
        out += ["    gf = g.reshape(g.size)"]
    out += ["    tf = th.reshape(th.size)", "    hf = h.reshape(h.size)",
            "    xf = target.reshape(target.size)", "    df = dcur.reshape(dcur.size)",
            "    ef = dprev.reshape(dprev.size)"]  # fmt: skip
    out += _lane_loops(
        [(f"df[{j * W} + l] = ({H(L, j)} - xf[{j * W} + l]) * scale", 3) for j in range(int(sizes[L]))]
    )
    cur, nxt = "df", "ef"
    for ell in range(L - 1, -1, -1):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for j in range(nout):
            for i in range(nin):
                p = (wo + j * nin + i) * W
                if sq:
                    v = f"v{p}"
                    upd = f"{v} = {cur}[{j * W} + l] * {H(ell, i)}; gf[{p} + l] += {v}; qf[{p} + l] += {v} * {v}"
                    stmts.append((upd, 28))
                else:
                    stmts.append((f"gf[{p} + l] += {cur}[{j * W} + l] * {H(ell, i)}", 14))
            if bo >= 0:
                p = (bo + j) * W
                if sq:
                    dj = f"{cur}[{j * W} + l]"
                    stmts.append((f"gf[{p} + l] += {dj}; qf[{p} + l] += {dj} * {dj}", 28))
                else:
                    stmts.append((f"gf[{p} + l] += {cur}[{j * W} + l]", 14))
        out += _lane_loops(stmts)
        if ell > 0:
            stmts = []
            for i in range(nin):
                s = " + ".join(f"{T(wo + j * nin + i)} * {cur}[{j * W} + l]" for j in range(nout))
                if act == ACT_TANH:
                    s = f"({s}) * (1.0 - {H(ell, i)} * {H(ell, i)})"
                elif act == ACT_RELU:
                    s = f"({s}) if {H(ell, i)} > 0.0 else 0.0"
                stmts.append((f"{nxt}[{i * W} + l] = {s}", 2 * nout + 2))
            out += _lane_loops(stmts)
            cur, nxt = nxt, cur
    if sq:
        return "\n".join(out) + "\n"
    sq_src = _gen_source(sizes, w_off, b_off, act, sq=True).split("@kernel\n", 2)[2]
    return "\n".join(out) + "\n\n\n@kernel\n" + sq_src



# Register blocking of the generated group kernels. Each lane loop below works on a tile of at most _TILE
# accumulators (one zmm register per accumulator and lane of 8 members) and walks the reduction index outside
# the tile, loading each weight and activation once per tile into a local that the tile's statements share.
# Written statement by statement, LLVM kept ~2 loads per multiply-add (weights and activations as memory
# operands, reloaded per output unit and sample), which bound the loops on the load ports. The terms of each
# sum are still taken in the one-sample kernels' order (a = t0; a = a + t1; ...), so the results are the same
# bit for bit.
# Check with inspect_asm that every loop has a zmm body (vmulpd count = vmulsd count): the tiles' sizes
# below are the largest LLVM still vectorised at d = 16, k = 4 (bigger ones fell back to scalar code).
_TILE = 16


def _tiles(n, per):
    """Split range(n) into consecutive tiles of ``per`` indices (the last may be shorter)."""
    return [list(range(a, min(n, a + per))) for a in range(0, n, per)]


def _gen_group_source(sizes, w_off, b_off, act, S=GROUP) -> str:
    """``_forward_s``, ``_backward_s`` and ``_backward_sq_s`` for one architecture and groups of S samples.

    The expressions are ``_gen_source``'s with the samples of a group side by side, register-blocked (see
    ``_TILE``): each gradient entry takes the group's terms in sample order in one statement,
    g + v_0 + v_1 + ... (left to right, as S separate ``+=``), each forward and back-propagated sum its terms
    in unit order: bit-identical sums. Flat compile-time indexing as in ``_gen_source``:
    hs (S, n_layers + 1, max width, BLOCK), ts/ds/es (S, max width, BLOCK).
    """
    L = len(sizes) - 1
    W = BLOCK
    mw = int(max(sizes))
    per = max(1, _TILE // S)

    def H(s, q, j):
        return f"hf[{((s * (L + 1) + q) * mw + j) * W} + l]"

    def U(a, s, j):  # ts, ds, es
        return f"{a}[{(s * mw + j) * W} + l]"

    def T(p):
        return f"tf[{p * W} + l]"

    def refs(*counts):  # loop-vectoriser dependence budget (see _GEN_MAX_REFS) of one tile
        return sum(counts) + 8

    out = ["@kernel", "def _forward_s(th, nl, sizes, w_off, b_off, act, hs):",
           "    tf = th.reshape(th.size)", "    hf = hs.reshape(hs.size)"]  # fmt: skip
    for ell in range(L):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for js in _tiles(nout, per):
            st = [f"a{j}_{s} = {T(bo + j)}" for j in js for s in range(S)] if bo >= 0 else []
            for i in range(nin):
                st += [f"x{s} = {H(s, ell, i)}" for s in range(S)]
                for j in js:
                    st.append(f"w = {T(wo + j * nin + i)}")
                    st += [f"a{j}_{s} = w * x{s}" if (i == 0 and bo < 0) else f"a{j}_{s} = a{j}_{s} + w * x{s}"
                           for s in range(S)]  # fmt: skip
            for j in js:
                for s in range(S):
                    e = f"a{j}_{s}"
                    if ell < L - 1 and act == ACT_TANH:
                        e = f"vtanh({e})"
                    elif ell < L - 1 and act == ACT_RELU:
                        e = f"max({e}, 0.0)"
                    st.append(f"{H(s, ell + 1, j)} = {e}")
            stmts.append(("; ".join(st), refs(S * nin, S * len(js))))
        out += _lane_loops(stmts)
    for sq in (False, True):
        if sq:
            out += ["", "", "@kernel", "def _backward_sq_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, s1, s2, ds, es):",
                    "    scale = 1.0", "    gf = s1.reshape(s1.size)", "    qf = s2.reshape(s2.size)"]  # fmt: skip
        else:
            out += ["", "", "@kernel", "def _backward_s(th, nl, sizes, w_off, b_off, act, hs, ts, auto, scale, g, ds, es):",
                    "    gf = g.reshape(g.size)"]  # fmt: skip
        out += ["    tf = th.reshape(th.size)", "    hf = hs.reshape(hs.size)", "    xf = ts.reshape(ts.size)",
                "    df = ds.reshape(ds.size)", "    ef = es.reshape(es.size)"]  # fmt: skip
        for cond, tgt in (("if auto:", lambda s, j: H(s, 0, j)), ("else:", lambda s, j: U("xf", s, j))):
            out += [f"    {cond}"] + ["    " + ln for ln in _lane_loops(
                [(f"{U('df', s, j)} = ({H(s, L, j)} - {tgt(s, j)}) * scale", 3)
                 for j in range(int(sizes[L])) for s in range(S)])]  # fmt: skip
        cur, nxt = "df", "ef"
        for ell in range(L - 1, -1, -1):
            nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
            stmts = []
            for js in _tiles(nout, 1 if sq else per):  # gradient entries of the tile's output units (sq: one, two sums each; more kept the loop scalar)
                st = [f"e{j}_{s} = {U(cur, s, j)}" for j in js for s in range(S)]
                for i in range(nin):
                    st += [f"x{s} = {H(s, ell, i)}" for s in range(S)]
                    for j in js:
                        p = (wo + j * nin + i) * W
                        if sq:
                            st += [f"v{s} = e{j}_{s} * x{s}" for s in range(S)]
                            st.append(f"gf[{p} + l] = gf[{p} + l] + " + " + ".join(f"v{s}" for s in range(S)))
                            st.append(f"qf[{p} + l] = qf[{p} + l] + " + " + ".join(f"v{s} * v{s}" for s in range(S)))
                        else:
                            terms = " + ".join(f"e{j}_{s} * x{s}" for s in range(S))
                            st.append(f"gf[{p} + l] = gf[{p} + l] + {terms}")
                if bo >= 0:
                    for j in js:
                        p = (bo + j) * W
                        st.append(f"gf[{p} + l] = gf[{p} + l] + " + " + ".join(f"e{j}_{s}" for s in range(S)))
                        if sq:
                            st.append(f"qf[{p} + l] = qf[{p} + l] + "
                                      + " + ".join(f"e{j}_{s} * e{j}_{s}" for s in range(S)))  # fmt: skip
                stmts.append(("; ".join(st), refs(S * len(js), S * nin, (2 + 2 * sq) * nin * len(js))))
            out += _lane_loops(stmts)
            if ell > 0:  # back-propagate: nxt[s, i] = (sum_j W[j, i] cur[s, j]) * act'
                stmts = []
                for is_ in _tiles(nin, per):
                    st = []
                    for j in range(nout):
                        st += [f"e{s} = {U(cur, s, j)}" for s in range(S)]
                        for i in is_:
                            st.append(f"w = {T(wo + j * nin + i)}")
                            st += [f"b{i}_{s} = w * e{s}" if j == 0 else f"b{i}_{s} = b{i}_{s} + w * e{s}"
                                   for s in range(S)]  # fmt: skip
                    for i in is_:
                        for s in range(S):
                            hi, e = H(s, ell, i), f"b{i}_{s}"
                            if act == ACT_TANH:
                                e = f"({e}) * (1.0 - {hi} * {hi})"
                            elif act == ACT_RELU:
                                e = f"({e}) if {hi} > 0.0 else 0.0"
                            st.append(f"{U(nxt, s, i)} = {e}")
                    stmts.append(("; ".join(st), refs(S * nout, 2 * S * len(is_))))
                out += _lane_loops(stmts)
                cur, nxt = nxt, cur
    return "\n".join(out) + "\n"


def _gen_hv_source(sizes, w_off, b_off, act) -> str:
    """``_forward_r`` and ``_backward_r`` (exact H·v) written out for one architecture, with the generic
    kernels' summation orders (bit-identical results) and the flat compile-time indexing of ``_gen_source``."""
    L = len(sizes) - 1
    W = BLOCK
    mw = int(max(sizes))

    def H(q, j):
        return f"hf[{(q * mw + j) * W} + l]"

    def R(q, j):
        return f"rf[{(q * mw + j) * W} + l]"

    def T(p):
        return f"tf[{p * W} + l]"

    def V(p):
        return f"vf[{p * W} + l]"

    flat = ["    tf = th.reshape(th.size)", "    vf = vt.reshape(vt.size)", "    hf = h.reshape(h.size)",
            "    rf = rh.reshape(rh.size)"]  # fmt: skip
    out = ["@kernel", "def _forward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh):"] + flat
    out += _lane_loops([(f"{R(0, i)} = 0.0", 1) for i in range(int(sizes[0]))])
    for ell in range(L):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for j in range(nout):
            terms = [T(bo + j)] if bo >= 0 else []
            terms += [f"{T(wo + j * nin + i)} * {H(ell, i)}" for i in range(nin)]
            z = " + ".join(terms)
            rterms = [V(bo + j)] if bo >= 0 else []
            rterms += [f"({V(wo + j * nin + i)} * {H(ell, i)} + {T(wo + j * nin + i)} * {R(ell, i)})"
                       for i in range(nin)]  # fmt: skip
            rz = " + ".join(rterms)
            if ell < L - 1 and act == ACT_TANH:
                stmt = f"{H(ell + 1, j)} = vtanh({z}); {R(ell + 1, j)} = ({rz}) * (1.0 - {H(ell + 1, j)} * {H(ell + 1, j)})"
            elif ell < L - 1 and act == ACT_RELU:
                stmt = f"{H(ell + 1, j)} = max({z}, 0.0); {R(ell + 1, j)} = ({rz}) if {H(ell + 1, j)} > 0.0 else 0.0"
            else:
                stmt = f"{H(ell + 1, j)} = {z}; {R(ell + 1, j)} = {rz}"
            stmts.append((stmt, 3 * nin + 12))
        out += _lane_loops(stmts)
    out += ["", "", "@kernel",
            "def _backward_r(th, vt, nl, sizes, w_off, b_off, act, h, rh, target, scale, hv, dcur, dprev, rcur, rprev):"]  # fmt: skip
    out += flat + ["    gf = hv.reshape(hv.size)", "    xf = target.reshape(target.size)",
                   "    df = dcur.reshape(dcur.size)", "    ef = dprev.reshape(dprev.size)",
                   "    sf = rcur.reshape(rcur.size)", "    qf = rprev.reshape(rprev.size)"]  # fmt: skip
    out += _lane_loops(
        [(f"df[{j * W} + l] = ({H(L, j)} - xf[{j * W} + l]) * scale; sf[{j * W} + l] = {R(L, j)} * scale", 6)
         for j in range(int(sizes[L]))]
    )  # fmt: skip
    cur, nxt, rcur, rnxt = "df", "ef", "sf", "qf"
    for ell in range(L - 1, -1, -1):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for j in range(nout):
            dj, rj = f"{cur}[{j * W} + l]", f"{rcur}[{j * W} + l]"
            for i in range(nin):
                p = (wo + j * nin + i) * W
                stmts.append((f"gf[{p} + l] += {rj} * {H(ell, i)} + {dj} * {R(ell, i)}", 20))
            if bo >= 0:
                stmts.append((f"gf[{(bo + j) * W} + l] += {rj}", 14))
        out += _lane_loops(stmts)
        if ell > 0:
            stmts = []
            for i in range(nin):
                u = " + ".join(f"{T(wo + j * nin + i)} * {cur}[{j * W} + l]" for j in range(nout))
                ru = " + ".join(f"({V(wo + j * nin + i)} * {cur}[{j * W} + l] + {T(wo + j * nin + i)} * "
                                f"{rcur}[{j * W} + l])" for j in range(nout))  # fmt: skip
                h_, r_ = H(ell, i), R(ell, i)
                if act == ACT_TANH:
                    stmt = (f"u{i} = {u}; ru{i} = {ru}; a{i} = 1.0 - {h_} * {h_}; "
                            f"{rnxt}[{i * W} + l] = a{i} * ru{i} - 2.0 * {h_} * {r_} * u{i}; "
                            f"{nxt}[{i * W} + l] = u{i} * a{i}")  # fmt: skip
                elif act == ACT_RELU:
                    stmt = (f"{nxt}[{i * W} + l] = ({u}) if {h_} > 0.0 else 0.0; "
                            f"{rnxt}[{i * W} + l] = ({ru}) if {h_} > 0.0 else 0.0")  # fmt: skip
                else:
                    stmt = f"{nxt}[{i * W} + l] = {u}; {rnxt}[{i * W} + l] = {ru}"
                stmts.append((stmt, 4 * nout + 6))
            out += _lane_loops(stmts)
            cur, nxt, rcur, rnxt = nxt, cur, rnxt, rcur
    return "\n".join(out) + "\n"


def _gen_hv_group_source(sizes, w_off, b_off, act, S=GROUP) -> str:
    """``_forward_r_s`` and ``_backward_r_s``: ``_gen_hv_source``'s expressions for a group of S samples,
    register-blocked as in ``_gen_group_source`` (each H·v entry takes the group's terms in sample order,
    every other sum its terms in unit order: bit-identical to the one-sample kernels). Flat compile-time
    indexing: hs, rhs (S, n_layers + 1, max width, BLOCK); ts, ds, es, rds, res (S, max width, BLOCK)."""
    L = len(sizes) - 1
    W = BLOCK
    mw = int(max(sizes))
    per = max(1, _TILE // (2 * S))  # H·v entry tiles: δ and R{δ} held per unit and sample

    def H(s, q, j):
        return f"hf[{((s * (L + 1) + q) * mw + j) * W} + l]"

    def R(s, q, j):
        return f"rf[{((s * (L + 1) + q) * mw + j) * W} + l]"

    def U(a, s, j):
        return f"{a}[{(s * mw + j) * W} + l]"

    def T(p):
        return f"tf[{p * W} + l]"

    def V(p):
        return f"vf[{p * W} + l]"

    def refs(*counts):
        return sum(counts) + 8

    flat = ["    tf = th.reshape(th.size)", "    vf = vt.reshape(vt.size)", "    hf = hs.reshape(hs.size)",
            "    rf = rhs.reshape(rhs.size)"]  # fmt: skip
    out = ["@kernel", "def _forward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs):"] + flat
    out += ["    _forward_s(th, nl, sizes, w_off, b_off, act, hs)"]  # the values, as in _forward_r
    out += _lane_loops([(f"{R(s, 0, i)} = 0.0", 1) for s in range(S) for i in range(int(sizes[0]))])
    for ell in range(L):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for js in _tiles(nout, max(1, _TILE // S)):  # one accumulator (R{z}) per unit and sample: 42.8 -> 37.6 ns
            # per member-sample at d = 16, k = 4 against the two-accumulator tiles of ``per`` (1 thread, CPU)
            st = [f"r{j}_{s} = {V(bo + j)}" for j in js for s in range(S)] if bo >= 0 else []
            for i in range(nin):
                st += [f"x{s} = {H(s, ell, i)}; q{s} = {R(s, ell, i)}" for s in range(S)]
                for j in js:
                    p = wo + j * nin + i
                    st.append(f"w = {T(p)}; v = {V(p)}")
                    st += [f"r{j}_{s} = (v * x{s} + w * q{s})" if (i == 0 and bo < 0)
                           else f"r{j}_{s} = r{j}_{s} + (v * x{s} + w * q{s})" for s in range(S)]  # fmt: skip
            for j in js:
                for s in range(S):
                    hn = H(s, ell + 1, j)
                    if ell < L - 1 and act == ACT_TANH:
                        st.append(f"{R(s, ell + 1, j)} = (r{j}_{s}) * (1.0 - {hn} * {hn})")
                    elif ell < L - 1 and act == ACT_RELU:
                        st.append(f"{R(s, ell + 1, j)} = (r{j}_{s}) if {hn} > 0.0 else 0.0")
                    else:
                        st.append(f"{R(s, ell + 1, j)} = r{j}_{s}")
            stmts.append(("; ".join(st), refs(2 * S * nin, 2 * S * len(js))))
        out += _lane_loops(stmts)
    out += ["", "", "@kernel",
            "def _backward_r_s(th, vt, nl, sizes, w_off, b_off, act, hs, rhs, ts, scale, hv, ds, es, rds, res):"]  # fmt: skip
    out += flat + ["    gf = hv.reshape(hv.size)", "    xf = ts.reshape(ts.size)", "    df = ds.reshape(ds.size)",
                   "    ef = es.reshape(es.size)", "    sf = rds.reshape(rds.size)", "    qf = res.reshape(res.size)"]  # fmt: skip
    out += _lane_loops(
        [(f"{U('df', s, j)} = ({H(s, L, j)} - {U('xf', s, j)}) * scale; {U('sf', s, j)} = {R(s, L, j)} * scale", 6)
         for j in range(int(sizes[L])) for s in range(S)]
    )  # fmt: skip
    cur, nxt, rcur, rnxt = "df", "ef", "sf", "qf"
    for ell in range(L - 1, -1, -1):
        nin, nout, wo, bo = int(sizes[ell]), int(sizes[ell + 1]), int(w_off[ell]), int(b_off[ell])
        stmts = []
        for js in _tiles(nout, per):  # H·v entries of the tile's output units: R{δ} h_inᵀ + δ R{h_in}ᵀ
            st = [f"e{j}_{s} = {U(cur, s, j)}; f{j}_{s} = {U(rcur, s, j)}" for j in js for s in range(S)]
            for i in range(nin):
                st += [f"x{s} = {H(s, ell, i)}; q{s} = {R(s, ell, i)}" for s in range(S)]
                for j in js:
                    p = (wo + j * nin + i) * W
                    terms = " + ".join(f"(f{j}_{s} * x{s} + e{j}_{s} * q{s})" for s in range(S))
                    st.append(f"gf[{p} + l] = gf[{p} + l] + {terms}")
            if bo >= 0:
                for j in js:
                    p = (bo + j) * W
                    st.append(f"gf[{p} + l] = gf[{p} + l] + " + " + ".join(f"f{j}_{s}" for s in range(S)))
            stmts.append(("; ".join(st), refs(2 * S * len(js), 2 * S * nin, 2 * nin * len(js))))
        out += _lane_loops(stmts)
        if ell > 0:  # back-propagate δ and R{δ}
            stmts = []
            # two units per loop: δ and R{δ} of each output unit loaded once for both (one unit: 48 -> 39 ns
            # per member-sample at d = 16, k = 4; needs _numba's merge threshold, else it stayed scalar)
            for is_ in _tiles(nin, 2):
                st = []
                for j in range(nout):
                    st += [f"e{s} = {U(cur, s, j)}; f{s} = {U(rcur, s, j)}" for s in range(S)]
                    for i in is_:
                        p = wo + j * nin + i
                        st.append(f"w = {T(p)}; v = {V(p)}")
                        for s in range(S):
                            if j == 0:
                                st.append(f"u{i}_{s} = w * e{s}; ru{i}_{s} = (v * e{s} + w * f{s})")
                            else:
                                st.append(f"u{i}_{s} = u{i}_{s} + w * e{s}; ru{i}_{s} = ru{i}_{s} + (v * e{s} + w * f{s})")
                for i in is_:
                    for s in range(S):
                        h_, r_, u, ru = H(s, ell, i), R(s, ell, i), f"u{i}_{s}", f"ru{i}_{s}"
                        if act == ACT_TANH:
                            st.append(f"a = 1.0 - {h_} * {h_}; {U(rnxt, s, i)} = a * {ru} - 2.0 * {h_} * {r_} * {u}; "
                                      f"{U(nxt, s, i)} = {u} * a")  # fmt: skip
                        elif act == ACT_RELU:
                            st.append(f"{U(nxt, s, i)} = ({u}) if {h_} > 0.0 else 0.0; "
                                      f"{U(rnxt, s, i)} = ({ru}) if {h_} > 0.0 else 0.0")  # fmt: skip
                        else:
                            st.append(f"{U(nxt, s, i)} = {u}; {U(rnxt, s, i)} = {ru}")
                stmts.append(("; ".join(st), refs(2 * S * nout, 4 * S * len(is_))))
            out += _lane_loops(stmts)
            cur, nxt, rcur, rnxt = nxt, cur, rnxt, rcur
    return "\n".join(out) + "\n"


def _gen_gather_source(sizes, w_off, b_off, act) -> str:
    """``_gather_sample`` with the widths written out: each lane's row copied value by value with compile-time
    offsets (no inner loop over units, whose set-up the generic kernel pays per lane and row). A copy: the same
    values. Measured (bench_ensemble --parts, d = 8, 1 thread): 3.5 -> 2.2 ns per member and sample."""
    d, dout = int(sizes[0]), int(sizes[-1])
    out = ["@kernel", "def _gather_sample(X, T, auto, ids, d, dout, nl, h0, tg):", "    for l in range(nl):",
           "        x = X[ids[l]]"]  # fmt: skip
    out += [f"        h0[{i}, l] = x[{i}]" for i in range(d)]
    out += ["        if not auto:", "            t = T[ids[l]]"] + [f"            tg[{j}, l] = t[{j}]" for j in range(dout)]
    return "\n".join(out) + "\n"


_SPECIALISED: dict = {}


def _kernel_dir():
    import os
    from pathlib import Path

    return Path(os.environ.get("FPKIT_KERNEL_DIR", Path.home() / ".cache" / "fpkit" / "kernels"))


def _module_source(key) -> str:
    import hashlib
    import inspect
    import sys

    this = sys.modules[__name__]
    names = [n for n in dir(this) if n.isupper() or n in ("vtanh", "_next_u64", "_below", "_uniform",
                                                           "_normal_pair", "_online_sample", "_draw_indices",
                                                           "_broadcast_samples", "_zeros64")]  # fmt: skip
    # numba's disk cache of the generated file sees only that file: the imported kernels (and .random's,
    # which they call) and the constants are compiled into it, so their source and values go into its name
    from . import random as _random

    imported = [getattr(this, n) for n in names]
    parts = [inspect.getsource(_random)]
    parts += [inspect.getsource(v.py_func) if hasattr(v, "py_func") else repr(v) for v in imported]
    stamp = hashlib.sha1("".join(parts).encode()).hexdigest()[:16]
    head = (
        f'"""Generated by fpkit.solvers.autoencoder.specialised for sizes={list(key[0])}, act={key[3]}: '
        'do not edit."""\n'
        f"# imported kernels and constants: {stamp}\n"
        "import numpy as np\n"
        "from fpkit.solvers._numba import kernel, prange\n"
        f"from fpkit.solvers.autoencoder import {', '.join(names)}\n\n\n"
    )
    drivers = "\n\n".join(inspect.getsource(getattr(this, n).py_func) for n in _DRIVERS)
    return (head + _gen_source(*key) + "\n\n" + _gen_group_source(*key) + "\n\n" + _gen_gather_source(*key)
            + "\n\n" + _gen_hv_source(*key)
            + "\n\n" + _gen_hv_group_source(*key) + "\n\n" + drivers)


def _key(sizes, w_off, b_off, act):
    return (
        tuple(int(v) for v in sizes),
        tuple(int(v) for v in w_off),
        tuple(int(v) for v in b_off),
        int(act),
    )


def specialised_exists(sizes, w_off, b_off, act) -> bool:
    """Whether the specialised kernels for this architecture were generated (and so compiled) before."""
    import hashlib

    key = _key(sizes, w_off, b_off, act)
    if key in _SPECIALISED:
        return True
    digest = hashlib.sha1(_module_source(key).encode()).hexdigest()[:16]
    return (_kernel_dir() / f"ae_{digest}.py").exists()


def specialised(sizes, w_off, b_off, act):
    """Kernels (an object with train_steps, data_gradient, data_gradient_serial) for one architecture.

    The generated module is written once to ``$FPKIT_KERNEL_DIR`` (default ``~/.cache/fpkit/kernels``)
    under a name hashing its source, so numba's disk cache applies: the first use of a shape compiles
    (seconds to tens of seconds), later processes load it. Networks with more than ``_GEN_MAX_PARAMS``
    parameters, or an unwritable cache folder, use the generic kernels of this module.
    """
    import hashlib
    import importlib.util
    import os
    import sys
    import tempfile

    key = _key(sizes, w_off, b_off, act)
    if key in _SPECIALISED:
        return _SPECIALISED[key]
    this = sys.modules[__name__]
    P = max(key[1][-1] + key[0][-2] * key[0][-1], max(key[2]) + key[0][-1])
    if P > _GEN_MAX_PARAMS:
        _SPECIALISED[key] = this
        return this
    src = _module_source(key)
    digest = hashlib.sha1(src.encode()).hexdigest()[:16]
    folder = _kernel_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"ae_{digest}.py"
        if not path.exists() or path.read_text() != src:
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(src)
            os.replace(tmp, path)
    except OSError:
        _SPECIALISED[key] = this
        return this
    name = f"fpkit_generated_ae_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    _SPECIALISED[key] = mod
    return mod
