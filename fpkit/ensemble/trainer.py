"""The SGD sampler's trainer: :class:`Ensemble` (initialisation, the training loop, the snapshot statistics,
Lanczos λmax, the choice of kernels) and ``fpkit train`` (:func:`cli_train`).

See the ``fpkit.ensemble`` docstring for the model, the optimisers, the recorded quantities and the file.
"""

from __future__ import annotations

import logging
import signal
import sys

import numpy as np

from ..config import load_toml, parse, plain
from ..data import Dataset, make_dataset
from ..errors import ConfigError, FpkitError, StabilityError
from ..progress import progress
from ..solvers import autoencoder as _ae
from ..solvers.lanczos import lanczos_max
from ..solvers.random import derive_seed, fill_normals, seed_streams
from .results import EnsembleRun, _MemoryStore, _Writer, start_state
from .spec import _DEFAULT_DATA, _FLAT, EnsembleSchema, shard_config, train_schedule, validate

logger = logging.getLogger(__name__)

AUTO_SPECIALISE = 5e7  # per-sample gradients in a run above which kernels="auto" compiles specialised kernels


def _lane_padded(a) -> np.ndarray:
    """(P, M) parameters or directions as a C-contiguous float64 array whose last column is repeated up to a
    multiple of ``LANES`` columns.

    The lane kernels run whole SIMD vectors of ``LANES`` members and the rest of a block lane by lane: the
    4 Lanczos probes cost 0.9 ms per Hessian-vector product lane by lane and 0.5 ms padded to one vector
    (d = 16, 512 samples). Lanes never mix, so the real columns are the same bits either way.
    """
    a = np.ascontiguousarray(a, dtype=np.float64)
    pad = -a.shape[1] % _ae.LANES
    return a if pad == 0 else np.concatenate([a, np.repeat(a[:, -1:], pad, axis=1)], axis=1)


def _columns(a, P: int, name: str) -> np.ndarray:
    """``a`` as float64 (P, M) columns, one per member, or a ConfigError naming ``name``: the lane kernels index
    rows 0..P-1 without bounds checks, so a wrong shape read and wrote outside the arrays (heap corruption)."""
    arr = np.asarray(a)
    if arr.ndim != 2 or arr.shape[0] != P or not np.issubdtype(arr.dtype, np.number):
        hint = " (transposed? members go in columns)" if arr.ndim == 2 and arr.shape[1] == P else ""
        raise ConfigError(f"`{name}` must be a numeric array of shape (P, M) = ({P}, members) for this network, "
                          f"one column per member; got shape {arr.shape}, dtype {arr.dtype}{hint}")  # fmt: skip
    return arr.astype(np.float64, copy=False)


