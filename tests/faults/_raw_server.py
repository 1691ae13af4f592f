"""A scripted HTTP/1.1 server on raw sockets, for faults no well-behaved server can produce.

Each request on the *target* paths gets the next :data:`Step` of the script (the last one
repeats): answer properly, reset the connection before, during or after the headers, close it
without a word, never answer, answer slowly. Requests to :data:`HEALTH_PATH` always get a 200 and
are counted apart, so a test can prove a client is still usable after a fault.

Threads, not asyncio: the server must keep running while the code under test blocks the main
thread (sync clients) or runs its own event loop (asyncio and trio clients). Everything the server
opens it closes on :meth:`RawServer.stop`, and each connection's socket as soon as the client
closes its end, so the fd-leak checks see only what the client holds.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType

__all__ = [
    "Conn",
    "HEALTH_PATH",
    "RID",
    "RawServer",
    "Seen",
    "Step",
    "close",
    "delayed",
    "ok",
    "reply",
    "reset",
    "reset_in_headers",
    "reset_mid_body",
    "silent",
    "slow_body",
    "slow_headers",
]

#: Always answered 200, never scripted, counted in ``RawServer.health``.
HEALTH_PATH = "/v1/api-key"
#: The deferred request id the server hands out on a deferred submission.
RID = "0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"
COMPLETION = {"id": "chatcmpl-raw", "object": "chat.completion", "choices": []}

#: How often blocked server threads look up to notice a stop or a client that went away.
_TICK = 0.01


@dataclass(frozen=True)
class Seen:
    """One scripted request as the server read it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    #: Which accepted connection it came on (1-based), to tell reuse from reconnects.
    connection: int


class Conn:
    """One accepted connection, as a step sees it."""

    def __init__(self, sock: socket.socket, number: int, stop: threading.Event) -> None:
        self.sock = sock
        self.number = number
        self.stop = stop
        self._buffer = b""

    # -- reading ------------------------------------------------------------------------------

    def _fill(self) -> bool:
        """Read more into the buffer; False when the client closed or the server is stopping."""
        while not self.stop.is_set():
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return False
            if not chunk:
                return False
            self._buffer += chunk
            return True
        return False

    def _take_until(self, marker: bytes) -> bytes | None:
        while marker not in self._buffer:
            if not self._fill():
                return None
        head, _, self._buffer = self._buffer.partition(marker)
        return head

    def _take(self, size: int) -> bytes | None:
        while len(self._buffer) < size:
            if not self._fill():
                return None
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def read_request(self) -> tuple[str, str, dict[str, str], bytes] | None:
        """The next request (method, path, headers, body), or None when the connection ended."""
        head = self._take_until(b"\r\n\r\n")
        if head is None:
            return None
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body: bytes | None = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        elif headers.get("content-length"):
            body = self._take(int(headers["content-length"]))
        if body is None:
            return None
        return method, path, headers, body

    def _read_chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            size_line = self._take_until(b"\r\n")
            if size_line is None:
                return None
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return b"".join(parts) if self._take_until(b"\r\n") is not None else None
            data = self._take(size + 2)
            if data is None:
                return None
            parts.append(data[:size])

    def wait_for_close(self, seconds: float | None = None) -> bool:
        """Wait (at most ``seconds``) without answering; True if the client hung up meanwhile."""
        remaining = seconds
        while remaining is None or remaining > 0:
            if self.stop.is_set():
                return False
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if remaining is not None:
                    remaining -= _TICK
                continue
            except OSError:
                return True
            if not chunk:
                return True
            self._buffer += chunk
        return False

    # -- writing ------------------------------------------------------------------------------

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
        except OSError:
            return False
        return True

    def reset(self) -> None:
        """Abort the connection: an RST, not a FIN (SO_LINGER with a zero timeout)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """An orderly close (FIN): "server disconnected without sending a response"."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


#: A step answers one request; it returns True to keep the connection open for the next one.
Step = Callable[[Conn, Seen], bool]


def _default_body(request: Seen) -> bytes:
    """What a healthy xAI API answers on this route."""
    if request.method == "POST" and request.path.endswith("/chat/completions"):
        try:
            payload = json.loads(request.body or b"{}")
        except ValueError:
            payload = {}
        if isinstance(payload, dict) and payload.get("deferred") is True:
            return json.dumps({"request_id": RID}).encode()
        return json.dumps(COMPLETION).encode()
    if "/chat/deferred-completion/" in request.path:
        return json.dumps(COMPLETION).encode()
    return json.dumps({"object": "list", "data": []}).encode()


