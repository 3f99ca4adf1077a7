"""``TorchEnsemble``: M independently initialised copies of any torch module trained side by side.

See the ``fpkit.torch`` docstring for the conventions; the optimisers, samplings, snapshot schedule,
recorded statistics and file are those of ``fpkit.Ensemble`` (the ``fpkit.ensemble`` docstring).
"""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import torch
from torch.func import stack_module_state

from ..config import parse
from ..ensemble import EnsembleRun, TrainSchema
from ..ensemble.spec import shard_config, train_schedule
from ..ensemble.results import _MemoryStore, _Writer, start_state
from ..errors import ConfigError, StabilityError
from ..progress import progress
from ..solvers import autoencoder as _ae
from ..solvers.random import derive_seed, seed_streams
from ._functional import Functional, _Layout, as_data, as_device, var_factor
from ._streams import draw_plan

_DTYPES = {torch.float64: "float64", torch.float32: "float32"}
_TRAIN_KEYS = tuple(k for k in TrainSchema.model_fields if k not in ("kernels", "dtype"))
PLAN_BYTES = 1 << 24  # random numbers drawn ahead per call of the stream kernel (bytes)
ADVANCE_STEPS = 256  # steps per advance call in train (the numba trainer's chunk): progress and stop checks


def member_seed(seed: int, m: int) -> int:
    """The torch seed under which member ``m`` is initialised (depends only on ``seed`` and ``m``).

    Parameters
    ----------
    seed : int
        The ensemble's seed.
    m : int
        The member index.

    Returns
    -------
    int
        A non-negative 63-bit torch seed.
    """
    return derive_seed(seed, 2, m) & (2**63 - 1)


def _module_config(base: torch.nn.Module, loss_fn, layout: _Layout) -> dict:
    return {"kind": "torch", "module": repr(base),
            "parameters": {n: list(s) for n, s in zip(layout.names, layout.shapes)},
            "loss": getattr(loss_fn, "__qualname__", type(loss_fn).__name__)}  # fmt: skip


def _data_config(X, Y, targets: bool) -> dict:
    out = {"n": int(X.shape[0]), "x_shape": list(X.shape[1:])}
    if targets:
        out["y_shape"] = list(Y.shape[1:])
    return out