class Ensemble:
    """An ensemble of networks trained by SGD / GD / SGLD / SVAG (see the ``fpkit.ensemble`` docstring).

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
        Flat overrides: model keys (``model`` = "autoencoder"|"mlp"|"regression", ``k`` (hidden = [k, k]),
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
        """Checks that need the data set and the resolved values (``fpkit.ensemble.spec.validate``)."""
        self.arch = validate(self.config, self.dataset)

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
            a = self.arch
            choice = self._kernel_choice()
            self._kernels = _ae if choice == "generic" else _ae.specialised(a.sizes, a.w_off, a.b_off, a.act)
        return self._kernels

    def _kernel_choice(self) -> str:
        """"specialised" or "generic": ``train.kernels``, with "auto" resolved (see ``kernels``)."""
        a, tr = self.arch, self.config["train"]
        choice = tr["kernels"]
        if choice == "auto":
            work = tr["members"] * tr["steps"] * tr["batch_size"] * tr["svag_l"] * (2 if tr["svag_l"] > 1 else 1)
            if self.dataset.n and tr["sampling"] == "full":
                work = tr["members"] * tr["steps"] * self.dataset.n
            known = _ae.specialised_exists(a.sizes, a.w_off, a.b_off, a.act)
            choice = "specialised" if (known or work >= AUTO_SPECIALISE) else "generic"
        return choice

    @property
    def schedule(self) -> np.ndarray:
        """Optimiser steps at which snapshots are taken (``fpkit.ensemble.spec.train_schedule``), increasing,
        from 0.
        """
        return train_schedule(self.config["train"])

    # ------------------------------------------------------------------------------------------ shards
    member_offset = 0  # global index of this ensemble's first member (non-zero for a shard)

    def shard(self, first: int, stop: int) -> Ensemble:
        """The members ``first .. stop - 1`` of this ensemble as an ensemble of their own (``fpkit.distributed``).

        Every member keeps the random streams of its global index, so training the shard gives bit-identical
        values to the same members of the whole ensemble when ``first`` is a multiple of the kernels' lane
        width (``fpkit.solvers.autoencoder.LANES``). The probe members (λmax) are the first ones: only the
        shard starting at member 0 tracks them, and it must hold them all. The shard's configuration says
        which members it holds (section ``shard``) and uses the whole ensemble's choice of kernels.

        Parameters
        ----------
        first, stop : int
            The members ``first .. stop - 1``.

        Returns
        -------
        Ensemble
            The shard.
        """
        import copy

        cfg = shard_config(self.config, first, stop)
        cfg["train"]["kernels"] = self._kernel_choice()
        out = copy.copy(self)
        out.config = cfg
        out.member_offset = int(first)
        out._kernels = None
        return out

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
        """Parameters (P, M), momentum buffer, per-member random streams (2, M) and permutations.

        Returns
        -------
        dict
            The training state (``theta``, ``velocity``, ``rng``, ``perm``, ``step``).
        """
        cfg, arch = self.config, self.arch
        M = cfg["train"]["members"]
        dtype = np.dtype(cfg["train"]["dtype"])
        Pw = int(sum(np.prod(s) for n, s in zip(arch.names, arch.shapes) if n.startswith("W")))
        n_init = 1 if cfg["model"]["same_init"] else M
        first = self.member_offset  # a shard's members keep the streams of their global indices
        z = np.empty((n_init, Pw))
        fill_normals(seed_streams(derive_seed(cfg["seed"], 2), n_init, first if n_init == M else 0), z)
        std = np.empty(Pw)
        for ell in range(len(arch.sizes) - 1):
            fi, fo = int(arch.sizes[ell]), int(arch.sizes[ell + 1])
            s = arch.init_std[ell]  # init and model.parameterization (spec._Arch.parameterize)
            std[arch.w_off[ell] : arch.w_off[ell] + fi * fo] = s * cfg["model"]["init_scale"]
        theta = np.zeros((arch.P, M), dtype=dtype)
        theta[:Pw] = (z * std).T if n_init == M else (z[0] * std)[:, None]
        vel = np.zeros((arch.P, M) if cfg["train"]["momentum"] > 0 else (1, 1), dtype=dtype)
        rng = np.ascontiguousarray(seed_streams(derive_seed(cfg["seed"], 1), M, first).T)
        if cfg["train"]["sampling"] == "epochs":
            perm = np.tile(np.arange(self.dataset.n, dtype=np.int32), (M, 1))
        else:
            perm = np.zeros((1, 1), dtype=np.int32)
        return {"theta": theta, "velocity": vel, "rng": rng, "perm": perm, "step": 0}

    def advance(self, state: dict, n_steps: int) -> None:
        """Run ``n_steps`` optimiser steps on ``state`` in place.

        Parameters
        ----------
        state : dict
            The training state (``initial_state``), updated in place.
        n_steps : int
            Number of steps.
        """
        if n_steps <= 0:
            return
        tr, arch, ds = self.config["train"], self.arch, self.dataset
        self._check_state(state)
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
            tr["lr"], arch.lr_rows, tr["momentum"], tr["weight_decay"], tr["temperature"], tr["svag_l"],
            int(state["step"]), int(n_steps), np.ascontiguousarray(cdf), np.ascontiguousarray(means),
            np.ascontiguousarray(factors), np.ascontiguousarray(wstar), float(ds.noise),
        )  # fmt: skip
        state["step"] += int(n_steps)

    def _check_state(self, state: dict) -> None:
        """Refuse a state whose arrays do not fit this ensemble (``train_steps`` indexes them without bounds
        checks, updating them in place), naming the entry."""
        tr = self.config["train"]
        theta = state.get("theta")
        if not (isinstance(theta, np.ndarray) and theta.ndim == 2 and theta.shape[0] == self.arch.P
                and theta.dtype.kind == "f"):  # fmt: skip
            got = f"shape {theta.shape}, dtype {theta.dtype}" if isinstance(theta, np.ndarray) else type(theta).__name__
            raise ConfigError(f'`state["theta"]` must be a float array of shape (P, M) = ({self.arch.P}, members); '
                              f"got {got} (use initial_state())")  # fmt: skip
        M = theta.shape[1]
        need = {"rng": ((2, M), np.uint64)}
        if tr["momentum"] > 0:
            need["velocity"] = (theta.shape, theta.dtype)
        if self._sampling_code() == _ae.SAMPLE_EPOCHS:
            need["perm"] = ((M, self.dataset.n), np.int32)
        for key, (shape, dtype) in need.items():
            a = state.get(key)
            if not (isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dtype):
                got = f"shape {a.shape}, dtype {a.dtype}" if isinstance(a, np.ndarray) else type(a).__name__
                raise ConfigError(f'`state["{key}"]` must be a {np.dtype(dtype)} array of shape {shape} for '
                                  f"{M} members; got {got} (use initial_state())")  # fmt: skip

    # ------------------------------------------------------------------------------------ statistics
    def full_gradient(self, theta: np.ndarray, want_sq: bool = False):
        """Full-batch data gradient (P, M), mean squared per-sample gradient (or None) and loss (M,).

        Parameters
        ----------
        theta : array (P, M)
            Flattened parameters of the M members.
        want_sq : bool
            Also return the mean squared per-sample gradient.

        Returns
        -------
        (array, array or None, array)
            The gradient (P, M), the mean square (P, M) or None, the loss (M,).
        """
        X, T, auto = self._eval_data()
        arch = self.arch
        theta = _columns(theta, arch.P, "theta")
        M = theta.shape[1]
        theta = _lane_padded(theta)
        P, Mp = theta.shape
        g = np.empty((P, Mp))
        sq = np.empty((P, Mp)) if want_sq else np.empty((1, 1))
        loss = np.empty(Mp)
        k = self.kernels
        fn = k.data_gradient if Mp > 2 * _ae.LANES else k.data_gradient_serial
        fn(theta, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, want_sq, g, sq, loss)
        cut = np.ascontiguousarray
        return cut(g[:, :M]), (cut(sq[:, :M]) if want_sq else None), cut(loss[:M])

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
        """grad, grad_var, hess_grad (P, M), loss (M,) and lam_max (n_probe,) at parameters theta.

        Parameters
        ----------
        theta : array (P, M)
            Flattened parameters of the M members.
        probe_seed : int
            Seed of the Lanczos start vectors.

        Returns
        -------
        dict
            The arrays named above.
        """
        wd = self.config["train"]["weight_decay"]
        th = _columns(theta, self.arch.P, "theta")
        g, sq, loss = self.full_gradient(th, want_sq=True)
        var = np.maximum(sq - g * g, 0.0) * self._var_factor()
        grad = g + wd * th
        hg = self._hess_vec(th, grad, g)
        lam = self.lam_max(th[:, : self.config["train"]["probes"]], probe_seed)
        return {"grad": grad, "grad_var": var, "hess_grad": hg, "loss": loss, "lam_max": lam}

    def _hess_vec(self, theta: np.ndarray, v: np.ndarray, g0: np.ndarray | None = None) -> np.ndarray:
        """H v per member (columns), H the Hessian of L + wd|w|²/2, exactly.

        Forward-over-reverse differentiation (the R-operator) in the lane kernels
        (``solvers.autoencoder.data_hess_vec``): one pass over the data, no step size, and for relu the
        almost-everywhere Hessian (activation pattern held fixed), which a finite difference crossing a
        kink gets wrong by 1/step. ``g0`` (the data gradient at theta) is not needed; kept for callers.
        """
        X, T, auto = self._eval_data()
        arch = self.arch
        theta, v = _columns(theta, arch.P, "theta"), _columns(v, arch.P, "v")
        if v.shape != theta.shape:
            raise ConfigError(f"`v` must have the shape of `theta` {theta.shape}; got {v.shape}")
        M = v.shape[1]
        theta_p, v_p = _lane_padded(theta), _lane_padded(v)
        out = np.empty_like(theta_p)
        k = self.kernels
        fn = k.data_hess_vec if theta_p.shape[1] > 2 * _ae.LANES else k.data_hess_vec_serial
        fn(theta_p, v_p, X, T, auto, arch.sizes, arch.w_off, arch.b_off, arch.act, out)
        return out[:, :M] + self.config["train"]["weight_decay"] * v

    def lam_max(self, theta: np.ndarray, seed: int = 0) -> np.ndarray:
        """Largest (algebraic) eigenvalue of the full-batch Hessian for each column of theta: ``lanczos_steps``
        Lanczos steps (``solvers.lanczos``) on the exact H v from a random start vector derived from ``seed``
        (the snapshot's); NaN for a member whose Hessian products are not finite.

        Parameters
        ----------
        theta : array (P, n)
            Flattened parameters of n members.
        seed : int
            Seed of the start vectors.

        Returns
        -------
        array (n,)
            λmax of each member (units of loss per weight²).
        """
        theta = _columns(theta, self.arch.P, "theta")
        P, n = theta.shape
        v0 = np.random.default_rng(seed).standard_normal((P, n))
        return lanczos_max(lambda v: self._hess_vec(theta, v, None), v0, self.config["train"]["lanczos_steps"])

    # ---------------------------------------------------------------------------------------- training
    def train(self, path=None, *, resume: bool = False, stop_after: int | None = None,
              show_progress: bool | None = None, callback=None, client=None,
              shards: int | None = None, virtual: bool = False) -> EnsembleRun:  # fmt: skip
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
        client : dask.distributed.Client, optional
            Train shards of members as Dask tasks on the client's cluster and merge them into ``path``
            (``fpkit.distributed.train``; needs ``fpkit[distributed]``): the same file as without a client.
        shards : int, optional
            With ``client``: the number of shards (default: two per worker).
        virtual : bool
            With ``client``: leave the shards' pieces in ``<path>.pieces-<id>/`` and make ``path`` virtual
            datasets over them instead of copying them (no serial merge; ``fpkit.distributed.consolidate``
            makes a self-contained file).

        Returns
        -------
        EnsembleRun
            The snapshots (t = η·step).
        """
        if virtual and client is None:
            raise ConfigError("`virtual=True` is for a run sharded on a Dask client (pass `client`)")
        if client is not None:
            from ..distributed import train as _train_distributed

            return _train_distributed(self, path, client=client, shards=shards, resume=resume,
                                      stop_after=stop_after, show_progress=show_progress,
                                      virtual=virtual)  # fmt: skip
        sched = self.schedule
        writer = _Writer(path, self, sched) if path is not None else None
        mem = None
        tr = self.config["train"]
        try:
            state, n_done = start_state(writer, self.initial_state, resume)
            alive = state.pop("alive", None)
            alive = np.ones(tr["members"], dtype=bool) if alive is None else np.asarray(alive, dtype=bool)
            if writer is None:
                mem = _MemoryStore(self, sched)
            store = writer if writer is not None else mem
            n_new = len(sched) - n_done if stop_after is None else min(int(stop_after), len(sched) - n_done)
            total = int(sched[n_done + n_new - 1] - state["step"]) if n_new > 0 else 0
            bar = progress(total * tr["members"], "training", enable=show_progress,
                           unit="member-step")  # fmt: skip
            try:
                for j in range(n_done, n_done + n_new):
                    while state["step"] < sched[j]:
                        chunk = int(min(sched[j] - state["step"], 256))
                        before = _copy_state(state)  # to replay the chunk if a member diverges in it
                        self.advance(state, chunk)
                        bar.update(chunk * tr["members"])
                        bad = _diverged(state["theta"], tr["divergence_bound"]) & alive
                        if np.any(bad):
                            first = self._first_divergent_steps(before, chunk, bad)
                            self._check_divergence(state, alive, bad, first, "weights")
                    snap = self._snapshot(state, j)
                    bad = _bad_statistics(snap, tr["members"]) & alive
                    if np.any(bad):
                        at = np.full(int(bad.sum()), int(state["step"]))
                        self._check_divergence(state, alive, bad, at, "statistics")
                    if not np.all(alive):  # dropped members: zeros, masked out (never NaN/inf in the file)
                        _zero_members(snap, ~alive)
                        store.put(j, state, snap, alive.copy())
                    else:
                        store.put(j, state, snap)
                    if callback is not None:
                        callback(j, int(state["step"]))
            finally:
                bar.close()
        except BaseException as exc:
            if writer is not None:
                writer.close()
                if writer.note:
                    exc.fpkit_note = writer.note
                    if isinstance(exc, FpkitError):
                        exc.args = (f"{exc.args[0] if exc.args else exc}; {writer.note}", *exc.args[1:])
            raise
        if writer is not None:
            writer.close()
            if writer.note:  # stopped early (stop_after) next to a complete file
                logger.warning(writer.note)
                return EnsembleRun.load(writer.partial)
            return EnsembleRun.load(writer.path)
        return mem.run()

    def _first_divergent_steps(self, before: dict, n_steps: int, bad: np.ndarray) -> np.ndarray:
        """The step at which each member in ``bad`` first diverged within the ``n_steps`` run from the state
        ``before``: the chunk is replayed one step at a time (the per-member random streams make the replay
        exact, as resuming is), so only a diverging run pays for it."""
        bound = self.config["train"]["divergence_bound"]
        state = _copy_state(before)
        first = np.full(bad.shape, -1, dtype=np.int64)
        for _ in range(n_steps):
            self.advance(state, 1)
            new = _diverged(state["theta"], bound) & bad & (first < 0)
            first[new] = state["step"]
            if np.all(first[bad] >= 0):
                break
        first[bad & (first < 0)] = before["step"] + n_steps  # not reproduced (cannot happen): the chunk's end
        return first[bad]

    def _check_divergence(self, state: dict, alive: np.ndarray, bad: np.ndarray, first: np.ndarray, what: str):
        """Members ``bad`` (among ``alive``) diverged, member ``bad.nonzero()[0][i]`` first at step
        ``first[i]``: stop (a StabilityError naming them and their steps) or drop them (``alive`` updated,
        their state set to zeros so that they stay finite)."""
        bad = bad & alive
        if not np.any(bad):
            return
        tr = self.config["train"]
        ids = np.nonzero(bad)[0]
        first = np.asarray(first, dtype=np.int64)
        order = np.argsort(first, kind="stable")  # earliest first
        step = int(first.min())
        shown = ", ".join(f"{ids[i]} (step {first[i]})" for i in order[:12]) + (", ..." if ids.size > 12 else "")
        what = ("weights turned non-finite or exceeded |w| > " f"{tr['divergence_bound']:g}" if what == "weights"
                else "snapshot statistics (gradient, loss or λmax) turned non-finite")  # fmt: skip
        msg = (f"{ids.size} of {alive.size} members diverged ({what}), the first at step {step} "
               f"(t = {tr['lr'] * step:g}): members [{shown}]")  # fmt: skip
        if tr["on_divergence"] == "stop":
            raise StabilityError(
                f"{msg}; lower `train.lr`, or set `train.on_divergence = \"drop\"` to continue without them",
                time=tr["lr"] * step,
            )
        alive[bad] = False
        if not np.any(alive):
            raise StabilityError(f"{msg}: every member has diverged; lower `train.lr`", time=tr["lr"] * step)
        state["theta"][:, bad] = 0.0
        if state["velocity"].shape == state["theta"].shape:
            state["velocity"][:, bad] = 0.0
        logger.warning("%s; dropped (train.on_divergence = 'drop'), %d members left", msg, int(alive.sum()))

    def _snapshot(self, state: dict, j: int) -> dict:
        th = state["theta"]
        snap = {"weights": np.asarray(th, dtype=np.float64)}
        if self.config["train"]["statistics"]:
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging member is reported by the caller
                snap.update(self.statistics(th, probe_seed=derive_seed(self.config["seed"], 4, j)))
        return snap


def _copy_state(state: dict) -> dict:
    """An independent copy of a training state (arrays copied, the step kept)."""
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in state.items()}


