"""The experiment ``order-preserving`` (issue 20, item 2; Lin, Zhang, Feng & Zhao, arXiv 2501.02436): ReLU units
as order-preserving (OPT) or non-order-preserving (NPT) transformations, attraction basins in sample and weight
space, depth / width / η / B as control variables, and grokking on modular addition as the stress case.

Definitions (per member, at every snapshot; training samples x_i, i = 1..N):

- **OPT / NPT census.** A hidden unit is OPT when its activation is strictly increasing on the range of its
  pre-activations over the training samples, so it preserves their order: for ReLU, active (z > 0) on every
  training sample; a linear (or tanh) unit always is. Otherwise it is NPT; NPT units with z ≤ 0 on every sample
  are *dead*. Fractions per hidden layer.
- **Sample-space basin radius** of x_i: the largest r such that every input x_i + δ, ‖δ‖₂ < r, keeps the
  prediction argmax_c f_c(x_i). Searched along rays: the DeepFool directions ∇(f_j − f_k) of the
  ``competitors`` classes j nearest in the linearised sense plus ``random_directions`` isotropic ones; on each
  ray the first sign change of the margin f_k − max_{j≠k} f_j on a geometric grid of ``scan`` radii up to
  r_max, refined by ``bisect`` bisections; then ``refine`` steps of a walk along the decision boundary towards
  x_i. The minimum over rays is an upper bound of the radius, exact for a linear classifier (margin /
  ‖w_k − w_j‖, minimised over j: the nearest competitor's ray hits it); on random ReLU networks in d = 8 it is
  below the brute-force minimum over 4000 random rays for most samples (tested). Rays that do not cross below
  r_max return r_max (censored; the fraction is reported). Radii are in input units (Euclidean norm).
- **Weight-space basin radius**: along ``weight_directions`` isotropic unit directions u in the space of all
  parameters (weights and biases), the largest t with L(θ + s u) < τ for all s < t (first crossing, same
  scan + bisection); L the training data loss ½‖f − y‖² averaged over samples, τ = ``loss_fraction`` × L_const
  (L_const the loss of the best constant predictor, ½ mean‖y − ȳ‖²). Members with L(θ) ≥ τ get 0. For a
  quadratic loss at its minimum the radius along u is √(2(τ − L*)/uᵀHu) (the tests' closed form).

Stages (``OrderPreserving.run``):

1. ``controls``: ReLU MLPs on a Gaussian mixture (C clusters, MSE to one-hot targets, prediction = argmax),
   a base configuration and one-at-a-time changes of depth, width, η and B (B = 0: full-batch GD). Per run and
   snapshot: OPT/dead fractions per layer, sample radii (M, N) and weight radii (M, K), train accuracy, loss.
2. ``grokking`` (``grokking.enabled``, off by default: it needs longer than the default budget): an MLP on
   a + b mod p with one-hot inputs (2p) and targets (p), weight decay, full-batch GD and SGD. Train and test
   accuracy over time; t_mem (train accuracy ≥ ``mem_acc``) and t_gen (test accuracy ≥ ``gen_acc``) per
   member; the OPT fraction and both basin radii at t_mem and t_gen, paired per member.
3. ``fp`` (the Fokker-Planck angle, wherever weights move by noise; as in ``gd_vs_sgd`` and
   ``training_response``, whose helpers it uses): the SGD runs among the controls (the base run and the η and B
   changes with 0 < B < N) train ``fp.members`` members with snapshot gradient statistics; the census and
   basins are measured on the first ``controls.members`` of them, which are an ensemble of that many exactly
   (a member's streams do not depend on the count). ``fpkit.predict`` (route ``fp.route``, the mechanistic
   prediction kept beside it where auto leaves that route) predicts ``fp.entries`` out of sample: a seeded
   half estimates A and D, the other half is judged by W1 over its noise floor. Claims per run: the FP
   prediction of the weight histograms (worst W1/floor over entries and snapshots after t = 0 ≤ 3) and no
   silent FP failure (every prediction beyond 3 floors flagged doubtful/fails by its own diagnostics).
4. Verdict: exact references are tests (tests/test_order_preserving.py); the claims are the paper's, each a
   measured number with a standard error over members and whether it held.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from types import SimpleNamespace
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

import fpkit
from fpkit.config import Schema
from fpkit.data import arrays
from fpkit.errors import ConfigError, StabilityError
from fpkit.experiments import Claim, Experiment, Verdict, write_tree
from fpkit.network import forward
from fpkit.progress import progress
from fpkit.solvers.random import derive_seed

from .training_response import THRESHOLD_TEXT as _FP_TEXT
from .training_response import THRESHOLDS as _FP_THRESHOLDS
from .training_response import fp_claims, fp_predict
from .truncation import mixture

# ------------------------------------------------------------------------------------------- config


class Basins(Schema):
    """How the attraction basins are searched (rays, scan, bisection)."""

    competitors: int = Field(3, ge=1, description="DeepFool rays per sample: the classes j nearest in the "
                                                  "linearised distance (f_k − f_j)/‖∇(f_k − f_j)‖")
    random_directions: int = Field(4, ge=0, description="isotropic random rays per sample (sample space)")
    input_r_max: float = Field(10.0, gt=0, description="largest input radius searched (censored above)")
    weight_directions: int = Field(6, ge=1, description="isotropic random rays per member (weight space)")
    weight_r_max: float = Field(10.0, gt=0, description="largest weight-space radius searched")
    loss_fraction: float = Field(0.5, gt=0, description="τ = loss_fraction × L_const, the loss threshold of "
                                                        "the weight-space basin")
    scan: int = Field(20, ge=4, description="geometric radii scanned per ray (r_max·10⁻³ … r_max)")
    bisect: int = Field(25, ge=1, description="bisections of the first bracket (relative width ≤ 1.44·2⁻ⁿ)")
    refine: int = Field(2, ge=0, description="boundary-walk steps after the ray search (sample space)")
    samples: int = Field(32, ge=1, description="training samples whose sample-space radius is searched")


class Controls(Schema):
    """ReLU MLPs on a Gaussian mixture: a base run and one-at-a-time changes of depth, width, η and B."""

    clusters: int = Field(4, ge=2, description="mixture components C (= outputs)")
    d: int = Field(8, ge=1, description="input dimension")
    per_cluster: int = Field(16, ge=2, description="training points per cluster")
    separation: float = Field(3.0, gt=0, description="cluster means drawn N(0, separation²/d) per coordinate")
    std: float = Field(0.8, gt=0, description="standard deviation of each cluster")
    offset: float = Field(2.0, description=(
        "added to every input coordinate: mostly positive inputs (like pixels or one-hot codes), where a ReLU "
        "unit can be active on every sample; at 0 (centred clusters) almost no unit is OPT"))
    width: int = Field(16, ge=1, description="base hidden width")
    depth: int = Field(2, ge=1, description="base number of hidden layers")
    lr: float = Field(0.02, gt=0, description="base learning rate η (inputs of norm ≈ 6: η ≲ 0.1 is stable)")
    batch_size: int = Field(4, ge=0, description="base minibatch size B (0: full-batch GD)")
    depths: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [1, 3], description="depths tried besides the base")
    widths: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8, 32], description="widths tried besides the base")
    lrs: list[Annotated[float, Field(gt=0)]] = Field(default_factory=lambda: [0.005, 0.06], description="η tried besides the base")
    batch_sizes: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [1, 0], description="B tried besides the base "
                                                                              "(0: GD)")
    steps: int = Field(3000, ge=10, description="optimiser steps of every run")
    members: int = Field(24, ge=4, description="members of every run")
    snapshots: int = Field(6, ge=3, description="snapshots per run (log-spaced)")


class Grokking(Schema):
    """a + b mod p with one-hot inputs and targets, MSE, weight decay; full-batch GD and SGD."""

    enabled: bool = Field(False, description="run the grokking stage (longer than the default budget)")
    p: int = Field(17, ge=3, le=97, description="modulus p (≤ 31 on a 2-core CPU)")
    train_fraction: float = Field(0.7, gt=0, lt=1, description="fraction of the p² pairs used for training")
    width: int = Field(64, ge=1, description="hidden width (one hidden ReLU layer)")
    lr: float = Field(0.5, gt=0, description="learning rate η")
    weight_decay: float = Field(0.003, ge=0, description="weight decay wd (loss + wd|w|²/2)")
    init_scale: float = Field(2.0, gt=0, description="factor on the initial weight std (large: memorise first)")
    steps: int = Field(6000, ge=10, description="optimiser steps")
    members: int = Field(8, ge=2, description="members per optimiser")
    snapshots: int = Field(31, ge=4, description="snapshots, evenly spaced in steps")
    sgd_batch_size: int = Field(32, ge=0, description="B of the SGD run (0: no SGD run)")
    mem_acc: float = Field(0.99, gt=0, le=1, description="train accuracy that counts as memorised")
    gen_acc: float = Field(0.9, gt=0, le=1, description="test accuracy that counts as generalised")


class FpAngle(Schema):
    """Fokker-Planck predictions of weight entries (``fpkit.predict``, out of sample) of the controls' SGD runs."""

    entries: list[str] = Field(default_factory=lambda: ["W1[0,0]", "W1[5,3]", "W2[0,0]"], description=(
        "entries predicted in every SGD run of the controls (the base run and the η and B changes with "
        "0 < B < N); W1: first layer (width, d); empty: no FP angle"))
    members: int = Field(256, ge=200, description=(
        "members of the predicted runs (half estimate A and D, half judged: the local-linear drift estimate "
        "needs ~100 on its half); census and basins take the first controls.members of them, which are those of "
        "an ensemble of controls.members (each member's streams do not depend on the count)"))
    cells: int = Field(120, ge=20, description="FP grid cells (at least)")
    route: Literal["mechanistic", "kramers-moyal", "auto"] = Field("auto", description=(
        "fpkit.predict's route; where auto leaves the mechanistic route, the mechanistic prediction is kept "
        "beside it (for the no-silent-failure claim)"))
    time_steps: int = Field(300, ge=10, description="the FP solve's and transport's step dt = (the run's last t) / this")


