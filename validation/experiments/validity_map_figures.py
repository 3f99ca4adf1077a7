"""The ``validity-map`` experiment's figure, report sections, summary and results layout (they only format
numbers that ``validity_map`` computed)."""

from __future__ import annotations

import json

import numpy as np

from fpkit.plotting import _pyplot, save_figure

from .validity_map import OUTCOME_EDGES, OUTCOMES, VERDICTS, cell_schedule, outcome_class

_COLOURS = ("#4daf4a", "#ffbf00", "#e41a1c")  # outcome ≤ 3, 3–5, > 5 floors
_MARK = {"holds": "H", "doubtful": "D", "fails": "F"}


def _setting(c: dict) -> str:
    return f"{'-'.join(map(str, c['hidden']))}\nη {c['lr']:g} B {c['batch_size']}"


def _rate_sentence(name: str, a: dict, what: str) -> str:
    if not a["n"]:
        return f"{name}: not measured — no cell {what}."
    return (f"{name}: {a['k']} of {a['n']} = {a['rate']:.0%} ({a['level']:.0%} Clopper-Pearson interval "
            f"{a['ci_low']:.0%}–{a['ci_high']:.0%}); the ≥ 90 % criterion "
            f"{'held' if a['held'] else '**did not hold**'}"
            + ("" if not a["held"] or a["ci_low"] >= 0.9 else " on the point estimate (the interval reaches below 90 %)")
            + ".")  # fmt: skip


def summary(res) -> str:
    ok = [c for c in res.cells if c["status"] == "ok"]
    parts = [f"{len(ok)} of {len(res.cells)} cells trained"
             + (f" ({len(res.cells) - len(ok)} diverged)" if len(ok) < len(res.cells) else "") + "."]  # fmt: skip
    acc = res.acceptance
    parts.append(_rate_sentence("Cells judged holds with every entry within 3 floors", acc["holds_within_3"],
                                "was judged holds"))  # fmt: skip
    parts.append(_rate_sentence("Cells beyond 5 floors judged fails or doubtful", acc["beyond_5_flagged"],
                                "exceeded 5 floors"))  # fmt: skip
    for ae in res.autoencoders:
        if ae["status"] != "ok":
            parts.append(f"Digits autoencoder ({ae['activation']}): diverged.")
            continue
        e = ae["entries"]
        good = [x for x in e if x["worst"] <= OUTCOME_EDGES[0]]
        bad = [x for x in e if x["worst"] > OUTCOME_EDGES[0]]
        flagged = [x for x in bad if x["verdict"] != "holds"]
        parts.append(f"Digits autoencoder ({ae['activation']}, {ae['members']} members): {len(good)} of {len(e)} "
                     f"entries within 3 floors; the diagnostics flag {len(flagged)} of the other {len(bad)}.")  # fmt: skip
    return " ".join(parts)


# ------------------------------------------------------------------------------------------- report
def confusion_markdown(table: np.ndarray) -> str:
    rows = ["| verdict \\ worst W1/floor | " + " | ".join(OUTCOMES) + " | total |", "|---|---|---|---|---|"]
    for i, v in enumerate(VERDICTS):
        rows.append(f"| {v} | " + " | ".join(str(int(x)) for x in table[i]) + f" | {int(table[i].sum())} |")
    rows.append("| total | " + " | ".join(str(int(x)) for x in table.sum(axis=0)) + f" | {int(table.sum())} |")
    return "\n".join(rows)


def _num(x, fmt=".2f") -> str:
    return "–" if x is None or (isinstance(x, float) and not np.isfinite(x)) else format(x, fmt)


_REASON_KEYS = (("under-resolved in time", "interpolation_error", "coarse lag {:.2f} floors"),
                ("over the lags between snapshots", "drift_uncertainty", "U {:.2f}"),  # before: its text may
                ("drifts differ", "drift_disagreement", "drifts differ {:.0%}"),  # quote the disagreement
                ("did not move at all", "frozen_fraction", "frozen {:.0%}"),
                ("η·λmax", "eta_lam_max", "η·λmax {:.2f}"))  # fmt: skip
"""(words of a ``fpkit.prediction.validity`` reason, the diagnostic it is about, its short form)."""


def _short_reasons(entry: dict) -> list[str]:
    """An entry's reasons as the diagnostic that fired and its value (e.g. "U 1.60"), in the reasons' order."""
    out = []
    for r in entry["reasons"]:
        key = next((k for k in _REASON_KEYS if k[0] in r), None)
        value = None if key is None else entry["diagnostics"].get(key[1])
        out.append(r[:40] if value is None else key[2].format(value))
    return out


