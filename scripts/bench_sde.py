"""Langevin sampler benchmark: fpkit vs a vectorised numpy Euler-Maruyama vs torch (plain loop and torchsde).

Same problem, same step, same number of paths and steps in one process run:

* ``ou``          dX = −X dt + √(2·0.5) dW
* ``double-well`` dX = (X − X³) dt + √(2·0.5) dW

fpkit runs each drift in the forms users write it (issue 21):

* ``fpkit_lambda``: a plain ``lambda x, t: ...`` (compiled with numba by fpkit and inlined in the kernel),
* ``fpkit_lambda_vectorised``: the same lambda on the vectorised step loop (``engine="numpy"``), which is
  what a plain lambda ran before it was compiled, and what a callable numba cannot compile runs now,
* ``fpkit_polynomial``: a ``numpy.polynomial.Polynomial`` (the fastest form before issue 21),

plus an ``uncompilable`` case: the OU drift reading its rate from a dict (numba cannot compile it), once
with ``engine="auto"`` (tries to compile, falls back) and once with ``engine="numpy"``: a fallback must be
no slower than the vectorised path.

Reported per case (one JSON line each): path-steps per second for every contender (median of repeats after
a warm-up run, contenders interleaved so load changes hit all alike), ratios to the hand-written numpy loop
``x += a(x)*dt + s*rng.standard_normal(n)``, and the fraction of the random-number limit, i.e. of the rate at
which the same number of standard normals can be drawn alone: with fpkit's generator (per-path streams,
same threads, numbers summed so nothing is stored) and with numpy's ``Generator.standard_normal`` (into a
preallocated buffer, as the numpy loop draws them). The machine's load average is printed with each line.
Last lines: compile cost of a user's lambda in this process, and start-up of a fresh process (numba kernels
loaded from the on-disk cache; a user's function is compiled anew in every process, see
``fpkit.solvers.callables``).

    python scripts/bench_sde.py                 # 2e5 paths, 500 steps of 1e-3 (issue 21's acceptance size)
    python scripts/bench_sde.py --paths 1000000
    python scripts/bench_sde.py --smoke         # a few seconds, for CI
"""

from __future__ import annotations

import os

# numba's and torch's OpenMP pools take turns here: with the default (active) wait policy each pool's idle
# threads spin after a call and steal the cores from the other (torch ran 15x slower that way on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time

import numba
import numpy as np
from numpy.polynomial import Polynomial

from fpkit.sde import SDE
from fpkit.solvers._numba import kernel, prange
from fpkit.solvers.random import seed_streams
from fpkit.solvers.sde_kernels import _fill_chunk

D = 0.5
CASES = {
    "ou": Polynomial([0.0, -1.0]),
    "double-well": Polynomial([0.0, 1.0, 0.0, -1.0]),
}


