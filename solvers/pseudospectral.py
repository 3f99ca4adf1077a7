"""Pseudo-spectral building blocks on periodic boxes (1-D to 3-D), batched over leading axes.

Everything works in the real-FFT layout of ``scipy.fft.rfftn`` over the last ``ndim`` axes: the last axis
holds the non-negative modes 0..n/2, the others the numpy FFT order. Arrays may carry any leading batch
axes (realisations, components), which the transforms treat independently, so results do not depend on
the number of FFT worker threads.

* ``wavenumbers``: k-vectors broadcastable against the rfftn layout, for a box of given lengths.
* ``dealias_mask``: Orszag's 2/3 rule. If f and g only contain modes with |m_i| < n_i/3 on every axis,
  the Fourier coefficients of f·g on the kept modes are exact: every alias of a product mode lands on a
  mode that the mask removes. ``dealiased_product`` and ``gradient_squared`` apply it.
* ``phi_scalar``: e^z, φ₁(z) … φ_k(z) elementwise (real or complex), accurate near z = 0; the one
  implementation for diagonal operators (``spectral_ops.ETDRK4`` uses it too).
* ``exp_integrating_factor``: e^{cΔt}, φ₁ and φ₂ of the diagonal linear symbol c (c ≤ 0), and ``ou_noise_std``, the exact standard deviation of ∫₀^Δt e^{c(Δt−s)} dW(s). With them the
  linear part and additive noise of du = (c u + N(u)) dt + σ dW are integrated exactly for any Δt.

This is the one dealiasing implementation of the package: spectral Fokker-Planck code reuses
``wavenumbers``/``dealias_mask``/``dealiased_product`` (1-D: ``shape = (n,)``) for products of a density with
a drift field.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

__all__ = [
    "dealias_mask",
    "dealiased_product",
    "exp_integrating_factor",
    "gradient_squared",
    "irfftn",
    "laplacian_symbol",
    "ou_noise_std",
    "phi_scalar",
    "rfftn",
    "wavenumbers",
]


def rfftn(u: np.ndarray, ndim: int, workers: int | None = None) -> np.ndarray:
    """Real FFT over the last ``ndim`` axes (unnormalised forward transform, numpy convention)."""
    return sfft.rfftn(u, axes=tuple(range(-ndim, 0)), workers=workers)


def irfftn(u_hat: np.ndarray, shape: tuple, workers: int | None = None) -> np.ndarray:
    """Inverse of ``rfftn`` for a real field whose last axes have ``shape``."""
    return sfft.irfftn(u_hat, s=shape, axes=tuple(range(-len(shape), 0)), workers=workers)


def wavenumbers(shape: tuple, lengths: tuple) -> list[np.ndarray]:
    """Angular wavenumbers k_i = 2π m_i / L_i per axis, each shaped to broadcast over the rfftn layout.

    The Nyquist mode of an even axis is given the positive value π/a (only k² and the dealiased modes
    are used, so its sign never matters).
    """
    ndim = len(shape)
    ks = []
    for ax, (n, length) in enumerate(zip(shape, lengths)):
        if ax == ndim - 1:
            m = np.arange(n // 2 + 1, dtype=float)
        else:
            m = np.fft.fftfreq(n, d=1.0 / n)
            if n % 2 == 0:
                m[n // 2] = n // 2
        k = 2.0 * np.pi * m / length
        bshape = [1] * ndim
        bshape[ax] = k.size
        ks.append(k.reshape(bshape))
    return ks


def laplacian_symbol(shape: tuple, lengths: tuple) -> np.ndarray:
    """|k|² on the rfftn layout (the symbol of −∇²)."""
    ks = wavenumbers(shape, lengths)
    out = np.zeros(np.broadcast_shapes(*[k.shape for k in ks]))
    for k in ks:
        out = out + k * k
    return out


def dealias_mask(shape: tuple, rule: float = 2.0 / 3.0) -> np.ndarray:
    """Boolean mask on the rfftn layout keeping the modes with |m_i| < rule · n_i / 2 on every axis.

    ``rule = 2/3`` (Orszag) removes all aliasing of quadratic products; ``rule = 1`` keeps everything.
    """
    ndim = len(shape)
    mask = np.ones((), dtype=bool)
    for ax, n in enumerate(shape):
        if ax == ndim - 1:
            m = np.arange(n // 2 + 1)
        else:
            m = np.abs(np.fft.fftfreq(n, d=1.0 / n))
        keep = m < rule * n / 2.0
        bshape = [1] * ndim
        bshape[ax] = keep.size
        mask = mask & keep.reshape(bshape)
    return mask


def dealiased_product(
    f_hat: np.ndarray, g_hat: np.ndarray, shape: tuple, mask: np.ndarray | None = None, workers=None
) -> np.ndarray:
    """Fourier coefficients (rfftn layout) of f·g with both factors and the result truncated by ``mask``."""
    if mask is None:
        mask = dealias_mask(shape)
    f = irfftn(f_hat * mask, shape, workers)
    g = irfftn(g_hat * mask, shape, workers)
    return rfftn(f * g, len(shape), workers) * mask


def gradient_squared(
    u_hat: np.ndarray, ks: list[np.ndarray], shape: tuple, mask: np.ndarray, workers=None
) -> tuple[np.ndarray, np.ndarray]:
    """Dealiased |∇u|² from û (rfftn layout, any leading batch axes).

    Returns the rfftn coefficients of |∇u|² (truncated by ``mask``) and max |∂_i u| over the whole batch in
    real space, which lets a caller watch for blow-up without another transform (NaN propagates into it).
    """
    ndim = len(shape)
    uh = u_hat * mask
    acc = None
    gmax = 0.0
    for k in ks:
        g = irfftn(1j * k * uh, shape, workers)
        gmax = float(np.maximum(gmax, np.max(np.abs(g))))  # np.maximum lets NaN through
        acc = g * g if acc is None else acc + g * g
    return rfftn(acc, ndim, workers) * mask, gmax


def _phi_taylor(z: np.ndarray, order: int, n_terms: int = 20) -> np.ndarray:
    """φ_order(z) = Σ_j z^j/(j + order)! by its Taylor series (for |z| < 1: the 20th term is below 1e-19)."""
    out = np.zeros_like(z)
    term = np.ones_like(z) / float(np.prod(np.arange(1, order + 1)))  # 1/order!
    for j in range(n_terms):
        out = out + term
        term = term * z / (j + order + 1)
    return out


def phi_scalar(z: np.ndarray, k: int = 3) -> list[np.ndarray]:
    """[e^z, φ₁(z), …, φ_k(z)] elementwise for real or complex z (diagonal operators such as Fourier symbols).

    φ₀(z) = e^z, φ_{j+1}(z) = (φ_j(z) − 1/j!)/z, φ_j(0) = 1/j!. The closed forms lose digits to
    cancellation near z = 0, so the Taylor series is used for |z| < 1; elsewhere φ₁ = expm1(z)/z (exact)
    and the recursion loses at most a few ulps per order. Real input gives real output.
    """
    z = np.asarray(z)
    z = z.astype(complex if np.iscomplexobj(z) else float)
    small = np.abs(z) < 1.0
    zs = np.where(small, 1.0, z)  # placeholder avoids 0/0 in the closed forms
    out = [np.exp(z)]
    closed = np.expm1(zs) / zs
    fact = 1.0
    for j in range(1, k + 1):
        out.append(np.where(small, _phi_taylor(z, j), closed))
        fact *= j
        closed = (closed - 1.0 / fact) / zs
    return out


def exp_integrating_factor(c: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(e^{z}, φ₁(z), φ₂(z)) with z = c·dt, for a real diagonal symbol c (elementwise; see ``phi_scalar``).

    φ₁(z) = (e^z − 1)/z and φ₂(z) = (e^z − 1 − z)/z² (φ₁(0) = 1, φ₂(0) = 1/2).
    Exponential Euler reads u ← e^z u + Δt φ₁ N(u); the Cox-Matthews ETD2RK corrector adds Δt φ₂ (N(a) − N(u)).
    """
    e, phi1, phi2 = phi_scalar(np.asarray(c, dtype=float) * float(dt), 2)
    return e, phi1, phi2


def ou_noise_std(c: np.ndarray, dt: float) -> np.ndarray:
    """Standard deviation of ∫₀^Δt e^{c(Δt−s)} dW(s) for a unit Wiener process: √((e^{2cΔt} − 1)/(2c)).

    Equal to √Δt at c = 0 and √(Δt φ₁(2cΔt)) in general, which is how it is evaluated (no cancellation).
    """
    _, phi1, _ = exp_integrating_factor(2.0 * np.asarray(c, dtype=float), dt)
    return np.sqrt(dt * phi1)
