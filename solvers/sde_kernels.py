"""Numba kernels for ensembles of SDE paths: Euler-Maruyama, Milstein, stochastic Heun, BAOAB, alpha-stable.

Conventions (Itô, as everywhere in fpkit): dX = A(X, t) dt + sqrt(2 D(X, t)) dW, D the diffusion, never σ.

Every kernel advances all paths over one stretch of ``n_steps`` equal steps of size ``h`` (the stretch
between two recording times), in place, in parallel over paths. Path ``k`` draws its noise only from random
stream ``k`` (``fpkit.solvers.random``), so results are bit-identical for a seed whatever the thread count.

How coefficients are evaluated inside the time loop
---------------------------------------------------
A 1-D coefficient reaches a kernel as a *spec*, three arguments ``(mode, par, fn)``:

=========  ===========================================================================================
mode       value at (x, t)
=========  ===========================================================================================
CONST      ``par[0]``
POLY       the polynomial ``sum_i par[i] x**i`` by Horner's rule: exact, and as cheap as a table look-up
TABLE      ``par = [x_first, 1/dx, v_0, v_1, ...]``: linear interpolation between tabulated values on a
           uniform grid, held constant beyond the outer nodes (``Coefficient.at``'s convention)
FUNC       ``par[0] * fn(x, t)``: a user's numba function, called directly from the kernel
NUMERIC    derivative specs only: a central difference of the coefficient spec it belongs to
=========  ===========================================================================================

``fn`` is a numba *function pointer* (a ``cfunc`` of signature ``float64(float64, float64)``, see
``function_pointer``), not a dispatcher: a dispatcher argument would make numba compile a fresh
specialisation of every kernel for every user function and every process, and its on-disk cache would never
hit. Through a pointer, one compiled (and cached) kernel serves every function; the price is an indirect call
(a few ns) that LLVM cannot inline, paid only in FUNC mode. Constants, polynomials and tables are evaluated
inline. Plain Python callables come here compiled (``fpkit.solvers.callables``) when numba can compile them;
the others do not come here at all: ``integrate_vectorised`` takes one call per step over all paths instead.

Which kernel runs (``fpkit.sde.SDE`` picks; all give the same paths for a seed, bit for bit)
---------------------------------------------------------------------------------------------
* ``em_poly_free_stretch``: Euler-Maruyama, number or polynomial drift, constant D, no walls. Draws a chunk
  of normals for 32 paths (stream by stream, state in registers), then advances them with SIMD arithmetic:
  80-95 % of the generator's own rate (scripts/bench_sde.py).
* ``em_func_free_stretch``: the same layout for a user's compiled drift (a numba function, or a plain Python
  function compiled by ``fpkit.solvers.callables``): the drift is inlined into a per-function block routine
  (``block_function_pointer``) that the cached parallel driver calls once per block and chunk.
* ``em_additive_stretch``: Euler-Maruyama with constant D, any drift spec, walls.
* ``overdamped_stretch``: every overdamped case (Milstein, Heun, state-dependent D, alpha-stable noise).
* ``baoab_stretch``: underdamped Langevin.
"""

from __future__ import annotations

import math

import numba
import numba.extending
import numpy as np

from ._numba import kernel, prange
from .random import (
    draw_normals,
    draw_normals_serial,
    draw_stable,
    next_normal,
    next_stable,
    next_uniform,
    normal_step,
)
from .interp import interp_even_point
from .snapshot_stepping import _blend

CONST, POLY, TABLE, FUNC, NUMERIC = 0, 1, 2, 3, 4
NO_WALL, REFLECTING, ABSORBING, PERIODIC = 0, 1, 2, 3
EULER, MILSTEIN, HEUN = 0, 1, 2
ERR_NONFINITE, ERR_NEGATIVE_D = 1, 2

FN_SIGNATURE = "float64(float64, float64)"


# The one numba entry point outside ``kernel``: a C-callable function pointer, so that kernels taking it are
# compiled once and cached (see the module docstring). Same numerical flags as ``kernel``.
@numba.cfunc(FN_SIGNATURE, cache=True, error_model="numpy")
def _no_function(x, t):
    return 0.0


NO_FUNCTION = _no_function


def function_pointer(fn):
    """Wrap a numba-jitted scalar function ``fn(x, t) -> float`` as a pointer the kernels can call.

    Compiled once per function and process (~0.1-0.3 s); the kernels themselves stay cached.
    """

    @numba.cfunc(FN_SIGNATURE, error_model="numpy")
    def wrapped(x, t):
        return fn(x, t)

    return wrapped


