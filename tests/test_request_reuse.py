"""The caller's request is never changed: a request sent again starts from the caller's timeouts.

With a deadline, each attempt is sent with extensions of its own (the caller's httpx timeouts
capped at what is left of the deadline) and the caller's are put back, however the call ends.
Whatever sends one request object more than once sees the caller's values every time: the caller
(``client.send(request)`` twice), an auth flow (digest auth resends the same request after the
401 challenge) and a redirect (httpx copies the request's extensions into the next request). Until
the transport stopped mutating requests, each of these started with what the first call had left
(a spurious ``ReadTimeout`` on a real server).

Each test: a first attempt that takes 1.5 s of a 10 s deadline and gets a 503, so the retry is
capped at 8 s (``clock`` is injected: nothing sleeps). What follows must see 10 s again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import anyio
import pytest

import xretry
from xretry import RetryPolicy

from .conftest import FakeClock, Flavour

URL = "https://api.x.ai/v1/models"
POLICY = RetryPolicy(jitter=0.0, initial_delay=0.5, deadline=10.0)
FULL = {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}
CHALLENGE = 'Digest realm="xai", nonce="abc", qop="auth", algorithm="MD5"'


class Server:
    """A mock server recording the timeouts each request arrived with; ``answer(n, request)``
    gives the n-th response (1-based); every first attempt of a call takes 1.5 s and gets a 503."""

    def __init__(self, flavour: Flavour, clock: FakeClock, answer: Callable[[int, Any], Any]):
        self.flavour = flavour
        self.clock = clock
        self.answer = answer
        self.seen: list[dict[str, float]] = []

    def __call__(self, request: Any) -> Any:
        self.seen.append(dict(request.extensions["timeout"]))
        return self.answer(len(self.seen), request)

    def slow_503(self) -> Any:
        self.clock.now += 1.5
        return self.flavour.http.Response(503)


def _transports(flavour: Flavour, server: Server, clock: FakeClock) -> tuple[Any, Any]:
    mock = flavour.mock(server)
    sync = flavour.RetryTransport(mock, policy=POLICY, sleep=clock.sleep, clock=clock)
    asynchronous = flavour.AsyncRetryTransport(mock, policy=POLICY, sleep=clock.asleep, clock=clock)
    return sync, asynchronous


def _resend_script(flavour: Flavour, server: Server) -> Callable[[int, Any], Any]:
    def answer(n: int, request: Any) -> Any:
        return server.slow_503() if n % 2 == 1 else flavour.http.Response(200)

    return answer


def test_send_twice_sync(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _resend_script(flavour, server)
    transport, _ = _transports(flavour, server, clock)
    with flavour.http.Client(transport=transport, timeout=30.0) as client:
        request = client.build_request("GET", URL)
        before = dict(request.extensions)
        assert client.send(request).status_code == 200
        assert request.extensions == before  # nothing of the first call stays on the request
        assert client.send(request).status_code == 200
    assert server.seen[0] == server.seen[2] == FULL
    assert server.seen[1]["read"] == server.seen[3]["read"] == pytest.approx(8.0)


@pytest.mark.anyio
async def test_send_twice_async(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _resend_script(flavour, server)
    _, transport = _transports(flavour, server, clock)
    async with flavour.http.AsyncClient(transport=transport, timeout=30.0) as client:
        request = client.build_request("GET", URL)
        before = dict(request.extensions)
        assert (await client.send(request)).status_code == 200
        assert request.extensions == before
        assert (await client.send(request)).status_code == 200
    assert server.seen[0] == server.seen[2] == FULL
    assert server.seen[1]["read"] == server.seen[3]["read"] == pytest.approx(8.0)


def _digest_script(flavour: Flavour, server: Server) -> Callable[[int, Any], Any]:
    """503 (slow), 401 with a digest challenge, then 200 for the authenticated resend."""

    def answer(n: int, request: Any) -> Any:
        if n == 1:
            return server.slow_503()
        if "authorization" not in request.headers:
            return flavour.http.Response(401, headers={"www-authenticate": CHALLENGE})
        return flavour.http.Response(200)

    return answer


def _check_digest(server: Server, requests: list[Any]) -> None:
    assert len(server.seen) == 3
    assert server.seen[1]["read"] == pytest.approx(8.0)  # the retry: what the deadline left
    assert server.seen[2] == FULL  # the auth flow's resend of the same request: a new call
    assert requests[0] is requests[1]  # it is the same request object


def test_a_digest_auth_resend_starts_afresh_sync(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _digest_script(flavour, server)
    sent: list[Any] = []
    hooks = {"request": [sent.append]}
    transport, _ = _transports(flavour, server, clock)
    auth = flavour.http.DigestAuth("user", "secret-password")
    with flavour.http.Client(transport=transport, timeout=30.0, event_hooks=hooks) as client:
        assert client.get(URL, auth=auth).status_code == 200
    _check_digest(server, sent)


@pytest.mark.anyio
async def test_a_digest_auth_resend_starts_afresh_async(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _digest_script(flavour, server)
    sent: list[Any] = []

    async def record(request: Any) -> None:
        sent.append(request)

    _, transport = _transports(flavour, server, clock)
    auth = flavour.http.DigestAuth("user", "secret-password")
    async with flavour.http.AsyncClient(
        transport=transport, timeout=30.0, event_hooks={"request": [record]}
    ) as client:
        assert (await client.get(URL, auth=auth)).status_code == 200
    _check_digest(server, sent)


def _redirect_script(flavour: Flavour, server: Server) -> Callable[[int, Any], Any]:
    def answer(n: int, request: Any) -> Any:
        if n == 1:
            return server.slow_503()
        if request.url.path == "/v1/models":
            return flavour.http.Response(302, headers={"location": "/v1/models-moved"})
        return flavour.http.Response(200)

    return answer


def test_a_redirect_starts_afresh_sync(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _redirect_script(flavour, server)
    transport, _ = _transports(flavour, server, clock)
    with flavour.http.Client(transport=transport, timeout=30.0, follow_redirects=True) as client:
        response = client.get(URL)
    assert response.status_code == 200
    assert server.seen[1]["read"] == pytest.approx(8.0)
    assert server.seen[2] == FULL  # the redirect copied the caller's extensions, not the retry's
    assert response.history[0].request.extensions["timeout"]["read"] == 30.0


@pytest.mark.anyio
async def test_a_redirect_starts_afresh_async(flavour: Flavour, clock: FakeClock) -> None:
    server = Server(flavour, clock, lambda n, r: None)
    server.answer = _redirect_script(flavour, server)
    _, transport = _transports(flavour, server, clock)
    async with flavour.http.AsyncClient(
        transport=transport, timeout=30.0, follow_redirects=True
    ) as client:
        response = await client.get(URL)
    assert response.status_code == 200
    assert server.seen[1]["read"] == pytest.approx(8.0)
    assert server.seen[2] == FULL
    assert response.history[0].request.extensions["timeout"]["read"] == 30.0


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_refused_call_leaves_the_request_as_it_was(flavour: Flavour, is_async: bool) -> None:
    """A fail-fast budget refuses the call after the first attempt's timeouts were capped: the
    caller's extensions are put back on that path too."""
    budget = xretry.RetryBudget(max_tokens=1, token_ratio=0.1, fail_fast=True)
    budget.on_failure()
    budget.on_failure()
    assert budget.admit()  # exhausted: one probe goes through, the next call is refused
    gate = xretry.Gate(budget=budget)
    sent: list[Any] = []

    def answer(request: Any) -> Any:
        sent.append(request)
        return flavour.http.Response(200)

    mock = flavour.mock(answer)
    cls = flavour.AsyncRetryTransport if is_async else flavour.RetryTransport
    transport = cls(mock, policy=POLICY, gate=gate)
    request = flavour.http.Request("GET", URL, extensions={"timeout": {"read": 30.0}})
    before = dict(request.extensions)

    async def send_async() -> Any:
        return await transport.handle_async_request(request)

    send = functools.partial(anyio.run, send_async) if is_async else transport.handle_request
    with pytest.raises(xretry.RetryBudgetExhaustedError):
        send() if is_async else send(request)
    assert sent == []
    assert request.extensions == before
