"""Experiment ``training-response`` (issue 19, experiment 2; Nakazato, arXiv 2405.04074): the response of a
network's outputs to one probe step at waiting time t_w, its aging, the collapse of its shape, and the rank
and fragility of the learned features, for tanh, ReLU and linear networks trained by GD, SGD and SGLD.

Problem: inputs x ~ N(0, I_D), targets y = Σ_j a_j tanh(v_j·x) + σε from a fixed random tanh teacher of width
``teacher_width``; P fixed training samples (``fpkit.data.arrays``). Students: MLPs D → N → … → 1
(``model.kind = "mlp"``, standard parameterisation, no biases unless asked), trained by ``fpkit.Ensemble``:
GD (full batch), SGD (iid minibatches of B) and SGLD (full-batch Langevin at temperature T). Snapshots at
log-spaced waiting times t_w = η·step.

Measured at every t_w for every member (numpy forward and backward, ``fpkit.network``):

* the empirical NTK Θ(x, x′) = J(x)·J(x′) on K response inputs, J = ∂f/∂θ (all weights);
* the one-step response kernel: clone the member, apply one probe step θ′ = θ + η_p J(x_p) on probe input x_p
  (a step on the probe loss −f(x_p): a unit force on the probe's output, so the response does not depend on
  how well the probe is fitted; with the probe's squared loss the response is its residual times this), and
  R(x, x_p) = [f_θ′(x) − f_θ(x)] / η_p. R = Θ(·, x_p) + O(η_p): for a one-layer linear model f = w·x exactly
  R = x·x_p, constant in t_w;
* the amplitude A(t_w) = ensemble mean of the probes' self-response R(x_p, x_p) and the normalised shape
  R̄(t_w) / A(t_w) (R̄ the ensemble mean kernel);
* the effective rank of the last hidden layer's features h(x) over ``n_features`` inputs: the participation
  ratio PR = (tr C)² / tr C² of their covariance C (1 ≤ PR ≤ N);
* the fragility: the increase of the training loss ½⟨(f − y)²⟩ under a random weight perturbation of fixed
  norm ρ = ``fragility_eps``·√(#weights) (the same ``n_perturb`` directions for every member and t_w: common
  random numbers).

Analysis (bootstrap over members for every uncertainty; 95 % intervals):

* aging: log A against log t_w in the window t_w ≥ ``fit_from`` steps: slope −a (A ∝ t_w^−a) and the
  curvature c₂ of a quadratic in log t_w. Model comparison: "constant" when A varies by less than
  ``THRESHOLDS["constant_span"]`` across the window (upper bound), "power law" otherwise when c₂'s interval
  contains 0, "neither" (A changes, but not as a power law) otherwise;
* collapse: d(t_w) = ‖R̂(t_w) − R̂(t_last)‖_F / ‖R̂(t_last)‖_F of the normalised shapes; the largest d in the
  window, against the largest relative change of the amplitude over the same window;
* rank at equal loss: the member-mean loss and PR curves of SGD (and SGLD) interpolated (in log loss, between
  the snapshots around its first crossing) to the lowest loss that both it and GD reach: ΔPR = PR_SGD − PR_GD;
* rank and fragility: the Pearson correlation of PR and fragility across members at the last t_w, each
  standardised within its (activation, method) and pooled, with a Fisher-z interval.

The Fokker-Planck angle (``fp``; as in ``gd_vs_sgd``): ``fpkit.predict`` of a few weight entries of the same
ensembles, estimated on one half of the members and judged on the other (W1 distance over the judged half's
noise floor). SGD and SGLD (weights moved by noise): route "auto", and where it left the mechanistic route the
mechanistic prediction beside it; a prediction *misses* when its W1/floor exceeds ``THRESHOLDS["fp_miss"]`` at
some snapshot after t = 0, and every miss must be flagged by its own diagnostics (doubtful/fails; estimation half
only). GD (no noise): the drift-only transport with the mechanistic drift E[−∂L/∂w | w] is exact for the
marginal, so it must stay within the same bound.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Annotated, Literal

import numpy as np
from pydantic import Field

import fpkit
from fpkit.config import Schema
from fpkit.data import arrays
from fpkit.errors import ConfigError
from fpkit.experiments import Claim, Experiment, Verdict
from fpkit.network import _ACT, forward
from fpkit.progress import progress
from fpkit.solvers.random import derive_seed

ACTS = Literal["tanh", "relu", "linear"]
METHODS = Literal["gd", "sgd", "sgld"]


# ------------------------------------------------------------------------------------------- config
class Problem(Schema):
    """The teacher-student problem."""

    d: int = Field(8, ge=1, description="input dimension D")
    n_train: int = Field(64, ge=2, description="training samples P")
    teacher_width: int = Field(4, ge=1, description="hidden units of the tanh teacher")
    noise: float = Field(0.1, ge=0, description="standard deviation σ of the target noise")
    n_inputs: int = Field(16, ge=2, description="response inputs K (test inputs the kernels are measured on)")
    n_probes: int = Field(4, ge=1, description="probe inputs (the first of the response inputs)")
    n_features: int = Field(256, ge=4, description="inputs the hidden features' effective rank is taken over")


class Model(Schema):
    """The students."""

    activations: list[ACTS] = Field(default_factory=lambda: ["tanh", "relu", "linear"], min_length=1, description="hidden activations compared")
    width: int = Field(16, ge=1, description="hidden width N")
    depth: int = Field(2, ge=2, description="number of weight matrices L (L − 1 hidden layers)")
    bias: bool = Field(False, description="biases in every layer")


class Train(Schema):
    """Training (``fpkit.Ensemble``)."""

    methods: list[METHODS] = Field(default_factory=lambda: ["gd", "sgd", "sgld"], min_length=1, description="optimisers compared")
    lr: float = Field(0.1, gt=0, description="learning rate η (t = η·step)")
    batch_size: int = Field(4, ge=1, description="SGD minibatch size B (iid)")
    temperature: float = Field(1e-5, ge=0, description="SGLD temperature T (full-batch Langevin, noise √(2ηT)ξ per step)")
    members: int = Field(128, ge=8, description="members per ensemble (of the response measurements)")
    steps: int = Field(10000, ge=10, description="optimiser steps")
    waiting_times: int = Field(16, ge=4, description="log-spaced waiting times t_w (snapshots after t = 0)")


class Probe(Schema):
    """The probe step, the fragility perturbation and the analysis."""

    eta: float = Field(1e-3, gt=0, description="probe step η_p (the response is [f_θ′ − f_θ]/η_p)")
    eta_check: int = Field(3, ge=2, description="waiting times (first, middle, last …) at which R − Θ is also measured at η_p/2 (its order in η_p)")
    fragility_eps: float = Field(0.02, gt=0, description="perturbation norm per √(#weights) (ρ = eps·√P_w)")
    n_perturb: int = Field(8, ge=1, description="random directions averaged for the fragility")
    fit_from: int = Field(10, ge=1, description="aging fit and collapse window: t_w ≥ this many steps")
    n_boot: int = Field(200, ge=20, description="bootstrap resamples over members")


class FpAngle(Schema):
    """Fokker-Planck predictions of weight entries (``fpkit.predict``, out of sample) of the trained ensembles."""

    entries: list[str] = Field(default_factory=lambda: ["W1[0,0]", "W1[5,3]", "W2[0,0]"], description=(
        "entries predicted in every setting of ``activations`` (W1: first layer (N, D), W_L: output (1, N)); "
        "empty: no FP angle (and no snapshot gradient statistics)"))
    activations: list[ACTS] = Field(default_factory=lambda: ["tanh", "relu", "linear"], description=(
        "activations whose GD, SGD and SGLD ensembles are predicted"))
    members: int = Field(256, ge=200, description=(
        "members of the predicted ensembles (half estimate A and D, half judged: the local-linear drift estimate "
        "needs ~100 on its half); the response measurements take the first train.members of them, which are "
        "those of an ensemble of train.members (each member's streams do not depend on the count)"))
    cells: int = Field(120, ge=20, description="FP grid cells (at least)")
    route: Literal["mechanistic", "kramers-moyal", "auto"] = Field("auto", description=(
        "fpkit.predict's route for SGD and SGLD (GD stays mechanistic: its drift-only exactness is the claim); "
        "where auto leaves the mechanistic route, the mechanistic prediction is kept beside it"))
    time_steps: int = Field(300, ge=10, description="the FP solve's and transport's step dt = (the run's last t) / this")


class Config(Schema):
    """Training response and aging (arXiv 2405.04074)."""

    seed: int = Field(0, ge=0, description="seed of everything (teacher, data, initialisations, batches, probes)")
    problem: Problem = Field(default_factory=Problem, description="the teacher-student problem")
    model: Model = Field(default_factory=Model, description="the students")
    train: Train = Field(default_factory=Train, description="training")
    probe: Probe = Field(default_factory=Probe, description="probe step, fragility and analysis")
    fp: FpAngle = Field(default_factory=FpAngle, description="Fokker-Planck predictions of weight entries")


QUICK = {"train": {"members": 32, "steps": 1000, "waiting_times": 8}, "probe": {"n_boot": 60},
         "problem": {"n_features": 128}, "fp": {"entries": ["W1[0,0]", "W2[0,0]"], "activations": ["tanh"], "members": 200}}  # fmt: skip

THRESHOLDS = {
    "linear_exact": 1e-9,  # relative error of R against x·x′ (round-off only)
    "order_lo": 1.8,
    "order_hi": 2.2,
    "collapse": 0.1,
    "constant_span": 0.05,  # A varies by less than 5 % across the window: constant
    "fp_miss": 3.0,  # W1/floor above this at some snapshot: the prediction misses (sampling noise alone ~1-2.5)
}
THRESHOLD_TEXT = {
    "exact": "max |R − x·x′| / max |x·x′| ≤ {linear_exact:g} at every t_w (one-layer linear model: round-off only)",
    "order": "median over members of log₂(|R−Θ|(η_p) / |R−Θ|(η_p/2)) + 1 in [{order_lo:g}, {order_hi:g}] (δf − η_pΘ = O(η_p²))",
    "aging": "constant: the upper 95 % bound of ln(max A / min A) over the window ≤ ln(1 + {constant_span:g}); power "
             "law: otherwise, when the 95 % interval of the curvature c₂ contains 0; neither: otherwise",
    "collapse": "the upper 95 % bound of max_t_w d(t_w) in the window ≤ {collapse:g}",
    "rank": "ΔPR = PR_SGD − PR_GD at equal loss: the upper 95 % bound < 0",
    "fragility": "pooled within-setting correlation of PR and fragility: the upper 95 % bound < 0",
    "FP (SGD/SGLD)": "every predicted entry's W1/floor ≤ {fp_miss:g} at every snapshot after t = 0 (judged half)",
    "no silent FP failure": "every prediction (route auto, and the mechanistic one beside it) with W1/floor > "
                            "{fp_miss:g} at some snapshot has a diagnostics verdict 'doubtful' or 'fails'",
    "drift-only exact (GD)": "drift-only W1/floor ≤ {fp_miss:g} at every snapshot after t = 0",
}  # fmt: skip


def threshold_definitions() -> dict:
    return {k: v.format(**THRESHOLDS) for k, v in THRESHOLD_TEXT.items()}


# ------------------------------------------------------------------------------------------- results
@dataclass
class Setting:
    """The measurements of one (activation, method) ensemble at its waiting times (S snapshots, M members)."""

    activation: str
    method: str
    t: np.ndarray  # (S,) t_w = η·step (index 0: t = 0)
    step: np.ndarray  # (S,)
    loss: np.ndarray  # (S, M) training loss
    response: np.ndarray  # (S, M, K, Kp) R(x, x_p)
    ntk: np.ndarray  # (S, M, K, K) Θ
    rank: np.ndarray  # (S, M) participation ratio of the last hidden layer's features
    fragility: np.ndarray  # (S, M) loss increase under a perturbation of norm ρ
    order: np.ndarray  # (C, M) measured order of R − Θ in η_p at C waiting times
    order_t: np.ndarray  # (C,) those waiting times

    @property
    def label(self) -> str:
        return f"{self.activation} {self.method}"


@dataclass
class Result:
    x: np.ndarray  # (K, D) response inputs (probes: the first Kp)
    linear_error: np.ndarray  # (S,) one-layer linear model: max |R − x·x′| / max |x·x′|
    linear_t: np.ndarray  # (S,)
    settings: list = field(default_factory=list)
    # (activation, method) -> {"auto" | "mechanistic": {label: fpkit Prediction}}: "auto" holds the route
    # asked for (GD: mechanistic), "mechanistic" the mechanistic predictions where auto left that route
    fp: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------------------- numerics
def _names(weights: dict) -> list[str]:
    ws = sorted((n for n in weights if n.startswith("W")), key=lambda n: int(n[1:]))
    return ws + sorted((n for n in weights if n.startswith("b")), key=lambda n: int(n[1:]))


def flatten(weights: dict) -> np.ndarray:
    """{name: (M, *shape)} -> (M, P) in the order W1…WL, b1…bL."""
    return np.concatenate([weights[n].reshape(weights[n].shape[0], -1) for n in _names(weights)], axis=1)


def unflatten(flat: np.ndarray, like: dict) -> dict:
    """(M′, P) -> {name: (M′, *shape)} with the shapes of ``like`` (inverse of ``flatten``)."""
    out, off = {}, 0
    for n in _names(like):
        shape = like[n].shape[1:]
        size = int(np.prod(shape))
        out[n] = flat[:, off : off + size].reshape((flat.shape[0],) + shape)
        off += size
    return out


def jacobian(weights: dict, x: np.ndarray, activation: str) -> tuple[np.ndarray, np.ndarray]:
    """Outputs f (M, n) and Jacobians J = ∂f/∂θ (M, n, P) of scalar-output MLPs (fpkit.network's convention:
    W_l (M, out, in), hidden layers ``activation``, linear output), by backpropagation, in ``flatten``'s order."""
    hs = forward(weights, x, activation)
    ws = [n for n in _names(weights) if n.startswith("W")]
    if hs[-1].shape[-1] != 1:
        raise ConfigError(f"the response kernel needs one output; the network has {hs[-1].shape[-1]}")
    dact = _ACT[activation][1]
    delta = np.ones(hs[-1].shape)  # ∂f/∂z_L
    grads = {}
    for ell in range(len(ws), 0, -1):
        grads[f"W{ell}"] = delta[..., :, None] * hs[ell - 1][..., None, :]  # (M, n, out, in)
        if f"b{ell}" in weights:
            grads[f"b{ell}"] = delta
        if ell > 1:
            delta = np.einsum("mno,moi->mni", delta, weights[f"W{ell}"]) * dact(hs[ell - 1])
    M, n = hs[-1].shape[:2]
    J = np.concatenate([grads[k].reshape(M, n, -1) for k in _names(weights)], axis=-1)
    return hs[-1][..., 0], J


