"""The gate in front of every attempt: shared cooldown after a 429, and adaptive client-side pacing.

Requests that share a gate share what the server said: a 429 that names a wait pauses all of them
(not just the one that got it), and the rate at which they are let through is learned, so they
settle just under the server's limit instead of bouncing off it.

Pacing is GCRA ("virtual scheduling"): each request reserves the next free slot, ``1 / rate``
after the previous one; with no rate learned yet, requests pass freely. The rate is learned in the
spirit of TCP congestion control and AWS's adaptive retry mode:

* on a 429, the rate becomes what actually got through in the last second (measured), times
  ``backoff``; at most once per ``cooldown`` window, so a burst of 429s from requests already in
  flight counts as one signal;
* on each success the rate grows by ``probe`` (so by a fraction ``probe`` of itself per second),
  so capacity freed up is found again.

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
        backoff: float = 0.9,
        probe: float = 0.05,
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
        self._successes: deque[float] = deque()
        self._first_seen: float | None = None
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
            if self._rate is not None:
                at = max(at, self._next_slot)
                self._next_slot = at + 1.0 / self._rate
            return min(at - now, self._max_wait)

    def observe(self, status_code: int | None, hint: float | None = None) -> None:
        """Learn from an outcome: a status (``None`` for a transport failure) and a server hint."""
        with self._lock:
            now = self._clock()
            if self._first_seen is None:
                self._first_seen = now
            if status_code == 429:
                self._limited += 1
                if hint is not None:
                    self._cooldown_until = max(
                        self._cooldown_until, now + min(hint, self._max_wait)
                    )
                self._decrease(now, hint)
            elif status_code is not None and status_code < 400:
                self._successes.append(now)
                while self._successes[0] < now - 1.0:
                    self._successes.popleft()
                if self._rate is not None and now >= self._cooldown_until:
                    # +probe of the rate per second of successes: 1/rate seconds per success.
                    self._rate += self._probe

    def _decrease(self, now: float, hint: float | None) -> None:
        window = 1.0
        while self._successes and self._successes[0] < now - window:
            self._successes.popleft()
        if now - self._last_decrease < max(window, hint or 0.0):
            return  # one decrease per window: in-flight requests' 429s are one signal
        self._last_decrease = now
        # Successes per second over the last second, or over the time since the first outcome when
        # that is shorter (a young gate would otherwise mistake a burst for a slow server).
        span = min(window, max(now - (self._first_seen or now), 0.05))
        measured = len(self._successes) / span
        if self._rate is None:
            new = measured * self._backoff
        else:
            new = min(self._rate, max(measured, self._rate * 0.5)) * self._backoff
        self._rate = max(new, self._min_rate)
        self._next_slot = max(self._next_slot, self._cooldown_until)
