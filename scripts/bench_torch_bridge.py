"""Training speed of the PyTorch bridge (fpkit.torch.TorchEnsemble) vs the numba trainer and a Python loop.

The same ensemble is trained, side by side in one process, by

* "numba":  ``fpkit.Ensemble.advance`` (lane kernels, members in the innermost axis),
* "bridge": ``fpkit.torch.TorchEnsemble.advance`` (torch.func vmap over members, the gradient replayed as a
  captured graph; one thread),
* "bridge_eager": the same with ``capture=False`` (every op through functorch's vmap/grad dispatch),
* "bridge_compiled" (``--compile``, digits model only): the same with ``compile=True`` (torch.compile),
* "loop":   a Python loop over members, each an ``nn.Module`` with its own ``torch.optim.SGD`` and the usual
  ``zero_grad(); loss.backward(); step()`` (one thread; timed on ``--loop-members`` members, its cost is per
  member),
* "loop_lean": the leanest loop we could write: ``torch.autograd.grad`` and one multi-tensor update per member
  (no optimiser object, no .grad bookkeeping),

for the default autoencoder (tanh 8 → 3 → 3 → 8, M = 1024, n = 512 Gaussian samples, B = 8 iid, plain SGD,
float64) and a digits-sized one (64 → 32 → 8 → 32 → 64, M = 256, Gaussian stand-in data of that size).
Snapshot statistics are not timed (training steps only). One JSON line per case: member-steps per second,
wall clock (median of ``--repeats``) and per CPU-second of the process (the machine is shared); the bridge's
line also gives its first step's CPU seconds (capturing the graph); then one line per model with the ratios
bridge/loop, bridge/loop_lean, bridge/bridge_eager and numba/bridge (wall and CPU).

Then the crossover: numba and the bridge on the autoencoder 64 → w → 8 → w → 64 at M = 256 for hidden widths
w in ``--widths``; the width where the bridge overtakes numba is interpolated log-log between the two widths
whose numba/bridge ratio brackets 1 (one JSON line per width, then one ``crossover`` line).

Torch runs one intra-op thread in every case, set before each and reported after it (``torch_threads``;
numba's OpenMP layer no longer overwrites it: ``fpkit.solvers._numba``, tests/test_torch_threads.py).

``--compile`` adds, for the digits model, ``torch.compile`` (inductor, CPU) of the same vmapped gradient: its
compile seconds (wall; inductor compiles C++ in worker processes whose CPU time this process does not see) and
CPU ms per call beside the captured graph and the eager transform (slow: up to a minute on a cold cache).

Run: ``python scripts/bench_torch_bridge.py`` (needs ``pip install -e ".[torch]"``); ``--smoke`` runs tiny
sizes in seconds; without torch it says so and exits 0.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

MODELS = {"autoencoder-8-3": dict(sizes=[8, 3, 3, 8], members=1024, n=512),
          "digits-64-32-8": dict(sizes=[64, 32, 8, 32, 64], members=256, n=512)}  # fmt: skip


def timed(fn, repeats: int):
    """Median wall and CPU seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def module(torch, sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(torch.nn.Linear(a, b, bias=False))
        if i < len(sizes) - 2:
            layers.append(torch.nn.Tanh())
    return torch.nn.Sequential(*layers).double()


def half_sq(out, y):
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, a few seconds")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--loop-members", type=int, default=16)
    ap.add_argument("--widths", default="8,16,32,64,128", help="hidden widths w of the crossover sweep")
    ap.add_argument("--sweep-steps", type=int, default=60)
    ap.add_argument("--models", default=",".join(MODELS), help="which of the models to time (comma-separated)")
    ap.add_argument("--no-sweep", action="store_true", help="skip the crossover sweep")
    ap.add_argument("--compile", action="store_true", help="also time torch.compile of the digits gradient")
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        print(json.dumps({"case": "skipped", "reason": "torch is not installed (pip install -e '.[torch]')"}))
        return 0
    import fpkit.torch as ft
    from fpkit.data import arrays
    from fpkit.ensemble import Ensemble

    torch.set_num_threads(1)
    steps, repeats, loop_m = (5, 1, 2) if args.smoke else (args.steps, args.repeats, args.loop_members)
    for name, spec in MODELS.items():
        if name not in args.models.split(","):
            continue
        sizes, M, n = spec["sizes"], spec["members"], spec["n"]
        if args.smoke:
            M, n = 16, 64
        rng = np.random.default_rng(0)
        x = rng.normal(size=(n, sizes[0]))
        train = dict(lr=0.02, batch_size=8, members=M, steps=steps, seed=1, statistics=False)
        ens = Ensemble(data=arrays(x), hidden=sizes[1:-1], activation="tanh", **train)
        st = ens.initial_state()
        te = ft.TorchEnsemble(lambda: module(torch, sizes), half_sq, x, **train)
        st_t = te.initial_state()
        te_eager = ft.TorchEnsemble(lambda: module(torch, sizes), half_sq, x, capture=False, **train)
        st_e = te_eager.initial_state()
        X = torch.tensor(x)
        idx = torch.from_numpy(ft.minibatch_indices(n, 8, loop_m, steps, seed=1))
        nets = [module(torch, sizes) for _ in range(loop_m)]
        opts = [torch.optim.SGD(net.parameters(), lr=0.02) for net in nets]
        lean = [module(torch, sizes) for _ in range(loop_m)]
        lean_params = [list(net.parameters()) for net in lean]

        def loop():
            for s in range(steps):
                for m, (net, opt) in enumerate(zip(nets, opts)):
                    xb = X[idx[s, m]]
                    opt.zero_grad()
                    half_sq(net(xb), xb).backward()
                    opt.step()

        def loop_lean():
            for s in range(steps):
                for m, (net, ps) in enumerate(zip(lean, lean_params)):
                    xb = X[idx[s, m]]
                    gs = torch.autograd.grad(half_sq(net(xb), xb), ps)
                    with torch.no_grad():
                        torch._foreach_add_(ps, torch._foreach_mul(gs, -0.02))

        cases = [("numba", lambda: ens.advance(st, steps), M), ("bridge", lambda: te.advance(st_t, steps), M),
                 ("bridge_eager", lambda: te_eager.advance(st_e, steps), M),
                 ("loop", loop, loop_m), ("loop_lean", loop_lean, loop_m)]  # fmt: skip
        torch.set_num_threads(1)
        first = {}  # the first step: the graph's capture (bridge), the compile (bridge_compiled)
        c0 = time.process_time()
        te.advance(st_t, 1)
        first["bridge"] = {"first_step_cpu_s": round(time.process_time() - c0, 3)}
        if args.compile and name.startswith("digits"):
            te_c = ft.TorchEnsemble(lambda: module(torch, sizes), half_sq, x, compile=True, **train)
            st_c = te_c.initial_state()
            t0 = time.perf_counter()
            te_c.advance(st_c, 1)
            first["bridge_compiled"] = {"first_step_wall_s": round(time.perf_counter() - t0, 1)}
            cases.insert(3, ("bridge_compiled", lambda: te_c.advance(st_c, steps), M))
        rates, cpu_rates = {}, {}
        for case, fn, members in cases:
            torch.set_num_threads(1)
            wall, cpu = timed(fn, repeats)
            rates[case], cpu_rates[case] = members * steps / wall, members * steps / cpu
            extra = first.get(case, {})
            print(json.dumps({"model": name, "case": case, "members": members, "steps": steps,
                              "member_steps_per_s": round(rates[case], 1),
                              "member_steps_per_cpu_s": round(cpu_rates[case], 1),
                              "torch_threads": torch.get_num_threads(), **extra, "smoke": args.smoke}),
                  flush=True)  # fmt: skip

        def ratio(a, b):
            return {f"{a}_over_{b}": round(rates[a] / rates[b], 2),
                    f"{a}_over_{b}_cpu": round(cpu_rates[a] / cpu_rates[b], 2)}  # fmt: skip

        comp = ratio("bridge_compiled", "loop") if "bridge_compiled" in rates else {}
        print(json.dumps({"model": name, **ratio("bridge", "loop"), **ratio("bridge", "loop_lean"),
                          **ratio("bridge", "bridge_eager"), **ratio("numba", "bridge"), **comp,
                          "smoke": args.smoke}), flush=True)  # fmt: skip
        if args.compile and name.startswith("digits"):
            compiled(torch, te, st_t, idx, X, repeats, args.smoke)
    if not args.no_sweep:
        crossover(torch, ft, Ensemble, arrays, args)
    return 0


