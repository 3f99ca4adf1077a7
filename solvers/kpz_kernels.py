"""Finite-difference KPZ / Edwards-Wilkinson kernels on periodic lattices (1-D and 2-D).

The equation is ∂t h = ν∇²h + (λ/2)|∇h|² + η with ⟨η(x,t)η(x',t')⟩ = 2D δ(x−x')δ(t−t'). On a lattice of
spacing a (cell volume aᵈ) one explicit step adds the noise √(2DΔt/aᵈ)·ξ, ξ standard normal (Itô).

Stencils for |∇h|² along one axis, with d₊ = h_{i+1} − h_i and d₋ = h_i − h_{i−1}:

* Lam-Shin (Lam & Shin 1998): (d₊² + d₊d₋ + d₋²)/(3a²). In 1-D it leaves the discrete Gaussian random-walk
  measure exactly stationary for any λ (the nonlinear flow is divergence-free and orthogonal to the
  gradient of the EW potential), so the stationary width is known exactly. In 2-D the sum over both axes is
  used (the natural generalisation; no exact stationary measure exists there).
* naive central: ((h_{i+1} − h_{i−1})/(2a))² = (d₊² + 2d₊d₋ + d₋²)/(4a²). Kept only as a comparison: it is
  inconsistent with the stationary measure (width too small) and grows isolated pillars (Dasgupta et al.).

Both are written as (d₊² + w·d₊d₋ + d₋²)·c with (w, c) = (1, 1/3) or (2, 1/4), one code path.

Time steppers: explicit Euler-Maruyama and stochastic Heun (predictor-corrector with the same noise in both
stages; for additive noise it is weak order 2 in the linear part). Kernels update arrays in place and
return, per realisation, the step at which a blow-up was detected (0 if none).

Parallelism: 1-D kernels run realisations in parallel with all steps inside one parallel region. In 2-D,
``run_fd_2d_realisations`` does the same (used when there are at least as many realisations as threads) and
``run_fd_2d`` splits every step's rows over the threads (one region per stage, for few large surfaces).

Randomness: one xoroshiro128+ stream per realisation in 1-D and per (realisation, lattice row) in 2-D,
so results are bit-identical for a seed whatever the number of threads and whichever 2-D path runs. Normals come from
the 256-layer ziggurat of ``fpkit.solvers.random`` (``draw_normals_row``: a row per call, the stream state
kept in registers), about 3× faster than its polar method.
"""

from __future__ import annotations

import math

import numpy as np
from numba import get_thread_id

from ._numba import kernel, prange
from .random import draw_normals_row


# ---------------------------------------------------------------------------------------------------
# stencils
# ---------------------------------------------------------------------------------------------------
@kernel
def _incr(hm, h0, hp, c_lap, c_nl, w):
    """Deterministic increment Δt·f along one axis: c_lap·(d₊ − d₋) + c_nl·(d₊² + w d₊d₋ + d₋²)."""
    dp = hp - h0
    dm = h0 - hm
    return c_lap * (dp - dm) + c_nl * (dp * dp + w * dp * dm + dm * dm)


@kernel
def _euler_row_1d(a, b, xi, c_lap, c_nl, w, amp):
    """b = a + Δt f(a) + amp ξ on a periodic 1-D lattice (one fused pass; the interior runs over slices
    indexed by the loop variable alone, so it has no negative-index checks and vectorises)."""
    n = a.shape[0]
    b[0] = a[0] + _incr(a[n - 1], a[0], a[1], c_lap, c_nl, w) + amp * xi[0]
    lft, ctr, rgt, o, x = a[0 : n - 2], a[1 : n - 1], a[2:n], b[1 : n - 1], xi[1 : n - 1]
    for k in range(n - 2):
        o[k] = ctr[k] + _incr(lft[k], ctr[k], rgt[k], c_lap, c_nl, w) + amp * x[k]
    b[n - 1] = a[n - 1] + _incr(a[n - 2], a[n - 1], a[0], c_lap, c_nl, w) + amp * xi[n - 1]


@kernel
def _pred_site(a, i, im, ip, p, f0, xi, c_lap, c_nl, w, amp):
    f = _incr(a[im], a[i], a[ip], c_lap, c_nl, w)
    f0[i] = f
    p[i] = a[i] + f + amp * xi[i]


@kernel
def _corr_site(a, i, im, ip, p, b, f0, xi, c_lap, c_nl, w, amp):
    b[i] = a[i] + 0.5 * (f0[i] + _incr(p[im], p[i], p[ip], c_lap, c_nl, w)) + amp * xi[i]


