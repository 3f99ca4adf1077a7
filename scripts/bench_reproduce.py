"""Wall time and peak memory of `fpkit reproduce`, per stage, and the share of time spent in Python outside
compiled kernels.

The run happens in this process under cProfile: time inside numba-compiled functions, numpy/scipy C code and
LAPACK is "in kernels"; the rest (tottime of functions defined in .py files) is "Python". Peak memory is the
process's maximum resident set size. Prints one JSON line.

    python scripts/bench_reproduce.py [--smoke] [--out DIR]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import resource
import tempfile
import time


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="run `fpkit reproduce --quick` instead of the default")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from fpkit.cli import main as fpkit_main

    out = args.out or tempfile.mkdtemp(prefix="fpkit-bench-")
    argv = ["reproduce", "--out", out] + (["--quick"] if args.smoke else [])
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.runcall(fpkit_main, argv)
    wall = time.perf_counter() - t0
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
    import h5py

    with h5py.File(os.path.join(out, "results.h5"), "r") as f:
        timings = json.loads(f.attrs["timings"])
    rec = {
        "case": "reproduce-quick" if args.smoke else "reproduce-default",
        "wall_s": wall,
        "peak_rss_MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "stages_s": timings,
        "python_outside_kernels_share": python_time / wall,
        "numba_kernels_share": kernel_time / wall,
        "profiler_note": "cProfile inflates Python-heavy parts; the share is an upper bound",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
