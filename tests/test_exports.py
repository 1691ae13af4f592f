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
import xretry.backends
import xretry.emulator
import xretry.httpx2
import xretry.testing

PUBLIC_MODULES = [xretry, xretry.backends, xretry.emulator, xretry.httpx2, xretry.testing]
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


#: The modules that only re-export (the others hold code, and import for it).
FACES = [m for m in PUBLIC_MODULES if m.__name__ in ("xretry", "xretry.backends", "xretry.redis")]


@pytest.mark.parametrize("module", FACES, ids=lambda m: m.__name__)
def test_all_is_exactly_the_public_namespace(module: ModuleType) -> None:
    """What a public face offers without a leading underscore is its ``__all__``, nothing more or
    less (as httpx checks it): a name imported for internal use, or a public one left out of
    ``__all__``, fails here. Submodules bound by importing them (``xretry.httpx2``) are not names
    of the package; ``xretry.testing`` is listed on purpose."""
    listed = set(module.__all__)
    offered = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not (isinstance(value, ModuleType) and name not in listed)
        and name != "annotations"  # from __future__ import annotations
    }
    assert offered == listed - {"__version__"}


_MOVED = [
    "DeferredRecord",
    "DeferredStore",
    "GateBackend",
    "GateSettings",
    "MemoryGateBackend",
    "SQLiteDeferredStore",
]


@pytest.mark.parametrize("name", _MOVED)
def test_moved_names_still_work_with_a_deprecation_warning(name: str) -> None:
    with pytest.warns(DeprecationWarning, match=rf"xretry\.backends\.{name}"):
        alias = getattr(xretry, name)
    assert alias is getattr(xretry.backends, name)
    assert name not in xretry.__all__


def test_outer_loop_is_no_public_name() -> None:
    with pytest.warns(DeprecationWarning, match="internal"):
        assert repr(xretry.OUTER_LOOP) == "xretry.OUTER_LOOP"
    assert "OUTER_LOOP" not in xretry.__all__
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        xretry.NoSuchThing  # noqa: B018


def test_every_public_name_is_documented() -> None:
    """docs/api.md names every public name of every public module, each in backquotes."""
    text = (Path(__file__).parent.parent / "docs" / "api.md").read_text()
    missing = [
        f"{module.__name__}.{name}"
        for module in PUBLIC_MODULES
        for name in module.__all__
        if f"`{name}`" not in text and f"`{module.__name__}.{name}`" not in text
    ]
    assert not missing, f"not in docs/api.md: {missing}"


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
