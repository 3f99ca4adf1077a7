"""Synthetic and user data sets for the autoencoder / regression ensembles (deterministic for a seed).

Every data set is a :class:`Dataset`: either a fixed sample ``x`` of shape (n, d) (with targets ``y`` of
shape (n, d_out) for regression), or an *online* generator that draws fresh samples every step. The online
generator is a Gaussian mixture ``x = mean_c + F_c @ xi`` (xi ~ N(0, I), component c with probability
``weights[c]``; a single component for ``gaussian``), with regression targets ``y = w_star @ x + noise * eps``.
For the full-batch statistics that the ensemble records at snapshots, an online data set carries a fixed
evaluation sample ``x_eval`` (n_eval rows, drawn once from the same generator).

Kinds (``make_dataset(config, seed)``; ``config["kind"]``; every key is typed in ``DataSchema``, one schema
per kind, and listed in docs/config.md):

``gaussian``
    x ~ N(0, R diag(spectrum) R^T) with R a Haar-random orthogonal matrix (``rotate = true``). The spectrum
    (variances, largest first) is a list, or ``"geometric"`` (``scale * ratio**i``) or ``"power"``
    (``scale * (i + 1)**-alpha``).
``mixture``
    ``components`` equally weighted isotropic Gaussians of std ``std`` whose means are drawn
    N(0, separation^2 / d) per coordinate (so the typical distance between means is ~ separation * sqrt 2).
``regression``
    x as for ``gaussian`` (``x_std`` sets a flat spectrum), y = x . w_star + noise * eps with a scalar
    target; ``w_star`` given, or drawn N(0, 1/d).
``arrays``
    user arrays (Python only): ``arrays(x, y=None)``.
``digits``
    the 8x8 handwritten digits of scikit-learn's ``load_digits`` (d = 64, pixel values / 16; 1797 images,
    vendored in ``fpkit/_data`` under scikit-learn's BSD licence, so scikit-learn is not needed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import Discriminator, Field, Tag, model_validator

from .config import Schema, invalid, parse
from .errors import ConfigError


_KIND = "which data set (selects the other keys)"


def _seed():
    return Field(None, ge=0, description="seed of the data set's random stream; unset: derived from `seed`")


class _Sampled(Schema):
    """Keys shared by the generated data sets (fixed sample of n points, or online)."""

    kind: str  # each data set's schema narrows it to its own name (and keeps it first)
    d: int = Field(8, ge=1, description="input dimension")
    n: int = Field(512, ge=0, description="number of samples in the fixed training set (>= 1 unless online)")
    online: bool = Field(False, description=(
        "draw fresh samples from the generator at every step instead of a fixed set of n"))
    n_eval: int = Field(4096, ge=2, description=(
        "online only: size of the fixed evaluation sample the snapshot statistics are taken over"))
    seed: int | None = _seed()

    @model_validator(mode="after")
    def _some_data(self):
        if not self.online and self.n < 1:
            raise invalid("n", f"must be >= 1 (or set `online = true`), got {self.n}")
        return self


class _Spectrum(Schema):
    """Keys of a Gaussian input x ~ N(0, R diag(spectrum) Rᵀ)."""

    spectrum: Literal["geometric", "power", "flat"] | list[Annotated[float, Field(ge=0)]] = Field(
        "geometric", description=(
            "covariance eigenvalues (variances), largest first: \"geometric\" scale·ratio^i, \"power\" "
            "scale·(i+1)^-alpha, \"flat\" scale, or a list of d variances >= 0"))  # fmt: skip
    ratio: float = Field(0.6, gt=0, description="ratio of successive variances for spectrum \"geometric\"")
    alpha: float = Field(1.0, ge=0, description="decay exponent for spectrum \"power\"")
    scale: float = Field(1.0, gt=0, description="largest variance")


class GaussianData(_Spectrum, _Sampled):
    """x ~ N(0, R diag(spectrum) Rᵀ), R a Haar-random rotation (rotate = true) or the identity."""

    kind: Literal["gaussian"] = Field("gaussian", description=_KIND)
    rotate: bool = Field(True, description="rotate the covariance by a Haar-random orthogonal matrix")


class MixtureData(_Sampled):
    """Equally weighted isotropic Gaussians whose means are drawn N(0, separation²/d) per coordinate."""

    kind: Literal["mixture"] = Field(description=_KIND)
    components: int = Field(4, ge=1, description="number of mixture components")
    separation: float = Field(3.0, ge=0, description=(
        "scale of the component means (typical distance between means ≈ separation·√2)"))
    std: float = Field(0.5, gt=0, description="standard deviation of each component")


class RegressionData(_Spectrum, _Sampled):
    """x as for gaussian (not rotated by default), scalar target y = x·w_star + noise·ε, ε ~ N(0, 1)."""

    kind: Literal["regression"] = Field(description=_KIND)
    rotate: bool = Field(False, description="rotate the covariance by a Haar-random orthogonal matrix")
    w_star: list[float] | None = Field(None, description=(
        "the true weights (d entries); unset: drawn N(0, 1/d)"))
    noise: float = Field(0.5, ge=0, description="standard deviation of the target noise")
    x_std: float | None = Field(None, gt=0, description=(
        "standard deviation of every input coordinate (a flat spectrum x_std²); unset: use spectrum"))


class ArraysData(Schema):
    """User arrays (Python only: ``data=fpkit.data.arrays(x, y)``); the keys record their sizes."""

    kind: Literal["arrays"] = Field(description=_KIND)
    n: int | None = Field(None, ge=1, description="number of samples (set from the arrays)")
    d: int | None = Field(None, ge=1, description="input dimension (set from the arrays)")
    d_out: int | None = Field(None, ge=1, description="target dimension for regression (set from y)")


class DigitsData(Schema):
    """The 8×8 handwritten digits of scikit-learn's ``load_digits`` (d = 64, pixel values / 16; vendored)."""

    kind: Literal["digits"] = Field(description=_KIND)
    n: int | None = Field(None, ge=1, description="use a random subset of n images; unset: all 1797")
    seed: int | None = _seed()


