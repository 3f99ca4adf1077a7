"""Users' Python callables compiled with numba, so that kernels can call them per point and per step.

A coefficient given as a plain Python function ``f(x, t)`` (or ``f(x, y, t)`` ...) is written for numpy
arrays, but most such functions are just as valid on scalars: arithmetic, ``math`` and numpy ufuncs
(``np.exp``, ``np.tanh``, ``np.sin`` ...), closures over numbers. ``compile_scalar`` tries
``numba.njit`` on the function with float64 arguments; when that works the kernels call the compiled
function from inside their loops instead of calling the Python function once per step over all points.

When it does not work (the function uses a dict, scipy or another array-only construct, returns an array, or is not a Python function at all) the caller falls back to its vectorised path and
``explain_fallback`` writes one log line (logger ``fpkit``, level WARNING, once per function definition)
saying why and how to make the function compile.

Caching: numba cannot put a compiled closure over a user's function in its on-disk cache safely (it does not
notice a changed global or a changed function the closure calls), so users' functions are compiled once per
process, ~0.1-0.5 s each; kernels that call them through function pointers stay cached. Within a process a
function object is compiled once; the compiled version is reused while the numbers it reads from its
closure cells and globals are unchanged (numba freezes them as constants).
"""

from __future__ import annotations

import logging
import re
import types as pytypes
import weakref

import numpy as np

log = logging.getLogger("fpkit")

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SIGNATURES: dict = {}
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_explained: set = set()


def _is_dispatcher(fn) -> bool:
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover - numba is a dependency
        return False
    return isinstance(fn, CPUDispatcher)


def _signature(n_args: int):
    if n_args not in _SIGNATURES:
        from numba import types

        _SIGNATURES[n_args] = (types.float64,) * n_args
    return _SIGNATURES[n_args]


def _frozen_values(fn) -> tuple | None:
    """What numba freezes into the compiled function besides its code: closure cells and the globals it
    names. Returns a hashable fingerprint, or None when one of them cannot be fingerprinted safely."""
    out = []
    cells = fn.__closure__ or ()
    for cell in cells:
        try:
            v = cell.cell_contents
        except ValueError:  # empty cell
            return None
        fp = _fingerprint(v)
        if fp is None:
            return None
        out.append(fp)
    names = set()
    stack = [fn.__code__]
    while stack:
        code = stack.pop()
        names.update(code.co_names)
        stack.extend(c for c in code.co_consts if isinstance(c, pytypes.CodeType))
    g = fn.__globals__
    for name in sorted(names):
        if name in g:
            fp = _fingerprint(g[name])
            if fp is None:
                return None
            out.append((name, fp))
    return tuple(out)


def _fingerprint(v):
    if isinstance(v, (bool, int, float, complex, str, type(None))):
        return (type(v).__name__, v)
    if isinstance(v, np.generic):
        return (v.dtype.str, v.item())
    if isinstance(v, np.ndarray):
        if v.size > 4096:
            return None
        return (v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, pytypes.ModuleType):
        return ("module", v.__name__)
    if isinstance(v, (pytypes.BuiltinFunctionType, np.ufunc)):
        return ("builtin", id(v))
    if isinstance(v, tuple):
        parts = tuple(_fingerprint(x) for x in v)
        return None if any(p is None for p in parts) else parts
    if _is_dispatcher(v):
        return ("dispatcher", id(v))
    if isinstance(v, pytypes.FunctionType):
        # a helper the function calls: compiled into it, so its own code and frozen values count too
        inner = _frozen_values(v)
        return None if inner is None else ("function", id(v.__code__), inner)
    return None


