"""Crank-Nicolson for a 1-D Fokker-Planck problem whose coefficients are arrays at snapshot times, linear in
time between them (``fpkit.estimators.SnapshotInterpolator``: the FP prediction from estimated A and D), in
one compiled call.

The same scheme, step for step, as ``fpkit.FokkerPlanck.solve(method="crank-nicolson")`` through
``time_stepping.ImplicitStepper``: the output intervals cut into the fewest equal steps no longer than the
largest step (``time_stepping.n_substeps``), a Rannacher start (each of the first ``RANNACHER_STEPS`` steps
replaced by two half backward-Euler steps), the faces of ``finite_volume.exponential_faces_1d`` at each
stage's time and LAPACK's tridiagonal elimination (``gtsv``, partial pivoting). What differs is round-off:
the coefficients at the faces' Gauss nodes are blended in time from their values at the snapshots instead
of being interpolated in space from the blended arrays (equal in exact arithmetic). The Python stepper
spends ~0.4 ms per step on a 4000-cell grid in ~40 numpy calls; this loop spends a small fraction of that.
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel
from .finite_volume import exponential_faces_1d
from .interp import interp_even
from .time_stepping import n_substeps

OK, BAD_COEFFICIENT, NOT_FINITE, SINGULAR = 0, 1, 2, 3
"""Status codes of ``crank_nicolson_snapshots_1d`` (``info[0]``)."""


@kernel
def _blend(s, ts, values, out):
    """out = the snapshot arrays ``values`` (S, …) at time s: linear between snapshots, held outside (as
    ``SnapshotInterpolator.at_time``)."""
    S = ts.size
    flat = out.reshape(-1)
    if s <= ts[0] or S == 1:
        flat[:] = values[0].reshape(-1)
        return
    if s >= ts[S - 1]:
        flat[:] = values[S - 1].reshape(-1)
        return
    k = np.searchsorted(ts, s, side="right") - 1
    a = (s - ts[k]) / (ts[k + 1] - ts[k])
    lo = values[k].reshape(-1)
    hi = values[k + 1].reshape(-1)
    for i in range(flat.size):
        flat[i] = (1 - a) * lo[i] + a * hi[i]


@kernel
def _faces_at(s, ts, a_nodes, d_nodes, d_cells, dist, weights, bc, a_q, d_q, d_c, alpha, beta):
    """Faces (alpha, beta) at time s; returns the first bad face or -1 (``exponential_faces_1d``)."""
    _blend(s, ts, a_nodes, a_q)
    _blend(s, ts, d_nodes, d_q)
    _blend(s, ts, d_cells, d_c)
    return exponential_faces_1d(a_q, d_q, d_c, dist, weights, bc, alpha, beta)


@kernel
def _gtsv(dl, d, du, b):
    """Solve the tridiagonal system (sub-diagonal dl, diagonal d, super-diagonal du; all overwritten) for b
    in place, by LAPACK's dgtsv algorithm (Gaussian elimination with partial pivoting). False if singular."""
    n = d.size
    for i in range(n - 1):
        if abs(d[i]) >= abs(dl[i]):  # no row interchange
            if d[i] == 0.0:
                return False
            fact = dl[i] / d[i]
            d[i + 1] -= fact * du[i]
            b[i + 1] -= fact * b[i]
            dl[i] = 0.0
        else:  # interchange rows i and i + 1; dl[i] becomes the second super-diagonal's fill
            fact = d[i] / dl[i]
            d[i] = dl[i]
            temp = d[i + 1]
            d[i + 1] = du[i] - fact * temp
            if i < n - 2:
                dl[i] = du[i + 1]
                du[i + 1] = -fact * dl[i]
            du[i] = temp
            temp = b[i]
            b[i] = b[i + 1]
            b[i + 1] = temp - fact * b[i + 1]
    if d[n - 1] == 0.0:
        return False
    b[n - 1] /= d[n - 1]
    if n > 1:
        b[n - 2] = (b[n - 2] - du[n - 2] * b[n - 1]) / d[n - 2]
    for j in range(n - 3, -1, -1):
        b[j] = (b[j] - du[j] * b[j + 1] - dl[j] * b[j + 2]) / d[j]
    return True