def response(weights: dict, x: np.ndarray, n_probes: int, activation: str, eta: float,
             J: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """One-step response R (M, K, Kp): each member cloned Kp times, one probe step θ′ = θ + η J(x_p) on each
    probe x_p = x[p], and R(x, x_p) = [f_θ′(x) − f_θ(x)] / η on every row of x."""
    f0, Jx = jacobian(weights, x, activation) if J is None else (forward(weights, x, activation)[-1][..., 0], J)
    theta = flatten(weights)
    M, P = theta.shape
    moved = (theta[:, None, :] + eta * Jx[:, :n_probes, :]).reshape(M * n_probes, P)
    f1 = forward(unflatten(moved, weights), x, activation)[-1][..., 0].reshape(M, n_probes, -1)
    return np.transpose(f1 - f0[:, None, :], (0, 2, 1)) / eta


def participation_ratio(h: np.ndarray) -> np.ndarray:
    """(tr C)² / tr C² of the covariance C of features h (M, n, N) over the n inputs: (M,)."""
    hc = h - h.mean(axis=1, keepdims=True)
    C = np.einsum("mni,mnj->mij", hc, hc) / h.shape[1]
    tr = np.trace(C, axis1=1, axis2=2)
    return tr**2 / np.maximum(np.einsum("mij,mij->m", C, C), 1e-300)


def train_loss(weights: dict, x: np.ndarray, y: np.ndarray, activation: str) -> np.ndarray:
    """½ mean (f − y)² per member: (M,) (y (n,) or (n, 1))."""
    f = forward(weights, x, activation)[-1][..., 0]
    return 0.5 * np.mean((f - np.reshape(y, -1)) ** 2, axis=1)


def fragility(weights: dict, x: np.ndarray, y: np.ndarray, activation: str, directions: np.ndarray) -> np.ndarray:
    """Mean loss increase L(θ + δ) − L(θ) over ``directions`` (n_dir, P), each already of the chosen norm: (M,)."""
    theta = flatten(weights)
    M, P = theta.shape
    base = train_loss(weights, x, y, activation)
    moved = (theta[:, None, :] + directions[None]).reshape(-1, P)
    up = train_loss(unflatten(moved, weights), x, y, activation).reshape(M, -1)
    return up.mean(axis=1) - base


def perturbations(P: int, n: int, eps: float, seed: int) -> np.ndarray:
    """n random directions of norm eps·√P (Gaussian, normalised): (n, P)."""
    z = np.random.default_rng(seed).standard_normal((n, P))
    return eps * np.sqrt(P) * z / np.linalg.norm(z, axis=1, keepdims=True)


# ------------------------------------------------------------------------------------------- problem
def problem_data(cfg: dict) -> dict:
    """The teacher, the training set (x, y), the response inputs and the feature inputs (deterministic)."""
    p = cfg["problem"]
    rng = np.random.default_rng(derive_seed(cfg["seed"], 2405))
    D, H = p["d"], p["teacher_width"]
    V = rng.standard_normal((H, D)) / np.sqrt(D)
    a = rng.standard_normal(H) / np.sqrt(H)

    def teach(x):
        return np.tanh(x @ V.T) @ a

    x = rng.standard_normal((p["n_train"], D))
    y = teach(x) + p["noise"] * rng.standard_normal(p["n_train"])
    return {"x": x, "y": y, "x_resp": rng.standard_normal((p["n_inputs"], D)),
            "x_feat": rng.standard_normal((p["n_features"], D))}  # fmt: skip


def waiting_steps(steps: int, n: int) -> list[int]:
    """0 and ``n`` log-spaced steps from 1 to ``steps`` (distinct integers)."""
    return sorted({0, *np.unique(np.rint(np.logspace(0, np.log10(steps), n)).astype(int)).tolist()})


def wants_fp(cfg: dict, activation: str) -> bool:
    """Whether the FP angle predicts this activation's ensembles (they then record snapshot gradient statistics)."""
    return bool(cfg["fp"]["entries"]) and activation in cfg["fp"]["activations"]


def ensemble(cfg: dict, data: dict, *, activation: str, method: str, hidden=None, steps=None,
             members=None, statistics: bool = False) -> fpkit.Ensemble:  # fmt: skip
    """One ensemble of students (``hidden`` [] gives the one-layer linear model); ``statistics``: record the
    snapshot gradient statistics that ``fpkit.predict``'s mechanistic route needs."""
    m, tr = cfg["model"], cfg["train"]
    hidden = [m["width"]] * (m["depth"] - 1) if hidden is None else hidden
    steps = tr["steps"] if steps is None else steps
    model = {"kind": "mlp", "hidden": list(hidden), "activation": activation, "bias": m["bias"]}
    train = {"optimizer": "sgd" if method == "gd" else method, "lr": tr["lr"], "batch_size": tr["batch_size"],
             "members": int(members or tr["members"]), "steps": int(steps), "statistics": bool(statistics), "probes": 0,
             "snapshot_steps": waiting_steps(steps, tr["waiting_times"]), "kernels": "generic"}  # fmt: skip
    if method in ("gd", "sgld"):
        train["sampling"] = "full"
    if method == "sgld":
        train["temperature"] = tr["temperature"]
    return fpkit.Ensemble({"seed": int(cfg["seed"]), "model": model, "train": train},
                          data=arrays(data["x"], data["y"]))  # fmt: skip


def _at(weights: dict, s: int) -> dict:
    return {k: v[s] for k, v in weights.items()}


def measure(cfg: dict, data: dict, run, activation: str, method: str) -> Setting:
    """Every measurement of one trained ensemble at each of its snapshots."""
    p, pr = cfg["problem"], cfg["probe"]
    S = run.t.size
    Kp = p["n_probes"]
    x = data["x_resp"]
    P = flatten(_at(run.weights, 0)).shape[1]
    dirs = perturbations(P, pr["n_perturb"], pr["fragility_eps"], derive_seed(cfg["seed"], 2406))
    checks = sorted({int(round(v)) for v in np.linspace(1, S - 1, pr["eta_check"])})
    resp, ntk, loss, rank, frag, order = [], [], [], [], [], []
    for s in range(S):
        w = _at(run.weights, s)
        _, J = jacobian(w, x, activation)
        R = response(w, x, Kp, activation, pr["eta"], J=J)
        theta_k = np.einsum("mip,mjp->mij", J, J)
        resp.append(R)
        ntk.append(theta_k)
        loss.append(train_loss(w, data["x"], data["y"], activation))
        rank.append(participation_ratio(forward(w, data["x_feat"], activation)[-2]))
        frag.append(fragility(w, data["x"], data["y"], activation, dirs))
        if s in checks:
            R2 = response(w, x, Kp, activation, pr["eta"] / 2, J=J)
            r1 = np.abs(R - theta_k[:, :, :Kp]).max(axis=(1, 2))
            r2 = np.abs(R2 - theta_k[:, :, :Kp]).max(axis=(1, 2))
            # δf − ηΘ = O(η^q) ⇔ R − Θ = O(η^(q−1)): q = log₂(r(η)/r(η/2)) + 1
            with np.errstate(divide="ignore", invalid="ignore"):
                order.append(np.log2(r1 / r2) + 1)
    return Setting(activation, method, np.asarray(run.t, float), np.asarray(run.step), np.array(loss),
                   np.array(resp), np.array(ntk), np.array(rank), np.array(frag), np.array(order),
                   np.asarray(run.t, float)[checks])  # fmt: skip


def linear_reference(cfg: dict, data: dict) -> tuple[np.ndarray, np.ndarray]:
    """A one-layer linear model f = w·x trained by SGD: max |R − x·x′| / max |x·x′| at every t_w."""
    steps = min(cfg["train"]["steps"], 2000)
    ens = ensemble(cfg, data, activation="linear", method="sgd", hidden=[], steps=steps, members=32)
    run = ens.train(show_progress=False)
    x, Kp = data["x_resp"], cfg["problem"]["n_probes"]
    exact = x @ x[:Kp].T + (1.0 if cfg["model"]["bias"] else 0.0)
    err = [np.abs(response(_at(run.weights, s), x, Kp, "linear", cfg["probe"]["eta"]) - exact).max()
           / np.abs(exact).max() for s in range(run.t.size)]  # fmt: skip
    return np.array(err), np.asarray(run.t, float)


def fp_predict(cfg: dict, run, method: str) -> dict:
    """``fpkit.predict`` of ``fp.entries`` on one trained ensemble, out of sample (the seeded half split, as in
    ``gd_vs_sgd.fp_stage``): {"route": {label: Prediction}} with ``fp.route`` for SGD/SGLD and the mechanistic
    route for GD (its drift-only transport is the claim), and {"mechanistic": ...} for the entries where the
    route taken was not the mechanistic one (that prediction and its diagnostics, for the no-silent-failure
    claim)."""
    f = cfg["fp"]
    kw = dict(split="half", seed=int(cfg["seed"]), dt=float(run.t[-1]) / f["time_steps"], cells=int(f["cells"]),
              ks=False, js=False)  # fmt: skip
    route = "mechanistic" if method == "gd" else f["route"]
    out = {"route": dict(fpkit.predict(run, list(f["entries"]), route=route, **kw))}
    left = [lab for lab, pr in out["route"].items() if pr.options.get("route") != "mechanistic"]
    if left:
        out["mechanistic"] = dict(fpkit.predict(run, left, route="mechanistic", **kw))
    return out


# ------------------------------------------------------------------------------------------ analysis
def worst(pred, key: str = "fp") -> float:
    """The largest W1/floor of ``pred.distance[key]`` over the snapshots after t = 0 (the initial condition);
    NaN snapshots (the Kramers-Moyal route ends one lag early) are skipped."""
    d = np.asarray(pred.distance[key], float)[1:]
    return float(np.nanmax(d)) if np.isfinite(d).any() else float("nan")


def fp_settings(res: Result, methods=("sgd", "sgld")) -> list:
    """The (activation, method) keys of ``res.fp`` with a method in ``methods``, in run order."""
    return [k for k in res.fp if k[1] in methods]


def fp_misses(preds: dict) -> tuple[list, list]:
    """(misses, silent): (label, route, worst W1/floor, verdict) of every prediction beyond ``fp_miss`` floors,
    over the route taken and the mechanistic predictions kept beside it; silent: those whose diagnostics say
    'holds'."""
    th = THRESHOLDS["fp_miss"]
    misses = []
    for kind in ("route", "mechanistic"):
        for lab, pr in preds.get(kind, {}).items():
            w = worst(pr)
            if not w <= th:  # NaN (no finite distance) counts as a miss
                misses.append((lab, pr.options.get("route"), w, pr.diagnostics.get("verdict")))
    return misses, [m for m in misses if m[3] == "holds"]


def _count(values) -> str:
    vals = list(values)
    return ", ".join(f"{v}×{vals.count(v)}" for v in dict.fromkeys(vals)) or "–"


# ------------------------------------------------------------------------------------------ analysis
def amplitude(st: Setting) -> np.ndarray:
    """Per member and t_w, the probes' mean self-response R(x_p, x_p): (S, M)."""
    Kp = st.response.shape[-1]
    return np.mean(st.response[:, :, np.arange(Kp), np.arange(Kp)], axis=-1)


def window(cfg: dict, st: Setting) -> np.ndarray:
    return np.flatnonzero(st.step >= cfg["probe"]["fit_from"])


def _fit(logt: np.ndarray, logA: np.ndarray) -> tuple[float, float, float]:
    """Slope a of log A = c − a log t, the curvature c₂ of a quadratic in centred log t, and the span
    ln(max A / min A)."""
    a = -np.polyfit(logt, logA, 1)[0]
    c2 = np.polyfit(logt - logt.mean(), logA, 2)[0] if logt.size >= 4 else np.nan
    return float(a), float(c2), float(np.ptp(logA))


def aging(cfg: dict, st: Setting, seed: int = 0) -> dict:
    """Aging of the amplitude in the window: exponent a (A ∝ t_w^−a), curvature, and which model describes it."""
    idx = window(cfg, st)
    A = amplitude(st)[idx]  # (W, M)
    logt = np.log(st.t[idx])
    a, c2, span = _fit(logt, np.log(np.abs(A.mean(axis=1))))
    rng = np.random.default_rng(seed)
    M = A.shape[1]
    boot = np.array([_fit(logt, np.log(np.abs(A[:, rng.integers(0, M, M)].mean(axis=1))))
                     for _ in range(cfg["probe"]["n_boot"])])  # fmt: skip
    a_ci = np.nanpercentile(boot[:, 0], [2.5, 97.5])
    c_ci = np.nanpercentile(boot[:, 1], [2.5, 97.5])
    span_hi = float(np.nanpercentile(boot[:, 2], 97.5))
    if span_hi <= np.log1p(THRESHOLDS["constant_span"]):
        model = "constant"
    elif c_ci[0] <= 0 <= c_ci[1]:
        model = "power law"
    else:
        model = "neither"
    Am = A.mean(axis=1)
    return {"a": a, "a_ci": a_ci, "c2": c2, "c2_ci": c_ci, "span": span, "span_hi": span_hi, "model": model,
            "t": st.t[idx], "A": Am,
            "A_se": A.std(axis=1, ddof=1) / np.sqrt(M), "change": float(Am[-1] / Am[0])}  # fmt: skip


def shapes(R: np.ndarray) -> np.ndarray:
    """Normalised ensemble-mean response kernels R̄(t_w)/A(t_w): (S, K, Kp) from R (S, M, K, Kp)."""
    Rm = R.mean(axis=1)
    Kp = Rm.shape[-1]
    A = np.mean(Rm[:, np.arange(Kp), np.arange(Kp)], axis=-1)
    return Rm / A[:, None, None]


def shape_distance(R: np.ndarray) -> np.ndarray:
    """d(t_w) = ‖R̂(t_w) − R̂(t_last)‖_F / ‖R̂(t_last)‖_F: (S,)."""
    sh = shapes(R)
    return np.linalg.norm(sh - sh[-1], axis=(1, 2)) / np.linalg.norm(sh[-1])


def collapse(cfg: dict, st: Setting, seed: int = 0) -> dict:
    """The largest shape distance in the window (with a bootstrap interval) and the amplitude's largest
    relative change over the same window, for contrast."""
    idx = window(cfg, st)
    R = st.response[idx]
    d = shape_distance(R)
    rng = np.random.default_rng(seed)
    M = R.shape[1]
    boot = np.array([shape_distance(R[:, rng.integers(0, M, M)]).max() for _ in range(cfg["probe"]["n_boot"])])
    A = amplitude(st)[idx].mean(axis=1)
    return {"t": st.t[idx], "d": d, "max": float(d.max()), "ci": np.percentile(boot, [2.5, 97.5]),
            "d_init": float(shape_distance(st.response[[0, -1]])[0]),
            "amp_change": float(np.max(np.abs(A / A[-1] - 1)))}  # fmt: skip


def _at_loss(loss: np.ndarray, value: np.ndarray, target: float) -> float:
    """``value`` interpolated (in log loss) at the first crossing of ``target`` by the decreasing ``loss``."""
    below = np.flatnonzero(loss <= target)
    if below.size == 0:
        return float("nan")
    k = int(below[0])
    if k == 0:
        return float(value[0])
    l0, l1 = np.log(loss[k - 1]), np.log(loss[k])
    w = (l0 - np.log(target)) / (l0 - l1) if l0 != l1 else 1.0
    return float(value[k - 1] + w * (value[k] - value[k - 1]))


def rank_at_equal_loss(gd: Setting, other: Setting, n_boot: int = 200, seed: int = 0) -> dict:
    """ΔPR = PR_other − PR_GD at the lowest member-mean training loss both reach, with a bootstrap interval
    (the target loss fixed). Member i of both ensembles starts from the same weights (same seed), so members
    are resampled in pairs when the counts agree (the initial spread of PR cancels), independently otherwise."""
    lg, lo = gd.loss.mean(axis=1), other.loss.mean(axis=1)
    target = float(max(lg.min(), lo.min()))
    rg, ro = gd.rank.mean(axis=1), other.rank.mean(axis=1)
    delta = _at_loss(lo, ro, target) - _at_loss(lg, rg, target)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_boot):
        i = rng.integers(0, gd.loss.shape[1], gd.loss.shape[1])
        j = i if other.loss.shape[1] == gd.loss.shape[1] else rng.integers(0, other.loss.shape[1], other.loss.shape[1])
        boot.append(_at_loss(other.loss[:, j].mean(axis=1), other.rank[:, j].mean(axis=1), target)
                    - _at_loss(gd.loss[:, i].mean(axis=1), gd.rank[:, i].mean(axis=1), target))  # fmt: skip
    boot = np.array(boot)
    return {"target_loss": target, "delta": float(delta), "ci": np.nanpercentile(boot, [2.5, 97.5]),
            "pr_gd": _at_loss(lg, rg, target), "pr_other": _at_loss(lo, ro, target)}  # fmt: skip


