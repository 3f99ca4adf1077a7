"""The experiment ``truncation`` (issue 20, item 1; T. Chen, arXiv 2501.07400): a ReLU layer truncates training
points (maps them into its zero region), and the spread of a cluster in the hidden representations contracts
exponentially at a rate that grows with the number of truncated points: a route to neural collapse.

Stages (``Truncation.run``):

1. ``toy``: the exact reference, trained by ``fpkit.Ensemble`` itself. A bias θ that only the n_tr truncated
   points of N see (one-layer linear network on the indicator input x_i = 1[i truncated], targets y_i):
   L = (1/2N) Σ_{i truncated} (θ − y_i)², so gradient flow is dθ/dt = (n_tr/N)(ȳ − θ), rate exactly
   κ = n_tr/N (GD: θ_k − ȳ = (1 − ηκ)^k (θ_0 − ȳ), rate −ln(1 − ηκ)/η). The residual spread
   R(t) = ⟨(θ − ȳ)²⟩ over the members decays as e^{−2κt}; its rate (that of √R) against n_tr/N has slope 1
   (the diagonal case). Under SGD (iid minibatches of B) the minibatch noise at θ = ȳ has variance κ v/B
   (v the targets' variance among truncated points), D = ηκv/(2B), and R saturates at the Ornstein-Uhlenbeck
   floor D/κ = ηv/(2B) ∝ η/B. The Fokker-Planck prediction: drift and (state-dependent) diffusion measured
   from the SGD run's recorded gradients (regressions of grad on θ and of grad_var on (θ − θ*)²) evolve the
   first histogram; W1/floor against the members at every snapshot.
2. ``network``: ReLU MLPs d → hidden… → C with biases on a Gaussian mixture (C clusters, MSE to one-hot
   cluster targets), GD and SGD at several (η, B). At every snapshot, per hidden layer ℓ and cluster c
   (forward passes of the stored weights on the training set): the within-cluster spread
   S_W = mean_{i∈c} ‖h_i − μ_c‖², the between-cluster spread S_B = mean_c ‖μ_c − μ‖², NC1 = S_W/S_B, and the
   truncated fraction n_tr/N (points of cluster c in a unit's zero region, averaged over the layer's units,
   over all N training points, as in the toy). Local rates −½ d ln S_W/dt between snapshots (member-mean
   S_W) are fitted against n_tr/N; uncertainties by bootstrap over members.
3. Verdict: the toy's rate and slope, the OU floor, η/B scaling and FP prediction (exact references), and the
   network's measured slope, collapse and SGD floor (the paper's claims, stated whether they held or not).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

import fpkit
from fpkit.config import Schema
from fpkit.data import arrays
from fpkit.experiments import Claim, Experiment, Verdict
from fpkit.network import forward
from fpkit.prediction import judge
from fpkit.solvers.random import derive_seed


# ------------------------------------------------------------------------------------------- config
class _Pairs:
    @model_validator(mode="after")
    def _paired(self):
        if len(self.sgd_lr) != len(self.sgd_batch_size):
            from fpkit.config import invalid

            raise invalid("sgd_batch_size", f"needs one B per η of sgd_lr ({len(self.sgd_lr)}), got "
                                            f"{len(self.sgd_batch_size)}")
        return self


class Toy(_Pairs, Schema):
    """The exact reference: a bias θ seen by the n_tr truncated points of N (dθ/dt = (n_tr/N)(ȳ − θ))."""

    n: int = Field(32, ge=2, description="number of training points N")
    fractions: list[float] = Field(default_factory=lambda: [0.125, 0.25, 0.5, 0.75], min_length=2,
                                   description="truncated fractions n_tr/N of the GD runs (rate fit)")
    target_mean: float = Field(2.0, description="mean ȳ of the truncated points' targets")
    target_std: float = Field(1.0, gt=0, description="standard deviation √v of the truncated points' targets "
                                                      "(population, made exact)")
    lr: float = Field(0.02, gt=0, description="learning rate η of the GD runs")
    t_end: float = Field(40.0, gt=0, description="training time t = η·step of the GD runs")
    gd_members: int = Field(32, ge=2, description="members of each GD run (deterministic flow, random θ_0)")
    sgd_fraction: float = Field(0.5, gt=0, le=1, description="truncated fraction n_tr/N of the SGD runs")
    sgd_lr: list[float] = Field(default_factory=lambda: [0.05, 0.05, 0.2], min_length=1,
                                description="η of the SGD runs (paired with sgd_batch_size; the first pair is the "
                                            "FP prediction's)")
    sgd_batch_size: list[int] = Field(default_factory=lambda: [2, 8, 8], min_length=1,
                                      description="B of the SGD runs (paired with sgd_lr)")
    sgd_members: int = Field(2000, ge=10, description="members of each SGD run")
    sgd_t_end: float = Field(30.0, gt=0, description="training time of the SGD runs (≫ 1/κ: stationary)")
    snapshots: int = Field(30, ge=3, description="snapshots per run")
    fp_cells: int = Field(400, ge=20, description="cells of the FP grid")
    fp_dt: float = Field(0.05, gt=0, description="time step of the FP solve")


class Network(_Pairs, Schema):
    """ReLU MLPs on a Gaussian mixture with MSE to one-hot cluster targets."""

    clusters: int = Field(4, ge=2, description="mixture components C (= outputs)")
    d: int = Field(8, ge=1, description="input dimension")
    per_cluster: int = Field(16, ge=2, description="training points per cluster")
    separation: float = Field(3.0, gt=0, description="cluster means drawn N(0, separation²/d) per coordinate")
    std: float = Field(0.5, gt=0, description="standard deviation of each cluster")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [16, 16], min_length=1, description="hidden widths")
    lr: float = Field(0.1, gt=0, description="learning rate η of the GD run")
    t_end: float = Field(1500.0, gt=0, description="training time t = η·step of every run (steps = t_end/η: "
                                                   "runs at different η end at the same t)")
    members: int = Field(128, ge=4, description="members of every run")
    snapshots: int = Field(30, ge=4, description="snapshots per run")
    sgd_lr: list[float] = Field(default_factory=lambda: [0.1, 0.1, 0.05], min_length=1,
                                description="η of the SGD runs (paired with sgd_batch_size; the floor ∝ η/B)")
    sgd_batch_size: list[int] = Field(default_factory=lambda: [1, 4, 1], min_length=1,
                                      description="B of the SGD runs (paired with sgd_lr)")
    bootstrap: int = Field(100, ge=10, description="bootstrap resamples of the members for uncertainties")
    late: float = Field(0.5, gt=0, lt=1, description="late part of training: snapshots with t ≥ (1 − late)·t_end "
                                                     "give the floors (mean S_W) and the late log-log slopes")
    floor_target_std: float = Field(0.3, ge=0, description=(
        "the floor runs: every training point twice, with targets one-hot ± ε (ε ~ N(0, std²) per output), so "
        "that, as in the toy (v > 0), the per-sample residuals stay ±ε at the least-squares minimum and the SGD "
        "noise does not vanish there; 0: no floor runs"))
    floor_members: int = Field(64, ge=4, description="members of every floor run")


class Config(Schema):
    """ReLU truncation and cluster collapse (T. Chen, arXiv 2501.07400): the exact toy flow, its SGD noise
    floor and FP prediction, and the collapse of clusters in ReLU networks."""

    seed: int = Field(0, ge=0, description="seed of everything: data, initialisations, minibatches, bootstrap")
    toy: Toy = Field(default_factory=Toy, description="the exact toy flow (GD and SGD)")
    network: Network = Field(default_factory=Network, description="the ReLU networks on clustered data")


QUICK = {
    "toy": {"fractions": [0.25, 0.5, 0.75], "sgd_lr": [0.05, 0.05], "sgd_batch_size": [2, 8], "sgd_members": 1000, "t_end": 30.0,
            "sgd_t_end": 20.0, "gd_members": 16, "snapshots": 20, "fp_cells": 200},
    "network": {"members": 48, "t_end": 200.0, "per_cluster": 12, "hidden": [12, 12], "snapshots": 20,
                "sgd_lr": [0.1, 0.1], "sgd_batch_size": [1, 4], "bootstrap": 40, "floor_members": 24},
}  # fmt: skip


# ----------------------------------------------------------------------------------------- thresholds
THRESHOLDS = {"toy_rate_rel": 1e-6, "diagonal_slope_tol": 0.05, "z_max": 4.0, "fp_w1_floor": 3.0,
              "network_slope_z": 2.0, "collapse_factor": 2.0, "floor_z": 2.0, "saturation_slope": 0.1}  # fmt: skip
THRESHOLD_TEXT = {
    "exact rate": "the toy's fitted rate equals the exact discrete-time rate −ln(1 − ηκ)/η, κ = n_tr/N, to a "
                  "relative {toy_rate_rel:g}",
    "diagonal slope": "the slope of the toy's rate against n_tr/N is 1 within {diagonal_slope_tol:g} (the "
                      "O(ηκ) discretisation of gradient flow)",
    "4 SE": "|measured − reference| ≤ {z_max:g} standard errors",
    "FP floor": "W1 distance of the FP density from the members ≤ {fp_w1_floor:g} noise floors at the last "
                "snapshot (≈ 1 for a perfect prediction)",
    "positive slope": "the network's slope of rate against n_tr/N is positive by ≥ {network_slope_z:g} "
                      "bootstrap standard errors",
    "collapse": "NC1 = S_W/S_B of the last hidden layer falls by a factor ≥ {collapse_factor:g} under GD",
    "saturation": "under every SGD setting the output layer's within-cluster spread S_W, averaged over the late "
                  "snapshots, exceeds GD's by ≥ {floor_z:g} bootstrap standard errors",
    "flat": "under every SGD setting the late log-log slope d ln S_W / d ln t of the output layer is ≥ "
            "−{saturation_slope:g} (a floor; a collapse that goes on has a clearly negative slope)",
}  # fmt: skip


def threshold_definitions() -> dict:
    return {k: v.format(**THRESHOLDS) for k, v in THRESHOLD_TEXT.items()}


# ------------------------------------------------------------------------------------------- results
@dataclass
class ToyGD:
    fraction: float
    t: np.ndarray  # (S,)
    residual: np.ndarray  # (S,) R(t) = <(θ − ȳ)²>
    rate: float  # fitted decay rate of √R
    exact_rate: float  # −ln(1 − ηκ)/η


@dataclass
class ToySGD:
    lr: float
    batch_size: int
    t: np.ndarray
    residual: np.ndarray  # (S,) R(t)
    floor: float  # R at the last snapshot
    floor_se: float
    ou_floor: float  # D/κ = η v/(2B)
    exact_floor: float  # stationary E(θ − ȳ)² of the discrete SGD recursion
    d_measured: float  # (η/2)·grad_var at the last snapshot (member mean)
    kappa_measured: float  # slope of grad on θ (all snapshots)


@dataclass
class ToyFP:
    t: np.ndarray
    grid_x: np.ndarray
    density: np.ndarray  # (S, n)
    samples: np.ndarray  # (S, M)
    w1_over_floor: np.ndarray  # (S,)
    frozen_over_floor: np.ndarray  # (S,) the first histogram held fixed
    kappa: float
    theta_star: float
    d0: float  # diffusion at θ*: (η/2)·a
    d2: float  # curvature: D(x) = d0 + d2 (x − θ*)²


@dataclass
class NetRun:
    label: str
    optimizer: str
    lr: float
    batch_size: int
    t: np.ndarray  # (S,)
    sw: np.ndarray  # (S, M, L, C) within-cluster spread (layers: hidden…, output)
    sb: np.ndarray  # (S, M, L)
    trunc: np.ndarray  # (S, M, H, C) n_tr/N per hidden layer and cluster
    loss: np.ndarray  # (S, M)


@dataclass
class Result:
    toy_gd: list
    toy_sgd: list
    toy_fp: ToyFP
    toy_slope: float
    toy_slope_se: float
    floor_exponent: float
    floor_exponent_se: float
    nets: list  # of NetRun, GD first
    rate_points: dict  # from the GD run: "f", "rate", "layer", "cluster"
    net_slope: float
    net_slope_se: float
    net_intercept: float
    nc1_start: float
    nc1_end: float
    sw_end: dict  # label -> (mean, se) of the output layer's S_W over the late snapshots (cluster, member mean)
    net_floor_exponent: float
    net_floor_exponent_se: float
    late_slope: dict = field(default_factory=dict)  # label -> (d ln S_W/d ln t late, se)
    floor_nets: list = field(default_factory=list)  # NetRuns on conflicting targets (GD first)
    conflict: dict | None = None  # floor_stats of floor_nets
    extra: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------- the toy flow
def toy_dataset(n: int, fraction: float, mean: float, std: float, seed: int):
    """Indicator input x_i = 1[i < n_tr] and targets y_i, the truncated ones with exactly mean ``mean`` and
    population std ``std``. Returns (Dataset, n_tr, ȳ, v)."""
    n_tr = int(round(fraction * n))
    if not 1 <= n_tr <= n:
        raise fpkit.errors.ConfigError(f"toy: fraction {fraction} of n = {n} truncates {n_tr} points; need ≥ 1")
    x = np.zeros((n, 1))
    x[:n_tr] = 1.0
    rng = np.random.default_rng(derive_seed(seed, 1))
    y = rng.standard_normal((n, 1))
    if n_tr > 1:
        yt = y[:n_tr, 0]
        y[:n_tr, 0] = mean + std * (yt - yt.mean()) / yt.std()
        v = std**2
    else:
        y[0, 0], v = mean, 0.0
    return arrays(x, y), n_tr, float(mean), float(v)


def toy_train(ds, *, optimizer: str, lr: float, batch_size: int, members: int, t_end: float, snapshots: int,
              seed: int, show_progress=None):  # fmt: skip
    steps = max(1, int(round(t_end / lr)))
    cfg = {"seed": seed, "model": {"kind": "mlp", "hidden": [], "activation": "linear"},
           "train": {"optimizer": optimizer, "lr": lr, "batch_size": batch_size, "members": members, "steps": steps,
                     "snapshots": snapshots, "probes": 0, "kernels": "generic"}}  # fmt: skip
    return fpkit.Ensemble(cfg, data=ds).train(show_progress=show_progress)


def decay_rate(t: np.ndarray, r: np.ndarray, rel_floor: float = 1e-20) -> float:
    """The exponential decay rate of √r (least squares on ln √r against t, where r > rel_floor·r_0)."""
    ok = r > rel_floor * r[0]
    return float(-np.polyfit(t[ok], 0.5 * np.log(r[ok]), 1)[0])


def ou_floor(lr: float, batch_size: int, v: float) -> float:
    """The Ornstein-Uhlenbeck floor D/κ of the toy under SGD: D = ηκv/(2B) at θ = ȳ, so D/κ = ηv/(2B)."""
    return lr * v / (2.0 * batch_size)


def exact_floor(lr: float, batch_size: int, v: float, kappa: float) -> float:
    """Stationary E(θ − ȳ)² of the discrete SGD recursion with iid minibatches (per-sample gradient variance
    κv + κ(1 − κ)(θ − ȳ)²): ηv / (B(2 − ηκ − η(1 − κ)/B))."""
    return lr * v / (batch_size * (2.0 - lr * kappa - lr * (1.0 - kappa) / batch_size))


def linear_fit(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float, float]:
    """Weighted least squares y = a + b x: (b, se(b), a); w = 1/σ² (the se from w), or None (se from
    residuals)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if w is None:
        b, a = np.polyfit(x, y, 1)
        res = y - a - b * x
        dof = max(1, x.size - 2)
        se = float(np.sqrt(res @ res / dof / max(np.sum((x - x.mean()) ** 2), 1e-300)))
        return float(b), se, float(a)
    W = np.sum(w)
    xm, ym = np.sum(w * x) / W, np.sum(w * y) / W
    sxx = np.sum(w * (x - xm) ** 2)
    b = np.sum(w * (x - xm) * (y - ym)) / sxx
    return float(b), float(np.sqrt(1.0 / sxx)), float(ym - b * xm)


