"""The Fokker-Planck prediction of a weight entry's histogram, judged out of sample: ``fpkit.predict``.

Recipe (one call does all of it)
--------------------------------
1. **Split** the ensemble's members into an estimation half and a judged half (``split="half"``, a fixed
   random permutation from ``seed``), or use all members for both (``"in-sample"``), or pass your own
   ``(estimate_members, judged_members)`` index arrays.
2. **Estimate** the entry's drift A(w, t) and diffusion D(w, t) on the estimation members at every snapshot
   (local-linear smoothing, ``fpkit.estimators``), linear in time between snapshots. Routes:
   ``"mechanistic"`` (A = E[−∂L/∂w | w] from the recorded full-batch gradient, D = (η/2)·E[Var of the
   minibatch-mean gradient | w]; Gyöngy's mimicking theorem makes this the exact 1-D description of the
   marginal) or ``"kramers-moyal"`` (moments of the increments between snapshots; needs no statistics but is
   biased when A changes within a lag). Variants of the mechanistic route: ``"standard"``, ``"discrete"``
   (D̃ = (η/2)E[g_B² | w]), ``"second_order"`` (Li-Tai-E drift −(η/2)H·∇L added), ``"symmetric"``
   (sign-symmetrised estimates).
3. **Solve** the 1-D Fokker-Planck equation (``fpkit.FokkerPlanck``, reflecting walls, Crank-Nicolson with
   step ``dt``) from the judged members' first-snapshot histogram to every later snapshot, on a uniform grid
   over the entry's range fine enough that the narrowest snapshot's standard deviation spans
   ``cells_per_sd`` cells.
4. **Judge** every snapshot against the judged members: W1 distance divided by its noise floor (the expected
   W1 between the true law and N samples of it, so a perfect prediction scores ≈ 1), and the same for the
   baselines: ``frozen`` (the initial histogram never moves), ``drift_only`` (the judged members' initial
   values carried along dw/dt = A: the D = 0 limit), ``diffusion_only`` (A = 0). KS and Jensen-Shannon
   distances over their floors too.

Units: t is continuous time η·step (as in ``EnsembleRun.t``); w is in the weight's units; A in w per unit t,
D in w² per unit t (Itô: dw = A dt + √(2D) dW).

Example
-------
>>> run = fpkit.EnsembleRun.load("ensemble.h5")                           # doctest: +SKIP
>>> pred = fpkit.predict(run, "W2[0,1]")                                    # doctest: +SKIP
>>> pred.distance["fp"][-1], pred.distance["frozen"][-1]                    # doctest: +SKIP
>>> preds = fpkit.predict(run, "auto"); preds.table()                      # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import estimators as est
from . import metrics
from .errors import ConfigError, FileFormatError, check_choice, check_positive
from .fokker_planck import FokkerPlanck
from .grid import Grid
from .solvers.random import derive_seed
from .solvers.time_stepping import advance_to_outputs, stepwise

MIN_MEMBERS = 100
MIN_SNAPSHOTS = 3
ROUTES = ("mechanistic", "kramers-moyal", "auto")
VARIANT_OPTIONS = {
    "standard": {},
    "discrete": {"diffusion": "discrete"},
    "second_order": {"second_order": True},
    "symmetric": {"symmetric": True},
}
BASELINES = ("frozen", "drift_only", "diffusion_only")
DIFFUSION_DRIVEN_GAIN = 1.5
"""An entry is *diffusion-driven* when drift-only ends this many times worse than the FP, else
*drift-dominated* (``Prediction.kind``): drift-only entries test A, not D."""

# "<parameter name>[i,j,...]": a numba trainer's W2/b1 or a torch module's parameter name
# ("encoder.0.weight"), one index per axis of the parameter (none for a 0-dimensional one: "scale[]")
_ENTRY = re.compile(r"^([A-Za-z0-9_.]+)\[(\d+(?:,\d+)*)?\]$")


# ------------------------------------------------------------------------------------------- entries
def parse_entry(label: str) -> tuple[str, tuple]:
    """An entry label ``<parameter name>[i,j,...]`` -> (name, index tuple): 'W2[0,1]' -> ('W2', (0, 1)),
    'b1[3]' -> ('b1', (3,)), 'encoder.0.weight[1,5]' -> ('encoder.0.weight', (1, 5)), 'scale[]' ->
    ('scale', ()). Names are letters, digits, '_' and '.' (torch parameter names); spaces are ignored."""
    m = _ENTRY.match(str(label).replace(" ", ""))
    if not m:
        raise ConfigError(
            f"entry {label!r} is not of the form '<parameter name>[i,j,...]', e.g. 'W2[0,1]', 'b1[0]' or "
            "'encoder.0.weight[1,5]'"
        )
    idx = () if m.group(2) is None else tuple(int(i) for i in m.group(2).split(","))
    return m.group(1), idx


def entry_label(name: str, idx: tuple) -> str:
    return f"{name}[{','.join(str(int(i)) for i in idx)}]"


ENTRY_STATISTICS = {"g": ("grad", 1), "v": ("grad_var", 2), "hg": ("hess_grad", 2)}
"""``entry_arrays``' gradient statistics: key -> (the run's field, the power of the layer rate c it scales by)."""


def entry_arrays(run, label: str) -> dict:
    """One entry's weights ``w``, gradients ``g``, gradient variances ``v`` and H·∇L ``hg``: each (S, M),
    None where the run did not record it."""
    name, idx = parse_entry(label)
    if name not in run.weights:
        raise ConfigError(f"entry {label!r}: the network has no {name!r}; it has {list(run.names)}")
    shape = run.weights[name].shape[2:]
    if len(idx) != len(shape) or any(i >= s for i, s in zip(idx, shape)):
        raise ConfigError(f"entry {label!r} does not exist: {name} has shape {tuple(shape)}")
    sl = (slice(None), slice(None)) + idx
    out = {"w": run.weights[name][sl]}
    c = layer_rates(run).get(name, 1.0)  # ntk / mup: the layer trains at rate η·c (A = −c·g, D = η c² v / 2)
    for key, (fld, power) in ENTRY_STATISTICS.items():
        d = getattr(run, fld)
        out[key] = None if d is None else (d[name][sl] if c == 1.0 else d[name][sl] * c**power)
    T = sgld_temperature(run)
    if T > 0 and out["v"] is not None:  # SGLD's own noise √(2ηcT)ξ per step adds D = c·T: v gains 2cT/η
        out["v"] = out["v"] + 2.0 * c * T / run.eta
    return out


@dataclass
class EntrySamples:
    """What ``predict_entry`` reads from a run about one entry: its arrays (``entry_arrays``) and the run's
    snapshot times t (units of η·step), η and λmax. Megabytes where the whole run is hundreds, so a worker
    process is sent this instead of the run; ``predict_entry`` takes it in place of the run and makes the
    same prediction."""

    label: str
    t: np.ndarray
    eta: float
    lam_max: np.ndarray | None
    arrays: dict

    @classmethod
    def of(cls, run, label: str) -> EntrySamples:
        return cls(label, np.asarray(run.t, dtype=float), float(run.eta), run.lam_max, entry_arrays(run, label))

    # the names _predict_auto checks for gradient statistics on a run
    @property
    def grad(self):
        return self.arrays["g"]

    @property
    def grad_var(self):
        return self.arrays["v"]


def sgld_temperature(run) -> float:
    """The SGLD temperature T of a run trained with ``optimizer = "sgld"`` (0 otherwise): its injected noise
    √(2ηT)·ξ per step is a diffusion D = T in t = η·step (c·T for a layer trained at rate η·c), on top of the
    minibatch gradients' (η/2)·Var."""
    tr = (getattr(run, "config", None) or {}).get("train", {}) or {}
    return float(tr.get("temperature", 0.0) or 0.0) if tr.get("optimizer") == "sgld" else 0.0


def layer_rates(run) -> dict:
    """Learning-rate factor c of every weight and bias array under ``model.parameterization`` ntk / mup (the
    stored W_l is updated at rate η·c_l, ``fpkit.ensemble.spec._Arch.parameterize``); {} for standard runs.

    ``entry_arrays`` returns c·grad, c²·grad_var and c²·H∇L, so that every route sees the entry's own drift
    −c·g and diffusion η c² v / 2 in t = η·step (H∇L scaled by c² is exact when every layer has the same c)."""
    model = (getattr(run, "config", None) or {}).get("model", {}) or {}
    if model.get("parameterization", "standard") == "standard":
        return {}
    from .ensemble.spec import _Arch

    ws = [n for n in run.names if n.startswith("W")]
    ws.sort(key=lambda n: int(n[1:]))
    shapes = run.shapes
    sizes = [shapes[ws[0]][1]] + [shapes[n][0] for n in ws]
    arch = _Arch.build(sizes, any(n.startswith("b") for n in run.names), 0)
    arch.parameterize(model)
    return {n: float(arch.lr_rows[off]) for n, off in zip(arch.names, arch.offsets)}


