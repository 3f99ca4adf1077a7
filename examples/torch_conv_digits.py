"""Bring your own model: a convolutional autoencoder on the 8×8 digits, trained as an ensemble by fpkit.torch.

The scikit-learn digits (1797 handwritten 8×8 images, shipped with the package: no download; pixel values
0..16 scaled to [0, 1]) are compressed by a small convolutional autoencoder with biases,

    encoder: Conv2d(1→4, 3×3, stride 2, pad 1) → tanh → flatten → Linear(64 → 8)        (8 numbers per image)
    decoder: Linear(8 → 64) → tanh → (4, 4, 4) → ConvTranspose2d(4→1, 4×4, stride 2, pad 1)   (back to 8×8)

and trained by plain SGD on ½‖x̂ − x‖² (mean over the minibatch) as an ensemble of independently initialised
members (``fpkit.torch.TorchEnsemble``: one ``torch.func.vmap`` over members per step). At every snapshot the
bridge records what the numba trainer records (full-batch gradient, minibatch-gradient variance, exact H·∇L,
η·λmax), so ``fpkit.predict`` turns the ensemble into Fokker-Planck predictions of single weight histograms,
named by the module's own parameters (``"decoder.3.weight[2,0,1,1]"``), judged out of sample. The report
(a markdown table of W1/noise-floor distances of the FP prediction and its baselines) is printed and, with
``--out DIR``, written with the run and the predictions.

    python examples/torch_conv_digits.py [--out DIR]        # 256 members, 512 images, 1500 steps (~minutes)
    python examples/torch_conv_digits.py --small            # CI size (also FPKIT_EXAMPLE_SMALL=1)
"""

from __future__ import annotations

import argparse
import os
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

import fpkit
import fpkit.torch
from fpkit.experiments import write_text_atomic
from fpkit.prediction import entry_label

FULL = dict(members=256, n=512, steps=1500, snapshots=14)
# fpkit.predict needs >= 100 members; with 100 the local fits of a uniformly initialised conv weight lacked
# samples (50 per half), 160 is enough
SMALL = dict(members=160, n=128, steps=120, snapshots=8)


def conv_autoencoder() -> torch.nn.Module:
    """The 8×8 convolutional autoencoder (parameters named encoder.* and decoder.*)."""
    encoder = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, stride=2, padding=1), torch.nn.Tanh(),
                                  torch.nn.Flatten(), torch.nn.Linear(64, 8))  # fmt: skip
    decoder = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.Tanh(), torch.nn.Unflatten(1, (4, 4, 4)),
                                  torch.nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1))  # fmt: skip
    return torch.nn.Sequential(OrderedDict(encoder=encoder, decoder=decoder))


def half_squared_error(out, x):
    """½‖x̂ − x‖² per image (summed over its 64 pixels), mean over the batch."""
    return 0.5 * ((out - x) ** 2).sum(dim=(1, 2, 3)).mean()


def digits(n: int) -> np.ndarray:
    """The first ``n`` digits as (n, 1, 8, 8) floats in [0, 1]."""
    images = load_digits().images[:n]  # (n, 8, 8), values 0..16
    return (images / 16.0)[:, None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", default=bool(os.environ.get("FPKIT_EXAMPLE_SMALL")),
                    help="CI sizes (seconds; also FPKIT_EXAMPLE_SMALL=1)")  # fmt: skip
    ap.add_argument("--out", help="folder for run.h5, predictions.h5 and report.md")
    args = ap.parse_args(argv)
    size = SMALL if args.small else FULL
    torch.set_num_threads(1)  # tiny matrices: threads cost more than they give (and the machine is shared)
    x = digits(size["n"])

    t0, c0 = time.perf_counter(), time.process_time()
    ens = fpkit.torch.TorchEnsemble(conv_autoencoder, half_squared_error, x, members=size["members"], lr=0.01,
                                    batch_size=16, steps=size["steps"], snapshots=size["snapshots"],
                                    per_decade=6, lanczos_steps=10, seed=7)  # fmt: skip
    out = Path(args.out) if args.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    run = ens.train(out / "run.h5" if out else None)
    print(f"{run!r}: {time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} CPU s; reconstruction "
          f"loss {run.loss[0].mean():.3f} -> {run.loss[-1].mean():.3f}, η·λmax ≤ {run.eta * np.nanmax(run.lam_max):.3f}")

    # A few entries: the decoder's transposed-convolution weight that spreads most, the code layer's weight
    # that spreads most, and one encoder convolution weight.
    def widest(name):
        w = run.weights[name]
        spread = w[-1].std(axis=0) / w[0].std(axis=0)
        return entry_label(name, np.unravel_index(int(np.argmax(spread)), spread.shape))

    labels = [widest("decoder.3.weight"), widest("encoder.3.weight"), "encoder.0.weight[0,0,1,1]"]
    preds = fpkit.predict(run, labels, dt=0.05, js=False)
    report = (f"# FP predictions of the conv-autoencoder ensemble on the 8×8 digits\n\n{run!r}\n\n"
              "W1 distance between predicted and judged histograms over its noise floor (≈ 1 is perfect), for "
              "the FP prediction and the frozen / drift-only / diffusion-only baselines:\n\n"
              f"{preds.table()}\n")  # fmt: skip
    print(report)
    if out is not None:
        preds.save(out / "predictions.h5")
        write_text_atomic(out / "report.md", report)
        print(f"wrote {out / 'run.h5'}, {out / 'predictions.h5'}, {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