@kernel
def _heun_row_1d(a, b, p, f0, xi, c_lap, c_nl, w, amp):
    """Stochastic Heun on a periodic 1-D lattice: p = a + f(a) + amp ξ, b = a + (f(a) + f(p))/2 + amp ξ.

    Wrap-around sites apart, interiors over slices (no branches, no negative-index checks: they vectorise).
    """
    n = a.shape[0]
    _pred_site(a, 0, n - 1, 1, p, f0, xi, c_lap, c_nl, w, amp)
    lft, ctr, rgt = a[0 : n - 2], a[1 : n - 1], a[2:n]
    g, q, x = f0[1 : n - 1], p[1 : n - 1], xi[1 : n - 1]
    for k in range(n - 2):
        f = _incr(lft[k], ctr[k], rgt[k], c_lap, c_nl, w)
        g[k] = f
        q[k] = ctr[k] + f + amp * x[k]
    _pred_site(a, n - 1, n - 2, 0, p, f0, xi, c_lap, c_nl, w, amp)
    _corr_site(a, 0, n - 1, 1, p, b, f0, xi, c_lap, c_nl, w, amp)
    pl, pc, pr, o = p[0 : n - 2], p[1 : n - 1], p[2:n], b[1 : n - 1]
    for k in range(n - 2):
        o[k] = ctr[k] + 0.5 * (g[k] + _incr(pl[k], pc[k], pr[k], c_lap, c_nl, w)) + amp * x[k]
    _corr_site(a, n - 1, n - 2, 0, p, b, f0, xi, c_lap, c_nl, w, amp)


@kernel
def _health_1d(h):
    """(max |h_{i+1} − h_i|, sum h): a non-finite sum flags overflow or NaN."""
    n = h.shape[0]
    m = abs(h[0] - h[n - 1])
    s = h[n - 1]
    for i in range(n - 1):
        s += h[i]
        d = abs(h[i + 1] - h[i])
        m = max(m, d)
    return m, s


@kernel
def _run_one_1d(h, state, k, n_steps, c_lap, c_nl, w, amp, heun, check_every, max_slope):
    """Advance one realisation ``h`` (1-D, periodic) by ``n_steps``; return the failing step or 0."""
    n = h.shape[0]
    a = h
    b = np.empty(n)
    xi = np.empty(n)
    f0 = np.empty(n if heun else 0)
    p = np.empty(n if heun else 0)
    for step in range(1, n_steps + 1):
        draw_normals_row(state, k, xi)
        if heun:
            _heun_row_1d(a, b, p, f0, xi, c_lap, c_nl, w, amp)
        else:
            _euler_row_1d(a, b, xi, c_lap, c_nl, w, amp)
        a, b = b, a
        if step % check_every == 0 or step == n_steps:
            m, s = _health_1d(a)
            if not (math.isfinite(s) and m <= max_slope):
                return step
    if n_steps % 2 == 1:  # the latest state sits in the scratch buffer
        h[:] = a
    return 0


@kernel(parallel=True)
def run_fd_1d(h, state, n_steps, c_lap, c_nl, w, amp, heun, check_every, max_slope, fail):
    """Advance every realisation h[r] (R, N) by ``n_steps`` explicit steps, realisation r on stream r.

    Parameters
    ----------
    h : (R, N) float64, updated in place.
    state : (R, 2) uint64 stream states, advanced in place.
    c_lap : νΔt/a².   c_nl : (λ/2)Δt/a² · (1/3 Lam-Shin or 1/4 naive).   w : 1 (Lam-Shin) or 2 (naive).
    amp : √(2DΔt/a), the noise per step.   heun : stochastic Heun instead of Euler-Maruyama.
    check_every : steps between blow-up checks.   max_slope : largest |h_{i+1} − h_i| accepted.
    fail : (R,) int64 out, the step at which realisation r failed its check, 0 if none.
    """
    for r in prange(h.shape[0]):
        fail[r] = _run_one_1d(h[r], state, r, n_steps, c_lap, c_nl, w, amp, heun, check_every, max_slope)


@kernel
def run_fd_1d_serial(h, state, n_steps, c_lap, c_nl, w, amp, heun, check_every, max_slope, fail):
    """``run_fd_1d`` in the calling thread (same numbers). Used for a single realisation: opening a
    parallel region with nothing to share only costs (a lot, on an oversubscribed machine)."""
    for r in range(h.shape[0]):
        fail[r] = _run_one_1d(h[r], state, r, n_steps, c_lap, c_nl, w, amp, heun, check_every, max_slope)


