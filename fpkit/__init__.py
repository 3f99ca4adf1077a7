"""fpkit: Fokker-Planck, Langevin, KPZ and Callan-Symanzik solvers for the stochastic dynamics of training.

Conventions: Itô calculus throughout; SDE dX = A dt + √(2D) dW, so a "diffusion" argument is always D,
never σ; densities on grids integrate to one.
"""

from __future__ import annotations

import importlib

from .errors import ConfigError, FpkitError, StabilityError
from .grid import Grid, gaussian

__version__ = "0.1.0"

# Public names living in modules imported on first use, so `import fpkit` stays fast.
_LAZY = {
    "FokkerPlanck": "fpkit.fokker_planck",
    "Solution": "fpkit.solution",
    "SDE": "fpkit.sde",
    "Paths": "fpkit.paths",
    "KPZ": "fpkit.kpz",
    "Surfaces": "fpkit.kpz",
    "CallanSymanzik": "fpkit.callan_symanzik",
    "LandauPoleError": "fpkit.errors",
    "compare_forms": "fpkit.derived_forms",
    "Ensemble": "fpkit.ensemble",
    "EnsembleRun": "fpkit.ensemble",
    "predict": "fpkit.prediction",
    "Prediction": "fpkit.prediction",
    "Predictions": "fpkit.prediction",
}

__all__ = ["ConfigError", "FpkitError", "StabilityError", "Grid", "gaussian", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fpkit' has no attribute {name!r}")
