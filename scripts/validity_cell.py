"""Is a validity-map cell's miss a real failure of the FP prediction or the tail of a noisy maximum? (issue 17)

    python scripts/validity_cell.py cell INDEX [--seed 0] [--members 1000 4000] [--train-seeds 3] [--splits 1]
                                            [--svag 4] [--extra-steps 2,5,10,20]
    python scripts/validity_cell.py ou [--reps 40] [--x-std 0.15] [--temperature 0.005]

``cell`` reruns cell INDEX of the default map (``fpkit experiment run validity-map``, config seed ``--seed``)
with the map's own data set and judges the entries the map judged there (``cell_entries`` of the map's run),
out of sample like the map (``judge_entries``): for each member count, the map's training seed and
``--train-seeds`` − 1 others, ``--splits`` estimation/judged splits. A bias of the prediction is a fixed
distance in units of w, so its W1/floor grows as √(judged members); noise stays ≈ 1-2 floors. ``--svag L``
trains the same SDE by SVAG (L inner steps of η/L: Li, Malladi & Arora 2021) — a miss that shrinks with L is
SGD's discreteness; ``--extra-steps`` adds snapshots (training steps) — a miss that shrinks with them is the
drift's linear interpolation over a lag that is too long for the dynamics there.

``ou`` is the reference of an exact prediction: full-batch SGLD on 3-D least squares is a linear OU process
(each entry's marginal follows the 1-D FP of its conditional drift with D = T; η·a ≈ 1e-3, so SGD's
discreteness is negligible), trained and judged like a map cell (1000 members, 1000 steps of η = 0.05, 15
snapshots, 3 entries). The mechanistic route's drift is then exact per member (judging noise only); the
Kramers-Moyal route adds an estimation noise U ≈ 0.7 (like the map's drift-driven entries). Printed: the
distribution of the cell's worst W1/floor (maximum over 3 entries × 14 snapshots).
"""

from __future__ import annotations

import argparse
import copy

import numpy as np

import fpkit
from fpkit.experiments import resolve_config
from fpkit.prediction import split_members
from fpkit.solvers.random import derive_seed
from fpkit.validation.experiments import validity_map as vm


def cell_study(args) -> None:
    cfg = resolve_config(vm.EXPERIMENT(), seed=args.seed)
    cells = vm.plan_cells(cfg)
    if not 0 <= args.index < len(cells):
        raise SystemExit(f"INDEX must be in [0, {len(cells)}) for this map, got {args.index}")
    cell = cells[args.index]
    base = vm.cell_config(cfg, cell)
    # the map cell's own data set, whatever the training seed (Ensemble derives it from the seed when unset)
    base["data"]["seed"] = derive_seed(cell["seed"], 3) & (2**63 - 1)
    labels = vm.cell_entries(fpkit.Ensemble(copy.deepcopy(base)).train(show_progress=False), int(cfg["map"]["entries"]))
    print(f"cell {args.index}: {cell['data']} {cell['activation']} hidden {cell['hidden']} η {cell['lr']} "
          f"B {cell['batch_size']}; entries {labels}")  # fmt: skip
    for members in args.members:
        for k in range(args.train_seeds):
            c = copy.deepcopy(base)
            c["train"]["members"] = int(members)
            if k:
                c["seed"] = int(derive_seed(cell["seed"], 99, k) % 2**31)
            if args.svag > 1:
                c["train"].update(optimizer="svag", svag_l=int(args.svag))
            if args.extra_steps:
                run0 = fpkit.Ensemble(dict(copy.deepcopy(base), train=dict(base["train"], members=100))).train(show_progress=False)
                steps = np.rint(np.asarray(run0.t) / run0.eta).astype(int)
                c["train"].pop("snapshots", None)
                c["train"]["snapshot_steps"] = sorted(set(steps.tolist()) | set(args.extra_steps))
            run = fpkit.Ensemble(c).train(show_progress=False)
            for sp in range(args.splits):
                ent = vm.judge_entries(run, labels, cfg["analysis"], cell["seed"] + sp)
                print(f"  members {members} train seed #{k} split #{sp}: " + "; ".join(
                    f"{e['label']} worst {e['worst']:.2f} ({e['verdict']}, U {e['diagnostics']['drift_uncertainty']:.2f})"
                    for e in ent), flush=True)  # fmt: skip


def ou_reference(args) -> None:
    acfg = resolve_config(vm.EXPERIMENT(), seed=0)["analysis"]
    labels = ["W1[0,0]", "W1[0,1]", "W1[0,2]"]
    worst = {"mechanistic": [], "kramers-moyal": []}
    for r in range(args.reps):
        run = fpkit.Ensemble(model="regression", optimizer="sgld", temperature=args.temperature, lr=0.05,
                             sampling="full", batch_size=64, members=1000, steps=1000, snapshots=15, seed=1000 + r,
                             probes=1, data={"kind": "regression", "d": 3, "n": 64, "x_std": args.x_std,
                                             "noise": 0.3, "w_star": [0.5, -0.3, 0.2]}).train(show_progress=False)  # fmt: skip
        for route in worst:
            ent = vm.judge_entries(run, labels, dict(acfg, route=route), 7 + r)
            worst[route].append(max(e["worst"] for e in ent))
        print(f"  rep {r}: worst mechanistic {worst['mechanistic'][-1]:.2f}, kramers-moyal {worst['kramers-moyal'][-1]:.2f}",
              flush=True)  # fmt: skip
    for route, w in worst.items():
        w = np.asarray(w)
        print(f"{route}: cell worst W1/floor over {w.size} exact OU cells: median {np.median(w):.2f}, "
              f"90 % {np.quantile(w, 0.9):.2f}, max {w.max():.2f}; beyond 3 floors {int(np.sum(w > 3))}/{w.size}")  # fmt: skip


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cell", help="rerun one map cell")
    c.add_argument("index", type=int)
    c.add_argument("--seed", type=int, default=0, help="the map's config seed")
    c.add_argument("--members", type=int, nargs="+", default=[1000])
    c.add_argument("--train-seeds", type=int, default=3)
    c.add_argument("--splits", type=int, default=1)
    c.add_argument("--svag", type=int, default=1)
    c.add_argument("--extra-steps", type=lambda s: [int(x) for x in s.split(",")], default=None)
    o = sub.add_parser("ou", help="the exact-OU reference")
    o.add_argument("--reps", type=int, default=40)
    o.add_argument("--x-std", type=float, default=0.15)
    o.add_argument("--temperature", type=float, default=0.005)
    args = p.parse_args(argv)
    cell_study(args) if args.cmd == "cell" else ou_reference(args)


if __name__ == "__main__":
    main()
