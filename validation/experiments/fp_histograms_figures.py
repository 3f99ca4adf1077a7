"""The flagship experiment's files: its results.h5 layout, its figures and the sections of report.md.

The shared writer (``fpkit.experiments.write_outputs``) calls these; they only format numbers that
``fp_histograms`` computed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpkit.io import set_json_attr
from fpkit.plotting import _pyplot, save_figure


def representatives(res) -> list:
    """One entry per layer (the first W2 entry, the W1 entry whose spread changes most, W3[0,0])."""
    picks = []
    for prefix in ("W2", "W1", "W3"):
        r = next((e for e in res.entries if e.label.startswith(prefix)), None)
        if r is not None:
            picks.append(r)
    return picks


def save_results(f, res) -> None:
    """Write the flagship's results into the open results file ``f`` (the shared writer adds the attributes
    ``kind``, ``experiment``, ``config``, ``timings`` and ``verdict``). Layout:

    - ``t`` (S,) snapshot times t = η·step; ``eta_lam_max`` (S, probes) when measured;
    - ``entries/<label>/``: ``samples`` (S, M) the entry in every member, ``p_pred``/``p_emp`` (S, n) predicted
      and judged densities on the entry's grid (attr ``grid``), ``drift``/``diffusion`` (S, n) estimates,
      ``w1``, ``w1_floor``, ``ks_ratio``, ``js_ratio`` (S,), ``ratios/<name>`` (S,) W1/floor of the FP, its
      variants and the baselines; attrs ``kind``, ``diagnostics`` (JSON);
    - ``extra/split/estimate``, ``extra/split/judge``: member indices of the two halves; ``extra/langevin``,
      ``extra/outputs``, ``extra/pair``, attrs ``svag`` and ``sweep`` (JSON).
    """
    f["t"] = res.t
    if res.eta_lam_max is not None:
        f["eta_lam_max"] = res.eta_lam_max
    for r in res.entries:
        g = f.create_group(f"entries/{r.label}")
        set_json_attr(g, "grid", r.grid.to_dict())
        set_json_attr(g, "diagnostics", r.diagnostics)
        g.attrs["kind"] = r.kind
        stored = {"p_pred": r.density, "p_emp": r.empirical, "drift": r.coefficients["drift"],
                  "diffusion": r.coefficients["diffusion"], "w1": r.w1, "w1_floor": r.w1_floor, "ks_ratio": r.ks,
                  "js_ratio": r.js, "samples": r.samples}  # fmt: skip
        for name, a in stored.items():
            if a is not None:
                g.create_dataset(name, data=a, compression="gzip", compression_opts=4)
        for k, v in r.distance.items():
            g[f"ratios/{k}"] = v
    ex = f.create_group("extra")
    # which members estimated A and D and which were judged (indices into `samples`)
    ex["split/estimate"], ex["split/judge"] = res.split["estimate"], res.split["judge"]
    lg = res.langevin
    if lg:
        ex["langevin/w1_over_floor"] = lg["w1_over_floor"]
        set_json_attr(ex["langevin"], "info", {"label": lg["label"], "n_paths": lg["n_paths"]})
    out = res.outputs
    if out:
        for k in ("trained", "predicted", "shuffled", "quantile_mapped", "copula"):
            if k in out:
                ex[f"outputs/{k}"] = out[k]
        set_json_attr(ex["outputs"], "summary", {k: v for k, v in out.items() if not isinstance(v, np.ndarray)})
    pair = res.pair
    if pair:
        ex["pair/p_pred"] = pair.density
        ex["pair/p_emp"] = pair.empirical
        set_json_attr(ex["pair"], "grid", pair.grid.to_dict())
        set_json_attr(ex["pair"], "labels", pair.labels)
    set_json_attr(ex, "svag", [{"l": s["l"], "members": s["members"],
                                "w1_over_floor": {k: v.tolist() for k, v in s["w1_over_floor"].items()}}
                               for s in res.svag])  # fmt: skip
    set_json_attr(ex, "sweep", res.sweep)


# ----------------------------------------------------------------------------------------------- figures
def _display_bins(p: np.ndarray, edges: np.ndarray, n_bins: int = 60):
    """Average a density over groups of cells so that about ``n_bins`` remain (for display only)."""
    f = max(1, p.shape[-1] // n_bins)
    m = (p.shape[-1] // f) * f
    return p[..., :m].reshape(*p.shape[:-1], -1, f).mean(axis=-1), edges[: m + 1 : f]


def _display_window(p: np.ndarray, edges: np.ndarray, tail: float = 0.005) -> tuple[int, int]:
    """Cell range [i0, i1) holding all but ``tail`` of the density in each tail, padded by 30 % of its width
    (late W1 entries are a narrow core inside the grid that spans their initial spread)."""
    c = np.cumsum(p * np.diff(edges))
    i0, i1 = int(np.searchsorted(c, tail * c[-1])), int(np.searchsorted(c, (1 - tail) * c[-1])) + 1
    pad = max(1, int(0.3 * (i1 - i0)))
    return max(0, i0 - pad), min(p.size, i1 + pad)


def overlay_snapshots(t: np.ndarray) -> np.ndarray:
    """Snapshot indices closest to t_end · {1/100, 1/10, 1/3, 1}: spread in log time over where entries move."""
    return np.unique([int(np.argmin(np.abs(t - f * t[-1]))) for f in (0.01, 0.1, 1 / 3, 1.0)])


def fig_heatmaps(res, path):
    plt = _pyplot()
    reps = representatives(res)
    fig, axes = plt.subplots(len(reps), 2, figsize=(11, 3.6 * len(reps)), squeeze=False, layout="constrained")
    tt = np.maximum(res.t, res.t[1] / 2)
    for row, r in zip(axes, reps):
        emp, e = _display_bins(r.empirical, r.grid.edges[0])
        pred, _ = _display_bins(r.density, r.grid.edges[0])
        centres = 0.5 * (e[1:] + e[:-1])
        # each time row relative to the judged density's maximum at that time: a collapsing entry's late core
        # would otherwise saturate the colour scale and hide everything before it
        scale = np.maximum(emp.max(axis=1, keepdims=True), 1e-300)
        for ax, p, what in ((row[0], pred, "FP prediction"), (row[1], emp, "trained (judged half)")):
            im = ax.pcolormesh(centres, tt, p / scale, shading="nearest", vmin=0, vmax=1.2, cmap="magma")
            ax.set_yscale("log")
            ax.set(xlabel=f"{r.label}", ylabel="t = η·step", title=f"{r.label}: {what}")
        fig.colorbar(im, ax=row.tolist(), label="density / judged maximum at that t")
    return save_figure(fig, path)


def fig_overlays(res, path):
    plt = _pyplot()
    reps = representatives(res)
    picks = overlay_snapshots(res.t)
    fig, axes = plt.subplots(len(reps), len(picks), figsize=(3.6 * len(picks), 2.8 * len(reps)), squeeze=False)
    for row, r in zip(axes, reps):
        edges = r.grid.edges[0]
        for ax, s in zip(row, picks):
            # each panel on its own window (the snapshot's central 99 %) in ~40 display bins: the solver's
            # grid is much finer than the data supports, and a late W1 entry is a core of a few cells' width
            i0, i1 = _display_window(r.empirical[s], edges)
            win = edges[i0 : i1 + 1]
            coarse, e = _display_bins(r.empirical[s, i0:i1], win, 40)
            ax.stairs(coarse, e, color="0.6", fill=True, alpha=0.6, label="trained")
            pred, e = _display_bins(r.density[s, i0:i1], win, 40)
            ax.stairs(pred, e, color="C3", lw=1.5, label="FP prediction")
            first, e0 = _display_bins(r.empirical[0, i0:i1], win, 40)
            ax.stairs(first, e0, color="k", ls=":", lw=1, label="frozen (t=0)")
            ax.set_title(f"{r.label}, t = {r.t[s]:.3g}  (W1/floor {r.distance['fp'][s]:.2f})", fontsize=9)
            ax.set_xlim(win[0], win[-1])
        row[0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_distances(res, path):
    plt = _pyplot()
    groups = [("W2", "W2 entries"), ("W1", "W1 entries"), ("W3", "W3 entries")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.3), sharey=True)
    styles = {"fp": ("C3", "-", "FP"), "frozen": ("k", ":", "frozen"), "drift_only": ("C0", "--", "drift only"),
              "diffusion_only": ("C2", "-.", "diffusion only")}  # fmt: skip
    for ax, (prefix, title) in zip(axes, groups):
        ax.axhspan(0, 2, color="0.9", zorder=0, label="within noise (ratio ≤ 2)")
        ax.axhline(1, color="0.5", lw=0.8)
        for r in (e for e in res.entries if e.label.startswith(prefix)):
            for key, (c, ls, name) in styles.items():
                ax.plot(r.t[1:], r.distance[key][1:], color=c, ls=ls, lw=1, alpha=0.7,
                        label=name if r is next(e for e in res.entries if e.label.startswith(prefix)) else None)
        ax.set(xscale="log", yscale="log", xlabel="t = η·step", title=title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("W1 / noise floor (out of sample)")
    fig.tight_layout()
    return save_figure(fig, path)


def fig_coefficients(res, path):
    plt = _pyplot()
    reps = representatives(res)
    picks = overlay_snapshots(res.t)
    fig, axes = plt.subplots(2, len(reps), figsize=(4.5 * len(reps), 6), squeeze=False)
    for col, r in enumerate(reps):
        sup_any = r.empirical.max(axis=0) > 0
        for s in picks:
            m = r.coefficients['supported'][s] & sup_any
            axes[0, col].plot(r.grid.x[m], r.coefficients['drift'][s][m], label=f"t={r.t[s]:.3g}")
            axes[1, col].plot(r.grid.x[m], r.coefficients['diffusion'][s][m])
        axes[0, col].set(title=f"{r.label}: drift A(w, t)", xlabel="w")
        axes[1, col].set(title=f"{r.label}: diffusion D(w, t)", xlabel="w", yscale="log")
        axes[0, col].axhline(0, color="0.5", lw=0.7)
        axes[0, col].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_outputs(res, path):
    out = res.outputs
    if not out:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    sets = [
        ("trained", dict(histtype="stepfilled", color="0.7"), "trained networks"),
        ("quantile_mapped", dict(histtype="step", color="C3", lw=1.8),
         f"W2 quantile-mapped onto the FP prediction (W1/floor {out['w1_quantile_over_floor']:.2f})"),
        ("predicted", dict(histtype="step", color="C1", lw=1),
         f"W2 drawn independently from the FP prediction ({out['w1_pred_over_floor']:.2f})"),
        ("shuffled", dict(histtype="step", color="C0", ls="--"),
         f"W2 from empirical marginals ({out['w1_shuffled_over_floor']:.2f})"),
    ]  # fmt: skip
    if "copula" in out:
        sets.insert(2, ("copula", dict(histtype="step", color="C2", lw=1.5),
                        f"estimation half, W2 mapped onto the FP prediction ({out['w1_copula_over_floor']:.2f})"))
    # left: the trained networks' range (linear); right: every set on a log axis, since networks whose W2
    # entries are drawn independently lose the correlations between weights and reconstruct far worse
    near = np.concatenate([out["trained"], out["quantile_mapped"]])
    everything = np.concatenate([np.asarray(out[k]) for k, _, _ in sets])
    positive = everything[everything > 0]
    ranges = [np.linspace(*np.percentile(near, [0.5, 99.5]), 50)]
    ranges.append(np.geomspace(*np.percentile(positive, [0.1, 99.9]), 60) if positive.size else ranges[0])
    for ax, bins in zip(axes, ranges):
        for key, style, label in sets:
            v = np.asarray(out[key])
            inside = (v >= bins[0]) & (v <= bins[-1])
            if inside.any():  # fraction of all networks per bin (a set with nothing in range draws nothing)
                ax.hist(v[inside], bins, weights=np.full(inside.sum(), 1.0 / v.size), label=label, **style)
        ax.set(xlabel="reconstruction error on held-out inputs", ylabel="fraction of networks per bin",
               xlim=(bins[0], bins[-1]))  # fmt: skip
    axes[1].set(xscale="log", yscale="log")
    axes[0].set_title("trained vs quantile-mapped (shown range)")
    axes[1].set_title("all, log scale")
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_failure_map(res, path):
    rows = [r for r in res.sweep if "error" not in r]
    if not rows:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for B in sorted({r["batch_size"] for r in rows}):
        sub = [r for r in rows if r["batch_size"] == B]
        axes[0].plot([r["eta_lam_max"] for r in sub], [r["fp_ratio_max"] for r in sub], "o-", label=f"B = {B}")
        # noise-to-signal is not monotone in η: points only, each labelled by its η
        axes[1].plot([r["noise_to_signal"] for r in sub], [r["fp_ratio_max"] for r in sub], "o", label=f"B = {B}")
        for r in sub:
            for ax, x in ((axes[0], r["eta_lam_max"]), (axes[1], r["noise_to_signal"])):
                ax.annotate(f"η={r['lr']:g}", (x, r["fp_ratio_max"]), fontsize=7)
    for ax, xl in zip(axes, ("η·λmax(H) at the end (2 = edge of stability)", "gradient noise-to-signal ratio")):
        ax.axhspan(0, 2, color="0.9", zorder=0)
        ax.set(xlabel=xl, ylabel="worst final W1/floor of the FP prediction", yscale="log")
        ax.legend(fontsize=8)
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    axes[1].set_xscale("log")
    for axis in (axes[0].yaxis, axes[1].yaxis, axes[1].xaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ScalarFormatter())
        axis.set_minor_formatter(NullFormatter())
    fig.suptitle("where the Fokker-Planck prediction fails")
    fig.tight_layout()
    return save_figure(fig, path)


def fig_pair(res, path):
    pair = res.pair
    if not pair:
        return None
    plt = _pyplot()
    g = pair.grid
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
    vmax = np.percentile(pair.empirical[-1], 99.5)
    for ax, p, title in ((axes[0], pair.density[-1], "FP prediction (2-D, full D tensor)"),
                         (axes[1], pair.empirical[-1], "trained (judged half)")):  # fmt: skip
        im = ax.pcolormesh(g.axes[0], g.axes[1], p.T, shading="nearest", vmin=0, vmax=vmax, cmap="magma")
        ax.set(xlabel=pair.labels[0], ylabel=pair.labels[1], title=f"{title}, last snapshot")
    fig.colorbar(im, ax=axes.tolist())
    return save_figure(fig, path)


# ------------------------------------------------------------------------------------------------ report
def _fmt(x, nd=2):
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{nd}f}"


def w1_sentence(res) -> str:
    """What the W1 entries say about diffusion, from the numbers (not assumed)."""
    from .fp_histograms import diffusion_driven_criteria

    w1 = [diffusion_driven_criteria(r) for r in res.entries if r.label.startswith("W1")]
    if not w1:
        return ""
    gain = float(np.median([c["vs_drift_only"] for c in w1]))
    if gain >= 1.5:
        return (f"For the W1 entries diffusion matters: the drift-only (Callan-Symanzik) prediction ends {gain:.1f}× "
                "worse than the FP (median).")
    return (f"For the W1 entries chosen by diffusion share the drift-only (Callan-Symanzik) prediction is about as "
            f"good as the FP (it ends {gain:.2f}× the FP's distance, median): in this run their histograms are shaped "
            "mainly by drift, so they do not test D, and the diffusion-driven criteria cannot be met.")


def late_sentence(res) -> str:
    """The late goal for diffusion-driven W1 entries (last quarter of the snapshots)."""
    from .fp_histograms import THRESHOLDS, late_max

    driven = [r for r in res.entries if r.label.startswith("W1") and r.kind == "diffusion-driven"]
    if not driven:
        return ""
    late = {r.label: late_max(r) for r in driven}
    worst = max(late, key=late.get)
    met = "within" if late[worst] <= THRESHOLDS["late_goal"] else "not within"
    return (f"Late in training (the last quarter of the snapshots), where the diffusion-driven W1 entries turn nearly "
            f"stationary and stiff, the worst of them ({worst}) reaches {late[worst]:.2f} floors: {met} the late goal "
            f"of {THRESHOLDS['late_goal']:g} floors.")


def kind_sentence(res) -> str:
    """W2/W3 entries are judged by the drift-dominated criteria; say which of them diffusion shapes anyway."""
    odd = [r for r in res.entries if not r.label.startswith("W1") and r.kind == "diffusion-driven"]
    if not odd:
        return ""
    parts = ", ".join(f"{r.label} (drift-only ends {r.distance['drift_only'][-1] / r.distance['fp'][-1]:.1f}× worse)"
                      for r in odd)  # fmt: skip
    why = (" — a W3 row of an output the bottleneck does not carry is pinned near zero by a weak drift and spread "
           "by gradient noise, like the W1 entries of the minor inputs" if all(r.label.startswith("W3") for r in odd)
           else "")  # fmt: skip
    return f"Judged by the drift-dominated criteria but shaped by diffusion in this run: {parts}{why}."


def sweep_sentence(rows) -> str:
    """Where the failure map crosses the late goal, from the sweep's numbers."""
    from .fp_histograms import THRESHOLDS

    ok = [r for r in rows if "error" not in r]
    if not ok:
        return ""
    goal = THRESHOLDS["late_goal"]
    bad = [r for r in ok if r["fp_ratio_max"] > goal]
    diverged = [r for r in rows if "error" in r]
    text = (f"Over the sweep ({len(ok)} runs) the worst final FP distance stays within {goal:g} floors "
            + ("everywhere" if not bad else "except at " + ", ".join(
                f"η = {r['lr']:g}, B = {r['batch_size']} ({r['fp_ratio_max']:.1f} floors, η·λmax = "
                f"{_fmt(r['eta_lam_max'])})" for r in bad)))  # fmt: skip
    if diverged:
        text += f"; {len(diverged)} run(s) diverged"
    return text + "."