@kernel
def _shifted_solve(alpha, beta, c, coef, b, dl, d, du):
    """b <- (I − coef L)⁻¹ b for L of the faces (dp_i/dt = c[α_i p_{i−1} − (β_i + α_{i+1}) p_i + β_{i+1} p_{i+1}],
    ``time_stepping.Tridiagonal``'s diagonals from ``FokkerPlanck._stepping_operator``)."""
    n = b.size
    if n == 1:
        b[0] = b[0] / (1.0 - coef * (-c * (beta[0] + alpha[1])))
        return True
    for i in range(n):
        d[i] = 1.0 - coef * (-c * (beta[i] + alpha[i + 1]))
    for i in range(n - 1):
        dl[i] = -coef * (c * alpha[i + 1])
        du[i] = -coef * (c * beta[i + 1])
    return _gtsv(dl, d, du, b)


@kernel
def _apply(alpha, beta, c, p, out):
    """out = L p, in ``Tridiagonal.__matmul__``'s order (diagonal, then lower, then upper terms)."""
    n = p.size
    for i in range(n):
        out[i] = (-c * (beta[i] + alpha[i + 1])) * p[i]
    for i in range(1, n):
        out[i] += (c * alpha[i]) * p[i - 1]
    for i in range(n - 1):
        out[i] += (c * beta[i + 1]) * p[i + 1]


@kernel
def _implicit_stage(time, coef, p, ts, a_nodes, d_nodes, d_cells, dist, weights, bc, inv_h, a_q, d_q, d_c, alpha,
                    beta, dl, dd, du, info):  # fmt: skip
    """p <- (I − coef L(time))⁻¹ p, the faces of L(time) built into (alpha, beta); False with ``info`` set
    (status, time, face) if a coefficient is bad or the system singular."""
    bad = _faces_at(time, ts, a_nodes, d_nodes, d_cells, dist, weights, bc, a_q, d_q, d_c, alpha, beta)
    if bad >= 0:
        info[0], info[2], info[3] = BAD_COEFFICIENT, time, bad
        return False
    if not _shifted_solve(alpha, beta, inv_h, coef, p, dl, dd, du):
        info[0], info[2] = SINGULAR, time
        return False
    return True


