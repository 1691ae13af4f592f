"""The pure header parsers: every server-sent "wait" header, good, odd and hostile."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from xretry._headers import (
    MAX_HINT_SECONDS,
    parse_duration,
    parse_retry_after,
    parse_retry_after_ms,
    parse_should_retry,
    rate_limit_reset,
    retry_hint,
)

#: A fixed wall clock: 2023-11-14T22:13:20Z.
NOW = 1_700_000_000.0


def http_date(offset: float) -> str:
    """An IMF-fixdate (``Tue, 14 Nov 2023 22:13:30 GMT``) ``offset`` seconds after NOW."""
    return format_datetime(datetime.fromtimestamp(NOW + offset, UTC), usegmt=True)


def retry_after(value: str | None) -> float | None:
    return parse_retry_after(value, now=NOW)


PARSERS: dict[str, Callable[[str | None], float | None]] = {
    "retry-after-ms": parse_retry_after_ms,
    "retry-after": retry_after,
    "duration": parse_duration,
}

#: Values no parser may read as a wait: not numbers in any format a server sends.
GARBAGE = [
    pytest.param("nan", id="nan"),
    pytest.param("NaN", id="NaN"),
    pytest.param("inf", id="inf"),
    pytest.param("-inf", id="minus-inf"),
    pytest.param("Infinity", id="Infinity"),
    pytest.param("1e999", id="1e999"),
    pytest.param("1e3", id="exponent"),
    pytest.param("\u0663", id="arabic-indic-3"),
    pytest.param("\u0661\u0662\u0660", id="arabic-indic-120"),
    pytest.param("\uff15", id="fullwidth-5"),
    pytest.param("", id="empty"),
    pytest.param("   \t ", id="whitespace"),
    pytest.param("soon", id="word"),
    pytest.param("0x10", id="hex"),
    pytest.param("1_000", id="underscore"),
    pytest.param("1 2", id="two-numbers"),
    pytest.param("9" * 65, id="longer-than-64-chars"),
]


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_none_means_no_hint(name: str) -> None:
    assert PARSERS[name](None) is None


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("value", GARBAGE)
def test_garbage_is_no_hint(name: str, value: str) -> None:
    assert PARSERS[name](value) is None


@pytest.mark.parametrize("name", sorted(PARSERS))
@pytest.mark.parametrize("value", ["-5", "-0.5", "-99999999999"])
def test_negative_numbers_are_no_hint(name: str, value: str) -> None:
    assert PARSERS[name](value) is None


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_huge_integers_clamp_to_max(name: str) -> None:
    assert PARSERS[name]("9" * 64) == MAX_HINT_SECONDS


# --- retry-after-ms ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("0", 0.0), ("1500", 1.5), ("20", 0.02), ("250.5", 0.2505), (" 3000 ", 3.0), ("+100", 0.1)],
)
def test_retry_after_ms_is_milliseconds(value: str, seconds: float) -> None:
    assert parse_retry_after_ms(value) == pytest.approx(seconds)


# --- retry-after ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"), [("0", 0.0), ("3", 3.0), ("120", 120.0), ("1.5", 1.5), (" 7 ", 7.0)]
)
def test_retry_after_delta_seconds(value: str, seconds: float) -> None:
    assert retry_after(value) == seconds


def test_retry_after_http_date_in_the_future() -> None:
    assert retry_after(http_date(30)) == 30.0


def test_retry_after_http_date_is_measured_against_now() -> None:
    value = http_date(30)
    assert parse_retry_after(value, now=NOW + 10) == 20.0


def test_retry_after_rfc850_date() -> None:
    assert retry_after("Tuesday, 14-Nov-23 22:13:30 GMT") == 10.0


@pytest.mark.parametrize("offset", [-1, -3600, -NOW + 1])
def test_retry_after_past_date_is_zero(offset: float) -> None:
    assert retry_after(http_date(offset)) == 0.0


def test_retry_after_year_9999_clamps_to_max() -> None:
    value = format_datetime(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), usegmt=True)
    assert retry_after(value) == MAX_HINT_SECONDS


@pytest.mark.parametrize(
    "value",
    [
        "Tue, 32 Nov 2023 22:13:30 GMT",
        "Tue, 14 Foo 2023 22:13:30 GMT",
        "Tue, 14 Nov 2023 25:13:30 GMT",
        "Fri, 31 Dec 9999 23:59:60 GMT",
        "Tue, 14 Nov 99999 22:13:30 GMT",
        "Tue, 14 Nov",
        "GMT",
        "Tue, \u0661\u0664 Nov 2023 22:13:30 GMT",
    ],
)
def test_retry_after_malformed_date_is_no_hint(value: str) -> None:
    assert retry_after(value) is None


@pytest.fixture
def local_time_utc_minus_8() -> Iterator[None]:
    """The process's local time zone is UTC-8 for the test (POSIX TZ, no tzdata needed)."""
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "XST+08"
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.mark.usefixtures("local_time_utc_minus_8")
@pytest.mark.parametrize(
    "value",
    ["Tue Nov 14 22:13:30 2023", "Tue, 14 Nov 2023 22:13:30 -0000"],
    ids=["asctime", "minus-0000"],
)
def test_retry_after_dates_are_gmt_whatever_the_local_zone(value: str) -> None:
    assert retry_after(value) == 10.0


