"""Pure, total parsers for the headers a server uses to say "wait".

Every parser here takes untrusted text and returns either ``None`` (no usable hint) or a
finite number of seconds in ``[0, MAX_HINT_SECONDS]``. None of them raises, whatever the
server sends: negative numbers and ``NaN`` (no hint), ``inf`` or ``1e999`` (not numbers as
servers write them: no hint), non-ASCII digits (no hint), dates in the past (0) or in the year
9999 (clamped). What to *do* with a long hint (stop now rather than sleep) is the
policy's business, not the parser's; the clamp only keeps the arithmetic finite.
"""

from __future__ import annotations

import datetime
import email.utils
import math
import re
from collections.abc import Mapping

__all__ = [
    "MAX_HINT_SECONDS",
    "parse_duration",
    "parse_retry_after",
    "parse_retry_after_ms",
    "parse_should_retry",
    "rate_limit_reset",
    "refill_rate",
    "retry_hint",
    "shared_wait",
]

#: Upper clamp for any parsed wait (about 31 years). Far above any sane ``max_retry_after``,
#: so an enormous hint still reads as "too long: stop", while every value stays a finite float.
MAX_HINT_SECONDS = 1e9

#: Numbers as servers write them: ASCII digits only (``str.isdigit`` accepts other scripts),
#: an optional sign and fraction. Anything else is not a number to us.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)", re.ASCII)

#: OpenAI-style durations in ``x-ratelimit-reset-*``: ``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``.
_DURATION = re.compile(
    r"(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?",
    re.ASCII,
)

#: Requests a bucket must be down before its headers are read as a rate (see refill_rate).
_MIN_USED = 8

#: Longest header value worth parsing; longer values are garbage, not hints.
_MAX_LEN = 64


def _clamp(seconds: float) -> float | None:
    """A finite wait in ``[0, MAX_HINT_SECONDS]``; ``None`` for NaN or a negative number.

    A negative delay is invalid (RFC 9110 allows only non-negative integers), so it is no hint at
    all: the next header in line, or backoff, decides. Dates in the past are handled by the caller.
    """
    if math.isnan(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_HINT_SECONDS)


def _number(value: str) -> float | None:
    value = value.strip()
    if len(value) > _MAX_LEN or not _NUMBER.fullmatch(value):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError):  # pragma: no cover - the regex admits only floats
        return None


def parse_retry_after_ms(value: str | None) -> float | None:
    """Seconds from ``retry-after-ms`` (milliseconds, as the openai SDK reads it)."""
    if value is None:
        return None
    ms = _number(value)
    return None if ms is None else _clamp(ms / 1000.0)


def parse_retry_after(value: str | None, *, now: float) -> float | None:
    """Seconds from ``retry-after``: delta-seconds or an HTTP-date (RFC 9110 section 10.2.3).

    ``now`` is the wall-clock time (``time.time()``) a date is measured against; a date in the
    past means "now" (0 s).
    """
    if value is None:
        return None
    value = value.strip()
    if len(value) > _MAX_LEN:
        return None
    seconds = _number(value)
    if seconds is not None:
        return _clamp(seconds)
    if not value.isascii():
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" forms: RFC 9110 says HTTP-dates are GMT
        when = when.replace(tzinfo=datetime.UTC)
    try:
        timestamp = when.timestamp()
    except (OverflowError, OSError, ValueError):
        return None
    return _clamp(max(timestamp - now, 0.0))  # a date in the past means "now"