# --- coefficient evaluation ---------------------------------------------------------------------------------
@kernel
def coef(mode, par, fn, x, t):
    """Value of a coefficient spec at (x, t); see the module docstring for the modes."""
    if mode == CONST:
        return par[0]
    if mode == POLY:
        acc = par[par.shape[0] - 1]
        for i in range(par.shape[0] - 2, -1, -1):
            acc = acc * x + par[i]
        return acc
    if mode == TABLE:
        n = par.shape[0] - 2
        s = (x - par[0]) * par[1]
        if s <= 0.0:
            return par[2]
        if s >= n - 1:
            return par[n + 1]
        j = int(s)
        f = s - j
        return par[2 + j] + f * (par[3 + j] - par[2 + j])
    if mode == FUNC:
        # ``fn is None`` is resolved at compile time (numba prunes the branch on the argument's type), so
        # the kernels compiled without a function pointer carry no trace of the indirect call
        if fn is None:
            return math.nan
        return par[0] * fn(x, t)
    return math.nan


@kernel(inline="always")
def coef_inlined(mode, par, fn, x, t):
    """``coef``, inlined into the caller by numba: the hot Euler-Maruyama kernel runs ~2x faster with it
    (LLVM does not inline ``coef`` on its own), while the other kernels call ``coef`` and compile ~5x faster."""
    if mode == CONST:
        return par[0]
    if mode == POLY:
        acc = par[par.shape[0] - 1]
        for i in range(par.shape[0] - 2, -1, -1):
            acc = acc * x + par[i]
        return acc
    if mode == TABLE:
        n = par.shape[0] - 2
        s = (x - par[0]) * par[1]
        if s <= 0.0:
            return par[2]
        if s >= n - 1:
            return par[n + 1]
        j = int(s)
        f = s - j
        return par[2 + j] + f * (par[3 + j] - par[2 + j])
    if mode == FUNC:
        if fn is None:
            return math.nan
        return par[0] * fn(x, t)
    return math.nan


@kernel
def dcoef(dmode, dpar, dfn, mode, par, fn, x, t):
    """Derivative in x: its own spec, or (NUMERIC) a central difference of the spec ``(mode, par, fn)``."""
    if dmode != NUMERIC:
        return coef(dmode, dpar, dfn, x, t)
    # step ~ eps^(1/3) balances truncation O(h^2) and round-off O(eps/h)
    hx = 6.0e-6 * max(1.0, abs(x))
    return (coef(mode, par, fn, x + hx, t) - coef(mode, par, fn, x - hx, t)) / (2.0 * hx)


@kernel(parallel=True)
def eval_coef(mode, par, fn, x, t, out):
    """``out[k]`` = the coefficient spec at ``(x[k], t)``."""
    for k in prange(x.shape[0]):
        out[k] = coef(mode, par, fn, x[k], t)


# --- walls ----------------------------------------------------------------------------------------------------
@kernel
def fold(x, lo, hi):
    """Reflect ``x`` into [lo, hi] as often as needed (a jump may cross the domain more than once)."""
    if lo <= x <= hi:
        return x
    span = hi - lo
    if span == math.inf or lo == -math.inf or hi == math.inf:
        return 2.0 * hi - x if x > hi else 2.0 * lo - x
    y = (x - lo) % (2.0 * span)
    if y > span:
        y = 2.0 * span - y
    return lo + y


@kernel
def odd_reflections(x, lo, hi):
    """Whether folding ``x`` back into [lo, hi] takes an odd number of reflections (reverses a velocity)."""
    if lo <= x <= hi:
        return False
    if lo == -math.inf or hi == math.inf:
        return True
    return math.floor((x - lo) / (hi - lo)) % 2 != 0


@kernel
def wrap(x, lo, hi):
    """Periodic image of ``x`` in [lo, hi)."""
    if lo <= x < hi:
        return x
    return lo + (x - lo) % (hi - lo)


# --- overdamped integrators ----------------------------------------------------------------------------------
@kernel
def _bad_d(value):
    return value < 0.0 or not math.isfinite(value)


BLOCK = 8  # paths advanced in lockstep by one thread: independent chains the CPU overlaps (see below)


