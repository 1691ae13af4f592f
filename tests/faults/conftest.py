"""Fixtures of the fault matrix: scripted raw servers, one shared emulator, a port nobody uses."""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Iterator, Sequence

import pytest

from xretry.emulator import EmulatorApp, EmulatorServer

from ._emulator import SwappableApp
from ._harness import KEY, MODES, Entry, leaked_fds, open_fds, run
from ._raw_server import RawServer, Step, ok

Serve = Callable[[Sequence[Step]], RawServer]
Emulator = Callable[[EmulatorApp], str]


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_key_in_logs() -> Iterator[None]:
    """The canary: the API key every cell sends appears in no log line of xretry at any level."""
    logger = logging.getLogger("xretry")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    leaked = [line for line in handler.lines if KEY in line or KEY[-12:] in line]
    assert not leaked, f"the API key is in the log: {leaked[:3]}"


@pytest.fixture
def no_fd_leak() -> Iterator[None]:
    """Fail the test if it leaves file descriptors open (checked after everything set up after
    this fixture, such as the servers of ``serve``, has been torn down)."""
    before = open_fds()
    yield
    leaked = leaked_fds(before)
    assert not leaked, f"file descriptors left open: {leaked}"


@pytest.fixture
def serve(no_fd_leak: None) -> Iterator[Serve]:
    """Start a :class:`RawServer` playing ``script``; every one started is stopped afterwards.

    Requests ``no_fd_leak``, so that whatever a test does against these servers, it leaves no
    descriptor open."""
    servers: list[RawServer] = []

    def start(script: Sequence[Step]) -> RawServer:
        server = RawServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def refused_url() -> str:
    """A base URL on a port that was free a moment ago: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture(scope="session")
def emulator_server() -> Iterator[EmulatorServer]:
    """One uvicorn for the whole session (starting one costs ~0.2 s); each test installs its own
    :class:`EmulatorApp` with the ``emulator`` fixture."""
    with EmulatorServer(app=SwappableApp()) as server:
        yield server


@pytest.fixture
def emulator(emulator_server: EmulatorServer, no_fd_leak: None) -> Iterator[Emulator]:
    """``emulator(app)`` serves ``app`` on the shared server and returns the base URL."""
    swappable = emulator_server.app
    assert isinstance(swappable, SwappableApp)

    def install(app: EmulatorApp) -> str:
        swappable.current = app
        return emulator_server.base_url

    yield install
    swappable.current = EmulatorApp()


@pytest.fixture(scope="session", autouse=True)
def _warm_up() -> None:
    """One healthy call per library and mode before any cell: whatever the libraries open lazily
    once per process (and keep) is open before the first fd snapshot, not counted as a leak."""
    with RawServer([ok]) as server:
        for lib in ("httpx", "httpx2"):
            for mode in MODES:
                outcome = run(Entry("transport", lib, mode), server.base_url)
                assert outcome.error is None, outcome
