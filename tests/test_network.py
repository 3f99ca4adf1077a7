"""fpkit.network's reconstruction errors on blocks of members: against a per-member matrix-product loop, and
independent of the block size."""

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
