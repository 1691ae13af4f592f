"""The gate in front of every attempt: shared cooldown after a 429, and adaptive client-side pacing.

Requests that share a gate share what the server said: a 429 that names a wait pauses all of them
(not just the one that got it), and the rate at which they are let through is learned, so they
settle just under the server's limit instead of bouncing off it. Every transport, decorated
function and poller has a gate of its own unless given one to share (or ``gate=False``).

Pacing is GCRA ("virtual scheduling"): each request reserves the next free slot, ``1 / rate``
after the previous one; with no rate learned yet, requests pass freely, so a client that never
meets its limit never waits. The rate is learned in the spirit of TCP congestion control and AWS's
adaptive retry mode, from three signals, best first:

* ``x-ratelimit-{limit,remaining,reset}-requests`` on any response, when the bucket is at least
  half used: the refill rate they imply (see :func:`xretry._headers.refill_rate`) is the limit
  itself, and the gate paces at ``backoff`` times it;
* while 429s keep coming (a saturation episode), what gets through *is* the server's limit: the
  rate becomes the successes per second measured since the episode began (over the last second
  at most, never across a cooldown), times ``backoff``; measured once the episode is 0.15 s old and
  at most every 0.15 s, so the 429s of requests already in flight count as one signal;
* on each success the rate grows by ``probe`` (a fraction ``probe`` of itself per second), so
  capacity freed up is found again, and the next overshoot re-measures the limit.

A 429's wait is shared only as far as it is certain: ``retry-after-ms`` in full, a whole-second
``retry-after: N`` as ``N - 1`` seconds (see :func:`xretry._headers.shared_wait`); the 429'd request
itself then goes back through the gate, whose pacing decides when it is sent again.

Where the state lives is the backend's business: in this process by default, in Redis with
:class:`xretry.redis.RedisGateBackend` for workers on many hosts sharing one key. The gate itself
does no I/O and never sleeps: ``reserve()`` returns how long the caller must wait, and the sync or
async driver does the waiting.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from . import _testing
from ._budget import RetryBudget
from ._classify import Decision, Verdict
from ._errors import GateTimeoutError, display_url
from ._headers import refill_rate, shared_wait
from ._policy import RetryPolicy

_DEFAULT_POLICY = RetryPolicy()

if TYPE_CHECKING:
    from ._core import RetryCall

__all__ = [
    "Gate",
    "GateBackend",
    "GateSettings",
    "GateState",
    "MemoryGateBackend",
    "apass_gate",
    "learned_status",
    "own_gate",
    "pass_gate",
    "signals",
]


@dataclass(frozen=True, slots=True)
class GateSettings:
    """How a gate learns; validated by :class:`Gate`, read by its backend on every call."""

    #: Starting rate (requests per second), or ``None`` to start unpaced.
    rate: float | None = None
    #: The rate never drops below this.
    min_rate: float = 0.5
    #: Fraction of a measured limit to pace at: just under, so the bucket refills a little.
    backoff: float = 0.98
    #: Growth per success, as a fraction of a request per second (``probe * rate`` per second).
    probe: float = 0.05
    #: Longest single wait the gate imposes, whatever the server said.
    max_wait: float = 60.0
    #: How far ahead a paced slot is booked; a request further back in the queue is told to come
    #: back later instead, so a change of rate reaches it (``None``: book any slot, any distance).
    horizon: float | None = 0.1


@runtime_checkable
class GateBackend(Protocol):
    """Where a gate's state lives. Every method is one atomic step on that state.

    ``reserve`` claims the next slot and returns seconds to wait; ``observe`` learns from one
    outcome: its status (``None`` for a transport failure), the certain part of a 429's requested
    wait, and the refill rate the ``x-ratelimit-*`` headers imply. The ``a``-prefixed twins are
    for async callers (a backend doing network I/O must not block the event loop).
    """

    @property
    def rate(self) -> float | None: ...

    @property
    def rate_limited(self) -> int: ...

    def reserve(self, settings: GateSettings) -> float: ...

    def observe(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None: ...

    async def areserve(self, settings: GateSettings) -> float: ...

    async def aobserve(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None: ...


def signals(
    status: int,
    headers: Mapping[str, str],
    *,
    now: float,
    policy: RetryPolicy = _DEFAULT_POLICY,
) -> tuple[float | None, float | None]:
    """What a response tells a gate: ``(shared wait, refill rate)``, either may be ``None``.

    Nothing when the policy ignores the server's hints. A wait longer than the policy's
    ``max_retry_after`` is not shared: the call reports it at once rather than wait on it, and
    the next calls should not wait it out either.
    """
    if not policy.respect_retry_after:
        return None, None
    wait = shared_wait(headers, now=now) if status == 429 else None
    if wait is not None and wait > policy.max_retry_after:
        wait = None
    rate = refill_rate(headers) if "x-ratelimit-limit-requests" in headers else None
    return wait, rate


def learned_status(status: int | None, decision: Decision) -> int | None:
    """The status a gate learns from: a 429 for spent credits is no rate limit (``None``)."""
    return None if status == 429 and decision.verdict is not Verdict.RETRY else status


@dataclass(slots=True)
class GateState:
    """Everything a gate knows, as plain numbers: the algorithm, with no clock, lock or I/O.

    A backend keeps one of these somewhere (in memory, or serialized in Redis with
    :meth:`dumps`/:meth:`loads`), passes ``now`` in, and makes each call atomic.
    """

    #: The pacing rate (requests per second), or ``None`` while unpaced.
    rate: float | None = None
    seeded: bool = False
    #: GCRA: the earliest time the next request may be sent.
    next_slot: float = 0.0
    #: Nobody is sent before this (a 429's shared wait).
    cooldown_until: float = 0.0
    last_decrease: float = -1e18
    last_limited: float = -1e18
    saturated_since: float | None = None
    #: Recent success times (the last ``_WINDOW`` seconds).
    successes: deque[float] = field(default_factory=deque)
    #: 429s seen.
    limited: int = 0
    #: Slow start: when the first request came, and requests reserved but not yet observed.
    started: float | None = None
    outstanding: int = 0
    slow: bool = True
    #: When pacing last made a request wait: the rate only grows while it is the bottleneck.
    paced_at: float = -1e18
    #: When the last caller told to come back later will: the next one comes 1 / rate after.
    come_back_at: float = 0.0
    #: The rate the server's ``x-ratelimit-*`` headers allow (times ``backoff``): the rate never
    #: grows past it while it is fresh (told within ``_TOLD_FOR`` seconds).
    ceiling: float | None = None
    told_at: float = -1e18
    #: The end of the last cooldown: nothing is measured across it.
    cooled_until: float = -1e18

    def reserve(self, settings: GateSettings, now: float) -> float:
        """Claim the next slot: seconds to wait before sending; or, negative, seconds after which
        to ask again (the slot is beyond the horizon: nothing was booked)."""
        idle = self.idle(now)
        self.outstanding += 1
        if idle:  # the common case first
            return 0.0
        if not self.seeded:
            self._seed(settings)
        if self.started is None:
            self.started = now
        at = self.cooldown_until if self.cooldown_until > now else now
        rate = self.rate
        # Slow start paces a burst: more than a few requests outstanding, or a queue already
        # forming (callers told to come back are not outstanding while they wait).
        slow = (
            rate is None and self.slow and (self.outstanding > _SLOW_WINDOW or self.next_slot > now)
        )
        if rate is not None or slow:
            free = at  # the earliest any request may go (now, or the end of a cooldown)
            if self.next_slot > at:
                at = self.next_slot
            if slow:  # the slow-start rate of the slot's own time
                rate = self._slow_rate(at)
            horizon = settings.horizon
            if horizon is not None and at - free > horizon + _EPSILON:
                # Too far back in the queue to book: come back later. Each caller gets its own
                # time, 1 / rate (of that time, in slow start) after the previous one's, so they
                # don't all return at once.
                self.outstanding -= 1
                self.paced_at = now
                back = max(at - horizon, self.come_back_at)
                spacing = rate if not slow else self._slow_rate(back + horizon)
                # Capped: callers that never come back (a deadline, a cancellation) must not
                # push everyone after them ever further back.
                self.come_back_at = min(
                    back + 1.0 / (spacing if spacing is not None else _SLOW_RATE),
                    at - horizon + _SPREAD,
                )
                back -= now
                return -(back if back < settings.max_wait else settings.max_wait)
            if rate is not None:
                self.next_slot = at + 1.0 / rate
        wait = at - now
        if wait > 0:
            self.paced_at = now
        return wait if wait < settings.max_wait else settings.max_wait

    def observe(
        self,
        settings: GateSettings,
        now: float,
        status: int | None,
        wait: float | None,
        rate: float | None,
    ) -> None:
        """Learn from one outcome (see :meth:`Gate.observe`)."""
        if not self.seeded:
            self._seed(settings)
        if self.outstanding > 0:
            self.outstanding -= 1
        if self.teaches_nothing(now, status, wait, rate):
            return
        if rate is not None:  # the server told us its limit: a ceiling, and where to start
            ceiling = max(rate * settings.backoff, settings.min_rate)
            self.ceiling = ceiling
            self.told_at = now
            if self.rate is None or self.rate > ceiling:
                self.rate = ceiling
            self.slow = False
        if status == 429:
            self._on_limited(settings, now, wait)
        elif status is not None and status < 400:
            successes = self.successes
            successes.append(now)
            while successes[0] < now - _WINDOW:
                successes.popleft()
            if self.saturated_since is not None and now - self.last_limited > _QUIET:
                self.saturated_since = None  # the episode is over
            if (
                self.rate is not None
                and now >= self.cooldown_until
                and now - self.paced_at < _PACED_FOR
            ):
                # Pacing is what holds the requests back (it made someone wait lately: with LLM
                # latency, the responses come seconds after their slots).
                self._grow(settings, now)

    def idle(self, now: float) -> bool:
        """Unpaced, no cooldown, no queue, no burst: a reservation now is free."""
        return (
            self.rate is None
            and self.seeded
            and self.cooldown_until <= now
            and self.next_slot <= now
            and self.outstanding < _SLOW_WINDOW
        )

    def teaches_nothing(
        self, now: float, status: int | None, wait: float | None, rate: float | None
    ) -> bool:
        """A success while flowing freely, with nothing told: nothing to measure or grow."""
        return (
            rate is None
            and wait is None
            and status is not None
            and status < 400
            and self.rate is None
            and self.seeded
            and self.saturated_since is None
            and now - self.paced_at > _WINDOW
        )

    def _grow(self, settings: GateSettings, now: float) -> None:
        """Probe for capacity, one success at a time, never past what the server said it allows.

        Per success, ``probe`` (a fraction ``probe`` of the rate per second: multiplicative) or
        ``_ADDITIVE / rate`` (``_ADDITIVE`` requests a second more: additive), whichever is more.
        The additive part is what makes clients sharing a limit without knowing of each other
        converge to fair shares, as TCP's additive increase does; the multiplicative part finds
        a large limit again quickly.
        """
        assert self.rate is not None
        grown = self.rate + max(settings.probe, _ADDITIVE / self.rate)
        ceiling = self.ceiling if now - self.told_at < _TOLD_FOR else None
        self.rate = grown if ceiling is None or grown < ceiling else max(ceiling, self.rate)

    def _seed(self, settings: GateSettings) -> None:
        self.seeded = True
        self.rate = settings.rate
        if settings.rate is not None:
            self.slow = False

    def _slow_rate(self, at: float) -> float | None:
        """Slow start (TCP's, by the clock): before the first 429, a burst beyond the first few
        requests is paced at a rate that starts at ``_SLOW_RATE`` and doubles every
        ``_SLOW_DOUBLING`` seconds of the slot's own time (so a burst of 1,000 is spread over
        under 3 s, not queued at the starting rate); after ``_SLOW_DOUBLINGS_MAX`` doublings the
        gate is unpaced. A client that sends one request at a time never has more than one
        outstanding, and is never paced."""
        assert self.started is not None
        doublings = (at - self.started) / _SLOW_DOUBLING
        if doublings >= _SLOW_DOUBLINGS_MAX:
            self.slow = False
            return None
        return float(_SLOW_RATE * 2.0**doublings)

    def _first_limited(self, settings: GateSettings, now: float) -> None:
        """A 429 while no rate is known: pace at once at what got through lately, rather than
        unpaced until the episode can be measured.

        Only a client whose burst was being paced was pushing the limit (for a light one, what it
        got through says nothing about the limit), and too high a guess costs a few 429s and is
        measured down within 0.15 s, while too low a one costs throughput until probing finds the
        limit (5% a second): so no discount. With nothing to go by (nothing paced or nothing
        through yet, e.g. a key already saturated elsewhere), slow start begins again from now,
        and the episode's measurement decides.
        """
        since = now - _WINDOW if self.started is None else max(self.started, now - _WINDOW)
        got = sum(1 for t in self.successes if t >= since)
        if got and now - since >= _MIN_SPAN and now - self.paced_at < _WINDOW:
            self.rate = max(got / (now - since), settings.min_rate)
            self.slow = False
        else:
            self.slow = True
            self.started = now
            if self.outstanding > 0:  # others in flight: pace them from now (a lone call: no)
                self.next_slot = max(self.next_slot, now + 1.0 / _SLOW_RATE)

    def _on_limited(self, settings: GateSettings, now: float, wait: float | None) -> None:
        self.limited += 1
        self.last_limited = now
        if self.rate is None:
            self._first_limited(settings, now)
        if self.rate is not None:  # over the limit now: no free slot for the next 1 / rate
            self.next_slot = max(self.next_slot, now + 1.0 / self.rate)
        if wait is not None:  # everyone pauses for the certain part of the server's wait
            until = now + min(wait, settings.max_wait)
            if until > self.cooldown_until:
                self.cooldown_until = until
                self.cooled_until = until
        if self.saturated_since is None:
            self.saturated_since = now
        since = self.saturated_since
        if now - since < _MIN_SPAN or now - self.last_decrease < _MIN_SPAN:
            return  # too early to measure; 429s of requests already in flight are one signal
        # While saturated, what gets through *is* the limit: measure it over the episode, but
        # not over a cooldown, when nothing was sent at all.
        start = max(since, now - _WINDOW, min(self.cooled_until, now))
        if now - start < _MIN_SPAN:
            return
        got = sum(1 for t in self.successes if t >= start)
        if got == 0 and self.rate is None:
            return  # nothing got through at all: no measurement yet, the 429'd back off
        measured = got / (now - start)
        if got == 0 and self.rate is not None:
            measured = self.rate / 2.0  # nothing through: halve (a multiplicative decrease)
        current = measured if self.rate is None else min(self.rate, measured)
        self.rate = max(current * settings.backoff, settings.min_rate)
        self.slow = False
        self.last_decrease = now
        self.next_slot = max(self.next_slot, self.cooldown_until)

    def dumps(self) -> str:
        """The state as JSON, for a backend that stores it elsewhere."""
        data = {name: getattr(self, name) for name in self.__slots__}
        data["successes"] = list(self.successes)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes | None) -> GateState:
        """A state from :meth:`dumps` (a fresh one for ``None``; unknown keys are ignored)."""
        if not text:
            return cls()
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__slots__}
        known["successes"] = deque(known.get("successes", ()))
        return cls(**known)


class MemoryGateBackend:
    """The default backend: the state in this process, behind one lock held for microseconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.state = GateState()

    @property
    def rate(self) -> float | None:
        return self.state.rate

    @property
    def rate_limited(self) -> int:
        return self.state.limited

    def reserve(self, settings: GateSettings) -> float:
        state, now = self.state, self._clock()
        if state.idle(now):  # no lock: the count of outstanding requests is only a heuristic
            state.outstanding += 1
            return 0.0
        with self._lock:
            return state.reserve(settings, now)

    def observe(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None:
        state, now = self.state, self._clock()
        if state.teaches_nothing(now, status, wait, rate):  # no lock, as in reserve()
            if state.outstanding > 0:
                state.outstanding -= 1
            return
        with self._lock:
            state.observe(settings, now, status, wait, rate)

    async def areserve(self, settings: GateSettings) -> float:
        return self.reserve(settings)

    async def aobserve(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None:
        self.observe(settings, status, wait, rate)


#: Successes are counted over this many seconds.
_WINDOW = 1.0
#: Float slack when comparing times (a slot exactly at the horizon is booked, not deferred).
_EPSILON = 1e-9
#: Callers told to come back are spread over at most this many seconds past their slot.
_SPREAD = 1.0
#: The rate grows on a success while pacing made someone wait within this many seconds: long
#: enough for an LLM's latency, short enough that an idle rate does not creep up for long.
_PACED_FOR = 10.0
#: A 429 episode must last this long before it is measured; decreases are this far apart.
_MIN_SPAN = 0.15
#: Seconds without a 429 that end a saturation episode.
_QUIET = 2.0
#: Requests per second the rate grows by each second while probing, at least (additive increase).
_ADDITIVE = 2.0
#: Seconds a rate told by the server's headers stays the ceiling.
_TOLD_FOR = 10.0
#: Slow start: requests outstanding before a burst is paced at all; the starting rate; how often
#: it doubles (seconds of slot time); doublings until the gate stops pacing (32 * 2**5 = 1024
#: requests/s, 2.5 s after the first request). Measured with benchmarks/goodput.py: doubling
#: every 0.25 s overshot a 40 req/s limit by 10-20 more 429s than every 0.5 s.
_SLOW_WINDOW = 8
_SLOW_RATE = 32.0
_SLOW_DOUBLING = 0.5
_SLOW_DOUBLINGS_MAX = 5.0


class Gate:
    """Shared cooldown and adaptive pacing for every request that passes through it.

    Example::

        gate = xretry.Gate()                       # share it between transports or workers
        client = httpx.Client(transport=xretry.RetryTransport(gate=gate))

    ``rate`` fixes a starting rate (requests per second) instead of learning it from scratch;
    ``min_rate`` is the floor the rate never drops below; ``backoff`` is the fraction of a measured
    limit to pace at; ``probe`` how fast the rate grows back; ``max_wait`` bounds any single wait.
    ``budget`` (off by default) stops retries while the server is failing, see
    :class:`RetryBudget`. ``backend`` keeps the state elsewhere, e.g. in Redis, for processes
    sharing one key; ``clock`` is for the default in-memory backend.
    """

    __slots__ = ("_backend", "_booking_settings", "budget", "settings")

    def __init__(
        self,
        *,
        rate: float | None = None,
        min_rate: float = 0.5,
        backoff: float = 0.98,
        probe: float = 0.05,
        max_wait: float = 60.0,
        budget: RetryBudget | None = None,
        backend: GateBackend | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("min_rate", min_rate), ("max_wait", max_wait)):
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if rate is not None and not (
            isinstance(rate, int | float) and min_rate <= rate < float("inf")
        ):
            raise ValueError(f"rate must be >= min_rate ({min_rate:g}) and finite, got {rate!r}")
        if not (isinstance(backoff, int | float) and 0 < backoff <= 1):
            raise ValueError(f"backoff must be in (0, 1], got {backoff!r}")
        if not (isinstance(probe, int | float) and 0 <= probe < 1):
            raise ValueError(f"probe must be in [0, 1), got {probe!r}")
        if budget is not None and not isinstance(budget, RetryBudget):
            raise ValueError(f"budget must be an xretry.RetryBudget, got {type(budget).__name__}")
        if backend is not None and not isinstance(backend, GateBackend):
            raise ValueError(
                f"backend must implement xretry.GateBackend, got {type(backend).__name__}"
            )
        self.settings = GateSettings(
            rate=None if rate is None else float(rate),
            min_rate=float(min_rate),
            backoff=float(backoff),
            probe=float(probe),
            max_wait=float(max_wait),
        )
        self._booking_settings = replace(self.settings, horizon=None)
        self.budget = budget
        self._backend: GateBackend = MemoryGateBackend(clock=clock) if backend is None else backend

    @property
    def backend(self) -> GateBackend:
        """Where the state lives."""
        return self._backend

    @property
    def rate(self) -> float | None:
        """The learned rate in requests per second, or ``None`` while unpaced."""
        rate = self._backend.rate
        return self.settings.rate if rate is None else rate

    @property
    def rate_limited(self) -> int:
        """How many 429s the gate has seen."""
        return self._backend.rate_limited

    def reserve(self) -> float:
        """Claim the next slot: seconds to wait before sending (often 0); or, negative, seconds
        after which to ask again (the caller is too far back in the queue to book a slot yet).
        :func:`pass_gate` does this dance for a caller."""
        return self._backend.reserve(self._settings_now())

    async def areserve(self) -> float:
        """:meth:`reserve` for async callers."""
        return await self._backend.areserve(self._settings_now())

    def _settings_now(self) -> GateSettings:
        # In test mode (xretry.testing.no_wait) no time passes: "come back later" would spin.
        return self._booking_settings if _testing.active() is not None else self.settings

    def observe(
        self, status_code: int | None, *, wait: float | None = None, rate: float | None = None
    ) -> None:
        """Learn from an outcome: a status (``None`` for a transport failure), the certain part of
        a 429's requested wait, and the refill rate the ``x-ratelimit-*`` headers imply."""
        if self.budget is not None and status_code is not None and status_code < 400:
            self.budget.on_success()
        self._backend.observe(self.settings, status_code, wait, rate)

    async def aobserve(
        self, status_code: int | None, *, wait: float | None = None, rate: float | None = None
    ) -> None:
        """:meth:`observe` for async callers."""
        if self.budget is not None and status_code is not None and status_code < 400:
            self.budget.on_success()
        await self._backend.aobserve(self.settings, status_code, wait, rate)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"Gate(rate={self.rate!r}, backoff={s.backoff:g}, probe={s.probe:g}, "
            f"budget={self.budget!r}, backend={type(self._backend).__name__})"
        )


def own_gate(gate: Gate | bool | None, clock: Callable[[], float]) -> Gate | None:
    """The gate an entry point uses: the one given, a fresh one of its own (``None``), or none
    (``False``). A fresh gate reads the entry point's clock, so an injected clock paces too."""
    if gate is None:
        return Gate(clock=clock)
    if gate is False:
        return None
    if not isinstance(gate, Gate):
        raise ValueError(f"gate must be an xretry.Gate or False, got {type(gate).__name__}")
    return gate


def pass_gate(
    gate: Gate,
    pause: Callable[[float], None],
    call: RetryCall | None,
    *,
    limit: float | None = None,
    what: Any = None,
    first: float | None = None,
) -> None:
    """Wait at the gate until a slot is booked, then until it comes.

    Before a retry (``call``), every wait is capped by what the deadline leaves, and the call's
    ``expired()`` check ends it. Before a first attempt, a wait longer than ``limit`` (the call's
    deadline) raises :class:`GateTimeoutError` at once, ``what`` (the request) naming the call.
    ``first`` is the answer of a ``reserve()`` the caller already made.
    """
    waited = 0.0
    wait = gate.reserve() if first is None else first
    while wait < 0:
        _check_limit(waited - wait, limit, what)
        seconds, deadline_first = _come_back(call, -wait)
        pause(seconds)
        if deadline_first:
            return  # the caller's expired() check ends the call
        waited += seconds
        wait = gate.reserve()
    _check_limit(waited + wait, limit, what)
    pause(wait if call is None else call.capped(wait))


async def apass_gate(
    gate: Gate,
    pause: Callable[[float], Awaitable[None]],
    call: RetryCall | None,
    *,
    limit: float | None = None,
    what: Any = None,
    first: float | None = None,
) -> None:
    """:func:`pass_gate` for async callers."""
    waited = 0.0
    wait = await gate.areserve() if first is None else first
    while wait < 0:
        _check_limit(waited - wait, limit, what)
        seconds, deadline_first = _come_back(call, -wait)
        await pause(seconds)
        if deadline_first:
            return
        waited += seconds
        wait = await gate.areserve()
    _check_limit(waited + wait, limit, what)
    await pause(wait if call is None else call.capped(wait))


def _check_limit(wait: float, limit: float | None, what: Any) -> None:
    if limit is not None and wait >= limit:
        url = what if isinstance(what, str) else display_url(what)
        raise GateTimeoutError(url, wait=wait, limit=limit)


def _come_back(call: RetryCall | None, wait: float) -> tuple[float, bool]:
    """How long to wait before asking the gate again, and whether the deadline comes first."""
    if call is None:
        return wait, False
    remaining = call.remaining()
    return call.capped(wait), remaining is not None and remaining <= wait