def compiled(torch, te, st_t, idx, X, repeats, smoke) -> None:
    """CPU ms per call of the bridge's vmapped gradient: eager transform, captured graph, torch.compile (and
    its compile seconds, the first call), on one minibatch of the digits model; the three must agree."""
    params = te._to_torch(st_t["theta"])
    M = params[te.layout.names[0]].shape[0]
    ix = torch.from_numpy(np.random.default_rng(2).integers(0, X.shape[0], size=(M, 8)))
    xb = te.fn.X[ix]
    args = (params, te.fn.buffers, xb, xb)
    cap = te.fn._batch_grad
    fns = {"eager": cap.fn, "captured": cap}
    t0, c0 = time.perf_counter(), time.process_time()
    fns["compiled"] = torch.compile(cap.fn)
    ref = cap.fn(*args)
    out = fns["compiled"](*args)
    compile_wall, compile_cpu = time.perf_counter() - t0, time.process_time() - c0
    agree = max(float((out[k] - ref[k]).abs().max() / ref[k].abs().max()) for k in ref)
    ms = {k: round(1e3 * timed(lambda f=f: f(*args), max(repeats, 5))[1], 3) for k, f in fns.items()}
    print(json.dumps({"compile": "torch.compile (inductor, CPU) of the vmapped gradient, digits model",
                      "compile_s_wall": round(compile_wall, 1), "compile_s_cpu": round(compile_cpu, 1),
                      "cpu_ms_per_call": ms, "compiled_vs_eager_max_rel_diff": agree, "smoke": smoke}),
          flush=True)  # fmt: skip