@kernel(parallel=True)
def _normals_only(state, n_per_stream, out):
    """The random-number limit: ``n_per_stream`` normals from every stream, only their sums kept. Drawn in the
    fastest layout measured: blocks of 32 streams, chunks of 32 normals per stream filled stream by stream
    with the state in registers (1.85x drawing one normal per stream in turn), then summed across the block."""
    n = state.shape[0]
    w = 32
    for blk in prange((n + w - 1) // w):
        k0 = blk * w
        m = min(w, n - k0)
        z = np.empty((32, w))
        acc = np.zeros(w)
        j0 = 0
        while j0 < n_per_stream:
            s = min(32, n_per_stream - j0)
            _fill_chunk(state, k0, m, s, z)  # the SDE kernels' own draw
            for j in range(s):
                for k in range(m):
                    acc[k] += z[j, k]
            j0 += s
        for k in range(m):
            out[k0 + k] = acc[k]


def interleaved_medians(contenders: dict, repeats: int) -> dict:
    """Median wall time of each callable; rounds run every contender once, so that load changes on a
    shared machine hit all of them alike. One warm-up call each first (compilation, caches, thread pools)."""
    for fn in contenders.values():
        fn()
    times: dict = {k: [] for k in contenders}
    for _ in range(repeats):
        for k, fn in contenders.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def numpy_em(case: str, n: int, steps: int, dt: float, seed: int) -> np.ndarray:
    """Vectorised Euler-Maruyama, tuned: preallocated buffers, in-place ufuncs, one normal draw per step."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    z = np.empty(n)
    tmp = np.empty(n)
    s = math.sqrt(2 * D * dt)
    for _ in range(steps):
        rng.standard_normal(out=z)
        if case == "ou":
            np.multiply(x, -dt, out=tmp)
        else:  # (x − x³) dt = x (1 − x²) dt
            np.multiply(x, x, out=tmp)
            np.subtract(1.0, tmp, out=tmp)
            tmp *= x
            tmp *= dt
        x += tmp
        z *= s
        x += z
    return x


def torch_contenders(case: str, n: int, steps: int, dt: float, seed: int):
    """{name: callable} for torch: an in-place tensor loop, and torchsde's sdeint if installed."""
    try:
        import torch
    except ImportError:
        return {}, "torch not installed"
    torch.manual_seed(seed)
    s = math.sqrt(2 * D * dt)
    out = {}

    def torch_loop():
        x = torch.zeros(n, dtype=torch.float64)
        z = torch.empty(n, dtype=torch.float64)
        tmp = torch.empty(n, dtype=torch.float64)
        with torch.no_grad():
            for _ in range(steps):
                z.normal_()
                if case == "ou":
                    torch.mul(x, -dt, out=tmp)
                else:
                    torch.mul(x, x, out=tmp)
                    tmp.neg_().add_(1.0).mul_(x).mul_(dt)
                x.add_(tmp).add_(z, alpha=s)
        return x

    out["torch_inplace_loop"] = torch_loop
    note = f"torch {torch.__version__}, {torch.get_num_threads()} threads"
    try:
        import torchsde
    except ImportError:
        return out, note + "; torchsde not installed"

    class _SDE(torch.nn.Module):
        noise_type, sde_type = "diagonal", "ito"

        def f(self, t, y):
            return -y if case == "ou" else y - y**3

        def g(self, t, y):
            return torch.full_like(y, math.sqrt(2 * D))

    sde_mod = _SDE()

    def torchsde_run():
        y0 = torch.zeros(n, 1, dtype=torch.float64)
        ts = torch.tensor([0.0, steps * dt], dtype=torch.float64)
        with torch.no_grad():
            return torchsde.sdeint(sde_mod, y0, ts, method="euler", dt=dt)

    out["torchsde"] = torchsde_run
    return out, note + f", torchsde {getattr(torchsde, '__version__', '?')}"


_RATE = {"k": 1.0}  # read by the uncompilable drift: numba cannot type a dict global

LAMBDAS = {
    "ou": lambda x, t: -x,
    "double-well": lambda x, t: x - x**3,
    "uncompilable": lambda x, t: -_RATE["k"] * x,
}


def bench_case(case: str, n: int, steps: int, dt: float, repeats: int, with_torch: bool) -> dict:
    kind = "ou" if case == "uncompilable" else case
    T = steps * dt
    path_steps = n * steps
    run = dict(n_paths=n, dt=dt, seed=1)
    lam = SDE(LAMBDAS[case], D)
    if case == "uncompilable":
        contenders = {
            "fpkit_auto": lambda: lam.sample(0.0, [T], **run),
            "fpkit_lambda_vectorised": lambda: lam.sample(0.0, [T], engine="numpy", **run),
        }
    else:
        poly = SDE(CASES[case], D)
        contenders = {
            "fpkit_lambda": lambda: lam.sample(0.0, [T], **run),
            "fpkit_polynomial": lambda: poly.sample(0.0, [T], **run),
            "fpkit_lambda_vectorised": lambda: lam.sample(0.0, [T], engine="numpy", **run),
        }
    contenders["numpy"] = lambda: numpy_em(kind, n, steps, dt, 1)
    note = "torch skipped"
    if with_torch and case != "uncompilable":
        extra, note = torch_contenders(kind, n, steps, dt, 1)
        contenders.update(extra)
    # the random-number limits: the same number of normals, drawn alone
    state = seed_streams(1, n)
    sums = np.empty(n)
    rng = np.random.default_rng(1)
    buf = np.empty(n)

    def numpy_normals():
        for _ in range(steps):
            rng.standard_normal(out=buf)

    contenders["rng_fpkit"] = lambda: _normals_only(state, steps, sums)
    contenders["rng_numpy"] = numpy_normals
    load_before = os.getloadavg()[0]
    med = interleaved_medians(contenders, repeats)
    rate = {k: path_steps / v for k, v in med.items() if not k.startswith("rng_")}
    ours, theirs = path_steps / med["rng_fpkit"], path_steps / med["rng_numpy"]
    # sanity: the compiled and the vectorised lambda give the same paths; the ensembles agree with numpy's
    first = "fpkit_auto" if case == "uncompilable" else "fpkit_lambda"
    a = contenders[first]()
    b = contenders["fpkit_lambda_vectorised"]()
    xn = numpy_em(kind, n, steps, dt, 1)
    fpk = {k: v for k, v in rate.items() if k.startswith("fpkit")}
    res = {
        "case": case,
        "n_paths": n,
        "steps": steps,
        "dt": dt,
        "engine_of_" + first: a.meta["engine"],
        "path_steps_per_s": {k: float(f"{v:.4g}") for k, v in rate.items()},
        "ratio_to_numpy_loop": {k: round(v / rate["numpy"], 2) for k, v in fpk.items()},
        "ratio_to_lambda_vectorised": {k: round(v / rate["fpkit_lambda_vectorised"], 2) for k, v in fpk.items()},
        "rng_limit_path_steps_per_s": {
            "fpkit_generator": float(f"{ours:.4g}"),
            "numpy_generator": float(f"{theirs:.4g}"),
        },
        "fraction_of_rng_limit_fpkit_generator": {k: round(v / ours, 3) for k, v in fpk.items()},
        "fraction_of_rng_limit_numpy_generator": {k: round(v / theirs, 3) for k, v in rate.items()},
        "max_abs_diff_compiled_vs_vectorised": float(np.max(np.abs(a.x - b.x))),
        "var_fpkit_vs_numpy": [round(float(np.var(a.x[-1])), 4), round(float(np.var(xn)), 4)],
        "threads": numba.get_num_threads(),
        "torch": note,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared VM)",
    }
    return res