def toy_fp(run, lr: float, cells: int, dt: float) -> ToyFP:
    """The FP prediction of θ's distribution under SGD with drift and diffusion measured from the run."""
    th = run.weights["W1"][:, :, 0, 0]  # (S, M)
    g = run.grad["W1"][:, :, 0, 0]
    gv = run.grad_var["W1"][:, :, 0, 0]
    kappa, _, c = linear_fit(th.ravel(), g.ravel())  # grad = κ(θ − θ*)
    star = -c / kappa
    a, b = np.linalg.lstsq(np.stack([np.ones(th.size), (th.ravel() - star) ** 2], 1), gv.ravel(), rcond=None)[0]
    d0, d2 = 0.5 * lr * a, 0.5 * lr * max(b, 0.0)
    lo, hi = th.min(), th.max()
    pad = 0.25 * (hi - lo)
    grid = fpkit.Grid.uniform(lo - pad, hi + pad, int(cells))
    fp = fpkit.FokkerPlanck(grid, drift=lambda x, t: -kappa * (x - star),
                            diffusion=lambda x, t: d0 + d2 * (x - star) ** 2, bc="reflecting")  # fmt: skip
    p0, _ = np.histogram(th[0], bins=grid.edges[0], density=True)
    sol = fp.solve(p0 + 1e-12, t_eval=list(run.t[1:]), method="implicit", dt=dt)
    dens = np.concatenate([(p0 / (p0.sum() * grid.dx[0]))[None], np.asarray(sol.p)], 0)
    w1 = judge(th, grid, density=dens)
    frozen = judge(th, grid, density=np.repeat(dens[:1], th.shape[0], 0))
    return ToyFP(run.t, grid.x, dens, th, w1, frozen, kappa, float(star), float(d0), float(d2))


