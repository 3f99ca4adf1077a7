"""Independent random streams, one per path / realisation / ensemble member.

Each stream is a xoroshiro128+ generator whose two words of state are seeded by SplitMix64 from
``(seed, stream index)``. Streams never share state, so a kernel that gives stream ``k`` to item ``k``
produces bit-identical results for a seed whatever the number of threads.

State arrays have shape ``(n_streams, 2)`` and dtype uint64; kernels take the array and a row index.
Normals: ``next_normal_pair`` / ``fill_normals`` (Marsaglia polar method, in pairs) and the faster
ziggurat ``next_normal`` / ``draw_normals`` / ``draw_normals_row`` used by the SDE and KPZ kernels.
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


@kernel(inline="always")
def xoroshiro_step(s0, s1):
    """One xoroshiro128+ step on a state held in registers: returns ``(output, s0, s1)``.

    The ``*_row`` generators keep a stream's state in locals across a whole row (no array round trip per
    draw); ``next_u64`` is this step on row ``k`` of a state array, so both give the same sequence.
    """
    result = s0 + s1
    s1 ^= s0
    return result, _rotl(s0, 24) ^ s1 ^ (s1 << np.uint64(16)), _rotl(s1, 37)


@kernel
def next_u64(state, k):
    """Next 64-bit output of stream ``k`` (xoroshiro128+)."""
    result, state[k, 0], state[k, 1] = xoroshiro_step(state[k, 0], state[k, 1])
    return result


@kernel(inline="always")
def to_unit(u):
    """A uniform double in the open interval (0, 1) from the top 53 bits of the 64-bit ``u``."""
    return (np.float64(u >> np.uint64(11)) + 0.5) * _TO_UNIT


@kernel
def next_uniform(state, k):
    """A uniform double in the open interval (0, 1) from stream ``k``."""
    return to_unit(next_u64(state, k))


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


# --- fast normals (ziggurat) and symmetric alpha-stable variates -----------------------------------------
# Added for the SDE kernels; the functions above are unchanged. The polar method above costs a log, a sqrt
# and a division per pair; the ziggurat (Marsaglia & Tsang 2000, 256 layers, the 52-bit variant numpy uses)
# needs one 64-bit draw and one table look-up for 99.3 % of its normals, which is what makes an
# Euler-Maruyama step cheap enough to run near the random-number limit.

_ZIG_R = 3.6541528853610088  # right edge of the base layer
# area of each layer: R f(R) + the Gaussian tail beyond R, with f(x) = exp(-x^2 / 2)
_ZIG_V = 0.004928673233974658


def _ziggurat_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layer tables ``ki`` (acceptance bounds, int64), ``wi`` (widths / 2^52) and ``fi`` (f at layer edges)."""
    m = 2.0**52
    dn = tn = _ZIG_R
    ki = np.zeros(256, np.int64)
    wi = np.zeros(256)
    fi = np.zeros(256)
    q = _ZIG_V / np.exp(-0.5 * dn * dn)
    ki[0] = int((dn / q) * m)
    wi[0], wi[255] = q / m, dn / m
    fi[0], fi[255] = 1.0, np.exp(-0.5 * dn * dn)
    for i in range(254, 0, -1):
        dn = np.sqrt(-2.0 * np.log(_ZIG_V / dn + np.exp(-0.5 * dn * dn)))
        ki[i + 1] = int((dn / tn) * m)
        tn = dn
        fi[i] = np.exp(-0.5 * dn * dn)
        wi[i] = dn / m
    return ki, wi, fi


_ZIG_KI, _ZIG_WI, _ZIG_FI = _ziggurat_tables()  # frozen into the compiled kernels as constants
_MASK52 = np.uint64(0x000FFFFFFFFFFFFF)


@kernel(inline="always")
def normal_step(s0, s1):
    """One standard normal (ziggurat) from a state held in registers: returns ``(value, s0, s1)``.

    One 64-bit draw in 99.3 % of calls: the low 8 bits pick the layer, the next bit the sign, the next 52
    the position inside the layer.
    """
    while True:
        r, s0, s1 = xoroshiro_step(s0, s1)
        idx = np.int64(r & np.uint64(0xFF))
        r = r >> np.uint64(8)
        negative = (r & np.uint64(1)) != np.uint64(0)
        rabs = np.int64((r >> np.uint64(1)) & _MASK52)
        x = rabs * _ZIG_WI[idx]
        if rabs < _ZIG_KI[idx]:
            return (-x if negative else x), s0, s1
        if idx == 0:  # the tail beyond R (Marsaglia's exponential method)
            while True:
                u1, s0, s1 = xoroshiro_step(s0, s1)
                u2, s0, s1 = xoroshiro_step(s0, s1)
                xx = -np.log(to_unit(u1)) / _ZIG_R
                yy = -np.log(to_unit(u2))
                if yy + yy > xx * xx:
                    return (-(_ZIG_R + xx) if negative else _ZIG_R + xx), s0, s1
        u1, s0, s1 = xoroshiro_step(s0, s1)
        if _ZIG_FI[idx] + to_unit(u1) * (_ZIG_FI[idx - 1] - _ZIG_FI[idx]) < np.exp(-0.5 * x * x):
            return (-x if negative else x), s0, s1  # in the wedge under the curve (x * x: sign-free)


@kernel(inline="always")
def next_normal(state, k):
    """One standard normal from stream ``k`` (ziggurat; one 64-bit draw in 99.3 % of calls)."""
    z, state[k, 0], state[k, 1] = normal_step(state[k, 0], state[k, 1])
    return z


@kernel
def draw_normals_row(state, k, out):
    """Fill the 1-D array ``out`` with ziggurat normals from stream ``k``, in order (the numbers of
    ``next_normal``; the state stays in registers meanwhile, which is what makes a row fill fast)."""
    s0 = state[k, 0]
    s1 = state[k, 1]
    for j in range(out.shape[0]):
        out[j], s0, s1 = normal_step(s0, s1)
    state[k, 0] = s0
    state[k, 1] = s1


@kernel(parallel=True)
def draw_normals(state, out):
    """Fill row ``k`` of ``out`` (n_streams, m) with ziggurat normals from stream ``k``, in order."""
    for k in prange(out.shape[0]):
        draw_normals_row(state, k, out[k])


@kernel
def draw_normals_serial(state, out):
    """``draw_normals`` in the calling thread (same numbers): no parallel region for few streams."""
    for k in range(out.shape[0]):
        draw_normals_row(state, k, out[k])


@kernel
def next_stable(state, k, alpha):
    """A standard symmetric alpha-stable variate from stream ``k`` (Chambers-Mallows-Stuck 1976).

    Its characteristic function is exp(-|u|^alpha): at alpha = 2 it is N(0, 2), at alpha = 1 a standard
    Cauchy variate. Uses two uniforms: V = pi (u1 - 1/2) and W = -log(u2).
    """
    v = np.pi * (next_uniform(state, k) - 0.5)
    w = -np.log(next_uniform(state, k))
    if alpha == 1.0:
        return np.tan(v)
    cv = np.cos(v)
    return (np.sin(alpha * v) / cv ** (1.0 / alpha)) * (np.cos(v - alpha * v) / w) ** ((1.0 - alpha) / alpha)


@kernel(parallel=True)
def draw_stable(state, alpha, out):
    """Fill row ``k`` of ``out`` (n_streams, m) with symmetric alpha-stable variates from stream ``k``."""
    n, m = out.shape
    for k in prange(n):
        for j in range(m):
            out[k, j] = next_stable(state, k, alpha)
