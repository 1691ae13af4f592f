"""Integration: the transports over real sockets on 127.0.0.1, with the default inner transports.

A tiny threaded HTTP server plays a script per test (429s with hints, 503s, a dropped connection, a
silent server). These tests check what mocks cannot: real connection handling, connections
released after discarded responses, timeouts capped by the deadline, refused connections.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import xretry
from xretry.testing import no_wait

from .conftest import Flavour

Step = Callable[[BaseHTTPRequestHandler], None]


def reply(status: int, body: bytes = b"{}", **headers: str) -> Step:
    def step(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("content-length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name.replace("_", "-"), value)
        handler.end_headers()
        handler.wfile.write(body)

    return step


def drop(handler: BaseHTTPRequestHandler) -> None:
    """Close the connection without answering (the server may have done the work)."""
    handler.close_connection = True
    handler.connection.shutdown(socket.SHUT_RDWR)


class Server:
    def __init__(self, script: list[Step]) -> None:
        self.script = script
        self.seen: list[tuple[str, str, bytes]] = []
        self.hang = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                server.seen.append((self.command, self.path, body))
                index = min(len(server.seen), len(server.script)) - 1
                server.script[index](self)

            do_GET = do_POST = _serve

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.hang.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def serve() -> Iterator[Callable[[list[Step]], Server]]:
    servers: list[Server] = []

    def start(script: list[Step]) -> Server:
        server = Server(script).__enter__()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.__exit__()


COMPLETION = b'{"object": "chat.completion", "choices": []}'


def test_429s_then_success_over_real_sockets(
    flavour: Flavour, serve: Callable[[list[Step]], Server]
) -> None:
    server = serve([reply(429, retry_after_ms="10"), reply(503), reply(200, COMPLETION)])
    with (
        no_wait() as schedule,
        flavour.http.Client(base_url=server.url, transport=flavour.RetryTransport()) as client,
    ):
        response = client.post("/chat/completions", json={"model": "grok-4"})
    assert response.status_code == 200
    assert response.json() == {"object": "chat.completion", "choices": []}
    assert [s[:2] for s in server.seen] == [("POST", "/v1/chat/completions")] * 3
    assert {s[2] for s in server.seen} == {b'{"model":"grok-4"}'}  # replayed identically
    # the gate's shared cooldown, on the real clock: 10 ms less the few µs since the 429
    assert schedule.delays[0] == pytest.approx(0.01, abs=0.002)


@pytest.mark.anyio
async def test_async_over_real_sockets(
    flavour: Flavour, serve: Callable[[list[Step]], Server]
) -> None:
    server = serve([reply(502), reply(429, retry_after="0"), reply(200, COMPLETION)])
    with no_wait():
        async with flavour.http.AsyncClient(
            base_url=server.url, transport=flavour.AsyncRetryTransport()
        ) as client:
            response = await client.get("/models")
    assert response.status_code == 200
    assert len(server.seen) == 3


def test_discarded_responses_release_their_connection(
    flavour: Flavour, serve: Callable[[list[Step]], Server]
) -> None:
    """With a pool of one connection, a leaked response would make the retry wait for the pool."""
    server = serve([reply(503, b"x" * 10_000), reply(503), reply(200)])
    inner = flavour.http.HTTPTransport(limits=flavour.http.Limits(max_connections=1))
    with (
        no_wait(),
        flavour.http.Client(
            base_url=server.url,
            transport=flavour.RetryTransport(inner),
            timeout=flavour.http.Timeout(5.0, pool=1.0),
        ) as client,
    ):
        assert client.get("/models").status_code == 200
    assert len(server.seen) == 3


def test_dropped_connection_retried_for_get_not_for_post(
    flavour: Flavour, serve: Callable[[list[Step]], Server]
) -> None:
    server = serve([drop, reply(200)])
    with (
        no_wait(),
        flavour.http.Client(base_url=server.url, transport=flavour.RetryTransport()) as client,
    ):
        assert client.get("/models").status_code == 200
    assert len(server.seen) == 2

    server = serve([drop, reply(200)])
    with (
        no_wait(),
        flavour.http.Client(base_url=server.url, transport=flavour.RetryTransport()) as client,
        pytest.raises(flavour.http.RemoteProtocolError),
    ):
        client.post("/chat/completions", json={"model": "grok-4"})
    assert len(server.seen) == 1  # a billed POST that may have been processed is not resent


def test_connection_refused_is_retried_then_reraised(flavour: Flavour) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    policy = xretry.RetryPolicy(max_attempts=3)
    with (
        no_wait() as schedule,
        flavour.http.Client(transport=flavour.RetryTransport(policy=policy)) as client,
        pytest.raises(flavour.http.ConnectError) as raised,
    ):
        client.post(f"http://127.0.0.1:{port}/v1/chat/completions", json={})
    assert len(schedule.delays) == 2
    assert "3 attempts" in "\n".join(raised.value.__notes__)


def test_silent_server_cannot_hold_a_call_past_its_deadline(
    flavour: Flavour, serve: Callable[[list[Step]], Server]
) -> None:
    """The client's own timeout is 60 s; the 0.3 s deadline caps every attempt's timeouts."""

    def silent(handler: BaseHTTPRequestHandler) -> None:
        server.hang.wait(30)

    server = serve([silent])
    policy = xretry.RetryPolicy(deadline=0.3)
    with (
        flavour.http.Client(
            base_url=server.url, transport=flavour.RetryTransport(policy=policy), timeout=60.0
        ) as client,
        pytest.raises(flavour.http.ReadTimeout),
    ):
        client.get("/models")
    assert len(server.seen) == 1
