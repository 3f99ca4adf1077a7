"""Configuration of the SGD sampler: the schemas of ``fpkit train`` files and ``fpkit.Ensemble(config)``
(``EnsembleSchema`` with its sections ``ModelSchema``, ``TrainSchema`` and ``fpkit.data.DataSchema``), the
defaults, the snapshot schedule, the network architecture and the checks that need the data set.

See the ``fpkit.ensemble`` docstring for the model, the optimisers and the conventions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..config import Schema, invalid, register_schema
from ..data import DataSchema, Dataset, GaussianData
from ..errors import ConfigError
from ..solvers import autoencoder as _ae

OPTIMIZERS = ("sgd", "gd", "sgld", "svag")
INITS = ("lecun", "xavier")


# ------------------------------------------------------------------------------------------ configuration
PARAMETERIZATIONS = ("standard", "ntk", "mup")


class ModelSchema(Schema):
    """The network: an autoencoder d → hidden… → d, an MLP d → hidden… → d_out with targets, or a linear
    regression (linear output layer, loss ½|out − target|² averaged over samples)."""

    kind: Literal["autoencoder", "regression", "mlp"] = Field("autoencoder", description=(
        "autoencoder x → x̂ (needs min(hidden) < d); mlp x → y, d → hidden… → d_out on the data's targets "
        "(any depth, hidden = [] is one layer; regression/teacher-student data, or arrays(x, y) with one-hot "
        "y for classification); regression: the one-layer y = W1 x (+ b1) (needs targets)"))
    hidden: list[Annotated[int, Field(ge=1)]] = Field([3, 3], description=(
        "hidden-layer widths (autoencoder: at least one; [k, k] is the d → k → k → d network, flat argument "
        "k; mlp: any number, [] for one layer)"))
    activation: Literal[tuple(_ae.ACTIVATIONS)] = Field("tanh", description=(
        "activation of the hidden layers (the output layer is linear)"))
    bias: bool = Field(False, description="biases b_l in every layer (names b1, b2, …)")
    init: Literal[INITS] = Field("lecun", description=(
        "initial weight std: lecun 1/√fan_in, xavier √(2/(fan_in + fan_out)); biases start at 0"))
    init_scale: float = Field(1.0, ge=0, description="factor on the initial weight std")
    same_init: bool = Field(False, description="every member starts from the same weights (one draw)")
    parameterization: Literal[PARAMETERIZATIONS] = Field("standard", description=(
        "width scaling of the layers, as the equivalent per-layer initial std and learning rate of the stored "
        "(effective) weights W_l = a_l θ_l, θ ~ N(0, 1) trained at rate η·c: standard (init as `init`, one η); "
        "ntk (a = 1/√fan_in in hidden layers, output 1/(γ₀√N), c = γ₀²: std a_l, rate η γ₀² a_l²); mup "
        "(μP / mean field: output a = 1/(γ₀ N), c = γ₀² N: rates η γ₀² N/D, η γ₀², η/N for first, hidden, "
        "output); init_scale multiplies every std; N the last hidden width"))
    gamma0: float = Field(1.0, gt=0, description=(
        "richness γ₀ of ntk / mup (feature learning grows with γ₀; mup's output multiplier is 1/(γ₀ N))"))


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
    on_divergence: Literal["stop", "drop"] = Field("stop", description=(
        "members whose weights turn non-finite or exceed divergence_bound (checked every ≤ 256 steps, and "
        "their snapshot statistics) are named (count, step, member ids) and either stop the run (stop: a "
        "StabilityError; the snapshots so far are kept) or are dropped (drop: masked out of every statistic "
        "and estimate from then on, stored as the boolean mask `alive`, never as NaN/inf)"))
    divergence_bound: float = Field(1e6, gt=0, description=(
        "|w| above which a member's weights count as diverged (see on_divergence)"))
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


def shard_config(config: dict, first: int, stop: int) -> dict:
    """The configuration of the members ``first .. stop - 1`` of an ensemble as one of their own (``shard``
    section naming them; the probe members only in the shard from member 0), after checking the range: ints,
    non-empty within 0..M, on multiples of ``LANES`` (the last may end at M), the first shard holding every
    probe member. Shared by ``fpkit.Ensemble.shard`` and ``fpkit.torch.TorchEnsemble.shard``."""
    import copy

    tr = config["train"]
    M, probes = tr["members"], tr["probes"]
    for name, v in (("first", first), ("stop", stop)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool):
            raise ConfigError(f"`shard`: `{name}` must be an int, got {v!r}")
    if not (0 <= first < stop <= M):
        raise ConfigError(f"`shard`: members {first}..{stop} are not a non-empty range within 0..{M}")
    if first % _ae.LANES or (stop % _ae.LANES and stop != M):
        raise ConfigError(f"`shard`: the range {first}..{stop} must start and end on a multiple of "
                          f"{_ae.LANES} members (or at the last member)")  # fmt: skip
    if first == 0 and stop < probes:
        raise ConfigError(f"`shard`: the first shard must hold the {probes} probe members")
    cfg = copy.deepcopy(config)
    cfg["train"].update(members=int(stop - first), probes=probes if first == 0 else 0)
    cfg["shard"] = {"first": int(first), "stop": int(stop), "members": int(M)}
    return cfg


def train_schedule(train: dict) -> np.ndarray:
    """The snapshot steps (int64) of a resolved ``train`` section: ``snapshot_steps`` when given, else
    ``snapshot_schedule`` of ``steps``, ``snapshots`` and ``per_decade``."""
    if train["snapshot_steps"] is not None:
        return np.asarray(train["snapshot_steps"], dtype=np.int64)
    return snapshot_schedule(train["steps"], int(train["snapshots"]), float(train["per_decade"]))


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
    init_std: np.ndarray | None = None  # (n_layers,) initial std of each weight matrix (before init_scale)
    lr_rows: np.ndarray | None = None  # (P,) factor on the learning rate per parameter row

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
        return cls(sizes, w_off, b_off, act, tuple(names), tuple(shapes), tuple(offsets), off,
                   np.array([1.0 / np.sqrt(float(sizes[ell])) for ell in range(L)]), np.ones(off))  # fmt: skip

    def parameterize(self, model: dict) -> None:
        """Per-layer initial std and learning-rate factors from ``model`` (init, parameterization, gamma0).

        A layer W_l = a_l θ_l with θ ~ N(0, 1) trained at rate η·c is, for the stored W_l, the rate η·c·a_l²
        and the initial std a_l (the gradient in θ is a_l times that in W). Biases take their layer's rate.
        """
        sizes, L = self.sizes, len(self.sizes) - 1
        fan_in = np.array([float(sizes[ell]) for ell in range(L)])
        kind, g0 = model.get("parameterization", "standard"), float(model.get("gamma0", 1.0))
        if kind == "standard":
            if model.get("init", "lecun") == "lecun":
                self.init_std = np.array([1.0 / np.sqrt(f) for f in fan_in])
            else:
                self.init_std = np.array([np.sqrt(2.0 / (fan_in[ell] + float(sizes[ell + 1]))) for ell in range(L)])
            rate = np.ones(L)
        else:
            a = 1.0 / np.sqrt(fan_in)
            N = fan_in[-1]  # the last hidden width (the input dimension for one layer)
            if kind == "ntk":
                a[-1] = 1.0 / (g0 * np.sqrt(N))
                c = g0 * g0
            else:  # mup (mean-field) scaling
                a[-1] = 1.0 / (g0 * N)
                c = g0 * g0 * N
            self.init_std, rate = a, c * a * a
        self.lr_rows = np.ones(self.P)
        for ell in range(L):
            self.lr_rows[self.w_off[ell] : self.w_off[ell] + int(sizes[ell] * sizes[ell + 1])] = rate[ell]
            if self.b_off[ell] >= 0:
                self.lr_rows[self.b_off[ell] : self.b_off[ell] + int(sizes[ell + 1])] = rate[ell]

    def views(self, flat: np.ndarray) -> dict:
        """(..., P) -> {name: (..., *shape)} (views where numpy can reshape without copying)."""
        out = {}
        for name, shape, off in zip(self.names, self.shapes, self.offsets):
            size = int(np.prod(shape))
            out[name] = flat[..., off : off + size].reshape(flat.shape[:-1] + shape)
        return out

    def split(self, flat: np.ndarray) -> dict:
        """(..., P) -> {name: (..., *shape)} (copies)."""
        return {name: v.copy() for name, v in self.views(flat).items()}


# ------------------------------------------------------------------------------------------- validation
def validate(config: dict, dataset: Dataset) -> _Arch:
    """Checks that need the data set (types and single-section rules are in the schemas), and the
    resolved values: gd samples the full batch, probes at most members and 8, steps reach the last
    of snapshot_steps.

    ``config`` is the parsed configuration (sections seed/model/data/train), whose ``train`` section is
    completed in place; ``dataset`` the data set it was built with. Returns the architecture.
    """
    m, tr, ds = config["model"], config["train"], dataset
    d = ds.d
    if m["kind"] == "autoencoder":
        if not m["hidden"]:
            raise ConfigError("`model.hidden` must list at least one width for an autoencoder, e.g. [3, 3]")
        if min(m["hidden"]) >= d:
            raise ConfigError(
                f"bottleneck width k = {min(m['hidden'])} (`model.hidden`/`k`) must be smaller than the "
                f"data dimension d = {d}; choose k < d"
            )
        sizes = [d, *m["hidden"], d]
    elif m["kind"] == "mlp":
        if ds.d_out is None:
            raise ConfigError(
                "`model.kind = 'mlp'` needs targets: use data kind 'regression' or arrays(x, y) (one-hot y for "
                "classification)"
            )
        sizes = [d, *m["hidden"], ds.d_out]
    else:
        if ds.d_out is None:
            raise ConfigError(
                "`model.kind = 'regression'` needs targets: use data kind 'regression' or arrays(x, y)"
            )
        sizes = [d, ds.d_out]
    arch = _Arch.build(sizes, m["bias"], _ae.ACTIVATIONS[m["activation"]])
    arch.parameterize(m)

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
    return arch
