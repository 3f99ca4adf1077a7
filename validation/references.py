"""Exact reference solutions used across fpkit's tests and the experiment pipeline.

Conventions: Itô, ``dX = A dt + sqrt(2 D) dW`` (D is the diffusion coefficient, never σ), densities on a grid
are cell averages normalised so that ``sum(p) * cell_volume == 1``.

Contents
--------
* Ornstein-Uhlenbeck transients, 1-D and 2-D (anisotropic, general linear drift and constant tensor D).
* The Gibbs density ``exp(−U/D)`` of a gradient drift ``A = −U'``.
* Survival probability and density of Brownian motion with drift between absorbing walls (half-line and
  interval; method of images and eigenfunction series).
* Kramers' escape rate and the exact mean first-passage time it approximates.
* Euler-Maruyama's stationary OU variance.
* Stationary variances of SGD on 1-D linear regression: exact SGD, and the SDE with the standard and the
  discrete-step diffusion.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import ndtr

from fpkit.errors import ConfigError, check_positive
from fpkit.grid import Grid


# ============================================================================================ OU
def ou_moments(t, mean0: float, var0: float, theta: float, mu: float, D: float):
    """Mean and variance of the 1-D OU process ``dX = −θ(X − μ)dt + sqrt(2D) dW`` started from a Gaussian.

    ``mean(t) = μ + (mean0 − μ) e^{−θt}``, ``var(t) = var0 e^{−2θt} + (D/θ)(1 − e^{−2θt})``. ``θ = 0`` gives
    Brownian motion (``var0 + 2 D t``).

    Returns
    -------
    mean, var : ndarray (shape of ``t``)
    """
    t = np.asarray(t, dtype=float)
    check_positive("var0", var0, strict=False)
    check_positive("D", D, strict=False)
    e = np.exp(-theta * t)
    mean = mu + (mean0 - mu) * e
    if theta == 0:
        var = var0 + 2 * D * t
    else:
        var = var0 * e**2 - (D / theta) * np.expm1(-2 * theta * t)
    return mean, var


def gaussian_cell_averages(grid: Grid, mean: float, var: float) -> np.ndarray:
    """Cell averages of a 1-D Gaussian density on ``grid`` (exact, from CDF differences; a point mass if
    ``var == 0``). Mass outside the grid is dropped, not renormalised."""
    if grid.ndim != 1:
        raise ConfigError("`grid` must be 1-D")
    check_positive("var", var, strict=False)
    e = grid.edges[0]
    if var == 0:
        cdf = (e >= mean).astype(float)
    else:
        cdf = ndtr((e - mean) / np.sqrt(var))
    return np.diff(cdf) / grid.dx[0]


def ou_density(
    grid: Grid, t: float, mean0: float, var0: float, theta: float, mu: float, D: float
) -> np.ndarray:
    """Exact cell averages of the 1-D OU density at time ``t`` (see ``ou_moments``)."""
    m, v = ou_moments(t, mean0, var0, theta, mu, D)
    return gaussian_cell_averages(grid, float(m), float(v))


def linear_sde_moments(t: float, mean0, cov0, Theta, mu, D):
    """Mean and covariance at time ``t`` of ``dX = −Θ(X − μ)dt + sqrt(2D) dW`` in d dimensions.

    ``m(t) = μ + e^{−Θt}(m0 − μ)``, ``Σ(t) = e^{−Θt} Σ0 e^{−Θᵀt} + ∫_0^t e^{−Θs} 2D e^{−Θᵀs} ds``; the integral
    by Van Loan's block matrix exponential (valid for any Θ, stable or not).

    Parameters
    ----------
    Theta : (d, d) array or per-axis sequence (diagonal); mu, mean0 : (d,); cov0, D : (d, d) or (d,) (diagonal).
    """
    from scipy.linalg import expm

    m0 = np.atleast_1d(np.asarray(mean0, dtype=float))
    d = m0.size

    def mat(name, v):
        a = np.asarray(v, dtype=float)
        if a.ndim <= 1:
            a = np.diag(np.broadcast_to(a, (d,)))
        if a.shape != (d, d):
            raise ConfigError(
                f"`{name}` must be a number, {d} values or a ({d}, {d}) matrix, got shape {a.shape}"
            )
        return a

    Th, S0, Dm = mat("Theta", Theta), mat("cov0", cov0), mat("D", D)
    if not np.allclose(Dm, Dm.T) or np.min(np.linalg.eigvalsh(Dm)) < -1e-14:
        raise ConfigError("`D` must be symmetric positive semi-definite")
    mu_v = np.broadcast_to(np.asarray(mu, dtype=float), (d,))
    E = expm(-Th * t)
    m = mu_v + E @ (m0 - mu_v)
    block = np.zeros((2 * d, 2 * d))
    block[:d, :d] = Th
    block[:d, d:] = 2 * Dm
    block[d:, d:] = -Th.T
    F = expm(block * t)
    noise = F[d:, d:].T @ F[:d, d:]  # = ∫_0^t e^{−Θs} 2D e^{−Θᵀs} ds
    S = E @ S0 @ E.T + noise
    return m, 0.5 * (S + S.T)


def gaussian2d_cell_averages(grid: Grid, mean, cov, n_quad: int = 8) -> np.ndarray:
    """Cell averages of a 2-D Gaussian density on a 2-D grid.

    Exact CDF products when ``cov`` is diagonal; otherwise exact in x given y (the conditional law is
    Gaussian) and Gauss-Legendre with ``n_quad`` nodes per cell in y (the y cells must resolve the y-marginal).
    """
    if grid.ndim != 2:
        raise ConfigError("`grid` must be 2-D")
    mean = np.asarray(mean, dtype=float).reshape(2)
    cov = np.asarray(cov, dtype=float).reshape(2, 2)
    if cov[0, 0] <= 0 or cov[1, 1] <= 0 or np.linalg.det(cov) <= 0:
        raise ConfigError("`cov` must be positive definite")
    ex, ey = grid.edges
    hx, hy = grid.dx
    if cov[0, 1] == 0:
        px = np.diff(ndtr((ex - mean[0]) / np.sqrt(cov[0, 0]))) / hx
        py = np.diff(ndtr((ey - mean[1]) / np.sqrt(cov[1, 1]))) / hy
        return px[:, None] * py[None, :]
    nodes, weights = np.polynomial.legendre.leggauss(n_quad)
    y = ey[:-1, None] + hy * 0.5 * (nodes[None, :] + 1)  # (ny, q)
    sy = np.sqrt(cov[1, 1])
    phi_y = np.exp(-0.5 * ((y - mean[1]) / sy) ** 2) / (sy * np.sqrt(2 * np.pi))
    cm = mean[0] + cov[0, 1] / cov[1, 1] * (y - mean[1])
    cs = np.sqrt(cov[0, 0] - cov[0, 1] ** 2 / cov[1, 1])
    cdf = ndtr((ex[:, None, None] - cm[None]) / cs)  # (nx+1, ny, q)
    px_given_y = np.diff(cdf, axis=0)  # (nx, ny, q)
    return np.einsum("ijq,jq,q->ij", px_given_y, phi_y, 0.5 * weights) / hx


def ou_density_2d(grid: Grid, t: float, mean0, cov0, Theta, mu, D) -> np.ndarray:
    """Exact cell averages of the 2-D linear (OU) density at ``t`` (see ``linear_sde_moments``).

    Anisotropic OU: ``Theta`` and ``D`` per axis (diagonal); a full matrix drift and tensor D also work.
    """
    m, S = linear_sde_moments(t, mean0, cov0, Theta, mu, D)
    return gaussian2d_cell_averages(grid, m, S)


# ============================================================================================ Gibbs
def gibbs_density(grid: Grid, U, D: float) -> np.ndarray:
    """The Gibbs density ``exp(−U/D)`` normalised on the grid, at cell centres.

    It is the stationary density of ``dX = −∇U dt + sqrt(2D) dW`` with reflecting walls, and the exact
    discrete steady state of the Scharfetter-Gummel finite-volume scheme (which works with centre values).

    Parameters
    ----------
    U : callable f(x) / f(x, y) / f(x, y, z), or array of shape ``grid.shape``
    D : float > 0
    """
    D = check_positive("D", D)
    if callable(U):
        u = np.asarray(U(*grid.meshgrid()), dtype=float)
    else:
        u = np.asarray(U, dtype=float)
    if u.shape != grid.shape or not np.all(np.isfinite(u)):
        raise ConfigError(f"`U` must be finite on the grid with shape {grid.shape}")
    p = np.exp(-(u - u.min()) / D)
    return p / (p.sum() * grid.cell_volume)


# ============================================================================================ absorbing walls
def _check_bm(x0, D, L=None):
    D = check_positive("D", D)
    if L is not None:
        L = check_positive("L", L)
        if not 0 < x0 < L:
            raise ConfigError(f"`x0` must lie inside (0, L) = (0, {L}), got {x0}")
    elif not x0 > 0:
        raise ConfigError(f"`x0` must be > 0 (the wall is at 0), got {x0}")
    return D, L


def survival_halfline(t, x0: float, drift: float, D: float) -> np.ndarray:
    """Survival probability of ``dX = a dt + sqrt(2D) dW``, ``X(0) = x0 > 0``, absorbed at 0.

    Method of images: the density on (0, ∞) is
    ``φ(x; x0 + a t, 2Dt) − e^{−a x0 / D} φ(x; −x0 + a t, 2Dt)`` (φ(x; m, v) a Gaussian density; the image
    weight makes the density vanish at x = 0 for all t), so
    ``S(t) = Φ((x0 + a t)/sqrt(2Dt)) − e^{−a x0/D} Φ((−x0 + a t)/sqrt(2Dt))``; ``S(∞) = 1 − e^{−a x0/D}`` for
    ``a > 0``.
    """
    D, _ = _check_bm(x0, D)
    t = np.asarray(t, dtype=float)
    out = np.ones_like(t)
    pos = t > 0
    s = np.sqrt(2 * D * t[pos])
    out[pos] = ndtr((x0 + drift * t[pos]) / s) - np.exp(-drift * x0 / D) * ndtr((-x0 + drift * t[pos]) / s)
    return out


def _phi_diff(a, b):
    """``Φ(b) − Φ(a)`` for ``a <= b`` without cancellation in the upper tail."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    upper = a > 0
    return np.where(upper, ndtr(-a) - ndtr(-b), ndtr(b) - ndtr(a))


