"""Broken bodies on every status, against every entry point, over real sockets.

An empty body, a JSON body cut short (well framed: the content-length matches), a proxy's HTML
page and JSON of the wrong type, on a 200, a 202 and each status of xAI's table (and the 5xx).
Whatever the body, each entry point ends in the typed error for the status, with a readable
message, after as many requests as the status allows; a 200 that is not a completion ends the
pollers in a typed error that keeps the raw body (the server won't send it again).

What a body means does not depend on the library or the event loop, so the cases rotate through
them (``rotated``): every (status, body) meets every kind of entry point once.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import xretry

from ._harness import (
    OUTAGE_POLICY,
    OUTAGE_POLL,
    Call,
    Entry,
    Kind,
    assert_cell,
    budget,
    entries,
    or_doomed,
    rotated,
    run,
)
from ._raw_server import Conn, Seen, reply
from .conftest import Serve

#: About 5 s of cells over loopback sockets: `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

KINDS: tuple[Kind, ...] = ("transport", "decorator", "submit", "wait", "as_completed")

HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)
#: Each broken body, and what the error message says about it.
BODIES = {
    "empty": (b"", "empty body"),
    "truncated": (b'{"code": "Internal error", "error": "the serv', "unparseable JSON body"),
    "html": (HTML, "HTML page"),
    "wrong-json": (b'[{"error": 42}, null]', '[{"error": 42}, null]'),
}

FATAL: dict[int, type[xretry.APIStatusError]] = {
    400: xretry.BadRequestError,
    401: xretry.AuthenticationError,
    403: xretry.PermissionDeniedError,
    404: xretry.NotFoundError,
    405: xretry.MethodNotAllowedError,
    415: xretry.UnsupportedMediaTypeError,
    422: xretry.UnprocessableEntityError,
}
RETRIED: dict[int, type[xretry.APIStatusError]] = {
    429: xretry.RateLimitError,
    500: xretry.ServerError,
    502: xretry.ServerError,
    503: xretry.ServerError,
    504: xretry.ServerError,
}


@dataclass(frozen=True)
class Case:
    status: int
    body: bytes
    says: str


def cases(statuses: list[int]) -> dict[str, Case]:
    return {
        f"{status}-{name}": Case(status, body, says)
        for status in statuses
        for name, (body, says) in BODIES.items()
    }


@pytest.mark.parametrize(("entry", "case"), rotated(KINDS, cases([200])))
def test_broken_200(entry: Entry, case: Case, serve: Serve) -> None:
    """A 200 whose body is not what was asked for: the transport and the decorator hand it over
    untouched; a submission without a request id and a completion that is not a JSON object are
    typed errors, the latter keeping the raw body."""
    server = serve([reply(200, case.body)])
    outcome = run(entry, server.base_url)
    if entry.kind in ("transport", "decorator"):
        assert_cell(outcome, None, budget=budget(entry))
        assert outcome.value == (200, case.body)
    elif entry.kind == "submit":
        assert_cell(outcome, xretry.XRetryError, budget=budget(entry), match="request_id")
    else:
        assert_cell(outcome, xretry.DeferredResultError, budget=budget(entry))
        assert isinstance(outcome.error, xretry.DeferredResultError)
        assert outcome.error.body == case.body
    assert server.requests == 1


@pytest.mark.parametrize(("entry", "case"), rotated(KINDS, cases([202])))
def test_broken_202(entry: Entry, case: Case, serve: Serve) -> None:
    """A 202 means "not ready yet" only on the poll path: there the pollers ask again, whatever
    its body, until their poll timeout. Elsewhere it is a success, handed over as it is; a
    submission answered 202 without a request id is a typed error."""
    server = serve([reply(202, case.body)])
    outcome = run(entry, server.base_url, Call(poll=OUTAGE_POLL))
    limit = budget(entry, OUTAGE_POLL)
    if entry.kind in ("transport", "decorator"):
        assert_cell(outcome, None, budget=limit)
        assert outcome.value == (202, case.body)
        assert server.requests == 1
    elif entry.kind == "submit":
        assert_cell(outcome, xretry.XRetryError, budget=limit, match="request_id")
        assert server.requests == 1
    else:
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        assert server.requests >= 2


@pytest.mark.parametrize(("entry", "case"), rotated(KINDS, cases(sorted(FATAL))))
def test_fatal_status_with_a_broken_body(entry: Entry, case: Case, serve: Serve) -> None:
    """A fatal status is answered once; its error is typed by the status whatever the body, with
    a bounded, readable message. A poll's 400 or 404 with a body that is not the API's is no word
    on the job (a gateway, a typo in the base URL): DeferredPollError with the id, the job left
    pending, the status's typed error its cause."""
    server = serve([reply(case.status, case.body)])
    outcome = run(entry, server.base_url)
    if entry.polls and case.status in (400, 404):
        assert_cell(outcome, xretry.DeferredPollError, budget=budget(entry))
        assert isinstance(outcome.error, xretry.DeferredPollError)
        assert outcome.error.request_id
        assert type(outcome.error.__cause__) is FATAL[case.status]
        assert case.says in str(outcome.error.__cause__)
    else:
        assert_cell(outcome, FATAL[case.status], budget=budget(entry), match=case.says)
    assert len(str(outcome.error)) < 1000
    assert server.requests == 1


