"""KPZ: fpkit vs py-pde's KPZInterfacePDE on the same grid, dt and number of steps, in one process run.

Physics matched: ∂t h = ν∇²h + (λ/2)|∇h|² + η, ⟨ηη⟩ = 2Dδδ. py-pde's KPZInterfacePDE multiplies |∇h|² by its
``lmbda`` (not lmbda/2) and its ``noise`` is the variance rate (per-step noise √(noise·dt/aᵈ)ξ), so it gets
lmbda = λ/2 and noise = 2D. Both integrate with explicit Euler-Maruyama at the same dt.

Prints one JSON line per case:

* ``speed``: lattice updates per second of each tool (median of interleaved repeats), the ratio, and the
  fraction of the random-number limit (the rate at which the same generator fills an array with normals on
  the same number of threads; one normal per lattice update), for 1 numba thread and for all of them.
  fpkit runs one realisation, as py-pde does; in 1-D another case runs one realisation per thread (fpkit
  parallelises over realisations).
* ``stationary_width``: time-averaged ⟨w²⟩ of both tools, started from the exact stationary measure, against
  the exact value: the random-walk value D a (N² − 1)/(12 ν N) for 1-D KPZ (Lam-Shin keeps it, the naive
  stencil does not; fpkit's own naive stencil is run too, with many realisations, as the precise
  reference for what py-pde's discretisation gives) and the exact lattice EW value (including the Euler-Maruyama time discretisation) in 2-D.
* ``startup``: a fresh process running a small KPZ problem with the numba cache warm.

    python scripts/bench_kpz.py [--smoke] [--repeats R]

``--smoke`` runs small sizes in seconds and skips py-pde (its numba compilation alone takes ~20-30 s).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time

import numba
import numpy as np

import fpkit
from fpkit.kpz import KPZ, ew_width_exact, random_walk_width2
from fpkit.solvers.random import draw_normals, draw_normals_serial, seed_streams

NU, D = 1.0, 1.0


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, numba threads {numba.get_num_threads()}"


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def grid_for(shape):
    if len(shape) == 1:
        return fpkit.Grid.uniform(0.0, float(shape[0]), shape[0])
    return fpkit.Grid.uniform((0.0,) * len(shape), tuple(float(n) for n in shape), shape)


class PyPDE:
    """A compiled py-pde Euler-Maruyama stepper for KPZInterfacePDE with fpkit's physics and noise."""

    def __init__(self, shape, lam, dt, seed=0):
        import pde
        from pde.solvers import EulerSolver

        self.grid = pde.CartesianGrid([[0.0, float(n)] for n in shape], list(shape), periodic=True)
        self.state = pde.ScalarField(self.grid, 0.0)
        self.eq = pde.KPZInterfacePDE(
            nu=NU, lmbda=0.5 * lam, noise=2.0 * D, bc="periodic", rng=np.random.default_rng(seed)
        )
        self.dt = dt
        t0 = time.perf_counter()
        self.stepper = EulerSolver(self.eq, backend="numba", adaptive=False).make_stepper(self.state, dt=dt)
        self.stepper(self.state, 0.0, dt)  # first call compiles the loop
        self.compile_s = time.perf_counter() - t0

    def set(self, h):
        self.state.data[...] = h

    def steps(self, n):
        self.stepper(self.state, 0.0, n * self.dt)
        return self.state.data


def rng_limit(n_streams, per_stream):
    """Normals per second of the ziggurat used by fpkit's kernels on ``n_streams`` parallel streams.

    Fills ``per_stream`` normals per stream in calls of at most 2²⁰ per stream, so the call overhead is
    negligible and this is the generator's own rate; one stream runs in the calling thread, as fpkit's
    single-realisation kernels do.
    """
    st = seed_streams(0, n_streams)
    m = int(min(per_stream, 1 << 20))
    n_rep = max(1, round(per_stream / m))
    out = np.empty((n_streams, m))
    fill = draw_normals if n_streams > 1 else draw_normals_serial
    fill(st, out)

    def go():
        for _ in range(n_rep):
            fill(st, out)

    return go, n_streams * m * n_rep


