"""`fpkit reproduce`: the flagship experiment ``fp-histograms`` end to end (``fpkit experiment run
fp-histograms``; the experiment itself lives in fpkit.validation.experiments.fp_histograms and is found
through the ``fpkit.experiments`` entry points)."""

from __future__ import annotations

FLAGSHIP = "fp-histograms"


def cli_reproduce(args) -> int:
    from .experiments import run_and_print

    return run_and_print(FLAGSHIP, quick=args.quick, config=args.config, seed=args.seed, out=args.out,
                         overrides={"run_sweep": True} if args.sweep else None)  # fmt: skip
