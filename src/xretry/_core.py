"""The retry decision core: tenacity decides how long to wait and when to stop; drivers do I/O.

A :class:`RetryCall` lives for one logical request and is never shared. The drivers (sync and async
transports, later the decorator) do only this::

    outcome, decision = <send once>                  # driver: I/O
    while decision.verdict is RETRY:
        delay = call.next_delay(outcome, decision)   # core: tenacity's wait + stop, no I/O
        if delay is None: break                      # out of attempts, time, or patience
        <discard outcome; sleep delay; send again>   # driver: I/O
    return call.finish(outcome, decision)            # core: history, give-up event, note

tenacity is driven through its public state machine (``Retrying.iter`` on a ``RetryCallState``),
the way its own ``for attempt in Retrying()`` loop drives it. Its timestamps are overwritten with
our injectable clock, so ``stop_before_delay`` works with a fake clock in tests.

The first attempt happens *before* any of this exists: a first-try success costs a dict lookup and
a status check, and no tenacity object is built.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal

import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import _testing
from ._classify import Decision, Verdict
from ._errors import redact
from ._hooks import RetryEvent, RetryHook, emit
from ._policy import RetryPolicy

__all__ = [
    "AttemptRecord",
    "RetryCall",
    "RetryHistory",
    "describe",
    "first_try_history",
    "should_sleep",
]

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt: what came back, what it meant, and how long xretry slept after it."""

    number: int
    #: Response status, or ``None`` when the attempt raised.
    status_code: int | None
    #: ``"ReadTimeout: ..."`` when the attempt raised.
    error: str | None
    verdict: Verdict
    reason: str
    #: Seconds slept before the next attempt; ``None`` for the last attempt.
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class RetryHistory:
    """Every attempt of one logical request, on ``response.extensions["xretry"]``.

    ``gave_up`` is true when the last outcome was still retryable but attempts, the deadline or the
    server's requested wait ruled out another try; ``stop_reason`` says which.
    """

    attempts: tuple[AttemptRecord, ...]
    gave_up: bool = False
    stop_reason: str | None = None
    elapsed: float = 0.0

    @property
    def attempt_count(self) -> int:
        return len(self.attempts)

    @property
    def total_delay(self) -> float:
        """Seconds slept between attempts."""
        return sum(a.delay or 0.0 for a in self.attempts)


#: First-try successes share one immutable history per status: the success path allocates nothing.
_FIRST_TRY: dict[int, RetryHistory] = {}


def first_try_history(status_code: int) -> RetryHistory:
    history = _FIRST_TRY.get(status_code)
    if history is None:
        record = AttemptRecord(1, status_code, None, Verdict.SUCCESS, "first try")
        history = _FIRST_TRY.setdefault(status_code, RetryHistory((record,)))
    return history


class _RetryIfVerdict(retry_base):
    """tenacity's retry predicate, answered by the classifier's verdict for this outcome."""

    def __init__(self, call: RetryCall) -> None:
        self._call = call

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        return self._call.decision.verdict is Verdict.RETRY


