"""Deferred-completion faults against everything that can fetch one, over real sockets.

A job that stays pending (202 forever), an id that expired, was already fetched or never
existed (404), and the poll's 200 arriving broken (not JSON, cut short, the connection dropped
before or during the answer, a proxy's 502 page). The entry points: a plain GET of the poll path
through the transport (which polls on its PollPolicy) and through ``@xretry.retry`` (which does
not: a 202 is a success to it), and the pollers' ``wait`` and ``as_completed``.

docs/deferred.md: the pollers end in ``DeferredTimeoutError`` (carrying the id) when the poll
timeout runs out, ``DeferredNotFoundError`` for an id the server does not know, and
``DeferredResultError`` (keeping the raw body) for a 200 that is not a completion.
"""

from __future__ import annotations

import json
import time
from typing import Literal

import httpx
import pytest

import xretry
from xretry.emulator import EmulatorApp, Fault

from ._emulator import aimed, submit_job
from ._harness import (
    AUTH,
    DEFERRED_PATH,
    OUTAGE_POLL,
    POLICY,
    TLS,
    Call,
    Entry,
    assert_cell,
    entries,
    run,
)
from ._raw_server import RID, reply, reset_mid_body, silent
from .conftest import Emulator, Serve

#: About 5 s of cells: `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

ALL = entries("transport", "decorator", "wait", "as_completed", methods=("GET",))
#: With ``batch``: as_completed given a body, which it submits, then polls.
WITH_BATCH = entries("transport", "decorator", "wait", "as_completed", "batch", methods=("GET",))
POLLERS = ("wait", "as_completed", "batch")


def poll_call(request_id: str, **changes: object) -> Call:
    """A call on the poll path of ``request_id`` (the pollers are given the id)."""
    path = f"/chat/deferred-completion/{request_id}"
    return Call(path=path, request_id=request_id, **changes)  # type: ignore[arg-type]


def polls(app: EmulatorApp) -> int:
    return int(app.stats().get("requests.deferred", 0))


@pytest.mark.parametrize("entry", WITH_BATCH)
def test_pending_forever(entry: Entry, emulator: Emulator) -> None:
    """Still pending when the poll timeout runs out: the pollers raise DeferredTimeoutError with
    the id; the transport hands over the last 202; the decorator, which does not poll, the first."""
    app = EmulatorApp(aimed(entry, ready_after=(3600.0, 3600.0)))
    base_url = emulator(app)
    request_id = submit_job(base_url)
    poll = OUTAGE_POLL.replace(timeout=0.15)  # room for a second poll on a loaded machine
    outcome = run(entry, base_url, poll_call(request_id, poll=poll))
    limit = poll.timeout
    assert limit is not None
    if entry.kind == "decorator":
        assert_cell(outcome, None, budget=limit)
        assert outcome.value == (202, b"")
        assert polls(app) == 1
        return
    assert polls(app) >= 2
    if entry.kind == "transport":
        assert_cell(outcome, None, budget=limit)
        assert outcome.value == (202, b"")
        return
    assert_cell(outcome, xretry.DeferredTimeoutError, budget=limit)
    assert isinstance(outcome.error, xretry.DeferredTimeoutError)
    if entry.kind != "batch":  # a batch job has the id of its own submission
        assert outcome.error.request_id == request_id
    assert outcome.error.request_id in str(outcome.error)


@pytest.mark.parametrize("why", ["expired", "fetched", "unknown"])
@pytest.mark.parametrize("entry", ALL)
def test_gone(entry: Entry, why: str, emulator: Emulator) -> None:
    """A 404 for the id is final: one poll, DeferredNotFoundError with the id from the pollers,
    NotFoundError from a plain GET."""
    app = EmulatorApp(aimed(entry, expire_after=0.001 if why == "expired" else 3600.0))
    base_url = emulator(app)
    request_id = "0b4e2a1c-0000-4000-8000-000000000000"  # never submitted
    if why != "unknown":
        request_id = submit_job(base_url)
    if why == "expired":
        time.sleep(0.005)  # ready at once, expired a millisecond later
    if why == "fetched":
        with httpx.Client(base_url=base_url, headers=AUTH, verify=TLS, trust_env=False) as plain:
            assert plain.get(f"/chat/deferred-completion/{request_id}").status_code == 200
    app.reset_stats()
    outcome = run(entry, base_url, poll_call(request_id))
    if entry.polls:
        assert_cell(outcome, xretry.DeferredNotFoundError, budget=2.0)
        assert isinstance(outcome.error, xretry.DeferredNotFoundError)
        assert (outcome.error.request_id, outcome.error.status_code) == (request_id, 404)
    else:
        assert_cell(outcome, xretry.NotFoundError, budget=2.0)
    assert polls(app) == 1
    assert app.stats()[f"deferred_{'missing' if why == 'unknown' else why}"] == 1


