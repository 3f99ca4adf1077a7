"""Kardar-Parisi-Zhang and Edwards-Wilkinson surfaces: solvers, exact lattice references, scaling analysis.

The equation (Itô; λ = 0 is Edwards-Wilkinson)::

    ∂t h = ν ∇²h + (λ/2) |∇h|² + η,      ⟨η(x, t) η(x', t')⟩ = 2 D δ(x − x') δ(t − t')

on a periodic box in 1 or 2 dimensions. ``noise`` is D (never a standard deviation). On a lattice of
spacing a the noise of one step is √(2DΔt/aᵈ)·ξ with ξ standard normal.

Schemes
-------
``"lam-shin"``
    Finite differences with the Lam-Shin stencil for |∇h|² (summed over axes in 2-D), explicit
    Euler-Maruyama or stochastic Heun. In 1-D the Gaussian random-walk measure is exactly stationary for
    any λ, so the stationary width is known exactly (``random_walk_width2``).
``"naive"``
    Central differences for |∇h|², as most codes (py-pde among them) do. Kept only as a comparison: its
    stationary width is too small and it grows isolated pillars that blow up.
``"spectral"``
    Pseudo-spectral with the 2/3 dealiasing rule. The linear part and the noise are integrated exactly
    (integrating factor e^{−νk²Δt}, noise variance (1 − e^{−2νk²Δt})/(2νk²) per mode), so EW is exact for
    any Δt; the nonlinearity is stepped by exponential Euler ("euler") or Cox-Matthews ETD2RK ("heun").

Exact references (derived in the docstrings below): ``ew_width_exact`` (EW width at any time on the lattice,
including the time discretisation of Euler-Maruyama and Heun, or for the spectral scheme),
``random_walk_width2`` (stationary width of the random-walk measure, closed form), ``cole_hopf_solution``
(deterministic KPZ through the Cole-Hopf transform Z = exp(λh/(2ν))).

Scaling analysis: ``fit_growth_exponent`` (β), ``fit_roughness_exponent`` (α from saturated widths over
sizes), ``fit_dynamic_exponent`` (z from crossover times over sizes), ``collapse_plot`` (Family-Vicsek).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np

from .errors import ConfigError, StabilityError, check_choice, check_positive
from .grid import Grid
from .progress import progress
from .results import Result
from .solvers import kpz_kernels as _kk
from .solvers import pseudospectral as _ps
from .solvers.random import derive_seed, draw_normals, draw_normals_serial, seed_streams
from .solvers.time_stepping import advance_to_outputs

SCHEMES = ("lam-shin", "naive", "spectral")
METHODS = ("euler", "heun")
PERIODIC_KINDS = ("uniform", "fourier")
SLOPE_FACTOR = 60.0
"""Blow-up threshold: a nearest-neighbour height difference beyond SLOPE_FACTOR × √(D a²/(ν aᵈ)) (the rms
EW slope scale; Gaussian maxima over 10⁹ sites stay below 7×) or 4 × the largest initial difference."""
CHECK_EVERY = 16  # steps between blow-up checks inside the kernels (a cheap pass, < 1 % of a step)
_CHUNK_UPDATES = 2e7
_PARALLEL_MIN = 1 << 17  # lattice sites per step below which a per-step parallel region is not opened
_ADVICE = {
    "naive": ", or use scheme='lam-shin': the naive central stencil grows isolated pillars",
    "lam-shin": ", or use method='heun', or scheme='spectral'",
    "spectral": ", or use method='heun'",
}  # lattice updates per kernel call: progress bar and blow-up reporting granularity


# =====================================================================================================
# exact references
# =====================================================================================================
def _full_modes(shape: tuple) -> list[np.ndarray]:
    """Integer mode numbers m_i (numpy FFT order) per axis, broadcastable to the full FFT layout."""
    out = []
    for ax, n in enumerate(shape):
        b = [1] * len(shape)
        b[ax] = n
        out.append(np.fft.fftfreq(n, d=1.0 / n).reshape(b))
    return out


def decay_rates(grid: Grid, nu: float, scheme: str = "lam-shin") -> np.ndarray:
    """Relaxation rates κ_k of the EW modes on the full FFT layout of ``grid`` (κ_0 = 0).

    Lattice schemes: κ = ν μ_k with μ_k = Σ_i (4/a_i²) sin²(π m_i/N_i), the eigenvalues of −(discrete
    Laplacian). Spectral scheme: κ = ν |k|², k_i = 2π m_i/L_i.
    """
    kappa = np.zeros(grid.shape)
    for m, n, a in zip(_full_modes(grid.shape), grid.shape, grid.dx):
        if scheme == "spectral":
            kappa = kappa + (2.0 * np.pi * m / (n * a)) ** 2
        else:
            kappa = kappa + (4.0 / a**2) * np.sin(np.pi * m / n) ** 2
    return nu * kappa


def ew_width_exact(
    grid: Grid,
    nu: float,
    noise: float,
    t,
    *,
    scheme: str = "lam-shin",
    dt: float | None = None,
    method: str = "euler",
    h0: np.ndarray | None = None,
) -> np.ndarray:
    """Exact ensemble-mean squared width ⟨w²(t)⟩ of Edwards-Wilkinson (λ = 0) on a periodic lattice.

    Derivation. With the DFT ĥ_k = Σ_j h_j e^{−ik·j} and N sites, w² = (1/N)Σ_j (h_j − h̄)² =
    (1/N²) Σ_{k≠0} |ĥ_k|². Each mode is an independent linear process driven by noise with
    E|ξ̂_k|² = N s², s² = 2D/aᵈ per unit time:

    * continuous time (``dt=None``) and the spectral scheme (exact integrating factor, any Δt):
      E|ĥ_k(t)|² = e^{−2κt}|ĥ_k(0)|² + N s² (1 − e^{−2κt})/(2κ);
    * Euler-Maruyama with step Δt, ĥ ← g ĥ + noise, g = 1 − x, x = κΔt:
      E|ĥ_k(nΔt)|² = g^{2n}|ĥ_k(0)|² + N s² Δt (1 − g^{2n})/(1 − g²);
    * stochastic Heun, ĥ ← (1 − x + x²/2) ĥ + (1 − x/2)·noise: the same with g = 1 − x + x²/2 and the noise
      term multiplied by c² = (1 − x/2)².

    κ are the ``decay_rates`` of the scheme. As t → ∞ (continuous time) in 1-D this sums to
    D a (N² − 1)/(12 ν N), the random-walk value (``random_walk_width2``).

    Parameters
    ----------
    grid : Grid
        Periodic 1-D or 2-D lattice (spacing a_i = grid.dx[i]).
    nu, noise : float
        ν and D.
    t : float or array
        Times. With ``dt`` given (lattice schemes), t/dt is rounded to whole steps.
    scheme : {"lam-shin", "naive", "spectral"}
        The two finite-difference schemes share the lattice Laplacian.
    dt : float, optional
        Time step of the explicit stepper; ``None`` gives the continuous-time (dt → 0) limit. Ignored for
        the spectral scheme, which is exact for any step.
    method : {"euler", "heun"}
    h0 : array, optional
        Deterministic initial heights (grid shape); flat if omitted.

    Returns
    -------
    ndarray
        ⟨w²⟩ at each t (units of h²).
    """
    check_choice("scheme", scheme, SCHEMES)
    check_choice("method", method, METHODS)
    t = np.atleast_1d(np.asarray(t, dtype=float))
    kappa = decay_rates(grid, nu, scheme).ravel()[1:]  # k = 0 does not enter the width
    n_sites = grid.size
    s2 = 2.0 * noise / grid.cell_volume
    if h0 is None:
        h0k = np.zeros_like(kappa)
    else:
        h0k = np.abs(np.fft.fftn(np.asarray(h0, dtype=float))).ravel()[1:] ** 2
    out = np.empty(t.size)
    for i, ti in enumerate(t):
        if dt is None or scheme == "spectral":
            decay = np.exp(-2.0 * kappa * ti)
            noise_part = n_sites * s2 * (-np.expm1(-2.0 * kappa * ti)) / (2.0 * kappa)
        else:
            n = round(ti / dt)
            x = kappa * dt
            if method == "euler":
                g, c2 = 1.0 - x, 1.0
            else:
                g, c2 = 1.0 - x + 0.5 * x * x, (1.0 - 0.5 * x) ** 2
            g2 = g * g
            with np.errstate(divide="ignore", invalid="ignore"):
                decay = g2**n
                geo = np.where(np.isclose(g2, 1.0, rtol=0, atol=1e-15), float(n), (1.0 - decay) / (1.0 - g2))
            noise_part = n_sites * s2 * dt * c2 * geo
        out[i] = np.sum(decay * h0k + noise_part) / n_sites**2
    return out


def random_walk_width2(n_sites: int, a: float, nu: float, noise: float) -> float:
    """Exact ⟨w²⟩ of the periodic 1-D Gaussian random-walk (EW / Lam-Shin KPZ stationary) measure.

    The measure ∝ exp(−(ν/(2Da)) Σ (h_{i+1} − h_i)²) on a ring of L = ``n_sites`` sites is a random-walk
    bridge with step variance σ² = D a/ν. Summing the mode variances, (D/(ν L a)) Σ_{m=1}^{L−1} a²/(4 sin²(πm/L))
    with Σ 1/sin²(πm/L) = (L² − 1)/3, gives ⟨w²⟩ = σ² (L² − 1)/(12 L) (→ D·length/(12ν)).
    """
    n_sites = int(n_sites)
    return noise * a / nu * (n_sites**2 - 1) / (12.0 * n_sites)


def stationary_width2(grid: Grid, nu: float, noise: float, scheme: str = "lam-shin") -> float:
    """Continuous-time stationary ⟨w²⟩ of EW on ``grid``: (1/N) Σ_{k≠0} D/(aᵈ κ_k), κ the ``decay_rates``.

    For 1-D lattice schemes it equals ``random_walk_width2``; for Lam-Shin KPZ in 1-D it holds for any λ.
    """
    kappa = decay_rates(grid, nu, scheme).ravel()[1:]
    return float(np.sum(noise / (grid.cell_volume * kappa)) / grid.size)


# --- Cole-Hopf --------------------------------------------------------------------------------------
def cole_hopf(h: np.ndarray, nu: float, lam: float) -> np.ndarray:
    """Z = exp(λh/(2ν)). For D = 0, KPZ for h is the heat equation ∂t Z = ν∇²Z (with noise, the
    multiplicative stochastic heat equation). Values overflow for large λh/ν: shift h first."""
    return np.exp(lam * np.asarray(h) / (2.0 * nu))


def inverse_cole_hopf(Z: np.ndarray, nu: float, lam: float) -> np.ndarray:
    """h = (2ν/λ) ln Z, the inverse of ``cole_hopf``."""
    return (2.0 * nu / lam) * np.log(Z)


def cole_hopf_solution(grid: Grid, h0: np.ndarray, nu: float, lam: float, t) -> np.ndarray:
    """Exact deterministic (D = 0) KPZ solution on the periodic box through Cole-Hopf.

    h(t) = (2ν/λ) ln(e^{tν∇²} Z₀), Z₀ = exp(λ(h₀ − c)/(2ν)) + the shift c (c = max h₀ for λ > 0, min for
    λ < 0, so Z₀ ≤ 1 never overflows). The heat semigroup acts spectrally, exact for smooth h₀ up to its
    Fourier truncation. Returns an array (n_t, *grid.shape).
    """
    lam = float(lam)
    if lam == 0.0:
        raise ConfigError("`lam` must be non-zero for the Cole-Hopf transform (λ = 0 is already linear)")
    h0 = np.asarray(h0, dtype=float)
    c = h0.max() if lam > 0 else h0.min()
    z0_hat = _ps.rfftn(cole_hopf(h0 - c, nu, lam), grid.ndim)
    k2 = _ps.laplacian_symbol(grid.shape, tuple(n * a for n, a in zip(grid.shape, grid.dx)))
    out = []
    for ti in np.atleast_1d(np.asarray(t, dtype=float)):
        z = _ps.irfftn(np.exp(-nu * k2 * ti) * z0_hat, grid.shape)
        out.append(inverse_cole_hopf(z, nu, lam) + c)
    return np.array(out)


# =====================================================================================================
# results
# =====================================================================================================
def radial_average(values: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Average of ``values`` (leading axes, then the rfftn layout of a 2-D ``grid``) over shells of |k|.

    Shells have width 2π/L_max (mode k falls in shell rint(|k|/dk)); the k = 0 shell is dropped. Modes
    strictly inside the last axis' half range stand for a ± pair and count twice. Returns the mean |k| of
    each shell and the shell averages (..., n_shells).
    """
    lengths = tuple(n * a for n, a in zip(grid.shape, grid.dx))
    ks = _ps.wavenumbers(grid.shape, lengths)
    kmag = np.sqrt(sum(k * k for k in ks))
    n1 = grid.shape[-1]
    wt = np.full(kmag.shape[-1], 2.0)
    wt[0] = 1.0
    if n1 % 2 == 0:
        wt[-1] = 1.0
    wt = np.broadcast_to(wt, kmag.shape).ravel()
    bins = np.rint(kmag / (2.0 * np.pi / max(lengths))).astype(int).ravel()
    nb = bins.max() + 1
    cnt = np.bincount(bins, weights=wt, minlength=nb)
    kmean = np.bincount(bins, weights=wt * kmag.ravel(), minlength=nb)
    flat = np.asarray(values).reshape(-1, kmag.size)
    avg = np.stack([np.bincount(bins, weights=wt * row, minlength=nb) for row in flat])
    keep = (cnt > 0) & (np.arange(nb) > 0)
    lead = np.shape(values)[: np.ndim(values) - kmag.ndim]
    return kmean[keep] / cnt[keep], (avg[:, keep] / cnt[keep]).reshape(*lead, int(keep.sum()))


