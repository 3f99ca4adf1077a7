"""Beyond one machine: ensembles, sweeps and experiments on Dask (``pip install "fpkit[distributed]"``).

fpkit builds on Dask's distributed scheduler (``dask.distributed``): a ``LocalCluster`` of worker processes on
one machine, any scheduler address, or ``dask-jobqueue`` on SLURM/PBS. Everything here is optional: without a
client fpkit runs in one process, and without Dask installed nothing imports it.

Sharded training (``Ensemble(...).train(path, client=client)``, ``fpkit train cfg.toml -o out.h5 --workers N``)
    The members are cut into shards whose bounds are multiples of the kernels' lane width
    (``fpkit.solvers.autoencoder.LANES`` = 8); shard ``[a, b)`` is ``Ensemble.shard(a, b)``, whose members keep
    the random streams of their global indices (initialisation, minibatches, noise), so every value is
    bit-identical to the same member of a one-process run, whatever the number of shards or workers. The probe
    members of λmax are the first ones and live in the first shard, which alone runs Lanczos (with the same
    start vectors as a one-process run). Each shard is one Dask task that writes its own piece,
    ``<path>.shards/members-<a>-<b>.h5`` (the crash-safe ensemble file of the shard), and the client merges
    the pieces into ``path``: the documented ensemble file, with the same datasets, values and resume state as a
    one-process run (only the ``created`` time differs). Pieces must be on a file system the workers and the
    client share (one machine, or a cluster's shared file system).

Resume and faults
    ``resume=True`` (``--resume``) continues shard by shard: complete pieces are kept, the others resume from
    their last snapshot. A worker that dies mid-run (killed, out of memory, node lost) has its task
    rescheduled by Dask on another worker; the task resumes the shard from its piece's last snapshot (or
    starts the shard afresh if the dying worker left the piece unreadable), so nothing is lost or counted
    twice and the merged file is that of an undisturbed run. A shard that fails (e.g. a ``StabilityError``)
    stops the others at their next check; the pieces stay for ``resume``.

Progress
    One bar on the client over all shards (member-steps), fed by events the shard tasks publish.

Sweeps and experiments
    :func:`map_tasks` runs independent calls (sweep cells, per-entry predictions) as Dask tasks and returns
    their results in order; experiments use it when ``fpkit.experiments.run(..., client=client)`` (``fpkit
    experiment run NAME --workers N``) gives them a client.

Why the pieces are merged into one HDF5 file by default (rather than written in place into a Zarr store): the
merged file is the one documented format every reader of fpkit takes, self-contained and atomic. The price is a
serial copy on the client after the shards: ``scripts/bench_distributed.py`` measures it (≈ 10-37 s per GB
wall, ≈ 3-11 s per GB of CPU on a shared 2-core VM, pieces in the page cache). Its ratio to the training time
per worker does not depend on the number of members: ≈ 32·P·S·W·r·t_GB / (10⁹·steps) for P parameters, S
snapshots with statistics, W workers each training r member-steps/s, t_GB seconds per GB: 7-9 % on the 2
workers measured, but for 64 workers, 10⁴ steps and 60 snapshots the projected efficiency falls to ≈ 0.6 with
full-core workers. For such runs ``virtual=True`` (``fpkit train --virtual``) copies no snapshot: the file
holds HDF5 virtual datasets over the pieces (kept in ``<path>.pieces-<id>/``), read by h5py and every fpkit
loader with the same values; only the resume state is copied, so the merge grows with the members but not
with the snapshots (projected efficiency ≈ 0.99 there). HDF5 virtual datasets rather than Zarr: no new
dependency and no second format for readers; :func:`consolidate` turns such a file into a self-contained one.
A missing piece is a FileFormatError on loading (HDF5 alone would read its part as NaN).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import h5py
import numpy as np

from .errors import ConfigError, FileFormatError, FpkitError

log = logging.getLogger(__name__)

PIECE_FORMAT = 1
INSTALL_HINT = 'pip install "fpkit[distributed]" (Dask\'s distributed scheduler)'


# ------------------------------------------------------------------------------------------ Dask access
def have_dask() -> bool:
    """True if ``dask.distributed`` can be imported.

    Returns
    -------
    bool
        Whether Dask is installed.
    """
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def require_dask(what: str = "this") -> None:
    """Raise a ConfigError saying how to install Dask when it is missing.

    Parameters
    ----------
    what : str
        What needs Dask (for the message).
    """
    if not have_dask():
        raise ConfigError(f"{what} needs Dask: {INSTALL_HINT}")


@contextlib.contextmanager
def local_client(workers: int, threads_per_worker: int = 1, numba_threads: int | None = None, **kwargs):
    """A ``Client`` on a new ``LocalCluster`` of ``workers`` processes (closed on exit).

    Each worker runs ``threads_per_worker`` tasks at a time; ``numba_threads`` (default: the machine's cores
    shared out among the workers) is the number of threads each worker's numba kernels use.

    Parameters
    ----------
    workers : int
        Number of worker processes.
    threads_per_worker : int
        Tasks each worker runs at a time.
    numba_threads : int, optional
        Threads of each worker's numba kernels.
    **kwargs
        Passed to ``distributed.LocalCluster``.

    Yields
    ------
    distributed.Client
        The client (closed with its cluster on exit).
    """
    require_dask("a local cluster (--workers)")
    from distributed import Client, LocalCluster

    workers = int(workers)
    if workers < 1:
        raise ConfigError(f"`workers` must be at least 1, got {workers}")
    if numba_threads is None:
        numba_threads = max(1, (os.cpu_count() or 1) // (workers * threads_per_worker))
    env = {"NUMBA_NUM_THREADS": str(int(numba_threads)), "OMP_NUM_THREADS": "1"}
    kwargs.setdefault("dashboard_address", ":0")  # any free port: several clusters on one machine
    with LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True, env=env,
                      **kwargs) as cluster, Client(cluster) as client:  # fmt: skip
        yield client


@contextlib.contextmanager
def client_from_args(args):
    """The client the command line asks for: ``--workers N`` (a local cluster), ``--scheduler ADDRESS``, or
    None (one process, Dask not imported).

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``workers``, ``scheduler``).

    Yields
    ------
    distributed.Client or None
        The client, or None for a run in this process.
    """
    workers, scheduler = getattr(args, "workers", None), getattr(args, "scheduler", None)
    if workers is not None and scheduler is not None:
        raise ConfigError("give either --workers (a local cluster) or --scheduler (a running cluster), not both")
    if workers is not None:
        with local_client(workers) as client:
            yield client
    elif scheduler is not None:
        require_dask("--scheduler")
        from distributed import Client

        try:
            client = Client(scheduler, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"--scheduler: cannot reach a Dask scheduler at {scheduler!r} ({exc})") from None
        with client:
            yield client
    else:
        yield None


def _n_workers(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


# ------------------------------------------------------------------------------------------------ shards
def plan_shards(members: int, shards: int) -> list[tuple[int, int]]:
    """Split ``members`` into at most ``shards`` ranges ``[a, b)`` of whole lanes (``LANES`` members; only the
    last range may end mid-lane, at ``members``), as even as possible.

    Parameters
    ----------
    members : int
        Number M of members.
    shards : int
        Most shards wanted (≥ 1).

    Returns
    -------
    list of (int, int)
        The member ranges, in order, covering 0 .. M − 1.
    """
    from .solvers.autoencoder import LANES

    members, shards = int(members), int(shards)
    if shards < 1:
        raise ConfigError(f"`shards` must be at least 1, got {shards}")
    lanes = -(-members // LANES)
    n = min(shards, lanes)
    cuts = [min(members, LANES * ((i * lanes) // n)) for i in range(n + 1)]
    return [(cuts[i], cuts[i + 1]) for i in range(n)]


def _piece_name(a: int, b: int) -> str:
    return f"members-{a:09d}-{b:09d}.h5"


def piece_status(piece) -> tuple[int, bool] | None:
    """(snapshots done, complete) of a shard's piece (its ``.partial`` if there is one), or None if there is
    no readable piece.

    Parameters
    ----------
    piece : str or Path
        The piece's file name.

    Returns
    -------
    (int, bool) or None
        Snapshots done and whether the piece is complete.
    """
    piece = Path(piece)
    partial = piece.with_name(piece.name + ".partial")
    for src in (partial, piece):
        if src.exists():
            try:
                with h5py.File(src, "r") as f:
                    meta = json.loads(f.attrs["meta"])
                return int(meta["n_done"]), bool(meta["complete"])
            except Exception:  # noqa: BLE001 - a piece left unreadable by a dying worker
                return None
    return None


def _remove_piece(piece: Path) -> None:
    for p in (piece, piece.with_name(piece.name + ".partial")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _run_shard(shard, piece: str, stop_after, index: int, topic: str, stop_name: str | None,
               numba_threads: int | None) -> dict:  # fmt: skip
    """The Dask task of one shard: train (or resume) it into its piece; publish progress; stop cleanly when
    the client sets the stop event. Returns the piece's status."""
    if numba_threads:
        import numba

        numba.set_num_threads(int(numba_threads))
    piece = Path(piece)
    try:
        from distributed import Event, get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # run outside a worker (tests, debugging)
        worker = None
    stop = Event(stop_name) if (worker is not None and stop_name) else None
    advance = shard.advance
    last = [0.0]

    def advance_and_report(state, n_steps):
        advance(state, n_steps)
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            if worker is not None:
                worker.log_event(topic, {"shard": index, "step": int(state["step"])})
            if stop is not None and stop.is_set():
                raise KeyboardInterrupt  # the trainer closes the piece cleanly at its last snapshot

    shard.advance = advance_and_report
    status = piece_status(piece)
    resume = status is not None
    if status is None:
        _remove_piece(piece)  # absent, or unreadable: start the shard afresh
    stopped = False
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        try:
            shard.train(piece, resume=resume, stop_after=stop_after, show_progress=False)
        except (ConfigError, OSError) as exc:
            if not resume:
                raise
            # a dying worker can leave a piece whose last snapshot does not match its state: start afresh
            log.warning("shard %d: cannot resume %s (%s); training it afresh", index, piece, exc)
            _remove_piece(piece)
            shard.train(piece, resume=False, stop_after=stop_after, show_progress=False)
    except KeyboardInterrupt:
        stopped = True
    except FpkitError as exc:  # e.g. divergence: the member ids in the message count from the shard's first
        first, stop_ = shard.member_offset, shard.member_offset + shard.config["train"]["members"]
        exc.args = (f"shard of members {first}..{stop_ - 1} (member ids below count from {first}): "
                    f"{exc.args[0] if exc.args else exc}", *exc.args[1:])  # fmt: skip
        raise
    n_done, complete = piece_status(piece) or (0, False)
    if worker is not None:
        step = int(shard.schedule[n_done - 1]) if n_done else 0
        worker.log_event(topic, {"shard": index, "step": step})
    return {"shard": index, "n_done": n_done, "complete": complete, "stopped": stopped,
            "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0,
            "worker": None if worker is None else worker.address}  # fmt: skip


