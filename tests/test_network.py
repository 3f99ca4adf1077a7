"""fpkit.network's forward pass (stacked matmul) and reconstruction errors on blocks of members: against a
per-member matrix-product loop (shared and per-member inputs, biases, every activation), and independent of
the block size."""

from __future__ import annotations

import numpy as np
import pytest

from fpkit import network
from fpkit.errors import ConfigError


@pytest.mark.parametrize("activation, act", [("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0.0)),
                                             ("linear", lambda z: z)])  # fmt: skip
def test_reconstruction_errors_in_blocks(monkeypatch, activation, act):
    rng = np.random.default_rng(4)
    M, n = 23, 17
    w = {"W1": rng.normal(size=(M, 3, 6)), "W2": rng.normal(size=(M, 4, 3)), "W3": rng.normal(size=(M, 6, 4))}
    x = rng.normal(size=(n, 6))
    ref = np.array([0.5 * np.mean(np.sum((act(act(x @ w["W1"][m].T) @ w["W2"][m].T) @ w["W3"][m].T - x) ** 2, 1))
                    for m in range(M)])  # fmt: skip
    whole = network.reconstruction_errors(w, x, activation)
    np.testing.assert_allclose(whole, ref, rtol=1e-13)
    monkeypatch.setattr(network, "CHUNK_BYTES", 8 * 6 * n * 5)  # blocks of 5 members: 5 + 5 + 5 + 5 + 3
    np.testing.assert_array_equal(network.reconstruction_errors(w, x, activation), whole)
    with pytest.raises(ConfigError, match="`x`"):
        network.reconstruction_errors(w, x[None], activation)


@pytest.mark.parametrize("activation, act", [("tanh", np.tanh), ("relu", lambda z: np.maximum(z, 0.0)),
                                             ("linear", lambda z: z)])  # fmt: skip
@pytest.mark.parametrize("per_member", [False, True])
def test_forward_matches_a_per_member_loop_with_biases(activation, act, per_member):
    # every layer's activations against the contraction written out member by member (x Wᵀ + b, the
    # activation on hidden layers only), for inputs shared by the members and one set per member
    rng = np.random.default_rng(7)
    M, n, sizes = 9, 13, [5, 4, 2, 5]
    w = {}
    for ell in range(1, len(sizes)):
        w[f"W{ell}"] = rng.normal(size=(M, sizes[ell], sizes[ell - 1]))
        w[f"b{ell}"] = rng.normal(size=(M, sizes[ell]))
    x = rng.normal(size=(M, n, sizes[0]) if per_member else (n, sizes[0]))
    outs = network.forward(w, x, activation)
    assert len(outs) == len(sizes)
    for m in range(M):
        h = x[m] if per_member else x
        np.testing.assert_array_equal(outs[0][m], h)
        for ell in range(1, len(sizes)):
            z = h @ w[f"W{ell}"][m].T + w[f"b{ell}"][m]
            h = act(z) if ell < len(sizes) - 1 else z
            assert outs[ell].shape == (M, n, sizes[ell])
            np.testing.assert_allclose(outs[ell][m], h, rtol=1e-13, atol=1e-13)


def test_members_are_independent_of_the_block_they_are_computed_in(monkeypatch):
    # the default run's shapes (8 -> 3 -> 3 -> 8), biases on: a member's error is bit-identical whether it is
    # computed alone, in blocks of 7 or with all members (at these sizes one GEMM over all members' rows,
    # (M·3, 8) @ (8, n), would not be: OpenBLAS splits it differently)
    rng = np.random.default_rng(11)
    M, n = 300, 1000
    w = {"W1": rng.normal(size=(M, 3, 8)), "W2": rng.normal(size=(M, 3, 3)), "W3": rng.normal(size=(M, 8, 3)),
         "b1": rng.normal(size=(M, 3)), "b3": rng.normal(size=(M, 8))}  # fmt: skip
    x = rng.normal(size=(n, 8))
    monkeypatch.setattr(network, "CHUNK_BYTES", 8 * 8 * n * M)  # one block of all members
    whole = network.reconstruction_errors(w, x, "tanh")
    ref = [0.5 * np.mean(np.sum((np.tanh(np.tanh(x @ w["W1"][m].T + w["b1"][m]) @ w["W2"][m].T) @ w["W3"][m].T
                                 + w["b3"][m] - x) ** 2, 1)) for m in range(M)]  # fmt: skip
    np.testing.assert_allclose(whole, ref, rtol=1e-13)
    for members in (1, 7, 65):
        monkeypatch.setattr(network, "CHUNK_BYTES", 8 * 8 * n * members)
        np.testing.assert_array_equal(network.reconstruction_errors(w, x, "tanh"), whole)
    alone = [network.reconstruction_errors({k: v[m : m + 1] for k, v in w.items()}, x, "tanh")[0] for m in (0, 299)]
    np.testing.assert_array_equal(alone, whole[[0, 299]])
