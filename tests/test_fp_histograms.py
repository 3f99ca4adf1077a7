"""The flagship experiment (fp-histograms) against ground truth it cannot know by construction.

* Synthetic ground truth: Langevin paths with known A(w, t), D(w, t), written in the ensemble format,
  go through the same estimation and prediction code as trained networks.
* 1-D linear regression: the FP stationary variance with the discrete-step D̃ equals exact SGD's.
* Criteria on real trained ensembles (default configuration: slow-marked).
"""

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import fpkit
from fpkit import estimators as est
from fpkit.ensemble import EnsembleRun
from fpkit.errors import ConfigError
from fpkit import experiments as X
from fpkit import metrics
from fpkit import prediction as P
from fpkit.validation.experiments import fp_histograms as ex

FLAGSHIP = X.load("fp-histograms")
DEFAULT = X.defaults(FLAGSHIP)


def resolved(override=None):
    return X.resolve_config(FLAGSHIP, config=override or {})


# ------------------------------------------------------------------------------------- ground truth
def true_drift(w, t):
    return -1.5 * (w - 0.6 * np.tanh(t))


def true_diffusion(w, t):
    return 0.04 * (1 + 0.5 * w**2)


@pytest.fixture(scope="module")
def synthetic_run():
    """2000 Langevin paths of a known diffusion, with 'gradients' g = −A + noise and grad_var = 2D/η, so that
    the mechanistic route's targets E[−g | w] = A and (η/2) E[v | w] = D hold exactly."""
    M, eta = 2000, 0.01
    t = np.concatenate([[0.0], np.geomspace(0.02, 3.0, 24)])
    sde = fpkit.SDE(drift=true_drift, diffusion=true_diffusion)
    rng = np.random.default_rng(5)
    x0 = rng.normal(0.0, 0.3, M)
    w = np.asarray(sde.sample(x0, t, method="euler", dt=1e-3, seed=3).x).reshape(t.size, M)
    noise = 0.05
    g = -true_drift(w, t[:, None]) + noise * rng.standard_normal(w.shape)
    v = 2 * true_diffusion(w, t[:, None]) / eta
    run = EnsembleRun.from_arrays(
        t=t, weights={"W2": w[:, :, None, None]}, eta=eta, batch_size=1,
        grad={"W2": g[:, :, None, None]}, grad_var={"W2": v[:, :, None, None]},
        hess_grad={"W2": np.zeros_like(w)[:, :, None, None]},
    )  # fmt: skip
    return run


def test_synthetic_ground_truth_both_routes_recover_A_and_D(synthetic_run, tmp_path):
    run = EnsembleRun.load(synthetic_run.save(tmp_path / "synthetic.h5"))  # through the file format
    arrays = P.entry_arrays(run, "W2[0,0]")
    grid = est.choose_grid(arrays["w"], n=120)
    for s in (6, 15, 24):
        t = run.t[s]
        mech = est.mechanistic(arrays["w"][s], arrays["g"][s], arrays["v"][s], run.eta, grid)
        m = mech.supported & (np.abs(grid.x - np.median(arrays["w"][s])) < 2 * arrays["w"][s].std())
        # A is linear: local-linear is unbiased, so the error is the smoothing noise (4 standard errors)
        z = np.abs(mech.drift[m] - true_drift(grid.x[m], t)) / mech.drift_se[m]
        assert np.max(z) < 4.5, (s, np.max(z))
        # D is exact per member (no noise): only the O(h²) smoothing bias of a quadratic remains
        np.testing.assert_allclose(mech.diffusion[m], true_diffusion(grid.x[m], t), rtol=0.01)
    # Kramers-Moyal from increments over a short lag: A within 4 standard errors plus its O(Δt) bias
    s = 3
    km = est.kramers_moyal(arrays["w"][s], arrays["w"][s + 1], run.t[s + 1] - run.t[s], grid)
    m = km.supported & (np.abs(grid.x - np.median(arrays["w"][s])) < 1.5 * arrays["w"][s].std())
    tmid = 0.5 * (run.t[s] + run.t[s + 1])
    z = np.abs(km.drift[m] - true_drift(grid.x[m], tmid)) / km.drift_se[m]
    assert np.median(z) < 2 and np.max(z) < 5
    assert np.median(np.abs(km.diffusion[m] / true_diffusion(grid.x[m], tmid) - 1)) < 0.15