class Config(Schema):
    """Order-preserving neurons, attraction basins and grokking (Lin, Zhang, Feng & Zhao, arXiv 2501.02436)."""

    seed: int = Field(0, ge=0, description="seed of everything: data, initialisations, minibatches, rays")
    basins: Basins = Field(default_factory=Basins, description="the basin searches")
    controls: Controls = Field(default_factory=Controls, description="depth, width, η, B on a Gaussian mixture")
    grokking: Grokking = Field(default_factory=Grokking, description="modular addition (off by default)")
    fp: FpAngle = Field(default_factory=FpAngle, description="Fokker-Planck predictions of weight entries (SGD runs)")

    @model_validator(mode="after")
    def _classes(self):
        if self.basins.competitors >= self.controls.clusters:
            from fpkit.config import invalid

            raise invalid("basins.competitors", f"must be < controls.clusters ({self.controls.clusters})")
        return self


QUICK = {
    "basins": {"random_directions": 2, "weight_directions": 4, "scan": 16, "bisect": 20, "samples": 24},
    "controls": {"members": 12, "steps": 800, "snapshots": 4, "per_cluster": 12, "depths": [1], "widths": [32],
                 "lrs": [0.06], "batch_sizes": [0]},
    "grokking": {"p": 11, "steps": 1500, "members": 4, "snapshots": 8, "width": 32, "train_fraction": 0.8},
    "fp": {"entries": ["W1[0,0]", "W2[0,0]"], "members": 200},
}  # fmt: skip


