"""The retry policy: one frozen, validated value that every entry point reads.

A policy is data, not behaviour: it never sleeps, never counts, never changes. Change one with
:func:`dataclasses.replace` (or :meth:`RetryPolicy.replace`, which names the bad field when a
value is wrong) and hand the new object over.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = [
    "DEFAULT_IDEMPOTENT_METHODS",
    "DEFAULT_RETRY_STATUSES",
    "PollPolicy",
    "RetryPolicy",
    "check_policy",
]

#: Statuses that say "the work was not done, try again": 408 (the server timed out waiting for
#: the request), 429 (rate limited: the request was *not* processed, so even a billed POST is safe
#: to resend) and the gateway/overload family of 5xx, with Anthropic's 529 "overloaded_error" (what
#: its SDK retries, and what anthropic 2.x through an xretry transport would otherwise raise at
#: once). 501 and 505 are permanent and stay out.
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504, 529})

#: Methods safe to send again after a failure that happened *after* the request may have reached
#: the server (read timeout, dropped connection). POST is deliberately absent: on the xAI API a
#: POST is a billed generation, and a resend after the server may have acted pays for it twice.
#: Failures *before* sending (connect errors) are retried for every method regardless.
DEFAULT_IDEMPOTENT_METHODS: frozenset[str] = frozenset(
    {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
)


def _finite(name: str, value: object, *, minimum: float = 0.0, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond any float: as good as infinite
        raise ValueError(
            f"{name} must be finite, got an integer of {int(value).bit_length()} bits"
        ) from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if number < minimum or (strict and number == minimum):
        relation = ">" if strict else ">="
        raise ValueError(f"{name} must be {relation} {minimum:g}, got {value!r}")
    return number


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try, how long to wait, and what is worth retrying.

    Every field has a default chosen for an LLM API that rate-limits per second and bills per call;
    the reason for each is next to it. Invalid values raise :class:`ValueError` naming the field.

    Example::

        policy = RetryPolicy(max_attempts=3, deadline=30.0)
        client = httpx.Client(transport=xretry.RetryTransport(policy=policy))
    """

    #: Total tries including the first. Five rides out a burst of 429s or a few seconds of 503s
    #: (about 4 s of backoff on average) without turning an outage into a minute-long stall.
    max_attempts: int = 5
    #: First backoff ceiling in seconds (the openai SDK's value): long enough to let a rate-limit
    #: window move, short enough to be invisible on a one-off 503.
    initial_delay: float = 0.5
    #: Backoff ceiling never exceeds this; 20 s is the longest a caller usually tolerates per step.
    max_delay: float = 20.0
    #: Growth of the ceiling per attempt: doubling is the classic, well-studied choice.
    multiplier: float = 2.0
    #: Fraction of each backoff that is randomised: 1.0 is "full jitter" (uniform in
    #: ``[0, ceiling]``), which spreads concurrent clients best (AWS architecture blog, 2015);
    #: 0.0 is no jitter, 0.5 is "equal jitter".
    jitter: float = 1.0
    #: Seconds for the whole logical request, attempts and sleeps together, or ``None``. No default
    #: deadline: each attempt is already bounded by the httpx client's timeouts and each sleep by
    #: ``max_delay`` / ``max_retry_after``, and a global default would cut off long reasoning calls.
    deadline: float | None = None
    #: Longest server-requested wait (``retry-after`` and friends) that is honoured. Above it, or
    #: above what is left of ``deadline``, xretry stops at once and returns the response instead of
    #: sleeping: a server asking for ten minutes is better reported than waited on. 60 s covers a
    #: per-minute token window.
    max_retry_after: float = 60.0
    #: Statuses retried for every method (see :data:`DEFAULT_RETRY_STATUSES`).
    retry_statuses: frozenset[int] = field(default=DEFAULT_RETRY_STATUSES)
    #: Methods also retried after a failure that may have reached the server. Add ``"POST"`` to
    #: resend billed generations after a read timeout (see :data:`DEFAULT_IDEMPOTENT_METHODS`).
    idempotent_methods: frozenset[str] = field(default=DEFAULT_IDEMPOTENT_METHODS)
    #: Honour ``retry-after-ms`` / ``retry-after`` / ``x-ratelimit-reset-*`` hints. When off, the
    #: hints are ignored and the backoff schedule alone decides.
    respect_retry_after: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
            raise ValueError(f"max_attempts must be an int, got {self.max_attempts!r}")
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts!r}")
        initial = _finite("initial_delay", self.initial_delay)
        maximum = _finite("max_delay", self.max_delay)
        if initial > maximum:
            raise ValueError(f"initial_delay ({initial:g}) must be <= max_delay ({maximum:g})")
        multiplier = _finite("multiplier", self.multiplier, minimum=1.0)
        jitter = _finite("jitter", self.jitter)
        if jitter > 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter!r}")
        deadline = (
            None if self.deadline is None else _finite("deadline", self.deadline, strict=True)
        )
        max_retry_after = _finite("max_retry_after", self.max_retry_after)
        if not isinstance(self.respect_retry_after, bool):
            raise ValueError(
                f"respect_retry_after must be a bool, got {self.respect_retry_after!r}"
            )
        setattr_ = object.__setattr__
        setattr_(self, "initial_delay", initial)
        setattr_(self, "max_delay", maximum)
        setattr_(self, "multiplier", multiplier)
        setattr_(self, "jitter", jitter)
        setattr_(self, "deadline", deadline)
        setattr_(self, "max_retry_after", max_retry_after)
        setattr_(self, "retry_statuses", _statuses(self.retry_statuses))
        setattr_(self, "idempotent_methods", _methods(self.idempotent_methods))

    def replace(self, **changes: Any) -> RetryPolicy:
        """A validated copy with ``changes`` applied; an unknown field name is a ``ValueError``."""
        return _replace(self, changes)

    @staticmethod
    def coerce(value: object, *, base: RetryPolicy) -> RetryPolicy:
        """Turn a per-request override into a policy: a policy, a mapping of changes, or ``False``.

        ``False`` means "no retries for this request" (one attempt).
        """
        if isinstance(value, RetryPolicy):
            return value
        if value is False:
            return base.replace(max_attempts=1)
        if isinstance(value, Mapping):
            if not all(isinstance(key, str) for key in value):
                raise ValueError(f"RetryPolicy override keys must be field names, got {value!r}")
            return base.replace(**dict(value))
        raise ValueError(
            "request.extensions['xretry'] must be a RetryPolicy, a mapping of RetryPolicy "
            f"fields to change, or False; got {type(value).__name__}"
        )


