"""Figures drawn on worker processes (fpkit.plotting.draw_figures, the flagship's write_figures, write_outputs'
figure session): the same files as drawn in one process, errors raised in the caller naming the figure, and
results.h5 written when a figure fails."""

from concurrent.futures import Future
from pathlib import Path
from concurrent.futures.process import BrokenProcessPool

import h5py
import numpy as np
import pytest
from matplotlib.image import imread

from fpkit import plotting, processes
from fpkit.validation.experiments import fp_histograms as ex
from fpkit.validation.experiments import fp_histograms_figures as figs

from test_plotting import fake_prediction
from test_reliability import tiny_experiment


def small_result() -> ex.Result:
    entries = [fake_prediction(lab, i, se=True) for i, lab in enumerate(["W2[0,0]", "W1[1,5]", "W3[0,0]"])]
    rng = np.random.default_rng(3)
    outputs = {k: rng.gamma(4.0, 0.1, 200) for k in ("trained", "predicted", "shuffled", "quantile_mapped")}
    outputs.update(w1_pred_over_floor=3.0, w1_shuffled_over_floor=2.0, w1_quantile_over_floor=1.1)
    sweep = [{"lr": lr, "batch_size": 8, "eta_lam_max": 10 * lr, "noise_to_signal": 1 / lr, "fp_ratio_max": 1 + lr}
             for lr in (0.02, 0.1)]  # fmt: skip
    return ex.Result(t=entries[0].t, entries=entries, members=400, eta=0.1, batch_size=8,
                     split={"estimate": np.arange(2), "judge": np.arange(2, 4)}, outputs=outputs, sweep=sweep)  # fmt: skip


def test_figures_drawn_by_a_worker_are_those_drawn_here(tmp_path):
    res = small_result()
    jobs = {k: figs.FIGURES[k][1](res, tmp_path / "{}" / figs.FIGURES[k][0])
            for k in ("output distributions", "failure map over η and B")}  # fmt: skip
    out = {}
    for workers in (0, 1):
        where = tmp_path / str(workers)
        cpu = processes.USAGE["cpu_s"]
        out[workers] = plotting.draw_figures({k: (*job[:-1], Path(str(job[-1]).format(workers)))
                                              for k, job in jobs.items()}, workers=workers, order=["none", *jobs])  # fmt: skip
        assert (processes.USAGE["cpu_s"] > cpu) == (workers > 0)  # the worker drew one of them
        assert list(out[workers]) == ["none", *jobs] and out[workers]["none"] is None
        assert sorted(p.name for p in where.iterdir()) == ["failure_map.png", "outputs.png"]
    for k in jobs:
        np.testing.assert_array_equal(imread(out[1][k]), imread(out[0][k]))


@pytest.mark.slow  # the flagship's six figures twice: ~10 CPU-s
def test_figures_drawn_by_workers_are_those_drawn_in_one_process(tmp_path, monkeypatch):
    res = small_result()
    monkeypatch.setenv("FPKIT_WORKERS", "1")  # no worker: every figure drawn here
    assert plotting.figure_workers() == 0
    serial = figs.write_figures(res, tmp_path / "serial")
    monkeypatch.setenv("FPKIT_WORKERS", "3")  # two workers and this process
    assert plotting.figure_workers() == 2
    cpu = processes.USAGE["cpu_s"]
    pooled = figs.write_figures(res, tmp_path / "pooled")
    assert processes.USAGE["cpu_s"] > cpu  # the workers drew some of them
    # the report's order, None for the figure without data (no pair), the same files pixel for pixel
    assert list(serial) == list(pooled) == list(figs.FIGURES)
    assert serial["2-D joint density"] is None and pooled["2-D joint density"] is None
    drawn = [k for k, v in serial.items() if v is not None]
    assert len(drawn) == 6
    for k in drawn:
        assert pooled[k].parent == tmp_path / "pooled" and pooled[k].name == serial[k].name
        np.testing.assert_array_equal(imread(pooled[k]), imread(serial[k]))
    assert sorted(p.name for p in (tmp_path / "pooled").iterdir()) == sorted(p.name for p in (tmp_path / "serial").iterdir())