def _diverged(theta: np.ndarray, bound: float) -> np.ndarray:
    """Members (columns) whose parameters are non-finite or exceed ``bound`` in absolute value."""
    with np.errstate(invalid="ignore"):
        big = np.abs(theta).max(axis=0) if theta.size else np.zeros(theta.shape[1])
    return ~(big <= bound)  # NaN compares False: non-finite counts as diverged


def _bad_statistics(snap: dict, M: int) -> np.ndarray:
    """Members whose snapshot values (weights, gradients, loss; λmax of the probe members) are non-finite."""
    bad = np.zeros(M, dtype=bool)
    for key, v in snap.items():
        v = np.asarray(v)
        if v.ndim == 2 and v.shape[1] == M:
            bad |= ~np.all(np.isfinite(v), axis=0)
        elif key == "loss":
            bad |= ~np.isfinite(v)
        elif key == "lam_max":
            bad[: v.size] |= ~np.isfinite(v)
    return bad


def _zero_members(snap: dict, dead: np.ndarray) -> None:
    """Zeros in place of the values of dropped members (the mask ``alive`` says which)."""
    for key, v in snap.items():
        if v.ndim == 2 and v.shape[1] == dead.size:
            snap[key] = np.where(dead[None, :], 0.0, v)
        elif key == "loss":
            snap[key] = np.where(dead, 0.0, v)
        elif key == "lam_max":
            snap[key] = np.where(dead[: v.size], 0.0, v)


# -------------------------------------------------------------------------------------------------- CLI
def cli_train(args) -> int:
    """``fpkit train config.toml -o ensemble.h5 [--resume]``; SIGTERM stops like Ctrl-C (snapshots kept)."""
    ens = Ensemble(load_toml(args.config))

    def terminate(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        from ..distributed import client_from_args  # --workers / --scheduler (Dask imported only then)

        with client_from_args(args) as client:
            run = ens.train(args.output, resume=bool(getattr(args, "resume", False)), client=client,
                            virtual=bool(getattr(args, "virtual", False)) and client is not None)  # fmt: skip
    except KeyboardInterrupt as exc:
        note = getattr(exc, "fpkit_note", None) or (
            f"{args.output} holds the snapshots so far (continue with --resume)")  # fmt: skip
        print(f"fpkit train: interrupted; {note}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    n_dropped = len(getattr(run, "dropped", ()))
    dropped = f"; {n_dropped} diverged members dropped" if n_dropped else ""
    print(f"wrote {args.output}: {run!r}{dropped}")
    return 0
