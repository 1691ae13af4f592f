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

from ._classify import Decision, Verdict, classify_exception, request_of, response_of
from ._core import SEND, Observe, RetryCall, Steps, Target, retry_steps, through_gate
from ._drivers import anyio_sleep, arun, run
from ._errors import RetryBudgetExhaustedError
from ._gate import Gate, learned_status, own_gate, signals
from ._hooks import RetryHook, as_hooks
from ._outer import OUTER_CALL
from ._policy import RetryPolicy, check_policy
from ._redact import request_secrets
from ._sdk_retries import check_sdk_retries

__all__ = ["retry"]

P = ParamSpec("P")
T = TypeVar("T")

_DEFAULT_POLICY = RetryPolicy()
_SUCCESS = Decision(Verdict.SUCCESS, "returned")


class _Returned:
    """What a call returned (so that a returned exception object is not taken for a raise)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class _Retrier:
    """One decorated function's configuration, and the loop's call-site steps (see
    :class:`xretry._core.Attempts`): its outcomes are return values and exceptions."""

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

    def steps(self) -> Steps[Any]:
        """One decorated call: admission, the gate, the first attempt, then the retry loop."""
        start = self.clock()
        gate = self.gate
        if gate is not None:
            budget = gate.budget
            if budget is not None and not budget.admit():
                raise RetryBudgetExhaustedError(self.name, budget.describe())
            yield from through_gate(gate, None, limit=self.policy.deadline, what=self.name)
        first = yield SEND
        if isinstance(first, _Returned):
            if gate is not None:
                yield Observe(200)
            return first.value
        call = RetryCall(
            policy=self.policy,
            target=self._target(first),
            start=start,
            clock=self.clock,
            hooks=self.hooks,
            gate=gate,
            budget=None if gate is None else gate.budget,
        )
        outcome, _history = yield from retry_steps(call, self, first)
        if isinstance(outcome, _Returned):
            return outcome.value
        assert isinstance(outcome, BaseException)
        raise outcome

    def _target(self, failure: object) -> Target:
        request = request_of(failure)
        if request is None:
            return Target("CALL", self.name)
        return Target.of_request(request, request_secrets(request))

    def judge(self, call: RetryCall, outcome: object) -> Steps[Decision]:
        if isinstance(outcome, _Returned):
            if self.gate is not None:
                yield Observe(200)
            return _SUCCESS
        assert isinstance(outcome, Exception)
        check_sdk_retries(outcome, self)  # the xai-sdk's channel may have retried underneath
        request = request_of(outcome)
        # Without a request to say otherwise, a call is assumed to be a billed POST: a failure
        # after sending is not repeated unless the policy lists POST as idempotent.
        method = request.method if request is not None else "POST"
        decision = classify_exception(outcome, method=method, policy=self.policy)
        if self.gate is None:
            return decision
        response = response_of(outcome)
        status = getattr(response, "status_code", None)
        headers = getattr(response, "headers", None)
        wait = rate = None
        if not isinstance(status, int):
            status = None
        elif headers is not None:
            try:
                wait, rate = signals(status, headers, now=time.time(), policy=self.policy)
            except Exception:  # a foreign response object with odd headers: nothing to learn
                wait = rate = None
        yield Observe(learned_status(status, decision), wait, rate)
        return call.gated(decision, status, wait)

    def discard(self, outcome: object) -> Steps[None]:
        yield from ()  # an exception holds nothing to close

    def kept(self, outcome: object) -> object:
        return outcome

    def resend(self, call: RetryCall) -> None:
        pass


def _sync(
    func: Callable[P, T], retrier: _Retrier, sleep: Callable[[float], None]
) -> Callable[P, T]:
    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if OUTER_CALL.get():  # inside another decorated call: that one owns the retries
            return func(*args, **kwargs)
        token = OUTER_CALL.set(True)
        try:
            send = lambda: _Returned(func(*args, **kwargs))  # noqa: E731
            result: T = run(retrier.steps(), send, sleep, retrier.gate)
            return result
        finally:
            OUTER_CALL.reset(token)

    return wrapper


def _async(
    func: Callable[P, Awaitable[T]],
    retrier: _Retrier,
    sleep: Callable[[float], Awaitable[None]],
) -> Callable[P, Awaitable[T]]:
    @functools.wraps(func)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        if OUTER_CALL.get():  # inside another decorated call: that one owns the retries
            return await func(*args, **kwargs)
        token = OUTER_CALL.set(True)
        try:

            async def send() -> _Returned:
                return _Returned(await func(*args, **kwargs))

            result: T = await arun(retrier.steps(), send, sleep, retrier.gate)
            return result
        finally:
            OUTER_CALL.reset(token)

    return wrapper


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
    the original exception is re-raised, unchanged in type, with a note listing the attempts
    (PEP 678) and its text masked of the failed request's secrets (key, query string, proxy
    credentials).
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
            wrapped: Any = _async(function, retrier, anyio_sleep if sleep is None else sleep)
        else:
            wrapped = _sync(function, retrier, time.sleep if sleep is None else sleep)
        return wrapped  # type: ignore[no-any-return]

    if func is not None:
        return decorate(func)
    return decorate