class TorchEnsemble:
    """An ensemble of M copies of a torch module trained by SGD / GD / SGLD / SVAG, vectorised over members.

    Every member is the same network trained on the same data from its own initialisation with its own
    minibatches. Training and statistics run through ``torch.func`` (``stack_module_state``,
    ``functional_call``, ``vmap``, ``grad``, ``jvp``): one vectorised call per step for all members.
    Minibatch indices and SGLD noise come from per-member streams (``fpkit.solvers.random``) drawn exactly as
    the numba trainer draws them, so with the same ``seed`` both see the same batches.

    Parameters
    ----------
    model : callable or torch.nn.Module
        ``model()`` returning a fresh module (called once per member m with torch's CPU generator seeded by
        ``member_seed(seed, m)``: member m's initialisation depends only on seed and m; the caller's CPU and
        CUDA generators are left as they were), or a module: every
        member is a copy whose submodules' ``reset_parameters()`` run under that seed (parameters no
        submodule resets keep the module's values). Modules must not couple samples of a batch (no
        BatchNorm in training mode) nor draw random numbers (no dropout).
    loss_fn : callable
        ``loss_fn(output, target)`` -> scalar: the *mean over the batch* of a per-sample loss (checked), e.g.
        ``lambda out, y: 0.5 * ((out - y) ** 2).sum(-1).mean()`` (the numba trainer's ½‖·‖²).
    data : array, (x, y) or fpkit.data.Dataset
        Training set, samples along axis 0; without targets the target is the input (an autoencoder).
    init : dict, optional
        Initial parameters ``{name: array (M, *shape)}`` for every parameter (overrides the initialisation).
    dtype : torch.dtype
        ``torch.float64`` (default) or ``torch.float32``.
    device : str or torch.device
        ``"cpu"`` (default) or e.g. ``"cuda"``.
    chunk_size : int, optional
        Samples per chunk of per-sample gradients at snapshots (default: what fits ~256 MB for all members).
    capture : bool
        Run the training step's gradient as a graph of aten ops captured once per input layout (default;
        the same results bit for bit, ~15 % less time per step on small models: ``fpkit.torch._functional.
        Captured``); a graph that does not reproduce the eager result is not used. Pass False for a module
        whose ops change with Python state during training.
    compile : bool
        ``torch.compile`` the training gradient instead (inductor; opt-in: a compile of 10-60 s, then ~25 %
        less CPU per step than the captured graph on the digits autoencoder at M = 256; agrees with the eager
        path to rounding, not bit for bit; needs a C++ compiler). See ``fpkit.torch._functional.compiled``.
    seed : int
    **train
        The numba trainer's train keys (``fpkit.ensemble.TrainSchema``, listed in docs/config.md):
        ``members``, ``lr`` (η), ``batch_size`` (B), ``sampling`` ("iid" | "distinct" | "epochs" | "full"),
        ``optimizer`` ("sgd" | "gd" | "sgld" | "svag"), ``momentum``, ``weight_decay``, ``temperature`` (SGLD
        T), ``svag_l``, ``steps``, ``snapshots`` (a count, log-spaced with ``per_decade``, or a list of
        steps), ``snapshot_steps``, ``per_decade``, ``statistics``, ``probes``, ``lanczos_steps``,
        ``compression``. Time is t = η·step.

    Examples
    --------
    >>> net = lambda: torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    >>> mse = lambda out, y: 0.5 * ((out - y) ** 2).sum(-1).mean()
    >>> ens = TorchEnsemble(net, mse, (x, y), members=500, lr=0.05, batch_size=8, steps=2000)  # doctest: +SKIP
    >>> run = ens.train("ensemble.h5"); fpkit.predict(run, "0.weight[3,1]")                   # doctest: +SKIP
    """

    def __init__(self, model, loss_fn, data, *, init: dict | None = None, dtype=torch.float64, device="cpu",
                 chunk_size: int | None = None, capture: bool = True, compile: bool = False, seed: int = 0,
                 **train):  # fmt: skip
        if dtype not in _DTYPES:
            raise ConfigError(f"`dtype` must be torch.float64 or torch.float32, got {dtype!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"`seed` must be a non-negative int, got {seed!r}")
        unknown = sorted(set(train) - set(_TRAIN_KEYS))
        if unknown:
            raise ConfigError(f"unknown argument(s) {unknown}; allowed train keys: {sorted(_TRAIN_KEYS)}")
        if "snapshots" in train and not isinstance(train["snapshots"], (int, np.integer)):
            if train.get("snapshot_steps") is not None:
                raise ConfigError("give `snapshots` as a list of steps or `snapshot_steps`, not both")
            train["snapshot_steps"] = train.pop("snapshots")
        tr = parse(TrainSchema, {**train, "dtype": _DTYPES[dtype]}).model_dump()
        del tr["kernels"]
        if tr.get("on_divergence", "stop") != "stop":
            raise ConfigError("`on_divergence` must be 'stop' for TorchEnsemble (dropping members is not supported)")
        if tr["optimizer"] == "gd":
            tr["sampling"] = "full"
        tr["probes"] = min(tr["probes"], tr["members"], _ae.LANES)
        if tr["snapshot_steps"] is not None:
            tr["steps"] = max(tr["steps"], tr["snapshot_steps"][-1])
        self.dtype, self.device, self.seed = dtype, as_device(device), int(seed)
        X, Y, targets = as_data(data, dtype, self.device)
        if tr["sampling"] in ("distinct", "epochs") and tr["batch_size"] > X.shape[0]:
            raise ConfigError(
                f"`batch_size` = {tr['batch_size']} is larger than the data set ({X.shape[0]} samples) with "
                f"sampling {tr['sampling']!r}; use a smaller batch or sampling = 'iid'"
            )
        M = tr["members"]
        modules = self._members(model, M)
        params, buffers = stack_module_state(modules)
        self.base = modules[0]  # structure only: functional_call supplies every tensor
        params = {k: v.detach().clone() for k, v in params.items()}
        if not params:
            raise ConfigError("`model` has no parameters to train")
        self.layout = _Layout.of(params)
        if init is not None:
            params = self._initial(init, params)
        self.fn = Functional(self.base, loss_fn, X, Y, buffers, chunk_size, capture=capture, compile=compile)
        self.fn.check_loss(params)
        self._init_params = params
        self.config = {"seed": self.seed, "model": _module_config(self.base, loss_fn, self.layout),
                       "data": _data_config(X, Y, targets), "train": tr}  # fmt: skip
        data_np = {"x": X.cpu().numpy(), "y": Y.cpu().numpy() if targets else None}
        # what fpkit's ensemble writer reads from an ensemble: config, arch (names/shapes/split), data
        self._ens = SimpleNamespace(config=self.config, arch=self.layout,
                                    dataset=SimpleNamespace(x_eval=data_np["x"], y_eval=data_np["y"]))  # fmt: skip

    # ------------------------------------------------------------------------------------------- set-up
    def _members(self, model, M: int) -> list:
        mods = []
        for m in range(M):
            with torch.random.fork_rng(devices=[]):
                # the CPU generator only: torch.manual_seed would also reseed (and fork_rng(devices=[]) not
                # restore) the caller's CUDA generators; modules are made on the CPU and then moved
                torch.default_generator.manual_seed(member_seed(self.seed, m))
                if isinstance(model, torch.nn.Module):
                    mod = copy.deepcopy(model)
                    for sub in mod.modules():
                        if hasattr(sub, "reset_parameters"):
                            sub.reset_parameters()
                elif callable(model):
                    mod = model()
                    if not isinstance(mod, torch.nn.Module):
                        raise ConfigError(f"`model()` must return a torch.nn.Module, got {type(mod).__name__}")
                else:
                    raise ConfigError(f"`model` must be a torch.nn.Module or a callable returning one, got "
                                      f"{type(model).__name__}")  # fmt: skip
            mods.append(mod.to(device=self.device, dtype=self.dtype))
        return mods

    def _initial(self, init: dict, params: dict) -> dict:
        if not isinstance(init, dict) or set(init) != set(params):
            raise ConfigError(f"`init` must map every parameter name {list(params)} to an (M, *shape) array")
        out = {}
        for k, p in params.items():
            v = torch.as_tensor(np.asarray(init[k]) if not isinstance(init[k], torch.Tensor) else init[k])
            if tuple(v.shape) != tuple(p.shape):
                raise ConfigError(f"`init[{k!r}]` must have shape {tuple(p.shape)} (M, *shape), got "
                                  f"{tuple(v.shape)}")  # fmt: skip
            out[k] = v.to(device=self.device, dtype=self.dtype).clone()
        return out

    # ------------------------------------------------------------------------------------------- shards
    member_offset = 0  # global index of this ensemble's first member (non-zero for a shard)

    @property
    def arch(self) -> _Layout:
        """Parameter names, shapes and flat offsets (what fpkit's ensemble writer and shard merge read)."""
        return self.layout

    def shard(self, first: int, stop: int) -> TorchEnsemble:
        """The members ``first .. stop - 1`` as an ensemble of their own (``fpkit.distributed``), as
        ``fpkit.Ensemble.shard``: every member keeps its initialisation and the random streams of its global
        index, and the per-sample gradient chunks are those of the whole ensemble, so the shard's values are
        bit-identical to the same members of the whole run. The probe members (λmax) are the first ones: only
        the shard from member 0 tracks them, and it must hold them all. Bounds are multiples of
        ``fpkit.solvers.autoencoder.LANES`` (the stream kernel's block; the last may end at M).

        Parameters
        ----------
        first, stop : int
            The members ``first .. stop - 1``.

        Returns
        -------
        TorchEnsemble
            The shard.
        """
        cfg = shard_config(self.config, first, stop)
        M = self.config["train"]["members"]
        out = copy.copy(self)
        out.config = cfg
        out.member_offset = self.member_offset + int(first)
        out._init_params = {k: v[first:stop].clone() for k, v in self._init_params.items()}
        out.fn = copy.copy(self.fn)
        out.fn.buffers = {k: v[first:stop] for k, v in self.fn.buffers.items()}
        out.fn.chunk_members = self.fn.chunk_members or M
        out._ens = SimpleNamespace(config=cfg, arch=self.layout, dataset=self._ens.dataset)
        return out

    @property
    def schedule(self) -> np.ndarray:
        """Snapshot steps (int64), as ``fpkit.Ensemble.schedule``."""
        return train_schedule(self.config["train"])

    def initial_state(self) -> dict:
        """The resumable state as numpy arrays, in the numba trainer's layout: ``theta`` (P, M) parameters,
        ``velocity`` (P, M) (momentum > 0, else (1, 1)), ``rng`` (2, M) streams, ``perm`` (M, n) epoch
        permutations (else (1, 1)), ``step``.

        Returns
        -------
        dict
            The state (arrays as listed, ``step`` an int).
        """
        tr = self.config["train"]
        M, P, n = tr["members"], self.layout.P, self.fn.n
        theta = self.layout.flatten(self._init_params).T.cpu().numpy().astype(np.float64)
        vel = np.zeros((P, M) if tr["momentum"] > 0 else (1, 1))
        # a shard's members keep the streams of their global indices
        rng = np.ascontiguousarray(seed_streams(derive_seed(self.seed, 1), M, self.member_offset).T)
        perm = (np.tile(np.arange(n, dtype=np.int32), (M, 1)) if tr["sampling"] == "epochs"
                else np.zeros((1, 1), dtype=np.int32))  # fmt: skip
        return {"theta": theta, "velocity": vel, "rng": rng, "perm": perm, "step": 0}

    def _to_torch(self, a: np.ndarray) -> dict:
        return self.layout.unflatten(torch.as_tensor(a.T.copy(), dtype=self.dtype, device=self.device))

    def _to_numpy(self, d: dict) -> np.ndarray:
        return self.layout.flatten(d).T.cpu().numpy().astype(np.float64)

    # ---------------------------------------------------------------------------------------- training
    def advance(self, state: dict, n_steps: int) -> None:
        """Run ``n_steps`` optimiser steps on ``state`` (``initial_state``'s layout) in place.

        Parameters
        ----------
        state : dict
            The training state (``initial_state``), updated in place.
        n_steps : int
            Number of steps.
        """
        params = self._to_torch(state["theta"])
        tr = self.config["train"]
        vel = self._to_torch(state["velocity"]) if tr["momentum"] > 0 else None
        self._steps(params, vel, state, int(n_steps))
        state["theta"] = self._to_numpy(params)
        if vel is not None:
            state["velocity"] = self._to_numpy(vel)

    def _steps(self, params: dict, vel: dict | None, state: dict, n_steps: int) -> None:
        """Update per step (g the minibatch-mean gradient or SVAG's combination, wd = weight_decay, in the
        numba trainer's order of operations): v ← μv + g + wd·w, w ← w − η_l v (μ = 0: w ← w − η_l (g +
        wd·w)), then + √(2 η_l T) ξ for SGLD; η_l = η / svag_l with svag_l inner steps per step."""
        tr = self.config["train"]
        M, P, B, n = tr["members"], self.layout.P, tr["batch_size"], self.fn.n
        ell = tr["svag_l"]
        full = tr["sampling"] == "full"
        nb = 0 if full else ell * (2 if ell > 1 else 1)
        Pn = P if tr["temperature"] > 0 else 0
        eta = tr["lr"] / ell
        c1, c2 = 0.5 * (1.0 + np.sqrt(2.0 * ell - 1.0)), 0.5 * (1.0 - np.sqrt(2.0 * ell - 1.0))
        sg = float(np.sqrt(2.0 * eta * tr["temperature"]))
        mu, wd = tr["momentum"], tr["weight_decay"]
        code = _ae.SAMPLINGS[tr["sampling"]]
        K_max = max(1, PLAN_BYTES // (8 * M * (nb * B + Pn) + 1))
        X, Y = self.fn.X, self.fn.Y
        plist = list(params.values())

        def gather(ix):  # per-member minibatches (M, B, ...); an autoencoder's targets are its inputs
            xb = X[ix]
            return xb, (xb if Y is X else Y[ix])

        done = 0
        while done < n_steps:
            K = min(K_max, n_steps - done)
            idx = np.zeros((K, nb, B, M), dtype=np.int64)
            noise = np.zeros((K, Pn, M))
            draw_plan(state["rng"], state["perm"], n, B, code, int(state["step"]), idx, noise)
            idx_t = torch.from_numpy(idx).to(self.device)
            noise_t = torch.as_tensor(noise, dtype=self.dtype, device=self.device) if Pn else None  # one copy
            for s in range(K):
                for inner in range(ell):
                    if full:
                        g = self.fn.batch_gradient(params, None, None)
                    else:
                        g = self.fn.batch_gradient(params, *gather(idx_t[s, inner * (nb // ell)].T))
                        if ell > 1:
                            g2 = self.fn.batch_gradient(params, *gather(idx_t[s, inner * 2 + 1].T))
                            g = {k: c1 * g[k] + c2 * g2[k] for k in g}
                    with torch.no_grad():
                        if vel is None and wd == 0.0:
                            # plain SGD, the common case: w + (−(η·g)), the same roundings as w − η·g, in two
                            # multi-tensor calls, in place on g (this step's own tensors): no temporaries (a
                            # fused add with alpha = −η rounds once, by FMA, unlike the numba trainer)
                            gl = [g[k] for k in params]
                            if len({t.data_ptr() for t in gl}) == len(gl):
                                torch._foreach_mul_(gl, -eta)
                            else:  # gradients sharing memory (a model's own aliasing): scale copies
                                gl = torch._foreach_mul(gl, -eta)
                            torch._foreach_add_(plist, gl)
                            continue
                        for k, p in params.items():
                            if vel is not None:
                                vel[k].mul_(mu).add_(g[k]).add_(wd * p)
                                p.sub_(eta * vel[k])
                            else:
                                p.sub_(eta * (g[k] + wd * p))
                if Pn:
                    xi = self.layout.unflatten(noise_t[s].T)
                    with torch.no_grad():
                        for k, p in params.items():
                            p.add_(sg * xi[k])
                state["step"] += 1
            done += K

    def statistics(self, theta: np.ndarray, probe_seed: int = 0) -> dict:
        """grad, grad_var, hess_grad (P, M), loss (M,) and lam_max (n_probe,) at parameters theta (P, M).

        Parameters
        ----------
        theta : array (P, M)
            Flattened parameters of the M members.
        probe_seed : int
            Seed of the Lanczos probes.

        Returns
        -------
        dict
            The arrays named above (gradients per unit parameter; grad_var of the minibatch-mean gradient).
        """
        tr = self.config["train"]
        return self.fn.statistics(self.layout, self._to_torch(theta),
                                  var_factor=var_factor(tr["sampling"], self.fn.n, tr["batch_size"]),
                                  weight_decay=tr["weight_decay"], probes=tr["probes"],
                                  lanczos_steps=tr["lanczos_steps"], probe_seed=probe_seed)  # fmt: skip

    def _snapshot(self, state: dict, j: int) -> dict:
        snap = {"weights": state["theta"]}
        if self.config["train"]["statistics"]:
            snap.update(self.statistics(state["theta"], probe_seed=derive_seed(self.seed, 4, j)))
        return snap

    def train(self, path=None, *, resume: bool = False, stop_after: int | None = None,
              show_progress: bool | None = None, client=None, shards: int | None = None) -> EnsembleRun:  # fmt: skip
        """Train, taking snapshots on the schedule; returns an :class:`fpkit.EnsembleRun`.

        Parameters
        ----------
        path : str or Path, optional
            Results file in the ``fpkit.ensemble`` format, written crash-safely by fpkit's ensemble writer
            (``<path>.partial`` flushed after every snapshot, renamed at the end or on interruption);
            without a path the run stays in memory.
        resume : bool
            Continue the run stored in ``path`` (or ``<path>.partial``) from its last snapshot; the
            configuration must be the stored one. Continues bit-identically (same streams and state).
        stop_after : int, optional
            Take at most this many new snapshots, then stop (the file can be resumed).
        show_progress : bool, optional
            Progress bar (default: when stderr is a terminal).
        client : dask.distributed.Client, optional
            Train shards of members (:meth:`shard`) as Dask tasks on the client's cluster and merge them into
            ``path`` (``fpkit.distributed.train``; needs ``fpkit[distributed]``): the same file, bit for bit,
            as without a client. The module, loss and data travel to the workers by (cloud)pickle.
        shards : int, optional
            With ``client``: the number of shards (default: two per worker).

        Returns
        -------
        fpkit.EnsembleRun
            The snapshots (t = η·step).
        """
        if client is not None:
            from ..distributed import train as _train_distributed

            return _train_distributed(self, path, client=client, shards=shards, resume=resume,
                                      stop_after=stop_after, show_progress=show_progress)  # fmt: skip
        sched = self.schedule
        writer = _Writer(path, self._ens, sched) if path is not None else None
        mem = None
        try:
            state, n_done = start_state(writer, self.initial_state, resume)
            store = writer if writer is not None else (mem := _MemoryStore(self._ens, sched))
            n_new = len(sched) - n_done if stop_after is None else min(int(stop_after), len(sched) - n_done)
            tr = self.config["train"]
            total = int(sched[n_done + n_new - 1] - state["step"]) if n_new > 0 else 0
            bar = progress(total * tr["members"], "training", enable=show_progress, unit="member-step")
            try:
                for j in range(n_done, n_done + n_new):
                    while state["step"] < sched[j]:  # through advance (fpkit.distributed reports from it)
                        chunk = int(min(sched[j] - state["step"], ADVANCE_STEPS))
                        self.advance(state, chunk)
                        bar.update(chunk * tr["members"])
                    bound = tr.get("divergence_bound", np.inf)
                    if not np.all(np.abs(state["theta"]) <= bound):  # also catches NaN
                        raise StabilityError(
                            f"weights turned non-finite or exceeded |w| > {bound:g} by step {state['step']} "
                            f"(t = {tr['lr'] * state['step']:g}); lower `lr`", time=tr["lr"] * state["step"],
                        )  # fmt: skip
                    store.put(j, state, self._snapshot(state, j))
            finally:
                bar.close()
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            return EnsembleRun.load(writer.path)
        return mem.run()

    def __repr__(self) -> str:
        tr = self.config["train"]
        return (f"TorchEnsemble(M={tr['members']}, P={self.layout.P}, optimizer={tr['optimizer']!r}, "
                f"lr={tr['lr']}, B={tr['batch_size']}, sampling={tr['sampling']!r}, steps={tr['steps']}, "
                f"device={str(self.device)!r})")  # fmt: skip
