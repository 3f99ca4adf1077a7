"""Estimators: empirical densities of ensemble samples and drift/diffusion as functions of the weight value.

Everything here works on plain arrays (one value per ensemble member), so it is independent of how the
ensemble was produced. Conventions are fpkit's: Itô, ``dw = A(w,t) dt + sqrt(2 D(w,t)) dB`` with time
``t = η · step`` for SGD, D (never σ), densities with ``sum(p) * cell_volume == 1``.

* ``densities``: ``choose_grid``, ``histogram_density``;
* ``smoothing``: local-linear regression with a Gaussian kernel and its one bandwidth rule, support test and
  tail fallback (``bandwidth_rule``, ``local_linear``, ``local_linear_fit``, ``local_linear_2d``);
* ``series``: the mechanistic and Kramers-Moyal routes to A and D at one snapshot (``mechanistic``,
  ``kramers_moyal``, ``*_2d``) or a series of them (``*_series``, ``CoefficientSeries``), with callables
  linear in time between snapshots for ``fpkit.FokkerPlanck``.

Every name is importable from ``fpkit.estimators`` itself.
"""

from .densities import choose_grid, histogram_density
from .series import (
    D_FLOOR,
    CoefficientSeries,
    Estimate,
    InterpPlan,
    SnapshotInterpolator,
    _psd_floor,
    kramers_moyal,
    kramers_moyal_2d,
    kramers_moyal_2d_series,
    kramers_moyal_series,
    mechanistic,
    mechanistic_2d,
    mechanistic_2d_series,
    mechanistic_series,
)
from .smoothing import (
    BANDWIDTH_FACTOR,
    MIN_EFF,
    WIDEN_POINTS,
    LocalLinearFit,
    bandwidth_rule,
    local_linear,
    local_linear_2d,
    local_linear_fit,
    nearest_neighbour_distance,
)

__all__ = [
    "BANDWIDTH_FACTOR",
    "D_FLOOR",
    "MIN_EFF",
    "WIDEN_POINTS",
    "CoefficientSeries",
    "Estimate",
    "InterpPlan",
    "LocalLinearFit",
    "SnapshotInterpolator",
    "bandwidth_rule",
    "choose_grid",
    "histogram_density",
    "kramers_moyal",
    "kramers_moyal_2d",
    "kramers_moyal_2d_series",
    "kramers_moyal_series",
    "local_linear",
    "local_linear_2d",
    "local_linear_fit",
    "mechanistic",
    "mechanistic_2d",
    "mechanistic_2d_series",
    "mechanistic_series",
    "nearest_neighbour_distance",
]