@kernel(parallel=True)
def overdamped_stretch(
    method, x, t_start, h, n_steps,
    a_mode, a_par, a_fn,
    d_mode, d_par, d_fn,
    dd_mode, dd_par, dd_fn,
    alpha, wall, lo, hi,
    state, absorbed_at, err_time, err_code,
):  # fmt: skip
    """Advance every live path ``x[k]`` by ``n_steps`` steps of size ``h`` from time ``t_start``.

    ``method``: EULER (Euler-Maruyama; with ``alpha < 2`` an alpha-stable increment (D h)^(1/alpha) S instead
    of sqrt(2 D h) ξ), MILSTEIN (adds ½ D'(x) (ΔW² - h), since b b' = D' for b = sqrt(2D)), or HEUN (predictor-
    corrector on the equivalent Stratonovich SDE, drift A - ½ D', so it converges to the same Itô process).
    Dead paths (absorbed or failed, x = NaN) are skipped. A path whose state turns non-finite, or meets a
    negative D, is stopped with ``err_time`` = the time at the end of that step and ``err_code`` set.
    Absorbed paths get ``absorbed_at`` = the end of the step that crossed the wall and x = NaN.

    One step of one path is a chain of dependent floating-point operations (~15 cycles of latency) while the
    random numbers come at ~3 ns each: a thread therefore steps a block of BLOCK paths in lockstep, so the
    chains of different paths overlap. Each path still uses only its own stream and its own operations, so
    the result does not depend on the blocking or the thread count.
    """
    n = x.shape[0]
    sqh = math.sqrt(h)
    d_const = d_mode == CONST
    b_const = math.sqrt(2.0 * d_par[0]) if d_const else 0.0
    stable = alpha < 2.0
    inv_alpha = 1.0 / alpha
    n_blocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        k0 = blk * BLOCK
        k1 = min(k0 + BLOCK, n)
        for j in range(n_steps):
            t = t_start + j * h
            for k in range(k0, k1):
                xk = x[k]
                if not math.isfinite(xk):
                    continue  # absorbed or failed
                a = coef(a_mode, a_par, a_fn, xk, t)
                if d_const:
                    d = d_par[0]
                    b = b_const
                else:
                    d = coef(d_mode, d_par, d_fn, xk, t)
                    if _bad_d(d):
                        err_time[k] = t + h
                        err_code[k] = ERR_NEGATIVE_D
                        x[k] = math.nan
                        continue
                    b = math.sqrt(2.0 * d)
                if stable:
                    xn = xk + a * h + (d * h) ** inv_alpha * next_stable(state, k, alpha)
                else:
                    dw = sqh * next_normal(state, k)
                    if method == EULER:
                        xn = xk + a * h + b * dw
                    elif method == MILSTEIN:
                        dd = 0.0 if d_const else dcoef(dd_mode, dd_par, dd_fn, d_mode, d_par, d_fn, xk, t)
                        xn = xk + a * h + b * dw + 0.5 * dd * (dw * dw - h)
                    else:  # HEUN on the Stratonovich form: drift A - ½ D'
                        dd = 0.0 if d_const else dcoef(dd_mode, dd_par, dd_fn, d_mode, d_par, d_fn, xk, t)
                        as0 = a - 0.5 * dd
                        xp = xk + as0 * h + b * dw
                        t1 = t + h
                        a1 = coef(a_mode, a_par, a_fn, xp, t1)
                        if d_const:
                            b1 = b_const
                            dd1 = 0.0
                        else:
                            d1 = coef(d_mode, d_par, d_fn, xp, t1)
                            if _bad_d(d1):
                                err_time[k] = t1
                                err_code[k] = ERR_NEGATIVE_D
                                x[k] = math.nan
                                continue
                            b1 = math.sqrt(2.0 * d1)
                            dd1 = dcoef(dd_mode, dd_par, dd_fn, d_mode, d_par, d_fn, xp, t1)
                        xn = xk + 0.5 * (as0 + a1 - 0.5 * dd1) * h + 0.5 * (b + b1) * dw
                if not math.isfinite(xn):
                    err_time[k] = t + h
                    err_code[k] = ERR_NONFINITE
                    x[k] = math.nan
                    continue
                if wall != NO_WALL and not (lo <= xn <= hi):
                    if wall == REFLECTING:
                        xn = fold(xn, lo, hi)
                    elif wall == PERIODIC:
                        xn = wrap(xn, lo, hi)
                    else:
                        absorbed_at[k] = t + h
                        xn = math.nan
                x[k] = xn


@kernel(parallel=True)
def em_additive_stretch(
    x, t_start, h, n_steps,
    a_mode, a_par, a_fn,
    d, wall, lo, hi,
    state, absorbed_at, err_time, err_code,
):  # fmt: skip
    """Euler-Maruyama with a constant D (additive Gaussian noise): ``overdamped_stretch``'s EULER branch
    with every run-time choice that does not apply taken out of the loop (the benchmark's hot path; ~15 %
    faster). Same random draws and operations, so the same paths to the last bit."""
    n = x.shape[0]
    sqh = math.sqrt(h)
    b = math.sqrt(2.0 * d)
    n_blocks = (n + BLOCK - 1) // BLOCK
    for blk in prange(n_blocks):
        k0 = blk * BLOCK
        k1 = min(k0 + BLOCK, n)
        for j in range(n_steps):
            t = t_start + j * h
            for k in range(k0, k1):
                xk = x[k]
                if not math.isfinite(xk):
                    continue
                a = coef_inlined(a_mode, a_par, a_fn, xk, t)
                xn = xk + a * h + b * (sqh * next_normal(state, k))
                if not math.isfinite(xn):
                    err_time[k] = t + h
                    err_code[k] = ERR_NONFINITE
                    x[k] = math.nan
                    continue
                if wall != NO_WALL and not (lo <= xn <= hi):
                    if wall == REFLECTING:
                        xn = fold(xn, lo, hi)
                    elif wall == PERIODIC:
                        xn = wrap(xn, lo, hi)
                    else:
                        absorbed_at[k] = t + h
                        xn = math.nan
                x[k] = xn


