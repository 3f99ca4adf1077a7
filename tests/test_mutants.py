"""Tests written for mutants that survived the mutation pass of the experiment layer (issue 23; see
cosmic-ray.toml and scripts/mutation_sample.py). Each test names the mutation it kills; the expected values
come from the construction of the inputs or hand computation, not from the implementation's formulas."""

import numpy as np
import pytest

import fpkit
from fpkit import prediction as P
from fpkit.ensemble import EnsembleRun
from fpkit.errors import ConfigError


def autoencoder_like(W1, W2, W3, grad_var=None, t=None):
    S = W1.shape[0]
    t = np.arange(S, dtype=float) if t is None else t
    return EnsembleRun.from_arrays(t=t, weights={"W1": W1, "W2": W2, "W3": W3}, eta=0.1, grad_var=grad_var)


def constant(S, M, shape, rng, sd=1.0):
    """Entries with the same standard-normal members at every snapshot (no change of mean or spread)."""
    x = sd * rng.standard_normal((1, M) + shape)
    return np.repeat(x, S, axis=0)


def test_auto_entries_picks_the_w3_entry_whose_mean_moves_most_relative_to_its_initial_spread():
    """W3 (d=3, k=2): entry (1,1) moves by 0.5 with initial spread 0.1 (5 spreads), entry (1,0) moves by 1.0
    with initial spread 10 (0.1 spreads). The relative shift picks (1,1); an absolute one, or shift + spread,
    would pick (1,0). Kills `/ W3.std` -> `+ W3.std` (prediction.py, auto_entries)."""
    rng = np.random.default_rng(0)
    S, M = 4, 400
    W1, W2 = constant(S, M, (2, 3), rng), constant(S, M, (2, 2), rng)
    z = rng.standard_normal((M,))
    z = (z - z.mean()) / z.std()  # exactly unit spread
    W3 = constant(S, M, (3, 2), rng)
    W3[:, :, 1, 0] = 10.0 * z + np.linspace(0.0, 1.0, S)[:, None]
    W3[:, :, 1, 1] = 0.1 * z + np.linspace(0.0, 0.5, S)[:, None]
    labels = P.auto_entries(autoencoder_like(W1, W2, W3), {"W1": 0})
    assert labels[-3:] == ["W3[0,0]", "W3[2,0]", "W3[1,1]"]
    assert labels[:4] == ["W2[0,0]", "W2[0,1]", "W2[1,0]", "W2[1,1]"]


def test_joint_prediction_of_one_label_names_it_whole():
    """joint=True with a single string: the error lists the one label, not its characters. Kills
    `isinstance(entries, str)` -> `not isinstance(...)` in predict's joint branch."""
    rng = np.random.default_rng(1)
    S, M = 3, 200
    W1, W2, W3 = (constant(S, M, shape, rng) for shape in ((2, 3), (2, 2), (3, 2)))
    run = autoencoder_like(W1, W2, W3)
    with pytest.raises(ConfigError, match=r"exactly two entries, got \['W2\[0,0\]'\]"):
        P.predict(run, "W2[0,0]", joint=True)


# ------------------------------------------------------------------- fp_histograms: the criteria
from fpkit.validation.experiments import fp_histograms as ex  # noqa: E402

TH = ex.THRESHOLDS


def scored(label, fp, frozen, drift_only, diffusion_only):
    """A Prediction with hand-set distances; only what the criteria read is meaningful."""
    fp = np.asarray(fp, dtype=float)
    S = fp.size
    last = lambda v: np.concatenate([np.full(S - 1, 1.0), [v]])  # noqa: E731
    g = fpkit.Grid.uniform(-1.0, 1.0, 4)
    z = np.zeros((S, 4))
    return P.Prediction(label, np.linspace(0, 80.0, S), g, z, z, np.zeros((S, 2)),
                        {"fp": fp, "frozen": last(frozen), "drift_only": last(drift_only),
                         "diffusion_only": last(diffusion_only)},
                        fp, np.ones(S), fp, fp, {"drift": z, "diffusion": z, "supported": z > -1})  # fmt: skip


@pytest.mark.parametrize("last", [2.0, 0.5])
def test_criteria_scale_the_baselines_by_the_last_distance(last):
    """The baseline thresholds are ratios to the last W1/floor: with last = 2 (or 0.5) a baseline passes at
    exactly threshold x last and fails just below. (With last = 1, as in test_claims, `x last` and `/ last`
    agree.) Kills `th[...] * last` -> `th[...] / last` in both criteria."""
    fp = [0.0, last, last, last]
    for key, name in (("frozen", "diffusion_vs_frozen"), ("drift_only", "diffusion_vs_drift_only")):
        for factor, passes in ((1.0, True), (0.99, False)):
            kw = {"frozen": 100.0, "drift_only": 100.0, "diffusion_only": 100.0}
            kw[key] = TH[name] * last * factor
            c = ex.diffusion_driven_criteria(scored("W1[0,5]", fp, **kw))
            assert c["pass"] is passes, (key, factor, c)
            assert c["last"] == last and c["vs_" + key] == pytest.approx(TH[name] * factor)
    for key in ("frozen", "diffusion_only"):
        for factor, passes in ((1.0, True), (0.99, False)):
            kw = {"frozen": 100.0, "drift_only": 100.0, "diffusion_only": 100.0}
            kw[key] = TH["drift_vs_baselines"] * last * factor
            c = ex.drift_dominated_criteria(scored("W2[0,0]", fp, **kw))
            assert c["pass"] is passes, (key, factor, c)
            assert c["vs_" + key] == pytest.approx(TH["drift_vs_baselines"] * factor)


