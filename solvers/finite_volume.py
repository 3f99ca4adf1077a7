"""Finite-volume Fokker-Planck operators on uniform cell-centred grids.

Along each axis the flux through the face ``f`` between cells ``f-1`` and ``f`` is written

    J_f = alpha[f] * p[f-1] - beta[f] * p[f]          (positive in the +axis direction)

and dp_i/dt = -(J_{i+1} - J_i) / h summed over axes. Face arrays have the grid's shape with ``n + 1`` entries
along their axis. Both schemes fill ``alpha`` and ``beta``:

* exponential fitting (Scharfetter-Gummel / Chang-Cooper): with u = D p and Pe = ∫ A/D dx between the two
  centres, J = [B(-Pe) u_{f-1} - B(Pe) u_f] / dist, B(z) = z / (e^z - 1). Zero flux gives
  u_f / u_{f-1} = e^{Pe}, the exact stationary ratio, so a gradient drift's Gibbs state is reproduced exactly;
  alpha, beta >= 0 makes implicit steps M-matrices (positive, mass-conserving).
* central: J = A_face (p_{f-1} + p_f)/2 - (u_f - u_{f-1}) / dist, oscillating once |Pe| > 2 (comparison only).

Boundary faces: reflecting (alpha = beta = 0), absorbing (p = 0 on the wall, half a cell away), periodic
(face 0 and face n are the same face, joining the last cell to the first).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._numba import kernel, prange


@kernel
def bernoulli(z):
    """B(z) = z / (e^z - 1), continuous at 0 and free of overflow for large |z|."""
    if abs(z) < 1e-10:
        return 1.0 - 0.5 * z
    if z > 700.0:
        return z * np.exp(-z)
    return z / np.expm1(z)


@kernel
def bernoulli_pair(z):
    """(B(z), B(−z)) from one exponential: B(−z) = z + B(z). The sum is taken for |z| only, so that it adds
    two positive numbers (for z < 0, B(z) = |z| + B(|z|)), never cancels."""
    b = bernoulli(abs(z))
    if z >= 0.0:
        return b, z + b
    return b - z, b


@kernel
def exponential_fitting_faces(d_left, d_right, peclet, dist, alpha, beta):
    """Scharfetter-Gummel face coefficients from the diffusions either side, Pe = ∫A/D and the distance."""
    for k in range(peclet.size):
        b_plus, b_minus = bernoulli_pair(peclet.flat[k])
        alpha.flat[k] = d_left.flat[k] * b_minus / dist.flat[k]
        beta.flat[k] = d_right.flat[k] * b_plus / dist.flat[k]


BC_CODES = {"reflecting": 0, "absorbing": 1, "periodic": 2}


@kernel
def exponential_faces_1d(a_q, d_q, d_cell, dist, weights, bc, alpha, beta):
    """Every face of a 1-D grid at once (the time-dependent solve builds them at each step): Pe = dist·Σ_k
    w_k A/D over the Gauss nodes of each face interval, the Scharfetter-Gummel coefficients from the cells
    either side (face 0 joins the last cell to the first, the periodic wrap), the upwind flux where D ≤ 0 on a
    node or Pe is not finite (``degenerate``), then the walls of ``bc`` (``BC_CODES``).

    a_q, d_q : (n + 1, q) drift and diffusion at the nodes; d_cell : (n,) diffusion at the centres; dist :
    (n + 1,) distances between the centres; weights : (q,). Faces on a reflecting wall are not checked (their
    nodes lie outside the domain). Returns the index of the first checked face with a negative or non-finite
    D or a non-finite A, or -1 (alpha and beta are then filled)."""
    n = d_cell.size
    q = weights.size
    for f in range(n + 1):
        used = not (bc == 0 and (f == 0 or f == n))
        ratio = 0.0
        a_face = 0.0
        degenerate = False
        for k in range(q):
            a = a_q[f, k]
            d = d_q[f, k]
            if used and (d < 0.0 or not np.isfinite(a) or not np.isfinite(d)):
                return f
            if d <= 0.0:
                degenerate = True
            ratio += (a / d) * weights[k]  # D = 0: inf or NaN (error_model numpy), the face is degenerate
            a_face += a * weights[k]
        pe = ratio * dist[f]
        d_left = d_cell[f - 1] if f > 0 else d_cell[n - 1]
        d_right = d_cell[f] if f < n else d_cell[0]
        if used and (degenerate or not np.isfinite(pe)):
            alpha[f] = max(a_face, 0.0)
            beta[f] = max(-a_face, 0.0)
        else:
            if not used:
                pe = 0.0
            b_plus, b_minus = bernoulli_pair(pe)
            alpha[f] = d_left * b_minus / dist[f]
            beta[f] = d_right * b_plus / dist[f]
    if bc == 0:
        alpha[0] = beta[0] = alpha[n] = beta[n] = 0.0
    elif bc == 1:
        alpha[0] = 0.0  # nothing enters from the wall
        beta[n] = 0.0
    return -1


@kernel
def central_faces(d_left, d_right, a_face, dist, alpha, beta):
    """Central-difference face coefficients: averaged advection, two-point diffusion."""
    for k in range(a_face.size):
        alpha.flat[k] = 0.5 * a_face.flat[k] + d_left.flat[k] / dist.flat[k]
        beta.flat[k] = -0.5 * a_face.flat[k] + d_right.flat[k] / dist.flat[k]


@kernel
def rhs_1d(p, alpha, beta, inv_h, periodic, out):
    """out = dp/dt for a 1-D grid."""
    n = p.size
    left = p[n - 1] if periodic else 0.0
    for i in range(n):
        right = p[i + 1] if i + 1 < n else (p[0] if periodic else 0.0)
        j_left = alpha[i] * left - beta[i] * p[i]
        j_right = alpha[i + 1] * p[i] - beta[i + 1] * right
        out[i] = (j_left - j_right) * inv_h
        left = p[i]


@kernel
def stencil_1d(alpha, beta, c, periodic, lower, centre, upper):
    """Fold the face coefficients and c = dt/h into a 3-point stencil: p_new = l p[i-1] + m p[i] + u p[i+1]."""
    n = centre.size
    for i in range(n):
        lower[i] = c * alpha[i]
        centre[i] = 1.0 - c * (beta[i] + alpha[i + 1])
        upper[i] = c * beta[i + 1]
    if not periodic:  # nothing comes from outside (reflecting: alpha = beta = 0 there anyway)
        lower[0] = 0.0
        upper[n - 1] = 0.0


# The 1-D sweep is bound by L1/L2 load traffic (six loads per cell). Two measures, both leaving every cell's
# expression and its evaluation order unchanged, so results are bit-identical to the plain sweep:
# * 64-byte alignment of the cell where each vectorised loop starts: AVX-512 loads and stores of the stencil,
#   of p[i] and of the result then do not split cache lines;
# * temporal blocking (overlapped tiling): a tile of _TILE cells plus _HALO cells either side is advanced up to
#   _DEPTH steps in two small buffers (with its stencil slices ~22 KB, within L1) before the next tile, instead of
#   streaming p, its buffer and the three stencil arrays through L2 (or RAM) once per step. Each step sweeps the
#   whole buffer less 8 cells per side (so all sweeps start aligned); values made invalid by the missing
#   neighbours creep in by one cell per step from the edges and never reach the tile's own cells, as
#   _HALO - 8 >= _DEPTH.
# Measured on the 2-core EPYC VM (AVX-512), N = 4096, 5000 steps: 0.38-0.42 ns/cell plain, 0.30-0.33 blocked;
# N = 2^20, 400 steps: 1.07 -> 0.56 (RAM traffic once per _DEPTH steps). The plain sweep stays for short runs.
_TILE = 512
_DEPTH = 16
_HALO = 24


@kernel
def _aligned_empty(n):
    """``n`` uninitialised doubles whose element 0 sits on a 64-byte boundary."""
    raw = np.empty(n + 8)
    shift = (-(raw.ctypes.data // 8)) % 8
    return raw[shift:shift + n]


@kernel
def _aligned_zeros(n):
    """``n`` zeros whose element 0 sits on a 64-byte boundary."""
    raw = np.zeros(n + 8)
    shift = (-(raw.ctypes.data // 8)) % 8
    return raw[shift:shift + n]


@kernel
def _sweep_1d(src, dst, lower, centre, upper, count):
    """dst[i] = lower[i] src[i - 1] + centre[i] src[i] + upper[i] src[i + 1] for 1 <= i <= count.

    Callers pass views; the constant start lets LLVM see non-negative indices (no wraparound checks), which it
    needs to vectorise the loop.
    """
    for i in range(1, count + 1):
        dst[i] = lower[i] * src[i - 1] + centre[i] * src[i] + upper[i] * src[i + 1]


@kernel
def _wrap_halo(ext, n, halo):
    """Fill the ``halo`` cells either side of ext[halo:halo + n] periodically (the stencil zeroes the couplings
    across non-periodic walls, so wrapped values there are multiplied by 0, as in the plain sweep)."""
    for k in range(halo):
        ext[k] = ext[halo + (k - halo) % n]
        ext[halo + n + k] = ext[halo + k % n]


@kernel
def _explicit_euler_1d_blocked(p, alpha, beta, c, periodic, n_steps):
    """Temporally blocked forward-Euler steps in place on ``p``; ext index e holds cell (e - _HALO) mod n."""
    n = p.size
    m = n + 2 * _HALO
    lo_e = _aligned_empty(m)
    ce_e = _aligned_empty(m)
    up_e = _aligned_empty(m)
    stencil_1d(alpha, beta, c, periodic, lo_e[_HALO:_HALO + n], ce_e[_HALO:_HALO + n], up_e[_HALO:_HALO + n])
    cur = _aligned_empty(m)
    cur[_HALO:_HALO + n] = p
    for ext in (lo_e, ce_e, up_e, cur):
        _wrap_halo(ext, n, _HALO)
    nxt = _aligned_empty(m)  # every cell is written before it is read
    # views starting one cell before the first swept one (local cell 8), as _sweep_1d expects; zeros, so that
    # the never-written edge cells hold finite values
    buf_a = _aligned_zeros(_TILE + 2 * _HALO)[7:]
    buf_b = _aligned_zeros(_TILE + 2 * _HALO)[7:]
    own = _HALO - 8  # the tile's first own cell, counted from local cell 8
    done = 0
    while done < n_steps:
        depth = min(_DEPTH, n_steps - done)
        for g0 in range(0, n, _TILE):  # local cell j <-> ext index g0 + j; own cells: j in [_HALO, _HALO + w)
            w = min(_TILE, n - g0)
            count = w + 2 * _HALO - 16
            lo_t = lo_e[g0 + 7:]
            ce_t = ce_e[g0 + 7:]
            up_t = up_e[g0 + 7:]
            cur_t = cur[g0 + 7:]
            nxt_t = nxt[g0 + 7:]
            if depth == 1:
                _sweep_1d(cur_t[own:], nxt_t[own:], lo_t[own:], ce_t[own:], up_t[own:], w)
                continue
            _sweep_1d(cur_t, buf_a, lo_t, ce_t, up_t, count)
            src, dst = buf_a, buf_b
            for _ in range(2, depth):
                _sweep_1d(src, dst, lo_t, ce_t, up_t, count)
                src, dst = dst, src
            _sweep_1d(src[own:], nxt_t[own:], lo_t[own:], ce_t[own:], up_t[own:], w)
        _wrap_halo(nxt, n, _HALO)
        cur, nxt = nxt, cur
        done += depth
    p[:] = cur[_HALO:_HALO + n]


@kernel
def explicit_euler_1d(p, alpha, beta, inv_h, periodic, dt, n_steps, work):
    """``n_steps`` forward-Euler steps in place on ``p`` (``work`` is a buffer of the same size)."""
    n = p.size
    if n >= 2 * _TILE and n_steps >= 2 * _DEPTH:  # below, set-up and halo work outweigh the gain
        _explicit_euler_1d_blocked(p, alpha, beta, dt * inv_h, periodic, n_steps)
        return
    lower = np.empty(n)
    centre = np.empty(n)
    upper = np.empty(n)
    stencil_1d(alpha, beta, dt * inv_h, periodic, lower, centre, upper)
    src, dst = p, work
    for _ in range(n_steps):
        # interior cells: a branch-free loop that LLVM vectorises
        for i in range(1, n - 1):
            dst[i] = lower[i] * src[i - 1] + centre[i] * src[i] + upper[i] * src[i + 1]
        dst[0] = lower[0] * src[n - 1] + centre[0] * src[0] + upper[0] * src[1]
        dst[n - 1] = lower[n - 1] * src[n - 2] + centre[n - 1] * src[n - 1] + upper[n - 1] * src[0]
        src, dst = dst, src  # swap buffers instead of copying back
    if n_steps % 2 == 1:
        p[:] = src


@kernel
def _row_2d(out, row, row_m, row_p, ax0, ax1, bx0, bx1, ay, by, cx, cy, wm, wp, periodic_y):
    """One row of the 2-D update; ``wm``/``wp`` switch off the x-neighbours outside non-periodic walls."""
    ny = row.size
    for j in range(1, ny - 1):
        pc = row[j]
        fx = ax0[j] * wm * row_m[j] - (bx0[j] + ax1[j]) * pc + bx1[j] * wp * row_p[j]
        fy = ay[j] * row[j - 1] - (by[j] + ay[j + 1]) * pc + by[j + 1] * row[j + 1]
        out[j] = pc + cx * fx + cy * fy
    wy = 1.0 if periodic_y else 0.0
    for j in (0, ny - 1):
        jm = j - 1 if j > 0 else ny - 1
        jp = j + 1 if j + 1 < ny else 0
        lo = 1.0 if j > 0 else wy
        hi = 1.0 if j + 1 < ny else wy
        pc = row[j]
        fx = ax0[j] * wm * row_m[j] - (bx0[j] + ax1[j]) * pc + bx1[j] * wp * row_p[j]
        fy = ay[j] * lo * row[jm] - (by[j] + ay[j + 1]) * pc + by[j + 1] * hi * row[jp]
        out[j] = pc + cx * fx + cy * fy


BAND_ROWS = 128  # output rows of one task of the temporally blocked 2-D step
TIME_BLOCK = 12  # steps one pass over memory makes (the coefficient and density reads are shared by them)


@kernel
def _band_2d(src, dst, ring, ax, bx, ay, by, cx, cy, periodic_x, periodic_y, r0, r1, k):
    """``k`` forward-Euler steps of output rows [r0, r1) from ``src`` (step 0) into ``dst`` (step k).

    A wavefront: when step-0 row v is reached, step s computes its row v - s (s = 1 .. k), whose three
    step-(s - 1) neighbours are then all available; each step keeps its last three rows in ``ring[s - 1]``
    (3, ny), so the rows of the band stream through the cache once for all k steps. Rows within k of the band
    are recomputed by the neighbouring band (overlapped tiling: bands are independent). Every row gets exactly
    the operations of the plain step, in the same order, so the result is the same to the last bit.
    """
    nx = src.shape[0]
    for v in range(r0 - k, r1 + k):
        for s in range(1, k + 1):
            i = v - s
            # step s is needed on rows [r0 - k + s, r1 + k - s); without periodic wrap, only inside the grid
            if i < r0 - k + s or i >= r1 + k - s:
                continue
            if not periodic_x and (i < 0 or i >= nx):
                continue
            ii = i % nx  # the row of the grid (periodic images wrap)
            im = i - 1
            ip = i + 1
            wm = 1.0 if (ii > 0 or periodic_x) else 0.0
            wp = 1.0 if (ii + 1 < nx or periodic_x) else 0.0
            if s == 1:
                row = src[ii]
                row_m = src[(im % nx) if wm != 0.0 else ii]
                row_p = src[(ip % nx) if wp != 0.0 else ii]
            else:
                prev = ring[s - 2]
                row = prev[i % 3]
                row_m = prev[im % 3] if wm != 0.0 else row
                row_p = prev[ip % 3] if wp != 0.0 else row
            out = dst[ii] if s == k else ring[s - 1][i % 3]
            _row_2d(out, row, row_m, row_p, ax[ii], ax[ii + 1], bx[ii], bx[ii + 1], ay[ii], by[ii], cx, cy,
                    wm, wp, periodic_y)  # fmt: skip


@kernel(parallel=True)
def _explicit_euler_2d_blocked(src, dst, ax, bx, ay, by, cx, cy, periodic_x, periodic_y, k):
    """``k`` steps from ``src`` into ``dst`` (distinct arrays), bands of BAND_ROWS rows in parallel."""
    nx, ny = src.shape
    n_bands = (nx + BAND_ROWS - 1) // BAND_ROWS
    for b in prange(n_bands):
        r0 = b * BAND_ROWS
        r1 = min(r0 + BAND_ROWS, nx)
        ring = np.empty((max(k - 1, 1), 3, ny))
        _band_2d(src, dst, ring, ax, bx, ay, by, cx, cy, periodic_x, periodic_y, r0, r1, k)


def explicit_euler_2d(p, ax, bx, ay, by, inv_hx, inv_hy, periodic_x, periodic_y, dt, n_steps, work):
    """``n_steps`` forward-Euler steps in place on a 2-D ``p``, TIME_BLOCK steps per pass over memory
    (temporal blocking, ``_band_2d``); bit-identical to ``explicit_euler_2d_plain``."""
    nx, ny = p.shape
    if nx < 2 * TIME_BLOCK or n_steps < 2:
        explicit_euler_2d_plain(p, ax, bx, ay, by, inv_hx, inv_hy, periodic_x, periodic_y, dt, n_steps, work)
        return
    cx = dt * inv_hx
    cy = dt * inv_hy
    src, dst = p, work
    done = 0
    while done < n_steps:
        k = min(TIME_BLOCK, n_steps - done)
        _explicit_euler_2d_blocked(src, dst, ax, bx, ay, by, cx, cy, periodic_x, periodic_y, k)
        src, dst = dst, src
        done += k
    if src is not p:
        p[:, :] = src


@kernel(parallel=True)
def explicit_euler_2d_plain(p, ax, bx, ay, by, inv_hx, inv_hy, periodic_x, periodic_y, dt, n_steps, work):
    """``n_steps`` forward-Euler steps in place on a 2-D ``p``; rows are independent within a step."""
    nx, ny = p.shape
    cx = dt * inv_hx
    cy = dt * inv_hy
    src, dst = p, work
    for _ in range(n_steps):
        for i in prange(nx):
            im = i - 1 if i > 0 else nx - 1
            ip = i + 1 if i + 1 < nx else 0
            wm = 1.0 if (i > 0 or periodic_x) else 0.0
            wp = 1.0 if (i + 1 < nx or periodic_x) else 0.0
            _row_2d(dst[i], src[i], src[im], src[ip], ax[i], ax[i + 1], bx[i], bx[i + 1], ay[i], by[i], cx, cy,
                    wm, wp, periodic_y)
        src, dst = dst, src
    if n_steps % 2 == 1:
        p[:, :] = src


def generator_matrix(shape, faces, inv_h, periodic, cross=None) -> sp.csr_matrix:
    """Sparse L with dp/dt = L p for C-ordered flattened p.

    ``faces`` is a list of (alpha, beta) per axis; ``cross`` an optional list of sparse matrices to add
    (mixed-derivative terms). Columns of L sum to zero where no flux leaves the domain (mass conservation).
    """
    n_total = int(np.prod(shape))
    index = np.arange(n_total).reshape(shape)
    rows, cols, vals = [], [], []
    for axis, (alpha, beta) in enumerate(faces):
        n = shape[axis]
        take = lambda a, sl: np.take(a, sl, axis=axis)  # noqa: E731
        a_lo, b_lo = take(alpha, np.arange(n)), take(beta, np.arange(n))  # face below each cell
        a_hi, b_hi = take(alpha, np.arange(1, n + 1)), take(beta, np.arange(1, n + 1))  # face above
        c = inv_h[axis]
        rows.append(index.ravel())
        cols.append(index.ravel())
        vals.append((-(b_lo + a_hi) * c).ravel())
        lower = np.roll(index, 1, axis=axis)  # neighbour below (wrapped)
        upper = np.roll(index, -1, axis=axis)
        keep_lo = np.ones(shape, dtype=bool)
        keep_hi = np.ones(shape, dtype=bool)
        if not periodic[axis]:
            idx = [slice(None)] * len(shape)
            idx[axis] = 0
            keep_lo[tuple(idx)] = False
            idx[axis] = n - 1
            keep_hi[tuple(idx)] = False
        rows += [index[keep_lo], index[keep_hi]]
        cols += [lower[keep_lo], upper[keep_hi]]
        vals += [(a_lo * c)[keep_lo], (b_hi * c)[keep_hi]]
    L = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n_total, n_total)
    )
    for extra in cross or ():
        L = L + extra
    L.sum_duplicates()
    return L.tocsr()


def mixed_derivative_matrix(shape, u_coef, inv_h, periodic) -> sp.csr_matrix:
    """Sparse operator for 2 ∂x∂y(Dxy p) in 2-D, written as face fluxes so it conserves mass.

    The x-face flux gets -∂y(Dxy p) and the y-face flux -∂x(Dxy p), each by central differences over the
    four cells next to the face; walls (non-periodic boundary faces) carry no flux. Not an M-matrix: with a
    strong off-diagonal D the solution can dip below zero by round-off-sized amounts.
    """
    rows, cols, vals = _mixed_pattern(tuple(shape), tuple(periodic))
    u = np.asarray(u_coef, dtype=float).ravel()
    n = int(np.prod(shape))
    w = np.where(vals[:, 1] == 0, inv_h[0], inv_h[1])  # 1/h of the axis the face is on
    w_other = np.where(vals[:, 1] == 0, inv_h[1], inv_h[0])
    data = -0.25 * w * w_other * vals[:, 0] * u[cols]
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


_PATTERNS: dict = {}


def _mixed_pattern(shape, periodic):
    """Index pattern of the mixed-derivative operator: rows, columns and (sign, face axis) per entry."""
    key = (shape, periodic)
    if key in _PATTERNS:
        return _PATTERNS[key]
    idx = np.arange(int(np.prod(shape))).reshape(shape)
    rows, cols, vals = [], [], []
    for axis in (0, 1):
        other = 1 - axis
        n, m = shape[axis], shape[other]
        k = np.arange(0 if periodic[axis] else 1, n)
        km = (k - 1) % n
        l = np.arange(m)
        K, Lg = np.meshgrid(k, l, indexing="ij")
        KM = np.meshgrid(km, l, indexing="ij")[0]
        for dl, sign in ((1, 1.0), (-1, -1.0)):
            LL = Lg + dl
            ok = (LL >= 0) & (LL < m) if not periodic[other] else np.ones_like(LL, dtype=bool)
            LL = LL % m
            for a_i in (KM, K):  # the two cells on the far side of the face, along `other`
                cell = (a_i[ok], LL[ok]) if axis == 0 else (LL[ok], a_i[ok])
                hi = (K[ok], Lg[ok]) if axis == 0 else (Lg[ok], K[ok])
                lo = (KM[ok], Lg[ok]) if axis == 0 else (Lg[ok], KM[ok])
                c = idx[cell]
                rows += [idx[hi], idx[lo]]
                cols += [c, c]
                vals += [np.column_stack([np.full(c.size, sign), np.full(c.size, axis)]),
                         np.column_stack([np.full(c.size, -sign), np.full(c.size, axis)])]
    out = (np.concatenate(rows), np.concatenate(cols), np.concatenate(vals))
    _PATTERNS[key] = out
    return out
