"""``Recorder``: the snapshot statistics of M runs of a user's own training loop.

The user trains M copies of a network their own way (optimiser, scheduler, data loader); at chosen steps
``recorder.snapshot(step, models)`` records the weights and, at those weights, exactly the statistics
:class:`fpkit.torch.TorchEnsemble` records; ``recorder.run()`` returns the :class:`fpkit.EnsembleRun`.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.func import stack_module_state

from ..ensemble import EnsembleRun
from ..errors import ConfigError, check_choice, check_positive
from ..solvers import autoencoder as _ae
from ..solvers.random import derive_seed
from ._functional import Functional, _Layout, as_data, as_device, var_factor
from .ensemble import _DTYPES, _data_config, _module_config

SAMPLINGS = tuple(_ae.SAMPLINGS)


class Recorder:
    """Records an ensemble of user-trained models into the ``fpkit.ensemble`` run format.

    Parameters
    ----------
    loss_fn : callable
        ``loss_fn(output, target)`` -> scalar, the mean over the batch of a per-sample loss (as in
        :class:`TorchEnsemble`): the loss whose statistics are recorded.
    data : array, (x, y) or fpkit.data.Dataset
        The training set the statistics are taken over (without targets: target = input).
    lr : float
        η, the time unit: snapshot times are t = η·step and the diffusion the FP uses is D = (η/2)·grad_var.
        With a schedule or an adaptive optimiser give the reference rate that defines your time.
    batch_size : int
        B of the user's minibatches: ``grad_var`` is the variance of a B-sample minibatch mean gradient.
    sampling : str
        How the user's loader draws batches: "iid" (with replacement; grad_var = per-sample variance / B),
        "distinct" or "epochs" (× (n − B)/(n − 1)), "full" (0).
    weight_decay : float
        wd if the user's optimiser adds wd·w to the gradient: grad and hess_grad are then those of
        L + wd|w|²/2 (as the numba trainer records them).
    probes, lanczos_steps : int
        Members (the first ``probes``, at most 8) whose Hessian λmax is estimated, and Lanczos steps.
    seed : int
        Seeds the Lanczos start vectors (snapshot j uses ``derive_seed(seed, 4, j)``, as TorchEnsemble).
    dtype, device, chunk_size
        Precision and device of the statistics (default float64 on the CPU, whatever the models use) and
        samples per chunk of per-sample gradients.

    Examples
    --------
    >>> rec = fpkit.torch.Recorder(mse, (x, y), lr=0.05, batch_size=8)          # doctest: +SKIP
    >>> for step in range(1001):                                                 # doctest: +SKIP
    ...     if step in snapshot_steps: rec.snapshot(step, models)
    ...     for net, opt in zip(models, optimisers): ...one step of the user's loop...
    >>> run = rec.run(); run.save("mine.h5"); fpkit.predict(run, "0.weight[1,2]")  # doctest: +SKIP
    """

    def __init__(self, loss_fn, data, *, lr: float, batch_size: int = 1, sampling: str = "iid",
                 weight_decay: float = 0.0, probes: int = 4, lanczos_steps: int = 30, seed: int = 0,
                 dtype=torch.float64, device="cpu", chunk_size: int | None = None):  # fmt: skip
        if dtype not in _DTYPES:
            raise ConfigError(f"`dtype` must be torch.float64 or torch.float32, got {dtype!r}")
        self.lr = check_positive("lr", lr)
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"`batch_size` must be a positive int, got {batch_size!r}")
        check_choice("sampling", sampling, SAMPLINGS)
        for name, v in (("probes", probes), ("lanczos_steps", lanczos_steps), ("seed", seed)):
            if not isinstance(v, (int, np.integer)) or v < 0:
                raise ConfigError(f"`{name}` must be a non-negative int, got {v!r}")
        self.weight_decay = check_positive("weight_decay", weight_decay, strict=False)
        self.loss_fn, self.dtype, self.device, self.chunk_size = loss_fn, dtype, as_device(device), chunk_size
        self.X, self.Y, self.targets = as_data(data, dtype, self.device)
        self.train_config = {"optimizer": "user", "lr": self.lr, "batch_size": int(batch_size),
                             "sampling": sampling, "weight_decay": self.weight_decay, "probes": int(probes),
                             "lanczos_steps": int(lanczos_steps), "statistics": True}  # fmt: skip
        self.seed = int(seed)
        self.fn = self.layout = self.base = None
        self.steps: list[int] = []
        self.snaps: list[dict] = []

    def snapshot(self, step: int, models) -> None:
        """Record the current weights of ``models`` (a sequence of M modules of one architecture, in member
        order) at optimiser step ``step`` (t = lr·step), with their statistics. Steps must increase.

        Parameters
        ----------
        step : int
            The optimiser step (≥ 0, increasing).
        models : sequence of torch.nn.Module or torch.nn.Module
            The M members.
        """
        if not isinstance(step, (int, np.integer)) or step < 0:
            raise ConfigError(f"`step` must be a non-negative int, got {step!r}")
        if self.steps and step <= self.steps[-1]:
            raise ConfigError(f"`step` must increase from snapshot to snapshot: {step} after {self.steps[-1]}")
        models = list(models) if not isinstance(models, torch.nn.Module) else [models]
        if not models or not all(isinstance(m, torch.nn.Module) for m in models):
            raise ConfigError("`models` must be a non-empty sequence of torch.nn.Module (the M members)")
        with torch.no_grad():
            params, buffers = stack_module_state(models)
        params = {k: v.detach().to(device=self.device, dtype=self.dtype).clone() for k, v in params.items()}
        # floating buffers take the statistics' dtype with the parameters (a float32 model's buffer would
        # otherwise meet float64 parameters: a dtype error in a matmul); integer buffers keep theirs
        buffers = {k: v.detach().to(self.device, self.dtype if v.is_floating_point() else v.dtype)
                   for k, v in buffers.items()}  # fmt: skip
        if self.fn is None:
            self.base = copy.deepcopy(models[0]).to(device=self.device, dtype=self.dtype)
            self.layout = _Layout.of(params)
            self.fn = Functional(self.base, self.loss_fn, self.X, self.Y, buffers, self.chunk_size)
            self.fn.check_loss(params)
            self.members = len(models)
        elif _Layout.of(params) != self.layout or len(models) != self.members:
            raise ConfigError(f"`models`: every snapshot needs the same {self.members} members with parameters "
                              f"{dict(zip(self.layout.names, self.layout.shapes))}")  # fmt: skip
        self.fn.buffers = buffers
        tc = self.train_config
        probes = min(tc["probes"], self.members, _ae.LANES)
        snap = self.fn.statistics(self.layout, params,
                                  var_factor=var_factor(tc["sampling"], self.fn.n, tc["batch_size"]),
                                  weight_decay=self.weight_decay, probes=probes,
                                  lanczos_steps=tc["lanczos_steps"],
                                  probe_seed=derive_seed(self.seed, 4, len(self.snaps)))  # fmt: skip
        snap["weights"] = self.layout.flatten(params).T.cpu().numpy().astype(np.float64)
        self.steps.append(int(step))
        self.snaps.append(snap)

    def run(self) -> EnsembleRun:
        """The recorded snapshots as an :class:`fpkit.EnsembleRun` (``run.save(path)`` writes the file).

        Returns
        -------
        fpkit.EnsembleRun
            The recorded run.
        """
        if not self.snaps:
            raise ConfigError("no snapshots recorded: call `snapshot(step, models)` first")
        fields = {f: self.layout.split(np.stack([s[f].T for s in self.snaps]))
                  for f in ("weights", "grad", "grad_var", "hess_grad")}  # fmt: skip
        step = np.asarray(self.steps, dtype=np.int64)
        train = {**self.train_config, "members": self.members, "probes": min(self.train_config["probes"],
                 self.members, _ae.LANES)}  # fmt: skip
        config = {"seed": self.seed, "model": _module_config(self.base, self.loss_fn, self.layout),
                  "data": _data_config(self.X, self.Y, self.targets), "train": train}  # fmt: skip
        data = {"x": self.X.cpu().numpy()}
        if self.targets:
            data["y"] = self.Y.cpu().numpy()
        return EnsembleRun(t=self.lr * step.astype(float), step=step, eta=self.lr,
                           batch_size=self.train_config["batch_size"], config=config, **fields,
                           loss=np.stack([s["loss"] for s in self.snaps]),
                           lam_max=np.stack([s["lam_max"] for s in self.snaps]),
                           probe_members=np.arange(train["probes"]), data=data)  # fmt: skip
