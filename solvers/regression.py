"""Exact results for SGD on linear regression: the references the SGD sampler is tested against.

Model: y = w* x + r ε with loss ½(w x − y)² averaged over a minibatch of B samples. One SGD step with
learning rate η is the Kesten recursion, in u = w − ŵ (ŵ the minimiser of the loss the minibatches come
from),

    u_{k+1} = (1 − η a_k) u_k + η c_k,   a_k = mean_b x_b²,   c_k = mean_b x_b e_b,

with e = y − ŵ x the residual (so mean x e = 0 over the data or the population). (a_k, c_k) are
independent of u_k and iid over k, hence the first two moments follow exactly:

    E u_{k+1}   = (1 − η E a) E u_k                                   (E c = 0)
    E u_{k+1}²  = E(1 − η a)² E u_k² − 2η² Cov(a, c) E u_k + η² E c²

For a batch mean of B draws, Cov(mean f, mean g) = κ Cov(f, g) with κ = 1/B for iid indices (and for
fresh Gaussian samples) and κ = (n − B)/(B (n − 1)) for B distinct indices out of n.

Gaussian data online (x ~ N(0, s²), ε ~ N(0, 1), so e = r ε): E a = s², E a² = s⁴ (B + 2)/B,
Cov(a, c) = 0, E c² = r² s²/B. Stationary variance of SGD (setting E u'² = E u²):

    Var_SGD = η r² / (2B − η s² (B + 2)),

while the Itô SDE dw = −s² u dt + √(2D(u)) dW with D = (η/2)·Var(minibatch-mean gradient | u)
= (η/2)(2 s⁴ u² + r² s²)/B has d E u²/dt = −2 s² E u² + 2 E D = 0 at

    Var_SDE = η r² / (2 (B − η s²)),

so Var_SGD / Var_SDE − 1 = η s² B / (2B − η s² (B + 2)) = η s²/2 + O(η²). SVAG with amplification l
(step η/l, gradient c₁ g₁ + c₂ g₂, c₁ + c₂ = 1, c₁² + c₂² = l) gives

    Var_SVAG(l) = η r² / (2B − 2η s² − η s² B / l),

equal to Var_SGD at l = 1 and to Var_SDE as l → ∞. The stationary law of the Kesten recursion has a
power-law tail P(|u| > x) ~ x^(−α) with E|1 − η a|^α = 1 (Kesten 1973; Gürbüzbalaban et al. 2021).
"""

from __future__ import annotations

import numpy as np

from fpkit.errors import ConfigError


def online_moments(k, *, eta, s, r, B, w_star, m0, v0):
    """Exact E w_k and Var w_k of SGD on online Gaussian 1-D regression.

    Parameters
    ----------
    k : int or array of ints, the steps. eta, s, r, B : learning rate, x std, noise std, batch size.
    w_star : the true slope. m0, v0 : mean and variance of w_0.
    """
    k = np.atleast_1d(np.asarray(k, dtype=np.int64))
    q1 = 1.0 - eta * s * s
    q2 = 1.0 - 2.0 * eta * s * s + eta * eta * s**4 * (B + 2.0) / B
    add = eta * eta * r * r * s * s / B
    mean_u = (m0 - w_star) * q1 ** k.astype(float)
    S0 = v0 + (m0 - w_star) ** 2
    # S_k = q2^k S0 + add (1 - q2^k)/(1 - q2)
    S = q2 ** k.astype(float) * S0 + add * (1.0 - q2 ** k.astype(float)) / (1.0 - q2)
    return w_star + mean_u, S - mean_u**2


def batch_kappa(B: int, n: int | None, sampling: str = "iid") -> float:
    """Variance factor of a batch mean: 1/B (iid or online), (n − B)/(B (n − 1)) (distinct indices)."""
    if sampling == "iid" or n is None:
        return 1.0 / B
    if sampling == "distinct":
        return (n - B) / (B * (n - 1.0))
    raise ConfigError(f"`sampling` must be 'iid' or 'distinct', got {sampling!r}")