def _plan_file(pieces_dir: Path) -> Path:
    return pieces_dir / "plan.json"


def _config_json(config) -> str:
    from .ensemble.results import _jd

    return json.dumps(config, default=_jd, sort_keys=True)


def train(ens, path=None, *, client, shards: int | None = None, resume: bool = False,
          stop_after: int | None = None, show_progress: bool | None = None,
          numba_threads: int | None = None, virtual: bool = False):  # fmt: skip
    """Train ``ens`` (an :class:`fpkit.Ensemble`) in shards on a Dask cluster and merge them into ``path``.

    The same as ``ens.train(path, resume=..., stop_after=...)`` in one process (module docstring): the file
    holds the same values. ``shards`` defaults to two per worker (each a multiple of the lane width; resume
    keeps the shards of the run it resumes); ``numba_threads`` sets the kernels' threads in each task (default:
    the workers' own setting). Without ``path`` the pieces go to a temporary folder on this machine (the
    workers must see it) and the run is returned in memory.

    ``virtual=True`` skips the serial copy of the snapshots: the pieces move to
    ``<path>.pieces-<id>/`` and ``path`` holds virtual datasets over them (:func:`merge_pieces`); the same
    values for every reader, at a merge cost that does not grow with the run. Keep the folder beside the file
    (move both together), or make a self-contained file with :func:`consolidate`.

    Parameters
    ----------
    ens : fpkit.Ensemble
        The ensemble to train.
    path : str or Path, optional
        The results file (ensemble format).
    client : distributed.Client
        The cluster.
    shards : int, optional
        Number of shards (default two per worker).
    resume : bool
        Continue the run stored at ``path``.
    stop_after : int, optional
        Stop after this many snapshots (resumable).
    show_progress : bool, optional
        Progress bar on/off (None: when the output is a terminal).
    numba_threads : int, optional
        Threads of the kernels in each task.
    virtual : bool
        Merge by HDF5 virtual datasets over the pieces instead of copying them.

    Returns
    -------
    fpkit.EnsembleRun
        The run (the same values as a one-process run).
    """
    require_dask("training with a client")
    from .ensemble.results import EnsembleRun

    if path is None:
        if resume:
            raise ConfigError("`resume=True` needs `path`")
        with tempfile.TemporaryDirectory(prefix="fpkit-shards-") as tmp:
            out = Path(tmp) / "ensemble.h5"
            train(ens, out, client=client, shards=shards, stop_after=stop_after, show_progress=show_progress,
                  numba_threads=numba_threads)  # fmt: skip
            return EnsembleRun.load(out)
    path = Path(path).resolve()
    pieces_dir = path.with_name(path.name + ".shards")
    config_json = _config_json(ens.config)
    tr = ens.config["train"]
    M = int(tr["members"])
    if resume:
        plan_path = _plan_file(pieces_dir)
        if not plan_path.exists():
            if path.exists() and _complete_run_with_config(path, config_json):
                return EnsembleRun.load(path)
            raise ConfigError(f"`resume`: no shards of a distributed run next to {str(path)!r} ({pieces_dir.name}/); "
                              "a run started in one process resumes without a client (no --workers)")  # fmt: skip
        plan = json.loads(plan_path.read_text())
        if plan.get("config") != config_json:
            raise ConfigError(f"`resume`: the configuration differs from the one the shards in {str(pieces_dir)!r} "
                              "were started with; resume with that configuration, or start afresh")  # fmt: skip
        ranges = [tuple(r) for r in plan["shards"]]
    else:
        ranges = plan_shards(M, shards if shards is not None else 2 * _n_workers(client))
        if pieces_dir.exists():
            shutil.rmtree(pieces_dir)
        pieces_dir.mkdir(parents=True)
        from .experiments import write_text_atomic

        write_text_atomic(_plan_file(pieces_dir), json.dumps({"format": PIECE_FORMAT, "config": config_json,
                                                              "shards": [list(r) for r in ranges]}))  # fmt: skip
    pieces = [pieces_dir / _piece_name(a, b) for a, b in ranges]
    sched = ens.schedule
    todo = []
    for i, ((a, b), piece) in enumerate(zip(ranges, pieces)):
        st = piece_status(piece) if resume else None
        if st is None or not st[1]:
            todo.append(i)
    t_tasks = time.perf_counter()
    statuses = _run_shards(ens, client, ranges, pieces, todo, stop_after, show_progress, numba_threads, sched)
    report = {"shards": [list(r) for r in ranges], "tasks": statuses, "tasks_s": time.perf_counter() - t_tasks}
    done = {i: piece_status(p) or (0, False) for i, p in enumerate(pieces)}
    for i, s in statuses.items():
        done[i] = (s["n_done"], s["complete"])
    counts = {n for n, _ in done.values()}
    if all(c for _, c in done.values()):
        t_merge = time.perf_counter()
        if virtual:
            _merge_virtual(ens, path, ranges, pieces_dir, pieces)
        else:
            merge_pieces(ens, path, list(zip(ranges, pieces)))
        report["merge_s"] = time.perf_counter() - t_merge
        shutil.rmtree(pieces_dir, ignore_errors=True)
        run = EnsembleRun.load(path)
        run.shard_report = report  # timings of the tasks and the merge (scripts/bench_distributed.py)
        return run
    if any(s["stopped"] for s in statuses.values()):
        raise _interrupted(pieces_dir)
    if len(counts) == 1 and counts != {0}:  # stop_after: every shard stopped at the same snapshot
        if _is_complete_run(path):
            log.warning("%s is a complete run and was left unchanged; the incomplete run is in %s (continue with "
                        "--resume)", path, pieces_dir)  # fmt: skip
            return EnsembleRun.load(pieces[0])
        merge_pieces(ens, path, list(zip(ranges, pieces)))
        return EnsembleRun.load(path)
    raise FpkitError(f"the shards stopped at different snapshots; continue with --resume ({pieces_dir})")


