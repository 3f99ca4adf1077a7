"""Hypothesis strategies and assertions for property-based tests of Fokker-Planck and SDE solvers.

The pieces fpkit's own tests use, public so that a user can test their own solver, estimator or model the
same way. Strategies draw problems that are smooth and well posed (a confining drift, a diffusion bounded
away from zero, a density well inside its grid), so that a failure points at the code under test, not at a
degenerate input. Assertions state their tolerance in the units of the quantity and say by how much a
check failed.

Needs hypothesis (``pip install "fpkit[test]"``); ``import fpkit`` itself never imports it.

Conventions are fpkit's: Itô calculus, SDE dX = A dt + √(2D) dW, so every ``diffusion`` is D (not σ);
densities on a grid satisfy ``sum(p) * cell_volume == 1``.

Examples
--------
>>> import numpy as np
>>> import fpkit
>>> from fpkit.testing import assert_mass_conserved, fit_order
>>> g = fpkit.Grid.uniform(-4.0, 4.0, 80)
>>> sol = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5).solve(
...     fpkit.gaussian(g, 1.0, 0.3), [0.5, 1.0])
>>> masses = assert_mass_conserved(sol, atol=1e-12)
>>> round(fit_order([0.1, 0.05, 0.025], [4e-3, 1e-3, 2.5e-4]), 6)
2.0

A property test (see docs/testing.md for a complete suite)::

    from hypothesis import given, settings
    from fpkit.testing import fp_problems, assert_mass_conserved, assert_nonnegative

    @settings(max_examples=20, deadline=None)
    @given(fp_problems())
    def test_my_solver_conserves_mass(problem):
        p = my_solver(problem.grid, problem.drift, problem.diffusion, problem.p0, t_end=0.5)
        assert_mass_conserved(p, problem.grid, atol=1e-10)
        assert_nonnegative(p)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - the message is the point
    raise ImportError('fpkit.testing needs hypothesis: pip install "fpkit[test]"') from exc

from .grid import Grid, gaussian

__all__ = [
    "Drift", "Diffusion", "FPProblem", "SDEProblem",
    "grids", "drifts", "diffusions", "densities", "fp_problems", "sde_problems", "ensemble_configs",
    "assert_densities_close", "assert_mass_conserved", "assert_nonnegative", "fit_order", "assert_order",
    "assert_reproducible",
]  # fmt: skip


def _finite(lo: float, hi: float) -> st.SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


# -------------------------------------------------------------------------------- smooth coefficients
@dataclass(frozen=True)
class Drift:
    """A smooth, confining drift A(x, t) = a0 + a1·sin(k·x) − θ·x − c·x³ (vectorised; units of x per unit t).

    θ ≥ 0 and c ≥ 0 with θ + c > 0 confine the process, so that densities stay inside a finite grid. The
    repr shows the coefficients, so a hypothesis failure prints a drift one can paste back.

    Parameters
    ----------
    a0 : float
        Constant offset (x per unit t).
    a1 : float
        Amplitude of the wiggle (x per unit t).
    k : float
        Wave number of the wiggle (per unit x).
    theta : float
        Linear restoring rate θ ≥ 0 (per unit t).
    c : float
        Cubic restoring coefficient ≥ 0 (per unit x² per unit t).
    """

    a0: float = 0.0
    a1: float = 0.0
    k: float = 1.0
    theta: float = 1.0
    c: float = 0.0

    def __call__(self, x, t=0.0):
        x = np.asarray(x, dtype=float)
        return self.a0 + self.a1 * np.sin(self.k * x) - self.theta * x - self.c * x**3


@dataclass(frozen=True)
class Diffusion:
    """A smooth diffusion D(x, t) = d0·(1 + d1·cos(k·x)), bounded below by d0·(1 − |d1|) > 0 (units of x² per
    unit t; D, never σ: the SDE is dX = A dt + √(2D) dW).

    Parameters
    ----------
    d0 : float
        Level d0 > 0 (x² per unit t).
    d1 : float
        Relative modulation, |d1| < 1.
    k : float
        Wave number of the modulation (per unit x).
    """

    d0: float = 0.5
    d1: float = 0.0
    k: float = 1.0

    def __call__(self, x, t=0.0):
        x = np.asarray(x, dtype=float)
        return self.d0 * (1.0 + self.d1 * np.cos(self.k * x))


def grids(*, min_cells: int = 40, max_cells: int = 160, half_width: tuple[float, float] = (3.0, 6.0),
          max_shift: float = 0.5) -> st.SearchStrategy[Grid]:  # fmt: skip
    """Uniform 1-D finite-volume grids: ``n`` cells in [c − L, c + L] with L in ``half_width`` and the centre
    c within ±``max_shift`` of 0 (units of x).

    Parameters
    ----------
    min_cells, max_cells : int
        Range of the number of cells.
    half_width : (float, float)
        Range of the half-width L.
    max_shift : float
        Largest |c|.

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of ``fpkit.Grid``.
    """
    return st.builds(
        lambda n, L, c: Grid.uniform(c - L, c + L, n),
        st.integers(min_cells, max_cells), _finite(*half_width), _finite(-max_shift, max_shift),
    )  # fmt: skip


def drifts(*, max_offset: float = 1.0, max_wiggle: float = 1.0, theta: tuple[float, float] = (0.3, 2.0),
           cubic: tuple[float, float] = (0.0, 0.3)) -> st.SearchStrategy[Drift]:  # fmt: skip
    """Smooth confining drifts (:class:`Drift`): offset |a0| ≤ ``max_offset``, wiggle |a1| ≤ ``max_wiggle``
    with wave number k in [0.5, 2], linear restoring rate θ in ``theta``, cubic c in ``cubic``.

    Parameters
    ----------
    max_offset : float
        Largest |a0| (x per unit t).
    max_wiggle : float
        Largest |a1| (x per unit t).
    theta : (float, float)
        Range of θ (per unit t).
    cubic : (float, float)
        Range of c (per unit x² per unit t).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of :class:`Drift`.
    """
    return st.builds(Drift, _finite(-max_offset, max_offset), _finite(-max_wiggle, max_wiggle),
                     _finite(0.5, 2.0), _finite(*theta), _finite(*cubic))  # fmt: skip


def diffusions(*, d0: tuple[float, float] = (0.05, 1.0), max_modulation: float = 0.8,
               constant: bool = False) -> st.SearchStrategy[Diffusion]:  # fmt: skip
    """Smooth positive diffusions (:class:`Diffusion`): level d0 in ``d0``, relative modulation |d1| ≤
    ``max_modulation`` < 1 (so D ≥ d0·(1 − max_modulation) > 0); ``constant=True`` draws d1 = 0.

    Parameters
    ----------
    d0 : (float, float)
        Range of the level d0 (x² per unit t).
    max_modulation : float
        Largest |d1|, in [0, 1).
    constant : bool
        Draw constant diffusions only (d1 = 0).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of :class:`Diffusion`.
    """
    if not 0 <= max_modulation < 1:
        raise ValueError(f"`max_modulation` must lie in [0, 1) so that D stays positive, got {max_modulation}")
    d1 = st.just(0.0) if constant else _finite(-max_modulation, max_modulation)
    return st.builds(Diffusion, _finite(*d0), d1, _finite(0.5, 2.0))


def densities(grid: Grid, *, max_components: int = 3, min_std: float | None = None) -> st.SearchStrategy:
    """Normalised densities on the 1-D ``grid``: mixtures of 1 to ``max_components`` Gaussians whose means
    lie in the middle half of the grid and whose standard deviations are at least ``min_std`` (default 3
    cells) and at most a quarter of its width, so that no mass sits at the walls.

    Parameters
    ----------
    grid : fpkit.Grid
        The 1-D grid.
    max_components : int
        Most Gaussians in a mixture.
    min_std : float, optional
        Smallest standard deviation (units of x; default three cells).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of arrays (n,) with Σ p·dx = 1.
    """
    lo, hi = grid.lo[0], grid.hi[0]
    width = hi - lo
    s_min = 3 * grid.dx[0] if min_std is None else float(min_std)
    s_max = max(s_min * 1.01, width / 8)
    component = st.tuples(_finite(lo + width / 4, hi - width / 4), _finite(s_min, s_max), _finite(0.2, 1.0))

    def build(parts):
        p = sum(w * gaussian(grid, m, s) for m, s, w in parts)
        return p / grid.integrate(p)

    return st.lists(component, min_size=1, max_size=max_components).map(build)


@dataclass(frozen=True)
class FPProblem:
    """A 1-D Fokker-Planck problem ∂t p = −∂x(A p) + ∂x²(D p) with reflecting walls: grid, drift A,
    diffusion D and an initial density ``p0`` on the grid.

    Parameters
    ----------
    grid : fpkit.Grid
        The 1-D grid (units of x).
    drift : Drift
        A(x, t), x per unit t.
    diffusion : Diffusion
        D(x, t), x² per unit t.
    p0 : array (n,)
        The initial density (Σ p0·dx = 1).
    """

    grid: Grid
    drift: Drift
    diffusion: Diffusion
    p0: np.ndarray

    def fokker_planck(self, **kwargs):
        """fpkit's solver for this problem (``fpkit.FokkerPlanck``; keyword arguments pass through).

        Parameters
        ----------
        **kwargs
            Passed to ``fpkit.FokkerPlanck`` (e.g. ``bc``, ``scheme``).

        Returns
        -------
        fpkit.FokkerPlanck
            The problem, ready to ``solve(self.p0, ...)``.
        """
        from .fokker_planck import FokkerPlanck

        return FokkerPlanck(self.grid, drift=self.drift, diffusion=self.diffusion, **kwargs)


@st.composite
def fp_problems(draw, grid: st.SearchStrategy[Grid] | None = None, drift: st.SearchStrategy | None = None,
                diffusion: st.SearchStrategy | None = None) -> FPProblem:  # fmt: skip
    """1-D Fokker-Planck problems (:class:`FPProblem`) from :func:`grids`, :func:`drifts`,
    :func:`diffusions` and :func:`densities` (each replaceable).

    Parameters
    ----------
    grid : SearchStrategy, optional
        Of grids (default :func:`grids`).
    drift : SearchStrategy, optional
        Of drifts (default :func:`drifts` that point inwards at both walls of the drawn grid).
    diffusion : SearchStrategy, optional
        Of diffusions (default :func:`diffusions`).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of :class:`FPProblem`.
    """
    g = draw(grid if grid is not None else grids())
    if drift is None:  # confining on this grid: pointing inwards at both walls (a drift with a small θ and a
        # large offset confines only beyond them)
        drift = drifts().filter(lambda a: a(g.lo[0]) > 0 > a(g.hi[0]))
    return FPProblem(g, draw(drift), draw(diffusion if diffusion is not None else diffusions()), draw(densities(g)))


@dataclass(frozen=True)
class SDEProblem:
    """A 1-D Itô SDE dX = A(X) dt + √(2 D(X)) dW started at ``x0`` and recorded at ``t_eval``.

    Parameters
    ----------
    drift : Drift
        A(x, t), x per unit t.
    diffusion : Diffusion
        D(x, t), x² per unit t.
    x0 : float
        The starting point.
    t_eval : tuple of float
        Increasing recording times (units of t).
    """

    drift: Drift
    diffusion: Diffusion
    x0: float
    t_eval: tuple

    def sde(self, **kwargs):
        """fpkit's sampler for this problem (``fpkit.SDE``; keyword arguments pass through).

        Parameters
        ----------
        **kwargs
            Passed to ``fpkit.SDE`` (e.g. ``grid``, ``bc``).

        Returns
        -------
        fpkit.SDE
            The sampler; ``sample(self.x0, self.t_eval, ...)`` draws paths.
        """
        from .sde import SDE

        return SDE(self.drift, self.diffusion, **kwargs)


@st.composite
def sde_problems(draw, drift: st.SearchStrategy | None = None, diffusion: st.SearchStrategy | None = None,
                 max_time: float = 2.0) -> SDEProblem:  # fmt: skip
    """1-D SDE problems (:class:`SDEProblem`): a drift and diffusion as in :func:`fp_problems`, x0 in
    [−1, 1] and one to three increasing recording times in (0, ``max_time``].

    Parameters
    ----------
    drift : SearchStrategy, optional
        Of drifts (default :func:`drifts`).
    diffusion : SearchStrategy, optional
        Of diffusions (default :func:`diffusions`).
    max_time : float
        Latest recording time (units of t).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of :class:`SDEProblem`.
    """
    times = draw(st.lists(_finite(0.05, max_time), min_size=1, max_size=3, unique=True))
    return SDEProblem(draw(drift if drift is not None else drifts()),
                      draw(diffusion if diffusion is not None else diffusions()),
                      draw(_finite(-1.0, 1.0)), tuple(sorted(times)))  # fmt: skip


def ensemble_configs(*, max_members: int = 32, max_steps: int = 40, activations: Sequence[str] = ("tanh", "linear"),
                     ) -> st.SearchStrategy[dict]:  # fmt: skip
    """Small keyword sets for ``fpkit.Ensemble(**config)``: autoencoders d → k → k → d with d in 2..6,
    k in 1..min(3, d − 1) (a bottleneck), learning rate η in [0.005, 0.05], batch size 1..8, 8..``max_members`` members,
    10..``max_steps`` steps and 3..6 snapshots — quick to train, for properties of training and estimation.

    Parameters
    ----------
    max_members : int
        Most members (at least 8).
    max_steps : int
        Most SGD steps (at least 10).
    activations : sequence of str
        Activations to draw from (``fpkit.network`` names).

    Returns
    -------
    hypothesis.strategies.SearchStrategy
        Of dicts of keyword arguments.
    """
    rest = st.fixed_dictionaries({
        "activation": st.sampled_from(list(activations)), "lr": _finite(0.005, 0.05),
        "batch_size": st.integers(1, 8), "members": st.integers(8, max_members), "steps": st.integers(10, max_steps),
        "snapshots": st.integers(3, 6), "kernels": st.just("generic"),
    })  # fmt: skip
    shape = st.integers(2, 6).flatmap(lambda d: st.fixed_dictionaries({"d": st.just(d), "k": st.integers(1, min(3, d - 1))}))
    return st.tuples(shape, rest).map(lambda pair: {**pair[0], **pair[1]})


# ---------------------------------------------------------------------------------------- assertions
def _density_array(p, grid: Grid | None) -> tuple[np.ndarray, Grid]:
    if hasattr(p, "p") and hasattr(p, "grid"):  # an fpkit.Solution
        return np.asarray(p.p, dtype=float), p.grid
    if grid is None:
        raise ValueError("pass `grid` with an array of densities (or pass an fpkit.Solution)")
    return np.asarray(p, dtype=float), grid


def assert_densities_close(p, q, grid: Grid, *, w1: float | None = None, l1: float | None = None) -> dict:
    """Assert that two 1-D densities on ``grid`` are close: W1(p, q) ≤ ``w1`` (units of x) and/or
    ∫|p − q| dx ≤ ``l1`` (dimensionless, at most 2). At least one tolerance must be given. Returns the measured
    distances ``{"w1": …, "l1": …}``.

    Parameters
    ----------
    p, q : array (n,)
        The two densities (Σ p·dx = 1).
    grid : fpkit.Grid
        Their 1-D grid.
    w1 : float, optional
        Tolerance on W1 (units of x).
    l1 : float, optional
        Tolerance on the L1 distance (dimensionless).

    Returns
    -------
    dict
        The measured ``w1`` and ``l1``.
    """
    from .metrics import w1_grid

    if w1 is None and l1 is None:
        raise ValueError("state a tolerance: `w1` (units of x) and/or `l1` (dimensionless)")
    p, q = np.asarray(p, dtype=float), np.asarray(q, dtype=float)
    got = {"w1": w1_grid(p, q, grid), "l1": float(grid.integrate(np.abs(p - q)))}
    for name, tol in (("w1", w1), ("l1", l1)):
        if tol is not None and not got[name] <= tol:
            raise AssertionError(f"densities differ: {name.upper()} = {got[name]:.3g} > tolerance {tol:.3g}")
    return got


def assert_mass_conserved(p, grid: Grid | None = None, *, mass: float = 1.0, atol: float = 1e-12) -> np.ndarray:
    """Assert that every density in ``p`` (an ``fpkit.Solution``, or an array (..., n) with ``grid``) has
    total mass Σ p·cell_volume within ``atol`` of ``mass``. Returns the masses.

    Parameters
    ----------
    p : fpkit.Solution or array (..., n)
        The densities.
    grid : fpkit.Grid, optional
        Their grid (required with an array).
    mass : float
        The expected mass.
    atol : float
        Absolute tolerance.

    Returns
    -------
    array
        The masses, one per density.
    """
    arr, grid = _density_array(p, grid)
    axes = tuple(range(arr.ndim - grid.ndim, arr.ndim))
    masses = np.atleast_1d(arr.sum(axis=axes) * grid.cell_volume)
    err = np.abs(masses - mass)
    if not np.all(err <= atol):
        k = int(np.argmax(err))
        raise AssertionError(f"mass not conserved: {masses[k]!r} at index {k} (|error| {err[k]:.3g} > atol {atol:.3g})")
    return masses


def assert_nonnegative(p, *, atol: float = 0.0) -> None:
    """Assert that a density (array or ``fpkit.Solution``) is ≥ −``atol`` everywhere and finite.

    Parameters
    ----------
    p : fpkit.Solution or array
        The density or densities.
    atol : float
        Negative values down to −atol are accepted (a solver's round-off).
    """
    arr = np.asarray(p.p if hasattr(p, "p") else p, dtype=float)
    if not np.all(np.isfinite(arr)):
        raise AssertionError(f"density has {int((~np.isfinite(arr)).sum())} non-finite values")
    if arr.size and arr.min() < -atol:
        raise AssertionError(f"density negative: min {arr.min():.3g} < −atol = {-atol:.3g} "
                             f"at index {np.unravel_index(np.argmin(arr), arr.shape)}")  # fmt: skip


def fit_order(steps: Sequence[float], errors: Sequence[float]) -> float:
    """The order q of a convergence study: the least-squares slope of log(error) against log(step), for
    errors ≈ C·stepᵠ (steps in any unit; at least two pairs, all positive).

    Parameters
    ----------
    steps : sequence of float
        The step sizes (any unit, positive).
    errors : sequence of float
        The errors at those steps (positive).

    Returns
    -------
    float
        The fitted order q.
    """
    h, e = np.asarray(steps, dtype=float), np.asarray(errors, dtype=float)
    if h.size < 2 or h.shape != e.shape:
        raise ValueError(f"need two or more (step, error) pairs of equal length, got {h.size} and {e.size}")
    if np.any(h <= 0) or np.any(e <= 0) or not np.all(np.isfinite(e)):
        raise ValueError(f"steps and errors must be positive and finite, got errors {e.tolist()}")
    return float(np.polyfit(np.log(h), np.log(e), 1)[0])


def assert_order(steps: Sequence[float], errors: Sequence[float], expected: float, *, tol: float = 0.2) -> float:
    """Assert that the fitted order (:func:`fit_order`) is within ``tol`` of ``expected``; returns it.

    Parameters
    ----------
    steps : sequence of float
        The step sizes (positive).
    errors : sequence of float
        The errors at those steps (positive).
    expected : float
        The expected order.
    tol : float
        Accepted |fitted − expected|.

    Returns
    -------
    float
        The fitted order.
    """
    q = fit_order(steps, errors)
    if abs(q - expected) > tol:
        raise AssertionError(f"convergence order {q:.3f}, expected {expected:g} ± {tol:g} "
                             f"(steps {list(steps)}, errors {[f'{x:.3g}' for x in errors]})")  # fmt: skip
    return q


def _leaves(x: Any) -> list:
    if hasattr(x, "__dict__") and not isinstance(x, np.ndarray):
        return _leaves({k: v for k, v in vars(x).items() if not k.startswith("_")})
    if isinstance(x, dict):
        return [leaf for k in sorted(x, key=str) for leaf in _leaves(x[k])]
    if isinstance(x, (list, tuple)):
        return [leaf for v in x for leaf in _leaves(v)]
    return [x]


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        a, b = np.asarray(a), np.asarray(b)
        return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b):
        return True
    return a == b


def assert_reproducible(run: Callable[[int], Any], seed: int = 0, *, other_seed: int | None = None) -> Any:
    """Assert that ``run(seed)`` gives bit-identical results twice (arrays compared byte for byte, through
    dicts, lists and objects' attributes); with ``other_seed``, also that ``run(other_seed)`` differs (the
    seed is actually used). Returns the first result.

    Parameters
    ----------
    run : callable
        ``run(seed) -> result``.
    seed : int
        The seed run twice.
    other_seed : int, optional
        A seed whose result must differ.

    Returns
    -------
    object
        The first result.
    """
    first, again = run(seed), run(seed)
    la, lb = _leaves(first), _leaves(again)
    if len(la) != len(lb) or not all(_same(a, b) for a, b in zip(la, lb)):
        raise AssertionError(f"not reproducible: two runs with seed {seed} differ")
    if other_seed is not None:
        lo = _leaves(run(other_seed))
        if len(lo) == len(la) and all(_same(a, b) for a, b in zip(la, lo)):
            raise AssertionError(f"seeds {seed} and {other_seed} give identical results: is the seed used?")
    return first