# ------------------------------------------------------------------ prediction: the 2-D joint pair
@pytest.fixture(scope="module")
def pair():
    ens = fpkit.Ensemble(d=6, k=2, activation="tanh", lr=0.02, batch_size=4, members=800, steps=600, snapshots=12,
                         seed=1)  # fmt: skip
    run = ens.train(show_progress=False)
    E, J = P.split_members(run.members, 0, "half")
    labels = ["W2[0,0]", "W2[0,1]"]
    return run, J, P.predict_pair(run, labels, E, J, dt=0.05, cells=24), ens, E


def test_pair_prediction_histograms_and_l1_against_numpy(pair):
    """The judged members' joint histograms against numpy.histogram2d on the prediction's edges; the L1
    columns against sums over those histograms; the prediction is a density (non-negative, integrates to one
    with the cell areas from the edges) starting from the first histogram. predict_pair has no fast test
    otherwise (the flagship's pair runs in the slow tests only)."""
    run, J, p, *_ = pair
    ex_, ey = (np.asarray(e) for e in p.grid.edges)
    area = np.outer(np.diff(ex_), np.diff(ey))
    w = np.stack([run.weights["W2"][:, J, 0, 0], run.weights["W2"][:, J, 0, 1]], axis=-1)
    ref = np.stack([np.histogram2d(w[s, :, 0], w[s, :, 1], bins=[ex_, ey])[0] for s in range(run.t.size)])
    assert ref.sum(axis=(1, 2)).min() == J.size  # the grid covers every judged member
    ref /= J.size * area
    np.testing.assert_allclose(p.empirical, ref, rtol=1e-12, atol=1e-12)
    l1_frozen = [float((np.abs(ref[s] - ref[0]) * area).sum()) for s in range(run.t.size)]
    np.testing.assert_allclose(p.l1_joint_frozen, l1_frozen, rtol=1e-12, atol=1e-14)
    assert p.density.min() >= 0
    np.testing.assert_allclose((p.density * area).sum(axis=(1, 2)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(p.density[0], ref[0], atol=1e-4 * ref.max())
    l1 = [float((np.abs(p.density[s] - ref[s]) * area).sum()) for s in range(run.t.size)]
    np.testing.assert_allclose(p.l1_joint, l1, rtol=1e-10, atol=1e-12)
    assert p.labels == ["W2[0,0]", "W2[0,1]"] and np.array_equal(p.t, run.t)
    assert -1e-3 < p.clipped_min <= 0


def test_pair_prediction_marginals_are_within_the_noise_of_the_judged_members(pair):
    """Each marginal of the 2-D prediction is judged against that entry's judged members: W1/floor of a
    prediction within noise stays below 4 over 12 correlated snapshots (measured max 2.4), while wrong drift,
    diffusion or member indices put it far off. The 1-D predictions of the same entries (measured max 1.4)
    and the frozen baseline at the end (2.3-2.7) bracket it."""
    run, J, p, *_ = pair
    assert len(p.marginal_distance) == 2
    for d in p.marginal_distance:
        assert d[0] < 1.0 and np.all(np.isfinite(d)) and d.max() < 4.0, d
    # the prediction is closer to the judged joint histogram at the end than the first histogram is
    assert p.l1_joint[-1] < p.l1_joint_frozen[-1]


# ------------------------------------------------------------------- prediction: diffusion_share
def test_diffusion_share_against_a_hand_computed_integral():
    """diffusion_share = 2∫E[D]dt / Var(w at the end), D = (η/2)·grad_var. With grad_var = c(1+t) (mean over
    members; members scatter around it) on the uneven times t = 0, 1, 3, 6 the trapezoid rule is exact:
    2·(η/2)·c·∫0^6 (1+t) dt = η·c·24 = 4.8 for η = 0.1, c = 2; the final spread has variance 1.6 (ddof 0),
    so the share is 3. A second entry has twice the grad_var and four times the final variance: 1.5.
    Kills `* np.diff(t)` -> `% np.diff(t)` and `0.5 * eta * V` -> `0.5 * eta // V`."""
    rng = np.random.default_rng(3)
    t = np.array([0.0, 1.0, 3.0, 6.0])
    M = 500
    z = rng.standard_normal(M)
    z = (z - z.mean()) / z.std()
    W1 = np.zeros((4, M, 1, 2))
    W1[-1, :, 0, 0] = np.sqrt(1.6) * z
    W1[-1, :, 0, 1] = 2 * np.sqrt(1.6) * z
    noise = rng.standard_normal((4, M))
    noise -= noise.mean(axis=1, keepdims=True)  # member mean exactly c(1+t)
    V = np.zeros((4, M, 1, 2))
    V[:, :, 0, 0] = 2.0 * (1 + t)[:, None] + 0.5 * noise
    V[:, :, 0, 1] = 4.0 * (1 + t)[:, None] + 0.5 * noise
    run = EnsembleRun.from_arrays(t=t, weights={"W1": W1}, eta=0.1, grad_var={"W1": V})
    np.testing.assert_allclose(P.diffusion_share(run, "W1"), [[3.0, 1.5]], rtol=1e-12)


# --------------------------------------------------------- fp_histograms: the Langevin cross-check
def test_langevin_crosscheck_of_an_exact_ou_density_scores_about_one_floor():
    """A 'prediction' whose density is the exact Ornstein-Uhlenbeck solution (A = -w, D = 0.5, from
    N(1, 0.3²): mean e^{-t}, variance 0.09 e^{-2t} + 0.5(1 - e^{-2t})) and whose coefficients are those A, D:
    the Langevin paths match it to sampling error, so W1/floor is about 1 at every snapshot (median between
    0.3 and 2; the floor is the paths' own). A ratio computed as W1 + floor would be ~0.01. Kills the
    `/` -> `+` mutant in langevin_crosscheck."""
    g = fpkit.Grid.uniform(-5.0, 5.0, 1000)
    x = g.x
    t = np.array([0.0, 0.1, 0.3, 0.6, 1.0])
    mean, var = np.exp(-t), 0.09 * np.exp(-2 * t) + 0.5 * (1 - np.exp(-2 * t))
    dens = np.exp(-((x[None] - mean[:, None]) ** 2) / (2 * var[:, None])) / np.sqrt(2 * np.pi * var[:, None])
    dens /= g.integrate(dens)[:, None]
    S, n = dens.shape
    coef = {"drift": np.broadcast_to(-x, (S, n)).copy(), "diffusion": np.full((S, n), 0.5),
            "supported": np.ones((S, n), bool)}  # fmt: skip
    one = np.ones(S)
    pred = P.Prediction("W2[0,0]", t, g, dens, dens, np.zeros((S, 2)), {"fp": one}, one, one, one, one, coef)
    lg = ex.langevin_crosscheck(pred, 20000, seed=4, dt=0.002)
    v = lg["w1_over_floor"][1:]
    assert lg["label"] == "W2[0,0]" and lg["n_paths"] == 20000
    assert 0.3 < np.median(v) < 2.0 and v.max() < 3.0, v


# ------------------------------------------------------ fp_histograms: the output distributions
def test_output_distribution_columns_against_scipy(pair):
    """The W1/floor and KS columns of output_distributions against scipy on the error arrays it returns: W1
    of two samples over the two-sample floor sqrt(2) x w1_floor(M) (the floor of each sample against the
    law, independent errors add in quadrature), KS = scipy.stats.ks_2samp. Kills the sqrt(2) -> sqrt(1) and
    `* floor` -> `** floor` mutants."""
    import scipy.stats

    from fpkit import metrics

    run, J, _, ens, E = pair
    preds = [P.predict_entry(run, lab, E, J, dt=0.05, js=False, ks=False) for lab in ("W2[0,0]", "W2[0,1]")]
    cfg = {"analysis": {"heldout": 300}, "model": {"activation": "tanh"}}
    out = ex.output_distributions(run, ens, cfg, preds, J, seed=0)
    trained = out["trained"]
    floor2 = np.sqrt(2) * metrics.w1_floor(J.size, samples=trained)
    for key, col in (("quantile_mapped", "w1_quantile_over_floor"), ("predicted", "w1_pred_over_floor"),
                     ("shuffled", "w1_shuffled_over_floor")):  # fmt: skip
        ref = scipy.stats.wasserstein_distance(trained, out[key]) / floor2
        assert out[col] == pytest.approx(ref, rel=1e-9), col
    for key, col in (("predicted", "ks_pred"), ("quantile_mapped", "ks_quantile")):
        assert out[col] == pytest.approx(scipy.stats.ks_2samp(trained, out[key]).statistic, rel=1e-12), col


# --------------------------------------------------- diagnostics and the late goal on hand-set distances
def test_worse_than_frozen_beyond_noise_means_by_more_than_one_floor():
    """fp = 2.0, 3.5, 5.0 against frozen = 1.5, 2.0, 5.5: snapshots 1 and 2 are worse than frozen, only
    snapshot 2 by more than BEYOND_NOISE = 1 floor (3.5 > 3.0; 2.0 < 2.5). Kills `frozen + BEYOND_NOISE` ->
    `frozen // BEYOND_NOISE`."""
    assert P.BEYOND_NOISE == 1.0
    p = scored("W2[0,0]", [0.0, 2.0, 3.5, 5.0], frozen=5.5, drift_only=9.0, diffusion_only=9.0)
    p.distance["frozen"] = np.array([0.0, 1.5, 2.0, 5.5])
    d = P.diagnose(p)
    assert d["worse_than_frozen_snapshots"] == [1, 2]
    assert d["worse_than_frozen_beyond_noise"] == [2]
    assert any("worse than the frozen" in m for m in d["messages"])


@pytest.mark.parametrize("S, q", [(12, 3), (9, 2), (3, 1), (2, 1)])
def test_late_max_is_over_the_last_quarter_of_the_snapshots(S, q):
    """late_max = max of W1/floor over the last max(1, S // 4) snapshots: a large value just before them
    does not count, the first of them does. Kills `S // 4` -> `S | 4` and similar."""
    fp = np.ones(S)
    fp[S - q - 1] = 50.0  # just before the last quarter
    assert ex.late_max(scored("W1[0,0]", fp, 9.0, 9.0, 9.0)) == 1.0
    fp[S - q] = 7.0  # the first snapshot of the last quarter
    assert ex.late_max(scored("W1[0,0]", fp, 9.0, 9.0, 9.0)) == 7.0


def test_prediction_plot_shows_the_snapshots_nearest_to_fractions_of_the_run():
    """With no ``snapshots``, Prediction.plot draws the snapshots nearest to 1 %, 10 %, 1/3 and all of the
    run: on t = 0, 1, ..., 30 those are t = 0, 3, 10 and 30 (one FP line each, labelled with t; drawn by
    fpkit.plotting.plot_prediction). Kills the `1 / 3` -> `1 >> 3` mutant (which drops t = 10)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fp = np.linspace(0.0, 2.0, 31)
    p = scored("W2[0,0]", fp, 9.0, 9.0, 9.0)
    p.t[:] = np.arange(31.0)
    fig = p.plot()
    ax = fig.axes[0]
    assert [ln.get_label() for ln in ax.lines] == ["FP, t = 0", "FP, t = 3", "FP, t = 10", "FP, t = 30"]
    plt.close(fig)


@pytest.mark.parametrize("drift_only, kind", [(6.0, "drift-dominated"), (6.01, "diffusion-driven")])
def test_kind_compares_the_last_snapshots_when_fp_changes_at_the_end(drift_only, kind):
    """kind reads the last snapshot of both: fp ends at 4 (after 1s), so drift-only must exceed 1.5 x 4 = 6,
    not 1.5 x 1. Kills `distance['fp'][-1]` -> `[-2]`."""
    assert P.DIFFUSION_DRIVEN_GAIN == 1.5
    assert scored("W1[0,0]", [0.0, 1.0, 1.0, 4.0], 9.0, drift_only, 9.0).kind == kind


# ------------------------------------------------------------------------------ metrics: input checks
def test_halves_floor_counts_samples_along_axis_0():
    """halves_floor takes (N,) or (N, d) samples and needs N >= 4 along axis 0: (10, 2) is fine, (3, 10)
    is not. Kills `x.shape[0] < 4` -> `x.shape[-1] < 4`."""
    from fpkit import metrics

    rng = np.random.default_rng(0)
    d = lambda a, b: float(abs(a.mean() - b.mean()))  # noqa: E731
    assert np.isfinite(metrics.halves_floor(rng.standard_normal((10, 2)), d))
    with pytest.raises(ConfigError, match="at least 4 samples along axis 0"):
        metrics.halves_floor(rng.standard_normal((3, 10)), d)


def test_one_d_distances_refuse_a_two_d_grid():
    """w1_samples on a 2-D grid is a ConfigError naming the grid. Kills `grid.ndim != 1` ->
    `grid.ndim < 1`."""
    from fpkit import metrics

    g2 = fpkit.Grid.uniform((-1.0, -1.0), (1.0, 1.0), (4, 4))
    with pytest.raises(ConfigError, match="`grid` must be 1-D"):
        metrics.w1_samples(np.full((4, 4), 0.25), g2, np.zeros(5))


# ------------------------------------------------- prediction: comparisons with the mechanistic route
def test_kramers_moyal_route_compared_with_the_standard_mechanistic_variant(pair):
    """route='kramers-moyal' with compare_with=['standard']: the comparison is the mechanistic standard
    prediction, i.e. the 'fp' column of a separate mechanistic call on the same split and grid. (Only a
    mechanistic call may skip its own variant.) Kills `route != 'mechanistic'` -> `route >= 'mechanistic'`."""
    run, J, _, ens, E = pair
    km = P.predict_entry(run, "W2[0,0]", E, J, route="kramers-moyal", compare_with=["standard"], dt=0.05,
                         js=False, ks=False)  # fmt: skip
    mech = P.predict_entry(run, "W2[0,0]", E, J, dt=0.05, js=False, ks=False)
    np.testing.assert_allclose(km.distance["fp_standard"], mech.distance["fp"], rtol=1e-10)
    assert "fp_standard" not in P.predict_entry(run, "W2[0,0]", E, J, compare_with=["standard"], dt=0.05,
                                                js=False, ks=False).distance  # fmt: skip


def test_output_distributions_draw_w2_from_the_final_predicted_density(pair, monkeypatch):
    """A hand-made prediction for W2[0,0] whose final density sits on [1.8, 2.2] and whose earlier ones sit
    on [-2.2, -1.8]: the networks behind the 'predicted' errors carry W2[0,0] values in [1.8, 2.2] (cell
    centres ± half a cell), and the quantile-mapped ones too; other entries keep their trained values. Kills
    `p.density[-1]` -> `p.density[1]` in the draw."""
    run, J, _, ens, E = pair
    g = fpkit.Grid.uniform(-3.0, 3.0, 60)
    S = 4
    dens = np.zeros((S, 60))
    dens[:, np.abs(g.x + 2.0) < 0.2] = 1.0
    dens[-1] = 0.0
    dens[-1, np.abs(g.x - 2.0) < 0.2] = 1.0
    dens /= g.integrate(dens)[:, None]
    p = scored("W2[0,0]", np.ones(S), 9.0, 9.0, 9.0)
    p.grid, p.density = g, dens
    calls = []
    real = ex.reconstruction_errors

    def spy(weights, x, activation):
        out = real(weights, x, activation)
        calls.append((weights, out))
        return out

    monkeypatch.setattr(ex, "reconstruction_errors", spy)
    cfg = {"analysis": {"heldout": 50}, "model": {"activation": "tanh"}}
    out = ex.output_distributions(run, ens, cfg, [p], J, seed=0)
    by_result = {id(res): w for w, res in calls}
    last = run.weights["W2"][-1][J]
    for key in ("predicted", "quantile_mapped"):
        w2 = by_result[id(out[key])]["W2"]
        assert np.all(np.abs(w2[:, 0, 0] - 2.0) <= 0.2 + 1e-12), key
        np.testing.assert_array_equal(w2[:, 1, :], last[:, 1, :])
        np.testing.assert_array_equal(w2[:, 0, 1], last[:, 0, 1])


def test_increment_autocorrelation_of_straight_lines_and_of_a_random_walk():
    """The evidence's lag-1 autocorrelation of the increments between snapshots: members moving on straight
    lines w0 + v t repeat their increment, correlation exactly 1; a random walk with independent Gaussian
    steps has correlation 0 (each lag's estimate from 200 estimation members has sd 0.07; the median of six
    stays well inside 0.25). Kills `inc[j].std() > 0` -> `< 0` (which reports None)."""
    rng = np.random.default_rng(0)
    M, t = 400, np.linspace(0.0, 1.0, 8)
    w0 = rng.normal(0.0, 0.3, M)
    lines = w0[None] + rng.normal(0.0, 1.0, M)[None] * t[:, None]
    walk = np.cumsum(np.concatenate([w0[None], 0.1 * rng.standard_normal((7, M))]), axis=0)
    got = []
    for w in (lines, walk):
        run = EnsembleRun.from_arrays(t=t, weights={"W2": w[:, :, None, None]}, eta=0.01)
        p = P.predict(run, "W2[0,0]", route="kramers-moyal", js=False, dt=0.01)
        got.append(p.diagnostics["increment_autocorrelation"])
    assert got[0] == pytest.approx(1.0, abs=1e-12)
    assert abs(got[1]) < 0.25, got


def test_noise_to_signal_is_the_median_ratio_at_the_last_snapshot():
    """noise_to_signal = median over members and entries of grad_var / grad² at the end: at the last
    snapshot the ratios are 4/1² = 4 (entry 0) and 4/2² = 1 (entry 1) for each of 3 members, median 2.5;
    earlier snapshots (ratio 100) must not count. Kills `[-1]` -> `[~1]` on the gradients."""
    S, M = 3, 3
    W = np.zeros((S, M, 1, 2))
    g = np.ones((S, M, 1, 2))
    g[-1, :, 0, 1] = 2.0
    v = np.full((S, M, 1, 2), 100.0)
    v[-1] = 4.0
    run = EnsembleRun.from_arrays(t=np.arange(S, dtype=float), weights={"W2": W}, eta=0.1, grad={"W2": g},
                                  grad_var={"W2": v})  # fmt: skip
    assert ex.noise_to_signal(run) == 2.5


def test_summary_sentences_end_with_the_entries_diagnostics():
    """The report's summary ends with every entry's diagnostic messages joined by '; ' and a full stop.
    Kills `+ "."` -> `// "."` (a TypeError whenever there are messages)."""
    a = scored("W2[0,0]", [0.0, 1.0, 1.0], 9.0, 9.0, 9.0)
    b = scored("W1[0,1]", [0.0, 1.0, 1.0], 9.0, 9.0, 9.0)
    a.diagnostics = {"messages": ["first message"]}
    b.diagnostics = {"messages": ["second", "third"]}
    res = ex.Result(t=a.t, entries=[a, b], members=200, eta=0.02, batch_size=8, split={})
    assert ex.summary_sentences(res).endswith("Diagnostics: first message; second; third.")


# ------------------------------------------------------------------ estimators and the generic writer (issue 23)
def test_histogram_refuses_empty_samples_and_an_empty_grid_window():
    """Kills `x.size == 0` -> `< 0` (_as_snapshots) and `pts.shape[0] == 0` -> `== -1` (histogram_density)."""
    from fpkit import estimators as est

    g = fpkit.Grid.uniform(0.0, 1.0, 10)
    with pytest.raises(ConfigError, match="`samples` is empty"):
        est.histogram_density(np.empty(0), g)
    with pytest.raises(ConfigError, match="no samples lie inside the grid"):
        est.histogram_density(np.array([2.0, 3.0]), g, outside="drop")


def test_local_linear_of_samples_at_one_point_is_their_mean_with_its_standard_error():
    """All samples at one x (bandwidth 0): the fit is mean(Y) with standard error std(Y)/√n everywhere."""
    from fpkit import estimators as est

    y = np.random.default_rng(0).normal(size=(50, 2))
    fit = est.local_linear_fit(np.full(50, 0.3), y, np.array([0.0, 0.3, 1.0]))
    np.testing.assert_allclose(fit.value, np.broadcast_to(y.mean(axis=0), (3, 2)), rtol=1e-15)
    np.testing.assert_allclose(fit.se, np.broadcast_to(y.std(axis=0) / np.sqrt(50), (3, 2)), rtol=1e-15)


def test_evaluation_points_outside_the_samples_are_not_supported():
    """Kills `&` -> `+` in the support mask: points beyond the samples' range are unsupported even where the
    kernel still sees many samples."""
    from fpkit import estimators as est

    x = np.linspace(0.0, 1.0, 2001)
    fit = est.local_linear_fit(x, 2 * x, np.array([-0.05, 0.5, 1.05]), 0.2, tail="hold")
    np.testing.assert_array_equal(fit.supported, [False, True, False])
    np.testing.assert_allclose(fit.value, [1.0, 1.0, 1.0], atol=1e-9)  # held at the one supported value


def test_fit_on_grid_of_a_collapsed_entry_repeats_the_one_fit_per_cell():
    """An entry collapsed to one value (every sample equal): each cell gets the mean and its standard error,
    for every component (kills `np.repeat(..., axis=-1)`)."""
    from fpkit.estimators.smoothing import _fit_on_grid

    y = np.random.default_rng(1).normal(size=(40, 2))
    g = fpkit.Grid.uniform(-1.0, 1.0, 8)
    fit = _fit_on_grid(np.full(40, 0.1), y, g, 0.05, 5.0, "hold")  # the cells miss the one value
    assert fit.value.shape == fit.se.shape == (8, 2)
    np.testing.assert_allclose(fit.se, np.broadcast_to(y.std(axis=0) / np.sqrt(40), (8, 2)), rtol=1e-15)


def test_generic_writer_stores_object_arrays_as_json(tmp_path):
    """write_tree: numeric arrays become datasets, object arrays (no HDF5 equivalent) JSON attributes (kills
    `v.dtype != object` -> `is not object`)."""
    import json

    import h5py

    from fpkit.experiments import write_tree

    with h5py.File(tmp_path / "t.h5", "w") as f:
        write_tree(f, {"a": np.arange(3.0), "names": np.array(["x", "yz"], dtype=object), "n": 4})
    with h5py.File(tmp_path / "t.h5", "r") as f:
        np.testing.assert_array_equal(f["a"][()], [0.0, 1.0, 2.0])
        assert json.loads(f.attrs["names"]) == ["x", "yz"] and json.loads(f.attrs["n"]) == 4


def test_pair_prediction_refuses_minibatches_that_are_not_iid():
    """The pair's 2 × 2 covariance is the iid-minibatch formula (kills ``train.get(...) or {}`` → ``and {}``,
    which read every run as iid): a run trained with ``sampling = "distinct"`` is refused, naming it."""
    ens = fpkit.Ensemble(d=6, k=2, activation="tanh", lr=0.02, batch_size=4, members=200, steps=10, snapshots=3,
                         seed=1, sampling="distinct")  # fmt: skip
    run = ens.train(show_progress=False)
    E, J = P.split_members(run.members, 0, "half")
    with pytest.raises(ConfigError, match="sampling='distinct'"):
        P.predict_pair(run, ["W2[0,0]", "W2[0,1]"], E, J, dt=0.05, cells=8)


@pytest.mark.parametrize("u, picks", [(P.U_HOLDS + 0.01, "kramers-moyal"), (P.U_HOLDS - 0.01, "mechanistic")])
def test_auto_route_leaves_a_doubtful_mechanistic_drift_only_when_it_is_noisier_beyond_u_holds(monkeypatch, u, picks):
    """route='auto' on both sides of ``U_HOLDS`` (kills ``u >= U_HOLDS`` → ``u < U_HOLDS``): a doubtful
    mechanistic prediction whose drift uncertainty U is at least U_HOLDS and above the Kramers-Moyal one gives
    way to Kramers-Moyal; just below U_HOLDS it is kept. predict_entry is replaced by a stub that returns the
    given diagnostics, so only the choice is tested."""

    class Stub:
        def __init__(self, route):
            self.route = route
            self.diagnostics = {"verdict": "doubtful", "drift_uncertainty": u, "drift_uncertainty_km": 0.1,
                                "reasons": ["U above the threshold"]}  # fmt: skip

    monkeypatch.setattr(P, "predict_entry", lambda run, label, E, J, route, **kw: Stub(route))
    run = type("Run", (), {"grad": np.zeros(1), "grad_var": np.zeros(1)})()
    got = P._predict_auto(run, "W2[0,0]", [0], [1])
    assert got.route == picks
    assert got.diagnostics["route_choice"].startswith(picks)


def _ou_run(t, M, seed, *, theta=0.4, Dc=0.2, eta=0.05, sd0=0.3):
    """One-entry run ("W1", shape (1, 1)) of the exact Ornstein-Uhlenbeck process dw = −θw dt + √(2 Dc) dW:
    gradient θw (A = −g) and gradient variance 2 Dc / η (D = η v / 2 = Dc), exact transitions between the
    snapshots t."""
    rng = np.random.default_rng(seed)
    w = np.zeros((t.size, M, 1, 1))
    w[0] = sd0 * rng.standard_normal((M, 1, 1))
    for s in range(1, t.size):
        a = np.exp(-theta * (t[s] - t[s - 1]))
        w[s] = a * w[s - 1] + np.sqrt(Dc / theta * (1 - a * a)) * rng.standard_normal((M, 1, 1))
    return EnsembleRun.from_arrays(t=t, weights={"W1": w}, eta=eta, grad={"W1": theta * w},
                                   grad_var={"W1": np.full_like(w, 2 * Dc / eta)})  # fmt: skip


def test_evidence_diffusion_share_of_an_ou_entry():
    """The evidence's diffusion share is 2∫D dt / Var(w_T): with D = Dc constant, 2 Dc T over the exact OU
    variance Var(T) = sd0² e^{−2θT} + Dc (1 − e^{−2θT}) / θ (1.917 here), within 5 standard errors of the
    estimation half's sample variance. With steps dt = 0.25 > D, kills `* dt` -> `// dt` (prediction.py,
    evidence: share 0)."""
    theta, Dc, sd0, M = 0.4, 0.2, 0.3, 4000
    t = np.linspace(0.0, 2.0, 9)
    p = fpkit.predict(_ou_run(t, M, 3, theta=theta, Dc=Dc, sd0=sd0), "W1[0,0]", cells=120, ks=False, js=False)
    a = np.exp(-2 * theta * t[-1])
    exact = 2 * Dc * t[-1] / (sd0**2 * a + Dc / theta * (1 - a))
    assert abs(p.diagnostics["diffusion_share"] - exact) < 5 * np.sqrt(2 / (M // 2)) * exact


def test_evidence_increment_autocorrelation_with_two_increments():
    """Three snapshots give two increments, enough for their lag-1 correlation: w0 = 0, w1 = z1, w2 = z1 + z2
    with z1, z2 independent, so the increments' correlation is 0 within 5/√M. Kills `inc.shape[0] >= 2` ->
    `> 2` (prediction.py, evidence: None)."""
    M = 2000
    z = np.random.default_rng(5).standard_normal((2, M, 1, 1))
    w = np.stack([np.zeros((M, 1, 1)), z[0], z[0] + z[1]])
    run = EnsembleRun.from_arrays(t=np.array([0.0, 1.0, 2.0]), weights={"W1": w}, eta=0.1,
                                  grad={"W1": np.zeros_like(w)}, grad_var={"W1": np.ones_like(w)})  # fmt: skip
    c = P.evidence(run, P.entry_arrays(run, "W1[0,0]"), np.arange(M), M,
                   P.estimate_series(run, P.entry_arrays(run, "W1[0,0]"), np.arange(M),
                                     fpkit.Grid.uniform(-8.0, 8.0, 80), route="kramers-moyal"))["increment_autocorrelation"]  # fmt: skip
    assert c is not None and abs(c) < 5 / np.sqrt(M)


def test_entry_arrays_scale_the_statistics_by_the_layer_rates_under_mup():
    """μP with D = 8 inputs, N = 16 hidden units, γ₀ = 1 trains W1 at rate c = N/D = 2 and W2 at 1/N
    (``layer_rates``, the construction of ``_Arch.parameterize``): the entry sees drift −c·g and diffusion
    η c² v / 2, so entry_arrays returns c·grad, c²·grad_var and c²·H∇L. Kills `c**power` -> `c&power` and
    `.get("model", {}) or {}` -> `and {}` (prediction.py, entry_arrays and layer_rates)."""
    rng = np.random.default_rng(0)
    S, M, D, N = 3, 200, 8, 16
    shapes = {"W1": (N, D), "W2": (1, N)}
    f = {k: {n: rng.standard_normal((S, M) + sh) for n, sh in shapes.items()} for k in ("w", "g", "v", "h")}
    run = EnsembleRun.from_arrays(t=np.arange(S, dtype=float), weights=f["w"], eta=0.1, grad=f["g"],
                                  grad_var=f["v"], hess_grad=f["h"],
                                  config={"model": {"kind": "mlp", "parameterization": "mup", "gamma0": 1.0}})  # fmt: skip
    for label, name, idx, c in (("W1[3,5]", "W1", (3, 5), 2.0), ("W2[0,7]", "W2", (0, 7), 1.0 / 16)):
        a = P.entry_arrays(run, label)
        np.testing.assert_array_equal(a["w"], f["w"][name][(slice(None), slice(None)) + idx])
        np.testing.assert_allclose(a["g"], c * f["g"][name][(slice(None), slice(None)) + idx], rtol=1e-15)
        np.testing.assert_allclose(a["v"], c * c * f["v"][name][(slice(None), slice(None)) + idx], rtol=1e-15)
        np.testing.assert_allclose(a["hg"], c * c * f["h"][name][(slice(None), slice(None)) + idx], rtol=1e-15)


@pytest.mark.parametrize("n", [1, 5, 12])
def test_exact_grid_floor_is_the_binomial_mad_integral(n):
    """The exact floor of a grid density: ∫ E|B/n − F| dx, B ~ Binomial(n, F). For the uniform density on
    [0, 1] F = x, and E|B/n − F| is a polynomial of degree n + 1 between the kinks F = k/n, which fall on
    cell edges of 120 cells: 8-point Gauss-Legendre per cell is exact, so the floor equals the integral of
    Σ_k pmf(k) |k/n − F| done independently (scipy.integrate.quad between the kinks). Kills `0.5 * (nodes +
    1)` -> `0.5 % (nodes + 1)` (metrics.py, w1_floor's quadrature nodes)."""
    from scipy.integrate import quad
    from scipy.stats import binom

    from fpkit import metrics

    mad = lambda F: float(np.sum(binom.pmf(np.arange(n + 1), n, F) * np.abs(np.arange(n + 1) / n - F)))  # noqa: E731
    ref = sum(quad(mad, k / n, (k + 1) / n, epsabs=1e-14, epsrel=1e-13)[0] for k in range(n))
    g = fpkit.Grid.uniform(0.0, 1.0, 120)
    got = metrics.w1_floor(n, p=np.ones(120), grid=g, exact=True)
    assert abs(got - ref) < 1e-10 * ref, (got, ref)


def test_compare_takes_two_samples():
    """Two samples {0, 1} are enough to compare (the fewest with a CDF step between them): the W1 floor is
    √(2/(π n)) · √(½·½) · 1 = ½√(1/π) at n = 2. Kills `_samples(samples, "samples", 2)` -> 3 (metrics.py,
    compare)."""
    from fpkit import metrics

    g = fpkit.Grid.uniform(-1.0, 2.0, 60)
    out = metrics.compare(np.where((g.x > 0) & (g.x < 1), 1.0, 0.0), g, np.array([0.0, 1.0]), js_floor_boot=4)
    assert out["n"] == 2 and abs(out["w1_floor"] - 0.5 / np.sqrt(np.pi)) < 1e-12


def test_unsupported_grid_fraction_is_the_share_of_cells_without_support():
    """The OU entry's grid covers every snapshot's members, so the early, narrow snapshots leave cells without
    support (28-64 % supported per snapshot): the diagnosis reports the share of (snapshot, cell) pairs
    without support, a fraction in (0, 1). Kills `1.0 - mean` ->
    `2.0 - mean` (prediction.py, diagnose)."""
    t = np.linspace(0.0, 2.0, 9)
    p = fpkit.predict(_ou_run(t, 4000, 3), "W1[0,0]", cells=120, ks=False, js=False)
    frac = p.diagnostics["unsupported_grid_fraction"]
    assert 0.0 < frac < 1.0
    assert frac == pytest.approx(np.count_nonzero(~p.coefficients["supported"]) / p.coefficients["supported"].size)


def test_estimate_series_has_no_errors_unless_asked():
    """Standard errors take a second pass over the samples: ``estimate_series`` makes it only with se=True
    (NaN errors otherwise, as documented), and then they are finite and positive where supported. Kills the
    default `se=False` -> True (prediction.py, estimate_series)."""
    t = np.linspace(0.0, 2.0, 5)
    run = _ou_run(t, 1000, 4)
    arrays, members, g = P.entry_arrays(run, "W1[0,0]"), np.arange(1000), fpkit.Grid.uniform(-2.0, 2.0, 40)
    plain = P.estimate_series(run, arrays, members, g)
    assert np.all(np.isnan(plain.drift_se)) and np.all(np.isnan(plain.diffusion_se))
    with_se = P.estimate_series(run, arrays, members, g, se=True)
    np.testing.assert_array_equal(with_se.drift, plain.drift)
    ok = with_se.supported
    assert ok.any() and np.all(with_se.drift_se[ok] > 0)
