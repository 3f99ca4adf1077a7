"""The public report figures of fpkit.plotting, drawn from predictions built here: labelled axes, a legend in
every panel whose lines differ, constrained layout (no overlapping titles), honest colour scales, and
files written in the format their suffix asks for."""

import h5py
import numpy as np
import pytest
from matplotlib.layout_engine import ConstrainedLayoutEngine

import fpkit
from fpkit import plotting
from fpkit.prediction import PairPrediction, Prediction
from fpkit.validation.experiments import fp_histograms as ex
from fpkit.validation.experiments import fp_histograms_figures as figs


def fake_prediction(label, seed=0, S=12, n=120, se=False):
    rng = np.random.default_rng(seed)
    g = fpkit.Grid.uniform(-3, 3, n)
    t = np.concatenate([[0.0], np.geomspace(0.1, 50, S - 1)])
    std = 1.0 / (1 + 0.05 * t)
    density = np.array([fpkit.gaussian(g, 0.1, s) for s in std])
    judged = np.array([rng.normal(0.1, s, 400) for s in std])
    empirical = np.array([np.histogram(j, g.edges[0], density=True)[0] for j in judged])
    dist = {"fp": 1 + rng.random(S), "frozen": 1 + t, "drift_only": 1 + t / 2, "diffusion_only": 1 + t}
    coef = {"drift": -np.tile(g.x, (S, 1)), "diffusion": np.full((S, n), 0.1), "supported": np.ones((S, n), bool)}
    if se:
        coef.update(drift_se=np.full((S, n), 0.05), diffusion_se=np.full((S, n), 0.01))
    return Prediction(label=label, t=t, grid=g, density=density, empirical=empirical, judged=judged, distance=dist,
                      w1=np.ones(S), w1_floor=np.ones(S), ks=np.ones(S), js=np.ones(S), coefficients=coef)  # fmt: skip


@pytest.fixture(scope="module")
def preds():
    return [fake_prediction(lab, i) for i, lab in enumerate(["W2[0,0]", "W2[0,1]", "W1[1,5]"])]


def check_figure(fig, *, legends=True, shared_y=False):
    assert isinstance(fig.get_layout_engine(), ConstrainedLayoutEngine)
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    for i, ax in enumerate(panels):
        assert ax.get_xlabel(), f"panel {i} has no x label"
        assert ax.get_ylabel() or (shared_y and i > 0), f"panel {i} has no y label"
        assert ax.get_title(), f"panel {i} has no title"
        if legends and len(ax.get_lines()) + len(ax.patches) > 1:
            assert ax.get_legend() is not None, f"panel {i} ({ax.get_title()}) has no legend"


def test_heatmaps_scale_each_panel_by_its_own_row_maximum(preds):
    fig = plotting.plot_heatmaps(preds[:2])
    check_figure(fig, legends=False)
    meshes = [c for ax in fig.axes if ax.get_label() != "<colorbar>" for c in ax.collections]
    assert len(meshes) == 4
    for m in meshes:
        rows = np.asarray(m.get_array()).reshape(12, -1)
        np.testing.assert_allclose(rows.max(axis=1), 1.0)  # every time row, t = 0 included, peaks at 1
        assert m.norm.vmin == 0 and m.norm.vmax == 1
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert bars and all("maximum at that t" in b.get_ylabel() for b in bars)
    assert "t = 0" in [tick.get_text() for tick in fig.axes[0].get_yticklabels()]


def test_overlays_coefficients_and_distances_are_labelled_with_legends(preds):
    check_figure(plotting.plot_overlays(preds))
    check_figure(plotting.plot_coefficients(preds))
    fig = plotting.plot_distances(preds, thresholds={"W1": {"late goal": 3.0}, "W2": {"max": 5.0}})
    check_figure(fig, shared_y=True)
    w2 = next(ax for ax in fig.axes if ax.get_title().startswith("W2"))
    fp_colours = {line.get_color() for line in w2.get_lines() if line.get_linestyle() == "-" and len(line.get_xdata()) > 2}
    assert len(fp_colours) == 2  # one colour per entry
    labels = [t.get_text() for t in w2.get_legend().get_texts()]
    assert {"W2[0,0]", "W2[0,1]", "max = 5"} <= set(labels) and any("frozen" in x for x in labels)
    frozen = [line for line in w2.get_lines() if line.get_linestyle() == ":"]
    assert frozen and all(line.get_zorder() < 3 for line in frozen)  # drawn wide and under the others


def test_pair_has_a_labelled_colour_bar_and_the_time():
    g = fpkit.Grid.uniform((-2, -2), (2, 2), (30, 30))
    X, Y = g.meshgrid()
    p = np.exp(-(X**2 + Y**2))[None].repeat(3, 0)
    pair = PairPrediction(["W2[0,0]", "W2[0,1]"], np.array([0.0, 1.0, 7.5]), g, p, p, [np.ones(3)] * 2,
                          np.ones(3), np.ones(3), 0.0)  # fmt: skip
    fig = plotting.plot_pair(pair)
    check_figure(fig, legends=False)
    assert "t = 7.5" in fig.get_suptitle()
    assert any(ax.get_label() == "<colorbar>" and "density" in ax.get_ylabel() for ax in fig.axes)


