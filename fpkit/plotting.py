"""Figures for results files (matplotlib, Agg backend: no screen needed)."""

from __future__ import annotations

import contextlib
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
    figure, also when saving fails (then the previous file at ``path`` is unchanged). At 120 dpi; a figure
    without constrained layout is cropped to what is drawn (with a 0.1-inch margin), one with it keeps its
    size (the layout keeps every label inside).

    Parameters
    ----------
    fig : matplotlib.figure.Figure
        The figure (closed afterwards).
    path : str or Path
        The file; its suffix picks the format (``FIGURE_FORMATS``, png when none).

    Returns
    -------
    Path
        The written file.
    """
    from .io import atomic_path

    from matplotlib.layout_engine import ConstrainedLayoutEngine

    path = check_figure_path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    # constrained layout already keeps every label inside the canvas: cropping to the drawn extent ("tight")
    # would lay the figure out once more (~17 % of a report figure's time) for a 0.1-inch margin
    bbox = None if isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine) else "tight"
    try:
        with atomic_path(path, verify=_verify_image) as tmp:
            fig.savefig(tmp, dpi=120, bbox_inches=bbox, format=fmt)
    finally:
        _pyplot().close(fig)
    return path


def check_figure_path(path) -> Path:
    """A figure's file name: its suffix must be a format fpkit writes (png by default).

    Parameters
    ----------
    path : str or Path
        The figure's file name.

    Returns
    -------
    Path
        ``path`` as a Path; a ``ConfigError`` naming it if the suffix is not a known format.
    """
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


# ----------------------------------------------------------------------- figures on worker processes
# Drawing is Python-bound matplotlib work (text layout, ticks, constrained layout): a report's figures are
# drawn side by side by worker processes (fpkit.processes: a fork server's, each imports matplotlib once) and
# this process. Each figure is written atomically by the process that draws it (save_figure).
FIGURE_WORKERS_MAX = 3
"""At most this many worker processes draw figures (each pays matplotlib's import, ~0.4 CPU-s on top of fpkit)."""

_SESSIONS: list = []  # the open figure_session's state: {"stack": ExitStack, "pool": executor or None}


def figure_workers() -> int:
    """Worker processes ``draw_figures`` uses.

    Returns
    -------
    int
        The cores this process may use (``FPKIT_WORKERS``, see ``fpkit.processes.default_workers``) less the
        one it draws on itself, at most ``FIGURE_WORKERS_MAX``; 0: every figure is drawn in this process.
    """
    from .processes import default_workers

    return max(0, min(default_workers() - 1, FIGURE_WORKERS_MAX))


class PendingFigures:
    """Figures handed to ``draw_figures`` and not yet collected. Worker processes take the jobs from the front
    (the order given: put the slowest first), ``wait`` draws from the back in this process whatever no worker
    has started, so the two meet wherever the work balances.

    Parameters
    ----------
    jobs : dict
        key -> (function, *args): ``function(*args)`` draws one figure and returns its path (or None).
    pool : concurrent.futures.Executor or None
        The worker processes; None draws every job in this process.
    order : sequence, optional
        The keys of ``wait``'s result in their order (None for a key without a job); default the jobs'.
    """

    def __init__(self, jobs: dict, pool=None, order=None):
        self.jobs = dict(jobs)
        self.order = list(self.jobs if order is None else order)
        self.futures = {k: pool.submit(*job) for k, job in self.jobs.items()} if pool is not None else {}

    def wait(self) -> dict:
        """Draw the jobs no worker has started, wait for the others.

        An exception of a figure is raised here, unchanged (the worker's traceback is its ``__cause__``), with
        a note naming the figure; the jobs not yet started are cancelled.

        Returns
        -------
        dict
            key -> the job's result (None for a key of ``order`` without a job), in ``order``.
        """
        done = {}
        try:
            for key in reversed(self.jobs):
                fut = self.futures.get(key)
                if fut is None or fut.cancel():  # no worker has it: draw it here
                    done[key] = _draw_here(key, self.jobs[key])
            for key, fut in self.futures.items():
                if key not in done:
                    done[key] = _collect(key, fut, self.jobs[key])
        except BaseException:
            for fut in self.futures.values():
                fut.cancel()
            raise
        return {k: done.get(k) for k in self.order}


def _draw_here(key, job):
    try:
        return job[0](*job[1:])
    except Exception as exc:
        exc.add_note(f"(while drawing the figure {key!r})")
        raise


def _collect(key, fut, job):
    from concurrent.futures.process import BrokenProcessPool

    try:
        return fut.result()
    except BrokenProcessPool:  # the worker died (killed, out of memory): draw the figure here instead
        return _draw_here(key, job)
    except Exception as exc:
        exc.add_note(f"(while drawing the figure {key!r} in a worker process; its traceback is shown above)")
        raise


def draw_figures(jobs: dict, workers: int | None = None, order=None):
    """Draw figures on worker processes and in this process at once.

    Inside ``figure_session`` it returns at once a ``PendingFigures`` (the workers start drawing; the session's
    owner collects them with ``finish_figures``); otherwise it returns key -> result when all are written.

    Parameters
    ----------
    jobs : dict
        key -> (function, *args): ``function(*args)`` draws one figure, writes it (``save_figure``) and returns
        its path or None; function and arguments are pickled to a worker (module-level functions; send only
        the arrays the figure draws). Slowest first: workers take jobs from the front.
    workers : int, optional
        Worker processes (default ``figure_workers()``); 0 draws every job here.
    order : sequence, optional
        The result's keys in their order (None for a key without a job); default those of ``jobs``.

    Returns
    -------
    dict or PendingFigures
        key -> result.
    """
    from .processes import worker_pool

    n = min(figure_workers() if workers is None else int(workers), len(jobs) - 1)
    if _SESSIONS:
        session = _SESSIONS[-1]
        if n > 0 and session["pool"] is None:
            session["pool"] = session["stack"].enter_context(worker_pool(n))
        return PendingFigures(jobs, session["pool"] if n > 0 else None, order)
    if n <= 0:
        return PendingFigures(jobs, None, order).wait()
    with worker_pool(n) as pool:
        return PendingFigures(jobs, pool, order).wait()


@contextlib.contextmanager
def figure_session():
    """While open, ``draw_figures`` hands figures to worker processes and returns at once, so that the caller
    does other work meanwhile (``fpkit.experiments.write_outputs`` writes results.h5) before collecting them
    with ``finish_figures``. The workers are shut down on exit (jobs not started are cancelled on an error).

    Returns
    -------
    contextlib.AbstractContextManager
        The session (it yields None).
    """
    session = {"stack": contextlib.ExitStack(), "pool": None}
    _SESSIONS.append(session)
    try:
        with session["stack"]:
            yield
    finally:
        _SESSIONS.remove(session)


def finish_figures(figures) -> dict:
    """The figures an experiment's ``figures`` returned, once drawn.

    Parameters
    ----------
    figures : dict or PendingFigures
        Description -> path, or figures still being drawn (``draw_figures`` inside ``figure_session``).

    Returns
    -------
    dict
        Description -> path (None: not drawn).
    """
    return figures.wait() if isinstance(figures, PendingFigures) else dict(figures)


def plot_solution(sol, path=None, title: str | None = None):
    """Density over time (heat map in 1-D, snapshots in 2-D), snapshots, and a mass/mean/variance panel.

    Parameters
    ----------
    sol : fpkit.Solution
        A density over time (``FokkerPlanck.solve``; x and t in the problem's units).
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.
    title : str, optional
        A title over the panels.

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
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


MAX_ENTRIES = 12  # entries drawn in plot_ensemble's third panel (more are unreadable)
MAX_BANDS = 4  # above this many entries plot_ensemble draws medians only (bands overlap into one block)


def plot_ensemble(run, path=None):
    """Training of an ensemble: loss quantiles, η·λmax, and the spread of every W2 entry over time (a run
    without W2, e.g. a torch module's: its first parameter; of more than ``MAX_ENTRIES`` entries, those whose
    10-90 % band is widest at the last snapshot).

    Parameters
    ----------
    run : fpkit.EnsembleRun
        A trained ensemble (t = η·step).
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), layout="constrained")
    t = np.maximum(run.t, run.t[1] / 2 if run.t.size > 1 else 1.0)
    if run.loss is not None:
        q = np.percentile(run.loss, [10, 50, 90], axis=1)
        axes[0].fill_between(t, q[0], q[2], color="C0", alpha=0.3, label="10-90 % of members")
        axes[0].plot(t, q[1], "C0-", label="median")
        axes[0].set(xscale="log", yscale="log", xlabel="t = η·step", ylabel="full-batch loss", title="loss")
        axes[0].legend(fontsize=8)
    if run.lam_max is not None:
        lines = axes[1].plot(t, run.eta * run.lam_max, lw=1, color="C0", alpha=0.7)
        lines[0].set_label(f"probe members ({len(lines)}, one line each)")
        axes[1].axhline(2, color="k", ls="--", lw=0.8, label="edge of stability")
        axes[1].set(xscale="log", xlabel="t = η·step", ylabel="η·λmax(H)", title="sharpness (probe members)")
        axes[1].legend(fontsize=8)
    name = "W2" if "W2" in run.weights else run.names[0]
    W = run.weights[name].reshape(run.t.size, run.members, -1)
    shape = run.weights[name].shape[2:]
    entries = np.arange(W.shape[2])
    if entries.size > MAX_ENTRIES:  # e.g. a torch layer's 64+ entries: those spread widest at the end
        final = np.percentile(W[-1], [10, 90], axis=0)
        entries = np.sort(np.argsort(final[1] - final[0], kind="stable")[::-1][:MAX_ENTRIES])
    bands = entries.size <= MAX_BANDS  # more overlapping bands blur into one block: medians only then
    for c, e in enumerate(entries):
        q = np.percentile(W[:, :, e], [10, 50, 90], axis=1)
        idx = ",".join(str(int(i)) for i in np.unravel_index(e, shape)) if shape else str(e)
        if bands:
            axes[2].fill_between(t, q[0], q[2], color=f"C{c % 10}", alpha=0.15)
        axes[2].plot(t, q[1], color=f"C{c % 10}", lw=1, label=f"{name}[{idx}]")
    which = (f"every {name} entry" if entries.size == W.shape[2]
             else f"the {entries.size} of {W.shape[2]} {name} entries widest at the end")  # fmt: skip
    what = "median (line), 10-90 % of members (band)" if bands else "median over members"
    axes[2].set(xscale="log", xlabel="t = η·step", ylabel=f"{name} entry (weight value)",
                title=f"{which}:\n{what}")  # fmt: skip
    axes[2].legend(fontsize=6.5, ncols=2 if entries.size > 6 else 1)
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for ax in axes:
        if ax.get_xscale() == "log":
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
    return save_figure(fig, path) if path is not None else fig


