"""The ``validity-map`` experiment: its bookkeeping (confusion table, acceptance rates, binomial intervals)
against hand-made tables and closed forms, a tiny cell's fields, and serial == Dask on a 2-process
LocalCluster."""

import copy
import json

import numpy as np
import pytest

from fpkit import distributed as dist
from fpkit.errors import ConfigError
from fpkit.experiments import load, resolve_config
from fpkit.prediction import validity
from fpkit.validation.experiments import validity_map as vm
from fpkit.validation.experiments import validity_map_figures as figs

needs_dask = pytest.mark.skipif(not dist.have_dask(), reason='needs Dask: pip install "fpkit[distributed]"')


def test_registered():
    assert load("validity-map").name == "validity-map"


# ------------------------------------------------------------------------------------------ bookkeeping
def test_confusion_table_hand_made():
    # (verdict, worst): edges are inclusive on the left class (3.0 is "≤ 3", 5.0 is "3–5")
    cells = [("holds", 0.9), ("holds", 3.0), ("holds", 3.01), ("holds", 7.0),
             ("doubtful", 5.0), ("doubtful", 5.0001), ("doubtful", 2.0),
             ("fails", 12.0), ("fails", 40.0), ("fails", 4.0),
             ("fails", np.nan), ("", np.nan)]  # diverged cells are not counted  # fmt: skip
    expected = np.array([[2, 1, 1],
                         [1, 1, 1],
                         [0, 1, 2]])  # fmt: skip
    table = vm.confusion_table(*zip(*cells))
    assert np.array_equal(table, expected)
    acc = vm.acceptance(table)
    assert (acc["holds_within_3"]["k"], acc["holds_within_3"]["n"]) == (2, 4)
    assert (acc["beyond_5_flagged"]["k"], acc["beyond_5_flagged"]["n"]) == (3, 4)
    assert acc["holds_within_3"]["rate"] == 0.5 and not acc["holds_within_3"]["held"]
    assert acc["beyond_5_flagged"]["rate"] == 0.75 and not acc["beyond_5_flagged"]["held"]
    acc = vm.acceptance(np.array([[9, 1, 0], [0, 0, 5], [0, 0, 5]]))
    assert acc["holds_within_3"]["held"] and acc["holds_within_3"]["rate"] == 0.9
    assert acc["beyond_5_flagged"]["held"] and acc["beyond_5_flagged"]["rate"] == 1.0
    empty = vm.acceptance(np.zeros((3, 3), int))["holds_within_3"]
    assert empty["n"] == 0 and not empty["held"] and np.isnan(empty["rate"]) and np.isnan(empty["ci_low"])


def test_binomial_interval_closed_forms():
    # Clopper-Pearson at the ends has a closed form: k = 0 -> [0, 1 - (α/2)^(1/n)], k = n -> [(α/2)^(1/n), 1]
    for n in (1, 4, 17, 200):
        a = 0.05
        lo, hi = vm.binomial_interval(0, n)
        assert lo == 0.0 and hi == pytest.approx(1 - (a / 2) ** (1 / n), rel=1e-12)
        lo, hi = vm.binomial_interval(n, n)
        assert hi == 1.0 and lo == pytest.approx((a / 2) ** (1 / n), rel=1e-12)
    # n = 2, k = 1: the Beta(1, 2) and Beta(2, 1) quantiles are 1 - √(1 - α/2) and √(1 - α/2)
    lo, hi = vm.binomial_interval(1, 2)
    assert lo == pytest.approx(1 - np.sqrt(0.975), rel=1e-12) and hi == pytest.approx(np.sqrt(0.975), rel=1e-12)
    # symmetry k <-> n - k
    lo, hi = vm.binomial_interval(3, 11)
    lo2, hi2 = vm.binomial_interval(8, 11)
    assert lo == pytest.approx(1 - hi2, rel=1e-12) and hi == pytest.approx(1 - lo2, rel=1e-12)


def test_worst_verdict():
    assert vm.worst_verdict(["holds", "doubtful", "holds"]) == "doubtful"
    assert vm.worst_verdict(["doubtful", "fails"]) == "fails"
    assert vm.worst_verdict(["holds"]) == "holds"


# ------------------------------------------------------------------------------------------------ cells
def _tiny():
    cfg = resolve_config(vm.EXPERIMENT(), quick=True, seed=3)
    cfg["map"].update(data=["gaussian", "gaussian-rotated"], activation=["tanh"],
                      settings=[{"hidden": [2], "lr": 0.05, "batch_size": 8}], members=120, steps=60,
                      snapshots=4, entries=2)  # fmt: skip
    cfg["analysis"].update(cells=60, max_cells=200, fp_dt=0.5)
    return cfg


