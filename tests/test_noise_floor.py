"""The noise floor ``w1_floor`` against Monte Carlo beyond a Gaussian (issue 23).

The floor is the expected W1 distance between a law and the empirical measure of n of its samples; the
experiment evaluates it from the judged samples themselves (``w1_floor(n, samples=x)``). Here the truth
E[W1(F, F_n)] is computed by Monte Carlo with the exact W1 of each draw (quantile form, ∫|Q_n − Q| du, with
closed-form partial means ∫ t f(t) dt, so no quadrature error), and the floor's bias is measured.

Measured (n = 400, ratio of means floor(samples)/E W1, R = 2000 draws, seed 0; 100 / 1000 samples in
brackets): normal 0.981 (0.951 / 0.984), Laplace 0.948 (0.906 / 0.977), Student t5 0.940 (0.901 / 0.951),
t3 0.886 (0.849 / 0.911), t2.5 0.852 (0.814 / 0.872). The floor is biased low: 2–5 % for light tails, 5–15 %
for t5–t3, up to 19 % as the tail index approaches 2 (the tails beyond the sample extremes, which carry
much of W1 for heavy tails, contribute nothing; ``exact=True`` does not help: t3 0.862). A floor ratio of
1 therefore hides a 10–15 % excess for t3-like entries.
"""

import numpy as np
import pytest
from scipy import stats

from fpkit.validation import metrics as M


def _finite(x):
    return np.where(np.isfinite(x), x, 0.0)


def _t_partial_mean(nu):
    d = stats.t(nu)
    # ∫_{−∞}^x t f_ν(t) dt = −(ν + x²)/(ν − 1) f_ν(x)  (d/dx (1 + x²/ν)^{−(ν−1)/2} ∝ x f_ν)
    return d, lambda x: np.where(np.isfinite(x), -(nu + _finite(x) ** 2) / (nu - 1) * d.pdf(_finite(x)), 0.0)


LAWS = {
    "normal": (stats.norm(), lambda x: np.where(np.isfinite(x), -stats.norm.pdf(_finite(x)), 0.0)),
    "laplace": (
        stats.laplace(),
        lambda x: np.where(np.isfinite(x), -0.5 * np.exp(-np.abs(_finite(x))) * (np.abs(_finite(x)) + 1), 0.0),
    ),
    "t3": _t_partial_mean(3),
}


def w1_to_law(x, law, partial_mean):
    """Exact W1 between the empirical measure of x and a law: Σ_i ∫_{(i−1)/n}^{i/n} |x_(i) − Q(u)| du, split
    where Q(u) = x_(i); ∫ Q du over [a, b] = PM(Q(b)) − PM(Q(a)), PM the partial mean (0 at ±∞: mean 0)."""
    n = x.size
    x = np.sort(x)
    a, b = np.arange(n) / n, np.arange(1, n + 1) / n
    us = np.clip(law.cdf(x), a, b)
    pq = lambda u: partial_mean(law.ppf(u))  # noqa: E731
    return float(np.sum(x * (us - a) - (pq(us) - pq(a)) + (pq(b) - pq(us)) - x * (b - us)))


def test_exact_w1_to_a_law_against_quadrature():
    """The Monte-Carlo truth's building block against brute quadrature of ∫|F_n − F| dx (agree to 1e-6)."""
    from scipy import integrate

    rng = np.random.default_rng(0)
    for law, pm in LAWS.values():
        x = np.sort(law.rvs(size=7, random_state=rng))
        Fn = lambda t: np.searchsorted(x, t, side="right") / x.size  # noqa: E731
        f = lambda t: abs(Fn(t) - law.cdf(t))  # noqa: E731
        pts = list(x)
        quad = sum(integrate.quad(f, lo, hi, limit=200)[0] for lo, hi in zip([-np.inf] + pts, pts + [np.inf]))
        assert w1_to_law(x, law, pm) == pytest.approx(quad, rel=1e-6)


# measured with R = 2000 draws at n = 400, seed 0 (module docstring); its delta-method SE ≤ 0.006
REFERENCE = {"normal": 0.981, "laplace": 0.948, "t3": 0.886}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_w1_floor_from_samples_is_biased_low_by_the_measured_amount(name):
    """Ratio of means floor(samples)/E W1 over R = 600 draws of n = 400, with its delta-method standard error
    (≈ 0.01). Asserted: within 4.5 combined SE of the reference measured on other draws (false-alarm rate
    ≈ 7e-6 per law), and, for t3, below 1 by more than 4.5 SE (the bias is real: 0.886 vs 1 is ≥ 10 SE)."""
    law, pm = LAWS[name]
    rng = np.random.default_rng(12345)
    n, R = 400, 600
    W = np.empty(R)
    F = np.empty(R)
    for r in range(R):
        x = law.rvs(size=n, random_state=rng)
        W[r] = w1_to_law(x, law, pm)
        F[r] = M.w1_floor(n, samples=x)
    ratio = F.mean() / W.mean()
    se = np.std(F / W.mean() - ratio * W / W.mean(), ddof=1) / np.sqrt(R)
    assert abs(ratio - REFERENCE[name]) < 4.5 * np.hypot(se, 0.006), (ratio, se)
    if name == "t3":
        assert ratio < 1 - 4.5 * se, (ratio, se)
