"""Synthetic and user data sets for the autoencoder / regression ensembles (deterministic for a seed).

Every data set is a :class:`Dataset`: either a fixed sample ``x`` of shape (n, d) (with targets ``y`` of
shape (n, d_out) for regression), or an *online* generator that draws fresh samples every step. The online
generator is a Gaussian mixture ``x = mean_c + F_c @ xi`` (xi ~ N(0, I), component c with probability
``weights[c]``; a single component for ``gaussian``), with regression targets ``y = w_star @ x + noise * eps``.
For the full-batch statistics that the ensemble records at snapshots, an online data set carries a fixed
evaluation sample ``x_eval`` (n_eval rows, drawn once from the same generator).

Kinds (``make_dataset(config, seed)``; ``config["kind"]``):

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
    the scikit-learn 8x8 digits (d = 64, pixel values / 16), if scikit-learn is installed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import ConfigError, check_choice, check_positive

KINDS = ("gaussian", "mixture", "regression", "arrays", "digits")

_COMMON_KEYS = {"kind", "d", "n", "online", "n_eval", "seed"}
_SPECTRUM_KEYS = {"spectrum", "ratio", "alpha", "scale", "rotate"}
_KEYS = {
    "gaussian": _COMMON_KEYS | _SPECTRUM_KEYS,
    "mixture": _COMMON_KEYS | {"components", "separation", "std"},
    "regression": _COMMON_KEYS | _SPECTRUM_KEYS | {"w_star", "noise", "x_std"},
    "arrays": {"kind", "n", "d", "d_out"},
    "digits": {"kind", "n", "seed"},
}


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


def spectrum_values(cfg: dict, d: int) -> np.ndarray:
    """The covariance eigenvalues (variances) for a ``gaussian``/``regression`` config."""
    spec = cfg.get("spectrum", "geometric")
    scale = check_positive("data.scale", cfg.get("scale", 1.0))
    if isinstance(spec, str):
        check_choice("data.spectrum", spec, ("geometric", "power", "flat"))
        i = np.arange(d)
        if spec == "geometric":
            ratio = check_positive("data.ratio", cfg.get("ratio", 0.6))
            vals = scale * ratio**i
        elif spec == "power":
            alpha = check_positive("data.alpha", cfg.get("alpha", 1.0), strict=False)
            vals = scale * (i + 1.0) ** (-alpha)
        else:
            vals = np.full(d, scale)
    else:
        vals = np.asarray(spec, dtype=float)
        if vals.shape != (d,) or not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ConfigError(f"`data.spectrum` must be 'geometric', 'power', 'flat' or {d} variances >= 0")
    return vals


def make_dataset(cfg: dict, seed: int) -> Dataset:
    """Build the data set described by ``cfg`` (see the module docstring); ``seed`` if cfg has none."""
    cfg = dict(cfg)
    kind = check_choice("data.kind", cfg.get("kind", "gaussian"), KINDS)
    unknown = set(cfg) - _KEYS[kind]
    if unknown:
        raise ConfigError(
            f"unknown key(s) {sorted(unknown)} in `data` for kind {kind!r}; allowed: {sorted(_KEYS[kind])}"
        )
    if kind == "arrays":
        raise ConfigError("`data.kind = 'arrays'` needs the arrays: pass `data=fpkit.data.arrays(x, y)`")
    seed = int(cfg.get("seed", seed))
    rng = _rng(seed)
    online = bool(cfg.get("online", False))
    n = int(cfg.get("n", 512))
    if not online and n < 1:
        raise ConfigError(f"`data.n` must be >= 1 (or set `data.online = true`), got {n}")
    n_eval = int(cfg.get("n_eval", 4096))
    if online and n_eval < 2:
        raise ConfigError(f"`data.n_eval` must be >= 2, got {n_eval}")
    resolved = {"kind": kind, "seed": seed}

    if kind == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError:
            raise ConfigError(
                "`data.kind = 'digits'` needs scikit-learn (pip install scikit-learn)"
            ) from None
        x = load_digits().data.astype(float) / 16.0
        if "n" in cfg:
            x = x[rng.permutation(len(x))[:n]]
        resolved.update(n=len(x), d=64)
        return Dataset("digits", 64, x, config=resolved, x_eval=x)

    d = int(cfg.get("d", 8))
    if d < 1:
        raise ConfigError(f"`data.d` must be >= 1, got {d}")
    ds = Dataset(kind, d, None, online=online, config=resolved)
    if kind in ("gaussian", "regression"):
        if kind == "regression" and "x_std" in cfg:
            vals = np.full(d, check_positive("data.x_std", cfg["x_std"]) ** 2)
        else:
            vals = spectrum_values(cfg, d)
        rotate = bool(cfg.get("rotate", kind == "gaussian"))
        R = random_orthogonal(d, rng) if rotate and d > 1 else np.eye(d)
        ds.means = np.zeros((1, d))
        ds.factors = (R * np.sqrt(vals))[None]  # covariance F F^T = R diag(vals) R^T
        resolved.update(d=d, spectrum=vals.tolist(), rotate=rotate)
        if kind == "regression":
            w = cfg.get("w_star")
            w = rng.standard_normal(d) / np.sqrt(d) if w is None else np.asarray(w, dtype=float).reshape(-1)
            if w.shape != (d,):
                raise ConfigError(f"`data.w_star` must have {d} entries, got {w.size}")
            ds.w_star = w[None, :]
            ds.noise = check_positive("data.noise", cfg.get("noise", 0.5), strict=False)
            resolved.update(w_star=w.tolist(), noise=ds.noise)
    else:  # mixture
        c = int(cfg.get("components", 4))
        if c < 1:
            raise ConfigError(f"`data.components` must be >= 1, got {c}")
        sep = check_positive("data.separation", cfg.get("separation", 3.0), strict=False)
        std = check_positive("data.std", cfg.get("std", 0.5))
        ds.means = rng.standard_normal((c, d)) * sep / np.sqrt(d)
        ds.factors = np.repeat((std * np.eye(d))[None], c, axis=0)
        ds.weights = np.full(c, 1.0 / c)
        resolved.update(d=d, components=c, separation=sep, std=std)
    resolved.update(online=online)
    if online:
        ds.x_eval, ds.y_eval = ds.sample(n_eval, rng)
        resolved["n_eval"] = n_eval
    else:
        ds.x, ds.y = ds.sample(n, rng)
        ds.x_eval, ds.y_eval = ds.x, ds.y
        resolved["n"] = n
    return ds


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
