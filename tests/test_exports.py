"""The public surface: ``__all__`` lists are sorted, unique and resolve; the typing marker ships."""

from __future__ import annotations

import importlib
import inspect
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

import xretry
import xretry._errors
import xretry.httpx2
import xretry.testing

PUBLIC_MODULES = [xretry, xretry.httpx2, xretry.testing]


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_unique(module: ModuleType) -> None:
    names = list(module.__all__)
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert names


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_every_name_in_all_resolves(module: ModuleType) -> None:
    fresh = importlib.import_module(module.__name__)
    for name in module.__all__:
        assert getattr(fresh, name, None) is not None, f"{module.__name__}.{name} is missing"


@pytest.mark.parametrize("module", PUBLIC_MODULES, ids=lambda m: m.__name__)
def test_star_import_gives_exactly_all(module: ModuleType) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(module.__all__)


def test_every_error_class_is_exported() -> None:
    defined = {
        name
        for name, obj in vars(xretry._errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, xretry.XRetryError)
        and obj.__module__ in (xretry._errors.__name__, "xretry")
    }
    assert "XRetryError" in defined
    assert "QuotaExhaustedError" in defined
    # Public errors present themselves as xretry.<Name> in tracebacks and reprs.
    assert {getattr(xretry, n).__module__ for n in defined} == {"xretry"}
    missing = defined - set(xretry.__all__)
    assert not missing, f"error classes not exported from xretry: {sorted(missing)}"
    for name in defined:
        assert getattr(xretry, name) is getattr(xretry._errors, name)


def test_core_entry_points_are_exported() -> None:
    for name in ("RetryTransport", "AsyncRetryTransport", "RetryPolicy", "raise_for_status"):
        assert name in xretry.__all__
    assert "RetryTransport" in xretry.httpx2.__all__


def test_version_is_a_string() -> None:
    assert isinstance(xretry.__version__, str)
    assert xretry.__version__


def test_py_typed_ships() -> None:
    marker = Path(xretry.__file__).with_name("py.typed")
    assert marker.is_file()
    assert resources.files("xretry").joinpath("py.typed").is_file()
