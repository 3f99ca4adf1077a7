"""Per-sample gradients of two W2 entries of a bias-free autoencoder x → W3·act(W2·act(W1·x)), and their
full-batch mean and per-sample covariance, for every (snapshot, member) pair in one parallel kernel.

Layout (``fpkit.ensemble``'s): W1 (S, M, k1, d), W2 (S, M, k2, k1), W3 (S, M, d, k2); the loss of one sample
is ½‖x̂ − x‖². The per-sample gradient of W2[a, b] is δ2[a]·h1[b] with δ2 = (W3ᵀ(x̂ − x)) ⊙ act′(z2).
Activations: 0 linear, 1 tanh, 2 relu (act′ is taken from the activation's value: 1 − h², h > 0).
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel, prange
from .autoencoder import vtanh

ACTIVATIONS = {"linear": 0, "tanh": 1, "relu": 2}


@kernel
def _activate(h, code):
    """The hidden activation in place on pre-activations h (units, samples) (``vtanh``: 2 ulp, vectorisable)."""
    for o in range(h.shape[0]):
        if code == 1:
            for i in range(h.shape[1]):
                h[o, i] = vtanh(h[o, i])
        elif code == 2:
            for i in range(h.shape[1]):
                h[o, i] = max(h[o, i], 0.0)


@kernel
def _act_prime(h, code):
    """act′ at the pre-activation whose activation is ``h``."""
    if code == 1:
        return 1.0 - h * h
    if code == 2:
        return 1.0 if h > 0.0 else 0.0
    return 1.0


@kernel
def _layer(w, h_in, out):
    """out[o, i] = Σ_q w[o, q]·h_in[q, i] (summed in q order; samples i innermost, so SIMD across samples)."""
    n = h_in.shape[1]
    for o in range(w.shape[0]):
        for i in range(n):
            out[o, i] = 0.0
        for q in range(w.shape[1]):
            wq = w[o, q]
            for i in range(n):
                out[o, i] += wq * h_in[q, i]


@kernel(parallel=True)
def w2_pair_moments(W1, W2, W3, members, xT, act, pair, g, cov):
    """Full-batch mean g[s, j, :] and per-sample covariance cov[s, j, :, :] (1/n, two passes) of the per-sample
    gradients of W2[pair[0]] and W2[pair[1]] for member ``members[j]`` at snapshot s, over the n columns of
    ``xT`` (d, n) (the data, transposed so that samples are contiguous).

    prange over the S·len(members) independent (snapshot, member) items: results do not depend on the thread
    count."""
    S = W1.shape[0]
    m = members.shape[0]
    d, n = xT.shape
    k1 = W1.shape[2]
    k2 = W2.shape[2]
    a0, b0 = pair[0, 0], pair[0, 1]
    a1, b1 = pair[1, 0], pair[1, 1]
    for item in prange(S * m):
        s = item // m
        j = item - s * m
        mm = members[j]
        w3 = W3[s, mm]
        h1 = np.empty((k1, n))
        h2 = np.empty((k2, n))
        xh = np.empty((d, n))
        _layer(W1[s, mm], xT, h1)
        _activate(h1, act)
        _layer(W2[s, mm], h1, h2)
        _activate(h2, act)
        _layer(w3, h2, xh)
        d0 = np.zeros(n)
        d1 = np.zeros(n)
        for o in range(d):
            c0 = w3[o, a0]
            c1 = w3[o, a1]
            for i in range(n):
                r = xh[o, i] - xT[o, i]  # x̂ − x
                d0[i] += r * c0
                d1[i] += r * c1
        for i in range(n):  # the per-sample gradients, in place
            d0[i] = d0[i] * _act_prime(h2[a0, i], act) * h1[b0, i]
            d1[i] = d1[i] * _act_prime(h2[a1, i], act) * h1[b1, i]
        m0 = 0.0
        m1 = 0.0
        for i in range(n):
            m0 += d0[i]
            m1 += d1[i]
        m0 /= n
        m1 /= n
        c00 = 0.0
        c01 = 0.0
        c11 = 0.0
        for i in range(n):
            e0 = d0[i] - m0
            e1 = d1[i] - m1
            c00 += e0 * e0
            c01 += e0 * e1
            c11 += e1 * e1
        g[s, j, 0] = m0
        g[s, j, 1] = m1
        cov[s, j, 0, 0] = c00 / n
        cov[s, j, 0, 1] = c01 / n
        cov[s, j, 1, 0] = c01 / n
        cov[s, j, 1, 1] = c11 / n
