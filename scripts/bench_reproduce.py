"""Wall and CPU time of `fpkit reproduce` per stage, peak memory, and the ratio to the numbers before issue 21's
speed-ups (recorded below); with --profile also the share of time spent in Python outside compiled kernels.

Per stage: wall clock (``RunContext.stage``'s timer) and CPU time of the whole process (all threads, so a stage
that keeps both cores busy shows CPU ≈ 2 × wall) plus that of its worker processes (``fpkit.processes.USAGE``:
the fork server's children, which the process's own CPU time does not include). Work on a background thread
(the SVAG ensembles, trained alongside the analysis) counts in whichever stages it overlaps, so compare such
stages together, or the total. CPU time is the number to compare on a shared, loaded machine; wall clock only
on a quiet one. "unstaged" is the rest of the run (start-up, the verdict, writing
results.h5, the figures and the report). Peak memory is the process's maximum resident set size; the largest
of any one worker process is printed beside it (``workers_peak_rss_MB``), and the peak so far at the end of
each stage (``peak_rss_after_stage_MB``: where it grows is where the peak happened). Prints one JSON line.
The run's memory is that of its whole process tree (this process, the fork server, the workers): run this
under ``scripts/psswatch.py`` for its peak PSS, and with ``--marks FILE`` to place the peak in a stage
(``psswatch.py --show TIMELINE FILE``).

With --profile the run happens under cProfile: time inside numba-compiled functions, numpy/scipy C code and
LAPACK is "in kernels"; the rest (tottime of functions defined in .py files) is "Python". cProfile inflates
Python-heavy parts, so the profiled run's times are not compared with ``BEFORE``.

    python scripts/bench_reproduce.py [--smoke] [--profile] [--out DIR] [--marks FILE]

Before (``BEFORE``): the default run at ee10610 (2026-12-05, the start of issue 21's second round), run from a
private worktree on the QUIET 2-core machine (load average 1.2-1.4), so wall and CPU are both meaningful;
unstaged 6.7 s wall / 6.8 s CPU. Its results.h5 is the reference the speed-ups are checked against with
scripts/compare_results.py --rtol 1e-9. (The first round's reference, 57ea1e3 at load ~20: 2109 s wall /
250.9 s CPU, estimation 76.5, Langevin 10.3, pair 25.9, outputs 3.3, SVAG 92.9, training 29.4 CPU-s.)
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import platform
import pstats
import resource
import tempfile
import time

# (wall s, CPU s) per stage of the default run before the speed-ups, and the whole run (see the docstring)
BEFORE = {
    "load_average": 1.2,
    "peak_rss_MB": 1105,
    "total": (133.8, 181.3),
    "stages": {
        "solver_self_check": (0.76, 1.06),
        "training": (13.16, 23.24),
        "estimation_and_prediction": (45.11, 53.61),
        "langevin_crosscheck": (8.75, 8.76),
        "pair_2d": (24.6, 24.59),
        "output_distributions": (3.73, 3.72),
        "svag": (30.96, 59.53),
        "unstaged": (6.73, 6.81),
    },
}


def compiled_functions() -> set:
    """(file, first line, name) of every numba-compiled function in fpkit, as cProfile keys them."""
    import importlib
    import pkgutil

    import fpkit
    import fpkit.solvers
    import fpkit.validation
    from numba.core.registry import CPUDispatcher

    keys = set()
    mods = [m for pkg in (fpkit, fpkit.solvers, fpkit.validation)
            for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]  # fmt: skip
    for mod in mods:
        try:
            m = importlib.import_module(mod.name)
        except Exception:  # optional modules (e.g. a missing extra) are not part of the run
            continue
        for obj in vars(m).values():
            if isinstance(obj, CPUDispatcher):
                code = obj.py_func.__code__
                keys.add((code.co_filename, code.co_firstlineno, code.co_name))
    return keys


def cpu_time() -> float:
    """CPU seconds of this process (all threads), of the worker processes of its finished pools and of the fork
    server that starts them."""
    from fpkit.processes import USAGE

    from fpkit.processes import fork_server_cpu

    return time.process_time() + USAGE["cpu_s"] + fork_server_cpu()


def stage_cpu_timer() -> dict:
    """Wrap ``RunContext.stage`` so that each stage also records the process's CPU time: name -> [wall, cpu]."""
    import fpkit.experiments as fe

    times: dict = {}
    plain = fe.RunContext.stage

    @contextlib.contextmanager
    def stage(self, name):
        w0, c0 = time.perf_counter(), cpu_time()
        MARKS.append((name, "start", time.time()))
        with plain(self, name):
            yield
        MARKS.append((name, "end", time.time()))
        w, c = times.get(name, (0.0, 0.0))
        times[name] = [w + time.perf_counter() - w0, c + cpu_time() - c0]
        PEAK_AFTER[name] = peak_rss_mb()

    fe.RunContext.stage = stage
    return times


