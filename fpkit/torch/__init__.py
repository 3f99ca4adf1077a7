"""fpkit's PyTorch bridge (optional extra ``fpkit[torch]``; ``import fpkit`` never imports torch).

Bring your own model: any ``torch.nn.Module`` with any differentiable loss goes through the same pipeline as
the numba trainer's networks (``fpkit.predict``, the experiments, the reports).

* :class:`TorchEnsemble` trains M independently initialised copies of a module with the numba trainer's
  optimisers (sgd, gd, sgld, svag), minibatch samplings (iid, distinct, epochs, full), per-member random
  streams and snapshot schedule, vectorised over members by ``torch.func`` (``stack_module_state``,
  ``functional_call``, ``vmap``): no Python loop over members.
* :class:`Recorder` records the same statistics for M runs of the user's own training loop.
* :func:`minibatch_indices` gives the minibatches both trainers draw, for a hand-written loop to replay.

Both write the ``fpkit.ensemble`` run (:class:`fpkit.EnsembleRun`, HDF5 ``kind = "ensemble"``). Entries are
named by the module's parameter names: ``run.weights["encoder.0.weight"]`` has shape (n_snap, M, *shape) and
``fpkit.predict(run, "encoder.0.weight[1,5]")`` predicts one entry.

Conventions (those of ``fpkit.ensemble``): the minibatch loss is the mean over B samples of a per-sample loss;
time is t = η·step (η = ``lr``); Itô SDE dw = −∇L dt + √(2D) dW with D = (η/2)·Σ, Σ the covariance of the
minibatch-mean gradient, whose diagonal is recorded as ``grad_var`` (never σ). At every snapshot:

``grad``       full-batch gradient of L + wd|w|²/2 (the drift is −grad)
``grad_var``   per-entry variance of the minibatch-mean gradient: per-sample variance over the data / B
               (iid), × (n − B)/(n − 1) (distinct, epochs), 0 (full)
``hess_grad``  H·grad, H the Hessian of L + wd|w|²/2, **exact** (forward-over-reverse: ``jvp`` of
               ``grad``, no step size; reverse-over-reverse for losses whose ops lack forward mode, such
               as torch's ``nn.MSELoss``)
``loss``       full-batch data loss L; ``lam_max``: largest Hessian eigenvalue of the probe members by
               Lanczos with exact H·v (η·lam_max → 2 is the edge of stability)

Per-sample gradients are computed in chunks of samples (``chunk_size``) so that large models fit in memory.
Models must treat the samples of a batch independently (no BatchNorm in training mode) and be deterministic
(no dropout).

Device: ``device="cpu"`` (default) or ``"cuda"``; members are initialised on the CPU (the same weights on any
device) and every tensor of training and statistics lives on ``device``; files are written from CPU copies.
Beyond one machine: ``TorchEnsemble(...).train(path, client=client)`` trains shards of members as Dask tasks
(``fpkit.distributed``; the module and loss travel by cloudpickle) and merges them into the same file, bit for
bit, as one process.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, check_choice
from ..solvers import autoencoder as _ae
from ..solvers.random import derive_seed, seed_streams
from ._streams import draw_plan
from .ensemble import TorchEnsemble, member_seed
from .recorder import Recorder

__all__ = ["Recorder", "TorchEnsemble", "member_seed", "minibatch_indices"]


def minibatch_indices(n: int, batch_size: int, members: int, steps: int, *, sampling: str = "iid",
                      seed: int = 0) -> np.ndarray:  # fmt: skip
    """Indices (steps, members, batch_size) of the minibatches that ``fpkit.Ensemble`` and
    :class:`TorchEnsemble` with this ``seed`` draw for each member at steps 0 .. steps − 1 of plain SGD
    (optimizer "sgd" or momentum; SGLD and SVAG take more numbers from the same streams), over a data set of
    ``n`` samples with ``sampling`` "iid", "distinct" or "epochs".

    Parameters
    ----------
    n : int
        Size of the data set.
    batch_size : int
        B, samples per minibatch.
    members : int
        M, ensemble members.
    steps : int
        Number of SGD steps.
    sampling : str
        ``"iid"``, ``"distinct"`` or ``"epochs"``.
    seed : int
        The ensemble's seed.

    Returns
    -------
    array of int (steps, members, batch_size)
        Indices into the data set.
    """
    check_choice("sampling", sampling, ("iid", "distinct", "epochs"))
    for name, v in (("n", n), ("batch_size", batch_size), ("members", members), ("steps", steps)):
        if not isinstance(v, (int, np.integer)) or v < (0 if name == "steps" else 1):
            raise ConfigError(f"`{name}` must be a positive int, got {v!r}")
    if sampling != "iid" and batch_size > n:
        raise ConfigError(f"`batch_size` = {batch_size} exceeds `n` = {n} with sampling {sampling!r}")
    rng = np.ascontiguousarray(seed_streams(derive_seed(seed, 1), members).T)
    perm = (np.tile(np.arange(n, dtype=np.int32), (members, 1)) if sampling == "epochs"
            else np.zeros((1, 1), dtype=np.int32))  # fmt: skip
    idx = np.zeros((steps, 1, batch_size, members), dtype=np.int64)
    draw_plan(rng, perm, n, batch_size, _ae.SAMPLINGS[sampling], 0, idx, np.zeros((steps, 0, members)))
    return idx[:, 0].transpose(0, 2, 1).copy()