def test_plan_cells_order_and_seeds():
    cfg = resolve_config(vm.EXPERIMENT())
    cells = vm.plan_cells(cfg)
    g = cfg["map"]
    n_gauss = sum(d != "digits" for d in g["data"]) * len(g["activation"]) * len(g["settings"])
    n_digits = ("digits" in g["data"]) * len(g["activation"]) * len(g["digits_settings"])
    assert len(cells) == n_gauss + n_digits
    assert [c["index"] for c in cells] == list(range(len(cells)))
    assert len({c["seed"] for c in cells}) == len(cells)  # independent cells
    assert all(c["depth"] == len(c["hidden"]) and c["width"] == min(c["hidden"]) for c in cells)


def test_cell_schedule_halves_the_first_interval():
    from fpkit.ensemble.spec import snapshot_schedule

    base = snapshot_schedule(1000, 15)
    assert base[1] == 30  # the coarse first lag of issue 17's cell 18 (D falls 60-fold within it)
    s = vm.cell_schedule(1000, 15, 4)
    assert s == [0, 2, 4, 8, 15] + base[1:].tolist()  # 30/2, 30/4, 30/8, 30/16 rounded
    assert vm.cell_schedule(1000, 15, 0) == base.tolist()
    assert vm.cell_schedule(5, 15, 4) == list(range(6))  # duplicates and step 0 dropped
    # only halvings that land on a step >= 1 (s1 = 30: five); the schema refuses what no schedule could use
    assert vm.cell_schedule(1000, 15, 62) == [0, 1, 2, 4, 8, 15] + base[1:].tolist()
    with pytest.raises(ConfigError, match="map.early_snapshots"):
        resolve_config(vm.EXPERIMENT(), overrides={"map": {"early_snapshots": 10**22}})
    cfg = resolve_config(vm.EXPERIMENT())
    cell = vm.plan_cells(cfg)[0]
    g = cfg["map"]
    assert vm.cell_config(cfg, cell)["train"]["snapshot_steps"] == vm.cell_schedule(g["steps"], g["snapshots"], 4)
    # the report says what was scheduled
    assert figs._schedule_words(g) == ("19 snapshots at steps 0, 2, 4, 8, 15, 30, 65, …, 1000 (4 of them halving "
                                       "the default schedule's first interval, where D falls fastest)")  # fmt: skip


@pytest.mark.parametrize("section", ["map", "digits_autoencoder"])
def test_too_few_snapshot_steps_name_the_key(section):
    # 1 step holds 2 snapshots (0 and 1) whatever is asked: the estimation needs 3; 2 steps give 0, 1, 2
    with pytest.raises(ConfigError, match=rf"{section}\.steps: 1 SGD steps give only 2 distinct"):
        resolve_config(vm.EXPERIMENT(), overrides={section: {"steps": 1}})
    assert len(vm.cell_schedule(2, 15, 4)) == 3
    resolve_config(vm.EXPERIMENT(), overrides={section: {"steps": 2}})


def _strip(rows):
    return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")} for r in rows]


def test_cell_fields():
    cfg = _tiny()
    cell = vm.plan_cells(cfg)[0]
    r = vm.run_cell(cfg, cell)
    assert r["status"] == "ok" and r["verdict"] in vm.VERDICTS
    assert len(r["entries"]) == 2 and r["entries"][0]["label"].startswith("W1")  # depth 1: W1, W2
    assert {e["label"][:2] for e in r["entries"]} == {"W1", "W2"}
    assert r["worst"] == max(e["worst"] for e in r["entries"]) and np.isfinite(r["worst"])
    assert r["verdict"] == vm.worst_verdict(e["verdict"] for e in r["entries"])
    for e in r["entries"]:
        assert e["verdict"] in vm.VERDICTS and isinstance(e["reasons"], list)
        assert set(e["diagnostics"]) == set(vm.DIAGNOSTIC_KEYS)
        assert e["diagnostics"]["eta_lam_max"] is not None and e["diagnostics"]["eta_lam_max"] > 0
        assert (e["verdict"] == "holds") == (not e["reasons"])
        # the stored diagnostics are every input of the verdict, and the stored series give the worst
        assert validity(e["diagnostics"], e["route"]) == (e["verdict"], e["reasons"])
        g = cfg["map"]
        schedule = vm.cell_schedule(g["steps"], g["snapshots"], g["early_snapshots"])
        assert len(e["w1_floor"]) == len(schedule) and max(e["w1_floor"][1:]) == e["worst"]
    assert r["snapshot_steps"] == schedule  # the schedule used is stored with the cell
    json.dumps(r)  # plain values only (stored as JSON in results.h5)