def rank_fragility(settings: list) -> dict:
    """Pearson r of PR and fragility at the last t_w across members, standardised within each setting and
    pooled; Fisher-z 95 % interval (n − #settings degrees of freedom); per-setting r; and the correlation of
    the settings' means."""
    zs, per = [], {}
    for st in settings:
        pr, fr = st.rank[-1], st.fragility[-1]
        if pr.std() == 0 or fr.std() == 0:
            continue
        zs.append(np.stack([(pr - pr.mean()) / pr.std(), (fr - fr.mean()) / fr.std()]))
        per[st.label] = float(np.corrcoef(pr, fr)[0, 1])
    if not zs:
        return {"r": float("nan"), "ci": np.array([np.nan, np.nan]), "n": 0, "per": per, "means_r": float("nan")}
    z = np.concatenate(zs, axis=1)
    r = float(np.corrcoef(z[0], z[1])[0, 1])
    dof = z.shape[1] - len(zs)
    half = 1.96 / np.sqrt(max(dof - 3, 1))
    ci = np.tanh(np.arctanh(np.clip(r, -0.999999, 0.999999)) + np.array([-half, half]))
    mp = np.array([st.rank[-1].mean() for st in settings])
    mf = np.array([st.fragility[-1].mean() for st in settings])
    means_r = float(np.corrcoef(mp, mf)[0, 1]) if len(settings) > 2 else float("nan")
    return {"r": r, "ci": ci, "n": int(z.shape[1]), "per": per, "means_r": means_r}


