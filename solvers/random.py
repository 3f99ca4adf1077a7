"""Independent random streams, one per path / realisation / ensemble member.

Each stream is a xoroshiro128+ generator whose two words of state are seeded by SplitMix64 from
``(seed, stream index)``. Streams never share state, so a kernel that gives stream ``k`` to item ``k``
produces bit-identical results for a seed whatever the number of threads.

State arrays have shape ``(n_streams, 2)`` and dtype uint64; kernels take the array and a row index.
Normals come in pairs from the Marsaglia polar method (no trigonometric calls).
"""

from __future__ import annotations

import numpy as np

from ._numba import kernel, prange

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TO_UNIT = 1.0 / 9007199254740992.0  # 2**-53


@kernel
def splitmix64(x):
    """One SplitMix64 output for the 64-bit input ``x`` (a bijective mixer)."""
    z = x + _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@kernel
def _rotl(x, k):
    return (x << np.uint64(k)) | (x >> np.uint64(64 - k))


@kernel
def seed_streams_into(seed, first, state):
    """Fill ``state`` (n, 2) with the streams ``first, first + 1, ...`` of ``seed``."""
    base = splitmix64(np.uint64(seed))
    for i in range(state.shape[0]):
        key = splitmix64(base ^ splitmix64(np.uint64(first + i)))
        s0 = splitmix64(key)
        s1 = splitmix64(s0)
        if s0 == np.uint64(0) and s1 == np.uint64(0):  # the one forbidden state
            s1 = _GOLDEN
        state[i, 0] = s0
        state[i, 1] = s1


def seed_streams(seed: int, n: int, first: int = 0) -> np.ndarray:
    """State for ``n`` independent streams ``first .. first + n - 1`` of ``seed`` (shape (n, 2), uint64)."""
    state = np.empty((int(n), 2), dtype=np.uint64)
    seed_streams_into(np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF), np.int64(first), state)
    return state


@kernel
def next_u64(state, k):
    """Next 64-bit output of stream ``k`` (xoroshiro128+)."""
    s0 = state[k, 0]
    s1 = state[k, 1]
    result = s0 + s1
    s1 ^= s0
    state[k, 0] = _rotl(s0, 24) ^ s1 ^ (s1 << np.uint64(16))
    state[k, 1] = _rotl(s1, 37)
    return result


@kernel
def next_uniform(state, k):
    """A uniform double in the open interval (0, 1) from stream ``k``."""
    return (np.float64(next_u64(state, k) >> np.uint64(11)) + 0.5) * _TO_UNIT


@kernel
def next_normal_pair(state, k):
    """Two independent standard normals from stream ``k`` (Marsaglia polar method)."""
    while True:
        u = 2.0 * next_uniform(state, k) - 1.0
        v = 2.0 * next_uniform(state, k) - 1.0
        s = u * u + v * v
        if 0.0 < s < 1.0:
            f = np.sqrt(-2.0 * np.log(s) / s)
            return u * f, v * f


@kernel(parallel=True)
def fill_normals(state, out):
    """Fill row ``k`` of ``out`` (n_streams, m) with normals from stream ``k``."""
    n, m = out.shape
    for k in prange(n):
        j = 0
        while j + 1 < m:
            a, b = next_normal_pair(state, k)
            out[k, j] = a
            out[k, j + 1] = b
            j += 2
        if j < m:
            a, b = next_normal_pair(state, k)
            out[k, j] = a


def derive_seed(seed: int, *keys: int) -> int:
    """A 64-bit seed for a sub-task (e.g. data vs initialisation) derived from ``seed`` and ``keys``."""
    ss = np.random.SeedSequence(int(seed), spawn_key=tuple(int(k) for k in keys))
    return int(ss.generate_state(1, np.uint64)[0])