def run_toy(tcfg: dict, seed: int, show_progress=None):
    gd = []
    for f in tcfg["fractions"]:
        ds, n_tr, ybar, v = toy_dataset(tcfg["n"], f, tcfg["target_mean"], tcfg["target_std"], seed)
        run = toy_train(ds, optimizer="gd", lr=tcfg["lr"], batch_size=1, members=tcfg["gd_members"],
                        t_end=tcfg["t_end"], snapshots=tcfg["snapshots"], seed=seed, show_progress=show_progress)
        r = np.mean((run.weights["W1"][:, :, 0, 0] - ybar) ** 2, axis=1)
        kappa = n_tr / tcfg["n"]
        gd.append(ToyGD(kappa, run.t, r, decay_rate(run.t, r), -np.log1p(-tcfg["lr"] * kappa) / tcfg["lr"]))
    slope, slope_se, _ = linear_fit([g.fraction for g in gd], [g.rate for g in gd])
    sgd, fp_pred = [], None
    ds, n_tr, ybar, v = toy_dataset(tcfg["n"], tcfg["sgd_fraction"], tcfg["target_mean"], tcfg["target_std"], seed)
    kappa = n_tr / tcfg["n"]
    for k, (lr, B) in enumerate(zip(tcfg["sgd_lr"], tcfg["sgd_batch_size"], strict=True)):
        run = toy_train(ds, optimizer="sgd", lr=lr, batch_size=int(B), members=tcfg["sgd_members"],
                        t_end=tcfg["sgd_t_end"], snapshots=tcfg["snapshots"], seed=derive_seed(seed, 2, k),
                        show_progress=show_progress)  # fmt: skip
        dev2 = (run.weights["W1"][:, :, 0, 0] - ybar) ** 2
        th, g = run.weights["W1"][:, :, 0, 0], run.grad["W1"][:, :, 0, 0]
        sgd.append(ToySGD(lr, int(B), run.t, dev2.mean(1), float(dev2[-1].mean()),
                          float(dev2[-1].std(ddof=1) / np.sqrt(dev2.shape[1])), ou_floor(lr, B, v),
                          exact_floor(lr, B, v, kappa), float(0.5 * lr * run.grad_var["W1"][-1].mean()),
                          linear_fit(th.ravel(), g.ravel())[0]))  # fmt: skip
        if k == 0:
            fp_pred = toy_fp(run, lr, tcfg["fp_cells"], tcfg["fp_dt"])
    if len(sgd) >= 2:
        q = np.array([s.lr / s.batch_size for s in sgd])
        fl = np.array([s.floor for s in sgd])
        se = np.array([s.floor_se for s in sgd]) / fl
        if np.ptp(np.log(q)) > 0:
            expo, expo_se, _ = linear_fit(np.log(q), np.log(fl), 1.0 / se**2)
        else:
            expo, expo_se = np.nan, np.nan
    else:
        expo, expo_se = np.nan, np.nan
    return gd, sgd, fp_pred, slope, slope_se, expo, expo_se


