"""Serving the emulator over real sockets: uvicorn in a background thread, or in the foreground.

uvicorn is an optional dependency (``pip install 'xretry[emulator]'``); the in-process use through
``httpx.ASGITransport`` needs nothing beyond httpx.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any

from ._app import EmulatorApp
from ._scenario import Scenario

__all__ = ["EmulatorServer", "serve"]


def _uvicorn() -> Any:
    try:
        import uvicorn
    except ImportError as exc:
        raise ImportError(
            "serving the emulator over sockets needs uvicorn: pip install 'xretry[emulator]'"
        ) from exc
    return uvicorn


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on accepted sockets that say they
    # are TCP, and without it every response waits out a 40 ms delayed ACK (Nagle).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(exc.errno, f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _config(app: EmulatorApp, log_level: str) -> Any:
    uvicorn = _uvicorn()
    return uvicorn.Config(
        app,
        http="h11",  # the drop faults close the socket under h11's request cycle
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
        backlog=2048,
    )


class EmulatorServer:
    """The emulator on a loopback port, in a background thread; a context manager.

    Example::

        with EmulatorServer(Scenario(rate_limit=40)) as server:
            client = httpx.Client(base_url=server.base_url, transport=xretry.RetryTransport())
            ...
            print(server.app.stats())

    ``port=0`` picks a free port. Binding anything but loopback must be asked for explicitly.
    """

    def __init__(
        self,
        scenario: Scenario | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        app: EmulatorApp | None = None,
        log_level: str = "warning",
    ) -> None:
        self.app = EmulatorApp(scenario) if app is None else app
        self.host = host
        self._requested_port = port
        self._log_level = log_level
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            raise RuntimeError("the emulator is not running")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: the server root."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The API root to give a client, like ``https://api.x.ai/v1``."""
        return f"{self.url}/v1"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        uvicorn = _uvicorn()
        self._socket = _bind(self.host, self._requested_port)
        self._server = uvicorn.Server(_config(self.app, self._log_level))
        sockets = [self._socket]
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": sockets},
            name="xretry-emulator",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the emulator did not start within {timeout:g}s")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None:
            self._socket.close()
        self._socket = None
        self._thread = None
        self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    scenario: Scenario | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    on_ready: Any = None,
) -> None:
    """Serve the emulator in the foreground until interrupted (what ``xretry emulate`` runs)."""
    uvicorn = _uvicorn()
    sock = _bind(host, port)
    server = uvicorn.Server(_config(EmulatorApp(scenario), log_level))
    if on_ready is not None:
        on_ready(f"http://{host if ':' not in host else f'[{host}]'}:{sock.getsockname()[1]}/v1")
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