def _kind(value) -> str | None:
    # a data table without `kind` is a Gaussian one
    return value.get("kind", "gaussian") if isinstance(value, dict) else getattr(value, "kind", "gaussian")


DataSchema = Annotated[
    Annotated[GaussianData, Tag("gaussian")] | Annotated[MixtureData, Tag("mixture")]
    | Annotated[RegressionData, Tag("regression")] | Annotated[ArraysData, Tag("arrays")]
    | Annotated[DigitsData, Tag("digits")],
    Discriminator(_kind),
]
"""The ``data`` section: one schema per ``kind`` (gaussian by default)."""


@dataclass
class Dataset:
    """A data set for ensemble training.

    Attributes
    ----------
    kind : str
    x : (n, d) float64 array or None (online)
    y : (n, d_out) float64 array or None (autoencoder: the target is x)
    online : bool
        Draw fresh samples every step from (weights, means, factors, w_star, noise).
    x_eval, y_eval : the sample over which full-batch statistics are taken (= x, y when not online).
    config : dict, the resolved description (arrays are not included).
    """

    kind: str
    d: int
    x: np.ndarray | None
    y: np.ndarray | None = None
    online: bool = False
    weights: np.ndarray = field(default_factory=lambda: np.ones(1))
    means: np.ndarray | None = None
    factors: np.ndarray | None = None
    w_star: np.ndarray | None = None
    noise: float = 0.0
    x_eval: np.ndarray | None = None
    y_eval: np.ndarray | None = None
    config: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        """Size of the fixed data set (0 when online)."""
        return 0 if self.online else int(self.x.shape[0])

    @property
    def d_out(self) -> int | None:
        if self.y is not None:
            return int(self.y.shape[1])
        return None if self.w_star is None else int(self.w_star.shape[0])

    def sample(self, n: int, rng: np.random.Generator):
        """Draw n samples from the generator (online data sets); returns (x, y or None)."""
        c = (
            rng.choice(len(self.weights), size=n, p=self.weights)
            if len(self.weights) > 1
            else np.zeros(n, int)
        )
        xi = rng.standard_normal((n, self.d))
        x = self.means[c] + np.einsum("nij,nj->ni", self.factors[c], xi)
        y = None
        if self.w_star is not None:
            y = x @ self.w_star.T + self.noise * rng.standard_normal((n, self.w_star.shape[0]))
        return x, y


def _rng(seed) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(int(seed) & (2**63 - 1), spawn_key=(7,)))


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-distributed orthogonal d x d matrix (QR of a Gaussian matrix with the sign fix)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def spectrum_values(spec: GaussianData | RegressionData) -> np.ndarray:
    """The covariance eigenvalues (variances) of a ``gaussian``/``regression`` data set."""
    i = np.arange(spec.d)
    if spec.spectrum == "geometric":
        return spec.scale * spec.ratio**i
    if spec.spectrum == "power":
        return spec.scale * (i + 1.0) ** (-spec.alpha)
    if spec.spectrum == "flat":
        return np.full(spec.d, spec.scale)
    if len(spec.spectrum) != spec.d:
        raise ConfigError(f"data.spectrum: expected {spec.d} variances (one per input), got {len(spec.spectrum)}")
    return np.asarray(spec.spectrum, dtype=float)


def make_dataset(cfg: dict, seed: int) -> Dataset:
    """Build the data set described by ``cfg`` (the ``data`` section, see ``DataSchema`` and the module
    docstring); ``seed`` is used when cfg has none."""
    spec = parse(DataSchema, cfg, "data")
    kind = spec.kind
    if kind == "arrays":
        raise ConfigError("`data.kind = 'arrays'` needs the arrays: pass `data=fpkit.data.arrays(x, y)`")
    seed = seed if spec.seed is None else spec.seed
    rng = _rng(seed)
    resolved = {"kind": kind, "seed": seed}

    if kind == "digits":
        x = load_digits()[0] / 16.0
        if spec.n is not None:
            x = x[rng.permutation(len(x))[: spec.n]]
        resolved.update(n=len(x), d=64)
        return Dataset("digits", 64, x, config=resolved, x_eval=x)

    d, online = spec.d, spec.online
    ds = Dataset(kind, d, None, online=online, config=resolved)
    if kind in ("gaussian", "regression"):
        if kind == "regression" and spec.x_std is not None:
            vals = np.full(d, spec.x_std**2)
        else:
            vals = spectrum_values(spec)
        R = random_orthogonal(d, rng) if spec.rotate and d > 1 else np.eye(d)
        ds.means = np.zeros((1, d))
        ds.factors = (R * np.sqrt(vals))[None]  # covariance F F^T = R diag(vals) R^T
        resolved.update(d=d, spectrum=vals.tolist(), rotate=spec.rotate)
        if kind == "regression":
            if spec.w_star is None:
                w = rng.standard_normal(d) / np.sqrt(d)
            elif len(spec.w_star) != d:
                raise ConfigError(f"data.w_star: expected {d} entries (one per input), got {len(spec.w_star)}")
            else:
                w = np.asarray(spec.w_star, dtype=float)
            ds.w_star = w[None, :]
            ds.noise = spec.noise
            resolved.update(w_star=w.tolist(), noise=ds.noise)
    else:  # mixture
        c, sep, std = spec.components, spec.separation, spec.std
        ds.means = rng.standard_normal((c, d)) * sep / np.sqrt(d)
        ds.factors = np.repeat((std * np.eye(d))[None], c, axis=0)
        ds.weights = np.full(c, 1.0 / c)
        resolved.update(d=d, components=c, separation=sep, std=std)
    resolved.update(online=online)
    if online:
        ds.x_eval, ds.y_eval = ds.sample(spec.n_eval, rng)
        resolved["n_eval"] = spec.n_eval
    else:
        ds.x, ds.y = ds.sample(spec.n, rng)
        ds.x_eval, ds.y_eval = ds.x, ds.y
        resolved["n"] = spec.n
    return ds


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 8×8 handwritten digits (the data of ``sklearn.datasets.load_digits``, vendored in ``fpkit/_data``
    with its licence): pixel counts (1797, 64) as float64 in 0…16, rows of the image in order, and the class
    labels (1797,) 0…9."""
    from pathlib import Path

    a = np.loadtxt(Path(__file__).parent / "_data" / "digits.csv.gz", delimiter=",")
    return np.ascontiguousarray(a[:, :64]), a[:, 64].astype(np.int64)


def arrays(x, y=None) -> Dataset:
    """A fixed data set from user arrays: x of shape (n, d); y of shape (n,) or (n, d_out) for regression."""
    x = np.asarray(x, dtype=float)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or not np.all(np.isfinite(x)):
        raise ConfigError(f"`x` must be a finite (n, d) array, got shape {x.shape}")
    if y is not None:
        y = np.asarray(y, dtype=float)
        if y.ndim == 1:
            y = y[:, None]
        if y.ndim != 2 or y.shape[0] != x.shape[0] or not np.all(np.isfinite(y)):
            raise ConfigError(f"`y` must be a finite array with {x.shape[0]} rows, got shape {y.shape}")
    cfg = {"kind": "arrays", "n": int(x.shape[0]), "d": int(x.shape[1])}
    if y is not None:
        cfg["d_out"] = int(y.shape[1])
    return Dataset("arrays", x.shape[1], np.ascontiguousarray(x), None if y is None else np.ascontiguousarray(y),
                   x_eval=x, y_eval=y, config=cfg)  # fmt: skip