@kernel
def crank_nicolson_snapshots_1d(p, t_eval, t0, dt, rannacher, ts, a_nodes, d_nodes, d_cells, dist, weights, bc,
                                inv_h, out, info):  # fmt: skip
    """Evolve p (n,) in place from t0 through the output times t_eval, recording out[k] = p at t_eval[k].

    ts (S,) snapshot times; a_nodes, d_nodes (S, n + 1, q) drift and diffusion at the faces' Gauss nodes;
    d_cells (S, n) diffusion at the centres; dist (n + 1,), weights (q,), bc (``finite_volume.BC_CODES``):
    as ``exponential_faces_1d``. dt the largest step, rannacher the number of Rannacher-start steps,
    inv_h = 1/Δx. info (4,) float: status (``OK`` …), total steps, the time and the face of a failure."""
    n = p.size
    m1 = n + 1
    q = weights.size
    a_q = np.empty((m1, q))
    d_q = np.empty((m1, q))
    d_c = np.empty(n)
    al_old = np.empty(m1)
    be_old = np.empty(m1)
    al_new = np.empty(m1)
    be_new = np.empty(m1)
    lp = np.empty(n)
    dl = np.empty(max(n - 1, 1))
    dd = np.empty(n)
    du = np.empty(max(n - 1, 1))
    t = t0
    total = 0
    faces_time = np.nan  # time of (al_new, be_new), the last faces built
    info[0] = OK
    for k in range(t_eval.size):
        interval = t_eval[k] - t
        if interval > 0:
            m = n_substeps(interval, dt)
            h = interval / m
            for i in range(m):
                s = t + i * h
                if total < rannacher:
                    half = 0.5 * h
                    stage = s
                    for _ in range(2):  # two half backward-Euler steps
                        stage = faces_time = stage + half
                        if not _implicit_stage(stage, half, p, ts, a_nodes, d_nodes, d_cells, dist, weights, bc,
                                               inv_h, a_q, d_q, d_c, al_new, be_new, dl, dd, du, info):  # fmt: skip
                            return
                else:
                    if faces_time == s:  # L(s) is the last step's L(s_prev + h)
                        al_old[:] = al_new
                        be_old[:] = be_new
                    else:
                        bad = _faces_at(s, ts, a_nodes, d_nodes, d_cells, dist, weights, bc, a_q, d_q, d_c,
                                        al_old, be_old)  # fmt: skip
                        if bad >= 0:
                            info[0], info[2], info[3] = BAD_COEFFICIENT, s, bad
                            return
                    _apply(al_old, be_old, inv_h, p, lp)
                    half = 0.5 * h
                    for j in range(n):
                        p[j] = p[j] + half * lp[j]
                    faces_time = s + h
                    if not _implicit_stage(faces_time, half, p, ts, a_nodes, d_nodes, d_cells, dist, weights, bc,
                                           inv_h, a_q, d_q, d_c, al_new, be_new, dl, dd, du, info):  # fmt: skip
                        return
                total += 1
            t = t_eval[k]
            for j in range(n):
                if not np.isfinite(p[j]):
                    info[0], info[1], info[2] = NOT_FINITE, total, t
                    return
        out[k] = p
    info[1] = total


@kernel
def _drift_at(x, s, ts, values, xs, vals, out):
    """out = A(x, s) as ``SnapshotInterpolator`` evaluates it at points x on a uniform grid (centres xs): the
    arrays blended in time (``_blend``), then ``interp_even`` (np.interp's bits)."""
    _blend(s, ts, values, vals)
    interp_even(x, xs, vals, out)


@kernel
def rk4_snapshots_1d(x, t_eval, t0, dt, ts, values, xs, out):
    """Carry the points x (N,) in place along dx/dt = A(x, t) from t0 through the output times t_eval (classical
    RK4, each interval cut into the fewest equal steps no longer than dt, as ``time_stepping.n_substeps``),
    recording out[k] = x at t_eval[k]. A is the drift ``values`` (S, n) at the snapshot times ts on the uniform
    grid with centres xs, evaluated as ``SnapshotInterpolator`` does: the same operations in the same order as
    ``fpkit.prediction.transport_samples``'s numpy RK4, so the same bits, without ~20 numpy calls per step."""
    N = x.size
    vals = np.empty(values.shape[1])
    k1 = np.empty(N)
    k2 = np.empty(N)
    k3 = np.empty(N)
    k4 = np.empty(N)
    y = np.empty(N)
    t = t0
    for k in range(t_eval.size):
        interval = t_eval[k] - t
        if interval > 0:
            m = n_substeps(interval, dt)
            h = interval / m
            for i in range(m):
                s = t + i * h
                _drift_at(x, s, ts, values, xs, vals, k1)
                for j in range(N):
                    y[j] = x[j] + 0.5 * h * k1[j]
                _drift_at(y, s + 0.5 * h, ts, values, xs, vals, k2)
                for j in range(N):
                    y[j] = x[j] + 0.5 * h * k2[j]
                _drift_at(y, s + 0.5 * h, ts, values, xs, vals, k3)
                for j in range(N):
                    y[j] = x[j] + h * k3[j]
                _drift_at(y, s + h, ts, values, xs, vals, k4)
                for j in range(N):
                    x[j] = x[j] + h / 6 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j])
            t = t_eval[k]
        out[k] = x
