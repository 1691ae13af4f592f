"""Which request bodies the transports send again, the clear error for a mixed-up transport, and
which bound ends a deferred-completion poll sent through the transport.

A body that cannot be replayed is never resent: its first outcome is returned. For multipart
uploads that depends on the file parts: bytes, text and seekable files replay (httpx and httpx2
seek each file back to 0); a stream that cannot seek (a pipe, a socket, a reader without
``seek``) would be sent empty the second time, and the 200 for that truncated upload returned as
a success. A request of the other library, or a sync transport in an async client (or the
reverse), is a ``TypeError`` naming the class to use. A poll through the transport ends with the
smaller of the policy's deadline and the poll timeout.
"""

from __future__ import annotations

import io
import socket
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from xretry import PollPolicy, RetryPolicy

from .conftest import FLAVOURS, FakeClock, Flavour

URL = "https://api.x.ai/v1/files"
DATA = b'{"custom_id": "1", "body": {}}\n' * 100


class Reader:
    """A file-like object that can only be read (no ``seek``): a socket's or a pipe's reader."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else size
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


def _socket_file(data: bytes) -> Any:
    """A socket's reading end as a file, holding ``data``: ``seekable()`` False, and its
    ``seek`` raises ``io.UnsupportedOperation`` (which httpx ignores, sending what is left)."""
    reading, writing = socket.socketpair()
    with writing:
        writing.sendall(data)
    file = reading.makefile("rb")
    reading.close()  # the file keeps the socket open until it is closed
    return file


#: name -> (a fresh file part, whether it can be sent again)
PARTS: dict[str, tuple[Any, bool]] = {
    "bytes": (lambda: DATA, True),
    "text": (lambda: DATA.decode(), True),
    "bytes-io": (lambda: io.BytesIO(DATA), True),
    "reader-without-seek": (lambda: Reader(DATA), False),
    "socket-file": (lambda: _socket_file(DATA), False),
}


def _send(flavour: Flavour, is_async: bool, part: Any) -> tuple[Any, list[bytes]]:
    """POST ``part`` as a multipart upload to a server answering 503, then 200."""
    bodies: list[bytes] = []
    clock = FakeClock()

    def handler(request: Any) -> Any:
        bodies.append(request.read())
        return flavour.http.Response(503 if len(bodies) == 1 else 200)

    files = {"file": ("batch.jsonl", part)}
    data = {"purpose": "batch"}
    if not is_async:
        transport = flavour.RetryTransport(flavour.mock(handler), sleep=clock.sleep, clock=clock)
        with flavour.http.Client(transport=transport) as client:
            return client.post(URL, files=files, data=data), bodies

    async def main() -> Any:
        transport = flavour.AsyncRetryTransport(
            flavour.mock(handler), sleep=clock.asleep, clock=clock
        )
        async with flavour.http.AsyncClient(transport=transport) as client:
            return await client.post(URL, files=files, data=data)

    return anyio.run(main), bodies


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
@pytest.mark.parametrize("name", list(PARTS))
def test_a_multipart_body_is_resent_only_whole(flavour: Flavour, name: str, is_async: bool) -> None:
    make, replayable = PARTS[name]
    part = make()
    try:
        response, bodies = _send(flavour, is_async, part)
    finally:
        if hasattr(part, "close"):
            part.close()
    assert all(DATA in body for body in bodies)  # never an empty or partial file part
    if replayable:
        assert response.status_code == 200
        assert len(bodies) == 2
        assert bodies[0] == bodies[1]
    else:
        assert response.status_code == 503  # the first outcome, not a retry sent empty
        assert len(bodies) == 1
        assert "one-shot" in response.extensions["xretry"].attempts[-1].reason


def _chunks() -> Iterator[bytes]:
    yield b'{"model": '
    yield b'"grok-4"}'


#: Request bodies of every kind the other library can build.
OTHER_BODIES: dict[str, Any] = {
    "json": lambda: {"json": {"model": "grok-4"}},
    "generator": lambda: {"content": _chunks()},
    "multipart": lambda: {"files": {"file": ("a.jsonl", b"x")}},
    "multipart-stream": lambda: {"files": {"file": ("a.jsonl", Reader(b"x"))}},
}


@pytest.mark.parametrize("body", list(OTHER_BODIES))
def test_a_request_of_the_other_library_is_refused_whatever_its_body(
    flavour: Flavour, body: str
) -> None:
    """Not a bare AssertionError from the inner transport: the class to use, before sending."""
    other = FLAVOURS["httpx2" if flavour.name == "httpx" else "httpx"]
    sent: list[Any] = []

    def answer(request: Any) -> Any:
        sent.append(request)
        return other.http.Response(200)

    transport = other.RetryTransport(other.mock(answer))
    right = "xretry.httpx2.RetryTransport" if flavour.name == "httpx2" else "xretry.RetryTransport"
    with (
        flavour.http.Client(transport=transport) as client,
        pytest.raises(TypeError, match=right.replace(".", r"\.")),
    ):
        client.post(URL, **OTHER_BODIES[body]())
    assert sent == []


def test_a_sync_transport_in_an_async_client_is_refused_with_advice(flavour: Flavour) -> None:
    transport = flavour.RetryTransport(flavour.mock(lambda r: flavour.http.Response(200)))
    prefix = "xretry.httpx2." if flavour.name == "httpx2" else "xretry."

    async def main() -> None:
        async with flavour.http.AsyncClient(transport=transport) as client:
            await client.get(URL)

    with pytest.raises(TypeError, match=rf"{prefix}AsyncRetryTransport in an \w+\.AsyncClient"):
        anyio.run(main)


def test_an_async_transport_in_a_sync_client_is_refused_with_advice(flavour: Flavour) -> None:
    transport = flavour.AsyncRetryTransport(flavour.mock(lambda r: flavour.http.Response(200)))
    prefix = "xretry.httpx2." if flavour.name == "httpx2" else "xretry."
    client = flavour.http.Client(transport=transport)
    with pytest.raises(TypeError, match=rf"{prefix}RetryTransport in a \w+\.Client"):
        client.get(URL)
    with pytest.raises(TypeError, match=rf"{prefix}RetryTransport"):
        client.close()


# -- a deferred-completion GET through the transport: the smaller bound wins ----------------------

POLL_URL = "https://api.x.ai/v1/chat/deferred-completion/0b4e2a1c-9f0e"


@pytest.mark.parametrize(
    ("deadline", "timeout", "ends_by", "says"),
    [
        (0.5, 600.0, 0.5, "deadline=0.5s"),  # the deadline is the smaller: it ends the call
        (30.0, 2.0, 2.0, "poll timeout=2s"),  # the poll timeout is the smaller
        (None, 2.0, 2.0, "poll timeout=2s"),  # no deadline: the poll timeout
    ],
    ids=["deadline-smaller", "poll-timeout-smaller", "no-deadline"],
)
@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_poll_through_the_transport_ends_with_the_smaller_bound(
    flavour: Flavour,
    is_async: bool,
    deadline: float | None,
    timeout: float,
    ends_by: float,
    says: str,
) -> None:
    clock = FakeClock()
    seen: list[dict[str, float]] = []

    def not_ready(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        return flavour.http.Response(202)

    policy = RetryPolicy(deadline=deadline)
    poll = PollPolicy(first_delay=0.0, interval=0.1, max_interval=0.1, jitter=0.0, timeout=timeout)
    options = {"policy": policy, "poll": poll, "clock": clock}
    if is_async:

        async def main() -> Any:
            transport = flavour.AsyncRetryTransport(
                flavour.mock(not_ready), sleep=clock.asleep, **options
            )
            async with flavour.http.AsyncClient(transport=transport, timeout=60.0) as client:
                return await client.get(POLL_URL)

        response = anyio.run(main)
    else:
        transport = flavour.RetryTransport(flavour.mock(not_ready), sleep=clock.sleep, **options)
        with flavour.http.Client(transport=transport, timeout=60.0) as client:
            response = client.get(POLL_URL)
    assert response.status_code == 202  # the last "not ready", returned
    assert clock.now - 1000.0 <= ends_by
    assert clock.now - 1000.0 >= ends_by - 0.2  # it did poll until then
    assert seen[0]["read"] == min(ends_by, 60.0)  # each poll's timeouts capped by that bound
    history = response.extensions["xretry"]
    assert says in str(history.stop_reason)
