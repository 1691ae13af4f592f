"""Nothing lost: the stores, the pollers' use of them, resuming, and ``as_completed`` against the
in-process emulator (``ASGITransport``). The SIGKILL test is in ``test_deferred_crash.py``.

The store contract runs on every store (``store`` / ``open_store``: SQLite and Redis; the Redis
runs skip without a ``redis-server``); what only one store has is tested alone, here for SQLite's
file and in ``test_deferred_store_redis.py`` for Redis.
"""

from __future__ import annotations

import gc
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
import pytest

import xretry
from xretry import DeferredOutcome, PollPolicy
from xretry.backends import DeferredStore, SQLiteDeferredStore
from xretry.emulator import EmulatorApp, Fault, Scenario
from xretry.testing import no_wait

from .conftest import FLAVOURS, FakeClock, Flavour
from .test_deferred import CHAT, COMPLETION, POLL, RID, Api, Reply, sync_poller

if TYPE_CHECKING:
    import redis

CANARY = "xai-CANARY-7d1e9b44c0a2f8e6"
HTTPX = FLAVOURS["httpx"]
OTHER = "5d7c1f3e-2b4a-4c6d-9e8f-0a1b2c3d4e5f"


#: Opens one more store on the same data: another process (SQLite) or another host (Redis).
OpenStore = Callable[[], DeferredStore]

#: Every store the contract runs on.
STORES = ["sqlite", "redis"]


@pytest.fixture(params=STORES)
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """One SQLite file, or one Redis prefix on a flushed database: each call opens a new store
    object (and, for Redis, a new client) on it. SQLite stores are closed at teardown."""
    if request.param == "redis":
        new_client: Callable[[], redis.Redis] = request.getfixturevalue("new_redis_client")
        from xretry.redis import RedisDeferredStore

        yield lambda: RedisDeferredStore(new_client(), prefix="test:deferred")
        return
    opened: list[SQLiteDeferredStore] = []

    def open_sqlite() -> DeferredStore:
        opened.append(SQLiteDeferredStore(tmp_path / "deferred.db"))
        return opened[-1]

    yield open_sqlite
    for each in opened:
        each.close()


@pytest.fixture
def store(open_store: OpenStore) -> DeferredStore:
    return open_store()


# -- the store on its own -------------------------------------------------------------------------


def test_lifecycle_pending_done_acknowledged(store: DeferredStore) -> None:
    assert isinstance(store, DeferredStore)
    store.add("a")
    store.add("b")
    assert store.pending() == ["a", "b"]
    store.acknowledge("a")  # nothing to acknowledge before a result: stays pending
    assert store.pending() == ["a", "b"]
    store.complete("a", {"n": 1})
    record = store.get("a")
    assert record is not None
    assert (record.state, record.result, record.acknowledged) == ("done", {"n": 1}, False)
    assert record.completed_at is not None
    assert (store.pending(), store.unacknowledged()) == (["b"], ["a"])
    store.acknowledge("a")
    assert (store.unacknowledged(), store.get("a").acknowledged) == ([], True)  # type: ignore[union-attr]
    assert store.get("missing") is None


def test_add_and_complete_keep_the_first_record(store: DeferredStore) -> None:
    store.add("a")
    first = store.get("a")
    store.add("a")
    assert store.get("a") == first
    store.complete("a", {"n": 1})
    store.complete("a", {"n": 2})
    store.fail("a", "late failure")
    record = store.get("a")
    assert record is not None
    assert (record.state, record.result, record.error) == ("done", {"n": 1}, None)
    store.complete("fresh", {"n": 3})  # a result for an id never added is still kept
    assert store.unacknowledged() == ["a", "fresh"]