MARKS: list = []
"""(stage, "start" or "end", Unix time) of every stage, for --marks: set against a memory timeline (e.g. the
per-process PSS samples of a process-tree watcher) they say in which stage each peak happened."""

PEAK_AFTER: dict = {}
"""The process's peak RSS (MB, VmHWM) at the end of each stage: the stage where it grows holds the peak."""


def peak_rss_mb() -> float | None:
    """This process's peak resident set size so far (MB), from /proc (None without it)."""
    try:
        with open("/proc/self/status") as f:
            return round(int(next(ln for ln in f if ln.startswith("VmHWM:")).split()[1]) / 1024, 1)
    except (OSError, StopIteration, ValueError):
        return None


def python_share(prof: cProfile.Profile, wall: float) -> dict:
    """Shares of ``wall`` in Python code and in fpkit's numba kernels (tottime by file)."""
    stats = pstats.Stats(prof)
    compiled = compiled_functions()
    from fpkit.solvers import autoencoder

    generated = str(autoencoder._kernel_dir())
    python_time = kernel_time = 0.0
    for key, (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        filename = key[0]
        # a numba kernel: cProfile files it under the .py file it was written in (fpkit's own, or the
        # architecture-specialised ensemble kernels generated into the kernel cache)
        if key in compiled or filename.startswith(generated):
            kernel_time += tottime
        elif filename.endswith(".py") and "numba" not in filename:
            python_time += tottime
    return {"python_outside_kernels_share": python_time / wall, "numba_kernels_share": kernel_time / wall,
            "profiler_note": "cProfile inflates Python-heavy parts; the share is an upper bound"}  # fmt: skip


def ratios(stages: dict, total: list) -> dict:
    """BEFORE / now of wall and CPU per stage and in total (> 1: faster now); empty without BEFORE numbers."""
    out = {}
    for name, (w, c) in [*stages.items(), ("total", total)]:
        ref = BEFORE["total"] if name == "total" else BEFORE["stages"].get(name)
        if name == "estimation_and_prediction" and "langevin_crosscheck" not in stages:
            # the cross-check ran in the estimation stage's worker pool: compare with both stages before
            ref = tuple(a + b for a, b in zip(ref, BEFORE["stages"]["langevin_crosscheck"]))
        if ref:
            out[name] = {"wall": round(ref[0] / w, 2) if w > 0 else None, "cpu": round(ref[1] / c, 2) if c > 0 else None}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="run `fpkit reproduce --quick` instead of the default")
    ap.add_argument("--profile", action="store_true", help="run under cProfile and report the Python share")
    ap.add_argument("--out", default=None)
    ap.add_argument("--marks", default=None, help="write the stages' start and end times (Unix s) to this JSON file")
    args = ap.parse_args()
    from fpkit.cli import main as fpkit_main
    from fpkit.processes import USAGE

    out = args.out or tempfile.mkdtemp(prefix="fpkit-bench-")
    argv = ["reproduce", "--out", out] + (["--quick"] if args.smoke else [])
    stages = stage_cpu_timer()
    prof = cProfile.Profile() if args.profile else None
    t_start = time.time()
    w0, c0 = time.perf_counter(), cpu_time()
    if prof is not None:
        prof.runcall(fpkit_main, argv)
    else:
        fpkit_main(argv)
    total = [time.perf_counter() - w0, cpu_time() - c0]
    rest = [total[0] - sum(v[0] for v in stages.values()), total[1] - sum(v[1] for v in stages.values())]
    rec = {
        "case": "reproduce-quick" if args.smoke else "reproduce-default",
        "wall_s": round(total[0], 2),
        "cpu_s": round(total[1], 2),
        "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "workers_peak_rss_MB": round(USAGE["peak_rss_MB"], 1),
        "peak_rss_after_stage_MB": PEAK_AFTER,
        "stages_wall_cpu_s": {k: [round(w, 2), round(c, 2)] for k, (w, c) in stages.items()},
        "unstaged_wall_cpu_s": [round(rest[0], 2), round(rest[1], 2)],
        "load_average": os.getloadavg(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    if not args.smoke and not args.profile:
        rec["before"] = BEFORE
        rec["before_over_now"] = ratios({**stages, "unstaged": rest}, total)
    if prof is not None:
        rec.update(python_share(prof, total[0]))
    if args.marks:
        MARKS.append(("run", "end", time.time()))
        with open(args.marks, "w") as f:
            json.dump({"run_start": t_start, "marks": MARKS}, f)
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
