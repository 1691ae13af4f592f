"""The public surface: ``__all__`` lists are sorted, unique and resolve; the typing marker ships."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import subprocess
import sys
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest

import xretry
import xretry._errors
import xretry.httpx2
import xretry.testing

PUBLIC_MODULES = [xretry, xretry.httpx2, xretry.testing]
#: The optional extras' modules, when their package is installed (the dev group has them all).
if importlib.util.find_spec("redis") is not None:
    PUBLIC_MODULES.append(importlib.import_module("xretry.redis"))
if importlib.util.find_spec("xai_sdk") is not None:
    PUBLIC_MODULES.append(importlib.import_module("xretry.xai_sdk"))


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


def test_the_redis_store_is_exported_from_xretry_redis_only() -> None:
    pytest.importorskip("redis", reason="the redis package is not installed")
    from xretry._redis_store import RedisDeferredStore

    assert importlib.import_module("xretry.redis").RedisDeferredStore is RedisDeferredStore
    assert "RedisDeferredStore" not in xretry.__all__


def test_import_xretry_does_not_import_redis() -> None:
    code = "import sys, xretry; print('redis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_xretry_redis_without_redis_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)  # what an environment without it looks like
    for name in ("xretry.redis", "xretry._redis_store"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ImportError, match=r"pip install 'xretry\[redis\]'"):
        importlib.import_module("xretry.redis")


def test_import_xretry_does_not_import_grpc_or_the_xai_sdk() -> None:
    code = "import sys, xretry; print('grpc' in sys.modules, 'xai_sdk' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"


def test_xretry_xai_sdk_without_the_sdk_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "xai_sdk", None)
    monkeypatch.setitem(sys.modules, "xai_sdk.chat", None)
    monkeypatch.delitem(sys.modules, "xretry.xai_sdk", raising=False)
    with pytest.raises(ImportError, match=r"pip install xai-sdk"):
        importlib.import_module("xretry.xai_sdk")
