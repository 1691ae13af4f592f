"""Nothing paid for is lost (docs/guarantees.md, section 3), under the faults of issue 11:

a store that cannot write (a lock held by another process past the busy timeout) when an id or a
result arrives; a 200 that is not JSON; a cancellation while a 200 is arriving, or while a poll
waits out a 503; ids the server returns that the old check refused; a poll timeout reached
through 429s and 5xx; a 404 that is not the API's; and an outer ``@xretry.retry`` around
``create()``. Scripted servers (``MockTransport``), an injected clock and sleep: nothing sleeps.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import xretry
from xretry.backends import SQLiteDeferredStore

from .conftest import FakeClock, Flavour
from .test_deferred import API, AUTH, CHAT, COMPLETION, POLICY, POLL, RID, Api, Reply, sync_poller

KEY = AUTH["authorization"].removeprefix("Bearer ")
#: A lock held longer than this is the store's failure to write.
BUSY = 0.05


@contextmanager
def locked_by_another_process(path: Path) -> Iterator[None]:
    """Another process holds the SQLite write lock (a backup, a migration) until the block ends."""
    SQLiteDeferredStore(path).close()  # the file and its schema exist
    code = (
        "import sqlite3, sys\n"
        f"db = sqlite3.connect({str(path)!r}, isolation_level=None)\n"
        "db.execute('BEGIN IMMEDIATE')\n"
        "print('locked', flush=True)\n"
        "sys.stdin.read()\n"
        "db.execute('ROLLBACK')\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        assert holder.stdout is not None
        holder.stdout.close()


def store_at(path: Path) -> SQLiteDeferredStore:
    return SQLiteDeferredStore(path, timeout=BUSY)


def async_client(flavour: Flavour, handler: Any) -> Any:
    return flavour.http.AsyncClient(base_url=API, transport=flavour.mock(handler), headers=AUTH)


# -- 1. a result the store cannot record -----------------------------------------------------------


def test_a_result_the_locked_store_cannot_record_is_handed_over_later(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "deferred.db"
    store = store_at(path)
    api = Api(flavour, poll=[200, 404])  # read-once: asked again, the server says 404
    poller = sync_poller(flavour, api, clock, store=store)
    with locked_by_another_process(path):
        with pytest.raises(xretry.DeferredStoreError) as caught:
            poller.wait(RID)
        error = caught.value
        assert isinstance(error, OSError)
        assert (error.request_id, error.completion) == (RID, COMPLETION)
        assert RID in str(error)
        with pytest.raises(xretry.DeferredStoreError):  # still locked: kept, not asked again
            poller.wait(RID)
    assert poller.wait(RID) == COMPLETION  # recorded now, then handed over
    record = store.get(RID)
    assert record is not None
    assert (record.state, record.result) == ("done", COMPLETION)
    assert api.count("GET") == 1
    store.close()


def test_a_store_error_is_an_oserror_naming_the_file_and_the_id(tmp_path: Path) -> None:
    path = tmp_path / "deferred.db"
    store = store_at(path)
    with locked_by_another_process(path), pytest.raises(OSError, match=RID) as caught:
        store.add(RID)
    assert str(path) in str(caught.value)
    assert RID in str(caught.value)
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    store.add(RID)  # the connection is usable again
    assert store.pending() == [RID]
    store.close()


# -- 2. an id the store cannot record --------------------------------------------------------------


def test_submit_with_the_store_locked_never_loses_the_id(
    flavour: Flavour, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "deferred.db"
    store = store_at(path)
    api = Api(flavour)
    poller = sync_poller(flavour, api, clock, store=store)
    caplog.set_level(logging.WARNING, logger="xretry")
    with locked_by_another_process(path):
        with pytest.raises(xretry.DeferredStoreError) as caught:
            poller.submit(**CHAT)
        assert isinstance(caught.value, OSError)
        assert (caught.value.request_id, caught.value.completion) == (RID, None)
        # create() goes on with the id it was given: its result is recorded with it later
        with pytest.raises(xretry.DeferredStoreError) as again:
            poller.create(**CHAT)
        assert again.value.completion == COMPLETION
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(RID in line and "billed" in line for line in warnings), warnings
    assert not any(KEY in line or "Bearer" in line for line in warnings)
    assert poller.wait(RID) == COMPLETION
    assert store.get(RID).state == "done"  # type: ignore[union-attr]
    assert (api.count("POST"), api.count("GET")) == (2, 1)
    store.close()


@pytest.mark.anyio
async def test_as_completed_polls_a_job_whose_id_the_store_could_not_record(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "deferred.db"
    store = store_at(path)
    api = Api(flavour, poll=[202, 200])
    api.clock = clock
    poller = xretry.AsyncDeferredCompletions(
        async_client(flavour, api), store=store, poll=POLL, sleep=clock.asleep, clock=clock
    )
    with locked_by_another_process(path):
        async with poller.as_completed([CHAT]) as results:
            outcomes = [outcome async for outcome in results]
    # submitted, polled all the same, fetched: the result is on the error, and kept
    [outcome] = outcomes
    assert outcome.request_id == RID
    assert isinstance(outcome.error, xretry.DeferredStoreError)
    assert outcome.error.completion == COMPLETION
    async with poller.as_completed([RID]) as results:
        outcomes = [outcome async for outcome in results]
    assert [(o.request_id, o.completion) for o in outcomes] == [(RID, COMPLETION)]
    assert store.get(RID).state == "done"  # type: ignore[union-attr]
    assert (api.count("POST"), api.count("GET")) == (1, 2)
    store.close()


# -- 3. a 200 that is not JSON ---------------------------------------------------------------------


def big_body_with_a_bad_byte() -> bytes:
    text = "x" * 20_000
    body = json.dumps({**COMPLETION, "choices": [{"message": {"content": text}}]}).encode()
    return body[:10_000] + b"\xff" + body[10_000:]


def test_an_unusable_200_is_kept_whole_and_answered_the_same_later(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    body = big_body_with_a_bad_byte()
    path = tmp_path / "deferred.db"
    api = Api(flavour, poll=[Reply(200, body), 404])
    with pytest.raises(xretry.DeferredResultError) as caught:
        sync_poller(flavour, api, clock, store=path).wait(RID)
    assert caught.value.body == body
    with SQLiteDeferredStore(path) as store:
        record = store.get(RID)
    assert record is not None
    assert (record.state, record.body) == ("failed", body)
    later = sync_poller(flavour, api, clock, store=path)  # another process, the same file
    with pytest.raises(xretry.DeferredResultError) as again:
        later.wait(RID)
    assert again.value.body == body
    assert api.count("GET") == 1


def test_an_older_database_is_migrated_and_its_failures_still_read(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE xretry_deferred (request_id TEXT PRIMARY KEY, state TEXT NOT NULL CHECK "
        "(state IN ('pending', 'done', 'failed')), result TEXT, error TEXT, submitted_at REAL "
        "NOT NULL, completed_at REAL, acknowledged INTEGER NOT NULL DEFAULT 0)"
    )
    old.execute(
        "INSERT INTO xretry_deferred VALUES ('old', 'failed', NULL, "
        "'unusable body: b''{trunc''', 1.0, 2.0, 0)"
    )
    old.execute("INSERT INTO xretry_deferred VALUES ('p', 'pending', NULL, NULL, 1.0, NULL, 0)")
    old.commit()
    old.close()
    with SQLiteDeferredStore(path) as store, SQLiteDeferredStore(path) as twice:
        assert store.pending() == twice.pending() == ["p"]
        record = store.get("old")
        assert record is not None
        assert (record.state, record.body) == ("failed", None)
        store.fail("p", "unusable body: x", body=b"\x00\xff")
        assert twice.get("p").body == b"\x00\xff"  # type: ignore[union-attr]
    poller = sync_poller(flavour, Api(flavour), clock, store=path)
    with pytest.raises(xretry.DeferredResultError, match="not kept"):  # not a 404
        poller.wait("old")


# -- 4. cancelled while the 200 arrives ------------------------------------------------------------


def trickling(flavour: Flavour, body: bytes, cancel: Any) -> Any:
    """A 200 whose body is on the wire when ``cancel()`` is called (a fail_after firing)."""

    class Stream(flavour.http.AsyncByteStream):  # type: ignore[misc,name-defined]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield body[:10]
            cancel()
            await anyio.lowlevel.checkpoint()
            yield body[10:]

    return flavour.http.Response(200, stream=Stream())


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["no-store", "store"])
async def test_wait_cancelled_while_the_200_arrives_keeps_it(
    flavour: Flavour, clock: FakeClock, tmp_path: Path, kind: str
) -> None:
    gets: list[str] = []
    scope = anyio.CancelScope()

    def handler(request: Any) -> Any:
        gets.append(request.url.path)
        if len(gets) > 1:  # read-once
            return flavour.http.Response(404, json={"code": "x", "error": "not found"})
        return trickling(flavour, json.dumps(COMPLETION).encode(), scope.cancel)

    store = SQLiteDeferredStore(tmp_path / "d.db") if kind == "store" else None
    poller = xretry.AsyncDeferredCompletions(
        async_client(flavour, handler), store=store, poll=POLL, sleep=clock.asleep, clock=clock
    )
    got = None
    with scope:
        got = await poller.wait(RID)  # the result in transit is read to the end, shielded
    if store is not None:
        assert store.get(RID).state == "done"  # type: ignore[union-attr]
    if got is None:  # the cancellation came after it was kept: the next wait hands it over
        assert scope.cancelled_caught
        got = await poller.wait(RID)
    assert got == COMPLETION
    assert len(gets) == 1
    if store is not None:
        store.close()


# -- 5. leaving as_completed during a retry-after loop ---------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("status", [503, 429])
async def test_leaving_as_completed_does_not_wait_out_a_retry_after_loop(
    flavour: Flavour, clock: FakeClock, status: int
) -> None:
    api = Api(flavour, poll=[Reply(status, headers={"retry-after": "60"})])
    api.clock = clock
    scope = anyio.CancelScope()
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds
        scope.cancel()  # the caller leaves (fail_after) during the first wait
        await anyio.lowlevel.checkpoint()

    poller = xretry.AsyncDeferredCompletions(
        async_client(flavour, api),
        poll=POLL.replace(timeout=600.0),
        gate=False,
        sleep=sleep,
        clock=clock,
    )
    with scope:
        async with poller.as_completed([RID]) as results:
            async for _outcome in results:
                pass  # pragma: no cover
    assert scope.cancelled_caught
    assert sleeps == [60.0]  # left during the first wait: no further poll, no further wait
    assert api.count("GET") == 1


# -- 6. ids ----------------------------------------------------------------------------------------


def test_resume_goes_past_an_id_it_cannot_poll(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    with SQLiteDeferredStore(tmp_path / "d.db") as store:
        for request_id in ("AbC+dEf==", "bad/id", RID):
            store.add(request_id)
        poller = sync_poller(flavour, Api(flavour), clock, store=store)
        outcomes = {o.request_id: o for o in poller.resume()}
        assert list(outcomes) == ["AbC+dEf==", "bad/id", RID]
        assert outcomes["AbC+dEf=="].completion == COMPLETION
        assert isinstance(outcomes["bad/id"].error, xretry.DeferredIdError)
        assert outcomes[RID].completion == COMPLETION


def test_an_id_submit_cannot_poll_is_carried_logged_and_recorded(
    flavour: Flavour, clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    api = Api(flavour, submit=[Reply(200, {"request_id": "abc/def"})])
    caplog.set_level(logging.WARNING, logger="xretry")
    with SQLiteDeferredStore(tmp_path / "d.db") as store:
        poller = sync_poller(flavour, api, clock, store=store)
        with pytest.raises(xretry.DeferredIdError) as caught:
            poller.submit(**CHAT)
        assert caught.value.request_id == "abc/def"
        assert store.get("abc/def").state == "failed"  # type: ignore[union-attr]
    assert any("abc/def" in r.getMessage() for r in caplog.records)


# -- 7 and 10. a poll timeout reached through 429s, 5xx or connection errors -----------------------


def refused(flavour: Flavour) -> Any:
    def handler(request: Any) -> Any:
        raise flavour.http.ConnectError("connection refused", request=request)

    return handler


@pytest.mark.parametrize(
    ("reply", "gets"),
    [
        pytest.param(Reply(503), 2, id="503"),
        pytest.param(Reply(429), 2, id="429"),
        pytest.param(Reply(429, headers={"retry-after": "30"}), 1, id="429-hint-past-timeout"),
        pytest.param(Reply(503, headers={"retry-after": "30"}), 1, id="503-hint-past-timeout"),
    ],
)
def test_wait_through_errors_ends_in_a_timeout_with_the_id(
    flavour: Flavour, clock: FakeClock, reply: Reply, gets: int
) -> None:
    api = Api(flavour, poll=[reply])
    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        sync_poller(flavour, api, clock, gate=False).wait(RID, timeout=1.0)
    assert caught.value.request_id == RID
    assert str(reply.status) in str(caught.value)
    assert api.count("GET") == gets


@pytest.mark.anyio
async def test_async_wait_through_errors_ends_in_a_timeout_with_the_id(
    flavour: Flavour, clock: FakeClock
) -> None:
    for handler in (
        Api(flavour, poll=[Reply(429, headers={"retry-after": "30"})]),
        refused(flavour),
    ):
        poller = xretry.AsyncDeferredCompletions(
            async_client(flavour, handler),
            policy=POLICY,
            poll=POLL,
            gate=False,
            sleep=clock.asleep,
            clock=clock,
        )
        with pytest.raises(xretry.DeferredTimeoutError) as caught:
            await poller.wait(RID, timeout=1.0)
        assert caught.value.request_id == RID


@pytest.mark.parametrize("outage", ["503", "refused"])
def test_retry_around_create_never_submits_twice(
    flavour: Flavour, clock: FakeClock, outage: str
) -> None:
    api = Api(flavour, poll=[503])

    def handler(request: Any) -> Any:
        if request.method == "GET" and outage == "refused":
            return refused(flavour)(request)
        return api(request)

    poller = sync_poller(flavour, api, clock, handler=handler, gate=False)

    @xretry.retry(policy=POLICY, sleep=clock.sleep, clock=clock, gate=False)
    def ask() -> dict[str, Any]:
        return poller.create(**CHAT, timeout=5.0)

    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        ask()
    assert caught.value.request_id == RID
    assert api.count("POST") == 1


@pytest.mark.anyio
async def test_async_retry_around_create_never_submits_twice(
    flavour: Flavour, clock: FakeClock
) -> None:
    api = Api(flavour, poll=[503])
    api.clock = clock
    poller = xretry.AsyncDeferredCompletions(
        async_client(flavour, api),
        policy=POLICY,
        poll=POLL,
        gate=False,
        sleep=clock.asleep,
        clock=clock,
    )

    @xretry.retry(policy=POLICY, sleep=clock.asleep, clock=clock, gate=False)
    async def ask() -> dict[str, Any]:
        return await poller.create(**CHAT, timeout=5.0)

    with pytest.raises(xretry.DeferredTimeoutError):
        await ask()
    assert api.count("POST") == 1


# -- 8. a 404 that is not the API's ----------------------------------------------------------------


@pytest.mark.parametrize(
    "not_found",
    [
        pytest.param(Reply(404, b"<html><body>404 Not Found</body></html>"), id="html"),
        pytest.param(Reply(404, b""), id="empty"),
        pytest.param(Reply(404, {"message": "no Route matched"}), id="gateway-json"),
    ],
)
def test_a_404_that_is_not_the_apis_leaves_the_job_pending(
    flavour: Flavour, clock: FakeClock, tmp_path: Path, not_found: Reply
) -> None:
    api = Api(flavour, poll=[not_found, 200])
    with SQLiteDeferredStore(tmp_path / "d.db") as store:
        poller = sync_poller(flavour, api, clock, store=store)
        store.add(RID)
        with pytest.raises(xretry.DeferredPollError) as caught:
            poller.wait(RID)
        assert caught.value.request_id == RID
        assert store.pending() == [RID]
        assert [o.completion for o in poller.resume()] == [COMPLETION]  # asked again
    assert api.count("GET") == 2


def test_an_xai_404_is_final(flavour: Flavour, clock: FakeClock, tmp_path: Path) -> None:
    api = Api(flavour, poll=[Reply(404, {"code": "Not found", "error": "no such id"}), 200])
    with SQLiteDeferredStore(tmp_path / "d.db") as store:
        poller = sync_poller(flavour, api, clock, store=store)
        store.add(RID)
        with pytest.raises(xretry.DeferredNotFoundError):
            poller.wait(RID)
        with pytest.raises(xretry.DeferredNotFoundError, match="no such id"):
            poller.wait(RID)  # from the store
        assert store.pending() == []
    assert api.count("GET") == 1
