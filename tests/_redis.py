"""A real ``redis-server`` for the tests: started on a free loopback port, killed at the end.

The fixtures in ``conftest.py`` build on :class:`RedisServer`: ``redis_url`` (one server for the
session) and ``redis_client`` (a client on a flushed database, per test). Nothing here imports the
``redis`` package, so a machine without it (or without the binary) skips the Redis tests instead
of failing to collect the suite.

The server runs with persistence off (``--save "" --appendonly no``) in a temporary directory: it
is a fixture, not a store anyone relies on.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

__all__ = ["NO_REDIS_PACKAGE", "NO_REDIS_SERVER", "RedisServer"]

#: Skip reasons, worded as what to do about them.
NO_REDIS_SERVER = (
    "redis-server not found on PATH; install it (apt-get install redis-server, or brew install "
    "redis) to run the Redis tests"
)
NO_REDIS_PACKAGE = (
    "the redis package is not installed; pip install 'redis>=5' (it is in the dev group) to run "
    "the Redis tests"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers_ping(port: int) -> bool:
    """One PING in RESP over a raw socket: no client library needed to know the server is up."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on ``127.0.0.1:<free port>``, in the foreground of a child process.

    Example::

        with RedisServer(tmp_dir) as server:
            client = redis.Redis.from_url(server.url)

    ``start`` waits until the server answers PING (at most ``timeout`` seconds); a port taken
    between picking it and binding it is retried on another one.
    """

    def __init__(self, directory: Path, *, executable: str | None = None) -> None:
        found = executable or shutil.which("redis-server")
        if found is None:
            raise FileNotFoundError(NO_REDIS_SERVER)
        self.executable = found
        self.directory = directory
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.directory / "redis-server.log"

    def start(self, timeout: float = 10.0, attempts: int = 3) -> RedisServer:
        for _ in range(attempts):
            if self._start_once(_free_port(), timeout):
                return self
        raise RuntimeError(
            f"redis-server did not answer PING on 127.0.0.1 within {timeout:g}s "
            f"({attempts} ports tried); its log:\n{self._log_text()}"
        )

    def _start_once(self, port: int, timeout: float) -> bool:
        argv = [
            self.executable,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(self.directory),
            "--logfile",
            str(self.log),
        ]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:  # exited: most likely the port was taken meanwhile
                return False
            if _answers_ping(port):
                self._process, self.port = process, port
                return True
            time.sleep(0.01)  # waiting for the server to start: the one sleep the tests allow
        _end(process)
        return False

    def _log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self._process is not None:
            _end(self._process)
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _end(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