def _merge_virtual(ens, path: Path, ranges, pieces_dir: Path, pieces) -> None:
    """The pieces move to a folder of their own, ``<path>.pieces-<id>``, and ``path`` becomes virtual
    datasets over them. The id is new each time: until the new file has replaced ``path`` (atomically), the
    old file still reads the old pieces, never the new ones; older piece folders of ``path`` go afterwards."""
    data = path.with_name(f"{path.name}.pieces-{uuid.uuid4().hex[:8]}")
    data.mkdir()
    moved = []
    for piece in pieces:
        os.replace(piece, data / piece.name)
        moved.append(data / piece.name)
    merge_pieces(ens, path, list(zip(ranges, moved)), virtual=True)
    for old in path.parent.glob(f"{path.name}.pieces-*"):
        if old != data and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)


def _interrupted(pieces_dir: Path) -> KeyboardInterrupt:
    exc = KeyboardInterrupt(f"stopped; the shards so far are in {pieces_dir}")
    exc.fpkit_note = f"the shards so far are in {pieces_dir} (continue with --resume)"
    return exc


def _is_complete_run(path: Path) -> bool:
    """True if ``path`` is a complete ensemble run (never replaced by an incomplete one)."""
    try:
        with h5py.File(path, "r") as f:
            return bool(json.loads(f.attrs["meta"]).get("complete"))
    except Exception:  # noqa: BLE001 - absent or not an ensemble file
        return False


