"""Numpy forward passes of the ensemble's autoencoders (fpkit.ensemble's conventions: W_l of shape
(n_out, n_in), hidden layers use the activation, the output layer is linear, loss ½‖x̂ − x‖²), vectorised
over members. Used where a prediction needs network-level quantities that the trainer does not record:
per-sample gradients of a pair of W2 entries (their moments in a compiled kernel, ``solvers.pair_gradients``),
and reconstruction errors of networks with replaced weights.
"""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

_ACT = {
    "linear": (lambda z: z, lambda a: np.ones_like(a)),
    "tanh": (np.tanh, lambda a: 1 - a**2),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(float)),
}


def _layers(weights: dict) -> list[str]:
    return sorted((n for n in weights if n.startswith("W")), key=lambda n: int(n[1:]))


def forward(weights: dict, x: np.ndarray, activation: str) -> list[np.ndarray]:
    """Activations of every layer for each member: weights[name] (M, out, in), x (n, d) shared by the members
    or (M, n, d) one set per member -> list of (M, n, ·). Hidden layers use ``activation``, the output layer is
    linear (fpkit.ensemble's convention).

    Each layer is one stacked ``np.matmul`` (M, n, in) @ (M, in, out): numpy calls BLAS once per member, so a
    member's activations come from the same operations whichever other members are in the call (shared x is
    broadcast, not copied). About 4× faster than the contraction written with ``np.einsum`` (its single-threaded
    C loop, 2000 members × 1000 inputs); the two agree to rounding (a different summation order)."""
    act = _ACT[activation][0]
    names = _layers(weights)
    h = np.asarray(x)
    outs = [h if h.ndim == 3 else np.broadcast_to(h, (next(iter(weights.values())).shape[0],) + h.shape)]
    for ell, name in enumerate(names):
        z = np.matmul(h, np.swapaxes(weights[name], 1, 2))
        b = weights.get(f"b{ell + 1}")
        if b is not None:
            z = z + b[:, None, :]
        h = act(z) if ell < len(names) - 1 else z
        outs.append(h)
    return outs


CHUNK_BYTES = 4 * 2**20
"""``reconstruction_errors`` works on blocks of members whose widest activation array stays below this (smaller
blocks stay in cache: 4 MiB was ~15 % faster than 16 MiB on the default run's shapes)."""


def reconstruction_errors(weights: dict, x: np.ndarray, activation: str) -> np.ndarray:
    """Per-member mean reconstruction error ½‖x̂ − x‖² over the rows of x: (M,).

    Computed on blocks of members (``CHUNK_BYTES``), without (M, n, width) activations of all members at once
    (2000 members × 1000 inputs: 0.3 GB); every member's value is the same whatever block it is in
    (``forward``: one BLAS product per member).
    """
    x = np.asarray(x)
    if x.ndim != 2:
        raise ConfigError(f"`x` must have shape (n, d), got {x.shape}")
    M = next(iter(weights.values())).shape[0]
    width = max([x.shape[1]] + [weights[n].shape[1] for n in _layers(weights)])
    block = max(1, CHUNK_BYTES // (8 * width * max(x.shape[0], 1)))
    out = np.empty(M)
    for m0 in range(0, M, block):
        xhat = forward({n: v[m0 : m0 + block] for n, v in weights.items()}, x, activation)[-1]
        err = (xhat - x).reshape(xhat.shape[0], 1, -1)
        # Σ over inputs and coordinates as one dot product per member (a sum over the short last axis is 6×
        # slower in numpy), then the mean over the inputs
        out[m0 : m0 + block] = 0.5 * np.matmul(err, err.transpose(0, 2, 1))[:, 0, 0] / x.shape[0]
    return out


def w2_pair_gradient_moments(weights: dict, x: np.ndarray, activation: str, pair: list[tuple], batch_size: int,
                             members=None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Full-batch gradient (S, m, 2) and covariance of the iid minibatch-mean gradient (S, m, 2, 2) of two W2
    entries, at every snapshot of ``weights`` (name -> (S, M, out, in), fpkit.ensemble's layout) for the
    members ``members`` (indices into M, default all), over the rows of ``x`` (n, d).

    Per-sample gradients of W2[a, b] are δ2[a]·z1[b] with δ2 = (W3ᵀ(x̂ − x)) ⊙ act′(z2); the minibatch-mean
    covariance is the per-sample covariance over the data divided by B (iid indices). One compiled kernel
    over all (snapshot, member) pairs (``solvers.pair_gradients``), parallel over them.
    """
    from .solvers.pair_gradients import ACTIVATIONS, w2_pair_moments

    if any(n.startswith("b") for n in weights):
        raise ConfigError("the 2-D pair analysis supports networks without biases")
    if _layers(weights) != ["W1", "W2", "W3"]:
        raise ConfigError(f"the 2-D pair analysis supports autoencoders with two hidden layers (W1, W2, W3), "
                          f"got {_layers(weights)}")  # fmt: skip
    if activation not in ACTIVATIONS:
        raise ConfigError(f"`activation` must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
    W1, W2, W3 = (np.ascontiguousarray(weights[n], dtype=np.float64) for n in ("W1", "W2", "W3"))
    S, M = W1.shape[:2]
    members = np.arange(M) if members is None else np.asarray(members, dtype=np.int64)
    if members.ndim != 1 or (members.size and (members.min() < 0 or members.max() >= M)):
        raise ConfigError(f"`members` must be indices into the {M} members")
    pair = np.asarray(pair, dtype=np.int64)
    k2, k1 = W2.shape[2:]
    if pair.shape != (2, 2) or np.any(pair < 0) or np.any(pair[:, 0] >= k2) or np.any(pair[:, 1] >= k1):
        raise ConfigError(f"`pair` must be two (row, column) indices of W2 of shape {(k2, k1)}, got {pair.tolist()}")
    g = np.empty((S, members.size, 2))
    cov = np.empty((S, members.size, 2, 2))
    xT = np.ascontiguousarray(np.asarray(x, dtype=np.float64).T)  # samples contiguous: SIMD across them
    w2_pair_moments(W1, W2, W3, members, xT, ACTIVATIONS[activation], pair, g, cov)
    return g, cov / batch_size


def w2_pair_gradient_covariance(weights: dict, x: np.ndarray, activation: str, pair: list[tuple],
                                batch_size: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """``w2_pair_gradient_moments`` at one snapshot: weights name -> (M, out, in); returns the full-batch
    gradient (M, 2) and the covariance of the iid minibatch-mean gradient (M, 2, 2) of two W2 entries."""
    g, cov = w2_pair_gradient_moments({n: np.asarray(v)[None] for n, v in weights.items()}, x, activation, pair,
                                      batch_size)  # fmt: skip
    return g[0], cov[0]
