"""Typed configuration: every key of every schema refuses wrong types with its key path; the measured
coercion bugs; unknown keys; random TOML documents through `fpkit train` / `fpkit solve` never give a
traceback, and a valid document's values are stored unchanged."""

import math
import re
import typing
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fpkit
from fpkit.cli import main
from fpkit.config import Schema, fields, merge, parse, register_schema, schemas, tagged_members, to_toml
from fpkit.errors import ConfigError

# a valid document for each schema with required keys (the others are valid empty)
EXAMPLES = {"problem": {"grid": {"lo": -1.0, "hi": 1.0, "n": 8}, "problem": {}, "solve": {"t_eval": [0.1]}}}
WRONG = {bool: True, str: "1", float: 8.7, int: 3, list: [1], dict: {"a": 1}}


def _accepts(tp) -> set:
    """Python types of the values a field accepts (None left out: TOML cannot write it)."""
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    if tagged_members(tp) or (isinstance(tp, type) and issubclass(tp, Schema)):
        return {dict}
    if typing.get_origin(tp) in (typing.Union, type(int | str)):
        return set().union(*(_accepts(a) for a in typing.get_args(tp) if a is not type(None)))
    if typing.get_origin(tp) is typing.Literal:
        return {type(v) for v in typing.get_args(tp)}
    if typing.get_origin(tp) is list:
        return {list}
    return {tp, int} if tp is float else {tp}


def _set(doc: dict, path: str, value, tag):
    *sections, key = path.split(".")
    for s in sections:
        doc = doc.setdefault(s, {})
    if tag is not None:
        doc.clear()
        doc["kind"] = tag
    doc[key] = value


CASES = [(name, path, tag) for name, cls in schemas().items() for path, _, tag in fields(cls)]


@pytest.mark.parametrize("name, path, tag", CASES, ids=[f"{n}:{p}:{t}" for n, p, t in CASES])
def test_every_key_refuses_a_wrong_type_naming_its_path(name, path, tag):
    cls = schemas()[name]
    info = dict((p, i) for p, i, t in fields(cls) if t == tag)[path]
    accepted = _accepts(info.annotation)
    wrong = [v for t, v in WRONG.items() if t not in accepted]
    if str in accepted and typing.Literal in {typing.get_origin(a) for a in _flat_args(info.annotation)}:
        wrong.append("not-a-choice")
    assert wrong, path
    for value in wrong:
        doc = merge(EXAMPLES.get(name, {}), {})
        _set(doc, path, value, tag)
        with pytest.raises(ConfigError) as err:
            parse(cls, doc)
        assert any(line.startswith(f"{path}: ") for line in str(err.value).splitlines()), (value, err.value)


def _flat_args(tp):
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    args = typing.get_args(tp) if typing.get_origin(tp) in (typing.Union, type(int | str)) else (tp,)
    return [typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a for a in args]


def test_examples_are_valid_and_defaults_round_trip_through_toml():
    import tomllib

    for name, cls in schemas().items():
        spec = parse(cls, EXAMPLES.get(name, {}))
        assert parse(cls, tomllib.loads(to_toml(spec.model_dump()))).model_dump() == spec.model_dump()


# ---------------------------------------------------------------------------------------- measured bugs
@pytest.mark.parametrize(
    "kwargs, line",
    [
        ({"bias": "false"}, "model.bias: expected true or false, got 'false'"),
        ({"lr": True}, "train.lr: expected a number > 0, got true"),
        ({"batch_size": 8.7}, "train.batch_size: expected an integer >= 1, got 8.7"),
        ({"hidden": "3"}, "model.hidden: expected a list of integers >= 1, got '3'"),
    ],
)
def test_measured_coercion_bugs_are_refused(kwargs, line):
    with pytest.raises(ConfigError) as err:
        fpkit.Ensemble(**kwargs)
    assert str(err.value) == line
    section, key = line.split(":")[0].split(".")
    with pytest.raises(ConfigError) as err:
        fpkit.Ensemble({section: {key: kwargs[key]}})
    assert str(err.value) == line