def _image_terms(x0, drift, D, L, t):
    """(weight, centre) of the image Gaussians (variance 2Dt) for absorbing walls at 0 and L."""
    spread = np.sqrt(2 * D * t)
    n_max = int(np.ceil((abs(drift) * t + 10 * spread) / (2 * L))) + 2
    n = np.arange(-n_max, n_max + 1)
    # direct terms centred at x0 + 2nL + a t, weight e^{a n L / D}; images at −x0 + 2nL + a t, weight
    # −e^{a (nL − x0)/D} (the factor e^{a(x−x0)/(2D) − a²t/(4D)} of the drift transform absorbed)
    w = np.concatenate([np.exp(drift * n * L / D), -np.exp(drift * (n * L - x0) / D)])
    c = np.concatenate([x0 + 2 * n * L, -x0 + 2 * n * L]) + drift * t
    return w, c, spread


def survival_interval(t, x0: float, L: float, drift: float, D: float, *, method: str = "auto") -> np.ndarray:
    """Survival probability of ``dX = a dt + sqrt(2D) dW`` in (0, L) with absorbing walls at both ends.

    Two exact series: images (``method="images"``, fast for ``Dt ≲ L²``) and eigenfunctions
    (``"eigen"``, fast for ``Dt ≳ L²/10``): with ``p = e^{a(x−x0)/(2D) − a²t/(4D)} q`` and q the absorbed heat
    kernel, ``q = (2/L) Σ_k sin(kπx/L) sin(kπx0/L) e^{−D(kπ/L)² t}``. ``"auto"`` picks by ``Dt/L²``.
    """
    D, L = _check_bm(x0, D, L)
    from fpkit.errors import check_choice

    check_choice("method", method, ("auto", "images", "eigen"))
    scalar = np.ndim(t) == 0
    t = np.atleast_1d(np.asarray(t, dtype=float))
    out = np.ones_like(t)
    for i, ti in enumerate(t):
        if ti <= 0:
            continue
        m = method if method != "auto" else ("images" if D * ti / L**2 < 0.5 else "eigen")
        if m == "images":
            w, c, s = _image_terms(x0, drift, D, L, ti)
            out[i] = np.sum(w * _phi_diff(-c / s, (L - c) / s))
        else:
            out[i] = _survival_eigen(ti, x0, L, drift, D)
    return float(out[0]) if scalar else out


