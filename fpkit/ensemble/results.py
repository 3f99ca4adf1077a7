"""The SGD sampler's results: :class:`EnsembleRun` and the HDF5 file (``kind = "ensemble"``): its layout,
the crash-safe incremental writer of a training run, the in-memory store and the reader.

See the ``fpkit.ensemble`` docstring for every attribute and the file format.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mmap
import os
import shutil
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from ..errors import ConfigError, FileFormatError, StabilityError, check_positive
from ..io import (FORMAT_VERSION, _fsync, check_output_file, ensure_space, get_json_attr, release_reserve,
                  reserve_space, set_json_attr)

if TYPE_CHECKING:
    from .trainer import Ensemble

KIND = "ensemble"
FIELDS = ("weights", "grad", "grad_var", "hess_grad")


# ---------------------------------------------------------------------------------------------- storage
def _unadvised_empty(shape: tuple, dtype) -> np.ndarray:
    """``np.empty(shape, dtype)`` in its own anonymous memory map: freed (unmapped) with the last view of it,
    and without the transparent-huge-page advice numpy gives its own allocations of 4 MB and more. With that
    advice, each first write to a page of a store that is filled one snapshot at a time made the kernel try to
    assemble a huge page (direct compaction), usually in vain: the store's copies cost ~10x their ordinary
    page faults (the flagship's 50 snapshots: ~4 CPU-s instead of ~0.3)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes == 0 or not hasattr(mmap, "MAP_PRIVATE"):  # (Windows: no fork, and numpy gives no THP advice)
        return np.empty(shape, dtype)
    # private, as numpy's memory: mmap's default MAP_SHARED would let a forked child's writes reach the run
    buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
    if hasattr(mmap, "MADV_NOHUGEPAGE"):  # where THP is "always", private maps would get the huge pages
        buf.madvise(mmap.MADV_NOHUGEPAGE)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


class _MemoryStore:
    """A run kept in memory: every snapshot's fields (P, M) go straight into preallocated per-parameter arrays
    (n_snap, M, *shape), the run's final layout. (Keeping per-snapshot copies and stacking and splitting them
    at the end held each field two to three times: the peak memory of the flagship run.)"""

    def __init__(self, ens: Ensemble, sched):
        self.ens, self.sched = ens, sched
        self.snaps: list = []  # per snapshot: the small entries (loss, lam_max, alive)
        self.fields: dict = {}  # field -> name -> (len(sched), M, *shape)

    def put(self, j, state, snap, alive=None):
        arch, i = self.ens.arch, len(self.snaps)
        for f in FIELDS:
            if f not in snap:
                continue
            v = snap[f]  # (P, M)
            if f not in self.fields:
                self.fields[f] = {name: _unadvised_empty((len(self.sched), v.shape[1]) + shape, v.dtype)
                                  for name, shape in zip(arch.names, arch.shapes)}  # fmt: skip
            for name, part in arch.views(v.T).items():
                self.fields[f][name][i] = part
        self.snaps.append({k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in snap.items()
                           if k not in FIELDS})  # fmt: skip
        if alive is not None:
            self.snaps[-1]["alive"] = np.array(alive, dtype=bool)

    def run(self) -> EnsembleRun:
        ens = self.ens
        n = len(self.snaps)
        # the snapshots taken (fewer than scheduled after stop_after): a leading slice, still contiguous
        fields = {f: {name: a[:n] for name, a in d.items()} for f, d in self.fields.items()}
        stats = "loss" in self.snaps[0]
        alive = (np.stack([s.get("alive", np.ones(ens.config["train"]["members"], bool)) for s in self.snaps])
                 if any("alive" in s for s in self.snaps) else None)  # fmt: skip
        return EnsembleRun(
            t=ens.config["train"]["lr"] * self.sched[:n].astype(float), step=self.sched[:n].copy(),
            eta=ens.config["train"]["lr"], batch_size=ens.config["train"]["batch_size"], config=ens.config,
            weights=fields["weights"], grad=fields.get("grad"), grad_var=fields.get("grad_var"),
            hess_grad=fields.get("hess_grad"),
            loss=np.stack([s["loss"] for s in self.snaps]) if stats else None,
            lam_max=np.stack([s["lam_max"] for s in self.snaps]) if stats else None,
            probe_members=np.arange(ens.config["train"]["probes"]) if stats else None,
            data={"x": ens.dataset.x_eval, "y": ens.dataset.y_eval}, alive=alive,
        ).without_diverged()  # fmt: skip


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


def start_state(writer, initial_state, resume: bool):
    """(state, snapshots already stored) to start training from: the stored run's last state with ``resume``,
    else a fresh ``initial_state()``, its file created when there is a ``writer``."""
    if resume:
        if writer is None:
            raise ConfigError("`resume=True` needs `path`")
        return writer.open_resume()
    state = initial_state()
    if writer is not None:
        writer.create(state)
    return state, 0


class _Writer:
    """Crash-safe incremental HDF5 writer: ``<path>.partial`` flushed per snapshot.

    ``close`` gives the partial file the output's name when the run is complete, or when it is incomplete
    (interrupted, stopped, failed) and no complete file is at the output; an incomplete run never replaces a
    complete file: the ``.partial`` then stays beside it and ``note`` says how to resume or discard it. A
    failed write (no space left, I/O error) removes the ``.partial`` and raises one OutputError; a refused
    resume leaves every file as it was.
    """

    def __init__(self, path, ens: Ensemble, sched):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.ens, self.sched = ens, sched
        self.f = None
        self.n_done = 0
        self.note = None
        self._failed = False

    def _meta(self, n_done):
        ens = self.ens
        tr = ens.config["train"]
        return _meta(ens.config, ens.arch.names, ens.arch.shapes, tr["lr"], tr["batch_size"], tr["members"],
                     len(self.sched), n_done, tr["probes"], n_done == len(self.sched))  # fmt: skip

    def _write_failed(self, exc):
        """Close and remove the .partial after a failed write; the one error to raise."""
        from ..io import write_error

        self._failed = True
        self._close_file()
        with contextlib.suppress(OSError):
            os.unlink(self.partial)
        err = write_error(self.partial, exc)
        what = "no space left on device" if err.errno == errno.ENOSPC else f"could not write ({exc})"
        err.args = (f"{what} while writing {self.partial}; removed it, the previous {self.path.name} (if any) is "
                    "unchanged",)  # fmt: skip
        return err

    def _close_file(self):
        from ..io import _close_h5

        if self.f is not None:
            f, self.f = self.f, None
            _close_h5(f)

    def create(self, state):
        ens = self.ens
        check_output_file(self.path, what="path")
        check_output_file(self.partial, what="path")
        try:
            if self.path.parent and not self.path.parent.exists():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            ds = ens.dataset
            ensure_space(self.partial, sum(np.asarray(v).nbytes for v in (*state.values(), ds.x_eval, ds.y_eval)
                                           if v is not None))  # fmt: skip
            f = self.f = h5py.File(self.partial, "w")
            reserve_space(self.partial, sum(np.asarray(v).nbytes for v in (*state.values(), ds.x_eval, ds.y_eval)
                                            if v is not None))  # fmt: skip
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
        except OSError as exc:
            raise self._write_failed(exc) from exc

    def open_resume(self):
        from ..io import reading

        src = self.partial if self.partial.exists() else self.path
        if not src.exists():
            raise ConfigError(f"`resume`: no file {str(self.path)!r} (or .partial) to resume from")
        check_output_file(self.path, what="path")
        copied = src == self.path
        try:
            if copied:
                try:
                    shutil.copyfile(self.path, self.partial)
                except OSError as exc:
                    raise self._write_failed(exc) from exc
            try:
                f = self.f = h5py.File(self.partial, "a")
            except OSError as exc:
                raise FileFormatError(f"`resume`: {str(src)!r} is not a readable ensemble file ({exc})",
                                      src) from None  # fmt: skip
            with reading(src, "ensemble file"):
                if f.attrs.get("kind") != KIND:
                    raise FileFormatError(f"`resume`: {str(src)!r} is not an ensemble file", src)
                meta = get_json_attr(f, "meta")
                stored = json.loads(json.dumps(meta["config"]))
                for key, value in RESUME_DEFAULTS.items():  # files written before these keys existed
                    stored.get("train", {}).setdefault(key, value)
                if stored != json.loads(json.dumps(self.ens.config, default=_jd)):
                    raise ConfigError(
                        f"`resume`: the configuration differs from the one stored in {str(src)!r}; resume with "
                        "the stored configuration, or start afresh without --resume"
                    )
                st = f["state"]
                state = {k: st[k][()] for k in ("theta", "velocity", "rng", "perm")}
                state["step"] = int(st.attrs["step"])
                state["alive"] = st["alive"][()].astype(bool) if "alive" in st else None
                n_done = int(meta["n_done"])
            if n_done > 0 and state["step"] != int(self.sched[n_done - 1]):
                raise FileFormatError(
                    f"`resume`: the stored state in {str(src)!r} does not match its last snapshot; the file is "
                    "damaged", src,
                )  # fmt: skip
        except BaseException:
            # a refused resume changes nothing: close, and remove the copy made for it
            self._failed = True
            self._close_file()
            if copied:
                with contextlib.suppress(OSError):
                    os.unlink(self.partial)
            raise
        self.n_done = n_done
        return state, n_done

    def put(self, j, state, snap, alive=None):
        f, arch = self.f, self.ens.arch
        try:
            # blocks reserved before HDF5 writes: a disk filled by another process meanwhile cannot reach it
            reserve_space(self.partial, sum(np.asarray(v).nbytes for v in (*snap.values(), *state.values())))
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
            if alive is not None and ("alive" in f or not np.all(alive)):
                # divergence: stored as a mask (members dropped from then on), never as NaN/inf
                if "alive" not in f:
                    M = alive.size
                    f.create_dataset("alive", shape=(len(self.sched), M), dtype=bool, fillvalue=True)
                    st.create_dataset("alive", data=np.ones(M, dtype=bool))
                f["alive"][j] = alive
                st["alive"][...] = alive
            set_json_attr(f, "meta", self._meta(j + 1))
            f.flush()
        except OSError as exc:
            raise self._write_failed(exc) from exc
        self.n_done = j + 1

    def close(self):
        """Close the file and give it the output's name unless that would replace a complete file with an
        incomplete one (see the class docstring); ``note`` then says where the incomplete run is."""
        if self.f is None or self._failed:
            self._close_file()
            return
        try:
            self.f.flush()
            self._close_file()
            release_reserve(self.partial)
            _fsync(self.partial)  # on disk before it takes the output's name
        except OSError as exc:
            raise self._write_failed(exc) from exc
        complete = self.n_done == len(self.sched)
        if complete or not _is_complete_file(self.path):
            os.replace(self.partial, self.path)
            return
        self.note = (
            f"{self.path} is a complete run and was left unchanged; the incomplete run ({self.n_done} of "
            f"{len(self.sched)} snapshots) is in {self.partial}: continue it with --resume (resume=True), "
            "or delete it"
        )


# keys added to the train section after files were written: a stored configuration without them had these
RESUME_DEFAULTS = {"on_divergence": "stop", "divergence_bound": 1e6}


def _check_loaded(run, meta: dict, n: int, path: Path) -> None:
    """A file whose datasets disagree with its own ``meta`` (shapes, members, snapshot count) or hold
    non-finite weights or losses in completed snapshots is damaged: the writer stores divergence as the mask
    ``alive`` (zeros after it), never as NaN/inf, and a snapshot HDF5 lost on the way reads as its NaN fill.
    Refused here with the dataset named, instead of NaN in every statistic or a plotting traceback."""

    def bad(what):
        raise FileFormatError(f"ensemble file {str(path)!r} is damaged: {what}", path)

    M = int(meta["members"])
    if run.t.shape != (n,) or run.step.shape != (n,):
        bad(f"`t`/`step` hold {run.t.size}/{run.step.size} snapshot times, its metadata says {n} were written")
    if not (np.all(np.isfinite(run.t)) and np.all(np.diff(run.t) >= 0)):
        bad("`t` is not a finite non-decreasing sequence of times")
    for fld in FIELDS:
        for name, shape in zip(meta["names"], meta["shapes"]):
            d = getattr(run, fld)
            if d is not None and d[name].shape != (n, M, *shape):
                bad(f"`{fld}/{name}` has shape {d[name].shape}, its metadata says {(n, M, *shape)}")
    for name, w in run.weights.items():
        if not np.all(np.isfinite(w)):
            bad(f"`weights/{name}` holds {np.size(w) - np.count_nonzero(np.isfinite(w))} non-finite values "
                "in written snapshots")  # fmt: skip
    if run.loss is not None and (run.loss.shape != (n, M) or not np.all(np.isfinite(run.loss))):
        bad(f"`loss` is not a finite ({n}, {M}) array (shape {run.loss.shape})")


def _is_complete_file(path: Path) -> bool:
    """True if ``path`` is a file that is not an incomplete ensemble run (a complete run or any other file)."""
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as f:
            if f.attrs.get("kind") != KIND:
                return True
            return bool(get_json_attr(f, "meta").get("complete", True))
    except Exception:  # not readable as an ensemble run: not ours to replace
        return True


def _jd(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(repr(o))


# ---------------------------------------------------------------------------------------------- results
class EnsembleRun:
    """Snapshots of a trained ensemble (see the ``fpkit.ensemble`` docstring for every attribute and the file
    format).

    Parameters
    ----------
    t : array (n_snap,)
        Snapshot times t = η·step.
    step : array of int (n_snap,)
        Optimiser steps of the snapshots.
    eta, batch_size : float, int
        Learning rate η and batch size B.
    config : dict
        The resolved configuration.
    weights : dict
        name -> (n_snap, M, *shape) weights.
    grad, grad_var, hess_grad : dict, optional
        name -> (n_snap, M, *shape): full-batch gradient, variance of the minibatch-mean gradient, H·grad.
    loss : array (n_snap, M), optional
        Full-batch data loss.
    lam_max : array (n_snap, n_probe), optional
        Largest Hessian eigenvalue of the probe members.
    probe_members : array of int (n_probe,), optional
        Which members ``lam_max`` is for.
    data : dict, optional
        The training (and evaluation) data.
    alive : array of bool (n_snap, M), optional
        Which members were still healthy at each snapshot.
    member_ids : array of int (M,), optional
        Original index of every member kept (default 0 .. M − 1).
    """

    kind = KIND

    def __init__(self, *, t, step, eta, batch_size, config, weights, grad=None, grad_var=None, hess_grad=None,
                 loss=None, lam_max=None, probe_members=None, data=None, alive=None, member_ids=None):  # fmt: skip
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
        # divergence (train.on_divergence = "drop"): alive (n_snap, M) says which members were still healthy at
        # each snapshot; member_ids the original index of every member kept (see without_diverged)
        self.alive = None if alive is None else np.asarray(alive, dtype=bool)
        self.member_ids = np.arange(self.members) if member_ids is None else np.asarray(member_ids, np.int64)
        self.dropped = np.zeros(0, dtype=np.int64)

    def without_diverged(self) -> EnsembleRun:
        """The run without the members that diverged at some snapshot (dropped by ``on_divergence = "drop"``),
        so that every statistic and estimate made from it uses only healthy members; ``dropped`` lists the
        original indices of the members left out, ``member_ids`` those of the members kept. Returns self when
        no member diverged.

        Returns
        -------
        EnsembleRun
            The healthy members' run (or self).
        """
        if self.alive is None or self.alive.size == 0 or np.all(self.alive):
            return self
        keep = np.all(self.alive, axis=0)
        if not np.any(keep):
            raise StabilityError("every member of the ensemble diverged: nothing is left to analyse; lower "
                                 "`train.lr`")  # fmt: skip

        def sel(d):
            return None if d is None else {k: v[:, keep] for k, v in d.items()}

        lam, probes = self.lam_max, self.probe_members
        if lam is not None and probes is not None:
            ok = keep[probes]
            lam = lam[:, ok]
            probes = (np.cumsum(keep) - 1)[probes[ok]]
        out = EnsembleRun(t=self.t, step=self.step, eta=self.eta, batch_size=self.batch_size, config=self.config,
                          weights=sel(self.weights), grad=sel(self.grad), grad_var=sel(self.grad_var),
                          hess_grad=sel(self.hess_grad), loss=None if self.loss is None else self.loss[:, keep],
                          lam_max=lam, probe_members=probes, data=self.data, alive=None,
                          member_ids=self.member_ids[keep])  # fmt: skip
        out.dropped = self.member_ids[~keep]
        return out

    @property
    def names(self) -> tuple:
        """Names of the recorded parameters, in order (e.g. ``("W1", "W2", "W3")``)."""
        return tuple(self.weights)

    @property
    def shapes(self) -> dict:
        """name -> the parameter's shape (without the snapshot and member axes)."""
        return {k: v.shape[2:] for k, v in self.weights.items()}

    @property
    def members(self) -> int:
        """Number M of members."""
        return next(iter(self.weights.values())).shape[1]

    def flat(self, field: str = "weights") -> np.ndarray:
        """All entries side by side: (n_snap, M, P) in the order of ``names`` (row-major within each).

        Parameters
        ----------
        field : str
            ``"weights"``, ``"grad"``, ``"grad_var"`` or ``"hess_grad"``.

        Returns
        -------
        array (n_snap, M, P)
            The entries.
        """
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

        Parameters
        ----------
        t : array (n_snap,)
            Snapshot times (t = η·step).
        weights : dict
            name -> (n_snap, M, *shape).
        eta : float
            Learning rate η (t = η·step).
        batch_size : int
            Batch size B.
        step : array of int (n_snap,), optional
            Optimiser steps (default round(t / eta)).
        config : dict, optional
            A configuration to store with the run.
        grad, grad_var, hess_grad : dict, optional
            Per-entry statistics, shaped like ``weights``.
        loss : array (n_snap, M), optional
            Full-batch loss.
        lam_max : array (n_snap, n_probe), optional
            Largest Hessian eigenvalues (probe members 0 .. n_probe − 1).

        Returns
        -------
        EnsembleRun
            The run.
        """
        t = np.asarray(t, dtype=float)
        if t.ndim != 1:
            raise ConfigError("`t` must be one-dimensional (n_snap,)")
        if not isinstance(weights, dict) or not weights:
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
            if not isinstance(d, dict):
                raise ConfigError(f"`{name}` must map the names of `weights` to arrays of their shapes, not a "
                                  f"{type(d).__name__}")  # fmt: skip
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
        """Write the run in the ensemble file format (atomically).

        Parameters
        ----------
        path : str or Path
            The results file.

        Returns
        -------
        Path
            The written file.
        """
        from ..io import atomic_h5

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
    def load(cls, path, fields=FIELDS, *, drop_diverged: bool = True) -> EnsembleRun:
        """Read an ensemble file (only its completed snapshots); ``fields`` limits which groups are read.

        Members that diverged in a run with ``on_divergence = "drop"`` are left out (``drop_diverged=False``
        keeps them, with their stored values (zeros from the divergence on) and the mask ``alive``). A missing,
        empty, truncated or foreign file is a FileFormatError naming it.

        Parameters
        ----------
        path : str or Path
            The ensemble file.
        fields : sequence of str
            Groups to read (default all: weights and every statistic).
        drop_diverged : bool
            Leave out members that diverged.

        Returns
        -------
        EnsembleRun
            The run.
        """
        from ..io import open_h5, reading, virtual_sources_missing

        path = Path(path)
        with open_h5(path, "ensemble file") as f, reading(path, "ensemble file"):
            if f.attrs.get("kind") != KIND:
                raise FileFormatError(f"`path` {str(path)!r} holds {f.attrs.get('kind')!r}, not an ensemble", path)
            missing = virtual_sources_missing(f)  # a virtual merge's pieces (fpkit.distributed) moved or deleted
            if missing:
                raise FileFormatError(
                    f"ensemble file {str(path)!r} reads its snapshots from shard pieces that are missing: "
                    f"{', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''} (keep the folder beside the "
                    "file, or make a self-contained copy with fpkit.distributed.consolidate)", path)  # fmt: skip
            meta = get_json_attr(f, "meta")
            n = int(meta["n_done"])
            if n < 1:
                raise FileFormatError(f"ensemble file {str(path)!r} holds no snapshot yet (resume it)", path)
            out = {}
            for fld in FIELDS:
                if fld in f and (fld == "weights" or fld in fields):
                    out[fld] = {name: f[fld][name][:n] for name in meta["names"]}
            data = {k: f["data"][k][()] for k in f["data"]} if "data" in f else {}
            run = cls(t=f["t"][:n], step=f["step"][:n], eta=meta["eta"], batch_size=meta["batch_size"],
                      config=meta["config"], weights=out["weights"], grad=out.get("grad"),
                      grad_var=out.get("grad_var"), hess_grad=out.get("hess_grad"),
                      loss=f["loss"][:n] if "loss" in f else None,
                      lam_max=f["lam_max"][:n] if "lam_max" in f else None,
                      probe_members=meta.get("probe_members"), data=data,
                      alive=f["alive"][:n] if "alive" in f else None)  # fmt: skip
            _check_loaded(run, meta, n, path)
        return run.without_diverged() if drop_diverged else run

    def __repr__(self) -> str:
        return (f"EnsembleRun({self.t.size} snapshots, M={self.members}, names={self.names}, eta={self.eta}, "
                f"B={self.batch_size}, t in [{self.t[0]:g}, {self.t[-1]:g}])")  # fmt: skip