def test_one_line_per_problem_and_unknown_keys_with_their_path():
    with pytest.raises(ConfigError) as err:
        fpkit.Ensemble({"train": {"lr": "0.1", "foo": 1}, "model": {"bias": 1}, "data": {"kind": "mixture",
                                                                                         "dims": 3}})
    lines = str(err.value).splitlines()
    assert lines[0].startswith("model.bias: expected true or false, got 1")
    assert "train.lr: expected a number > 0, got '0.1'" in lines
    assert any(x.startswith("train.foo: unknown key; valid keys: optimizer, lr,") for x in lines)
    assert any(x.startswith("data.dims: unknown key; valid keys: kind, d, n,") for x in lines)
    with pytest.raises(ConfigError, match="^bogus: unknown key; valid keys: seed, model, train, data$"):
        fpkit.Ensemble({"bogus": {}})
    with pytest.raises(ConfigError, match="^data.kind: expected one of 'gaussian', .*got 'imagenet'$"):
        fpkit.Ensemble(data={"kind": "imagenet"})
    with pytest.raises(ConfigError, match="^initial.sd: unknown key"):
        parse(schemas()["problem"], merge(EXAMPLES["problem"], {"initial": {"sd": 1.0}}))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused_with_the_key_path(value):
    with pytest.raises(ConfigError, match=r"^solve.t0: expected a finite number, got (nan|inf|-inf)$"):
        parse(schemas()["problem"], merge(EXAMPLES["problem"], {"solve": {"t0": value}}))
    with pytest.raises(ConfigError, match="^train.lr: expected a finite number"):
        fpkit.Ensemble(lr=value)


def test_numpy_values_are_the_numbers_they_hold_and_cross_field_rules_name_the_key():
    import numpy as np

    ens = fpkit.Ensemble(k=np.int64(2), lr=np.float64(0.05), bias=np.bool_(True), members=8, steps=5)
    assert ens.config["model"]["hidden"] == [2, 2] and type(ens.config["train"]["lr"]) is float
    assert ens.config["model"]["bias"] is True
    with pytest.raises(ConfigError, match="^train.temperature: must be > 0 for optimizer 'sgld'$"):
        fpkit.Ensemble(optimizer="sgld")
    with pytest.raises(ConfigError, match="^train.snapshot_steps: must be strictly increasing"):
        fpkit.Ensemble(snapshot_steps=[0, 5, 5])


def test_registry_and_parse_of_a_tagged_union():
    from fpkit.config import DataSchema, ModelSchema, TrainSchema

    class Mine(Schema):
        """A schema of a plug-in."""

        model: ModelSchema = ModelSchema()
        train: TrainSchema = TrainSchema()
        data: DataSchema = {"kind": "gaussian"}

    register_schema("test-mine", Mine)
    try:
        assert schemas()["test-mine"] is Mine
        with pytest.raises(ConfigError, match="already registered"):
            register_schema("test-mine", type("Other", (Schema,), {}))
        dump = parse(Mine, {"data": {"kind": "mixture", "d": 3}}).model_dump()
        assert dump["data"]["components"] == 4 and dump["train"]["lr"] == 0.02
    finally:
        from fpkit.config import SCHEMAS

        SCHEMAS.pop("test-mine")
    with pytest.raises(ConfigError, match="^data.d: expected an integer >= 1, got 0$"):
        parse(DataSchema, {"d": 0}, "data")