# ---------------------------------------------------------------------------------- the ReLU networks
def mixture(ncfg: dict, seed: int):
    """Gaussian mixture training set (x, one-hot y, labels), clusters in order."""
    rng = np.random.default_rng(derive_seed(seed, 3))
    C, d = ncfg["clusters"], ncfg["d"]
    means = rng.standard_normal((C, d)) * ncfg["separation"] / np.sqrt(d)
    labels = np.repeat(np.arange(C), ncfg["per_cluster"])
    x = means[labels] + ncfg["std"] * rng.standard_normal((labels.size, d))
    return x, np.eye(C)[labels], labels


def cluster_geometry(weights: dict, x: np.ndarray, labels: np.ndarray, activation: str = "relu"):
    """Per member, for every hidden layer and the output: within-cluster spreads S_W (M, L, C)
    = mean_{i∈c} ‖h_i − μ_c‖², the between-cluster spread S_B (M, L) = mean_c ‖μ_c − μ‖², and for the hidden
    layers the truncated fraction n_tr/N (M, H, C): the points of cluster c in a unit's zero region (h = 0),
    averaged over the layer's units, over all N points."""
    hs = forward(weights, x, activation)[1:]
    C = int(labels.max()) + 1
    N = x.shape[0]
    M = hs[0].shape[0]
    sw = np.empty((M, len(hs), C))
    sb = np.empty((M, len(hs)))
    trunc = np.empty((M, len(hs) - 1, C))
    for ell, h in enumerate(hs):
        mus = np.stack([h[:, labels == c].mean(1) for c in range(C)], 1)  # (M, C, w)
        for c in range(C):
            hc = h[:, labels == c]
            sw[:, ell, c] = np.mean(np.sum((hc - mus[:, c, None]) ** 2, -1), 1)
            if ell < len(hs) - 1:
                trunc[:, ell, c] = np.mean(np.sum(hc <= 0.0, axis=1), axis=-1) / N
        sb[:, ell] = np.mean(np.sum((mus - mus.mean(1, keepdims=True)) ** 2, -1), 1)
    return sw, sb, trunc


