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
``hess_grad[name]``    (n_snap, M, *shape)  H·grad (H the Hessian of L + wd|w|²/2), exact: forward-over-
                                            reverse in the kernels (relu: the a.e. Hessian);
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
the output when it finishes, or when it stops early (Ctrl-C, SIGTERM, a divergence) and no complete run is at
the output; an incomplete run never replaces a complete file (the ``.partial`` then stays beside it and the
message says so). A failed write (no space left) removes the ``.partial`` and raises one OutputError.
``resume=True`` (``fpkit train --resume``) continues from the last snapshot bit-identically.

Divergence (``train.on_divergence``): members whose weights turn non-finite or exceed
``train.divergence_bound`` (checked every ≤ 256 steps, and their snapshot statistics) are named; ``"stop"``
raises a StabilityError (the snapshots so far are kept), ``"drop"`` zeroes them from then on and stores the
mask ``alive`` (n_snap, M) (state ``alive`` (M,)), never NaN/inf. ``EnsembleRun.load`` leaves the dropped
members out (``run.dropped``, ``run.member_ids``; ``drop_diverged=False`` keeps them with ``run.alive``).
"""

# every name importable from ``fpkit.ensemble`` before it became a package, private helpers included
from .results import (
    FIELDS,
    KIND,
    EnsembleRun,
    _compression,
    _create_layout,
    _jd,
    _MemoryStore,
    _meta,
    _Writer,
)
from .spec import (
    _DEFAULT_DATA,
    _FLAT,
    DEFAULTS,
    INITS,
    OPTIMIZERS,
    EnsembleSchema,
    ModelSchema,
    TrainSchema,
    _Arch,
    snapshot_schedule,
)
from .trainer import AUTO_SPECIALISE, Ensemble, cli_train

__all__ = [
    "AUTO_SPECIALISE",
    "DEFAULTS",
    "FIELDS",
    "INITS",
    "KIND",
    "OPTIMIZERS",
    "Ensemble",
    "EnsembleRun",
    "EnsembleSchema",
    "ModelSchema",
    "TrainSchema",
    "cli_train",
    "snapshot_schedule",
]