def _complete_run_with_config(path: Path, config_json: str) -> bool:
    try:
        with h5py.File(path, "r") as f:
            meta = json.loads(f.attrs["meta"])
        return bool(meta.get("complete")) and _config_json(meta["config"]) == config_json
    except Exception:  # noqa: BLE001
        return False


def _run_shards(ens, client, ranges, pieces, todo, stop_after, show_progress, numba_threads, sched) -> dict:
    """Submit the shards ``todo`` as tasks; one progress bar; on a failure or Ctrl-C stop the others cleanly."""
    from distributed import Event, as_completed, wait

    from .progress import progress

    if not todo:
        return {}
    token = uuid.uuid4().hex[:12]
    topic, stop_name = f"fpkit-progress-{token}", f"fpkit-stop-{token}"
    start, end = {}, {}
    for i in todo:  # each shard's member-steps from its last snapshot to where it will stop
        st = piece_status(pieces[i])
        n0 = st[0] if st else 0
        n1 = len(sched) if stop_after is None else min(len(sched), n0 + int(stop_after))
        start[i], end[i] = (int(sched[n0 - 1]) if n0 else 0), (int(sched[n1 - 1]) if n1 else 0)
    size = {i: ranges[i][1] - ranges[i][0] for i in todo}
    bar = progress(sum(size[i] * (end[i] - start[i]) for i in todo), f"training ({len(todo)} shards)",
                   enable=show_progress, unit="member-step")  # fmt: skip
    reached = dict(start)

    def show(i, step):
        reached[i] = min(end[i], max(start[i], int(step)))
        bar.n = sum(size[k] * (reached[k] - start[k]) for k in todo)
        bar.refresh()

    def on_event(event):  # on the client's event loop: the latest step of each shard (a retried shard goes back)
        msg = event[1] if isinstance(event, tuple) else event
        show(msg["shard"], msg["step"])

    client.subscribe_topic(topic, on_event)
    stop = Event(stop_name, client=client)
    futures = {
        client.submit(_run_shard, ens.shard(*ranges[i]), str(pieces[i]), stop_after, i, topic, stop_name,
                      numba_threads, key=f"fpkit-shard-{token}-{i}", pure=False): i
        for i in todo
    }  # fmt: skip
    statuses, error = {}, None
    try:
        for fut in as_completed(futures):
            if fut.status == "error" and error is None:
                error = fut
                stop.set()
            elif fut.status == "finished":
                st = statuses[futures[fut]] = fut.result()
                show(st["shard"], int(sched[st["n_done"] - 1]) if st["n_done"] else 0)
    except KeyboardInterrupt:
        stop.set()
        wait(list(futures), timeout=120)
        raise _interrupted(pieces[0].parent) from None
    finally:
        bar.close()
        with contextlib.suppress(Exception):
            client.unsubscribe_topic(topic)
    if error is not None:
        exc = error.exception()
        note = f"the other shards are kept in {pieces[0].parent}; continue with --resume (resume=True)"
        if isinstance(exc, FpkitError):
            exc.args = (f"{exc.args[0] if exc.args else exc}; {note}", *exc.args[1:])
            raise exc
        raise FpkitError(f"a shard failed: {type(exc).__name__}: {exc}; {note}") from exc
    return statuses


