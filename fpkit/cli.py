"""The `fpkit` command.

Sub-commands import their module only when run, so `fpkit --help` starts instantly. Every failure prints
one line and exits with status 2 (bad configuration, unreadable input, unwritable output, a numerical
failure, out of memory); Ctrl-C and SIGTERM exit with 130; anything else is a bug: one line, status 1
(as the command; ``main(argv)`` called from Python raises it); --debug shows the traceback. Output paths are checked before any work.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import threading

from .errors import ConfigError, FpkitError

# sub-command -> (module, function, help); each function takes the parsed arguments
COMMANDS = {
    "reproduce": ("fpkit.reproduce", "cli_reproduce", "run the main experiment and write its report"),
    "solve": ("fpkit.problem", "cli_solve", "solve a Fokker-Planck problem described in a TOML file"),
    "plot": ("fpkit.plotting", "cli_plot", "plot a results file"),
    "train": ("fpkit.ensemble", "cli_train", "train an autoencoder ensemble described in a TOML file"),
    "config": ("fpkit.config", "cli_config", "list the configuration schemas, or show one's defaults as TOML"),
    "experiment": ("fpkit.experiments", "cli_experiment", "list or run experiments (built-in or your own file)"),
}


def add_cluster_arguments(parser, what: str) -> None:
    """--workers N / --scheduler ADDRESS: run ``what`` as Dask tasks (fpkit.distributed; fpkit[distributed])."""
    g = parser.add_mutually_exclusive_group()
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help=f"run {what} on a local Dask cluster of N worker processes (pip install 'fpkit[distributed]')")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help=f"run {what} on the Dask cluster whose scheduler is at ADDRESS (e.g. tcp://host:8786)")


DOCS = "docs/guide/cli.md (the command and its TOML files) and docs/config.md (every key, typed)"

SOLVE_FILE = """\
The TOML file describes one Fokker-Planck problem (schema `problem`; `fpkit config show problem` prints
every key with its default). Sections:
  [grid]     lo, hi, n (numbers in 1-D, lists in 2-D/3-D)
  [problem]  drift, diffusion (numbers or numpy expressions in x (y, z) and t; D, not sigma), bc, scheme
  [initial]  a Gaussian's mean and std, or density = an expression (normalised for you)
  [solve]    t_eval (output times), method, dt, t0
Example (a double well):
  [grid]
  lo = -2.5
  hi = 2.5
  n = 400
  [problem]
  drift = "-4*x*(x**2 - 1)"
  diffusion = 0.25
  [initial]
  mean = 0.3
  std = 0.1
  [solve]
  t_eval = [0.1, 1.0, 5.0]
See examples/double_well.toml in the fpkit repository and """ + DOCS + "."

TRAIN_FILE = """\
The TOML file describes an ensemble (schema `ensemble`; `fpkit config show ensemble` prints every key with
its default). Sections: seed, [model] (kind, hidden widths, activation, bias, parameterization),
[data] (kind, d, n, spectrum, online), [train] (members, steps, snapshots, lr, batch_size, optimizer,
sampling, on_divergence, ...).
Example:
  seed = 0
  [model]
  hidden = [3, 3, 3]
  activation = "tanh"
  [data]
  d = 8
  n = 512
  [train]
  members = 1000
  steps = 2000
  snapshots = 20
  lr = 0.05
  batch_size = 8
See """ + DOCS + "."

PLOT_FILE = """\
Draws a results file written by fpkit: a Solution (`fpkit solve`; densities at the output times) or an
EnsembleRun (`fpkit train`, the torch bridge; weight bands, loss and curvature over training). The
figure's format follows the --output suffix: .png, .pdf or .svg. Example:
  fpkit solve problem.toml -o dw.h5 && fpkit plot dw.h5 -o dw.png    (problem.toml: see fpkit solve --help)"""

EXPERIMENT_FILE = """\
--config takes a TOML file with the experiment's own keys (schema NAME: `fpkit config show NAME` prints
them with their defaults); keys left out keep the defaults, `--quick` starts from the small defaults.
Example:
  fpkit experiment run fp-histograms --quick --config my.toml --out runs/quick
with my.toml holding, e.g.
  [model]
  activation = "relu"
