"""Properties of the pure core: a total classifier, total parsers, validation naming the field.

What the example tests in ``test_classify.py``, ``test_headers.py`` and ``test_policy.py`` leave
open, and this file covers:

* the classifier on *any* integer status (negative, 0, 600+, astronomically large), any valid
  policy, any clock (NaN and infinities included), and real httpx / httpx2 response objects whose
  raw header bytes are not even UTF-8;
* the header parsers on text shaped like what servers send, but broken: numbers of every size and
  sign, ``nan`` / ``inf`` spellings, non-ASCII digits, durations with huge parts, HTTP-dates with
  impossible fields and zones, against any clock;
* policy validation over arbitrary values of arbitrary types, through every way a policy is made
  (the constructor, ``replace``, ``coerce`` and a per-request override through the transport):
  either it constructs with a value in its documented domain, or it is a ``ValueError`` /
  ``TypeError`` naming the field, and nothing is sent;
* exceptions of every shape the decorator may see, re-raised unchanged.

The example tests near the end pin down the defects this file found (fixed in 02ad89d): an int too
large for a float, an unhashable status, and a foreign exception with an odd ``response`` got
errors that named nothing, or replaced the caller's exception.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, cast

import httpx
import httpx2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import xretry
from xretry import PollPolicy, RetryPolicy, Verdict
from xretry._classify import classify_exception, classify_response
from xretry._headers import (
    MAX_HINT_SECONDS,
    parse_duration,
    parse_retry_after,
    parse_retry_after_ms,
    parse_should_retry,
    rate_limit_reset,
    refill_rate,
    retry_hint,
    shared_wait,
)
from xretry.testing import no_wait

CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
DEFERRED = "/v1/chat/deferred-completion/0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"
NOW = 1_700_000_000.0

# -- strategies: what a broken or hostile server sends -------------------------------------------

#: Number spellings no parser may take for a wait, and some it may (with odd whitespace or sign).
ODD_NUMBERS = st.sampled_from(
    [
        *("nan", "NaN", "-nan", "+nan", "inf", "-inf", "+inf", "Infinity", "-Infinity", "1e999"),
        *("-1e999", "1e-999", "1e3", "0x1f", "0o7", "0b1", "1_000", "1,5", "1.", ".5", "-.5"),
        *("-0", "+0", "00", "-0.0", "+1", "--1", "+-1", "1.2.3", "\u0663", "\uff15", "\u06f1"),
        *("\u00a05", "5\u00a0", "5\x00", "\t7\t", " 3 ", "\u200b1", "1\u200b", "¹", "²³", "⑤"),
    ]
)
INTEGER_TEXT = st.integers(min_value=-(10**70), max_value=10**70).map(str)
FLOAT_TEXT = st.floats().map(repr) | st.floats(allow_nan=False, allow_infinity=False).map(
    "{:f}".format
)
DURATION_PART = st.integers(min_value=0, max_value=10**40).map(str) | st.floats(
    min_value=0, allow_nan=False, allow_infinity=False
).map("{:f}".format)


@st.composite
def durations(draw: st.DrawFn) -> str:
    """``1h2m3.5s20ms``-shaped text, each part optional, some parts huge or out of order."""
    units = draw(st.lists(st.sampled_from(["h", "m", "s", "ms", "d", "us", ""]), max_size=5))
    return "".join(f"{draw(DURATION_PART)}{unit}" for unit in units)


DAYS = st.sampled_from(["Mon", "Tue", "Sun", "Tuesday", "Xyz", "", "\u0661"])
MONTHS = st.sampled_from(["Jan", "Nov", "Dec", "Foo", "", "nov"])
FIELD = INTEGER_TEXT | st.sampled_from(["0", "00", "99", "9999", "99999", "\u0661\u0664", "-1"])
ZONES = st.sampled_from(
    ["GMT", "UTC", "-0000", "+0000", "+9999", "-9999", "+2400", "EST", "Z", "", "+99999999"]
)
DATE_FORMATS = st.sampled_from(
    [
        "{day}, {dd} {month} {year} {hh}:{mm}:{ss} {zone}",  # IMF-fixdate
        "{day}, {dd}-{month}-{year} {hh}:{mm}:{ss} {zone}",  # RFC 850
        "{day} {month} {dd} {hh}:{mm}:{ss} {year}",  # asctime
        "{dd} {month} {year} {hh}:{mm} {zone}",
    ]
)


@st.composite
def http_dates(draw: st.DrawFn) -> str:
    """HTTP-date-shaped text with any field impossible: day 99, year 10**60, zone +9999."""
    return draw(DATE_FORMATS).format(
        day=draw(DAYS),
        dd=draw(FIELD),
        month=draw(MONTHS),
        year=draw(FIELD),
        hh=draw(FIELD),
        mm=draw(FIELD),
        ss=draw(FIELD),
        zone=draw(ZONES),
    )


#: Anything a server may put in a header value that xretry reads.
HINT_TEXT = st.one_of(
    st.text(),
    ODD_NUMBERS,
    INTEGER_TEXT,
    FLOAT_TEXT,
    durations(),
    http_dates(),
    st.tuples(st.sampled_from(["", " ", "\t", "\u00a0"]), INTEGER_TEXT | durations()).map("".join),
)
#: Any wall clock, including ones no machine has: a parser must not do arithmetic it can't finish.
ANY_NOW = st.floats() | st.floats(min_value=-1e12, max_value=1e12) | st.just(NOW)

HEADER_NAMES = [
    "retry-after",
    "retry-after-ms",
    "x-should-retry",
    *(
        f"x-ratelimit-{p}-{k}"
        for p in ("limit", "remaining", "reset")
        for k in ("requests", "tokens")
    ),
]
HINT_HEADERS = st.dictionaries(st.sampled_from(HEADER_NAMES), HINT_TEXT, max_size=len(HEADER_NAMES))

SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    """Any valid RetryPolicy."""
    max_delay = draw(SECONDS)
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=10**6)),
        initial_delay=draw(st.floats(min_value=0, max_value=max_delay)),
        max_delay=max_delay,
        multiplier=draw(st.floats(min_value=1, max_value=1e6)),
        jitter=draw(st.floats(min_value=0, max_value=1)),
        deadline=draw(st.none() | st.floats(min_value=1e-9, max_value=1e9)),
        max_retry_after=draw(SECONDS),
        retry_statuses=draw(st.frozensets(st.integers(400, 599))),
        idempotent_methods=draw(st.frozensets(st.sampled_from(["GET", "POST", "put", "Patch"]))),
        respect_retry_after=draw(st.booleans()),
    )


def assert_wait(value: float | None) -> None:
    """A parsed wait: ``None``, or a finite float in ``[0, MAX_HINT_SECONDS]``."""
    if value is not None:
        assert isinstance(value, float)
        assert math.isfinite(value)
        assert 0.0 <= value <= MAX_HINT_SECONDS


# -- the classifier is total ---------------------------------------------------------------------


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.integers() | st.integers(min_value=-1, max_value=1000),
    headers=HINT_HEADERS,
    method=st.sampled_from(["GET", "POST", "PUT", "get", "PATCH", ""]) | st.text(max_size=8),
    path=st.sampled_from([CHAT, MODELS, DEFERRED, "", "/"]) | st.text(),
    body=st.none() | st.binary(),
    policy=policies(),
    now=ANY_NOW,
    replayable=st.booleans(),
)
def test_classify_response_is_total_for_any_status_policy_and_clock(
    status: int,
    headers: dict[str, str],
    method: str,
    path: str,
    body: bytes | None,
    policy: RetryPolicy,
    now: float,
    replayable: bool,
) -> None:
    decision = classify_response(
        method, path, status, headers, body, policy=policy, now=now, replayable=replayable
    )
    assert isinstance(decision.verdict, Verdict)
    assert isinstance(decision.reason, str)
    assert decision.reason.strip()
    assert_wait(decision.delay)
    assert decision.delay is None or decision.delay > 0  # a zero wait is no hint
    if not policy.respect_retry_after:
        assert decision.delay is None
    if status < 400:
        assert decision.verdict in (Verdict.SUCCESS, Verdict.POLL)
        if decision.verdict is Verdict.POLL:
            assert status == 202
            assert method.upper() == "GET"
    else:
        assert decision.verdict in (Verdict.RETRY, Verdict.FATAL)
        assert decision.delay is None or decision.verdict is Verdict.RETRY
        if decision.verdict is Verdict.RETRY:
            assert replayable
        if status not in policy.retry_statuses and "x-should-retry" not in headers:
            assert decision.verdict is Verdict.FATAL


@given(
    status=st.integers(min_value=400, max_value=599),
    method=st.sampled_from(["GET", "POST"]),
    policy=policies(),
)
def test_retry_statuses_of_the_policy_retry_when_nothing_says_otherwise(
    status: int, method: str, policy: RetryPolicy
) -> None:
    decision = classify_response(method, CHAT, status, {}, None, policy=policy, now=NOW)
    expected = Verdict.RETRY if status in policy.retry_statuses else Verdict.FATAL
    assert decision.verdict is expected
    assert decision.delay is None


RAW_HEADER_NAMES = st.sampled_from([n.encode() for n in HEADER_NAMES]).map(
    lambda name: name.upper() if name[0] % 2 else name  # servers spell names in any case
) | st.binary(min_size=1, max_size=12)
RAW_HEADERS = st.lists(
    st.tuples(RAW_HEADER_NAMES, HINT_TEXT.map(lambda t: t.encode("utf-8")) | st.binary()),
    max_size=8,
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    lib=st.sampled_from([httpx, httpx2]),
    status=st.integers(min_value=-1000, max_value=10**6),
    raw_headers=RAW_HEADERS,
    body=st.binary() | st.just(b'{"error": "used all available credits"}'),
    method=st.sampled_from(["GET", "POST", "DELETE"]),
    path=st.sampled_from([CHAT, MODELS, DEFERRED]),
    now=ANY_NOW,
)
def test_classify_is_total_on_real_response_objects(
    lib: ModuleType,
    status: int,
    raw_headers: list[tuple[bytes, bytes]],
    body: bytes,
    method: str,
    path: str,
    now: float,
) -> None:
    """Header bytes that are not UTF-8, any status httpx will hold, any body: still a verdict."""
    request = lib.Request(method, f"https://api.x.ai{path}")
    response = lib.Response(status, headers=raw_headers, content=body, request=request)
    decision = xretry.classify(response, now=now)
    assert isinstance(decision.verdict, Verdict)
    assert decision.reason.strip()
    assert_wait(decision.delay)
    if status >= 400:
        assert decision.verdict in (Verdict.RETRY, Verdict.FATAL)


# -- the header parsers are total and bounded ------------------------------------------------------


@given(value=HINT_TEXT, now=ANY_NOW)
def test_each_parser_is_total_and_bounded_on_server_shaped_text(value: str, now: float) -> None:
    assert_wait(parse_retry_after_ms(value))
    assert_wait(parse_retry_after(value, now=now))
    assert_wait(parse_duration(value))
    assert parse_should_retry(value) in (True, False, None)


@given(headers=HINT_HEADERS, now=ANY_NOW, rate_limited=st.booleans())
def test_combined_hints_are_total_and_bounded_on_server_shaped_text(
    headers: dict[str, str], now: float, rate_limited: bool
) -> None:
    assert_wait(retry_hint(headers, now=now, rate_limited=rate_limited))
    assert_wait(rate_limit_reset(headers))


@given(headers=HINT_HEADERS, cases=st.lists(st.booleans(), min_size=len(HEADER_NAMES)))
def test_hints_read_the_same_whatever_the_case_of_the_header_names(
    headers: dict[str, str], cases: list[bool]
) -> None:
    """Servers send ``Retry-After``; httpx headers are case-insensitive: the wait is the same."""
    ascii_only = {name: value for name, value in headers.items() if value.isascii()}
    spelled = [
        (name.upper() if upper else name.title(), value)
        for (name, value), upper in zip(ascii_only.items(), cases, strict=False)
    ]
    assert retry_hint(httpx.Headers(spelled), now=NOW) == retry_hint(ascii_only, now=NOW)


@given(headers=HINT_HEADERS, now=ANY_NOW)
def test_gate_header_readers_are_total(headers: dict[str, str], now: float) -> None:
    """What the gate reads from a 429: the certain wait, and the refill rate the budget implies."""
    assert_wait(shared_wait(headers, now=now))
    rate = refill_rate(headers)
    assert rate is None or (isinstance(rate, float) and math.isfinite(rate) and rate > 0)


# -- policy validation: construct, or a ValueError / TypeError naming the field -------------------


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


#: Integers within float range: larger ones are the overflow defect, tested on their own below.
FLOATABLE_INTS = st.integers(min_value=-(2**1000), max_value=2**1000)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10, max_value=1000),
    FLOATABLE_INTS,
    st.floats(),
    st.floats(min_value=-2, max_value=30),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.complex_numbers(),
    st.text(max_size=6),
    st.binary(max_size=4),
    st.builds(Opaque),
)
ELEMENTS = st.one_of(
    st.integers(min_value=-1, max_value=700),
    st.sampled_from([429, 503, 200, 99, 600]),
    st.booleans(),
    st.sampled_from(["GET", "post", "Put", "G3T", "", "GÉT", "429", "P O S T"]),
    st.text(max_size=4),
    st.floats(min_value=400, max_value=600),
    st.none(),
    st.binary(max_size=3),
)
COLLECTIONS = st.one_of(
    st.lists(ELEMENTS, max_size=4),
    st.lists(ELEMENTS, max_size=4).map(tuple),
    st.sets(ELEMENTS, max_size=4),
    st.frozensets(ELEMENTS, max_size=4),
    st.dictionaries(ELEMENTS, st.none(), max_size=3),
    st.binary(max_size=3).map(bytearray),
)
ANY_VALUE = SCALARS | COLLECTIONS


def _number(value: object, minimum: float, *, strict: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    number = float(value)
    return math.isfinite(number) and (number > minimum if strict else number >= minimum)


def _members(value: object, check: Callable[[object], bool]) -> bool:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return False
    return all(check(item) for item in value)


def _status(item: object) -> bool:
    return isinstance(item, int) and not isinstance(item, bool) and 400 <= item <= 599


def _method(item: object) -> bool:
    return isinstance(item, str) and item.isascii() and item.isalpha()


#: Whether ``RetryPolicy(**{field: value})`` (other fields at their defaults) is valid, straight
#: from the documented rules (docs/policies.md, "Validation").
RETRY_FIELDS: dict[str, Callable[[object], bool]] = {
    "max_attempts": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
    "initial_delay": lambda v: _number(v, 0) and float(v) <= 20.0,  # type: ignore[arg-type]
    "max_delay": lambda v: _number(v, 0) and float(v) >= 0.5,  # type: ignore[arg-type]
    "multiplier": lambda v: _number(v, 1),
    "jitter": lambda v: _number(v, 0) and float(v) <= 1.0,  # type: ignore[arg-type]
    "deadline": lambda v: v is None or _number(v, 0, strict=True),
    "max_retry_after": lambda v: _number(v, 0),
    "retry_statuses": lambda v: _members(v, _status),
    "idempotent_methods": lambda v: _members(v, _method),
    "respect_retry_after": lambda v: isinstance(v, bool),
}
POLL_FIELDS: dict[str, Callable[[object], bool]] = {
    "first_delay": lambda v: _number(v, 0),
    "interval": lambda v: _number(v, 0.001) and float(v) <= 10.0,  # type: ignore[arg-type]
    "multiplier": lambda v: _number(v, 1),
    "max_interval": lambda v: _number(v, 0.001) and float(v) >= 1.0,  # type: ignore[arg-type]
    "jitter": lambda v: _number(v, 0) and float(v) < 1.0,  # type: ignore[arg-type]
    "timeout": lambda v: v is None or _number(v, 0, strict=True),
}


def _outcome(make: Callable[[], object], field: str) -> object:
    """The constructed object, or the validation error (checked to name ``field``)."""
    error: ValueError | TypeError
    try:
        return make()
    except (ValueError, TypeError) as exc:
        error = exc
    assert field in str(error), f"{type(error).__name__} does not name {field!r}: {error}"
    return error


def _valid_value(policy: object, field: str, value: Any) -> None:
    stored = getattr(policy, field)
    if field in ("retry_statuses", "idempotent_methods"):
        assert isinstance(stored, frozenset)
        expected = {m.upper() for m in value} if field == "idempotent_methods" else set(value)
        assert stored == expected
    elif isinstance(stored, float):
        assert math.isfinite(stored)
        assert stored == float(value)
    else:
        assert stored == value


class Counting(httpx.BaseTransport):
    def __init__(self) -> None:
        self.sent = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent += 1
        return httpx.Response(200, request=request)


@given(field=st.sampled_from(sorted(RETRY_FIELDS)), value=ANY_VALUE)
def test_retry_policy_constructs_or_names_the_field(field: str, value: object) -> None:
    valid = RETRY_FIELDS[field](value)
    change: dict[str, Any] = {field: value}
    made = [
        _outcome(lambda: RetryPolicy(**change), field),
        _outcome(lambda: RetryPolicy().replace(**change), field),
        _outcome(lambda: RetryPolicy.coerce(change, base=RetryPolicy()), field),
    ]
    for outcome in made:
        if valid:
            assert isinstance(outcome, RetryPolicy), outcome
            _valid_value(outcome, field, value)
        else:
            assert isinstance(outcome, ValueError | TypeError), outcome
    # The per-request override: rejected before anything is sent.
    inner = Counting()
    with httpx.Client(transport=xretry.RetryTransport(inner)) as client:
        sent = _outcome(
            lambda: client.get("https://api.x.ai/v1/models", extensions={"xretry": change}),
            field,
        )
    assert isinstance(sent, httpx.Response) if valid else isinstance(sent, ValueError | TypeError)
    assert inner.sent == (1 if valid else 0)


@given(field=st.sampled_from(sorted(POLL_FIELDS)), value=ANY_VALUE)
def test_poll_policy_constructs_or_names_the_field(field: str, value: object) -> None:
    valid = POLL_FIELDS[field](value)
    change: dict[str, Any] = {field: value}
    for outcome in (
        _outcome(lambda: PollPolicy(**change), field),
        _outcome(lambda: PollPolicy().replace(**change), field),
    ):
        if valid:
            assert isinstance(outcome, PollPolicy), outcome
            _valid_value(outcome, field, value)
        else:
            assert isinstance(outcome, ValueError | TypeError), outcome


@given(policy=policies())
def test_every_valid_policy_survives_replace_and_coerce_unchanged(policy: RetryPolicy) -> None:
    fields = {name: getattr(policy, name) for name in RETRY_FIELDS}
    assert RetryPolicy(**fields) == policy
    assert policy.replace(**fields) == policy
    assert RetryPolicy.coerce(fields, base=RetryPolicy()) == policy


HUGE = 10**400  # an int no float can hold


@pytest.mark.parametrize(
    ("cls", "field"),
    [
        *((RetryPolicy, f) for f in ("initial_delay", "max_delay", "multiplier", "jitter")),
        *((RetryPolicy, f) for f in ("deadline", "max_retry_after")),
        *((PollPolicy, f) for f in ("first_delay", "interval", "multiplier", "max_interval")),
        *((PollPolicy, f) for f in ("jitter", "timeout")),
    ],
    ids=lambda x: x if isinstance(x, str) else x.__name__,
)
def test_an_int_too_large_for_a_float_is_a_named_error(cls: type[Any], field: str) -> None:
    with pytest.raises((ValueError, TypeError), match=field):
        cls(**{field: HUGE})


@pytest.mark.parametrize("statuses", [[[429]], [{503}], [{"status": 503}]], ids=repr)
def test_an_unhashable_status_is_a_named_error(statuses: list[Any]) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        RetryPolicy(retry_statuses=cast(Any, statuses))
    assert "retry_statuses" in str(info.value)


# -- exceptions: a verdict for every shape, and the decorator re-raises the original ---------------

HTTPX_ERRORS = [
    getattr(lib, name)
    for lib in (httpx, httpx2)
    for name in [
        *("ConnectError", "ConnectTimeout", "PoolTimeout", "ReadTimeout", "ReadError"),
        *("WriteError", "RemoteProtocolError", "LocalProtocolError", "ProxyError"),
        "UnsupportedProtocol",
    ]
]
BUILTIN_ERRORS = [
    ConnectionResetError,
    ConnectionRefusedError,
    TimeoutError,
    OSError,
    ValueError,
    KeyError,
    RuntimeError,
    RecursionError,
    xretry.XRetryError,
]


class GrpcLike(Exception):
    """The xai-sdk's errors have ``code()`` and ``details()``; these return anything at all."""

    def __init__(self, code: object, details: object) -> None:
        super().__init__("grpc")
        self._code, self._details = code, details

    def code(self) -> object:
        if isinstance(self._code, BaseException):
            raise self._code
        return self._code

    def details(self) -> object:
        return self._details


