"""``@xretry.retry``: the same policy and classifier at a call site, for any client.

For code that reaches the API through the openai SDK, the xai-sdk, httpx or httpx2 and wants the
retrying around the call rather than in a transport. The wrapped call is retried when it raises
what the classifier calls RETRY (see :func:`xretry.classify`): httpx/httpx2 transport errors and
status errors, xretry's typed errors, the openai SDK's errors (by their status and response, or the
httpx error they wrap), the xai-sdk's gRPC errors (by status code). A returned value is a success.

Retries never multiply: while a decorated call runs, an xretry transport inside it sends each
request once and steps aside (a context variable tells it), so one logical call makes at most
``policy.max_attempts`` HTTP attempts in all.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Literal, ParamSpec, TypeVar, overload

import anyio

from ._classify import Decision, Verdict, classify_exception, request_of, response_of
from ._core import RetryCall, should_sleep
from ._errors import RetryBudgetExhaustedError, display_url, request_secrets
from ._gate import Gate, apass_gate, learned_status, own_gate, pass_gate, signals
from ._hooks import RetryHook, as_hooks
from ._policy import RetryPolicy, check_policy
from ._sdk_retries import check_sdk_retries
from ._transport import OUTER_CALL

__all__ = ["retry"]

P = ParamSpec("P")
T = TypeVar("T")

_DEFAULT_POLICY = RetryPolicy()


class _Retrier:
    """Configuration shared by the sync and async wrappers of one decorated function."""

    def __init__(
        self,
        func: Callable[..., Any],
        policy: RetryPolicy | None,
        hooks: Iterable[RetryHook] | None,
        gate: Gate | Literal[False] | None,
        clock: Callable[[], float] | None,
    ) -> None:
        check_policy(policy)
        self.name = f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', func)}"
        self.policy = _DEFAULT_POLICY if policy is None else policy
        self.hooks = as_hooks(hooks)
        self.clock = time.monotonic if clock is None else clock
        self.gate = own_gate(gate, self.clock)

    def open(self, exc: BaseException, start: float) -> RetryCall:
        request = request_of(exc)
        return RetryCall(
            policy=self.policy,
            method=request.method if request is not None else "CALL",
            url=display_url(request) if request is not None else self.name,
            start=start,
            clock=self.clock,
            hooks=self.hooks,
            secrets=request_secrets(request) if request is not None else [],
            gate=self.gate,
            budget=None if self.gate is None else self.gate.budget,
        )

    def admit(self) -> None:
        """Refuse the call before it is made while a fail-fast retry budget is exhausted."""
        budget = None if self.gate is None else self.gate.budget
        if budget is not None and not budget.admit():
            raise RetryBudgetExhaustedError(self.name, budget.describe())

    def classify(self, exc: Exception) -> tuple[Decision, int | None, float | None, float | None]:
        """The verdict, and what the failure's response (if it carries one) tells the gate:
        ``(decision, status, shared wait, refill rate)``."""
        check_sdk_retries(exc, self)  # the xai-sdk's channel may have retried underneath
        request = request_of(exc)
        # Without a request to say otherwise, a call is assumed to be a billed POST: a failure
        # after sending is not repeated unless the policy lists POST as idempotent.
        method = request.method if request is not None else "POST"
        decision = classify_exception(exc, method=method, policy=self.policy)
        response = response_of(exc)
        status = getattr(response, "status_code", None)
        headers = getattr(response, "headers", None)
        if not isinstance(status, int) or headers is None:
            return decision, status if isinstance(status, int) else None, None, None
        try:
            wait, rate = signals(status, headers, now=time.time(), policy=self.policy)
        except Exception:  # a foreign response object with odd headers: nothing to learn
            wait = rate = None
        return decision, status, wait, rate

    def judge(self, exc: Exception, call: RetryCall) -> Decision:
        decision, status, wait, rate = self.classify(exc)
        if self.gate is None:
            return decision
        self.gate.observe(learned_status(status, decision), wait=wait, rate=rate)
        return call.gated(decision, status, wait)

    async def ajudge(self, exc: Exception, call: RetryCall) -> Decision:
        decision, status, wait, rate = self.classify(exc)
        if self.gate is None:
            return decision
        await self.gate.aobserve(learned_status(status, decision), wait=wait, rate=rate)
        return call.gated(decision, status, wait)

    def success(self) -> None:
        if self.gate is not None:
            self.gate.observe(200)

    async def asuccess(self) -> None:
        if self.gate is not None:
            await self.gate.aobserve(200)


def _sync(
    func: Callable[P, T], retrier: _Retrier, sleep: Callable[[float], None]
) -> Callable[P, T]:
    def pause(seconds: float) -> None:
        if seconds > 0 and should_sleep(seconds):
            sleep(seconds)

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if OUTER_CALL.get():  # inside another decorated call: that one owns the retries
            return func(*args, **kwargs)
        token = OUTER_CALL.set(True)
        try:
            start = retrier.clock()
            retrier.admit()
            if retrier.gate is not None:
                pass_gate(
                    retrier.gate, pause, None, limit=retrier.policy.deadline, what=retrier.name
                )
            try:
                result = func(*args, **kwargs)
            except Exception as exc:
                failure: Exception = exc
            else:
                retrier.success()
                return result
            call = retrier.open(failure, start)
            decision = retrier.judge(failure, call)
            while decision.verdict is Verdict.RETRY:
                delay = call.next_delay(failure, decision)
                if delay is None:
                    break
                pause(delay)
                if retrier.gate is not None:
                    pass_gate(retrier.gate, pause, call)
                if call.expired():
                    break
                try:
                    result = func(*args, **kwargs)
                except Exception as exc:
                    failure = exc
                    decision = retrier.judge(failure, call)
                else:
                    retrier.success()
                    return result
            call.finish(failure, decision)
            raise failure
        finally:
            OUTER_CALL.reset(token)

    return wrapper


def _async(
    func: Callable[P, Awaitable[T]],
    retrier: _Retrier,
    sleep: Callable[[float], Awaitable[None]],
) -> Callable[P, Awaitable[T]]:
    async def pause(seconds: float) -> None:
        if seconds > 0 and should_sleep(seconds):
            await sleep(seconds)

    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if OUTER_CALL.get():  # inside another decorated call: that one owns the retries
            return await func(*args, **kwargs)
        token = OUTER_CALL.set(True)
        try:
            start = retrier.clock()
            retrier.admit()
            if retrier.gate is not None:
                await apass_gate(
                    retrier.gate, pause, None, limit=retrier.policy.deadline, what=retrier.name
                )
            try:
                result = await func(*args, **kwargs)
            except Exception as exc:
                failure: Exception = exc
            else:
                await retrier.asuccess()
                return result
            call = retrier.open(failure, start)
            decision = await retrier.ajudge(failure, call)
            while decision.verdict is Verdict.RETRY:
                delay = call.next_delay(failure, decision)
                if delay is None:
                    break
                await pause(delay)
                if retrier.gate is not None:
                    await apass_gate(retrier.gate, pause, call)
                if call.expired():
                    break
                try:
                    result = await func(*args, **kwargs)
                except Exception as exc:
                    failure = exc
                    decision = await retrier.ajudge(failure, call)
                else:
                    await retrier.asuccess()
                    return result
            call.finish(failure, decision)
            raise failure
        finally:
            OUTER_CALL.reset(token)

    return wrapper


async def _anyio_sleep(seconds: float) -> None:
    await anyio.sleep(seconds)


@overload
def retry(func: Callable[P, T], /) -> Callable[P, T]: ...


@overload
def retry(
    *,
    policy: RetryPolicy | None = None,
    hooks: Iterable[RetryHook] | None = None,
    gate: Gate | Literal[False] | None = None,
    sleep: Callable[[float], Any] | None = None,
    clock: Callable[[], float] | None = None,
) -> Callable[[Callable[P, T]], Callable[P, T]]: ...


def retry(
    func: Callable[P, T] | None = None,
    /,
    *,
    policy: RetryPolicy | None = None,
    hooks: Iterable[RetryHook] | None = None,
    gate: Gate | Literal[False] | None = None,
    sleep: Callable[[float], Any] | None = None,
    clock: Callable[[], float] | None = None,
) -> Callable[P, T] | Callable[[Callable[P, T]], Callable[P, T]]:
    """Retry a sync or async function when it raises something worth retrying.

    Bare (``@xretry.retry``) or with arguments (``@xretry.retry(policy=...)``). When it gives up,
    the original exception is re-raised unchanged, with a note listing the attempts (PEP 678).
    ``sleep`` (sync or async to match the function) and ``clock`` are injectable for tests.

    Example::

        @xretry.retry(policy=xretry.RetryPolicy(max_attempts=4))
        def ask(prompt: str) -> str:
            reply = openai_client.chat.completions.create(model="grok-4", messages=[...])
            return reply.choices[0].message.content
    """

    def decorate(function: Callable[P, T]) -> Callable[P, T]:
        if inspect.isgeneratorfunction(function) or inspect.isasyncgenfunction(function):
            raise TypeError(
                f"@xretry.retry cannot wrap the generator function {function.__qualname__}: a "
                "generator can't be restarted halfway through. Retry the call that produces "
                "each item instead, or collect the items in a regular function."
            )
        if not callable(function):
            raise TypeError(f"@xretry.retry needs a function, got {function!r}")
        retrier = _Retrier(function, policy, hooks, gate, clock)
        if inspect.iscoroutinefunction(function):
            wrapped: Any = _async(function, retrier, _anyio_sleep if sleep is None else sleep)
        else:
            wrapped = _sync(function, retrier, time.sleep if sleep is None else sleep)
        return wrapped  # type: ignore[no-any-return]

    if func is not None:
        return decorate(func)
    return decorate