def compile_scalar(fn, n_args: int = 2):
    """Compile ``fn`` for float64 scalar arguments.

    Returns ``(dispatcher, None)`` (a numba dispatcher with the signature ``float64 x n_args -> number``) or
    ``(None, reason)`` with a one-line reason when it cannot be compiled.
    """
    if _is_dispatcher(fn):
        try:
            cres = fn.get_compile_result(_signature(n_args)) if hasattr(fn, "get_compile_result") else None
            if cres is None:
                fn.compile(_signature(n_args))
        except Exception as exc:
            return None, _reason(exc)
        return _check_return(fn, n_args)
    if not isinstance(fn, pytypes.FunctionType):
        return None, f"it is a {type(fn).__name__}, not a Python function"
    frozen = _frozen_values(fn)
    if frozen is not None:
        hit = _cache.get(fn)
        if hit is not None and hit[0] == frozen:
            return hit[1]
    result = _compile(fn, n_args)
    if frozen is not None:
        _cache[fn] = (frozen, result)
    return result


def _compile(fn, n_args):
    import numba

    try:
        disp = numba.njit(error_model="numpy", nogil=True)(_with_scalar_numpy(fn))
        disp.compile(_signature(n_args))
    except Exception as exc:
        return None, _reason(exc)
    return _check_return(disp, n_args)


class _ScalarNumpy(pytypes.ModuleType):
    """numpy as a scalar function sees it: the array-only helpers users write in vectorised coefficients
    (``np.where``, ``np.ones_like`` ...) replaced by their scalar meaning, everything else numpy's own."""


_scalar_np = None


def _scalar_numpy():
    global _scalar_np
    if _scalar_np is None:
        import numba

        mod = _ScalarNumpy("numpy")
        mod.__dict__.update({k: v for k, v in np.__dict__.items() if not k.startswith("__")})
        opts = dict(error_model="numpy", nogil=True, inline="always")
        mod.where = numba.njit(**opts)(lambda c, a, b: a if c else b)
        mod.ones_like = numba.njit(**opts)(lambda x: 1.0)
        mod.zeros_like = numba.njit(**opts)(lambda x: 0.0)
        mod.full_like = numba.njit(**opts)(lambda x, v: float(v))
        mod.clip = numba.njit(**opts)(lambda x, lo, hi: min(max(x, lo), hi))
        mod.asarray = numba.njit(**opts)(lambda x: x)
        _scalar_np = mod
    return _scalar_np


def _with_scalar_numpy(fn):
    """``fn`` with the numpy module among its globals replaced by ``_scalar_numpy()`` (same code, closure)."""
    g = fn.__globals__
    names = [k for k in fn.__code__.co_names if g.get(k) is np]
    if not names:
        return fn
    new_globals = dict(g)
    for k in names:
        new_globals[k] = _scalar_numpy()
    out = pytypes.FunctionType(fn.__code__, new_globals, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__qualname__ = fn.__qualname__
    return out


def _check_return(disp, n_args):
    from numba import types

    sig = _signature(n_args)
    for s in disp.nopython_signatures:
        if tuple(s.args) == sig:
            ret = s.return_type
            if isinstance(ret, (types.Float, types.Integer)) and not isinstance(ret, types.Boolean):
                return disp, None
            return None, f"on numbers it returns {ret}, not a number"
    return None, "numba compiled no float64 version"


def _reason(exc: Exception) -> str:
    text = _ANSI.sub("", str(exc))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    # numba's messages start with the pipeline stage; the informative line follows
    useful = [ln for ln in lines if not ln.startswith(("Failed in", "During:", "File ", "^"))]
    msg = (useful or lines or [type(exc).__name__])[0]
    return f"{type(exc).__name__}: {msg[:160]}"


def explain_fallback(name: str, fn, reason: str, where: str) -> None:
    """One log line (once per function definition and coefficient name) for a callable that runs vectorised."""
    key = (getattr(fn, "__code__", None) or id(fn), name)
    if key in _explained or getattr(fn, "vectorised_by_design", False):  # fpkit's own array callables
        return
    _explained.add(key)
    what = getattr(fn, "__qualname__", type(fn).__name__)
    log.warning(
        "`%s` (%s) runs on the slower vectorised path of %s: numba could not compile it (%s). To make it fast, "
        "write it for scalar arguments with arithmetic, math/numpy functions and numbers only (no dicts, scipy, "
        "array construction or reductions), or pass a numba.njit function or a Polynomial.",
        name, what, where, reason,
    )  # fmt: skip
