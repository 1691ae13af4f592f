"""Socket-level faults against every entry point, over real loopback sockets.

Connection refused; a reset before, during and after the response headers; an orderly close
without an answer; a server that accepts and never answers; headers and bodies slower than the
client's read timeout, and slow ones within it. Each fault is played on every scripted request
(an outage) or on the first one or two only (a burst that recovers).

What each entry point should make of it follows one rule (docs/transport.md, "POST and read
timeouts"): a failure before the request was sent is retried for every method; a failure after
it may have reached the server only for idempotent methods, so not for a billed POST (a plain
POST, or a deferred submission). The transport cannot retry a failure while the client reads a
200's body: it has handed the response over by then (docs/transport.md, "Limits"). The pollers
read their bodies inside their own loop, so they can.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import xretry

from ._harness import (
    OUTAGE_POLL,
    POLICY,
    Call,
    Entry,
    assert_cell,
    attempts_in_note,
    budget,
    entries,
    or_doomed,
    run,
)
from ._raw_server import (
    RawServer,
    Step,
    close,
    ok,
    reset,
    reset_in_headers,
    reset_mid_body,
    silent,
    slow_body,
    slow_headers,
)
from .conftest import Serve

#: About 25 s of cells over loopback sockets: `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

ALL = entries(
    "transport", "decorator", "submit", "wait", "as_completed", "batch", methods=("GET", "POST")
)

#: The client's read timeout against servers that are too slow: short, the server waits 5 s.
SHORT = 0.04
#: The same in a burst, where the answer that follows must come within it.
BURST_TIMEOUT = 0.15
#: The pollers poll an outage until their poll timeout: faults that strike at once need little.
QUICK_OUTAGE_POLL = OUTAGE_POLL.replace(timeout=0.05)


@dataclass(frozen=True)
class Fault:
    name: str
    step: Step
    #: The httpx/httpx2 exception it surfaces as.
    error: str
    #: It strikes while the body of a 200 is being read (after the headers arrived).
    in_body: bool = False
    timeout: float = 5.0

    def __str__(self) -> str:
        return self.name


FAULTS = [
    Fault("reset-before-headers", reset, "ReadError"),
    Fault("close-before-headers", close, "RemoteProtocolError"),
    Fault("reset-during-headers", reset_in_headers, "ReadError"),
    Fault("reset-mid-body", reset_mid_body, "ReadError", in_body=True),
    # Headers slower than the read timeout look the same to the client.
    Fault("silent", silent, "ReadTimeout", timeout=SHORT),
    Fault("slow-body", slow_body(5.0), "ReadTimeout", in_body=True, timeout=SHORT),
]


def retried(entry: Entry, fault: Fault) -> bool:
    """Whether ``entry`` may try again after ``fault`` (the server may have acted)."""
    if entry.kind in ("submit", "batch") or (
        entry.kind in ("transport", "decorator") and entry.method == "POST"
    ):
        return False  # a billed POST is not resent once it may have reached the server
    return not (entry.kind == "transport" and fault.in_body)


def assert_no_reuse_of_dead_connections(server: RawServer) -> None:
    """A connection that failed is never used again: one connection per scripted request."""
    assert server.request_connections == server.requests


@pytest.mark.parametrize("fault", FAULTS, ids=str)
@pytest.mark.parametrize("entry", ALL)
def test_outage(entry: Entry, fault: Fault, serve: Serve) -> None:
    """Every request meets the fault: a typed httpx error (or, from ``as_completed``, a
    DeferredTimeoutError), after one request or the policy's worth of them."""
    server = serve([fault.step])
    poll = OUTAGE_POLL if fault.timeout == SHORT else QUICK_OUTAGE_POLL
    outcome = run(entry, server.base_url, Call(poll=poll, timeout=fault.timeout))
    error = getattr(entry.http, fault.error)
    limit = budget(entry, poll)
    if entry.kind == "as_completed":
        # Each poll's retries are spent, the job is rescheduled until its poll timeout.
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        assert server.requests >= 2
    elif not retried(entry, fault):
        assert_cell(outcome, error, budget=limit)
        assert server.requests == 1
        assert attempts_in_note(outcome.error) == 0
    elif entry.kind == "wait":
        # A paid-for job: its poll is retried until the poll timeout, not max_attempts.
        assert_cell(outcome, or_doomed(entry, error), budget=limit)
        assert server.requests >= 2
        # A doomed last attempt may time out before its request reaches the server.
        doomed = type(outcome.error) is not error
        assert server.requests <= attempts_in_note(outcome.error) <= server.requests + doomed
    else:
        assert_cell(outcome, error, budget=limit)
        assert server.requests == POLICY.max_attempts
        assert attempts_in_note(outcome.error) == POLICY.max_attempts
    if entry.kind == "decorator":
        assert outcome.calls == server.requests
    assert_no_reuse_of_dead_connections(server)