def crossover(torch, ft, Ensemble, arrays, args) -> None:
    """numba vs bridge on 64 → w → 8 → w → 64 (M = 256) over hidden widths w; print the interpolated width
    where numba/bridge (per CPU-second, the fairer on a shared machine; wall alongside) crosses 1."""
    widths = [4, 8] if args.smoke else [int(w) for w in args.widths.split(",")]
    M, n, steps, repeats = (16, 64, 5, 1) if args.smoke else (256, 512, args.sweep_steps, args.repeats)
    x = np.random.default_rng(0).normal(size=(n, 64))
    ratio, ratio_wall = [], []
    for w in widths:
        sizes = [64, w, 8, w, 64]
        train = dict(lr=0.02, batch_size=8, members=M, steps=steps, seed=1, statistics=False)
        ens = Ensemble(data=arrays(x), hidden=sizes[1:-1], activation="tanh", **train)
        te = ft.TorchEnsemble(lambda: module(torch, sizes), half_sq, x, **train)
        st, st_t = ens.initial_state(), te.initial_state()
        res = {}
        for case, fn in (("numba", lambda: ens.advance(st, steps)), ("bridge", lambda: te.advance(st_t, steps))):
            torch.set_num_threads(1)
            res[case] = timed(fn, repeats)
        ratio.append(res["bridge"][1] / res["numba"][1])  # numba/bridge speed = bridge time / numba time
        ratio_wall.append(res["bridge"][0] / res["numba"][0])
        print(json.dumps({"sweep": "width", "sizes": sizes, "members": M, "steps": steps,
                          "numba_member_steps_per_cpu_s": round(M * steps / res["numba"][1], 1),
                          "bridge_member_steps_per_cpu_s": round(M * steps / res["bridge"][1], 1),
                          "numba_over_bridge_cpu": round(ratio[-1], 3), "numba_over_bridge_wall": round(ratio_wall[-1], 3),
                          "smoke": args.smoke}), flush=True)  # fmt: skip
    print(json.dumps({"crossover": "hidden width where the bridge overtakes numba (64-w-8-w-64, M = %d)" % M,
                      "width_cpu": _cross(widths, ratio), "width_wall": _cross(widths, ratio_wall),
                      "smoke": args.smoke}), flush=True)  # fmt: skip


def _cross(widths, ratio):
    """The width where ``ratio`` (numba/bridge) falls through 1, interpolated in log width and log ratio
    between the bracketing widths; "< w0" / "> w_last" when the bridge is ahead / behind over the whole sweep."""
    if ratio[0] < 1.0:
        return f"< {widths[0]}"
    for (w0, r0), (w1, r1) in zip(zip(widths, ratio), zip(widths[1:], ratio[1:])):
        if r0 >= 1.0 > r1:
            f = np.log(r0) / (np.log(r0) - np.log(r1))
            return round(float(np.exp(np.log(w0) + f * (np.log(w1) - np.log(w0)))), 1)
    return f"> {widths[-1]}"


if __name__ == "__main__":
    raise SystemExit(main())