def _survival_eigen(t, x0, L, a, D, tol=1e-15):
    b = a / (2 * D)
    total = 0.0
    k = 1
    while True:
        lam = k * np.pi / L
        decay = np.exp(-D * lam**2 * t)
        # ∫_0^L e^{b x} sin(λx) dx = [λ(1 − e^{bL} cos λL)] / (b² + λ²), cos λL = (−1)^k
        integ = lam * (1 - np.exp(b * L) * (-1) ** k) / (b**2 + lam**2)
        term = (2 / L) * np.sin(lam * x0) * integ * decay
        total += term
        if decay * (1 + np.exp(b * L)) / (k * np.pi) < tol and k > 3:
            break
        k += 1
    return float(np.exp(-b * x0 - a**2 * t / (4 * D)) * total)


def absorbed_density(
    grid: Grid, t: float, x0: float, drift: float, D: float, L: float | None = None
) -> np.ndarray:
    """Cell averages of the (sub-probability) density of the surviving paths at time ``t``.

    Half-line (0, ∞) if ``L`` is None, else the interval (0, L); by the image series (exact). The grid should
    cover the domain; its integral is the survival probability.
    """
    D, L = _check_bm(x0, D, L)
    if grid.ndim != 1:
        raise ConfigError("`grid` must be 1-D")
    check_positive("t", t)
    e = np.clip(grid.edges[0], 0.0, np.inf if L is None else L)
    if L is None:
        s = np.sqrt(2 * D * t)
        w = np.array([1.0, -np.exp(-drift * x0 / D)])
        c = np.array([x0, -x0]) + drift * t
    else:
        w, c, s = _image_terms(x0, drift, D, L, t)
    z = (e[None, :] - c[:, None]) / s
    return np.sum(w[:, None] * _phi_diff(z[:, :-1], z[:, 1:]), axis=0) / grid.dx[0]


