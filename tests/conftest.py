"""Shared fixtures: both async backends, both HTTP libraries, a clean global state, and a real
redis-server (see ``_redis.py``)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import httpx
import httpx2
import pytest

import xretry
import xretry.httpx2
from xretry import _testing

from ._redis import NO_REDIS_PACKAGE, NO_REDIS_SERVER, RedisServer

if TYPE_CHECKING:
    import redis


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


# -- a real redis-server (see _redis.py) ----------------------------------------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One ``redis-server`` on a free loopback port for the whole session (skips without one)."""
    with _redis_or_skip(tmp_path_factory.mktemp("redis-server")) as server:
        yield server


@pytest.fixture
def own_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A ``redis-server`` of the test's own, to stop halfway through (skips without one)."""
    with _redis_or_skip(tmp_path) as server:
        yield server


@contextlib.contextmanager
def _redis_or_skip(directory: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip(NO_REDIS_SERVER)
    try:
        import redis  # noqa: F401
    except ImportError:
        pytest.skip(NO_REDIS_PACKAGE)
    with RedisServer(directory) as server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0``: the session's server. Not flushed: see ``redis_client``."""
    return redis_server.url


@pytest.fixture
def new_redis_client(redis_url: str) -> Iterator[Callable[[], redis.Redis]]:
    """Make clients of the session's server, on a database flushed for this test.

    Each call is a new client with its own connection pool (another "host"); all are closed at
    teardown.
    """
    import redis

    clients: list[redis.Redis] = []

    def connect() -> redis.Redis:
        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=10)
        clients.append(client)
        return client

    connect().flushdb()
    yield connect
    for client in clients:
        client.close()


@pytest.fixture
def redis_client(new_redis_client: Callable[[], redis.Redis]) -> redis.Redis:
    """A client of the session's redis-server, on a database flushed for this test."""
    return new_redis_client()