@pytest.mark.parametrize(("entry", "case"), rotated(KINDS, cases(sorted(RETRIED))))
def test_retried_status_with_a_broken_body(entry: Entry, case: Case, serve: Serve) -> None:
    """A retryable status is retried whatever its body; when it doesn't end, its typed error,
    readable, after max_attempts (a polled job: after its poll timeout)."""
    server = serve([reply(case.status, case.body)])
    outcome = run(entry, server.base_url, Call(policy=OUTAGE_POLICY, poll=OUTAGE_POLL))
    limit = budget(entry, OUTAGE_POLL)
    error = RETRIED[case.status]
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        assert server.requests >= OUTAGE_POLICY.max_attempts
        return
    if entry.kind == "wait":
        # See test_deadline_edges.py::test_a_doomed_last_poll_does_not_hide_the_last_answer.
        assert_cell(outcome, or_doomed(entry, error), budget=limit)
        # The poll timeout ends a paid-for job's polls, not max_attempts: on a loaded machine
        # only a few attempts fit in 0.08 s, so the proof is the history's stop reason.
        assert server.requests >= OUTAGE_POLICY.max_attempts
        if isinstance(outcome.error, xretry.APIStatusError):
            history = outcome.error.response.extensions["xretry"]
            assert "poll timeout" in str(history.stop_reason)
        return
    assert_cell(outcome, error, budget=limit, match=case.says)
    assert len(str(outcome.error)) < 1000
    assert server.requests == OUTAGE_POLICY.max_attempts
    assert server.request_connections == 1  # every discarded answer was read: the connection reused


def endless_500(conn: Conn, request: Seen) -> bool:
    """A 500 whose chunked body never ends (until the client goes away)."""
    head = b"HTTP/1.1 500 Internal Server Error\r\ntransfer-encoding: chunked\r\n\r\n"
    if not conn.send(head):
        return False
    chunk = b'{"code": "x", "error": "' + b"x" * 4000
    while conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk)):
        pass
    return False


@pytest.mark.parametrize("entry", entries("transport", "decorator"))
def test_an_endless_error_body_under_a_raise_for_status_hook(entry: Entry, serve: Serve) -> None:
    """The README's client: ``raise_for_status`` as a response hook meets the response before its
    body is read. A 500 whose body never ends is read to a bounded prefix, and ends in its typed
    error after max_attempts (the transport leaves an unsized body alone and retries)."""
    server = serve([endless_500])
    outcome = run(entry, server.base_url, Call(policy=OUTAGE_POLICY, hook=True, health=False))
    assert_cell(outcome, xretry.ServerError, budget=budget(entry))
    assert server.requests == OUTAGE_POLICY.max_attempts
    assert len(str(outcome.error)) < 1000
