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
async driver does the waiting. The algorithm itself is pure code in :mod:`xretry._pacing`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol, runtime_checkable

from . import _testing
from ._budget import RetryBudget
from ._classify import Decision, Verdict
from ._headers import refill_rate, shared_wait
from ._pacing import GateSettings, GateState
from ._policy import RetryPolicy

_DEFAULT_POLICY = RetryPolicy()

__all__ = [
    "Gate",
    "GateBackend",
    "GateSettings",
    "GateState",
    "MemoryGateBackend",
    "learned_status",
    "own_gate",
    "signals",
]


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


class MemoryGateBackend:
    """The default backend: the state in this process, behind one lock held for microseconds."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self.clock = clock
        self.state = GateState()

    @property
    def rate(self) -> float | None:
        return self.state.rate

    @property
    def rate_limited(self) -> int:
        return self.state.limited

    def reserve(self, settings: GateSettings) -> float:
        state, now = self.state, self.clock()
        if state.idle(now):  # no lock: the count of outstanding requests is only a heuristic
            state.outstanding += 1
            return 0.0
        with self._lock:
            return state.reserve(settings, now)

    def observe(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None:
        state, now = self.state, self.clock()
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

    __slots__ = ("_backend", "_booking_settings", "_memory", "budget", "local", "settings")

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
                f"backend must implement xretry.backends.GateBackend, got {type(backend).__name__}"
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
        self._memory = self._backend if isinstance(self._backend, MemoryGateBackend) else None
        #: The state is in this process (no I/O): async callers may reserve and observe directly.
        self.local = self._memory is not None

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
        :func:`xretry._core.through_gate` does this dance for a caller."""
        memory = self._memory
        if memory is not None:  # the common case first: idle, no lock, no settings
            state = memory.state
            if state.idle(memory.clock()):
                state.outstanding += 1
                return 0.0
        return self._backend.reserve(self._settings_now())

    async def areserve(self) -> float:
        """:meth:`reserve` for async callers."""
        return await self._backend.areserve(self._settings_now())

    def _settings_now(self) -> GateSettings:
        # In test mode (xretry.testing.no_wait) no time passes: "come back later" would spin.
        return self._booking_settings if _testing.active() is not None else self.settings

    def observe(
        self, status_code: int | None, wait: float | None = None, rate: float | None = None
    ) -> None:
        """Learn from an outcome: a status (``None`` for a transport failure), the certain part of
        a 429's requested wait, and the refill rate the ``x-ratelimit-*`` headers imply."""
        budget = self.budget
        if budget is not None and status_code is not None and status_code < 400:
            budget.on_success()
        memory = self._memory
        if memory is not None:  # the common case first: nothing to learn, no lock, no settings
            state = memory.state
            if state.teaches_nothing(memory.clock(), status_code, wait, rate):
                if state.outstanding > 0:
                    state.outstanding -= 1
                return
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