# ------------------------------------------------------------------------------------------------ merge
def merge_pieces(ens, path, pieces, *, virtual: bool = False) -> Path:
    """Merge the pieces ``[((a, b), piece_path), ...]`` of ``ens`` (covering members 0 .. M - 1 in order, all
    at the same snapshot) into one ensemble file at ``path``, written to a temporary name and renamed.

    The merged file has the layout, values and resume state of a one-process run of ``ens`` (its ``meta``
    carries the whole ensemble's configuration); snapshots are assembled one at a time, so the memory needed is
    one snapshot of one field.

    ``virtual=True`` copies nothing of the snapshots: each snapshot field (weights, grad, grad_var,
    hess_grad) is an HDF5 virtual dataset over the pieces' columns (paths relative to ``path``'s folder, so
    the folder can be moved whole), and only the small datasets (loss, λmax, masks, resume state) are
    copied. Readers see the same values; the pieces must stay where they are (:func:`consolidate` makes a
    self-contained copy).

    Parameters
    ----------
    ens : fpkit.Ensemble
        The whole ensemble the pieces belong to.
    path : str or Path
        The merged file.
    pieces : list of ((int, int), path)
        The member ranges and their piece files, in order.
    virtual : bool
        Merge by HDF5 virtual datasets over the pieces instead of copying them.

    Returns
    -------
    Path
        The merged file.
    """
    from .ensemble.results import FIELDS, KIND, _create_layout, _meta
    from .io import FORMAT_VERSION, release_reserve, reserve_space, set_json_attr, write_error

    path = Path(path)
    tr = ens.config["train"]
    M, sched = int(tr["members"]), ens.schedule
    ranges = [tuple(r) for r, _ in pieces]
    if ranges[0][0] != 0 or ranges[-1][1] != M or any(ranges[i][1] != ranges[i + 1][0] for i in range(len(ranges) - 1)):
        raise ConfigError(f"merge: the pieces {ranges} do not cover the members 0..{M} in order")
    tmp = path.with_name(f".{path.name}.merging")
    srcs = []
    try:
        for _, p in pieces:
            p = Path(p)
            partial = p.with_name(p.name + ".partial")
            srcs.append(h5py.File(partial if partial.exists() else p, "r"))
        metas = [json.loads(s.attrs["meta"]) for s in srcs]
        n_done = {int(m["n_done"]) for m in metas}
        if len(n_done) != 1:
            raise ConfigError(f"merge: the pieces hold different numbers of snapshots {sorted(n_done)}")
        n_done = n_done.pop()
        first = srcs[0]
        from datetime import UTC, datetime

        with h5py.File(tmp, "w") as f:
            # the merged file is about the pieces' size: its blocks are taken before HDF5 writes (a full disk
            # met inside HDF5 loses data silently), and a full disk is a clean OutputError here
            reserve_space(tmp, sum(os.path.getsize(s.filename) for s in srcs))
            f.attrs["fpkit_format"] = FORMAT_VERSION
            f.attrs["kind"] = KIND
            f.attrs["created"] = datetime.now(UTC).isoformat()
            set_json_attr(f, "meta", _meta(ens.config, ens.arch.names, ens.arch.shapes, tr["lr"], tr["batch_size"],
                                           M, len(sched), n_done, tr["probes"], n_done == len(sched)))  # fmt: skip
            _create_layout(f, ens.arch.names, ens.arch.shapes, M, len(sched), tr["probes"],
                           tr["lr"] * sched.astype(float), sched, bool(tr["statistics"]),
                           tr["compression"])  # fmt: skip
            if "data" in first:
                g = f.create_group("data")
                for key in first["data"]:
                    g.create_dataset(key, data=first["data"][key][()], compression="gzip", compression_opts=1)
            # snapshots: one (M, *shape) row at a time, every piece's columns in place
            for fld in FIELDS:
                if fld not in f:
                    continue
                if virtual:
                    _virtual_field(f, fld, ens.arch.names, ens.arch.shapes, len(sched), ranges, srcs, path)
                    continue
                for name, shape in zip(ens.arch.names, ens.arch.shapes):
                    buf = np.empty((M, *shape))
                    for j in range(n_done):
                        for (a, b), s in zip(ranges, srcs):
                            s[fld][name].read_direct(buf, np.s_[j], np.s_[a:b])
                        f[fld][name][j] = buf
            if "loss" in f:
                buf = np.empty(M)
                for j in range(n_done):
                    for (a, b), s in zip(ranges, srcs):
                        buf[a:b] = s["loss"][j]
                    f["loss"][j] = buf
                if n_done:
                    f["lam_max"][:n_done] = first["lam_max"][:n_done]
            # divergence masks (train.on_divergence = "drop"), where a piece has one
            if any("alive" in s for s in srcs):
                alive = f.create_dataset("alive", shape=(len(sched), M), dtype=bool, fillvalue=True)
                buf = np.ones(M, dtype=bool)
                for j in range(n_done):
                    for (a, b), s in zip(ranges, srcs):
                        buf[a:b] = s["alive"][j] if "alive" in s else True
                    alive[j] = buf
            # the resume state: every per-member array side by side
            st = f.create_group("state")
            for key in ("theta", "velocity", "rng", "perm"):
                parts = [s["state"][key][()] for s in srcs]
                st.create_dataset(key, data=_join_state(key, parts, [b - a for a, b in ranges]))
            st.attrs["step"] = int(first["state"].attrs["step"])
            if any("alive" in s["state"] for s in srcs):
                st.create_dataset("alive", data=np.concatenate(
                    [s["state"]["alive"][()] if "alive" in s["state"] else np.ones(b - a, bool)
                     for (a, b), s in zip(ranges, srcs)]))  # fmt: skip
        from .io import _fsync

        release_reserve(tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FpkitError):
            raise write_error(path, exc) from exc
        raise
    finally:
        for s in srcs:
            s.close()
    return path