# ---------------------------------------------------------------------------------------- experiment
class TrainingResponse(Experiment):
    name = "training-response"
    title = "Training response, aging and feature rank of small networks (Nakazato 2024)"
    Config = Config
    quick = QUICK

    def run(self, cfg: dict, ctx) -> Result:
        pairs = [(a, m) for a in cfg["model"]["activations"] for m in cfg["train"]["methods"]]
        data = problem_data(cfg)
        with ctx.stage("linear_reference"):
            err, t = linear_reference(cfg, data)
        res = Result(x=data["x_resp"], linear_error=err, linear_t=t)
        M = cfg["train"]["members"]
        with ctx.stage("train_measure_predict"), progress(len(pairs), "training-response", ctx.show_progress) as bar:
            for act, method in pairs:
                fp = wants_fp(cfg, act)
                run = ensemble(cfg, data, activation=act, method=method, statistics=fp,
                               members=max(M, cfg["fp"]["members"]) if fp else M).train(show_progress=False)  # fmt: skip
                first = SimpleNamespace(t=run.t, step=run.step, weights={k: v[:, :M] for k, v in run.weights.items()})
                res.settings.append(measure(cfg, data, first, act, method))
                if fp:
                    res.fp[(act, method)] = fp_predict(cfg, run, method)
                bar.update(1)
        return res

    def verdict(self, cfg: dict, res: Result) -> Verdict:
        return verdict(cfg, res)

    def report(self, cfg: dict, res: Result, verdict: Verdict, figures: dict) -> str:
        from .training_response_figures import report_body

        return report_body(cfg, res)

    def figures(self, cfg: dict, res: Result, out) -> dict:
        from .training_response_figures import write_figures

        return write_figures(cfg, res, out)

    def save(self, f, cfg: dict, res: Result) -> None:
        from .training_response_figures import save_results

        save_results(f, cfg, res)


