"""The retry loop, written once: a sans-I/O generator of steps, run by thin sync and async drivers.

Every entry point (the transports, the decorator, the pollers) retries through :func:`retry_steps`.
It never sends, reads, sleeps or waits on a lock itself: it *yields* what it wants done and is
resumed with the answer, the way h11 and httpcore keep protocol logic apart from I/O::

    outcome = yield SEND                     # the driver sends once: a response or an exception
    body = yield Read(response)              # reads a body (None if it could not be read)
    yield Close(response)                    # closes a discarded response
    yield Sleep(seconds)                     # sleeps (test mode records the wait instead)
    wait = yield RESERVE                     # asks the gate for a slot
    yield Observe(status, wait, rate)        # tells the gate what came back

:mod:`xretry._drivers` holds the two drivers that answer these (``run`` and ``arun``); they are the
only place where sync and async differ. What an outcome *means* is the entry point's
:class:`Attempts` (its ``judge``), and the classifier's.

Decisions are tenacity's: a :class:`RetryCall` drives tenacity ``Retrying`` objects through their
public state machine (``Retrying.iter`` on a ``RetryCallState``), whose outcome is the
classifier's :class:`Decision`; the wait, stop and retry strategies read it from there. Timestamps
come from our injectable clock, so ``stop_before_delay`` works with a fake clock in tests.

The first attempt happens *before* any of this exists: a first-try success costs a dict lookup and
a status check, and builds neither a generator nor a tenacity object.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, final

import tenacity
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from . import _testing
from ._classify import Decision, Verdict, error_summary, response_of
from ._errors import GateTimeoutError
from ._hooks import EventKind, RetryEvent, RetryHook, emit
from ._policy import PollPolicy, RetryPolicy
from ._redact import display_url, redact, scrub

if TYPE_CHECKING:
    from ._budget import RetryBudget
    from ._gate import Gate

__all__ = [
    "RESERVE",
    "SEND",
    "FIRST_TRY",
    "AttemptRecord",
    "Attempts",
    "Close",
    "Observe",
    "Read",
    "RetryCall",
    "RetryHistory",
    "Sleep",
    "Step",
    "Steps",
    "Target",
    "capped_timeouts",
    "describe",
    "first_try_history",
    "pause",
    "poll_gap",
    "retry_steps",
    "through_gate",
]

Clock = Callable[[], float]
T = TypeVar("T")


# -- steps: what the loop asks a driver to do -------------------------------------------------


@final
class _Send:
    """Send (or call) once; answered with the response or return value, or the exception."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "SEND"


@final
class _Reserve:
    """Claim a slot at the gate; answered with :meth:`Gate.reserve`'s seconds."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "RESERVE"


SEND: Final = _Send()
RESERVE: Final = _Reserve()


@dataclass(frozen=True, slots=True)
class Read:
    """Read a response's body; answered with the bytes, or ``None`` when reading failed."""

    response: Any


@dataclass(frozen=True, slots=True)
class Close:
    """Close a response that is being discarded."""

    response: Any


@dataclass(frozen=True, slots=True)
class Sleep:
    """Sleep this many seconds (never yielded in test mode: see :func:`pause`)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Observe:
    """Tell the gate what an attempt got (see :meth:`Gate.observe`)."""

    status: int | None
    wait: float | None = None
    rate: float | None = None


Step = _Send | _Reserve | Read | Close | Sleep | Observe
#: A generator of steps that returns ``T``: what the drivers run.
Steps = Generator[Step, Any, T]


def pause(seconds: float) -> Steps[None]:
    """Sleep, or in test mode (``xretry.testing.no_wait``) record the wait and go on at once."""
    if seconds <= 0:
        return
    schedule = _testing.active()
    if schedule is None:
        yield Sleep(seconds)
    else:
        schedule.record(seconds)


# -- history ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt: what came back, what it meant, and how long xretry waited after it."""

    number: int
    #: Response status, or ``None`` when the attempt raised.
    status_code: int | None
    #: ``"ReadTimeout: ..."`` when the attempt raised.
    error: str | None
    verdict: Verdict
    reason: str
    #: Seconds waited before the next attempt (backoff and gate); ``None`` for the last attempt.
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
        """Seconds waited between attempts."""
        return sum(a.delay or 0.0 for a in self.attempts)