# --- 2-D: one parallel sweep per stage over (realisation, row) items ------------------------------
@kernel
def _f_2d(up, mid, dn, j, jm, jp, cx, cy, nx, ny, w):
    """Δt·f at site j of a row, from the rows above (``up``) and below (``dn``) and the row's neighbours."""
    c = mid[j]
    return _incr(up[j], c, dn[j], cx, nx, w) + _incr(mid[jm], c, mid[jp], cy, ny, w)


@kernel
def _euler_row_2d(up, mid, dn, out, xi, cx, cy, nx, ny, w, amp):
    """out = mid + Δt f(mid) + amp ξ along one row.

    The wrap-around sites are done apart; the interior runs over slices indexed by the loop variable
    alone, so numba emits no negative-index checks and LLVM vectorises the loop.
    """
    n = mid.shape[0]
    out[0] = mid[0] + _f_2d(up, mid, dn, 0, n - 1, 1, cx, cy, nx, ny, w) + amp * xi[0]
    lft, ctr, rgt = mid[0 : n - 2], mid[1 : n - 1], mid[2:n]
    u, d, o, x = up[1 : n - 1], dn[1 : n - 1], out[1 : n - 1], xi[1 : n - 1]
    for k in range(n - 2):
        c = ctr[k]
        f = _incr(u[k], c, d[k], cx, nx, w) + _incr(lft[k], c, rgt[k], cy, ny, w)
        o[k] = c + f + amp * x[k]
    out[n - 1] = mid[n - 1] + _f_2d(up, mid, dn, n - 1, n - 2, 0, cx, cy, nx, ny, w) + amp * xi[n - 1]


@kernel
def _pred_site_2d(up, mid, dn, out, f0, xi, j, jm, jp, cx, cy, nx, ny, w, amp):
    f = _f_2d(up, mid, dn, j, jm, jp, cx, cy, nx, ny, w)
    f0[j] = f
    out[j] = mid[j] + f + amp * xi[j]


@kernel
def _pred_row_2d(up, mid, dn, out, f0, xi, cx, cy, nx, ny, w, amp):
    """Heun predictor along one row: f0 = Δt f(mid), out = mid + f0 + amp ξ (interior on slices)."""
    n = mid.shape[0]
    _pred_site_2d(up, mid, dn, out, f0, xi, 0, n - 1, 1, cx, cy, nx, ny, w, amp)
    lft, ctr, rgt = mid[0 : n - 2], mid[1 : n - 1], mid[2:n]
    u, d, o, x, g = up[1 : n - 1], dn[1 : n - 1], out[1 : n - 1], xi[1 : n - 1], f0[1 : n - 1]
    for k in range(n - 2):
        c = ctr[k]
        f = _incr(u[k], c, d[k], cx, nx, w) + _incr(lft[k], c, rgt[k], cy, ny, w)
        g[k] = f
        o[k] = c + f + amp * x[k]
    _pred_site_2d(up, mid, dn, out, f0, xi, n - 1, n - 2, 0, cx, cy, nx, ny, w, amp)


@kernel
def _corr_site_2d(up, mid, dn, out, base, f0, xi, j, jm, jp, cx, cy, nx, ny, w, amp):
    out[j] = base[j] + 0.5 * (f0[j] + _f_2d(up, mid, dn, j, jm, jp, cx, cy, nx, ny, w)) + amp * xi[j]


@kernel
def _corr_row_2d(up, mid, dn, out, base, f0, xi, cx, cy, nx, ny, w, amp):
    """Heun corrector along one row: out = base + (f0 + Δt f(mid))/2 + amp ξ, ``mid`` the predictor."""
    n = mid.shape[0]
    _corr_site_2d(up, mid, dn, out, base, f0, xi, 0, n - 1, 1, cx, cy, nx, ny, w, amp)
    lft, ctr, rgt = mid[0 : n - 2], mid[1 : n - 1], mid[2:n]
    u, d, o, x, g, bs = (
        up[1 : n - 1],
        dn[1 : n - 1],
        out[1 : n - 1],
        xi[1 : n - 1],
        f0[1 : n - 1],
        base[1 : n - 1],
    )
    for k in range(n - 2):
        c = ctr[k]
        f = _incr(u[k], c, d[k], cx, nx, w) + _incr(lft[k], c, rgt[k], cy, ny, w)
        o[k] = bs[k] + 0.5 * (g[k] + f) + amp * x[k]
    _corr_site_2d(up, mid, dn, out, base, f0, xi, n - 1, n - 2, 0, cx, cy, nx, ny, w, amp)


