"""Experiments as plug-ins: ``fpkit experiment list``, ``fpkit experiment run NAME``.

An experiment is a subclass of :class:`Experiment` in one module: it declares a typed configuration schema
(``Config``, a ``fpkit.config.Schema``) and overrides for ``--quick``, runs stages that return typed results
(dataclasses), turns the numbers into a :class:`Verdict`, and formats them; one shared writer
(:func:`write_outputs`) produces ``results.h5``, ``report.md`` and the figures, atomically. The report only
formats numbers the experiment computed; nothing reads report.md back.

Where experiments come from
---------------------------
- Installed packages register them under the entry-point group ``fpkit.experiments`` (``name =
  "module:attribute"``, the attribute an Experiment subclass or instance); fpkit's own (the flagship
  ``fp-histograms``, …) are registered that way in its pyproject.toml.
- A user's own file: ``fpkit experiment run path/to/mine.py`` imports the file and takes its module-level
  ``EXPERIMENT`` (or its only Experiment subclass).

Minimal example (a file ``mine.py``)::

    from dataclasses import dataclass
    import numpy as np
    from fpkit.config import Schema
    from fpkit.experiments import Claim, Experiment, Verdict

    class Config(Schema):
        seed: int = 0
        n: int = 1000

    @dataclass
    class Result:
        mean: float

    class Mine(Experiment):
        name = "mine"
        title = "Sample mean of N(0, 1)"
        Config = Config
        quick = {"n": 100}

        def run(self, cfg, ctx):
            x = np.random.default_rng(cfg["seed"]).standard_normal(cfg["n"])
            return Result(float(x.mean()))

        def verdict(self, cfg, res):
            bound = 4 / np.sqrt(cfg["n"])
            held = abs(res.mean) <= bound
            return Verdict([Claim("mean", held, res.mean, "|mean| ≤ 4/√n", "the sample mean is near 0")],
                           thresholds={"4/√n": "four standard errors of the mean"})

    EXPERIMENT = Mine
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib
import importlib.util
import logging
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ConfigError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "fpkit.experiments"
RESULTS_KIND = "fpkit.Experiment"


# ------------------------------------------------------------------------------------------- verdict
@dataclass
class Claim:
    """One checked statement: ``held`` says whether the measured ``value`` met the ``threshold`` (text naming
    a threshold defined in the verdict's ``thresholds``); ``sentence`` says in words what was claimed.

    Parameters
    ----------
    name : str
        Short name of the claim (e.g. an entry's label).
    held : bool
        Whether the measured value met the threshold.
    value : float, dict or str
        The measured number(s), in the units the threshold states.
    threshold : str
        Name of a threshold defined in the verdict's ``thresholds``.
    sentence : str
        What was claimed, in words.
    """

    name: str
    held: bool
    value: Any
    threshold: str
    sentence: str

    def __post_init__(self):
        # a claim measured as NaN (nothing measured) never counts as held
        if self.held and isinstance(self.value, (float, np.floating)) and np.isnan(self.value):
            self.held = False

    def to_dict(self) -> dict:
        """The claim as plain JSON-able values (numpy scalars and arrays converted).

        Returns
        -------
        dict
            ``name``, ``held``, ``value``, ``threshold``, ``sentence``.
        """
        return {"name": self.name, "held": bool(self.held), "value": _plain(self.value), "threshold": self.threshold,
                "sentence": self.sentence}  # fmt: skip


@dataclass
class Verdict:
    """The numbers' verdict: the claims, every threshold used (defined once, by name) and a summary paragraph
    (computed from the claims by the experiment, never parsed back from a report).

    Parameters
    ----------
    claims : list of Claim
        The checked claims.
    summary : str
        A paragraph computed from the numbers.
    thresholds : dict
        Threshold name -> its definition in words (with its value).
    """

    claims: list
    summary: str = ""
    thresholds: dict = field(default_factory=dict)

    @property
    def held(self) -> int:
        """The number of claims that held."""
        return sum(bool(c.held) for c in self.claims)

    @property
    def passed(self) -> bool:
        """Whether every claim held."""
        return self.held == len(self.claims)

    def headline(self) -> str:
        """One line: how many claims held, then the summary.

        Returns
        -------
        str
            The headline.
        """
        return f"{self.held} of {len(self.claims)} claims held. {self.summary}".strip()

    def markdown(self) -> str:
        """The report's verdict section: headline, a table of the claims and the threshold definitions.

        Returns
        -------
        str
            Markdown text.
        """
        lines = ["## Verdict\n", self.headline() + "\n"]
        if self.claims:
            lines += ["| claim | measured | threshold | held |", "|---|---|---|---|"]
            for c in self.claims:
                lines.append(f"| {c.name}: {c.sentence} | {_fmt_value(c.value)} | {c.threshold} | "
                             f"{'yes' if c.held else '**no**'} |")  # fmt: skip
        if self.thresholds:
            lines.append("\nThresholds:\n")
            lines += [f"- **{k}**: {v}" for k, v in self.thresholds.items()]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict:
        """The verdict as plain JSON-able values (stored as the ``verdict`` attribute of results.h5).

        Returns
        -------
        dict
            ``summary``, ``held``, ``claims`` and ``thresholds``.
        """
        return {"summary": self.summary, "held": self.held, "claims": [c.to_dict() for c in self.claims],
                "thresholds": dict(self.thresholds)}  # fmt: skip


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def _fmt_value(v) -> str:
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt_value(x)}" for k, x in v.items())
    return str(v)


# ------------------------------------------------------------------------------------------ the base
class RunContext:
    """What a running experiment gets besides its configuration: stage timing and a progress switch.

    Parameters
    ----------
    show_progress : bool, optional
        Progress bars on (True), off (False) or when the output is a terminal (None).
    client : dask.distributed.Client, optional
        Where an experiment may send its sweeps and per-entry tasks (None: in-process).
    """

    def __init__(self, show_progress: bool | None = None, client=None):
        self.timings: dict[str, float] = {}
        self.show_progress = show_progress
        self.client = client

    @contextmanager
    def stage(self, name: str):
        """Time a stage (seconds, accumulated under ``name`` in the results file and the report).

        Parameters
        ----------
        name : str
            The stage's name.

        Yields
        ------
        None
            The body of the ``with`` block is timed.
        """
        t0 = time.perf_counter()
        log.info("stage %s ...", name)
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


class Experiment:
    """Base class of an experiment plug-in (see the module docstring). Subclasses set ``name``, ``title``,
    ``Config`` (a ``fpkit.config.Schema``) and ``quick`` (overrides for --quick, a nested dict), and
    implement ``run`` and ``verdict``; ``report``, ``figures`` and ``save`` have generic defaults."""

    name: str = ""
    title: str = ""
    Config: type | None = None
    quick: dict = {}

    def run(self, cfg: dict, ctx: RunContext):
        """Run the stages on the resolved configuration (a plain nested dict); return a result dataclass.

        Parameters
        ----------
        cfg : dict
            The resolved configuration (a plain nested dict, validated by ``Config``).
        ctx : RunContext
            Stage timing, the progress switch and an optional Dask client.

        Returns
        -------
        object
            The experiment's result (a dataclass).
        """
        raise NotImplementedError

    def verdict(self, cfg: dict, result) -> Verdict:
        """The claims and whether they held, from the result's numbers.

        Parameters
        ----------
        cfg : dict
            The resolved configuration (a plain nested dict, validated by ``Config``).
        result : object
            What ``run`` returned.

        Returns
        -------
        Verdict
            The claims, thresholds and summary.
        """
        raise NotImplementedError

    def report(self, cfg: dict, result, verdict: Verdict, figures: dict) -> str:
        """Markdown sections of the report (the writer adds the title, verdict, run times and figures).

        Parameters
        ----------
        cfg : dict
            The resolved configuration (a plain nested dict, validated by ``Config``).
        result : object
            What ``run`` returned.
        verdict : Verdict
            What ``verdict`` returned.
        figures : dict
            Description -> path of the figures written.

        Returns
        -------
        str
            Markdown.
        """
        return ""

    def figures(self, cfg: dict, result, out: Path) -> dict:
        """Write figures into ``out``; return {description: path}.

        Parameters
        ----------
        cfg : dict
            The resolved configuration (a plain nested dict, validated by ``Config``).
        result : object
            What ``run`` returned.
        out : Path
            The output folder.

        Returns
        -------
        dict
            Description -> path (or None for a figure not drawn).
        """
        return {}

    def save(self, group, cfg: dict, result) -> None:
        """Write the result into an open HDF5 group (default: every dataclass field, arrays as datasets,
        nested dicts and dataclasses as groups, other values as JSON attributes).

        Parameters
        ----------
        group : h5py.Group
            The open results file's root group.
        cfg : dict
            The resolved configuration (a plain nested dict, validated by ``Config``).
        result : object
            What ``run`` returned.
        """
        write_tree(group, result)


def write_tree(group, value, name: str | None = None) -> None:
    """Store a dataclass / dict / list / array / scalar tree in an HDF5 group: arrays as datasets, containers
    as sub-groups, scalars and strings as JSON attributes (the generic results layout).

    Parameters
    ----------
    group : h5py.Group
        Where to write.
    value : object
        The tree to store.
    name : str, optional
        The name under ``group`` (None: ``value``'s fields go into ``group`` itself).
    """
    from .io import set_json_attr

    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if name is not None and isinstance(value, (dict, list, tuple)) and any(
        isinstance(v, (np.ndarray, dict, list, tuple)) or dataclasses.is_dataclass(v)
        for v in (value.values() if isinstance(value, dict) else value)
    ):  # fmt: skip
        group = group.create_group(name)
        name = None
    if name is None:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if isinstance(v, np.ndarray) and v.dtype != object:
                group.create_dataset(str(k), data=v)
            elif isinstance(v, (dict, list, tuple)) or dataclasses.is_dataclass(v):
                write_tree(group, v, str(k))
            elif v is not None and hasattr(v, "to_dict"):
                set_json_attr(group, str(k), v.to_dict())
            else:
                set_json_attr(group, str(k), v)
        return
    set_json_attr(group, name, value)


# ------------------------------------------------------------------------------------------ registry
def _entry_points() -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available() -> dict[str, str]:
    """Installed experiments: name -> one-line title.

    Returns
    -------
    dict
        Experiment name -> title, sorted by name.
    """
    out = {}
    for name, ep in sorted(_entry_points().items()):
        try:
            out[name] = _instance(ep.load()).title
        except Exception as exc:  # a broken plug-in must not hide the others
            out[name] = f"(cannot be loaded: {exc})"
    return out


def _instance(obj) -> Experiment:
    if isinstance(obj, type) and issubclass(obj, Experiment):
        obj = obj()
    if not isinstance(obj, Experiment):
        raise ConfigError(f"{obj!r} is not an fpkit.experiments.Experiment (subclass or instance)")
    if not obj.name or obj.Config is None:
        raise ConfigError(f"experiment {type(obj).__name__} must set `name` and `Config`")
    return obj


def load(name_or_path) -> Experiment:
    """An experiment by registered name, or from a Python file that defines ``EXPERIMENT`` (or exactly one
    Experiment subclass).

    Parameters
    ----------
    name_or_path : str or Path
        A registered name (``fpkit experiment list``) or a .py file.

    Returns
    -------
    Experiment
        An instance of the experiment.
    """
    s = str(name_or_path)
    if s.endswith(".py") or os.sep in s:
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"experiment file {s!r} does not exist")
        if path.suffix != ".py":
            raise ConfigError(f"experiment file {s!r} is not a Python file (.py); give an installed experiment's "
                              "name (fpkit experiment list) or a .py file that defines EXPERIMENT")  # fmt: skip
        mod_name = f"fpkit_user_experiment_{abs(hash(str(path.resolve())))}"
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"experiment file {s!r} failed to import: {type(exc).__name__}: {exc}") from exc
        if hasattr(module, "EXPERIMENT"):
            return _instance(module.EXPERIMENT)
        found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Experiment)
                 and v is not Experiment and v.__module__ == mod_name]  # fmt: skip
        if len(found) != 1:
            raise ConfigError(f"experiment file {s!r} must define EXPERIMENT or exactly one Experiment subclass; "
                              f"found {len(found)}")  # fmt: skip
        return _instance(found[0])
    eps = _entry_points()
    if s not in eps:
        raise ConfigError(f"unknown experiment {s!r}; installed: {sorted(eps)} (or give a path to a .py file)")
    return _instance(eps[s].load())


# ------------------------------------------------------------------------------------ configuration
def experiment_schemas() -> dict[str, type]:
    """The configuration schema of every installed experiment, by experiment name (``fpkit config show``).

    Returns
    -------
    dict
        Experiment name -> its ``Config`` schema class.
    """
    out = {}
    for name, ep in _entry_points().items():
        try:
            out[name] = _instance(ep.load()).Config
        except Exception as exc:  # a broken plug-in must not hide the others
            log.warning("experiment %s cannot be loaded: %s", name, exc)
    return out


def defaults(exp: Experiment) -> dict:
    """The experiment's default configuration as a plain nested dict.

    Parameters
    ----------
    exp : Experiment
        The experiment.

    Returns
    -------
    dict
        Its default configuration.
    """
    return exp.Config().model_dump()


def resolve_config(exp: Experiment, *, quick: bool = False, config=None, overrides: dict | None = None,
                   seed: int | None = None) -> dict:  # fmt: skip
    """Defaults, then the experiment's --quick overrides, then ``config`` (a dict or a TOML file path), then
    ``overrides`` (a dict), then ``seed``; validated by the experiment's schema (wrong types and unknown keys
    refused with their path).

    Parameters
    ----------
    exp : Experiment
        The experiment.
    quick : bool
        Apply the experiment's small configuration.
    config : dict or str or Path, optional
        Overrides, or a TOML file of them.
    overrides : dict, optional
        Further overrides (applied after ``config``).
    seed : int, optional
        Replaces the configuration's seed.

    Returns
    -------
    dict
        The validated configuration.
    """
    from .config import load_toml, merge, parse

    cfg = defaults(exp)
    if quick:
        cfg = merge(cfg, exp.quick)
    if config is not None:
        cfg = merge(cfg, config if isinstance(config, dict) else load_toml(config))
    if overrides:
        cfg = merge(cfg, overrides)
    if seed is not None:
        cfg["seed"] = seed
    return parse(exp.Config, cfg).model_dump()


# ----------------------------------------------------------------------------------------- the run
@dataclass
class Outcome:
    """What ``run`` returns: the experiment, its resolved configuration, result, verdict, stage timings and
    the files written (None when no output folder was given).

    Parameters
    ----------
    experiment : Experiment
        The experiment that ran.
    config : dict
        Its resolved configuration.
    result : object
        What its ``run`` returned.
    verdict : Verdict
        Its verdict.
    timings : dict
        Stage name -> seconds (wall clock).
    files : dict, optional
        Description -> path of every file written.
    """

    experiment: Experiment
    config: dict
    result: Any
    verdict: Verdict
    timings: dict
    files: dict | None = None


def run(name_or_path, *, quick: bool = False, config=None, overrides: dict | None = None, seed: int | None = None,
        out=None, show_progress: bool | None = None, client=None) -> Outcome:  # fmt: skip
    """Resolve the configuration, run the experiment, compute its verdict and (with ``out``) write
    results.h5, report.md and the figures into the folder ``out``.

    Parameters
    ----------
    name_or_path : str, Path or Experiment
        The experiment (``load``'s argument, or an instance).
    quick : bool
        Use the experiment's small configuration.
    config : dict or str or Path, optional
        Overrides, or a TOML file of them.
    overrides : dict, optional
        Further overrides.
    seed : int, optional
        Replaces the configuration's seed.
    out : str or Path, optional
        Output folder; nothing is written without it.
    show_progress : bool, optional
        Progress bars on/off (None: when the output is a terminal).
    client : dask.distributed.Client, optional
        Run the experiment's sweeps and per-entry tasks there.

    Returns
    -------
    Outcome
        The configuration, result, verdict, timings and files.
    """
    exp = name_or_path if isinstance(name_or_path, Experiment) else load(name_or_path)
    cfg = resolve_config(exp, quick=quick, config=config, overrides=overrides, seed=seed)
    if out is not None:  # an unusable output folder is refused before any work
        from .io import check_output_dir

        check_output_dir(out)
    ctx = RunContext(show_progress=show_progress, client=client)
    result = exp.run(cfg, ctx)
    verdict = exp.verdict(cfg, result)
    outcome = Outcome(exp, cfg, result, verdict, ctx.timings)
    if out is not None:
        outcome.files = write_outputs(outcome, out)
    return outcome


def write_outputs(outcome: Outcome, out_dir) -> dict:
    """The one writer of every experiment: results.h5 (config, verdict, timings and the experiment's own layout
    under ``/``), the figures and report.md, each through fpkit's one atomic-write path (temporary file,
    fsync, verify, rename). The experiment's ``figures`` is called first: figures it draws through
    ``fpkit.plotting.draw_figures`` are drawn by worker processes while this process writes results.h5, then
    collected. results.h5 and report.md are written also when a figure fails or Ctrl-C stops the figures (the
    report says so; the error is raised after them), so a figure's failure loses no result.

    Parameters
    ----------
    outcome : Outcome
        What ``run`` computed.
    out_dir : str or Path
        The output folder (created if missing).

    Returns
    -------
    dict
        Description -> path of every file written.
    """
    from .io import atomic_h5, check_output_dir, set_json_attr
    from .plotting import figure_session, finish_figures

    exp, cfg, res = outcome.experiment, outcome.config, outcome.result
    out = check_output_dir(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from .io import write_error

        raise write_error(out, exc) from exc
    saved, failed = False, None
    try:
        with figure_session():
            t0 = time.perf_counter()
            try:  # returns at once for figures handed to draw_figures' workers: they draw while results.h5 is written
                figures, failed = exp.figures(cfg, res, out), None
            except BaseException as exc:  # raised once results.h5 is written
                figures, failed = {}, exc
            with atomic_h5(out / "results.h5") as f:
                f.attrs["kind"] = RESULTS_KIND
                f.attrs["experiment"] = exp.name
                set_json_attr(f, "config", cfg)
                set_json_attr(f, "timings", outcome.timings)
                set_json_attr(f, "verdict", outcome.verdict.to_dict())
                exp.save(f, cfg, res)
            saved = True
            if failed is not None:
                raise failed
            figures = {k: v for k, v in finish_figures(figures).items() if v is not None}
            outcome.timings["figures_and_files"] = time.perf_counter() - t0
    except BaseException as exc:
        if not saved:
            raise
        # results.h5 is complete: the report of its numbers is written too (a figure that failed, or Ctrl-C
        # while the figures were drawn, loses no result), then the error goes on
        figures, failed = {}, exc
    text = f"# {exp.title}\n\n" + exp.report(cfg, res, outcome.verdict, figures).strip() + "\n\n" + outcome.verdict.markdown()
    text += "\n## Run time\n\n| stage | seconds |\n|---|---|\n" + "".join(
        f"| {k} | {v:.1f} |\n" for k, v in outcome.timings.items())  # fmt: skip
    if figures:
        text += "\n## Figures\n\n" + "".join(f"- `{Path(p).name}`: {k}\n" for k, p in figures.items())
    if failed is not None:
        why = "interrupted" if isinstance(failed, KeyboardInterrupt) else f"{type(failed).__name__}: {str(failed)[:200]}"
        text += f"\n## Figures\n\nNot finished ({why}); results.h5 is complete.\n"
        with contextlib.suppress(Exception):  # the figure's error is the one to report, not a second one
            write_text_atomic(out / "report.md", text)
        raise failed
    write_text_atomic(out / "report.md", text)
    return {"results": out / "results.h5", "report": out / "report.md", **figures}


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file (UTF-8) through fpkit's one atomic-write path (temporary file, fsync, verified by
    reading it back, rename); the previous file is unchanged after any error.

    Parameters
    ----------
    path : Path
        The file.
    text : str
        Its content.

    Returns
    -------
    Path
        The written file.
    """
    from .io import write_bytes_atomic

    return write_bytes_atomic(path, text.encode("utf-8"))


# ------------------------------------------------------------------------------------------------ CLI
def cli_experiment(args) -> int:
    """``fpkit experiment list`` / ``fpkit experiment run NAME [--quick] [--config F] [--out DIR] [--seed N]``.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed command line (``action``, ``name``, ``quick``, ``config``, ``out``, ``seed``, and the Dask
        options).

    Returns
    -------
    int
        The exit status, 0.
    """
    if args.action == "list":
        for name, title in available().items():
            print(f"{name:20s} {title}")
        return 0
    from .distributed import client_from_args  # --workers / --scheduler (Dask imported only then)

    with client_from_args(args) as client:
        return run_and_print(args.name, quick=args.quick, config=args.config, seed=args.seed,
                             out=args.out or f"fpkit-{Path(str(args.name)).stem}", client=client)  # fmt: skip


def run_and_print(name, *, quick, config, seed, out, **kwargs) -> int:
    """Run an experiment and print its headline and the files written (the command line's output).

    Parameters
    ----------
    name : str or Path
        The experiment (``load``'s argument).
    quick, config, seed, out
        As for ``run``.
    **kwargs
        Passed on to ``run`` (``client``, ``show_progress``).

    Returns
    -------
    int
        The exit status, 0.
    """
    t0 = time.perf_counter()
    exp = load(name)
    print(f"fpkit experiment run {exp.name}{' --quick' if quick else ''}: {exp.title} ...", flush=True)
    outcome = run(exp, quick=quick, config=config, seed=seed, out=out, **kwargs)
    print(outcome.verdict.headline())
    print(f"wrote {', '.join(Path(p).name for p in outcome.files.values())} to {out}/ in "
          f"{time.perf_counter() - t0:.0f} s")  # fmt: skip
    return 0
