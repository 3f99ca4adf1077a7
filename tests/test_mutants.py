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
    run = autoencoder_like(constant(S, M, (2, 3), rng), constant(S, M, (2, 2), rng), constant(S, M, (3, 2), rng))
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