class Moments(NamedTuple):
    """Skewness and excess kurtosis per output time, with jackknife standard errors over realisations."""

    skewness: np.ndarray
    excess_kurtosis: np.ndarray
    skewness_se: np.ndarray
    kurtosis_se: np.ndarray


class Surfaces(Result):
    """Heights of many KPZ/EW realisations at the output times.

    Attributes
    ----------
    t : (n_t,) ndarray
        Output times (whole multiples of the step).
    h : (n_t, n_realisations, *grid.shape) ndarray or None
        Heights (None when the run kept only widths).
    w2 : (n_t, n_realisations) ndarray
        Squared width (1/N)Σ(h − h̄)² of each realisation.
    mean : (n_t, n_realisations) ndarray
        Spatial mean height h̄ of each realisation.
    grid : Grid
    meta : dict
        The resolved problem (ν, λ, D, scheme), method, dt, seed, initial condition.
    """

    kind = "kpz_surfaces"
    _datasets = ("t", "h", "w2", "mean")

    def __init__(self, t, h, w2, mean, grid: Grid, meta: dict):
        self.t = np.asarray(t, dtype=float)
        self.h = None if h is None else np.asarray(h)
        self.w2 = np.asarray(w2, dtype=float)
        self.mean = np.asarray(mean, dtype=float)
        self.grid = grid
        self.meta = dict(meta)

    @classmethod
    def _from_stored(cls, fields, meta, grid):
        return cls(fields["t"], fields.get("h"), fields["w2"], fields["mean"], grid, meta)

    @property
    def n_realisations(self) -> int:
        """Number R of independent realisations."""
        return int(self.w2.shape[1])

    @property
    def length(self) -> tuple:
        """Box lengths N_i a_i."""
        return tuple(n * a for n, a in zip(self.grid.shape, self.grid.dx))

    def width(self) -> tuple[np.ndarray, np.ndarray]:
        """Ensemble-mean squared width ⟨w²⟩(t) and its standard error (std over realisations / √R).

        Realisations are independent, so the standard error is exact in the usual sense; values at
        different times of one run are correlated.

        Returns
        -------
        (array, array)
            ⟨w²⟩(t) and its standard error, each (n_t,) (units of h²).
        """
        R = self.n_realisations
        m = self.w2.mean(axis=1)
        se = self.w2.std(axis=1, ddof=1) / math.sqrt(R) if R > 1 else np.full_like(m, np.nan)
        return m, se

    def _need_h(self, what: str) -> np.ndarray:
        if self.h is None:
            raise ConfigError(f"`{what}` needs the heights: run with keep_heights=True")
        return self.h

    def structure_factor(self) -> tuple[np.ndarray, np.ndarray]:
        """S(k, t) = (aᵈ/N) ⟨|ĥ_k|²⟩, radially averaged in 2-D, for k ≠ 0.

        Normalised so that stationary EW gives S = D/(ν μ_k) → D/(ν k²) at small k (μ_k the lattice
        Laplacian's eigenvalue). Returns (k, S) with k the (bin-centre) wavenumbers and S (n_t, n_k).

        Returns
        -------
        (array, array)
            k (n_k,) (per unit x) and S (n_t, n_k) (units of h²·x^d).
        """
        h = self._need_h("structure_factor")
        g = self.grid
        hk = _ps.rfftn(h, g.ndim)
        power = (np.abs(hk) ** 2).mean(axis=1) * g.cell_volume / g.size  # (n_t, rfft layout)
        ks = _ps.wavenumbers(g.shape, self.length)
        if g.ndim == 1:
            return ks[0].ravel()[1:], power[:, 1:]
        return radial_average(power, g)

    def moments(self, subtract: str = "ensemble") -> Moments:
        """Skewness and excess kurtosis of h − ⟨h⟩ pooled over sites and realisations, per output time.

        ``subtract="ensemble"`` removes the grand mean at each time (one-point height fluctuations, the
        quantity compared with Tracy-Widom); ``"realisation"`` removes each realisation's spatial mean.
        Standard errors by the delete-one jackknife over realisations.

        Parameters
        ----------
        subtract : str
            ``"ensemble"`` or ``"realisation"`` (see above).

        Returns
        -------
        Moments
            Skewness, excess kurtosis and their jackknife standard errors, each (n_t,).
        """
        check_choice("subtract", subtract, ("ensemble", "realisation"))
        h = self._need_h("moments")
        n_t, R = h.shape[:2]
        d = h.reshape(n_t, R, -1)
        if subtract == "realisation":
            d = d - d.mean(axis=2, keepdims=True)
        else:
            d = d - d.mean(axis=(1, 2), keepdims=True)
        P = np.stack([(d**p).sum(axis=2) for p in (1, 2, 3, 4)])  # (4, n_t, R) power sums
        n = d.shape[2]

        def stats(sums, count):
            m1 = sums[0] / count
            r2, r3, r4 = sums[1] / count, sums[2] / count, sums[3] / count
            c2 = r2 - m1**2
            c3 = r3 - 3 * m1 * r2 + 2 * m1**3
            c4 = r4 - 4 * m1 * r3 + 6 * m1**2 * r2 - 3 * m1**4
            return c3 / c2**1.5, c4 / c2**2 - 3.0

        tot = P.sum(axis=2)
        skew, kurt = stats(tot, n * R)
        if R > 1:
            js, jk = stats(tot[:, :, None] - P, n * (R - 1))
            f = (R - 1) / R
            sse = np.sqrt(f * ((js - js.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
            kse = np.sqrt(f * ((jk - jk.mean(axis=1, keepdims=True)) ** 2).sum(axis=1))
        else:
            sse = kse = np.full(n_t, np.nan)
        return Moments(skew, kurt, sse, kse)


# =====================================================================================================
# the problem class
# =====================================================================================================
class KPZ:
    """∂t h = ν∇²h + (λ/2)|∇h|² + η, ⟨η η'⟩ = 2D δ(x − x')δ(t − t') on a periodic 1-D or 2-D grid (Itô).

    Parameters
    ----------
    grid : Grid
        A periodic lattice: ``Grid.uniform`` (read as periodic with period hi − lo) or a Fourier grid. The
        spacing a_i = grid.dx[i] sets the lattice noise √(2DΔt/aᵈ)ξ.
    nu : float
        ν > 0, surface tension (units length²/time).
    lam : float
        λ, the KPZ coupling (any sign; 0 gives Edwards-Wilkinson).
    noise : float
        D ≥ 0, the noise strength in ⟨η η⟩ = 2D δδ (not a standard deviation).
    scheme : {"lam-shin", "spectral", "naive"}
        See the module docstring; "naive" is a comparison only.

    Notes
    -----
    The noise is additive, so Itô and Stratonovich readings coincide and the stochastic Heun method
    converges to the same solution as Euler-Maruyama. Heights live on the grid's nodes (cell centres of
    ``Grid.uniform``); only the spacing and the period enter the schemes.

    Raises
    ------
    ConfigError
        ν ≤ 0, D < 0, non-finite λ, a grid that is not 1-D/2-D or not periodic, an unknown scheme.
    """

    def __init__(
        self, grid: Grid, nu: float = 1.0, lam: float = 0.0, noise: float = 1.0, scheme: str = "lam-shin"
    ):
        if not isinstance(grid, Grid):
            raise ConfigError(f"`grid` must be an fpkit.Grid, got {type(grid).__name__}")
        self.scheme = check_choice("scheme", scheme, SCHEMES)
        if grid.ndim not in (1, 2):
            raise ConfigError(f"`grid` must be 1-D or 2-D for KPZ, got {grid.ndim}-D")
        if grid.kind not in PERIODIC_KINDS:
            what = "the spectral scheme (Fourier modes)" if scheme == "spectral" else "KPZ"
            raise ConfigError(
                f"`grid` of kind {grid.kind!r} is not periodic: {what} needs a periodic grid, "
                "Grid.uniform (read as periodic) or a Fourier grid"
            )
        self.grid = grid
        self.nu = check_positive("nu", nu)
        self.noise = check_positive("noise", noise, strict=False)
        try:
            self.lam = float(lam)
        except (TypeError, ValueError):
            raise ConfigError(f"`lam` must be a number, got {lam!r}") from None
        if not math.isfinite(self.lam):
            raise ConfigError(f"`lam` must be finite, got {lam!r}")

    def __repr__(self) -> str:
        return f"KPZ({self.grid!r}, nu={self.nu}, lam={self.lam}, noise={self.noise}, scheme={self.scheme!r})"

    # --- properties ---------------------------------------------------------------------------------
    @property
    def max_stable_dt(self) -> float:
        """Largest stable explicit step of the linear part, ν Δt Σ_i 1/a_i² ≤ 1/2 (∞ for "spectral")."""
        if self.scheme == "spectral":
            return math.inf
        return 0.5 / (self.nu * sum(1.0 / a**2 for a in self.grid.dx))

    def _stencil(self) -> tuple[float, float]:
        """(w, prefactor) of the |∇h|² stencil (d₊² + w d₊d₋ + d₋²)·prefactor/a²."""
        return (1.0, 1.0 / 3.0) if self.scheme == "lam-shin" else (2.0, 0.25)

    def describe(self) -> dict:
        """The resolved problem, for results files.

        Returns
        -------
        dict
            ``nu``, ``lam``, ``noise`` (D), ``scheme`` and ``grid``.
        """
        return {
            "nu": self.nu,
            "lam": self.lam,
            "noise": self.noise,
            "scheme": self.scheme,
            "grid": self.grid.to_dict(),
        }

    def rhs(self, h: np.ndarray) -> np.ndarray:
        """Deterministic right-hand side ν∇²h + (λ/2)|∇h|² of the scheme, in plain numpy (a reference).

        ``h`` has the grid's shape as its last axes.

        Parameters
        ----------
        h : array (..., *grid.shape)
            Heights.

        Returns
        -------
        array
            ν∇²h + (λ/2)|∇h|², the shape of ``h`` (units of h per unit t).
        """
        h = np.asarray(h, dtype=float)
        if self.scheme != "spectral":
            return _kk.incr_reference(h, self.grid.dx, self.nu, self.lam, 1.0, self.scheme)
        g = self.grid
        hk = _ps.rfftn(h, g.ndim)
        k2 = _ps.laplacian_symbol(g.shape, self._lengths)
        mask = _ps.dealias_mask(g.shape)
        nl, _ = _ps.gradient_squared(hk, _ps.wavenumbers(g.shape, self._lengths), g.shape, mask)
        return _ps.irfftn(-self.nu * k2 * hk + 0.5 * self.lam * nl, g.shape)

    @property
    def _lengths(self) -> tuple:
        return tuple(n * a for n, a in zip(self.grid.shape, self.grid.dx))

    # --- exact references bound to this problem -------------------------------------------------------
    def ew_width(self, t, dt: float | None = None, method: str = "euler", h0=None) -> np.ndarray:
        """``ew_width_exact`` for this grid, ν, D and scheme (valid for λ = 0; see there).

        Parameters
        ----------
        t : float or sequence of float
            Times ≥ 0.
        dt : float, optional
            The time step whose discrete-time width is wanted (None: continuous time).
        method : str
            The stepping method of that discrete width.
        h0 : array, optional
            Initial heights (default flat).

        Returns
        -------
        array
            ⟨w²⟩ at each t (units of h²).
        """
        return ew_width_exact(
            self.grid, self.nu, self.noise, t, scheme=self.scheme, dt=dt, method=method, h0=h0
        )

    def stationary_width(self) -> float:
        """Continuous-time stationary ⟨w²⟩ of EW; exact for Lam-Shin KPZ in 1-D for any λ.

        Returns
        -------
        float
            ⟨w²⟩ (units of h²).
        """
        return stationary_width2(self.grid, self.nu, self.noise, self.scheme)

    def sample_stationary(self, n_realisations: int, seed: int = 0) -> np.ndarray:
        """Draw heights (R, *grid) from the Gaussian EW stationary measure of the scheme (zero mean height).

        Mode k gets variance E|ĥ_k|² = N D/(aᵈ κ_k) (``decay_rates``), from white noise on stream r of
        ``seed`` for realisation r, so draws do not depend on the thread count. In 1-D on the lattice this is
        the random-walk bridge measure, stationary for Lam-Shin KPZ at any λ.

        Parameters
        ----------
        n_realisations : int
            Number R of independent surfaces.
        seed : int
            Seed of the streams.

        Returns
        -------
        array (R, *grid.shape)
            Heights.
        """
        g = self.grid
        R = int(n_realisations)
        xi = np.empty((R, g.size))
        draw_normals(seed_streams(seed, R), xi)
        xk = _ps.rfftn(xi.reshape((R, *g.shape)), g.ndim)
        kappa = self._rfft_rates()
        with np.errstate(divide="ignore"):
            amp = np.where(
                kappa > 0, np.sqrt(self.noise / (g.cell_volume * np.where(kappa > 0, kappa, 1.0))), 0.0
            )
        return _ps.irfftn(xk * amp, g.shape)

    def _rfft_rates(self) -> np.ndarray:
        """``decay_rates`` on the rfftn layout."""
        g = self.grid
        if self.scheme == "spectral":
            return self.nu * _ps.laplacian_symbol(g.shape, self._lengths)
        ks = _ps.wavenumbers(g.shape, self._lengths)
        out = 0.0
        for k, a in zip(ks, g.dx):
            out = out + (4.0 / a**2) * np.sin(0.5 * k * a) ** 2
        return self.nu * out

    # --- running ------------------------------------------------------------------------------------
    def run(
        self,
        t_eval,
        n_realisations: int = 1,
        dt: float = 0.01,
        seed: int = 0,
        h0="flat",
        method: str = "euler",
        keep_heights: bool = True,
        show_progress: bool | None = None,
    ) -> Surfaces:
        """Evolve ``n_realisations`` independent surfaces from t = 0 and record them at ``t_eval``.

        Parameters
        ----------
        t_eval : sequence of float
            Output times ≥ 0, increasing. Each is rounded to a whole number of steps; ``Surfaces.t`` holds
            the times actually reached (n·dt).
        n_realisations : int
            Independent realisations R, each with its own random stream (per lattice row in 2-D).
        dt : float
            Time step. Lattice schemes need ν Δt Σ 1/a_i² ≤ 1/2 (``max_stable_dt``).
        seed : int
            Results are bit-identical for a seed whatever the number of threads.
        h0 : "flat", "stationary" or array
            Flat (h = 0), a draw from the EW stationary measure (``sample_stationary``), or heights of the
            grid's shape (shared) or (R, *grid.shape).
        method : {"euler", "heun"}
            Euler-Maruyama / stochastic Heun (lattice); exponential Euler / ETD2RK (spectral).
        keep_heights : bool
            Keep all heights (memory n_t·R·N·8 bytes); otherwise only widths and mean heights.
        show_progress : bool, optional
            Progress bar (default: only when stderr is a terminal).

        Returns
        -------
        Surfaces
            Widths, mean heights and (with ``keep_heights``) the heights at the times reached.

        Raises
        ------
        ConfigError
            Bad arguments, or dt above the explicit stability bound.
        StabilityError
            The surface blew up (non-finite heights or a growing pillar); the error gives the time.
        """
        g = self.grid
        method = check_choice("method", method, METHODS)
        dt = check_positive("dt", dt)
        if dt > self.max_stable_dt * (1 + 1e-12):
            raise ConfigError(
                f"`dt`={dt:g} is above the explicit stability bound ν·dt·Σ1/a² ≤ 1/2, i.e. dt ≤ "
                f"{self.max_stable_dt:.6g} for this grid and ν; reduce dt or use scheme='spectral'"
            )
        R = n_realisations
        if isinstance(R, bool) or not isinstance(R, (int, np.integer)) or R < 1:
            raise ConfigError(f"`n_realisations` must be an integer >= 1, got {n_realisations!r}")
        R = int(R)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"`seed` must be an integer >= 0, got {seed!r}")
        t_arr = np.atleast_1d(np.asarray(t_eval, dtype=float))
        if t_arr.ndim != 1 or t_arr.size == 0 or not np.all(np.isfinite(t_arr)) or np.any(t_arr < 0):
            raise ConfigError("`t_eval` must be a non-empty 1-D sequence of finite times >= 0")
        steps = np.rint(t_arr / dt).astype(np.int64)
        if np.any(np.diff(steps) <= 0):
            raise ConfigError(
                "`t_eval` must be increasing and at least `dt` apart (each time is rounded to whole steps); "
                f"got t_eval={t_arr.tolist()[:6]}... with dt={dt:g}"
            )
        h = self._initial(h0, R, seed)
        d0 = _max_neighbour_difference(h)
        s_ref = math.sqrt(self.noise * max(g.dx) ** 2 / (self.nu * g.cell_volume))
        max_slope = max(SLOPE_FACTOR * s_ref, 4.0 * d0)
        if max_slope == 0.0:
            max_slope = math.inf  # deterministic flat surface: nothing can grow, only NaN is checked

        n_t = steps.size
        h_out = np.empty((n_t, R, *g.shape)) if keep_heights else None
        w2 = np.empty((n_t, R))
        hbar = np.empty((n_t, R))
        stepper = self._spectral_stepper if self.scheme == "spectral" else self._fd_stepper
        advance = stepper(h, R, dt, seed, method, max_slope)

        # the driver counts time in steps here (output times `steps`, dt = 1), so `done` is a step count
        def advance_chunk(heights, done, _, n):
            fail_step, reason = advance(n)
            if fail_step:
                at = int(done) + fail_step
                tf = at * dt
                raise StabilityError(
                    f"KPZ {self.scheme}/{method} surface blew up at t ≈ {tf:.6g} (step {at}): "
                    f"{reason}. Reduce dt (now {dt:g}; λ²·slope²·dt/ν must stay small){_ADVICE[self.scheme]}",
                    time=tf,
                )
            return heights

        def record(i, heights):
            flat = heights.reshape(R, -1)
            hbar[i] = flat.mean(axis=1)
            w2[i] = ((flat - hbar[i][:, None]) ** 2).mean(axis=1)
            if keep_heights:
                h_out[i] = heights

        chunk = max(1, int(_CHUNK_UPDATES / (R * g.size)))
        with progress(int(steps[-1]), "KPZ", enable=show_progress, unit="step") as bar:
            advance_to_outputs(h, steps.astype(float), advance_chunk, record, dt=1.0, max_steps=chunk,
                               bar=bar)  # fmt: skip
        meta = {
            "problem": self.describe(),
            "method": method,
            "dt": dt,
            "seed": int(seed),
            "n_realisations": R,
            "h0": h0 if isinstance(h0, str) else "array",
            "noise_convention": "<eta eta> = 2 D delta delta; lattice step noise sqrt(2 D dt / a^d) xi (Ito)",
        }
        return Surfaces(steps * dt, h_out, w2, hbar, g, meta)

    def _initial(self, h0, R: int, seed: int) -> np.ndarray:
        g = self.grid
        if isinstance(h0, str):
            check_choice("h0", h0, ("flat", "stationary"))
            if h0 == "flat":
                return np.zeros((R, *g.shape))
            return self.sample_stationary(R, derive_seed(seed, 1))
        arr = np.asarray(h0, dtype=float)
        if arr.shape == g.shape:
            arr = np.broadcast_to(arr, (R, *g.shape))
        if arr.shape != (R, *g.shape):
            raise ConfigError(
                f"`h0` has shape {np.shape(h0)}, expected the grid's shape {g.shape} or {(R, *g.shape)}"
            )
        if not np.all(np.isfinite(arr)):
            raise ConfigError("`h0` contains non-finite heights")
        return np.array(arr, dtype=float, order="C")

    # --- steppers: closures advance the heights h in place by n steps and report (fail_step, reason) ----
    def _fd_stepper(self, h, R, dt, seed, method, max_slope):
        g = self.grid
        w, pref = self._stencil()
        amp = math.sqrt(2.0 * self.noise * dt / g.cell_volume)
        heun = method == "heun"
        fail = np.zeros(R, dtype=np.int64)
        if g.ndim == 1:
            a = g.dx[0]
            state = seed_streams(derive_seed(seed, 0), R)
            c_lap = self.nu * dt / a**2
            c_nl = 0.5 * self.lam * dt * pref / a**2

            run = _kk.run_fd_1d if R > 1 else _kk.run_fd_1d_serial  # identical numbers either way

            def advance(n):
                run(h, state, n, c_lap, c_nl, w, amp, heun, CHECK_EVERY, max_slope, fail)
                return _fail_report(fail, h, max_slope)

        else:
            a0, a1 = g.dx
            state = seed_streams(derive_seed(seed, 0), R * g.shape[0])
            cx, cy = self.nu * dt / a0**2, self.nu * dt / a1**2
            nx, ny = 0.5 * self.lam * dt * pref / a0**2, 0.5 * self.lam * dt * pref / a1**2

            scratch = _kk.scratch_rows(g.shape[1])
            # enough realisations to keep every thread busy (or a lattice too small to split): one parallel
            # region per call, steps inside; otherwise split each step's rows over the threads (a region
            # per step). Identical numbers either way.
            by_realisation = R >= numba.get_num_threads() or g.size < _PARALLEL_MIN

            def advance(n):
                if by_realisation:
                    _kk.run_fd_2d_realisations(
                        h, state, n, cx, cy, nx, ny, w, amp, heun, CHECK_EVERY, max_slope, fail
                    )
                else:
                    _kk.run_fd_2d(
                        h, state, n, cx, cy, nx, ny, w, amp, heun, CHECK_EVERY, max_slope, fail, scratch
                    )
                return _fail_report(fail, h, max_slope)

        return advance

    def _spectral_stepper(self, h, R, dt, seed, method, max_slope):
        g = self.grid
        shape, nd = g.shape, g.ndim
        ks = _ps.wavenumbers(shape, self._lengths)
        c = -self.nu * _ps.laplacian_symbol(shape, self._lengths)
        E, phi1, phi2 = _ps.exp_integrating_factor(c, dt)
        sig = math.sqrt(2.0 * self.noise / g.cell_volume) * _ps.ou_noise_std(c, dt)
        mask = _ps.dealias_mask(shape)
        state = seed_streams(derive_seed(seed, 0), R)
        xi = np.empty((R, g.size))
        # a parallel region per step pays off only for large draws (its launch costs ~10 µs on an idle
        # machine, milliseconds on an oversubscribed one); the numbers are the same either way
        fill = draw_normals if (R > 1 and R * g.size >= _PARALLEL_MIN) else draw_normals_serial
        half_lam = 0.5 * self.lam
        a_max = max(g.dx)
        st = {"hk": _ps.rfftn(h, nd)}

        def nonlinear(hk):
            with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported, not warned about
                nl, gmax = _ps.gradient_squared(hk, ks, shape, mask)
                return half_lam * nl, gmax

        def advance(n):
            hk = st["hk"]
            for step in range(1, n + 1):
                gmax = 0.0
                if self.noise > 0:
                    fill(state, xi)
                    dW = _ps.rfftn(xi.reshape((R, *shape)), nd) * sig
                else:
                    dW = 0.0
                if self.lam == 0.0:
                    hk = E * hk + dW
                else:
                    n0, gmax = nonlinear(hk)
                    with np.errstate(over="ignore", invalid="ignore"):
                        a = E * hk + dt * phi1 * n0 + dW
                    if method == "heun":
                        n1, _ = nonlinear(a)
                        with np.errstate(over="ignore", invalid="ignore"):
                            hk = a + dt * phi2 * (n1 - n0)
                    else:
                        hk = a
                if step % CHECK_EVERY == 0 or step == n:
                    ok = math.isfinite(gmax) and gmax * a_max <= max_slope and np.isfinite(hk).all()
                    if not ok:
                        st["hk"] = hk
                        return step, (
                            "non-finite heights"
                            if not np.isfinite(hk).all() or not math.isfinite(gmax)
                            else f"slope |∇h|·a = {gmax * a_max:.3g} beyond the limit {max_slope:.3g}"
                        )
            st["hk"] = hk
            h[...] = _ps.irfftn(hk, shape)
            return 0, ""

        return advance


def _max_neighbour_difference(h: np.ndarray) -> float:
    """Largest |h_{i+1} − h_i| over the lattice axes (the last ndim axes, periodic), over all realisations."""
    m = 0.0
    for axis in range(1, h.ndim):
        m = max(m, float(np.max(np.abs(np.roll(h, -1, axis=axis) - h))))
    return m


def _fail_report(fail: np.ndarray, h: np.ndarray, max_slope: float) -> tuple[int, str]:
    bad = np.flatnonzero(fail)
    if bad.size == 0:
        return 0, ""
    r = int(bad[np.argmin(fail[bad])])
    hr = h[r]
    if not np.all(np.isfinite(hr)):
        why = f"non-finite heights in realisation {r}"
    else:
        why = (
            f"a pillar in realisation {r}: neighbour height difference "
            f"{_max_neighbour_difference(hr[None]):.3g} beyond the limit {max_slope:.3g}"
        )
    return int(fail[r]), why


# =====================================================================================================
# scaling analysis
# =====================================================================================================
@dataclass
class Fit:
    """A fitted exponent with its standard error and what went into it."""

    value: float
    stderr: float
    x: np.ndarray
    y: np.ndarray
    intercept: float

    def __float__(self) -> float:
        return float(self.value)


def _slope(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float, float]:
    """Weighted least-squares line y = a + b x: returns (b, a, se_b) with se from the weights (1/σ²)."""
    if w is None:
        w = np.ones_like(x)
    W = w.sum()
    xm, ym = (w * x).sum() / W, (w * y).sum() / W
    sxx = (w * (x - xm) ** 2).sum()
    b = (w * (x - xm) * (y - ym)).sum() / sxx
    return float(b), float(ym - b * xm), float(math.sqrt(1.0 / sxx))


def fit_growth_exponent(surf: Surfaces, t_min: float, t_max: float) -> Fit:
    """Growth exponent β from ⟨w²⟩ ∝ t^{2β} over t_min ≤ t ≤ t_max (least squares in log-log).

    The standard error is the delete-one jackknife over realisations, which accounts for the correlation
    of one run's widths across times (a least-squares error would not).
    """
    t = surf.t
    sel = (t >= t_min) & (t <= t_max) & (t > 0)
    if sel.sum() < 3:
        raise ConfigError(f"`t_min`, `t_max` select {int(sel.sum())} output times; need at least 3")
    R = surf.n_realisations
    if R < 2:
        raise ConfigError("`surf` needs at least 2 realisations for a standard error")
    x = np.log(t[sel])
    W = surf.w2[sel]  # (n_sel, R)
    tot = W.sum(axis=1)
    y = np.log(tot / R)
    b, a, _ = _slope(x, y)
    jack = np.array([_slope(x, np.log((tot - W[:, r]) / (R - 1)))[0] for r in range(R)])
    se = math.sqrt((R - 1) / R * ((jack - jack.mean()) ** 2).sum())
    return Fit(0.5 * b, 0.5 * se, x, y, a)


def _saturated(surf: Surfaces, sat_fraction: float) -> tuple[float, float]:
    """Time-averaged ⟨w²⟩ over t ≥ sat_fraction·t_last and its jackknife error over realisations."""
    sel = surf.t >= sat_fraction * surf.t[-1]
    per = surf.w2[sel].mean(axis=0)  # per realisation time average
    R = per.size
    if R < 2:
        raise ConfigError("each run needs at least 2 realisations for a standard error")
    return float(per.mean()), float(per.std(ddof=1) / math.sqrt(R))


def _sizes(runs: Sequence[Surfaces]) -> np.ndarray:
    if len(runs) < 2:
        raise ConfigError("`runs` needs at least 2 system sizes")
    L = np.array([r.length[0] for r in runs])
    if len(set(L.tolist())) < 2:
        raise ConfigError("`runs` must have different system sizes")
    return L


def fit_roughness_exponent(runs: Sequence[Surfaces], sat_fraction: float = 0.5) -> Fit:
    """Roughness exponent α from saturated widths, w²_sat ∝ L^{2α}, weighted least squares over sizes.

    Each run's w²_sat averages ⟨w²⟩ over its stored times t ≥ sat_fraction·t_last (choose runs long
    enough to be saturated there); errors are the standard errors over realisations (runs independent).
    """
    L = _sizes(runs)
    sat = np.array([_saturated(r, sat_fraction) for r in runs])
    y = np.log(sat[:, 0])
    sy = sat[:, 1] / sat[:, 0]
    b, a, se = _slope(np.log(L), y, 1.0 / sy**2)
    return Fit(0.5 * b, 0.5 * se, np.log(L), y, a)


def _crossing_time(t: np.ndarray, w2: np.ndarray, level: float) -> float:
    """First time ⟨w²⟩ reaches ``level``, interpolated linearly in log-log."""
    idx = np.flatnonzero((w2 >= level) & (t > 0))
    if idx.size == 0 or idx[0] == 0:
        return math.nan
    i = idx[0]
    x0, x1 = math.log(t[i - 1]) if t[i - 1] > 0 else math.log(t[i]) - 1.0, math.log(t[i])
    y0, y1 = math.log(max(w2[i - 1], 1e-300)), math.log(w2[i])
    f = (math.log(level) - y0) / (y1 - y0) if y1 != y0 else 1.0
    return math.exp(x0 + f * (x1 - x0))


def fit_dynamic_exponent(runs: Sequence[Surfaces], fraction: float = 0.5, sat_fraction: float = 0.5) -> Fit:
    """Dynamic exponent z from crossover times t× ∝ L^z, t× the time ⟨w²⟩ first reaches ``fraction`` of
    its saturated value (see ``fit_roughness_exponent``). Jackknife errors per size, weighted fit."""
    L = _sizes(runs)
    y, sy = [], []
    for run in runs:
        sat, _ = _saturated(run, sat_fraction)
        R = run.n_realisations
        tx = _crossing_time(run.t, run.w2.mean(axis=1), fraction * sat)
        if not math.isfinite(tx):
            raise ConfigError(
                f"a run of size {run.length[0]:g} never reaches {fraction} of its saturated width"
            )
        tot = run.w2.sum(axis=1)
        sel = run.t >= sat_fraction * run.t[-1]
        jack = []
        for r in range(R):
            w = (tot - run.w2[:, r]) / (R - 1)
            jack.append(math.log(_crossing_time(run.t, w, fraction * w[sel].mean())))
        jack = np.array(jack)
        y.append(math.log(tx))
        sy.append(math.sqrt((R - 1) / R * ((jack - jack.mean()) ** 2).sum()))
    y, sy = np.array(y), np.maximum(np.array(sy), 1e-12)
    b, a, se = _slope(np.log(L), y, 1.0 / sy**2)
    return Fit(b, se, np.log(L), y, a)


def collapse_plot(runs: Sequence[Surfaces], alpha: float, z: float, ax=None, **plot_kw):
    """Family-Vicsek collapse: w/L^α against t/L^z for each system size, on log-log axes.

    If w(L, t) = L^α f(t/L^z) the curves fall onto one. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4))
    for run in runs:
        L = run.length[0]
        w2, _ = run.width()
        sel = run.t > 0
        ax.loglog(run.t[sel] / L**z, np.sqrt(w2[sel]) / L**alpha, label=f"L = {L:g}", **plot_kw)
    ax.set_xlabel(r"$t / L^{z}$" + f"  (z = {z:.3g})")
    ax.set_ylabel(r"$w / L^{\alpha}$" + f"  (α = {alpha:.3g})")
    ax.legend(frameon=False)
    return ax
