"""The per-member random numbers of a training run, drawn exactly as the numba trainer draws them.

Every member owns one xoroshiro128+ stream (``fpkit.solvers.random``; state (2, M), member m's stream is
``seed_streams(derive_seed(seed, 1), M)[m]``). Per optimiser step the numba trainer takes from it, in this
order: the minibatch indices of each gradient evaluation (one batch; SVAG: two per inner step, ``svag_l``
inner steps) and then, for SGLD, one standard normal per parameter (polar method, in pairs, parameters in
flat order). ``draw_plan`` replays that sequence for a block of steps with the trainer's own index and
normal routines, so a torch ensemble with the same seed sees the numba trainer's minibatches and noise.
"""

from __future__ import annotations

import numpy as np

from ..solvers import autoencoder as _ae
from ..solvers._numba import kernel

_LANES = _ae.LANES
_draw_indices = _ae._draw_indices
_normal_pair = _ae._normal_pair


# Serial on purpose: the work is small (B indices per member and step). (Being the bridge's first parallel
# kernel, it also used to start numba's OpenMP layer, which overwrote torch's intra-op thread count; the
# layer's start now restores it: fpkit.solvers._numba.)
@kernel
def draw_plan(rng, perm, n, B, sampling, step0, idx, noise):
    """Fill ``idx`` (K, nb, B, M) and ``noise`` (K, Pn, M) for K steps from step ``step0``, in place.

    ``rng`` (2, M) uint64 stream states and ``perm`` (M, n) int32 epoch permutations (sampling "epochs",
    else (1, 1)) are advanced. nb = batches per step (0 for full batch: nothing drawn); Pn = 0 unless
    SGLD. ``sampling`` is a ``fpkit.solvers.autoencoder.SAMPLE_*`` code.
    """
    K, nb = idx.shape[0], idx.shape[1]
    M = rng.shape[1]
    Pn = noise.shape[1]
    n_blocks = (M + _LANES - 1) // _LANES
    for blk in range(n_blocks):
        m0 = blk * _LANES
        nl = min(_LANES, M - m0)
        rs = np.zeros((2, _LANES), dtype=np.uint64)
        buf = np.zeros((max(B, 1), _LANES), dtype=np.int64)
        for l in range(nl):
            rs[0, l] = rng[0, m0 + l]
            rs[1, l] = rng[1, m0 + l]
        for s in range(K):
            for q in range(nb):
                _draw_indices(rs, nl, n, B, sampling, perm, m0, step0 + s, buf)
                for b in range(B):
                    for l in range(nl):
                        idx[s, q, b, m0 + l] = buf[b, l]
            for l in range(nl):
                p = 0
                while p < Pn:
                    a, c = _normal_pair(rs, l)
                    noise[s, p, m0 + l] = a
                    if p + 1 < Pn:
                        noise[s, p + 1, m0 + l] = c
                    p += 2
        for l in range(nl):
            rng[0, m0 + l] = rs[0, l]
            rng[1, m0 + l] = rs[1, l]