def _virtual_field(f, fld: str, names, shapes, n_sched: int, ranges, srcs, path: Path) -> None:
    """Replace the (empty) datasets of snapshot field ``fld`` by virtual datasets over the pieces' columns."""
    for name, shape in zip(names, shapes):
        dtype = f[fld][name].dtype
        del f[fld][name]
        layout = h5py.VirtualLayout(shape=(n_sched, ranges[-1][1], *shape), dtype=dtype)
        for (a, b), src in zip(ranges, srcs):
            rel = os.path.relpath(src.filename, Path(path).parent)
            layout[:, a:b] = h5py.VirtualSource(rel, f"{fld}/{name}", shape=(n_sched, b - a, *shape))
        f[fld].create_virtual_dataset(name, layout, fillvalue=np.nan)


def consolidate(path, out=None) -> Path:
    """A self-contained copy of an ensemble file whose snapshot fields are virtual datasets over shard pieces
    (``train(..., virtual=True)``): every dataset copied with its values into ``out`` (default: ``path``
    itself, replaced atomically); the pieces can then be deleted. Returns the path written.

    Parameters
    ----------
    path : str or Path
        The ensemble file with virtual snapshot datasets.
    out : str or Path, optional
        Where to write the copy (default: replace ``path``).

    Returns
    -------
    Path
        The written file.
    """
    from .io import atomic_h5, open_h5, reading, virtual_sources, virtual_sources_missing

    from .ensemble.results import KIND

    path = Path(path)
    out = path if out is None else Path(out)
    with open_h5(path, "ensemble file") as src, reading(path, "ensemble file"):
        if src.attrs.get("kind") != KIND:
            raise FileFormatError(f"`path` {str(path)!r} holds {src.attrs.get('kind')!r}, not an ensemble", path)
        missing = virtual_sources_missing(src)
        if missing:
            raise FileFormatError(f"{str(path)!r}: the shard pieces {missing} its snapshots live in are missing",
                                  path)  # fmt: skip
        folders = sorted({Path(name).parent.as_posix() for name in virtual_sources(src)})
        with atomic_h5(out) as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value

            def copy(name, obj):
                if isinstance(obj, h5py.Group):
                    g = dst.require_group(name)
                    for key, value in obj.attrs.items():
                        g.attrs[key] = value
                    return
                kw = {}
                if not obj.is_virtual and obj.chunks is not None:
                    kw = {"chunks": obj.chunks, "compression": obj.compression,
                          "compression_opts": obj.compression_opts}  # fmt: skip
                elif obj.is_virtual and obj.ndim >= 2:  # as _create_layout: one snapshot a chunk
                    kw = {"chunks": (1, *obj.shape[1:])}
                d = dst.create_dataset(name, data=obj[()], **kw)
                for key, value in obj.attrs.items():
                    d.attrs[key] = value

            src.visititems(copy)
    if folders:
        log.warning("%s is self-contained; the shard pieces %s read from (%s, beside it) can be deleted", out,
                    path.name, ", ".join(folders))  # fmt: skip
    return out