def test_synthetic_ground_truth_prediction_within_noise_floor(synthetic_run):
    run = synthetic_run
    E, J = P.split_members(run.members, 0, "half")
    r = P.predict_entry(run, "W2[0,0]", E, J, dt=0.01, js=False)
    fp = r.distance["fp"][1:]
    # a correct prediction scores ≈ 1 on average; its maximum over ~25 snapshots stays below 3
    assert np.median(fp) < 1.5 and fp.max() < 3.0, fp
    # and it is far better than the baselines once the density has moved
    assert r.distance["frozen"][-1] > 5 * r.distance["fp"][-1]
    assert r.distance["drift_only"][-1] > 2 * r.distance["fp"][-1]


def test_langevin_sampler_agrees_with_the_fp_solve_on_estimated_coefficients(synthetic_run):
    """The numerics cross-check of the pipeline: the same estimated, time-interpolated coefficients evolved by
    the FP solver and by 20000 Euler paths of the Langevin sampler agree to sampling error (W1 over the
    paths' own floor). Null distribution measured over 24 path seeds: the median over the 24 snapshots has mean
    0.99 and sd 0.27 (largest 1.57), the maximum mean 1.56 and sd 0.33 (largest 2.50); the bounds 2.0 and 3.0
    sit 3.7 and 4.4 sd above the means (false-alarm rate ≈ 1e-3 allowing for the right skew), while paths
    with twice the diffusion score a median of 9.0 and a maximum of 26 floors."""
    run = synthetic_run
    E, J = P.split_members(run.members, 0, "half")
    r = P.predict_entry(run, "W2[0,0]", E, J, dt=0.01, js=False)
    lg = ex.langevin_crosscheck(r, 20000, seed=3, dt=0.002)
    v = lg["w1_over_floor"][1:]
    assert np.median(v) < 2.0 and v.max() < 3.0, v


# ------------------------------------------------------------------------------------- regression
@pytest.mark.parametrize("B, eta_s2", [(1, 0.05), (4, 0.3)])
def test_linear_regression_fp_stationary_variance_discrete_vs_standard(B, eta_s2):
    """1-D regression: the FP with D = a + b u² has E[u²] = a/(s² − b) exactly. With D̃ = (η/2)E[g_B²|u]
    that is exact SGD's ηr²/(2B − ηs²(B+2)) (Kesten recursion moments); with the standard D it is
    ηr²/(2(B − ηs²)). The FP solver must reproduce both to its accuracy."""
    from fpkit.validation import references as ref

    s2, r2 = 1.0, 0.5
    eta = eta_s2 / s2
    exact_sgd = ref.linreg_sgd_variance(eta, B, s2, r2)
    sde_value = ref.linreg_sde_variance(eta, B, s2, r2, "standard")
    scale = 30 * np.sqrt(exact_sgd)
    g = fpkit.Grid.uniform(-scale, scale, 6000)
    variances = {}
    for kind in ("discrete", "standard"):
        A, D = ref.linreg_coefficients(eta, B, s2, r2, kind)
        p = fpkit.FokkerPlanck(g, drift=A, diffusion=D).stationary()
        variances[kind] = g.integrate(p * g.x**2) - g.dx[0] ** 2 / 12
    # power-law tails: truncating at 30 standard deviations costs < 1e-3 relative here
    assert variances["discrete"] == pytest.approx(exact_sgd, rel=2e-3)
    assert variances["standard"] == pytest.approx(sde_value, rel=2e-3)
    # the standard D misses SGD by the derived factor; the factor itself is checked against a Monte-Carlo SGD
    # run in test_linear_regression_sgd_variance_monte_carlo
    factor = ref.linreg_standard_over_sgd(eta, B, s2)
    assert variances["standard"] / variances["discrete"] == pytest.approx(factor, rel=3e-3)
    assert 1 - factor > 0.4 * eta * s2  # an O(η) gap, visible at these step sizes


