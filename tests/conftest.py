"""Shared fixtures: both async backends, both HTTP libraries, and a clean global state."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

import xretry
import xretry.httpx2
from xretry import _testing


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every ``@pytest.mark.anyio`` test runs on asyncio and on trio."""
    return str(request.param)


@pytest.fixture(autouse=True)
def _reset_test_mode() -> Iterator[None]:
    """No test leaks xretry's global test mode into the next one."""
    saved = _testing.reset()
    yield
    _testing.restore(saved)


@dataclass(frozen=True)
class Flavour:
    """One HTTP library (httpx or httpx2) and xretry's transports for it."""

    name: str
    http: ModuleType
    RetryTransport: Any
    AsyncRetryTransport: Any

    def mock(self, handler: Any) -> Any:
        return self.http.MockTransport(handler)


FLAVOURS = {
    "httpx": Flavour("httpx", httpx, xretry.RetryTransport, xretry.AsyncRetryTransport),
    "httpx2": Flavour(
        "httpx2", httpx2, xretry.httpx2.RetryTransport, xretry.httpx2.AsyncRetryTransport
    ),
}


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Run the test once with httpx and once with httpx2."""
    return FLAVOURS[str(request.param)]


class FakeClock:
    """A monotonic clock that only moves when the fake sleeper sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
