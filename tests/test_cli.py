"""The `fpkit` command: solve, plot and train from files; one-line errors with exit status 2."""

import subprocess
import sys

import numpy as np
import pytest

import fpkit


def fpkit_cli(*args):
    return subprocess.run([sys.executable, "-m", "fpkit.cli", *args], capture_output=True, text=True)


def test_solve_and_plot_a_toml_problem(tmp_path):
    cfg = tmp_path / "ou.toml"
    cfg.write_text(
        '[grid]\nlo = -5.0\nhi = 5.0\nn = 200\n[problem]\ndrift = "-x"\ndiffusion = 0.5\n'
        "[initial]\nmean = 1.0\nstd = 0.3\n[solve]\nt_eval = [0.0, 1.0]\ndt = 0.005\n"
    )
    out = tmp_path / "ou.h5"
    p = fpkit_cli("solve", str(cfg), "-o", str(out))
    assert p.returncode == 0, p.stderr
    sol = fpkit.Solution.load(out)
    assert sol.mass()[-1] == pytest.approx(1.0, abs=1e-12)
    assert sol.mean()[-1] == pytest.approx(np.exp(-1.0), abs=2e-3)  # OU mean, O(h²) spatial error
    assert sol.meta["config"]["problem"]["drift"] == "-x"
    png = tmp_path / "ou.png"
    assert fpkit_cli("plot", str(out), "-o", str(png)).returncode == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_and_plot_an_ensemble(tmp_path):
    cfg = tmp_path / "ens.toml"
    cfg.write_text("[train]\nmembers = 64\nsteps = 40\nsnapshots = 5\n")
    out = tmp_path / "ens.h5"
    assert fpkit_cli("train", str(cfg), "-o", str(out)).returncode == 0
    run = fpkit.EnsembleRun.load(out)
    assert run.weights["W2"].shape[1:] == (64, 3, 3) and run.t[-1] == pytest.approx(0.02 * 40)
    assert fpkit_cli("plot", str(out), "-o", str(tmp_path / "ens.png")).returncode == 0


@pytest.mark.parametrize(
    "text, match",
    [
        ("[grid]\nlo = 0.0\nhi = 1.0\nn = 10\n[problem]\ndrfit = 1.0\n[solve]\nt_eval = [1.0]\n", "problem.drfit: unknown key"),
        ("[grid]\nlo = 1.0\nhi = 0.0\nn = 10\n[problem]\n[solve]\nt_eval = [1.0]\n", "`lo` must be below `hi`"),
        ("[grid]\nlo = 0.0\nhi = 1.0\nn = 10\n[problem]\ndrift = \"os.system(1)\"\n[solve]\nt_eval = [1.0]\n",
         "unknown names"),
    ],
)
def test_bad_problem_files_are_one_line_errors(tmp_path, text, match):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    p = fpkit_cli("solve", str(cfg), "-o", str(tmp_path / "x.h5"))
    assert p.returncode == 2 and match in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "x.h5").exists()


def _help_example(text: str) -> str:
    """The TOML example of a command's help: the indented lines after the last line that starts with
    'Example' or 'with my.toml'."""
    lines = text.splitlines()
    start = max(i for i, ln in enumerate(lines) if ln.startswith(("Example", "with my.toml"))) + 1
    body = []
    for ln in lines[start:]:
        if not ln.startswith("  "):
            if body:
                break
            continue
        body.append(ln[2:])
    return "\n".join(b for b in body if not b.startswith("fpkit "))


def test_help_says_what_the_files_hold_and_its_examples_run(tmp_path):
    """`fpkit solve --help` said only "TOML problem description": each command's help now names the
    sections, points to the docs, and carries an example — which must be valid (solved / parsed here)."""
    from fpkit.cli import build_parser, main
    from fpkit.config import parse, schemas

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices
    helps = {n: sub[n].format_help() for n in ("solve", "train", "plot")}
    run = next(a for a in sub["experiment"]._actions if a.dest == "action").choices["run"]
    helps["experiment run"] = run.format_help()
    for section in ("[grid]", "[problem]", "[initial]", "[solve]"):
        assert section in helps["solve"]
    for section in ("[model]", "[data]", "[train]"):
        assert section in helps["train"]
    for name in ("solve", "train", "experiment run"):
        assert "docs/config.md" in helps[name] and "fpkit config show" in helps[name]
    assert ".pdf" in helps["plot"] and "EnsembleRun" in helps["plot"]

    problem = tmp_path / "p.toml"
    problem.write_text(_help_example(helps["solve"]))
    assert main(["solve", str(problem), "-o", str(tmp_path / "p.h5")]) == 0
    sol = fpkit.Solution.load(tmp_path / "p.h5")
    assert sol.t.tolist() == [0.1, 1.0, 5.0] and np.allclose(sol.mass(), 1.0, atol=1e-9)
    import tomllib

    ens = parse(schemas()["ensemble"], tomllib.loads(_help_example(helps["train"]))).model_dump()
    assert ens["train"]["members"] == 1000 and ens["model"]["activation"] == "tanh"
    exp = parse(schemas()["fp-histograms"], tomllib.loads(_help_example(helps["experiment run"]))).model_dump()
    assert exp["model"]["activation"] == "relu"
