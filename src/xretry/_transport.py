"""The drop-in transports: ``httpx.Client(transport=xretry.RetryTransport())``.

Two thin drivers (sync and async) over one core. They differ only in how they send, read, close and
sleep; what an outcome means (:mod:`._classify`) and how long to wait or when to stop
(:mod:`._core`, tenacity) is shared. The drivers are written against the transport interface httpx
and httpx2 share, so :mod:`xretry.httpx2` reuses them unchanged.

Semantics, the same for both:

* SUCCESS and FATAL responses are returned as they are: the caller's ``raise_for_status()`` or SDK
  decides what a 400 means. When attempts, the deadline or patience run out on a retryable outcome,
  the last response is returned, or the last exception re-raised (with a note listing the attempts).
* Every discarded response is closed. Buffered request bodies are replayed; a one-shot streaming
  body is never retried. A successful streaming response's body is never touched (only a 429's is
  read, to tell a rate limit from spent credits).
* Every attempt passes the transport's :class:`Gate` (its own unless one is shared; ``gate=False``
  for none): a 429 pauses everyone for the certain part of the server's wait, pacing learned from
  429s and ``x-ratelimit-*`` headers keeps the requests just under the limit.
* ``request.extensions["xretry"]`` overrides the policy for one request (a :class:`RetryPolicy`,
  a mapping of fields to change, or ``False`` for no retries); ``response.extensions["xretry"]``
  holds the :class:`RetryHistory`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

import anyio
import httpx

from ._classify import (
    Decision,
    Verdict,
    classify_exception,
    classify_response,
    is_deferred_poll,
    needs_body,
)
from ._core import RetryCall, first_try_history, should_sleep
from ._errors import RetryBudgetExhaustedError, display_url, request_secrets
from ._gate import Gate, apass_gate, learned_status, own_gate, pass_gate, signals
from ._hooks import RetryHook, as_hooks
from ._policy import PollPolicy, RetryPolicy, check_policy

__all__ = [
    "DEADLINE",
    "OUTER_LOOP",
    "AsyncDriver",
    "AsyncRetryTransport",
    "RetryTransport",
    "SyncDriver",
]

_DEFAULT_POLICY = RetryPolicy()
logger = logging.getLogger("xretry")

#: Set while an ``@xretry.retry`` call runs: transports inside it send once and step aside.
OUTER_CALL: ContextVar[bool] = ContextVar("xretry_outer_call", default=False)

#: ``request.extensions["xretry"] = OUTER_LOOP``: an outer xretry loop (the poller, the decorator)
#: owns this request's retries. An xretry transport inside then sends it once and steps aside, so
#: attempts never multiply.
OUTER_LOOP: Any = type("OuterLoop", (), {"__repr__": lambda self: "xretry.OUTER_LOOP"})()
#: ``request.extensions[DEADLINE] = seconds``: what an outer loop (``as_completed``) has left for
#: this request; it caps the policy's deadline, so the request's retries and timeouts end in time.
DEADLINE = "xretry.deadline"
_DEFAULT_POLL = PollPolicy()

T = TypeVar("T")


class _Driver(Generic[T]):
    """What both drivers share: configuration, per-request policy, and opening a RetryCall."""

    _transport: T
    #: The library's buffered body stream (``httpx.ByteStream``): bytes, JSON and form bodies,
    #: which can be sent again. Anything else (a generator, a file) is a one-shot stream.
    _buffered: type

    def __init__(
        self,
        transport: T,
        *,
        policy: RetryPolicy | None,
        poll: PollPolicy | Literal[False] | None,
        gate: Gate | Literal[False] | None,
        hooks: Iterable[RetryHook] | None,
        clock: Callable[[], float] | None,
    ) -> None:
        check_policy(policy)
        self._transport = transport
        self._policy = _DEFAULT_POLICY if policy is None else policy
        if poll is not None and poll is not False and not isinstance(poll, PollPolicy):
            raise ValueError(f"poll must be a PollPolicy or False, got {type(poll).__name__}")
        self._poll: PollPolicy | None = (
            _DEFAULT_POLL if poll is None else (None if poll is False else poll)
        )
        self._hooks = as_hooks(hooks)
        self._clock = time.monotonic if clock is None else clock
        self._gate = own_gate(gate, self._clock)
        #: True for a driver that is itself the outer loop (it sets OUTER_LOOP on its requests).
        self._outer = False
        #: Set once this transport has handed back a failure: an SDK may now retry on top of it,
        #: so requests are checked for its retry marker (until one is found and reported).
        self._armed = False
        self._warned = False

    @property
    def policy(self) -> RetryPolicy:
        """The policy applied to requests that don't override it."""
        return self._policy

    @property
    def gate(self) -> Gate | None:
        """The gate every request passes (shared cooldown, adaptive pacing), or ``None``."""
        return self._gate

    def _prepare(
        self, request: Any
    ) -> tuple[RetryPolicy, bool, dict[str, Any] | None, PollPolicy | None] | None:
        """Per-request policy, replayability, the caller's timeouts and the polling schedule;
        ``None``: step aside.

        Runs before the first send, so a bad per-request override fails before anything is sent.
        With a deadline (the poll timeout, for a poll), the first attempt's timeouts are capped
        here (one dict write), so even that path builds no retry state until something fails.
        """
        policy = self._policy
        if (override := request.extensions.get("xretry")) is not None:
            if override is OUTER_LOOP:
                if not self._outer:
                    self._check_sdk_retries(request)
                    return None
            else:
                policy = RetryPolicy.coerce(override, base=policy)
        elif OUTER_CALL.get() and not self._outer:
            # An outer loop owns the retries; an SDK retrying underneath would still multiply them.
            self._check_sdk_retries(request)
            return None
        if self._armed:
            self._check_sdk_retries(request)
        bound = request.extensions.get(DEADLINE)
        if bound is not None and (policy.deadline is None or bound < policy.deadline):
            policy = policy.replace(deadline=bound)  # an outer loop's time left (as_completed)
        # Decided before sending: a transport may buffer a one-shot body while sending it.
        stream = request.stream
        replayable = isinstance(stream, self._buffered) or _replayable_other(self, stream)
        poll = self._poll_for(request, policy)
        limit = policy.deadline if poll is None else poll.timeout
        timeouts = None
        if limit is not None:
            given = request.extensions.get("timeout")
            timeouts = given if isinstance(given, dict) else {}  # read only, never mutated
            request.extensions["timeout"] = _capped(timeouts, limit)
        return policy, replayable, timeouts, poll

    def _check_sdk_retries(self, request: Any) -> None:
        if self._warned:
            return
        count = request.headers.get("x-stainless-retry-count", "0")
        if count.isdigit() and int(count) > 0:
            self._armed = False
            self._warned = True  # one warning per transport
            logger.warning(
                "an SDK is retrying on top of xretry (x-stainless-retry-count: %s): attempts "
                "multiply. Let xretry do the retrying: pass max_retries=0 to the OpenAI/Anthropic "
                "client (e.g. OpenAI(http_client=..., max_retries=0)).",
                count,
            )

    def _open(
        self,
        request: Any,
        policy: RetryPolicy,
        start: float,
        replayable: bool,
        timeouts: dict[str, Any] | None,
        poll: PollPolicy | None,
    ) -> RetryCall:
        if timeouts is None:
            given = request.extensions.get("timeout")
            timeouts = dict(given) if isinstance(given, dict) else None
        return RetryCall(
            policy=policy,
            method=request.method,
            url=display_url(request),
            start=start,
            clock=self._clock,
            hooks=self._hooks,
            secrets=request_secrets(request),
            timeouts=timeouts,
            replayable=replayable,
            poll=poll,
            gate=self._gate,
            # A deferred result is paid for: its polls are never throttled by a retry budget.
            budget=None if self._gate is None or _polls(request) else self._gate.budget,
        )

    def _poll_for(self, request: Any, policy: RetryPolicy) -> PollPolicy | None:
        """The polling schedule for a deferred-completion GET, or ``None`` (202 is final)."""
        if request.method != "GET" or b"deferred-completion" not in request.url.raw_path:
            return None  # the common case, cheaply (the full check follows)
        if not is_deferred_poll(request.method, request.url.path):
            return None
        override = request.extensions.get("xretry.poll")
        if override is not None:
            if override is False:
                return None
            if not isinstance(override, PollPolicy):
                raise ValueError(
                    "request.extensions['xretry.poll'] must be a PollPolicy or False, "
                    f"got {type(override).__name__}"
                )
            return override
        # xretry=False ("one attempt, nothing more") switches polling off too.
        if request.extensions.get("xretry") is False:
            return None
        return self._poll

    def _recap(
        self,
        request: Any,
        policy: RetryPolicy,
        poll: PollPolicy | None,
        timeouts: dict[str, Any] | None,
        start: float,
    ) -> None:
        """After a wait at the gate, cap the first attempt's timeouts at what the deadline has
        left (``_prepare`` capped them at all of it)."""
        limit = _limit(policy, poll)
        if limit is None:
            return
        elapsed = self._clock() - start
        if elapsed > 0:
            request.extensions["timeout"] = _capped(timeouts or {}, max(limit - elapsed, 0.001))

    def _admit(self, request: Any) -> None:
        """Refuse a call before sending while a fail-fast retry budget is exhausted (never the
        poll of a deferred completion: that result is paid for)."""
        assert self._gate is not None
        budget = self._gate.budget
        if budget is not None and not _polls(request) and not budget.admit():
            raise RetryBudgetExhaustedError(display_url(request), budget.describe())

    @staticmethod
    def _judge_response(
        request: Any, response: Any, call: RetryCall, body: bytes | None
    ) -> Decision:
        return classify_response(
            request.method,
            request.url.path,
            response.status_code,
            response.headers,
            body,
            policy=call.policy,
            now=time.time(),
            replayable=call.replayable,
        )

    @staticmethod
    def _judge_exception(request: Any, exc: Exception, call: RetryCall) -> Decision:
        return classify_exception(
            exc, method=request.method, policy=call.policy, replayable=call.replayable
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(transport={self._transport!r}, policy={self._policy!r})"


def _limit(policy: RetryPolicy, poll: PollPolicy | None) -> float | None:
    """How long a call may take: the poll timeout for a poll, else the policy's deadline."""
    return policy.deadline if poll is None else poll.timeout


def _polls(request: Any) -> bool:
    return is_deferred_poll(request.method, request.url.path)


def _capped(timeouts: dict[str, Any], limit: float) -> dict[str, float]:
    get = timeouts.get
    connect, read, write, pool = get("connect"), get("read"), get("write"), get("pool")
    return {
        "connect": limit if connect is None or connect > limit else connect,
        "read": limit if read is None or read > limit else read,
        "write": limit if write is None or write > limit else write,
        "pool": limit if pool is None or pool > limit else pool,
    }


def _replayable_other(driver: _Driver[Any], stream: Any) -> bool:
    """Multipart bodies replay (httpx rewinds files); a body of the other library is a mistake."""
    name = type(stream).__name__
    if name == "MultipartStream":
        return True
    if name == "ByteStream":  # an httpx2 request through the httpx transport, or the reverse
        expected = driver._buffered.__module__.split(".")[0]
        raise TypeError(
            f"{type(driver).__name__} is for {expected} clients, but got a request from "
            f"{type(stream).__module__.split('.')[0]}: use "
            + ("xretry.httpx2." if expected == "httpx" else "xretry.")
            + type(driver).__name__
        )
    return False


#: Bodies of 429s up to this size are read to tell a rate limit from spent credits; a larger or
#: unsized body is left alone (and the 429 treated as a rate limit).
_MAX_429_BODY = 64 * 1024


def _returnable(outcome: Any, request: Any) -> Any:
    """The last outcome, fit to hand over after it was closed: a response whose body was not read
    becomes an empty-bodied copy (same status, headers and extensions) the client can read."""
    if isinstance(outcome, BaseException):
        return outcome
    try:
        outcome.content  # noqa: B018 - raises ResponseNotRead when the body was not kept
    except Exception:
        dropped = {"content-length", "content-encoding", "transfer-encoding"}
        headers = [(k, v) for k, v in outcome.headers.multi_items() if k.lower() not in dropped]
        return type(outcome)(
            outcome.status_code,
            headers=headers,
            content=b"",
            request=request,
            extensions=outcome.extensions,
        )
    return outcome


def _small_body(response: Any) -> bool:
    length = response.headers.get("content-length", "")
    return length.isdigit() and int(length) <= _MAX_429_BODY


class SyncDriver(_Driver[Any]):
    """The sync loop; mixed into a ``BaseTransport`` of httpx or httpx2."""

    def __init__(
        self,
        transport: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | Literal[False] | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(transport, policy=policy, poll=poll, gate=gate, hooks=hooks, clock=clock)
        self._sleep = time.sleep if sleep is None else sleep

    def handle_request(self, request: Any) -> Any:
        prepared = self._prepare(request)
        if prepared is None:
            return self._transport.handle_request(request)
        policy, replayable, timeouts, poll = prepared
        start = self._clock()
        gate = self._gate
        if gate is not None:
            if gate.budget is not None:
                self._admit(request)
            wait = gate.reserve()
            if wait:  # the common case, 0, costs nothing more
                limit = _limit(policy, poll)
                pass_gate(gate, self._pause, None, limit=limit, what=request, first=wait)
                self._recap(request, policy, poll, timeouts, start)
        first: Any
        try:
            first = self._transport.handle_request(request)
        except Exception as exc:
            first = exc  # handled below, outside the except block: no misleading chaining
        else:
            status = first.status_code
            # The success path: nothing built, nothing read (a 202 only polls on the deferred GET).
            if status < 400 and (status != 202 or not _polls(request)):
                if gate is not None:
                    told = signals(status, first.headers, now=0.0, policy=policy)[1]
                    gate.observe(status, rate=told)
                first.extensions["xretry"] = first_try_history(status)
                return first
        return self._retry(request, policy, start, replayable, timeouts, poll, first)

    def _pause(self, seconds: float) -> None:
        if seconds > 0 and should_sleep(seconds):
            self._sleep(seconds)

    def _retry(
        self,
        request: Any,
        policy: RetryPolicy,
        start: float,
        replayable: bool,
        timeouts: dict[str, Any] | None,
        poll: PollPolicy | None,
        first: Any,
    ) -> Any:
        call = self._open(request, policy, start, replayable, timeouts, poll)
        outcome, decision = self._judge(request, call, first)
        while decision.verdict is Verdict.RETRY or decision.verdict is Verdict.POLL:
            delay = call.next_delay(outcome, decision)
            if delay is None:
                break
            if not isinstance(outcome, BaseException):
                if _small_body(outcome):  # keep it readable, in case it ends up returned
                    with contextlib.suppress(Exception):
                        outcome.read()
                outcome.close()
            self._pause(delay)
            if self._gate is not None:
                pass_gate(self._gate, self._pause, call)
            if call.expired():  # a sleep overran what the deadline left: no doomed attempt
                outcome = _returnable(outcome, request)
                break
            call.bound_timeouts(request.extensions)
            try:
                sent = self._transport.handle_request(request)
            except Exception as exc:
                sent = exc
            outcome, decision = self._judge(request, call, sent)
        history = call.finish(outcome, decision)
        if history.gave_up or isinstance(outcome, BaseException) or outcome.status_code >= 400:
            self._armed = True
        if isinstance(outcome, BaseException):
            raise outcome
        outcome.extensions["xretry"] = history
        return outcome

    def _judge(self, request: Any, call: RetryCall, sent: Any) -> tuple[Any, Decision]:
        if isinstance(sent, Exception):
            if self._gate is not None:
                self._gate.observe(None)
            return sent, self._judge_exception(request, sent, call)
        body = None
        if needs_body(sent.status_code) and _small_body(sent):
            try:
                body = sent.read()
            except Exception:  # unreadable: still a 429, judged without its body
                body = None
            except BaseException:
                sent.close()
                raise
        decision = self._judge_response(request, sent, call, body)
        if self._gate is not None:
            status = sent.status_code
            wait, rate = signals(status, sent.headers, now=time.time(), policy=call.policy)
            self._gate.observe(learned_status(status, decision), wait=wait, rate=rate)
            decision = call.gated(decision, status, wait)
        return sent, decision

    def close(self) -> None:
        """Close the wrapped transport."""
        self._transport.close()


async def _default_async_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)  # asyncio or trio, whichever is running


class AsyncDriver(_Driver[Any]):
    """The async loop; mixed into an ``AsyncBaseTransport`` of httpx or httpx2."""

    def __init__(
        self,
        transport: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | Literal[False] | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(transport, policy=policy, poll=poll, gate=gate, hooks=hooks, clock=clock)
        self._sleep = _default_async_sleep if sleep is None else sleep

    async def handle_async_request(self, request: Any) -> Any:
        prepared = self._prepare(request)
        if prepared is None:
            return await self._transport.handle_async_request(request)
        policy, replayable, timeouts, poll = prepared
        start = self._clock()
        gate = self._gate
        if gate is not None:
            if gate.budget is not None:
                self._admit(request)
            wait = await gate.areserve()
            if wait:
                limit = _limit(policy, poll)
                await apass_gate(gate, self._pause, None, limit=limit, what=request, first=wait)
                self._recap(request, policy, poll, timeouts, start)
        first: Any
        try:
            first = await self._transport.handle_async_request(request)
        except Exception as exc:
            first = exc
        else:
            status = first.status_code
            if status < 400 and (status != 202 or not _polls(request)):
                if gate is not None:
                    told = signals(status, first.headers, now=0.0, policy=policy)[1]
                    await gate.aobserve(status, rate=told)
                first.extensions["xretry"] = first_try_history(status)
                return first
        return await self._retry(request, policy, start, replayable, timeouts, poll, first)

    async def _pause(self, seconds: float) -> None:
        if seconds > 0 and should_sleep(seconds):
            await self._sleep(seconds)

    async def _retry(
        self,
        request: Any,
        policy: RetryPolicy,
        start: float,
        replayable: bool,
        timeouts: dict[str, Any] | None,
        poll: PollPolicy | None,
        first: Any,
    ) -> Any:
        call = self._open(request, policy, start, replayable, timeouts, poll)
        outcome, decision = await self._judge(request, call, first)
        while decision.verdict is Verdict.RETRY or decision.verdict is Verdict.POLL:
            delay = call.next_delay(outcome, decision)
            if delay is None:
                break
            if not isinstance(outcome, BaseException):
                if _small_body(outcome):
                    with contextlib.suppress(Exception):
                        await outcome.aread()
                await outcome.aclose()
            await self._pause(delay)
            if self._gate is not None:
                await apass_gate(self._gate, self._pause, call)
            if call.expired():
                outcome = _returnable(outcome, request)
                break
            call.bound_timeouts(request.extensions)
            try:
                sent = await self._transport.handle_async_request(request)
            except Exception as exc:
                sent = exc
            outcome, decision = await self._judge(request, call, sent)
        history = call.finish(outcome, decision)
        if history.gave_up or isinstance(outcome, BaseException) or outcome.status_code >= 400:
            self._armed = True
        if isinstance(outcome, BaseException):
            raise outcome
        outcome.extensions["xretry"] = history
        return outcome

    async def _judge(self, request: Any, call: RetryCall, sent: Any) -> tuple[Any, Decision]:
        if isinstance(sent, Exception):
            if self._gate is not None:
                await self._gate.aobserve(None)
            return sent, self._judge_exception(request, sent, call)
        body = None
        if needs_body(sent.status_code) and _small_body(sent):
            try:
                body = await sent.aread()
            except Exception:
                body = None
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await sent.aclose()
                raise
        decision = self._judge_response(request, sent, call, body)
        if self._gate is not None:
            status = sent.status_code
            wait, rate = signals(status, sent.headers, now=time.time(), policy=call.policy)
            await self._gate.aobserve(learned_status(status, decision), wait=wait, rate=rate)
            decision = call.gated(decision, status, wait)
        return sent, decision

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()


class RetryTransport(SyncDriver, httpx.BaseTransport):
    """A retrying wrapper around any sync httpx transport (default ``httpx.HTTPTransport()``).

    Example::

        client = httpx.Client(
            base_url="https://api.x.ai/v1",
            transport=xretry.RetryTransport(policy=xretry.RetryPolicy(max_attempts=4)),
        )

    ``sleep`` and ``clock`` (``time.sleep`` and ``time.monotonic`` by default) are injectable for
    tests; ``hooks`` receive a :class:`RetryEvent` per retry and per give-up.
    """

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | Literal[False] | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            httpx.HTTPTransport() if transport is None else transport,
            policy=policy,
            poll=poll,
            gate=gate,
            hooks=hooks,
            sleep=sleep,
            clock=clock,
        )

    _buffered = httpx.ByteStream

    if TYPE_CHECKING:  # precise types for callers, without a super() hop on every request

        def handle_request(self, request: httpx.Request) -> httpx.Response: ...


class AsyncRetryTransport(AsyncDriver, httpx.AsyncBaseTransport):
    """A retrying wrapper around any async httpx transport (default ``httpx.AsyncHTTPTransport()``).

    Runs on asyncio and trio. See :class:`RetryTransport` for the arguments; ``sleep`` is async.
    """

    def __init__(
        self,
        transport: httpx.AsyncBaseTransport | None = None,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | Literal[False] | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            httpx.AsyncHTTPTransport() if transport is None else transport,
            policy=policy,
            poll=poll,
            gate=gate,
            hooks=hooks,
            sleep=sleep,
            clock=clock,
        )

    _buffered = httpx.ByteStream

    if TYPE_CHECKING:

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...