# --- x-ratelimit-reset-* durations ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("1.5s", 1.5),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("1s20ms", 1.02),
        ("0s", 0.0),
        (" 6m0s ", 360.0),
        ("2", 2.0),
        ("0.25", 0.25),
    ],
)
def test_parse_duration(value: str, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "value",
    ["s", "ms", "m", "h", "1d", "-1s", "1 s", "1m30", "5x", "1s1h", "\u0663s", "1m\u0663s", "1e3s"],
)
def test_parse_duration_rejects_malformed(value: str) -> None:
    assert parse_duration(value) is None


def test_parse_duration_huge_clamps_to_max() -> None:
    assert parse_duration("99999999999h") == MAX_HINT_SECONDS


# --- rate_limit_reset ----------------------------------------------------------------------


def test_rate_limit_reset_picks_the_exhausted_requests_window() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "5000",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert rate_limit_reset(headers) == 1.0


def test_rate_limit_reset_picks_the_exhausted_tokens_window_even_if_longer() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "10",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "6m0s",
    }
    assert rate_limit_reset(headers) == 360.0


def test_rate_limit_reset_both_exhausted_waits_for_both() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-remaining-tokens": "0",
        "x-ratelimit-reset-tokens": "20ms",
    }
    assert rate_limit_reset(headers) == 1.0


def test_rate_limit_reset_unknown_window_uses_the_shorter() -> None:
    headers = {"x-ratelimit-reset-requests": "6m0s", "x-ratelimit-reset-tokens": "20ms"}
    assert rate_limit_reset(headers) == pytest.approx(0.02)


def test_rate_limit_reset_with_no_window_exhausted_is_no_hint() -> None:
    """Servers send these on every response: a budget, not a wait (a 503 must not idle 6 min)."""
    headers = {
        "x-ratelimit-reset-requests": "6m0s",
        "x-ratelimit-reset-tokens": "20ms",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-remaining-tokens": "9",
    }
    assert rate_limit_reset(headers) is None


def test_rate_limit_reset_single_window() -> None:
    assert rate_limit_reset({"x-ratelimit-reset-tokens": "6m0s"}) == 360.0


def test_rate_limit_reset_without_reset_headers_is_none() -> None:
    assert rate_limit_reset({}) is None
    assert rate_limit_reset({"x-ratelimit-remaining-requests": "0"}) is None
    assert rate_limit_reset({"x-ratelimit-reset-requests": "soon"}) is None


# --- retry_hint priority ---------------------------------------------------------------------

ALL_HINTS = {
    "retry-after-ms": "1500",
    "retry-after": "7",
    "x-ratelimit-reset-requests": "20s",
    "x-ratelimit-reset-tokens": "30s",
}


