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
    python_time = 0.0
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():
        if filename.endswith(".py") and "numba" not in filename:
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
        "profiler_note": "cProfile inflates Python-heavy parts; the share is an upper bound",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