@pytest.mark.parametrize("workers", [0, 1])
def test_an_error_while_drawing_is_raised_here_naming_the_figure(tmp_path, workers):
    preds = [fake_prediction("W2[0,0]")]
    jobs = {"distances": (plotting.plot_distances, preds, tmp_path / "d.png"),
            "no panels": (plotting.plot_distances, [], tmp_path / "bad.png"),  # plt.subplots(1, 0) raises
            "overlays": (plotting.plot_overlays, preds, tmp_path / "o.png")}  # fmt: skip
    with pytest.raises(ValueError, match="Number of columns must be a positive integer, not 0") as info:
        plotting.draw_figures(jobs, workers=workers)
    note = " ".join(info.value.__notes__)
    assert "'no panels'" in note and (("worker process" in note) == (workers > 0))
    if workers:  # the worker's own traceback comes along
        assert "plot_distances" in str(info.value.__cause__)
    assert not (tmp_path / "bad.png").exists()


def test_results_are_written_when_a_figure_fails_on_a_worker(tmp_path, monkeypatch):
    from fpkit import experiments as fe

    def figures(out):
        pending = plotting.draw_figures({"fine": (plotting.plot_distances, [fake_prediction("W2[0,0]")], out / "d.png"),
                                         "no panels": (plotting.plot_distances, [], out / "bad.png")})  # fmt: skip
        assert isinstance(pending, plotting.PendingFigures)  # write_outputs collects it after results.h5
        return pending

    monkeypatch.setenv("FPKIT_WORKERS", "2")
    with pytest.raises(ValueError, match="Number of columns") as info:
        fe.run(tiny_experiment(figures), out=tmp_path / "o")
    assert "'no panels'" in " ".join(info.value.__notes__)
    with h5py.File(tmp_path / "o" / "results.h5") as f:
        np.testing.assert_array_equal(f["x"][()], np.arange(3.0))
    # the report of the complete results.h5 is written too, saying why the figures are missing
    report = (tmp_path / "o" / "report.md").read_text()
    assert "## Figures\n\nNot finished (ValueError: Number of columns must be a positive integer, not 0" in report
    assert "results.h5 is complete" in report and "`d.png`" not in report


class _DeadWorkers:
    """An executor whose workers died: every future fails with BrokenProcessPool, as after a killed worker."""

    def submit(self, fn, *args):
        fut = Future()
        fut.set_running_or_notify_cancel()
        fut.set_exception(BrokenProcessPool("a process in the process pool was terminated abruptly"))
        return fut


def test_figures_of_a_killed_worker_are_drawn_here(tmp_path):
    preds = [fake_prediction("W2[0,0]")]
    jobs = {"distances": (plotting.plot_distances, preds, tmp_path / "d.png"),
            "overlays": (plotting.plot_overlays, preds, tmp_path / "o.png")}  # fmt: skip
    out = plotting.PendingFigures(jobs, _DeadWorkers(), order=["overlays", "missing", "distances"]).wait()
    assert out == {"overlays": tmp_path / "o.png", "missing": None, "distances": tmp_path / "d.png"}
    assert imread(tmp_path / "d.png").shape[0] > 100 and imread(tmp_path / "o.png").shape[0] > 100


def test_constrained_figures_keep_their_size_others_are_cropped_to_what_is_drawn(tmp_path):
    plt = plotting._pyplot()
    fig, ax = plt.subplots(figsize=(4, 3), layout="constrained")
    ax.set(xlabel="a long x label", ylabel="y", title="title")
    assert imread(plotting.save_figure(fig, tmp_path / "c.png")).shape[:2] == (3 * 120, 4 * 120)
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.text(1.5, 0.5, "far to the right", transform=ax.transAxes)  # outside the canvas: kept by the crop
    h, w = imread(plotting.save_figure(fig, tmp_path / "t.png")).shape[:2]
    assert w > 4 * 120