# ============================================================================================ Kramers
def kramers_rate(U: Callable, x_min: float, x_max: float, D: float, h: float = 1e-4) -> float:
    """Kramers' escape rate over a barrier for ``dX = −U'(X) dt + sqrt(2D) dW`` (small D):

    ``k ≈ sqrt(U''(x_min) |U''(x_max)|) / (2π) · exp(−ΔU / D)``, ``ΔU = U(x_max) − U(x_min)``; curvatures by
    central differences with step ``h``.
    """
    D = check_positive("D", D)

    def curv(x):
        return (U(x + h) - 2 * U(x) + U(x - h)) / h**2

    cmin, cmax = float(curv(x_min)), float(curv(x_max))
    if not (cmin > 0 and cmax < 0):
        raise ConfigError(
            f"`x_min` must be a minimum and `x_max` a maximum of U (U'' = {cmin:.3g}, {cmax:.3g})"
        )
    dU = float(U(x_max) - U(x_min))
    return float(np.sqrt(cmin * -cmax) / (2 * np.pi) * np.exp(-dU / D))


def mean_first_passage_time(U: Callable, x0: float, b: float, D: float, lo: float, n: int = 4001) -> float:
    """Exact mean time for ``dX = −U' dt + sqrt(2D) dW`` to reach ``b > x0``, reflecting at ``lo < x0``:

    ``τ = (1/D) ∫_{x0}^{b} e^{U(y)/D} ∫_{lo}^{y} e^{−U(z)/D} dz dy`` (trapezoid quadrature, ``n`` nodes;
    ``lo`` far enough left stands for −∞). ``1/τ`` from the well bottom to past the barrier tends to the
    Kramers rate as ``D → 0``.
    """
    D = check_positive("D", D)
    if not lo < x0 < b:
        raise ConfigError(f"need `lo` < `x0` < `b`, got {lo}, {x0}, {b}")
    from scipy.integrate import cumulative_trapezoid, trapezoid

    z = np.linspace(lo, b, n)
    u = U(z)
    shift = u.min()
    inner = cumulative_trapezoid(np.exp(-(u - shift) / D), z, initial=0.0)
    with np.errstate(divide="ignore"):  # e^{U/D} ∫ e^{-U/D} in log form: no overflow far up the walls
        outer = np.exp((u - shift) / D + np.log(inner))
    m = z >= x0
    zz = np.concatenate([[x0], z[m]])
    oo = np.concatenate([[np.interp(x0, z, outer)], outer[m]])
    return float(trapezoid(oo, zz) / D)


