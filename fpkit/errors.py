"""Exceptions raised by fpkit.

Every error names the offending argument and, where one exists, the fix.
"""

from __future__ import annotations

import numpy as np


class FpkitError(Exception):
    """Base class of all fpkit errors."""


class ConfigError(FpkitError, ValueError):
    """Bad input: a wrong value, shape, type, name or combination of arguments."""


class StabilityError(FpkitError, ArithmeticError):
    """A solution turned non-finite or a step violated its stability bound.

    Attributes
    ----------
    time : float or None
        The model time at which the problem was detected.

    Parameters
    ----------
    message : str
        What went wrong, in words.
    time : float, optional
        See Attributes.
    """

    def __init__(self, message: str, time: float | None = None):
        super().__init__(message)
        self.time = time


class FileFormatError(ConfigError):
    """A file given as input cannot be read as what it should be: missing, empty, truncated, damaged, another
    format or another kind of result. ``path`` names the file.

    Parameters
    ----------
    message : str
        What is wrong with the file.
    path : str or Path, optional
        The file.
    """

    def __init__(self, message: str, path=None):
        super().__init__(message)
        self.path = None if path is None else str(path)


class OutputError(FpkitError, OSError):
    """An output cannot be written: the path is unusable (a folder, an input, not writable) or writing failed
    (no space left, I/O error). The previous file at ``path``, if any, is left unchanged.

    Parameters
    ----------
    message : str
        What could not be written and why.
    path : str or Path, optional
        The output.
    errno_ : int, optional
        The operating system's error number (``errno``), stored as ``errno``.
    """

    def __init__(self, message: str, path=None, errno_: int | None = None):
        super().__init__(message)
        self.path = None if path is None else str(path)
        self.errno = errno_


class LandauPoleError(ConfigError):
    """A running coupling (a characteristic) diverges at a finite scale inside the requested range.

    Attributes
    ----------
    s_pole : float
        The scale at which the coupling diverges, measured in the direction of integration from ``s_start``
        (an estimate good to the integration tolerance in 1-D; the first scale past the divergence threshold
        with several couplings).
    g_start : ndarray
        The coupling(s) the diverging characteristic started from.
    s_start : float
        The scale it started at.

    Parameters
    ----------
    message : str
        What diverged, in words.
    s_pole, g_start, s_start
        See Attributes.
    """

    def __init__(self, message: str, s_pole: float, g_start, s_start: float = 0.0):
        super().__init__(message)
        self.s_pole = float(s_pole)
        self.g_start = np.asarray(g_start, dtype=float)
        self.s_start = float(s_start)


def check_choice(name: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ConfigError listing them.

    Parameters
    ----------
    name : str
        The argument's name (for the message).
    value : str
        The given value.
    allowed : collection of str
        The accepted values.

    Returns
    -------
    str
        ``value``.
    """
    if value not in allowed:
        raise ConfigError(f"`{name}` must be one of {sorted(allowed)}, got {value!r}")
    return value


def check_positive(name: str, value, *, strict: bool = True) -> float:
    """Return ``value`` as a float if it is finite and positive (non-negative if not strict).

    Parameters
    ----------
    name : str
        The argument's name (for the message).
    value : number
        The given value.
    strict : bool
        Refuse 0 as well.

    Returns
    -------
    float
        ``value``.
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"`{name}` must be a number, got {value!r}") from None
    if not (v == v and abs(v) != float("inf")):
        raise ConfigError(f"`{name}` must be finite, got {value!r}")
    if (strict and v <= 0) or (not strict and v < 0):
        bound = "> 0" if strict else ">= 0"
        raise ConfigError(f"`{name}` must be {bound}, got {value!r}")
    return v


def check_seed(value, name: str = "seed") -> int:
    """Return ``value`` as an int if it is an integer >= 0 (not a bool, float or string), else a ConfigError.

    Parameters
    ----------
    value : int
        The given seed.
    name : str
        The argument's name (for the message).

    Returns
    -------
    int
        ``value``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"`{name}` must be an integer >= 0, got {value!r}")
    return int(value)


def check_times(t_eval, t0: float = 0.0, *, strict: bool = True) -> np.ndarray:
    """Return output times ``t_eval`` as a 1-D float array, checked against the start time ``t0``.

    They must be non-empty, finite, increasing (strictly, unless ``strict=False``: repeats allowed) and
    start at or after ``t0``, a finite number; otherwise a ConfigError names `t_eval` (or `t0`).

    Parameters
    ----------
    t_eval : float or sequence of float
        Output times (units of the problem's t).
    t0 : float
        The start time.
    strict : bool
        Require strictly increasing times.

    Returns
    -------
    array (T,)
        The times.
    """
    try:
        t0 = float(t0)
    except (TypeError, ValueError):
        raise ConfigError(f"`t0` must be a number, got {t0!r}") from None
    if not np.isfinite(t0):
        raise ConfigError(f"`t0` must be finite, got {t0!r}")
    try:
        t = np.atleast_1d(np.asarray(t_eval, dtype=float))
    except (TypeError, ValueError):
        raise ConfigError(f"`t_eval` must be a sequence of numbers, got {t_eval!r}") from None
    order = "strictly increasing" if strict else "non-decreasing"
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ConfigError(f"`t_eval` must be a non-empty 1-D sequence of finite, {order} times")
    steps = np.diff(t)
    if np.any(steps <= 0) if strict else np.any(steps < 0):
        raise ConfigError(f"`t_eval` must be {order}, got {t.tolist()[:8]}")
    if t[0] < t0:
        raise ConfigError(f"`t_eval` starts at {t[0]}, before t0={t0}")
    return t
