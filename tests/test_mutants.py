"""Tests written for mutants that survived the mutation pass of the experiment layer (issue 23; see
cosmic-ray.toml and scripts/mutation_sample.py). Each test names the mutation it kills; the expected values
come from the construction of the inputs or hand computation, not from the implementation's formulas."""

import numpy as np
import pytest

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
