"""Characteristics of first-order linear transport equations with a decay term.

For ``[∂s + β(g, s)·∇g + γ(g, s)] G = 0`` the characteristics are the solutions of ``dḡ/ds = β(ḡ, s)``; along
one of them ``G`` is multiplied by ``exp(−∫γ(ḡ, s) ds)``. This module integrates characteristics with an
adaptive Runge-Kutta method (scipy's DOP853, order 8) for many points at once, carrying the integral of γ as
an extra component, and detects a Landau pole: a characteristic that reaches infinity at a finite scale.

Everything here sees only arrays and callables: ``beta(y, s)`` takes an array of shape ``(n_coup, m)`` and
returns the same shape, ``gamma(y, s)`` returns shape ``(m,)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from scipy.integrate import quad, solve_ivp

from ..errors import LandauPoleError

BetaFn = Callable[[np.ndarray, float], np.ndarray]
GammaFn = Callable[[np.ndarray, float], np.ndarray]


def default_threshold(y0: np.ndarray) -> float:
    """|g| beyond which a coupling is taken to have diverged: far beyond any start value, far below overflow."""
    return 1e10 * (1.0 + float(np.max(np.abs(y0))) if y0.size else 1.0)


def _remaining_scale(beta: BetaFn, y: float, s: float, direction: float) -> float:
    """∫ dg/β from |g| = y to infinity in the direction the flow moves (1-D, time-independent tail).

    Returns ``inf`` when the integral diverges (no finite-scale pole, just fast growth).
    """
    sign = np.sign(y)

    def inv(u):  # substitution g = y/u, u in (0, 1]: dg = -y/u² du
        g = y / u
        b = float(beta(np.array([[g]]), s)[0, 0]) * direction
        if b == 0.0 or np.sign(b) != sign:
            return np.inf
        return abs(y) / (u * u * abs(b))

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # a divergent tail integral is an answer here (no finite-scale pole), not a problem to warn about
        warnings.simplefilter("ignore")
        val, err = quad(inv, 0.0, 1.0, limit=200)
    if not np.isfinite(val) or err > 1e-3 * max(abs(val), 1e-300) + 1e-12:
        return np.inf
    return val


def integrate_characteristics(
    beta: BetaFn,
    gamma: GammaFn | None,
    y0: np.ndarray,
    s_start: float,
    s_targets: np.ndarray,
    *,
    rtol: float = 1e-12,
    atol: float = 1e-13,
    threshold: float | None = None,
    max_step: float = np.inf,
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate ``dy/ds = β(y, s)`` and ``dI/ds = γ(y, s)`` from ``s_start`` to every scale in ``s_targets``.

    Parameters
    ----------
    beta, gamma : callable
        ``beta(y, s)`` with ``y`` of shape ``(n_coup, m)`` returns shape ``(n_coup, m)``; ``gamma(y, s)`` returns
        ``(m,)``. ``gamma`` may be None (no decay integral).
    y0 : ndarray, shape (n_coup, m)
        Start points.
    s_start : float
        Scale of the start points.
    s_targets : ndarray, shape (k,)
        Scales at which the state is wanted, all on one side of ``s_start`` (either direction) and sorted
        away from it.
    rtol, atol : float
        Tolerances of the adaptive integrator (DOP853).
    threshold : float, optional
        |y| beyond which a characteristic is taken to diverge; default ``default_threshold(y0)``.

    Returns
    -------
    y : ndarray, shape (k, n_coup, m)
        The points at each target scale.
    integral : ndarray, shape (k, m)
        ``∫_{s_start}^{s_target} γ(y(s), s) ds`` along each characteristic (signed, in the direction of
        integration), zeros when ``gamma`` is None.

    Raises
    ------
    LandauPoleError
        If a characteristic exceeds ``threshold`` before the last target scale.
    """
    y0 = np.asarray(y0, dtype=float)
    n_coup, m = y0.shape
    s_targets = np.asarray(s_targets, dtype=float)
    k = s_targets.size
    out_y = np.empty((k, n_coup, m))
    out_i = np.zeros((k, m))
    if k == 0 or m == 0:
        return out_y, out_i
    thr = default_threshold(y0) if threshold is None else float(threshold)
    at_start = s_targets == s_start
    out_y[at_start] = y0
    s_end = float(s_targets[np.argmax(np.abs(s_targets - s_start))])
    if s_end == s_start:
        return out_y, out_i
    direction = 1.0 if s_end > s_start else -1.0
    n_y = n_coup * m

    def rhs(s, z):
        y = z[:n_y].reshape(n_coup, m)
        dz = np.empty_like(z)
        dz[:n_y] = np.asarray(beta(y, s), dtype=float).reshape(n_y)
        if gamma is not None:
            dz[n_y:] = np.asarray(gamma(y, s), dtype=float).reshape(m)
        else:
            dz[n_y:] = 0.0
        return dz

    def blowup(s, z):
        return thr - np.max(np.abs(z[:n_y]))

    blowup.terminal = True
    blowup.direction = -1

    z0 = np.concatenate([y0.reshape(n_y), np.zeros(m)])
    # atol scaled to the size of the start values keeps ~1e-12 relative accuracy for large couplings
    scale = max(1.0, float(np.max(np.abs(y0))))
    sol = solve_ivp(
        rhs,
        (s_start, s_end),
        z0,
        method="DOP853",
        t_eval=s_targets[~at_start],
        rtol=rtol,
        atol=atol * scale,
        events=blowup,
        max_step=max_step,
    )
    t_out, y_out = _solution_arrays(sol.t, sol.y, z0.size)
    if sol.status == 1 or sol.status == -1 or t_out.size < np.count_nonzero(~at_start):
        # diverged (event) or the step size collapsed (a pole too steep for the event to catch)
        if sol.status == 1 and np.size(sol.t_events[0]):
            s_ev = float(sol.t_events[0][0])
            z_ev = np.asarray(sol.y_events[0][0], dtype=float)
        else:
            # the last state reached: after a failed step (scipy then returns lists, not arrays, and only
            # the requested scales reached), integrate again without output scales to find where it stopped
            steps = solve_ivp(rhs, (s_start, s_end), z0, method="DOP853", rtol=rtol, atol=atol * scale,
                              events=blowup, max_step=max_step)  # fmt: skip
            t_all, y_all = _solution_arrays(steps.t, steps.y, z0.size)
            finite = np.all(np.isfinite(y_all), axis=0) if t_all.size else np.zeros(0, bool)
            if np.any(finite):
                last = int(np.nonzero(finite)[0][-1])
                s_ev, z_ev = float(t_all[last]), y_all[:, last]
            else:
                s_ev, z_ev = s_start, z0
        y_ev = z_ev[:n_y].reshape(n_coup, m)
        j = int(np.argmax(np.max(np.abs(y_ev), axis=0)))
        s_pole = s_ev
        if n_coup == 1:
            rest = _remaining_scale(beta, float(y_ev[0, j]), s_ev, direction)
            if np.isfinite(rest):
                s_pole = s_ev + direction * rest
        raise LandauPoleError(
            f"Landau pole: the coupling starting from g={_fmt(y0[:, j])} at s={s_start:g} diverges at "
            f"s≈{s_pole:.10g} (|g| > {thr:.3g}), inside the requested range up to s={s_end:g}; "
            "shorten the scale range or restrict the couplings to the region where the flow stays finite",
            s_pole,
            y0[:, j],
            s_start,
        )
    out_y[~at_start] = y_out[:n_y].T.reshape(-1, n_coup, m)
    out_i[~at_start] = y_out[n_y:].T.reshape(-1, m)
    return out_y, out_i


def _solution_arrays(t, y, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``solve_ivp``'s ``t`` (k,) and ``y`` (n, k) as arrays: after a failed integration scipy leaves them as
    lists of pieces (possibly empty)."""
    if isinstance(t, list):
        t = np.hstack(t) if t else np.zeros(0)
    if isinstance(y, list):
        y = np.hstack(y) if y else np.zeros((n, 0))
    return np.asarray(t, dtype=float), np.asarray(y, dtype=float).reshape(n, -1)


def _fmt(v: np.ndarray) -> str:
    v = np.atleast_1d(v)
    return f"{v[0]:.6g}" if v.size == 1 else "(" + ", ".join(f"{x:.6g}" for x in v) + ")"
