"""Spectral bases and stiff time integrators for linear(ised) evolution equations.

Arrays in, arrays out; nothing here knows about problem classes.

Bases (1-D, nodes in ascending order)
-------------------------------------
* Chebyshev Gauss-Lobatto: ``x_j = (lo+hi)/2 − (hi−lo)/2 · cos(π j/(n−1))``, j = 0 … n−1. Differentiation by
  the barycentric formula with the negative-sum trick (Baltensperger & Trummer 2003), Clenshaw-Curtis
  quadrature (exact for polynomials of degree ≤ n−1), coefficients by a type-I DCT.
* Fourier: ``x_j = lo + j (hi−lo)/n`` on the period [lo, hi). Differentiation matrices built through the FFT
  (the first derivative of the Nyquist mode is zero, the second keeps −(n/2)²), trapezoidal quadrature.
* Hermite functions ψ_k(ξ) = H_k(ξ) e^{−ξ²/2} / √(2^k k! √π) (orthonormal on the line), physical
  coordinate x = center + scale·ξ, nodes at the Gauss-Hermite points ξ_j (roots of H_n). A function in
  span{ψ_0 … ψ_{n−1}} is fixed by its n nodal values; the transform to coefficients is the Gauss rule
  c_k = Σ_j w̃_j ψ_k(ξ_j) f_j with w̃_j = 1/Σ_k ψ_k(ξ_j)² (Christoffel numbers), exact on that span.

Time integration
----------------
* ``phi_functions``: e^{hL}, φ_1(hL) … φ_k(hL) of a dense matrix by one exponential of an augmented block
  matrix (Sidje 1998; Al-Mohy & Higham 2011), evaluated by scipy's scaling-and-squaring Padé ``expm``. No
  cancellation for small eigenvalues, unlike the closed forms (e^z − 1)/z.
* φ-functions of diagonal operators (Fourier symbols): ``fpkit.solvers.pseudospectral.phi_scalar`` (Taylor
  series near 0, closed forms away from it), re-exported here as ``phi_scalar``.
* ``ETDRK4``: Cox-Matthews exponential Runge-Kutta (order 4) for u' = L u + N(u, t).
* ``SBDF2``: IMEX second-order BDF for u' = L u + R(u, t), L implicit (factorised once), R explicit.
* ``DenseImplicitStepper``: backward Euler, Crank-Nicolson (Rannacher start) and variable-step BDF2 for
  u' = L(t) u with dense L, refactorised only when L or the step changes.

Dealiasing (the 2/3 rule for pseudo-spectral products) lives in ``fpkit.solvers.pseudospectral``
(``dealias_mask`` / ``dealiased_product``, N-D on the rfft layout; 1-D with ``shape = (n,)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.fft as sfft
import scipy.linalg as sla
from scipy.special import erf, roots_hermite

from fpkit.errors import ConfigError

from .pseudospectral import phi_scalar  # the one implementation for diagonal operators (used by ETDRK4)
from .time_stepping import RANNACHER_STEPS  # one value for the sparse and the dense steppers

HERMITE_MAX_N = 600  # e^{−ξ²/2} at the outermost Gauss-Hermite node stays far from underflow below this

# =====================================================================================================
# Chebyshev Gauss-Lobatto
# =====================================================================================================


def cheb_nodes(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """The n Gauss-Lobatto points on [lo, hi], ascending (lo and hi included)."""
    theta = np.pi * np.arange(n) / (n - 1)
    # −cos θ written as sin(θ − π/2) keeps the nodes exactly symmetric about the centre
    y = np.sin(theta - 0.5 * np.pi)
    y[0], y[-1] = -1.0, 1.0
    return 0.5 * (lo + hi) + 0.5 * (hi - lo) * y


def cheb_diff(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """First-derivative matrix (n × n) on the ascending Gauss-Lobatto nodes of [lo, hi].

    Off-diagonal entries from the barycentric weights (−1)^j δ_j (δ = ½ at the ends), with the node
    differences computed as 2 sin((θ_i+θ_j)/2) sin((θ_i−θ_j)/2) to avoid cancellation; the diagonal is the
    negative row sum, so the derivative of a constant is exactly zero.
    """
    m = n - 1
    theta = np.pi * np.arange(n) / m
    w = (-1.0) ** np.arange(n)
    w[0] *= 0.5
    w[-1] *= 0.5
    ti, tj = theta[:, None], theta[None, :]
    diff = 2.0 * np.sin(0.5 * (ti + tj)) * np.sin(0.5 * (ti - tj))  # y_i − y_j for y = −cos θ
    np.fill_diagonal(diff, 1.0)
    D = (w[None, :] / w[:, None]) / diff
    np.fill_diagonal(D, 0.0)
    np.fill_diagonal(D, -D.sum(axis=1))
    return D * (2.0 / (hi - lo))


def clenshaw_curtis_weights(n: int, lo: float = -1.0, hi: float = 1.0) -> np.ndarray:
    """Clenshaw-Curtis weights for the n Gauss-Lobatto nodes (exact for polynomials of degree ≤ n−1)."""
    m = n - 1
    theta = np.pi * np.arange(n) / m
    w = np.zeros(n)
    v = np.ones(m - 1)
    inner = theta[1:-1]
    if m % 2 == 0:
        w[0] = w[-1] = 1.0 / (m * m - 1)
        for k in range(1, m // 2):
            v -= 2.0 * np.cos(2 * k * inner) / (4 * k * k - 1)
        v -= np.cos(m * inner) / (m * m - 1)
    else:
        w[0] = w[-1] = 1.0 / (m * m)
        for k in range(1, (m - 1) // 2 + 1):
            v -= 2.0 * np.cos(2 * k * inner) / (4 * k * k - 1)
    w[1:-1] = 2.0 * v / m
    return w * (0.5 * (hi - lo))


def cheb_coefficients(values: np.ndarray) -> np.ndarray:
    """Chebyshev coefficients a_k (last axis) of the interpolant of values at the ascending GL nodes.

    The interpolant is Σ a_k T_k(y), y ∈ [−1, 1] the mapped coordinate. Type-I DCT, O(n log n).
    """
    f = np.asarray(values, dtype=float)[..., ::-1]  # descending nodes y_j = cos(π j/m)
    m = f.shape[-1] - 1
    a = sfft.dct(f, type=1, axis=-1) / m
    a[..., 0] *= 0.5
    a[..., -1] *= 0.5
    return a


def cheb_values(coeffs: np.ndarray) -> np.ndarray:
    """Inverse of ``cheb_coefficients``: values at the ascending GL nodes."""
    a = np.array(coeffs, dtype=float)
    a[..., 1:-1] *= 0.5
    f = sfft.dct(a, type=1, axis=-1)
    return f[..., ::-1]


def cheb_interp(values: np.ndarray, lo: float, hi: float, points: np.ndarray) -> np.ndarray:
    """Barycentric interpolation (last axis of ``values`` on the GL nodes) at ``points`` in [lo, hi].

    Points outside [lo, hi] get NaN: callers decide what the function is there.
    """
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    x = cheb_nodes(n, lo, hi)
    pts = np.asarray(points, dtype=float)
    flat = pts.ravel()
    w = (-1.0) ** np.arange(n)
    w[0] *= 0.5
    w[-1] *= 0.5
    d = flat[:, None] - x[None, :]
    exact = d == 0.0
    d[exact] = 1.0
    c = w[None, :] / d  # (m, n)
    out = (values @ c.T) / c.sum(axis=1)
    hit_rows, hit_cols = np.nonzero(exact)
    if hit_rows.size:
        out[..., hit_rows] = values[..., hit_cols]
    outside = (flat < lo) | (flat > hi)
    out[..., outside] = np.nan
    return out.reshape(values.shape[:-1] + pts.shape)


def cheb_antiderivative(values: np.ndarray, lo: float, hi: float, points: np.ndarray) -> np.ndarray:
    """∫_lo^x of the interpolant at ``points`` (clipped to [lo, hi]): exact for the polynomial."""
    from numpy.polynomial import chebyshev as C

    a = cheb_coefficients(values)
    scale = 0.5 * (hi - lo)
    y = np.clip((np.asarray(points, dtype=float) - 0.5 * (lo + hi)) / scale, -1.0, 1.0)
    A = C.chebint(np.moveaxis(a, -1, 0), lbnd=-1.0, scl=scale)
    return C.chebval(y, A)  # shape: values' leading axes + points' shape


def cheb_cumulative_matrix(n: int, lo: float, hi: float) -> np.ndarray:
    """Q (n × n): (Q f)_j = ∫_lo^{x_j} of the interpolant of f (exact; Q f at hi is the Clenshaw-Curtis sum)."""
    x = cheb_nodes(n, lo, hi)
    eye = np.eye(n)
    return np.stack([cheb_antiderivative(eye[j], lo, hi, x) for j in range(n)], axis=1)


# =====================================================================================================
# Fourier
# =====================================================================================================


def fourier_nodes(n: int, lo: float = 0.0, hi: float = 2 * np.pi) -> np.ndarray:
    """n equispaced points lo + j (hi − lo)/n on the period [lo, hi)."""
    return lo + (hi - lo) * np.arange(n) / n


def fourier_wavenumbers(n: int, period: float) -> np.ndarray:
    """Angular wavenumbers 2π k / period in numpy's FFT order."""
    return 2.0 * np.pi * np.fft.fftfreq(n, d=1.0 / n) / period


