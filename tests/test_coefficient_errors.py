"""Standard errors of the estimated drift A and diffusion D that a prediction carries (``coefficients
["drift_se"]``, ``["diffusion_se"]``), the flagship stores (``entries/<label>/drift_se``, ``diffusion_se``)
and coefficients.png draws as bands: checked against the spread of the estimate over independent ensembles
(a Monte Carlo reference that does not use the sandwich formula)."""

import numpy as np
import pytest

import fpkit
from fpkit import prediction as P
from fpkit.ensemble import EnsembleRun

R, M = 400, 400  # independent replicate ensembles, members each


@pytest.fixture(scope="module")
def replicates():
    """R ensembles of M members in one run (member blocks): w ~ N(0, 1); the gradient g = w + (0.3 + 0.3|w|) ξ
    (exact drift A = −w, heteroscedastic noise); the minibatch variance v ~ Exp(mean 1 + w²) (D = η(1 + w²)/2).
    Per replicate the estimate of A and D on a fixed grid and its standard error."""
    rng = np.random.default_rng(7)
    t = np.array([0.0, 1.0])
    w = rng.normal(0.0, 1.0, (2, R * M))
    g = w + (0.3 + 0.3 * np.abs(w)) * rng.normal(size=w.shape)
    v = rng.exponential(1.0 + w**2)
    four = lambda a: a[:, :, None, None]  # noqa: E731
    run = EnsembleRun.from_arrays(t=t, weights={"W2": four(w)}, eta=0.1, batch_size=1, grad={"W2": four(g)},
                                  grad_var={"W2": four(v)})  # fmt: skip
    arrays = P.entry_arrays(run, "W2[0,0]")
    grid = fpkit.Grid.uniform(-1.0, 1.0, 9)  # the core, where every replicate supports the fit
    out = {k: [] for k in ("drift", "diffusion", "drift_se", "diffusion_se")}
    for r in range(R):
        s = P.estimate_series(run, arrays, np.arange(r * M, (r + 1) * M), grid, se=True)
        for k in out:
            out[k].append(getattr(s, k)[1])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("name", ["drift", "diffusion"])
def test_standard_error_is_the_spread_over_independent_ensembles(replicates, name):
    """At every grid point the root-mean-square standard error agrees with the standard deviation of the
    estimate over the R independent ensembles within 15 % (the Monte Carlo spread of a standard deviation
    from R = 400 replicates is 3.5 %)."""
    spread = replicates[name].std(axis=0, ddof=1)
    se = np.sqrt(np.mean(replicates[f"{name}_se"] ** 2, axis=0))
    np.testing.assert_allclose(se / spread, 1.0, atol=0.15)


def test_estimate_is_unbiased_within_its_error_for_a_linear_drift(replicates):
    """A = −w is linear, so the local-linear drift has no smoothing bias: its mean over the replicates is −x
    within 4 standard errors of that mean."""
    x = fpkit.Grid.uniform(-1.0, 1.0, 9).x
    mean = replicates["drift"].mean(axis=0)
    err = replicates["drift"].std(axis=0, ddof=1) / np.sqrt(R)
    assert np.all(np.abs(mean + x) <= 4 * err), (mean + x) / err
