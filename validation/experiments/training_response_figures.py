"""Figures, report and results layout of the ``training-response`` experiment (``training_response``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpkit.experiments import write_tree
from fpkit.plotting import _pyplot, save_figure

METHOD_STYLE = {"gd": ("C0", "GD"), "sgd": ("C3", "SGD"), "sgld": ("C2", "SGLD")}


def _acts(res):
    return list(dict.fromkeys(st.activation for st in res.settings))


def _style(method):
    return METHOD_STYLE.get(method, ("k", method))


# ------------------------------------------------------------------------------------------- figures
def fig_aging(cfg, res, path):
    """A(t_w) per activation (panels) and method (colours), ± SE, with the power-law fit over the window."""
    from .training_response import aging

    plt = _pyplot()
    acts = _acts(res)
    fig, axes = plt.subplots(1, len(acts), figsize=(4.2 * len(acts), 3.6), squeeze=False)
    for j, act in enumerate(acts):
        ax = axes[0, j]
        for st in (s for s in res.settings if s.activation == act):
            col, name = _style(st.method)
            ag = aging(cfg, st, seed=cfg["seed"])
            ax.errorbar(ag["t"], ag["A"], yerr=ag["A_se"], fmt="o", ms=3, color=col,
                        label=f"{name}: a = {ag['a']:.3f} [{ag['a_ci'][0]:.3f}, {ag['a_ci'][1]:.3f}] ({ag['model']})")  # fmt: skip
            fit = np.exp(np.polyval(np.polyfit(np.log(ag["t"]), np.log(np.abs(ag["A"])), 1), np.log(ag["t"])))
            ax.plot(ag["t"], fit, "-", color=col, lw=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        from matplotlib.ticker import NullFormatter, ScalarFormatter

        ax.yaxis.set_major_formatter(ScalarFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())  # plain numbers: the range is narrow
        ax.set_xlabel("waiting time t_w = η·step")
        ax.set_ylabel("response amplitude A(t_w) = ⟨R(x_p, x_p)⟩")
        ax.set_title(f"{act} network: aging of the one-step response (± SE over members)", fontsize=9)
        ax.legend(fontsize=6.5)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_collapse(cfg, res, path):
    """Top: shape distance d(t_w) to the last t_w per setting; bottom: the normalised kernel R̂(x, x_p) of the
    first probe at three waiting times for each activation's SGD (or first) ensemble."""
    from .training_response import THRESHOLDS, collapse, shapes

    plt = _pyplot()
    acts = _acts(res)
    fig, axes = plt.subplots(2, len(acts), figsize=(4.2 * len(acts), 6.4), squeeze=False)
    for j, act in enumerate(acts):
        ax = axes[0, j]
        sts = [s for s in res.settings if s.activation == act]
        for st in sts:
            col, name = _style(st.method)
            co = collapse(cfg, st, seed=cfg["seed"])
            ax.plot(co["t"][:-1], co["d"][:-1], "o-", ms=3, color=col, label=f"{name}: max d = {co['max']:.3f}")
        ax.axhline(THRESHOLDS["collapse"], color="k", ls=":", lw=1, label=f"threshold {THRESHOLDS['collapse']:g}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("waiting time t_w")
        ax.set_ylabel("shape distance d(t_w) to the last t_w")
        ax.set_title(f"{act}: collapse of the normalised response kernel", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        st = next((s for s in sts if s.method == "sgd"), sts[0])
        sh = shapes(st.response)
        picks = sorted({1, st.t.size // 2, st.t.size - 1})
        for k, col in zip(picks, ("C1", "C4", "k")):
            ax.plot(np.arange(sh.shape[1]), sh[k][:, 0], "o-", ms=3, color=col, label=f"t_w = {st.t[k]:.3g}")
        ax.set_xlabel("response input x (index)")
        ax.set_ylabel("R̂(x, x_p) = R̄ / A (first probe)")
        ax.set_title(f"{act} {st.method.upper()}: normalised kernel at three t_w", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_rank(cfg, res, path):
    """Top: effective rank PR against the training loss (member means along training); bottom: fragility
    against PR at the last t_w (members)."""
    from .training_response import rank_fragility

    plt = _pyplot()
    acts = _acts(res)
    fig, axes = plt.subplots(2, len(acts), figsize=(4.2 * len(acts), 6.6), squeeze=False)
    rf = rank_fragility(res.settings)
    for j, act in enumerate(acts):
        ax = axes[0, j]
        for st in (s for s in res.settings if s.activation == act):
            col, name = _style(st.method)
            ax.plot(st.loss.mean(axis=1), st.rank.mean(axis=1), "o-", ms=3, color=col, label=name)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("training loss (member mean; training runs right to left)")
        ax.set_ylabel("effective rank PR of the last hidden layer")
        ax.set_title(f"{act}: feature rank along training", fontsize=9)
        ax.legend(fontsize=7)
        ax = axes[1, j]
        for st in (s for s in res.settings if s.activation == act):
            col, name = _style(st.method)
            ax.plot(st.rank[-1], st.fragility[-1], ".", ms=3, color=col, alpha=0.6,
                    label=f"{name}: r = {rf['per'].get(st.label, np.nan):.2f}")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("effective rank PR (last t_w)")
        ax.set_ylabel("fragility ΔL under |δθ| = ρ")
        ax.set_title(f"{act}: fragility against rank (members)", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_order(cfg, res, path):
    """Measured order of δf − η_pΘ in η_p per setting (median and 10–90 % of members), against the exact 2."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    for i, st in enumerate(res.settings):
        q = st.order[np.isfinite(st.order)]
        col, _ = _style(st.method)
        lo, med, hi = np.percentile(q, [10, 50, 90]) if q.size else (np.nan,) * 3
        ax.errorbar([i], [med], yerr=[[med - lo], [hi - med]], fmt="o", color=col)
    ax.axhline(2.0, color="k", ls=":", lw=1, label="exact order 2")
    ax.set_xticks(range(len(res.settings)))
    ax.set_xticklabels([st.label for st in res.settings], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("order q of δf − η_p·Θ = O(η_p^q)")
    ax.set_title("one-step response vs η_p·NTK (η_p and η_p/2; median, 10–90 % of members)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def fig_fp(cfg, res, path):
    """Per predicted setting (activations: pairs of rows, methods: columns): the judged half's histogram of the
    worst entry at three snapshots with the FP prediction on the same bins; below it, W1/floor against t of every
    entry (SGD/SGLD: FP, GD: drift-only; frozen baseline dotted) with the miss threshold."""
    from .training_response import THRESHOLDS, worst

    if not res.fp:
        return None
    plt = _pyplot()
    acts = list(dict.fromkeys(k[0] for k in res.fp))
    methods = list(dict.fromkeys(k[1] for k in res.fp))
    fig, axes = plt.subplots(2 * len(acts), len(methods), figsize=(3.6 * len(methods), 3.0 * 2 * len(acts)),
                             squeeze=False)  # fmt: skip
    for ax in axes.flat:
        ax.set_visible(False)
    for key in res.fp:
        i, j = 2 * acts.index(key[0]), methods.index(key[1])
        axes[i, j].set_visible(True)
        axes[i + 1, j].set_visible(True)
        preds = res.fp[key]["route"]
        dist = "drift_only" if key[1] == "gd" else "fp"
        lab = max(preds, key=lambda k: np.nan_to_num(worst(preds[k], dist), nan=np.inf))
        p = preds[lab]
        ax = axes[i, j]
        bins = np.linspace(p.grid.edges[0][0], p.grid.edges[0][-1], 31)
        for s, col in zip((0, p.t.size // 2, p.t.size - 1), ("C0", "C1", "C3")):
            ax.stairs(np.histogram(p.judged[s], bins, density=True)[0], bins, color=col, lw=1.2,
                      label=f"judged, t = {p.t[s]:.3g}")  # fmt: skip
            if s > 0 and np.isfinite(p.density[s]).all():  # the prediction on the same bins (its p0 is a histogram)
                cdf = np.concatenate([[0.0], np.cumsum(p.density[s] * np.diff(p.grid.edges[0]))])
                ax.stairs(np.diff(np.interp(bins, p.grid.edges[0], cdf)) / np.diff(bins), bins, color=col, ls="--", lw=1.2)
        ax.set_xlabel(f"{lab} (worst entry)")
        ax.set_ylabel("density")
        ax.set_title(f"{' '.join(key)}: {p.options.get('route')} (dashed: FP)", fontsize=8)
        ax.legend(fontsize=6)
        ax = axes[i + 1, j]
        for c, (name, pr) in enumerate(preds.items()):
            ax.plot(pr.t[1:], pr.distance[dist][1:], color=f"C{c}", label=f"{name} ({dist.replace('_', '-')})")
            ax.plot(pr.t[1:], pr.distance["frozen"][1:], color=f"C{c}", ls=":", lw=0.9)
        ax.axhline(THRESHOLDS["fp_miss"], color="k", lw=0.8, ls="--", label="miss threshold")
        ax.axhline(1.0, color="k", lw=0.5, ls=":")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("t = η·step")
        ax.set_ylabel("W1 / noise floor (dotted: frozen)")
        ax.legend(fontsize=6)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figures(cfg, res, out) -> dict:
    out = Path(out)
    figs = {
        "aging of the response amplitude A(t_w) with power-law fits, per activation and method": fig_aging(cfg, res, out / "aging.png"),
        "collapse of the normalised response kernels across t_w": fig_collapse(cfg, res, out / "collapse.png"),
        "effective rank against loss, and fragility against rank": fig_rank(cfg, res, out / "rank_fragility.png"),
        "order of the one-step response's difference from η_p·NTK": fig_order(cfg, res, out / "order.png"),
    }  # fmt: skip
    if res.fp:
        figs["Fokker-Planck predictions of weight entries (SGD/SGLD) and drift-only transport (GD), out of sample"] = \
            fig_fp(cfg, res, out / "fp.png")
    return figs


# --------------------------------------------------------------------------------------------- report
def _f(x, nd=3):
    return "–" if x is None or not np.isfinite(x) else f"{x:.{nd}g}"


def report_body(cfg, res) -> str:
    from .training_response import aging, collapse, rank_at_equal_loss, rank_fragility

    p, m, tr, pr = cfg["problem"], cfg["model"], cfg["train"], cfg["probe"]
    L = [f"Teacher-student regression: x ~ N(0, I_{p['d']}), y = tanh teacher of width {p['teacher_width']} + "
         f"σε (σ = {p['noise']:g}), P = {p['n_train']} fixed samples. Students: MLPs, L = {m['depth']}, N = {m['width']}, "
         f"standard parameterisation, {tr['members']} members each; η = {tr['lr']:g}, {tr['steps']} steps; SGD B = "
         f"{tr['batch_size']} (iid), SGLD full-batch at T = {tr['temperature']:g}. Probe step η_p = {pr['eta']:g} on "
         f"{p['n_probes']} probe inputs, response on {p['n_inputs']} inputs; fragility: {pr['n_perturb']} random "
         f"directions of norm {pr['fragility_eps']:g}·√P_w. Window of the fits: t_w ≥ {pr['fit_from']} steps. "
         f"Intervals: 95 %, bootstrap over members ({pr['n_boot']} resamples) unless said.\n"]  # fmt: skip
    L.append("## Exact references\n")
    L.append(f"One-layer linear model f = w·x (SGD, {res.linear_t.size} waiting times up to t = {res.linear_t[-1]:.3g}): "
             f"max |R − x·x′| / max |x·x′| = {np.max(res.linear_error):.2e}: the response kernel is x·x′ and constant "
             "in t_w, as it must be for a model linear in its weights.\n")  # fmt: skip
    L.append("Order of δf − η_p·Θ in η_p (from the residuals at η_p and η_p/2; exact: 2):\n")
    L.append("| setting | median order | 10 %–90 % of members | waiting times |")
    L.append("|---|---|---|---|")
    for st in res.settings:
        q = st.order[np.isfinite(st.order)]
        lo, med, hi = np.percentile(q, [10, 50, 90]) if q.size else (np.nan,) * 3
        L.append(f"| {st.label} | {_f(med, 4)} | {_f(lo, 3)}–{_f(hi, 3)} | {', '.join(f'{t:.3g}' for t in st.order_t)} |")
    L.append("\n## Aging of the response amplitude\n")
    from .training_response import THRESHOLDS

    L.append("A(t_w) = ensemble mean of the probes' self-response. Fit log A = c − a log t_w in the window; c₂: "
             "curvature of a quadratic in log t_w; span: ln(max A / min A) in the window. Model: constant (span's upper "
             f"bound ≤ ln(1 + {THRESHOLDS['constant_span']:g})), power law (otherwise, when c₂'s interval contains 0), "
             "neither (A changes, but curved in log-log).\n")
    L.append("| setting | A(first) ± SE | A(last) ± SE | span (95 % upper) | a | a 95 % | c₂ 95 % | model |")
    L.append("|---|---|---|---|---|---|---|---|")
    models = {}
    for st in res.settings:
        ag = aging(cfg, st, seed=cfg["seed"])
        models[st.label] = ag["model"]
        L.append(f"| {st.label} | {ag['A'][0]:.4g} ± {ag['A_se'][0]:.2g} | {ag['A'][-1]:.4g} ± {ag['A_se'][-1]:.2g} | "
                 f"{ag['span']:.3f} ({ag['span_hi']:.3f}) | {ag['a']:.4f} | [{ag['a_ci'][0]:.4f}, {ag['a_ci'][1]:.4f}] | [{ag['c2_ci'][0]:.3g}, {ag['c2_ci'][1]:.3g}] | "
                 f"{ag['model']} |")  # fmt: skip
    counts = {k: sum(v == k for v in models.values()) for k in ("constant", "power law", "neither")}
    L.append(f"\nOf {len(models)} settings, {counts['power law']} age as a power law, {counts['constant']} stay constant "
             f"and {counts['neither']} change but not as a power law: power-law aging "
             f"{'held for all' if counts['power law'] == len(models) else 'did not hold for all settings'}.\n")  # fmt: skip
    L.append("## Collapse of the normalised kernel shapes\n")
    L.append("d(t_w) = ‖R̂(t_w) − R̂(t_last)‖_F / ‖R̂(t_last)‖_F, R̂ = R̄/A; the largest d in the window, against the "
             "largest relative change of A in the same window and d between t = 0 and the last t_w.\n")
    L.append("| setting | max d (window) | 95 % | max \\|A/A_last − 1\\| | d(0, last) | collapses |")
    L.append("|---|---|---|---|---|---|")
    for st in res.settings:
        co = collapse(cfg, st, seed=cfg["seed"])
        L.append(f"| {st.label} | {co['max']:.4f} | [{co['ci'][0]:.4f}, {co['ci'][1]:.4f}] | {co['amp_change']:.3f} | "
                 f"{co['d_init']:.3f} | {'yes' if co['ci'][1] <= THRESHOLDS['collapse'] else 'no'} |")  # fmt: skip
    L.append("\n## Effective rank at equal loss (SGD, SGLD vs GD)\n")
    L.append("Matched on the member-mean training loss: the lowest loss that both ensembles reach; PR interpolated "
             "in log loss at each ensemble's first crossing.\n")
    L.append("| activation | method | matched loss | PR GD | PR method | ΔPR | 95 % | lower than GD |")
    L.append("|---|---|---|---|---|---|---|---|")
    by = {(st.activation, st.method): st for st in res.settings}
    for act in m["activations"]:
        for other in ("sgd", "sgld"):
            if (act, "gd") in by and (act, other) in by:
                rk = rank_at_equal_loss(by[(act, "gd")], by[(act, other)], pr["n_boot"], cfg["seed"])
                L.append(f"| {act} | {other} | {rk['target_loss']:.4g} | {_f(rk['pr_gd'], 4)} | {_f(rk['pr_other'], 4)} | "
                         f"{_f(rk['delta'], 3)} | [{_f(rk['ci'][0], 3)}, {_f(rk['ci'][1], 3)}] | "
                         f"{'yes' if rk['ci'][1] < 0 else 'no'} |")  # fmt: skip
    rf = rank_fragility(res.settings)
    L.append("\n## Rank and fragility\n")
    L.append(f"Pooled within-setting correlation of PR and fragility at the last t_w: r = {_f(rf['r'], 3)} "
             f"(95 % [{_f(rf['ci'][0], 3)}, {_f(rf['ci'][1], 3)}], {rf['n']} members); correlation of the "
             f"{len(res.settings)} settings' means: {_f(rf['means_r'], 3)}. Lower rank goes with higher fragility: "
             f"{'held' if rf['ci'][1] < 0 else 'did not hold'}.\n")  # fmt: skip
    L.append("| setting | r (members) | PR (last, mean) | fragility (last, mean) | loss (last, mean) |")
    L.append("|---|---|---|---|---|")
    for st in res.settings:
        L.append(f"| {st.label} | {_f(rf['per'].get(st.label, np.nan), 3)} | {st.rank[-1].mean():.4g} | "
                 f"{st.fragility[-1].mean():.4g} | {st.loss[-1].mean():.4g} |")  # fmt: skip
    L.append("")
    if res.fp:
        L += fp_report(cfg, res)
    return "\n".join(L)


def fp_report(cfg, res) -> list:
    """The FP angle's section: one row per predicted entry (route asked → taken), its diagnostics and reasons."""
    from .training_response import THRESHOLDS, fp_misses, fp_settings, worst

    f, th = cfg["fp"], THRESHOLDS["fp_miss"]
    L = ["## Fokker-Planck prediction of the weight histograms\n"]
    L.append(f"fpkit.predict on {', '.join(f['entries'])} of the {', '.join(f['activations'])} ensembles "
             f"({max(cfg['train']['members'], f['members'])} members, of which the response measurements use the first "
             f"{cfg['train']['members']}: a seeded half estimates A and D, the other half is judged): W1 distance "
             f"over the judged half's noise floor, worst and median over the snapshots after t = 0; 'frozen' is the "
             f"initial histogram kept (how far the weights moved). SGD and SGLD: route {f['route']}; GD: mechanistic, "
             f"judged by its drift-only transport (no noise: exact for the marginal). A prediction misses beyond "
             f"{th:g} floors. The diagnostics use the estimation half only.\n")  # fmt: skip
    L.append("| setting | entry | route | FP worst | FP median | drift-only worst | frozen worst | kind | verdict | reasons |")
    L.append("|---|---|---|---|---|---|---|---|---|---|")
    for key, preds in res.fp.items():
        for kind in ("route", "mechanistic"):
            for lab, pr in preds.get(kind, {}).items():
                d, g = pr.distance, pr.diagnostics
                asked = "mechanistic" if key[1] == "gd" or kind == "mechanistic" else f["route"]
                reasons = "; ".join(g.get("reasons") or []) or "–"
                L.append(f"| {' '.join(key)} | {lab} | {asked} → {pr.options.get('route')} | {_f(worst(pr), 3)} | "
                         f"{_f(np.nanmedian(np.asarray(d['fp'], float)[1:]), 3)} | {_f(worst(pr, 'drift_only'), 3)} | "
                         f"{_f(worst(pr, 'frozen'), 3)} | {pr.kind} | {g.get('verdict', '–')} | {reasons} |")  # fmt: skip
    L.append("")
    for key in fp_settings(res):
        preds = res.fp[key]["route"]
        w = max(worst(pr) for pr in preds.values())
        misses, silent = fp_misses(res.fp[key])
        moved = sum(worst(pr, "frozen") > th for pr in preds.values())
        L.append(f"- {' '.join(key)}: FP prediction of the weight histograms {'held' if w <= th else 'not held'} "
                 f"(worst {w:.3g} floors over {len(preds)} entries, of which {moved} moved beyond {th:g} floors from "
                 f"their initial histogram: the others test little); {len(misses)} prediction(s) beyond {th:g} floors, "
                 f"{len(misses) - len(silent)} flagged doubtful/fails: no silent FP failure "
                 f"{'held' if not silent else 'not held'}.")  # fmt: skip
    for key in fp_settings(res, ("gd",)):
        w = max(worst(pr, "drift_only") for pr in res.fp[key]["route"].values())
        L.append(f"- {' '.join(key)}: drift-only transport exact to the floor {'held' if w <= th else 'not held'} "
                 f"(worst {w:.3g} floors).")  # fmt: skip
    if any(k[1] == "sgld" for k in res.fp):
        L.append("\nSGLD here is full-batch: its only noise is the Langevin term √(2ηT)ξ (D = T in t = η·step); the "
                 "mechanistic route's diffusion is η/2 × the minibatch-gradient variance (zero for a full batch) "
                 "plus T, the Kramers-Moyal route measures D from the increments.")  # fmt: skip
    L.append("")
    return L


# --------------------------------------------------------------------------------------------- results
def store_prediction_summary(h, pr) -> None:
    """A prediction's route, verdict and reasons (attributes) and its W1/floor series (datasets ``t``,
    ``w1_floor``, ``distance_<kind>``) in the HDF5 group ``h``; the experiments' FP angles store this much."""
    h.attrs["route"] = str(pr.options.get("route"))
    h.attrs["verdict"] = str(pr.diagnostics.get("verdict"))
    h.attrs["reasons"] = "; ".join(pr.diagnostics.get("reasons") or [])
    h.create_dataset("t", data=pr.t)
    h.create_dataset("w1_floor", data=pr.w1_floor)
    for k, v in pr.distance.items():
        h.create_dataset(f"distance_{k}", data=np.asarray(v, float))


def save_results(f, cfg, res) -> None:
    f.create_dataset("x", data=res.x)
    f.create_dataset("linear_error", data=res.linear_error)
    f.create_dataset("linear_t", data=res.linear_t)
    g = f.create_group("settings")
    for st in res.settings:
        h = g.create_group(f"{st.activation}_{st.method}")
        h.attrs["activation"], h.attrs["method"] = st.activation, st.method
        for k in ("t", "step", "loss", "rank", "fragility", "order", "order_t"):
            h.create_dataset(k, data=getattr(st, k))
        # the kernels' ensemble means (the per-member kernels are (S, M, K, K): large and re-derivable)
        h.create_dataset("response_mean", data=st.response.mean(axis=1))
        h.create_dataset("ntk_mean", data=st.ntk.mean(axis=1))
        from .training_response import amplitude

        h.create_dataset("amplitude", data=amplitude(st))
    write_tree(f, {"config_used": {"fit_from": cfg["probe"]["fit_from"]}})
    for key, preds in res.fp.items():
        for kind, group in preds.items():
            for lab, pr in group.items():
                store_prediction_summary(f.create_group(f"fp/{key[0]}_{key[1]}/{kind}/{lab}"), pr)