#: First-try successes share one immutable history per status: the success path allocates nothing.
FIRST_TRY: dict[int, RetryHistory] = {}


def first_try_history(status_code: int) -> RetryHistory:
    history = FIRST_TRY.get(status_code)
    if history is None:
        record = AttemptRecord(1, status_code, None, Verdict.SUCCESS, "first try")
        history = FIRST_TRY.setdefault(status_code, RetryHistory((record,)))
    return history


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


# -- tenacity strategies: they read the Decision that is tenacity's outcome --------------------


def _decision(retry_state: tenacity.RetryCallState) -> Decision:
    outcome = retry_state.outcome
    assert outcome is not None
    decision: Decision = outcome.result()
    return decision


def _retryable(decision: Decision) -> bool:
    return decision.verdict is Verdict.RETRY


class _WaitHintOrBackoff(wait_base):
    """The server's requested wait when it named one, else jittered exponential backoff.

    The ceiling is tenacity's ``wait_exponential`` (overflow-safe, capped at ``max_delay``); jitter
    takes a ``policy.jitter`` fraction of it away at random: 1.0 is full jitter.
    """

    def __init__(self, policy: RetryPolicy, rng: Callable[[], float]) -> None:
        self._jitter = policy.jitter
        self._rng = rng
        self._ceiling = tenacity.wait_exponential(
            multiplier=policy.initial_delay, exp_base=policy.multiplier, max=policy.max_delay
        )

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        hint = _decision(retry_state).delay
        if hint is not None:
            return hint
        ceiling = self._ceiling(retry_state)
        return ceiling * (1.0 - self._jitter * self._rng())


class _StopIfHintTooLong(stop_base):
    """Stop at once when the server asks for a longer wait than the policy will honour."""

    def __init__(self, limit: float) -> None:
        self._limit = limit

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        hint = _decision(retry_state).delay
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

    def __init__(self, poll: PollPolicy, rng: Callable[[], float]) -> None:
        self._poll = poll
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        hint = _decision(retry_state).delay
        return poll_gap(self._poll, retry_state.attempt_number, self._rng, hint)


@dataclass(slots=True)
class _Machine:
    """A tenacity ``Retrying`` used as a decision machine, and its state for this call."""

    retrying: tenacity.Retrying
    state: tenacity.RetryCallState

    @classmethod
    def start(cls, retrying: tenacity.Retrying, start: float) -> _Machine:
        retrying.begin()
        state = tenacity.RetryCallState(retrying, fn=None, args=(), kwargs={})
        state.start_time = start  # our clock, not tenacity's: stop_before_delay then uses it
        return cls(retrying, state)

    def next(self, decision: Decision, now: float) -> float | None:
        """Seconds to wait before trying again after ``decision``, or ``None``: stop."""
        state = self.state
        state.set_result(decision)
        state.outcome_timestamp = now
        action = self.retrying.iter(state)
        if not isinstance(action, tenacity.DoSleep):
            return None
        state.prepare_for_next_attempt()
        return float(action)


# -- the call ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """What a call is made to, as hooks, logs and notes name it (never a secret)."""

    method: str
    #: Scheme, host and path (see :func:`xretry._redact.display_url`), or a function's name.
    url: str
    #: The credentials to mask in any text the call reports.
    secrets: tuple[str, ...] = ()

    @classmethod
    def of_request(cls, request: Any, secrets: list[str]) -> Target:
        return cls(request.method, display_url(request), tuple(secrets))


