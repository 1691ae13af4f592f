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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import tenacity
from tenacity.retry import retry_base
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import _testing
from ._classify import Decision, Verdict, error_summary, response_of
from ._errors import redact
from ._hooks import EventKind, RetryEvent, RetryHook, emit
from ._policy import PollPolicy, RetryPolicy

if TYPE_CHECKING:
    from ._budget import RetryBudget
    from ._gate import Gate

__all__ = [
    "AttemptRecord",
    "RetryCall",
    "RetryHistory",
    "describe",
    "first_try_history",
    "poll_gap",
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


def poll_gap(poll: PollPolicy, polls: int, rng: Callable[[], float], hint: float | None) -> float:
    """Seconds until the next poll after ``polls`` answers of "not ready": pure, overflow-safe.

    ``interval * multiplier ** (polls - 1)``, capped at ``max_interval``, spread by +/- ``jitter``.
    A ``retry-after`` the server sent with its 202 is a floor: never poll sooner than asked.
    """
    try:
        gap = poll.interval * poll.multiplier ** max(polls - 1, 0)
    except OverflowError:
        gap = poll.max_interval
    gap = min(gap, poll.max_interval) * (1.0 + poll.jitter * (2.0 * rng() - 1.0))
    return gap if hint is None else max(gap, hint)


class _WaitPoll(wait_base):
    """tenacity's wait for the polling machine: :func:`poll_gap` for the n-th 202."""

    def __init__(self, call: RetryCall, poll: PollPolicy, rng: Callable[[], float]) -> None:
        self._call = call
        self._poll = poll
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return poll_gap(
            self._poll, retry_state.attempt_number, self._rng, self._call.decision.delay
        )


def _machine(
    retrying: tenacity.Retrying, start: float
) -> tuple[tenacity.Retrying, tenacity.RetryCallState]:
    retrying.begin()
    state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
    state.start_time = start  # our clock, not tenacity's: stop_before_delay then uses it
    return retrying, state


class RetryCall:
    """Per-call state around tenacity ``Retrying`` objects used as decision machines.

    Two machines: one for error retries (RetryPolicy: attempts, backoff, deadline) and, on the
    deferred-completion endpoint, one for polling (PollPolicy: schedule, timeout). A 202 starts a
    fresh error run, so a 503 in the middle of polling is retried as usual without using up the
    attempts of the next one; the poll timeout bounds the whole call.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_hooks",
        "_polling",
        "_records",
        "_retrying",
        "_rng",
        "_start",
        "_state",
        "_stop",
        "_throttled",
        "decision",
        "gate",
        "method",
        "policy",
        "poll",
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
        poll: PollPolicy | None = None,
        gate: Gate | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.gate = gate
        #: The retry budget this call draws on (``None`` for a deferred poll: a paid-for result
        #: is never throttled).
        self._budget = budget
        self._throttled = False
        self.poll = poll
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
        # Test mode: jitter off. Backoff draws 0 (the exact ceiling), polling 0.5 (the exact gap).
        self._rng: Callable[[], float] = (
            (lambda: 0.5) if _testing.active() is not None else random.random
        )
        stop: stop_base = tenacity.stop_after_attempt(policy.max_attempts)
        deadline = self.deadline
        if deadline is not None:
            stop = stop | tenacity.stop_before_delay(deadline)
        self._stop = stop | _StopIfHintTooLong(self, policy.max_retry_after)
        self._retrying, self._state = self._errors_machine(start)
        self._polling: tuple[tenacity.Retrying, tenacity.RetryCallState] | None = None

    @property
    def deadline(self) -> float | None:
        """Seconds for the whole call: the poll timeout when polling, else the policy's deadline."""
        return self.poll.timeout if self.poll is not None else self.policy.deadline

    def _errors_machine(self, start: float) -> tuple[tenacity.Retrying, tenacity.RetryCallState]:
        rng = (lambda: 0.0) if _testing.active() is not None else self._rng
        return _machine(
            tenacity.Retrying(
                retry=_RetryIfVerdict(self),
                wait=_WaitHintOrBackoff(self, self.policy, rng),
                stop=self._stop,
                retry_error_callback=lambda _state: None,  # "stop" is None, not RetryError
            ),
            start,
        )

    # -- the decision ---------------------------------------------------------------------------

    def gated(self, decision: Decision, status: int | None, wait: float | None) -> Decision:
        """With a gate, a rate-limit 429 is retried through the gate rather than after a wait of
        its own: the certain part of the server's wait (``wait``) is the gate's shared cooldown,
        and pacing decides the rest. Until the gate knows a rate and with no certain wait, the
        429'd requests back off as usual, so they don't all come back at once.

        A requested wait longer than ``max_retry_after`` still ends the call (see the stop rule).
        """
        if self.gate is None or status != 429 or decision.verdict is not Verdict.RETRY:
            return decision
        asked = decision.delay
        remaining = self.remaining()
        if asked is not None and (
            asked > self.policy.max_retry_after or (remaining is not None and asked > remaining)
        ):
            return decision  # longer than we will wait: the stop rules end the call now
        if asked is not None and asked > self.gate.settings.max_wait:
            return decision  # longer than the gate holds anyone (a poll may wait that long)
        delay = None if wait is None and self.gate.rate is None else 0.0
        return decision if delay == decision.delay else replace(decision, delay=delay)

    def next_delay(self, outcome: object, decision: Decision) -> float | None:
        """Record a RETRY or POLL outcome; seconds to sleep before the next try, or ``None``."""
        self.decision = decision
        now = self._clock()
        if decision.verdict is Verdict.POLL:
            if self.poll is None:
                return None
            if self._polling is None:
                self._polling = _machine(
                    tenacity.Retrying(
                        retry=tenacity.retry_always,
                        wait=_WaitPoll(self, self.poll, self._rng),
                        stop=(
                            tenacity.stop_never
                            if self.poll.timeout is None
                            else tenacity.stop_before_delay(self.poll.timeout)
                        ),
                        retry_error_callback=lambda _state: None,
                    ),
                    self._start,
                )
            retrying, state = self._polling
            # A 202 ends a run of errors: the next error starts a fresh run (same deadline).
            self._retrying, self._state = self._errors_machine(self._start)
            kind: Literal["retry", "poll"] = "poll"
        else:
            retrying, state = self._retrying, self._state
            kind = "retry"
        if isinstance(outcome, BaseException):
            state.set_exception((type(outcome), outcome, outcome.__traceback__))
        else:
            state.set_result(outcome)
        state.outcome_timestamp = now
        budget = self._budget if kind == "retry" and _server_failure(outcome) else None
        if budget is not None:
            budget.on_failure()  # every server failure counts, the last attempt's too
        action = retrying.iter(state)
        if not isinstance(action, tenacity.DoSleep):
            return None
        if budget is not None and not budget.allows_retry():
            self._throttled = True
            return None
        delay = float(action)
        state.prepare_for_next_attempt()
        record = self._record(outcome, decision, delay)
        self._records.append(record)
        emit(self._hooks, self._event(kind, record))
        return delay

    def remaining(self) -> float | None:
        """Seconds left of the deadline, or ``None`` without one."""
        deadline = self.deadline
        if deadline is None:
            return None
        return max(deadline - (self._clock() - self._start), 0.0)

    def capped(self, wait: float) -> float:
        """A gate's wait, cut to what is left of the deadline, and added to the history: the
        last attempt's ``delay`` is then all the time waited before the next one."""
        remaining = self.remaining()
        if remaining is not None and wait > remaining:
            wait = remaining
        if wait > 0 and self._records:
            last = self._records[-1]
            self._records[-1] = replace(last, delay=(last.delay or 0.0) + wait)
        return wait

    def expired(self) -> bool:
        """True when too little of the deadline is left to start another attempt.

        tenacity's ``stop_before_delay`` never plans a sleep past the deadline, but a real sleep
        can overrun; an attempt with (nearly) zero timeouts would fail for certain and replace the
        last real answer with a timeout. When it is too late, the last outcome's record (made when
        the retry was planned) is taken back: :meth:`finish` records it as the last attempt.
        """
        deadline = self.deadline
        if deadline is None:
            return False
        remaining = self.remaining()
        if remaining is None or remaining > min(0.25, deadline * 0.05):
            return False
        if self._records:  # the retry planned after the last outcome will not happen
            self._records.pop()
        return True

    def bound_timeouts(self, extensions: MutableMapping[str, Any]) -> None:
        """Cap the next attempt's httpx timeouts at what is left of the deadline."""
        remaining = self.remaining()
        if remaining is None:
            return
        original = self.timeouts or {}
        capped: dict[str, float] = {}
        for key in ("connect", "read", "write", "pool"):
            given = original.get(key)
            capped[key] = remaining if given is None else min(given, remaining)
        extensions["timeout"] = capped

    # -- the end --------------------------------------------------------------------------------

    def finish(self, outcome: object, decision: Decision) -> RetryHistory:
        """Close the books: the history, and a give-up event if the outcome was still retryable."""
        gave_up = decision.verdict is Verdict.RETRY or (
            decision.verdict is Verdict.POLL and self.poll is not None
        )
        stop_reason = self._stop_reason(decision) if gave_up else None
        reason = f"{decision.reason}; {stop_reason}" if stop_reason else decision.reason
        record = self._record(outcome, decision, None, reason)
        self._records.append(record)
        elapsed = self._clock() - self._start
        history = RetryHistory(tuple(self._records), gave_up, stop_reason, elapsed)
        # max_attempts=1 without polling is "no retries", asked for: nothing was given up.
        if gave_up and (self.policy.max_attempts > 1 or self.poll is not None):
            emit(self._hooks, self._event("give_up", record))
        if isinstance(outcome, BaseException) and (len(self._records) > 1 or gave_up):
            outcome.add_note(describe(history))
        return history

    def _stop_reason(self, decision: Decision) -> str:
        policy = self.policy
        if self._throttled and self._budget is not None:
            return self._budget.describe()
        if decision.verdict is Verdict.POLL:
            timeout = self.poll.timeout if self.poll is not None else None
            return f"poll timeout={timeout:g}s reached" if timeout else "polling stopped"
        if decision.delay is not None and decision.delay > policy.max_retry_after:
            return (
                f"server asked to wait {decision.delay:g}s, more than "
                f"max_retry_after={policy.max_retry_after:g}s"
            )
        if self._state.attempt_number >= policy.max_attempts:
            return f"max_attempts={policy.max_attempts} reached"
        if self.poll is not None:
            return f"poll timeout={self.deadline:g}s would be exceeded"
        return f"deadline={self.deadline:g}s would be exceeded"

    def _record(
        self, outcome: object, decision: Decision, delay: float | None, reason: str | None = None
    ) -> AttemptRecord:
        number = len(self._records) + 1
        why = reason or decision.reason
        if isinstance(outcome, BaseException):
            error = redact(error_summary(outcome), self.secrets)
            return AttemptRecord(number, None, error, decision.verdict, why, delay)
        status = getattr(outcome, "status_code", None)
        return AttemptRecord(number, status, None, decision.verdict, why, delay)

    def _event(self, kind: EventKind, record: AttemptRecord) -> RetryEvent:
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


def _server_failure(outcome: object) -> bool:
    """A transport error or a 5xx: what a retry budget counts (a 429 is the gate's business)."""
    # The decorator's outcomes are exceptions, often carrying the response (httpx, openai).
    response = response_of(outcome) if isinstance(outcome, BaseException) else outcome
    status = getattr(response, "status_code", None)
    if isinstance(status, int):
        return status >= 500
    return isinstance(outcome, BaseException)


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