Broken = Literal["garbage", "truncate", "drop_before", "drop_during", "html"]
BROKEN: list[Broken] = ["garbage", "truncate", "drop_before", "drop_during", "html"]


@pytest.mark.parametrize("kind", BROKEN)
@pytest.mark.parametrize("entry", WITH_BATCH)
def test_broken_answer_to_the_first_poll(entry: Entry, kind: Broken, emulator: Emulator) -> None:
    """The first poll's answer is broken (the emulator breaks it before looking at the job, so
    the job is still there to fetch). A 200 that is not JSON is final: the pollers raise
    DeferredResultError with the raw body, the plain GETs hand it over. A dropped or cut answer
    is retried by whoever reads the body in its loop; the transport has handed the response
    over before the cut, so its caller gets the httpx error. A 502 page is retried by all."""
    app = EmulatorApp(aimed(entry, Fault(kind, schedule=(1,)), endpoint="deferred"))
    base_url = emulator(app)
    request_id = submit_job(base_url)
    outcome = run(entry, base_url, poll_call(request_id))
    limit = POLICY.deadline
    assert limit is not None
    if kind == "garbage":
        if entry.kind in POLLERS:
            assert_cell(outcome, xretry.DeferredResultError, budget=limit)
            assert isinstance(outcome.error, xretry.DeferredResultError)
            assert outcome.error.body == b"\x00\xffthis is not json{"
        else:
            assert_cell(outcome, None, budget=limit)
            assert outcome.value == (200, b"\x00\xffthis is not json{")
        assert polls(app) == 1
    elif entry.kind == "transport" and kind in ("truncate", "drop_during"):
        assert_cell(outcome, entry.http.RemoteProtocolError, budget=limit)
        assert polls(app) == 1
    else:
        assert_cell(outcome, None, budget=limit)
        completion = outcome.value if entry.kind in POLLERS else json.loads(outcome.value[1])
        assert completion["object"] == "chat.completion"
        assert polls(app) == 2
        assert app.stats()["deferred_delivered"] == 1


@pytest.mark.parametrize("entry", entries("wait", "as_completed"))
def test_result_lost_in_transit(entry: Entry, serve: Serve) -> None:
    """The read-once limit (docs/deferred.md): the 200 is cut mid-body, the retry finds the
    result gone (404). Not a hang and not a generic error: DeferredNotFoundError with the id."""
    server = serve([reset_mid_body, reply(404, b'{"code": "x", "error": "not found"}')])
    outcome = run(entry, server.base_url, Call())
    assert_cell(outcome, xretry.DeferredNotFoundError, budget=2.0)
    assert isinstance(outcome.error, xretry.DeferredNotFoundError)
    assert outcome.error.request_id == RID
    assert server.requests == 2


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(Entry("transport", "httpx", "sync", "GET"), id="transport-GET-httpx-sync"),
        pytest.param(Entry("wait", "httpx2", "trio"), id="wait-httpx2-trio"),
        pytest.param(Entry("as_completed", "httpx", "asyncio"), id="as_completed-httpx-asyncio"),
    ],
)
def test_poll_timeout_caps_a_silent_server(entry: Entry, serve: Serve) -> None:
    server = serve([silent])
    policy = POLICY.replace(deadline=None, max_attempts=1)  # the poll timeout alone bounds it
    call = poll_call(RID, policy=policy, poll=OUTAGE_POLL, timeout=0.6)
    outcome = run(entry, server.base_url, call)
    assert outcome.elapsed <= OUTAGE_POLL.timeout + 0.4, outcome  # type: ignore[operator]


@pytest.mark.parametrize("entry", entries("transport", methods=("GET",)))
def test_a_poll_through_the_transport_ends_with_its_deadline(entry: Entry, serve: Serve) -> None:
    """A plain GET of the deferred-completion endpoint polls: a deadline smaller than the poll
    timeout ends it (the last 202 returned), not the poll timeout (30 s here)."""
    server = serve([reply(202, b"")])
    policy = POLICY.replace(deadline=0.3)
    call = Call(policy=policy, poll=OUTAGE_POLL.replace(timeout=30.0), path=DEFERRED_PATH)
    outcome = run(entry, server.base_url, call)
    assert_cell(outcome, None, budget=0.3)
    assert outcome.value == (202, b"")
    assert server.requests >= 2
