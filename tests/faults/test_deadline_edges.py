"""The deadline's edges over real sockets: what happens when a sleep ends near or past it.

The matrix cannot hit these deterministically (they depend on where a real sleep ends), so they
are pinned here with an injected clock and sleeper (docs/testing.md) in front of a real server:
the clock says how much of the deadline a sleep left, the sockets and the server are real.
"""

from __future__ import annotations

from typing import Any

import pytest

import xretry
from tests.conftest import Flavour
from xretry import PollPolicy, RetryPolicy

from ._harness import AUTH, TLS, attempts_in_note
from ._raw_server import RID, RawServer, delayed, reply
from .conftest import Serve

DOWN = reply(503, b'{"code": "The service is currently unavailable", "error": "down"}')
POLICY = RetryPolicy(max_attempts=5, initial_delay=0.001, max_delay=0.001, jitter=0, deadline=1.0)
POLL = PollPolicy(first_delay=0, interval=0.01, max_interval=0.01, jitter=0, timeout=1.0)


class Clock:
    """A monotonic clock that moves only when xretry sleeps.

    The first sleep ends ``left`` seconds before the deadline (``None``: it overruns the
    deadline by 5 s, as a stalled machine would); every later sleep overruns it.
    """

    def __init__(self, left: float | None = None, deadline: float = 1.0) -> None:
        self.now = 0.0
        self.sleeps = 0
        self._first = None if left is None else deadline - left

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        if self.sleeps == 1 and self._first is not None:
            self.now = max(self.now + seconds, self._first)
        else:
            self.now += seconds + 5.0

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)


def client(flavour: Flavour, server: RawServer, transport: Any = None) -> Any:
    inner = flavour.http.HTTPTransport(verify=TLS, trust_env=False)
    return flavour.http.Client(
        base_url=server.base_url,
        headers=AUTH,
        transport=inner if transport is None else transport(inner),
        trust_env=False,
    )


def async_client(flavour: Flavour, server: RawServer, transport: Any = None) -> Any:
    inner = flavour.http.AsyncHTTPTransport(verify=TLS, trust_env=False)
    return flavour.http.AsyncClient(
        base_url=server.base_url,
        headers=AUTH,
        transport=inner if transport is None else transport(inner),
        trust_env=False,
    )


@pytest.fixture
def down(serve: Serve) -> RawServer:
    return serve([DOWN])


# -- a sleep that overruns the deadline --------------------------------------------------------
# The attempt planned after it is never sent, and never counted: the history, the note and the
# error say one attempt, as the server saw.


def test_transport_counts_only_the_attempts_it_sent(flavour: Flavour, down: RawServer) -> None:
    clock = Clock()

    def transport(inner: Any) -> Any:
        return flavour.RetryTransport(inner, policy=POLICY, sleep=clock.sleep, clock=clock)

    with client(flavour, down, transport) as http:
        response = http.get("/models")
    assert response.status_code == 503
    assert down.requests == 1  # no doomed second attempt
    assert response.extensions["xretry"].attempt_count == down.requests


@pytest.mark.anyio
async def test_async_transport_counts_only_the_attempts_it_sent(
    flavour: Flavour, down: RawServer
) -> None:
    clock = Clock()

    def transport(inner: Any) -> Any:
        return flavour.AsyncRetryTransport(inner, policy=POLICY, sleep=clock.asleep, clock=clock)

    async with async_client(flavour, down, transport) as http:
        response = await http.get("/models")
    assert down.requests == 1
    assert response.extensions["xretry"].attempt_count == down.requests


def test_decorator_counts_only_the_attempts_it_made(flavour: Flavour, down: RawServer) -> None:
    clock = Clock()
    calls = 0
    with client(flavour, down) as http:

        @xretry.retry(policy=POLICY, sleep=clock.sleep, clock=clock)
        def models() -> Any:
            nonlocal calls
            calls += 1
            return xretry.raise_for_status(http.get("/models"))

        with pytest.raises(xretry.ServerError) as caught:
            models()
    assert calls == down.requests == 1
    assert attempts_in_note(caught.value) == calls


def test_wait_counts_only_the_polls_it_sent(flavour: Flavour, down: RawServer) -> None:
    clock = Clock()
    with client(flavour, down) as http:
        poller = xretry.DeferredCompletions(
            http, policy=POLICY, poll=POLL, sleep=clock.sleep, clock=clock
        )
        with pytest.raises(xretry.DeferredTimeoutError) as caught:
            poller.wait(RID)  # the poll timeout, reached through 5xx: the id, the last error
    assert down.requests == 1
    last = caught.value.__cause__
    assert isinstance(last, xretry.ServerError)
    assert last.attempts == down.requests


# -- a sleep that leaves too little of the deadline ----------------------------------------------

