"""Compare two results files dataset by dataset: the flagship must not regress (``fpkit reproduce`` numbers
unchanged to 1e-9 unless an issue says otherwise).

    python scripts/compare_results.py before/results.h5 after/results.h5 [--rtol 1e-9] [--floor 1e-12]

Prints one line per dataset that differs (largest relative difference) and exits 1 if any does, or if a
dataset exists in one file only. Differences are relative to each element; with ``--floor F`` relative to
max(|element|, F · the dataset's largest |element|): a density whose round-off-sized Crank-Nicolson
undershoots are clipped to 0 in one run may keep a 1e-23 in the other, which no elementwise tolerance
accepts. Datasets that pass only thanks to the floor are listed.
"""

from __future__ import annotations

import argparse
import sys

import h5py
import numpy as np


def datasets(path) -> dict:
    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--rtol", type=float, default=1e-9)
    p.add_argument("--floor", type=float, default=0.0, help="relative to max(|x|, floor·max|x|) (default 0)")
    args = p.parse_args(argv)
    a, b = datasets(args.before), datasets(args.after)
    bad = 0
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            print(f"{name}: only in {'after' if name in b else 'before'}")
            bad += 1
            continue
        x, y = np.asarray(a[name], dtype=float), np.asarray(b[name], dtype=float)
        if x.shape != y.shape:
            print(f"{name}: shape {x.shape} -> {y.shape}")
            bad += 1
            continue
        same_nan = np.array_equal(np.isnan(x), np.isnan(y))
        ok = np.isfinite(x) & np.isfinite(y)
        scale = args.floor * float(np.abs(x[ok]).max()) if ok.any() else 0.0
        diff = np.abs(x[ok] - y[ok])
        rel = diff / np.maximum(np.abs(x[ok]), max(scale, 1e-300))
        worst = float(rel.max()) if rel.size else 0.0
        if not same_nan or worst > args.rtol:
            print(f"{name}: max relative difference {worst:.3g}{'' if same_nan else ' (NaN pattern differs)'}")
            bad += 1
        elif scale > 0 and rel.size and float((diff / np.maximum(np.abs(x[ok]), 1e-300)).max()) > args.rtol:
            print(f"{name}: within rtol only relative to {args.floor:g} x its largest value "
                  f"(largest difference {float(diff.max()):.3g}, largest value {float(np.abs(x[ok]).max()):.3g})")
    floor = f" (floor {args.floor:g} x each dataset's largest value)" if args.floor else ""
    print(f"{len(set(a) & set(b))} datasets compared, {bad} differ beyond rtol {args.rtol:g}{floor}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
