"""TOML problem descriptions for the command line (`fpkit solve`): the ``problem`` schema.

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

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from .config import Schema, invalid, load_toml, parse, register_schema
from .errors import ConfigError
from .fokker_planck import BOUNDARY_CONDITIONS, METHODS, SCHEMES

_NAMESPACE = {name: getattr(np, name) for name in (
    "exp", "log", "sqrt", "sin", "cos", "tan", "tanh", "sinh", "cosh", "arctan", "abs", "sign", "pi", "where",
    "maximum", "minimum", "clip", "heaviside",
)}  # fmt: skip
_COORDS = ("x", "y", "z")

Cells = Annotated[int, Field(ge=3)]
Coefficient = float | str | list[float | str]
Boundary = Literal[BOUNDARY_CONDITIONS]


class GridSection(Schema):
    """A uniform cell-centred finite-volume grid on [lo, hi] (1 to 3 axes)."""

    lo: float | list[float] = Field(description="lower edge of the domain; a list gives one per axis")
    hi: float | list[float] = Field(description="upper edge of the domain (> lo on every axis)")
    n: Cells | list[Cells] = Field(description="number of cells (per axis, or one for all axes)")


class ProblemSection(Schema):
    """The equation ∂t p = -∇·(A p) + ∇·∇·(D p) (Itô; SDE dX = A dt + √(2D) dW)."""

    drift: Coefficient = Field(0.0, description=(
        "drift A(x, t): a number or a numpy expression in x (y, z) and t such as \"-4*x*(x**2 - 1)\"; "
        "in d-D a list of d components"))  # fmt: skip
    diffusion: Coefficient = Field(1.0, description=(
        "diffusion D (not σ: dX = A dt + √(2D) dW), ≥ 0 (> 0 for scheme \"exponential\"): a number or an "
        "expression like drift; in d-D a list gives a diagonal D"))  # fmt: skip
    bc: Boundary | list[Boundary] = Field("reflecting", description=(
        "boundary condition, one for all axes or one per axis: zero flux, p = 0 on the wall, or periodic"))
    scheme: Literal[SCHEMES] = Field("exponential", description=(
        "flux discretisation: exponential fitting (Chang-Cooper / Scharfetter-Gummel: positive, exact Gibbs "
        "steady state) or central differences (comparison only; oscillates at cell Péclet > 2)"))


class InitialSection(Schema):
    """The initial density: a Gaussian (mean, std) or an expression (density); normalised to mass 1."""

    mean: float | list[float] = Field(0.0, description="mean of the Gaussian initial density (per axis)")
    std: Annotated[float, Field(gt=0)] | list[Annotated[float, Field(gt=0)]] = Field(
        1.0, description="standard deviation of the Gaussian initial density (per axis), > 0")
    density: str | None = Field(None, description=(
        "unnormalised initial density as an expression in x (y, z), e.g. \"exp(-x**2)\"; replaces the "
        "Gaussian (then leave mean and std out)"))

    @model_validator(mode="after")
    def _one_initial(self):
        if self.density is not None and self.model_fields_set & {"mean", "std"}:
            raise invalid("density", "give either `density` or the Gaussian's `mean`/`std`, not both")
        return self


class SolveSection(Schema):
    """Time stepping; time in the model's units."""

    t_eval: float | list[float] = Field(description="output times, increasing, ≥ t0")
    method: Literal[METHODS] = Field("crank-nicolson", description=(
        "time stepper: forward Euler (automatic stable dt), backward Euler, Crank-Nicolson with a Rannacher "
        "start, or variable-step BDF2"))
    dt: Annotated[float, Field(gt=0)] | None = Field(None, description=(
        "largest time step; unset: 0.9 × the positivity bound (explicit) or (t_end − t0)/400 (implicit)"))
    t0: float = Field(0.0, description="start time of the initial density")


class ProblemSchema(Schema):
    """A Fokker-Planck problem for `fpkit solve FILE -o OUT.h5` (sections grid, problem, initial, solve)."""

    grid: GridSection
    problem: ProblemSection
    initial: InitialSection = Field(default_factory=InitialSection)
    solve: SolveSection


register_schema("problem", ProblemSchema)


def expression(value: Any, name: str, ndim: int):
    """A number stays a number; a string becomes a vectorised callable f(x[, y, z], t).

    Only the coordinates, ``t`` and numpy's elementary functions are available; an expression that fails
    or does not give numbers raises a ConfigError naming ``name``.
    """
    if not isinstance(value, str):
        return value
    args = _COORDS[:ndim] + ("t",)
    try:
        code = compile(value, f"<{name}>", "eval")
    except SyntaxError as exc:
        raise ConfigError(f"`{name}` expression {value!r} is not valid: {exc.msg}") from None
    unknown = set(code.co_names) - set(_NAMESPACE) - set(args)
    if unknown:
        raise ConfigError(f"`{name}` expression {value!r} uses unknown names {sorted(unknown)}; "
                          f"allowed: {list(args)} and numpy functions")  # fmt: skip

    def f(*xs):
        try:
            out = eval(code, {"__builtins__": {}}, dict(_NAMESPACE, **dict(zip(args, xs))))
            np.asarray(out, dtype=float)  # numbers only (not e.g. a bare function name)
        except Exception as exc:  # any failure of the user's expression is bad input
            raise ConfigError(f"`{name}` expression {value!r} cannot be evaluated: {exc}") from None
        return out

    f.__qualname__ = value
    return f


def _coefficient(value, name: str, ndim: int):
    if isinstance(value, list):
        return [expression(v, f"{name}[{i}]", ndim) for i, v in enumerate(value)]
    return expression(value, name, ndim)


def problem_from_config(cfg: dict | ProblemSchema):
    """Build (FokkerPlanck, p0, solve keyword arguments) from a configuration dict (or parsed schema)."""
    from .fokker_planck import FokkerPlanck
    from .grid import Grid, gaussian

    spec = cfg if isinstance(cfg, ProblemSchema) else parse(ProblemSchema, cfg)
    grid = Grid.uniform(spec.grid.lo, spec.grid.hi, spec.grid.n)
    pr = spec.problem
    fp = FokkerPlanck(grid, drift=_coefficient(pr.drift, "problem.drift", grid.ndim),
                      diffusion=_coefficient(pr.diffusion, "problem.diffusion", grid.ndim),
                      bc=pr.bc, scheme=pr.scheme)  # fmt: skip
    ini = spec.initial
    if ini.density is not None:
        dens = expression(ini.density, "initial.density", grid.ndim)
        p0 = np.broadcast_to(dens(*grid.meshgrid(), 0.0), grid.shape).astype(float)
    else:
        p0 = gaussian(grid, ini.mean, ini.std)
    return fp, p0, spec.solve.model_dump(exclude_none=True)


def cli_solve(args) -> int:
    """``fpkit solve problem.toml -o out.h5``: the resolved configuration is stored in the results file."""
    spec = parse(ProblemSchema, load_toml(args.config))
    fp, p0, kwargs = problem_from_config(spec)
    sol = fp.solve(p0, **kwargs)
    sol.meta["config"] = spec.model_dump()
    sol.save(args.output)
    print(f"wrote {args.output}: {sol.t.size} times, mass {sol.mass()[-1]:.12f}")
    return 0
