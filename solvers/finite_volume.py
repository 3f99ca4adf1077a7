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
def exponential_fitting_faces(d_left, d_right, peclet, dist, alpha, beta):
    """Scharfetter-Gummel face coefficients from the diffusions either side, Pe = ∫A/D and the distance."""
    for k in range(peclet.size):
        alpha.flat[k] = d_left.flat[k] * bernoulli(-peclet.flat[k]) / dist.flat[k]
        beta.flat[k] = d_right.flat[k] * bernoulli(peclet.flat[k]) / dist.flat[k]


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
def explicit_euler_1d(p, alpha, beta, inv_h, periodic, dt, n_steps, work):
    """``n_steps`` forward-Euler steps in place on ``p`` (``work`` is a buffer of the same size)."""
    n = p.size
    c = dt * inv_h
    for _ in range(n_steps):
        # interior cells: a branch-free loop LLVM can vectorise
        for i in range(1, n - 1):
            work[i] = p[i] + c * (
                alpha[i] * p[i - 1] - (beta[i] + alpha[i + 1]) * p[i] + beta[i + 1] * p[i + 1]
            )
        lo = p[n - 1] if periodic else 0.0
        hi = p[0] if periodic else 0.0
        work[0] = p[0] + c * (alpha[0] * lo - (beta[0] + alpha[1]) * p[0] + beta[1] * p[1])
        work[n - 1] = p[n - 1] + c * (
            alpha[n - 1] * p[n - 2] - (beta[n - 1] + alpha[n]) * p[n - 1] + beta[n] * hi
        )
        for i in range(n):
            p[i] = work[i]


@kernel(parallel=True)
def explicit_euler_2d(p, ax, bx, ay, by, inv_hx, inv_hy, periodic_x, periodic_y, dt, n_steps, work):
    """``n_steps`` forward-Euler steps in place on a 2-D ``p``; rows are independent within a step."""
    nx, ny = p.shape
    cx = dt * inv_hx
    cy = dt * inv_hy
    for _ in range(n_steps):
        for i in prange(nx):
            im = i - 1 if i > 0 else nx - 1
            ip = i + 1 if i + 1 < nx else 0
            wx_lo = 1.0 if (i > 0 or periodic_x) else 0.0
            wx_hi = 1.0 if (i + 1 < nx or periodic_x) else 0.0
            for j in range(ny):
                jm = j - 1 if j > 0 else ny - 1
                jp = j + 1 if j + 1 < ny else 0
                wy_lo = 1.0 if (j > 0 or periodic_y) else 0.0
                wy_hi = 1.0 if (j + 1 < ny or periodic_y) else 0.0
                pc = p[i, j]
                dx = ax[i, j] * wx_lo * p[im, j] - (bx[i, j] + ax[i + 1, j]) * pc + bx[i + 1, j] * wx_hi * p[ip, j]
                dy = ay[i, j] * wy_lo * p[i, jm] - (by[i, j] + ay[i, j + 1]) * pc + by[i, j + 1] * wy_hi * p[i, jp]
                work[i, j] = pc + cx * dx + cy * dy
        for i in prange(nx):
            for j in range(ny):
                p[i, j] = work[i, j]


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
    four cells next to the face; walls (non-periodic boundary faces) carry no flux.
    """
    nx, ny = shape
    idx = np.arange(nx * ny).reshape(shape)
    rows, cols, vals = [], [], []

    def add(r, c, v):
        rows.append(r)
        cols.append(c)
        vals.append(v)

    for axis, other in ((0, 1), (1, 0)):
        n, m = shape[axis], shape[other]
        # faces between cell k-1 and k along `axis` (interior, plus the wrap face if periodic)
        ks = np.arange(0 if periodic[axis] else 1, n)
        for k in ks:
            km = (k - 1) % n
            for l in range(m):
                lp, lm = l + 1, l - 1
                terms = []
                for ll, sign in ((lp, 1.0), (lm, -1.0)):
                    if 0 <= ll < m or periodic[other]:
                        ll %= m
                        terms += [(km, ll, sign), (k, ll, sign)]
                # flux F = -(1/(4 h_other)) Σ sign·u ; dp[k] += F/h_axis ; dp[km] -= F/h_axis
                w = -0.25 * inv_h[other] * inv_h[axis]
                for a_i, o_i, sign in terms:
                    cell = (a_i, o_i) if axis == 0 else (o_i, a_i)
                    col = idx[cell]
                    coef = w * sign * u_coef[cell]
                    tgt_hi = (k, l) if axis == 0 else (l, k)
                    tgt_lo = (km, l) if axis == 0 else (l, km)
                    add(idx[tgt_hi], col, coef)
                    add(idx[tgt_lo], col, -coef)
    if not rows:
        return sp.csr_matrix((nx * ny, nx * ny))
    return sp.csr_matrix((vals, (rows, cols)), shape=(nx * ny, nx * ny))
