"""Largest eigenvalue of symmetric operators known only through products, for many operators at once.

``lanczos_max(matvec, v0, m)`` runs the Lanczos iteration (the Krylov refinement of power iteration, whose
Ritz values converge much faster to the extreme eigenvalues) with full reorthogonalisation on n independent
symmetric P × P operators side by side: column q of every block belongs to operator q. It sees only arrays
and a callable, so any Hessian-vector product (finite differences, automatic differentiation) can drive it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def lanczos_max(matvec: Callable[[np.ndarray], np.ndarray], v0: np.ndarray, m: int) -> np.ndarray:
    """Largest (algebraic) eigenvalue of n symmetric operators, by ``m`` Lanczos steps.

    Parameters
    ----------
    matvec : callable
        ``matvec(V)`` with V of shape (P, n) returns (P, n): column q is operator q applied to V[:, q].
    v0 : (P, n) array
        Start vectors (any non-zero columns; normalised here).
    m : int
        Lanczos steps, at most P (m = P gives the exact extreme eigenvalue up to the error of ``matvec``).
        An operator whose Krylov space closes early (an invariant subspace) stops there.

    Returns
    -------
    (n,) array of the largest Ritz values; NaN for an operator whose products are not finite.
    """
    v = np.array(v0, dtype=np.float64)
    P, n = v.shape
    if n == 0:
        return np.zeros(0)
    m = max(1, min(int(m), P))
    v /= np.sqrt((v * v).sum(axis=0))
    V = np.zeros((m, P, n))
    alpha = np.zeros((m, n))
    beta = np.zeros((m, n))
    for j in range(m):
        V[j] = v
        w = np.array(matvec(v), dtype=np.float64)
        alpha[j] = (w * v).sum(axis=0)
        for _ in range(2):  # full reorthogonalisation, twice is enough (Kahan-Parlett)
            w -= np.einsum("jpn,jn->pn", V[: j + 1], np.einsum("jpn,pn->jn", V[: j + 1], w))
        b = np.sqrt((w * w).sum(axis=0))
        if j + 1 < m:
            beta[j] = b
            v = w / np.where(b > 0, b, 1.0)
    lam = np.empty(n)
    for q in range(n):
        k = m
        for j in range(m - 1):  # an invariant subspace was found: stop there
            if beta[j, q] <= 1e-12 * max(1.0, abs(alpha[: j + 1, q]).max()):
                k = j + 1
                break
        Tq = np.diag(alpha[:k, q]) + np.diag(beta[: k - 1, q], 1) + np.diag(beta[: k - 1, q], -1)
        if not np.all(np.isfinite(Tq)):  # an operator that is not finite (a diverging member): NaN
            lam[q] = np.nan
            continue
        lam[q] = np.linalg.eigvalsh(Tq)[-1]
    return lam
