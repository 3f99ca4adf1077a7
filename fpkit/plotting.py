"""Figures for results files (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ConfigError, FileFormatError

FIGURE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> Path:
    """Save through fpkit's one atomic-write path (temporary file, fsync, verify, rename) and close the
    figure, also when saving fails (then the previous file at ``path`` is unchanged)."""
    from .io import atomic_path

    path = check_figure_path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    try:
        with atomic_path(path, verify=_verify_image) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches="tight", format=fmt)
    finally:
        _pyplot().close(fig)
    return path


def check_figure_path(path) -> Path:
    """A figure's file name: its suffix must be a format fpkit writes (png by default)."""
    path = Path(path)
    if path.suffix.lstrip(".").lower() not in ("", *FIGURE_FORMATS):
        raise ConfigError(f"figure {str(path)!r}: unknown format {path.suffix!r}; use one of {list(FIGURE_FORMATS)}")
    return path


_SIGNATURES = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF", ".svg": b"<?xml"}


def _verify_image(tmp: Path) -> None:
    import errno

    sig = _SIGNATURES.get("." + tmp.name.rsplit(".", 1)[-1].lower())
    with open(tmp, "rb") as fh:
        head = fh.read(16)
    if not head or (sig is not None and not head.startswith(sig)):
        raise OSError(errno.EIO, "the written figure is empty or not the format asked for")


def plot_solution(sol, path=None, title: str | None = None):
    """Density over time (heat map in 1-D, snapshots in 2-D), snapshots, and a mass/mean/variance panel."""
    plt = _pyplot()
    g = sol.grid
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    if g.ndim == 1:
        ax = axes[0]
        im = ax.pcolormesh(g.x, sol.t, sol.p, shading="nearest", cmap="viridis")
        fig.colorbar(im, ax=ax, label="p(x, t)")
        ax.set(xlabel="x", ylabel="t", title="density over time")
        ax = axes[1]
        picks = np.unique(np.linspace(0, sol.t.size - 1, min(5, sol.t.size)).astype(int))
        for k in picks:
            ax.plot(g.x, sol.p[k], label=f"t = {sol.t[k]:.3g}")
        ax.set(xlabel="x", ylabel="p", title="snapshots")
        ax.legend(fontsize=8)
    else:
        p2 = sol.p if g.ndim == 2 else sol.p.sum(axis=tuple(range(3, sol.p.ndim)))
        for ax, k, name in ((axes[0], 0, "first"), (axes[1], sol.t.size - 1, "last")):
            X, Y = np.meshgrid(g.axes[0], g.axes[1], indexing="ij")
            im = ax.pcolormesh(X, Y, p2[k], shading="nearest", cmap="viridis")
            fig.colorbar(im, ax=ax)
            ax.set(xlabel="x", ylabel="y", title=f"{name} stored time t = {sol.t[k]:.3g}")
    ax = axes[2]
    ax.plot(sol.t, sol.mass(), "k-", label="mass")
    mean, var = sol.mean(), sol.var()
    for a in range(g.ndim):
        m = mean if g.ndim == 1 else mean[:, a]
        v = var if g.ndim == 1 else var[:, a]
        ax.plot(sol.t, m, "-", label=f"mean[{a}]" if g.ndim > 1 else "mean")
        ax.plot(sol.t, v, "--", label=f"var[{a}]" if g.ndim > 1 else "variance")
    ax.set(xlabel="t", title="mass, mean, variance")
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path) if path is not None else fig


def plot_ensemble(run, path=None):
    """Training of an ensemble: loss quantiles, η·λmax, and the spread of every W2 entry over time."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    t = np.maximum(run.t, run.t[1] / 2 if run.t.size > 1 else 1.0)
    if run.loss is not None:
        q = np.percentile(run.loss, [10, 50, 90], axis=1)
        axes[0].fill_between(t, q[0], q[2], color="C0", alpha=0.3, label="10-90 % of members")
        axes[0].plot(t, q[1], "C0-", label="median")
        axes[0].set(xscale="log", yscale="log", xlabel="t = η·step", ylabel="full-batch loss", title="loss")
        axes[0].legend(fontsize=8)
    if run.lam_max is not None:
        axes[1].plot(t, run.eta * run.lam_max, lw=1)
        axes[1].axhline(2, color="k", ls="--", lw=0.8, label="edge of stability")
        axes[1].set(xscale="log", xlabel="t = η·step", ylabel="η·λmax(H)", title="sharpness (probe members)")
        axes[1].legend(fontsize=8)
    name = "W2" if "W2" in run.weights else run.names[0]
    W = run.weights[name].reshape(run.t.size, run.members, -1)
    for e in range(W.shape[2]):
        q = np.percentile(W[:, :, e], [10, 50, 90], axis=1)
        axes[2].fill_between(t, q[0], q[2], alpha=0.15)
        axes[2].plot(t, q[1], lw=1)
    axes[2].set(xscale="log", xlabel="t = η·step", ylabel=name, title=f"every {name} entry: median and 10-90 %")
    fig.tight_layout()
    return save_figure(fig, path) if path is not None else fig


# result kind stored in a file -> (module, loader class, plotting function name)
PLOTTERS = {
    "fpkit.Solution": ("fpkit.solution", "Solution", "fpkit.plotting:plot_solution"),
    "ensemble": ("fpkit.ensemble", "EnsembleRun", "fpkit.plotting:plot_ensemble"),
}


def cli_plot(args) -> int:
    import importlib

    from .io import check_output_file, read_kind

    path = Path(args.result)
    check_output_file(args.output, inputs=[path], what="--output")
    check_figure_path(args.output)
    kind = read_kind(path)  # a FileFormatError naming the file if it is not a readable results file
    if kind not in PLOTTERS:
        raise FileFormatError(
            f"`fpkit plot` does not know results of kind {kind!r} in {str(path)!r}; known: {sorted(PLOTTERS)}",
            path,
        )
    module, cls, plotter = PLOTTERS[kind]
    result = getattr(importlib.import_module(module), cls).load(path)
    mod, func = plotter.split(":")
    getattr(importlib.import_module(mod), func)(result, args.output)
    print(f"wrote {args.output}")
    return 0
