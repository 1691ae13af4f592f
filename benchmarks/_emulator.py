"""The emulator in a spawned child process, so a benchmark measures the client alone."""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

import httpx

from xretry.emulator import EmulatorServer, Scenario

__all__ = ["ChildEmulator"]


def _serve(scenario: dict[str, Any], conn: Connection) -> None:
    """Child process: serve ``Scenario(**scenario)`` on loopback until told to stop."""
    with EmulatorServer(Scenario(**scenario)) as server:
        conn.send(server.url)
        conn.recv()


class ChildEmulator:
    """An :class:`EmulatorServer` in a spawned child process; stats read over HTTP."""

    def __init__(self, scenario: dict[str, Any], *, name: str = "emulator") -> None:
        self.scenario = scenario
        self._ctx = multiprocessing.get_context("spawn")
        self._conn, child = self._ctx.Pipe()
        self._process = self._ctx.Process(
            target=_serve, args=(scenario, child), name=name, daemon=True
        )
        self.url = ""

    def __enter__(self) -> ChildEmulator:
        self._process.start()
        if not self._conn.poll(60):
            self._process.kill()
            raise RuntimeError("the emulator child process did not start within 60 s")
        self.url = str(self._conn.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(OSError):
            self._conn.send("stop")
        self._process.join(15)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def stats(self) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/_stats", trust_env=False, timeout=30)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats
