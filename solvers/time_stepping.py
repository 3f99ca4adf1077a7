"""Time stepping: the output-time driver of every solver, and implicit steppers for dp/dt = L(t) p.

``advance_to_outputs`` steps a state from output time to output time (equal steps no longer than dt in
each interval, recording at each output time); ``stepwise`` turns a one-step map into its ``advance``.

Each stepper is chosen by name and declares its order. L is a scipy sparse matrix or, for 1-D problems
without periodic wrap, a ``Tridiagonal`` (banded solves, no sparse assembly). Factorisations are cached by
step kind and size while L does not change, so a time-independent problem factorises once per distinct
step size; for a time-dependent L the last two operators are remembered (Crank-Nicolson's L(t + dt) is the
next step's L(t)).
"""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np
import scipy.linalg as sla
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from ..errors import ConfigError, StabilityError
from ._numba import kernel

ORDERS = {"explicit": 1, "implicit": 1, "crank-nicolson": 2, "bdf2": 2}
RANNACHER_STEPS = 2  # Crank-Nicolson steps replaced by 2 half-size backward-Euler steps each


@kernel
def n_substeps(interval: float, dt: float) -> int:
    """Number of equal steps no longer than ``dt`` that cover ``interval`` (at least one).

    The relative 1e-12 slack keeps an interval that is a whole number of ``dt`` up to round-off from
    getting one extra step. Compiled, so that the compiled steppers (``snapshot_stepping``) cut intervals
    by the same rule.
    """
    n = interval / dt * (1 - 1e-12)
    if not n < 9.2e18:  # NaN, inf (dt = 0) or beyond int64: int() would give garbage (one step), not an error
        raise ConfigError("`dt` must be positive and finite, and an interval must take fewer than 2**63 steps")
    return max(1, int(np.ceil(n)))


def advance_to_outputs(
    state,
    t_eval,
    advance: Callable,
    record: Callable,
    *,
    t0: float = 0.0,
    dt: float | Callable[[float, float], float] | None = None,
    max_steps: int | None = None,
    check: Callable | None = None,
    bar=None,
) -> int:
    """Advance ``state`` from ``t0`` through the output times ``t_eval`` and record it at each; the one output
    loop of every time-stepping solver.

    Each interval between consecutive output times is cut into the fewest equal steps ``h`` no longer than the
    largest step (``n_substeps``), so outputs fall on step ends. Returns the total number of steps.

    Parameters
    ----------
    state
        Whatever ``advance`` steps (an array updated in place or replaced).
    t_eval : 1-D array
        Non-decreasing output times ≥ ``t0``; an interval of length zero records without stepping.
    advance : callable
        ``advance(state, t, h, n) -> state``: n steps of size h from time t (``stepwise`` builds one from a
        single-step map).
    record : callable
        ``record(k, state)`` at the k-th output time, e.g. ``out.__setitem__`` to copy it into ``out[k]``.
    dt : float, callable or None
        The largest step: a number, ``dt(t_from, t_to)`` chosen per interval, or None (one step per
        interval).
    max_steps : int, optional
        At most this many steps per ``advance`` call (the chunk after c steps starts at ``t + c·h``), so a
        progress bar moves and failures surface within long intervals.
    check : callable, optional
        ``check(state, t_to)`` after each interval, e.g. ``require_finite(message)``.
    bar : optional
        A progress bar (``update(time)``), advanced by the model time each ``advance`` call covers.

    Examples
    --------
    Samples carried along dw/dt = A(w, t) by RK4 (``rk4(x, t, h) -> x``), recorded at the times ``t``:

    >>> out = np.empty((t.size, x0.size))
    >>> advance_to_outputs(x0.copy(), t, stepwise(rk4), out.__setitem__, t0=t[0], dt=dt)  # doctest: +SKIP
    """
    t = t0
    total = 0
    for k, target in enumerate(t_eval):
        interval = target - t
        if interval > 0:
            step = dt(t, target) if callable(dt) else dt
            n = 1 if step is None else n_substeps(interval, step)
            h = interval / n
            done = 0
            while done < n:
                m = n if max_steps is None else min(max_steps, n - done)
                state = advance(state, t + done * h, h, m)
                done += m
                if bar is not None:
                    bar.update(m * h)
            total += n
            t = target
            if check is not None:
                check(state, t)
        record(k, state)
    return total


def require_finite(message: str) -> Callable:
    """A ``check`` for ``advance_to_outputs`` that raises ``StabilityError(message.format(t=t), time=t)`` once
    the state has a non-finite value."""

    def check(state, t):
        if not np.all(np.isfinite(state)):
            raise StabilityError(message.format(t=t), time=t)

    return check


def stepwise(step: Callable) -> Callable:
    """An ``advance`` for ``advance_to_outputs`` from a one-step map ``step(state, t, h) -> state``."""

    def advance(state, t, h, n):
        for i in range(n):
            state = step(state, t + i * h, h)
        return state

    return advance


@functools.lru_cache(maxsize=None)
def _gtsv(*dtypes):
    """LAPACK's tridiagonal solver for arrays of these dtypes."""
    (gtsv,) = sla.get_lapack_funcs(("gtsv",), tuple(np.empty(1, dtype=t) for t in dtypes))
    return gtsv