def parse_duration(value: str | None) -> float | None:
    """Seconds from an ``x-ratelimit-reset-*`` value: ``6m0s``, ``20ms``, ``1.5s`` or bare ``2``."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_LEN:
        return None
    bare = _number(value)
    if bare is not None:
        return _clamp(bare)
    match = _DURATION.fullmatch(value)
    if match is None or not any(match.groupdict().values()):
        return None
    parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
    total = (
        parts.get("h", 0.0) * 3600.0
        + parts.get("m", 0.0) * 60.0
        + parts.get("s", 0.0)
        + parts.get("ms", 0.0) / 1000.0
    )
    return _clamp(total)


def rate_limit_reset(headers: Mapping[str, str]) -> float | None:
    """Seconds until the exhausted rate-limit window resets, from ``x-ratelimit-*``.

    A window whose ``x-ratelimit-remaining-*`` is ``0`` is the one that was hit. When the
    headers don't say which (no ``remaining`` values), the *shorter* reset is used: guessing
    short costs one more 429 with a fresh hint, guessing long can idle for minutes. When they
    say no window is exhausted, there is no hint: the headers describe the budget, not this wait.
    """
    resets: list[float] = []
    exhausted: list[float] = []
    told = False
    for kind in ("requests", "tokens"):
        remaining = _number(headers.get(f"x-ratelimit-remaining-{kind}") or "")
        told = told or remaining is not None
        reset = parse_duration(headers.get(f"x-ratelimit-reset-{kind}"))
        if reset is None:
            continue
        resets.append(reset)
        if remaining is not None and remaining <= 0:
            exhausted.append(reset)
    if exhausted:
        return max(exhausted)
    if told or not resets:
        return None
    return min(resets)


def retry_hint(
    headers: Mapping[str, str], *, now: float, rate_limited: bool = True
) -> float | None:
    """The server's requested wait in seconds, most precise header first, or ``None``.

    Order: ``retry-after-ms``, ``retry-after``, then (for a 429, ``rate_limited=True``) the
    ``x-ratelimit-reset-*`` pair: on any other status those headers describe the rate-limit
    budget that servers send on every response, not a wait for this one.
    An unusable header is skipped, not fatal: the next one in line may still be good.
    """
    for hint in (
        parse_retry_after_ms(headers.get("retry-after-ms")),
        parse_retry_after(headers.get("retry-after"), now=now),
    ):
        if hint is not None:
            return hint
    return rate_limit_reset(headers) if rate_limited else None


def parse_should_retry(value: str | None) -> bool | None:
    """``x-should-retry: true|false`` (the openai SDK's override); anything else is ``None``."""
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def shared_wait(headers: Mapping[str, str], *, now: float) -> float | None:
    """The part of a 429's requested wait that is certain, for pausing *every* request.

    ``retry-after-ms`` is precise and taken as is. A whole-second ``retry-after`` is an integer
    rounded up from the real wait (RFC 9110 has no fractions), so only ``N - 1`` seconds of it are
    certain: ``retry-after: 1`` says "under a second", which is no reason to idle the whole limit.
    ``x-ratelimit-reset-*`` says when the window is *full* again, not when the next request fits,
    so it is no shared wait at all (the refill rate it implies paces instead, see
    :func:`refill_rate`). An HTTP date counts like whole seconds. A fractional ``retry-after:
    2.5`` was not rounded by the server, so all of it is certain and shared in full.
    """
    precise = parse_retry_after_ms(headers.get("retry-after-ms"))
    if precise is not None:
        return precise if precise > 0 else None
    value = headers.get("retry-after")
    if value is None:
        return None
    coarse = parse_retry_after(value, now=now)
    if coarse is None:
        return None
    if _number(value) is not None and coarse != math.floor(coarse):
        return coarse
    certain = math.ceil(coarse) - 1.0
    return certain if certain > 0 else None


def refill_rate(headers: Mapping[str, str]) -> float | None:
    """Requests per second the server's ``x-ratelimit-*-requests`` headers imply, or ``None``.

    OpenAI-style headers describe a bucket: ``limit`` requests at most, ``remaining`` left now, and
    ``reset`` until it is full again; so it refills at ``(limit - remaining) / reset`` requests a
    second, whatever the window's unit. ``remaining`` is rounded down (up to one request unseen),
    so half a request is taken off. Read only when the bucket is at least half empty and
    ``_MIN_USED`` requests down (the estimate is then within about 6%): a nearly full bucket gives
    a noisy estimate, and a client nowhere near its limit needs no pacing.
    """
    limit = _number(headers.get("x-ratelimit-limit-requests") or "")
    remaining = _number(headers.get("x-ratelimit-remaining-requests") or "")
    reset = parse_duration(headers.get("x-ratelimit-reset-requests"))
    if limit is None or remaining is None or reset is None or not 0 < reset < MAX_HINT_SECONDS:
        return None
    if not (0 <= remaining <= limit / 2 and limit - remaining >= _MIN_USED):
        return None
    rate = (limit - remaining - 0.5) / reset
    return rate if math.isfinite(rate) and rate > 0 else None