class RetryCall:
    """The bookkeeping of one logical call: tenacity's machines, the attempts, the deadline.

    Two machines: one for error retries (RetryPolicy: attempts, backoff, deadline) and, on the
    deferred-completion endpoint, one for polling (PollPolicy: schedule, timeout). A 202 starts a
    fresh error run, so a 503 in the middle of polling is retried as usual without using up the
    attempts of the next one; the poll timeout bounds the whole call.

    Queries (:meth:`remaining`, :meth:`cap`, :meth:`too_late`, :meth:`gated`) change nothing;
    commands (:meth:`plan_retry`, :meth:`waited`, :meth:`sending`, :meth:`finish`) say so. The
    record of an outcome whose retry was planned stays *planned* until the retry is sent: if the
    deadline ends the call first, :meth:`finish` records that outcome as the last attempt.
    """

    __slots__ = (
        "_budget",
        "_clock",
        "_errors",
        "_hooks",
        "_planned",
        "_polling",
        "_records",
        "_rng",
        "_start",
        "_stop",
        "_throttled",
        "gate",
        "policy",
        "poll",
        "target",
    )

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        target: Target,
        start: float,
        clock: Clock,
        hooks: tuple[RetryHook, ...],
        poll: PollPolicy | None = None,
        gate: Gate | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.policy = policy
        self.poll = poll
        self.gate = gate
        self.target = target
        #: The retry budget this call draws on (``None`` for a deferred poll: a paid-for result
        #: is never throttled).
        self._budget = budget
        self._throttled = False
        self._start = start
        self._clock = clock
        self._hooks = hooks
        self._records: list[AttemptRecord] = []
        self._planned: AttemptRecord | None = None
        # Test mode: jitter off. Backoff draws 0 (the exact ceiling), polling 0.5 (the exact gap).
        testing = _testing.active() is not None
        self._rng: Callable[[], float] = (lambda: 0.5) if testing else random.random
        stop: stop_base = tenacity.stop_after_attempt(policy.max_attempts)
        deadline = self.deadline
        if deadline is not None:
            stop = stop | tenacity.stop_before_delay(deadline)
        self._stop = stop | _StopIfHintTooLong(policy.max_retry_after)
        self._errors = self._errors_machine()
        self._polling: _Machine | None = None

    @property
    def deadline(self) -> float | None:
        """Seconds for the whole call: the poll timeout when polling, else the policy's deadline."""
        return self.poll.timeout if self.poll is not None else self.policy.deadline

    def _errors_machine(self) -> _Machine:
        rng = (lambda: 0.0) if _testing.active() is not None else self._rng
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_result(_retryable),
            wait=_WaitHintOrBackoff(self.policy, rng),
            stop=self._stop,
            retry_error_callback=lambda _state: None,  # "stop" is None, not RetryError
        )
        return _Machine.start(retrying, self._start)

    def _polling_machine(self, poll: PollPolicy) -> _Machine:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_always,
            wait=_WaitPoll(poll, self._rng),
            stop=(
                tenacity.stop_never
                if poll.timeout is None
                else tenacity.stop_before_delay(poll.timeout)
            ),
            retry_error_callback=lambda _state: None,
        )
        return _Machine.start(retrying, self._start)

    # -- queries ----------------------------------------------------------------------------------

    def remaining(self) -> float | None:
        """Seconds left of the deadline, or ``None`` without one."""
        deadline = self.deadline
        if deadline is None:
            return None
        return max(deadline - (self._clock() - self._start), 0.0)

    def cap(self, wait: float) -> float:
        """``wait``, cut to what is left of the deadline."""
        remaining = self.remaining()
        return wait if remaining is None or wait <= remaining else remaining

    def too_late(self) -> bool:
        """True when too little of the deadline is left to start another attempt.

        tenacity's ``stop_before_delay`` never plans a sleep past the deadline, but a real sleep
        can overrun; an attempt with (nearly) zero timeouts would fail for certain and replace the
        last real answer with a timeout.
        """
        deadline = self.deadline
        if deadline is None:
            return False
        remaining = self.remaining()
        return remaining is not None and remaining <= min(0.25, deadline * 0.05)

    def timeouts(self, given: Mapping[str, Any] | None) -> dict[str, float] | None:
        """The caller's httpx timeouts, each capped at what is left of the deadline (``None``
        without a deadline: the caller's stand)."""
        remaining = self.remaining()
        return None if remaining is None else capped_timeouts(given or {}, remaining)

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

    # -- commands ---------------------------------------------------------------------------------

    def plan_retry(self, outcome: object, decision: Decision) -> float | None:
        """Record a RETRY or POLL outcome and plan the next try: seconds to wait, or ``None``
        (out of attempts, time or patience). Emits the retry or poll event."""
        now = self._clock()
        if decision.verdict is Verdict.POLL:
            if self.poll is None:
                return None
            if self._polling is None:
                self._polling = self._polling_machine(self.poll)
            machine = self._polling
            # A 202 ends a run of errors: the next error starts a fresh run (same deadline).
            self._errors = self._errors_machine()
            kind: Literal["retry", "poll"] = "poll"
        else:
            machine = self._errors
            kind = "retry"
        budget = self._budget if kind == "retry" and _server_failure(outcome) else None
        if budget is not None:
            budget.on_failure()  # every server failure counts, the last attempt's too
        delay = machine.next(decision, now)
        if delay is None:
            return None
        if budget is not None and not budget.allows_retry():
            self._throttled = True
            return None
        self._planned = self._record(outcome, decision, delay)
        emit(self._hooks, self._event(kind, self._planned))
        return delay

    def waited(self, seconds: float) -> None:
        """Add a gate's wait to the planned retry's delay: all the time waited before it."""
        planned = self._planned
        if seconds > 0 and planned is not None:
            self._planned = replace(planned, delay=(planned.delay or 0.0) + seconds)

    def sending(self) -> None:
        """The planned retry is being sent: its outcome's record is history now."""
        if self._planned is not None:
            self._records.append(self._planned)
            self._planned = None

    def finish(self, outcome: object, decision: Decision) -> RetryHistory:
        """Close the books: the history, and a give-up event if the outcome was still retryable."""
        self._planned = None  # a retry planned but never sent: ``outcome`` is the last attempt
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
        if isinstance(outcome, BaseException):
            if self.target.secrets:  # re-raised: its own text must not repeat the request's
                scrub(outcome, list(self.target.secrets))
            if len(self._records) > 1 or gave_up:
                outcome.add_note(describe(history))
        return history

    # -- helpers ----------------------------------------------------------------------------------

    def _stop_reason(self, decision: Decision) -> str:
        policy = self.policy
        if self._throttled and self._budget is not None:
            return self._budget.describe()
        if decision.verdict is Verdict.POLL:
            timeout = self.poll.timeout if self.poll is not None else None
            if timeout is not None and timeout == policy.deadline:
                return f"deadline={timeout:g}s reached"  # the transport's deadline bounds a poll
            return f"poll timeout={timeout:g}s reached" if timeout else "polling stopped"
        if decision.delay is not None and decision.delay > policy.max_retry_after:
            return (
                f"server asked to wait {decision.delay:g}s, more than "
                f"max_retry_after={policy.max_retry_after:g}s"
            )
        if self._errors.state.attempt_number >= policy.max_attempts:
            return f"max_attempts={policy.max_attempts} reached"
        if self.poll is not None and self.deadline != policy.deadline:
            return f"poll timeout={self.deadline:g}s would be exceeded"
        return f"deadline={self.deadline:g}s would be exceeded"

    def _record(
        self, outcome: object, decision: Decision, delay: float | None, reason: str | None = None
    ) -> AttemptRecord:
        number = len(self._records) + 1
        why = reason or decision.reason
        if isinstance(outcome, BaseException):
            error = redact(error_summary(outcome), list(self.target.secrets))
            return AttemptRecord(number, None, error, decision.verdict, why, delay)
        status = getattr(outcome, "status_code", None)
        status = status if isinstance(status, int) else None
        return AttemptRecord(number, status, None, decision.verdict, why, delay)

    def _event(self, kind: EventKind, record: AttemptRecord) -> RetryEvent:
        return RetryEvent(
            kind=kind,
            method=self.target.method,
            url=self.target.url,
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


def capped_timeouts(given: Mapping[str, Any], limit: float) -> dict[str, float]:
    """httpx's four timeouts, each at most ``limit`` (a missing or ``None`` one becomes it)."""
    get = given.get
    connect, read, write, pool = get("connect"), get("read"), get("write"), get("pool")
    return {
        "connect": limit if connect is None or connect > limit else connect,
        "read": limit if read is None or read > limit else read,
        "write": limit if write is None or write > limit else write,
        "pool": limit if pool is None or pool > limit else pool,
    }


# -- the loops ----------------------------------------------------------------------------------


class Attempts(Protocol):
    """What an entry point adds to the loop: what an outcome means, and what to do with one that
    is left behind. Generators of steps, like the loop itself."""

    def judge(self, call: RetryCall, outcome: object) -> Steps[Decision]:
        """The decision for an outcome (the answer to a ``SEND``), after telling the gate."""
        ...

    def discard(self, outcome: object) -> Steps[None]:
        """Let go of an outcome that is about to be retried (close a response)."""
        ...

    def kept(self, outcome: object) -> object:
        """The outcome to hand over when the deadline ends the call after it was discarded."""
        ...

    def resend(self, call: RetryCall) -> None:
        """Get ready to send again (cap the next attempt's timeouts)."""
        ...


def retry_steps(
    call: RetryCall, attempts: Attempts, outcome: object
) -> Steps[tuple[object, RetryHistory]]:
    """The retry loop, from the first outcome to the last: ``(last outcome, history)``.

    Judge the outcome; while it is worth another try and the call's tenacity machines agree, let
    it go, wait (backoff or the server's hint), pass the gate, and send again.
    """
    decision = yield from attempts.judge(call, outcome)
    while decision.verdict is Verdict.RETRY or decision.verdict is Verdict.POLL:
        delay = call.plan_retry(outcome, decision)
        if delay is None:
            break
        yield from attempts.discard(outcome)
        yield from pause(delay)
        if call.gate is not None:
            yield from through_gate(call.gate, call)
        if call.too_late():  # a wait overran what the deadline left: no doomed attempt
            outcome = attempts.kept(outcome)
            break
        call.sending()
        attempts.resend(call)
        outcome = yield SEND
        decision = yield from attempts.judge(call, outcome)
    return outcome, call.finish(outcome, decision)


def through_gate(
    gate: Gate,
    call: RetryCall | None,
    *,
    limit: float | None = None,
    what: str = "",
    first: float | None = None,
) -> Steps[None]:
    """Wait at the gate until a slot is booked, then until it comes.

    Before a retry (``call``), every wait is capped by what the deadline leaves, and the call's
    ``too_late()`` check ends it. Before a first attempt, a wait longer than ``limit`` (the call's
    deadline) raises :class:`GateTimeoutError` at once, ``what`` naming the call. ``first`` is the
    answer of a ``reserve()`` the caller already made.
    """
    waited = 0.0
    wait: float = (yield RESERVE) if first is None else first
    while wait < 0:  # too far back in the queue to book: come back later
        _check_limit(waited - wait, limit, what)
        seconds, last = -wait, False
        if call is not None:
            remaining = call.remaining()
            last = remaining is not None and remaining <= seconds
            seconds = call.cap(seconds)
            call.waited(seconds)
        yield from pause(seconds)
        if last:
            return  # the deadline comes first: the caller's too_late() ends the call
        waited += seconds
        wait = yield RESERVE
    _check_limit(waited + wait, limit, what)
    if call is not None:
        wait = call.cap(wait)
        call.waited(wait)
    yield from pause(wait)


def _check_limit(wait: float, limit: float | None, what: str) -> None:
    if limit is not None and wait >= limit:
        raise GateTimeoutError(what, wait=wait, limit=limit)