def test_digits_autoencoder_on_the_cells_schedule():
    cfg = _tiny()
    cfg["digits_autoencoder"].update(hidden=[4, 4], members=400, steps=40, snapshots=4, n=32,
                                     auto_limit={"W2": 1, "W1": 1, "W3": 1})  # fmt: skip
    a = cfg["digits_autoencoder"]
    schedule = vm.cell_schedule(a["steps"], a["snapshots"], a["early_snapshots"])
    assert a["early_snapshots"] == 4 and len(schedule) > a["snapshots"]
    r = vm.run_autoencoder(cfg, "tanh")
    assert r["status"] == "ok" and [e["label"][:2] for e in r["entries"]] == ["W2", "W1", "W3"]
    for e in r["entries"]:
        assert len(e["w1_floor"]) == len(schedule) and max(e["w1_floor"][1:]) == e["worst"]
        assert validity(e["diagnostics"], e["route"]) == (e["verdict"], e["reasons"])
    assert r["snapshot_steps"] == schedule  # stored, and stated in the report
    assert f"{len(schedule)} snapshots at steps 0, " in figs.autoencoder_markdown(r)


@pytest.fixture(scope="module")
def client():
    if not dist.have_dask():
        pytest.skip('needs Dask: pip install "fpkit[distributed]"')
    with dist.local_client(2, numba_threads=1) as c:
        yield c


@needs_dask
def test_dask_same_as_serial(client):
    cfg = _tiny()
    cells = vm.plan_cells(cfg)
    serial = vm.run_cells(copy.deepcopy(cfg), cells)
    parallel = vm.run_cells_dask(client, copy.deepcopy(cfg), cells)
    assert [r["index"] for r in parallel] == [c["index"] for c in cells]
    assert json.dumps(_strip(parallel), sort_keys=True) == json.dumps(_strip(serial), sort_keys=True)


def test_report_names_the_diagnostic_that_fired_with_its_value():
    """The cells table's short reasons come from the real verdict texts: a drift-driven entry whose U reason
    quotes a noise-level disagreement ("drifts differ … (noise, not bias)") is listed as U with its value, not
    as a disagreement; η·λmax, a frozen fraction and a coarse lag with theirs; an entry that holds adds nothing."""
    ev = {"drift_disagreement": 0.7, "drift_disagreement_z": 1.0, "drift_uncertainty": 1.6, "drift_uncertainty_km": 0.3,
          "diffusion_share": 0.2, "eta_lam_max": 1.2, "frozen_fraction": 0.3, "interpolation_error": 1.3,
          "interpolation_lag": [0.0, 1.5], "interpolation_d_ratio": 60.0}  # fmt: skip
    verdict, reasons = validity(ev, "mechanistic")
    assert verdict == "doubtful" and any("drifts differ" in r for r in reasons)
    fine = {"drift_disagreement": 0.1, "drift_uncertainty": 0.1, "diffusion_share": 0.2, "eta_lam_max": 0.1}
    cell = {"index": 0, "data": "gaussian", "activation": "relu", "hidden": [2], "lr": 0.05, "batch_size": 8,
            "status": "ok", "worst": 2.0, "worst_entry": "W1[0,0]", "verdict": verdict,
            "reasons": [f"W1[0,0]: {r}" for r in reasons],
            "entries": [{"label": "W1[0,0]", "reasons": reasons, "diagnostics": ev},
                        {"label": "W2[0,0]", "reasons": validity(fine, "mechanistic")[1], "diagnostics": fine}]}  # fmt: skip
    row = figs.cells_markdown([cell]).splitlines()[-1]
    assert row.endswith("| W1[0,0]: coarse lag 1.30 floors, U 1.60, frozen 30%, η·λmax 1.20 |"), row


def test_eta_lam_max_at_the_end_is_that_of_the_final_weights(monkeypatch):
    """The autoencoder's η·λmax "at the end" is the median over the probe members of η times the top eigenvalue
    of the full-batch Hessian at the last snapshot's weights: here the Hessian is built whole (P products
    H·e_j) and diagonalised, independently of the Lanczos iteration that the run records."""
    import fpkit

    cfg = _tiny()
    cfg["digits_autoencoder"].update(hidden=[3, 3], members=120, steps=40, snapshots=4, n=32, lr=0.2,
                                     auto_limit={"W2": 1, "W1": 0, "W3": 0})  # fmt: skip
    runs, ensembles = [], []
    train = fpkit.Ensemble.train

    def keep(self, *args, **kwargs):
        ensembles.append(self)
        runs.append(train(self, *args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(fpkit.Ensemble, "train", keep)
    r = vm.run_autoencoder(cfg, "tanh")
    (run,), (ens,) = runs, ensembles
    theta = run.flat("weights")[-1].T  # (P, M) at the last snapshot
    P = ens.arch.P
    assert theta.shape == (P, 120)
    lam = []
    for m in run.probe_members:
        H = ens._hess_vec(np.repeat(theta[:, [m]], P, axis=1), np.eye(P))
        lam.append(np.linalg.eigvalsh(0.5 * (H + H.T))[-1])
    assert r["eta_lam_max_end"] == pytest.approx(run.eta * np.median(lam), rel=1e-6)