CHUNK = 32  # steps whose normals a block draws at once, before it advances its paths through them
WIDE_BLOCK = 32  # paths per block there: the arithmetic runs across the block in SIMD lanes


@kernel
def _fill_chunk(state, k0, m, s, z):
    """``z[j, k]`` = normal ``j`` of stream ``k0 + k`` for j < s, k < m: stream by stream with its state in
    registers (1.85x the rate of drawing step by step across the streams, measured side by side), the same
    numbers in the same order as ``next_normal``."""
    for k in range(m):
        s0 = state[k0 + k, 0]
        s1 = state[k0 + k, 1]
        for j in range(s):
            z[j, k], s0, s1 = normal_step(s0, s1)
        state[k0 + k, 0] = s0
        state[k0 + k, 1] = s1


@kernel
def _em_poly_scalar(x, k, t_start, h, n_steps, c, b, sqh, state, err_time, err_code):
    """Path ``k`` through ``n_steps`` steps of ``em_poly_free_stretch``, one at a time (replays, dead paths)."""
    xk = x[k]
    if not math.isfinite(xk):
        return
    nc = c.shape[0]
    for j in range(n_steps):
        t = t_start + j * h
        a = c[nc - 1]
        for i in range(nc - 2, -1, -1):
            a = a * xk + c[i]
        xk = xk + a * h + b * (sqh * next_normal(state, k))
        if not math.isfinite(xk):
            err_time[k] = t + h
            err_code[k] = ERR_NONFINITE
            xk = math.nan
            break
    x[k] = xk


@kernel(parallel=True)
def em_poly_free_stretch(x, t_start, h, n_steps, c, d, state, err_time, err_code):
    """Euler-Maruyama for a polynomial drift (coefficients ``c``, ascending), constant D and no walls.

    The common case, and the benchmark's, made faster than ``em_additive_stretch`` by splitting each stretch
    of CHUNK steps of a block into (1) drawing the block's normals into a small buffer (the generator's own
    tight loop) and (2) advancing the block through them with branch-free arithmetic that LLVM vectorises
    across the block's paths. A non-finite value is looked for once per chunk; a block that has one replays
    the chunk path by path from the saved positions and stream states, so the failing step and its time
    are exact. Same draws and operations as ``em_additive_stretch``: the same paths to the last bit.
    """
    n = x.shape[0]
    sqh = math.sqrt(h)
    b = math.sqrt(2.0 * d)
    nc = c.shape[0]
    n_blocks = (n + WIDE_BLOCK - 1) // WIDE_BLOCK
    for blk in prange(n_blocks):
        k0 = blk * WIDE_BLOCK
        m = min(WIDE_BLOCK, n - k0)
        z = np.empty((CHUNK, WIDE_BLOCK))
        xb = np.empty(WIDE_BLOCK)
        acc = np.empty(WIDE_BLOCK)
        x_save = np.empty(WIDE_BLOCK)
        s_save = np.empty((WIDE_BLOCK, 2), dtype=np.uint64)
        healthy = True
        for k in range(m):
            xb[k] = x[k0 + k]
            healthy = healthy and math.isfinite(xb[k])
        if not healthy:  # dead paths at the start: step this block path by path
            for k in range(m):
                _em_poly_scalar(x, k0 + k, t_start, h, n_steps, c, b, sqh, state, err_time, err_code)
            continue
        j0 = 0
        failed = False
        while j0 < n_steps and not failed:
            s = min(CHUNK, n_steps - j0)
            for k in range(m):
                x_save[k] = xb[k]
                s_save[k, 0] = state[k0 + k, 0]
                s_save[k, 1] = state[k0 + k, 1]
            _fill_chunk(state, k0, m, s, z)
            for j in range(s):
                for k in range(m):
                    acc[k] = c[nc - 1]
                for i in range(nc - 2, -1, -1):
                    ci = c[i]
                    for k in range(m):
                        acc[k] = acc[k] * xb[k] + ci
                for k in range(m):
                    xb[k] = xb[k] + acc[k] * h + b * (sqh * z[j, k])
            bad = False
            for k in range(m):
                bad = bad or not math.isfinite(xb[k])
            if bad:
                for k in range(m):
                    if not math.isfinite(xb[k]):
                        x[k0 + k] = x_save[k]
                        state[k0 + k, 0] = s_save[k, 0]
                        state[k0 + k, 1] = s_save[k, 1]
                        _em_poly_scalar(
                            x, k0 + k, t_start + j0 * h, h, s, c, b, sqh, state, err_time, err_code
                        )
                        xb[k] = x[k0 + k]
                # the failed paths are NaN now; finish the stretch path by path
                for k in range(m):
                    x[k0 + k] = xb[k]
                for k in range(m):
                    _em_poly_scalar(x, k0 + k, t_start + (j0 + s) * h, h, n_steps - j0 - s, c, b, sqh, state,
                                    err_time, err_code)  # fmt: skip
                failed = True
            j0 += s
        if not failed:
            for k in range(m):
                x[k0 + k] = xb[k]


