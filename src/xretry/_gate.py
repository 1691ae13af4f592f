"""The gate in front of every attempt: shared cooldown after a 429, and adaptive client-side pacing.

Requests that share a gate share what the server said: a 429 that names a wait pauses all of them
(not just the one that got it), and the rate at which they are let through is learned, so they
settle just under the server's limit instead of bouncing off it.

Pacing is GCRA ("virtual scheduling"): each request reserves the next free slot, ``1 / rate``
after the previous one; with no rate learned yet, requests pass freely. The rate is learned in the
spirit of TCP congestion control and AWS's adaptive retry mode:

* while 429s keep coming (a saturation episode), what gets through *is* the server's limit: the
  rate becomes the successes per second measured since the episode began (over the last second
  at most), times ``backoff``; measured once the episode is a quarter second old and at most every
  quarter second, so the 429s of requests already in flight count as one signal;
* on each success the rate grows by ``probe`` (a fraction ``probe`` of itself per second), so
  capacity freed up is found again, and the next overshoot re-measures the limit.

The gate does no I/O and never sleeps: ``reserve()`` returns how long the caller must wait, and the
sync or async driver does the waiting. It is thread-safe (one lock, held for microseconds).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Gate"]


class Gate:
    """Shared cooldown and adaptive pacing for every request that passes through it.

    Example::

        gate = xretry.Gate()                       # share it between transports or workers
        client = httpx.Client(transport=xretry.RetryTransport(gate=gate))

    ``rate`` fixes a starting rate (requests per second) instead of learning it from scratch;
    ``min_rate`` is the floor the rate never drops below; ``max_wait`` bounds any single wait.
    """

    def __init__(
        self,
        *,
        rate: float | None = None,
        min_rate: float = 0.5,
        backoff: float = 0.95,
        probe: float = 0.02,
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        for name, value in (("min_rate", min_rate), ("max_wait", max_wait)):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, got {value!r}")
        if rate is not None and not rate >= min_rate:
            raise ValueError(f"rate must be >= min_rate ({min_rate:g}), got {rate!r}")
        if not 0 < backoff <= 1:
            raise ValueError(f"backoff must be in (0, 1], got {backoff!r}")
        if not 0 <= probe < 1:
            raise ValueError(f"probe must be in [0, 1), got {probe!r}")
        self._lock = threading.Lock()
        self._clock = clock
        self._rate = rate
        self._min_rate = min_rate
        self._backoff = backoff
        self._probe = probe
        self._max_wait = max_wait
        self._next_slot = 0.0
        self._cooldown_until = 0.0
        self._last_decrease = -1e18
        self._last_limited = -1e18
        self._saturated_since: float | None = None
        #: Before a rate is measured: requests are spaced by the server's (short) hints, rather
        #: than all released at once when a cooldown ends, only for most of them to bounce again.
        self._provisional: float | None = None
        self._successes: deque[float] = deque()
        self._limited = 0

    @property
    def rate(self) -> float | None:
        """The learned rate in requests per second, or ``None`` while unlimited."""
        return self._rate

    @property
    def rate_limited(self) -> int:
        """How many 429s the gate has seen."""
        return self._limited

    def reserve(self) -> float:
        """Claim the next slot; seconds the caller must wait before sending (often 0)."""
        with self._lock:
            now = self._clock()
            at = max(now, self._cooldown_until)
            spacing = 1.0 / self._rate if self._rate is not None else self._provisional
            if spacing is not None:
                at = max(at, self._next_slot)
                self._next_slot = at + spacing
            return min(at - now, self._max_wait)

    def observe(self, status_code: int | None, hint: float | None = None) -> None:
        """Learn from an outcome: a status (``None`` for a transport failure) and a server hint."""
        with self._lock:
            now = self._clock()
            if status_code == 429:
                self._on_limited(now, hint)
            elif status_code is not None and status_code < 400:
                self._successes.append(now)
                while self._successes[0] < now - _WINDOW:
                    self._successes.popleft()
                if self._saturated_since is not None and now - self._last_limited > _QUIET:
                    self._saturated_since = None  # the episode is over
                    self._provisional = None
                if self._rate is not None and now >= self._cooldown_until:
                    # +probe per success is +probe * rate per second: a fraction probe a second.
                    self._rate += self._probe

    def _on_limited(self, now: float, hint: float | None) -> None:
        self._limited += 1
        self._last_limited = now
        if hint is not None and self._rate is None:
            spacing = min(hint, _MAX_PROVISIONAL)
            self._provisional = max(self._provisional or 0.0, spacing)
        if hint is not None:
            # Everyone pauses for the server's wait. Once a rate is known, pacing spaces the
            # requests and a coarse hint (whole seconds) would only idle the limit: the shared
            # pause is then at most a few pacing slots (the 429'd request itself still waits its
            # full hint before it is retried).
            pause = hint if self._rate is None else min(hint, 4.0 / self._rate)
            self._cooldown_until = max(self._cooldown_until, now + min(pause, self._max_wait))
        if self._saturated_since is None:
            self._saturated_since = now
        since = self._saturated_since
        if now - since < _MIN_SPAN or now - self._last_decrease < _MIN_SPAN:
            return  # too early to measure; 429s of requests already in flight are one signal
        # While saturated, what gets through *is* the limit: measure it over the episode.
        start = max(since, now - _WINDOW)
        got = sum(1 for t in self._successes if t >= start)
        measured = got / (now - start)
        current = measured if self._rate is None else min(self._rate, measured)
        self._rate = max(current * self._backoff, self._min_rate)
        self._provisional = None
        self._last_decrease = now
        self._next_slot = max(self._next_slot, self._cooldown_until)


#: Successes are counted over this many seconds.
_WINDOW = 1.0
#: A 429 episode must last this long before it is measured; decreases are this far apart.
_MIN_SPAN = 0.25
#: Seconds without a 429 that end a saturation episode.
_QUIET = 2.0
#: Longest provisional spacing (seconds) taken from a hint before a rate is measured: a coarse
#: whole-second hint must not throttle everyone to one request a second.
_MAX_PROVISIONAL = 0.1
