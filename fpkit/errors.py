"""Exceptions raised by fpkit.

Every error names the offending argument and, where one exists, the fix.
"""

from __future__ import annotations


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
    """

    def __init__(self, message: str, time: float | None = None):
        super().__init__(message)
        self.time = time


def check_choice(name: str, value: str, allowed) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ConfigError listing them."""
    if value not in allowed:
        raise ConfigError(f"`{name}` must be one of {sorted(allowed)}, got {value!r}")
    return value


def check_positive(name: str, value, *, strict: bool = True) -> float:
    """Return ``value`` as a float if it is finite and positive (non-negative if not strict)."""
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