def fourier_diff(n: int, lo: float, hi: float, order: int = 1) -> np.ndarray:
    """Differentiation matrix of the given order for the trigonometric interpolant.

    For even n the Nyquist mode cos(n π (x−lo)/L) is treated symmetrically: its odd derivatives are zero
    at the nodes, its even derivatives keep (n π / L)^order. Real to round-off.
    """
    k = fourier_wavenumbers(n, hi - lo)
    sym = (1j * k) ** order
    if n % 2 == 0 and order % 2 == 1:
        sym[n // 2] = 0.0
    eye = np.eye(n)
    return np.real(np.fft.ifft(sym[:, None] * np.fft.fft(eye, axis=0), axis=0))


def fourier_weights(n: int, lo: float, hi: float) -> np.ndarray:
    """Trapezoidal weights (exact for trigonometric polynomials of degree < n)."""
    return np.full(n, (hi - lo) / n)


def _fourier_modes(values: np.ndarray):
    values = np.asarray(values, dtype=float)
    n = values.shape[-1]
    c = np.fft.fft(values, axis=-1) / n
    if n % 2 == 0:
        c[..., n // 2] *= 0.5  # split the Nyquist term into ±n/2, giving the real cosine interpolant
        c = np.concatenate([c[..., : n // 2 + 1], c[..., n // 2 : n // 2 + 1], c[..., n // 2 + 1 :]], axis=-1)
        k = np.concatenate([np.arange(n // 2 + 1), [-n // 2], np.arange(-n // 2 + 1, 0)])
    else:
        k = np.fft.fftfreq(n, d=1.0 / n).round().astype(int)
    return c, k


def fourier_interp(values: np.ndarray, lo: float, hi: float, points: np.ndarray) -> np.ndarray:
    """Trigonometric interpolant (last axis of ``values``) at arbitrary ``points`` (periodic extension)."""
    c, k = _fourier_modes(values)
    pts = np.asarray(points, dtype=float)
    phase = np.exp(2j * np.pi * np.outer(pts.ravel() - lo, k) / (hi - lo))  # (m, modes)
    out = np.real(c @ phase.T)
    return out.reshape(c.shape[:-1] + pts.shape)


def fourier_antiderivative(values: np.ndarray, lo: float, hi: float, points: np.ndarray) -> np.ndarray:
    """∫_lo^x of the trigonometric interpolant at ``points`` (any x; the mean term grows linearly)."""
    c, k = _fourier_modes(values)
    period = hi - lo
    pts = np.asarray(points, dtype=float).ravel()
    kk = 2 * np.pi * k / period
    safe = np.where(k == 0, 1.0, kk)
    phase = (np.exp(1j * np.outer(pts - lo, kk)) - 1.0) / (1j * safe)  # (m, modes)
    phase[:, k == 0] = (pts - lo)[:, None]
    out = np.real(c @ phase.T)
    return out.reshape(c.shape[:-1] + np.asarray(points).shape)


# =====================================================================================================
# Hermite functions
# =====================================================================================================


def hermite_functions(n: int, xi: np.ndarray) -> np.ndarray:
    """ψ_0 … ψ_{n−1} at ``xi``: array of shape (xi.size, n), by the stable three-term recurrence.

    ψ_0 = π^{−1/4} e^{−ξ²/2}, ψ_{k+1} = √(2/(k+1)) ξ ψ_k − √(k/(k+1)) ψ_{k−1}.
    """
    xi = np.asarray(xi, dtype=float).ravel()
    V = np.empty((xi.size, n))
    V[:, 0] = np.pi**-0.25 * np.exp(-0.5 * xi * xi)
    if n > 1:
        V[:, 1] = np.sqrt(2.0) * xi * V[:, 0]
    for k in range(1, n - 1):
        V[:, k + 1] = np.sqrt(2.0 / (k + 1)) * xi * V[:, k] - np.sqrt(k / (k + 1)) * V[:, k - 1]
    return V


def hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Hermite points ξ_j (ascending) and the weights w̃_j for the ψ basis (Σ_j w̃_j ψ_k ψ_l = δ_kl)."""
    if not 2 <= n <= HERMITE_MAX_N:
        raise ConfigError(f"`n` for a Hermite basis must be in [2, {HERMITE_MAX_N}], got {n}")
    xi, _ = roots_hermite(n)
    xi = np.sort(xi)
    xi = 0.5 * (xi - xi[::-1])  # exact symmetry
    V = hermite_functions(n, xi)
    wt = 1.0 / np.sum(V * V, axis=1)  # Christoffel numbers: no e^{ξ²} overflow, unlike w_j e^{ξ_j²}
    return xi, wt


def hermite_integrals(n: int) -> np.ndarray:
    """m_k = ∫ ψ_k dξ for k < n: zero for odd k, m_0 = √2 π^{1/4}, m_k = √((k−1)/k) m_{k−2}."""
    m = np.zeros(n)
    m[0] = np.sqrt(2.0) * np.pi**0.25
    for k in range(2, n, 2):
        m[k] = np.sqrt((k - 1) / k) * m[k - 2]
    return m


def hermite_derivative_coefficients(n: int, conservative: bool = False) -> np.ndarray:
    """T (n × n): coefficients of d/dξ in the ψ basis, truncated to the first n functions.

    ψ_k' = √(k/2) ψ_{k−1} − √((k+1)/2) ψ_{k+1}. The dropped term −√(n/2) c_{n−1} ψ_n has the integral
    −√(n/2) c_{n−1} m_n, non-zero when n is even; with ``conservative=True`` it is moved onto ψ_{n−2}
    with the same integral (m_n/m_{n−2} = √((n−1)/n)), so ∫ of the truncated derivative is exactly zero.
    The change touches only the two highest modes, i.e. it is spectrally small.
    """
    T = np.zeros((n, n))
    k = np.arange(n - 1)
    T[k, k + 1] = np.sqrt((k + 1) / 2.0)
    T[k + 1, k] = -np.sqrt((k + 1) / 2.0)
    if conservative and n % 2 == 0 and n >= 2:
        T[n - 2, n - 1] += -np.sqrt(n / 2.0) * np.sqrt((n - 1) / n)
    return T


def hermite_antiderivative_functions(n: int, xi: np.ndarray) -> np.ndarray:
    """I_k(ξ) = ∫_{−∞}^ξ ψ_k for k < n, shape (xi.size, n).

    From ψ_{k+1} = √(k/(k+1)) ψ_{k−1} − √(2/(k+1)) ψ_k': I_{k+1} = √(k/(k+1)) I_{k−1} − √(2/(k+1)) ψ_k,
    I_0 = π^{−1/4} √(π/2) (1 + erf(ξ/√2)).
    """
    xi = np.asarray(xi, dtype=float).ravel()
    V = hermite_functions(max(n, 1), xi)
    I = np.empty((xi.size, n))
    I[:, 0] = np.pi**-0.25 * np.sqrt(0.5 * np.pi) * (1.0 + erf(xi / np.sqrt(2.0)))
    if n > 1:
        I[:, 1] = -np.sqrt(2.0) * V[:, 0]
    for k in range(1, n - 1):
        I[:, k + 1] = np.sqrt(k / (k + 1)) * I[:, k - 1] - np.sqrt(2.0 / (k + 1)) * V[:, k]
    return I


# =====================================================================================================
# φ-functions and exponential integrators
# =====================================================================================================


def phi_functions(L: np.ndarray, h: float, k: int = 3) -> list[np.ndarray]:
    """[e^{hL}, φ_1(hL), …, φ_k(hL)] for a dense square matrix L.

    φ_0(z) = e^z, φ_{j+1}(z) = (φ_j(z) − 1/j!)/z. The top block row of exp of the augmented matrix
    [[hL, I, 0, …], [0, 0, I, …], …, [0, …, 0]] (size (k+1)n) is [e^{hL}, φ_1, …, φ_k] (Sidje 1998), and
    scipy's ``expm`` evaluates it by scaling and squaring with Padé approximants: no cancellation for
    eigenvalues near 0 and no overflow for very negative ones.
    """
    L = np.asarray(L)
    n = L.shape[0]
    big = np.zeros(((k + 1) * n, (k + 1) * n), dtype=np.result_type(L, float))
    big[:n, :n] = h * L
    for j in range(k):
        big[j * n : (j + 1) * n, (j + 1) * n : (j + 2) * n] = np.eye(n)
    E = sla.expm(big)
    return [E[:n, j * n : (j + 1) * n] for j in range(k + 1)]


class ETDRK4:
    """Cox-Matthews ETDRK4 for u' = L u + N(u, t) with a dense or diagonal constant L and a fixed step h.

    Parameters
    ----------
    L : ndarray
        (n, n) matrix, or a 1-D array of eigenvalues (a diagonal operator such as a Fourier symbol).
    h : float
        Step size.

    Notes
    -----
    With a = e^{hL/2}u + (h/2)φ_1(hL/2)N(u,t), b = e^{hL/2}u + (h/2)φ_1(hL/2)N(a,t+h/2),
    c = e^{hL/2}a + (h/2)φ_1(hL/2)(2N(b,t+h/2) − N(u,t)):
    u_{n+1} = e^{hL}u + h[(φ_1−3φ_2+4φ_3)N(u) + 2(φ_2−2φ_3)(N(a)+N(b)) + (4φ_3−φ_2)N(c)].
    When N is constant in time and u the scheme is exact (u_{n+1} = e^{hL}u + hφ_1 N).
    """

    order = 4

    def __init__(self, L: np.ndarray, h: float):
        L = np.asarray(L)
        self.h = float(h)
        self.L = L
        self.diagonal = L.ndim == 1
        # e^{hL} is all a purely linear step needs; the φ-functions (4× larger augmented exponential for a
        # dense L) are built on the first step with a non-linear term
        self.E = np.exp(h * L) if self.diagonal else sla.expm(h * L)
        self._ready = False

    def _prepare(self):
        h, L = self.h, self.L
        if self.diagonal:
            e2, q2 = phi_scalar(0.5 * h * L, 1)
            _, p1, p2, p3 = phi_scalar(h * L, 3)
        else:
            e2, q2 = phi_functions(L, 0.5 * h, 1)
            _, p1, p2, p3 = phi_functions(L, h, 3)
        self.E2, self.Q = e2, 0.5 * h * q2
        self.f1 = h * (p1 - 3 * p2 + 4 * p3)
        self.f2 = h * (p2 - 2 * p3)
        self.f3 = h * (4 * p3 - p2)
        self._ready = True

    def _mul(self, M, v):
        return M * v if self.diagonal else M @ v

    def step(
        self, u: np.ndarray, t: float, N: Callable[[np.ndarray, float], np.ndarray] | None
    ) -> np.ndarray:
        """Advance u from t to t + h. ``N=None`` means a purely linear problem (u ← e^{hL} u)."""
        m = self._mul
        if N is None:
            return m(self.E, u)
        if not self._ready:
            self._prepare()
        h = self.h
        Nu = N(u, t)
        a = m(self.E2, u) + m(self.Q, Nu)
        Na = N(a, t + 0.5 * h)
        b = m(self.E2, u) + m(self.Q, Na)
        Nb = N(b, t + 0.5 * h)
        c = m(self.E2, a) + m(self.Q, 2 * Nb - Nu)
        Nc = N(c, t + h)
        return m(self.E, u) + m(self.f1, Nu) + 2 * m(self.f2, Na + Nb) + m(self.f3, Nc)


# =====================================================================================================
# implicit steppers for dense operators
# =====================================================================================================

IMPLICIT_METHODS = ("implicit", "crank-nicolson", "bdf2")


class DenseImplicitStepper:
    """Backward Euler, Crank-Nicolson (Rannacher start) and variable-step BDF2 for u' = L(t) u, dense L.

    Parameters
    ----------
    operator : callable
        ``operator(t) -> ndarray (n, n)``.
    time_dependent : bool
        If False the operator is evaluated once and LU factors are cached per step size.
    method : str
        One of ``IMPLICIT_METHODS``.
    """

    def __init__(self, operator: Callable[[float], np.ndarray], time_dependent: bool, method: str):
        self.operator, self.time_dependent, self.method = operator, time_dependent, method
        self._L = None if time_dependent else operator(0.0)
        self._lu: dict = {}
        self.n_steps = 0
        self._prev: np.ndarray | None = None
        self._prev_dt: float | None = None

    def _op(self, t):
        return self._L if self._L is not None else self.operator(t)

    def _solve(self, key, build, rhs):
        if self._L is None:
            return sla.solve(build(), rhs)
        lu = self._lu.get(key)
        if lu is None:
            if len(self._lu) > 16:
                self._lu.clear()
            lu = self._lu[key] = sla.lu_factor(build())
        return sla.lu_solve(lu, rhs)

    def _be(self, u, t, dt):
        L = self._op(t + dt)
        return self._solve(("be", dt), lambda: np.eye(u.size) - dt * L, u)

    def step(self, u: np.ndarray, t: float, dt: float) -> np.ndarray:
        """Advance ``u`` from ``t`` to ``t + dt``."""
        if self.method == "implicit":
            new = self._be(u, t, dt)
        elif self.method == "crank-nicolson":
            if self.n_steps < RANNACHER_STEPS:
                new = self._be(self._be(u, t, 0.5 * dt), t + 0.5 * dt, 0.5 * dt)
            else:
                L0, L1 = self._op(t), self._op(t + dt)
                rhs = u + 0.5 * dt * (L0 @ u)
                new = self._solve(("cn", dt), lambda: np.eye(u.size) - 0.5 * dt * L1, rhs)
        else:  # bdf2
            if self._prev is None:
                new = self._be(u, t, dt)
            else:
                w = dt / self._prev_dt
                c0 = (1 + 2 * w) / (1 + w)
                rhs = (1 + w) * u - (w * w / (1 + w)) * self._prev
                L = self._op(t + dt)
                new = self._solve(("bdf2", dt, w), lambda: c0 * np.eye(u.size) - dt * L, rhs)
            self._prev, self._prev_dt = u, dt
        self.n_steps += 1
        return new


class SBDF2:
    """IMEX second-order backward differentiation (Ascher, Ruuth & Wetton 1995) for u' = L u + R(u, t).

    L (dense) is implicit and factorised once; R is explicit, extrapolated:
    (3/2 I − hL) u_{n+1} = 2u_n − ½u_{n−1} + h(2R_n − R_{n−1}). The first step is IMEX Euler
    ((I − hL) u_1 = u_0 + h R_0). The cost per step is one LU solve and one evaluation of R.

    Stability: for R = εL on a stiff mode the extrapolated scheme is stable for −1 < ε < 1/3, so L should be
    at least as stiff as the true operator, or close to it (e.g. the operator frozen at a nearby time, with
    R = (L(t) − L)u); ``set_operator`` swaps L mid-run without losing second order (R_{n−1} is re-split).
    """

    order = 2

    def __init__(self, L: np.ndarray, h: float):
        self.h = float(h)
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._factor(L)

    def _factor(self, L):
        n = L.shape[0]
        self._lu1 = sla.lu_factor(np.eye(n) - self.h * L)
        self._lu2 = sla.lu_factor(1.5 * np.eye(n) - self.h * L)

    def set_operator(self, L: np.ndarray, r_prev: np.ndarray | None = None) -> None:
        """Use a new implicit L from the next step on; ``r_prev`` = R_{n−1} re-split against the new L."""
        self._factor(L)
        if self._prev is not None:
            if r_prev is None:
                self._prev = None  # restart with an IMEX Euler step
            else:
                self._prev = (self._prev[0], r_prev)

    @property
    def previous_state(self) -> np.ndarray | None:
        return None if self._prev is None else self._prev[0]

    def step_with(self, u: np.ndarray, r: np.ndarray) -> np.ndarray:
        """Advance ``u`` by one step given the explicit term r = R(u_n, t_n)."""
        h = self.h
        if self._prev is None:
            new = sla.lu_solve(self._lu1, u + h * r)
        else:
            u_1, r_1 = self._prev
            new = sla.lu_solve(self._lu2, 2.0 * u - 0.5 * u_1 + h * (2.0 * r - r_1))
        self._prev = (u, r)
        return new

    def step(
        self, u: np.ndarray, t: float, R: Callable[[np.ndarray, float], np.ndarray] | None
    ) -> np.ndarray:
        """Advance ``u`` from ``t`` to ``t + h``; ``R=None`` means R ≡ 0."""
        return self.step_with(u, np.zeros_like(u) if R is None else R(u, t))