EXPERIMENT = TrainingResponse


def _r(x, nd=4):
    return float(np.round(float(x), nd)) if np.isfinite(x) else float("nan")


def _ci(ci, nd=3):
    return f"[{_r(ci[0], nd)}, {_r(ci[1], nd)}]"


def verdict(cfg: dict, res: Result) -> Verdict:
    th, claims = THRESHOLDS, []
    e = float(np.max(res.linear_error))
    claims.append(Claim("one-layer linear R = x·x′", e <= th["linear_exact"], {"max rel. error": e, "t_w": int(res.linear_t.size)},
                        "exact", "for f = w·x the one-step response kernel is x·x′ at every waiting time"))  # fmt: skip
    for st in res.settings:
        q = np.nanmedian(st.order)
        claims.append(Claim(f"R = Θ + O(η_p) ({st.label})", bool(th["order_lo"] <= q <= th["order_hi"]),
                            {"median order": _r(q, 3), "members × t_w": int(st.order.size)}, "order",
                            "the one-step response equals η_p·NTK up to O(η_p²) (measured at η_p and η_p/2)"))  # fmt: skip
    for st in res.settings:
        ag = aging(cfg, st, seed=cfg["seed"])
        claims.append(Claim(f"power-law aging ({st.label})", ag["model"] == "power law",
                            {"a": _r(ag["a"], 4), "a 95%": _ci(ag["a_ci"], 4), "c₂ 95%": _ci(ag["c2_ci"], 4),
                             "A(last)/A(first)": _r(ag["change"], 3), "model": ag["model"]}, "aging",
                            "the response amplitude ages as a power law A(t_w) ∝ t_w^−a"))  # fmt: skip
    for st in res.settings:
        co = collapse(cfg, st, seed=cfg["seed"])
        claims.append(Claim(f"shape collapse ({st.label})", bool(co["ci"][1] <= th["collapse"]),
                            {"max d": _r(co["max"], 4), "95%": _ci(co["ci"], 4), "amplitude change": _r(co["amp_change"], 3),
                             "d(t=0)": _r(co["d_init"], 3)}, "collapse",
                            "the normalised response kernels collapse onto one shape across t_w"))  # fmt: skip
    by = {(st.activation, st.method): st for st in res.settings}
    for act in cfg["model"]["activations"]:
        for other in ("sgd", "sgld"):
            if (act, "gd") in by and (act, other) in by:
                rk = rank_at_equal_loss(by[(act, "gd")], by[(act, other)], cfg["probe"]["n_boot"], cfg["seed"])
                claims.append(Claim(f"rank {other} < gd at equal loss ({act})", bool(rk["ci"][1] < 0),
                                    {"ΔPR": _r(rk["delta"], 3), "95%": _ci(rk["ci"], 3), "at loss": _r(rk["target_loss"], 5),
                                     "PR gd": _r(rk["pr_gd"], 3)}, "rank",
                                    f"the hidden features' effective rank is lower under {other.upper()} than GD at equal loss"))  # fmt: skip
    rf = rank_fragility(res.settings)
    claims.append(Claim("lower rank, higher fragility", bool(rf["ci"][1] < 0),
                        {"r": _r(rf["r"], 3), "95%": _ci(rf["ci"], 3), "members": rf["n"], "r of setting means": _r(rf["means_r"], 3)},
                        "fragility", "members with lower feature rank are more fragile (pooled within settings)"))  # fmt: skip
    claims += fp_claims(res)
    held = sum(c.held for c in claims)
    summary = (f"{held} of {len(claims)} measured statements held. Not held: "
               + ("; ".join(c.name for c in claims if not c.held) or "none") + ".")  # fmt: skip
    return Verdict(claims, summary=summary, thresholds=threshold_definitions())


