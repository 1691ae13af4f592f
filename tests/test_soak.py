"""Soak: thousands of requests through one client against an emulator that fails on purpose.

Integration tests (real event loop, real threads, seconds of work), run by the default ``pytest``.
What they hold the library to, request by request and in total:

* every call ends: in a response, or in a *typed* error (an xretry error from ``raise_for_status``,
  or the transport failure itself, re-raised with a note when it was retried); nothing else;
* every attempt is accounted for three ways, and the three agree: the attempts each call reports
  (its ``RetryHistory`` or its exception's note), the attempts the inner transport saw, and the
  requests the emulator served, status by status; retry events, give-up events and WARNING lines
  agree with them too;
* nothing is left behind: memory after 10,000 requests is what it was after 2,000 (tracemalloc,
  not proportional to the requests), no task outlives the client, no thread outlives the pool.

``xretry.testing.no_wait()`` records the waits instead of sleeping them, so the retries happen at
full speed. The async soak runs in-process (``httpx.ASGITransport``), the sync one over loopback
sockets through a thread pool (smaller: each request costs a real HTTP round trip).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

import xretry
from xretry.emulator import Dropped, EmulatorApp, EmulatorServer, Fault, Scenario
from xretry.testing import no_wait

#: About 20 s (10,000 requests under tracemalloc); `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

#: Faults on chat completions and on the models list (GETs are idempotent: their drops are
#: retried, a POST's are not). About one attempt in four fails.
_ENDPOINTS = frozenset({"chat", "other"})
SCENARIO = Scenario(
    seed=20240607,
    faults=(
        Fault("status", status=503, rate=0.06, endpoints=_ENDPOINTS),
        Fault("status", status=500, rate=0.03, endpoints=_ENDPOINTS),
        Fault("status", status=429, rate=0.05, endpoints=_ENDPOINTS),
        Fault("html", rate=0.02, endpoints=_ENDPOINTS),
        Fault("drop_before", rate=0.015, endpoints=_ENDPOINTS),
        Fault("drop_during", rate=0.01, endpoints=_ENDPOINTS),
        Fault("truncate", rate=0.005, endpoints=_ENDPOINTS),
        Fault("garbage", rate=0.02, endpoints=_ENDPOINTS),
        # An outage: 120 requests in a row answered 503, long enough for calls to give up.
        Fault("status", status=503, schedule=((301, 420),), endpoints=_ENDPOINTS),
    ),
)
#: Four attempts: enough for most calls to come through, few enough that some give up.
POLICY = xretry.RetryPolicy(max_attempts=4)
AUTH = {"authorization": "Bearer xai-soak"}

REQUESTS = 10_000
WARMUP = 2_000
CONCURRENCY = 64
#: Allowed growth of traced memory from request 2,000 to request 10,000: 32 bytes a request,
#: under what keeping one float per request would take (a float and its list slot). We measure
#: about 10 KiB, set-and-dict resizes and caches, the same at any request count.
GROWTH_LIMIT = 256 * 1024

SYNC_REQUESTS = 2_000
SYNC_THREADS = 16

_NOTE = re.compile(r"^xretry: (\d+) attempts", re.MULTILINE)
#: Set on the request by the inner transport: the attempts it saw, and how the last one ended.
ATTEMPTS, LAST = "soak.attempts", "soak.last"


@dataclass
class Tally:
    """Client-side accounting of a soak, kept in counters (a list would grow with the requests).

    Each call is checked on its own: the attempts xretry reports for it (the response's
    ``RetryHistory``, the error's response, or the note on a re-raised exception) must be the
    attempts the inner transport saw for that request.
    """

    outcomes: Counter[str] = field(default_factory=Counter)
    attempts: int = 0
    resends: int = 0
    gave_up: int = 0
    events: Counter[str] = field(default_factory=Counter)
    waits: int = 0
    mismatches: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def calls(self) -> int:
        return sum(self.outcomes.values())

    def hook(self, event: xretry.RetryEvent) -> None:
        with self.lock:
            self.events[event.kind] += 1

    def response(self, request: httpx.Request, response: httpx.Response) -> None:
        history = response.extensions["xretry"]
        try:
            response.json()
        except ValueError:  # a 200 whose body is not JSON: the transport cannot see that
            kind = "200 garbage"
        else:
            kind = f"{response.status_code} ok"
        self._add(request, kind, history.attempt_count, history.gave_up)

    def error(self, request: httpx.Request, exc: Exception) -> None:
        name = type(exc).__name__
        if isinstance(exc, xretry.APIStatusError):  # from raise_for_status: the response's history
            history = exc.response.extensions["xretry"]
            self._add(request, name, history.attempt_count, history.gave_up)
        elif isinstance(exc, xretry.XRetryError):
            self._add(request, name, None, False)
        elif not isinstance(exc, httpx.TransportError | Dropped):
            self._add(request, f"UNTYPED {type(exc).__module__}.{name}: {exc}", None, False)
        elif request.extensions.get(LAST) == "answered":
            # The transport returned the response; the body broke while httpx read it. That is
            # past what a transport sees (docs/transport.md, "Limits"): no note, no retry.
            self._add(request, f"{name} reading the body", None, False)
        else:  # re-raised by the transport as it is; when it was retried, a note says how often
            notes = "\n".join(getattr(exc, "__notes__", []))
            match = _NOTE.search(notes)
            self._add(request, name, int(match.group(1)) if match else 1, "gave up:" in notes)

    def _add(self, request: httpx.Request, kind: str, claimed: int | None, gave_up: bool) -> None:
        seen = request.extensions.get(ATTEMPTS, 0)
        with self.lock:
            self.outcomes[kind] += 1
            self.attempts += seen
            self.resends += max(seen - 1, 0)
            self.gave_up += gave_up
            if claimed is not None and claimed != seen and len(self.mismatches) < 10:
                self.mismatches.append(f"{kind}: xretry reports {claimed} attempts, sent {seen}")


def counted(request: httpx.Request, ended: str) -> None:
    request.extensions[ATTEMPTS] = request.extensions.get(ATTEMPTS, 0) + 1
    request.extensions[LAST] = ended


class CountingAsync(httpx.AsyncBaseTransport):
    """The inner transport: every attempt and what it ended in, in total and per request."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.seen: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self.inner.handle_async_request(request)
        except Exception as exc:
            self.seen[type(exc).__name__] += 1
            counted(request, "raised")
            raise
        self.seen[str(response.status_code)] += 1
        counted(request, "answered")
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class Counting(httpx.BaseTransport):
    """The sync twin of :class:`CountingAsync`, safe across threads."""

    def __init__(self, inner: httpx.BaseTransport) -> None:
        self.inner = inner
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        try:
            response = self.inner.handle_request(request)
        except Exception as exc:
            with self.lock:
                self.seen[type(exc).__name__] += 1
            counted(request, "raised")
            raise
        with self.lock:
            self.seen[str(response.status_code)] += 1
        counted(request, "answered")
        return response

    def close(self) -> None:
        self.inner.close()


class CountWarnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@contextmanager
def xretry_warnings() -> Iterator[CountWarnings]:
    """Count the ``xretry`` logger's warnings, and keep them out of pytest's log capture (which
    would hold every record until the test ends: memory the library did not keep)."""
    logger = logging.getLogger("xretry")
    handler = CountWarnings()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield handler
    finally:
        logger.propagate = propagate
        logger.removeHandler(handler)


def request_for(client: httpx.Client | httpx.AsyncClient, number: int) -> httpx.Request:
    """One in four a GET of the models list, else a chat completion."""
    if number % 4 == 0:
        return client.build_request("GET", "models")
    body = {"model": "grok-4", "messages": [{"role": "user", "content": f"soak {number}"}]}
    return client.build_request("POST", "chat/completions", json=body)


def check_accounting(
    tally: Tally, seen: Counter[str], stats: dict[str, Any], calls: int, *, sockets: bool
) -> None:
    """Client, inner transport and server agree on every call and every attempt."""
    assert not [kind for kind in tally.outcomes if kind.startswith("UNTYPED")], tally.outcomes
    assert not tally.mismatches, tally.mismatches
    assert tally.calls == calls
    attempts = sum(seen.values())
    assert tally.attempts == attempts == stats["requests"]
    assert tally.events["retry"] == tally.resends  # each attempt after a call's first: one retry
    assert tally.events["give_up"] == tally.gave_up
    assert tally.events["poll"] == 0
    assert tally.waits > 0  # recorded by no_wait(), not slept
    # Status by status, the server served what the inner transport received. A truncate is
    # counted a 200 by the server, a drop_during is not: over sockets both reach the transport as
    # a 200 (the cut comes while reading the body), in-process both raise in the transport.
    stat = stats.get
    drops: tuple[str, ...]
    if sockets:
        drops, extra_200 = ("drop_before",), stat("faults.drop_during", 0)
    else:
        drops, extra_200 = ("drop_before", "drop_during", "truncate"), -stat("faults.truncate", 0)
    for key, count in seen.items():
        if key.isdigit():
            assert stat(f"status.{key}", 0) + (extra_200 if key == "200" else 0) == count, key
    raised = sum(count for key, count in seen.items() if not key.isdigit())
    assert raised == sum(stat(f"faults.{kind}", 0) for kind in drops)
    # Every fault kind struck and some calls gave up, or the soak proved less than it claims.
    for kind in ("status", "html", "drop_before", "drop_during", "truncate", "garbage"):
        assert stat(f"faults.{kind}", 0) > 0, kind
    assert tally.gave_up > 0
    assert tally.outcomes["200 ok"] > calls * 0.8


def traced(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    return snapshot.filter_traces([tracemalloc.Filter(False, tracemalloc.__file__)])


async def soak_async(tally: Tally) -> dict[str, Any]:
    app = EmulatorApp(SCENARIO)
    inner = CountingAsync(httpx.ASGITransport(app=app))
    transport = xretry.AsyncRetryTransport(inner, policy=POLICY, hooks=[tally.hook])
    client = httpx.AsyncClient(
        transport=transport,
        base_url="http://emulator/v1",
        headers=AUTH,
        event_hooks={"response": [xretry.araise_for_status]},
    )

    async def call(number: int) -> None:
        request = request_for(client, number)
        try:
            response = await client.send(request)
        except Exception as exc:
            tally.error(request, exc)
        else:
            tally.response(request, response)

    async def run(first: int, last: int) -> None:
        numbers = iter(range(first, last))

        async def worker() -> None:
            for number in numbers:  # one shared iterator: each number taken once
                await call(number)

        with no_wait() as schedule:
            await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        tally.waits += len(schedule.delays)

    started = time.perf_counter()
    await run(0, WARMUP)
    gc.collect()
    after_warmup = traced(tracemalloc.take_snapshot())
    warmed = time.perf_counter()
    await run(WARMUP, REQUESTS)
    gc.collect()
    after_all = traced(tracemalloc.take_snapshot())
    finished = time.perf_counter()
    await client.aclose()
    leftover = asyncio.all_tasks() - {asyncio.current_task()}
    return {
        "stats": app.stats(),
        "seen": inner.seen,
        "leftover": leftover,
        "growth": after_all.compare_to(after_warmup, "lineno"),
        "seconds": (warmed - started, finished - warmed),
    }


def test_async_soak_10k_requests_flat_memory_no_leftover_tasks_all_accounted() -> None:
    tally = Tally()
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with xretry_warnings() as warnings:
            result = asyncio.run(soak_async(tally))
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - started

    growth = sum(stat.size_diff for stat in result["growth"])
    top = "\n".join(str(stat) for stat in result["growth"][:10])
    print(
        f"\nasync soak: {REQUESTS} calls, {tally.attempts} attempts, {elapsed:.1f}s "
        f"({result['seconds'][0]:.1f}s + {result['seconds'][1]:.1f}s, traced); "
        f"growth {growth / 1024:.1f} KiB from call {WARMUP} to {REQUESTS}; "
        f"outcomes {dict(tally.outcomes)}\n{top}"
    )
    assert not result["leftover"], result["leftover"]
    check_accounting(tally, result["seen"], result["stats"], REQUESTS, sockets=False)
    assert warnings.count == tally.gave_up  # one WARNING per give-up, none for anything else
    assert growth < GROWTH_LIMIT, f"memory grew {growth} bytes over {REQUESTS - WARMUP}:\n{top}"


def test_sync_soak_through_a_thread_pool_over_loopback() -> None:
    tally = Tally()
    threads_before = set(threading.enumerate())
    started = time.perf_counter()
    with xretry_warnings() as warnings, EmulatorServer(SCENARIO) as server:
        inner = Counting(httpx.HTTPTransport(limits=httpx.Limits(max_connections=SYNC_THREADS)))
        transport = xretry.RetryTransport(inner, policy=POLICY, hooks=[tally.hook])
        with httpx.Client(
            transport=transport,
            base_url=server.base_url,
            headers=AUTH,
            timeout=10.0,
            event_hooks={"response": [xretry.raise_for_status]},
        ) as client:

            def call(number: int) -> None:
                request = request_for(client, number)
                try:
                    response = client.send(request)
                except Exception as exc:
                    tally.error(request, exc)
                else:
                    tally.response(request, response)

            with no_wait() as schedule, ThreadPoolExecutor(SYNC_THREADS) as pool:
                for _ in pool.map(call, range(SYNC_REQUESTS)):
                    pass
            tally.waits = len(schedule.delays)
        stats = server.app.stats()
    elapsed = time.perf_counter() - started
    print(
        f"\nsync soak: {SYNC_REQUESTS} calls, {tally.attempts} attempts, {elapsed:.1f}s; "
        f"outcomes {dict(tally.outcomes)}"
    )
    check_accounting(tally, inner.seen, stats, SYNC_REQUESTS, sockets=True)
    assert warnings.count == tally.gave_up
    lingering = [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    assert not lingering, lingering