def test_a_result_after_a_failure_is_kept(store: DeferredStore) -> None:
    """Two workers poll one id: one gets the 404 (and records it), the other the result."""
    store.add("a")
    store.fail("a", "404: already fetched")
    store.complete("a", {"n": 1})
    store.fail("a", "later")
    record = store.get("a")
    assert record is not None
    assert (record.state, record.result, record.error) == ("done", {"n": 1}, None)
    assert (store.pending(), store.unacknowledged()) == ([], ["a"])
    store.fail("b", "unknown id")  # a failure for an id never added is recorded too
    store.acknowledge("b")
    record = store.get("b")
    assert record is not None
    assert (record.state, record.error, record.acknowledged) == ("failed", "unknown id", True)


def test_results_round_trip_as_json(store: DeferredStore) -> None:
    result = {"text": "héllo ✓ 𝄞", "nested": [1, 2.5, None, True, {"k": "v"}], "empty": {}}
    store.complete("a", result)
    record = store.get("a")
    assert record is not None
    assert record.result == result
    assert record.submitted_at <= (record.completed_at or 0.0) <= time.time()


def test_an_unusable_body_is_kept_whole_until_a_result_replaces_it(store: DeferredStore) -> None:
    body = b"\x00\xff" + bytes(range(256)) * 100  # not UTF-8, 25 kB
    store.add("a")
    store.fail("a", "unusable body: not JSON", body=body)
    record = store.get("a")
    assert record is not None
    assert (record.state, record.body) == ("failed", body)
    store.complete("a", {"n": 1})  # another worker got the result: it replaces the failure
    assert store.get("a").body is None  # type: ignore[union-attr]
    store.fail("b", "404: gone")
    assert store.get("b").body is None  # type: ignore[union-attr]


def test_fail_ends_a_pending_job(store: DeferredStore) -> None:
    store.add("a")
    store.fail("a", "404: expired")
    record = store.get("a")
    assert record is not None
    assert (record.state, record.error, record.result) == ("failed", "404: expired", None)
    assert (store.pending(), store.unacknowledged()) == ([], [])


def test_store_survives_reopening(open_store: OpenStore) -> None:
    first = open_store()
    first.add("a")
    first.add("b")
    first.complete("b", {"n": 2})
    first.add("c")
    first.fail("c", "gone")
    records = [first.get(i) for i in "abc"]
    if isinstance(first, SQLiteDeferredStore):
        first.close()
    again = open_store()
    assert [again.get(i) for i in "abc"] == records
    assert (again.pending(), again.unacknowledged()) == (["a"], ["b"])


