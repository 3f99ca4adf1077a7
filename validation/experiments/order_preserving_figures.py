"""The ``order-preserving`` experiment's figures and report sections (they only format numbers that
``order_preserving`` computed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from matplotlib.ticker import NullFormatter

from fpkit.plotting import _pyplot, save_figure

from .order_preserving import _pm, control_effects, final_metrics, mean_se
from .training_response_figures import store_prediction_summary

_METRIC_LABEL = {"OPT": "OPT fraction of hidden units", "r_sample": "input-space radius ‖δx‖ (median)",
                 "r_weight": "weight-space radius ‖δθ‖ (median)"}  # fmt: skip
_VAR_LABEL = {"depth": "depth (hidden layers)", "width": "width (units per layer)", "lr": "learning rate η",
              "batch_size": "batch size B (GD = N)"}  # fmt: skip


def _band(ax, t, v, label, **kw):
    """Member mean ± standard error of v (S, M) over t."""
    m = np.nanmean(v, 1)
    se = np.nanstd(v, 1, ddof=1) / np.sqrt(np.sum(np.isfinite(v), 1).clip(1))
    (line,) = ax.plot(t, m, label=label, **kw)
    ax.fill_between(t, m - se, m + se, color=line.get_color(), alpha=0.2)


def fig_base(res, path):
    plt = _pyplot()
    sn = res.controls[0].snaps
    fig, ax = plt.subplots(1, 4, figsize=(20, 4.4))
    t = np.maximum(sn.t, sn.t[1] / 3)  # t = 0 shown at the left edge of a log axis
    for ell in range(sn.opt.shape[2]):
        _band(ax[0], t, sn.opt[:, :, ell], f"OPT, layer {ell + 1}")
        _band(ax[0], t, sn.dead[:, :, ell], f"dead, layer {ell + 1}", ls=":")
    ax[0].set(xscale="log", xlabel="training time t = η·step", ylabel="fraction of hidden units",
              title="OPT and dead units (base run)")
    ax[0].xaxis.set_minor_formatter(NullFormatter())
    ax[0].legend(fontsize=8)
    for s, c in zip([0, sn.t.size // 2, sn.t.size - 1], ["C0", "C1", "C3"]):
        ax[1].hist(sn.r_sample[s].ravel(), bins=40, histtype="step", density=True, color=c,
                   label=f"t = {sn.t[s]:.3g}")
        if np.any(sn.r_weight[s] > 0):  # 0 everywhere while the loss is above τ (early): nothing to show
            ax[2].hist(sn.r_weight[s].ravel(), bins=30, histtype="step", density=True, color=c,
                       label=f"t = {sn.t[s]:.3g}")
    ax[1].set(xlabel="sample-space radius ‖δx‖ (all samples, members)", ylabel="density",
              title="attraction basins in input space")
    ax[2].set(xlabel="weight-space radius ‖δθ‖ (all directions, members)", ylabel="density",
              title=f"basins in weight space (L < τ = {res.threshold:.3g})")
    ax[1].legend()
    ax[2].legend()
    _band(ax[3], t, sn.acc, "train accuracy")
    _band(ax[3], t, sn.loss / sn.loss[0].mean(), "train loss / initial")
    ax[3].set(xscale="log", xlabel="training time t", title="training progress (base run)")
    ax[3].xaxis.set_minor_formatter(NullFormatter())
    ax[3].legend()
    return save_figure(fig, path)


def fig_controls(res, path):
    plt = _pyplot()
    eff = control_effects(res)
    vars_ = [v for v in ("depth", "width", "lr", "batch_size") if any(e["variable"] == v for e in eff)]
    if not vars_:
        return None
    fig, ax = plt.subplots(3, len(vars_), figsize=(4.6 * len(vars_), 11), squeeze=False)
    N = None
    for j, var in enumerate(vars_):
        for i, metric in enumerate(("OPT", "r_sample", "r_weight")):
            e = next(e for e in eff if e["variable"] == var and e["metric"] == metric)
            xs = [v for v, _ in e["values"]]
            if var == "batch_size":
                N = N or res.extra.get("n_train", 0) or max(xs) * 4
                xs = [N if v == 0 else v for v in xs]
            m = [ms[0] for _, ms in e["values"]]
            se = [ms[1] for _, ms in e["values"]]
            ax[i, j].errorbar(xs, m, yerr=se, fmt="o-", capsize=3)
            ax[i, j].set(xlabel=_VAR_LABEL[var], ylabel=_METRIC_LABEL[metric] if j == 0 else None,
                         xscale="log" if var in ("lr", "batch_size", "width") else "linear")
            ax[i, j].set_xticks(xs, [f"{v:g}" for v in xs])  # the values tried, no log-axis clutter
            ax[i, j].xaxis.set_minor_formatter(NullFormatter())
            if i == 0:
                ax[i, j].set_title(f"control variable: {_VAR_LABEL[var]}")
    fig.suptitle("final metrics against the control variables (member mean ± SE; others at the base values)")
    return save_figure(fig, path)


def fig_grokking(res, path):
    plt = _pyplot()
    fig, ax = plt.subplots(len(res.grok), 4, figsize=(20, 4.4 * len(res.grok)), squeeze=False)
    for i, g in enumerate(res.grok):
        sn = g.snaps
        tag = "GD" if g.optimizer == "gd" else f"SGD B={g.batch_size}"
        _band(ax[i, 0], sn.t, sn.acc, "train accuracy")
        _band(ax[i, 0], sn.t, sn.test_acc, "test accuracy")
        for tm, tg in zip(g.t_mem, g.t_gen):
            ax[i, 0].axvline(tm, color="C0", lw=0.5, alpha=0.5)
            if np.isfinite(tg):
                ax[i, 0].axvline(tg, color="C1", lw=0.5, alpha=0.5)
        ax[i, 0].set(xlabel="training time t = η·step", ylabel="accuracy",
                     title=f"grokking, {tag}\nthin lines: t_mem (blue), t_gen (orange)")
        ax[i, 0].legend()
        _band(ax[i, 1], sn.t, sn.opt.mean(-1), "OPT fraction")
        _band(ax[i, 1], sn.t, sn.dead.mean(-1), "dead fraction", ls=":")
        ax[i, 1].set(xlabel="training time t", ylabel="fraction of hidden units",
                     title=f"transformation modes, {tag}")
        ax[i, 1].legend()
        _band(ax[i, 2], sn.t, np.median(sn.r_sample, -1), "train samples")
        _band(ax[i, 2], sn.t, np.median(sn.r_test, -1), "test samples")
        ax[i, 2].set(xlabel="training time t", ylabel="input-space radius ‖δx‖ (median)",
                     title=f"input-space basins, {tag}")
        ax[i, 2].legend()
        _band(ax[i, 3], sn.t, np.median(sn.r_weight, -1), "weight-space radius")
        ax[i, 3].set(xlabel="training time t", ylabel="weight-space radius ‖δθ‖ (median)",
                     title=f"weight-space basins, {tag}\n(train loss < τ = {res.grok_threshold:.3g})")
    return save_figure(fig, path)


def write_figures(res, out_dir) -> dict:
    out = Path(out_dir)
    figs = {"base run: OPT/dead units, basin radii in input and weight space, training": fig_base(res, out / "base.png")}
    p = fig_controls(res, out / "controls.png")
    if p is not None:
        figs["control variables: depth, width, η, B against the final metrics"] = p
    if res.grok:
        figs["grokking: accuracy, transformation modes and basins over time"] = fig_grokking(res, out / "grokking.png")
    if res.fp:
        from .training_response_figures import fig_fp

        figs["Fokker-Planck predictions of weight entries of the SGD control runs, out of sample"] = \
            fig_fp(None, res, out / "fp.png")
    return figs


def report_body(cfg: dict, res) -> str:
    c, b = cfg["controls"], cfg["basins"]
    L = ["## Definitions\n",
         "- **OPT / NPT**: a hidden ReLU unit is OPT when it is active (z > 0) on every training sample, NPT "
         "otherwise; *dead* NPT units are inactive on every sample.",
         f"- **sample-space radius**: the smallest distance at which the prediction of a training sample changes, "
         f"searched along {b['competitors']} DeepFool rays, {b['random_directions']} random rays and "
         f"{b.get('refine', 4)} boundary-walk steps (an upper bound; exact for a linear classifier, tested), "
         f"capped at {b['input_r_max']:g}.",
         f"- **weight-space radius**: along {b['weight_directions']} random unit directions in parameter space, "
         f"the distance at which the training loss first reaches τ = {b['loss_fraction']:g} × the constant "
         f"predictor's loss (τ = {res.threshold:.4g} here), capped at {b['weight_r_max']:g}.\n",
         "## Control variables (Gaussian mixture, ReLU MLPs)\n",
         f"{c['clusters']} clusters × {c['per_cluster']} points in d = {c['d']}, std {c['std']:g}, MSE to one-hot "
         f"targets, {c['members']} members, {c['steps']} steps per run; base depth {c['depth']}, width "
         f"{c['width']}, η = {c['lr']:g}, B = {c['batch_size'] or 'full'}.\n",
         "| run | depth | width | η | B | OPT fraction | dead fraction | sample radius | censored | weight radius | "
         "train accuracy |", "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in res.controls:
        f = final_metrics(r.snaps)
        cens = 1 - r.snaps.r_sample_found[-1].mean()
        L.append(f"| {r.snaps.label} | {r.depth} | {r.width} | {r.lr:g} | {r.batch_size or 'full'} | "
                 f"{_pm(*mean_se(f['OPT']))} | {_pm(*mean_se(f['dead']))} | {_pm(*mean_se(f['r_sample']))} | "
                 f"{cens:.2f} | {_pm(*mean_se(f['r_weight']))} | {_pm(*mean_se(f['acc']))} |")  # fmt: skip
    L.append("\nAt the last snapshot, member mean ± standard error; radii are per-member medians (over samples / "
             "directions).\n")
    eff = control_effects(res)
    if eff:
        L += ["| control | metric | low → high | at low | at high | change (z) |", "|---|---|---|---|---|---|"]
        for e in eff:
            z = e["change"] / e["se"] if e["se"] > 0 else float("nan")
            L.append(f"| {e['variable']} | {e['metric']} | {e['low']:g} → {e['high']:g} | {_pm(*e['at_low'])} | "
                     f"{_pm(*e['at_high'])} | {e['change']:+.3g} ({z:+.1f}) |")
    if res.grok:
        g0 = cfg["grokking"]
        L += ["\n## Grokking: a + b mod p\n",
              f"p = {g0['p']}, {g0['train_fraction']:g} of the p² pairs for training, one-hot inputs (2p) and "
              f"targets (p), MSE, one hidden ReLU layer of {g0['width']}, η = {g0['lr']:g}, weight decay "
              f"{g0['weight_decay']:g}, init scale {g0['init_scale']:g}, {g0['steps']} steps, {g0['members']} "
              f"members per optimiser. t_mem: first snapshot with train accuracy ≥ {g0['mem_acc']:g}; t_gen: test "
              f"accuracy ≥ {g0['gen_acc']:g}.\n",
              "| optimiser | generalised | t_mem | t_gen | final train acc | final test acc |", "|---|---|---|---|---|---|"]
        for g in res.grok:
            tag = "GD" if g.optimizer == "gd" else f"SGD B={g.batch_size}"
            ok = np.isfinite(g.t_gen)
            L.append(f"| {tag} | {int(ok.sum())}/{ok.size} | {_pm(*mean_se(g.t_mem))} | {_pm(*mean_se(g.t_gen))} | "
                     f"{_pm(*mean_se(g.snaps.acc[-1]))} | {_pm(*mean_se(g.snaps.test_acc[-1]))} |")
        L += ["\nMetrics at each member's t_mem and t_gen (members that generalised; paired differences):\n",
              "| optimiser | metric | at t_mem | at t_gen | change |", "|---|---|---|---|---|"]
        for g in res.grok:
            tag = "GD" if g.optimizer == "gd" else f"SGD B={g.batch_size}"
            ok = np.isfinite(g.t_mem) & np.isfinite(g.t_gen)
            for k in g.at_mem:
                L.append(f"| {tag} | {k} | {_pm(*mean_se(g.at_mem[k][ok]))} | {_pm(*mean_se(g.at_gen[k][ok]))} | "
                         f"{_pm(*mean_se((g.at_gen[k] - g.at_mem[k])[ok]))} |")
        L.append(f"\nWith one-hot inputs a hidden unit's pre-activation on (a, b) is W[:, a] + W[:, p + b] + b₁: it is OPT "
                 f"only if it is positive on every training pair. The weight-space radius is 0 while the training loss "
                 f"is above τ = {res.grok_threshold:.4g}; compare the train loss at t_mem above with τ before reading its "
                 f"growth as a wider basin.")
    else:
        L.append("\nGrokking was not run (`grokking.enabled = false`; enable it with a config file, see the "
                 "experiment's docstring).")
    if res.fp:
        L += fp_report(cfg, res)
    return "\n".join(L) + "\n"


def fp_report(cfg: dict, res) -> list:
    """The FP angle's section: one row per prediction (route asked → taken), its W1/floor, diagnostics verdict and
    reasons; one line per run with both claims."""
    from .order_preserving import THRESHOLDS
    from .training_response import fp_misses, worst

    f, th = cfg["fp"], THRESHOLDS["fp_miss"]
    L = ["\n## Fokker-Planck prediction of the weight histograms (SGD runs)\n",
         f"Wherever the weights move by minibatch noise (the base run and the η and B changes with 0 < B < N) the run "
         f"has {max(cfg['controls']['members'], f['members'])} members, of which census and basins use the first "
         f"{cfg['controls']['members']}. fpkit.predict on {', '.join(f['entries'])}, route {f['route']}: a seeded half "
         f"of the members estimates A and D, the other half is judged (W1 distance over its noise floor; worst and "
         f"median over the snapshots after t = 0; 'frozen': the initial histogram kept, i.e. how far the weights "
         f"moved). A prediction misses beyond {th:g} floors; the diagnostics use the estimation half only.\n",
         "| run | entry | route | FP worst | FP median | frozen worst | verdict | reasons |",
         "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for key, preds in res.fp.items():
        for kind in ("route", "mechanistic"):
            for lab, pr in preds.get(kind, {}).items():
                g = pr.diagnostics
                asked = "mechanistic" if kind == "mechanistic" else f["route"]
                med = np.nanmedian(np.asarray(pr.distance["fp"], float)[1:])
                L.append(f"| {key[0]} | {lab} | {asked} → {pr.options.get('route')} | {worst(pr):.3g} | {med:.3g} | "
                         f"{worst(pr, 'frozen'):.3g} | {g.get('verdict', '–')} | "
                         f"{'; '.join(g.get('reasons') or []) or '–'} |")  # fmt: skip
    L.append("")
    for key, preds in res.fp.items():
        w = max(worst(pr) for pr in preds["route"].values())
        misses, silent = fp_misses(preds)
        n_drop = res.extra.get("fp_dropped", {}).get(key[0], 0)
        if n_drop:
            L.append(f"- {key[0]}: {n_drop} of {max(cfg['controls']['members'], f['members'])} members diverged "
                     f"(none of the {cfg['controls']['members']} measured) and are left out of the prediction.")
        L.append(f"- {key[0]}: FP prediction of the weight histograms {'held' if w <= th else 'not held'} (worst "
                 f"{w:.3g} floors over {len(preds['route'])} entries); {len(misses)} prediction(s) beyond {th:g} "
                 f"floors, {len(misses) - len(silent)} flagged doubtful/fails: no silent FP failure "
                 f"{'held' if not silent else 'not held'}.")  # fmt: skip
        fr = {lab: worst(pr, "frozen") for lab, pr in preds["route"].items()}
        lo, hi = min(fr, key=fr.get), max(fr, key=fr.get)
        L.append(f"  How far the weights moved: frozen worst {fr[lo]:.3g} floors ({lo}) to {fr[hi]:.3g} ({hi}); "
                 f"an entry whose frozen worst is ≤ {th:g} hardly left its initial histogram, so a prediction within "
                 f"{th:g} floors of it tests little of the dynamics.")  # fmt: skip
    return L


def save_fp(group, res) -> None:
    """The FP predictions' summaries under fp/<run>/<route|mechanistic>/<entry>: route taken, diagnostics verdict
    and reasons, t, the judged half's W1 floor and every W1/floor series."""
    for key, preds in res.fp.items():
        for kind, part in preds.items():
            for lab, pr in part.items():
                store_prediction_summary(group.require_group(f"fp/{key[0].replace(' ', '')}/{kind}/{lab}"), pr)
