"""`fpkit reproduce`: the main experiment end to end (see fpkit.validation.experiment)."""

from __future__ import annotations

import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def resolve_config(quick: bool = False, config_path=None, seed: int | None = None) -> dict:
    """Embedded defaults, then --quick, then a TOML file, then --seed."""
    from .config import load_toml
    from .validation.experiment import DEFAULT_CONFIG, QUICK_OVERRIDES, merge_config

    cfg = merge_config(DEFAULT_CONFIG, QUICK_OVERRIDES) if quick else merge_config(DEFAULT_CONFIG, {})
    if config_path is not None:
        cfg = merge_config(cfg, load_toml(config_path))
    if seed is not None:
        cfg["seed"] = int(seed)
    return cfg


def cli_reproduce(args) -> int:
    from .validation import fp_suite
    from .validation.experiment import run_experiment
    from .validation.report import write_all

    t0 = time.perf_counter()
    cfg = resolve_config(args.quick, args.config, args.seed)
    out = Path(args.out)
    print(f"fpkit reproduce{' --quick' if args.quick else ''}: solver self-check ...", flush=True)
    ts = time.perf_counter()
    suite = fp_suite.suite_markdown(fp_suite.run_suite())
    t_suite = time.perf_counter() - ts
    tr = cfg["train"]
    print(f"training {tr['members']} members x {tr['steps']} steps, then estimating and predicting ...", flush=True)
    res = run_experiment(cfg, sweep=args.sweep)
    res.timings = {"solver_self_check": t_suite, **res.timings}
    files = write_all(res, out, suite)
    print((out / "report.md").read_text().split("## Verdict\n")[1].split("\n\n")[0].strip())
    print(f"wrote {', '.join(str(Path(p).name) for p in files.values())} to {out}/ in "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0