def test_sqlite_store_takes_a_str_path(tmp_path: Path) -> None:
    with SQLiteDeferredStore(str(tmp_path / "deferred.db")) as store:
        store.add("a")
    with SQLiteDeferredStore(tmp_path / "deferred.db") as again:
        assert again.pending() == ["a"]


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(open_store: OpenStore) -> None:
    stores = [open_store(), open_store()]  # shared and separate
    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        store = stores[worker % 2]
        try:
            barrier.wait()
            for n in range(200):
                store.add(f"{worker}-{n}")
                store.complete(f"{worker}-{n}", {"worker": worker, "n": n})
                if n % 2:
                    store.acknowledge(f"{worker}-{n}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    reopened = open_store()
    assert reopened.pending() == []
    assert len(reopened.unacknowledged()) == 8 * 100
    for worker in range(8):
        for n in range(200):
            record = reopened.get(f"{worker}-{n}")
            assert record is not None
            assert record.result == {"worker": worker, "n": n}
            assert record.acknowledged is bool(n % 2)


# -- the pollers write to it ----------------------------------------------------------------------


def test_id_recorded_before_submit_returns_result_before_wait_returns(
    flavour: Flavour, clock: FakeClock, store: DeferredStore
) -> None:
    seen_by_server: list[Any] = []
    api = Api(flavour, poll=[202, 200])

    def handler(request: Any) -> Any:
        seen_by_server.append((store.pending(), store.get(RID)))
        return api(request)

    poller = sync_poller(flavour, api, clock, store=store, handler=handler)
    assert poller.submit(**CHAT) == RID
    assert store.pending() == [RID]
    assert poller.wait(RID) == COMPLETION
    assert [pending for pending, _ in seen_by_server] == [[], [RID], [RID]]
    record = store.get(RID)
    assert record is not None
    # wait() leaves it unacknowledged: a crash before the caller saves it must not lose it.
    assert (record.state, record.result, record.acknowledged) == ("done", COMPLETION, False)
    poller.acknowledge(RID)
    record = store.get(RID)
    assert record is not None
    assert record.acknowledged


def test_a_fetched_result_is_served_from_the_store_and_never_fetched_twice(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "deferred.db"
    api = Api(flavour, poll=[200, 404])
    assert sync_poller(flavour, api, clock, store=path).wait(RID) == COMPLETION
    again = sync_poller(flavour, api, clock, store=str(path))  # a new process, the same file
    assert again.wait(RID) == COMPLETION
    assert again.wait(RID) == COMPLETION
    assert api.count("GET") == 1


@pytest.mark.parametrize(
    ("reply", "error", "state"),
    [
        pytest.param(Reply(404), xretry.DeferredNotFoundError, "failed", id="404"),
        pytest.param(Reply(400), xretry.DeferredNotFoundError, "failed", id="400"),
        pytest.param(Reply(200, b"{trunc"), xretry.DeferredResultError, "failed", id="garbage"),
        pytest.param(
            Reply(400, {"error": "Incorrect API key provided"}),
            xretry.InvalidAPIKeyError,
            "pending",
            id="bad-key",
        ),
        pytest.param(Reply(401), xretry.AuthenticationError, "pending", id="401"),
        pytest.param(Reply(503), xretry.DeferredTimeoutError, "pending", id="outage"),
        pytest.param(Reply(202), xretry.DeferredTimeoutError, "pending", id="timeout"),
    ],
)
def test_only_a_final_answer_ends_a_job_in_the_store(
    flavour: Flavour,
    clock: FakeClock,
    store: DeferredStore,
    reply: Reply,
    error: type[Exception],
    state: str,
) -> None:
    api = Api(flavour, poll=[reply])
    poller = sync_poller(flavour, api, clock, store=store)
    assert poller.submit(**CHAT) == RID
    with pytest.raises(error):
        poller.wait(RID)
    record = store.get(RID)
    assert record is not None
    assert record.state == state
    if reply.body == b"{trunc":
        assert record.body == b"{trunc"
    gets = api.count("GET")
    if state == "failed":  # a later wait answers from the store, the same way, with no request
        with pytest.raises(error):
            poller.wait(RID)
        assert api.count("GET") == gets


def test_api_key_headers_and_prompts_never_reach_the_database(
    flavour: Flavour, clock: FakeClock, tmp_path: Path
) -> None:
    path = tmp_path / "deferred.db"

    def echoing(request: Any) -> Any:  # a server that echoes the credentials back in errors
        if request.url.path.endswith(OTHER):
            text = f"unknown id for key {request.headers['authorization']}"
            return flavour.http.Response(404, json={"code": "x", "error": text})
        return api(request)

    api = Api(flavour, poll=[202, 200])
    poller = sync_poller(flavour, api, clock, store=path, handler=echoing)
    poller.client.headers["authorization"] = f"Bearer {CANARY}"
    poller.client.headers["x-custom-header"] = "HEADER-CANARY"
    assert poller.create(model="grok-4", messages=[{"role": "user", "content": "PROMPT-CANARY"}])
    with pytest.raises(xretry.DeferredNotFoundError, match=r"\*\*\*"):
        poller.wait(OTHER)
    assert store_state(path, OTHER) == "failed"
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(path.name))
    assert RID.encode() in data  # the ids and results are there...
    for secret in (CANARY, CANARY[4:], "HEADER-CANARY", "PROMPT-CANARY", "Bearer"):
        assert secret.encode() not in data  # ...and nothing else


def store_state(path: Path, request_id: str) -> str | None:
    with SQLiteDeferredStore(path) as store:
        record = store.get(request_id)
    return None if record is None else record.state


def test_resume_hands_over_unacknowledged_then_pending(
    flavour: Flavour, clock: FakeClock, store: DeferredStore
) -> None:
    store.complete("fetched", {"id": "stored"})  # fetched before the crash, never handed over
    store.complete("handled", {"id": "old"})
    store.acknowledge("handled")
    store.add(RID)  # pending: ready now
    store.add(OTHER)  # pending: never ready

    def handler(request: Any) -> Any:
        return api(request) if request.url.path.endswith(RID) else flavour.http.Response(202)

    api = Api(flavour)
    poller = sync_poller(flavour, api, clock, store=store, handler=handler)
    outcomes = poller.resume(timeout=5.0)
    first = next(outcomes)
    assert (first.request_id, first.completion, first.error) == ("fetched", {"id": "stored"}, None)
    assert store.unacknowledged() == ["fetched"]  # acknowledged only when the next one is asked
    rest = list(outcomes)
    assert [o.request_id for o in rest] == [RID, OTHER]
    assert (rest[0].ok, rest[0].completion) == (True, COMPLETION)
    assert isinstance(rest[1].error, xretry.DeferredTimeoutError)
    assert rest[1].error.request_id == OTHER
    assert (store.unacknowledged(), store.pending()) == ([], [OTHER])
    assert api.count("GET") == 1


def test_resume_needs_a_store(flavour: Flavour, clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="store"):
        next(sync_poller(flavour, Api(flavour), clock).resume())


def test_a_result_wait_returned_to_a_crashing_caller_is_handed_over_again(
    flavour: Flavour, clock: FakeClock, open_store: OpenStore
) -> None:
    api = Api(flavour)
    assert sync_poller(flavour, api, clock, store=open_store()).create(**CHAT) == COMPLETION
    # the process dies here, before the application saved the completion; on restart:
    restarted = sync_poller(flavour, api, clock, store=open_store())
    assert [(o.request_id, o.completion) for o in restarted.resume()] == [(RID, COMPLETION)]


# -- as_completed against the emulator ------------------------------------------------------------


class Counting:
    """Wraps an async transport: counts requests in flight (held over a few checkpoints)."""

    def __init__(self, flavour: Flavour, inner: Any) -> None:
        base = flavour.http.AsyncBaseTransport
        counting = self

        class Transport(base):  # type: ignore[misc,valid-type]
            async def handle_async_request(self, request: Any) -> Any:
                counting.now += 1
                counting.peak = max(counting.peak, counting.now)
                try:
                    for _ in range(3):
                        await anyio.lowlevel.checkpoint()
                    return await inner.handle_async_request(request)
                finally:
                    counting.now -= 1

        self.transport = Transport()
        self.now = 0
        self.peak = 0


def trickle(flavour: Flavour, body: bytes, started: anyio.Event) -> Any:
    """A response body on the wire: the first half, then a long while, then the rest."""

    class Stream(flavour.http.AsyncByteStream):  # type: ignore[misc,name-defined]
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield body[: len(body) // 2]
            started.set()
            for _ in range(1000):
                await anyio.lowlevel.checkpoint()
            yield body[len(body) // 2 :]

    return Stream()


def emulated(
    flavour: Flavour, app: EmulatorApp, **kwargs: Any
) -> tuple[xretry.AsyncDeferredCompletions, Counting]:
    counting = Counting(flavour, flavour.http.ASGITransport(app=app))
    client = flavour.http.AsyncClient(
        base_url="http://emulator/v1",
        transport=counting.transport,
        headers={"authorization": "Bearer k"},
    )
    poll = PollPolicy(first_delay=0.0, interval=0.01, jitter=0.0, timeout=30.0)
    return xretry.AsyncDeferredCompletions(
        client, poll=kwargs.pop("poll", poll), **kwargs
    ), counting


def bodies(n: int) -> list[dict[str, Any]]:
    return [{**CHAT, "messages": [{"role": "user", "content": f"job {i}"}]} for i in range(n)]


@pytest.mark.anyio
async def test_as_completed_delivers_every_result_exactly_once(
    flavour: Flavour, store: DeferredStore
) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poller, counting = emulated(flavour, app, store=store)
    outcomes: list[DeferredOutcome] = []
    async with poller.as_completed(bodies(50), concurrency=5) as results:
        async for outcome in results:
            if outcomes:  # the previous one was acknowledged when this one was asked for
                assert store.get(outcomes[-1].request_id).acknowledged  # type: ignore[union-attr]
            assert not store.get(outcome.request_id).acknowledged  # type: ignore[union-attr]
            outcomes.append(outcome)
    assert all(o.ok for o in outcomes), [o.error for o in outcomes if not o.ok]
    assert len({o.request_id for o in outcomes}) == 50
    prompts = {o.completion["choices"][0]["message"]["content"] for o in outcomes if o.completion}
    assert prompts == {f"Emulated reply to: job {i}" for i in range(50)}
    stats = app.stats()
    assert (stats["deferred_submitted"], stats["deferred_delivered"]) == (50, 50)
    assert "status.404" not in stats
    assert (store.pending(), store.unacknowledged()) == ([], [])
    assert counting.peak == 5


@pytest.mark.anyio
@pytest.mark.parametrize("concurrency", [1, 3, 16])
async def test_as_completed_respects_the_concurrency_bound(
    flavour: Flavour, concurrency: int
) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    # No pacing at all: the bound alone must hold the requests in flight to `concurrency`.
    poller, counting = emulated(flavour, app, gate=False)
    ids = [await poller.submit(**body) for body in bodies(20)]
    async with poller.as_completed([*ids, *bodies(20)], concurrency=concurrency) as results:
        outcomes = [outcome async for outcome in results]
    assert len(outcomes) == 40
    assert all(o.ok for o in outcomes)
    assert counting.peak == concurrency
    assert app.stats()["deferred_delivered"] == 40


@pytest.mark.anyio
async def test_as_completed_failures_are_outcomes_not_aborts(flavour: Flavour) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poller, _ = emulated(flavour, app)
    jobs: list[Any] = [*bodies(3), {"model": "grok-4"}, "unknown-id", *bodies(3)]
    async with poller.as_completed(jobs, concurrency=2) as results:
        outcomes = [outcome async for outcome in results]
    assert len(outcomes) == 8
    failed = {type(o.error): o for o in outcomes if not o.ok}
    assert set(failed) == {xretry.UnprocessableEntityError, xretry.DeferredNotFoundError}
    assert failed[xretry.UnprocessableEntityError].request_id == ""
    assert failed[xretry.DeferredNotFoundError].request_id == "unknown-id"
    assert sum(o.ok for o in outcomes) == 6
    assert app.stats()["deferred_delivered"] == 6


@pytest.mark.anyio
async def test_as_completed_resume_picks_up_the_store(
    flavour: Flavour, open_store: OpenStore
) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    first, _ = emulated(flavour, app, store=open_store())
    submitted = [await first.submit(**body) for body in bodies(5)]  # then the process "dies"
    open_store().complete("fetched-earlier", {"id": "stored"})
    again, _ = emulated(flavour, app, store=open_store())
    async with again.as_completed([submitted[0]], resume=True) as results:
        outcomes = [outcome async for outcome in results]
    assert sorted(o.request_id for o in outcomes) == sorted([*submitted, "fetched-earlier"])
    assert all(o.ok for o in outcomes)
    stats = app.stats()
    assert (stats["deferred_delivered"], stats.get("status.404")) == (5, None)
    assert stats["polls"] == 5  # the stored one was not asked for
    store = open_store()
    assert (store.pending(), store.unacknowledged()) == ([], [])
    with pytest.raises(ValueError, match="store"):
        async with emulated(flavour, app)[0].as_completed(resume=True):
            pass  # pragma: no cover


@pytest.mark.anyio
async def test_as_completed_uses_the_injected_clock_and_sleep(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poll = POLL.replace(first_delay=5.0)
    poller, _ = emulated(HTTPX, app, poll=poll, clock=clock, sleep=clock.asleep)
    outcomes: list[DeferredOutcome] = []
    with anyio.move_on_after(0.25):  # a safety net: this should take no real time
        async with poller.as_completed(bodies(3)) as results:
            outcomes = [outcome async for outcome in results]
    assert clock.slept == [5.0]
    assert [o.ok for o in outcomes] == [True] * 3


@pytest.mark.anyio
async def test_as_completed_under_no_wait_records_each_wait_once() -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poller, _ = emulated(HTTPX, app, poll=POLL.replace(first_delay=0.1))
    started = time.monotonic()
    with no_wait() as schedule:
        async with poller.as_completed(bodies(3)) as results:
            outcomes = [outcome async for outcome in results]
    assert len(outcomes) == 3
    assert time.monotonic() - started < 0.1
    assert 1 <= len(schedule.delays) <= 3, len(schedule.delays)


@pytest.mark.anyio
async def test_leaving_as_completed_early_loses_no_fetched_result(
    flavour: Flavour, open_store: OpenStore
) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poller, counting = emulated(flavour, app, store=open_store())
    slow, fast = await poller.submit(**CHAT), await poller.submit(**CHAT)
    in_transit = anyio.Event()
    inner = counting.transport.handle_async_request

    async def delivery(request: Any) -> Any:
        if request.url.path.endswith(fast):
            await in_transit.wait()  # answer the fast one while the slow one's body is in transit
            return await inner(request)
        response = await inner(request)  # the server has now handed the result over, once
        await response.aread()
        return flavour.http.Response(200, stream=trickle(flavour, response.content, in_transit))

    counting.transport.handle_async_request = delivery  # type: ignore[method-assign]
    async with poller.as_completed([slow, fast], concurrency=2) as results:
        async for outcome in results:
            assert outcome.request_id == fast
            break  # the caller leaves early; the slow one must stay resumable
        await results.aclose()  # type: ignore[attr-defined]  # (see the ResourceWarning test)
    again, _ = emulated(flavour, app, store=open_store())
    async with again.as_completed(resume=True) as results:
        outcomes = [outcome async for outcome in results]
    assert {o.request_id: o.ok for o in outcomes} == {slow: True, fast: True}
    assert app.stats()["deferred_delivered"] == 2


@pytest.mark.anyio
async def test_leaving_as_completed_early_warns_nothing(flavour: Flavour) -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    poller, _ = emulated(flavour, app)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with poller.as_completed(bodies(3)) as results:
            async for _outcome in results:
                break
        del results
        gc.collect()
        await anyio.lowlevel.checkpoint()
    assert [str(w.message) for w in caught] == []


@pytest.mark.anyio
async def test_as_completed_outlasts_429s_and_5xx_on_paid_for_jobs(flavour: Flavour) -> None:
    """A run of errors longer than the policy's attempts reschedules the job, never ends it."""
    scenario = Scenario(
        ready_after=(0.0, 0.0),
        faults=(
            Fault("status", status=503, schedule=((1, 8),), endpoints=frozenset({"chat"})),
            Fault("status", status=429, schedule=((1, 12),), endpoints=frozenset({"deferred"})),
        ),
    )
    app = EmulatorApp(scenario)
    policy = xretry.RetryPolicy(max_attempts=2)
    poller, _ = emulated(flavour, app, policy=policy)
    with xretry.testing.no_wait():
        async with poller.as_completed(bodies(3), concurrency=2) as results:
            outcomes = [outcome async for outcome in results]
    assert [o.error for o in outcomes] == [None, None, None]
    stats = app.stats()
    assert stats["deferred_delivered"] == 3
    assert stats["faults.status"] == 8 + 12
