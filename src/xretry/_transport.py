"""The drop-in transports: ``httpx.Client(transport=xretry.RetryTransport())``.

The retry loop is :func:`xretry._core.retry_steps`, run by the drivers of :mod:`xretry._drivers`;
this module adds what HTTP needs: the per-request plan (policy overrides, polling, replayable
bodies, deadlines), reading and closing responses, and the success path. The drivers are written
against the transport interface httpx and httpx2 share, so :mod:`xretry.httpx2` reuses them.

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
  holds the :class:`RetryHistory`. The caller's request is never changed: with a deadline, each
  attempt is sent with extensions of its own (capped timeouts), and the caller's are put back.

The success path (a first attempt that needs nothing more) runs inline in each driver, with no
generator and no retry state: it is the one place where sync and async code look alike, because a
generator costs more than the whole rest of that path (``benchmarks/overhead.py``).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypedDict, Unpack

import httpx

from ._classify import (
    Decision,
    classify_exception,
    classify_response,
    is_deferred_poll,
    needs_body,
)
from ._core import (
    FIRST_TRY,
    SEND,
    Close,
    Observe,
    Read,
    RetryCall,
    Steps,
    Target,
    capped_timeouts,
    first_try_history,
    retry_steps,
    through_gate,
)
from ._drivers import anyio_sleep, arun, run
from ._errors import RetryBudgetExhaustedError
from ._gate import Gate, learned_status, own_gate, signals
from ._hooks import RetryHook, as_hooks
from ._outer import DEADLINE, OUTER_CALL, OUTER_LOOP
from ._policy import PollPolicy, RetryPolicy, check_policy
from ._redact import display_url, request_secrets

__all__ = [
    "AsyncDriver",
    "AsyncOptions",
    "AsyncRetryTransport",
    "RetryTransport",
    "SyncDriver",
    "SyncOptions",
    "TransportOptions",
]

_DEFAULT_POLICY = RetryPolicy()
_DEFAULT_POLL = PollPolicy()
logger = logging.getLogger("xretry")


class TransportOptions(TypedDict, total=False):
    """What every transport takes besides the inner transport (all optional).

    ``policy``: the :class:`RetryPolicy` for requests that don't override it.
    ``poll``: the :class:`PollPolicy` for deferred-completion GETs, or ``False`` (a 202 is final).
    ``gate``: a :class:`Gate` to share, ``None`` for one of its own, ``False`` for none.
    ``hooks``: callables receiving a :class:`RetryEvent` per retry, poll and give-up.
    ``clock``: seconds, monotonic (``time.monotonic``), injectable for tests.
    """

    policy: RetryPolicy | None
    poll: PollPolicy | Literal[False] | None
    gate: Gate | Literal[False] | None
    hooks: Iterable[RetryHook] | None
    clock: Callable[[], float] | None


class SyncOptions(TransportOptions, total=False):
    """:class:`TransportOptions` and ``sleep`` (``time.sleep``), injectable for tests."""

    sleep: Callable[[float], None] | None


class AsyncOptions(TransportOptions, total=False):
    """:class:`TransportOptions` and an async ``sleep`` (anyio's), injectable for tests."""

    sleep: Callable[[float], Awaitable[None]] | None


@dataclass(frozen=True, slots=True)
class _Plan:
    """How one request is to be sent, decided before the first attempt (one shared instance for
    the common case: the transport's policy, no polling, a buffered body, no deadline)."""

    policy: RetryPolicy
    #: The polling schedule for a deferred-completion GET, else ``None``.
    poll: PollPolicy | None = None
    #: A GET of the deferred-completion endpoint (a 202 there means "not ready").
    polls: bool = False
    #: The body can be sent again.
    replayable: bool = True
    #: The caller's extensions, put back after the call, when attempts carry their own.
    caller: dict[str, Any] | None = None

    @property
    def limit(self) -> float | None:
        """How long the call may take: the poll timeout for a poll, else the deadline."""
        return self.policy.deadline if self.poll is None else self.poll.timeout

    def caller_timeouts(self) -> Mapping[str, Any] | None:
        given = None if self.caller is None else self.caller.get("timeout")
        return given if isinstance(given, dict) else None


class _HttpDriver:
    """What both drivers share: configuration, the per-request plan and the loop's HTTP steps."""

    def __init__(
        self,
        transport: Any,
        buffered: type,
        *,
        outer: bool = False,
        **options: Unpack[TransportOptions],
    ) -> None:
        policy = options.get("policy")
        poll = options.get("poll")
        clock = options.get("clock")
        check_policy(policy)
        self._transport = transport
        #: The library's buffered body stream (``httpx.ByteStream``): bytes, JSON and form bodies,
        #: which can be sent again. Anything else (a generator, a file) is a one-shot stream.
        self._buffered = buffered
        self._policy = _DEFAULT_POLICY if policy is None else policy
        if poll is not None and poll is not False and not isinstance(poll, PollPolicy):
            raise ValueError(f"poll must be a PollPolicy or False, got {type(poll).__name__}")
        self._poll: PollPolicy | None = (
            _DEFAULT_POLL if poll is None else (None if poll is False else poll)
        )
        self._plain = _Plan(self._policy)
        self._hooks = as_hooks(options.get("hooks"))
        self._clock = time.monotonic if clock is None else clock
        self._gate = own_gate(options.get("gate"), self._clock)
        #: True for a driver that is itself the outer loop (a poller's: it marks its requests).
        self._outer = outer
        #: Set once this transport has handed back a failure: an SDK may now retry on top of it,
        #: so requests are checked for its retry marker (until one is found and reported).
        self._armed = False
        self._warned = False
        #: The server has sent ``x-ratelimit-*`` headers; until it has, successes are counted and
        #: only every ``_HINT_EVERY``-th is looked at (see ``_told``).
        self._hinted = False
        self._unhinted = 0

    @property
    def policy(self) -> RetryPolicy:
        """The policy applied to requests that don't override it."""
        return self._policy

    @property
    def gate(self) -> Gate | None:
        """The gate every request passes (shared cooldown, adaptive pacing), or ``None``."""
        return self._gate

    # -- before the first attempt -------------------------------------------------------------

    def _plan(self, request: Any) -> _Plan | None:
        """How to send ``request``; ``None``: step aside (an outer loop owns its retries).

        Runs before the first send, so a bad per-request override fails before anything is sent.
        With a deadline (the poll timeout, for a poll), the first attempt gets extensions of its
        own with capped timeouts (one dict copy), so even that path builds no retry state.
        """
        policy = self._policy
        extensions = request.extensions
        if (override := extensions.get("xretry")) is not None:
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
        bound = extensions.get(DEADLINE)
        if bound is not None and (policy.deadline is None or bound < policy.deadline):
            policy = policy.replace(deadline=bound)  # an outer loop's time left (as_completed)
        # Decided before sending: a transport may buffer a one-shot body while sending it.
        stream = request.stream
        replayable = isinstance(stream, self._buffered) or _replayable_other(self, stream)
        # A deferred-completion poll? The cheap checks first: the common case is "no".
        polls = (
            request.method == "GET"
            and b"deferred-completion" in request.url.raw_path
            and is_deferred_poll(request.method, request.url.path)
        )
        poll = self._poll_for(request, policy) if polls else None
        if poll is not None and not self._outer:
            poll = _within_deadline(poll, policy.deadline)
        limit = policy.deadline if poll is None else poll.timeout
        if limit is None:
            if policy is self._policy and replayable and not polls:
                return self._plain
            return _Plan(policy, poll, polls, replayable)
        given = extensions.get("timeout")
        timeouts = capped_timeouts(given if isinstance(given, dict) else {}, limit)
        request.extensions = {**extensions, "timeout": timeouts}
        return _Plan(policy, poll, polls, replayable, extensions)

    def _reserve(self, request: Any, plan: _Plan) -> float | None:
        """Admission (a fail-fast retry budget) and the gate's first answer: 0.0 to go now, a wait,
        or ``None`` when the gate's backend does I/O and is asked in the loop instead."""
        gate = self._gate
        if gate is None:
            return 0.0
        if gate.budget is not None and not plan.polls:
            self._admit(request, gate)
        return gate.reserve() if gate.local else None

    def _poll_for(self, request: Any, policy: RetryPolicy) -> PollPolicy | None:
        """The polling schedule for a deferred-completion GET, or ``None`` (202 is final)."""
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

    @staticmethod
    def _admit(request: Any, gate: Gate) -> None:
        """Refuse a call before sending while a fail-fast retry budget is exhausted (never the
        poll of a deferred completion: that result is paid for)."""
        budget = gate.budget
        if budget is not None and not budget.admit():
            raise RetryBudgetExhaustedError(display_url(request), budget.describe())

    # -- the first answer ---------------------------------------------------------------------

    def _succeeded(self, request: Any, plan: _Plan, response: Any) -> bool:
        """The success path's end: a first answer that needs no retry, with the gate told (only
        ever a local gate here: see ``_reserve``)."""
        status = response.status_code
        if status >= 400 or (status == 202 and plan.polls):
            return False
        gate = self._gate
        if gate is not None:
            gate.observe(status, None, self._told(plan, response))
        response.extensions["xretry"] = FIRST_TRY.get(status) or first_try_history(status)
        return True

    def _told(self, plan: _Plan, response: Any) -> float | None:
        """The refill rate a success's ``x-ratelimit-*`` headers tell the gate, if any.

        A server that sends these headers sends them on every response, and they only matter once
        a bucket is half used, which lasts many responses: so until the first one is seen, only
        the first success and every ``_HINT_EVERY``-th after it are looked at (a header lookup
        costs about a third of the success path's time).
        """
        if not self._hinted:
            self._unhinted += 1
            if self._unhinted % _HINT_EVERY != 1:
                return None
            if "x-ratelimit-limit-requests" not in response.headers:
                return None
            self._hinted = True
        return signals(response.status_code, response.headers, now=0.0, policy=plan.policy)[1]

    def _steps(
        self, request: Any, plan: _Plan, start: float, *, wait: float | None, first: Any
    ) -> Steps[Any]:
        """Everything but the success path: the gate's wait (``wait``, its first answer) before
        the first attempt (``first`` is ``None`` until it is sent), then the retry loop."""
        gate = self._gate
        if first is None:
            if gate is not None:
                url = display_url(request)
                yield from through_gate(gate, None, limit=plan.limit, what=url, first=wait)
                self._recap(request, plan, start)
            first = yield SEND
            if not isinstance(first, BaseException):
                status = first.status_code
                if status < 400 and not (status == 202 and plan.polls):
                    if gate is not None:
                        yield Observe(status, None, self._told(plan, first))
                    first.extensions["xretry"] = first_try_history(status)
                    return first
        call = RetryCall(
            policy=plan.policy,
            target=Target.of_request(request, request_secrets(request)),
            start=start,
            clock=self._clock,
            hooks=self._hooks,
            poll=plan.poll,
            gate=gate,
            # A deferred result is paid for: its polls are never throttled by a retry budget.
            budget=None if gate is None or plan.polls else gate.budget,
        )
        last, history = yield from retry_steps(call, _HttpAttempts(request, plan, gate), first)
        outcome: Any = last
        if history.gave_up or isinstance(outcome, BaseException) or outcome.status_code >= 400:
            self._armed = True
        if isinstance(outcome, BaseException):
            raise outcome
        outcome.extensions["xretry"] = history
        return outcome

    def _recap(self, request: Any, plan: _Plan, start: float) -> None:
        """After a wait at the gate, cap the first attempt's timeouts at what the deadline has
        left (``_plan`` capped them at all of it)."""
        limit = plan.limit
        if limit is None:
            return
        elapsed = self._clock() - start
        if elapsed > 0:
            left = max(limit - elapsed, 0.001)
            timeouts = capped_timeouts(plan.caller_timeouts() or {}, left)
            request.extensions = {**request.extensions, "timeout": timeouts}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(transport={self._transport!r}, policy={self._policy!r})"


#: Until a server has sent ``x-ratelimit-*`` headers, one success in this many is looked at.
_HINT_EVERY = 8


class _HttpAttempts:
    """The HTTP side of the loop (see :class:`xretry._core.Attempts`) for one request."""

    __slots__ = ("gate", "plan", "request")

    def __init__(self, request: Any, plan: _Plan, gate: Gate | None) -> None:
        self.request = request
        self.plan = plan
        self.gate = gate

    def judge(self, call: RetryCall, outcome: object) -> Steps[Decision]:
        request, plan = self.request, self.plan
        if isinstance(outcome, BaseException):
            if self.gate is not None:
                yield Observe(None)
            return classify_exception(
                outcome, method=request.method, policy=call.policy, replayable=plan.replayable
            )
        response: Any = outcome
        status = response.status_code
        body = None
        if needs_body(status) and _small_body(response):
            body = yield Read(response)  # unreadable: still a 429, judged without its body
        decision = classify_response(
            request.method,
            request.url.path,
            status,
            response.headers,
            body,
            policy=call.policy,
            now=time.time(),
            replayable=plan.replayable,
        )
        if self.gate is not None:
            wait, rate = signals(status, response.headers, now=time.time(), policy=call.policy)
            yield Observe(learned_status(status, decision), wait, rate)
            decision = call.gated(decision, status, wait)
        return decision

    def discard(self, outcome: object) -> Steps[None]:
        if not isinstance(outcome, BaseException):
            if _small_body(outcome):  # keep it readable, in case it ends up returned
                yield Read(outcome)
            yield Close(outcome)

    def kept(self, outcome: object) -> object:
        return _returnable(outcome, self.request)

    def resend(self, call: RetryCall) -> None:
        timeouts = call.timeouts(self.plan.caller_timeouts())
        if timeouts is not None:
            self.request.extensions = {**self.request.extensions, "timeout": timeouts}


def _within_deadline(poll: PollPolicy, deadline: float | None) -> PollPolicy:
    """A poll through the transport ends with the smaller of its poll timeout and the policy's
    deadline (docs/guarantees.md, section 1: the deadline covers the whole call). The pollers, which
    own their jobs' schedule, keep ``PollPolicy.timeout`` (``wait(timeout=...)``)."""
    if deadline is None or (poll.timeout is not None and poll.timeout <= deadline):
        return poll
    return poll.replace(timeout=deadline)


def _replayable_other(driver: _HttpDriver, stream: Any) -> bool:
    """Whether a body that is not the library's buffered one can be sent again.

    A multipart body replays when every file part does: bytes or text, or a file httpx can rewind
    (``seekable()``); a pipe, a socket or a reader without ``seek`` would be sent empty the second
    time, so such a body is a one-shot stream. Any body of the other library is a mistake, refused
    with the class to use.
    """
    library = type(stream).__module__.partition(".")[0]
    expected = driver._buffered.__module__.partition(".")[0]
    if library in _LIBRARIES and library != expected:
        raise TypeError(_mixed(driver, f"got a request from {library}"))
    if type(stream).__name__ == "MultipartStream":
        return _rewindable_parts(stream)
    return False


#: The HTTP libraries xretry has transports for (a request of one in the other's is refused).
_LIBRARIES = frozenset({"httpx", "httpx2"})


def _mixed(driver: _HttpDriver, what: str) -> str:
    """The message for a transport put in a client it is not made for: which class to use."""
    expected = driver._buffered.__module__.partition(".")[0]
    name = type(driver).__name__
    return (
        f"{name} is for {expected} clients, but {what}: use "
        + ("xretry.httpx2." if expected == "httpx" else "xretry.")
        + name
    )


def _wrong_mode(driver: _HttpDriver, right: str, client: str) -> str:
    """The message for a sync transport in an async client, or the reverse."""
    library = driver._buffered.__module__.partition(".")[0]
    where = "xretry.httpx2." if library == "httpx2" else "xretry."
    return (
        f"{type(driver).__name__} is not for {client}: use {where}{right} in "
        f"{'an ' if client.startswith('an') else 'a '}{library}."
        f"{'Async' if client.startswith('an') else ''}Client"
    )


def _rewindable_parts(stream: Any) -> bool:
    """True when every part of a multipart body reads the same the second time (httpx and httpx2
    seek each file back to 0 before sending it, and read bytes and text as they are)."""
    fields = getattr(stream, "fields", None)
    if not isinstance(fields, list):
        return False  # a multipart body of unknown shape: never resent, rather than resent empty
    for part in fields:
        if not hasattr(part, "file"):
            continue  # a form field: text
        file = part.file
        if isinstance(file, str | bytes):
            continue
        seekable = getattr(file, "seekable", None)
        try:
            if not (callable(seekable) and seekable() is True and hasattr(file, "seek")):
                return False
        except Exception:  # a closed file: sending it fails anyway, and is not retried
            return False
    return True


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


class SyncDriver(_HttpDriver):
    """The sync transport; mixed into a ``BaseTransport`` of httpx or httpx2."""

    def __init__(
        self,
        transport: Any,
        buffered: type,
        *,
        outer: bool = False,
        sleep: Callable[[float], None] | None = None,
        **options: Unpack[TransportOptions],
    ) -> None:
        super().__init__(transport, buffered, outer=outer, **options)
        self._sleep = time.sleep if sleep is None else sleep

    def handle_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return self._transport.handle_request(request)
        start = self._clock()
        try:
            wait = self._reserve(request, plan)  # may refuse (fail-fast budget): caller's put back
            first = None
            if wait == 0.0:  # the success path: one send, nothing built
                try:
                    first = self._transport.handle_request(request)
                except Exception as exc:
                    first = exc
                else:
                    if self._succeeded(request, plan, first):
                        return first
            send = functools.partial(self._transport.handle_request, request)
            steps = self._steps(request, plan, start, wait=wait, first=first)
            return run(steps, send, self._sleep, self._gate)
        finally:
            if plan.caller is not None:
                request.extensions = plan.caller

    def close(self) -> None:
        """Close the wrapped transport."""
        self._transport.close()

    # What an async client calls: refused with the class to use, not a bare AttributeError.

    async def handle_async_request(self, request: Any) -> Any:
        raise TypeError(_wrong_mode(self, "Async" + type(self).__name__, "an async client"))

    async def aclose(self) -> None:
        """Close the wrapped (sync) transport: what an async client calls on leaving."""
        self._transport.close()

    async def __aenter__(self) -> Any:
        raise TypeError(_wrong_mode(self, "Async" + type(self).__name__, "an async client"))

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class AsyncDriver(_HttpDriver):
    """The async transport; mixed into an ``AsyncBaseTransport`` of httpx or httpx2."""

    def __init__(
        self,
        transport: Any,
        buffered: type,
        *,
        outer: bool = False,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        **options: Unpack[TransportOptions],
    ) -> None:
        super().__init__(transport, buffered, outer=outer, **options)
        self._sleep = anyio_sleep if sleep is None else sleep

    async def handle_async_request(self, request: Any) -> Any:
        plan = self._plan(request)
        if plan is None:
            return await self._transport.handle_async_request(request)
        start = self._clock()
        try:
            wait = self._reserve(request, plan)  # may refuse (fail-fast budget): caller's put back
            first = None
            if wait == 0.0:  # the success path: one send, nothing built
                try:
                    first = await self._transport.handle_async_request(request)
                except Exception as exc:
                    first = exc
                else:
                    if self._succeeded(request, plan, first):
                        return first
            send = functools.partial(self._transport.handle_async_request, request)
            steps = self._steps(request, plan, start, wait=wait, first=first)
            return await arun(steps, send, self._sleep, self._gate)
        finally:
            if plan.caller is not None:
                request.extensions = plan.caller

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        await self._transport.aclose()

    # What a sync client calls: refused with the class to use, not a bare AttributeError.

    def handle_request(self, request: Any) -> Any:
        raise TypeError(
            _wrong_mode(self, type(self).__name__.removeprefix("Async"), "a sync client")
        )

    def close(self) -> None:
        """Refused: a sync client cannot close an async transport (see :meth:`handle_request`)."""
        raise TypeError(
            _wrong_mode(self, type(self).__name__.removeprefix("Async"), "a sync client")
        )

    def __enter__(self) -> Any:
        raise TypeError(
            _wrong_mode(self, type(self).__name__.removeprefix("Async"), "a sync client")
        )

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class RetryTransport(SyncDriver, httpx.BaseTransport):
    """A retrying wrapper around any sync httpx transport (default ``httpx.HTTPTransport()``).

    Example::

        client = httpx.Client(
            base_url="https://api.x.ai/v1",
            transport=xretry.RetryTransport(policy=xretry.RetryPolicy(max_attempts=4)),
        )

    Options (all keyword, all optional): ``policy``, ``poll``, ``gate``, ``hooks``, ``sleep`` and
    ``clock``; see :class:`TransportOptions`. ``sleep`` and ``clock`` (``time.sleep`` and
    ``time.monotonic`` by default) are injectable for tests.
    """

    def __init__(
        self, transport: httpx.BaseTransport | None = None, **options: Unpack[SyncOptions]
    ) -> None:
        inner = httpx.HTTPTransport() if transport is None else transport
        super().__init__(inner, httpx.ByteStream, **options)

    if TYPE_CHECKING:  # precise types for callers, without a super() hop on every request

        def handle_request(self, request: httpx.Request) -> httpx.Response: ...


class AsyncRetryTransport(AsyncDriver, httpx.AsyncBaseTransport):
    """A retrying wrapper around any async httpx transport (default ``httpx.AsyncHTTPTransport()``).

    Runs on asyncio and trio. Options as for :class:`RetryTransport`; ``sleep`` is async.
    """

    def __init__(
        self, transport: httpx.AsyncBaseTransport | None = None, **options: Unpack[AsyncOptions]
    ) -> None:
        inner = httpx.AsyncHTTPTransport() if transport is None else transport
        super().__init__(inner, httpx.ByteStream, **options)

    if TYPE_CHECKING:

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...
