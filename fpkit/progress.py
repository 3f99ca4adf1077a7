"""Progress bars for long runs: tqdm on a terminal, silent otherwise (logs, CI, pipes)."""

from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: float, desc: str, enable: bool | None = None, unit: str = "it"):
    """A tqdm bar, shown only when stderr is a terminal unless ``enable`` says otherwise."""
    if enable is None:
        enable = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enable, unit=unit, leave=False, dynamic_ncols=True)
