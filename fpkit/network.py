"""Numpy forward passes of the ensemble's autoencoders (fpkit.ensemble's conventions: W_l of shape
(n_out, n_in), hidden layers use the activation, the output layer is linear, loss ½‖x̂ − x‖²), vectorised
over members. Used where a prediction needs network-level quantities that the trainer does not record:
per-sample gradients of a pair of W2 entries, and reconstruction errors of networks with replaced weights.
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
    linear (fpkit.ensemble's convention)."""
    act = _ACT[activation][0]
    names = _layers(weights)
    M = next(iter(weights.values())).shape[0]
    h = x if x.ndim == 3 else np.broadcast_to(x, (M,) + x.shape)
    outs = [h]
    for ell, name in enumerate(names):
        z = np.einsum("moi,mni->mno", weights[name], h)
        b = weights.get(f"b{ell + 1}")
        if b is not None:
            z = z + b[:, None, :]
        h = act(z) if ell < len(names) - 1 else z
        outs.append(h)
    return outs


def reconstruction_errors(weights: dict, x: np.ndarray, activation: str) -> np.ndarray:
    """Per-member mean reconstruction error ½‖x̂ − x‖² over the rows of x: (M,)."""
    xhat = forward(weights, x, activation)[-1]
    return 0.5 * np.mean(np.sum((xhat - x[None]) ** 2, axis=-1), axis=-1)


def w2_pair_gradient_covariance(weights: dict, x: np.ndarray, activation: str, pair: list[tuple],
                                batch_size: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Full-batch gradient (M, 2) and covariance of the iid minibatch-mean gradient (M, 2, 2) of two W2 entries.

    Per-sample gradients of W2[a, b] are δ2[a]·z1[b] with δ2 = (W3ᵀ(x̂ − x)) ⊙ act′(z2); the minibatch-mean
    covariance is the per-sample covariance over the data divided by B (iid indices).
    """
    if any(n.startswith("b") for n in weights):
        raise ConfigError("the 2-D pair analysis supports networks without biases")
    h = forward(weights, x, activation)
    z1, z2, xhat = h[1], h[2], h[-1]
    delta3 = xhat - x[None]
    delta2 = np.einsum("mno,moi->mni", delta3, weights["W3"]) * _ACT[activation][1](z2)
    per = np.stack([delta2[:, :, a] * z1[:, :, b] for a, b in pair], axis=-1)  # (M, n, 2)
    g = per.mean(axis=1)
    dev = per - g[:, None, :]
    cov = np.einsum("mni,mnj->mij", dev, dev) / per.shape[1] / batch_size
    return g, cov
