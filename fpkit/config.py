"""TOML problem descriptions for the command line (`fpkit solve`).

Coefficients in a file are numbers or numpy expressions in the coordinates ``x`` (``y``, ``z``) and time
``t``, e.g. ``drift = "-4*x*(x**2 - 1)"``; numpy's functions are available by name (``exp``, ``sin`` ...).
Example::

    [grid]
    lo = -6.0
    hi = 6.0
    n = 600
    [problem]
    drift = "-x"
    diffusion = 0.5
    bc = "reflecting"        # or "absorbing", "periodic"
    scheme = "exponential"   # or "central"
    [initial]
    mean = 1.0               # a Gaussian ...
    std = 0.2
    # density = "exp(-x**2)" # ... or any expression
    [solve]
    t_eval = [0.5, 1.0, 2.0]
    method = "crank-nicolson"
    dt = 0.001
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

_SCHEMA = {
    "grid": {"lo", "hi", "n"},
    "problem": {"drift", "diffusion", "bc", "scheme"},
    "initial": {"mean", "std", "density"},
    "solve": {"t_eval", "method", "dt", "t0"},
}
_NAMESPACE = {name: getattr(np, name) for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arctan", "abs", "sign", "pi", "where",
    "maximum", "minimum", "clip", "heaviside",
)}
_COORDS = ("x", "y", "z")


def load_toml(path) -> dict:
    """Read a TOML file, with a ConfigError naming the file on any problem."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {str(path)!r} does not exist")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid TOML: {exc}") from None


def check_keys(config: dict, schema: dict, where: str = "") -> None:
    """Raise a ConfigError for any section or key not in ``schema`` (dict of section -> allowed keys)."""
    for section, value in config.items():
        if section not in schema:
            raise ConfigError(f"unknown config section [{where}{section}]; valid: {sorted(schema)}")
        allowed = schema[section]
        if isinstance(allowed, dict):
            check_keys(value, allowed, f"{where}{section}.")
        elif isinstance(value, dict):
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"unknown key {key!r} in [{where}{section}]; valid: {sorted(allowed)}")


def expression(value: Any, name: str, ndim: int):
    """A number stays a number; a string becomes a vectorised callable f(x[, y, z], t)."""
    if not isinstance(value, str):
        return value
    args = _COORDS[:ndim] + ("t",)
    try:
        code = compile(value, f"<{name}>", "eval")
    except SyntaxError as exc:
        raise ConfigError(f"`{name}` expression {value!r} is not valid: {exc.msg}") from None
    unknown = set(code.co_names) - set(_NAMESPACE) - set(args)
    if unknown:
        raise ConfigError(f"`{name}` expression uses unknown names {sorted(unknown)}; allowed: {list(args)} and numpy functions")

    def f(*xs):
        return eval(code, {"__builtins__": {}}, dict(_NAMESPACE, **dict(zip(args, xs))))

    f.__qualname__ = value
    return f


def problem_from_config(cfg: dict):
    """Build (FokkerPlanck, p0, solve keyword arguments) from a parsed configuration."""
    from .fokker_planck import FokkerPlanck
    from .grid import Grid, gaussian

    check_keys(cfg, _SCHEMA)
    for section in ("grid", "problem", "solve"):
        if section not in cfg:
            raise ConfigError(f"config lacks the [{section}] section")
    g = cfg["grid"]
    grid = Grid.uniform(g.get("lo"), g.get("hi"), g.get("n"))
    pr = cfg["problem"]
    options = {key: pr[key] for key in ("bc", "scheme") if key in pr}  # else each solver's own default
    fp = FokkerPlanck(
        grid,
        drift=expression(pr.get("drift", 0.0), "drift", grid.ndim),
        diffusion=expression(pr.get("diffusion", 1.0), "diffusion", grid.ndim),
        **options,
    )
    ini = cfg.get("initial", {})
    if "density" in ini:
        dens = expression(ini["density"], "initial.density", grid.ndim)
        p0 = np.broadcast_to(dens(*grid.meshgrid(), 0.0), grid.shape).astype(float)
    else:
        p0 = gaussian(grid, ini.get("mean", 0.0), ini.get("std", 1.0))
    s = dict(cfg["solve"])
    if "t_eval" not in s:
        raise ConfigError("[solve] needs `t_eval`")
    return fp, p0, s


def cli_solve(args) -> int:
    cfg = load_toml(args.config)
    fp, p0, kwargs = problem_from_config(cfg)
    sol = fp.solve(p0, **kwargs)
    sol.meta["config"] = cfg
    sol.save(args.output)
    print(f"wrote {args.output}: {sol.t.size} times, mass {sol.mass()[-1]:.12f}")
    return 0
