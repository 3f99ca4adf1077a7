"""Users' plain Python callables compiled with numba (issue 21): same results as the vectorised path.

Every compiled run is compared with ``engine="numpy"`` (the vectorised step loop that calls the function once
per step over all paths) for the same seed: same random streams, so the paths agree to round-off (1e-12).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest

import fpkit
from fpkit.errors import StabilityError
from fpkit.sde import SDE
from fpkit.solvers.callables import compile_scalar

_PARAMS = {"k": 1.0}  # a dict: numba cannot compile a function that reads it
_GAIN = 1.0  # a global number: frozen into the compiled function, so a change must recompile

KW = dict(n_paths=3000, dt=0.01, seed=3)


def both(sde, x0=0.3, t_eval=(0.5, 1.0), **kw):
    args = {**KW, **kw}
    a = sde.sample(x0, list(t_eval), **args)
    b = sde.sample(x0, list(t_eval), engine="numpy", **args)
    return a, b


def assert_same(a, b, tol=1e-12):
    np.testing.assert_allclose(a.x, b.x, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    "drift",
    [
        lambda x, t: -x,  # OU
        lambda x, t: x - x**3,  # double well
        lambda x, t: -np.tanh(2.0 * x) + 0.1 * np.exp(-x * x),
        lambda x, t: np.where(x > 0, -x, -2.0 * x),
        lambda x, t: -x + math.sin(3.0 * t),  # time-dependent, math module
        lambda x, t: -np.sin(x) * np.cos(t) - 0.5 * np.arctan(x),
    ],
    ids=["ou", "double-well", "tanh-exp", "where", "time", "sin-cos"],
)
def test_plain_lambdas_run_compiled_and_match_the_vectorised_path(drift):
    a, b = both(SDE(drift, 0.5))
    assert a.meta["engine"] == "kernel" and b.meta["engine"] == "numpy"
    assert_same(a, b)


def test_closures_over_numbers():
    def make(k, x_eq):
        return lambda x, t: -k * (x - x_eq)

    for k, x_eq in [(0.5, 1.0), (3.0, -2.0)]:
        a, b = both(SDE(make(k, x_eq), 0.25))
        assert a.meta["engine"] == "kernel"
        assert_same(a, b)
        assert abs(np.mean(a.x[-1]) - (x_eq + (0.3 - x_eq) * math.exp(-k))) < 0.05


def test_compiled_diffusion_milstein_heun_walls():
    """State-dependent D, Milstein / Heun (numerical D'), reflecting walls: the function-pointer kernels."""
    sde = SDE(lambda x, t: -x, lambda x, t: 0.5 + 0.1 * np.tanh(x) ** 2)
    for method in ("euler", "milstein", "heun"):
        a, b = both(sde, method=method)
        assert a.meta["engine"] == "kernel"
        assert_same(a, b)
    walls = SDE(lambda x, t: 2.0 - x * x, 0.5, bc="reflecting", domain=(-1.0, 1.0))
    a, b = both(walls, x0=0.0)
    assert a.meta["engine"] == "kernel"
    assert_same(a, b)
    assert np.all(np.abs(a.x) <= 1.0)


def test_scalar_only_function_runs_compiled():
    """A function written for numbers (an `if`) fails on arrays today; compiled it works in the kernels."""
    sde = SDE(lambda x, t: -x if x > 0 else -2.0 * x, 0.5)
    a = sde.sample(0.3, [1.0], **KW)
    ref = SDE(lambda x, t: np.where(x > 0, -x, -2.0 * x), 0.5).sample(0.3, [1.0], **KW)
    assert a.meta["engine"] == "kernel"
    assert_same(a, ref)


def test_uncompilable_callable_falls_back_with_one_log_line(caplog):
    drift = lambda x, t: -_PARAMS["k"] * x  # noqa: E731
    sde = SDE(drift, 0.5)
    with caplog.at_level(logging.WARNING, logger="fpkit"):
        a = sde.sample(0.3, [0.5, 1.0], **KW)
        sde.sample(0.3, [0.5, 1.0], **KW)
    b = sde.sample(0.3, [0.5, 1.0], engine="numpy", **KW)
    assert a.meta["engine"] == "numpy"
    np.testing.assert_array_equal(a.x, b.x)
    lines = [r.getMessage() for r in caplog.records if r.name == "fpkit"]
    assert len(lines) == 1, lines
    assert "`drift`" in lines[0] and "_PARAMS" in lines[0] and "numba.njit" in lines[0]
    with pytest.raises(fpkit.ConfigError, match="_PARAMS"):
        sde.sample(0.3, [1.0], engine="kernel", **KW)


def test_function_that_is_not_elementwise_stays_vectorised(caplog):
    """np.mean(x) compiles for a number but means the ensemble mean on arrays: the check at the starting
    points (and points spread around them) sees the difference and keeps the vectorised path."""
    sde = SDE(lambda x, t: -x + 0.1 * np.mean(x), 0.5)
    with caplog.at_level(logging.WARNING, logger="fpkit"):
        a = sde.sample(0.3, [1.0], **KW)
    b = sde.sample(0.3, [1.0], engine="numpy", **KW)
    assert a.meta["engine"] == "numpy"
    np.testing.assert_array_equal(a.x, b.x)
    assert any("on arrays" in r.getMessage() for r in caplog.records)


def test_blow_up_is_reported_at_the_same_time():
    """A path that turns non-finite inside a chunk is replayed step by step: the same failure time."""
    sde = SDE(lambda x, t: x**3, 0.01)
    x0 = np.linspace(0.1, 2.0, 64)
    errs = []
    for engine in ("auto", "numpy"):
        with pytest.raises(StabilityError) as info:
            sde.sample(x0, [5.0], dt=0.01, seed=1, engine=engine)
        errs.append(info.value.time)
    assert errs[0] == errs[1]


def test_compile_cache_sees_changed_globals():
    global _GAIN
    f = lambda x, t: -_GAIN * x  # noqa: E731
    d1, _ = compile_scalar(f)
    assert compile_scalar(f)[0] is d1  # compiled once per function while nothing it reads changes
    _GAIN = 2.0
    try:
        d2, _ = compile_scalar(f)
        assert d2 is not d1 and d2(1.0, 0.0) == -2.0
    finally:
        _GAIN = 1.0


def test_user_numba_functions_use_the_inlined_kernel():
    import numba

    a, b = both(SDE(numba.njit(lambda x, t: x - x**3), 0.5))
    assert a.meta["engine"] == "kernel"
    assert_same(a, b)


def _module_drift(x, t):
    return x - x**3


def test_sde_with_a_compiled_function_pickles_after_sampling():
    import pickle

    sde = SDE(_module_drift, 0.5)
    a = sde.sample(0.3, [1.0], **KW)
    again = pickle.loads(pickle.dumps(sde))
    b = again.sample(0.3, [1.0], **KW)
    assert b.meta["engine"] == "kernel"
    np.testing.assert_array_equal(a.x, b.x)


def test_underdamped_and_stable_noise_with_lambdas():
    """BAOAB (force scaled by 1/(m γ) inside the kernel) and α-stable noise call the compiled function through
    its pointer; both agree with their vectorised loops."""
    ud = SDE.underdamped(lambda x, t: -np.sin(x), mass=2.0, friction=0.5, temperature=0.7)
    a, b = both(ud, method="baoab", x0=0.2)
    assert a.meta["engine"] == "kernel"
    assert_same(a, b)
    np.testing.assert_allclose(a.v, b.v, rtol=1e-12, atol=1e-12)
    st = SDE(lambda x, t: -x, 0.5, alpha=1.5)
    a, b = both(st)
    assert a.meta["engine"] == "kernel"
    assert_same(a, b)


def test_fpkit_interpolated_coefficients_take_the_vectorised_path_silently(caplog):
    """A SnapshotInterpolator (the flagship's Langevin cross-check) is vectorised by design: no fallback
    warning for it, while a user's uncompilable callable still gets one."""
    import logging

    from fpkit import estimators as est

    g = fpkit.Grid.uniform(-2.0, 2.0, 40)
    drift = est.SnapshotInterpolator(np.array([0.0, 1.0]), np.stack([-g.x, -2 * g.x]), g, "drift")
    with caplog.at_level(logging.WARNING, logger="fpkit"):
        fpkit.SDE(drift=drift, diffusion=0.1).sample(0.0, [0.5], n_paths=1000, dt=0.01, seed=0)
    assert not [r for r in caplog.records if "vectorised path" in r.getMessage()]


@pytest.mark.parametrize("bc", ["reflecting", "absorbing", "periodic"])
def test_snapshot_coefficients_run_compiled_with_the_numpy_loops_bits(bc):
    """Euler-Maruyama with SnapshotInterpolator drift and diffusion (the Langevin cross-check) runs in one
    compiled loop (sde_kernels.euler_snapshots_1d) and must give the numpy loop's bits (the same coefficients
    through plain callables): paths, absorption times, walls. OU coefficients A = −θ(t)·x, D(t) (θ, D linear
    between snapshots): without walls the mean follows x0·exp(−∫θ) within 4 standard errors."""
    from fpkit import estimators as est

    g = fpkit.Grid.uniform(-1.5, 1.5, 300)
    ts = np.array([0.0, 0.3, 1.0])
    theta, dcoef = np.array([1.0, 2.5, 0.5]), np.array([0.05, 0.2, 0.1])
    A = est.SnapshotInterpolator(ts, -theta[:, None] * g.x[None, :], g, "drift")
    D = est.SnapshotInterpolator(ts, np.repeat(dcoef[:, None], g.x.size, axis=1), g, "diffusion")
    plain_a, plain_d = (lambda x, t: A(x, t)), (lambda x, t: D(x, t))
    t_eval = [0.2, 0.3, 0.7, 1.0]
    kw = dict(n_paths=4000, method="euler", dt=0.01, seed=3, t0=0.0)
    got = fpkit.SDE(drift=A, diffusion=D, grid=g, bc=bc).sample(1.2, t_eval, **kw)
    ref = fpkit.SDE(drift=plain_a, diffusion=plain_d, grid=g, bc=bc).sample(1.2, t_eval, **kw)
    assert np.array_equal(got.x, ref.x, equal_nan=True)
    assert np.array_equal(got.absorbed_at, ref.absorbed_at)
    if bc == "absorbing":
        assert np.isfinite(got.absorbed_at).any() and np.isnan(got.x[-1]).any()
    free = fpkit.SDE(drift=A, diffusion=D).sample(1.2, [1.0], **kw).x[-1]
    mean = 1.2 * np.exp(-(0.5 * (1.0 + 2.5) * 0.3 + 0.5 * (2.5 + 0.5) * 0.7))
    assert abs(free.mean() - mean) < 4 * free.std() / np.sqrt(free.size)