# An attempt with too little of the deadline left (30 ms of 1 s here: RetryCall.expired() skips
# attempts under min(250 ms, 5% of the deadline)) would time out on its capped timeouts, and that
# ReadTimeout would replace the last real answer (a 503): an outage reported as a timeout, and
# for a POST as one that may have been billed. It is not sent: the 503 is the answer.


def test_a_doomed_last_attempt_does_not_hide_the_last_answer(
    flavour: Flavour, serve: Serve
) -> None:
    server = serve([DOWN, delayed(0.3, DOWN)])
    clock = Clock(left=0.03)

    def transport(inner: Any) -> Any:
        return flavour.RetryTransport(inner, policy=POLICY, sleep=clock.sleep, clock=clock)

    with client(flavour, server, transport) as http:
        try:
            response = http.post("/chat/completions", json={"model": "grok-4"})
        except flavour.http.ReadTimeout as exc:
            pytest.fail(f"the last answer was a 503, got {exc!r} ({exc.__notes__})")
    assert response.status_code == 503
    assert server.requests == 1  # the doomed attempt is not sent


def test_a_doomed_last_poll_does_not_hide_the_last_answer(flavour: Flavour, serve: Serve) -> None:
    server = serve([DOWN, delayed(0.3, DOWN)])
    clock = Clock(left=0.03)
    with client(flavour, server) as http:
        poller = xretry.DeferredCompletions(
            http, policy=POLICY, poll=POLL, sleep=clock.sleep, clock=clock
        )
        with pytest.raises(xretry.DeferredTimeoutError) as caught:
            poller.wait(RID)
    assert isinstance(caught.value.__cause__, xretry.ServerError)
    assert server.requests == 1


# -- a cooldown at the gate longer than the deadline -----------------------------------------------

# After a 429 with 'retry-after: 30', the gate holds the client's requests for 29 s; the next
# call, with a 1 s deadline, is not made to wait them out: it fails at once, not sent, with
# GateTimeoutError.
LIMITED = reply(429, b'{"code": "c", "error": "slow down"}', [("retry-after", "30")])


class Recorder:
    """A monotonic clock that moves only by what xretry sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def asleep(self, seconds: float) -> None:
        self.now += seconds


def test_transport_gate_wait_is_capped_by_the_deadline(flavour: Flavour, serve: Serve) -> None:
    server = serve([LIMITED, reply(200)])
    clock = Recorder()

    def transport(inner: Any) -> Any:
        return flavour.RetryTransport(inner, policy=POLICY, sleep=clock.sleep, clock=clock)

    with client(flavour, server, transport) as http:
        assert http.get("/models").status_code == 429  # 30 s is past the deadline: reported
        start = clock.now
        with pytest.raises(xretry.GateTimeoutError):
            http.get("/models")  # the next call, within its own deadline
    assert clock.now - start <= POLICY.deadline  # type: ignore[operator]
    assert server.requests == 1


@pytest.mark.anyio
async def test_async_transport_gate_wait_is_capped_by_the_deadline(
    flavour: Flavour, serve: Serve
) -> None:
    server = serve([LIMITED, reply(200)])
    clock = Recorder()

    def transport(inner: Any) -> Any:
        return flavour.AsyncRetryTransport(inner, policy=POLICY, sleep=clock.asleep, clock=clock)

    async with async_client(flavour, server, transport) as http:
        assert (await http.get("/models")).status_code == 429
        start = clock.now
        with pytest.raises(xretry.GateTimeoutError):
            await http.get("/models")
    assert clock.now - start <= POLICY.deadline  # type: ignore[operator]
    assert server.requests == 1


def test_decorator_gate_wait_is_capped_by_the_deadline(flavour: Flavour, serve: Serve) -> None:
    server = serve([LIMITED, reply(200)])
    clock = Recorder()
    with client(flavour, server) as http:

        @xretry.retry(policy=POLICY, sleep=clock.sleep, clock=clock)
        def models() -> Any:
            return xretry.raise_for_status(http.get("/models"))

        with pytest.raises(xretry.RateLimitError):
            models()
        start = clock.now
        with pytest.raises(xretry.GateTimeoutError):
            models()
    assert clock.now - start <= POLICY.deadline  # type: ignore[operator]
    assert server.requests == 1


def test_wait_gate_wait_is_capped_by_the_poll_timeout(flavour: Flavour, serve: Serve) -> None:
    server = serve([LIMITED, reply(200)])
    clock = Recorder()
    with client(flavour, server) as http:
        poller = xretry.DeferredCompletions(
            http, policy=POLICY, poll=POLL, sleep=clock.sleep, clock=clock
        )
        with pytest.raises(xretry.RateLimitError):
            poller.submit(model="grok-4", messages=[{"role": "user", "content": "hi"}])
        start = clock.now
        with pytest.raises(xretry.DeferredTimeoutError) as caught:
            poller.wait(RID)
        assert isinstance(caught.value.__cause__, xretry.GateTimeoutError)
    assert clock.now - start <= POLL.timeout  # type: ignore[operator]
    assert server.requests == 1