@kernel(parallel=True)
def _sweep_2d(src, old, dst, f0, xi, scratch, state, cx, cy, nx, ny, w, amp, stage):
    """One stage over all rows of all realisations: 0 Euler-Maruyama, 1 Heun predictor, 2 Heun corrector.

    Stages 0 and 1 draw the row's noise from stream r·n0 + i (into the thread's scratch row for Euler,
    into ``xi`` for Heun, whose corrector reuses it); the scratch content never outlives one item, so the
    result does not depend on which thread ran it.
    """
    R, n0 = src.shape[0], src.shape[1]
    for item in prange(R * n0):
        r = item // n0
        i = item - r * n0
        im = i - 1 if i > 0 else n0 - 1
        ip = i + 1 if i < n0 - 1 else 0
        if stage == 0:
            row = scratch[get_thread_id()]
            draw_normals_row(state, item, row)
            _euler_row_2d(src[r, im], src[r, i], src[r, ip], dst[r, i], row, cx, cy, nx, ny, w, amp)
        elif stage == 1:
            draw_normals_row(state, item, xi[r, i])
            _pred_row_2d(
                src[r, im], src[r, i], src[r, ip], dst[r, i], f0[r, i], xi[r, i], cx, cy, nx, ny, w, amp
            )
        else:
            _corr_row_2d(
                src[r, im],
                src[r, i],
                src[r, ip],
                dst[r, i],
                old[r, i],
                f0[r, i],
                xi[r, i],
                cx,
                cy,
                nx,
                ny,
                w,
                amp,
            )


@kernel(parallel=True)
def _health_2d(h, out_m, out_s):
    R, n0, n1 = h.shape
    for item in prange(R * n0):
        r = item // n0
        i = item - r * n0
        ip = i + 1 if i < n0 - 1 else 0
        m = 0.0
        s = 0.0
        for j in range(n1):
            jp = j + 1 if j < n1 - 1 else 0
            c = h[r, i, j]
            s += c
            d0 = abs(h[r, ip, j] - c)
            d1 = abs(h[r, i, jp] - c)
            m = max(m, d0, d1)
        out_m[item] = m
        out_s[item] = s


def scratch_rows(n1: int) -> np.ndarray:
    """Per-thread noise rows for ``run_fd_2d`` (one per possible numba thread)."""
    import numba

    return np.empty((numba.config.NUMBA_NUM_THREADS, n1))


@kernel
def run_fd_2d(h, state, n_steps, cx, cy, nx, ny, w, amp, heun, check_every, max_slope, fail, scratch):
    """2-D analogue of ``run_fd_1d``: h (R, n0, n1); state (R·n0, 2), stream r·n0 + i drives row i of r.

    cx, cy : νΔt/a_0², νΔt/a_1².  nx, ny : (λ/2)Δt/a_k² · (1/3 or 1/4).  amp : √(2DΔt/(a_0 a_1)).
    The sweeps are parallel over rows; each reads only the previous stage, so the thread count does not
    change the result. ``scratch`` is (n_threads_max, n1): one noise row per thread.
    """
    R, n0, n1 = h.shape
    a = h
    b = np.empty_like(h)
    shape_h = (R, n0, n1) if heun else (0, 0, 0)
    f0 = np.empty(shape_h)
    xi = np.empty(shape_h)
    p = np.empty(shape_h)
    m_row = np.empty(R * n0)
    s_row = np.empty(R * n0)
    for r in range(R):
        fail[r] = 0
    for step in range(1, n_steps + 1):
        if heun:
            _sweep_2d(a, a, p, f0, xi, scratch, state, cx, cy, nx, ny, w, amp, 1)
            _sweep_2d(p, a, b, f0, xi, scratch, state, cx, cy, nx, ny, w, amp, 2)
        else:
            _sweep_2d(a, a, b, f0, xi, scratch, state, cx, cy, nx, ny, w, amp, 0)
        a, b = b, a
        if step % check_every == 0 or step == n_steps:
            _health_2d(a, m_row, s_row)
            bad = False
            for r in range(R):
                s = 0.0
                m = 0.0
                for i in range(n0):
                    s += s_row[r * n0 + i]
                    if m_row[r * n0 + i] > m or not math.isfinite(m_row[r * n0 + i]):
                        m = m_row[r * n0 + i]
                if not (math.isfinite(s) and m <= max_slope):
                    fail[r] = step
                    bad = True
            if bad:
                return
    if n_steps % 2 == 1:
        h[:] = a