def dataset_moments(k, x, y, *, eta, B, m0, v0, sampling="iid"):
    """Exact E w_k and Var w_k of SGD on the fixed 1-D data set (x, y) with minibatches of size B."""
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    n = x.size
    kap = batch_kappa(B, n, sampling)
    w_hat = (x * y).sum() / (x * x).sum()
    e = y - w_hat * x
    f = x * x
    gq = x * e
    m2 = f.mean()
    var_a = kap * f.var()
    cov_ac = kap * ((f - m2) * (gq - gq.mean())).mean()
    var_c = kap * gq.var()
    k = np.atleast_1d(np.asarray(k, dtype=np.int64))
    mu, S = m0 - w_hat, v0 + (m0 - w_hat) ** 2
    q2 = 1.0 - 2.0 * eta * m2 + eta * eta * (m2 * m2 + var_a)
    means, variances = [], []
    kmax = int(k.max())
    out_m, out_S = {}, {}
    for step in range(kmax + 1):
        out_m[step], out_S[step] = mu, S
        mu, S = (1.0 - eta * m2) * mu, q2 * S - 2.0 * eta * eta * cov_ac * mu + eta * eta * var_c
    for kk in k:
        means.append(w_hat + out_m[int(kk)])
        variances.append(out_S[int(kk)] - out_m[int(kk)] ** 2)
    return np.array(means), np.array(variances)


def var_sgd(eta, s, r, B):
    """Exact stationary variance of SGD on online Gaussian 1-D regression: η r² / (2B − η s² (B + 2))."""
    den = 2.0 * B - eta * s * s * (B + 2.0)
    if den <= 0:
        raise ConfigError("`eta` too large: the SGD second moment diverges (need η s² (B + 2) < 2B)")
    return eta * r * r / den


def var_sde(eta, s, r, B):
    """Stationary variance of the Itô SDE with D = (η/2)·Var(minibatch gradient | w): η r² / (2 (B − η s²))."""
    return eta * r * r / (2.0 * (B - eta * s * s))


def var_svag(eta, s, r, B, l):
    """Exact stationary variance of SVAG with amplification l: η r² / (2B − 2η s² − η s² B / l)."""
    return eta * r * r / (2.0 * B - 2.0 * eta * s * s - eta * s * s * B / l)


def kesten_index(h: float, B: int = 1) -> float:
    """The tail index α > 0 solving E|1 − h χ²_B / B|^α = 1 (h = η s²) for online Gaussian 1-D regression.

    The expectation is integrated with scipy over the chi-square density; requires E log|1 − h a| < 0.
    """
    from scipy import integrate, optimize, stats

    dist = stats.chi2(B)

    def moment(alpha):
        f = lambda q: np.abs(1.0 - h * q / B) ** alpha * dist.pdf(q)
        kink = B / h
        a, _ = integrate.quad(f, 0.0, kink, limit=200)
        b, _ = integrate.quad(f, kink, np.inf, limit=200)
        return a + b - 1.0

    lo, hi = 1e-3, 1.0
    if moment(lo) >= 0:
        raise ConfigError("`h` gives E log|1 − h a| >= 0: the recursion has no stationary law")
    while moment(hi) < 0:
        hi *= 2.0
        if hi > 1e3:
            raise ConfigError("tail index above 1000: the stationary law is not heavy-tailed")
    return float(optimize.brentq(moment, lo, hi, xtol=1e-10))


def hill(sample, k: int) -> float:
    """Hill's estimator of the tail index from the k largest |values|: 1 / mean(log(X_(i) / X_(k+1)))."""
    a = np.sort(np.abs(np.asarray(sample, dtype=float).ravel()))[::-1]
    if not 1 <= k < a.size:
        raise ConfigError(f"`k` must be in [1, {a.size - 1}], got {k}")
    return float(1.0 / np.mean(np.log(a[:k] / a[k])))