def net_train(ncfg: dict, x, y, labels, *, optimizer: str, lr: float, batch_size: int, seed: int,
              members: int | None = None, train_xy=None, show_progress=None) -> NetRun:  # fmt: skip
    """One ensemble trained to t_end (steps = t_end/η) on (x, y), or on ``train_xy`` when given (the floor runs);
    the cluster geometry is measured on the points x with their cluster labels."""
    xt, yt = (x, y) if train_xy is None else train_xy
    cfg = {"seed": seed, "model": {"kind": "mlp", "hidden": list(ncfg["hidden"]), "activation": "relu", "bias": True},
           "train": {"optimizer": optimizer, "lr": lr, "batch_size": batch_size,
                     "members": members or ncfg["members"], "steps": max(1, int(round(ncfg["t_end"] / lr))),
                     "snapshots": ncfg["snapshots"], "probes": 0, "statistics": False, "kernels": "generic"}}  # fmt: skip
    run = fpkit.Ensemble(cfg, data=arrays(xt, yt)).train(show_progress=show_progress)
    geo = [cluster_geometry({n: run.weights[n][s] for n in run.names}, x, labels) for s in range(run.t.size)]
    sw, sb, tr = (np.stack([g[k] for g in geo]) for k in range(3))
    loss = np.stack([0.5 * np.mean(np.sum((forward({n: run.weights[n][s] for n in run.names}, xt, "relu")[-1]
                                            - yt[None]) ** 2, -1), 1) for s in range(run.t.size)])  # fmt: skip
    label = "GD" if optimizer == "gd" else f"SGD η={lr:g} B={batch_size}"
    return NetRun(label, optimizer, lr, batch_size if optimizer != "gd" else xt.shape[0], run.t, sw, sb, tr, loss)


