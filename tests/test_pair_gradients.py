"""The compiled per-sample gradient moments of a W2 pair (solvers.pair_gradients via
fpkit.network.w2_pair_gradient_moments) against the plain numpy backprop they replaced, for every activation;
thread-count independence; bad input. (Against the trainer's own records and finite differences:
tests/test_claims.py.)"""

from __future__ import annotations

import numba
import numpy as np
import pytest

from fpkit.errors import ConfigError
from fpkit.network import w2_pair_gradient_covariance, w2_pair_gradient_moments

ACT = {"linear": (lambda z: z, lambda a: np.ones_like(a)), "tanh": (np.tanh, lambda a: 1 - a**2),
       "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(float))}  # fmt: skip


def numpy_reference(ws: dict, x, activation, pair, B):
    """The numpy einsum backprop that fpkit.network used before the kernel (one snapshot, all members)."""
    act, dact = ACT[activation]
    z1 = act(np.einsum("moi,ni->mno", ws["W1"], x))
    z2 = act(np.einsum("moi,mni->mno", ws["W2"], z1))
    xhat = np.einsum("moi,mni->mno", ws["W3"], z2)
    delta2 = np.einsum("mno,moi->mni", xhat - x[None], ws["W3"]) * dact(z2)
    per = np.stack([delta2[:, :, a] * z1[:, :, b] for a, b in pair], axis=-1)
    g = per.mean(axis=1)
    dev = per - g[:, None, :]
    return g, np.einsum("mni,mnj->mij", dev, dev) / per.shape[1] / B


def weights(S=3, M=7, d=5, k1=3, k2=4, seed=0):
    rng = np.random.default_rng(seed)  # k1 != k2 and d != both: an index mix-up changes shapes or values
    return {"W1": rng.normal(0, 0.7, (S, M, k1, d)), "W2": rng.normal(0, 0.8, (S, M, k2, k1)),
            "W3": rng.normal(0, 0.6, (S, M, d, k2))}  # fmt: skip


@pytest.mark.parametrize("activation", ["tanh", "relu", "linear"])
def test_kernel_matches_the_numpy_backprop(activation):
    w = weights()
    x = np.random.default_rng(1).standard_normal((37, 5))
    pair = [(3, 1), (0, 2)]
    members = np.array([5, 0, 2, 6])
    g, cov = w2_pair_gradient_moments(w, x, activation, pair, 8, members=members)
    assert g.shape == (3, 4, 2) and cov.shape == (3, 4, 2, 2)
    for s in range(3):
        gr, cr = numpy_reference({n: v[s][members] for n, v in w.items()}, x, activation, pair, 8)
        np.testing.assert_allclose(g[s], gr, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(cov[s], cr, rtol=1e-11, atol=1e-17)
    one_g, one_cov = w2_pair_gradient_covariance({n: v[1] for n, v in w.items()}, x, activation, pair, 8)
    np.testing.assert_array_equal(one_g[members], g[1])
    np.testing.assert_array_equal(one_cov[members], cov[1])


def test_results_do_not_depend_on_the_thread_count():
    w = weights(S=4, M=50)
    x = np.random.default_rng(2).standard_normal((64, 5))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = w2_pair_gradient_moments(w, x, "tanh", [(1, 1), (2, 0)], 4)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = w2_pair_gradient_moments(w, x, "tanh", [(1, 1), (2, 0)], 4)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one, many):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("change, word", [
    (lambda w: w.update(b1=np.zeros(w["W1"].shape[:3])), "biases"),
    (lambda w: w.pop("W3"), "two hidden layers"),
    (lambda w: None, "pair"),
])  # fmt: skip
def test_bad_input_names_the_problem(change, word):
    w = weights()
    change(w)
    pair = [(4, 0), (0, 0)] if word == "pair" else [(0, 0), (1, 1)]  # W2 has 4 rows: row 4 does not exist
    with pytest.raises(ConfigError, match=word):
        w2_pair_gradient_moments(w, np.ones((3, 5)), "tanh", pair, 4)
