"""Deferred completions of the xai-sdk (gRPC) under xretry: submitted once, each poll retried.

``@xretry.retry`` around ``chat.defer()`` is unsafe: the SDK submits the job and polls it in one
call, so an error on a poll (a RESOURCE_EXHAUSTED, an UNAVAILABLE) makes the decorator run the whole
call again, and the job is submitted, and paid for, twice. :func:`defer` and :func:`adefer` split
the call the way :class:`xretry.DeferredCompletions` does over HTTP::

    import xai_sdk, xretry.xai_sdk
    from xai_sdk.chat import user

    client = xai_sdk.Client(channel_options=[("grpc.enable_retries", 0)])
    chat = client.chat.create(model="grok-4")
    chat.append(user("Summarise this contract ..."))
    response = xretry.xai_sdk.defer(chat)            # like chat.defer(), retried safely
    print(response.content)

- the submission (``StartDeferredCompletion``) is retried only where the call was not processed
  (UNAVAILABLE, RESOURCE_EXHAUSTED that is not spent credits, INTERNAL as an HTTP 500);
- each poll (``GetDeferredCompletion``) is retried on its own under ``policy``; polls that find the
  job pending are spaced by ``poll`` (:class:`xretry.PollPolicy`);
- a poll that fails for good raises :class:`xretry.DeferredPollError` with the ``request_id``;
  ``defer(chat, request_id=...)`` polls that job again without submitting anything.

Needs the xai-sdk (``pip install xai-sdk``); ``import xretry`` does not import it. Uses the chat's
public ``proto`` and its gRPC stub (``chat._stub``, the one attribute of the SDK's ``Chat`` that is
not public; xretry's tests run against the real SDK to catch a change).
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal

import anyio

try:
    from xai_sdk.chat import Response
    from xai_sdk.proto import chat_pb2, deferred_pb2
except ImportError as exc:  # pragma: no cover - exercised only without the package
    raise ImportError("xretry.xai_sdk needs the xai-sdk package: pip install xai-sdk") from exc

from ._classify import error_summary
from ._core import pause, poll_gap
from ._decorator import retry
from ._drivers import arun, run
from ._errors import DeferredPollError, DeferredTimeoutError
from ._gate import Gate, own_gate
from ._hooks import RetryHook
from ._outer import OUTER_CALL
from ._policy import PollPolicy, RetryPolicy, check_policy

__all__ = ["adefer", "defer"]

_DEFAULT_POLL = PollPolicy()


class _Job:
    """The sans-I/O part shared by :func:`defer` and :func:`adefer`: the request to submit, and
    what each poll answer means (the result, or how long to wait before the next poll)."""

    def __init__(
        self,
        chat: Any,
        request_id: str | None,
        poll: PollPolicy | None,
        clock: Callable[[], float],
        rng: Callable[[], float],
    ) -> None:
        stub = getattr(chat, "_stub", None)
        proto = getattr(chat, "proto", None)
        if stub is None or not isinstance(proto, chat_pb2.GetCompletionsRequest):
            raise TypeError(
                "xretry.xai_sdk.defer needs a chat from the xai-sdk's client.chat.create(...), "
                f"got {type(chat).__name__}"
            )
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ValueError(f"poll must be a PollPolicy, got {type(poll).__name__}")
        self.stub = stub
        self.request_id = request_id
        self.poll = _DEFAULT_POLL if poll is None else poll
        self.clock = clock
        self.rng = rng
        self.pending = 0
        self.start = clock()
        self.request = chat_pb2.GetCompletionsRequest()
        if request_id is None:
            if not proto.messages:
                raise ValueError("the chat has no messages: append at least one before defer()")
            self.request.CopyFrom(proto)
            self.request.n = 1

    def submitted(self, answer: Any) -> float:
        """Record the submission's answer; the wait before the first poll."""
        request_id = getattr(answer, "request_id", "")
        if not isinstance(request_id, str) or not request_id:
            raise DeferredPollError("?", reason="the submission returned no request_id")
        self.request_id = request_id
        self.start = self.clock()
        return self.poll.first_delay

    def poll_request(self) -> Any:
        return deferred_pb2.GetDeferredRequest(request_id=self.request_id)

    def failed(self, exc: Exception) -> DeferredPollError:
        return DeferredPollError(str(self.request_id), reason=error_summary(exc))

    def answered(self, answer: Any) -> Any:
        """The completion (a ``Response``) when DONE; else seconds until the next poll."""
        status = answer.status
        if status == deferred_pb2.DeferredStatus.DONE:
            return Response(answer.response, 0)
        if status != deferred_pb2.DeferredStatus.PENDING:
            try:
                name = deferred_pb2.DeferredStatus.Name(status)
            except ValueError:
                name = f"in an unknown state ({status})"
            raise DeferredPollError(str(self.request_id), reason=f"the job is {name}")
        self.pending += 1
        gap = poll_gap(self.poll, self.pending, self.rng, None)
        waited = self.clock() - self.start
        if self.poll.timeout is not None and waited + gap > self.poll.timeout:
            raise DeferredTimeoutError(str(self.request_id), waited=waited, polls=self.pending)
        return gap