class StatusName:
    def __init__(self, name: object) -> None:
        self.name = name


GRPC_CODES = st.sampled_from(
    ["UNAVAILABLE", "RESOURCE_EXHAUSTED", "UNAUTHENTICATED", "NOT_FOUND", "OK", "", "nope"]
)


@st.composite
def exceptions(draw: st.DrawFn) -> BaseException:
    """An exception from httpx, httpx2, the standard library or a gRPC-like SDK, maybe chained,
    maybe carrying a real response, maybe with a cause cycle."""
    kind = draw(st.sampled_from(["httpx", "builtin", "grpc", "status"]))
    exc: BaseException
    if kind == "httpx":
        exc = draw(st.sampled_from(HTTPX_ERRORS))(draw(st.text(max_size=20)))
    elif kind == "builtin":
        exc = draw(st.sampled_from(BUILTIN_ERRORS))(draw(st.text(max_size=20)))
    elif kind == "grpc":
        code = draw(
            GRPC_CODES.map(StatusName)
            | st.builds(StatusName, st.integers() | st.none())
            | st.just(RuntimeError("code() failed"))
            | st.integers()
        )
        exc = GrpcLike(code, draw(st.text(max_size=40) | st.none() | st.integers()))
    else:
        request = httpx.Request(draw(st.sampled_from(["GET", "POST"])), f"https://h{CHAT}")
        response = httpx.Response(
            draw(st.integers(min_value=100, max_value=999)),
            headers=draw(HINT_HEADERS.map(lambda h: [(k, v.encode()) for k, v in h.items()])),
            content=draw(st.binary(max_size=64)),
            request=request,
        )
        exc = httpx.HTTPStatusError("status", request=request, response=response)
    if draw(st.booleans()):
        exc.__cause__ = draw(st.sampled_from(HTTPX_ERRORS + BUILTIN_ERRORS))("cause")
        if draw(st.booleans()):
            exc.__cause__.__cause__ = exc  # a cycle: whoever walks causes must stop
    return exc