class _WaitHintOrBackoff(wait_base):
    """The server's requested wait when it named one, else jittered exponential backoff.

    The ceiling is tenacity's ``wait_exponential`` (overflow-safe, capped at ``max_delay``); jitter
    takes a ``policy.jitter`` fraction of it away at random: 1.0 is full jitter.
    """

    def __init__(self, call: RetryCall, policy: RetryPolicy, rng: Callable[[], float]) -> None:
        self._call = call
        self._jitter = policy.jitter
        self._rng = rng
        self._ceiling = tenacity.wait_exponential(
            multiplier=policy.initial_delay, exp_base=policy.multiplier, max=policy.max_delay
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        hint = self._call.decision.delay
        if hint is not None:
            return hint
        ceiling = self._ceiling(retry_state)
        return ceiling * (1.0 - self._jitter * self._rng())


class _StopIfHintTooLong(stop_base):
    """Stop at once when the server asks for a longer wait than the policy will honour."""

    def __init__(self, call: RetryCall, limit: float) -> None:
        self._call = call
        self._limit = limit

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        hint = self._call.decision.delay
        return hint is not None and hint > self._limit


class RetryCall:
    """Per-call retry state around one tenacity ``Retrying`` used as a decision machine."""

    __slots__ = (
        "_clock",
        "_hooks",
        "_records",
        "_retrying",
        "_start",
        "_state",
        "decision",
        "method",
        "policy",
        "replayable",
        "secrets",
        "timeouts",
        "url",
    )

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        method: str,
        url: str,
        start: float,
        clock: Clock,
        hooks: tuple[RetryHook, ...],
        secrets: list[str],
        timeouts: Mapping[str, float | None] | None = None,
        replayable: bool = True,
    ) -> None:
        self.policy = policy
        self.replayable = replayable
        self.method = method
        self.url = url
        self.secrets = secrets
        self.timeouts = timeouts
        self.decision = Decision(Verdict.SUCCESS, "")
        self._start = start
        self._clock = clock
        self._hooks = hooks
        self._records: list[AttemptRecord] = []
        testing = _testing.active() is not None
        rng: Callable[[], float] = (lambda: 0.0) if testing else random.random
        stop: stop_base = tenacity.stop_after_attempt(policy.max_attempts)
        if policy.deadline is not None:
            stop = stop | tenacity.stop_before_delay(policy.deadline)
        stop = stop | _StopIfHintTooLong(self, policy.max_retry_after)
        self._retrying = tenacity.Retrying(
            retry=_RetryIfVerdict(self),
            wait=_WaitHintOrBackoff(self, policy, rng),
            stop=stop,
            retry_error_callback=lambda _state: None,  # "stop" is None, not RetryError
        )
        self._retrying.begin()
        self._state = tenacity.RetryCallState(self._retrying, fn=None, args=(), kwargs={})
        self._state.start_time = start

    # -- the decision ---------------------------------------------------------------------------

    def next_delay(self, outcome: object, decision: Decision) -> float | None:
        """Record a RETRY outcome; seconds to sleep before the next attempt, or ``None`` to stop."""
        state = self._state
        if isinstance(outcome, BaseException):
            state.set_exception((type(outcome), outcome, outcome.__traceback__))
        else:
            state.set_result(outcome)
        state.outcome_timestamp = self._clock()
        self.decision = decision
        action = self._retrying.iter(state)
        if not isinstance(action, tenacity.DoSleep):
            return None
        delay = float(action)
        state.prepare_for_next_attempt()
        record = self._record(outcome, decision, delay)
        self._records.append(record)
        emit(self._hooks, self._event("retry", record))
        return delay

    def remaining(self) -> float | None:
        """Seconds left of the deadline, or ``None`` without one."""
        if self.policy.deadline is None:
            return None
        return max(self.policy.deadline - (self._clock() - self._start), 0.0)

    def bound_timeouts(self, extensions: MutableMapping[str, Any]) -> None:
        """Cap the next attempt's httpx timeouts at what is left of the deadline."""
        remaining = self.remaining()
        if remaining is None:
            return
        original = self.timeouts or {}
        extensions["timeout"] = {
            key: remaining if original.get(key) is None else min(original[key] or 0.0, remaining)
            for key in ("connect", "read", "write", "pool")
        }

    # -- the end --------------------------------------------------------------------------------

    def finish(self, outcome: object, decision: Decision) -> RetryHistory:
        """Close the books: the history, and a give-up event if the outcome was still retryable."""
        gave_up = decision.verdict is Verdict.RETRY
        stop_reason = self._stop_reason(decision) if gave_up else None
        reason = f"{decision.reason}; {stop_reason}" if stop_reason else decision.reason
        record = self._record(outcome, decision, None, reason)
        self._records.append(record)
        elapsed = self._clock() - self._start
        history = RetryHistory(tuple(self._records), gave_up, stop_reason, elapsed)
        if gave_up:
            emit(self._hooks, self._event("give_up", record))
        if isinstance(outcome, BaseException) and len(self._records) > 1:
            outcome.add_note(describe(history))
        return history

    def _stop_reason(self, decision: Decision) -> str:
        policy = self.policy
        if decision.delay is not None and decision.delay > policy.max_retry_after:
            return (
                f"server asked to wait {decision.delay:g}s, more than "
                f"max_retry_after={policy.max_retry_after:g}s"
            )
        if len(self._records) + 1 >= policy.max_attempts:
            return f"max_attempts={policy.max_attempts} reached"
        return f"deadline={policy.deadline:g}s would be exceeded"

    def _record(
        self, outcome: object, decision: Decision, delay: float | None, reason: str | None = None
    ) -> AttemptRecord:
        number = len(self._records) + 1
        why = reason or decision.reason
        if isinstance(outcome, BaseException):
            error = redact(f"{type(outcome).__name__}: {outcome}", self.secrets)
            return AttemptRecord(number, None, error, decision.verdict, why, delay)
        status = getattr(outcome, "status_code", None)
        return AttemptRecord(number, status, None, decision.verdict, why, delay)

    def _event(self, kind: Literal["retry", "give_up"], record: AttemptRecord) -> RetryEvent:
        return RetryEvent(
            kind=kind,
            method=self.method,
            url=self.url,
            attempt=record.number,
            max_attempts=self.policy.max_attempts,
            status_code=record.status_code,
            error=record.error,
            reason=record.reason,
            delay=record.delay or 0.0,
            elapsed=self._clock() - self._start,
        )


def describe(history: RetryHistory) -> str:
    """A short, secret-free account of the attempts, for exception notes (PEP 678)."""
    lines = [f"xretry: {history.attempt_count} attempts in {history.elapsed:.2f}s"]
    if history.stop_reason:
        lines[0] += f", gave up: {history.stop_reason}"
    for record in history.attempts:
        what = record.error if record.status_code is None else str(record.status_code)
        slept = "" if record.delay is None else f", slept {record.delay:.3f}s"
        lines.append(f"  {record.number}. {what} ({record.verdict.value}{slept})")
    return "\n".join(lines)


def should_sleep(delay: float) -> bool:
    """False in test mode, where the wait is recorded instead of slept (see xretry.testing)."""
    schedule = _testing.active()
    if schedule is None:
        return True
    schedule.record(delay)
    return False