def test_config_show_and_list(capsys):
    assert main(["config", "list"]) == 0
    out = capsys.readouterr().out
    assert "ensemble:" in out and "problem:" in out
    assert main(["config", "show", "ensemble"]) == 0
    out = capsys.readouterr().out
    assert "[train]\noptimizer = \"sgd\"\nlr = 0.02\n" in out
    assert main(["config", "show", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fpkit config: error: unknown schema 'nope'; valid names: {', '.join(schemas())}"]
    assert {"ensemble", "problem", "fp-histograms"} <= set(schemas())


# ------------------------------------------------------------------------- random documents via the CLI
def _field_values(info) -> st.SearchStrategy:
    """Valid-looking values for a field (small numbers so valid documents run fast) and wrong ones."""
    small = st.one_of(st.integers(0, 6), st.floats(-2, 3, allow_nan=False).map(lambda x: round(x, 2)))
    literals = [v for a in _flat_args(info.annotation) if typing.get_origin(a) is typing.Literal
                for v in typing.get_args(a)]  # fmt: skip
    atoms = st.one_of(small, st.booleans(), st.sampled_from(["false", "3", "x", "-x", "1/0", "sin", "exp(-x**2)",
                                                             math.nan, math.inf, *literals]))  # fmt: skip
    default = None if info.is_required() else info.get_default(call_default_factory=True)
    valid = st.sampled_from([v for v in [default, *literals] if v is not None] or [1])
    return st.one_of(valid, atoms, st.lists(st.one_of(st.integers(0, 6), st.floats(0, 3).map(lambda x: round(x, 2))),
                                     min_size=1, max_size=3).map(sorted))  # fmt: skip


def _documents(cls, required: dict) -> st.SearchStrategy:
    sections = {}
    for path, info, _ in fields(cls):
        *sec, key = path.split(".")
        sections.setdefault(".".join(sec), {})[key] = _field_values(info)
    per_section = {
        sec: st.dictionaries(st.sampled_from([*keys, "bogus"]), st.just(None), max_size=4).flatmap(
            lambda chosen, keys=keys: st.fixed_dictionaries(
                {k: keys.get(k, st.integers(0, 3)) for k in chosen}))
        for sec, keys in sections.items()
    }  # fmt: skip

    def build(top, parts):
        doc = merge(required, {})
        doc.update(top)
        for sec, values in parts.items():
            if sec:
                doc.setdefault(sec, {}).update(values)
        return doc

    parts = st.fixed_dictionaries({}, optional={s: v for s, v in per_section.items() if s})
    return st.builds(build, per_section.get("", st.just({})), parts)


TINY = {"train": {"members": 4, "steps": 3, "snapshots": 2}}


def _check(rc, err, doc, stored):
    assert rc in (0, 1, 2), rc  # 2: bad configuration; 1: a numerical failure (StabilityError)
    if rc:  # one line; several configuration problems are joined by " | ", each naming its key path
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        first, *more = lines[0].split(" | ")
        assert first.startswith("fpkit ") and ": error: " in first, err
        assert rc == 2 or not more, err
        assert all(re.match(r"^[\w.\-\[\]]+: ", part) for part in more), err
        return
    for sec, values in doc.items():
        if not isinstance(values, dict):
            assert stored[sec] == values
            continue
        for key, value in values.items():
            if (sec, key) in RESOLVED and RESOLVED[(sec, key)](stored):
                continue
            assert stored[sec][key] == value, (sec, key, value, stored[sec][key])


# values that training resolves on purpose (documented in docs/config.md): gd samples the full batch,
# probes are capped at members and 8, steps reach the last snapshot step, a named spectrum becomes variances
RESOLVED = {
    ("train", "sampling"): lambda c: c["train"]["optimizer"] == "gd",
    ("train", "probes"): lambda c: c["train"]["probes"] == min(c["train"]["members"], 8),
    ("train", "steps"): lambda c: c["train"]["snapshot_steps"] is not None,
    ("data", "spectrum"): lambda c: isinstance(c["data"]["spectrum"], list),
}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(doc=_documents(schemas()["ensemble"], TINY))
def test_random_train_documents(doc, tmp_path, capsys):
    path = tmp_path / "e.toml"
    path.write_text(to_toml(doc))
    seen = {}

    def train(self, *args, **kwargs):  # stop after validation: the configuration is what is checked
        seen["config"] = self.config
        return "run"

    with mock.patch("fpkit.ensemble.Ensemble.train", train):
        rc = main(["train", str(path), "-o", str(tmp_path / "e.h5")])
    _check(rc, capsys.readouterr().err, doc, seen.get("config"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])  # fmt: skip
@given(doc=_documents(schemas()["problem"], EXAMPLES["problem"]))
def test_random_solve_documents(doc, tmp_path, capsys):
    path, out = tmp_path / "p.toml", tmp_path / "p.h5"
    path.write_text(to_toml(doc))
    out.unlink(missing_ok=True)
    rc = main(["solve", str(path), "-o", str(out)])
    stored = fpkit.Solution.load(out).meta["config"] if rc == 0 else None
    _check(rc, capsys.readouterr().err, doc, stored)


class _Stop(Exception):
    """Raised by the patched experiment run once the configuration has been resolved."""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])  # fmt: skip
@given(doc=_documents(schemas()["fp-histograms"], {}))
def test_random_experiment_documents(doc, tmp_path, capsys):
    """`fpkit experiment run fp-histograms --config` on random documents: a one-line error naming the key, or
    the experiment starts with exactly the document's values (stopped there: the configuration is checked)."""
    from fpkit.validation.experiments.fp_histograms import FpHistograms

    path = tmp_path / "x.toml"
    path.write_text(to_toml(doc))
    seen = {}

    def run(self, cfg, ctx):
        seen["config"] = cfg
        raise _Stop

    with mock.patch.object(FpHistograms, "run", run):
        try:
            rc = main(["experiment", "run", "fp-histograms", "--config", str(path), "--out", str(tmp_path / "o")])
        except _Stop:
            rc = 0
    _check(rc, capsys.readouterr().err, doc, seen.get("config"))
