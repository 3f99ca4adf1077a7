"""A torch run through fpkit's pipeline (issue 16 item 4): ``fpkit plot run.h5`` on a file written by
TorchEnsemble, ``fpkit.predict`` with its report files and figures on module-named entries
("0.weight[1,2]"), and an experiment (a user's plug-in file run by ``fpkit experiment run``) that takes the
torch run's file. Skips without torch."""

from __future__ import annotations

import textwrap

import h5py
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason='needs torch: pip install "fpkit[torch]"')

import fpkit  # noqa: E402
import fpkit.torch as ft  # noqa: E402
from fpkit import experiments as X  # noqa: E402
from fpkit.cli import main  # noqa: E402
from fpkit.plotting import MAX_ENTRIES, plot_distances, plot_ensemble, plot_overlays  # noqa: E402

torch.set_num_threads(1)
LABELS = ["2.weight[0,3]", "0.weight[1,2]", "2.bias[0]"]


def mlp():
    return torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))


def half_sq(out, y):
    return 0.5 * ((out - y) ** 2).sum(-1).mean()


@pytest.fixture(scope="module")
def torch_run(tmp_path_factory):
    """A TorchEnsemble file: 120 ReLU MLPs 4 -> 16 -> 1 with biases (its '0.weight' has 64 entries)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4))
    y = np.sin(x @ np.array([[1.0], [-0.5], [0.3], [0.8]])) + 0.1 * rng.normal(size=(96, 1))
    path = tmp_path_factory.mktemp("torch-run") / "run.h5"
    ft.TorchEnsemble(mlp, half_sq, (x, y), members=120, lr=0.05, batch_size=8, steps=100, snapshots=6,
                     lanczos_steps=5, seed=1).train(path, show_progress=False)  # fmt: skip
    return path


def test_fpkit_plot_of_a_torch_run(torch_run, tmp_path):
    """`fpkit plot` reads the torch file; the entry panel shows the 12 '0.weight' entries whose 10-90 % band is
    widest at the last snapshot, labelled by the module's parameter name."""
    out = tmp_path / "run.png"
    assert main(["plot", str(torch_run), "-o", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = fpkit.EnsembleRun.load(torch_run)
    fig = plot_ensemble(run)
    labels = {t.get_text() for t in fig.axes[2].get_legend().get_texts()}
    last = run.weights["0.weight"][-1]  # (M, 16, 4)
    width = np.percentile(last, 90, axis=0) - np.percentile(last, 10, axis=0)
    top = np.argsort(width.ravel())[::-1][:MAX_ENTRIES]
    assert labels == {f"0.weight[{i},{j}]" for i, j in zip(*np.unravel_index(top, width.shape))}
    assert "12 of 64" in fig.axes[2].get_title()


def test_predict_report_and_figures_on_torch_entries(torch_run, tmp_path):
    """fpkit.predict on module-named entries, its table, prediction file and report figures; the judged
    histograms are those of the run's own weights (the frozen baseline at t = 0 is exactly the judged t = 0
    sample's own distance: 0 up to the grid's binning, i.e. below 1 noise floor)."""
    run = fpkit.EnsembleRun.load(torch_run)
    preds = fpkit.predict(run, LABELS, dt=0.05, js=False)
    assert list(preds) == LABELS
    table = preds.table()
    assert all(f"| {lab} |" in table for lab in LABELS)
    for p in preds.values():
        assert np.all(np.isfinite(p.distance["fp"])) and p.distance["fp"].shape == run.t.shape
        # at t = 0 the FP density is the estimation half's initial histogram: its distance to the judged half
        # is sampling noise, O(1) noise floors
        assert p.distance["fp"][0] < 3.0
    back = fpkit.Predictions.load(preds.save(tmp_path / "preds.h5"))
    for lab in LABELS:
        assert np.array_equal(back[lab].distance["fp"], preds[lab].distance["fp"])
    for fn in (plot_overlays, plot_distances):
        f = fn(preds, tmp_path / f"{fn.__name__}.png")
        assert f.read_bytes()[:4] == b"\x89PNG"


PLUGIN = '''
from dataclasses import dataclass

import numpy as np
from pydantic import Field

import fpkit
from fpkit.config import Schema
from fpkit.experiments import Claim, Experiment, Verdict


class Config(Schema):
    seed: int = Field(0, description="seed of the members' split")
    run: str = Field("", description="an ensemble run file (fpkit.Ensemble or fpkit.torch)")
    entries: list[str] = Field(default_factory=list, description="entries to predict")


@dataclass
class Result:
    fp_last: np.ndarray
    frozen_last: np.ndarray


class FromRun(Experiment):
    name = "from-run"
    title = "FP predictions of a stored ensemble run"
    Config = Config
    quick = {}

    def run(self, cfg, ctx):
        with ctx.stage("predict"):
            run = fpkit.EnsembleRun.load(cfg["run"])
            preds = fpkit.predict(run, cfg["entries"], dt=0.05, js=False, seed=cfg["seed"])
        return Result(np.array([p.distance["fp"][-1] for p in preds.values()]),
                      np.array([p.distance["frozen"][-1] for p in preds.values()]))

    def verdict(self, cfg, res):
        held = bool(np.all(np.isfinite(res.fp_last)))
        return Verdict([Claim("finite", held, float(np.max(res.fp_last)), "finite",
                              "every entry of the run has a prediction")],
                       thresholds={"finite": "a number"})


EXPERIMENT = FromRun
'''


def test_experiment_on_a_torch_run(torch_run, tmp_path):
    """An experiment whose configuration names the torch run's file runs through `fpkit experiment run`,
    writes results.h5 and report.md, and its numbers are fpkit.predict's on the same run and split."""
    plugin = tmp_path / "from_run.py"
    plugin.write_text(textwrap.dedent(PLUGIN))
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(f'run = "{torch_run}"\nentries = {LABELS!r}\nseed = 2\n'.replace("'", '"'))
    out = tmp_path / "out"
    assert main(["experiment", "run", str(plugin), "--config", str(cfg), "--out", str(out)]) == 0
    assert (out / "report.md").exists()
    outcome = X.run(str(plugin), config=str(cfg))
    direct = fpkit.predict(fpkit.EnsembleRun.load(torch_run), LABELS, dt=0.05, js=False, seed=2)
    assert np.array_equal(outcome.result.fp_last, [p.distance["fp"][-1] for p in direct.values()])
    assert outcome.verdict.claims[0].held
    with h5py.File(out / "results.h5") as f:
        assert "verdict" in f.attrs