def fp_claims(res: Result) -> list:
    """The FP angle's claims: per SGD/SGLD setting the prediction (worst W1/floor over the entries and snapshots
    ≤ ``fp_miss``) and no silent failure (every miss flagged by its diagnostics); per GD setting the drift-only
    transport's exactness."""
    th, claims = THRESHOLDS["fp_miss"], []
    for key in fp_settings(res):
        preds = res.fp[key]["route"]
        ws = {lab: worst(pr) for lab, pr in preds.items()}
        lab = max(ws, key=lambda k: ws[k] if np.isfinite(ws[k]) else np.inf)
        med = np.nanmedian(np.concatenate([np.asarray(pr.distance["fp"], float)[1:] for pr in preds.values()]))
        claims.append(Claim(f"FP prediction of the weight histograms ({' '.join(key)})", bool(ws[lab] <= th),
                            {"worst W1/floor": _r(ws[lab], 2), "at": lab, "median": _r(med, 2),
                             "frozen worst": _r(max(worst(pr, "frozen") for pr in preds.values()), 2),
                             "routes": _count(pr.options.get("route") for pr in preds.values()),
                             "verdicts": _count(pr.diagnostics.get("verdict") for pr in preds.values())}, "FP (SGD/SGLD)",
                            f"fpkit.predict's FP densities of {len(preds)} weight entries match the judged half's "
                            f"histograms at every snapshot under {key[1].upper()}"))  # fmt: skip
        misses, silent = fp_misses(res.fp[key])
        claims.append(Claim(f"no silent FP failure ({' '.join(key)})", not silent,
                            {"misses": len(misses), "flagged": len(misses) - len(silent),
                             "silent": "; ".join(f"{m[0]} ({m[1]}) {_r(m[2], 2)}" for m in silent) or "none"},
                            "no silent FP failure",
                            f"every prediction beyond {th:g} floors is flagged doubtful/fails by its own diagnostics"))  # fmt: skip
    for key in fp_settings(res, ("gd",)):
        preds = res.fp[key]["route"]
        ws = {lab: worst(pr, "drift_only") for lab, pr in preds.items()}
        lab = max(ws, key=lambda k: ws[k] if np.isfinite(ws[k]) else np.inf)
        claims.append(Claim(f"drift-only exact ({' '.join(key)})", bool(ws[lab] <= th),
                            {"worst W1/floor": _r(ws[lab], 2), "at": lab,
                             "frozen worst": _r(max(worst(pr, "frozen") for pr in preds.values()), 2)},
                            "drift-only exact (GD)", "for GD (no noise) the drift-only transport of the weight "
                            "entries' histograms is exact to the noise floor"))  # fmt: skip
    return claims
