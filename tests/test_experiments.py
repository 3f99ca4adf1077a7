"""The experiment layer: plug-ins from a user's file, the registry, configuration resolution, the shared writer
and the CLI (`fpkit experiment list/run`)."""

import json
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from fpkit import experiments as X
from fpkit.config import merge
from fpkit.errors import ConfigError

TOY = Path(__file__).parent / "plugins" / "toy_experiment.py"


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "fpkit.cli", *args], capture_output=True, text=True, **kw)


def test_user_experiment_file_runs_through_the_cli_and_writes_every_output(tmp_path):
    out = tmp_path / "out"
    p = _cli("experiment", "run", str(TOY), "--quick", "--out", str(out), "--seed", "4")
    assert p.returncode == 0, p.stderr
    assert "1 of 1 claims held" in p.stdout
    with h5py.File(out / "results.h5", "r") as f:
        assert f.attrs["kind"] == "fpkit.Experiment" and f.attrs["experiment"] == "toy-ou"
        cfg = json.loads(f.attrs["config"])
        assert cfg == {"seed": 4, "theta": 1.0, "diffusion": 0.5, "paths": 1000}  # defaults, --quick, --seed
        verdict = json.loads(f.attrs["verdict"])
        assert verdict["held"] == 1 and verdict["claims"][0]["name"] == "variance"
        # the generic writer stores the result dataclass: arrays as datasets, numbers as JSON attributes
        assert f["variance"].shape == (3,) and json.loads(f.attrs["exact"]) == pytest.approx(0.5 * (1 - 2.718281828459045**-12))
        assert "sampling" in json.loads(f.attrs["timings"])
    report = (out / "report.md").read_text()
    assert report.startswith("# Ornstein-Uhlenbeck variance (a user's plug-in)")
    assert "## Verdict" in report and "4 standard errors" in report and "variance.png" in report
    assert (out / "variance.png").stat().st_size > 1000
    assert not list(out.glob(".*tmp*"))  # no temporary files left behind


def test_run_api_returns_the_verdict_object(tmp_path):
    outcome = X.run(str(TOY), quick=True, config={"theta": 2.0}, seed=1)
    assert outcome.files is None  # nothing written without `out`
    assert outcome.config["theta"] == 2.0 and outcome.config["paths"] == 1000
    assert outcome.verdict.passed and outcome.result.exact == pytest.approx(0.25 * (1 - 2.718281828459045**-24))
    md = outcome.verdict.markdown()
    assert "| variance: the sample variance is D/θ |" in md and "**4 standard errors**" in md


def test_bad_configuration_of_a_plugin_is_a_one_line_error_with_the_key_path(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("paths = 10.5\n")
    p = _cli("experiment", "run", str(TOY), "--config", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1 and "paths" in p.stderr
    bad.write_text("[thetaa]\nx = 1\n")
    p = _cli("experiment", "run", str(TOY), "--config", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and "thetaa" in p.stderr
    assert not (tmp_path / "o").exists()  # nothing written for a refused configuration


def test_unknown_experiment_and_broken_file_are_one_line_errors(tmp_path):
    p = _cli("experiment", "run", "no-such-experiment")
    assert p.returncode == 2 and "unknown experiment 'no-such-experiment'" in p.stderr and "fp-histograms" in p.stderr
    broken = tmp_path / "broken.py"
    broken.write_text("import numpy\nraise RuntimeError('boom')\n")
    p = _cli("experiment", "run", str(broken))
    assert p.returncode == 2 and "failed to import: RuntimeError: boom" in p.stderr
    p = _cli("experiment", "run", str(Path(__file__).parent.parent / "README.md"))
    assert p.returncode == 2 and "is not a Python file (.py)" in p.stderr and "Traceback" not in p.stderr
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="exactly one Experiment subclass"):
        X.load(str(empty))


def test_registry_lists_the_flagship():
    p = _cli("experiment", "list")
    assert p.returncode == 0 and "fp-histograms" in p.stdout
    exp = X.load("fp-histograms")
    assert exp.name == "fp-histograms" and exp.Config is not None


def test_merge_replaces_a_table_of_another_kind_and_merges_the_rest():
    base = {"seed": 0, "data": {"kind": "gaussian", "d": 8, "ratio": 0.7}, "train": {"lr": 0.1, "steps": 5}}
    out = merge(base, {"data": {"kind": "mixture", "d": 4}, "train": {"lr": 0.2}})
    assert out["data"] == {"kind": "mixture", "d": 4}  # gaussian keys do not leak into a mixture
    assert out["train"] == {"lr": 0.2, "steps": 5}
    assert merge(base, {"data": {"d": 6}})["data"] == {"kind": "gaussian", "d": 6, "ratio": 0.7}
    assert base["train"]["lr"] == 0.1  # the base is not modified


def test_verdict_counts_and_markdown():
    v = X.Verdict([X.Claim("a", True, 1.0, "t1", "s"), X.Claim("b", False, float("nan"), "t1", "s")],
                  summary="sum.", thresholds={"t1": "defined once"})  # fmt: skip
    assert v.held == 1 and not v.passed and v.headline() == "1 of 2 claims held. sum."
    assert "| b: s | – | t1 | **no** |" in v.markdown()
    assert v.to_dict()["claims"][1]["held"] is False


@pytest.mark.parametrize("name, override, key", [
    ("validity-map", {"map": {"data": []}}, "map.data"),
    ("validity-map", {"digits_autoencoder": {"hidden": [0, 8]}}, "digits_autoencoder.hidden"),
    ("gd-vs-sgd", {"settings": {"widths": [-1]}}, "settings.widths"),
    ("gd-vs-sgd", {"settings": {"depths": []}}, "settings.depths"),
    ("gd-vs-sgd", {"transfer": {"lrs": {"mup": [-1.0]}}}, "transfer.lrs"),
    ("training-response", {"model": {"activations": []}}, "model.activations"),
    ("training-response", {"train": {"methods": []}}, "train.methods"),
    ("truncation", {"network": {"hidden": [-1]}}, "network.hidden"),
    ("order-preserving", {"controls": {"depths": [-1]}}, "controls.depths"),
    ("order-preserving", {"controls": {"lrs": [0.0]}}, "controls.lrs"),
])
def test_experiment_configs_refuse_empty_and_non_positive_lists_before_any_work(name, override, key):
    """Found by a hostile run: these were accepted and failed mid-run under an internal key (model.hidden),
    ran on nothing ("0 of 0 cells") or gave NaN claims; now the schema refuses them, naming the user's key."""
    from fpkit.experiments import load, resolve_config

    with pytest.raises(ConfigError, match=re.escape(key)):
        resolve_config(load(name), quick=True, overrides=override)


def test_a_claim_measured_as_nan_is_not_held():
    from fpkit.experiments import Claim

    assert Claim("x", True, float("nan"), "t", "s").held is False
    assert Claim("x", True, 1.0, "t", "s").held is True
    assert Claim("x", False, 1.0, "t", "s").held is False