@pytest.mark.parametrize("B, eta_s2, separable", [(1, 0.05, False), (4, 0.3, True)])
def test_linear_regression_sgd_variance_monte_carlo(B, eta_s2, separable):
    """The exact SGD variance the discrete-step D̃ is checked against, from the process itself: 40000
    independent 1-D SGD chains (y = w* x + ε, iid minibatches of B) run 40/(η s²) steps past stationarity.
    The sample variance's standard error is V·√(2/n) (√ of a Gaussian 4th moment; SGD's stationary law has
    heavier tails, so the bound uses 5 of them: false-alarm rate < 1e-4); at η s² = 0.3, B = 4 the standard-D
    value lies ≥ 8 of them away (at η s² = 0.05, B = 1 the 2.6 % gap needs more chains than a unit test)."""
    from fpkit.validation import references as ref

    s2, r2, n = 1.0, 0.5, 40000
    eta = eta_s2 / s2
    rng = np.random.default_rng(0)
    u = np.zeros(n)
    for _ in range(int(40 / eta_s2)):
        x = rng.normal(0, np.sqrt(s2), (B, n))
        eps = rng.normal(0, np.sqrt(r2), (B, n))
        u -= eta * np.mean(x * (x * u - eps), axis=0)
    exact = ref.linreg_sgd_variance(eta, B, s2, r2)
    se = exact * np.sqrt(2 / n)
    assert abs(u.var() - exact) < 5 * se, (u.var(), exact)
    if separable:
        assert abs(u.var() - ref.linreg_sde_variance(eta, B, s2, r2, "standard")) > 8 * se


# ------------------------------------------------------------------------------------- bad input
def test_bad_input():
    with pytest.raises(ConfigError, match="analysis.bandwith"):
        resolved({"analysis": {"bandwith": 0.3}})
    with pytest.raises(ConfigError, match="trian"):
        resolved({"trian": {}})
    with pytest.raises(ConfigError, match="analysis.fp_dt"):
        resolved({"analysis": {"fp_dt": "0.1"}})
    with pytest.raises(ConfigError, match=r"analysis.variants: expected a list of values among"):
        resolved({"analysis": {"variants": ["discret"]}})
    with pytest.raises(ConfigError, match="2 snapshots: at least 3 are needed"):
        X.run(FLAGSHIP, config={"train": {"snapshots": 2, "steps": 10, "members": 200}})


TINY = """
seed = 3
[train]
members = 200
steps = 120
snapshots = 10
[analysis]
svag = []
langevin_paths = 500
heldout = 100
variants = ["standard"]
pair = []
auto_limit = {W2 = 1, W1 = 1, W3 = 1}
"""


def _tiny_dict():
    import tomllib

    return tomllib.loads(TINY)


def _datasets(path):
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        out["__config"] = f.attrs["config"]
    return out