def compile_seconds() -> dict:
    """In this process: first sample with a fresh lambda (compile + verify) minus a warm sample, and the cost
    of a failed compile attempt (the uncompilable fallback pays it once per coefficient)."""
    out = {}
    for name, make in [
        ("ou_lambda", lambda: (lambda x, t: -x)),
        ("double_well_lambda", lambda: (lambda x, t: x - x**3)),
        ("uncompilable_lambda", lambda: (lambda x, t: -_RATE["k"] * x)),
    ]:
        sde = SDE(make(), D)
        t = time.perf_counter()
        sde.sample(0.0, [0.01], n_paths=1000, dt=0.001, seed=1)
        first = time.perf_counter() - t
        t = time.perf_counter()
        sde.sample(0.0, [0.01], n_paths=1000, dt=0.001, seed=1)
        out[name] = round(first - (time.perf_counter() - t), 3)
    return out


def startup_seconds(drift: str) -> float:
    """Wall time of a fresh process that imports fpkit and samples 1000 paths (kernels from the disk cache;
    a lambda is compiled in the process)."""
    code = (
        "from numpy.polynomial import Polynomial as P; from fpkit.sde import SDE; "
        f"SDE({drift}, 0.5).sample(0.0, [1.0], n_paths=1000, dt=0.01)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # make sure the cache is filled
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t


def baseline_process_seconds() -> float:
    """A fresh process that only imports numpy: what every start-up pays anyway."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import numpy"], check=True)
    return time.perf_counter() - t


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=200_000)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--dt", type=float, default=1e-3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cases", nargs="+", default=[*CASES, "uncompilable"], choices=[*CASES, "uncompilable"])
    ap.add_argument("--no-torch", action="store_true", help="skip the torch contenders")
    ap.add_argument("--threads", type=int, default=None, help="threads for numba and torch (default: all)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds (CI)")
    args = ap.parse_args(argv)
    if args.threads:
        numba.set_num_threads(args.threads)
        try:
            import torch

            torch.set_num_threads(args.threads)
        except ImportError:
            pass
    if args.smoke:
        args.paths, args.steps, args.repeats = 10_000, 20, 1
    for case in args.cases:
        print(json.dumps(bench_case(case, args.paths, args.steps, args.dt, args.repeats, not args.no_torch)),
              flush=True)  # fmt: skip
    print(json.dumps({"case": "compile", "first_sample_extra_s": compile_seconds()}), flush=True)
    print(json.dumps({
        "case": "startup",
        "fresh_process_import_and_sample_s": {
            "polynomial": round(startup_seconds("P([0, -1])"), 2),
            "lambda": round(startup_seconds("lambda x, t: -x"), 2),
            "python_import_numpy_only": round(baseline_process_seconds(), 2),
        },
        "note": "kernels come from numba's disk cache; a user's lambda is compiled in every process",
        "load_average": round(os.getloadavg()[0], 2),
    }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