def conflicting_targets(x, y, labels, std: float, seed: int):
    """Every point twice, targets y ± ε (ε ~ N(0, std²) per output): the least-squares fit of a pair is its
    mean y, where the per-sample residuals stay ±ε (the network analogue of the toy's v > 0)."""
    eps = std * np.random.default_rng(derive_seed(seed, 6)).standard_normal(y.shape)
    return np.concatenate([x, x]), np.concatenate([y + eps, y - eps])


def late_floor(net: NetRun, late: float, members=slice(None)) -> float:
    """The output layer's within-cluster spread S_W (cluster and member mean) averaged over the late snapshots."""
    sel = net.t >= (1.0 - late) * net.t[-1]
    return float(net.sw[sel][:, members, -1].mean())


def late_slope(net: NetRun, late: float, members=slice(None)) -> float:
    """d ln S_W / d ln t of the output layer's spread (member mean) over the late snapshots: ≈ 0 at a floor,
    negative while collapsing."""
    sel = (net.t >= (1.0 - late) * net.t[-1]) & (net.t > 0)
    return float(np.polyfit(np.log(net.t[sel]), np.log(net.sw[sel][:, members, -1].mean((1, 2))), 1)[0])


def floor_stats(nets: list, late: float, nb: int, seed: int) -> dict:
    """GD first, then SGD runs: late floors and slopes (bootstrap SE over members), and the exponent of the SGD
    floors against η/B."""
    M = nets[0].sw.shape[1]
    fl = {n.label: (late_floor(n, late), float(np.std(bootstrap(lambda m, n=n: late_floor(n, late, m), M, nb, seed),
                                                        ddof=1))) for n in nets}  # fmt: skip
    sl = {n.label: (late_slope(n, late), float(np.std(bootstrap(lambda m, n=n: late_slope(n, late, m), M, nb, seed),
                                                       ddof=1))) for n in nets}  # fmt: skip
    expo, expo_se = np.nan, np.nan
    sg = nets[1:]
    q = np.array([n.lr / n.batch_size for n in sg])
    if len(sg) >= 2 and np.ptp(np.log(q)) > 0:
        def expo_fn(m):
            return np.polyfit(np.log(q), np.log([late_floor(n, late, m) for n in sg]), 1)[0]

        expo = float(expo_fn(slice(None)))
        expo_se = float(np.std(bootstrap(expo_fn, M, nb, seed), ddof=1))
    return {"floor": fl, "slope": sl, "exponent": expo, "exponent_se": expo_se}


def rate_points(net: NetRun, members=None, late: float = 0.5) -> dict:
    """Per member, hidden layer and cluster: the exponential rate of √S_W over the late part of training
    (least squares of −½ ln S_W on t over the snapshots with t ≥ (1 − late)·t_end) and the truncated fraction
    n_tr/N averaged over the same snapshots; members differ in how many points they truncate, which spreads
    n_tr/N for the fit."""
    m = slice(None) if members is None else members
    H = net.trunc.shape[2]
    sel = net.t >= (1.0 - late) * net.t[-1]
    t = net.t[sel]
    y = -0.5 * np.log(np.maximum(net.sw[sel][:, m, :H], 1e-300))  # (S', M, H, C)
    tc = t - t.mean()
    rate = np.tensordot(tc, y - y.mean(0), axes=(0, 0)) / np.sum(tc**2)  # (M, H, C)
    f = net.trunc[sel][:, m].mean(0)
    lay = np.broadcast_to(np.arange(H)[None, :, None], rate.shape)
    clu = np.broadcast_to(np.arange(rate.shape[2])[None, None, :], rate.shape)
    return {"f": f.ravel(), "rate": rate.ravel(), "layer": lay.ravel().copy(), "cluster": clu.ravel().copy()}