def cells_markdown(cells: list) -> str:
    rows = ["| # | data | act. | hidden | η | B | worst (entry) | verdict | η·λmax | drift disagr. | reasons (short) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for c in cells:
        if c["status"] != "ok":
            rows.append(f"| {c['index']} | {c['data']} | {c['activation']} | {c['hidden']} | {c['lr']:g} | "
                        f"{c['batch_size']} | diverged | – | – | – | {c['message'][:80]} |")  # fmt: skip
            continue
        lam = max((e["diagnostics"]["eta_lam_max"] or 0.0 for e in c["entries"]), default=None)
        dis = [e["diagnostics"]["drift_disagreement"] for e in c["entries"] if e["diagnostics"]["drift_disagreement"] is not None]
        short = "; ".join(f"{e['label']}: {', '.join(_short_reasons(e))}" for e in c["entries"] if e["reasons"])
        rows.append(f"| {c['index']} | {c['data']} | {c['activation']} | {c['hidden']} | {c['lr']:g} | "
                    f"{c['batch_size']} | {c['worst']:.2f} ({c['worst_entry']}) | {c['verdict']} | {_num(lam)} | "
                    f"{_num(max(dis) if dis else None)} | {short or '–'} |")  # fmt: skip
    return "\n".join(rows)


def autoencoder_markdown(ae: dict) -> str:
    head = (f"### Digits autoencoder 64 → {' → '.join(map(str, ae['hidden']))} → 64, {ae['activation']}, "
            f"{ae['members']} members\n\n")  # fmt: skip
    if ae["status"] != "ok":
        return head + f"Training diverged: {ae['message']}\n"
    schedule = f"; {_schedule_words(ae, ae['snapshot_steps'])}" if "snapshot_steps" in ae else ""
    rows = [f"η = {ae['lr']:g}, B = {ae['batch_size']}, {ae['steps']} steps on {ae['n']} images{schedule}; η·λmax at the end "
            f"(median over probes): {_num(ae.get('eta_lam_max_end'))}; {ae['seconds']:.0f} s wall, "
            f"{ae['cpu_seconds']:.0f} s CPU.\n",
            "| entry | kind | worst W1/floor | frozen worst | within 3 floors | verdict | diagnostics' reasons |",
            "|---|---|---|---|---|---|---|"]  # fmt: skip
    unexplained = []
    for e in ae["entries"]:
        within = e["worst"] <= OUTCOME_EDGES[0]
        if not within and e["verdict"] == "holds":
            unexplained.append(e["label"])
        rows.append(f"| {e['label']} | {e['kind']} | {e['worst']:.2f} | {e['frozen_worst']:.2f} | "
                    f"{'yes' if within else '**no**'} | {e['verdict']} | {'; '.join(e['reasons']) or '–'} |")  # fmt: skip
    within = [e["label"] for e in ae["entries"] if e["worst"] <= OUTCOME_EDGES[0]]
    rows.append(f"\nWithin 3 floors: {', '.join(within) or 'none'}. "
                + (f"Beyond 3 floors and **not explained** (verdict holds): {', '.join(unexplained)}."
                   if unexplained else "Every entry beyond 3 floors is flagged doubtful or fails by the diagnostics, "
                   "with the reasons above.") + "\n")  # fmt: skip
    return head + "\n".join(rows)


def _schedule_words(g: dict, steps: list | None = None) -> str:
    """A snapshot schedule in words: ``steps`` (default the cells', ``cell_schedule`` of ``g``), and how many of
    them halve the first interval of the default schedule of ``g["snapshots"]``."""
    if steps is None:
        steps = cell_schedule(int(g["steps"]), int(g["snapshots"]), int(g.get("early_snapshots", 0)))
    shown = ", ".join(map(str, steps[:7])) + (f", …, {steps[-1]}" if len(steps) > 7 else "")
    extra = len(steps) - len(cell_schedule(int(g["steps"]), int(g["snapshots"]), 0))
    why = f" ({extra} of them halving the default schedule's first interval, where D falls fastest)" if extra else ""
    return f"{len(steps)} snapshots at steps {shown}{why}"


def report_body(cfg: dict, res) -> str:
    g = cfg["map"]
    secs = [c.get("seconds", 0.0) for c in res.cells]
    cpu = [c.get("cpu_seconds", 0.0) for c in res.cells]
    out = ["## Confusion table\n",
           "Rows: the cell's verdict (the most severe of its entries' verdicts from `fpkit.predict`'s diagnostics, "
           "computed on the estimation half only). Columns: the cell's worst out-of-sample W1/noise floor over its "
           "judged entries and snapshots. Diverged cells are not counted.\n",
           confusion_markdown(res.confusion) + "\n",
           "## Acceptance (issue 17)\n",
           "- " + _rate_sentence("Among cells judged holds, all entries within 3 floors", res.acceptance["holds_within_3"], "was judged holds"),
           "- " + _rate_sentence("Among cells whose worst entry exceeds 5 floors, judged fails or doubtful",
                                 res.acceptance["beyond_5_flagged"], "exceeded 5 floors") + "\n",
           "## The map\n",
           f"{len(res.cells)} cells: data {g['data']} × activation {g['activation']} × settings (Gaussian: d = {g['d']}, "
           f"n = {g['n']}, variances {g['ratio']:g}^i; digits: n = {g['digits_n']} images / 16); "
           f"{g['members']} members (half estimate, half judged), {g['steps']} steps, {_schedule_words(g)}, "
           f"{g['entries']} entries per cell (route {cfg['analysis']['route']}); biases {'on' if g['bias'] else 'off'}. "
           f"Per cell: wall time median {np.median(secs) if secs else 0:.1f} s (max {max(secs, default=0):.1f} s), "
           f"CPU time median {np.median(cpu) if cpu else 0:.1f} s (max {max(cpu, default=0):.1f} s, total {sum(cpu):.0f} s).\n",
           cells_markdown(res.cells) + "\n"]  # fmt: skip
    if res.autoencoders:
        out.append("## Digits autoencoder (issue 17)\n")
        out += [autoencoder_markdown(ae) for ae in res.autoencoders]
    return "\n".join(out)


# ------------------------------------------------------------------------------------------- figure
def fig_map(cfg: dict, res, path):
    """One panel per data set: rows activations, columns settings; colour = outcome class of the worst entry
    (green ≤ 3, amber 3–5, red > 5 floors, grey diverged), letter = verdict (H holds, D doubtful, F fails),
    number = worst W1/floor. A calibrated verdict puts H on green and D/F on red."""
    plt = _pyplot()
    from matplotlib.colors import ListedColormap

    data = list(dict.fromkeys(c["data"] for c in res.cells))
    acts = list(dict.fromkeys(c["activation"] for c in res.cells))
    fig, axes = plt.subplots(1, len(data) + 1, figsize=(4.2 * len(data) + 4.5, 1.2 + 1.0 * len(acts)),
                             gridspec_kw={"width_ratios": [max(1, len({tuple(c['hidden']) + (c['lr'], c['batch_size'])
                                                                      for c in res.cells if c['data'] == d})) for d in data] + [3]},
                             squeeze=False, layout="constrained")  # fmt: skip
    cmap = ListedColormap([*_COLOURS, "#bbbbbb"])
    for ax, d in zip(axes[0], data):
        cells = [c for c in res.cells if c["data"] == d]
        cols = list(dict.fromkeys(_setting(c) for c in cells))
        grid = np.full((len(acts), len(cols)), np.nan)
        for c in cells:
            i, j = acts.index(c["activation"]), cols.index(_setting(c))
            ok = c["status"] == "ok"
            grid[i, j] = outcome_class(c["worst"]) if ok else 3
            txt = f"{_MARK.get(c['verdict'], '?')}\n{c['worst']:.1f}" if ok else "div."
            ax.text(j, i, txt, ha="center", va="center", fontsize=9, fontweight="bold" if ok else "normal")
        ax.imshow(grid, cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto")
        ax.set_xticks(range(len(cols)), cols, fontsize=7)
        ax.set_yticks(range(len(acts)), acts)
        ax.set_title(d)
    # worst W1/floor against the verdict: calibration at a glance
    ax = axes[0][-1]
    rng = np.random.default_rng(0)
    for i, v in enumerate(VERDICTS):
        w = np.array([c["worst"] for c in res.cells if c["status"] == "ok" and c["verdict"] == v])
        ax.scatter(i + 0.15 * rng.standard_normal(w.size), w, s=18, color="k", alpha=0.7)
    for e, col in zip(OUTCOME_EDGES, _COLOURS[1:]):
        ax.axhline(e, color=col, lw=1.2, ls="--")
    ax.set(xticks=range(3), yscale="log", ylabel="worst W1 / noise floor", title="outcome by verdict")
    ax.set_xticklabels(VERDICTS)
    fig.suptitle("Validity map: colour = outcome (green ≤ 3, amber 3–5, red > 5 floors, grey diverged); "
                 "letter = verdict (H holds, D doubtful, F fails); number = worst W1/floor", fontsize=9)  # fmt: skip
    return save_figure(fig, path)


def write_figures(cfg: dict, res, out) -> dict:
    return {"validity map (outcome colour, verdict letter)": fig_map(cfg, res, out / "validity_map.png")}


# ------------------------------------------------------------------------------------------- results
def save_results(f, res) -> None:
    """Layout: ``confusion`` (3, 3) counts (rows holds/doubtful/fails, columns ≤ 3, 3–5, > 5 floors); per
    cell the columns ``worst`` (W1/floor, NaN when diverged), ``verdict`` (0 holds, 1 doubtful, 2 fails, −1
    none), ``lr``, ``batch_size``, ``depth``, ``width``; the attributes ``cells``, ``acceptance`` and
    ``autoencoders`` (JSON: everything measured per cell and entry)."""
    from fpkit.io import set_json_attr

    f.create_dataset("confusion", data=res.confusion)
    cells = res.cells
    f.create_dataset("worst", data=np.array([c["worst"] for c in cells], dtype=float))
    f.create_dataset("verdict", data=np.array([VERDICTS.index(c["verdict"]) if c["verdict"] in VERDICTS else -1
                                               for c in cells], dtype=np.int64))  # fmt: skip
    for k in ("lr", "batch_size", "depth", "width"):
        f.create_dataset(k, data=np.array([c[k] for c in cells]))
    set_json_attr(f, "cells", json.loads(json.dumps(cells, default=float)))
    set_json_attr(f, "acceptance", res.acceptance)
    set_json_attr(f, "autoencoders", json.loads(json.dumps(res.autoencoders, default=float)))
