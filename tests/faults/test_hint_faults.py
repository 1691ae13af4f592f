"""Broken wait hints against every entry point, over real sockets.

``retry-after``, ``retry-after-ms`` and ``x-ratelimit-reset-requests`` (with
``x-ratelimit-remaining-requests: 0``) carrying negative numbers, NaN, enormous numbers, words,
non-ASCII digits, past and far-future HTTP dates. docs/policies.md, "Server hints": garbage is
ignored and backoff decides (so two 429s are ridden out in milliseconds); a date in the past means
now (no hint: backoff again); a wait too long for ``max_retry_after`` or for what is left of the
deadline is reported at once, not slept on. A 5xx takes its wait from ``retry-after(-ms)`` only.

Parsing does not depend on the library or the event loop: the cases rotate through them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import xretry

from ._harness import Call, Entry, Kind, assert_cell, budget, rotated, run
from ._raw_server import ok, reply
from .conftest import Serve

KINDS: tuple[Kind, ...] = ("transport", "decorator", "submit", "wait", "as_completed")


@dataclass(frozen=True)
class Hint:
    headers: tuple[tuple[str, str | bytes], ...]
    #: True: the wait reads as too long, the answer is reported at once.
    too_long: bool
    status: int = 429


def retry_after(value: str | bytes, too_long: bool = False, status: int = 429) -> Hint:
    return Hint((("retry-after", value),), too_long, status)


def retry_after_ms(value: str | bytes, too_long: bool = False) -> Hint:
    return Hint((("retry-after-ms", value),), too_long)


def ratelimit_reset(value: str | bytes, too_long: bool = False, status: int = 429) -> Hint:
    headers = (("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", value))
    return Hint(headers, too_long, status)


HINTS = {
    "retry-after-negative": retry_after("-5"),
    "retry-after-nan": retry_after("NaN"),
    "retry-after-word": retry_after("soon"),
    "retry-after-exponent": retry_after("1e999"),
    "retry-after-arabic-digit": retry_after("٣".encode()),
    "retry-after-fullwidth-digit": retry_after("\uff13".encode()),
    "retry-after-past-date": retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
    "retry-after-bad-date": retry_after("Wed, 32 Oct 2015 25:61:00 GMT"),
    "retry-after-far-future-date": retry_after("Fri, 31 Dec 9999 23:59:59 GMT", too_long=True),
    "retry-after-enormous": retry_after("99999999999999999999", too_long=True),
    "retry-after-an-hour": retry_after("3600", too_long=True),
    "retry-after-ms-negative": retry_after_ms("-100"),
    "retry-after-ms-nan": retry_after_ms("NaN"),
    "retry-after-ms-inf": retry_after_ms("inf"),
    "retry-after-ms-word": retry_after_ms("abc"),
    "retry-after-ms-arabic-digits": retry_after_ms("٣٠٠".encode()),
    "retry-after-ms-enormous": retry_after_ms("100000000000", too_long=True),
    "ratelimit-reset-negative": ratelimit_reset("-1s"),
    "ratelimit-reset-nan": ratelimit_reset("NaNs"),
    "ratelimit-reset-word": ratelimit_reset("soon"),
    "ratelimit-reset-arabic-digit": ratelimit_reset("٣s".encode()),
    "ratelimit-reset-enormous": ratelimit_reset("99999999h", too_long=True),
    "ratelimit-reset-six-minutes": ratelimit_reset("6m0s", too_long=True),
    # On a 5xx only retry-after(-ms) name a wait; x-ratelimit-* are the budget, not this wait.
    "503-retry-after-negative": retry_after("-5", status=503),
    "503-retry-after-an-hour": retry_after("3600", too_long=True, status=503),
    "503-ratelimit-reset-enormous": ratelimit_reset("99999999h", status=503),
}

BODY = b'{"code": "Some resource has been exhausted", "error": "slow down"}'


@pytest.mark.parametrize(("entry", "hint"), rotated(KINDS, HINTS))
def test_broken_hint(entry: Entry, hint: Hint, serve: Serve) -> None:
    """Two refusals carrying the hint, then the answer: garbage is ridden out by backoff in
    milliseconds; a wait too long for the policy ends the call at once, in the typed error."""
    refusal = reply(hint.status, BODY, hint.headers)
    server = serve([refusal, refusal, ok])
    # After a too-long hint the client's gate holds its next request for up to 60 s, past that
    # request's deadline (test_deadline_edges.py::test_transport_gate_wait_is_capped_by_the_
    # deadline): the health check would be that next request.
    outcome = run(entry, server.base_url, Call(health=not hint.too_long))
    if not hint.too_long:  # ignored: backoff rides out the two refusals
        assert_cell(outcome, None, budget=budget(entry))
        assert server.requests == 3
        return
    assert server.requests == 1
    assert outcome.elapsed < 0.5  # reported at once, not slept on
    if entry.kind == "as_completed":  # the job waits for its next poll: after its timeout
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=budget(entry))
        return
    error = xretry.RateLimitError if hint.status == 429 else xretry.ServerError
    assert_cell(outcome, error, budget=budget(entry))
    if entry.kind == "transport":
        assert "gave up" in str(outcome.error)