def speed_cases(shape, n_steps, dt, lam, repeats, with_pde, n_real=1):
    """One JSON record per numba thread count (1 and all), timings interleaved across tools and counts.

    The random-number limit is measured on as many streams as the fpkit case can keep busy: one per
    realisation in 1-D, one per lattice row in 2-D (so 2-D with one realisation still uses every thread).
    py-pde runs under the same numba thread count (its operators use numba's threads on big grids).
    """
    g = grid_for(shape)
    k = KPZ(g, nu=NU, lam=lam, noise=D, scheme="lam-shin")
    n_sites = g.size
    k.run([dt], n_realisations=n_real, dt=dt)  # compile / load the cache
    fp = lambda: k.run([n_steps * dt], n_realisations=n_real, dt=dt, seed=1, keep_heights=False)
    max_threads = numba.get_num_threads()
    counts = sorted({1, max_threads})
    pp = PyPDE(shape, lam, dt) if with_pde else None
    rng = {}
    for nt in counts:
        # the streams fpkit can keep busy: realisations (1-D, or 2-D with R ≥ threads), else rows
        streams = n_real if (len(shape) == 1 or n_real >= nt) else nt
        rng[nt] = rng_limit(streams, max(1, n_sites * n_real * n_steps // streams)) + (min(streams, nt),)
    t = {(nt, name): [] for nt in counts for name in ("fp", "rng", "pde")}
    for _ in range(repeats):  # interleaved, so load from other processes hits all alike
        for nt in counts:
            numba.set_num_threads(nt)
            t[nt, "rng"].append(timed(rng[nt][0]))
            t[nt, "fp"].append(timed(fp))
            if pp is not None:
                pp.set(0.0)
                t[nt, "pde"].append(timed(lambda: pp.steps(n_steps)))
    numba.set_num_threads(max_threads)
    out = []
    for nt in counts:
        ups_fp = n_sites * n_real * n_steps / statistics.median(t[nt, "fp"])
        rng_rate = rng[nt][1] / statistics.median(t[nt, "rng"])
        rec = {
            "case": "speed",
            "shape": list(shape),
            "dt": dt,
            "lam": lam,
            "n_steps": n_steps,
            "numba_threads": nt,
            "fpkit_realisations": n_real,
            "fpkit_updates_per_s": ups_fp,
            "rng_normals_per_s": rng_rate,
            "rng_threads_busy": rng[nt][2],
            "fpkit_fraction_of_rng_limit": ups_fp / rng_rate,
            "repeats": repeats,
        }
        if pp is not None:
            ups_pde = n_sites * n_steps / statistics.median(t[nt, "pde"])
            rec.update(
                pypde_updates_per_s=ups_pde,
                ratio_fpkit_over_pypde=ups_fp / ups_pde,
                pypde_compile_s=pp.compile_s,
                pypde_finite=bool(np.all(np.isfinite(pp.state.data))),
            )
        else:
            rec["pypde"] = "not run for this case"
        rec["machine"] = machine()
        out.append(rec)
    return out


def width_case(shape, lam, dt, t_burn, t_end, n_samples, n_real, n_real_pde, with_pde):
    g = grid_for(shape)
    k = KPZ(g, nu=NU, lam=lam, noise=D, scheme="lam-shin")
    if len(shape) == 1:
        exact = random_walk_width2(shape[0], 1.0, NU, D)
        exact_label = "random walk D a (N^2-1)/(12 nu N)"
    else:
        exact = float(ew_width_exact(g, NU, D, [1e9], dt=dt, method="euler")[0])
        exact_label = "lattice EW with Euler-Maruyama at this dt"
    t_s = np.linspace(t_burn, t_end, n_samples)
    t0 = time.perf_counter()
    s = k.run(t_s, n_realisations=n_real, dt=dt, seed=3, h0="stationary", keep_heights=False)
    per = s.w2.mean(axis=0)
    rec = {
        "case": "stationary_width",
        "shape": list(shape),
        "lam": lam,
        "dt": dt,
        "t": [t_burn, t_end],
        "exact_w2": exact,
        "exact": exact_label,
        "fpkit_w2": float(per.mean()),
        "fpkit_se": float(per.std(ddof=1) / math.sqrt(per.size)),
        "fpkit_rel_err": float(per.mean() / exact - 1),
        "fpkit_realisations": n_real,
        "fpkit_s": time.perf_counter() - t0,
    }
    if lam != 0.0:
        # fpkit's own naive central stencil on the same runs: the discretisation py-pde uses
        nv = KPZ(g, nu=NU, lam=lam, noise=D, scheme="naive").run(
            t_s, n_realisations=n_real, dt=dt, seed=3, h0="stationary", keep_heights=False
        )
        per_nv = nv.w2.mean(axis=0)
        rec.update(
            fpkit_naive_w2=float(per_nv.mean()),
            fpkit_naive_se=float(per_nv.std(ddof=1) / math.sqrt(per_nv.size)),
            fpkit_naive_rel_err=float(per_nv.mean() / exact - 1),
        )
    if with_pde:
        t0 = time.perf_counter()
        pp = PyPDE(shape, lam, dt, seed=5)
        h0 = k.sample_stationary(n_real_pde, seed=99)
        w_pde = []
        for r in range(n_real_pde):
            pp.set(h0[r])
            done, acc = 0, []
            for ts in t_s:
                target = round(ts / dt)
                h = pp.steps(target - done).copy()
                done = target
                acc.append(np.mean((h - h.mean()) ** 2))
            w_pde.append(np.mean(acc))
        w_pde = np.array(w_pde)
        rec.update(
            pypde_w2=float(w_pde.mean()),
            pypde_se=float(w_pde.std(ddof=1) / math.sqrt(w_pde.size)) if w_pde.size > 1 else None,
            pypde_rel_err=float(w_pde.mean() / exact - 1),
            pypde_realisations=n_real_pde,
            pypde_finite=bool(np.all(np.isfinite(w_pde))),
            pypde_s=time.perf_counter() - t0,
        )
    return rec


def startup_case():
    code = (
        "import time; t0 = time.perf_counter(); import fpkit; from fpkit.kpz import KPZ;"
        "KPZ(fpkit.Grid.uniform(0, 64, 64), lam=1.0).run([1.0], n_realisations=2, dt=0.05);"
        "print(time.perf_counter() - t0)"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {
        "case": "startup",
        "process_s": time.perf_counter() - t0,
        "import_and_run_s": float(out.stdout.split()[-1]),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="small sizes, seconds, no py-pde")
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    smoke = args.smoke
    with_pde = not smoke
    reps = args.repeats or (2 if smoke else 5)
    lam, dt = 2.0, 0.05
    if smoke:
        cases = [((256,), 200, 1), ((32, 32), 20, 1)]
    else:
        nt = numba.get_num_threads()
        cases = [((4096,), 2000, 1), ((4096,), 2000, nt), ((512, 512), 20, 1), ((512, 512), 20, nt)]
    for shape, n_steps, n_real in cases:
        use_pde = with_pde and n_real == 1
        for rec in speed_cases(shape, n_steps, dt, lam, reps, use_pde, n_real):
            print(json.dumps(rec), flush=True)
    if smoke:
        print(json.dumps(width_case((64,), lam, dt, 5.0, 20.0, 4, 32, 1, False)), flush=True)
        print(json.dumps(width_case((16, 16), 0.0, dt, 5.0, 20.0, 4, 8, 1, False)), flush=True)
    else:
        print(json.dumps(width_case((256,), lam, dt, 500.0, 3000.0, 26, 256, 32, True)), flush=True)
        print(json.dumps(width_case((64, 64), 0.0, dt, 200.0, 1000.0, 9, 16, 4, True)), flush=True)
    print(json.dumps(startup_case()), flush=True)


if __name__ == "__main__":
    main()