def bootstrap(fn, M: int, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(derive_seed(seed, 5))
    return np.array([fn(rng.integers(0, M, M)) for _ in range(n)])


def run_network(ncfg: dict, seed: int, show_progress=None) -> dict:
    x, y, labels = mixture(ncfg, seed)
    nets = [net_train(ncfg, x, y, labels, optimizer="gd", lr=ncfg["lr"], batch_size=1, seed=seed,
                      show_progress=show_progress)]  # fmt: skip
    for k, (lr, B) in enumerate(zip(ncfg["sgd_lr"], ncfg["sgd_batch_size"], strict=True)):
        nets.append(net_train(ncfg, x, y, labels, optimizer="sgd", lr=lr, batch_size=int(B),
                              seed=derive_seed(seed, 4, k), show_progress=show_progress))  # fmt: skip
    gd = nets[0]
    M, nb = gd.sw.shape[1], ncfg["bootstrap"]

    def slope(members=None):
        p = rate_points(gd, members)
        return linear_fit(p["f"], p["rate"])[0]

    pts = rate_points(gd)
    b, _, a = linear_fit(pts["f"], pts["rate"])
    b_se = float(np.std(bootstrap(slope, M, nb, seed), ddof=1))
    last = gd.trunc.shape[2] - 1  # the last hidden layer
    nc1 = np.median(gd.sw[:, :, last].mean(-1) / gd.sb[:, :, last], axis=1)
    clean = floor_stats(nets, ncfg["late"], nb, seed)
    floor_nets, conflict = [], None
    if ncfg["floor_target_std"] > 0:
        xy = conflicting_targets(x, y, labels, ncfg["floor_target_std"], seed)
        fm = ncfg["floor_members"]
        floor_nets = [net_train(ncfg, x, y, labels, optimizer="gd", lr=ncfg["lr"], batch_size=1, members=fm,
                                train_xy=xy, seed=derive_seed(seed, 7), show_progress=show_progress)]  # fmt: skip
        for k, (lr, B) in enumerate(zip(ncfg["sgd_lr"], ncfg["sgd_batch_size"], strict=True)):
            floor_nets.append(net_train(ncfg, x, y, labels, optimizer="sgd", lr=lr, batch_size=int(B), members=fm,
                                        train_xy=xy, seed=derive_seed(seed, 8, k), show_progress=show_progress))
        conflict = floor_stats(floor_nets, ncfg["late"], nb, seed)
    return {"nets": nets, "rate_points": pts, "net_slope": b, "net_slope_se": b_se, "net_intercept": a,
            "nc1_start": float(nc1[0]), "nc1_end": float(nc1[-1]), "sw_end": clean["floor"],
            "net_floor_exponent": clean["exponent"], "net_floor_exponent_se": clean["exponent_se"],
            "late_slope": clean["slope"], "floor_nets": floor_nets, "conflict": conflict,
            "extra": {"labels": labels, "x": x}}  # fmt: skip


# ---------------------------------------------------------------------------------------- experiment
class Truncation(Experiment):
    name = "truncation"
    title = "ReLU truncation and cluster collapse (T. Chen, arXiv 2501.07400)"
    Config = Config
    quick = QUICK

    def run(self, cfg: dict, ctx) -> Result:
        with ctx.stage("toy"):
            gd, sgd, fp_pred, slope, slope_se, expo, expo_se = run_toy(cfg["toy"], cfg["seed"], ctx.show_progress)
        with ctx.stage("network"):
            net = run_network(cfg["network"], cfg["seed"], ctx.show_progress)
        return Result(gd, sgd, fp_pred, slope, slope_se, expo, expo_se, **net)

    def verdict(self, cfg: dict, res: Result) -> Verdict:
        return Verdict(claims(res), summary=summary(res), thresholds=threshold_definitions())

    def report(self, cfg: dict, res: Result, verdict: Verdict, figures: dict) -> str:
        from . import truncation_figures as figs

        return figs.report_body(cfg, res)

    def figures(self, cfg: dict, res: Result, out) -> dict:
        from . import truncation_figures as figs

        return figs.write_figures(res, out)


EXPERIMENT = Truncation


# ------------------------------------------------------------------------------------------- claims
def _pm(v: float, se: float) -> str:
    return f"{v:.4g} ± {se:.2g}"


def claims(res: Result, th: dict = THRESHOLDS) -> list:
    out = []
    rel = max(abs(g.rate / g.exact_rate - 1) for g in res.toy_gd)
    out.append(Claim("toy rate", rel <= th["toy_rate_rel"], {"max relative error": rel}, "exact rate",
                     "the toy flow's residual decays at exactly κ = n_tr/N (discrete GD: −ln(1 − ηκ)/η)"))
    out.append(Claim("toy slope", abs(res.toy_slope - 1) <= th["diagonal_slope_tol"],
                     _pm(res.toy_slope, res.toy_slope_se), "diagonal slope",
                     "in the diagonal case the rate against n_tr/N has slope 1"))  # fmt: skip
    for s in res.toy_sgd:
        z = (s.floor - s.ou_floor) / s.floor_se
        out.append(Claim(f"toy OU floor η={s.lr:g} B={s.batch_size}", abs(z) <= th["z_max"],
                         {"R": _pm(s.floor, s.floor_se), "D/κ": s.ou_floor, "z": z}, "4 SE",
                         "under SGD the residual spread saturates at the OU floor D/κ = ηv/(2B)"))  # fmt: skip
    if np.isfinite(res.floor_exponent):
        z = (res.floor_exponent - 1) / res.floor_exponent_se
        out.append(Claim("toy floor ∝ η/B", abs(z) <= th["z_max"], _pm(res.floor_exponent, res.floor_exponent_se),
                         "4 SE", "the toy's floor scales as (η/B)^1"))  # fmt: skip
    fp = res.toy_fp
    out.append(Claim("toy FP", fp.w1_over_floor[-1] <= th["fp_w1_floor"],
                     {"W1/floor last": fp.w1_over_floor[-1], "median": np.nanmedian(fp.w1_over_floor[1:]),
                      "frozen last": fp.frozen_over_floor[-1]}, "FP floor",
                     "the OU Fokker-Planck equation with κ and D measured from the SGD run predicts the "
                     "distribution of θ over the members"))  # fmt: skip
    z = res.net_slope / res.net_slope_se
    out.append(Claim("network rate vs n_tr/N", z >= th["network_slope_z"], _pm(res.net_slope, res.net_slope_se),
                     "positive slope", "in the ReLU network the spread's contraction rate grows with the truncated "
                     "fraction (Chen); slope 1 would be the diagonal case"))  # fmt: skip
    fac = res.nc1_start / res.nc1_end
    out.append(Claim("network collapse", fac >= th["collapse_factor"], {"NC1 start": res.nc1_start,
                     "NC1 end": res.nc1_end, "factor": fac}, "collapse",
                     "under GD the clusters collapse in the last hidden layer (NC1 falls)"))  # fmt: skip
    out += floor_claims("clean targets", {"floor": res.sw_end, "slope": res.late_slope,
                                          "exponent": res.net_floor_exponent,
                                          "exponent_se": res.net_floor_exponent_se}, res.nets[0].label, th)  # fmt: skip
    if res.conflict is not None:
        out += floor_claims("conflicting targets", res.conflict, res.floor_nets[0].label, th)
    return out


def floor_claims(tag: str, st: dict, gd_label: str, th: dict = THRESHOLDS) -> list:
    """GD vs SGD on one data set: SGD's late S_W above GD's, flat (saturated), and ∝ (η/B)^1."""
    fl, sl = st["floor"], st["slope"]
    g = fl[gd_label]
    sgd = [k for k in fl if k != gd_label]
    above = all(fl[k][0] - g[0] >= th["floor_z"] * np.hypot(fl[k][1], g[1]) for k in sgd)
    out = [Claim(f"network SGD floor ({tag})", above, {k: _pm(*v) for k, v in fl.items()}, "saturation",
                 "SGD's noise keeps the output layer's within-cluster spread above GD's late in training"),
           Claim(f"network SGD saturates ({tag})", all(sl[k][0] >= -th["saturation_slope"] for k in sgd),
                 {k: _pm(*v) for k, v in sl.items()}, "flat",
                 "under SGD the collapse stops at a floor (late d ln S_W/d ln t ≈ 0) while GD's goes on")]  # fmt: skip
    if np.isfinite(st["exponent"]):
        dev = st["exponent"] - 1
        z = dev / st["exponent_se"] if st["exponent_se"] > 0 else (0.0 if abs(dev) < 1e-9 else np.inf)
        out.append(Claim(f"network floor ∝ η/B ({tag})", abs(z) <= th["z_max"], _pm(st["exponent"], st["exponent_se"]),
                         "4 SE", "the network's late S_W under SGD scales as (η/B)^1"))  # fmt: skip
    return out


def summary(res: Result) -> str:
    s = res.toy_sgd[0]
    parts = [f"The toy flow decays at exactly n_tr/N (slope {_pm(res.toy_slope, res.toy_slope_se)}); under SGD "
             f"(η = {s.lr:g}, B = {s.batch_size}) it saturates at R = {_pm(s.floor, s.floor_se)} against the OU "
             f"floor D/κ = {s.ou_floor:.4g}, and the FP prediction is {res.toy_fp.w1_over_floor[-1]:.2f} noise "
             f"floors from the members at the end.",
             f"In the ReLU network (GD) the local contraction rate of the within-cluster spread against n_tr/N has "
             f"slope {_pm(res.net_slope, res.net_slope_se)} (intercept {res.net_intercept:.3g}); NC1 of the last "
             f"hidden layer went from {res.nc1_start:.3g} to {res.nc1_end:.3g}."]  # fmt: skip
    return " ".join(parts)