# --- Euler-Maruyama for a user's compiled drift: the hot loop inlined in a per-function block routine --------
BLOCK_FN_SIGNATURE = "void(uintp, uintp, int64, int64, float64, int64, float64, float64, float64, float64)"


@numba.extending.intrinsic
def _f64_pointer(typingctx, addr):
    """The address ``addr`` (an integer) as a float64 pointer, for ``numba.carray``."""
    sig = numba.types.CPointer(numba.types.float64)(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


def block_function_pointer(fn):
    """A C-callable routine that advances one block of ``em_func_free_stretch`` through one chunk of steps,
    with the user's numba function ``fn(x, t)`` inlined (so LLVM can vectorise it across the block's paths).

    Arguments: addresses of the block's positions (WIDE_BLOCK,) and normals (CHUNK, WIDE_BLOCK), the number
    of live paths ``m``, steps ``s``, the stretch's start time, the chunk's first step index ``j0``, ``h``,
    the drift's scale, b = sqrt(2D) and sqrt(h). Compiled per function and process (~0.3 s); the parallel
    driver that calls it through this pointer is compiled once and cached.
    """

    @numba.cfunc(BLOCK_FN_SIGNATURE, error_model="numpy", nogil=True)
    def advance(xb_addr, z_addr, m, s, t_start, j0, h, scale, b, sqh):
        xb = numba.carray(_f64_pointer(xb_addr), (WIDE_BLOCK,))
        z = numba.carray(_f64_pointer(z_addr), (CHUNK, WIDE_BLOCK))
        for j in range(s):
            t = t_start + (j0 + j) * h
            for k in range(m):
                xk = xb[k]
                xb[k] = xk + (scale * fn(xk, t)) * h + b * (sqh * z[j, k])

    return advance


@kernel
def _em_func_scalar(x, k, t_start, j0, h, n_steps, scale, fn, b, sqh, state, err_time, err_code):
    """Path ``k`` through steps ``j0 .. j0 + n_steps - 1`` of ``em_func_free_stretch``, one at a time."""
    xk = x[k]
    if not math.isfinite(xk):
        return
    for j in range(j0, j0 + n_steps):
        t = t_start + j * h
        xk = xk + (scale * fn(xk, t)) * h + b * (sqh * next_normal(state, k))
        if not math.isfinite(xk):
            err_time[k] = t + h
            err_code[k] = ERR_NONFINITE
            xk = math.nan
            break
    x[k] = xk


@kernel(parallel=True)
def em_func_free_stretch(x, t_start, h, n_steps, scale, fn, block_fn, d, state, err_time, err_code):
    """Euler-Maruyama for a user's compiled drift ``scale * fn(x, t)``, constant D, no walls.

    ``em_poly_free_stretch``'s layout: per block of WIDE_BLOCK paths and chunk of CHUNK steps, the normals are
    drawn into a buffer, then ``block_fn`` (``block_function_pointer(fn)``) advances the block through them.
    One indirect call per chunk and block, not per path-step. A non-finite value is looked for once per chunk;
    a block that has one replays the chunk path by path from the saved positions and stream states
    (``fn`` is the scalar pointer, ``function_pointer``), so the failing step and its time are exact.
    Same draws and operations as ``overdamped_stretch`` and the vectorised loop: the same paths up to the
    last bits in which the compiled function differs from its numpy form.
    """
    n = x.shape[0]
    sqh = math.sqrt(h)
    b = math.sqrt(2.0 * d)
    n_blocks = (n + WIDE_BLOCK - 1) // WIDE_BLOCK
    for blk in prange(n_blocks):
        k0 = blk * WIDE_BLOCK
        m = min(WIDE_BLOCK, n - k0)
        z = np.empty((CHUNK, WIDE_BLOCK))
        xb = np.zeros(WIDE_BLOCK)
        x_save = np.empty(WIDE_BLOCK)
        s_save = np.empty((WIDE_BLOCK, 2), dtype=np.uint64)
        healthy = True
        for k in range(m):
            xb[k] = x[k0 + k]
            healthy = healthy and math.isfinite(xb[k])
        if not healthy:
            for k in range(m):
                _em_func_scalar(x, k0 + k, t_start, 0, h, n_steps, scale, fn, b, sqh, state, err_time, err_code)
            continue
        j0 = 0
        failed = False
        while j0 < n_steps and not failed:
            s = min(CHUNK, n_steps - j0)
            for k in range(m):
                x_save[k] = xb[k]
                s_save[k, 0] = state[k0 + k, 0]
                s_save[k, 1] = state[k0 + k, 1]
            _fill_chunk(state, k0, m, s, z)
            block_fn(xb.ctypes.data, z.ctypes.data, m, s, t_start, j0, h, scale, b, sqh)
            bad = False
            for k in range(m):
                bad = bad or not math.isfinite(xb[k])
            if bad:
                for k in range(m):
                    if not math.isfinite(xb[k]):
                        x[k0 + k] = x_save[k]
                        state[k0 + k, 0] = s_save[k, 0]
                        state[k0 + k, 1] = s_save[k, 1]
                        _em_func_scalar(x, k0 + k, t_start, j0, h, s, scale, fn, b, sqh, state, err_time,
                                        err_code)  # fmt: skip
                        xb[k] = x[k0 + k]
                for k in range(m):
                    x[k0 + k] = xb[k]
                for k in range(m):
                    _em_func_scalar(x, k0 + k, t_start, j0 + s, h, n_steps - j0 - s, scale, fn, b, sqh, state,
                                    err_time, err_code)  # fmt: skip
                failed = True
            j0 += s
        if not failed:
            for k in range(m):
                x[k0 + k] = xb[k]


# --- underdamped Langevin: BAOAB --------------------------------------------------------------------------------
@kernel(parallel=True)
def baoab_stretch(
    x, v, t_start, h, n_steps,
    a_mode, a_par, a_fn,
    gamma, d_const, wall, lo, hi,
    state, absorbed_at, err_time, err_code,
):  # fmt: skip
    """BAOAB (Leimkuhler & Matthews 2013) for dx = v dt, dv = γA(x,t) dt - γ v dt + γ sqrt(2D) dW.

    Written with the overdamped drift A = F/(mγ) and D = kT/(mγ), so the force per mass is γA and
    kT/m = γD. B: v += (h/2) γA; A: x += (h/2) v; O: v = c1 v + c2 ξ with c1 = exp(-γh),
    c2 = sqrt(γD (1 - c1²)) (the exact OU velocity update); A; B. One force evaluation per step: the force at
    the end of a step is reused by the next. Reflecting walls mirror x and reverse v.
    """
    n = x.shape[0]
    c1 = math.exp(-gamma * h)
    c2 = math.sqrt(gamma * d_const * (1.0 - c1 * c1))
    hh = 0.5 * h
    for k in prange(n):
        xk = x[k]
        vk = v[k]
        if not math.isfinite(xk):
            continue
        f = gamma * coef(a_mode, a_par, a_fn, xk, t_start)
        for j in range(n_steps):
            t = t_start + j * h
            vk += hh * f
            xk += hh * vk
            vk = c1 * vk + c2 * next_normal(state, k)
            xk += hh * vk
            if wall != NO_WALL and not (lo <= xk <= hi):
                if wall == REFLECTING:
                    if odd_reflections(xk, lo, hi):
                        vk = -vk
                    xk = fold(xk, lo, hi)
                elif wall == PERIODIC:
                    xk = wrap(xk, lo, hi)
                else:
                    absorbed_at[k] = t + h
                    xk = math.nan
                    vk = math.nan
                    break
            f = gamma * coef(a_mode, a_par, a_fn, xk, t + h)
            vk += hh * f
            if not (math.isfinite(xk) and math.isfinite(vk)):
                err_time[k] = t + h
                err_code[k] = ERR_NONFINITE
                xk = math.nan
                vk = math.nan
                break
        x[k] = xk
        v[k] = vk


# --- draws for initial states -------------------------------------------------------------------------------
@kernel(parallel=True)
def draw_uniforms(state, out):
    """Fill row ``k`` of ``out`` (n_streams, m) with uniforms in (0, 1) from stream ``k``."""
    n, m = out.shape
    for k in prange(n):
        for j in range(m):
            out[k, j] = next_uniform(state, k)


# --- the vectorised fallback (and the plain-numpy reference) ----------------------------------------------------
PARALLEL_DRAWS = 1 << 15  # below this many paths per step a thread team costs more than it saves


@kernel
def _draw_stable_serial(state, alpha, out):
    for k in range(out.shape[0]):
        for j in range(out.shape[1]):
            out[k, j] = next_stable(state, k, alpha)


def _normals(state, out):
    (draw_normals if out.shape[0] >= PARALLEL_DRAWS else draw_normals_serial)(state, out)


def _stables(state, alpha, out):
    (draw_stable if out.shape[0] >= PARALLEL_DRAWS else _draw_stable_serial)(state, alpha, out)


def apply_walls_np(x, wall, lo, hi):
    """Vectorised walls on x (n,) or (n, d) with bounds broadcastable to x; returns (x, newly absorbed mask)."""
    lo = np.broadcast_to(lo, x.shape)
    hi = np.broadcast_to(hi, x.shape)
    out_ = ~((x >= lo) & (x <= hi)) & np.isfinite(x)
    absorbed = np.zeros(x.shape[0], bool)
    if wall == NO_WALL or not out_.any():
        return x, absorbed
    if wall == REFLECTING:
        span = hi - lo
        with np.errstate(invalid="ignore"):
            y = np.where(np.isfinite(span), (x - lo) % (2.0 * span), 0.0)
            y = np.where(y > span, 2.0 * span - y, y) + lo
            one_sided = np.where(x > hi, 2.0 * hi - x, 2.0 * lo - x)
        x = np.where(out_, np.where(np.isfinite(span), y, one_sided), x)
    elif wall == PERIODIC:
        x = np.where(out_, lo + (x - lo) % (hi - lo), x)
    else:
        absorbed = out_.reshape(x.shape[0], -1).any(axis=1)
    return x, absorbed


def odd_reflections_np(x, lo, hi):
    """Vectorised ``odd_reflections``."""
    lo = np.broadcast_to(lo, x.shape)
    hi = np.broadcast_to(hi, x.shape)
    outside = (x < lo) | (x > hi)
    finite = np.isfinite(lo) & np.isfinite(hi)
    with np.errstate(invalid="ignore", divide="ignore"):
        n = np.floor(np.where(finite, (x - lo) / (hi - lo), 1.0))
    return outside & (~finite | (np.abs(n) % 2 == 1))


def integrate_vectorised(method, x, t_start, h, n_steps, drift, diffusion, ddiffusion, alpha,
                         wall, lo, hi, state, absorbed_at, err_time, err_code):  # fmt: skip
    """The same schemes as ``overdamped_stretch`` with one numpy call per step over all paths.

    ``x`` has shape (n,) or (n, d) (diagonal D); ``drift(x, t)``, ``diffusion(x, t)`` and ``ddiffusion(x, t)``
    (∂_i D_ii, or None when D is constant) return arrays of x's shape. Path k draws its d numbers per step from
    stream k in axis order, as the kernels do, so for the same seed the two agree to round-off.
    """
    n = x.shape[0]
    d = 1 if x.ndim == 1 else x.shape[1]
    z = np.empty((n, d))
    sqh = np.sqrt(h)
    for j in range(n_steps):
        live = np.isfinite(x) if x.ndim == 1 else np.isfinite(x).all(axis=1)
        if not live.any():
            break
        every = bool(live.all())  # the common case: no copies of the state and positions
        idx = slice(None) if every else np.flatnonzero(live)
        xs = x if every else x[idx]
        st = state if every else state[idx]
        t = t_start + j * h
        with np.errstate(over="ignore", invalid="ignore"):  # blow-ups are reported as StabilityError
            a = drift(xs, t)
            dv = diffusion(xs, t)
        bad = (dv < 0) | ~np.isfinite(dv)
        bad = bad if bad.ndim == 1 else bad.any(axis=1)
        zs = z[: xs.shape[0]]
        if alpha < 2.0:
            _stables(st, alpha, zs)
        else:
            _normals(st, zs)
        if not every:
            state[idx] = st
        noise = zs[:, 0] if x.ndim == 1 else zs
        with np.errstate(invalid="ignore", over="ignore"):
            b = np.sqrt(2.0 * dv)
            if alpha < 2.0:
                xn = xs + a * h + (dv * h) ** (1.0 / alpha) * noise
            elif method == EULER:
                xn = xs + a * h + b * (sqh * noise)
            elif method == MILSTEIN:
                dw = sqh * noise
                dd = 0.0 if ddiffusion is None else ddiffusion(xs, t)
                xn = xs + a * h + b * dw + 0.5 * dd * (dw * dw - h)
            else:
                dw = sqh * noise
                dd = 0.0 if ddiffusion is None else ddiffusion(xs, t)
                as0 = a - 0.5 * dd
                xp = xs + as0 * h + b * dw
                a1 = drift(xp, t + h)
                d1 = diffusion(xp, t + h)
                bad1 = (d1 < 0) | ~np.isfinite(d1)
                bad |= bad1 if bad1.ndim == 1 else bad1.any(axis=1)
                dd1 = 0.0 if ddiffusion is None else ddiffusion(xp, t + h)
                xn = xs + 0.5 * (as0 + a1 - 0.5 * dd1) * h + 0.5 * (b + np.sqrt(2.0 * d1)) * dw
        nonfinite = ~np.isfinite(xn)
        nonfinite = nonfinite if nonfinite.ndim == 1 else nonfinite.any(axis=1)
        fail = bad | nonfinite
        ids = np.arange(n) if every else idx
        if fail.any():
            err_time[ids[fail]] = t + h
            err_code[ids[fail]] = np.where(bad[fail], ERR_NEGATIVE_D, ERR_NONFINITE)
        xn, absorbed = apply_walls_np(xn, wall, lo, hi)
        absorbed &= ~fail
        if absorbed.any():
            absorbed_at[ids[absorbed]] = t + h
        dead = fail | absorbed
        if dead.any():
            xn[dead] = np.nan
        x[idx] = xn
    return x


@kernel
def euler_snapshots_1d(x, t_start, h, n_steps, a_ts, a_vals, a_xs, d_ts, d_vals, d_xs, wall, lo, hi, state,
                       absorbed_at, err_time, err_code):  # fmt: skip
    """``integrate_vectorised``'s Euler-Maruyama (α = 2, 1-D) for a drift and a diffusion given as snapshot
    arrays (``fpkit.estimators.SnapshotInterpolator`` on uniform grids: values (S, n) at times ts, nodes xs),
    one path at a time: the arrays blended in time once per step (``snapshot_stepping._blend``), each path's
    A and D by ``interp_even_point`` and its normal from its own stream, then the numpy loop's formulas and
    walls in its order, so the same bits (the FP prediction's Langevin cross-check; ~30 numpy calls a step)."""
    n = x.shape[0]
    a_grid = np.empty(a_vals.shape[1])
    d_grid = np.empty(d_vals.shape[1])
    na, nd = a_xs.shape[0], d_xs.shape[0]
    a0, an = a_xs[0], a_xs[na - 1]
    d0, dn = d_xs[0], d_xs[nd - 1]
    a_inv = (na - 1) / (an - a0) if na > 1 else 0.0
    d_inv = (nd - 1) / (dn - d0) if nd > 1 else 0.0
    sqh = np.sqrt(h)
    for j in range(n_steps):
        live = False
        for k in range(n):
            if math.isfinite(x[k]):
                live = True
                break
        if not live:
            break
        t = t_start + j * h
        _blend(t, a_ts, a_vals, a_grid)
        _blend(t, d_ts, d_vals, d_grid)
        for k in range(n):
            xk = x[k]
            if not math.isfinite(xk):
                continue
            a = interp_even_point(xk, a_xs, a_grid, a0, an, a_inv)
            dv = interp_even_point(xk, d_xs, d_grid, d0, dn, d_inv)
            bad = dv < 0 or not math.isfinite(dv)
            z = next_normal(state, k)
            b = np.sqrt(2.0 * dv)
            xn = xk + a * h + b * (sqh * z)
            fail = bad or not math.isfinite(xn)
            if fail:
                err_time[k] = t + h
                err_code[k] = ERR_NEGATIVE_D if bad else ERR_NONFINITE
            absorbed = False
            if wall != NO_WALL and math.isfinite(xn) and not (xn >= lo and xn <= hi):  # apply_walls_np
                if wall == REFLECTING:
                    span = hi - lo
                    if math.isfinite(span):
                        y = (xn - lo) % (2.0 * span)
                        if y > span:
                            y = 2.0 * span - y
                        xn = y + lo
                    else:
                        xn = 2.0 * hi - xn if xn > hi else 2.0 * lo - xn
                elif wall == PERIODIC:
                    xn = lo + (xn - lo) % (hi - lo)
                else:
                    absorbed = not fail
                    if absorbed:
                        absorbed_at[k] = t + h
            if fail or absorbed:
                xn = math.nan
            x[k] = xn
    return x


def baoab_vectorised(x, v, t_start, h, n_steps, drift, gamma, d_const, wall, lo, hi,
                     state, absorbed_at, err_time, err_code):  # fmt: skip
    """BAOAB with one numpy call per step (same update and random draws as ``baoab_stretch``)."""
    n = x.shape[0]
    d = 1 if x.ndim == 1 else x.shape[1]
    z = np.empty((n, d))
    c1 = np.exp(-gamma * h)
    c2 = np.sqrt(gamma * d_const * (1.0 - c1 * c1))
    hh = 0.5 * h
    live = np.isfinite(x) if x.ndim == 1 else np.isfinite(x).all(axis=1)
    idx = np.flatnonzero(live)
    f = gamma * drift(x[idx], t_start)
    for j in range(n_steps):
        if idx.size == 0:
            break
        t = t_start + j * h
        xs, vs, st = x[idx], v[idx], state[idx]
        zs = z[: idx.size]
        _normals(st, zs)
        state[idx] = st
        noise = zs[:, 0] if x.ndim == 1 else zs
        vs = vs + hh * f
        xs = xs + hh * vs
        vs = c1 * vs + c2 * noise
        xs = xs + hh * vs
        if wall == REFLECTING:
            flips = odd_reflections_np(xs, lo, hi)
            xs, _ = apply_walls_np(xs, wall, lo, hi)
            vs = np.where(flips, -vs, vs)
            absorbed = np.zeros(idx.size, bool)
        else:
            xs, absorbed = apply_walls_np(xs, wall, lo, hi)
        with np.errstate(invalid="ignore"):
            f = gamma * drift(xs, t + h)
        vs = vs + hh * f
        bad = ~(np.isfinite(xs) & np.isfinite(vs))
        bad = bad if bad.ndim == 1 else bad.any(axis=1)
        bad &= ~absorbed
        absorbed_at[idx[absorbed]] = t + h
        err_time[idx[bad]] = t + h
        err_code[idx[bad]] = ERR_NONFINITE
        dead = bad | absorbed
        xs[dead] = np.nan
        vs[dead] = np.nan
        x[idx], v[idx] = xs, vs
        keep = ~dead
        idx, f = idx[keep], f[keep]
    return x, v