def test_reproduce_same_seed_identical_files_with_one_or_two_threads(tmp_path):
    cfgfile = tmp_path / "tiny.toml"
    cfgfile.write_text(TINY)
    files = []
    for threads in ("1", "2"):
        out = tmp_path / f"out{threads}"
        env = dict(__import__("os").environ, NUMBA_NUM_THREADS=threads)
        subprocess.run([sys.executable, "-m", "fpkit.cli", "reproduce", "--config", str(cfgfile), "--out", str(out)],
                       check=True, env=env, capture_output=True)  # fmt: skip
        files.append(_datasets(out / "results.h5"))
        assert (out / "report.md").exists() and (out / "distances.png").exists()
    a, b = files
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # the file is self-contained: the judged members' stored values and the stored prediction give back the
    # stored distance (W1 / floor) at every snapshot
    judge = a["extra/split/judge"]
    assert np.intersect1d(judge, a["extra/split/estimate"]).size == 0 and judge.size == 100
    with h5py.File(tmp_path / "out1" / "results.h5", "r") as f:
        label = next(iter(f["entries"]))
        grid = fpkit.Grid.from_dict(json.loads(f["entries"][label].attrs["grid"]))
    e = f"entries/{label}/"
    judged = a[e + "samples"][:, judge]
    # independently of fpkit.metrics: W1 as a quadrature of |F − G| (F the stored density's piecewise-linear
    # CDF, G the judged members' empirical CDF), the floor as √(2/π)∫√(G(1 − G)/N) between sorted samples
    xs = np.linspace(grid.lo[0], grid.hi[0], 200_001)
    for s in (1, judged.shape[0] // 2, judged.shape[0] - 1):
        F = np.interp(xs, grid.edges[0], np.concatenate([[0.0], np.cumsum(a[e + "p_pred"][s] * grid.dx[0])]))
        x = np.sort(judged[s])
        G = np.searchsorted(x, xs, side="right") / x.size
        Gs = np.arange(1, x.size) / x.size
        floor = np.sqrt(2 / np.pi / x.size) * np.sum(np.sqrt(Gs * (1 - Gs)) * np.diff(x))
        assert a[e + "ratios/fp"][s] == pytest.approx(np.trapezoid(np.abs(F - G), xs) / floor, rel=1e-3)


def test_flagship_estimates_on_the_estimation_half_only():
    """Out of sample in the experiment itself: the stored coefficients of an entry are those estimated from the
    estimation members of the stored split, not from the judged ones."""
    outcome = X.run(FLAGSHIP, config=_tiny_dict())
    res = outcome.result
    _, run = ex.train_ensemble(outcome.config)  # the same seed trains the same ensemble
    p = res.entries[0]
    arrays = P.entry_arrays(run, p.label)
    E, J = res.split["estimate"], res.split["judge"]
    from_E = P.estimate_series(run, arrays, E, p.grid)
    from_J = P.estimate_series(run, arrays, J, p.grid)
    np.testing.assert_array_equal(p.coefficients["drift"], from_E.drift)
    assert not np.allclose(p.coefficients["drift"], from_J.drift)
    np.testing.assert_array_equal(p.judged, arrays["w"][:, J])


def test_svag_ensembles_without_statistics_train_the_same_weights():
    """svag_check trains its SVAG ensembles without snapshot statistics (it judges weights only): the weights
    must be bit-identical to a run that records them (the statistics draw nothing from the training streams)."""
    cfg = resolved(_tiny_dict())
    runs = [ex.train_ensemble(cfg, optimizer="svag", svag_l=4, members=64, statistics=s)[1] for s in (True, False)]
    assert runs[0].grad is not None and runs[1].grad is None
    np.testing.assert_array_equal(runs[0].t, runs[1].t)
    for name in runs[0].weights:
        np.testing.assert_array_equal(runs[0].weights[name], runs[1].weights[name])


def test_svag_thread_needs_no_parallel_kernel_before_it():
    """The SVAG ensembles start on their thread before the first parallel kernel of the run: asking whether
    kernels launch from two threads starts numba's threading layer instead of finding it absent (which kept
    the training in the caller's thread)."""
    code = ("import numba; from fpkit.validation.experiments import fp_histograms as ex; "
            "print(ex.kernels_from_two_threads(), numba.threading_layer())")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out in (["True", "omp"], ["True", "tbb"]), out


def test_svag_alongside_trains_the_same_ensembles_on_a_thread_and_stops_with_the_body(monkeypatch):
    """svag_alongside trains the SVAG ensembles on a thread while the body trains another ensemble (parallel
    kernels launched from two threads at once): bit-identical to training them alone; a body that raises
    stops the training at its next snapshot."""
    import threading

    import numba

    cfg = resolved({**_tiny_dict(), "analysis": {**_tiny_dict()["analysis"], "svag": [2, 4], "svag_members": 40}})
    alone = ex.svag_runs(cfg)
    assert numba.threading_layer() in ("omp", "tbb")  # else svag_alongside trains in the caller's thread
    seen, real = {}, ex.svag_runs

    def spy(cfg, show_progress=None, stop=None):
        seen["thread"] = threading.current_thread().name
        if seen.get("wait"):  # the stop test: start only once the body has failed
            stop.wait(60)
        try:
            return real(cfg, show_progress, stop)
        except BaseException as exc:
            seen["raised"] = type(exc)
            raise

    monkeypatch.setattr(ex, "svag_runs", spy)
    with ex.svag_alongside(cfg) as svag:
        ex.train_ensemble(cfg)  # the main thread's own kernels meanwhile
        runs = svag()
    assert seen["thread"].startswith("fpkit-svag")
    assert [ell for ell, _ in runs] == [2, 4]
    for (_, a), (_, b) in zip(alone, runs):
        for name in a.weights:
            np.testing.assert_array_equal(a.weights[name], b.weights[name])
    seen.clear()
    seen["wait"] = True
    with pytest.raises(RuntimeError, match="body failed"):
        with ex.svag_alongside(cfg):
            raise RuntimeError("body failed")
    assert seen["raised"] is KeyboardInterrupt


def test_pair_alongside_gives_the_pair_prediction_from_a_thread(monkeypatch):
    """pair_alongside computes the 2-D pair on a thread while the body runs: the same numbers as in the
    caller's thread; a pair that cannot be predicted is skipped with the reason either way."""
    import threading

    tiny = _tiny_dict()
    tiny["train"]["members"] = 600  # 300 estimation members: enough for the 2-D fit on 10 x 10 cells
    cfg = resolved({**tiny, "analysis": {**tiny["analysis"], "pair": ["W2[0,0]", "W2[1,1]"], "pair_cells": 10}})
    _, run = ex.train_ensemble(cfg)
    E, J = P.split_members(run.members, cfg["seed"], "half")
    here, _ = ex.pair_prediction(run, cfg["analysis"], E, J)
    seen, real = {}, ex.pair_prediction

    def spy(*args):
        seen["thread"] = threading.current_thread().name
        return real(*args)

    monkeypatch.setattr(ex, "pair_prediction", spy)
    with ex.pair_alongside(run, cfg["analysis"], E, J, threaded=True) as pair:
        ex.train_ensemble(cfg)  # the main thread's own kernels meanwhile
        there, skipped = pair()
    assert seen["thread"].startswith("fpkit-pair") and skipped is None
    np.testing.assert_array_equal(here.density, there.density)
    np.testing.assert_array_equal(here.l1_joint, there.l1_joint)
    bad = {**cfg["analysis"], "pair": ["W1[0,0]", "W2[0,0]"]}
    with ex.pair_alongside(run, bad, E, J, threaded=True) as pair:
        assert pair() == (None, "a joint pair must be two W2 entries, got 'W1[0,0]'")


def test_cli_reproduce_bad_config_is_one_line_error(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[analysis]\nbandwith = 3\n")
    p = subprocess.run([sys.executable, "-m", "fpkit.cli", "reproduce", "--config", str(bad), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 2
    assert "analysis.bandwith" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1


def test_example_reproduce_config_resolves():
    from pathlib import Path

    path = Path(__file__).parent.parent / "examples" / "reproduce_rotated.toml"
    cfg = X.resolve_config(FLAGSHIP, config=str(path))
    assert cfg["data"]["rotate"] is True and cfg["data"]["ratio"] == 0.6
    assert cfg["train"] == DEFAULT["train"]  # everything else stays the default


# ------------------------------------------------------------------------------- trained ensembles
@pytest.mark.slow
def test_default_configuration_meets_the_criteria_and_the_readme_numbers():
    """The flagship on its default configuration (seed 0; the README states these numbers for seed 0): every
    claim of the verdict but the output goal (issue 17, not met yet) holds (drift-dominated criteria for W2/W3,
    diffusion-driven criteria and the late goal for the three W1 entries "auto" picks, which must be
    diffusion-driven), and the README's numbers: every
    entry within 2.9 floors at all 50 snapshots, the W1 entries 4-7x better than drift-only and within 2.7
    floors late; against an SVAG l = 16 ensemble (the SDE itself) the W2[0,0] prediction is within 5 floors at
    every snapshot and 2 at the median."""
    outcome = X.run(FLAGSHIP, config={"analysis": {"svag": [16], "variants": ["standard"], "langevin_paths": 2000}})
    res, v = outcome.result, outcome.verdict
    # the output goal (issue 17, goal 3) is not met yet: reported, not asserted here
    assert all(c.held for c in v.claims if c.name != "output distributions"), [c.to_dict() for c in v.claims
                                                                                if not c.held]  # fmt: skip
    w1 = [p for p in res.entries if p.label.startswith("W1")]
    assert len(w1) == 3 and all(p.kind == "diffusion-driven" for p in w1)
    assert res.t.size == 50
    assert max(p.distance["fp"][1:].max() for p in res.entries) <= 2.9
    gains = [p.distance["drift_only"][-1] / p.distance["fp"][-1] for p in w1]
    assert 4 <= min(gains) and max(gains) <= 7, gains
    assert max(ex.late_max(p) for p in w1) <= 2.7
    svag = res.svag[0]["w1_over_floor"]["W2[0,0]"][1:]
    assert svag.max() <= 5 and np.median(svag) <= 2, svag


@pytest.mark.slow
def test_linear_autoencoder_diffusion_driven_w3_entry():
    """The one clean test of D in a trained network: a linear autoencoder on the default data (axis-aligned
    covariance; the minor output rows of W3 are pinned near zero by a weak drift and spread by gradient
    noise), judged on its W3 entry with the largest diffusion share. Criterion: within 4x the floor at every
    snapshot and at least 2x better than drift-only at the end."""
    cfg = resolved({"model": {"activation": "linear"}, "train": {"members": 2000}})
    _, run = ex.train_ensemble(cfg)
    share = P.diffusion_share(run, "W3")
    lab = P.entry_label("W3", np.unravel_index(np.argmax(share), share.shape))
    assert share.max() > 1  # diffusion alone would make more than the final spread: diffusion-driven
    E, J = P.split_members(run.members, cfg["seed"], "half")
    r = P.predict_entry(run, lab, E, J, js=False, **ex.entry_options(cfg["analysis"]))
    assert r.distance["fp"][1:].max() <= 4
    assert r.distance["drift_only"][-1] >= 2 * r.distance["fp"][-1]


@pytest.mark.slow
def test_relu_failure_is_never_silent():
    """Issue 17's ReLU autoencoder 6 → 4 → 2 → 4 → 6 with biases (η = 0.05, B = 4, quick sizes): out of sample
    every judged entry is within 3 floors, or its diagnostics (estimation half only) say `fails` or
    `doubtful` with a reason. Measured: W2/W3 entries 5-14 floors with drift disagreement 0.97-0.99 (fails),
    W1 entries 3.5 floors with 0.7 (doubtful); route='auto' then takes Kramers-Moyal, within 1.7 floors."""
    cfg = resolved({"model": {"hidden": [4, 2, 4], "activation": "relu", "bias": True}, "data": {"d": 6, "n": 256},
                    "train": {"lr": 0.05, "batch_size": 4, "members": 1000, "snapshots": 30}})  # fmt: skip
    _, run = ex.train_ensemble(cfg)
    E, J = P.split_members(run.members, cfg["seed"], "half")
    for lab in P.auto_entries(run, {"W2": 3, "W1": 2, "W3": 2}):
        p = P.predict_entry(run, lab, E, J, js=False, **ex.entry_options(cfg["analysis"]))
        d = p.diagnostics
        assert np.nanmax(p.distance["fp"][1:]) <= 3 or (d["verdict"] in ("fails", "doubtful") and d["reasons"]), (lab, d)
        if d["verdict"] == "fails":
            auto = P.predict_entry(run, lab, E, J, route="auto", js=False, **ex.entry_options(cfg["analysis"]))
            assert auto.options["route"] == "kramers-moyal" and np.nanmax(auto.distance["fp"][1:]) <= 3, lab


def test_pooled_predictions_and_crosscheck_equal_the_serial_ones():
    """Two worker processes (each sent one entry's EntrySamples) make bit for bit the predictions and the
    Langevin cross-check (of the first W1 entry) of one process, in the order of the labels; also when the
    run's gradient statistics are released once the entries' samples are taken (the flagship's memory)."""
    run = fpkit.Ensemble(d=8, k=3, activation="tanh", lr=0.02, batch_size=8, members=200, steps=400, snapshots=10,
                         seed=1).train(show_progress=False)  # fmt: skip
    E, J = P.split_members(run.members, 1, "half")
    acfg = dict(DEFAULT["analysis"], variants=["standard", "discrete"], cells=60, max_cells=200, fp_dt=0.5,
                langevin_paths=500)  # fmt: skip
    labels = ["W2[0,0]", "W1[0,1]", "W3[1,0]"]
    serial = ex.predict_entries(run, labels, E, J, acfg, 5)
    lang = ex.langevin_crosscheck(serial[1], 500, 5, 0.125)
    with pytest.raises(ConfigError, match="W2\\[0,0\\]"):
        P.predict_entry(P.EntrySamples.of(run, "W2[0,0]"), "W2[0,1]", E, J)
    weights = {k: v.copy() for k, v in run.weights.items()}
    pooled, lang_p = ex.predict_entries_pooled(run, labels, E, J, acfg, 5, workers=2, release_statistics=True)
    assert run.grad is None and run.grad_var is None and run.hess_grad is None
    with pytest.raises(ConfigError, match="no gradient statistics .*released after use"):
        P.predict_entry(run, "W2[0,0]", E, J)
    assert all(np.array_equal(run.weights[k], w) for k, w in weights.items())
    assert [p.label for p in pooled] == labels
    for p, q in zip(serial, pooled):
        np.testing.assert_array_equal(p.density, q.density)
        np.testing.assert_array_equal(p.coefficients["drift_se"], q.coefficients["drift_se"])
        assert sorted(p.distance) == sorted(q.distance)
        for k in p.distance:
            np.testing.assert_array_equal(p.distance[k], q.distance[k], err_msg=k)
        assert p.diagnostics["verdict"] == q.diagnostics["verdict"]
    assert lang_p["label"] == "W1[0,1]"
    np.testing.assert_array_equal(lang["w1_over_floor"], lang_p["w1_over_floor"])


def test_fpkit_workers_must_be_a_positive_integer(monkeypatch):
    from fpkit.processes import default_workers

    monkeypatch.setenv("FPKIT_WORKERS", "3")
    assert default_workers() == 3
    for bad in ("0", "two"):
        monkeypatch.setenv("FPKIT_WORKERS", bad)
        with pytest.raises(ConfigError, match="FPKIT_WORKERS"):
            default_workers()


def test_pooled_predictions_from_a_script_without_a_main_guard(tmp_path):
    """The worker processes do not re-run the caller's main script (multiprocessing's default for spawned and
    fork-server workers): a script without ``if __name__ == "__main__"`` gets its predictions, once."""
    script = tmp_path / "noguard.py"
    script.write_text(
        "import fpkit\n"
        "from fpkit.validation.experiments import fp_histograms as ex\n"
        "print('started', flush=True)\n"
        "run = fpkit.Ensemble(d=8, k=3, activation='tanh', lr=0.02, batch_size=8, members=200, steps=100,\n"
        "                     snapshots=5, seed=1).train(show_progress=False)\n"
        "E, J = fpkit.prediction.split_members(run.members, 1, 'half')\n"
        "acfg = dict(ex.FpHistograms.Config().model_dump()['analysis'], variants=['standard'], cells=40,\n"
        "            max_cells=80, fp_dt=0.5, langevin_paths=200)\n"
        "preds, lang = ex.predict_entries_pooled(run, ['W2[0,0]', 'W1[0,1]'], E, J, acfg, 1, workers=2)\n"
        "print('labels', [p.label for p in preds], lang['label'])\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.count("started") == 1
    assert "labels ['W2[0,0]', 'W1[0,1]'] W1[0,1]" in out.stdout