def _head(status: int, headers: Sequence[tuple[str, str | bytes]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Status".encode()]
    for name, value in headers:
        raw = value if isinstance(value, bytes) else value.encode("latin-1")
        lines.append(name.encode("latin-1") + b": " + raw)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def reply(
    status: int = 200,
    body: bytes | None = None,
    headers: Sequence[tuple[str, str | bytes]] = (),
    *,
    content_type: str = "application/json",
) -> Step:
    """A complete, well-formed answer (``body=None``: the route's healthy body)."""

    def step(conn: Conn, request: Seen) -> bool:
        content = _default_body(request) if body is None else body
        head = [
            ("content-type", content_type),
            ("content-length", str(len(content))),
            *headers,
        ]
        return conn.send(_head(status, head) + content)

    return step


def ok(conn: Conn, request: Seen) -> bool:
    """The route's healthy 200."""
    return reply()(conn, request)


def reset(conn: Conn, request: Seen) -> bool:
    """Connection reset before any byte of the answer."""
    conn.reset()
    return False


def close(conn: Conn, request: Seen) -> bool:
    """Orderly close before any byte of the answer (the emulator's ``drop_before``)."""
    conn.close()
    return False


def reset_in_headers(conn: Conn, request: Seen) -> bool:
    """Half a status line and header block, then a reset."""
    conn.send(b"HTTP/1.1 200 OK\r\ncontent-type: appl")
    conn.reset()
    return False


def reset_mid_body(conn: Conn, request: Seen) -> bool:
    """Complete 200 headers, a tenth of the promised body, then a reset."""
    body = _default_body(request)
    head = [("content-type", "application/json"), ("content-length", str(len(body)))]
    conn.send(_head(200, head) + body[: len(body) // 10])
    conn.reset()
    return False


def silent(conn: Conn, request: Seen) -> bool:
    """Read the request and never answer, until the client hangs up or the server stops."""
    conn.wait_for_close()
    return False


def delayed(seconds: float, then: Step) -> Step:
    """Say nothing for ``seconds`` (unless the client hangs up first), then play ``then``."""

    def step(conn: Conn, request: Seen) -> bool:
        if conn.wait_for_close(seconds):
            return False
        return then(conn, request)

    return step


def slow_headers(seconds: float) -> Step:
    """Say nothing for ``seconds`` (unless the client hangs up first), then answer properly."""
    return delayed(seconds, ok)


def slow_body(seconds: float) -> Step:
    """Send the headers and half the body, then nothing for ``seconds``, then the rest."""

    def step(conn: Conn, request: Seen) -> bool:
        body = _default_body(request)
        head = [("content-type", "application/json"), ("content-length", str(len(body)))]
        half = len(body) // 2
        if not conn.send(_head(200, head) + body[:half]) or conn.wait_for_close(seconds):
            return False
        return conn.send(body[half:])

    return step


@dataclass
class RawServer:
    """The scripted server on a free port of 127.0.0.1; a context manager.

    ``seen`` lists the scripted requests, ``connections`` counts accepted connections (health
    checks included), ``health`` counts health checks.
    """

    script: Sequence[Step] = (ok,)
    seen: list[Seen] = field(default_factory=list)
    connections: int = 0
    health: int = 0

    def __post_init__(self) -> None:
        if not self.script:
            raise ValueError("a script needs at least one step")
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        #: Connections being served, to wake their threads on stop.
        self._live: set[socket.socket] = set()
        self._acceptor = threading.Thread(target=self._accept, name="raw-server", daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> int:
        """Scripted requests read so far."""
        return len(self.seen)

    @property
    def request_connections(self) -> int:
        """Distinct connections that carried scripted requests."""
        return len({s.connection for s in self.seen})

    def start(self) -> RawServer:
        self._acceptor.start()
        return self

    def stop(self) -> None:
        """Stop at once: blocked threads are woken by shutting their sockets down."""
        self._stop.set()
        with contextlib.suppress(OSError):  # wakes the blocked accept() (EINVAL on Linux)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._acceptor.join(5)
        self._listener.close()
        with self._lock:
            threads = list(self._threads)
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):  # already closed by its thread
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(5)
        alive = [t.name for t in threads if t.is_alive()]
        if alive:
            raise RuntimeError(f"raw server threads did not stop: {alive}")

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving ------------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:  # shut down by stop()
                return
            with self._lock:
                self._live.add(sock)
                self.connections += 1
                number = self.connections
                thread = threading.Thread(
                    target=self._serve, args=(sock, number), name=f"raw-conn-{number}", daemon=True
                )
                self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.settimeout(_TICK)
        conn = Conn(sock, number, self._stop)
        try:
            while True:
                parsed = conn.read_request()
                if parsed is None:
                    break
                method, path, headers, body = parsed
                request = Seen(method, path, headers, body, number)
                if path == HEALTH_PATH:
                    with self._lock:
                        self.health += 1
                    step: Step = ok
                else:
                    with self._lock:
                        self.seen.append(request)
                        index = min(len(self.seen), len(self.script)) - 1
                    step = self.script[index]
                if not step(conn, request):
                    break
        except OSError:
            pass
        finally:
            with self._lock:
                self._live.discard(sock)
            sock.close()  # a no-op when a step already closed or reset it