@given(exc=exceptions(), method=st.sampled_from(["GET", "POST", "PATCH"]), policy=policies())
def test_classify_exception_is_total(exc: BaseException, method: str, policy: RetryPolicy) -> None:
    decision = classify_exception(exc, method=method, policy=policy)
    assert isinstance(decision.verdict, Verdict)
    if decision.verdict not in (Verdict.RETRY, Verdict.FATAL):  # an HTTPStatusError carrying a 2xx
        assert isinstance(exc, httpx.HTTPStatusError)
        assert exc.response.status_code < 400
    assert decision.reason.strip()
    assert_wait(decision.delay)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(exc=exceptions(), attempts=st.integers(min_value=1, max_value=4))
def test_the_decorator_reraises_the_original_exception(exc: BaseException, attempts: int) -> None:
    calls = 0

    @xretry.retry(policy=RetryPolicy(max_attempts=attempts))
    def failing() -> None:
        nonlocal calls
        calls += 1
        raise exc

    with no_wait(), pytest.raises(type(exc)) as info:
        failing()
    assert info.value is exc
    assert 1 <= calls <= attempts


class ResponseWithoutHeaders:
    """What some SDKs and test doubles attach as ``exc.response``: a status, no headers."""

    status_code = 503


class NoneHeaders:
    status_code = 429
    headers = None


class SDKError(Exception):
    def __init__(self, response: object) -> None:
        super().__init__("the SDK failed")
        self.response = response


class ResponsePropertyFails(Exception):
    @property
    def response(self) -> object:
        raise RuntimeError("no response was received")


@pytest.mark.parametrize(
    "make",
    [
        lambda: SDKError(ResponseWithoutHeaders()),
        lambda: SDKError(NoneHeaders()),
        ResponsePropertyFails,
    ],
    ids=["response-without-headers", "headers-none", "response-property-raises"],
)
def test_the_decorator_reraises_exceptions_with_odd_responses(
    make: Callable[[], Exception],
) -> None:
    exc = make()

    @xretry.retry
    def failing() -> None:
        raise exc

    with no_wait(), pytest.raises(type(exc)) as info:
        failing()
    assert info.value is exc