# ============================================================================================ discrete-time
def em_ou_stationary_variance(theta: float, D: float, dt: float) -> float:
    """Stationary variance of Euler-Maruyama for OU, ``X' = (1 − θΔt) X + sqrt(2DΔt) ξ``:
    ``2DΔt / (1 − (1 − θΔt)²) = (D/θ) / (1 − θΔt/2)``; exists for ``0 < θΔt < 2``."""
    theta, D, dt = (
        check_positive("theta", theta),
        check_positive("D", D, strict=False),
        check_positive("dt", dt),
    )
    if theta * dt >= 2:
        raise ConfigError(f"Euler-Maruyama OU is unstable for theta*dt >= 2, got {theta * dt}")
    return (D / theta) / (1 - theta * dt / 2)


def _linreg_args(eta, B, s2, r2):
    return (
        check_positive("eta", eta),
        int(check_positive("B", B)),
        check_positive("s2", s2),
        check_positive("r2", r2, strict=False),
    )


def linreg_sgd_variance(eta: float, B: int, s2: float, r2: float) -> float:
    """Exact stationary variance of ``w − w*`` for SGD on 1-D linear regression.

    Model: ``y = w* x + ε``, ``x ~ N(0, s²)``, ``Var ε = r²``, per-sample loss ``½(w x − y)²``, minibatches of
    ``B`` iid samples, step ``η``. With ``u = w − w*``: ``u' = (1 − η a) u + η b``, ``a = mean x²``,
    ``b = mean x ε``; ``E a = s²``, ``E a² = s⁴(B + 2)/B``, ``E b² = s² r²/B``, ``E ab = 0``, so
    ``V = η r² / (2B − η s² (B + 2))``; finite only while ``η s² (B + 2) < 2B``.
    """
    eta, B, s2, r2 = _linreg_args(eta, B, s2, r2)
    den = 2 * B - eta * s2 * (B + 2)
    if den <= 0:
        raise ConfigError(f"SGD's variance diverges: need eta*s2*(B+2) < 2B, got eta*s2 = {eta * s2}")
    return eta * r2 / den


def linreg_coefficients(eta: float, B: int, s2: float, r2: float, diffusion: str = "standard"):
    """Drift and diffusion of the 1-D linear-regression SGD as an SDE in ``t = η·step`` (functions of u):

    ``A(u) = −s² u``; minibatch-mean gradient variance ``v(u) = (2 s⁴ u² + s² r²)/B``;
    standard ``D = (η/2) v``; discrete-step ``D̃ = (η/2)(v + g²)`` with ``g = s² u``.
    Returns ``(A, D)`` as vectorised callables of u.
    """
    from fpkit.errors import check_choice

    eta, B, s2, r2 = _linreg_args(eta, B, s2, r2)
    check_choice("diffusion", diffusion, ("standard", "discrete"))

    def A(u, t=0.0):
        return -s2 * np.asarray(u, dtype=float)

    extra = 1.0 if diffusion == "discrete" else 0.0

    def Dfun(u, t=0.0):
        u = np.asarray(u, dtype=float)
        return 0.5 * eta * ((2 * s2**2 * u**2 + s2 * r2) / B + extra * s2**2 * u**2)

    return A, Dfun


def linreg_sde_variance(eta: float, B: int, s2: float, r2: float, diffusion: str = "standard") -> float:
    """Stationary variance of the SDE ``du = A dt + sqrt(2D) dW`` of ``linreg_coefficients``.

    From ``d E u²/dt = 2 E[u A] + 2 E[D] = 0``: standard ``η r² / (2(B − η s²))``; discrete-step
    ``η r² / (2B − η s² (B + 2))``, identical to exact SGD. The standard D misses SGD's variance by the
    factor ``linreg_standard_over_sgd``.
    """
    from fpkit.errors import check_choice

    eta, B, s2, r2 = _linreg_args(eta, B, s2, r2)
    check_choice("diffusion", diffusion, ("standard", "discrete"))
    if diffusion == "discrete":
        return linreg_sgd_variance(eta, B, s2, r2)
    den = 2 * (B - eta * s2)
    if den <= 0:
        raise ConfigError(f"the SDE's variance diverges: need eta*s2 < B, got {eta * s2}")
    return eta * r2 / den


def linreg_standard_over_sgd(eta: float, B: int, s2: float) -> float:
    """Ratio (standard-D SDE variance)/(exact SGD variance) = ``(2B − η s²(B+2)) / (2(B − η s²))``
    ``= 1 − η s² B / (2(B − η s²))``: the standard diffusion underestimates SGD's spread by ≈ η s²/2."""
    eta, B, s2, _ = _linreg_args(eta, B, s2, 1.0)
    return (2 * B - eta * s2 * (B + 2)) / (2 * (B - eta * s2))
