"""Every public name of fpkit's API has a numpydoc docstring that documents its signature (issue 22): the
names in ``fpkit.__all__``, the public functions and classes of fpkit.plotting, fpkit.testing, fpkit.metrics,
fpkit.errors and fpkit.experiments, and of fpkit.torch and fpkit.distributed where they import; of each class
its public methods and properties.

Rules checked (a failure names the object and what is missing):

- a non-empty docstring;
- functions and methods: a ``Parameters`` section naming every parameter of the signature (``self``/``cls``
  excepted; ``*args``/``**kwargs`` as written); a ``Returns`` (or ``Yields``) section where the body returns a
  value (properties excepted: their docstring is the value's description);
- classes with a constructor of their own (an ``__init__`` or a dataclass's fields): each constructor
  parameter named in the class docstring's ``Parameters`` or ``Attributes`` section or in ``__init__``'s
  ``Parameters``.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import textwrap

import pytest

import fpkit

MODULES = ["fpkit.plotting", "fpkit.testing", "fpkit.metrics", "fpkit.errors", "fpkit.experiments", "fpkit.torch",
           "fpkit.distributed"]  # fmt: skip
OPTIONAL = {"fpkit.torch", "fpkit.distributed"}  # need optional dependencies (torch, dask)


def sections(doc: str | None) -> dict[str, list[str]]:
    """The numpydoc sections of a docstring: header -> its lines (a header is a line underlined by dashes)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    out, name = {}, None
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if line.strip() and re.fullmatch(r"-{3,}", nxt.strip()) and len(nxt.strip()) >= len(line.strip()) - 1:
            name = line.strip()
            out[name] = []
        elif name is not None and not re.fullmatch(r"-{3,}", line.strip()):
            out[name].append(line)
    return out


def documented_names(lines: list[str]) -> set[str]:
    """Names of a Parameters/Attributes section: the unindented entry lines ``a, b : type  text`` or ``a``."""
    body = [x for x in lines if x.strip()]
    if not body:
        return set()
    base = min(len(x) - len(x.lstrip()) for x in body)
    names = set()
    for x in body:
        if len(x) - len(x.lstrip()) == base:
            head = x.strip().split(" : ")[0].split(":")[0] if " : " in x or x.rstrip().endswith(":") else x.strip()
            names.update(n.strip() for n in head.split(",") if n.strip())
    return names


def returns_value(func) -> bool:
    """Whether the function's own body has ``return <value>`` (not None) or ``yield``."""
    try:
        src = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))
    except (OSError, TypeError):
        return False
    fn = ast.parse(src).body[0]

    def walk(node):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
                continue
            if isinstance(child, (ast.Yield, ast.YieldFrom)):
                return True
            if isinstance(child, ast.Return) and child.value is not None and not (
                isinstance(child.value, ast.Constant) and child.value.value is None
            ):
                return True
            if walk(child):
                return True
        return False

    return walk(fn)


def parameter_names(func, skip_first: bool) -> list[str]:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return []
    if skip_first and params:
        params = params[1:]
    prefix = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [prefix.get(p.kind, "") + p.name for p in params]


def check_function(func, where: str, *, method: bool = False) -> list[str]:
    doc = inspect.getdoc(func)
    if not doc or not doc.strip():
        return [f"{where}: no docstring"]
    secs = sections(func.__doc__)
    problems = []
    names = parameter_names(func, skip_first=method)
    listed = documented_names(secs.get("Parameters", []))
    missing = [n for n in names if n not in listed and n.lstrip("*") not in listed]
    if missing:
        problems.append(f"{where}: Parameters section lacks {missing}")
    if returns_value(func) and not ({"Returns", "Yields"} & set(secs)):
        problems.append(f"{where}: no Returns section")
    return problems


def check_class(cls, where: str) -> list[str]:
    problems = []
    if not (cls.__doc__ or "").strip():
        problems.append(f"{where}: no docstring")
    own_init = "__init__" in vars(cls) or (dataclasses.is_dataclass(cls) and "__dataclass_fields__" in vars(cls))
    if own_init and not issubclass(cls, BaseException) or "__init__" in vars(cls):
        secs = sections(cls.__doc__)
        listed = documented_names(secs.get("Parameters", [])) | documented_names(secs.get("Attributes", []))
        init = vars(cls).get("__init__")
        if init is not None:
            listed |= documented_names(sections(init.__doc__).get("Parameters", []))
        # the constructor's own signature (a class may also define __new__ to dispatch, with *args, **kwargs)
        names = parameter_names(init, skip_first=True) if init is not None else parameter_names(cls, False)
        missing = [n for n in names if n not in listed and n.lstrip("*") not in listed]
        if missing:
            problems.append(f"{where}: constructor parameters not documented: {missing}")
    for name, attr in vars(cls).items():
        if name.startswith("_"):
            continue
        w = f"{where}.{name}"
        if isinstance(attr, property):
            if not (attr.__doc__ or "").strip():
                problems.append(f"{w}: no docstring")
        elif isinstance(attr, (classmethod, staticmethod)):
            problems += check_function(attr.__func__, w, method=isinstance(attr, classmethod))
        elif inspect.isfunction(attr):
            problems += check_function(attr, w, method=True)
    return problems


def public_objects() -> list[tuple[str, object]]:
    out = [(f"fpkit.{n}", getattr(fpkit, n)) for n in fpkit.__all__]
    for modname in MODULES:
        try:
            mod = importlib.import_module(modname)
        except ImportError:
            if modname in OPTIONAL:
                continue
            raise
        names = getattr(mod, "__all__", None)
        if names is None:
            names = [n for n, v in vars(mod).items() if not n.startswith("_") and (inspect.isfunction(v) or
                     inspect.isclass(v)) and getattr(v, "__module__", None) == modname]  # fmt: skip
        out += [(f"{modname}.{n}", getattr(mod, n)) for n in names]
    seen, unique = set(), []
    for where, obj in out:
        if id(obj) not in seen and (inspect.isfunction(obj) or inspect.isclass(obj)):
            seen.add(id(obj))
            unique.append((where, obj))
    return unique


def problems_of(where, obj) -> list[str]:
    return check_class(obj, where) if inspect.isclass(obj) else check_function(obj, where)


def test_the_api_walk_finds_the_public_names():
    """The walk sees the names a user imports (a walk that finds nothing would pass vacuously)."""
    names = {w for w, _ in public_objects()}
    assert {"fpkit.predict", "fpkit.FokkerPlanck", "fpkit.plotting.plot_coefficients", "fpkit.metrics.w1_samples",
            "fpkit.testing.assert_mass_conserved", "fpkit.errors.check_positive"} <= names  # fmt: skip
    assert len(names) > 80


@pytest.mark.parametrize("where, obj", public_objects(), ids=lambda x: x if isinstance(x, str) else "")
def test_public_docstring_documents_its_signature(where, obj):
    problems = problems_of(where, obj)
    assert not problems, "\n".join(problems)


def test_the_checker_catches_an_undocumented_parameter_and_return():
    """The rules themselves, on a function whose docstring forgets a parameter and its return value."""

    def f(a, b=1):
        """Add.

        Parameters
        ----------
        a : float
            One number.
        """
        return a + b

    assert check_function(f, "f") == ["f: Parameters section lacks ['b']", "f: no Returns section"]
