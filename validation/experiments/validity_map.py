"""Experiment ``validity-map`` (issue 17 item 4): does the verdict of ``fpkit.predict``'s diagnostics predict
whether the Fokker-Planck prediction holds, over activations, depths, bottleneck widths, η, B and data?

A *cell* is one autoencoder ensemble: data (Gaussian with axis-aligned covariance, the same covariance
Haar-rotated, or the 8×8 digits) × activation (linear, tanh, relu) × a setting (hidden widths, which give the
depth and the bottleneck width, η and B). Per cell (``run_cell``):

1. Train an ensemble (``fpkit.Ensemble``, snapshots with gradient statistics and η·λmax).
2. Split the members into an estimation half and a judged half (``split_members``), and ``predict_entry`` a
   few entries out of sample (``cell_entries``: the first-layer entry with the largest diffusion share and the
   entries whose mean moves most, from the last layer inwards).
3. Record the worst W1/floor over the entries and the snapshots after the first (the first is the initial
   condition itself), every entry's diagnostics, and the cell's verdict: the worst of its entries' verdicts
   (``fails`` > ``doubtful`` > ``holds``), with the reasons.

The outcome of a cell is its worst W1/floor in three classes, ≤ 3, 3–5 and > 5 floors (``OUTCOME_EDGES``);
the confusion table counts verdict against outcome (``confusion_table``), and the two acceptance rates of
issue 17 come with exact (Clopper-Pearson) binomial intervals (``acceptance``).

A second section trains the digits autoencoder 64 → 8 → 8 → 64 (tanh and ReLU, ≥ 2000 members by default)
and predicts the entries ``auto_entries`` picks: which are within 3 floors, and which of the others the
diagnostics flag.

Cells (and the two digits autoencoders) are independent tasks: with a Dask client (``fpkit experiment run
validity-map --workers N``) each runs as one task (``fpkit.distributed.map_tasks``), with the same results as
the serial run (every cell's seed is derived from the experiment's seed and the cell's index).

Units: t = η·step; W1 distances are divided by the judged members' W1 noise floor (≈ 1 for a perfect
prediction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, model_validator

import fpkit
from fpkit.config import Schema, invalid
from fpkit.ensemble.spec import snapshot_schedule
from fpkit.errors import StabilityError
from fpkit.experiments import Claim, Experiment, Verdict
from fpkit.prediction import auto_entries, diffusion_share, entry_label, predict_entry, split_members
from fpkit.progress import progress
from fpkit.solvers.random import derive_seed

VERDICTS = ("holds", "doubtful", "fails")
OUTCOME_EDGES = (3.0, 5.0)
"""Column edges of the confusion table in W1/noise-floor units: worst ≤ 3, 3 < worst ≤ 5, worst > 5."""
OUTCOMES = ("≤ 3 floors", "3–5 floors", "> 5 floors")
ACCEPT_RATE = 0.9
"""Issue 17's acceptance: ≥ 90 % of the cells judged holds have every entry within 3 floors, and ≥ 90 % of the
cells whose worst entry exceeds 5 floors are judged fails or doubtful."""
CI_LEVEL = 0.95
DATA_KINDS = ("gaussian", "gaussian-rotated", "digits")


# ------------------------------------------------------------------------------------------- config
class Setting(Schema):
    """One column of the map: the hidden widths (depth = their number, bottleneck = the smallest), η and B."""

    hidden: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, description="hidden-layer widths of the autoencoder d → hidden… → d")
    lr: float = Field(gt=0, description="learning rate η")
    batch_size: int = Field(ge=1, description="minibatch size B")


def _gaussian_settings() -> list:
    return [Setting(hidden=[2], lr=0.05, batch_size=8), Setting(hidden=[4], lr=0.2, batch_size=4),
            Setting(hidden=[4, 4], lr=0.02, batch_size=16), Setting(hidden=[6, 3], lr=0.1, batch_size=2),
            Setting(hidden=[4, 2, 4], lr=0.05, batch_size=4), Setting(hidden=[6, 6, 6], lr=0.1, batch_size=8)]  # fmt: skip


def _digits_settings() -> list:
    # the digits' curvature is ~100x the Gaussian data's (η·λmax ≈ 5 at η = 0.05): smaller η
    # (a digits cell costs ~5x a Gaussian one: two settings keep the default map within 10 min on 2 cores)
    return [Setting(hidden=[16], lr=0.005, batch_size=8), Setting(hidden=[8, 8], lr=0.02, batch_size=4)]


def _enough_snapshots(section):
    # the prediction estimates from at least 3 snapshots; few steps give fewer than asked (duplicates merge)
    n = len(cell_schedule(section.steps, section.snapshots, section.early_snapshots))
    if n < 3:
        raise invalid("steps", f"{section.steps} SGD steps give only {n} distinct snapshot steps; the "
                               "prediction needs at least 3 (take steps >= 2)")  # fmt: skip
    return section


class MapGrid(Schema):
    """The cells: every data set × activation × its settings."""

    data: list[Literal[DATA_KINDS]] = Field(default_factory=lambda: list(DATA_KINDS), min_length=1, description="data sets: gaussian (variances ratio^i, axis-aligned), gaussian-rotated (the same, Haar-rotated), digits (8×8, pixel values / 16)")
    activation: list[Literal["linear", "tanh", "relu"]] = Field(default_factory=lambda: ["linear", "tanh", "relu"], min_length=1, description="activations of the hidden layers")
    settings: list[Setting] = Field(default_factory=_gaussian_settings, description="settings (hidden, η, B) of the Gaussian cells")
    digits_settings: list[Setting] = Field(default_factory=_digits_settings, description="settings (hidden, η, B) of the digits cells (d = 64 allows wider bottlenecks)")
    d: int = Field(8, ge=2, description="input dimension of the Gaussian data")
    n: int = Field(256, ge=1, description="training samples of the Gaussian data")
    ratio: float = Field(0.7, gt=0, description="ratio of successive variances of the Gaussian data")
    digits_n: int = Field(256, ge=1, description="training images of the digits cells (a random subset)")
    bias: bool = Field(True, description="biases in every layer")
    members: int = Field(1000, ge=100, description="members per cell (half estimate, half are judged)")
    steps: int = Field(1000, ge=1, description="SGD steps per cell")
    snapshots: int = Field(15, ge=3, description="snapshots per cell")
    early_snapshots: int = Field(4, ge=0, le=62, description=(
        "extra snapshots halving the schedule's first interval (steps s1/2, s1/4, …, as many as fall on a "
        "step ≥ 1): the diffusion falls fastest there, and a coarse first lag over-counts its integral (the "
        "'coefficients under-resolved in time' diagnostic); 0: the plain schedule"))
    entries: int = Field(3, ge=1, description="entries predicted per cell (cell_entries)")

    _enough_snapshots = model_validator(mode="after")(_enough_snapshots)


class DigitsAutoencoder(Schema):
    """The digits autoencoder of issue 17: which entries the FP predicts within 3 floors, and why not the rest."""

    run: bool = Field(True, description="train and predict it")
    hidden: list[Annotated[int, Field(ge=1)]] = Field(default_factory=lambda: [8, 8], min_length=1, description="hidden widths (64 → 8 → 8 → 64)")
    activation: list[Literal["linear", "tanh", "relu"]] = Field(default_factory=lambda: ["tanh", "relu"], description="one autoencoder per activation")
    members: int = Field(2000, ge=100, description="members")
    steps: int = Field(3000, ge=1, description="SGD steps")
    snapshots: int = Field(15, ge=3, description="snapshots")
    early_snapshots: int = Field(4, ge=0, le=62, description="extra snapshots halving the first interval (as the map's cells)")
    n: int = Field(256, ge=1, description="training images (a random subset of the 1797)")
    lr: float = Field(0.005, gt=0, description="learning rate η (η·λmax ≈ 5 at η = 0.05 on the digits: beyond the edge of stability)")
    batch_size: int = Field(8, ge=1, description="minibatch size B")
    auto_limit: dict[Literal["W1", "W2", "W3"], int] = Field(default_factory=lambda: {"W2": 6, "W1": 3, "W3": 3}, description="entries per layer (fpkit.prediction.auto_entries)")

    _enough_snapshots = model_validator(mode="after")(_enough_snapshots)


class Analysis(Schema):
    """How each entry is predicted (``fpkit.predict``'s options)."""

    route: Literal["mechanistic", "kramers-moyal", "auto"] = Field("mechanistic", description="where A and D come from (fpkit.predict route); the verdict judges this route")
    fp_dt: float = Field(0.2, gt=0, description="time step of the FP solves (units of t = η·step)")
    cells: int = Field(400, ge=3, description="at least this many grid cells per entry")
    cells_per_sd: float = Field(25.0, gt=0, description="resolve the narrowest snapshot's standard deviation by this many cells")
    max_cells: int = Field(4000, ge=3, description="at most this many cells")


class Config(Schema):
    """The validity map of the FP prediction's verdict (issue 17 item 4) and the digits autoencoder."""

    seed: int = Field(0, ge=0, description="seed of everything (each cell's seed is derived from it and the cell's index)")
    map: MapGrid = Field(default_factory=MapGrid, description="the cells of the map")
    digits_autoencoder: DigitsAutoencoder = Field(default_factory=DigitsAutoencoder, description="the digits autoencoder section")
    analysis: Analysis = Field(default_factory=Analysis, description="prediction options")


QUICK = {
    "map": {"data": ["gaussian", "digits"], "activation": ["tanh", "relu"],
            "settings": [{"hidden": [4, 2, 4], "lr": 0.05, "batch_size": 4}],
            "digits_settings": [{"hidden": [8], "lr": 0.05, "batch_size": 8}],
            "digits_n": 128, "members": 400, "steps": 300, "snapshots": 8, "entries": 2},
    "digits_autoencoder": {"members": 400, "steps": 300, "snapshots": 8, "n": 128,
                           "auto_limit": {"W2": 1, "W1": 1, "W3": 1}},
}  # fmt: skip


# ------------------------------------------------------------------------------------------- results
@dataclass
class Result:
    """What the map measured: one dict per cell (``run_cell``), the confusion table, the acceptance rates and
    the digits autoencoders (``run_autoencoder``)."""

    cells: list
    confusion: np.ndarray  # (3 verdicts, 3 outcomes) counts
    acceptance: dict
    autoencoders: list = field(default_factory=list)


# ------------------------------------------------------------------------------------------- cells
def plan_cells(cfg: dict) -> list[dict]:
    """The map's cells in a fixed order (data, activation, setting), each with its own derived seed."""
    g = cfg["map"]
    out = []
    for data in g["data"]:
        for act in g["activation"]:
            for s in g["digits_settings"] if data == "digits" else g["settings"]:
                i = len(out)
                out.append({"index": i, "data": data, "activation": act, "hidden": list(s["hidden"]),
                            "depth": len(s["hidden"]), "width": min(s["hidden"]), "lr": float(s["lr"]),
                            "batch_size": int(s["batch_size"]),
                            "seed": derive_seed(cfg["seed"], 17, i) % 2**31})  # fmt: skip
    return out


def cell_config(cfg: dict, cell: dict) -> dict:
    """The ``fpkit.Ensemble`` configuration of one cell."""
    g = cfg["map"]
    if cell["data"] == "digits":
        data = {"kind": "digits", "n": int(g["digits_n"])}
    else:
        data = {"kind": "gaussian", "d": int(g["d"]), "n": int(g["n"]), "spectrum": "geometric",
                "ratio": float(g["ratio"]), "rotate": cell["data"] == "gaussian-rotated"}  # fmt: skip
    # generic kernels: a map of many shapes must not compile a specialised kernel per shape
    return {"seed": int(cell["seed"]), "data": data,
            "model": {"hidden": list(cell["hidden"]), "activation": cell["activation"], "bias": bool(g["bias"])},
            "train": {"lr": float(cell["lr"]), "batch_size": int(cell["batch_size"]), "members": int(g["members"]),
                      "steps": int(g["steps"]), "kernels": "generic",
                      "snapshot_steps": cell_schedule(int(g["steps"]), int(g["snapshots"]), int(g["early_snapshots"]))}}  # fmt: skip


def cell_schedule(steps: int, snapshots: int, early: int) -> list[int]:
    """A cell's snapshot steps: ``fpkit``'s default schedule of ``snapshots`` (``snapshot_schedule``) with
    ``early`` more inside its first interval, at s1/2, s1/4, … (rounded; duplicates and step 0 dropped).

    The default schedule is nearly even early (s1 = 30 of 1000 steps at 15 snapshots), but the diffusion
    falls by orders of magnitude within that first interval at large η·λ, and the prediction interpolates
    the coefficients linearly between snapshots: halving the interval repeatedly resolves the fall on a
    geometric grid in time."""
    base = snapshot_schedule(steps, snapshots)
    if base.size < 2:
        return [int(s) for s in base]
    early = min(int(early), int(np.log2(2 * base[1])))  # beyond, s1/2^k rounds to step 0: nothing to add
    extra = np.rint(base[1] / 2.0 ** np.arange(1, early + 1))
    return [int(s) for s in np.unique(np.concatenate([base, extra[extra > 0]]).astype(np.int64))]


def cell_entries(run, n: int) -> list[str]:
    """``n`` entries of an autoencoder of any depth worth judging: the first-layer weight with the largest
    diffusion share (``diffusion_share``: the most diffusion-driven), then per weight matrix, from the last
    layer inwards, the entry whose mean moves most in units of its initial spread (drift-driven)."""
    names = sorted((k for k in run.weights if k.startswith("W")), key=lambda k: int(k[1:]))
    share = diffusion_share(run, names[0])
    labels = [entry_label(names[0], np.unravel_index(int(np.argmax(share)), share.shape))]
    for name in names[::-1]:
        W = run.weights[name]
        shift = np.abs(W[-1].mean(axis=0) - W[0].mean(axis=0)) / np.maximum(W[0].std(axis=0), 1e-300)
        for flat in np.argsort(shift.ravel(), kind="stable")[::-1]:
            lab = entry_label(name, np.unravel_index(int(flat), shift.shape))
            if lab not in labels:
                labels.append(lab)
                break
    return labels[:n]


# every input of ``fpkit.prediction.validity``: a verdict can be recomputed from results.h5 alone
DIAGNOSTIC_KEYS = ("eta_lam_max", "drift_disagreement", "drift_disagreement_z", "drift_uncertainty",
                   "drift_uncertainty_km", "drift_contraction", "diffusion_share", "noise_to_signal",
                   "frozen_fraction", "increment_autocorrelation", "interpolation_error", "interpolation_lag",
                   "interpolation_d_ratio")  # fmt: skip


def judge_entries(run, labels, acfg: dict, seed: int) -> list[dict]:
    """``predict_entry`` out of sample for each label; per entry the worst W1/floor over the snapshots after
    the first, the frozen baseline's worst, the verdict, its reasons and the diagnostics' numbers."""
    E, J = split_members(run.members, seed, "half")
    out = []
    for lab in labels:
        p = predict_entry(run, lab, E, J, route=acfg["route"], dt=float(acfg["fp_dt"]), cells=int(acfg["cells"]),
                          cells_per_sd=float(acfg["cells_per_sd"]), max_cells=int(acfg["max_cells"]), ks=False,
                          js=False, seed=seed)  # fmt: skip
        d = p.diagnostics
        out.append({"label": lab, "worst": float(np.nanmax(p.distance["fp"][1:])),
                    "frozen_worst": float(np.nanmax(p.distance["frozen"][1:])), "kind": p.kind,
                    "w1_floor": [float(x) for x in p.distance["fp"]],  # per snapshot: where the worst falls
                    "verdict": d.get("verdict", "holds"), "reasons": list(d.get("reasons", [])),
                    "route": p.options["route"], "route_choice": d.get("route_choice", ""),
                    "diagnostics": {k: d.get(k) for k in DIAGNOSTIC_KEYS}})  # fmt: skip
    return out


def worst_verdict(verdicts) -> str:
    """The most severe of the entries' verdicts (fails > doubtful > holds)."""
    return VERDICTS[max((VERDICTS.index(v) for v in verdicts), default=0)]


def run_cell(cfg: dict, cell: dict) -> dict:
    """Train one cell's ensemble and judge its entries (module docstring): the cell's dict with ``status``
    ("ok", or "diverged" with the message), ``worst``, ``worst_entry``, ``verdict``, ``reasons`` and
    ``entries``; ``seconds`` and ``cpu_seconds`` are its wall and CPU time (all threads of the process: the
    only fields that differ between runs)."""
    t0, c0 = time.perf_counter(), time.process_time()
    ens_cfg = cell_config(cfg, cell)
    out = dict(cell, status="ok", message="", worst=float("nan"), worst_entry="", verdict="", reasons=[], entries=[],
               snapshot_steps=ens_cfg["train"]["snapshot_steps"])  # fmt: skip
    try:
        run = fpkit.Ensemble(ens_cfg).train(show_progress=False)
    except StabilityError as exc:  # divergence at large η is part of the map
        out.update(status="diverged", message=str(exc), seconds=time.perf_counter() - t0,
                   cpu_seconds=time.process_time() - c0)  # fmt: skip
        return out
    entries = judge_entries(run, cell_entries(run, int(cfg["map"]["entries"])), cfg["analysis"], cell["seed"])
    worst = max(entries, key=lambda e: e["worst"])
    reasons = list(dict.fromkeys(f"{e['label']}: {r}" for e in entries for r in e["reasons"]))
    out.update(worst=worst["worst"], worst_entry=worst["label"], verdict=worst_verdict(e["verdict"] for e in entries),
               reasons=reasons, entries=entries, seconds=time.perf_counter() - t0,
               cpu_seconds=time.process_time() - c0)  # fmt: skip
    return out


def run_autoencoder(cfg: dict, activation: str) -> dict:
    """The digits autoencoder with one activation: every ``auto_entries`` entry predicted out of sample."""
    t0, c0 = time.perf_counter(), time.process_time()
    a = cfg["digits_autoencoder"]
    seed = derive_seed(cfg["seed"], 23, ("linear", "tanh", "relu").index(activation)) % 2**31
    ens_cfg = {"seed": seed, "data": {"kind": "digits", "n": int(a["n"])},
               "model": {"hidden": list(a["hidden"]), "activation": activation, "bias": False},
               "train": {"lr": float(a["lr"]), "batch_size": int(a["batch_size"]), "members": int(a["members"]),
                         "steps": int(a["steps"]), "kernels": "generic",
                         "snapshot_steps": cell_schedule(int(a["steps"]), int(a["snapshots"]), int(a["early_snapshots"]))}}  # fmt: skip
    out = {"activation": activation, "hidden": list(a["hidden"]), "members": int(a["members"]), "seed": seed,
           "lr": float(a["lr"]), "batch_size": int(a["batch_size"]), "steps": int(a["steps"]), "n": int(a["n"]),
           "snapshot_steps": ens_cfg["train"]["snapshot_steps"], "snapshots": int(a["snapshots"]),
           "status": "ok", "message": "", "entries": []}  # fmt: skip
    try:
        run = fpkit.Ensemble(ens_cfg).train(show_progress=False)
    except StabilityError as exc:
        out.update(status="diverged", message=str(exc), seconds=time.perf_counter() - t0,
                   cpu_seconds=time.process_time() - c0)  # fmt: skip
        return out
    out["eta_lam_max_end"] = None if run.lam_max is None else float(np.median(run.eta * run.lam_max[-1]))
    out["entries"] = judge_entries(run, auto_entries(run, a["auto_limit"]), cfg["analysis"], seed)
    out.update(seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
    return out


def run_cells(cfg: dict, cells: list[dict], show_progress=None) -> list[dict]:
    """Every cell in order, in this process, with one progress bar."""
    out = []
    bar = progress(len(cells), "validity map", enable=show_progress, unit="cell")
    try:
        for cell in cells:
            out.append(run_cell(cfg, cell))
            bar.update(1)
    finally:
        bar.close()
    return out


def run_cells_dask(client, cfg: dict, cells: list[dict], show_progress=None) -> list[dict]:
    """``run_cells`` with one Dask task per cell on ``client``: the same cells, in the same order."""
    from fpkit.distributed import map_tasks

    return map_tasks(client, run_cell, [(cfg, c) for c in cells], desc="validity map", show_progress=show_progress)


# ------------------------------------------------------------------------------------------ bookkeeping
def outcome_class(worst: float) -> int:
    """Column of the confusion table for a cell's worst W1/floor: 0 (≤ 3), 1 (3–5], 2 (> 5)."""
    return int(np.searchsorted(OUTCOME_EDGES, worst, side="left"))


def confusion_table(verdicts, worsts) -> np.ndarray:
    """Counts (3, 3): rows holds / doubtful / fails, columns worst ≤ 3, 3–5, > 5 floors (``OUTCOME_EDGES``).
    Cells without a verdict or with a non-finite worst (diverged) are not counted."""
    table = np.zeros((len(VERDICTS), len(OUTCOMES)), dtype=np.int64)
    for v, w in zip(verdicts, worsts):
        if v in VERDICTS and np.isfinite(w):
            table[VERDICTS.index(v), outcome_class(w)] += 1
    return table


def binomial_interval(k: int, n: int, level: float = CI_LEVEL) -> tuple[float, float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion k/n at confidence ``level``:
    the Beta quantiles B(α/2; k, n−k+1) and B(1−α/2; k+1, n−k), with 0 and 1 at the ends; NaN for n = 0."""
    from scipy.stats import beta

    if n <= 0:
        return float("nan"), float("nan")
    a = 1.0 - level
    lo = 0.0 if k == 0 else float(beta.ppf(a / 2, k, n - k + 1))
    hi = 1.0 if k == n else float(beta.ppf(1 - a / 2, k + 1, n - k))
    return lo, hi


def acceptance(table: np.ndarray) -> dict:
    """Issue 17's two rates from a confusion table, each with k, n, the rate k/n, its Clopper-Pearson
    interval and whether the rate reaches ``ACCEPT_RATE``: ``holds_within_3`` (cells judged holds with every
    entry ≤ 3 floors) and ``beyond_5_flagged`` (cells > 5 floors judged doubtful or fails)."""
    out = {}
    for name, k, n in (("holds_within_3", table[0, 0], table[0].sum()),
                       ("beyond_5_flagged", table[1, 2] + table[2, 2], table[:, 2].sum())):  # fmt: skip
        k, n = int(k), int(n)
        lo, hi = binomial_interval(k, n)
        rate = k / n if n else float("nan")
        out[name] = {"k": k, "n": n, "rate": rate, "ci_low": lo, "ci_high": hi, "level": CI_LEVEL,
                     "held": bool(n > 0 and rate >= ACCEPT_RATE)}  # fmt: skip
    return out


# ---------------------------------------------------------------------------------------- experiment
class ValidityMap(Experiment):
    name = "validity-map"
    title = "Validity map: does the diagnostics' verdict predict the FP prediction's outcome?"
    Config = Config
    quick = QUICK

    def run(self, cfg: dict, ctx) -> Result:
        cells = plan_cells(cfg)
        with ctx.stage("cells"):
            if ctx.client is None:
                rows = run_cells(cfg, cells, ctx.show_progress)
            else:  # one Dask task per cell (fpkit experiment run validity-map --workers N)
                rows = run_cells_dask(ctx.client, cfg, cells, ctx.show_progress)
        table = confusion_table([r["verdict"] for r in rows], [r["worst"] for r in rows])
        res = Result(cells=rows, confusion=table, acceptance=acceptance(table))
        a = cfg["digits_autoencoder"]
        if a["run"]:
            with ctx.stage("digits_autoencoder"):
                calls = [(cfg, act) for act in a["activation"]]
                if ctx.client is None:
                    res.autoencoders = [run_autoencoder(*c) for c in calls]
                else:
                    from fpkit.distributed import map_tasks

                    res.autoencoders = map_tasks(ctx.client, run_autoencoder, calls, desc="digits autoencoder",
                                                 show_progress=ctx.show_progress)  # fmt: skip
        return res

    def verdict(self, cfg: dict, res: Result) -> Verdict:
        acc = res.acceptance
        claims = [
            Claim("holds → within 3 floors", acc["holds_within_3"]["held"], _rate_value(acc["holds_within_3"]),
                  "acceptance rate", "among cells judged holds, every judged entry is within 3 floors"),
            Claim("> 5 floors → flagged", acc["beyond_5_flagged"]["held"], _rate_value(acc["beyond_5_flagged"]),
                  "acceptance rate", "among cells whose worst entry exceeds 5 floors, the verdict is fails or doubtful"),
        ]  # fmt: skip
        from .validity_map_figures import summary

        return Verdict(claims, summary=summary(res), thresholds={
            "acceptance rate": f"the measured rate k/n ≥ {ACCEPT_RATE:.0%} (issue 17); the {CI_LEVEL:.0%} "
                               "Clopper-Pearson interval is reported beside it",
            "outcome classes": f"worst W1/floor over the judged entries and the snapshots after the first: "
                               f"≤ {OUTCOME_EDGES[0]:g}, {OUTCOME_EDGES[0]:g}–{OUTCOME_EDGES[1]:g}, > {OUTCOME_EDGES[1]:g}",
            "verdict": "fpkit.prediction.validity per entry (thresholds in fpkit/prediction.py); a cell takes its "
                       "entries' most severe verdict"})  # fmt: skip

    def report(self, cfg: dict, res: Result, verdict: Verdict, figures: dict) -> str:
        from .validity_map_figures import report_body

        return report_body(cfg, res)

    def figures(self, cfg: dict, res: Result, out) -> dict:
        from .validity_map_figures import write_figures

        return write_figures(cfg, res, out)

    def save(self, f, cfg: dict, res: Result) -> None:
        from .validity_map_figures import save_results

        save_results(f, res)


def _rate_value(a: dict) -> str:
    if not a["n"]:
        return "no cells"
    return f"{a['k']}/{a['n']} = {a['rate']:.0%} [{a['ci_low']:.0%}, {a['ci_high']:.0%}]"


EXPERIMENT = ValidityMap
