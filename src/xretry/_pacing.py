"""Pacing as pure code: what a gate knows and how it learns, with no clock, lock or I/O.

:class:`GateState` is the algorithm (GCRA "virtual scheduling" plus rate learning, see
:mod:`xretry._gate` for the why); :class:`GateSettings` its knobs. A backend keeps a state somewhere
(in memory, or serialized in Redis), passes ``now`` in, and makes each call atomic.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

__all__ = ["GateSettings", "GateState"]


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
