"""Independent tasks on the local cores: a pool of worker processes for the experiments' per-entry work.

Worker processes, not threads: most of a prediction's time is Python and numpy between small kernels, which
holds the GIL. They start from a fork server (a fresh interpreter that has imported fpkit), never by forking
this process: numba's OpenMP threading layer terminates a process that forks after a parallel kernel ran. Each
worker runs numba's kernels on one thread, so that two workers fill two cores without oversubscription (every
fpkit kernel gives the same result on any thread count). Send the workers small arguments (e.g.
``fpkit.prediction.EntrySamples``, not a whole run): each one is pickled.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

_PRELOAD = ["fpkit.prediction", "fpkit.sde"]


def default_workers() -> int:
    """Worker processes for independent tasks: ``FPKIT_WORKERS`` if set, else the cores this process may use."""
    env = os.environ.get("FPKIT_WORKERS")
    if env:
        from .errors import ConfigError

        try:
            n = int(env)
        except ValueError:
            n = 0
        if n < 1:
            raise ConfigError(f"FPKIT_WORKERS must be a positive integer, got {env!r}")
        return n
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


OWNER_POLL_S = 0.5
"""How often a worker checks that the process that started its pool is still alive."""


_MALLOC_TRIM = None  # libc's malloc_trim in a worker (False where there is none: not glibc)


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc ``malloc_trim``; nothing elsewhere). A task's
    numpy temporaries below the mmap threshold are freed into the heap but stay resident while anything
    allocated after them lives: ~50 MB per worker after the flagship's W1 predictions, which the next,
    smaller tasks never use again."""
    global _MALLOC_TRIM
    if _MALLOC_TRIM is None:
        import ctypes

        try:
            _MALLOC_TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _MALLOC_TRIM = False
    if _MALLOC_TRIM:
        _MALLOC_TRIM(0)


def _call_then_trim(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a worker, then ``_trim_heap``."""
    try:
        return fn(*args, **kwargs)
    finally:
        _trim_heap()


class _Pool(ProcessPoolExecutor):
    """A process pool whose workers return their freed heap memory to the system after every task."""

    def submit(self, fn, /, *args, **kwargs):
        return super().submit(_call_then_trim, fn, *args, **kwargs)


def _init_worker(owner: int) -> None:
    import signal

    import numba

    numba.set_num_threads(1)
    # Ctrl-C reaches the whole process group: the owner reports it in one line and cancels the pool; a
    # worker ends at once and silently (the default action), not with a KeyboardInterrupt traceback each
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    _exit_with(owner)


def _exit_with(owner: int) -> None:
    """End this worker once process ``owner`` is gone. A worker is the fork server's child, not the owner's:
    when the owner is killed (SIGKILL, OOM) nothing tells it, and it would wait for tasks forever (and keep the
    fork server alive through the pipes it holds)."""
    import threading
    import time

    from .io import process_running

    def watch():
        while True:
            time.sleep(OWNER_POLL_S)
            if not process_running(owner):
                os._exit(1)

    threading.Thread(target=watch, name="fpkit-owner-watch", daemon=True).start()


USAGE = {"cpu_s": 0.0, "peak_rss_MB": 0.0}
"""CPU seconds (user + system) of every worker of the pools that have finished, and the largest peak resident
set size of any one of them: the workers are the fork server's children, so neither this process's CPU time
nor RUSAGE_CHILDREN sees them (scripts/bench_reproduce.py adds these)."""


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process from /proc (OSError where there is none)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fork_server_cpu() -> float:
    """CPU seconds so far of this process's fork server (importing fpkit for the workers); 0 without one."""
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    try:
        return _cpu_seconds(pid) if pid else 0.0
    except (OSError, ValueError, IndexError):
        return 0.0


def _record_usage(pids) -> None:
    for pid in pids:
        try:
            USAGE["cpu_s"] += _cpu_seconds(pid)
            with open(f"/proc/{pid}/status") as f:
                hwm = next((ln for ln in f if ln.startswith("VmHWM:")), None)
            if hwm is not None:
                USAGE["peak_rss_MB"] = max(USAGE["peak_rss_MB"], int(hwm.split()[1]) / 1024)
        except (OSError, ValueError, IndexError):  # no /proc (not Linux), or the worker is gone
            pass


@contextlib.contextmanager
def _without_main():
    """Workers that do not run the caller's main script. multiprocessing's spawn and fork-server workers import
    it again (as ``__mp_main__``), so a script without an ``if __name__ == "__main__"`` guard would start the
    whole job over in every worker (and fail); these workers run fpkit functions only and never need it."""
    from multiprocessing import spawn

    plain = spawn.get_preparation_data

    def preparation_data(name):
        data = plain(name)
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
        return data

    spawn.get_preparation_data = preparation_data
    try:
        yield
    finally:
        spawn.get_preparation_data = plain


def _start_fork_server() -> None:
    """Start the fork server (once per process) with Ctrl-C ignored, as it ignores it itself once it runs.

    A fresh interpreter keeps an ignored SIGINT ignored; without this, a Ctrl-C while the server imports
    ``_PRELOAD`` (a second or more) printed a KeyboardInterrupt traceback from it. Signal dispositions can be
    changed on the main thread only: elsewhere the server starts at the first submit, as multiprocessing does.
    """
    import signal
    import threading
    from multiprocessing import forkserver

    if threading.current_thread() is not threading.main_thread():
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        forkserver.ensure_running()
    finally:
        signal.signal(signal.SIGINT, before)


@contextlib.contextmanager
def worker_pool(workers: int):
    """A ``concurrent.futures`` executor of ``workers`` processes started from a fork server (module docstring)
    that trim their heap after every task (``_trim_heap``); shut down (waiting for running tasks) on exit, after
    adding the workers' usage to ``USAGE``."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    _start_fork_server()
    pool = _Pool(max_workers=int(workers), mp_context=ctx, initializer=_init_worker, initargs=(os.getpid(),))
    try:
        with _without_main():  # workers start on demand, at any submit
            yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    _record_usage(list(getattr(pool, "_processes", None) or {}))  # the executor's pid -> process map
    pool.shutdown(wait=True)