# result kind stored in a file -> (module, loader class, plotting function name)
PLOTTERS = {
    "fpkit.Solution": ("fpkit.solution", "Solution", "fpkit.plotting:plot_solution"),
    "ensemble": ("fpkit.ensemble", "EnsembleRun", "fpkit.plotting:plot_ensemble"),
}


def cli_plot(args) -> int:
    """`fpkit plot RESULT -o FIGURE`: draw a results file with the plotter of its kind (``PLOTTERS``).

    Parameters
    ----------
    args : argparse.Namespace
        ``result`` (the results file) and ``output`` (the figure's path).

    Returns
    -------
    int
        The exit status, 0.
    """
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


# ------------------------------------------------------------------------------- figures of predictions
# Each function draws one figure of the flagship's report from a user's own predictions (``fpkit.predict``'s
# ``Prediction``, ``Predictions`` or a list of them). With ``path`` the figure is written (format by suffix:
# .png, .pdf, .svg) and the path returned; without, the matplotlib figure is returned. All use constrained
# layout, so titles, labels and colour bars do not overlap.
TIME_LABEL = "t = η·step (training time)"
DISTANCE_LABEL = "W1 / noise floor (≈ 1 is perfect)"
_BASELINE_STYLES = {  # key -> (line style, line width, label); one style per baseline, colour per entry
    "fp": ("-", 1.6, "FP prediction"),
    "frozen": (":", 2.6, "frozen (density at t = 0)"),
    "drift_only": ("--", 1.1, "drift only (Callan-Symanzik, D = 0)"),
    "diffusion_only": ("-.", 1.1, "diffusion only (A = 0)"),
}


