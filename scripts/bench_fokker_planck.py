"""Fokker-Planck explicit step: fpkit vs py-pde on the same grid, dt and number of steps, in one run.

Prints one JSON line per case: per-step time of each tool (median of repeats), the ratio, and the fraction of
the memory-bandwidth limit (copy bandwidth measured in this run; 24 bytes per point per step: read p, alpha,
beta, write p). In 2-D also the step kernels alone, side by side: the temporally blocked one (issue 21) and
the plain one-pass-per-step kernel it replaced. Also the start-up: a fresh process solving a small problem with the numba cache warm.

    python scripts/bench_fokker_planck.py [--smoke] [--repeats R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
from _timing import median_time

import fpkit

BYTES_PER_POINT = 24


def copy_bandwidth(n_bytes: int, repeats: int = 7) -> float:
    """Bytes per second moved by a copy (read + write) of an array of ``n_bytes``."""
    a = np.random.default_rng(0).random(max(n_bytes // 8, 1024))
    b = np.empty_like(a)
    inner = max(1, int(2e8 // a.nbytes))
    t = median_time(lambda: [np.copyto(b, a) for _ in range(inner)], repeats)
    return 2 * a.nbytes * inner / t


def fpkit_case(shape, n_steps, dt):
    ndim = len(shape)
    g = fpkit.Grid.uniform((-6.0,) * ndim, (6.0,) * ndim, shape)
    if ndim == 1:
        fp = fpkit.FokkerPlanck(g, drift=lambda x, t: -x, diffusion=0.5)
    else:
        fp = fpkit.FokkerPlanck(g, drift=lambda x, y, t: (-x, -y), diffusion=0.5)
    p0 = fpkit.gaussian(g, 1.0, 0.5)
    fp._faces(0.0)  # assembly once, as a time-independent problem does
    return g, fp, p0, (lambda: fp.solve(p0, [n_steps * dt], method="explicit", dt=dt))


def pypde_case(g, n_steps, dt):
    import pde

    ndim = g.ndim
    bounds = [(lo, hi) for lo, hi in zip(g.lo, g.hi)]
    grid = pde.CartesianGrid(bounds, list(g.n), periodic=False)
    if ndim == 1:
        rhs = "-d_dx(-x * p) + 0.5 * laplace(p)"
    else:
        rhs = "-d_dx(-x * p) - d_dy(-y * p) + 0.5 * laplace(p)"
    eq = pde.PDE({"p": rhs}, bc={"derivative": 0})
    state = pde.ScalarField.from_expression(grid, "exp(-((x-1)**2)/0.5)" if ndim == 1 else "exp(-((x-1)**2 + (y-1)**2)/0.5)")
    solver = pde.EulerSolver(eq, backend="numba", adaptive=False)
    # build (and compile) the stepper once; time only the stepping, as for fpkit
    stepper = solver.make_stepper(state, dt=dt)
    field = state.copy()

    def run():
        stepper(field, 0.0, n_steps * dt * (1 - 1e-9))

    return run


def step_kernels_2d(g, fp, p0, n_steps, dt, repeats):
    """Seconds per step of the 2-D explicit kernels side by side, interleaved, on the same faces and density:
    the temporally blocked one ``solve`` uses (TIME_BLOCK steps per pass) and the plain one (one pass per
    step, as before issue 21). Also checks they agree bit for bit."""
    from fpkit.solvers import finite_volume as fv

    (ax, bx), (ay, by) = fp._faces(0.0)
    args = (ax, bx, ay, by, 1 / g.dx[0], 1 / g.dx[1], False, False, dt, n_steps)
    q = {k: p0.reshape(g.shape).copy() for k in ("blocked", "plain")}
    work = np.empty(g.shape)
    fns = {"blocked": fv.explicit_euler_2d, "plain": fv.explicit_euler_2d_plain}
    for k, f in fns.items():  # warm-up (compilation)
        f(q[k], *args, work)
    times = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            t0 = time.perf_counter()
            f(q[k], *args, work)
            times[k].append(time.perf_counter() - t0)
    same = bool(np.array_equal(q["blocked"], q["plain"]))
    return {k: statistics.median(v) / n_steps for k, v in times.items()}, same


def startup_seconds() -> float:
    code = (
        "import fpkit;g=fpkit.Grid.uniform(-3,3,200);"
        "fp=fpkit.FokkerPlanck(g,drift=lambda x,t:-x,diffusion=0.5);"
        "fp.solve(fpkit.gaussian(g,0.5,0.3),[0.1],method='explicit')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)  # warms the numba cache
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, for CI")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--ndim", type=int, choices=(1, 2), default=None, help="only the 1-D or 2-D cases")
    args = ap.parse_args()
    if args.smoke:
        cases = [((256,), 200), ((32, 32), 50)]
        args.repeats = 1
    else:
        cases = [((4096,), 5000), ((1 << 20,), 50), ((256, 256), 200), ((1024, 1024), 20)]
    try:
        import pde  # noqa: F401

        have_pde = True
    except ImportError:
        have_pde = False
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    bw_ram = copy_bandwidth(1 << 27)
    if args.ndim:
        cases = [c for c in cases if len(c[0]) == args.ndim]
    for shape, n_steps in cases:
        g, fp, p0, run_fpkit = fpkit_case(shape, n_steps, 0.0)
        dt = 0.9 * fp.explicit_dt_bound()
        _, _, _, run_fpkit = fpkit_case(shape, n_steps, dt)
        t_fp = median_time(run_fpkit, args.repeats) / n_steps
        points = int(np.prod(shape))
        working_set = points * BYTES_PER_POINT
        bw_ws = copy_bandwidth(working_set) if working_set < (1 << 26) else bw_ram
        limit = BYTES_PER_POINT * points / bw_ws  # seconds per step at the copy bandwidth
        rec = {
            "case": f"fp-explicit-{len(shape)}d",
            "shape": list(shape),
            "steps": n_steps,
            "dt": dt,
            "fpkit_s_per_step": t_fp,
            "fpkit_points_per_s": points / t_fp,
            "bandwidth_limit_fraction": limit / t_fp,
            "copy_bandwidth_GBps": bw_ws / 1e9,
            "machine": machine,
        }
        if len(shape) == 2:
            per_step, same = step_kernels_2d(g, fp, p0, n_steps, dt, args.repeats)
            rec.update(
                kernel_s_per_step_blocked=per_step["blocked"],
                kernel_s_per_step_unblocked=per_step["plain"],
                speedup_blocked_vs_unblocked=per_step["plain"] / per_step["blocked"],
                bandwidth_limit_fraction_blocked_kernel=limit / per_step["blocked"],
                bandwidth_limit_fraction_unblocked_kernel=limit / per_step["plain"],
                blocked_equals_unblocked_bitwise=same,
                load_average=os.getloadavg()[0],
            )
        if have_pde and points <= 1 << 20:
            try:
                t_pde = median_time(pypde_case(g, n_steps, dt), max(1, args.repeats // 2)) / n_steps
                rec.update(pypde_s_per_step=t_pde, ratio_vs_pypde=t_pde / t_fp)
            except Exception as exc:  # report, do not hide
                rec["pypde_error"] = repr(exc)
        print(json.dumps(rec), flush=True)
    print(json.dumps({"case": "startup", "fresh_process_first_solve_s": startup_seconds(), "machine": machine}))


if __name__ == "__main__":
    main()
