"""Implicit time steppers for dp/dt = L(t) p with sparse L.

Each stepper is chosen by name and declares its order. Factorisations are cached by (step size, kind) while
the operator does not change, so a time-independent problem factorises once per distinct step size.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

ORDERS = {"explicit": 1, "implicit": 1, "crank-nicolson": 2, "bdf2": 2}
RANNACHER_STEPS = 2  # Crank-Nicolson steps replaced by 2 half-size backward-Euler steps each


class ImplicitStepper:
    """Backward Euler, Crank-Nicolson with a Rannacher start, and variable-step BDF2.

    Parameters
    ----------
    operator : callable
        ``operator(t) -> scipy.sparse matrix`` L at time t.
    time_dependent : bool
        If False, ``operator`` is called once and factorisations are reused.
    method : str
        ``"implicit"`` (backward Euler), ``"crank-nicolson"`` or ``"bdf2"``.
    """

    def __init__(self, operator: Callable[[float], sp.spmatrix], time_dependent: bool, method: str):
        self.operator = operator
        self.time_dependent = time_dependent
        self.method = method
        self._L = None if time_dependent else operator(0.0).tocsc()
        self._lu: dict = {}
        self._identity = None
        self.n_steps = 0
        self._prev: np.ndarray | None = None  # p at the previous step (BDF2)
        self._prev_dt: float | None = None

    def _op(self, t: float):
        return self._L if self._L is not None else self.operator(t).tocsc()

    def _solve(self, key, build, rhs):
        if self._L is None:  # time-dependent: nothing to reuse
            return spla.spsolve(build(), rhs)
        lu = self._lu.get(key)
        if lu is None:
            if len(self._lu) > 16:
                self._lu.clear()
            lu = self._lu[key] = spla.splu(build())
        return lu.solve(rhs)

    def _eye(self, n):
        if self._identity is None or self._identity.shape[0] != n:
            self._identity = sp.identity(n, format="csc")
        return self._identity

    def backward_euler(self, p, t, dt):
        L = self._op(t + dt)
        eye = self._eye(p.size)
        return self._solve(("be", dt), lambda: (eye - dt * L).tocsc(), p)

    def step(self, p: np.ndarray, t: float, dt: float) -> np.ndarray:
        """Advance ``p`` (flattened) from ``t`` to ``t + dt``."""
        eye = self._eye(p.size)
        if self.method == "implicit":
            new = self.backward_euler(p, t, dt)
        elif self.method == "crank-nicolson":
            if self.n_steps < RANNACHER_STEPS:
                half = self.backward_euler(p, t, 0.5 * dt)
                new = self.backward_euler(half, t + 0.5 * dt, 0.5 * dt)
            else:
                L0, L1 = self._op(t), self._op(t + dt)
                rhs = p + 0.5 * dt * (L0 @ p)
                new = self._solve(("cn", dt), lambda: (eye - 0.5 * dt * L1).tocsc(), rhs)
        elif self.method == "bdf2":
            if self._prev is None:
                new = self.backward_euler(p, t, dt)
            else:
                # variable-step BDF2 with ratio w = dt / dt_prev
                w = dt / self._prev_dt
                c0 = (1 + 2 * w) / (1 + w)
                rhs = (1 + w) * p - (w * w / (1 + w)) * self._prev
                L = self._op(t + dt)
                new = self._solve(("bdf2", dt, w), lambda: (c0 * eye - dt * L).tocsc(), rhs)
            self._prev, self._prev_dt = p, dt
        else:  # pragma: no cover - validated by the caller
            raise ValueError(self.method)
        self.n_steps += 1
        return new