See """ + DOCS + "."


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fpkit", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("reproduce", help=COMMANDS["reproduce"][2] + " (= fpkit experiment run fp-histograms)")
    r.add_argument("--quick", action="store_true", help="small run (under a minute, for CI)")
    r.add_argument("--config", help="TOML file overriding the embedded defaults")
    r.add_argument("--out", default="fpkit-out", help="output folder (default: fpkit-out)")
    r.add_argument("--sweep", action="store_true", help="also run the learning-rate/batch sweep")
    r.add_argument("--seed", type=int, default=None, help="override the configuration's seed")

    raw = argparse.RawDescriptionHelpFormatter
    s = sub.add_parser("solve", help=COMMANDS["solve"][2], description=COMMANDS["solve"][2] + ".",
                       epilog=SOLVE_FILE, formatter_class=raw)  # fmt: skip
    s.add_argument("config", help="TOML file with sections [grid], [problem], [initial], [solve] (below)")
    s.add_argument("-o", "--output", required=True, help="results file (.h5)")

    pl = sub.add_parser("plot", help=COMMANDS["plot"][2], description=COMMANDS["plot"][2] + ".",
                        epilog=PLOT_FILE, formatter_class=raw)  # fmt: skip
    pl.add_argument("result", help="a Solution or EnsembleRun file (.h5) written by fpkit")
    pl.add_argument("-o", "--output", required=True, help="figure file (.png, .pdf or .svg)")

    e = sub.add_parser("experiment", help=COMMANDS["experiment"][2])
    esub = e.add_subparsers(dest="action", required=True)
    esub.add_parser("list", help="list the installed experiments")
    er = esub.add_parser("run", help="run an experiment and write results.h5, report.md and figures",
                         description="Run an experiment and write results.h5, report.md and figures.",
                         epilog=EXPERIMENT_FILE, formatter_class=raw)  # fmt: skip
    er.add_argument("name", help="an installed experiment's name (see `fpkit experiment list`) or a .py file")
    er.add_argument("--quick", action="store_true", help="the experiment's small configuration (under a minute)")
    er.add_argument("--config", help="TOML file overriding the experiment's defaults (see `fpkit config show`)")
    er.add_argument("--out", default=None, help="output folder (default: fpkit-NAME)")
    er.add_argument("--seed", type=int, default=None, help="override the configuration's seed")
    add_cluster_arguments(er, "the experiment's sweeps and per-entry predictions")

    t = sub.add_parser("train", help=COMMANDS["train"][2], description=COMMANDS["train"][2] + ".",
                       epilog=TRAIN_FILE, formatter_class=raw)  # fmt: skip
    t.add_argument("config", help="TOML file with seed and sections [model], [data], [train] (below)")
    t.add_argument("-o", "--output", required=True, help="ensemble file (.h5)")
    t.add_argument("--resume", action="store_true", help="continue from the last snapshot in --output")
    add_cluster_arguments(t, "shards of members")
    t.add_argument("--virtual", action="store_true",
                   help="with --workers/--scheduler: keep the shards' pieces beside OUTPUT (OUTPUT.pieces-ID/) "
                   "and make OUTPUT virtual datasets over them instead of copying them (no serial merge)")

    c = sub.add_parser("config", help=COMMANDS["config"][2])
    c.add_argument("action", choices=("list", "show"), help="list the schemas, or show NAME's defaults")
    c.add_argument("name", nargs="?", help="schema name for `show` (e.g. ensemble, problem)")
    return p


def check_arguments(args) -> None:
    """Refuse option combinations that would be ignored silently."""
    if getattr(args, "virtual", False) and args.workers is None and args.scheduler is None:
        raise ConfigError("`--virtual` keeps the pieces of a Dask run: give --workers N or --scheduler ADDRESS "
                          "with it (without them the run is one process and writes one self-contained file)")


def check_outputs(args) -> None:
    """Refuse unusable output paths before any work: ``-o`` a folder, an input file or an unwritable place;
    ``--out`` an existing file or an unwritable place."""
    from .io import check_output_dir, check_output_file

    inputs = [getattr(args, k, None) for k in ("config", "result")]
    if getattr(args, "output", None) is not None:
        check_output_file(args.output, inputs=inputs, what="--output")
    if getattr(args, "out", None) is not None:
        check_output_dir(args.out, what="--out")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # Dask's scheduler and workers log dozens of INFO lines on stderr; only with -v (workers inherit this)
    quiet_dask = not args.verbose and "DASK_LOGGING__DISTRIBUTED" not in os.environ
    if quiet_dask:
        os.environ["DASK_LOGGING__DISTRIBUTED"] = "warning"
    module, func, _ = COMMANDS[args.command]
    # SIGTERM stops like Ctrl-C: atomic writers remove their temporary files, and the message is one line
    previous = _on_sigterm(_terminate)
    try:
        check_arguments(args)
        check_outputs(args)
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except FpkitError as exc:
        if args.debug:
            raise
        # one line whatever the number of problems (a configuration can have several, joined by " | ")
        print(f"fpkit {args.command}: error: {' | '.join(str(exc).splitlines())}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # a size in the configuration too large for this machine (numpy says how much)
        if args.debug:
            raise
        detail = str(exc).splitlines()[0] if str(exc) else "out of memory"
        print(f"fpkit {args.command}: error: out of memory ({detail}); reduce the sizes in the configuration",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:
        print(f"fpkit {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not the user's input: one line too, but status 1 (fuzz tests tell them apart)
        if args.debug or argv is not None:  # only as the command itself; a Python caller gets the exception
            raise
        detail = str(exc).splitlines()[0][:300] if str(exc) else ""
        print(f"fpkit {args.command}: internal error: {type(exc).__name__}: {detail} (a bug in fpkit or a plug-in; "
              "rerun with --debug for the traceback and report it)", file=sys.stderr)  # fmt: skip
        return 1
    finally:
        _on_sigterm(previous)
        if quiet_dask:
            os.environ.pop("DASK_LOGGING__DISTRIBUTED", None)


def _terminate(signum, frame):
    raise KeyboardInterrupt


def _on_sigterm(handler):
    """Install ``handler`` for SIGTERM and return the previous one (None off the main thread, where Python
    cannot set signal handlers: a caller running ``main`` in a thread keeps its own)."""
    if handler is None or threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
