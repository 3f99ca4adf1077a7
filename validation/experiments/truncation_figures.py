"""The ``truncation`` experiment's figures and report sections (they only format numbers that
``truncation`` computed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fpkit.plotting import _pyplot, save_figure


def fig_toy(res, path):
    plt = _pyplot()
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for g in res.toy_gd:
        ax[0].semilogy(g.t, np.sqrt(g.residual), label=f"GD, n_tr/N = {g.fraction:g}")
        ax[0].semilogy(g.t, np.sqrt(g.residual[0]) * np.exp(-g.exact_rate * g.t), "k:", lw=1)
    for s in res.toy_sgd:
        ax[0].semilogy(s.t, np.sqrt(s.residual), "--", label=f"SGD η={s.lr:g} B={s.batch_size}")
        ax[0].axhline(np.sqrt(s.ou_floor), color="grey", lw=0.8)
    ax[0].set(xlabel="training time t = η·step", ylabel="residual spread √⟨(θ − ȳ)²⟩",
              title="toy flow: exact decay (dotted), OU floors √(D/κ) (grey)")
    ax[0].legend(fontsize=7)
    f = np.array([g.fraction for g in res.toy_gd])
    ax[1].plot(f, [g.rate for g in res.toy_gd], "o", label=f"measured (slope {res.toy_slope:.4f})")
    ax[1].plot(f, f, "k--", label="rate = n_tr/N")
    ax[1].set(xlabel="truncated fraction n_tr/N", ylabel="decay rate of √R", title="rate vs truncation (toy)")
    ax[1].legend()
    q = np.array([s.lr / s.batch_size for s in res.toy_sgd])
    ax[2].errorbar(q, [s.floor for s in res.toy_sgd], yerr=[s.floor_se for s in res.toy_sgd], fmt="o",
                   label="measured R at the end")
    ax[2].plot(q, [s.ou_floor for s in res.toy_sgd], "k_", ms=20, label="OU floor D/κ = ηv/(2B)")
    ax[2].set(xscale="log", yscale="log", xlabel="η/B", ylabel="residual spread R", title="SGD noise floor")
    ax[2].legend()
    return save_figure(fig, path)


def fig_fp(res, path):
    plt = _pyplot()
    fp = res.toy_fp
    fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
    S = fp.t.size
    for s, c in zip([0, S // 4, S // 2, S - 1], ["C0", "C1", "C2", "C3"]):
        ax[0].hist(fp.samples[s], bins=40, density=True, histtype="step", color=c, label=f"members t = {fp.t[s]:.3g}")
        ax[0].plot(fp.grid_x, fp.density[s], color=c, ls="--", label=f"FP t = {fp.t[s]:.3g}")
    ax[0].set(xlabel="θ", ylabel="density", title="toy under SGD: ensemble vs OU Fokker-Planck")
    ax[0].legend(fontsize=7)
    ax[1].semilogy(fp.t[1:], fp.w1_over_floor[1:], "o-", label="FP (measured κ, D(θ))")
    ax[1].semilogy(fp.t[1:], fp.frozen_over_floor[1:], "s:", label="frozen first histogram")
    ax[1].axhline(1.0, color="k", lw=0.8)
    ax[1].set(xlabel="training time t", ylabel="W1 / noise floor", title="distance from the members")
    ax[1].legend()
    return save_figure(fig, path)


def fig_network(res, path):
    plt = _pyplot()
    gd = res.nets[0]
    H = gd.trunc.shape[2]
    fig, ax = plt.subplots(1, 5 if res.floor_nets else 4, figsize=(25 if res.floor_nets else 20, 4.2))
    for ell in range(H):
        nc1 = np.median(gd.sw[:, :, ell].mean(-1) / gd.sb[:, :, ell], axis=1)
        ax[0].semilogy(gd.t, nc1, label=f"hidden layer {ell + 1}")
        ax[1].plot(gd.t, gd.trunc[:, :, ell].mean(1).sum(-1), label=f"hidden layer {ell + 1}")
    ax[0].set(xlabel="training time t", ylabel="NC1 = S_W / S_B (member median)", title="cluster collapse (GD)")
    ax[0].legend()
    ax[1].set(xlabel="training time t", ylabel="truncated fraction (all clusters)", title="truncation (GD)")
    ax[1].legend()
    p = res.rate_points
    for ell in range(H):
        k = p["layer"] == ell
        ax[2].plot(p["f"][k], p["rate"][k], ".", ms=3, alpha=0.5, label=f"hidden layer {ell + 1}")
    xs = np.linspace(p["f"].min(), p["f"].max(), 2)
    ax[2].plot(xs, res.net_intercept + res.net_slope * xs, "k-", label=f"fit slope {res.net_slope:.3g} ± "
               f"{res.net_slope_se:.2g}")  # fmt: skip
    ax[2].set(xlabel="truncated fraction n_tr/N (per member, cluster)", ylabel="late rate of √S_W",
              title="rate vs truncation (GD)")
    ax[2].legend(fontsize=7)
    for k, (nets, what) in enumerate([(res.nets, "one-hot targets"), (res.floor_nets, "targets ±ε")]):
        if not nets:
            continue
        for n in nets:
            ax[3 + k].loglog(n.t[1:], n.sw[1:, :, -1].mean((1, 2)), label=n.label)
        ax[3 + k].axvline(n.t[-1] / 2, color="grey", lw=0.8, ls=":", label="late part starts")
        ax[3 + k].set(xlabel="training time t = η·step", ylabel="output-layer S_W (cluster, member mean)",
                      title=f"GD vs SGD, {what}")
        ax[3 + k].legend(fontsize=7)
    return save_figure(fig, path)


def write_figures(res, out_dir) -> dict:
    out = Path(out_dir)
    return {
        "toy flow: decay, rate vs n_tr/N, SGD floor": fig_toy(res, out / "toy.png"),
        "toy under SGD: FP prediction vs ensemble": fig_fp(res, out / "toy_fp.png"),
        "ReLU network: collapse, truncation, rate fit, GD vs SGD": fig_network(res, out / "network.png"),
    }


def report_body(cfg: dict, res) -> str:
    L = ["## Toy flow (exact reference)\n",
         "| n_tr/N | fitted rate | exact rate −ln(1−ηκ)/η |", "|---|---|---|"]  # fmt: skip
    L += [f"| {g.fraction:g} | {g.rate:.6g} | {g.exact_rate:.6g} |" for g in res.toy_gd]
    L += [f"\nSlope of rate against n_tr/N: {res.toy_slope:.4f} ± {res.toy_slope_se:.2g} (1 + O(ηκ)).\n",
          "| η | B | R at the end | OU floor D/κ | exact discrete floor | z vs D/κ | measured D | measured κ |",
          "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in res.toy_sgd:
        L.append(f"| {s.lr:g} | {s.batch_size} | {s.floor:.4g} ± {s.floor_se:.2g} | {s.ou_floor:.4g} | "
                 f"{s.exact_floor:.4g} | {(s.floor - s.ou_floor) / s.floor_se:+.2f} | {s.d_measured:.4g} | "
                 f"{s.kappa_measured:.4g} |")  # fmt: skip
    if np.isfinite(res.floor_exponent):
        L.append(f"\nFloor against η/B: exponent {res.floor_exponent:.3f} ± {res.floor_exponent_se:.2g}.")
    fp = res.toy_fp
    L.append(f"\nFP prediction (first SGD setting; drift −κ(θ − θ*), κ = {fp.kappa:.4g}, θ* = {fp.theta_star:.4g}; "
             f"diffusion D(θ) = {fp.d0:.4g} + {fp.d2:.4g}(θ − θ*)², all measured from the run's recorded "
             f"gradients): W1/floor {fp.w1_over_floor[-1]:.2f} at the end, median "
             f"{np.nanmedian(fp.w1_over_floor[1:]):.2f}, max {np.nanmax(fp.w1_over_floor[1:]):.2f} over snapshots "
             f"(frozen first histogram: {fp.frozen_over_floor[-1]:.3g} at the end).\n")  # fmt: skip
    nc = cfg["network"]
    L += ["## ReLU networks on a Gaussian mixture\n",
          f"{nc['clusters']} clusters × {nc['per_cluster']} points in d = {nc['d']}, hidden {nc['hidden']}, biases, "
          f"MSE to one-hot targets, {nc['members']} members.\n",
          f"Rate of √S_W over the late half of training against n_tr/N (per member, hidden layer and cluster, GD): "
          f"slope {res.net_slope:.4g} ± {res.net_slope_se:.2g} (bootstrap over members), intercept "
          f"{res.net_intercept:.3g}; the diagonal case would have slope 1.\n",
          f"NC1 of the last hidden layer (member median): {res.nc1_start:.3g} at t = 0, {res.nc1_end:.3g} at the end.\n",
          f"Every run trains to the same time t = η·step = {nc['t_end']:g} (steps = t/η); late = the snapshots with "
          f"t ≥ {1 - nc['late']:g}·t_end. Output layer's within-cluster spread S_W (cluster and member mean, "
          f"bootstrap SE over members):\n"]  # fmt: skip
    sets = [("one-hot cluster targets (the network can interpolate them)", res.nets,
             {"floor": res.sw_end, "slope": res.late_slope, "exponent": res.net_floor_exponent,
              "exponent_se": res.net_floor_exponent_se})]  # fmt: skip
    if res.conflict is not None:
        sets.append((f"conflicting targets: every point twice, one-hot ± ε, ε ~ N(0, {nc['floor_target_std']:g}²) "
                     f"({nc['floor_members']} members)", res.floor_nets, res.conflict))  # fmt: skip
    for what, nets, st in sets:
        L += [f"**{what}**\n", "| run | η/B | late S_W | late d ln S_W / d ln t | final loss |", "|---|---|---|---|---|"]
        for n in nets:
            m, se = st["floor"][n.label]
            sl = st["slope"].get(n.label, (np.nan, np.nan))
            q = n.lr / n.batch_size if n.optimizer != "gd" else 0.0
            L.append(f"| {n.label} | {q:.4g} | {m:.4g} ± {se:.2g} | {sl[0]:+.3f} ± {sl[1]:.2g} | "
                     f"{n.loss[-1].mean():.4g} |")  # fmt: skip
        if np.isfinite(st["exponent"]):
            L.append(f"\nSGD late S_W against η/B: exponent {st['exponent']:.3f} ± {st['exponent_se']:.2g}.\n")
        else:
            L.append("")
    return "\n".join(L) + "\n"