def _diag_cell(d: dict) -> str:
    """The FP-picture verdict of an entry's diagnostics with its two deciding numbers."""
    if "verdict" not in d:
        return "–"
    return (f"{d['verdict']} (drift disagreement {_fmt(d.get('drift_disagreement'))}, "
            f"U {_fmt(d.get('drift_uncertainty'))})")  # fmt: skip


def report_body(cfg: dict, res) -> str:
    """The report's sections before the verdict: setup, per-entry table, variants, cross-checks."""
    from .fp_histograms import criteria

    tr = cfg["train"]
    L = []
    L.append(
        f"Ensemble: {res.members} {cfg['model'].get('activation', 'tanh')} autoencoders "
        f"{cfg['data'].get('d', '?')} → {' → '.join(str(h) for h in cfg['model'].get('hidden', []))} → "
        f"{cfg['data'].get('d', '?')}, SGD η = {tr['lr']}, B = {tr['batch_size']} ({tr.get('sampling', 'iid')}), "
        f"{tr['steps']} steps, {res.t.size} snapshots up to t = η·step = {res.t[-1]:g}; seed {cfg['seed']}. "
        f"Split: {cfg['analysis']['split']} (estimate A, D on one half of the members, judge the other).\n"
    )
    if res.eta_lam_max is not None:
        e = np.median(res.eta_lam_max, axis=1)
        L.append(f"η·λmax(H) (median over probe members): start {e[0]:.3f}, max {e.max():.3f}, end {e[-1]:.3f} "
                 "(2 = edge of stability).\n")  # fmt: skip
    L.append("Distances are W1(prediction, judged half) / noise floor; a perfect prediction scores ≈ 1 on "
             "average and its maximum over the snapshots reaches 2–3. The diagnostics column is the verdict of "
             "`fpkit.predict`'s diagnostics (from the estimation half only): holds, doubtful or fails, with the "
             "relative difference of the mechanistic and Kramers-Moyal drifts and the drift uncertainty U "
             "(judged only for entries moved mainly by drift).\n")  # fmt: skip
    L.append("## Per entry\n")
    L.append("| entry | measured kind | FP max | FP median | FP last | frozen last | drift-only last | diffusion-only last "
             "| Kramers-Moyal last | KS max | JS max | judged by | held | diagnostics |")  # fmt: skip
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in res.entries:
        rt = r.distance
        km = rt.get("fp_kramers_moyal")
        km_last = float(km[np.isfinite(km)][-1]) if km is not None and np.isfinite(km).any() else None
        which, c = criteria(r)
        ratios = f"×{c['vs_frozen']:.1f} frozen" + (f", ×{c['vs_drift_only']:.1f} drift" if "vs_drift_only" in c else "")
        L.append(
            f"| {r.label} | {r.kind} | {_fmt(rt['fp'][1:].max())} | {_fmt(float(np.median(rt['fp'][1:])))} | "
            f"{_fmt(rt['fp'][-1])} | {_fmt(rt['frozen'][-1])} | {_fmt(rt['drift_only'][-1])} | "
            f"{_fmt(rt['diffusion_only'][-1])} | {_fmt(km_last)} | {_fmt(float(np.max(r.ks[1:])))} | "
            f"{_fmt(float(np.nanmax(r.js[1:])) if np.isfinite(r.js).any() else None)} | {which} | "
            f"{'yes' if c['pass'] else '**no**'} ({ratios}) | {_diag_cell(r.diagnostics)} |"
        )
    w1_entries = [r for r in res.entries if r.label.startswith("W1")]
    if w1_entries:
        keys = [k for k in w1_entries[0].distance if k == "fp" or (k.startswith("fp_") and k != "fp_kramers_moyal")]
        L.append("\n## Late-time W1/floor of W1 entries for every diffusion variant\n")
        L.append("Late = the last quarter of the snapshots (median there, and the last one).\n")
        L.append("| entry | " + " | ".join(k.replace("fp_", "").replace("fp", "standard") for k in keys) + " |")
        L.append("|---|" + "---|" * len(keys))
        q = max(1, res.t.size // 4)
        for r in w1_entries:
            cells = [f"{_fmt(float(np.median(r.distance[k][-q:])))} / {_fmt(r.distance[k][-1])}" for k in keys]
            L.append(f"| {r.label} | " + " | ".join(cells) + " |")
    lg = res.langevin
    if lg:
        v = lg["w1_over_floor"][1:]
        L.append(f"\n## Numerics cross-check: Langevin sampler vs FP solver\n\nSame estimated coefficients for "
                 f"{lg['label']}, {lg['n_paths']} paths: W1(FP density, paths)/floor max {v.max():.2f}, median "
                 f"{np.median(v):.2f} (≈ 1 means the two solvers agree to sampling error).\n")  # fmt: skip
    for s in res.svag:
        L.append(f"\n## SVAG l = {s['l']} ({s['members']} members): the FP prediction judged against the SDE\n")
        L.append("| entry | max | median | last | same against SGD (last) |")
        L.append("|---|---|---|---|---|")
        by = {r.label: r for r in res.entries}
        for lab, v in s["w1_over_floor"].items():
            L.append(f"| {lab} | {_fmt(v[1:].max())} | {_fmt(float(np.median(v[1:])))} | {_fmt(v[-1])} | "
                     f"{_fmt(by[lab].distance['fp'][-1])} |")  # fmt: skip
    out = res.outputs
    if out:
        L.append("\n## Output distributions\n")
        L.append(f"Reconstruction errors on held-out inputs. Networks whose W2 entries are quantile-mapped onto the "
                 f"predicted marginals (each member keeps its rank, so its correlations with its other weights "
                 f"survive): W1/floor {out['w1_quantile_over_floor']:.2f}, KS {out['ks_quantile']:.3f} against the "
                 "trained networks (the same members, so values well below 1 are possible: the two-sample floor is "
                 "only a scale here). ")
        L.append(f"Networks with W2 entries drawn independently from the predicted "
                 f"marginals vs the trained networks: W1/floor {out['w1_pred_over_floor']:.2f}, KS "
                 f"{out['ks_pred']:.3f}; with W2 entries drawn from the judged members' own marginals (the best a "
                 f"1-D marginal prediction can do, correlations lost): {out['w1_shuffled_over_floor']:.2f}, KS "
                 f"{out['ks_shuffled']:.3f}. Output coordinates of the quantile-mapped networks on one held-out input "
                 f"(W1/floor): "
                 + ", ".join(f"{k} {v:.2f}" for k, v in out["output_coords_w1_over_floor"].items()) + ".\n")  # fmt: skip
        if "copula" in out:
            coords = out["copula_coords_w1_over_floor"]
            L.append(f"Out of sample with the dependence between weights: the estimation half's networks with their W2 "
                     f"entries quantile-mapped onto the predicted marginals (copula from the estimation half, "
                     f"marginals from the FP) against the judged networks: reconstruction error W1/floor "
                     f"{out['w1_copula_over_floor']:.2f} (KS {out['ks_copula']:.3f}); output coordinates on one "
                     f"held-out input: max {max(coords.values()):.2f} over {len(coords)} (floor: two independent "
                     "samples of these sizes).\n")  # fmt: skip
    pair = res.pair
    if pair:
        m = [v[1:] for v in pair.marginal_distance]
        L.append(f"\n## 2-D joint prediction of {pair.labels[0]} and {pair.labels[1]}\n\n"
                 f"Marginals of the 2-D FP solution (vector drift, full 2 × 2 D): W1/floor max {m[0].max():.2f} and "
                 f"{m[1].max():.2f}. Joint L1 distance at the end {pair.l1_joint[-1]:.3f} (frozen: "
                 f"{pair.l1_joint_frozen[-1]:.3f}; part of it is histogram noise on the 2-D grid).\n")  # fmt: skip
    elif res.pair_skipped:
        L.append(f"\n2-D pair skipped: {res.pair_skipped}\n")
    if res.sweep:
        L.append("\n## Failure map: final W1/floor over η and B\n")
        L.append("| η | B | η·λmax | noise/signal | worst FP last | entries (FP / drift-only / frozen) |")
        L.append("|---|---|---|---|---|---|")
        for r in res.sweep:
            if "error" in r:
                L.append(f"| {r['lr']} | {r['batch_size']} | diverged | – | – | {r['error'][:60]} |")
                continue
            ent = "; ".join(f"{k}: {v['fp']:.2f}/{v['drift_only']:.2f}/{v['frozen']:.2f}" for k, v in r["entries"].items())
            L.append(f"| {r['lr']} | {r['batch_size']} | {_fmt(r['eta_lam_max'], 3)} | {_fmt(r['noise_to_signal'], 3)} | "
                     f"{_fmt(r['fp_ratio_max'])} | {ent} |")  # fmt: skip
    L.append("\nSee distances.png for where along training each prediction holds.\n")
    if res.suite:
        from .. import fp_suite

        L.append("\n## Solver self-check (exact references)\n\n" + fp_suite.suite_markdown(res.suite) + "\n")
    return "\n".join(L)


def write_figures(res, out_dir) -> dict:
    out = Path(out_dir)
    return {
        "predicted vs empirical density over time": fig_heatmaps(res, out / "heatmaps.png"),
        "overlays at four snapshots": fig_overlays(res, out / "overlays.png"),
        "distance / noise floor vs time with baselines": fig_distances(res, out / "distances.png"),
        "estimated drift and diffusion": fig_coefficients(res, out / "coefficients.png"),
        "output distributions": fig_outputs(res, out / "outputs.png"),
        "2-D joint density": fig_pair(res, out / "pair.png"),
        "failure map over η and B": fig_failure_map(res, out / "failure_map.png"),
    }
