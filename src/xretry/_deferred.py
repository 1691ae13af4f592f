"""Deferred chat completions: submit, poll until ready, deliver every paid-for result exactly once.

``DeferredCompletions(client)`` and ``AsyncDeferredCompletions(client)`` take an httpx (or httpx2)
client whose ``base_url`` is the API root with ``/v1``. They own the retry and poll loop of their
requests: a request they send is marked :data:`OUTER_LOOP`, so an xretry transport inside the client
sends it once and steps aside, and attempts never multiply, whatever the client is built with.

The loop is the transports' own driver (one core), run over the client's ``send``. With a
:class:`DeferredStore`, ids and results are recorded before anyone sees them (see ``_store.py``).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import random
import re
import time
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from . import _testing
from ._classify import Verdict, classify_exception, request_of
from ._core import poll_gap
from ._errors import (
    DeferredNotFoundError,
    DeferredResultError,
    DeferredTimeoutError,
    InvalidAPIKeyError,
    RateLimitError,
    ServerError,
    XRetryError,
    error_for_response,
    redact,
    request_secrets,
)
from ._gate import Gate, own_gate
from ._headers import retry_hint
from ._hooks import RetryHook
from ._policy import PollPolicy, RetryPolicy, check_policy
from ._store import DeferredStore, SQLiteDeferredStore
from ._transport import DEADLINE, OUTER_LOOP, AsyncDriver, SyncDriver

__all__ = ["AsyncDeferredCompletions", "DeferredCompletions", "DeferredOutcome"]

_SUBMIT = "chat/completions"
_POLL = "chat/deferred-completion/{}"

#: What a request id may look like (xAI's are UUIDs): nothing that changes the URL it goes into.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,255}")


def _check_id(request_id: object) -> None:
    if not isinstance(request_id, str) or not _ID.fullmatch(request_id) or ".." in request_id:
        raise ValueError(
            f"request_id must be an id as returned by submit() (letters, digits, '-', '_', ':', "
            f"'.'), got {request_id!r}"
        )


@dataclass(frozen=True, slots=True)
class DeferredOutcome:
    """One job's end: its completion, or the error that ended it (never both)."""

    request_id: str
    completion: dict[str, Any] | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _ClientTransport:
    """An httpx or httpx2 client used as the inner transport of a driver."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def handle_request(self, request: Any) -> Any:
        return self._client.send(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self._client.send(request)


def _buffered_stream(client: Any) -> type:
    """The client library's buffered body class (``httpx.ByteStream`` or httpx2's twin)."""
    module = __import__(type(client).__module__.split(".")[0])
    stream = getattr(module, "ByteStream", None)
    if not isinstance(stream, type):
        raise TypeError(
            f"expected an httpx or httpx2 client, got {type(client).__module__}."
            f"{type(client).__name__}"
        )
    return stream


def _patient(policy: RetryPolicy | None) -> RetryPolicy:
    """The policy for polling a paid-for job: a 429 or 5xx while polling does not end it.

    Errors are retried until the poll timeout (the polling call's deadline) rather than for a
    handful of attempts, which a burst of short rate-limit hints would use up in a fraction of a
    second. Fatal statuses still end the call at once.
    """
    base = RetryPolicy() if policy is None else policy
    # A long server-requested wait is honoured too; the poll timeout still bounds the whole call.
    return base.replace(
        max_attempts=max(base.max_attempts, 10_000),
        max_retry_after=max(base.max_retry_after, 86_400.0),
    )


def _as_store(store: DeferredStore | str | Path | None) -> DeferredStore | None:
    if store is None or isinstance(store, DeferredStore):
        return store
    if isinstance(store, str | Path):
        return SQLiteDeferredStore(store)
    raise ValueError(f"store must be a DeferredStore or a path, got {type(store).__name__}")


class _Poller:
    """What the sync and async pollers share: requests, answers, and the store's bookkeeping."""

    _driver: Any

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None,
        poll: PollPolicy | None,
        store: DeferredStore | str | Path | None,
        gate: Gate | Literal[False] | None,
        hooks: Iterable[RetryHook] | None,
        clock: Callable[[], float] | None,
    ) -> None:
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ValueError(f"poll must be a PollPolicy, got {type(poll).__name__}")
        check_policy(policy)
        self.client = client
        self.poll = PollPolicy() if poll is None else poll
        self.store = _as_store(store)
        self._stream = _buffered_stream(client)
        self._policy = policy
        self._hooks = hooks
        self._clock = time.monotonic if clock is None else clock
        #: One gate for submissions and polls alike: they share the chat-completions limit.
        self._gate = own_gate(gate, self._clock)

    @property
    def gate(self) -> Gate | None:
        """The gate every request of this poller passes (shared cooldown, adaptive pacing)."""
        return self._gate

    @property
    def _drivers_gate(self) -> Gate | Literal[False]:
        return False if self._gate is None else self._gate

    def _finish_driver(self, driver: Any) -> Any:
        driver._buffered = self._stream
        driver._outer = True
        return driver

    # -- requests -----------------------------------------------------------------------------

    def _submit_request(self, body: Mapping[str, Any]) -> Any:
        payload = {**body, "deferred": True}
        return self.client.build_request(
            "POST", _SUBMIT, json=payload, extensions={"xretry": OUTER_LOOP}
        )

    def _poll_request(self, request_id: str, poll: PollPolicy | bool) -> Any:
        _check_id(request_id)
        extensions: dict[str, Any] = {"xretry": OUTER_LOOP}
        extensions["xretry.poll"] = poll if isinstance(poll, PollPolicy) else False
        return self.client.build_request("GET", _POLL.format(request_id), extensions=extensions)

    def _poll_policy(self, timeout: float | None) -> PollPolicy:
        return self.poll if timeout is None else self.poll.replace(timeout=timeout)

    # -- answers ------------------------------------------------------------------------------

    def _submitted(self, response: Any) -> str:
        error = error_for_response(response)
        if error is not None:
            raise error
        try:
            request_id = json.loads(response.content)["request_id"]
        except (ValueError, KeyError, TypeError) as exc:
            echoed = _masked(response.content, _secrets_of(response), 200)
            raise XRetryError(
                f"the deferred submission was accepted ({response.status_code}) but the answer "
                f"has no request_id: {echoed}"
            ) from exc
        if not isinstance(request_id, str) or not request_id:
            shown = redact(repr(request_id), _secrets_of(response))[:200]
            raise XRetryError(f"the deferred submission returned a bad request_id: {shown}")
        if self.store is not None:
            self.store.add(request_id)
        return request_id

    def acknowledge(self, request_id: str) -> None:
        """Mark a result as safely used: ``resume()`` will not hand it over again.

        ``wait()`` and ``create()`` leave their result unacknowledged, so that a crash between
        getting it and using it loses nothing; acknowledge once it is saved. ``resume()`` and
        ``as_completed()`` acknowledge each result for you when you ask for the next one.
        """
        _check_id(request_id)
        if self.store is not None:
            self.store.acknowledge(request_id)

    def _stored(self, request_id: str) -> dict[str, Any] | None:
        """A result fetched earlier (served from the store, never fetched twice)."""
        if self.store is None:
            return None
        record = self.store.get(request_id)
        if record is None or record.state == "pending":
            return None
        if record.state == "done" and record.result is not None:
            return record.result
        raise DeferredNotFoundError(
            request_id, status_code=404, message=f"stored as failed: {record.error}"
        )

    def _answered(self, request_id: str, response: Any) -> dict[str, Any]:
        """The completion from the final poll response, recorded before anyone sees it."""
        status = response.status_code
        if status == 200:
            body = response.content
            try:
                completion = json.loads(body)
                if not isinstance(completion, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, RecursionError) as exc:
                if self.store is not None:  # never the key, even one the server echoed
                    echoed = _masked(body, _secrets_of(response), 2000)
                    self.store.fail(request_id, f"unusable body: {echoed}")
                raise DeferredResultError(request_id, body=body, reason=str(exc)) from None
            if self.store is not None:
                self.store.complete(request_id, completion)
            return completion
        if status == 202:
            history = response.extensions.get("xretry")
            polls = sum(1 for a in getattr(history, "attempts", ()) if a.status_code == 202)
            raise DeferredTimeoutError(
                request_id, waited=getattr(history, "elapsed", 0.0), polls=polls
            )
        error = error_for_response(response)
        if status in (400, 404) and not isinstance(error, InvalidAPIKeyError):
            message = error.message if error is not None else ""
            if self.store is not None:
                self.store.fail(request_id, f"{status}: {message}")
            raise DeferredNotFoundError(request_id, status_code=status, message=message)
        if error is not None:
            raise error
        raise XRetryError(f"unexpected answer {status} for deferred completion {request_id}")