@pytest.mark.parametrize("fault", FAULTS, ids=str)
@pytest.mark.parametrize("entry", ALL)
def test_burst_that_recovers(entry: Entry, fault: Fault, serve: Serve) -> None:
    """The first requests meet the fault, then one is answered: a retrying entry point gets the
    answer; one that must not resend fails on the first."""
    # A timeout fault strikes once (each costs a read timeout).
    burst = 1 if fault.timeout == SHORT else 2
    server = serve([*[fault.step] * burst, ok])
    # The answer after a timeout must come within the same read timeout: a longer one, so that a
    # loaded machine is no fault. Where nothing is retried, no answer is awaited.
    timeout = 5.0 if burst == 2 else BURST_TIMEOUT if retried(entry, fault) else SHORT
    outcome = run(entry, server.base_url, Call(timeout=timeout))
    if retried(entry, fault):
        assert_cell(outcome, None, budget=budget(entry))
        assert server.requests == burst + 1
    else:
        assert_cell(outcome, getattr(entry.http, fault.error), budget=budget(entry))
        assert server.requests == 1
    assert_no_reuse_of_dead_connections(server)


@pytest.mark.parametrize(
    "step", [slow_headers(0.02), slow_body(0.02)], ids=["slow-headers", "slow-body"]
)
@pytest.mark.parametrize("entry", ALL)
def test_slow_within_the_timeout_is_not_a_fault(entry: Entry, step: Step, serve: Serve) -> None:
    """Slow, but within the read timeout: one answer per request, nothing retried, and the
    connection kept for the next (a batch job: its submission, then its poll)."""
    server = serve([step])
    outcome = run(entry, server.base_url, Call(timeout=2.0))
    assert_cell(outcome, None, budget=budget(entry))
    assert (server.requests, server.request_connections) == (2 if entry.kind == "batch" else 1, 1)


@pytest.mark.parametrize("entry", ALL)
def test_connection_refused(entry: Entry, refused_url: str) -> None:
    """Nothing listens: never sent, so retried for every method; the ConnectError is re-raised
    with a note counting the attempts (``as_completed``: the job times out; a batch job's
    submission is retried until then, and ends in the ConnectError)."""
    outcome = run(entry, refused_url, Call(poll=QUICK_OUTAGE_POLL, health=False))
    limit = budget(entry, QUICK_OUTAGE_POLL)
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        return
    if entry.kind in ("wait", "batch"):  # retried until the poll timeout
        assert_cell(outcome, or_doomed(entry, entry.http.ConnectError), budget=limit)
        assert attempts_in_note(outcome.error) >= POLICY.max_attempts
        return
    assert_cell(outcome, entry.http.ConnectError, budget=limit)
    assert attempts_in_note(outcome.error) == POLICY.max_attempts
    if entry.kind == "decorator":
        assert outcome.calls == POLICY.max_attempts


DEADLINE = 0.1


@pytest.mark.parametrize("entry", entries("transport", "submit", methods=("GET", "POST")))
def test_deadline_caps_a_silent_server(entry: Entry, serve: Serve) -> None:
    """The client waits up to 10 s for an answer; ``RetryPolicy(deadline=0.1)`` caps each
    attempt's timeouts, so a server that never answers cannot hold the call past it."""
    server = serve([silent])
    policy = POLICY.replace(deadline=DEADLINE)
    outcome = run(entry, server.base_url, Call(policy=policy, timeout=10.0))
    assert_cell(outcome, entry.http.ReadTimeout, budget=DEADLINE)
    assert server.requests >= 1
