"""Kernels for 1-D transport with decay and diffusion on a uniform cell-centred grid.

The equation is ``∂s G = −β ∂g G − γ G + κ ∂g² G`` in non-conservative (advective) form, values ``G_i`` at the
cell centres ``g_i = lo + (i + ½) dx``. Three building blocks:

* ``muscl_rhs`` / ``ssprk3_step`` / ``ssprk3_advance``: second-order upwind (MUSCL) reconstruction with a slope
  limiter for ``−β ∂g G``, plus ``−γ G``, stepped with the three-stage strong-stability-preserving Runge-Kutta
  method (Shu-Osher), which keeps the limiter's TVD property for Courant numbers up to 1.
* ``sl_weights`` / ``sl_apply``: semi-Lagrangian step — cubic Lagrange interpolation of ``G`` at the feet of
  the characteristics times the decay factor carried along them.
* ``cn_diffusion``: θ-method (Crank-Nicolson for θ = ½) step of ``κ ∂g² G`` with a tridiagonal solve.

Ghost values: the upwind stencil needs two values beyond each end. A side is either given explicitly
(``GHOST_GIVEN``: inflow data), held constant (``GHOST_CONSTANT``: zero-gradient), extrapolated quadratically
(``GHOST_QUADRATIC``: keeps second order at an outflow boundary), or chosen by the sign of β at the boundary
node (``GHOST_AUTO``: quadratic where the flow leaves, constant where it enters without data, because
extrapolating from the interior at an inflow boundary is unstable).
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel

LIMITERS = {"none": 0, "minmod": 1, "van-leer": 2, "mc": 3, "superbee": 4}
"""Slope limiters by name. ``"none"`` is the unlimited centred slope (Fromm's scheme), second order but not TVD."""

GHOST_GIVEN, GHOST_CONSTANT, GHOST_QUADRATIC, GHOST_AUTO = 0, 1, 2, 3


@kernel
def _slope(a, b, lim):
    """Limited slope from the backward difference ``a`` and forward difference ``b`` of one cell."""
    if lim == 0:
        return 0.5 * (a + b)
    if a * b <= 0.0:
        return 0.0
    sgn = 1.0 if a > 0.0 else -1.0
    aa, bb = abs(a), abs(b)
    if lim == 1:
        return sgn * min(aa, bb)
    if lim == 2:
        return 2.0 * a * b / (a + b)
    if lim == 3:
        return sgn * min(0.5 * (aa + bb), 2.0 * aa, 2.0 * bb)
    return sgn * max(min(2.0 * aa, bb), min(aa, 2.0 * bb))


@kernel
def fill_ghosts(G, ghosts, mode_l, mode_r, beta0, beta_n, ext):
    """Write ``G`` into ``ext[2:n+2]`` and two ghost values on each side.

    ``ghosts`` holds the given values ``(G[-2], G[-1], G[n], G[n+1])`` used by ``GHOST_GIVEN`` sides;
    ``beta0``/``beta_n`` (β at the end nodes) decide ``GHOST_AUTO`` sides.
    """
    n = G.shape[0]
    for i in range(n):
        ext[i + 2] = G[i]
    ml = mode_l
    if ml == 3:
        ml = 2 if beta0 < 0.0 else 1
    mr = mode_r
    if mr == 3:
        mr = 2 if beta_n > 0.0 else 1
    if ml == 0:
        ext[0] = ghosts[0]
        ext[1] = ghosts[1]
    elif ml == 1:
        ext[0] = G[0]
        ext[1] = G[0]
    else:
        ext[1] = 3.0 * G[0] - 3.0 * G[1] + G[2]
        ext[0] = 3.0 * ext[1] - 3.0 * G[0] + G[1]
    if mr == 0:
        ext[n + 2] = ghosts[2]
        ext[n + 3] = ghosts[3]
    elif mr == 1:
        ext[n + 2] = G[n - 1]
        ext[n + 3] = G[n - 1]
    else:
        ext[n + 2] = 3.0 * G[n - 1] - 3.0 * G[n - 2] + G[n - 3]
        ext[n + 3] = 3.0 * ext[n + 2] - 3.0 * G[n - 1] + G[n - 2]


@kernel
def muscl_rhs(ext, beta, gamma, dx, lim, slopes, out):
    """``out = −β ∂g G − γ G`` from the ghost-extended values ``ext`` (length n + 4).

    ∂g G at node i is the difference of the two face values reconstructed from the upwind side of β_i.
    """
    n = beta.shape[0]
    # slopes[j] belongs to extended cell j, j = 1 .. n+2 (nodes -1 .. n)
    for j in range(1, n + 3):
        slopes[j] = _slope(ext[j] - ext[j - 1], ext[j + 1] - ext[j], lim)
    inv = 1.0 / dx
    for i in range(n):
        j = i + 2
        b = beta[i]
        if b > 0.0:
            d = (ext[j] + 0.5 * slopes[j]) - (ext[j - 1] + 0.5 * slopes[j - 1])
        else:
            d = (ext[j + 1] - 0.5 * slopes[j + 1]) - (ext[j] - 0.5 * slopes[j])
        out[i] = -b * d * inv - gamma[i] * ext[j]


@kernel
def ssprk3_step(G, beta3, gamma3, ghosts3, mode_l, mode_r, dx, ds, lim, ext, slopes, k, u1, u2):
    """One SSP-RK3 step of ``∂s G = −β ∂g G − γ G`` in place.

    ``beta3``, ``gamma3`` (3, n) and ``ghosts3`` (3, 4) hold the coefficients and given ghost values at the
    three stage scales ``s``, ``s + ds``, ``s + ds/2``; ``ext``, ``slopes``, ``k``, ``u1``, ``u2`` are work arrays
    (lengths n + 4, n + 4, n, n, n).
    """
    n = G.shape[0]
    fill_ghosts(G, ghosts3[0], mode_l, mode_r, beta3[0, 0], beta3[0, n - 1], ext)
    muscl_rhs(ext, beta3[0], gamma3[0], dx, lim, slopes, k)
    for i in range(n):
        u1[i] = G[i] + ds * k[i]
    fill_ghosts(u1, ghosts3[1], mode_l, mode_r, beta3[1, 0], beta3[1, n - 1], ext)
    muscl_rhs(ext, beta3[1], gamma3[1], dx, lim, slopes, k)
    for i in range(n):
        u2[i] = 0.75 * G[i] + 0.25 * (u1[i] + ds * k[i])
    fill_ghosts(u2, ghosts3[2], mode_l, mode_r, beta3[2, 0], beta3[2, n - 1], ext)
    muscl_rhs(ext, beta3[2], gamma3[2], dx, lim, slopes, k)
    for i in range(n):
        G[i] = G[i] / 3.0 + (2.0 / 3.0) * (u2[i] + ds * k[i])


@kernel
def ssprk3_advance(G, beta, gamma, mode_l, mode_r, dx, ds, nsteps, lim):
    """``nsteps`` SSP-RK3 steps in place for coefficients that do not depend on the scale and no given ghosts."""
    n = G.shape[0]
    beta3 = np.empty((3, n))
    gamma3 = np.empty((3, n))
    for r in range(3):
        for i in range(n):
            beta3[r, i] = beta[i]
            gamma3[r, i] = gamma[i]
    ghosts3 = np.zeros((3, 4))
    ext = np.empty(n + 4)
    slopes = np.zeros(n + 4)
    k = np.empty(n)
    u1 = np.empty(n)
    u2 = np.empty(n)
    for _ in range(nsteps):
        ssprk3_step(G, beta3, gamma3, ghosts3, mode_l, mode_r, dx, ds, lim, ext, slopes, k, u1, u2)
        if not np.isfinite(G[0]) or not np.isfinite(G[n - 1]):
            return False
    for i in range(n):
        if not np.isfinite(G[i]):
            return False
    return True


@kernel
def thomas(a, b, c, d, x, cp, dp):
    """Solve the tridiagonal system ``a[i] x[i-1] + b[i] x[i] + c[i] x[i+1] = d[i]`` (a[0], c[-1] unused)."""
    n = d.shape[0]
    cp[0] = c[0] / b[0]
    dp[0] = d[0] / b[0]
    for i in range(1, n):
        m = b[i] - a[i] * cp[i - 1]
        cp[i] = c[i] / m
        dp[i] = (d[i] - a[i] * dp[i - 1]) / m
    x[n - 1] = dp[n - 1]
    for i in range(n - 2, -1, -1):
        x[i] = dp[i] - cp[i] * x[i + 1]


@kernel
def cn_diffusion(G, kappa, dx, dt, theta, dirichlet_l, dirichlet_r, g_old, g_new, work):
    """One θ-step of ``∂s G = κ ∂g² G`` in place (κ per node, non-conservative form κ(g) ∂g²G).

    Boundaries: zero gradient (ghost = end value) unless ``dirichlet_l``/``dirichlet_r``, in which case the
    ghost node just outside has the given values ``g_old[0|1]`` at the old and ``g_new[0|1]`` at the new scale.
    ``work`` has shape (6, n).
    """
    n = G.shape[0]
    a = work[0]
    b = work[1]
    c = work[2]
    d = work[3]
    cp = work[4]
    dp = work[5]
    inv = 1.0 / (dx * dx)
    for i in range(n):
        r = kappa[i] * dt * inv
        gl = G[i - 1] if i > 0 else (g_old[0] if dirichlet_l else G[0])
        gr = G[i + 1] if i < n - 1 else (g_old[1] if dirichlet_r else G[n - 1])
        d[i] = G[i] + (1.0 - theta) * r * (gl - 2.0 * G[i] + gr)
        a[i] = -theta * r
        c[i] = -theta * r
        b[i] = 1.0 + 2.0 * theta * r
        if i == 0:
            if dirichlet_l:
                d[i] += theta * r * g_new[0]
            else:
                b[i] -= theta * r
        if i == n - 1:
            if dirichlet_r:
                d[i] += theta * r * g_new[1]
            else:
                b[i] -= theta * r
    thomas(a, b, c, d, G, cp, dp)


@kernel
def sl_weights(points, lo, dx, n, idx, w, outside):
    """Cubic Lagrange interpolation weights on the centres ``lo + (j + ½) dx`` for each point.

    ``idx[p]`` is the first node of the 4-point stencil (shifted inwards near the ends, so the ends use
    one-sided cubics), ``w[p]`` its weights; ``outside[p]`` marks points beyond the domain ``[lo, lo + n dx]``.
    """
    hi = lo + n * dx
    for p in range(points.shape[0]):
        x = points[p]
        outside[p] = (x < lo) or (x > hi)
        u = (x - lo) / dx - 0.5
        j0 = int(np.floor(u)) - 1
        j0 = max(j0, 0)
        j0 = min(j0, n - 4)
        t = u - j0
        idx[p] = j0
        w[p, 0] = -(t - 1.0) * (t - 2.0) * (t - 3.0) / 6.0
        w[p, 1] = t * (t - 2.0) * (t - 3.0) / 2.0
        w[p, 2] = -t * (t - 1.0) * (t - 3.0) / 2.0
        w[p, 3] = t * (t - 1.0) * (t - 2.0) / 6.0


@kernel
def sl_apply(G, idx, w, outside, outside_vals, factor, out):
    """``out[p] = factor[p] · (Σ_k w[p,k] G[idx[p]+k], or outside_vals[p] for points beyond the domain)``."""
    for p in range(out.shape[0]):
        if outside[p]:
            v = outside_vals[p]
        else:
            j = idx[p]
            v = w[p, 0] * G[j] + w[p, 1] * G[j + 1] + w[p, 2] * G[j + 2] + w[p, 3] * G[j + 3]
        out[p] = factor[p] * v


def cubic_interpolate(values: np.ndarray, lo: float, dx: float, points: np.ndarray) -> np.ndarray:
    """Cubic Lagrange interpolation of node values (last axis = grid axis) at ``points``; beyond the domain the
    nearest end value is used. Works for a stack of profiles, shape (..., n)."""
    values = np.asarray(values, dtype=float)
    pts = np.ascontiguousarray(np.asarray(points, dtype=float).ravel())
    n = values.shape[-1]
    idx = np.empty(pts.size, dtype=np.int64)
    w = np.empty((pts.size, 4))
    outside = np.empty(pts.size, dtype=np.bool_)
    sl_weights(pts, float(lo), float(dx), n, idx, w, outside)
    gathered = values[..., idx[:, None] + np.arange(4)]  # (..., m, 4)
    res = np.einsum("...mk,mk->...m", gathered, w)
    if outside.any():
        ends = np.where(pts[outside] < lo, 0, n - 1)
        res[..., outside] = values[..., ends]
    return res.reshape(values.shape[:-1] + np.shape(points))


def cubic_interpolate_nd(values: np.ndarray, lo, dx, points: np.ndarray) -> np.ndarray:
    """Tensor-product cubic Lagrange interpolation of node values on a d-D uniform cell-centred grid.

    ``values`` has the grid's shape, ``points`` shape (d, m); ``lo`` and ``dx`` hold one entry per axis.
    Coordinates beyond the domain are clamped to the outer nodes (nearest value). Exact for polynomials of
    degree ≤ 3 in each coordinate; reproduces the node values exactly.
    """
    values = np.asarray(values, dtype=float)
    pts = np.asarray(points, dtype=float)
    d, m = pts.shape
    idx, wts = [], []
    for a in range(d):
        n = values.shape[a]
        first = lo[a] + 0.5 * dx[a]
        x = np.ascontiguousarray(np.clip(pts[a], first, first + (n - 1) * dx[a]))
        i_a = np.empty(m, dtype=np.int64)
        w_a = np.empty((m, 4))
        sl_weights(x, float(lo[a]), float(dx[a]), n, i_a, w_a, np.empty(m, dtype=np.bool_))
        idx.append(i_a)
        wts.append(w_a)
    out = np.zeros(m)
    for offsets in np.ndindex(*(4,) * d):
        w = np.ones(m)
        index = []
        for a, k in enumerate(offsets):
            w = w * wts[a][:, k]
            index.append(idx[a] + k)
        out += w * values[tuple(index)]
    return out
