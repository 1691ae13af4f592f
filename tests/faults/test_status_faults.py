"""Status faults from the emulator against every entry point: 5xx bursts that recover, outages
that don't, 429 storms (scheduled, and a real token bucket with each kind of hint), and the
spent-credits 429, over real loopback sockets.

The rules (README's table): 429, 500, 502, 503 and 504 are retried, for POST too (the server
answered: it did not do the work); when attempts, the deadline or patience run out, the last
answer becomes its typed error. A paid-for deferred job is polled on through 429s and 5xx until
its poll timeout. A spent-credits 429 is never retried.
"""

from __future__ import annotations

import pytest

import xretry
from xretry.emulator import EmulatorApp, Fault

from ._emulator import aimed, requests_seen, submit_job
from ._harness import (
    OUTAGE_POLICY,
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
from .conftest import Emulator

#: About 12 s of cells: `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

ALL = entries("transport", "decorator", "submit", "wait", "as_completed")
#: With ``batch``: as_completed given a body, whose refused submissions are resubmitted until the
#: poll timeout (not the rate-limit cells: there its poll meets the bucket too).
WITH_BATCH = entries("transport", "decorator", "submit", "wait", "as_completed", "batch")


def prepare(app: EmulatorApp, entry: Entry, emulator: Emulator) -> tuple[str, Call]:
    """Serve ``app``; for the pollers, submit the job to poll first. Statistics start at zero."""
    base_url = emulator(app)
    call = Call()
    if entry.polls:
        call = Call(request_id=submit_job(base_url))
    app.reset_stats()
    return base_url, call


FAILURES = {
    "500": (Fault("status", status=500), xretry.ServerError),
    "502-html": (Fault("html"), xretry.ServerError),
    "503": (Fault("status", status=503), xretry.ServerError),
    "504": (Fault("status", status=504), xretry.ServerError),
    "429": (Fault("status", status=429), xretry.RateLimitError),
}


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("entry", WITH_BATCH)
def test_burst_that_recovers(entry: Entry, failure: str, emulator: Emulator) -> None:
    """Two failures, then the answer: every entry point delivers it, on the third request."""
    fault, _ = FAILURES[failure]
    app = EmulatorApp(aimed(entry, Fault(fault.kind, status=fault.status, schedule=((1, 2),))))
    base_url, call = prepare(app, entry, emulator)
    outcome = run(entry, base_url, call)
    assert_cell(outcome, None, budget=budget(entry))
    assert requests_seen(app, entry) == 3
    if entry.kind == "decorator":
        assert outcome.calls == 3


@pytest.mark.parametrize("failure", sorted(FAILURES))
@pytest.mark.parametrize("entry", WITH_BATCH)
def test_outage(entry: Entry, failure: str, emulator: Emulator) -> None:
    """Failures that don't end: the typed error after max_attempts requests; a polled job after
    its poll timeout (``wait``: the last answer's error, ``as_completed``: a timeout), and so
    does a batch job whose submission keeps being refused (the last refusal's error)."""
    fault, error = FAILURES[failure]
    app = EmulatorApp(aimed(entry, Fault(fault.kind, status=fault.status, rate=1.0)))
    base_url, call = prepare(app, entry, emulator)
    call = Call(policy=OUTAGE_POLICY, poll=OUTAGE_POLL, request_id=call.request_id)
    outcome = run(entry, base_url, call)
    limit = budget(entry, OUTAGE_POLL)
    seen = requests_seen(app, entry)
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        assert seen >= OUTAGE_POLICY.max_attempts
        return
    if entry.kind in ("wait", "batch"):
        # A paid-for job is not given up on after max_attempts, but polled until its timeout;
        # a refused submission was not accepted, so it is made again until then (if its first
        # round of attempts left the time).
        most = OUTAGE_POLICY.max_attempts
        assert seen > most if entry.kind == "wait" else seen >= most
        # The last poll may start with less time left than the server needs to answer: see
        # test_deadline_edges.py::test_a_doomed_last_poll_does_not_hide_the_last_answer.
        assert_cell(outcome, or_doomed(entry, error), budget=limit)
        return
    assert_cell(outcome, error, budget=limit)
    assert isinstance(outcome.error, xretry.APIStatusError)
    if failure == "502-html":
        assert "HTML page" in str(outcome.error)
    assert seen == OUTAGE_POLICY.max_attempts
    if entry.kind == "decorator":
        assert outcome.calls == OUTAGE_POLICY.max_attempts
        assert attempts_in_note(outcome.error) == OUTAGE_POLICY.max_attempts
    else:  # the transport's history, through the response, on the error
        assert outcome.error.attempts == OUTAGE_POLICY.max_attempts
        assert f"max_attempts={OUTAGE_POLICY.max_attempts} reached" in str(outcome.error)


@pytest.mark.parametrize("entry", WITH_BATCH)
def test_spent_credits_are_never_retried(entry: Entry, emulator: Emulator) -> None:
    """The spent-credits 429 is fatal: one request, QuotaExhaustedError, from every entry point."""
    app = EmulatorApp(aimed(entry, quota_exhausted=True))
    base_url = emulator(app)  # no job can be submitted: poll an id, the 429 comes first
    outcome = run(entry, base_url)
    assert_cell(outcome, xretry.QuotaExhaustedError, budget=budget(entry))
    assert "credits" in str(outcome.error)
    assert requests_seen(app, entry) == 1


# -- a real token bucket ----------------------------------------------------------------------


def drained(entry: Entry, emulator: Emulator, **settings: object) -> tuple[EmulatorApp, str, Call]:
    """A rate-limited emulator whose bucket (burst 1) the setup request has just emptied."""
    app = EmulatorApp(aimed(entry, burst=1, **settings))  # type: ignore[arg-type]
    base_url, call = prepare(app, entry, emulator)
    if not entry.polls:  # the pollers' setup submission already took the only token
        assert submit_job(base_url)
        app.reset_stats()
    return app, base_url, call


@pytest.mark.parametrize("entry", ALL)
def test_rate_limit_with_a_precise_hint(entry: Entry, emulator: Emulator) -> None:
    """``retry-after-ms: 50``: waited exactly, then the request goes through."""
    app, base_url, call = drained(entry, emulator, rate_limit=20.0, hints="full")
    outcome = run(entry, base_url, call)
    assert_cell(outcome, None, budget=budget(entry))
    stats = app.stats()
    assert stats["status.429"] >= 1
    assert requests_seen(app, entry) == stats["status.429"] + 1


@pytest.mark.parametrize("entry", ALL)
def test_rate_limit_hint_longer_than_the_deadline(entry: Entry, emulator: Emulator) -> None:
    """``retry-after: 1`` (whole seconds only) with 0.5 s of deadline (or 0.3 s of poll timeout)
    left: reported at once rather than waited on, the 429 as RateLimitError."""
    app, base_url, call = drained(entry, emulator, rate_limit=20.0, hints="retry-after")
    policy = POLICY.replace(deadline=0.5)
    outcome = run(entry, base_url, Call(policy=policy, request_id=call.request_id))
    limit = budget(entry, policy=policy)
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
    else:
        assert_cell(outcome, xretry.RateLimitError, budget=limit)
    assert outcome.elapsed < 0.5  # not slept on
    assert requests_seen(app, entry) == 1


@pytest.mark.parametrize("entry", ALL)
def test_rate_limit_storm_without_hints(entry: Entry, emulator: Emulator) -> None:
    """No hints and a bucket that refills every 0.5 s: backoff alone cannot outwait it, so the
    storm ends as it started, in a RateLimitError (or a polled job's timeout)."""
    app, base_url, call = drained(entry, emulator, rate_limit=2.0, hints="none")
    call = Call(policy=OUTAGE_POLICY, poll=OUTAGE_POLL, request_id=call.request_id)
    outcome = run(entry, base_url, call)
    limit = budget(entry, OUTAGE_POLL)
    seen = requests_seen(app, entry)
    assert app.stats()["status.429"] == seen
    if entry.kind == "as_completed":
        assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
        assert seen >= 1
    elif entry.kind == "wait":
        # See test_deadline_edges.py::test_a_doomed_last_poll_does_not_hide_the_last_answer.
        assert_cell(outcome, or_doomed(entry, xretry.RateLimitError), budget=limit)
        assert seen > OUTAGE_POLICY.max_attempts
    else:
        assert_cell(outcome, xretry.RateLimitError, budget=limit)
        assert seen == OUTAGE_POLICY.max_attempts
