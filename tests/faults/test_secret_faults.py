"""Secrets the request carries outside its ``Authorization`` header, at every entry point.

Three paths a secret takes into text that xretry repeats or re-raises: the URL's query string
(httpx's own messages quote the whole URL), a proxy's credentials (added by the innermost
transport as ``Proxy-Authorization``, never seen on the request, and echoed by a broken proxy in
its 502 page), and a key with a trailing newline (h11 refuses the header and quotes its value).
Whatever the path, the secret is in no error (message, repr, args, notes, causes), no returned
history and no line of the ``xretry`` logger; each cell also checks the usual outcome, time and
leaks (``assert_cell``).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator

import pytest

import xretry

from ._harness import (
    KEY,
    OUTAGE_POLICY,
    OUTAGE_POLL,
    Call,
    Entry,
    Kind,
    Outcome,
    assert_cell,
    budget,
    entries,
    or_doomed,
    run,
    shows,
)
from ._raw_server import Conn, Seen, reply
from .conftest import Serve

QUERY_SECRET = "qs-fault-matrix-5a1c9e7d3b"
PROXY_PASSWORD = "pw-fault-matrix-8d2f"
PROXY_TOKEN = base64.b64encode(f"user:{PROXY_PASSWORD}".encode()).decode()
ALL: tuple[Kind, ...] = ("transport", "decorator", "submit", "wait", "as_completed")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def xretry_log() -> Iterator[list[str]]:
    """Every line the ``xretry`` logger writes during the cell, at DEBUG."""
    logger = logging.getLogger("xretry")
    handler, level = _Lines(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _check(outcome: Outcome, lines: list[str], needles: tuple[str, ...]) -> None:
    assert not shows(outcome, needles), f"a secret shows in {outcome!r}"
    leaked = [line for line in lines if any(needle in line for needle in needles)]
    assert not leaked, f"a secret is in the log: {leaked[:3]}"


def _typed_outage(entry: Entry, outcome: Outcome, error: type[BaseException]) -> None:
    """A retried status that never ends: its typed error (the pollers: their poll timeout)."""
    limit = budget(entry, OUTAGE_POLL)
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
    elif entry.kind == "wait":
        assert_cell(outcome, or_doomed(entry, error), budget=limit)
    else:
        assert_cell(outcome, error, budget=limit)


@pytest.mark.parametrize("entry", entries("transport", "decorator", methods=("GET", "POST")))
def test_a_query_string_secret(entry: Entry, serve: Serve, xretry_log: list[str]) -> None:
    """``?api_key=...`` on a call that ends in 503s: the typed error, the retry lines and the
    give-up line name the URL without its query string; the value is masked wherever echoed."""
    body = f'{{"code": "x", "error": "bad key {QUERY_SECRET}"}}'.encode()
    server = serve([reply(503, body)])
    call = Call(policy=OUTAGE_POLICY, poll=OUTAGE_POLL, path=f"/models?api_key={QUERY_SECRET}")
    outcome = run(entry, server.base_url, call)
    _typed_outage(entry, outcome, xretry.ServerError)
    assert server.requests == OUTAGE_POLICY.max_attempts
    assert any("giving up" in line for line in xretry_log)
    _check(outcome, xretry_log, (QUERY_SECRET,))


def echo_headers(conn: Conn, request: Seen) -> bool:
    """A broken proxy: a 502 page quoting the request's headers, ``Proxy-Authorization`` too."""
    quoted = "\r\n".join(f"{name}: {value}" for name, value in request.headers.items())
    body = f"upstream connect error; request was:\r\n{quoted}".encode()  # text, not HTML
    head = f"HTTP/1.1 502 Bad Gateway\r\ncontent-length: {len(body)}\r\n\r\n".encode()
    return conn.send(head + body)


@pytest.mark.parametrize("entry", entries(*ALL))
def test_a_proxys_credentials(entry: Entry, serve: Serve, xretry_log: list[str]) -> None:
    """The proxy's password and token never come out, though every answer quotes them."""
    server = serve([echo_headers])
    proxy = server.base_url.removesuffix("/v1").replace("http://", f"http://user:{PROXY_PASSWORD}@")
    call = Call(policy=OUTAGE_POLICY, poll=OUTAGE_POLL, proxy=proxy, health=False)
    outcome = run(entry, "http://api.x.ai.test/v1", call)
    _typed_outage(entry, outcome, xretry.ServerError)
    assert all(seen.headers.get("proxy-authorization") for seen in server.seen)
    _check(outcome, xretry_log, (PROXY_PASSWORD, PROXY_TOKEN))


@pytest.mark.parametrize("entry", entries(*ALL))
def test_a_key_with_a_trailing_newline(entry: Entry, serve: Serve, xretry_log: list[str]) -> None:
    """h11 refuses the header before anything is sent: httpx's LocalProtocolError, not retried,
    its message (and its causes') masked."""
    server = serve([reply(200)])
    call = Call(headers={"authorization": f"Bearer {KEY}\n"}, health=False)
    outcome = run(entry, server.base_url, call)
    assert_cell(outcome, entry.http.LocalProtocolError, budget=budget(entry))
    assert "***" in str(outcome.error)
    assert server.requests == 0
    _check(outcome, xretry_log, (KEY, KEY[-12:]))
