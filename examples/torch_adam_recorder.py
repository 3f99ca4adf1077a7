"""Your own training loop: M runs trained with torch.optim.Adam and a learning-rate schedule, recorded by
fpkit.torch.Recorder, then fpkit.predict on a few entries.

Nothing here is fpkit's trainer: each of the M runs is an ordinary ``nn.Module`` (a 6 → 16 → 1 tanh MLP with
biases, regression on y = tanh(x·a) + noise, 256 samples) with its own ``torch.optim.Adam`` (η = 0.01) and
``torch.optim.lr_scheduler.StepLR`` (η halves every third of the run), and its own minibatches (B = 16, drawn
with replacement from its own ``torch.Generator``: sampling "iid"). At the chosen steps
``recorder.snapshot(step, models)`` records the weights and, at those weights, the statistics TorchEnsemble
records (full-batch gradient, minibatch-gradient variance, exact H·∇L, λmax); ``recorder.run()`` is the
``fpkit.EnsembleRun``.

Adam is not SGD: the mechanistic route of ``fpkit.predict`` (drift −∇L, diffusion (η/2)·Var) describes
SGD at rate η, so for Adam it is a model to be judged, not a given; the Kramers-Moyal route measures drift and
diffusion from the members' own increments between snapshots and needs no assumption about the optimiser.
Both are judged out of sample on the same entries, and the report prints both.

    python examples/torch_adam_recorder.py [--out DIR]       # 200 runs, 1200 steps
    python examples/torch_adam_recorder.py --small           # CI size (also FPKIT_EXAMPLE_SMALL=1)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

import fpkit
import fpkit.torch
from fpkit.experiments import write_text_atomic

FULL = dict(members=200, steps=1200, snapshots=16)
# fpkit.predict needs >= 100 members; with 100 the local fits of torch's uniformly initialised weights lacked
# samples (50 per half), 160 is enough
SMALL = dict(members=160, steps=100, snapshots=8)
LR, BATCH, N = 0.01, 16, 256


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))


def half_squared_error(out, y):
    """½‖out − y‖² per sample, mean over the batch."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("FPKIT_EXAMPLE_SMALL")),
                    help="CI sizes (seconds; also FPKIT_EXAMPLE_SMALL=1)")  # fmt: skip
    ap.add_argument("--out", help="folder for run.h5, predictions.h5 and report.md")
    args = ap.parse_args(argv)
    size = SMALL if args.small else FULL
    M, steps = size["members"], size["steps"]
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(N, 6)))
    y = torch.tanh(x @ torch.tensor(rng.normal(size=(6, 1)))) + 0.1 * torch.tensor(rng.normal(size=(N, 1)))

    # The user's M runs: own initialisation, optimiser, schedule and minibatch stream each.
    models, optimisers, schedulers, generators = [], [], [], []
    for m in range(M):
        torch.manual_seed(1000 + m)
        net = mlp().double()
        opt = torch.optim.Adam(net.parameters(), lr=LR)
        models.append(net)
        optimisers.append(opt)
        schedulers.append(torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, steps // 3), gamma=0.5))
        generators.append(torch.Generator().manual_seed(m))
    snap_steps = set(np.unique(np.geomspace(1, steps, size["snapshots"] - 1).astype(int)).tolist()) | {0}

    # η = LR is the time unit (t = η·step) and B, "iid" describe the loader above.
    rec = fpkit.torch.Recorder(half_squared_error, (x, y), lr=LR, batch_size=BATCH, sampling="iid",
                               lanczos_steps=10, seed=3)  # fmt: skip
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps + 1):
        if step in snap_steps:
            rec.snapshot(step, models)
        if step == steps:
            break
        for net, opt, sch, gen in zip(models, optimisers, schedulers, generators):
            idx = torch.randint(N, (BATCH,), generator=gen)
            opt.zero_grad()
            half_squared_error(net(x[idx]), y[idx]).backward()
            opt.step()
            sch.step()
    run = rec.run()
    print(f"{run!r}: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} CPU s; loss "
          f"{run.loss[0].mean():.4f} -> {run.loss[-1].mean():.4f}")  # fmt: skip

    # The output layer's weight that spreads most, a hidden weight and the output bias.
    w = run.weights["2.weight"][:, :, 0]
    j = int(np.argmax(w[-1].std(axis=0) / w[0].std(axis=0)))
    labels = [f"2.weight[0,{j}]", "0.weight[0,0]", "2.bias[0]"]
    preds = fpkit.predict(run, labels, dt=0.02, js=False, compare_with=("kramers-moyal",))
    rows = ["| entry | mechanistic (SGD picture) last | Kramers-Moyal last | frozen last |", "|---|---|---|---|"]
    for p in preds.values():  # the Kramers-Moyal density ends one snapshot early: the last it judges
        j = int(np.flatnonzero(np.isfinite(p.distance["fp_kramers_moyal"]))[-1])
        d = {k: p.distance[k][j] for k in ("fp", "fp_kramers_moyal", "frozen")}
        rows.append(f"| {p.label} | {d['fp']:.2f} | {d['fp_kramers_moyal']:.2f} | {d['frozen']:.2f} |")
    report = (f"# FP predictions of {M} Adam runs recorded by fpkit.torch.Recorder\n\n{run!r}\n\n"
              "W1 distance between predicted and judged histograms over its noise floor (≈ 1 is perfect):\n\n"
              f"{preds.table()}\n\nAt the last snapshot judged by both, the SGD picture against drift and diffusion measured "
              "from the increments (Kramers-Moyal):\n\n" + "\n".join(rows) + "\n")  # fmt: skip
    print(report)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        run.save(out / "run.h5")
        preds.save(out / "predictions.h5")
        write_text_atomic(out / "report.md", report)
        print(f"wrote {out / 'run.h5'}, {out / 'predictions.h5'}, {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
