"""Bring your own model: an ensemble of ReLU MLPs trained with fpkit.torch, then fpkit.predict on its entries.

A small regression y = sin(x·a) + noise (4 inputs, 128 samples) fitted by a 4 → 16 → 1 ReLU MLP with biases,
200 independently initialised members trained by SGD (η = 0.05, iid minibatches of B = 8). TorchEnsemble records
the numba trainer's statistics at every snapshot, so the Fokker-Planck prediction of an entry's histogram
(fpkit.predict: drift and diffusion from half of the members, judged on the other half) works on the
module's own parameter names. About ten seconds of one core:

    python examples/torch_relu_regression.py [--out run.h5]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import fpkit
import fpkit.torch


def mlp() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def half_squared_error(out, y):
    """½‖out − y‖² per sample, mean over the batch (the numba trainer's loss)."""
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="also save the run to this HDF5 file")
    ap.add_argument("--members", type=int, default=200)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    rng = np.random.default_rng(0)
    x = rng.normal(size=(128, 4))
    y = np.sin(x @ np.array([[1.0], [-0.5], [0.3], [0.8]])) + 0.1 * rng.normal(size=(128, 1))

    t0 = time.process_time()
    ens = fpkit.torch.TorchEnsemble(mlp, half_squared_error, (x, y), members=args.members, lr=0.05,
                                    batch_size=8, steps=args.steps, snapshots=16, per_decade=8,
                                    lanczos_steps=8, seed=1)  # fmt: skip
    run = ens.train(args.out)
    print(f"{run!r} in {time.process_time() - t0:.1f} CPU s; final loss {run.loss[-1].mean():.4f}, "
          f"eta*lam_max {run.eta * run.lam_max[-1].max():.3f}")  # fmt: skip

    # entries named by the module's parameters: output weights move most, two that spread most, and the bias
    spread = run.weights["2.weight"][-1, :, 0].std(axis=0) / run.weights["2.weight"][0, :, 0].std(axis=0)
    labels = [f"2.weight[0,{j}]" for j in np.argsort(spread)[::-1][:2]] + ["2.bias[0]"]
    preds = fpkit.predict(run, labels, dt=0.05, js=False)
    print(preds.table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