def without(*names: str) -> dict[str, str]:
    return {k: v for k, v in ALL_HINTS.items() if k not in names}


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        pytest.param(ALL_HINTS, 1.5, id="retry-after-ms-first"),
        pytest.param(without("retry-after-ms"), 7.0, id="then-retry-after"),
        pytest.param(without("retry-after-ms", "retry-after"), 20.0, id="then-ratelimit-reset"),
        pytest.param({**ALL_HINTS, "retry-after-ms": "soon"}, 7.0, id="bad-ms-falls-through"),
        pytest.param(
            {**without("retry-after-ms"), "retry-after": "Tue, 14 Nov"},
            20.0,
            id="bad-retry-after-falls-through",
        ),
        pytest.param(
            {"retry-after-ms": "nan", "retry-after": "1e999", "x-ratelimit-reset-tokens": "3s"},
            3.0,
            id="two-bad-then-reset",
        ),
        pytest.param(
            {"retry-after": http_date(45), "x-ratelimit-reset-tokens": "3s"}, 45.0, id="date"
        ),
        pytest.param({}, None, id="nothing"),
        pytest.param({"retry-after": "soon", "retry-after-ms": ""}, None, id="all-unusable"),
    ],
)
def test_retry_hint_priority(headers: dict[str, str], seconds: float | None) -> None:
    assert retry_hint(headers, now=NOW) == seconds


def test_retry_hint_reads_case_insensitive_httpx_headers() -> None:
    headers = httpx.Headers({"Retry-After": "4", "X-RateLimit-Reset-Tokens": "9s"})
    assert retry_hint(headers, now=NOW) == 4.0


# --- x-should-retry ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" True ", True),
        ("false", False),
        ("False", False),
        (None, None),
        ("", None),
        ("1", None),
        ("0", None),
        ("yes", None),
        ("truee", None),
    ],
)
def test_parse_should_retry(value: str | None, expected: bool | None) -> None:
    assert parse_should_retry(value) is expected


# --- properties ----------------------------------------------------------------------------


def assert_in_range(result: float | None) -> None:
    if result is not None:
        assert isinstance(result, float)
        assert math.isfinite(result)
        assert 0.0 <= result <= MAX_HINT_SECONDS


@pytest.mark.parametrize("name", sorted(PARSERS))
@given(value=st.text())
def test_parsers_are_total_and_bounded(name: str, value: str) -> None:
    assert_in_range(PARSERS[name](value))


RATE_LIMIT_NAMES = [
    f"x-ratelimit-{p}-{k}" for p in ("reset", "remaining") for k in ("requests", "tokens")
]
HEADER_NAMES = ["retry-after", "retry-after-ms", *RATE_LIMIT_NAMES]


@given(headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.text()))
def test_combined_hints_are_total_and_bounded(headers: dict[str, str]) -> None:
    assert_in_range(retry_hint(headers, now=NOW))
    assert_in_range(rate_limit_reset(headers))


@given(value=st.text())
def test_should_retry_is_total(value: str) -> None:
    assert parse_should_retry(value) in (True, False, None)


def clamped(seconds: float) -> float:
    return min(seconds, MAX_HINT_SECONDS)


@given(number=st.integers(min_value=0, max_value=10**60))
def test_integers_round_trip(number: int) -> None:
    text = str(number)
    assert retry_after(text) == clamped(float(number))
    assert parse_duration(text) == clamped(float(number))
    assert parse_duration(f"{text}s") == clamped(float(number))
    assert parse_retry_after_ms(text) == pytest.approx(clamped(number / 1000.0))


FLOATS = st.just(0.0) | st.floats(min_value=1e-4, max_value=1e15)


@given(number=FLOATS, template=st.sampled_from(["{:f}", "{!r}", "{:.3f}"]))
def test_floats_round_trip(number: float, template: str) -> None:
    text = template.format(number)
    expected = float(text)  # what the server meant, after its own formatting
    assert retry_after(text) == pytest.approx(clamped(expected))
    assert parse_duration(text) == pytest.approx(clamped(expected))
    assert parse_duration(f"{text}s") == pytest.approx(clamped(expected))
    assert parse_duration(f"{text}ms") == pytest.approx(clamped(expected / 1000.0))
    assert parse_retry_after_ms(text) == pytest.approx(clamped(expected / 1000.0))


@given(
    hours=st.integers(min_value=0, max_value=10_000),
    minutes=st.integers(min_value=0, max_value=59),
    seconds=st.floats(min_value=0, max_value=59.999, allow_subnormal=False),
)
def test_hms_durations_round_trip(hours: int, minutes: int, seconds: float) -> None:
    text = f"{hours}h{minutes}m{seconds:.3f}s"
    expected = hours * 3600 + minutes * 60 + float(f"{seconds:.3f}")
    assert parse_duration(text) == pytest.approx(expected)


@given(offset=st.integers(min_value=0, max_value=10 * 365 * 86400))
def test_http_dates_round_trip(offset: int) -> None:
    assert retry_after(http_date(offset)) == float(offset)
