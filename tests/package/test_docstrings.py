"""The documentation runs: doctests of the installed modules, and numpydoc sections on every
public name."""

import doctest
import importlib
import inspect
import types

import pytest

import pyconvfast

MODULES = ["pyconvfast", "pyconvfast._conv", "pyconvfast._core.padding", "pyconvfast._plan",
           "pyconvfast.tuning", "pyconvfast._transpose", "pyconvfast._resize"]


@pytest.mark.parametrize("module_name", MODULES)
def test_doctests(module_name):
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False, report=True)
    assert result.attempted > 0, f"{module_name} has no doctest"
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests failed in {module_name}"


@pytest.mark.parametrize("name", [
    n for n in pyconvfast.__all__
    if n != "__version__" and not isinstance(getattr(pyconvfast, n), types.ModuleType)])
def test_public_docstrings(name):
    obj = getattr(pyconvfast, name)
    doc = obj.__doc__
    assert doc, f"pyconvfast.{name} has no docstring"
    doc = inspect.cleandoc(doc)
    # numpydoc: a class documents its constructor's Parameters, and has no Returns section.
    sections = ("Parameters", "Examples") if inspect.isclass(obj) else \
        ("Parameters", "Returns", "Examples")
    for section in sections:
        assert f"{section}\n---" in doc, f"pyconvfast.{name}'s docstring has no {section} section"
    assert ">>> " in doc, f"pyconvfast.{name}'s Examples has no example"


@pytest.mark.parametrize("name", pyconvfast.tuning.__all__)
def test_tuning_docstrings(name):
    function = getattr(pyconvfast.tuning, name)
    doc = inspect.cleandoc(function.__doc__ or "")
    assert doc, f"pyconvfast.tuning.{name} has no docstring"
    sections = ["Examples"]
    if inspect.signature(function).parameters:
        sections.append("Parameters")
    for section in sections:
        assert f"{section}\n---" in doc, f"pyconvfast.tuning.{name} has no {section} section"
    assert ">>> " in doc, f"pyconvfast.tuning.{name}'s Examples has no example"