def test_output_distributions_legend_says_what_the_number_is():
    rng = np.random.default_rng(0)
    fig = plotting.plot_output_distributions(rng.gamma(5, size=300), {"mine": (rng.gamma(5, size=300), 1.23)})
    check_figure(fig)
    texts = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "mine: W1/floor 1.23" in texts
    assert "noise floor" in fig.axes[0].get_legend().get_title().get_text()


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_files_written_in_the_format_of_their_suffix(preds, tmp_path, suffix, magic):
    out = plotting.plot_distances(preds, tmp_path / f"d{suffix}")
    assert out.read_bytes().startswith(magic)


def test_coefficient_bands_are_two_standard_errors_wide_and_labelled():
    p = fake_prediction("W2[0,0]", se=True)
    fig = plotting.plot_coefficients([p], snapshots=[3])
    check_figure(fig)
    for ax, key in ((fig.axes[0], "drift"), (fig.axes[1], "diffusion")):
        [band] = [c for c in ax.collections if c.get_paths()]
        y = band.get_paths()[0].vertices[:, 1]
        line = ax.get_lines()[0].get_ydata()
        assert y.max() == pytest.approx(max(line) + plotting.SE_BAND * p.coefficients[f"{key}_se"][3, 0])
        assert "±2 standard errors (pointwise)" in [t.get_text() for t in ax.get_legend().get_texts()]
    # without stored errors (an older prediction file): no band and no band label
    fig = plotting.plot_coefficients([fake_prediction("W2[0,0]")])
    assert not any(c.get_paths() for ax in fig.axes for c in ax.collections)
    assert not any("standard errors" in t.get_text() for ax in fig.axes for t in ax.get_legend().get_texts())


def test_flagship_stores_the_standard_errors_as_datasets(tmp_path):
    p = fake_prediction("W2[0,0]", se=True)
    res = ex.Result(t=p.t, entries=[p], members=400, eta=0.1, batch_size=8,
                    split={"estimate": np.arange(2), "judge": np.arange(2, 4)})  # fmt: skip
    with h5py.File(tmp_path / "r.h5", "w") as f:
        figs.save_results(f, res)
    with h5py.File(tmp_path / "r.h5", "r") as f:
        np.testing.assert_array_equal(f["entries/W2[0,0]/drift_se"][()], p.coefficients["drift_se"])
        np.testing.assert_array_equal(f["entries/W2[0,0]/diffusion_se"][()], p.coefficients["diffusion_se"])


def test_prediction_plot_draws_through_fpkit_plotting(preds):
    """Prediction.plot is plotting.plot_prediction: labelled panels with legends, the distance panel drawn as
    plot_distances draws it (one colour for the entry, a line style per baseline), and into a given axes."""
    p = preds[2]
    fig = p.plot()
    check_figure(fig)
    dens, dist = fig.axes
    assert dist.get_title() == "W1[1,5]: distance to the judged members"
    labels = [t.get_text() for t in dist.get_legend().get_texts()]
    assert labels[0] == "W1[1,5]" and {"FP prediction", "frozen (density at t = 0)"} <= set(labels)
    assert {line.get_linestyle() for line in dist.get_lines() if len(line.get_xdata()) > 2} == {"-", ":", "--", "-."}
    assert any(t.get_text() == f"FP, t = {p.t[-1]:.3g}" for t in dens.get_legend().get_texts())
    plt = plotting._pyplot()
    own, ax = plt.subplots()
    assert p.plot(ax=ax, snapshots=[0, 5]) is own and len(own.axes) == 1
    assert len(ax.get_lines()) == 2 and ax.get_legend() is not None


@pytest.mark.parametrize("k, bands", [(2, 4), (3, 0)])
def test_ensemble_entry_panel_draws_bands_only_while_they_stay_readable(k, bands):
    """W2 of a k-bottleneck is k×k: 4 entries get their 10-90 % bands; 9 (and a torch layer's 12 widest) draw
    medians only — 12 overlapping bands had blurred into one block. The title says which."""
    from matplotlib.collections import PolyCollection

    from fpkit.plotting import MAX_BANDS, plot_ensemble

    run = fpkit.Ensemble(d=6, k=k, members=16, steps=20, snapshots=3, seed=1, kernels="generic").train()
    ax = plot_ensemble(run).axes[2]
    assert sum(isinstance(c, PolyCollection) for c in ax.collections) == bands
    assert len(ax.get_lines()) == k * k and (k * k <= MAX_BANDS) == ("band" in ax.get_title())