def diffusion_share(run, name: str) -> np.ndarray:
    """Per entry of ``name``: 2∫E[D]dt / Var(w at the end), D = (η/2)·c²·grad_var with c the layer's rate
    (``layer_rates``; 1 for standard runs) — how much of the final spread diffusion alone would have made.
    Large for entries whose histograms are shaped by diffusion."""
    W, V = run.weights[name], run.grad_var[name]
    c = layer_rates(run).get(name, 1.0)  # ntk / mup: the same D = η c² v / 2 as entry_arrays
    Dm = 0.5 * run.eta * c * c * V.mean(axis=1) + c * sgld_temperature(run)
    added = np.sum(0.5 * (Dm[1:] + Dm[:-1]) * np.diff(run.t)[(...,) + (None,) * (Dm.ndim - 1)], axis=0) * 2
    return added / np.maximum(W[-1].var(axis=0), 1e-300)


def auto_entries(run, limit: dict | None = None) -> list[str]:
    """Entries worth judging in an autoencoder run: all of W2; the W1 entries with the largest diffusion
    share (``diffusion_share``; the largest change of spread without statistics); W3[0,0], W3[d-1,0] and the
    W3 entry whose mean moves most relative to its initial spread. ``limit`` caps the count per layer
    (defaults W2: 9, W1: 3, W3: 3)."""
    limit = {"W2": 9, "W1": 3, "W3": 3, **(limit or {})}
    missing = [n for n in ("W1", "W2", "W3") if n not in run.weights]
    if missing:
        raise ConfigError(f"entries='auto' needs an autoencoder run with W1, W2, W3; this run has "
                          f"{list(run.names)}: name the entries instead")  # fmt: skip
    W1, W2, W3 = run.weights["W1"], run.weights["W2"], run.weights["W3"]
    labels = [entry_label("W2", (i, j)) for i in range(W2.shape[2]) for j in range(W2.shape[3])][: limit["W2"]]
    change = diffusion_share(run, "W1") if run.grad_var is not None else np.max(
        np.abs(np.log(W1.std(axis=1) / W1.std(axis=1)[0])), axis=0
    )  # fmt: skip
    for flat in np.argsort(change.ravel())[::-1][: limit["W1"]]:
        labels.append(entry_label("W1", np.unravel_index(flat, change.shape)))
    d = W3.shape[2]
    w3 = [entry_label("W3", (0, 0)), entry_label("W3", (d - 1, 0))]
    shift = np.abs(W3.mean(axis=1)[-1] - W3.mean(axis=1)[0]) / W3.std(axis=1)[0]
    for flat in np.argsort(shift.ravel())[::-1]:
        lab = entry_label("W3", np.unravel_index(flat, shift.shape))
        if lab not in w3:
            w3.append(lab)
            break
    return labels + w3[: limit["W3"]]


def entry_grid(w: np.ndarray, *, cells: int = 400, cells_per_sd: float = 25, max_cells: int = 4000) -> Grid:
    """A uniform grid over the entry's range at all snapshots (``w`` (S, M)), with at least ``cells`` cells
    and enough that the narrowest snapshot's standard deviation spans ``cells_per_sd`` cells, at most
    ``max_cells`` (collapsing densities need it: the finite-volume error grows like (h/σ)², and at 5 cells
    per σ it already exceeds the noise floor of 2000 members)."""
    coarse = est.choose_grid(w, n=3)
    span = coarse.hi[0] - coarse.lo[0]
    sd_min = float(np.min(w.std(axis=1)))
    n = int(cells)
    if sd_min > 0:
        n = max(n, int(np.ceil(float(cells_per_sd) * span / sd_min)))
    return est.choose_grid(w, n=min(n, int(max_cells)))


