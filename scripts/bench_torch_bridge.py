"""Training speed of the PyTorch bridge (fpkit.torch.TorchEnsemble) vs the numba trainer and a Python loop.

The same ensemble is trained, side by side in one process, by

* "numba":  ``fpkit.Ensemble.advance`` (lane kernels, members in the innermost axis),
* "bridge": ``fpkit.torch.TorchEnsemble.advance`` (torch.func vmap over members, one thread),
* "loop":   a Python loop over members, each an ``nn.Module`` with its own ``torch.optim.SGD`` (one thread;
  timed on ``--loop-members`` members, its cost is per member),

for the default autoencoder (tanh 8 → 3 → 3 → 8, M = 1024, n = 512 Gaussian samples, B = 8 iid, plain SGD,
float64) and a digits-sized one (64 → 32 → 8 → 32 → 64, M = 256, Gaussian stand-in data of that size).
Snapshot statistics are not timed (training steps only). One JSON line per case: member-steps per second,
wall clock (median of ``--repeats``) and per CPU-second of the process (the machine is shared); then one line
per model with the ratios bridge/loop and numba/bridge.

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
        nets = [module(torch, sizes) for _ in range(loop_m)]
        opts = [torch.optim.SGD(net.parameters(), lr=0.02) for net in nets]
        X = torch.tensor(x)
        idx = ft.minibatch_indices(n, 8, loop_m, steps, seed=1)

        def loop():
            for s in range(steps):
                for m, (net, opt) in enumerate(zip(nets, opts)):
                    xb = X[idx[s, m]]
                    opt.zero_grad()
                    half_sq(net(xb), xb).backward()
                    opt.step()

        rates = {}
        for case, fn, members in (("numba", lambda: ens.advance(st, steps), M),
                                  ("bridge", lambda: te.advance(st_t, steps), M),
                                  ("loop", loop, loop_m)):  # fmt: skip
            wall, cpu = timed(fn, repeats)
            rates[case] = members * steps / wall
            print(json.dumps({"model": name, "case": case, "members": members, "steps": steps,
                              "member_steps_per_s": round(rates[case], 1),
                              "member_steps_per_cpu_s": round(members * steps / cpu, 1),
                              "smoke": args.smoke}), flush=True)  # fmt: skip
        print(json.dumps({"model": name, "bridge_over_loop": round(rates["bridge"] / rates["loop"], 2),
                          "numba_over_bridge": round(rates["numba"] / rates["bridge"], 2),
                          "smoke": args.smoke}), flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
