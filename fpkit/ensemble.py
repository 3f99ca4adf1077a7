"""The SGD sampler: ensembles of small autoencoders (or linear regressions) trained by SGD, GD, SGLD or SVAG.

Every member of the ensemble is the same network trained on the same data from its own random
initialisation with its own minibatches (one independent random stream per member, all from one seed, so
results are bit-identical for a seed whatever the number of threads). At log-spaced snapshot steps the
trainer records every weight together with the quantities a Fokker-Planck description of the weights needs.

Model and conventions
---------------------
Autoencoder: x (d) -> z1 = act(W1 x + b1) (k) -> z2 = act(W2 z1 + b2) (k) -> x_hat = W3 z2 + b3 (d), k < d
(``hidden = [k, k]`` by default; more or other widths give extra hidden layers; the output layer is linear).
Regression: y_hat = W1 x + b1 (W1 of shape (d_out, d), no hidden layer). **Weight matrix convention: W_l
has shape (n_out, n_in) and maps the previous layer's units to the next, z_l = act(W_l z_{l-1} + b_l);
so W1 has shape (k, d).** Biases b_l (n_out,) exist only with ``bias = true``. The per-sample loss is
½‖x̂ − x‖² (regression: ½‖ŷ − y‖²); a minibatch (and the full-batch loss L) is the *mean* over samples.

Optimisers (η = ``lr``, B = ``batch_size``, wd = ``weight_decay``, g = minibatch-mean gradient)
    sgd   : v ← μ v + g + wd·w,  w ← w − η v   (μ = ``momentum``, 0 by default: w ← w − η (g + wd·w))
    gd    : the same with the full-batch gradient (no noise)
    sgld  : the sgd step plus √(2 η T) ξ, ξ ~ N(0, I) (T = ``temperature``); ``sampling = "full"`` gives
            full-batch Langevin, whose stationary law is ∝ exp(−(L + wd|w|²/2)/T) up to O(η)
    svag  : (Li, Malladi, Arora 2021) ``svag_l`` = l inner steps of size η/l per SGD step with the gradient
            ½(1+√(2l−1)) g₁ + ½(1−√(2l−1)) g₂ of two independent minibatches; converges to the Itô SDE
            dw = −∇L dt + √(η Σ) dW as l → ∞.
Minibatches (``sampling``): ``"iid"`` (default; B indices uniform with replacement, independent across
steps: the process the SDE assumes), ``"distinct"`` (no repeats within a batch), ``"epochs"`` (each member
reshuffles the data every epoch and takes consecutive batches; the last n mod B samples of an epoch are
dropped; steps within an epoch are *not* independent: a different process), ``"full"``. With
``data.online = true`` every step draws fresh samples from the generator.

Continuous time is t = η·step (step counts SGD steps, also for SVAG). The SDE that SGD approximates is
dw = −∇L dt + √(2D) dW with D = (η/2) Σ, Σ the covariance of the minibatch-mean gradient (Itô).

Results: ``EnsembleRun``
------------------------
``run = EnsembleRun.load("ensemble.h5")`` has (n_snap snapshots, M members; ``shape`` a layer's shape):

=====================  ===================  ==============================================================
attribute              shape                meaning
=====================  ===================  ==============================================================
``t``                  (n_snap,)            continuous time η·step
``step``               (n_snap,) int        optimiser step of the snapshot (0 = initialisation)
``eta``, ``batch_size``  float, int         η and B
``config``             dict                 the resolved configuration (sections seed/model/data/train)
``names``              tuple of str         ("W1", "W2", "W3", ["b1", "b2", "b3"])
``weights[name]``      (n_snap, M, *shape)  the weights
``grad[name]``         (n_snap, M, *shape)  full-batch gradient ∂(L + wd|w|²/2)/∂w (the drift is −grad)
``grad_var[name]``     (n_snap, M, *shape)  variance of the *minibatch-mean* gradient per entry (the
                                            diagonal of Σ): per-sample variance over the data / B for
                                            iid batches, × (n − B)/(n − 1) for distinct/epochs, 0 for
                                            full batch; online: unbiased variance over the
                                            evaluation sample ``run.data['x']`` / B.
                                            Standard SDE: D = (η/2) grad_var (+ T for SGLD).
``hess_grad[name]``    (n_snap, M, *shape)  H·grad (H the Hessian of L + wd|w|²/2), by a forward
                                            difference of full-batch gradients (~1e-7 relative);
                                            the order-2 drift correction of Li-Tai-E is −(η/4)∇|∇L|² = −(η/2) H·∇L.
``loss``               (n_snap, M)          full-batch data loss L (without the weight-decay term)
``lam_max``            (n_snap, n_probe)    largest eigenvalue of H for members ``probe_members``
                                            (Lanczos); η·lam_max → 2 is the edge of stability
``probe_members``      (n_probe,) int
=====================  ===================  ==============================================================

``grad``, ``grad_var``, ``hess_grad``, ``loss`` and ``lam_max`` are ``None`` when the run was made with
``statistics = false``. ``run.flat(field)`` gives (n_snap, M, P) with all entries side by side;
``EnsembleRun.from_arrays(t=..., weights={...}, eta=..., batch_size=..., ...)`` builds a run from arrays
(e.g. Langevin paths) that ``save`` writes in the same format.

File format (HDF5, ``kind = "ensemble"``)
------------------------------------------
attributes ``kind``, ``fpkit_format``, ``created``, ``meta`` (JSON: ``config``, ``names``, ``shapes``,
``eta``, ``batch_size``, ``members``, ``n_snap``, ``n_done``, ``complete``, ``probe_members``);
datasets ``t``, ``step`` (planned schedule, (n_snap,)), ``loss`` (n_snap, M), ``lam_max``
(n_snap, n_probe); groups ``weights``, ``grad``, ``grad_var``, ``hess_grad`` each with one dataset per
name of shape (n_snap, M, *shape), chunked per snapshot (compressed if ``train.compression`` says so);
only the first ``n_done`` snapshots are valid (``load`` returns just those). Group ``data`` holds ``x`` (and ``y`` for regression):
the training set, or for online data the evaluation sample the statistics are taken over (``run.data``
gives the same dict); group ``state`` the resume state (``theta``
(P, M), ``velocity``, ``rng`` (2, M) uint64, ``perm``; attribute ``step``).

Writing is crash-safe: a run writes ``<output>.partial``, flushed after every snapshot, and renames it to
the output when it finishes or is interrupted (Ctrl-C), so the output is always a valid file;
``resume=True`` (``fpkit train --resume``) continues from the last snapshot bit-identically.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Annotated, Literal

import h5py
import numpy as np
from pydantic import Field, field_validator, model_validator

from .config import Schema, invalid, load_toml, parse, plain, register_schema
from .data import DataSchema, Dataset, GaussianData, make_dataset
from .errors import ConfigError, StabilityError, check_positive
from .io import FORMAT_VERSION, get_json_attr, set_json_attr
from .progress import progress
from .solvers import autoencoder as _ae
from .solvers.random import derive_seed, fill_normals, seed_streams

KIND = "ensemble"
FIELDS = ("weights", "grad", "grad_var", "hess_grad")
OPTIMIZERS = ("sgd", "gd", "sgld", "svag")
AUTO_SPECIALISE = 5e7  # per-sample gradients in a run above which kernels="auto" compiles specialised kernels
INITS = ("lecun", "xavier")


# ------------------------------------------------------------------------------------------ configuration
class ModelSchema(Schema):
    """The network: an autoencoder d → hidden… → d (linear output layer) or a linear regression."""

    kind: Literal["autoencoder", "regression"] = Field("autoencoder", description=(
        "autoencoder x → x̂ (needs min(hidden) < d), or linear regression y = W1 x (+ b1) (needs targets)"))
    hidden: list[Annotated[int, Field(ge=1)]] = Field([3, 3], min_length=1, description=(
        "hidden-layer widths of the autoencoder; [k, k] is the d → k → k → d network (flat argument k)"))
    activation: Literal[tuple(_ae.ACTIVATIONS)] = Field("tanh", description=(
        "activation of the hidden layers (the output layer is linear)"))
    bias: bool = Field(False, description="biases b_l in every layer (names b1, b2, …)")
    init: Literal[INITS] = Field("lecun", description=(
        "initial weight std: lecun 1/√fan_in, xavier √(2/(fan_in + fan_out)); biases start at 0"))
    init_scale: float = Field(1.0, ge=0, description="factor on the initial weight std")
    same_init: bool = Field(False, description="every member starts from the same weights (one draw)")


class TrainSchema(Schema):
    """The optimiser and the run; time is t = η·step (η = lr, step counts optimiser steps)."""

    optimizer: Literal[OPTIMIZERS] = Field("sgd", description=(
        "sgd: w ← w − η(g + wd·w) (with momentum μ: v ← μv + g + wd·w, w ← w − ηv); gd: the same with the "
        "full-batch gradient; sgld: sgd plus √(2ηT)·ξ; svag: Li-Malladi-Arora SVAG with svag_l"))
    lr: float = Field(0.02, gt=0, description="learning rate η (time per step: t = η·step)")
    batch_size: int = Field(8, ge=1, description="minibatch size B (the minibatch gradient is a mean over B)")
    sampling: Literal[tuple(_ae.SAMPLINGS)] = Field("iid", description=(
        "minibatches: iid (B indices uniform with replacement, the process the SDE assumes), distinct (no "
        "repeats within a batch), epochs (reshuffled epochs, consecutive batches), full (full batch); "
        "optimizer gd always uses full"))
    momentum: float = Field(0.0, ge=0, lt=1, description="heavy-ball momentum μ in [0, 1)")
    weight_decay: float = Field(0.0, ge=0, description="weight decay wd: the loss gains wd·|w|²/2")
    temperature: float = Field(0.0, ge=0, description=(
        "SGLD temperature T (> 0 exactly when optimizer = sgld): noise √(2ηT)·ξ per step"))
    svag_l: int = Field(1, ge=1, description=(
        "SVAG amplification l (optimizer svag): l inner steps of size η/l per SGD step; → Itô SDE as l → ∞"))
    members: int = Field(4000, ge=1, description="number of networks M in the ensemble")
    steps: int = Field(4000, ge=0, description="optimiser steps (extended to the last of snapshot_steps)")
    snapshots: int = Field(50, ge=2, description="number of snapshots, log-spaced late (see per_decade)")
    per_decade: float = Field(20, gt=0, description="snapshots per decade of step late in the run")
    snapshot_steps: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1, description=(
        "explicit snapshot steps, strictly increasing; unset: the schedule from snapshots/per_decade"))
    statistics: bool = Field(True, description=(
        "record grad, grad_var, hess_grad, loss and lam_max at every snapshot (else weights only)"))
    probes: int = Field(4, ge=0, description=(
        "members whose Hessian λmax is tracked (Lanczos); at most members and 8"))
    lanczos_steps: int = Field(30, ge=0, description="Lanczos iterations per λmax estimate")
    dtype: Literal["float64", "float32"] = Field("float64", description="floating type of the parameters")
    compression: Literal["none", "gzip", "lzf"] = Field("none", description=(
        "HDF5 compression of the snapshots (float snapshots hardly compress: none by default)"))
    kernels: Literal["auto", "specialised", "generic"] = Field("auto", description=(
        "training kernels: specialised (generated per architecture, ~3x faster, compiled once and cached), "
        "generic (no compilation) or auto (specialised when compiled already or the run is large); "
        "bit-identical results"))

    @field_validator("snapshot_steps")
    @classmethod
    def _increasing(cls, v):
        if v is not None and any(b <= a for a, b in zip(v, v[1:])):
            raise ValueError("must be strictly increasing")
        return v

    @model_validator(mode="after")
    def _consistent(self):
        opt = self.optimizer
        if opt == "sgld" and self.temperature <= 0:
            raise invalid("temperature", "must be > 0 for optimizer 'sgld'")
        if opt != "sgld" and self.temperature > 0:
            raise invalid("temperature", f"> 0 needs optimizer 'sgld', not {opt!r}")
        if opt != "svag" and self.svag_l != 1:
            raise invalid("svag_l", f"(SVAG amplification l) needs optimizer 'svag', not {opt!r}")
        if opt == "svag" and self.sampling == "epochs":
            raise invalid("sampling", "'epochs' is not supported with optimizer 'svag'; use 'iid'")
        return self


_DEFAULT_DATA = {"kind": "gaussian", "d": 8, "n": 512}


class EnsembleSchema(Schema):
    """An ensemble of networks trained by SGD / GD / SGLD / SVAG: `fpkit train FILE -o OUT.h5` and
    ``fpkit.Ensemble(config)``."""

    seed: int = Field(0, ge=0, description="seed of every random stream (initialisation, batches, data)")
    model: ModelSchema = Field(default_factory=ModelSchema)
    train: TrainSchema = Field(default_factory=TrainSchema)
    data: DataSchema = Field(default_factory=lambda: GaussianData(**_DEFAULT_DATA))


register_schema("ensemble", EnsembleSchema)

DEFAULTS: dict = {"seed": 0, "model": ModelSchema().model_dump(), "data": dict(_DEFAULT_DATA),
                  "train": TrainSchema().model_dump()}  # fmt: skip

# flat keyword -> (section, key) for Ensemble(**kwargs)
_FLAT = {k: ("model", k) for k in ModelSchema.model_fields if k != "kind"}
_FLAT.update({k: ("train", k) for k in TrainSchema.model_fields})
_FLAT.update(model=("model", "kind"), d=("data", "d"), n=("data", "n"))


def snapshot_schedule(steps: int, n: int = 50, per_decade: float = 20.0) -> np.ndarray:
    """Snapshot steps 0 = s_0 < ... < s_{n-1} = steps, geometric in (step + c).

    c is chosen so that the late snapshots are ``per_decade`` per decade of step (log-spaced late,
    nearly evenly spaced early, which a plain geometric grid would leave empty); duplicates after
    rounding are removed, so fewer than n may result for small ``steps``.
    """
    steps = int(steps)
    if steps < 1:
        return np.zeros(1, dtype=np.int64)
    n = max(2, int(n))
    span = 10.0 ** ((n - 1) / per_decade)
    c = max(steps / (span - 1.0), 1.0)
    s = c * ((steps + c) / c) ** (np.arange(n) / (n - 1)) - c
    s = np.unique(np.clip(np.rint(s), 0, steps).astype(np.int64))
    s[0], s[-1] = 0, steps
    return np.unique(s)


# ------------------------------------------------------------------------------------------------ model
@dataclass
class _Arch:
    sizes: np.ndarray  # (n_layers + 1,) int64
    w_off: np.ndarray
    b_off: np.ndarray  # -1: no bias
    act: int
    names: tuple
    shapes: tuple
    offsets: tuple  # flat row offset of each name
    P: int

    @classmethod
    def build(cls, sizes, bias: bool, act: int):
        sizes = np.asarray(sizes, dtype=np.int64)
        L = len(sizes) - 1
        w_off = np.zeros(L, np.int64)
        b_off = np.full(L, -1, np.int64)
        names, shapes, offsets = [], [], []
        off = 0
        for ell in range(L):
            w_off[ell] = off
            names.append(f"W{ell + 1}")
            shapes.append((int(sizes[ell + 1]), int(sizes[ell])))
            offsets.append(off)
            off += int(sizes[ell] * sizes[ell + 1])
        if bias:
            for ell in range(L):
                b_off[ell] = off
                names.append(f"b{ell + 1}")
                shapes.append((int(sizes[ell + 1]),))
                offsets.append(off)
                off += int(sizes[ell + 1])
        return cls(sizes, w_off, b_off, act, tuple(names), tuple(shapes), tuple(offsets), off)

    def split(self, flat: np.ndarray) -> dict:
        """(..., P) -> {name: (..., *shape)} (copies)."""
        out = {}
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            size = int(np.prod(shape))
            out[name] = flat[..., off : off + size].reshape(flat.shape[:-1] + shape).copy()
        return out


class Ensemble:
    """An ensemble of networks trained by SGD / GD / SGLD / SVAG (see the module docstring).

    Parameters
    ----------
    config : dict, optional
        Nested configuration with sections ``seed``, ``model``, ``data``, ``train`` (as in a TOML file);
        missing keys take the defaults in ``fpkit.ensemble.DEFAULTS``. Every key is typed and checked by
        ``EnsembleSchema`` (listed in docs/config.md; ``fpkit config show ensemble`` prints the defaults).
    data : dict or fpkit.data.Dataset, optional
        The data section, or a data set built with ``fpkit.data`` (e.g. ``fpkit.data.arrays(x, y)``).
    seed : int, optional
    **kwargs
        Flat overrides: model keys (``model`` = "autoencoder"|"regression", ``k`` (hidden = [k, k]),
        ``hidden``, ``activation``, ``bias``, ``init``, ``init_scale``, ``same_init``), ``d``/``n`` (data),
        and train keys (``optimizer``, ``lr`` (η > 0), ``batch_size``, ``sampling``, ``momentum``,
        ``weight_decay``, ``temperature``, ``svag_l``, ``members``, ``steps``, ``snapshots``,
        ``per_decade``, ``snapshot_steps``, ``statistics``, ``probes``, ``lanczos_steps``, ``dtype``,
        ``compression`` ("none" (default: float snapshots hardly compress), "gzip", "lzf"), ``kernels``
        ("auto" (default), "specialised": generated for the architecture, ~3x faster, compiled once per
        shape and cached; "generic": no per-shape compilation; all give bit-identical results)).

    Examples
    --------
    >>> ens = Ensemble(d=8, k=3, activation="tanh", lr=0.02, batch_size=8, members=4000, steps=4000)
    >>> run = ens.train("ensemble.h5")          # doctest: +SKIP
    """

    def __init__(self, config: dict | None = None, *, data=None, seed: int | None = None, **kwargs):
        if config is not None and not isinstance(config, dict):
            raise ConfigError(f"`config` must be a dict of sections (seed/model/data/train), got {config!r}")
        raw = plain(config or {})
        if seed is not None:
            raw["seed"] = seed
        self.dataset: Dataset | None = None
        if isinstance(data, Dataset):
            self.dataset = data
            raw["data"] = dict(data.config)
        elif data is not None:
            raw["data"] = plain(data)
        raw.setdefault("data", dict(_DEFAULT_DATA))
        for key, value in kwargs.items():
            if key == "k":
                key, value = "hidden", [value, value]
            if key not in _FLAT:
                raise ConfigError(f"unknown argument {key!r}; allowed: {sorted([*_FLAT, 'k', 'data', 'seed'])}")
            sec, k = _FLAT[key]
            if sec == "data" and self.dataset is not None:
                raise ConfigError(f"`{key}` cannot be set when `data` is a Dataset")
            if raw.get(sec) is None:
                raw[sec] = {}
            if isinstance(raw[sec], dict):  # otherwise the schema reports the section
                raw[sec][k] = plain(value)
        spec = parse(EnsembleSchema, raw)
        cfg = spec.model_dump()
        # the data keys given, checked; the data set adds the values it resolved (seed, spectrum, ...)
        cfg["data"] = {k: v for k, v in cfg["data"].items() if k in raw["data"]}
        if self.dataset is None:
            if cfg["data"].get("seed") is None:
                cfg["data"]["seed"] = derive_seed(cfg["seed"], 3) & (2**63 - 1)
            self.dataset = make_dataset(cfg["data"], cfg["seed"])
            cfg["data"] = {**cfg["data"], **self.dataset.config}
        self.config = cfg
        self._validate()

    # -------------------------------------------------------------------------------------- validation
    def _validate(self):
        """Checks that need the data set (types and single-section rules are in the schemas), and the
        resolved values: gd samples the full batch, probes at most members and 8, steps reach the last
        of snapshot_steps."""
        m, tr, ds = self.config["model"], self.config["train"], self.dataset
        d = ds.d
        if m["kind"] == "autoencoder":
            if min(m["hidden"]) >= d:
                raise ConfigError(
                    f"bottleneck width k = {min(m['hidden'])} (`model.hidden`/`k`) must be smaller than the "
                    f"data dimension d = {d}; choose k < d"
                )
            sizes = [d, *m["hidden"], d]
        else:
            if ds.d_out is None:
                raise ConfigError(
                    "`model.kind = 'regression'` needs targets: use data kind 'regression' or arrays(x, y)"
                )
            sizes = [d, ds.d_out]
        self.arch = _Arch.build(sizes, m["bias"], _ae.ACTIVATIONS[m["activation"]])

        if tr["optimizer"] == "gd":
            tr["sampling"] = "full"
        sampling, B = tr["sampling"], tr["batch_size"]
        if ds.online and sampling not in ("iid", "full"):
            raise ConfigError(f"`train.sampling = {sampling!r}` needs a fixed data set; online data are iid")
        if sampling in ("distinct", "epochs") and B > ds.n:
            raise ConfigError(
                f"`train.batch_size` = {B} is larger than the data set (`data.n` = {ds.n}) with sampling "
                f"{sampling!r}; use a smaller batch or sampling = 'iid'"
            )
        tr["probes"] = min(tr["probes"], tr["members"], _ae.LANES)
        if tr["snapshot_steps"] is not None:
            tr["steps"] = max(tr["steps"], tr["snapshot_steps"][-1])

    # ---------------------------------------------------------------------------------------- helpers
    @property
    def kernels(self):
        """The kernel module: generated for this architecture, or the generic one.

        Both give bit-identical results (same operations in the same order). The specialised kernels are
        ~3x faster but compile once per architecture (~10-30 s, then cached on disk); ``kernels = "auto"``
        (default) uses them when they are already compiled or the run is large enough to repay the
        compilation (more than ``AUTO_SPECIALISE`` per-sample gradients), so a small first run stays quick.
        """
        if getattr(self, "_kernels", None) is None:
            a, tr = self.arch, self.config["train"]
            choice = tr["kernels"]
            if choice == "auto":
                work = (
                    tr["members"]
                    * tr["steps"]
                    * tr["batch_size"]
                    * tr["svag_l"]
                    * (2 if tr["svag_l"] > 1 else 1)
                )
                if self.dataset.n and tr["sampling"] == "full":
                    work = tr["members"] * tr["steps"] * self.dataset.n
                known = _ae.specialised_exists(a.sizes, a.w_off, a.b_off, a.act)
                choice = "specialised" if (known or work >= AUTO_SPECIALISE) else "generic"
            self._kernels = _ae if choice == "generic" else _ae.specialised(a.sizes, a.w_off, a.b_off, a.act)
        return self._kernels

    @property
    def schedule(self) -> np.ndarray:
        tr = self.config["train"]
        if tr["snapshot_steps"] is not None:
            return np.asarray(tr["snapshot_steps"], dtype=np.int64)
        return snapshot_schedule(tr["steps"], int(tr["snapshots"]), float(tr["per_decade"]))

    def _sampling_code(self) -> int:
        if self.dataset.online and self.config["train"]["sampling"] != "full":
            return _ae.SAMPLE_ONLINE
        return _ae.SAMPLINGS[self.config["train"]["sampling"]]

    def _train_data(self):
        ds = self.dataset
        x = ds.x_eval if ds.online else ds.x
        y = ds.y_eval if ds.online else ds.y
        auto = self.config["model"]["kind"] == "autoencoder"
        X = np.ascontiguousarray(x, dtype=np.float64)
        T = X if auto else np.ascontiguousarray(y, dtype=np.float64)
        return X, T, auto

    def _eval_data(self):
        ds = self.dataset
        auto = self.config["model"]["kind"] == "autoencoder"
        X = np.ascontiguousarray(ds.x_eval, dtype=np.float64)
        T = X if auto else np.ascontiguousarray(ds.y_eval, dtype=np.float64)
        return X, T, auto

    def initial_state(self) -> dict:
        """Parameters (P, M), momentum buffer, per-member random streams (2, M) and permutations."""
        cfg, arch = self.config, self.arch
        M = cfg["train"]["members"]
        dtype = np.dtype(cfg["train"]["dtype"])
        Pw = int(sum(np.prod(s) for n, s in zip(arch.names, arch.shapes) if n.startswith("W")))
        n_init = 1 if cfg["model"]["same_init"] else M
        z = np.empty((n_init, Pw))
        fill_normals(seed_streams(derive_seed(cfg["seed"], 2), n_init), z)
        std = np.empty(Pw)
        for ell in range(len(arch.sizes) - 1):
            fi, fo = int(arch.sizes[ell]), int(arch.sizes[ell + 1])
            s = 1.0 / np.sqrt(fi) if cfg["model"]["init"] == "lecun" else np.sqrt(2.0 / (fi + fo))
            std[arch.w_off[ell] : arch.w_off[ell] + fi * fo] = s * cfg["model"]["init_scale"]
        theta = np.zeros((arch.P, M), dtype=dtype)
        theta[:Pw] = (z * std).T if n_init == M else (z[0] * std)[:, None]
        vel = np.zeros((arch.P, M) if cfg["train"]["momentum"] > 0 else (1, 1), dtype=dtype)
        rng = np.ascontiguousarray(seed_streams(derive_seed(cfg["seed"], 1), M).T)
        if cfg["train"]["sampling"] == "epochs":
            perm = np.tile(np.arange(self.dataset.n, dtype=np.int32), (M, 1))
        else:
            perm = np.zeros((1, 1), dtype=np.int32)
        return {"theta": theta, "velocity": vel, "rng": rng, "perm": perm, "step": 0}

    def advance(self, state: dict, n_steps: int) -> None:
        """Run ``n_steps`` optimiser steps on ``state`` in place."""
        if n_steps <= 0:
            return
        tr, arch, ds = self.config["train"], self.arch, self.dataset
        X, T, auto = self._train_data()
        if ds.online:
            cdf = np.cumsum(ds.weights)
            means, factors = ds.means, ds.factors
            wstar = ds.w_star if ds.w_star is not None else np.zeros((1, ds.d))
        else:
            cdf, means, factors, wstar = (
                np.ones(1),
                np.zeros((1, ds.d)),
                np.zeros((1, ds.d, ds.d)),
                np.zeros((1, ds.d)),
            )
        self.kernels.train_steps(
            state["theta"], state["velocity"], state["rng"], state["perm"], X, T, auto,
            arch.sizes, arch.w_off, arch.b_off, arch.act, self._sampling_code(), tr["batch_size"],
            tr["lr"], tr["momentum"], tr["weight_decay"], tr["temperature"], tr["svag_l"],
            int(state["step"]), int(n_steps), np.ascontiguousarray(cdf), np.ascontiguousarray(means),
            np.ascontiguousarray(factors), np.ascontiguousarray(wstar), float(ds.noise),
        )  # fmt: skip
        state["step"] += int(n_steps)

    # ------------------------------------------------------------------------------------ statistics
    def full_gradient(self, theta: np.ndarray, want_sq: bool = False):
        """Full-batch data gradient (P, M), mean squared per-sample gradient (or None) and loss (M,)."""
        X, T, auto = self._eval_data()
        arch = self.arch
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        P, M = theta.shape
        g = np.empty((P, M))
        sq = np.empty((P, M)) if want_sq else np.empty((1, 1))
        loss = np.empty(M)
        k = self.kernels
        fn = k.data_gradient if M > 2 * _ae.LANES else k.data_gradient_serial
        fn(theta, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, want_sq, g, sq, loss)
        return g, (sq if want_sq else None), loss

    def _var_factor(self) -> float:
        tr, ds = self.config["train"], self.dataset
        B, samp = tr["batch_size"], tr["sampling"]
        if samp == "full":
            return 0.0
        if ds.online:
            ne = ds.x_eval.shape[0]
            return ne / (ne - 1.0) / B
        n = ds.n
        if samp == "iid":
            return 1.0 / B
        return (n - B) / (B * (n - 1.0)) if n > 1 else 0.0

    def statistics(self, theta: np.ndarray, probe_seed: int = 0) -> dict:
        """grad, grad_var, hess_grad (P, M), loss (M,) and lam_max (n_probe,) at parameters theta."""
        wd = self.config["train"]["weight_decay"]
        th = np.asarray(theta, dtype=np.float64)
        g, sq, loss = self.full_gradient(th, want_sq=True)
        var = np.maximum(sq - g * g, 0.0) * self._var_factor()
        grad = g + wd * th
        hg = self._hess_vec(th, grad, g)
        lam = self.lam_max(th[:, : self.config["train"]["probes"]], probe_seed)
        return {"grad": grad, "grad_var": var, "hess_grad": hg, "loss": loss, "lam_max": lam}

    def _hess_vec(self, theta: np.ndarray, v: np.ndarray, g0: np.ndarray | None = None) -> np.ndarray:
        """H v per member (columns), H the Hessian of L + wd|w|²/2.

        Forward difference of the full-batch gradient along v with a step of 1e-7 (1 + |theta|) in
        parameter space: truncation ~1e-7 |third derivative|, rounding ~1e-16 sqrt(n) / 1e-7 relative,
        so about 1e-7 relative accuracy at the cost of one gradient pass (``g0`` = data gradient at theta).
        """
        wd = self.config["train"]["weight_decay"]
        if g0 is None:
            g0, _, _ = self.full_gradient(theta)
        vn = np.sqrt((v * v).sum(axis=0))
        ok = vn > 0
        h = 1e-7 * (1.0 + np.sqrt((theta * theta).sum(axis=0))) / np.where(ok, vn, 1.0)
        gp, _, _ = self.full_gradient(theta + h * v)
        return np.where(ok, (gp - g0) / h, 0.0) + wd * v

    def lam_max(self, theta: np.ndarray, seed: int = 0) -> np.ndarray:
        """Largest (algebraic) eigenvalue of the full-batch Hessian for each column of theta.

        Lanczos iteration (the Krylov refinement of power iteration, whose Ritz values converge much
        faster to the extreme eigenvalues) with full reorthogonalisation, ``lanczos_steps`` = m steps
        (m = P gives the exact spectrum up to the finite-difference error of H v), from a random start
        vector derived from the seed and snapshot index.
        """
        P, n = theta.shape
        if n == 0:
            return np.zeros(0)
        m = max(1, min(self.config["train"]["lanczos_steps"], P))
        g0, _, _ = self.full_gradient(theta)
        v = np.random.default_rng(seed).standard_normal((P, n))
        v /= np.sqrt((v * v).sum(axis=0))
        V = np.zeros((m, P, n))
        alpha = np.zeros((m, n))
        beta = np.zeros((m, n))
        for j in range(m):
            V[j] = v
            w = self._hess_vec(theta, v, g0)
            alpha[j] = (w * v).sum(axis=0)
            for _ in range(2):  # full reorthogonalisation, twice is enough (Kahan-Parlett)
                w -= np.einsum("jpn,jn->pn", V[: j + 1], np.einsum("jpn,pn->jn", V[: j + 1], w))
            b = np.sqrt((w * w).sum(axis=0))
            if j + 1 < m:
                beta[j] = b
                v = w / np.where(b > 0, b, 1.0)
        lam = np.empty(n)
        for q in range(n):
            k = m
            for j in range(m - 1):  # an invariant subspace was found: stop there
                if beta[j, q] <= 1e-12 * max(1.0, abs(alpha[: j + 1, q]).max()):
                    k = j + 1
                    break
            Tq = np.diag(alpha[:k, q]) + np.diag(beta[: k - 1, q], 1) + np.diag(beta[: k - 1, q], -1)
            lam[q] = np.linalg.eigvalsh(Tq)[-1]
        return lam

    # ---------------------------------------------------------------------------------------- training
    def train(self, path=None, *, resume: bool = False, stop_after: int | None = None,
              show_progress: bool | None = None, callback=None) -> EnsembleRun:  # fmt: skip
        """Train the ensemble, taking snapshots on the schedule; returns an :class:`EnsembleRun`.

        Parameters
        ----------
        path : str or Path, optional
            Results file. Written crash-safely (``<path>.partial`` while running, renamed at the end or
            on interruption); without a path the run is kept in memory only.
        resume : bool
            Continue the run stored in ``path`` (or ``<path>.partial`` after a crash) from its last
            snapshot; the configuration must be the one stored there. Bit-identical to an uninterrupted run.
        stop_after : int, optional
            Take at most this many new snapshots, then stop (the file can be resumed later).
        show_progress : bool, optional
            Progress bar (default: when stderr is a terminal).
        callback : callable, optional
            ``callback(j, step)`` after snapshot ``j`` is stored (raising KeyboardInterrupt stops cleanly).
        """
        sched = self.schedule
        writer = _Writer(path, self, sched) if path is not None else None
        mem = None
        try:
            if resume:
                if writer is None:
                    raise ConfigError("`resume=True` needs `path`")
                state, n_done = writer.open_resume()
            else:
                state, n_done = self.initial_state(), 0
                if writer is not None:
                    writer.create(state)
            if writer is None:
                mem = _MemoryStore(self, sched)
            store = writer if writer is not None else mem
            n_new = len(sched) - n_done if stop_after is None else min(int(stop_after), len(sched) - n_done)
            total = int(sched[n_done + n_new - 1] - state["step"]) if n_new > 0 else 0
            bar = progress(total * self.config["train"]["members"], "training", enable=show_progress,
                           unit="member-step")  # fmt: skip
            try:
                for j in range(n_done, n_done + n_new):
                    while state["step"] < sched[j]:
                        chunk = int(min(sched[j] - state["step"], 256))
                        self.advance(state, chunk)
                        bar.update(chunk * self.config["train"]["members"])
                    if not np.all(np.isfinite(state["theta"])):
                        raise StabilityError(
                            f"weights turned non-finite by step {state['step']} (t = "
                            f"{self.config['train']['lr'] * state['step']:g}); lower `train.lr`",
                            time=self.config["train"]["lr"] * state["step"],
                        )
                    store.put(j, state, self._snapshot(state, j))
                    if callback is not None:
                        callback(j, int(state["step"]))
            finally:
                bar.close()
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            return EnsembleRun.load(writer.path)
        return mem.run()

    def _snapshot(self, state: dict, j: int) -> dict:
        th = state["theta"]
        snap = {"weights": np.asarray(th, dtype=np.float64)}
        if self.config["train"]["statistics"]:
            snap.update(self.statistics(th, probe_seed=derive_seed(self.config["seed"], 4, j)))
        return snap


# ---------------------------------------------------------------------------------------------- storage
class _MemoryStore:
    def __init__(self, ens: Ensemble, sched):
        self.ens, self.sched = ens, sched
        self.snaps: list = []

    def put(self, j, state, snap):
        self.snaps.append({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in snap.items()})

    def run(self) -> EnsembleRun:
        ens, arch = self.ens, self.ens.arch
        n = len(self.snaps)
        fields = {}
        for f in FIELDS:
            if f in self.snaps[0]:
                flat = np.stack([s[f].T for s in self.snaps])  # (n, M, P)
                fields[f] = arch.split(flat)
        stats = "loss" in self.snaps[0]
        return EnsembleRun(
            t=ens.config["train"]["lr"] * self.sched[:n].astype(float), step=self.sched[:n].copy(),
            eta=ens.config["train"]["lr"], batch_size=ens.config["train"]["batch_size"], config=ens.config,
            weights=fields["weights"], grad=fields.get("grad"), grad_var=fields.get("grad_var"),
            hess_grad=fields.get("hess_grad"),
            loss=np.stack([s["loss"] for s in self.snaps]) if stats else None,
            lam_max=np.stack([s["lam_max"] for s in self.snaps]) if stats else None,
            probe_members=np.arange(ens.config["train"]["probes"]) if stats else None,
            data={"x": ens.dataset.x_eval, "y": ens.dataset.y_eval},
        )  # fmt: skip


def _meta(config, names, shapes, eta, B, M, n_snap, n_done, probes, complete):
    return {
        "config": config, "names": list(names), "shapes": [list(s) for s in shapes], "eta": float(eta),
        "batch_size": int(B), "members": int(M), "n_snap": int(n_snap), "n_done": int(n_done),
        "probe_members": list(range(int(probes))), "complete": bool(complete),
    }  # fmt: skip


def _compression(name):
    # float snapshots are noise-like: gzip+shuffle saves ~15 % at ~20x the write time, so none by default
    return {"none": {}, "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
            "lzf": {"compression": "lzf", "shuffle": True}}[name]  # fmt: skip


def _create_layout(f, names, shapes, M, n_snap, n_probe, t, step, with_stats, compression="none"):
    f.create_dataset("t", data=np.asarray(t, dtype=float))
    f.create_dataset("step", data=np.asarray(step, dtype=np.int64))
    fields = FIELDS if with_stats else ("weights",)
    for fld in fields:
        grp = f.create_group(fld)
        for name, shape in zip(names, shapes):
            grp.create_dataset(name, shape=(n_snap, M, *shape), dtype="float64", chunks=(1, M, *shape),
                               fillvalue=np.nan, **_compression(compression))  # fmt: skip
    if with_stats:
        f.create_dataset("loss", shape=(n_snap, M), dtype="float64", chunks=(1, M), fillvalue=np.nan)
        f.create_dataset("lam_max", shape=(n_snap, n_probe), dtype="float64", fillvalue=np.nan)


class _Writer:
    """Crash-safe incremental HDF5 writer: ``<path>.partial`` flushed per snapshot, renamed on close."""

    def __init__(self, path, ens: Ensemble, sched):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.ens, self.sched = ens, sched
        self.f = None

    def _meta(self, n_done):
        ens = self.ens
        tr = ens.config["train"]
        return _meta(ens.config, ens.arch.names, ens.arch.shapes, tr["lr"], tr["batch_size"], tr["members"],
                     len(self.sched), n_done, tr["probes"], n_done == len(self.sched))  # fmt: skip

    def create(self, state):
        ens = self.ens
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        f = self.f = h5py.File(self.partial, "w")
        f.attrs["fpkit_format"] = FORMAT_VERSION
        f.attrs["kind"] = KIND
        from datetime import datetime

        f.attrs["created"] = datetime.now(UTC).isoformat()
        set_json_attr(f, "meta", self._meta(0))
        tr = ens.config["train"]
        _create_layout(f, ens.arch.names, ens.arch.shapes, tr["members"], len(self.sched), tr["probes"],
                       tr["lr"] * self.sched.astype(float), self.sched, bool(tr["statistics"]),
                       tr["compression"])  # fmt: skip
        g = f.create_group("data")
        ds = ens.dataset
        for key, arr in (("x", ds.x_eval), ("y", ds.y_eval)):  # = the training set unless online
            if arr is not None:
                g.create_dataset(key, data=arr, compression="gzip", compression_opts=1)
        st = f.create_group("state")
        for key in ("theta", "velocity", "rng", "perm"):
            st.create_dataset(key, data=state[key])
        st.attrs["step"] = int(state["step"])
        f.flush()

    def open_resume(self):
        src = self.partial if self.partial.exists() else self.path
        if not src.exists():
            raise ConfigError(f"`resume`: no file {str(self.path)!r} (or .partial) to resume from")
        if src == self.path:
            shutil.copyfile(self.path, self.partial)
        try:
            f = self.f = h5py.File(self.partial, "a")
        except OSError as exc:
            raise ConfigError(f"`resume`: {str(src)!r} is not a readable ensemble file ({exc})") from None
        if f.attrs.get("kind") != KIND:
            raise ConfigError(f"`resume`: {str(src)!r} is not an ensemble file")
        meta = get_json_attr(f, "meta")
        if json.loads(json.dumps(meta["config"])) != json.loads(json.dumps(self.ens.config, default=_jd)):
            raise ConfigError("`resume`: the configuration differs from the one stored in the file")
        st = f["state"]
        state = {k: st[k][()] for k in ("theta", "velocity", "rng", "perm")}
        state["step"] = int(st.attrs["step"])
        n_done = int(meta["n_done"])
        if n_done > 0 and state["step"] != int(self.sched[n_done - 1]):
            raise ConfigError(
                "`resume`: the stored state does not match the last snapshot; the file is damaged"
            )
        return state, n_done

    def put(self, j, state, snap):
        f, arch = self.f, self.ens.arch
        for fld in FIELDS:
            if fld in snap:
                flat = snap[fld].T  # (M, P)
                for name, arr in arch.split(flat).items():
                    f[fld][name][j] = arr
        if "loss" in snap:
            f["loss"][j] = snap["loss"]
            f["lam_max"][j] = snap["lam_max"]
        st = f["state"]
        for key in ("theta", "velocity", "rng", "perm"):
            st[key][...] = state[key]
        st.attrs["step"] = int(state["step"])
        set_json_attr(f, "meta", self._meta(j + 1))
        f.flush()

    def close(self):
        if self.f is not None:
            self.f.close()
            self.f = None
            os.replace(self.partial, self.path)


def _jd(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(repr(o))


# ---------------------------------------------------------------------------------------------- results
class EnsembleRun:
    """Snapshots of a trained ensemble (see the module docstring for every attribute and the file format)."""

    kind = KIND

    def __init__(self, *, t, step, eta, batch_size, config, weights, grad=None, grad_var=None, hess_grad=None,
                 loss=None, lam_max=None, probe_members=None, data=None):  # fmt: skip
        self.t = np.asarray(t, dtype=float)
        self.step = np.asarray(step, dtype=np.int64)
        self.eta = float(eta)
        self.batch_size = int(batch_size)
        self.config = config
        self.weights = weights
        self.grad, self.grad_var, self.hess_grad = grad, grad_var, hess_grad
        self.loss, self.lam_max = loss, lam_max
        self.probe_members = None if probe_members is None else np.asarray(probe_members, dtype=np.int64)
        self.data = data or {}

    @property
    def names(self) -> tuple:
        return tuple(self.weights)

    @property
    def shapes(self) -> dict:
        return {k: v.shape[2:] for k, v in self.weights.items()}

    @property
    def members(self) -> int:
        return next(iter(self.weights.values())).shape[1]

    def flat(self, field: str = "weights") -> np.ndarray:
        """All entries side by side: (n_snap, M, P) in the order of ``names`` (row-major within each)."""
        d = getattr(self, field)
        if d is None:
            raise ConfigError(f"`field` {field!r} was not recorded (statistics = false)")
        return np.concatenate([d[n].reshape(d[n].shape[:2] + (-1,)) for n in self.names], axis=2)

    @classmethod
    def from_arrays(cls, *, t, weights: dict, eta: float, batch_size: int = 1, step=None, config=None,
                    grad=None, grad_var=None, hess_grad=None, loss=None, lam_max=None) -> EnsembleRun:  # fmt: skip
        """Build a run from arrays, e.g. Langevin paths, to be saved in the ensemble format.

        ``weights`` (and grad/grad_var/hess_grad if given) map names to arrays (n_snap, M, *shape);
        ``step`` defaults to round(t / eta).
        """
        t = np.asarray(t, dtype=float)
        if t.ndim != 1:
            raise ConfigError("`t` must be one-dimensional (n_snap,)")
        if not weights:
            raise ConfigError("`weights` must map at least one name to an (n_snap, M, ...) array")
        eta = check_positive("eta", eta)
        weights = {k: np.asarray(v, dtype=float) for k, v in weights.items()}
        M = None
        for k, v in weights.items():
            if v.ndim < 2 or v.shape[0] != t.size:
                raise ConfigError(
                    f"`weights[{k!r}]` must have shape (n_snap={t.size}, M, ...), got {v.shape}"
                )
            if M is not None and v.shape[1] != M:
                raise ConfigError("`weights` arrays must share the number of members M")
            M = v.shape[1]

        def chk(name, d):
            if d is None:
                return None
            d = {k: np.asarray(v, dtype=float) for k, v in d.items()}
            if set(d) != set(weights) or any(d[k].shape != weights[k].shape for k in d):
                raise ConfigError(f"`{name}` must have the same names and shapes as `weights`")
            return d

        step = np.rint(t / eta).astype(np.int64) if step is None else np.asarray(step, dtype=np.int64)
        return cls(t=t, step=step, eta=eta, batch_size=batch_size, config=config or {}, weights=weights,
                   grad=chk("grad", grad), grad_var=chk("grad_var", grad_var), hess_grad=chk("hess_grad", hess_grad),
                   loss=None if loss is None else np.asarray(loss, dtype=float),
                   lam_max=None if lam_max is None else np.asarray(lam_max, dtype=float),
                   probe_members=None if lam_max is None else np.arange(np.shape(lam_max)[1]))  # fmt: skip

    def save(self, path) -> Path:
        """Write the run in the ensemble file format (atomically)."""
        from .io import atomic_h5

        path = Path(path)
        names = self.names
        shapes = [self.shapes[n] for n in names]
        n_snap = self.t.size
        n_probe = 0 if self.lam_max is None else self.lam_max.shape[1]
        with atomic_h5(path) as f:
            f.attrs["kind"] = KIND
            meta = _meta(self.config, names, shapes, self.eta, self.batch_size, self.members, n_snap, n_snap,
                         n_probe, True)  # fmt: skip
            set_json_attr(f, "meta", meta)
            f.create_dataset("t", data=self.t)
            f.create_dataset("step", data=self.step)
            for fld in FIELDS:
                d = getattr(self, fld)
                if d is None:
                    continue
                grp = f.create_group(fld)
                for n in names:
                    grp.create_dataset(n, data=d[n], chunks=(1, *d[n].shape[1:]))
            if self.loss is not None:
                f.create_dataset("loss", data=self.loss)
            if self.lam_max is not None:
                f.create_dataset("lam_max", data=self.lam_max)
            if self.data:
                g = f.create_group("data")
                for k, v in self.data.items():
                    if v is not None:
                        g.create_dataset(k, data=v)
        return path

    @classmethod
    def load(cls, path, fields=FIELDS) -> EnsembleRun:
        """Read an ensemble file (only its completed snapshots); ``fields`` limits which groups are read."""
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"`path` {str(path)!r} does not exist")
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != KIND:
                raise ConfigError(f"`path` {str(path)!r} holds {f.attrs.get('kind')!r}, not an ensemble")
            meta = get_json_attr(f, "meta")
            n = int(meta["n_done"])
            out = {}
            for fld in FIELDS:
                if fld in f and (fld == "weights" or fld in fields):
                    out[fld] = {name: f[fld][name][:n] for name in meta["names"]}
            data = {k: f["data"][k][()] for k in f["data"]} if "data" in f else {}
            return cls(t=f["t"][:n], step=f["step"][:n], eta=meta["eta"], batch_size=meta["batch_size"],
                       config=meta["config"], weights=out["weights"], grad=out.get("grad"),
                       grad_var=out.get("grad_var"), hess_grad=out.get("hess_grad"),
                       loss=f["loss"][:n] if "loss" in f else None,
                       lam_max=f["lam_max"][:n] if "lam_max" in f else None,
                       probe_members=meta.get("probe_members"), data=data)  # fmt: skip

    def __repr__(self) -> str:
        return (f"EnsembleRun({self.t.size} snapshots, M={self.members}, names={self.names}, eta={self.eta}, "
                f"B={self.batch_size}, t in [{self.t[0]:g}, {self.t[-1]:g}])")  # fmt: skip


# -------------------------------------------------------------------------------------------------- CLI
def cli_train(args) -> int:
    """``fpkit train config.toml -o ensemble.h5 [--resume]``."""
    ens = Ensemble(load_toml(args.config))
    try:
        run = ens.train(args.output, resume=bool(getattr(args, "resume", False)))
    except KeyboardInterrupt:
        print(
            f"interrupted; {args.output} holds the snapshots so far (continue with --resume)", file=sys.stderr
        )
        return 130
    print(f"wrote {args.output}: {run!r}")
    return 0
