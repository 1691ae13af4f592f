"""Paid-for results under the faults around the wire: the store failing at each write, and the
caller cancelling at each await of the pollers, over real loopback sockets.

Store faults (the emulator; a store that raises ``OSError``, as a locked SQLite or an unreachable
Redis does, at one write): ``add`` (submit), ``complete`` (a fetched result), ``fail`` (an
unusable 200, kept whole) and ``acknowledge`` (as_completed). Whatever fails, the id and the
result are carried by the error or delivered, and once the store is back the same poller
records and hands the result over without asking the server again (the emulator counts
deliveries: exactly one).

Cancellations (the scripted raw server, asyncio and trio): while the submission is sent, during
``create``'s first delay, while a poll waits for its answer, while a 200's body is arriving, in
the gap after a 202 and in a 503's ``retry-after``. Leaving is prompt everywhere (well under the
server's one-second hint); a result whose body was arriving is kept (returned, or handed over by
the next ``wait`` without another request), and any other job is left to poll again.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

import anyio
import pytest

import xretry
from xretry.backends import SQLiteDeferredStore
from xretry.emulator import EmulatorApp, Fault

from ._emulator import aimed, submit_job
from ._harness import (
    AUTH,
    CHAT,
    LIBS,
    POLICY,
    POLL,
    POOL_TIMEOUT,
    SLACK,
    TLS,
    Entry,
    leaked_fds,
    open_fds,
)
from ._raw_server import RID, delayed, ok, reply, slow_body
from .conftest import Emulator, Serve

Write = Literal["add", "complete", "fail", "acknowledge"]
Kind = Literal["submit", "wait", "create", "as_completed", "batch"]
Mode = Literal["sync", "asyncio", "trio"]


class FailingStore:
    """A SQLite store whose ``failing`` write raises ``OSError`` until ``heal()``."""

    def __init__(self, path: Path, failing: Write) -> None:
        self.inner = SQLiteDeferredStore(path)
        self.failing: Write | None = failing
        self.failures = 0
        #: Every id a write was asked for, in order.
        self.ids: list[str] = []

    def heal(self) -> None:
        self.failing = None

    def _check(self, action: str, request_id: str) -> None:
        self.ids.append(request_id)
        if action == self.failing:
            self.failures += 1
            raise OSError(f"the deferred store could not {action}: database is locked")

    def add(self, request_id: str) -> None:
        self._check("add", request_id)
        self.inner.add(request_id)

    def complete(self, request_id: str, result: Any) -> None:
        self._check("complete", request_id)
        self.inner.complete(request_id, result)

    def fail(self, request_id: str, error: str, *, body: bytes | None = None) -> None:
        self._check("fail", request_id)
        self.inner.fail(request_id, error, body=body)

    def acknowledge(self, request_id: str) -> None:
        self._check("acknowledge", request_id)
        self.inner.acknowledge(request_id)

    def get(self, request_id: str) -> Any:
        return self.inner.get(request_id)

    def pending(self) -> list[str]:
        return self.inner.pending()

    def unacknowledged(self) -> list[str]:
        return self.inner.unacknowledged()


#: Which entry points make which write.
WRITES: dict[Write, tuple[Kind, ...]] = {
    "add": ("submit", "create", "batch"),
    "complete": ("wait", "create", "as_completed", "batch"),
    "fail": ("wait", "create", "as_completed", "batch"),
    "acknowledge": ("as_completed", "batch"),
}
ASYNC_ONLY = ("as_completed", "batch")


def store_cells() -> list[Any]:
    params = []
    for write, kinds in WRITES.items():
        for kind in kinds:
            for lib in LIBS:
                for mode in ("sync", "asyncio", "trio"):
                    if kind in ASYNC_ONLY and mode == "sync":
                        continue
                    params.append(
                        pytest.param(write, kind, lib, mode, id=f"{write}-{kind}-{lib}-{mode}")
                    )
    return params


def client_kwargs(base_url: str) -> dict[str, Any]:
    return {"base_url": base_url, "headers": AUTH, "verify": TLS, "trust_env": False}


async def _async_first(kind: Kind, poller: xretry.AsyncDeferredCompletions, request_id: str) -> Any:
    """The call under test: its value, or the exception it raised."""
    try:
        if kind == "submit":
            return await poller.submit(**CHAT)
        if kind == "wait":
            return await poller.wait(request_id)
        if kind == "create":
            return await poller.create(**CHAT)
        job: Any = CHAT if kind == "batch" else request_id
        async with poller.as_completed([job]) as results:
            outcomes = [outcome async for outcome in results]
        assert len(outcomes) == 1, outcomes
        return outcomes[0].error or outcomes[0].completion
    except Exception as exc:
        return exc


def _sync_first(kind: Kind, poller: xretry.DeferredCompletions, request_id: str) -> Any:
    try:
        if kind == "submit":
            return poller.submit(**CHAT)
        if kind == "wait":
            return poller.wait(request_id)
        return poller.create(**CHAT)
    except Exception as exc:
        return exc


def _issued(store: FailingStore, first: Any, known: str) -> str:
    """The id the call was about: given, returned, carried by the error, or in the store."""
    if known:
        return known
    if isinstance(first, str):
        return first
    if isinstance(first, xretry.DeferredError):
        return first.request_id
    ids = set(store.ids)
    assert len(ids) == 1, (first, store.ids)
    return store.ids[0]


@pytest.mark.parametrize(("write", "kind", "lib", "mode"), store_cells())
def test_the_store_failing_at_a_write_loses_nothing(
    write: Write, kind: Kind, lib: str, mode: Mode, emulator: Emulator, tmp_path: Path
) -> None:
    garbage = write == "fail"
    faults = (Fault("garbage", schedule=(1,)),) if garbage else ()
    app = EmulatorApp(aimed(Entry("wait", lib, "sync"), *faults, endpoint="deferred"))
    base_url = emulator(app)
    submits = kind in ("submit", "create", "batch")
    request_id = "" if submits else submit_job(base_url)
    store = FailingStore(tmp_path / "deferred.db", write)
    try:
        _store_cell(write, kind, lib, mode, app, base_url, request_id, store)
    finally:
        store.inner.close()


def _store_cell(
    write: Write,
    kind: Kind,
    lib: str,
    mode: Mode,
    app: EmulatorApp,
    base_url: str,
    request_id: str,
    store: FailingStore,
) -> None:
    http = LIBS[lib]
    before = open_fds()
    started = time.monotonic()
    options: dict[str, Any] = {"policy": POLICY, "poll": POLL, "store": store}
    if mode == "sync":
        with http.Client(**client_kwargs(base_url)) as client:
            poller = xretry.DeferredCompletions(client, **options)
            first = _sync_first(kind, poller, request_id)
            request_id = _issued(store, first, request_id)
            store.heal()
            try:
                later: Any = poller.wait(request_id)
            except Exception as exc:
                later = exc
    else:

        async def main() -> tuple[Any, Any, str]:
            async with http.AsyncClient(**client_kwargs(base_url)) as client:
                poller = xretry.AsyncDeferredCompletions(client, **options)
                first = await _async_first(kind, poller, request_id)
                issued = _issued(store, first, request_id)
                store.heal()
                try:
                    later: Any = await poller.wait(issued)
                except Exception as exc:
                    later = exc
                return first, later, issued

        first, later, request_id = anyio.run(main, backend=mode)
    elapsed = time.monotonic() - started
    assert elapsed <= POLICY.deadline + SLACK  # type: ignore[operator]
    assert leaked_fds(before) == {}
    stats = app.stats()
    if write == "add":
        # submit(): the id on the error; create and batch poll it all the same.
        if kind == "submit":
            assert isinstance(first, xretry.DeferredStoreError), first
            assert (first.request_id, first.completion) == (request_id, None)
        else:
            assert first == later, (first, later)
            assert isinstance(first, dict), first
            assert first["object"] == "chat.completion"
    elif write == "acknowledge":
        # handed over; the acknowledgement is retried by a later resume (at least once)
        assert isinstance(first, dict), first
        assert store.unacknowledged() == [request_id]
    elif write == "fail":
        assert isinstance(first, xretry.DeferredStoreError), first
        assert (first.completion, first.body) == (None, b"\x00\xffthis is not json{")
        assert isinstance(later, xretry.DeferredResultError), later
        assert later.body == first.body
        assert store.get(request_id).body == first.body
    else:
        assert isinstance(first, xretry.DeferredStoreError), first
        assert isinstance(first, OSError)
        assert first.request_id == request_id
        assert first.completion == later
        assert store.get(request_id).state == "done"
    assert store.failures == 1
    # the server handed the result over once, and nobody asked again
    assert stats.get("requests.deferred", 0) == 1, stats


# -- cancellation at each await of the pollers ----------------------------------------------------

Point = Literal["submit-sent", "first-delay", "poll-sent", "body", "poll-gap", "retry-wait"]
#: Where each point can strike.
POINTS: dict[Point, tuple[Kind, ...]] = {
    "submit-sent": ("create", "batch"),
    "first-delay": ("create", "batch"),
    "poll-sent": ("wait", "create", "as_completed", "batch"),
    "body": ("wait", "create", "as_completed", "batch"),
    "poll-gap": ("wait", "create", "as_completed", "batch"),
    "retry-wait": ("wait", "create", "as_completed", "batch"),
}
#: Small waits that tell the pollers' sleeps apart: first delay, 202 gap, a 503's retry-after.
CANCEL_POLL = POLL.replace(first_delay=0.05, interval=0.01, max_interval=0.01, timeout=5.0)
UNAVAILABLE = reply(503, b'{"code": "x", "error": "unavailable"}', [("retry-after", "1")])
#: Leaving must take well under the server's 1 s retry-after.
PROMPT = 0.5


def cancel_cells() -> list[Any]:
    return [
        pytest.param(point, kind, lib, mode, id=f"{point}-{kind}-{lib}-{mode}")
        for point, kinds in POINTS.items()
        for kind in kinds
        for lib in LIBS
        for mode in ("asyncio", "trio")
    ]


def _script(point: Point, kind: Kind) -> list[Any]:
    scripts: dict[str, list[Any]] = {
        "submit-sent": [ok],
        "first-delay": [ok],
        "poll-sent": [delayed(1.0, ok), ok],
        "body": [slow_body(0.3), reply(404, b'{"code": "x", "error": "gone"}')],
        "poll-gap": [reply(202, b""), ok],
        "retry-wait": [UNAVAILABLE, ok],
    }
    polls = scripts[point]
    return [ok, *polls] if kind in ("create", "batch") else polls


@pytest.mark.parametrize(("point", "kind", "lib", "mode"), cancel_cells())
def test_cancelling_a_poller_is_prompt_and_keeps_a_result_in_transit(
    point: Point, kind: Kind, lib: str, mode: Mode, serve: Serve
) -> None:
    server = serve(_script(point, kind))
    http = LIBS[lib]
    before = open_fds()

    async def main() -> tuple[Any, float, Any, int, int]:
        scope = anyio.CancelScope()

        async def on_request(request: Any) -> None:
            is_poll = request.method == "GET"
            if (point == "submit-sent" and not is_poll) or (point == "poll-sent" and is_poll):
                scope.cancel()

        async def on_response(response: Any) -> None:
            if point == "body" and response.request.method == "GET" and response.status_code == 200:
                scope.cancel()  # the headers are in; the body is on the wire

        async def sleep(seconds: float) -> None:
            strikes = {
                "first-delay": 0.02 < seconds <= 0.06,
                "poll-gap": seconds <= 0.011,
                "retry-wait": seconds >= 0.5,
            }
            if strikes.get(point, False):
                scope.cancel()
            await anyio.sleep(seconds)

        limits = http.Limits(max_connections=1, max_keepalive_connections=1)
        async with http.AsyncClient(
            **client_kwargs(server.base_url),
            timeout=http.Timeout(5.0, pool=POOL_TIMEOUT),
            limits=limits,
            event_hooks={"request": [on_request], "response": [on_response]},
        ) as client:
            poller = xretry.AsyncDeferredCompletions(
                client, policy=POLICY, poll=CANCEL_POLL, sleep=sleep
            )
            first: Any = None
            started = time.monotonic()
            with scope:
                first = await _async_first(kind, poller, "" if kind in ("create", "batch") else RID)
            elapsed = time.monotonic() - started
            asked = server.requests
            if point == "submit-sent":
                return first, elapsed, None, asked, asked
            scope_later = anyio.CancelScope()  # nothing cancels it: the next wait, as usual
            with scope_later:
                later = await _async_first("wait", poller, RID)
            return first, elapsed, later, asked, server.requests

    first, elapsed, later, asked, asked_after = anyio.run(main, backend=mode)
    assert leaked_fds(before) == {}
    if point == "body":
        # kept: handed over by the call, or by the next wait without asking the server again
        if first is not None:  # handed over by the call itself (once: it is not kept)
            assert first["object"] == "chat.completion", first
            return
        assert isinstance(later, dict), later
        assert later["object"] == "chat.completion"
        assert asked_after == asked
        return
    assert first is None, first  # the call was cancelled
    assert elapsed < PROMPT, f"leaving took {elapsed:.3f}s at {point}"
    if point != "submit-sent":  # the job was left pending: asked again, it is delivered
        assert isinstance(later, dict), later
        assert later["object"] == "chat.completion"
