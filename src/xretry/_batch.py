"""The engine behind ``AsyncDeferredCompletions.as_completed``: many jobs, one schedule.

One heap of due polls and one dispatcher: a task is started only when one of the ``concurrency``
slots is free, due polls before new submissions (a submitted job waiting is paid-for work), so
10,000 pending jobs are 10,000 small heap entries, not 10,000 parked tasks. Every poll goes through
the poller's driver (its gate, its retry loop). Leaving early cancels everything at once but a
result in transit: a poll's 200 is read and recorded shielded (in the poller's inner transport),
never the waits and retries around it.
"""

from __future__ import annotations

import heapq
import itertools
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectSendStream

from . import _testing
from ._classify import Verdict, classify_exception
from ._core import pause, poll_gap
from ._drivers import arun
from ._errors import (
    DeferredError,
    DeferredStoreError,
    DeferredTimeoutError,
    RateLimitError,
    ServerError,
    XRetryError,
)
from ._headers import retry_hint
from ._outer import DEADLINE
from ._policy import PollPolicy

__all__ = ["Batch", "BatchPoller", "DeferredOutcome"]


@dataclass(frozen=True, slots=True)
class DeferredOutcome:
    """One job's end: its completion, or the error that ended it (never both)."""

    request_id: str
    completion: dict[str, Any] | None = None
    error: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class BatchPoller(Protocol):
    """What the batch needs of its poller (:class:`xretry.AsyncDeferredCompletions`)."""

    _clock: Callable[[], float]
    _sleep: Callable[[float], Awaitable[None]]
    _driver: Any

    async def submit(self, **body: Any) -> str: ...

    def _stored(self, request_id: str) -> dict[str, Any] | None: ...

    def _poll_request(self, request_id: str, poll: PollPolicy | bool) -> Any: ...

    def _answered(self, request_id: str, response: Any) -> dict[str, Any]: ...

    def _unclaimed(self, outcome: DeferredOutcome) -> None: ...


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    request_id: str = ""
    polls: int = 0
    started: float = 0.0


def _worth_another_poll(exc: Exception, method: str = "GET") -> bool:
    """A failure that asking again later may fix: a retryable status or transport failure.

    ``method="POST"`` for a submission: a failure after it may have reached the server (a read
    timeout, a connection dropped after sending) is not worth another try, since the server may
    have created, and billed, a job whose id never came back.
    """
    if isinstance(exc, XRetryError) and not isinstance(exc, RateLimitError | ServerError):
        return False
    return classify_exception(exc, method=method).verdict is Verdict.RETRY


class Batch:
    """The shared schedule behind ``as_completed``: one heap of due polls, one dispatcher.

    The dispatcher starts a task only when one of the ``concurrency`` slots is free, due polls
    before new submissions (a submitted job waiting is paid-for work), so 10,000 pending jobs are
    10,000 small heap entries, not 10,000 parked tasks.
    """

    def __init__(self, poller: BatchPoller, concurrency: int, poll: PollPolicy):
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
        await arun(pause(seconds), None, self.poller._sleep, None)

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
            except DeferredStoreError as exc:
                request_id = exc.request_id  # accepted (and logged): poll it all the same
                break
            except Exception as exc:
                # A submission that was refused (429, 5xx) was not accepted, so not paid for:
                # try again later, within the poll timeout. Anything else ends the job.
                timeout = self.poll.timeout
                late = timeout is not None and self.now() - started >= timeout
                if late or not _worth_another_poll(exc, "POST"):
                    known = exc.request_id if isinstance(exc, DeferredError) else ""
                    self._deliver(DeferredOutcome(known, error=exc), send)
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
                # Not shielded: a 200 is read and recorded, shielded, the moment it arrives (in
                # the poller's inner transport); the waits and retries around it end at once.
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
                    self._reschedule(job, response, send)
                    await response.aclose()
                    return
                stored = poller._answered(job.request_id, response)
            outcome = DeferredOutcome(job.request_id, stored)
        except Exception as exc:
            outcome = DeferredOutcome(job.request_id, error=exc)
        self._deliver(outcome, send)

    def _deliver(
        self, outcome: DeferredOutcome, send: MemoryObjectSendStream[DeferredOutcome]
    ) -> None:
        """Hand an outcome to the caller's iteration, with no checkpoint in between (a fetched
        result must not be dropped by a cancellation); if the caller has left, the poller keeps
        it for the next ``wait``."""
        self.outstanding -= 1
        try:
            send.send_nowait(outcome)  # the buffer is unbounded
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            self.poller._unclaimed(outcome)
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
            error = DeferredTimeoutError(job.request_id, waited=now - job.started, polls=job.polls)
            self._deliver(DeferredOutcome(job.request_id, error=error), send)
            return
        job.due = now + gap
        job.seq = next(self.seq)
        self.push(job)