# ----------------------------------------------------------------------------------------- thresholds
THRESHOLDS = {"z_min": 2.0, "delay_factor": 2.0, "fp_miss": _FP_THRESHOLDS["fp_miss"]}
THRESHOLD_TEXT = {
    "FP (SGD/SGLD)": _FP_TEXT["FP (SGD/SGLD)"],  # the claims of training_response.fp_claims
    "no silent FP failure": _FP_TEXT["no silent FP failure"],
    "2 SE": "the difference is at least {z_min:g} standard errors (over members) from 0",
    "delay": "the median member's generalisation time t_gen is ≥ {delay_factor:g} × its memorisation time "
             "t_mem (memorisation first, generalisation much later: grokking)",
}  # fmt: skip


def threshold_definitions() -> dict:
    return {k: v.format(**THRESHOLDS) for k, v in THRESHOLD_TEXT.items()}


# --------------------------------------------------------------------------------------- measurements
_STRICTLY_INCREASING = ("linear", "tanh")


def census(weights: dict, x: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """OPT and dead fractions of every hidden layer: (M, H) each.

    A unit is OPT when it is active (z > 0) on every row of ``x`` (ReLU), or always (a strictly increasing
    activation: linear, tanh); dead when z ≤ 0 on every row. ``weights`` in fpkit.ensemble's layout."""
    hs = forward(weights, x, activation)[1:-1]
    M = next(iter(weights.values())).shape[0]
    if not hs:
        return np.zeros((M, 0)), np.zeros((M, 0))
    if activation in _STRICTLY_INCREASING:
        return np.ones((M, len(hs))), np.zeros((M, len(hs)))
    if activation != "relu":
        raise ConfigError(f"census: `activation` must be relu, linear or tanh, got {activation!r}")
    opt = np.stack([np.mean(np.all(h > 0.0, axis=1), axis=-1) for h in hs], 1)
    dead = np.stack([np.mean(np.all(h <= 0.0, axis=1), axis=-1) for h in hs], 1)
    return opt, dead


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def input_jacobian(weights: dict, x: np.ndarray, activation: str) -> np.ndarray:
    """∂f/∂x of the outputs at every sample: (M, n, C, d) (ReLU: the a.e. derivative, mask z > 0)."""
    from fpkit.network import _ACT, _layers

    names = _layers(weights)
    hs = forward(weights, x, activation)
    M, n = hs[0].shape[:2]
    J = np.broadcast_to(np.eye(x.shape[-1]), (M, n, x.shape[-1], x.shape[-1]))
    for ell, name in enumerate(names):
        J = np.einsum("moi,mnid->mnod", weights[name], J)
        if ell < len(names) - 1:
            J = J * _ACT[activation][1](hs[ell + 1])[..., None]
    return J


def _first_crossing(g, r_max: float, scan: int, bisect: int, shape: tuple) -> tuple[np.ndarray, np.ndarray]:
    """Smallest radius r in (0, r_max] where g(r) ≤ 0 (g(r) vectorised: r of ``shape`` → values of ``shape``):
    the first sign change on a geometric grid of ``scan`` radii, refined by ``bisect`` bisections. Returns
    (r, found); r = r_max where no crossing was found (censored), 0 where g(0) ≤ 0 already."""
    grid = np.geomspace(r_max * 1e-3, r_max, scan)
    hi = np.full(shape, np.inf)
    for r in grid[::-1]:  # the last assignment wins: the smallest grid radius with g ≤ 0
        bad = g(np.full(shape, r)) <= 0
        hi = np.where(bad, r, hi)
    found = np.isfinite(hi)
    idx = np.searchsorted(grid, np.where(found, hi, r_max))
    lo = np.where(idx > 0, grid[np.maximum(idx - 1, 0)], 0.0)
    hi = np.where(found, hi, r_max)
    for _ in range(bisect):
        mid = 0.5 * (lo + hi)
        bad = g(mid) <= 0
        hi = np.where(found & bad, mid, hi)
        lo = np.where(found & ~bad, mid, lo)
    return np.where(found, hi, r_max), found


def margin(out: np.ndarray, k: np.ndarray) -> np.ndarray:
    """f_k − max_{j≠k} f_j along the last axis of ``out`` (k the reference class, broadcast)."""
    fk = np.take_along_axis(out, k[..., None], -1)[..., 0]
    other = np.where(np.arange(out.shape[-1]) == k[..., None], -np.inf, out)
    return fk - other.max(-1)


def sample_radius(weights: dict, x: np.ndarray, activation: str, *, competitors: int = 3,
                  random_directions: int = 4, r_max: float = 10.0, scan: int = 24, bisect: int = 30,
                  refine: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Sample-space basin radii of the rows of ``x``: (M, n) radii and (M, n) found (False: censored at r_max).

    Rays from x_i: DeepFool directions ∇(f_j − f_k) of the ``competitors`` classes nearest in the linearised
    distance, plus ``random_directions`` isotropic ones; on each, the first radius where the prediction k
    changes (see ``_first_crossing``); then ``refine`` DeepFool steps: a ray along ∇(f_j − f_k) taken at the
    best crossing point (j the class that wins there), kept when it crosses closer. The radius is the minimum
    over rays (an upper bound of the ball that keeps the prediction; exact for a linear classifier:
    min_j (f_k − f_j)/‖w_k − w_j‖)."""
    out = forward(weights, x, activation)[-1]  # (M, n, C)
    M, n, C = out.shape
    if not 1 <= competitors < C:
        raise ConfigError(f"sample_radius: `competitors` must be in [1, {C - 1}] for {C} outputs, got {competitors}")
    k = out.argmax(-1)
    J = input_jacobian(weights, x, activation)  # (M, n, C, d)
    Jk = np.take_along_axis(J, k[..., None, None], 2)  # (M, n, 1, d)
    dJ = J - Jk  # ∇(f_j − f_k)
    fk = np.take_along_axis(out, k[..., None], -1)
    lin = (fk - out) / np.maximum(np.linalg.norm(dJ, axis=-1), 1e-300)  # linearised distance to class j
    lin = np.where(np.arange(C) == k[..., None], np.inf, lin)
    near = np.argsort(lin, axis=-1)[..., :competitors]  # (M, n, c)
    dirs = [_unit(np.take_along_axis(dJ, near[..., None], 2))]
    if random_directions:
        rng = np.random.default_rng(derive_seed(seed, 11))
        dirs.append(_unit(rng.standard_normal((M, n, random_directions, x.shape[-1]))))
    u = np.concatenate(dirs, 2)  # (M, n, R, d)
    R = u.shape[2]
    x0 = np.broadcast_to(x[None, :, None, :], u.shape)
    kk = np.broadcast_to(k[..., None], (M, n, R))

    def g(r):
        pts = (x0 + r[..., None] * u).reshape(M, n * R, -1)
        return margin(forward(weights, pts, activation)[-1].reshape(M, n, R, C), kk)

    r, found = _first_crossing(g, r_max, scan, bisect, (M, n, R))
    j = r.argmin(-1)
    best = np.take_along_axis(r, j[..., None], -1)[..., 0]
    bfound = np.take_along_axis(found, j[..., None], -1)[..., 0]
    ub = np.take_along_axis(u, j[..., None, None], 2)[:, :, 0]  # (M, n, d)
    for it in range(refine):
        # walk on the decision boundary towards x: from the crossing point x_b, step along the boundary's
        # tangent plane (normal ∇(f_j − f_k) at x_b, j the class winning there) towards x's foot point, and
        # take the ray from x through the stepped point; kept when it crosses closer (a descent of the distance)
        xb = x[None] + (best * (1 + 1e-6))[..., None] * ub
        ob = forward(weights, xb, activation)[-1]
        jb = np.where(np.arange(C) == k[..., None], -np.inf, ob).argmax(-1)
        Jb = input_jacobian(weights, xb, activation)
        nb = _unit(np.take_along_axis(Jb, jb[..., None, None], 2)[:, :, 0]
                   - np.take_along_axis(Jb, k[..., None, None], 2)[:, :, 0])  # fmt: skip
        v = x[None] - xb
        tangent = v - np.sum(v * nb, -1, keepdims=True) * nb
        cand = [_unit(-nb)] + [_unit(xb + a * tangent - x[None]) for a in (0.1, 0.3, 1.0)]
        for ub_new in cand:
            def g1(r, ub_new=ub_new):
                return margin(forward(weights, x[None] + r[..., None] * ub_new, activation)[-1], k)

            r1, f1 = _first_crossing(g1, r_max, scan, bisect, (M, n))
            better = f1 & (r1 < best)
            best = np.where(better, r1, best)
            bfound = bfound | f1
            ub = np.where(better[..., None], ub_new, ub)
    return best, bfound


def data_loss(weights: dict, x: np.ndarray, y: np.ndarray, activation: str) -> np.ndarray:
    """½‖f(x) − y‖² averaged over the rows: (M,)."""
    return 0.5 * np.mean(np.sum((forward(weights, x, activation)[-1] - y[None]) ** 2, -1), -1)


def constant_loss(y: np.ndarray) -> float:
    """The loss ½ mean‖y − ȳ‖² of the best constant predictor (the scale of the weight basins' threshold)."""
    return float(0.5 * np.mean(np.sum((y - y.mean(0)) ** 2, -1)))


def weight_radius(weights: dict, x: np.ndarray, y: np.ndarray, activation: str, threshold: float, *,
                  directions: int = 8, r_max: float = 10.0, scan: int = 24, bisect: int = 30, seed: int = 0,
                  u: dict | None = None) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Weight-space basin radii (M, K): along K isotropic unit directions in the space of all parameters (or
    the given ``u``: {name: (M, K, *shape)}, unit norm over all names), the first t where the training loss
    L(θ + t u) ≥ ``threshold``; 0 for members already at L(θ) ≥ threshold, r_max where none is found
    (``found`` False)."""
    names = sorted(weights)
    M = weights[names[0]].shape[0]
    if u is None:
        rng = np.random.default_rng(derive_seed(seed, 12))
        u = {nm: rng.standard_normal((M, directions) + weights[nm].shape[1:]) for nm in names}
        norm = np.sqrt(sum(np.sum(v.reshape(M, directions, -1) ** 2, -1) for v in u.values()))
        u = {nm: v / norm.reshape((M, directions) + (1,) * (v.ndim - 2)) for nm, v in u.items()}
    K = next(iter(u.values())).shape[1]

    def g(t):  # t (M, K) → threshold − L(θ + t u)
        w = {nm: (weights[nm][:, None] + t.reshape((M, K) + (1,) * (weights[nm].ndim - 1)) * u[nm]).reshape(
            (M * K,) + weights[nm].shape[1:]) for nm in names}  # fmt: skip
        return threshold - data_loss(w, x, y, activation).reshape(M, K)

    r, found = _first_crossing(g, r_max, scan, bisect, (M, K))
    inside = data_loss(weights, x, y, activation) < threshold
    return np.where(inside[:, None], r, 0.0), found | ~inside[:, None]


def accuracy(weights: dict, x: np.ndarray, labels: np.ndarray, activation: str = "relu") -> np.ndarray:
    """Fraction of rows whose argmax output is the label: (M,)."""
    return np.mean(forward(weights, x, activation)[-1].argmax(-1) == labels[None], axis=-1)


# ------------------------------------------------------------------------------------------- results
@dataclass
class Snapshots:
    """One trained ensemble's measurements at its snapshots (S snapshots, M members, H hidden layers)."""

    label: str
    t: np.ndarray  # (S,)
    step: np.ndarray  # (S,)
    opt: np.ndarray  # (S, M, H) OPT fraction per layer
    dead: np.ndarray  # (S, M, H)
    r_sample: np.ndarray  # (S, M, n) sample-space radii (training samples)
    r_sample_found: np.ndarray  # (S, M, n)
    r_weight: np.ndarray  # (S, M, K)
    loss: np.ndarray  # (S, M)
    acc: np.ndarray  # (S, M) train accuracy
    test_acc: np.ndarray | None = None  # (S, M) (grokking)
    r_test: np.ndarray | None = None  # (S, M, n_test) sample-space radii of test samples (grokking)


@dataclass
class ControlRun:
    variable: str  # "base", "depth", "width", "lr", "batch_size"
    value: float
    depth: int
    width: int
    lr: float
    batch_size: int  # 0: GD
    snaps: Snapshots


@dataclass
class GrokRun:
    optimizer: str
    batch_size: int
    snaps: Snapshots
    t_mem: np.ndarray  # (M,) NaN where never reached
    t_gen: np.ndarray  # (M,)
    at_mem: dict  # metric -> (M,) values at t_mem
    at_gen: dict  # metric -> (M,)


@dataclass
class Result:
    controls: list  # of ControlRun, base first
    threshold: float  # τ of the controls' weight basins
    grok: list  # of GrokRun (empty when grokking is off)
    grok_threshold: float
    extra: dict = field(default_factory=dict)
    # (control label, "sgd") -> {"route": {entry: fpkit Prediction}, "mechanistic": {...} where auto left it}
    fp: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ measuring
def measure(run, x: np.ndarray, y: np.ndarray, labels: np.ndarray, bcfg: dict, threshold: float, seed: int,
            label: str, test=None, show_progress=None) -> Snapshots:  # fmt: skip
    """Census, basins, loss and accuracy of every snapshot of an EnsembleRun (relu MLP with biases)."""
    S = run.t.size
    ns = min(bcfg["samples"], x.shape[0])
    pick = np.random.default_rng(derive_seed(seed, 13)).choice(x.shape[0], ns, replace=False)
    pick.sort()
    fields = {k: [] for k in ("opt", "dead", "rs", "rf", "rw", "loss", "acc", "tacc", "rt")}
    bar = progress(S, f"basins {label}", enable=show_progress, unit="snapshot")
    for s in range(S):
        w = {nm: run.weights[nm][s] for nm in run.names}
        o, dd = census(w, x, "relu")
        fields["opt"].append(o)
        fields["dead"].append(dd)
        kw = {"r_max": bcfg["input_r_max"], "scan": bcfg["scan"], "bisect": bcfg["bisect"], "refine": bcfg["refine"]}
        rs, rf = sample_radius(w, x[pick], "relu", competitors=bcfg["competitors"],
                               random_directions=bcfg["random_directions"], seed=derive_seed(seed, 14, s), **kw)
        fields["rs"].append(rs)
        fields["rf"].append(rf)
        rw, _ = weight_radius(w, x, y, "relu", threshold, directions=bcfg["weight_directions"],
                              r_max=bcfg["weight_r_max"], scan=bcfg["scan"], bisect=bcfg["bisect"],
                              seed=derive_seed(seed, 15, s))  # fmt: skip
        fields["rw"].append(rw)
        fields["loss"].append(data_loss(w, x, y, "relu"))
        fields["acc"].append(accuracy(w, x, labels))
        if test is not None:
            xt, lt = test
            fields["tacc"].append(accuracy(w, xt, lt))
            nt = min(bcfg["samples"], xt.shape[0])
            rt, _ = sample_radius(w, xt[:nt], "relu", competitors=bcfg["competitors"],
                                  random_directions=bcfg["random_directions"], seed=derive_seed(seed, 16, s), **kw)
            fields["rt"].append(rt)
        bar.update(1)
    bar.close()
    st = {k: np.stack(v) if v else None for k, v in fields.items()}
    return Snapshots(label, np.asarray(run.t), np.asarray(run.step), st["opt"], st["dead"], st["rs"], st["rf"],
                     st["rw"], st["loss"], st["acc"], st["tacc"], st["rt"])  # fmt: skip


def train(x, y, *, hidden: list, lr: float, batch_size: int, members: int, steps: int, seed: int,
          snapshots: int | None = None, snapshot_steps=None, weight_decay: float = 0.0, init_scale: float = 1.0,
          statistics: bool = False, on_divergence: str = "stop", show_progress=None):  # fmt: skip
    """An ensemble of ReLU MLPs with biases on (x, y) (MSE), GD when ``batch_size`` is 0; ``statistics``: record
    the snapshot gradient statistics that ``fpkit.predict``'s mechanistic route needs; ``on_divergence``: as
    ``train.on_divergence`` ("drop": diverged members are zeroed and marked in ``run.alive``)."""
    tr = {"optimizer": "gd" if batch_size == 0 else "sgd", "lr": lr, "batch_size": max(1, batch_size),
          "members": members, "steps": steps, "probes": 0, "statistics": bool(statistics),
          "weight_decay": weight_decay, "on_divergence": on_divergence}  # fmt: skip
    if snapshot_steps is not None:
        tr["snapshot_steps"] = [int(s) for s in snapshot_steps]
    else:
        tr["snapshots"] = snapshots
    cfg = {"seed": seed, "model": {"kind": "mlp", "hidden": list(hidden), "activation": "relu", "bias": True,
                                   "init_scale": init_scale}, "train": tr}  # fmt: skip
    return fpkit.Ensemble(cfg, data=arrays(x, y)).train(show_progress=show_progress)


def control_settings(c: dict) -> list:
    """(variable, value, depth, width, lr, B) of the base run and the one-at-a-time changes."""
    base = (c["depth"], c["width"], c["lr"], c["batch_size"])
    out = [("base", 0.0, *base)]
    out += [("depth", v, v, base[1], base[2], base[3]) for v in c["depths"] if v != base[0]]
    out += [("width", v, base[0], v, base[2], base[3]) for v in c["widths"] if v != base[1]]
    out += [("lr", v, base[0], base[1], v, base[3]) for v in c["lrs"] if v != base[2]]
    out += [("batch_size", v, base[0], base[1], base[2], v) for v in c["batch_sizes"] if v != base[3]]
    return out


def wants_fp(cfg: dict, variable: str, batch_size: int) -> bool:
    """Whether the FP angle predicts this control run: the base run and the η and B changes, when their
    weights move by minibatch noise (0 < B < N; B ≥ N samples the whole set every step: GD)."""
    c = cfg["controls"]
    return (bool(cfg["fp"]["entries"]) and variable in ("base", "lr", "batch_size")
            and 0 < batch_size < c["clusters"] * c["per_cluster"])  # fmt: skip


def run_controls(cfg: dict, show_progress=None):
    """Train and measure every control run: (runs, τ, fp, dropped) with fp {(label, "sgd"): predictions} of the
    runs ``wants_fp`` picks (trained with ``fp.members`` members; the first ``controls.members`` are measured, and
    must not diverge, as before; members beyond them that diverge are left out of the prediction and counted
    in dropped {label: n}: near the stability edge (η = 0.06) a few of 256 can)."""
    c, seed = cfg["controls"], cfg["seed"]
    x, y, labels = mixture(c, seed)
    x = x + c["offset"]
    tau = cfg["basins"]["loss_fraction"] * constant_loss(y)
    runs, fp, dropped = [], {}, {}
    M = c["members"]
    for i, (var, val, depth, width, lr, B) in enumerate(control_settings(c)):
        pred = wants_fp(cfg, var, B)
        run = train(x, y, hidden=[width] * depth, lr=lr, batch_size=B, members=max(M, cfg["fp"]["members"]) if pred else M,
                    steps=c["steps"], snapshots=c["snapshots"], seed=derive_seed(seed, 20, i), statistics=pred,
                    on_divergence="drop" if pred else "stop", show_progress=show_progress)  # fmt: skip
        lab = f"{var} = {val:g}" if var != "base" else "base"
        if run.alive is not None and not run.alive[:, :M].all():
            bad = np.nonzero(~run.alive[:, :M].all(0))[0]
            raise StabilityError(f"order-preserving run {lab}: measured members {bad.tolist()} diverged; lower "
                                 "`controls.lrs` / `controls.lr`")  # fmt: skip
        first = SimpleNamespace(t=run.t, step=run.step, names=run.names,
                                weights={k: v[:, :M] for k, v in run.weights.items()})  # fmt: skip
        snaps = measure(first, x, y, labels, cfg["basins"], tau, derive_seed(seed, 21, i), lab,
                        show_progress=show_progress)  # fmt: skip
        runs.append(ControlRun(var, float(val), depth, width, lr, B, snaps))
        if pred:
            healthy = run.without_diverged()
            dropped[lab] = int(healthy.dropped.size)
            fp[(lab, "sgd")] = fp_predict(cfg, healthy, "sgd")
    return runs, tau, fp, dropped


# --------------------------------------------------------------------------------------------- grokking
def modular_addition(p: int, train_fraction: float, seed: int):
    """All p² pairs (a, b) → (a + b) mod p: one-hot inputs (p², 2p), one-hot targets (p², p), labels, and a
    random split (train indices, test indices) with round(train_fraction·p²) training pairs."""
    a, b = np.divmod(np.arange(p * p), p)
    x = np.concatenate([np.eye(p)[a], np.eye(p)[b]], 1)
    lab = (a + b) % p
    idx = np.random.default_rng(derive_seed(seed, 30)).permutation(p * p)
    n = int(round(train_fraction * p * p))
    if not 1 <= n < p * p:
        raise ConfigError(f"grokking: `train_fraction` {train_fraction} of p² = {p * p} leaves no train or test set")
    return x, np.eye(p)[lab], lab, np.sort(idx[:n]), np.sort(idx[n:])


def first_time(t: np.ndarray, value: np.ndarray, level: float) -> np.ndarray:
    """Per member (columns of value (S, M)), the first t where value ≥ level (NaN where never)."""
    hit = value >= level
    first = np.argmax(hit, axis=0)
    return np.where(hit.any(0), t[first], np.nan)


def _at(arr: np.ndarray, t: np.ndarray, when: np.ndarray) -> np.ndarray:
    """arr (S, M) at each member's snapshot time ``when`` (M,) (NaN where when is NaN)."""
    out = np.full(arr.shape[1], np.nan)
    ok = np.isfinite(when)
    s = np.searchsorted(t, when[ok])
    out[ok] = arr[s, np.nonzero(ok)[0]]
    return out


def grok_metrics(sn: Snapshots) -> dict:
    """(S, M) member-level metrics tracked around the transition."""
    return {"OPT fraction": sn.opt.mean(-1), "dead fraction": sn.dead.mean(-1),
            "sample radius (train, median)": np.median(sn.r_sample, -1),
            "sample radius (test, median)": np.median(sn.r_test, -1),
            "weight radius (median)": np.median(sn.r_weight, -1), "train loss": sn.loss}  # fmt: skip


def run_grokking(cfg: dict, show_progress=None):
    g, seed = cfg["grokking"], cfg["seed"]
    x, y, lab, tr, te = modular_addition(g["p"], g["train_fraction"], seed)
    tau = cfg["basins"]["loss_fraction"] * constant_loss(y[tr])
    steps = np.unique(np.linspace(0, g["steps"], g["snapshots"]).round().astype(int))
    runs = []
    bcfg = dict(cfg["basins"], competitors=min(cfg["basins"]["competitors"], g["p"] - 1))
    for i, B in enumerate([0] + ([g["sgd_batch_size"]] if g["sgd_batch_size"] else [])):
        run = train(x[tr], y[tr], hidden=[g["width"]], lr=g["lr"], batch_size=B, members=g["members"],
                    steps=g["steps"], snapshot_steps=steps, seed=derive_seed(seed, 31, i),
                    weight_decay=g["weight_decay"], init_scale=g["init_scale"], show_progress=show_progress)
        label = "GD" if B == 0 else f"SGD B={B}"
        sn = measure(run, x[tr], y[tr], lab[tr], bcfg, tau, derive_seed(seed, 32, i), f"grokking {label}",
                     test=(x[te], lab[te]), show_progress=show_progress)  # fmt: skip
        t_mem = first_time(sn.t, sn.acc, g["mem_acc"])
        t_gen = first_time(sn.t, sn.test_acc, g["gen_acc"])
        met = grok_metrics(sn)
        runs.append(GrokRun("gd" if B == 0 else "sgd", B, sn, t_mem, t_gen,
                            {k: _at(v, sn.t, t_mem) for k, v in met.items()},
                            {k: _at(v, sn.t, t_gen) for k, v in met.items()}))  # fmt: skip
    return runs, tau


# ---------------------------------------------------------------------------------------- experiment
class OrderPreserving(Experiment):
    name = "order-preserving"
    title = "Order-preserving neurons, attraction basins and grokking (Lin, Zhang, Feng & Zhao, arXiv 2501.02436)"
    Config = Config
    quick = QUICK

    def run(self, cfg: dict, ctx) -> Result:
        with ctx.stage("controls"):
            controls, tau, fp, dropped = run_controls(cfg, ctx.show_progress)
        grok, gtau = [], float("nan")
        if cfg["grokking"]["enabled"]:
            with ctx.stage("grokking"):
                grok, gtau = run_grokking(cfg, ctx.show_progress)
        n_train = cfg["controls"]["clusters"] * cfg["controls"]["per_cluster"]
        return Result(controls, tau, grok, gtau, extra={"n_train": n_train, "fp_dropped": dropped}, fp=fp)

    def verdict(self, cfg: dict, res: Result) -> Verdict:
        return Verdict(claims(res) + fp_claims(res), summary=summary(res), thresholds=threshold_definitions())

    def save(self, group, cfg: dict, res: Result) -> None:
        write_tree(group, replace(res, fp={}))
        from . import order_preserving_figures as figs

        figs.save_fp(group, res)

    def report(self, cfg: dict, res: Result, verdict: Verdict, figures: dict) -> str:
        from . import order_preserving_figures as figs

        return figs.report_body(cfg, res)

    def figures(self, cfg: dict, res: Result, out) -> dict:
        from . import order_preserving_figures as figs

        return figs.write_figures(res, out)


EXPERIMENT = OrderPreserving


# ------------------------------------------------------------------------------------------- claims
def mean_se(v: np.ndarray) -> tuple[float, float]:
    """Mean and standard error over the finite entries."""
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def _pm(m: float, se: float) -> str:
    return f"{m:.4g} ± {se:.2g}"


def final_metrics(sn: Snapshots) -> dict:
    """Per member at the last snapshot: OPT fraction (all hidden layers), sample and weight radii (medians)."""
    return {"OPT": sn.opt[-1].mean(-1), "dead": sn.dead[-1].mean(-1), "r_sample": np.median(sn.r_sample[-1], -1),
            "r_weight": np.median(sn.r_weight[-1], -1), "acc": sn.acc[-1]}  # fmt: skip


def control_effects(res: Result) -> list:
    """For every control variable with ≥ 2 values (base included): the change of each final metric from the
    smallest to the largest value (B: GD counts as B = N), mean ± SE (independent ensembles)."""
    base = res.controls[0]
    out = []
    for var in ("depth", "width", "lr", "batch_size"):
        runs = [r for r in res.controls if r.variable == var]
        if not runs:
            continue
        bval = {"depth": base.depth, "width": base.width, "lr": base.lr, "batch_size": base.batch_size}[var]
        pts = [(bval, base)] + [(r.value, r) for r in runs]
        key = (lambda v: np.inf if v == 0 else v) if var == "batch_size" else (lambda v: v)
        pts.sort(key=lambda p: key(p[0]))
        lo, hi = pts[0], pts[-1]
        for metric in ("OPT", "r_sample", "r_weight"):
            a, b = final_metrics(lo[1].snaps)[metric], final_metrics(hi[1].snaps)[metric]
            (ma, sa), (mb, sb) = mean_se(a), mean_se(b)
            out.append({"variable": var, "metric": metric, "low": lo[0], "high": hi[0], "at_low": (ma, sa),
                        "at_high": (mb, sb), "change": mb - ma, "se": float(np.hypot(sa, sb)),
                        "values": [(p[0], mean_se(final_metrics(p[1].snaps)[metric])) for p in pts]})  # fmt: skip
    return out


def claims(res: Result, th: dict = THRESHOLDS) -> list:
    out = []
    base = res.controls[0].snaps
    o0, o1 = mean_se(base.opt[0].mean(-1)), mean_se(base.opt[-1].mean(-1))
    d = base.opt[-1].mean(-1) - base.opt[0].mean(-1)
    md, sd = mean_se(d)
    out.append(Claim("OPT fraction moves in training", abs(md) > 0 and abs(md) >= th["z_min"] * sd,
                     {"start": _pm(*o0), "end": _pm(*o1), "change": _pm(md, sd)}, "2 SE",
                     "the composition of OPT and NPT units changes during training (base run, paired per member)"))
    rs0, rs1 = np.median(base.r_sample[0], -1), np.median(base.r_sample[-1], -1)
    md, sd = mean_se(rs1 - rs0)
    out.append(Claim("sample basins grow", md > 0 and md >= th["z_min"] * sd,
                     {"start": _pm(*mean_se(rs0)), "end": _pm(*mean_se(rs1)), "change": _pm(md, sd)}, "2 SE",
                     "training enlarges the attraction basins of the training samples in input space (base run)"))
    for e in control_effects(res):
        if not (np.isfinite(e["change"]) and np.isfinite(e["se"])):
            z = np.nan  # not measured (e.g. a control run without members): never held
        else:
            z = e["change"] / e["se"] if e["se"] > 0 else (0.0 if e["change"] == 0 else np.inf)
        out.append(Claim(f"{e['metric']} responds to {e['variable']}", abs(z) >= th["z_min"],
                         {f"{e['variable']}={e['low']:g}": _pm(*e["at_low"]),
                          f"{e['variable']}={e['high']:g}": _pm(*e["at_high"]), "z": z}, "2 SE",
                         f"{e['variable']} acts as a control variable of the final {e['metric']} (paper: depth, "
                         "width, η and B tune these metrics)"))  # fmt: skip
    for g in res.grok:
        tag = "GD" if g.optimizer == "gd" else f"SGD B={g.batch_size}"
        ok = np.isfinite(g.t_mem) & np.isfinite(g.t_gen)
        ratio = np.where(ok, g.t_gen / np.where(g.t_mem > 0, g.t_mem, np.nan), np.nan)
        med = float(np.nanmedian(ratio)) if ok.any() else float("nan")
        out.append(Claim(f"grokking delay ({tag})", bool(ok.sum() * 2 > ok.size and med >= th["delay_factor"]),
                         {"members generalised": f"{int(ok.sum())}/{ok.size}",
                          "t_mem": _pm(*mean_se(g.t_mem)), "t_gen": _pm(*mean_se(g.t_gen)),
                          "median t_gen/t_mem": med}, "delay",
                         "memorisation comes first and generalisation much later"))  # fmt: skip
        for metric in ("OPT fraction", "sample radius (test, median)", "weight radius (median)"):
            dv = g.at_gen[metric] - g.at_mem[metric]
            md, sd = mean_se(dv[ok])
            held = bool(np.isfinite(sd) and abs(md) > 0 and abs(md) >= th["z_min"] * sd)
            out.append(Claim(f"{metric} moves at the transition ({tag})", held,
                             {"at t_mem": _pm(*mean_se(g.at_mem[metric][ok])),
                              "at t_gen": _pm(*mean_se(g.at_gen[metric][ok])), "change": _pm(md, sd)}, "2 SE",
                             "the paper ties grokking to a change of the transformation modes and of the basins; "
                             "paired per member between t_mem and t_gen"))  # fmt: skip
    return out


def summary(res: Result) -> str:
    base = res.controls[0].snaps
    f = final_metrics(base)
    parts = [f"Base run (depth {res.controls[0].depth}, width {res.controls[0].width}, η = {res.controls[0].lr:g}, "
             f"B = {res.controls[0].batch_size or 'full'}): OPT fraction {_pm(*mean_se(base.opt[0].mean(-1)))} → "
             f"{_pm(*mean_se(f['OPT']))}, median sample-space radius {_pm(*mean_se(f['r_sample']))}, weight-space "
             f"radius {_pm(*mean_se(f['r_weight']))}, train accuracy {_pm(*mean_se(f['acc']))}."]  # fmt: skip
    for g in res.grok:
        tag = "GD" if g.optimizer == "gd" else f"SGD B={g.batch_size}"
        ok = np.isfinite(g.t_gen)
        parts.append(f"Grokking ({tag}): {int(ok.sum())}/{ok.size} members generalised; t_mem "
                     f"{_pm(*mean_se(g.t_mem))}, t_gen {_pm(*mean_se(g.t_gen))}.")
    if not res.grok:
        parts.append("Grokking not run (grokking.enabled = false).")
    if res.fp:
        from .training_response import fp_misses, worst

        th = THRESHOLDS["fp_miss"]
        ws = {k[0]: max(worst(pr) for pr in v["route"].values()) for k, v in res.fp.items()}
        silent = sum(len(fp_misses(v)[1]) for v in res.fp.values())
        parts.append(f"FP prediction of the weight histograms (worst W1/floor ≤ {th:g}) held in "
                     f"{sum(w <= th for w in ws.values())} of {len(ws)} SGD runs ("
                     + ", ".join(f"{k} {w:.3g}" for k, w in ws.items()) + f"); silent FP failures: {silent}.")
    return " ".join(parts)
