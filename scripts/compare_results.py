"""Compare two results files dataset by dataset: the flagship must not regress (``fpkit reproduce`` numbers
unchanged to 1e-9 unless an issue says otherwise).

    python scripts/compare_results.py before/results.h5 after/results.h5 [--rtol 1e-9]

Prints one line per dataset that differs (largest relative difference) and exits 1 if any does, or if a
dataset exists in one file only.
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
        rel = np.abs(x[ok] - y[ok]) / np.maximum(np.abs(x[ok]), 1e-300)
        worst = float(rel.max()) if rel.size else 0.0
        if not same_nan or worst > args.rtol:
            print(f"{name}: max relative difference {worst:.3g}{'' if same_nan else ' (NaN pattern differs)'}")
            bad += 1
    print(f"{len(set(a) & set(b))} datasets compared, {bad} differ beyond rtol {args.rtol:g}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