def _as_list(predictions) -> list:
    if isinstance(predictions, dict):
        return list(predictions.values())
    if hasattr(predictions, "density") and hasattr(predictions, "distance"):
        return [predictions]
    return list(predictions)


def _finish(fig, path):
    return save_figure(fig, path) if path is not None else fig


def display_bins(p: np.ndarray, edges: np.ndarray, n_bins: int = 60):
    """Average a density over groups of cells so that about ``n_bins`` remain (for display only); returns
    the coarse density and its edges.

    Parameters
    ----------
    p : array (..., n)
        Densities on cells with edges ``edges``.
    edges : array (n + 1,)
        The cell edges.
    n_bins : int
        About this many coarse bins.

    Returns
    -------
    (array, array)
        The coarse densities (..., m) and their m + 1 edges.
    """
    f = max(1, p.shape[-1] // n_bins)
    m = (p.shape[-1] // f) * f
    return p[..., :m].reshape(*p.shape[:-1], -1, f).mean(axis=-1), edges[: m + 1 : f]


def display_window(p: np.ndarray, edges: np.ndarray, tail: float = 0.005) -> tuple[int, int]:
    """Cell range [i0, i1) holding all but ``tail`` of the density in each tail, padded by 30 % of its width
    (late W1 entries are a narrow core inside the grid that spans their initial spread).

    Parameters
    ----------
    p : array (n,)
        A density on cells with edges ``edges``.
    edges : array (n + 1,)
        The cell edges.
    tail : float
        Probability left out in each tail before padding.

    Returns
    -------
    (int, int)
        The first and one past the last cell index.
    """
    c = np.cumsum(p * np.diff(edges))
    i0, i1 = int(np.searchsorted(c, tail * c[-1])), int(np.searchsorted(c, (1 - tail) * c[-1])) + 1
    pad = max(1, int(0.3 * (i1 - i0)))
    return max(0, i0 - pad), min(p.size, i1 + pad)


def overlay_snapshots(t: np.ndarray) -> np.ndarray:
    """Snapshot indices closest to t_end · {1/100, 1/10, 1/3, 1}: spread in log time over where entries move.

    Parameters
    ----------
    t : array (S,)
        Snapshot times (t = η·step), increasing.

    Returns
    -------
    array of int
        The distinct snapshot indices, increasing.
    """
    return np.unique([int(np.argmin(np.abs(t - f * t[-1]))) for f in (0.01, 0.1, 1 / 3, 1.0)])


def plot_heatmaps(predictions, path=None):
    """Predicted and judged densities over time, one row per prediction.

    Each time row of each panel is divided by that panel's own maximum at that time (so a collapsing entry's
    late core does not hide the early spread, and the prediction is never scaled by the data's noise); the
    colour bar reads "density / its maximum at that t" from 0 to 1. Time runs on a log axis from the first
    snapshot after t = 0; the initial condition (t = 0) is drawn as a separate strip below, labelled so.

    Parameters
    ----------
    predictions : Prediction, Predictions or list of Prediction
        The predictions to draw (``fpkit.predict``), one row (or column) each.
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    preds = _as_list(predictions)
    fig, axes = plt.subplots(len(preds), 2, figsize=(11, 3.2 * len(preds) + 0.4), squeeze=False,
                             layout="constrained")  # fmt: skip
    for row, r in zip(axes, preds):
        emp, e = display_bins(r.empirical, r.grid.edges[0])
        pred, _ = display_bins(r.density, r.grid.edges[0])
        t = np.asarray(r.t, dtype=float)
        later = t > 0
        y_edges = _log_edges(t[later])
        rows = [later]
        if not later.all():  # the initial condition: a strip of its own below the first positive time
            y_edges = np.concatenate([[y_edges[0] / 3], y_edges])
            rows = [np.flatnonzero(~later)[:1], np.flatnonzero(later)]
        order = np.concatenate([np.atleast_1d(np.flatnonzero(k) if k.dtype == bool else k) for k in rows])
        for ax, p, what in ((row[0], pred, "FP prediction"), (row[1], emp, "judged members (histogram)")):
            scaled = p / np.maximum(p.max(axis=1, keepdims=True), 1e-300)
            im = ax.pcolormesh(e, y_edges, scaled[order], shading="flat", vmin=0, vmax=1, cmap="magma")
            ax.set_yscale("log")
            ax.set(xlabel=f"{r.label} (weight value)", ylabel=TIME_LABEL, title=f"{r.label}: {what}")
            if not later.all():
                ax.axhline(y_edges[1], color="w", lw=1.2)
                ticks = [v for v in (0.01, 0.1, 1, 10, 100, 1000, 1e4) if y_edges[1] < v < y_edges[-1]]
                ax.set_yticks([np.sqrt(y_edges[0] * y_edges[1]), *ticks], ["t = 0", *[f"{v:g}" for v in ticks]])
                ax.minorticks_off()
            ax.set_ylim(y_edges[0], y_edges[-1])
        fig.colorbar(im, ax=row.tolist(), label="density / its maximum at that t")
    return _finish(fig, path)


def _log_edges(t: np.ndarray) -> np.ndarray:
    """Cell edges around increasing positive times, midway in log."""
    if t.size == 1:
        return np.array([t[0] / 1.2, t[0] * 1.2])
    mid = np.sqrt(t[1:] * t[:-1])
    return np.concatenate([[t[0] ** 2 / mid[0]], mid, [t[-1] ** 2 / mid[-1]]])


def plot_overlays(predictions, path=None, snapshots=None, n_bins: int = 40):
    """Predicted density over the judged members' histogram and the frozen baseline (the judged density at
    t = 0), one row per prediction and one column per snapshot (default: t_end · {1/100, 1/10, 1/3, 1}).
    Each panel shows its snapshot's central 99 % in about ``n_bins`` display bins and its W1 / noise floor.

    Parameters
    ----------
    predictions : Prediction, Predictions or list of Prediction
        The predictions to draw (``fpkit.predict``), one row (or column) each.
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.
    snapshots : sequence of int, optional
        Snapshot indices, one column each.
    n_bins : int
        About this many display bins per panel (display only).

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    preds = _as_list(predictions)
    picks = overlay_snapshots(preds[0].t) if snapshots is None else np.asarray(snapshots)
    fig, axes = plt.subplots(len(preds), len(picks), figsize=(3.7 * len(picks), 2.9 * len(preds)), squeeze=False,
                             layout="constrained")  # fmt: skip
    for row, r in zip(axes, preds):
        edges = r.grid.edges[0]
        for ax, s in zip(row, picks):
            i0, i1 = display_window(r.empirical[s], edges)
            win = edges[i0 : i1 + 1]
            coarse, e = display_bins(r.empirical[s, i0:i1], win, n_bins)
            ax.stairs(coarse, e, color="0.6", fill=True, alpha=0.6, label="trained (judged half)")
            pred, e = display_bins(r.density[s, i0:i1], win, n_bins)
            ax.stairs(pred, e, color="C3", lw=1.5, label="FP prediction")
            first, e0 = display_bins(r.empirical[0, i0:i1], win, n_bins)
            ax.stairs(first, e0, color="k", ls=":", lw=1, label="frozen (t = 0)")
            ax.set_title(f"{r.label}, t = {r.t[s]:.3g}: W1/floor {r.distance['fp'][s]:.2f}", fontsize=9)
            ax.set(xlim=(win[0], win[-1]), xlabel=f"{r.label} (weight value)", ylabel="density")
            ax.legend(fontsize=6.5)
    return _finish(fig, path)


def plot_distances(predictions, path=None, *, groups=None, thresholds=None, baselines=tuple(_BASELINE_STYLES)):
    """W1 / noise floor over time: one colour per entry, one line style per baseline.

    Parameters
    ----------
    predictions : Prediction, Predictions or list of Prediction
    path : str or Path, optional
        Write the figure there (format by suffix); otherwise return it.
    groups : list of (prefix, title), optional
        One panel per group of entries whose label starts with ``prefix``; default: one panel per layer
        name present (W1, W2, …), or a single panel.
    thresholds : dict, optional
        ``{prefix: {name: value}}`` or ``{name: value}`` (every panel): drawn as labelled horizontal lines;
        the band below the largest is shaded as "within <name>".
    baselines : sequence of str
        Which of "fp", "frozen", "drift_only", "diffusion_only" to draw. "frozen" is drawn wide and under the
        others, so it stays visible where a baseline coincides with it.

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    preds = _as_list(predictions)
    if groups is None:
        prefixes = sorted({p.label.split("[")[0] for p in preds})
        groups = [(pre, f"{pre} entries") for pre in prefixes]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 4.4), squeeze=False, sharey=True,
                             layout="constrained")  # fmt: skip
    axes = axes[0]
    for ax, (prefix, title) in zip(axes, groups):
        members = [p for p in preds if p.label.startswith(prefix)]
        th = thresholds.get(prefix, {}) if thresholds and all(isinstance(v, dict) for v in thresholds.values()) \
            else (thresholds or {})  # fmt: skip
        _distance_panel(ax, members, th, baselines, title)
    _distance_limits(axes)
    return _finish(fig, path)


def _distance_panel(ax, members: list, th: dict, baselines, title: str) -> None:
    """One panel of ``plot_distances``: W1/floor over time of ``members`` (a colour each, a line style per
    baseline), the thresholds ``th`` as labelled lines, and a legend."""
    from matplotlib.lines import Line2D

    handles = []
    if th:
        top_name, top = max(th.items(), key=lambda kv: kv[1])
        ax.axhspan(1e-3, top, color="0.92", zorder=0)
        for (name, v), ls in zip(sorted(th.items(), key=lambda kv: -kv[1]), ("-", "--", ":", "-.")):
            ax.axhline(v, color="0.45", lw=0.9, ls=ls, zorder=1)
            handles.append(Line2D([], [], color="0.45", lw=0.9, ls=ls, label=f"{name} = {v:g}"))
    ax.axhline(1, color="0.7", lw=0.6, zorder=1)
    for i, r in enumerate(members):
        c = f"C{i % 10}"
        for key in baselines:
            if key not in r.distance:
                continue
            ls, lw, _ = _BASELINE_STYLES[key]
            ax.plot(r.t[1:], r.distance[key][1:], color=c, ls=ls, lw=lw,
                    alpha=0.45 if key == "frozen" else 0.9, zorder=2 if key == "frozen" else 3)  # fmt: skip
        handles.append(Line2D([], [], color=c, lw=4, label=r.label))
    for key in baselines:
        ls, lw, name = _BASELINE_STYLES[key]
        handles.append(Line2D([], [], color="k", ls=ls, lw=lw, label=name))
    ax.set(xscale="log", yscale="log", xlabel=TIME_LABEL, title=title)
    ax.legend(handles=handles, fontsize=6.5, ncols=2, loc="upper left")
    if th:
        ax.text(0.99, 0.02, f"shaded: W1/floor ≤ {top:g} ({top_name})", transform=ax.transAxes, ha="right",
                va="bottom", fontsize=7, color="0.3")  # fmt: skip


def _distance_limits(axes) -> None:
    """Shared y range of distance panels (room above for the legend), plain-number ticks, the y label."""
    from matplotlib.ticker import FuncFormatter

    drawn = np.concatenate([np.ravel(line.get_ydata()) for ax in axes for line in ax.get_lines()
                            if len(line.get_xdata()) > 2] or [np.ones(1)])  # fmt: skip
    drawn = drawn[np.isfinite(drawn) & (drawn > 0)]
    if drawn.size == 0:
        drawn = np.ones(1)
    for ax in axes:
        ax.set_ylim(0.8 * min(drawn.min(), 0.5), 1.3 * max(drawn.max(), 2.0) * 3)  # room for the legend
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axes[0].set_ylabel(DISTANCE_LABEL + "\n(judged out of sample)")


def plot_prediction(prediction, path=None, *, ax=None, snapshots=None, n_bins: int = 60):
    """One prediction at a glance (``Prediction.plot``): the predicted density (lines) over the judged members'
    histogram (steps) at a few snapshots, one colour per snapshot; with no ``ax``, a second panel shows
    W1/floor over time of the FP and its baselines (drawn as in ``plot_distances``).

    Parameters
    ----------
    prediction : Prediction
        One entry's prediction (``fpkit.predict``).
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return
        the figure.
    ax : matplotlib.axes.Axes, optional
        Draw only the density panel into this axes (of the caller's figure).
    snapshots : sequence of int, optional
        Snapshot indices; default ``overlay_snapshots`` (t_end · {1/100, 1/10, 1/3, 1}).
    n_bins : int
        About this many display bins across the drawn window (display only; the judged W1 is unaffected).

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure (``ax``'s figure if given).
    """
    plt = _pyplot()
    r = prediction
    if ax is None:
        fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    else:
        fig, ax2 = ax.figure, None
    picks = overlay_snapshots(r.t) if snapshots is None else np.asarray(snapshots)
    edges = r.grid.edges[0]
    # one window for every snapshot drawn: the union of their central 99 %
    wins = [display_window(r.empirical[s], edges) for s in picks]
    i0, i1 = min(w[0] for w in wins), max(w[1] for w in wins)
    win = edges[i0 : i1 + 1]
    for i, s in enumerate(picks):
        emp, e = display_bins(r.empirical[s, i0:i1], win, n_bins)
        ax.stairs(emp, e, color=f"C{i}", alpha=0.5, label=f"judged, t = {r.t[s]:.3g}")
        pred, e = display_bins(r.density[s, i0:i1], win, n_bins)
        ax.plot(0.5 * (e[1:] + e[:-1]), pred, color=f"C{i}", lw=1.6, label=f"FP, t = {r.t[s]:.3g}")
    ax.set(xlim=(win[0], win[-1]), xlabel=f"{r.label} (weight value)", ylabel="density",
           title=f"{r.label}: FP prediction (lines) vs judged members (steps)")  # fmt: skip
    ax.legend(fontsize=7, ncols=2)
    if ax2 is not None:
        _distance_panel(ax2, [r], {}, [k for k in _BASELINE_STYLES if k in r.distance],
                        f"{r.label}: distance to the judged members")  # fmt: skip
        _distance_limits([ax2])
    return _finish(fig, path)


SE_BAND = 2.0
"""Half-width of the coefficient bands in standard errors: ±2 SE, a pointwise ≈95 % interval."""


def plot_coefficients(predictions, path=None, snapshots=None):
    """Estimated drift A(w, t) (top) and diffusion D(w, t) (bottom) at a few snapshots, one column per
    prediction, drawn where the estimate had enough members (``coefficients["supported"]``), with a band of
    ±``SE_BAND`` standard errors where the prediction carries them (``coefficients["drift_se"]``,
    ``["diffusion_se"]``: the local-linear fit's sandwich standard errors, ``fpkit.predict``). On the log D
    axis a band's lower edge is cut at 1 % of the estimate (a band reaching that far: D is consistent with
    zero). Units: A in w per unit t, D in w² per unit t (Itô, ∂t p = −∂w(A p) + ∂w²(D p)), t = η·step.

    Parameters
    ----------
    predictions : Prediction, Predictions or list of Prediction
        The predictions to draw, one column each.
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return
        the matplotlib figure.
    snapshots : sequence of int, optional
        Snapshot indices to draw; default ``overlay_snapshots`` of the first prediction's times.

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    from matplotlib.patches import Patch

    preds = _as_list(predictions)
    picks = overlay_snapshots(preds[0].t) if snapshots is None else np.asarray(snapshots)
    fig, axes = plt.subplots(2, len(preds), figsize=(4.6 * len(preds), 6.2), squeeze=False, layout="constrained")
    for col, r in enumerate(preds):
        seen = r.empirical.max(axis=0) > 0
        banded = False
        for i, s in enumerate(picks):
            m = np.asarray(r.coefficients["supported"][s], dtype=bool) & seen
            x = r.grid.x[m]
            for ax, key in ((axes[0, col], "drift"), (axes[1, col], "diffusion")):
                y = r.coefficients[key][s][m]
                ax.plot(x, y, color=f"C{i}", label=f"t = {r.t[s]:.3g}")
                se = r.coefficients.get(f"{key}_se")
                if se is not None and np.isfinite(se[s][m]).any():
                    lo, hi = y - SE_BAND * se[s][m], y + SE_BAND * se[s][m]
                    if key == "diffusion":
                        lo = np.maximum(lo, 0.01 * y)
                    ax.fill_between(x, lo, hi, color=f"C{i}", alpha=0.25, lw=0)
                    banded = True
        axes[0, col].axhline(0, color="0.5", lw=0.7)
        axes[0, col].set(title=f"{r.label}: drift A(w, t)", xlabel=f"w = {r.label}", ylabel="A  [w per unit t]")
        axes[1, col].set(title=f"{r.label}: diffusion D(w, t)", xlabel=f"w = {r.label}", ylabel="D  [w² per unit t]",
                         yscale="log")  # fmt: skip
        for ax in axes[:, col]:
            handles, _ = ax.get_legend_handles_labels()
            if banded:
                handles.append(Patch(color="0.55", alpha=0.45, label=f"±{SE_BAND:g} standard errors (pointwise)"))
            ax.legend(handles=handles, fontsize=7)
    return _finish(fig, path)


def plot_pair(pair, path=None, snapshot: int = -1):
    """A joint 2-D prediction (``fpkit.predict(..., joint=True)``) next to the judged members' 2-D histogram
    at one snapshot, on one shared colour scale (0 to the judged histogram's 99.5th percentile), labelled.

    Parameters
    ----------
    pair : PairPrediction
        A joint prediction of two entries (``fpkit.predict(..., joint=True)``).
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.
    snapshot : int
        The snapshot index (default the last).

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    g = pair.grid
    s = snapshot % pair.t.size
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 4.4), layout="constrained")
    vmax = float(np.percentile(pair.empirical[s], 99.5)) or None
    for ax, p, title in ((axes[0], pair.density[s], "FP prediction (2-D, full D tensor)"),
                         (axes[1], pair.empirical[s], "trained (judged half)")):  # fmt: skip
        im = ax.pcolormesh(g.axes[0], g.axes[1], p.T, shading="nearest", vmin=0, vmax=vmax, cmap="magma")
        ax.set(xlabel=f"{pair.labels[0]} (weight value)", ylabel=f"{pair.labels[1]} (weight value)", title=title)
    fig.colorbar(im, ax=axes.tolist(), label="joint density p(w₁, w₂) (colours clipped at the\n"
                                           "judged histogram's 99.5th percentile)", extend="max")  # fmt: skip
    fig.suptitle(f"{pair.labels[0]} and {pair.labels[1]} at t = {pair.t[s]:.3g} (η·step)")
    return _finish(fig, path)


def plot_output_distributions(trained, others: dict, path=None, *, quantity: str = "reconstruction error"):
    """Histograms of a per-network output quantity: the trained networks (filled) and other sets of networks
    (``others``: label -> values, or label -> (values, W1/floor against the trained)), on the trained
    networks' range (left, linear) and on everything (right, log). The number after a label is the set's W1
    distance to the trained networks over the two-sample noise floor.

    Parameters
    ----------
    trained : array (N,)
        The quantity for the trained networks.
    others : dict
        label -> values, or label -> (values, W1/floor against ``trained``).
    path : str or Path, optional
        Write the figure there (format by suffix: .png, .pdf, .svg) and return the path; otherwise return the
        figure.
    quantity : str
        The quantity's name, used as the x label (with its units if it has any).

    Returns
    -------
    Path or matplotlib.figure.Figure
        The written file's path when ``path`` is given, else the figure.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(12.5, 4.4), layout="constrained")
    sets = [("trained networks", np.asarray(trained), None, dict(histtype="stepfilled", color="0.7"))]
    styles = [dict(color="C3", lw=1.8), dict(color="C1", lw=1), dict(color="C0", ls="--"), dict(color="C2", ls=":")]
    for (label, v), st in zip(others.items(), styles * 3):
        vals, ratio = (v if isinstance(v, tuple) else (v, None))
        sets.append((label, np.asarray(vals), ratio, dict(histtype="step", **st)))
    near = np.concatenate([sets[0][1], *(s[1] for s in sets[1:2])])
    everything = np.concatenate([s[1] for s in sets])
    positive = everything[everything > 0]
    ranges = [np.linspace(*np.percentile(near, [0.5, 99.5]), 50)]
    ranges.append(np.geomspace(*np.percentile(positive, [0.1, 99.9]), 60) if positive.size else ranges[0])
    for ax, bins in zip(axes, ranges):
        for label, v, ratio, style in sets:
            inside = (v >= bins[0]) & (v <= bins[-1])
            name = label if ratio is None else f"{label}: W1/floor {ratio:.2f}"
            if inside.any():  # fraction of all networks per bin (a set with nothing in range draws nothing)
                ax.hist(v[inside], bins, weights=np.full(inside.sum(), 1.0 / v.size), label=name, **style)
        ax.set(xlabel=quantity, ylabel="fraction of networks per bin", xlim=(bins[0], bins[-1]))
        ax.legend(fontsize=6.5, title="W1/floor: distance to the trained networks / noise floor", title_fontsize=6.5)
    axes[1].set(xscale="log", yscale="log")
    axes[0].set_title("trained networks' range (linear)")
    axes[1].set_title("every set (log scale)")
    return _finish(fig, path)