def split_members(M: int, seed: int, mode="half") -> tuple[np.ndarray, np.ndarray]:
    """(estimation members, judged members): disjoint random halves of ``M`` members drawn from ``seed``
    (``"half"``), all members twice (``"in-sample"``: agreement is then partly by construction), or a given
    pair of index arrays (checked)."""
    if M < MIN_MEMBERS:
        raise ConfigError(f"the ensemble has {M} members; at least {MIN_MEMBERS} are needed to judge a density")
    if not isinstance(mode, str):
        try:
            E, J = (np.asarray(a) for a in mode)
        except (TypeError, ValueError):
            raise ConfigError("`split` must be 'half', 'in-sample' or a pair (estimate_members, "
                              "judged_members) of index arrays") from None  # fmt: skip
        for name, a in (("estimate", E), ("judged", J)):
            if a.ndim != 1 or a.size < 2 or a.dtype.kind not in "iu" or a.min() < 0 or a.max() >= M:
                raise ConfigError(f"`split` {name} members must be a 1-D array of at least 2 member indices "
                                  f"in [0, {M})")  # fmt: skip
        return E.astype(np.int64), J.astype(np.int64)
    check_choice("split", mode, ("half", "in-sample"))
    if mode == "in-sample":
        allm = np.arange(M)
        return allm, allm
    perm = np.random.default_rng(derive_seed(seed, 11)).permutation(M)
    return np.sort(perm[: M // 2]), np.sort(perm[M // 2 :])


# ---------------------------------------------------------------------------------- estimate and solve
def estimate_series(run, arrays: dict, members: np.ndarray, grid: Grid, variant: str = "standard",
                    route: str = "mechanistic", se: bool = False) -> est.CoefficientSeries:  # fmt: skip
    """Drift and diffusion of one entry on ``grid`` at every snapshot, from ``members`` (module docstring);
    with ``se`` also their standard errors (a second pass over the samples, NaN without it)."""
    check_choice("route", route, ROUTES[:2])
    sub = lambda a: None if a is None else a[:, members]  # noqa: E731
    if route == "kramers-moyal":
        return est.kramers_moyal_series(run.t, sub(arrays["w"]), grid, at="start", se=se)
    if arrays["g"] is None or arrays["v"] is None:
        raise ConfigError("the run has no gradient statistics (trained without them, or released after use as "
                          "predict_entries_pooled(release_statistics=True) does); use route='kramers-moyal' or "
                          "train with statistics = true")  # fmt: skip
    opts = dict(VARIANT_OPTIONS[check_choice("variant", variant, tuple(VARIANT_OPTIONS))])
    hg = sub(arrays["hg"]) if opts.get("second_order") else None
    return est.mechanistic_series(run.t, sub(arrays["w"]), sub(arrays["g"]), sub(arrays["v"]), run.eta, grid,
                                  hg=hg, se=se, **opts)  # fmt: skip


def estimate_entry(run, arrays: dict, members: np.ndarray, grid: Grid, variant: str = "standard",
                   route: str = "mechanistic", compare_with: Sequence[str] = ()) -> tuple:  # fmt: skip
    """Every estimate ``predict_entry`` makes on the estimation ``members``: (the prediction's own series, with
    standard errors; the Kramers-Moyal series; {name: series} for the mechanistic variants of
    ``compare_with``), each equal to its ``estimate_series`` call. The Kramers-Moyal series and the
    mechanistic variants other than "symmetric" condition on the same samples with the same bandwidth: they
    come from one local-linear pass per snapshot (``estimators.series.shared_kernel_series``, bit-identical,
    ~1.8x faster than one pass each)."""
    check_choice("route", route, ROUTES[:2])
    others = [n for n in dict.fromkeys(compare_with) if n != "kramers-moyal" and (n != variant or route != "mechanistic")]
    own = variant if route == "mechanistic" else None
    shared = [n for n in ([own] if own else []) + others if n != "symmetric"]
    if shared and (arrays["g"] is None or arrays["v"] is None):
        shared = []  # estimate_series says what is missing
    sub = lambda a: None if a is None else a[:, members]  # noqa: E731
    out: dict = {}
    if shared:
        opts = {n: dict(VARIANT_OPTIONS[check_choice("variant", n, tuple(VARIANT_OPTIONS))]) for n in shared}
        hg = sub(arrays["hg"]) if any(o.get("second_order") for o in opts.values()) else None
        out = est.series.shared_kernel_series(run.t, sub(arrays["w"]), grid, g=sub(arrays["g"]), v=sub(arrays["v"]),
                                              eta=run.eta, hg=hg, variants=opts, kramers_moyal=True,
                                              se=[own] if own in shared else ["kramers-moyal"] if own is None else [])  # fmt: skip
    km = out.pop("kramers-moyal", None)
    if km is None:
        km = estimate_series(run, arrays, members, grid, route="kramers-moyal", se=route == "kramers-moyal")
    series = km if route == "kramers-moyal" else out.pop(own, None)
    if series is None:
        series = estimate_series(run, arrays, members, grid, variant, route, se=True)
    variants = {n: out[n] if n in out else estimate_series(run, arrays, members, grid, n) for n in others}
    return series, km, variants


def solve_density(series, p0: np.ndarray, t: np.ndarray, dt: float, *, drift: bool = True) -> tuple[np.ndarray, float]:
    """The FP solution with the estimated coefficients (time-dependent, linear between snapshots) from p0 at
    t[0], at every t: ((len(t), n) densities, the mass of the negative values clipped).

    Crank-Nicolson is not positivity-preserving: its round-off-sized undershoots (which would make the
    Jensen-Shannon divergence undefined) are clipped and unit mass restored; the clipped mass is returned so
    that a prediction's diagnostics can say when it is not round-off."""
    coefs = series.fp_coefficients()
    fp = FokkerPlanck(series.grid, drift=coefs["drift"] if drift else 0.0, diffusion=coefs["diffusion"],
                      bc="reflecting", time_dependent=True)  # fmt: skip
    p = fp.solve(p0, t, method="crank-nicolson", dt=dt, t0=t[0]).p
    clipped = float(np.max(series.grid.integrate(np.clip(-p, 0.0, None))))
    p = np.clip(p, 0.0, None)
    return p / series.grid.integrate(p)[:, None], clipped


def transport_samples(series, x0: np.ndarray, t: np.ndarray, dt: float) -> np.ndarray:
    """Carry samples along the characteristics dw/dt = A(w, t) (classical RK4, the fewest equal steps of at
    most ``dt`` between consecutive output times): the D = 0 prediction, (len(t), N). An estimated series on a
    uniform 1-D grid runs in one compiled call (``snapshot_stepping.rk4_snapshots_1d``, the same bits).
    ``dt`` None or inf: one step per interval."""
    # checked here: the compiled step count (n_substeps) would make one step of a zero or NaN dt
    dt = np.inf if dt is None or dt == np.inf else check_positive("dt", dt)
    A = series.drift_callable()
    if isinstance(A, est.SnapshotInterpolator) and (arrays := A.uniform_1d()) is not None:
        from .solvers.snapshot_stepping import rk4_snapshots_1d

        t = np.asarray(t, dtype=float)
        out = np.empty((t.size, np.size(x0)))
        rk4_snapshots_1d(np.array(x0, dtype=float).ravel(), t, float(t[0]), float(dt), *arrays, out)
        return out

    def rk4(x, s, h):
        k1 = A(x, s)
        k2 = A(x + 0.5 * h * k1, s + 0.5 * h)
        k3 = A(x + 0.5 * h * k2, s + 0.5 * h)
        k4 = A(x + h * k3, s + h)
        return x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)

    out = np.empty((t.size, x0.size))
    advance_to_outputs(np.array(x0, dtype=float), t, stepwise(rk4), out.__setitem__, t0=t[0], dt=dt)
    return out


# ------------------------------------------------------------------------------------------------ judge
def judge(judged: np.ndarray, grid: Grid, *, density=None, samples=None, floors=None) -> np.ndarray:
    """W1 distance / noise floor at every snapshot of a prediction given as grid densities ``density``
    (S', n) or as transported samples ``samples`` (S', N) against the ``judged`` members (S, N).

    ``floors`` (S,) are the W1 noise floors of the judged members (``metrics.w1_floor`` of each snapshot's
    empirical CDF), computed when not given. A prediction with fewer snapshots than ``judged`` (the
    Kramers-Moyal route ends one lag early) is NaN where it does not reach. The one place where the
    experiments turn a prediction into W1/floor ratios."""
    if (density is None) == (samples is None):
        raise ConfigError("give exactly one of `density` or `samples` to judge")
    S = judged.shape[0]
    if floors is None:
        floors = judged_floors(judged)
    out = np.full(S, np.nan)
    pred = density if density is not None else samples
    for s in range(len(pred)):
        w1 = (metrics.w1_samples(density[s], grid, judged[s]) if density is not None
              else metrics.w1_two_samples(samples[s], judged[s]))  # fmt: skip
        out[s] = w1 / floors[s]
    return out


def judge_two_samples(reference: np.ndarray, other: np.ndarray) -> float:
    """W1 between two samples over the floor of two independent samples of these sizes from the reference's
    law (``metrics.w1_floor_pair``): ≈ 1 when ``other`` is drawn like ``reference`` (√2 of the one-sample floor
    for equal sizes)."""
    return metrics.w1_two_samples(reference, other) / metrics.w1_floor_pair(len(reference), len(other), samples=reference)


def judge_weighted(reference: np.ndarray, other: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """(W1 / floor, KS) between a sample and a weighted sample (``weights`` sum to one): W1 of the weighted
    empirical law over the floor of two independent samples of sizes len(reference) and the weighted sample's
    effective size 1/Σw² (``metrics.w1_floor_pair``), so that concentrated weights widen the floor instead of
    pretending to a precision that duplicates do not have."""
    from scipy.stats import wasserstein_distance

    a, b = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    wts = np.asarray(weights, dtype=float)
    if b.shape != wts.shape:
        raise ConfigError(f"`weights` must have the shape of `other` {b.shape}, got {wts.shape}")
    n_eff = 1.0 / float(np.sum(wts**2))
    w1 = wasserstein_distance(a, b, v_weights=wts) / metrics.w1_floor_pair(a.size, max(1, round(n_eff)), samples=a)
    x = np.sort(np.concatenate([a, b]))
    order = np.argsort(b)
    cum = np.concatenate([[0.0], np.cumsum(wts[order])])
    Fb = cum[np.searchsorted(b[order], x, side="right")]
    Fa = np.searchsorted(np.sort(a), x, side="right") / a.size
    return float(w1), float(np.max(np.abs(Fa - Fb)))


def tilt_to_marginals(values: np.ndarray, marginals: Sequence, *, bins: int = 10, tol: float = 1e-6,
                      max_iter: int = 1000) -> tuple[np.ndarray, float]:  # fmt: skip
    """Weights of M members (rows of ``values``, (M, k): one column per entry) whose weighted marginals follow
    predicted densities, with the members' joint law otherwise kept: the I-projection (the weights closest to
    uniform in Kullback-Leibler divergence), by iterative proportional fitting on ``bins`` quantile bins of
    each column. ``marginals`` is one (grid, density) pair per column (1-D densities on their grids).

    Used to predict joint quantities (a network's outputs) from marginal predictions: the members stay whole,
    so the dependence between their weights — a trained network's co-adapted layers — survives exactly, and
    only their frequencies change. Returns (weights summing to one, the largest remaining difference between a
    bin's weighted mass and its predicted mass): a residual far above ``tol`` means the predicted marginals
    put mass where the members have none, and no reweighting of them reaches the prediction."""
    v = np.asarray(values, dtype=float)
    if v.ndim != 2 or len(marginals) != v.shape[1]:
        raise ConfigError(f"`values` must be (M, k) with one marginal per column; got {v.shape} and "
                          f"{len(marginals)} marginals")  # fmt: skip
    M = v.shape[0]
    cons = []
    for col, (grid, density) in zip(v.T, marginals):
        edges = np.unique(np.quantile(col, np.linspace(0.0, 1.0, int(bins) + 1)[1:-1]))
        idx = np.searchsorted(edges, col, side="right")
        mass = np.clip(np.asarray(density, dtype=float), 0.0, None) * grid.dx[0]
        cdf = np.concatenate([[0.0], np.cumsum(mass)]) / mass.sum()
        target = np.diff(np.concatenate([[0.0], np.interp(edges, grid.edges[0], cdf), [1.0]]))
        cons.append((idx, target))
    w = np.full(M, 1.0 / M)
    resid = np.inf
    for _ in range(int(max_iter)):
        resid = 0.0
        for idx, target in cons:
            cur = np.bincount(idx, weights=w, minlength=target.size)
            resid = max(resid, float(np.max(np.abs(cur - target))))
            w = w * (target / np.where(cur > 0, cur, 1.0))[idx]  # Sinkhorn step: this column's bins now match
            w /= w.sum()
        if resid < tol:
            break
    return w, resid


def resample_systematic(weights: np.ndarray, n: int, rng) -> np.ndarray:
    """``n`` member indices drawn with probabilities ``weights`` by systematic resampling (one uniform offset,
    n evenly spaced points on the cumulative weights: each member appears ⌊n w⌋ or ⌈n w⌉ times)."""
    c = np.cumsum(np.asarray(weights, dtype=float))
    c /= c[-1]
    return np.minimum(np.searchsorted(c, (rng.random() + np.arange(int(n))) / int(n), side="right"), c.size - 1)


def judged_floors(judged: np.ndarray) -> np.ndarray:
    """W1 noise floor of the judged members at every snapshot, from their own empirical CDF: (S,)."""
    return np.array([metrics.w1_floor(judged.shape[1], samples=judged[s]) for s in range(judged.shape[0])])


# ------------------------------------------------------------------------------------------- results
@dataclass
class Prediction:
    """The FP prediction of one entry, judged out of sample (arrays over the S snapshots).

    Attributes
    ----------
    label : str                 the entry, e.g. "W2[0,1]"
    t : (S,)                    snapshot times t = η·step
    grid : fpkit.Grid           the 1-D grid of the prediction (units of w)
    density : (S, n)            predicted density (integrates to one)
    empirical : (S, n)          the judged members' histogram on the same grid
    judged : (S, N)             the judged members' values
    distance : dict             name -> (S,) W1 / noise floor: "fp", "frozen", "drift_only",
                                "diffusion_only", and "fp_<variant or route>" for each of ``compare_with``
    w1, w1_floor : (S,)         the FP's W1 distance and the floor it is divided by (units of w)
    ks, js : (S,)               KS and Jensen-Shannon distances of the FP over their floors (js NaN if off)
    coefficients : dict         "drift" (S, n) A [w per unit t], "diffusion" (S, n) D [w² per unit t],
                                "drift_se", "diffusion_se" (S, n) their standard errors (the local-linear
                                fit's sandwich errors: members are independent, so this is the spread a
                                bootstrap over members would give, at no refits; smoothing bias not
                                included), "supported" (S, n) bool (where the smoothing had enough samples)
    diagnostics : dict          validity checks; "messages" lists the ones that need a reader's attention
    samples : (S, M)            the entry's value in every member
    split : dict                "estimate", "judge": member indices
    options : dict              the call's route, variant, seed, grid and step options
    """

    label: str
    t: np.ndarray
    grid: Grid
    density: np.ndarray
    empirical: np.ndarray
    judged: np.ndarray
    distance: dict
    w1: np.ndarray
    w1_floor: np.ndarray
    ks: np.ndarray
    js: np.ndarray
    coefficients: dict
    diagnostics: dict = field(default_factory=dict)
    samples: np.ndarray | None = None
    split: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """'diffusion-driven' when drift-only ends ``DIFFUSION_DRIVEN_GAIN`` times worse than the FP at the
        last snapshot, else 'drift-dominated' (the entry then tests the drift A, not D)."""
        fp, dr = self.distance["fp"][-1], self.distance["drift_only"][-1]
        return "diffusion-driven" if dr > DIFFUSION_DRIVEN_GAIN * fp else "drift-dominated"

    def summary(self) -> dict:
        """Max, median (over snapshots after the first, which is the initial condition itself) and last
        W1/floor of the FP and each baseline.

        Returns
        -------
        dict
            name -> {"max", "median", "last"} (W1/floor, dimensionless).
        """
        out = {}
        for k, v in self.distance.items():
            later = v[1:][np.isfinite(v[1:])]
            out[k] = {"max": float(later.max()) if later.size else float("nan"),
                      "median": float(np.median(later)) if later.size else float("nan"),
                      "last": float(later[-1]) if later.size else float("nan")}  # fmt: skip
        return out

    def plot(self, ax=None, snapshots: Sequence[int] | None = None):
        """Predicted density (lines) over the judged members' histograms (steps) at a few snapshots; with no
        ``ax``, a second panel shows W1/floor over time for the FP and the baselines. Drawn by
        ``fpkit.plotting.plot_prediction``.

        Parameters
        ----------
        ax : matplotlib.axes.Axes, optional
            Draw only the density panel into this axes.
        snapshots : sequence of int, optional
            Snapshot indices to draw; default t_end · {1/100, 1/10, 1/3, 1}.

        Returns
        -------
        matplotlib.figure.Figure
            The figure drawn into (``ax``'s figure when given).
        """
        from .plotting import plot_prediction

        return plot_prediction(self, ax=ax, snapshots=snapshots)

    def to_xarray(self):
        """An ``xarray.Dataset`` with dims (t, w) for densities and coefficients, (t, member) for the judged
        values, (t,) for the distances (needs the optional ``xarray`` package).

        Returns
        -------
        xarray.Dataset
            The prediction's arrays with labelled dimensions.
        """
        try:
            import xarray as xr
        except ImportError:
            raise ConfigError("Prediction.to_xarray needs xarray: pip install xarray") from None
        vars_ = {"density": (("t", "w"), self.density), "empirical": (("t", "w"), self.empirical),
                 "judged": (("t", "member"), self.judged), "w1": ("t", self.w1), "w1_floor": ("t", self.w1_floor),
                 "ks": ("t", self.ks), "js": ("t", self.js)}  # fmt: skip
        vars_.update({f"distance_{k}": ("t", v) for k, v in self.distance.items()})
        vars_.update({k: (("t", "w"), v) for k, v in self.coefficients.items()})
        return xr.Dataset(vars_, coords={"t": self.t, "w": self.grid.x, "member": self.split.get("judge")},
                          attrs={"label": self.label, "kind": self.kind, **{k: str(v) for k, v in self.options.items()}})  # fmt: skip

    def save(self, path) -> Path:
        """Write this prediction to an HDF5 file (atomically); ``Prediction.load`` reads it back.

        Parameters
        ----------
        path : str or Path
            The file.

        Returns
        -------
        Path
            The written file.
        """
        from .io import atomic_h5

        with atomic_h5(path) as f:
            f.attrs["kind"] = KIND
            _write_prediction(f.create_group(self.label), self)
        return Path(path)

    @classmethod
    def load(cls, path) -> Prediction:
        """Read a file written by ``Prediction.save`` (or a one-entry ``Predictions.save``).

        Parameters
        ----------
        path : str or Path
            The file.

        Returns
        -------
        Prediction
            The prediction.
        """
        preds = Predictions.load(path)
        if len(preds) != 1:
            raise ConfigError(f"`path` {str(path)!r} holds {len(preds)} predictions; use Predictions.load")
        return next(iter(preds.values()))


KIND = "fpkit.Prediction"
_ARRAYS = ("t", "density", "empirical", "judged", "w1", "w1_floor", "ks", "js", "samples")


def _write_prediction(g, p: Prediction) -> None:
    from .io import set_json_attr

    set_json_attr(g, "grid", p.grid.to_dict())
    set_json_attr(g, "options", p.options)
    set_json_attr(g, "diagnostics", p.diagnostics)
    g.attrs["label"], g.attrs["kind"] = p.label, p.kind
    for name in _ARRAYS:
        a = getattr(p, name)
        if a is not None:
            g.create_dataset(name, data=a, compression="gzip", compression_opts=4)
    for group, d in (("distance", p.distance), ("coefficients", p.coefficients), ("split", p.split)):
        for k, v in d.items():
            g.create_dataset(f"{group}/{k}", data=v)


def _read_prediction(g) -> Prediction:
    from .io import get_json_attr

    arrays = {n: (g[n][()] if n != "samples" or n in g else None) for n in _ARRAYS}  # only samples optional
    groups = {k: ({n: g[k][n][()] for n in g[k]} if k in g else {}) for k in ("distance", "coefficients", "split")}
    return Prediction(label=str(g.attrs["label"]), grid=Grid.from_dict(get_json_attr(g, "grid")),
                      diagnostics=get_json_attr(g, "diagnostics", {}), options=get_json_attr(g, "options", {}),
                      **arrays, **groups)  # fmt: skip


class Predictions(dict):
    """Predictions of several entries, by label (insertion order kept)."""

    def table(self) -> str:
        """A markdown table: per entry its kind and FP / baseline W1-over-floor (max, median, last).

        Returns
        -------
        str
            Markdown.
        """
        rows = ["| entry | kind | FP max | FP median | FP last | frozen last | drift-only last | diffusion-only last |",
                "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for p in self.values():
            s = p.summary()
            rows.append(f"| {p.label} | {p.kind} | {s['fp']['max']:.2f} | {s['fp']['median']:.2f} | "
                        f"{s['fp']['last']:.2f} | {s['frozen']['last']:.2f} | {s['drift_only']['last']:.2f} | "
                        f"{s['diffusion_only']['last']:.2f} |")  # fmt: skip
        return "\n".join(rows)

    def save(self, path) -> Path:
        """Write every prediction to one HDF5 file (atomically), a group per label.

        Parameters
        ----------
        path : str or Path
            The file.

        Returns
        -------
        Path
            The written file.
        """
        from .io import atomic_h5

        with atomic_h5(path) as f:
            f.attrs["kind"] = KIND
            for p in self.values():
                _write_prediction(f.create_group(p.label), p)
        return Path(path)

    @classmethod
    def load(cls, path) -> Predictions:
        """Read a file written by ``Predictions.save`` (or ``Prediction.save``).

        Parameters
        ----------
        path : str or Path
            The file; a damaged one is a ``FileFormatError`` naming it.

        Returns
        -------
        Predictions
            The predictions by label, in the stored order.
        """
        from .io import open_results

        with open_results(path, KIND) as f:
            try:
                return cls((k, _read_prediction(f[k])) for k in f)
            except (KeyError, TypeError, ValueError, OSError) as exc:  # a damaged or hand-edited file
                raise FileFormatError(f"`path` {str(path)!r} is not a complete prediction file: {exc}", path) from None


# ------------------------------------------------------------------------------------------ the call
def predict(run, entries="auto", *, split="half", route: str = "mechanistic", variant: str = "standard",
            seed: int = 0, compare_with: Sequence[str] = (), dt: float = 0.1, cells: int = 400,
            cells_per_sd: float = 25, max_cells: int = 4000, ks: bool = True, js: bool = True,
            joint: bool = False, pair_cells: int = 48, auto_limit: dict | None = None):  # fmt: skip
    """Predict how the histograms of weight entries of an ensemble evolve, and judge it out of sample.

    Parameters
    ----------
    run : fpkit.EnsembleRun
        The trained ensemble (``EnsembleRun.load(path)`` or ``Ensemble(...).train()``); t = η·step.
    entries : str or sequence of str
        One entry ("W2[0,1]", "b1[0]") -> a :class:`Prediction`; a list, or "auto" (``auto_entries``:
        autoencoder runs) -> :class:`Predictions` by label; two entries with ``joint=True`` -> a
        :class:`PairPrediction` of their joint 2-D density.
    split : "half" | "in-sample" | (estimate_members, judged_members)
        Estimate A and D on one half of the members and judge the other (default), or use all members for
        both, or give the two index arrays.
    route : "mechanistic" | "kramers-moyal" | "auto"
        Where A and D come from (module docstring); "auto" takes the mechanistic route unless its diagnostics
        say the FP picture fails with it (then Kramers-Moyal; ``diagnostics["route_choice"]`` says why).
    variant : "standard" | "discrete" | "second_order" | "symmetric"
        Variant of the mechanistic route used for the prediction.
    seed : int
        Seed of the random split (the same seed gives the same halves).
    compare_with : sequence of str
        Further variants and/or "kramers-moyal" judged on the same split and grid: their W1/floor lands in
        ``distance["fp_<name>"]`` (for "kramers-moyal" the key is ``"fp_kramers_moyal"``).
    dt : float
        Time step of the FP solve and of the drift-only transport (units of t = η·step).
    cells, cells_per_sd, max_cells :
        Grid resolution (``entry_grid``).
    joint, pair_cells :
        Predict the joint density of two W2 entries (``predict_pair``) on ``pair_cells`` cells per axis.
    ks, js : bool
        Also compute KS and Jensen-Shannon distances over their floors (JS floors cost 10 half-splits per
        snapshot).
    auto_limit : dict, optional
        Entries per layer for ``entries="auto"``.

    Returns
    -------
    Prediction, Predictions or PairPrediction
        As ``entries`` and ``joint`` ask (see ``entries``).
    """
    dt = check_positive("dt", dt)
    E, J = split_members(run.members, int(seed), split)
    grid_opts = {"cells": int(cells), "cells_per_sd": float(cells_per_sd), "max_cells": int(max_cells)}
    if joint:
        labels = [entries] if isinstance(entries, str) else list(entries)
        if len(labels) != 2:
            raise ConfigError(f"`joint=True` predicts the joint density of exactly two entries, got {labels}")
        return predict_pair(run, labels, E, J, dt=dt, cells=int(pair_cells))
    if isinstance(entries, str) and entries != "auto":
        return predict_entry(run, entries, E, J, route=route, variant=variant, compare_with=compare_with,
                             dt=dt, ks=ks, js=js, seed=int(seed), **grid_opts)  # fmt: skip
    labels = auto_entries(run, auto_limit) if isinstance(entries, str) else list(entries)
    if not labels:
        raise ConfigError("`entries` is empty: name at least one entry, e.g. 'W2[0,1]', or 'auto'")
    return Predictions((lab, predict_entry(run, lab, E, J, route=route, variant=variant, compare_with=compare_with,
                                           dt=dt, ks=ks, js=js, seed=int(seed), **grid_opts))
                       for lab in labels)  # fmt: skip


def predict_entry(run, label: str, est_members, judge_members, *, route: str = "mechanistic",
                  variant: str = "standard", compare_with: Sequence[str] = (), dt: float = 0.1,
                  cells: int = 400, cells_per_sd: float = 25, max_cells: int = 4000, ks: bool = True,
                  js: bool = True, seed: int = 0) -> Prediction:  # fmt: skip
    """``predict`` for one entry on a given split (the members' index arrays); see ``predict``."""
    check_choice("route", route, ROUTES)
    if route == "auto":
        return _predict_auto(run, label, est_members, judge_members, variant=variant, compare_with=compare_with,
                             dt=dt, cells=cells, cells_per_sd=cells_per_sd, max_cells=max_cells, ks=ks, js=js,
                             seed=seed)  # fmt: skip
    if len(run.t) < MIN_SNAPSHOTS:
        raise ConfigError(f"the run has {len(run.t)} snapshots: at least {MIN_SNAPSHOTS} are needed to estimate from")
    for name in compare_with:
        check_choice("compare_with", name, (*VARIANT_OPTIONS, "kramers-moyal"))
    if isinstance(run, EntrySamples):
        if run.label != label:
            raise ConfigError(f"`run` holds the samples of entry {run.label!r}, not of {label!r}")
        arrays = run.arrays
    else:
        arrays = entry_arrays(run, label)
    w, t = arrays["w"], run.t
    grid = entry_grid(w, cells=cells, cells_per_sd=cells_per_sd, max_cells=max_cells)
    judged = w[:, judge_members]
    p_emp = est.histogram_density(judged, grid)
    p0 = p_emp[0]
    S = t.size
    floors = judged_floors(judged)

    # errors for the figures; the Kramers-Moyal series and the variants are estimated in the same pass
    series, km, variant_series = estimate_entry(run, arrays, est_members, grid, variant, route, compare_with)
    tp = t if route == "mechanistic" else t[:-1]  # Kramers-Moyal ends one lag early
    p_pred, clipped = solve_density(series, p0, tp, dt)
    w1 = np.full(S, np.nan)
    w1[: tp.size] = [metrics.w1_samples(p_pred[s], grid, judged[s]) for s in range(tp.size)]
    distance = {"fp": w1 / floors, "frozen": judge(judged, grid, density=np.broadcast_to(p0, (S, p0.size)), floors=floors)}
    distance["drift_only"] = judge(judged, grid, samples=transport_samples(series, judged[0], tp, dt), floors=floors)
    distance["diffusion_only"] = judge(judged, grid, density=solve_density(series, p0, tp, dt, drift=False)[0],
                                       floors=floors)  # fmt: skip
    # the Kramers-Moyal estimate on the estimation half: a comparison and a diagnostic of the drift
    for name in compare_with:
        if name == "kramers-moyal":
            distance["fp_kramers_moyal"] = judge(judged, grid, density=solve_density(km, p0, t[:-1], dt)[0], floors=floors)
        elif name != variant or route != "mechanistic":
            sv = variant_series[name]
            distance[f"fp_{name}"] = judge(judged, grid, density=solve_density(sv, p0, t, dt)[0], floors=floors)
    ks_ratio = np.full(S, np.nan)
    if ks:
        ks_ratio[: tp.size] = [metrics.ks_samples(p_pred[s], grid, judged[s]) for s in range(tp.size)]
        ks_ratio /= metrics.ks_floor(judged.shape[1])
    js_ratio = np.full(S, np.nan)
    if js:
        for s in range(tp.size):
            js_val = metrics.js_samples(p_pred[s], grid, judged[s])
            # floor: the distance between two independent halves of the judged members
            floor = metrics.halves_floor(judged[s], lambda a, b: metrics.js_two_samples(a, b, grid), n_splits=10, seed=s)
            js_ratio[s] = js_val / floor if floor > 0 else np.inf
    if p_pred.shape[0] < S:  # pad so that every array covers all snapshots
        pad = np.full((S - p_pred.shape[0], grid.n[0]), np.nan)
        p_pred = np.concatenate([p_pred, pad])
    coefficients = {"drift": series.drift, "diffusion": series.diffusion, "supported": series.supported,
                    "drift_se": series.drift_se, "diffusion_se": series.diffusion_se}  # fmt: skip
    options = {"route": route, "variant": variant, "seed": seed, "dt": dt, "cells": cells,
               "cells_per_sd": cells_per_sd, "max_cells": max_cells}  # fmt: skip
    pred = Prediction(label, t, grid, p_pred, p_emp, judged, distance, w1, floors, ks_ratio, js_ratio, coefficients,
                      samples=w, split={"estimate": np.asarray(est_members), "judge": np.asarray(judge_members)},
                      options=options)  # fmt: skip
    mech = series if route == "mechanistic" else None
    pred.diagnostics = diagnose(pred, clipped, evidence(run, arrays, est_members, len(judge_members), km, mech))
    return pred


def _predict_auto(run, label, est_members, judge_members, **kwargs) -> Prediction:
    """route='auto': the mechanistic route unless its diagnostics (estimation half only, so the choice does
    not peek at the judged members) say the FP picture fails with it, or that it is doubtful with a drift
    uncertainty U ≥ ``U_HOLDS`` above the Kramers-Moyal one, or the run has no gradient statistics; then
    Kramers-Moyal. ``diagnostics["route_choice"]`` says which and why."""
    if run.grad is None or run.grad_var is None:
        pred = predict_entry(run, label, est_members, judge_members, route="kramers-moyal", **kwargs)
        pred.diagnostics["route_choice"] = "kramers-moyal: the run has no gradient statistics"
        return pred
    pred = predict_entry(run, label, est_members, judge_members, route="mechanistic", **kwargs)
    d = pred.diagnostics
    u = d.get("drift_uncertainty") or 0.0
    noisier = d.get("verdict") == "doubtful" and u >= U_HOLDS and (d.get("drift_uncertainty_km") or 0.0) < u
    if d.get("verdict") != "fails" and not noisier:
        d["route_choice"] = "mechanistic: its diagnostics do not say it fails (nor that it is doubtful and noisier)"
        return pred
    alt = predict_entry(run, label, est_members, judge_members, route="kramers-moyal", **kwargs)
    alt.diagnostics["route_choice"] = "kramers-moyal: with the mechanistic route " + "; ".join(d["reasons"])
    return alt


CLIPPED_MASS_WARN = 1e-3
"""A Crank-Nicolson undershoot above this fraction of the mass is reported (below it, clipping moves less
probability than the noise floor of 10⁴ members could see)."""
BEYOND_NOISE = 1.0
"""W1/floor margin by which a prediction must trail the frozen baseline before the diagnostics call it out
(the two distances' sampling noise is about one floor)."""
U_HOLDS, U_FAILS = 0.75, 1.9
"""Drift-uncertainty thresholds (``drift_uncertainty``), applied to entries that move mainly by drift
(``diffusion_share`` < ``DIFFUSION_SHARE_DRIVEN``): a prototype on tanh and ReLU autoencoders held within the
noise floor for U ≤ 0.75 and always failed for U ≥ 1.9. Where diffusion dominates, it smooths the drift's
errors away (the default run's W1 entries hold at U = 0.9-1.1; 5-8 before U had contraction)."""
DIFFUSION_SHARE_DRIVEN = 1.0
"""An entry whose diffusion alone would have made more than its final spread is diffusion-driven."""
U_FAILS_ANY = 3.0
"""Any entry, diffusion-driven or not, fails when U reaches the 3-floor acceptance criterion itself (a
synthetic diffusion-driven entry with noisy gradients went 50 floors off at U = 17.5 under a silent
``holds``; at U = 2.6 it held at 2.7 floors)."""
EOS_DOUBTFUL, EOS_FAILS = 1.0, 2.0
"""η·λmax(H) thresholds: 2 is the edge of stability of gradient descent (steps oscillate); from 1 on, the
one-step dynamics is far from the continuous-time flow the FP equation describes."""
DISAGREEMENT_DOUBTFUL, DISAGREEMENT_FAILS = 0.5, 0.8
"""Relative rms difference between the mechanistic and Kramers-Moyal drifts on the estimation half: measured
0.07-0.14 on the default tanh run (every entry holds), 0.97-0.99 on the W2/W3 entries of the ReLU run of issue
17 (8-14 floors) and 0.7 on its W1 entries (3.5 floors)."""
FROZEN_MIN = 0.05
"""Fraction of the members whose entry did not move at all over a lag between snapshots (increment exactly 0:
a ReLU unit dead on every input of that member, so its weights get no gradient), while the others move: from
``FROZEN_MIN`` to 1 − ``FROZEN_MIN`` the entry's members follow two laws, a mixture that one drift and one
diffusion field of w cannot carry (the digits ReLU autoencoder's W2[0,1] and W2[0,4] missed by 3.2-3.6 floors
under a silent ``holds``; their noise-to-signal ratio was 0, the unit dead in most members)."""
DISAGREEMENT_Z = 2.0
"""The disagreement counts as a bias of the snapshot gradient only where the two drifts differ by more than this
many of their combined standard errors (``drift_disagreement_z``; ≈ 1 for pure sampling noise). On the ReLU run
of issue 17 the 70-99 % disagreement is the mechanistic estimate's own noise: the full-batch gradient of every
member jumps from step to step (per-member spread 10-20× that of its average over a lag; period-2 near the edge
of stability late in training), so a snapshot of it is a noisy sample of the drift. That noise is judged
through U; the disagreement flag is kept for a gradient that is wrong beyond noise."""


INTERP_DOUBTFUL = 1.0
"""Coefficients under-resolved in time (``interpolation_error``): doubtful from an induced error of one noise
floor. Derivation: W1 obeys the triangle inequality, so the judged members' score is at most (sampling noise,
≈ 1 floor by the floor's definition) + (the bias the interpolation puts into the predicted law, e floors) +
(everything else). At e = 1 the bias alone is as large as the noise the criterion is measured against: the score
reaches 2 floors before any other error, leaving the 3-floor criterion one floor for the drift's own uncertainty
(itself doubtful from ``U_HOLDS``); below it the bias hides in the noise."""


def interpolation_ratio(r) -> np.ndarray:
    """∫ over a lag of a coefficient interpolated linearly in time between its end values c₀ and c₁ = r·c₀
    (r > 0), divided by the same integral for the geometric (exponential) interpolation through them:
    ((1 + r)/2) · ln r/(r − 1) ≥ 1 (the arithmetic over the logarithmic mean; 1 at r = 1, ≈ r/2·ln r for r ≫ 1).
    Symmetric under r → 1/r."""
    r = np.asarray(r, dtype=float)
    # near r = 1 the series 1 + (ln r)²/12 avoids 0/0 (its error (ln r)⁴/... is below 1e-16 for |ln r| < 1e-4)
    lr = np.log(np.where(r > 0, r, np.nan))
    near = np.abs(lr) < 1e-4
    safe = np.where(near, 2.0, r)
    return np.where(near, 1.0 + lr**2 / 12.0, 0.5 * (1.0 + safe) * np.log(safe) / (safe - 1.0))


def interpolation_error(t, D, spread, floor, log_contraction=None) -> dict:
    """How far the linear-in-time interpolation of the coefficients between snapshots moves the predicted
    density, in noise floors, against the geometric (exponential) interpolation through the same end values.

    Over lag j the linear ∫D dt exceeds the geometric one by δⱼ = Δtⱼ·(Dⱼ + Dⱼ₊₁)/2 · (1 − 1/ρ(rⱼ)), rⱼ =
    Dⱼ₊₁/Dⱼ, ρ = ``interpolation_ratio``; the predicted variance gains 2δⱼ (Itô: dVar = 2D dt), carried to a
    later snapshot s by the linearised flow squared, Gⱼₛ² (``drift_uncertainty``'s contraction). The predicted
    law at s is then the true one widened from σ to √(σ² + V), V = Σⱼ 2δⱼGⱼₛ²: for a near-Gaussian law W1 =
    √(2/π)·(√(σ² + V) − σ) (the W1 distance of two centred Gaussians is √(2/π)·|σ₁ − σ₂|), divided by the floor
    at s. The drift is left out: the members' mean drift changes over a lag mostly because they move (a
    restoring drift's mean is noise around 0, its end ratio meaningless), and its interpolation error is
    already part of U's per-lag uncertainty. Returned: ``interpolation_error`` (worst
    snapshot), the lag that contributes most there (``interpolation_lag`` (t₀, t₁)) and its diffusion ratio
    ``interpolation_d_ratio`` D(t₀)/D(t₁).

    ``t`` (S,) snapshot times; ``D`` (S,) the diffusion averaged over the estimation members (w² per unit t);
    ``spread`` (S,) their standard deviation (w); ``floor`` the W1
    noise floor of the judged members, one or (S,); ``log_contraction`` (S−1,) ∫∂A/∂w dt per lag (None: 0)."""
    t, D, spread = (np.asarray(a, dtype=float) for a in (t, D, spread))
    dt = np.diff(t)
    floors = np.broadcast_to(np.asarray(floor, dtype=float), t.shape)
    c = np.zeros(dt.size) if log_contraction is None else np.asarray(log_contraction, dtype=float)

    # twice the linear minus the geometric ∫D dt per lag (0 where an end is 0: no ratio)
    pos = (D[:-1] > 0) & (D[1:] > 0)
    rho = interpolation_ratio(np.where(pos, D[1:] / np.where(pos, D[:-1], 1.0), 1.0))
    var_x = np.where(pos, dt * (D[:-1] + D[1:]) * (1.0 - 1.0 / rho), 0.0)
    worst, lag = 0.0, 0
    for s in range(1, t.size):
        carry = np.exp(np.minimum([np.sum(c[j + 1 : s]) for j in range(s)], 50.0))
        V = float(np.sum(var_x[:s] * carry**2))
        e = np.sqrt(2 / np.pi) * (np.sqrt(spread[s] ** 2 + V) - spread[s]) / floors[s]
        if e > worst:
            worst, lag = float(e), int(np.argmax(var_x[:s] * carry**2))
    ratio = D[lag] / D[lag + 1] if t.size > 1 and D[lag + 1] > 0 else None
    return {"interpolation_error": worst, "interpolation_lag": [float(t[lag]), float(t[min(lag + 1, t.size - 1)])],
            "interpolation_d_ratio": None if ratio is None else float(ratio)}  # fmt: skip


def drift_uncertainty(t: np.ndarray, increments_se: np.ndarray, floor, log_contraction=None) -> float:
    """U = maxₛ √(Σⱼ₍ⱼ₍ₛ₎ ((σⱼ² + σⱼ₊₁²)/2)·Gⱼₛ²) / floorₛ: how far the uncertainty of the drift, held over each
    lag between snapshots, can move the predicted density by snapshot s, in units of the W1 noise floor of the
    judged members there (worst snapshot).

    ``increments_se`` (S,) is the standard error of the displacement over the lag that starts at each snapshot
    (for the mechanistic route Δtⱼ · the spread of −∂L/∂w around the estimated drift across the members / √M;
    Kramers-Moyal: the spread of the increments around Δtⱼ times its drift / √M). ``floor`` is one number or
    one per snapshot (S,). ``log_contraction`` (S−1,) is ∫ ∂A/∂w dt over each lag (the drift's mean slope
    over the entry's histogram): a displacement made in lag j is carried to snapshot s by the linearised flow,
    Gⱼₛ = exp(Σ_{j<i<s} log_contraction_i), so a restoring drift forgets early errors (None: no contraction;
    then U is the root-sum-square over all lags over the floor at the end)."""
    se = np.asarray(increments_se, dtype=float)
    lag = 0.5 * (se[:-1] ** 2 + se[1:] ** 2)
    c = np.zeros(lag.size) if log_contraction is None else np.asarray(log_contraction, dtype=float)
    floors = np.broadcast_to(np.asarray(floor, dtype=float), se.shape)
    worst = 0.0
    for s in range(1, se.size):
        carry = np.exp(np.minimum([np.sum(c[j + 1 : s]) for j in range(s)], 50.0))
        worst = max(worst, float(np.sqrt(np.sum(lag[:s] * carry**2)) / floors[s]))
    return worst


def _mean_slope(series, w: np.ndarray, s: int) -> float:
    """∂A/∂w of ``series`` at snapshot s averaged over the histogram of ``w[s]`` where the estimate is supported."""
    wts = est.histogram_density(w[s], series.grid) * series.supported[s]
    total = float(np.sum(wts))
    return float(np.sum(wts * np.gradient(series.drift[s], series.grid.x)) / total) if total > 0 else 0.0


def _log_contraction(series, w: np.ndarray, dt: np.ndarray) -> np.ndarray:
    """∫ ∂A/∂w dt over each lag (trapezoid; a series one snapshot short repeats its last slope)."""
    k = np.array([_mean_slope(series, w, s) for s in range(series.drift.shape[0])])
    k = np.concatenate([k, np.repeat(k[-1:], dt.size + 1 - k.size)])
    return 0.5 * (k[:-1] + k[1:]) * dt


def evidence(run, arrays: dict, est_members, n_judged: int, km, mech=None) -> dict:
    """Numbers that say whether the FP picture should hold for an entry, from the estimation members only
    (so they predict the out-of-sample outcome instead of restating it): drift uncertainty U for both routes
    (``drift_uncertainty``, with the route's own contraction; ``drift_contraction`` ∫ ∂A/∂w dt over the run),
    η·λmax, the gradient noise-to-signal ratio, the entry's diffusion share, the mechanistic/Kramers-Moyal
    drift disagreement (relative, and ``drift_disagreement_z`` in standard errors) and the lag-1
    autocorrelation of the increments between snapshots. ``km`` and ``mech`` are the two routes' coefficient
    series on the same grid (``mech`` None: the mechanistic numbers are skipped)."""
    w = arrays["w"][:, est_members]
    t = np.asarray(run.t, dtype=float)
    M = w.shape[1]
    floors = np.array([metrics.w1_floor(n_judged, samples=w[s]) for s in range(t.size)])
    dt = np.diff(t)
    out: dict = {}
    inc = np.diff(w, axis=0)
    x = km.grid.x

    def at_members(field, s):  # an estimated coefficient at the members' own values
        return np.interp(w[s], x, field[s])

    # the residual spread around the estimated drift is what the estimate cannot average away
    res_km = np.array([(inc[s] - dt[s] * at_members(km.drift, s)).std() for s in range(km.drift.shape[0])])
    se_km = np.concatenate([res_km, np.zeros(t.size - res_km.size)]) / np.sqrt(M)
    out["drift_uncertainty_km"] = drift_uncertainty(t, se_km, floors, _log_contraction(km, w, dt))
    out["frozen_fraction"] = float(np.max(np.mean(inc == 0, axis=1))) if inc.size else 0.0
    if mech is not None:
        g = arrays["g"][:, est_members]
        res = np.array([(-g[s] - at_members(mech.drift, s)).std() for s in range(t.size)])
        se = np.concatenate([dt, [0.0]]) * res / np.sqrt(M)
        contraction = _log_contraction(mech, w, dt)
        out["drift_uncertainty"] = drift_uncertainty(t, se, floors, contraction)
        out["drift_contraction"] = float(np.sum(contraction))
        v = arrays["v"][:, est_members]
        out["noise_to_signal"] = float(np.median(v[-1] / np.maximum(g[-1] ** 2, 1e-300)))
        D = 0.5 * run.eta * v.mean(axis=1)
        out["diffusion_share"] = float(np.sum(0.5 * (D[1:] + D[:-1]) * dt) * 2 / max(float(w[-1].var()), 1e-300))
        out.update(interpolation_error(t, D, w.std(axis=1), floors, contraction))
    # λmax is recorded on the probe members only: none (probes = 0), or none finite, is "not measured" (None),
    # never a NaN that every threshold comparison would pass silently
    lam = None if run.lam_max is None else np.asarray(run.lam_max, dtype=float)
    if lam is None or lam.size == 0 or not np.any(np.isfinite(lam)):
        out["eta_lam_max"] = None
        out["eta_lam_max_note"] = "not measured: the run records λmax on no probe member"
    else:
        med = [np.median(row[np.isfinite(row)]) for row in run.eta * lam if np.any(np.isfinite(row))]
        out["eta_lam_max"] = float(np.max(med))
    # the drifts where the estimation half has support, weighted by its histogram
    rel, z = [], []
    for s in range(km.drift.shape[0] if mech is not None else 0):
        m = mech.supported[s] & km.supported[s]
        wts = est.histogram_density(w[s], km.grid)[m]
        a, b = mech.drift[s][m], km.drift[s][m]
        scale = np.sqrt(np.sum(wts * a**2))
        if scale > 0:
            rel.append(np.sqrt(np.sum(wts * (a - b) ** 2)) / scale)
        # in standard errors (local-linear: residual spread / √n_eff), against the mechanistic drift averaged
        # over the lag's two ends, which the Kramers-Moyal drift estimates up to its noise
        m2 = m & mech.supported[s + 1]
        if np.sum(wts) > 0 and m2.any():
            wz = est.histogram_density(w[s], km.grid)[m2]
            a2 = 0.5 * (mech.drift[s][m2] + mech.drift[s + 1][m2])
            var_a = 0.25 * (res[s] ** 2 / mech.n_eff[s][m2] + res[s + 1] ** 2 / mech.n_eff[s + 1][m2])
            var_b = (res_km[s] / dt[s]) ** 2 / km.n_eff[s][m2]
            ok = (var_a + var_b) > 0
            if np.sum(wz[ok]) > 0:
                z.append(np.sqrt(np.sum(wz[ok] * (a2 - km.drift[s][m2])[ok] ** 2 / (var_a + var_b)[ok]) / np.sum(wz[ok])))
    out["drift_disagreement"] = float(np.median(rel)) if rel else None
    out["drift_disagreement_z"] = float(np.median(z)) if z else None
    if inc.shape[0] >= 2:
        c = [np.corrcoef(inc[j], inc[j + 1])[0, 1] for j in range(inc.shape[0] - 1) if inc[j].std() > 0 and inc[j + 1].std() > 0]
        out["increment_autocorrelation"] = float(np.median(c)) if c else None
    return out


def validity(ev: dict, route: str) -> tuple[str, list[str]]:
    """``holds`` | ``doubtful`` | ``fails`` for the FP picture of one entry from its ``evidence``, with the
    reasons in words (thresholds: ``U_HOLDS``/``U_FAILS`` for drift-driven entries, ``U_FAILS_ANY`` for
    diffusion-driven ones, ``EOS_DOUBTFUL``/``EOS_FAILS``,
    ``DISAGREEMENT_DOUBTFUL``/``DISAGREEMENT_FAILS`` where the disagreement exceeds ``DISAGREEMENT_Z`` standard
    errors; doubtful where a fraction between ``FROZEN_MIN`` and 1 − ``FROZEN_MIN`` of the members did not move;
    doubtful where the coefficients are under-resolved in time, ``interpolation_error`` ≥ ``INTERP_DOUBTFUL``,
    and then the diffusion share, inflated by the same interpolation, does not class the entry diffusion-driven:
    it is judged by the drift-driven U thresholds). Calibrated on the default tanh run and the ReLU run of issue 17; a validity map over
    architectures is still to test it broadly."""
    reasons, level = [], 0

    def flag(value, doubtful, fails, text):
        nonlocal level
        if value is not None and value >= doubtful:
            level = max(level, 2 if value >= fails else 1)
            reasons.append(text)

    if route == "mechanistic":
        d, z = ev.get("drift_disagreement"), ev.get("drift_disagreement_z")
        noise = d is not None and d >= DISAGREEMENT_DOUBTFUL and z is not None and z < DISAGREEMENT_Z
        if not noise:
            flag(d, DISAGREEMENT_DOUBTFUL, DISAGREEMENT_FAILS,
                 f"the mechanistic and Kramers-Moyal drifts differ by {d or 0:.0%} (rms, median over snapshots"
                 + ("" if z is None else f"; {z:.1f} standard errors") + "): the snapshot gradient does not "
                 "represent the motion over the lag; route='kramers-moyal' or 'auto'")  # fmt: skip
        u, share = ev.get("drift_uncertainty"), ev.get("diffusion_share")
        ie = ev.get("interpolation_error")
        coarse = ie is not None and ie >= INTERP_DOUBTFUL
        if coarse:
            level = max(level, 1)
            lag, r = ev.get("interpolation_lag") or [0.0, 0.0], ev.get("interpolation_d_ratio")
            how = ("" if r is None or r <= 0 else f"the diffusion {'falls' if r >= 1 else 'rises'} "
                   f"{max(r, 1 / r):.0f}-fold over the lag t {lag[0]:.3g} → {lag[1]:.3g}: ")
            reasons.append(f"coefficients under-resolved in time: {how}interpolating them linearly between "
                           f"snapshots moves the prediction by {ie:.2f} noise floors; the snapshots are too coarse "
                           f"there, record more snapshots around t {lag[0]:.3g} → {lag[1]:.3g}")  # fmt: skip
            # the diffusion share integrates the same linearly interpolated D, so its over-count would class
            # the entry diffusion-driven (U then fails only at U_FAILS_ANY): judge it as drift-driven instead
            if share is not None:
                share = 0.0
        if share is not None and share < DIFFUSION_SHARE_DRIVEN:
            why = "record snapshots more densely or use more members"
            if noise:
                why = (f"the snapshot gradients scatter from step to step far more than the weights move: the "
                       f"mechanistic and Kramers-Moyal drifts differ by {d:.0%} but only {z:.1f} standard errors "
                       f"(noise, not bias); the Kramers-Moyal drift, averaged over each lag, has U = "
                       f"{ev.get('drift_uncertainty_km') or 0:.2f}: route='kramers-moyal' or 'auto'")  # fmt: skip
            flag(u, U_HOLDS, U_FAILS,
                 f"the drift's uncertainty over the lags between snapshots could move this drift-driven entry by "
                 f"U = {u or 0:.2f} noise floors: {why}")  # fmt: skip
        elif share is not None:
            flag(u, U_FAILS_ANY, U_FAILS_ANY,
                 f"the drift's uncertainty over the lags between snapshots could move this diffusion-driven entry "
                 f"by U = {u or 0:.2f} noise floors, beyond the 3-floor criterion: use more members")  # fmt: skip
    f = ev.get("frozen_fraction")
    if f is not None and FROZEN_MIN <= f <= 1 - FROZEN_MIN:
        level = max(level, 1)
        reasons.append(f"the entry did not move at all in {f:.0%} of the members over a lag (a ReLU unit dead on "
                       "every input there: no gradient) while it moved in the others: two laws that one drift and "
                       "one diffusion field of w cannot carry")  # fmt: skip
    e = ev.get("eta_lam_max")
    flag(e, EOS_DOUBTFUL, EOS_FAILS,
         f"η·λmax(H) reaches {e or 0:.2f} (the edge of stability is 2): SGD's steps oscillate instead of "
         "following a diffusion")  # fmt: skip
    return ("holds", "doubtful", "fails")[level], reasons


def diagnose(pred: Prediction, clipped_mass: float = 0.0, ev: dict | None = None) -> dict:
    """Validity checks of a prediction: the evidence (``evidence``) with its verdict ``holds | doubtful |
    fails`` and the reasons, and what the judged members show (snapshots worse than the frozen baseline, the
    solver's clipped mass). ``messages`` says in words what needs attention: a prediction worse than the frozen
    baseline by more than ``BEYOND_NOISE`` floors always gets one."""
    fp, frozen = pred.distance["fp"], pred.distance["frozen"]
    worse = np.flatnonzero(fp[1:] > frozen[1:]) + 1
    beyond = worse[fp[worse] > frozen[worse] + BEYOND_NOISE]
    unsupported = 1.0 - float(np.mean(pred.coefficients["supported"]))
    d = {"worse_than_frozen_snapshots": worse.tolist(), "worse_than_frozen_beyond_noise": beyond.tolist(),
         "clipped_negative_mass": clipped_mass, "unsupported_grid_fraction": unsupported}  # fmt: skip
    msgs = []
    if ev is not None:
        d.update(ev)
        d["verdict"], d["reasons"] = validity(ev, pred.options.get("route", "mechanistic"))
        if d["verdict"] != "holds":
            msgs.append(f"{pred.label}: the FP picture is {d['verdict']}: " + "; ".join(d["reasons"]))
    if beyond.size:
        msgs.append(f"{pred.label}: the FP prediction is worse than the frozen initial histogram by more than "
                    f"{BEYOND_NOISE:g} floor at {beyond.size} of {fp.size - 1} snapshots (first at t = "
                    f"{pred.t[beyond[0]]:.3g})" + ("" if d.get("reasons") else
                    "; none of the diagnostics explains it: compare route='kramers-moyal'"))  # fmt: skip
    if clipped_mass > CLIPPED_MASS_WARN:
        msgs.append(f"{pred.label}: the Crank-Nicolson solve undershot by {clipped_mass:.2g} of the mass (clipped): "
                    "refine `dt` or the grid")  # fmt: skip
    d["messages"] = msgs
    return d


# ------------------------------------------------------------------------------------- 2-D joint pair
@dataclass
class PairPrediction:
    """Joint 2-D FP prediction of two entries (vector drift, full 2 × 2 diffusion tensor).

    Attributes: ``labels``; ``t`` (S,); ``grid`` (2-D); ``density``, ``empirical`` (S, n, n);
    ``marginal_distance`` list of two (S,) W1/floor of the marginals; ``l1_joint``, ``l1_joint_frozen`` (S,)
    L1 distance of the joint densities (prediction and frozen); ``clipped_min`` the most negative value the
    mixed-derivative stencil produced before clipping."""

    labels: list
    t: np.ndarray
    grid: Grid
    density: np.ndarray
    empirical: np.ndarray
    marginal_distance: list
    l1_joint: np.ndarray
    l1_joint_frozen: np.ndarray
    clipped_min: float


def predict_pair(run, labels: Sequence[str], est_members, judge_members, *, dt: float = 0.2,
                 cells: int = 48) -> PairPrediction:  # fmt: skip
    """2-D FP prediction of the joint density of two W2 entries of an autoencoder run; the 2 × 2 covariance
    of the minibatch-mean gradient comes from per-sample gradients (``fpkit.network``), with iid batches.
    ``dt`` is the implicit solver's step, ``cells`` per axis."""
    from .network import w2_pair_gradient_moments

    idx = []
    for lab in labels:
        name, ij = parse_entry(lab)
        if name != "W2":
            raise ConfigError(f"a joint pair must be two W2 entries, got {lab!r}")
        idx.append(ij)
    x = run.data.get("x") if run.data else None
    if x is None:
        raise ConfigError("the joint pair prediction needs the training data stored with the ensemble")
    sampling = (run.config.get("train") or {}).get("sampling", "iid")
    if sampling != "iid":
        raise ConfigError(f"the joint pair prediction assumes iid minibatches; the run used sampling={sampling!r}")
    S = run.t.size
    w = np.stack([run.weights["W2"][(slice(None), slice(None)) + ij] for ij in idx], axis=-1)  # (S, M, 2)
    activation = run.config.get("model", {}).get("activation", "tanh")
    # the estimation members' gradients and covariances at every snapshot (one parallel kernel)
    g, cov = w2_pair_gradient_moments(run.weights, x, activation, idx, run.batch_size, members=est_members)
    grid = est.choose_grid(w, n=int(cells), ndim=2)
    series = est.mechanistic_2d_series(run.t, w[:, est_members], g, cov, run.eta, grid, se=False)  # none kept
    judged = w[:, judge_members]
    p_emp = est.histogram_density(judged, grid)
    coefs = series.fp_coefficients()
    fp = FokkerPlanck(grid, drift=coefs["drift"], diffusion=coefs["diffusion"], bc="reflecting", time_dependent=True)
    p_pred = fp.solve(p_emp[0], run.t, method="implicit", dt=dt, t0=run.t[0]).p
    # the mixed-derivative stencil is not an M-matrix: clip its round-off-sized negative values
    out_min = float(p_pred.min())
    p_pred = np.clip(p_pred, 0.0, None)
    p_pred /= grid.integrate(p_pred)[:, None, None]
    marginals = []
    for a in range(2):
        gm = Grid.uniform(grid.lo[a], grid.hi[a], grid.n[a])
        marginals.append(judge(judged[:, :, a], gm, density=grid.integrate(p_pred, axis=1 - a)))
    l1 = np.array([float(grid.integrate(np.abs(p_pred[s] - p_emp[s]))) for s in range(S)])
    l1_frozen = np.array([float(grid.integrate(np.abs(p_emp[0] - p_emp[s]))) for s in range(S)])
    return PairPrediction(list(labels), run.t, grid, p_pred, p_emp, marginals, l1, l1_frozen, out_min)