class Tridiagonal:
    """A tridiagonal operator: (L p)_i = lower_i p_{i-1} + diag_i p_i + upper_i p_{i+1}."""

    def __init__(self, lower: np.ndarray, diag: np.ndarray, upper: np.ndarray):
        self.lower, self.diag, self.upper = lower, diag, upper  # lower[0] and upper[-1] are unused

    def __matmul__(self, p: np.ndarray) -> np.ndarray:
        out = self.diag * p
        out[1:] += self.lower[1:] * p[:-1]
        out[:-1] += self.upper[:-1] * p[1:]
        return out

    def shifted_solve(self, c0: float, coef: float, rhs: np.ndarray) -> np.ndarray:
        """Solve (c0 I − coef L) x = rhs (LAPACK gtsv, partial pivoting).

        Calls gtsv directly, as ``scipy.linalg.solve_banded((1, 1), ...)`` does for a tridiagonal matrix (the
        same routine on the same diagonals: identical results), without its validation and copies: a 1-D
        time-dependent solve takes thousands of these small steps."""
        if self.diag.size == 1:
            return rhs / (c0 - coef * self.diag)
        dl = -coef * self.lower[1:]
        d = c0 - coef * self.diag
        du = -coef * self.upper[:-1]
        gtsv = _gtsv(d.dtype, np.result_type(rhs))
        _, _, _, x, info = gtsv(dl, d, du, rhs, True, True, True, False)
        if info > 0:
            raise np.linalg.LinAlgError("singular matrix")
        if info < 0:  # pragma: no cover - the arguments are built here
            raise ValueError(f"illegal value in the {-info}-th argument of gtsv")
        return x

    def tocsc(self):
        n = self.diag.size
        return sp.diags([self.lower[1:], self.diag, self.upper[:-1]], [-1, 0, 1], shape=(n, n), format="csc")


class ImplicitStepper:
    """Backward Euler, Crank-Nicolson with a Rannacher start, and variable-step BDF2.

    Parameters
    ----------
    operator : callable
        ``operator(t)`` -> L at time t (sparse matrix or ``Tridiagonal``).
    time_dependent : bool
        If False, ``operator`` is called once and factorisations are reused.
    method : str
        ``"implicit"`` (backward Euler), ``"crank-nicolson"`` or ``"bdf2"``.
    """

    def __init__(self, operator: Callable[[float], object], time_dependent: bool, method: str):
        self.operator = operator
        self.time_dependent = time_dependent
        self.method = method
        self._L = None if time_dependent else self._prepare(operator(0.0))
        self._recent: dict = {}
        self._lu: dict = {}
        self.n_steps = 0
        self._prev: np.ndarray | None = None  # p at the previous step (BDF2)
        self._prev_dt: float | None = None

    @staticmethod
    def _prepare(L):
        return L if isinstance(L, Tridiagonal) else L.tocsc()

    def _op(self, t: float):
        if self._L is not None:
            return self._L
        if t not in self._recent:
            if len(self._recent) >= 2:
                self._recent.pop(next(iter(self._recent)))
            self._recent[t] = self._prepare(self.operator(t))
        return self._recent[t]

    def _shifted_solve(self, key, c0: float, coef: float, L, rhs: np.ndarray) -> np.ndarray:
        """Solve (c0 I − coef L) x = rhs, reusing the factorisation when L is fixed."""
        if isinstance(L, Tridiagonal):
            return L.shifted_solve(c0, coef, rhs)
        build = lambda: (c0 * sp.identity(L.shape[0], format="csc") - coef * L).tocsc()  # noqa: E731
        if self._L is None:
            # a new matrix at every step (time-dependent coefficients): minimum degree on AᵀA + A suits the
            # structurally symmetric FP stencils (a 48² pair step 8.2 -> 4.8 ms, 128² 79 -> 54 ms; SuperLU's
            # default COLAMD), same partial pivoting: the solution changes only by round-off (~1e-15)
            return spla.spsolve(build(), rhs, permc_spec="MMD_AT_PLUS_A")
        lu = self._lu.get(key)
        if lu is None:
            if len(self._lu) > 16:
                self._lu.clear()
            lu = self._lu[key] = spla.splu(build())
        return lu.solve(rhs)

    def backward_euler(self, p, t, dt):
        return self._shifted_solve(("be", dt), 1.0, dt, self._op(t + dt), p)

    def step(self, p: np.ndarray, t: float, dt: float) -> np.ndarray:
        """Advance ``p`` (flattened) from ``t`` to ``t + dt``."""
        if self.method == "implicit":
            new = self.backward_euler(p, t, dt)
        elif self.method == "crank-nicolson":
            if self.n_steps < RANNACHER_STEPS:
                half = self.backward_euler(p, t, 0.5 * dt)
                new = self.backward_euler(half, t + 0.5 * dt, 0.5 * dt)
            else:
                rhs = p + 0.5 * dt * (self._op(t) @ p)
                new = self._shifted_solve(("cn", dt), 1.0, 0.5 * dt, self._op(t + dt), rhs)
        elif self.method == "bdf2":
            if self._prev is None:
                new = self.backward_euler(p, t, dt)
            else:
                # variable-step BDF2 with ratio w = dt / dt_prev
                w = dt / self._prev_dt
                rhs = (1 + w) * p - (w * w / (1 + w)) * self._prev
                new = self._shifted_solve(("bdf2", dt, w), (1 + 2 * w) / (1 + w), dt, self._op(t + dt), rhs)
            self._prev, self._prev_dt = p, dt
        else:  # pragma: no cover - validated by the caller
            raise ValueError(self.method)
        self.n_steps += 1
        return new