def _statuses(value: Iterable[int]) -> frozenset[int]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"retry_statuses must be a collection of ints, got {value!r}")
    try:
        statuses = frozenset(value)
    except TypeError:  # an unhashable member (a list, a dict)
        raise ValueError(f"retry_statuses must hold ints, got {value!r}") from None
    for status in statuses:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError(f"retry_statuses holds {status!r}, not an HTTP status (100-599)")
        if status < 400:
            raise ValueError(
                f"retry_statuses holds {status}: only error statuses (400-599) can be retried"
            )
    return statuses


def _methods(value: Iterable[str]) -> frozenset[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise ValueError(f"idempotent_methods must be a collection of method names, got {value!r}")
    methods = set()
    for method in value:
        if not isinstance(method, str) or not method.isascii() or not method.isalpha():
            raise ValueError(f"idempotent_methods holds {method!r}, not an HTTP method name")
        methods.add(method.upper())
    return frozenset(methods)


@dataclass(frozen=True, slots=True)
class PollPolicy:
    """When to ask again for a deferred completion that is not ready yet (a 202).

    Polls are spaced ``interval``, then ``interval * multiplier``, ... up to ``max_interval``, each
    spread by +/- ``jitter`` (a fraction) so thousands of jobs don't poll in lockstep. A
    ``retry-after`` on a 202 is honoured as a minimum. After ``timeout`` seconds the last 202 is
    returned (by the transport) or :class:`DeferredTimeoutError` raised (by the poller).

    The defaults were tuned on ``benchmarks/deferred.py`` (jobs ready 1-4 s after submission, 40
    requests/s shared): polls start ``first_delay`` after submission and grow slowly, which keeps
    the lag from ready to delivered under a second for short jobs and the poll count low for long
    ones. The official SDK's fixed 1 s for 10 minutes is ``PollPolicy(multiplier=1, jitter=0)``.
    """

    #: Wait between submitting and the first poll (used by ``create``; ``wait`` polls at once, the
    #: result may already be there).
    first_delay: float = 1.0
    #: First gap between two polls.
    interval: float = 1.0
    #: Growth of the gap per poll: 1.2 reaches 10 s after about 13 polls (about a minute in).
    multiplier: float = 1.2
    #: Longest gap between polls: a long job costs at most one poll per this many seconds.
    max_interval: float = 10.0
    #: Each gap is spread uniformly by this fraction either way.
    jitter: float = 0.1
    #: Give up after this many seconds of polling (the official SDK's 10 minutes); ``None``: never.
    timeout: float | None = 600.0

    def __post_init__(self) -> None:
        first = _finite("first_delay", self.first_delay)
        interval = _finite("interval", self.interval, minimum=0.001)
        multiplier = _finite("multiplier", self.multiplier, minimum=1.0)
        maximum = _finite("max_interval", self.max_interval, minimum=0.001)
        if interval > maximum:
            raise ValueError(f"interval ({interval:g}) must be <= max_interval ({maximum:g})")
        jitter = _finite("jitter", self.jitter)
        if jitter >= 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        timeout = None if self.timeout is None else _finite("timeout", self.timeout, strict=True)
        setattr_ = object.__setattr__
        setattr_(self, "first_delay", first)
        setattr_(self, "interval", interval)
        setattr_(self, "multiplier", multiplier)
        setattr_(self, "max_interval", maximum)
        setattr_(self, "jitter", jitter)
        setattr_(self, "timeout", timeout)

    def replace(self, **changes: Any) -> PollPolicy:
        """A validated copy with ``changes`` applied; an unknown field name is a ``ValueError``."""
        return _replace(self, changes)


_Policy = TypeVar("_Policy", RetryPolicy, PollPolicy)


def _replace(policy: _Policy, changes: Mapping[str, Any]) -> _Policy:
    unknown = sorted(set(changes) - {f.name for f in dataclasses.fields(policy)})
    if unknown:
        raise ValueError(f"unknown {type(policy).__name__} field(s): {', '.join(unknown)}")
    return dataclasses.replace(policy, **changes)


def check_policy(policy: object) -> None:
    """A ``policy=`` argument is a :class:`RetryPolicy`, or ``None`` for the default."""
    if policy is not None and not isinstance(policy, RetryPolicy):
        raise ValueError(f"policy must be a RetryPolicy, got {type(policy).__name__}")
