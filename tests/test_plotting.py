"""The public report figures of fpkit.plotting, drawn from predictions built here: labelled axes, a legend in
every panel whose lines differ, constrained layout (no overlapping titles), honest colour scales, and
files written in the format their suffix asks for."""

import numpy as np
import pytest
from matplotlib.layout_engine import ConstrainedLayoutEngine

import fpkit
from fpkit import plotting
from fpkit.prediction import PairPrediction, Prediction


def fake_prediction(label, seed=0, S=12, n=120):
    rng = np.random.default_rng(seed)
    g = fpkit.Grid.uniform(-3, 3, n)
    t = np.concatenate([[0.0], np.geomspace(0.1, 50, S - 1)])
    std = 1.0 / (1 + 0.05 * t)
    density = np.array([fpkit.gaussian(g, 0.1, s) for s in std])
    judged = np.array([rng.normal(0.1, s, 400) for s in std])
    empirical = np.array([np.histogram(j, g.edges[0], density=True)[0] for j in judged])
    dist = {"fp": 1 + rng.random(S), "frozen": 1 + t, "drift_only": 1 + t / 2, "diffusion_only": 1 + t}
    coef = {"drift": -np.tile(g.x, (S, 1)), "diffusion": np.full((S, n), 0.1), "supported": np.ones((S, n), bool)}
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
