"""Callan-Symanzik: time to a given accuracy on a closed-form case, all solvers side by side in one run.

Case: β = g(1 − g), γ = c g on g ∈ [−0.5, 0.9] (outflow at both ends), G0 smooth, solved to s = 1, where
G(g, s) = G0(gE/(1 − g + gE)) (1 − g + gE)^c, E = e^(−s) (docs/derivations.md). Every solver must deliver G
at the same 201 output points with max error ≤ the target (default 1e-6); grid solutions are interpolated
there by cubics, so interpolation error counts too. Each solver's cheapest setting that reaches the target
is found by refinement (grid: doubling n; characteristics: loosening rtol), then timed as the median of
repeats (after a warm-up, so numba compilation is excluded; the cached start-up is reported separately).

Solvers: fpkit "characteristics" (DOP853 along characteristics), fpkit "semi-lagrangian", fpkit "upwind"
(MUSCL van Leer + SSP-RK3), and a plain scipy ``solve_ivp`` method of lines (second-order central
differences via ``np.gradient``, RK45), the baseline of the ratios.

    python scripts/bench_cs.py [--smoke] [--target 1e-6] [--repeats 5]

Prints one JSON line per solver and a summary line with the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time

import numpy as np
from _timing import median_time
from fpkit.solvers.transport import cubic_interpolate
from scipy.integrate import solve_ivp

import fpkit
from fpkit.callan_symanzik import CallanSymanzik

LO, HI, C, S_END = -0.5, 0.9, 0.9, 1.0
POINTS = np.linspace(LO + 0.01, HI - 0.01, 201)


def G0(x):
    return np.exp(-((x - 0.3) ** 2) / 0.05) + 0.5 * np.cos(2 * x)


def beta(x):
    return x * (1 - x)


def gamma(x):
    return C * x


def exact(x, s=S_END):
    E = math.exp(-s)
    den = 1 - x + x * E
    return G0(x * E / den) * den**C


REF = exact(POINTS)


# --- the solvers, each returning G at POINTS -----------------------------------------------------------------
def run_characteristics(rtol):
    cs = CallanSymanzik(fpkit.Grid.uniform(LO, HI, 8), beta=beta, gamma=gamma)
    return cs.solve(G0, [S_END], method="characteristics", points=POINTS, rtol=rtol, atol=rtol * 0.1).G[-1]


def run_grid(method, n):
    cs = CallanSymanzik(fpkit.Grid.uniform(LO, HI, n), beta=beta, gamma=gamma)
    return cs.solve(G0, [S_END], method=method, points=POINTS).G[-1]


def run_solve_ivp(n):
    """Plain method of lines: ∂s G = −β ∂g G − γ G with np.gradient (2nd order, one-sided at the ends), RK45."""
    grid = fpkit.Grid.uniform(LO, HI, n)
    x, dx = grid.x, grid.dx[0]
    b, c = beta(x), gamma(x)

    def rhs(s, G):
        return -b * np.gradient(G, dx, edge_order=2) - c * G

    sol = solve_ivp(rhs, (0.0, S_END), G0(x), method="RK45", rtol=1e-9, atol=1e-11)
    return cubic_interpolate(sol.y[:, -1], LO, dx, POINTS)


def error(vals):
    return float(np.max(np.abs(vals - REF)))


def refine(make, params, target):
    """First parameter in ``params`` whose solution meets ``target``; (param, error) or (None, last error)."""
    err = math.inf
    for p in params:
        err = error(make(p)())
        if err <= target:
            return p, err
    return None, err


def startup_seconds() -> float:
    """A fresh process importing fpkit and solving a small upwind + semi-Lagrangian problem (numba cache warm)."""
    code = (
        "import numpy as np, fpkit; from fpkit.callan_symanzik import CallanSymanzik as C;"
        "cs=C(fpkit.Grid.uniform(0,1,50), beta=lambda x: x, gamma=0.0);"
        "cs.solve(lambda x: x, [0.1], method='upwind'); cs.solve(lambda x: x, [0.1], method='semi-lagrangian')"
    )
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="a few seconds: target 1e-4, one repeat")
    ap.add_argument(
        "--target", type=float, default=None, help="max error at the output points (default 1e-6)"
    )
    ap.add_argument("--repeats", type=int, default=None)
    args = ap.parse_args(argv)
    target = args.target if args.target is not None else (1e-4 if args.smoke else 1e-6)
    repeats = args.repeats if args.repeats is not None else (1 if args.smoke else 5)
    machine = {
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    doublings = [50 * 2**k for k in range(9)]  # 50 … 12800
    solvers = {
        "characteristics": (
            lambda r: lambda: run_characteristics(r),
            [10.0**-k for k in range(1, 14)],
            "rtol",
        ),
        "semi-lagrangian": (lambda n: lambda: run_grid("semi-lagrangian", n), doublings, "n"),
        "upwind": (lambda n: lambda: run_grid("upwind", n), doublings, "n"),
        "solve_ivp-mol": (lambda n: lambda: run_solve_ivp(n), doublings[:8], "n"),
    }
    results = {}
    for name, (make, params, pname) in solvers.items():
        p, err = refine(make, params, target)
        row = {
            "bench": "cs-time-to-accuracy",
            "case": "logistic beta=g(1-g), gamma=0.9 g, s=1",
            "solver": name,
            "target": target,
            pname: p,
            "error": err,
        }
        if p is None:
            row["time_s"] = None
            row["note"] = f"target not reached up to {pname}={params[-1]}"
        else:
            row["time_s"] = median_time(make(p), repeats)
            if name == "upwind":
                # stencil cost per point and step (the grid fits in cache here: compute-bound, not memory-bound)
                cs = CallanSymanzik(fpkit.Grid.uniform(LO, HI, p), beta=beta, gamma=gamma)
                steps = cs.solve(G0, [S_END], method=name).meta["n_steps"]
                row["n_steps"] = steps
                row["ns_per_point_step"] = 1e9 * row["time_s"] / (steps * p)
        results[name] = row
    base = results["solve_ivp-mol"]["time_s"]
    for row in results.values():
        row["speedup_vs_solve_ivp"] = (base / row["time_s"]) if (base and row["time_s"]) else None
        print(json.dumps(row | machine))
    summary = {
        "bench": "cs-summary",
        "target": target,
        "repeats": repeats,
        "time_s": {k: v["time_s"] for k, v in results.items()},
        "speedup_vs_solve_ivp": {k: v["speedup_vs_solve_ivp"] for k, v in results.items()},
        "startup_s": startup_seconds(),
    }
    print(json.dumps(summary | machine))


if __name__ == "__main__":
    main()