def _retrying(
    policy: RetryPolicy | None,
    hooks: Iterable[RetryHook] | None,
    gate: Gate | None,
    sleep: Callable[[float], Any],
    clock: Callable[[], float],
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return retry(
        policy=policy,
        hooks=hooks,
        gate=False if gate is None else gate,
        sleep=sleep,
        clock=clock,
    )


def defer(
    chat: Any,
    *,
    request_id: str | None = None,
    policy: RetryPolicy | None = None,
    poll: PollPolicy | None = None,
    hooks: Iterable[RetryHook] | None = None,
    gate: Gate | Literal[False] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
) -> Response:
    """``chat.defer()`` for a sync ``xai_sdk.Client`` chat, retried without ever resubmitting.

    Submits the chat's request once (or, given ``request_id``, polls that job without submitting),
    polls until DONE, and returns the SDK's ``Response``. ``policy`` governs the retries of each
    RPC, ``poll`` the spacing of polls that find the job pending and the overall timeout
    (:class:`xretry.DeferredTimeoutError`). ``gate``, ``hooks``, ``sleep`` and ``clock`` are those
    of ``@xretry.retry``; submission and polls share one gate.

    Raises :class:`xretry.DeferredPollError` (with ``request_id``) when a poll fails for good, and
    the SDK's gRPC error when the submission does (then nothing was submitted, or it is unknown:
    a DEADLINE_EXCEEDED is never resubmitted).
    """
    check_policy(policy)
    clock = time.monotonic if clock is None else clock
    sleep = time.sleep if sleep is None else sleep
    job = _Job(chat, request_id, poll, clock, random.random)
    shared = own_gate(gate, clock)
    rpc = _retrying(policy, hooks, shared, sleep, clock)

    def submit(request: Any) -> Any:
        return job.stub.StartDeferredCompletion(request)

    def get(request: Any) -> Any:
        return job.stub.GetDeferredCompletion(request)

    token = OUTER_CALL.set(False)  # this loop owns the retries, even inside a decorated call
    try:
        if job.request_id is None:
            answer = rpc(submit)(job.request)
            _pause(sleep, job.submitted(answer))
        fetch = rpc(get)
        while True:
            try:
                answer = fetch(job.poll_request())
            except Exception as exc:
                raise job.failed(exc) from exc
            result = job.answered(answer)
            if isinstance(result, float):
                _pause(sleep, result)
                continue
            return result
    finally:
        OUTER_CALL.reset(token)


async def adefer(
    chat: Any,
    *,
    request_id: str | None = None,
    policy: RetryPolicy | None = None,
    poll: PollPolicy | None = None,
    hooks: Iterable[RetryHook] | None = None,
    gate: Gate | Literal[False] | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    clock: Callable[[], float] | None = None,
) -> Response:
    """:func:`defer` for an ``xai_sdk.AsyncClient`` chat (asyncio, as grpc.aio needs)."""
    check_policy(policy)
    clock = time.monotonic if clock is None else clock
    asleep: Callable[[float], Awaitable[None]] = anyio.sleep if sleep is None else sleep
    job = _Job(chat, request_id, poll, clock, random.random)
    shared = own_gate(gate, clock)
    rpc = _retrying(policy, hooks, shared, asleep, clock)

    async def submit(request: Any) -> Any:
        return await job.stub.StartDeferredCompletion(request)

    async def get(request: Any) -> Any:
        return await job.stub.GetDeferredCompletion(request)

    token = OUTER_CALL.set(False)
    try:
        if job.request_id is None:
            answer = await rpc(submit)(job.request)
            await _apause(asleep, job.submitted(answer))
        fetch = rpc(get)
        while True:
            try:
                answer = await fetch(job.poll_request())
            except Exception as exc:
                raise job.failed(exc) from exc
            result = job.answered(answer)
            if isinstance(result, float):
                await _apause(asleep, result)
                continue
            return result
    finally:
        OUTER_CALL.reset(token)


def _pause(sleep: Callable[[float], None], seconds: float) -> None:
    run(pause(seconds), None, sleep, None)


async def _apause(sleep: Callable[[float], Awaitable[None]], seconds: float) -> None:
    await arun(pause(seconds), None, sleep, None)
