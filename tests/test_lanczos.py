"""fpkit.solvers.lanczos against numpy's dense eigensolver."""

import numpy as np
import pytest

from fpkit.solvers.lanczos import lanczos_max


def test_largest_eigenvalue_of_several_operators_at_once():
    rng = np.random.default_rng(0)
    P, n = 30, 4
    A = rng.standard_normal((n, P, P))
    A = A + A.transpose(0, 2, 1)

    def matvec(V):
        return np.einsum("qij,jq->iq", A, V)

    exact = np.array([np.linalg.eigvalsh(a)[-1] for a in A])
    np.testing.assert_allclose(lanczos_max(matvec, rng.standard_normal((P, n)), P), exact, rtol=1e-12)
    # a few steps already come close to the extreme eigenvalue (from below: Ritz values interlace)
    few = lanczos_max(matvec, rng.standard_normal((P, n)), 12)
    assert np.all(few <= exact + 1e-12) and np.all(few > exact - 0.5)


def test_invariant_subspace_stops_early_and_empty_input():
    u = np.linspace(1.0, 2.0, 10)[:, None]
    rank_one = lambda V: u @ (u.T @ V)  # noqa: E731  eigenvalue |u|², Krylov space of u closes after 1 step
    assert lanczos_max(rank_one, u + 0.0, 10)[0] == pytest.approx(float((u * u).sum()), rel=1e-14)
    assert lanczos_max(rank_one, np.zeros((10, 0)), 5).shape == (0,)