class DeferredCompletions(_Poller):
    """Deferred chat completions over a sync ``httpx.Client`` (or ``httpx2.Client``).

    Example::

        client = httpx.Client(base_url="https://api.x.ai/v1", headers={"Authorization": ...})
        deferred = xretry.DeferredCompletions(client, store="deferred.db")
        completion = deferred.create(model="grok-4", messages=[{"role": "user", "content": "Hi"}])

    ``submit`` and each poll are retried on 429/5xx under ``policy``; polling follows ``poll``.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        store: DeferredStore | str | Path | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            client, policy=policy, poll=poll, store=store, gate=gate, hooks=hooks, clock=clock
        )
        self._sleep = time.sleep if sleep is None else sleep
        self._driver, self._poll_driver = (
            self._finish_driver(
                SyncDriver(
                    _ClientTransport(client),
                    policy=chosen,
                    poll=self.poll,
                    gate=self._drivers_gate,
                    hooks=hooks,
                    sleep=self._sleep,
                    clock=self._clock,
                )
            )
            for chosen in (policy, _patient(policy))
        )

    def submit(self, **body: Any) -> str:
        """Send the chat-completion ``body`` with ``"deferred": true``; return the request id."""
        return self._submitted(self._driver.handle_request(self._submit_request(body)))

    def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the completion is ready and return it (from the store if already fetched).

        Raises :class:`DeferredTimeoutError` (carrying the id, to resume later) when ``timeout``
        (default ``poll.timeout``) runs out, :class:`DeferredNotFoundError` for an unknown,
        expired or already-fetched id, and the typed status errors for anything else fatal.
        With a store, the result stays unacknowledged (see :meth:`acknowledge`).
        """
        stored = self._stored(request_id)
        if stored is None:
            request = self._poll_request(request_id, self._poll_policy(timeout))
            stored = self._answered(request_id, self._poll_driver.handle_request(request))
        return stored

    def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, with the first poll ``poll.first_delay`` after submitting."""
        request_id = self.submit(**body)
        self._pause(self.poll.first_delay)
        return self.wait(request_id, timeout=timeout)

    def resume(self, *, timeout: float | None = None) -> Iterator[DeferredOutcome]:
        """After a crash: yield the results fetched but not acknowledged, then finish pending ids.

        Each outcome is acknowledged when you ask for the next one, so one you were handling when
        the process died is handed over again; key your side effects by ``request_id``.
        """
        if self.store is None:
            raise ValueError("resume() needs a store: DeferredCompletions(client, store=...)")
        for request_id in [*self.store.unacknowledged(), *self.store.pending()]:
            try:
                outcome = DeferredOutcome(request_id, self._wait_unacked(request_id, timeout))
            except (XRetryError, OSError) as exc:
                outcome = DeferredOutcome(request_id, error=exc)
            yield outcome
            if outcome.ok:
                self.store.acknowledge(request_id)

    def _wait_unacked(self, request_id: str, timeout: float | None) -> dict[str, Any]:
        stored = self._stored(request_id)
        if stored is not None:
            return stored
        request = self._poll_request(request_id, self._poll_policy(timeout))
        return self._answered(request_id, self._poll_driver.handle_request(request))

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and _testing.active() is None:
            self._sleep(seconds)
        elif seconds > 0:
            _testing.active().record(seconds)  # type: ignore[union-attr]


async def _default_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    request_id: str = ""
    polls: int = 0
    started: float = 0.0


class AsyncDeferredCompletions(_Poller):
    """Deferred chat completions over an ``httpx.AsyncClient`` (or httpx2's), asyncio or trio.

    Besides ``submit`` / ``wait`` / ``create``, :meth:`as_completed` runs many jobs at once with
    bounded concurrency, all polls on one shared schedule and one shared :class:`Gate`, so
    thousands of pending jobs don't flood the rate limit.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        store: DeferredStore | str | Path | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            client,
            policy=policy,
            poll=poll,
            store=store,
            gate=gate,
            hooks=hooks,
            clock=clock,
        )
        self._sleep = _default_sleep if sleep is None else sleep
        self._driver, self._poll_driver = (
            self._finish_driver(
                AsyncDriver(
                    _ClientTransport(client),
                    policy=chosen,
                    poll=self.poll,
                    gate=self._drivers_gate,
                    hooks=hooks,
                    sleep=self._sleep,
                    clock=self._clock,
                )
            )
            for chosen in (policy, _patient(policy))
        )

    async def submit(self, **body: Any) -> str:
        """Send ``body`` with ``"deferred": true``; return the request id (stored first)."""
        return self._submitted(await self._driver.handle_async_request(self._submit_request(body)))

    async def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until ready; see :meth:`DeferredCompletions.wait`."""
        stored = self._stored(request_id)
        if stored is None:
            request = self._poll_request(request_id, self._poll_policy(timeout))
            response = await self._poll_driver.handle_async_request(request)
            stored = self._answered(request_id, response)
        return stored

    async def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, first poll ``poll.first_delay`` after submitting."""
        request_id = await self.submit(**body)
        await self._pause(self.poll.first_delay)
        return await self.wait(request_id, timeout=timeout)

    async def _pause(self, seconds: float) -> None:
        schedule = _testing.active()
        if schedule is not None:
            schedule.record(seconds)
        elif seconds > 0:
            await self._sleep(seconds)

    @asynccontextmanager
    async def as_completed(
        self,
        jobs: Iterable[str | Mapping[str, Any]] = (),
        *,
        concurrency: int = 16,
        timeout: float | None = None,
        resume: bool = False,
    ) -> AsyncIterator[AsyncIterator[DeferredOutcome]]:
        """Run many jobs; iterate their outcomes in the order they complete.

        ``jobs`` are request ids (already submitted) or chat-completion bodies (submitted here).
        ``resume=True`` adds the store's unacknowledged results and pending ids. At most
        ``concurrency`` requests are in flight; every poll follows one shared schedule (each job's
        own ``PollPolicy`` gaps, dispatched in due order) through one shared gate. Each outcome is
        acknowledged in the store when you ask for the next one. Leaving the block early cancels
        the rest (their ids stay pending in the store, to resume).

        Example::

            async with deferred.as_completed(bodies, concurrency=16) as results:
                async for outcome in results:
                    print(outcome.request_id, outcome.completion or outcome.error)
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        ids: list[str] = []
        bodies: list[Mapping[str, Any]] = []
        for job in jobs:
            (ids if isinstance(job, str) else bodies).append(job)  # type: ignore[arg-type]
        if resume:
            if self.store is None:
                raise ValueError("resume=True needs a store")
            ids = [*self.store.unacknowledged(), *self.store.pending(), *ids]
        runner = _Batch(self, concurrency, self._poll_policy(timeout))
        send, receive = anyio.create_memory_object_stream[DeferredOutcome](max_buffer_size=1 << 30)
        async with anyio.create_task_group() as group, receive:
            group.start_soon(runner.run, list(dict.fromkeys(ids)), bodies, send)
            try:
                async with contextlib.aclosing(self._acknowledging(receive)) as outcomes:
                    yield outcomes
            finally:
                group.cancel_scope.cancel()

    async def _acknowledging(
        self, receive: MemoryObjectReceiveStream[DeferredOutcome]
    ) -> AsyncGenerator[DeferredOutcome, None]:
        previous: DeferredOutcome | None = None
        async for outcome in receive:
            if previous is not None and previous.ok and self.store is not None:
                self.store.acknowledge(previous.request_id)
            previous = outcome
            yield outcome
        if previous is not None and previous.ok and self.store is not None:
            self.store.acknowledge(previous.request_id)


def _worth_another_poll(exc: Exception, method: str = "GET") -> bool:
    """A failure that asking again later may fix: a retryable status or transport failure.

    ``method="POST"`` for a submission: a failure after it may have reached the server (a read
    timeout, a connection dropped after sending) is not worth another try, since the server may
    have created, and billed, a job whose id never came back.
    """
    if isinstance(exc, XRetryError) and not isinstance(exc, RateLimitError | ServerError):
        return False
    return classify_exception(exc, method=method).verdict is Verdict.RETRY


class _Batch:
    """The shared schedule behind ``as_completed``: one heap of due polls, one dispatcher.

    The dispatcher starts a task only when one of the ``concurrency`` slots is free, due polls
    before new submissions (a submitted job waiting is paid-for work), so 10,000 pending jobs are
    10,000 small heap entries, not 10,000 parked tasks.
    """

    def __init__(self, poller: AsyncDeferredCompletions, concurrency: int, poll: PollPolicy):
        self.poller = poller
        self.poll = poll
        self.free = concurrency
        self.heap: list[_Job] = []
        self.seq = itertools.count()
        self.outstanding = 0
        self.wakeup = anyio.Event()
        self.testing = _testing.active() is not None
        self.rng = (lambda: 0.5) if self.testing else random.random
        #: Virtual time added to the clock in test mode, where waits are recorded, not slept.
        self.offset = 0.0

    def now(self) -> float:
        return self.poller._clock() + self.offset

    async def _idle(self, wait: float | None) -> None:
        """Until the next job is due (``wait`` seconds) or something changes, whichever first."""
        if wait is not None and self.testing:
            schedule = _testing.active()
            if schedule is not None:
                schedule.record(wait)
            self.offset += wait
            return
        async with anyio.create_task_group() as race:

            async def until_due(seconds: float) -> None:
                await self.poller._sleep(seconds)
                race.cancel_scope.cancel()

            if wait is not None:
                race.start_soon(until_due, wait)
            await self.wakeup.wait()
            race.cancel_scope.cancel()

    async def _pause_for(self, seconds: float) -> None:
        if self.testing:
            schedule = _testing.active()
            if schedule is not None:
                schedule.record(seconds)
            return
        await self.poller._sleep(seconds)

    def push(self, job: _Job) -> None:
        heapq.heappush(self.heap, job)
        self.wakeup.set()

    async def run(
        self,
        ids: list[str],
        bodies: list[Mapping[str, Any]],
        send: MemoryObjectSendStream[DeferredOutcome],
    ) -> None:
        async with send, anyio.create_task_group() as group:
            now = self.now()
            for request_id in ids:
                self.outstanding += 1
                self.push(_Job(now, next(self.seq), request_id, 0, now))
            waiting = deque(bodies)
            self.outstanding += len(waiting)
            while self.outstanding:
                now = self.now()
                while self.free > 0 and self.heap and self.heap[0].due <= now:
                    self._start(group, self._poll_once, heapq.heappop(self.heap), send)
                while self.free > 0 and waiting:
                    self._start(group, self._submit, waiting.popleft(), send)
                self.wakeup = anyio.Event()
                due = self.heap[0].due - now if self.heap and self.free > 0 else None
                await self._idle(due)

    def _start(
        self,
        group: anyio.abc.TaskGroup,
        work: Callable[[Any, MemoryObjectSendStream[DeferredOutcome]], Awaitable[None]],
        item: Any,
        send: MemoryObjectSendStream[DeferredOutcome],
    ) -> None:
        self.free -= 1
        group.start_soon(self._in_slot, work, item, send)

    async def _in_slot(
        self,
        work: Callable[[Any, MemoryObjectSendStream[DeferredOutcome]], Awaitable[None]],
        item: Any,
        send: MemoryObjectSendStream[DeferredOutcome],
    ) -> None:
        try:
            await work(item, send)
        finally:
            self.free += 1
            self.wakeup.set()

    async def _submit(
        self, body: Mapping[str, Any], send: MemoryObjectSendStream[DeferredOutcome]
    ) -> None:
        started = self.now()
        while True:
            try:
                request_id = await self.poller.submit(**body)
                break
            except Exception as exc:
                # A submission that was refused (429, 5xx) was not accepted, so not paid for:
                # try again later, within the poll timeout. Anything else ends the job.
                timeout = self.poll.timeout
                late = timeout is not None and self.now() - started >= timeout
                if late or not _worth_another_poll(exc, "POST"):
                    self.outstanding -= 1
                    await send.send(DeferredOutcome("", error=exc))
                    self.wakeup.set()
                    return
            await self._pause_for(poll_gap(self.poll, 1, self.rng, None))
        now = self.now()
        self.push(_Job(now + self.poll.first_delay, next(self.seq), request_id, 0, now))

    async def _poll_once(self, job: _Job, send: MemoryObjectSendStream[DeferredOutcome]) -> None:
        poller = self.poller
        try:
            stored = poller._stored(job.request_id)
            if stored is None:
                request = poller._poll_request(job.request_id, False)
                timeout = self.poll.timeout
                if timeout is not None:  # this poll's retries end with the job's poll timeout
                    left = timeout - (self.now() - job.started)
                    request.extensions[DEADLINE] = max(left, 0.001)
                # Shielded from the send to the store: a result the server has sent is gone
                # from it, so leaving the block early must not drop it on the floor.
                with anyio.CancelScope(shield=True):
                    try:
                        response = await poller._driver.handle_async_request(request)
                    except Exception as exc:
                        if not _worth_another_poll(exc):
                            raise
                        self._reschedule(job, None, send)  # nothing was delivered: ask later
                        return
                    history = response.extensions.get("xretry")
                    if response.status_code == 202 or getattr(history, "gave_up", False):
                        # Not ready, or a 429/5xx run that outlasted the policy: a paid-for
                        # job is not given up on before its poll timeout.
                        await response.aclose()
                        self._reschedule(job, response, send)
                        return
                    stored = poller._answered(job.request_id, response)
            outcome = DeferredOutcome(job.request_id, stored)
        except Exception as exc:
            outcome = DeferredOutcome(job.request_id, error=exc)
        self.outstanding -= 1
        await send.send(outcome)
        self.wakeup.set()

    def _reschedule(
        self, job: _Job, response: Any, send: MemoryObjectSendStream[DeferredOutcome]
    ) -> None:
        now = self.now()
        job.polls += 1
        # A 202's retry-after is a floor for the next poll.
        hint = None if response is None else retry_hint(response.headers, now=time.time())
        gap = poll_gap(self.poll, job.polls, self.rng, hint)
        timeout = self.poll.timeout
        if timeout is not None and now + gap - job.started >= timeout:
            self.outstanding -= 1
            error = DeferredTimeoutError(job.request_id, waited=now - job.started, polls=job.polls)
            send.send_nowait(DeferredOutcome(job.request_id, error=error))
            self.wakeup.set()
            return
        job.due = now + gap
        job.seq = next(self.seq)
        self.push(job)


def _secrets_of(response: Any) -> list[str]:
    request = request_of(response)
    return [] if request is None else request_secrets(request)


def _masked(body: bytes, secrets: list[str], limit: int) -> str:
    """A body for a message: masked first, then cut (a cut first could split a key in two).

    Only the start is read: its repr is at least as long as the bytes, so nothing past
    ``limit`` bytes can reach the first ``limit`` characters."""
    return redact(repr(body[: limit + 512]), secrets)[:limit]