@kernel
def _health_2d_one(h):
    """(max nearest-neighbour |Δh|, sum h) of one 2-D realisation (periodic)."""
    n0, n1 = h.shape
    m = 0.0
    s = 0.0
    for i in range(n0):
        ip = i + 1 if i < n0 - 1 else 0
        for j in range(n1):
            jp = j + 1 if j < n1 - 1 else 0
            c = h[i, j]
            s += c
            m = max(m, abs(h[ip, j] - c), abs(h[i, jp] - c))
    return m, s


@kernel
def _run_one_2d(h, state, r, n_steps, cx, cy, nx, ny, w, amp, heun, check_every, max_slope):
    """Advance realisation ``h`` (n0, n1) in the calling thread; row i draws from stream r·n0 + i.

    Same arithmetic, row by row, as the row-parallel sweeps of ``run_fd_2d``, so both give identical numbers.
    """
    n0, n1 = h.shape
    a = h
    b = np.empty_like(h)
    row = np.empty(n1)
    shape_h = (n0, n1) if heun else (0, 0)
    f0 = np.empty(shape_h)
    xi = np.empty(shape_h)
    p = np.empty(shape_h)
    base = r * n0
    for step in range(1, n_steps + 1):
        if heun:
            for i in range(n0):
                im = i - 1 if i > 0 else n0 - 1
                ip = i + 1 if i < n0 - 1 else 0
                draw_normals_row(state, base + i, xi[i])
                _pred_row_2d(a[im], a[i], a[ip], p[i], f0[i], xi[i], cx, cy, nx, ny, w, amp)
            for i in range(n0):
                im = i - 1 if i > 0 else n0 - 1
                ip = i + 1 if i < n0 - 1 else 0
                _corr_row_2d(p[im], p[i], p[ip], b[i], a[i], f0[i], xi[i], cx, cy, nx, ny, w, amp)
        else:
            for i in range(n0):
                im = i - 1 if i > 0 else n0 - 1
                ip = i + 1 if i < n0 - 1 else 0
                draw_normals_row(state, base + i, row)
                _euler_row_2d(a[im], a[i], a[ip], b[i], row, cx, cy, nx, ny, w, amp)
        a, b = b, a
        if step % check_every == 0 or step == n_steps:
            m, s = _health_2d_one(a)
            if not (math.isfinite(s) and m <= max_slope):
                return step
    if n_steps % 2 == 1:
        h[:] = a
    return 0


@kernel(parallel=True)
def run_fd_2d_realisations(h, state, n_steps, cx, cy, nx, ny, w, amp, heun, check_every, max_slope, fail):
    """2-D stepping parallel over realisations, all steps inside: no barrier per step. Arguments and
    results as ``run_fd_2d``; preferred when there are at least as many realisations as threads."""
    for r in prange(h.shape[0]):
        fail[r] = _run_one_2d(h[r], state, r, n_steps, cx, cy, nx, ny, w, amp, heun, check_every, max_slope)


# ---------------------------------------------------------------------------------------------------
# references and samplers used by the problem layer
# ---------------------------------------------------------------------------------------------------
def incr_reference(h: np.ndarray, dx: tuple, nu: float, lam: float, dt: float, stencil: str) -> np.ndarray:
    """Plain-numpy Δt·f(h) for the lattice schemes (the compiled kernels are tested against it).

    ``h`` has the lattice axes last; periodic in each of them.
    """
    ndim = len(dx)
    out = np.zeros_like(h)
    for ax, a in enumerate(dx):
        axis = h.ndim - ndim + ax
        hp = np.roll(h, -1, axis=axis)
        hm = np.roll(h, 1, axis=axis)
        lap = (hp - 2 * h + hm) / a**2
        if stencil == "lam-shin":
            dp, dm = hp - h, h - hm
            grad2 = (dp**2 + dp * dm + dm**2) / (3 * a**2)
        else:
            grad2 = ((hp - hm) / (2 * a)) ** 2
        out += dt * (nu * lap + 0.5 * lam * grad2)
    return out