def _join_state(key: str, parts: list, sizes: list) -> np.ndarray:
    """A state array of the whole ensemble from the shards': members on axis 1 for theta/velocity/rng (P or 2,
    m), axis 0 for per-member permutations (m, n); placeholders (1, 1) stay as they are."""
    if key in ("theta", "velocity", "rng"):
        if parts[0].shape[1] != sizes[0]:  # no momentum: a (1, 1) placeholder
            return parts[0]
        return np.concatenate(parts, axis=1)
    if parts[0].shape[0] != sizes[0]:
        return parts[0]
    return np.concatenate(parts, axis=0)


# ------------------------------------------------------------------------------------------- any tasks
def map_tasks(client, fn, calls, *, desc: str = "tasks", show_progress: bool | None = None) -> list:
    """``[fn(*args) for args in calls]`` as Dask tasks on ``client`` (results in the order of ``calls``), with
    one progress bar; the first failure cancels the rest and is raised.

    Parameters
    ----------
    client : distributed.Client
        Where to run.
    fn : callable
        The task function (picklable).
    calls : sequence of tuple
        One argument tuple per task.
    desc : str
        The progress bar's label.
    show_progress : bool, optional
        Progress bar on/off (None: when the output is a terminal).

    Returns
    -------
    list
        ``fn``'s results, in the order of ``calls``.
    """
    require_dask("running tasks on a client")
    from distributed import as_completed

    from .progress import progress

    futures = [client.submit(fn, *args, pure=False) for args in calls]
    index = {f.key: i for i, f in enumerate(futures)}
    out = [None] * len(futures)
    bar = progress(len(futures), desc, enable=show_progress, unit="task")
    try:
        for fut in as_completed(futures):
            if fut.status == "error":
                exc = fut.exception()
                client.cancel([f for f in futures if f is not fut])
                raise exc
            out[index[fut.key]] = fut.result()
            bar.update(1)
    finally:
        bar.close()
    return out
