"""The caller's own mistakes, at every entry point: invalid policies and overrides, a request
body that cannot be sent twice (and every other body kind), a client already closed.

Each ends at once in a clear, typed error (a ``ValueError`` naming what is wrong, before anything
is sent), or, for a one-shot streaming body, in the first outcome: the body cannot be replayed,
so the request is never retried (docs/transport.md, "Request bodies").
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest

import xretry
import xretry.httpx2
from xretry import PollPolicy, RetryPolicy

from ._harness import (
    BODY_KINDS,
    DEFERRED_PATH,
    POLICY,
    TLS,
    UPLOAD,
    Call,
    Entry,
    assert_cell,
    attempts_in_note,
    budget,
    entries,
    leaked_fds,
    open_fds,
    run,
)
from ._raw_server import RID, ok, reply, reset
from .conftest import Serve

# -- invalid policies ---------------------------------------------------------------------------

BAD_FIELDS: dict[str, tuple[dict[str, Any], str]] = {
    "no-attempts": ({"max_attempts": 0}, "max_attempts"),
    "fractional-attempts": ({"max_attempts": 2.5}, "max_attempts"),
    "negative-delay": ({"initial_delay": -1}, "initial_delay"),
    "nan-delay": ({"initial_delay": math.nan}, "initial_delay"),
    "infinite-max-delay": ({"max_delay": math.inf}, "max_delay"),
    "initial-above-max": ({"initial_delay": 10, "max_delay": 1}, "initial_delay"),
    "shrinking-multiplier": ({"multiplier": 0.5}, "multiplier"),
    "jitter-above-one": ({"jitter": 1.5}, "jitter"),
    "zero-deadline": ({"deadline": 0}, "deadline"),
    "negative-deadline": ({"deadline": -1}, "deadline"),
    "nan-deadline": ({"deadline": math.nan}, "deadline"),
    "huge-int-deadline": ({"deadline": 10**400}, "deadline"),
    "negative-max-retry-after": ({"max_retry_after": -1}, "max_retry_after"),
    "success-status": ({"retry_statuses": {200}}, "retry_statuses"),
    "statuses-as-string": ({"retry_statuses": "429"}, "retry_statuses"),
    "bad-method": ({"idempotent_methods": {"G E T"}}, "idempotent_methods"),
    "flag-as-string": ({"respect_retry_after": "yes"}, "respect_retry_after"),
}
BAD_POLLS: dict[str, tuple[dict[str, Any], str]] = {
    "zero-interval": ({"interval": 0}, "interval"),
    "interval-above-max": ({"interval": 20}, "interval"),
    "whole-jitter": ({"jitter": 1.0}, "jitter"),
    "zero-timeout": ({"timeout": 0}, "timeout"),
    "nan-timeout": ({"timeout": math.nan}, "timeout"),
    "negative-first-delay": ({"first_delay": -1}, "first_delay"),
}


@pytest.mark.parametrize(("changes", "field"), BAD_FIELDS.values(), ids=BAD_FIELDS)
def test_invalid_retry_policy_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy(**changes)
    with pytest.raises(ValueError, match=field):
        POLICY.replace(**changes)


@pytest.mark.parametrize(("changes", "field"), BAD_POLLS.values(), ids=BAD_POLLS)
def test_invalid_poll_policy_names_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PollPolicy(**changes)


@contextmanager
def clients() -> Iterator[dict[str, Any]]:
    """One client of each kind the pollers take, closed afterwards."""
    made: dict[str, Any] = {
        "httpx": httpx.Client(verify=TLS, trust_env=False),
        "httpx-async": httpx.AsyncClient(verify=TLS, trust_env=False),
        "httpx2": httpx2.Client(verify=TLS, trust_env=False),
        "httpx2-async": httpx2.AsyncClient(verify=TLS, trust_env=False),
    }
    try:
        yield made
    finally:
        for client in made.values():
            if isinstance(client, httpx.Client | httpx2.Client):
                client.close()
            else:
                anyio.run(client.aclose)


async def _coroutine() -> int:
    return 1


def _function() -> int:
    return 1


Make = Callable[[dict[str, Any], Any], Any]
#: Every entry point's constructor, given the clients and a policy.
TAKES_A_POLICY: dict[str, Make] = {
    "RetryTransport": lambda c, p: xretry.RetryTransport(policy=p),
    "AsyncRetryTransport": lambda c, p: xretry.AsyncRetryTransport(policy=p),
    "httpx2.RetryTransport": lambda c, p: xretry.httpx2.RetryTransport(policy=p),
    "httpx2.AsyncRetryTransport": lambda c, p: xretry.httpx2.AsyncRetryTransport(policy=p),
    "retry": lambda c, p: xretry.retry(policy=p)(_function),
    "retry-async": lambda c, p: xretry.retry(policy=p)(_coroutine),
}
POLLERS: dict[str, Make] = {
    "DeferredCompletions-httpx": lambda c, p: xretry.DeferredCompletions(c["httpx"], policy=p),
    "DeferredCompletions-httpx2": lambda c, p: xretry.DeferredCompletions(c["httpx2"], policy=p),
    "AsyncDeferredCompletions-httpx": lambda c, p: xretry.AsyncDeferredCompletions(
        c["httpx-async"], policy=p
    ),
    "AsyncDeferredCompletions-httpx2": lambda c, p: xretry.AsyncDeferredCompletions(
        c["httpx2-async"], policy=p
    ),
}
NOT_POLICIES = {"mapping": {"max_attempts": 2}, "string": "fast", "the-class": RetryPolicy}


@pytest.mark.parametrize("policy", NOT_POLICIES.values(), ids=NOT_POLICIES)
@pytest.mark.parametrize(
    "make",
    [
        *[pytest.param(m, id=name) for name, m in TAKES_A_POLICY.items()],
        *[pytest.param(m, id=name) for name, m in POLLERS.items()],
    ],
)
def test_not_a_policy_is_a_value_error(make: Make, policy: Any) -> None:
    before = open_fds()
    with clients() as made, pytest.raises(ValueError, match="policy must be a RetryPolicy"):
        make(made, policy)
    assert leaked_fds(before) == {}


@pytest.mark.parametrize("name", ["DeferredCompletions", "AsyncDeferredCompletions"])
def test_pollers_refuse_a_bad_poll_policy_and_store(name: str) -> None:
    with clients() as made:
        cls = getattr(xretry, name)
        client = made["httpx" if name == "DeferredCompletions" else "httpx-async"]
        with pytest.raises(ValueError, match="poll must be a PollPolicy"):
            cls(client, poll={"timeout": 1})
        with pytest.raises(ValueError, match="store must be"):
            cls(client, store=3)
        with pytest.raises(ValueError, match="gate must be"):
            cls(client, gate="shared")


# -- invalid per-request input --------------------------------------------------------------------

OVERRIDES: dict[str, tuple[dict[str, Any], str]] = {
    "invalid-field-value": ({"xretry": {"max_attempts": 0}}, "max_attempts"),
    "unknown-field": ({"xretry": {"retries": 3}}, "retries"),
    "not-a-policy": ({"xretry": "fast"}, "RetryPolicy"),
}


@pytest.mark.parametrize(("extensions", "says"), OVERRIDES.values(), ids=OVERRIDES)
@pytest.mark.parametrize("entry", entries("transport", methods=("GET",)))
def test_invalid_override_is_refused_before_sending(
    entry: Entry, extensions: dict[str, Any], says: str, serve: Serve
) -> None:
    server = serve([ok])
    call = Call(extensions=extensions, path=DEFERRED_PATH)
    outcome = run(entry, server.base_url, call)
    assert_cell(outcome, ValueError, budget=budget(entry), match=says)
    assert server.requests == 0


@pytest.mark.parametrize("first", [202, 200])
@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(Entry("transport", "httpx", "sync", "GET"), id="transport-GET-httpx-sync"),
        pytest.param(Entry("transport", "httpx2", "trio", "GET"), id="transport-GET-httpx2-trio"),
    ],
)
def test_invalid_poll_override_is_refused_before_sending(
    entry: Entry, first: int, serve: Serve
) -> None:
    server = serve([reply(first, b"" if first == 202 else None), ok])
    # A short deadline: the health check that finds the leaked connection gives up sooner.
    policy = POLICY.replace(deadline=0.5)
    call = Call(policy=policy, extensions={"xretry.poll": {"timeout": 1}}, path=DEFERRED_PATH)
    outcome = run(entry, server.base_url, call)
    assert_cell(outcome, ValueError, budget=budget(entry), match="PollPolicy")
    assert server.requests == 0


def test_pollers_refuse_bad_arguments_before_sending(serve: Serve) -> None:
    server = serve([ok])
    before = open_fds()
    with clients() as made:
        made["httpx"].base_url = made["httpx-async"].base_url = server.base_url
        poller = xretry.DeferredCompletions(made["httpx"])
        for bad_id in ("../models", "a/b", "", "..", "a\\b"):
            with pytest.raises(ValueError, match="request_id"):
                poller.wait(bad_id)
        with pytest.raises(ValueError, match="timeout"):
            poller.wait(RID, timeout=0)
        apoller = xretry.AsyncDeferredCompletions(made["httpx-async"])

        async def misuse() -> None:
            with pytest.raises(ValueError, match="request_id"):
                await apoller.wait("../models")
            with pytest.raises(ValueError, match="concurrency"):
                async with apoller.as_completed([RID], concurrency=0):
                    pass

        anyio.run(misuse)
    assert server.requests == 0
    assert leaked_fds(before) == {}


# -- a one-shot streaming body ---------------------------------------------------------------

STREAMED = entries("transport", "decorator")


@pytest.mark.parametrize("entry", STREAMED)
def test_one_shot_body_and_a_503(entry: Entry, serve: Serve) -> None:
    """The transport cannot send a generator's body twice: the 503 is the outcome, after one
    request. The decorator calls the function again, which makes a fresh generator."""
    server = serve([reply(503, b'{"code": "x", "error": "busy"}'), ok])
    outcome = run(entry, server.base_url, Call(stream_body=True))
    whole = b'{"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}'
    if entry.kind == "transport":
        assert_cell(outcome, xretry.ServerError, budget=budget(entry))
        assert isinstance(outcome.error, xretry.ServerError)
        history = outcome.error.response.extensions["xretry"]
        assert "one-shot stream" in history.attempts[-1].reason
        assert server.requests == 1
    else:
        assert_cell(outcome, None, budget=budget(entry))
        assert server.requests == outcome.calls == 2
    assert {seen.body for seen in server.seen} == {whole}  # never a partial or empty resend


@pytest.mark.parametrize("entry", STREAMED)
def test_one_shot_body_and_a_reset(entry: Entry, serve: Serve) -> None:
    """A reset after sending: a POST is not resent anyway; one request, the httpx error."""
    server = serve([reset, ok])
    outcome = run(entry, server.base_url, Call(stream_body=True))
    assert_cell(outcome, entry.http.ReadError, budget=budget(entry))
    assert server.requests == 1


@pytest.mark.parametrize("entry", STREAMED)
def test_one_shot_body_and_connection_refused(entry: Entry, refused_url: str) -> None:
    """Refused: the transport does not retry a request whose body it cannot replay (one attempt,
    no note); the decorator retries the call, each with a fresh body."""
    outcome = run(entry, refused_url, Call(stream_body=True, health=False))
    assert_cell(outcome, entry.http.ConnectError, budget=budget(entry))
    if entry.kind == "transport":
        assert attempts_in_note(outcome.error) == 0
    else:
        assert outcome.calls == POLICY.max_attempts


@pytest.mark.parametrize("kind", list(BODY_KINDS))
@pytest.mark.parametrize("entry", STREAMED)
def test_every_body_kind_and_a_503(entry: Entry, kind: str, serve: Serve) -> None:
    """Every other body kind: the transport resends what it can send whole (bytes; multipart
    whose file parts are bytes or seekable files) and returns the first outcome of what it can't
    (a file part that cannot seek would be sent empty); the decorated function builds its body
    afresh on each call. The server never sees a partial or empty upload."""
    server = serve([reply(503, b'{"code": "x", "error": "busy"}'), ok])
    outcome = run(entry, server.base_url, Call(body=kind))
    replayable = BODY_KINDS[kind][1]
    if entry.kind == "transport" and not replayable:
        assert_cell(outcome, xretry.ServerError, budget=budget(entry))
        assert isinstance(outcome.error, xretry.ServerError)
        history = outcome.error.response.extensions["xretry"]
        assert "one-shot stream" in history.attempts[-1].reason
        assert server.requests == 1
    else:
        assert_cell(outcome, None, budget=budget(entry))
        assert server.requests == 2
        assert outcome.calls == (2 if entry.kind == "decorator" else 0)
    assert all(UPLOAD in seen.body for seen in server.seen)  # never a partial or empty resend


# -- a closed client ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "entry",
    entries("transport", "decorator", "submit", "wait", "as_completed", methods=("GET", "POST")),
)
def test_closed_client(entry: Entry, serve: Serve) -> None:
    """Using a closed client is the caller's bug: httpx's RuntimeError, at once, never retried,
    nothing sent."""
    server = serve([ok])
    outcome = run(entry, server.base_url, Call(closed=True))
    assert_cell(outcome, RuntimeError, budget=budget(entry), match="closed")
    assert outcome.elapsed < 0.5
    assert server.requests == server.connections == 0
    if entry.kind == "decorator":
        assert outcome.calls == 1
