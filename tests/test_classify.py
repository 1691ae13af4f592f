"""The classifier against xAI's status table (shared/seed/xai-debugging-errors.txt)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest
from hypothesis import given
from hypothesis import strategies as st

import xretry
from xretry import Decision, RetryPolicy, Verdict
from xretry._classify import classify_exception, classify_response
from xretry._headers import MAX_HINT_SECONDS

NOW = 1_700_000_000.0
API = "https://api.x.ai/v1"
CHAT = "/v1/chat/completions"
MODELS = "/v1/models"
DEFERRED = "/v1/chat/deferred-completion/0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"

WRONG_KEY_BODY = (
    b'{"code": "Client specified an invalid argument", "error": "Incorrect API key provided: '
    b'ba***na. You can obtain an API key from https://console.x.ai."}'
)
CREDITS_BODY = (
    b'{"code": "Some resource has been exhausted", "error": "Your team abc has either used all '
    b"available credits or reached its monthly spending limit. To continue making API requests, "
    b'please purchase more credits or raise your spending limit."}'
)
RATE_LIMIT_BODY = b'{"code": "Some resource has been exhausted", "error": "Too many requests"}'

POST_IDEMPOTENT = RetryPolicy(idempotent_methods=frozenset({"GET", "PUT", "DELETE", "POST"}))


def decide(
    status: int,
    *,
    method: str = "POST",
    path: str = CHAT,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    policy: RetryPolicy | None = None,
    replayable: bool = True,
) -> Decision:
    """classify_response with a fixed clock; every Decision must explain itself."""
    decision = classify_response(
        method,
        path,
        status,
        headers or {},
        body,
        policy=policy or RetryPolicy(),
        now=NOW,
        replayable=replayable,
    )
    assert decision.reason.strip()
    return decision


def http_date(offset: float) -> str:
    return format_datetime(datetime.fromtimestamp(NOW + offset, UTC), usegmt=True)


# --- 4xx rows of the seed table ------------------------------------------------------------

FATAL_ROWS = [
    pytest.param(400, None, id="400-bad-request"),
    pytest.param(400, WRONG_KEY_BODY, id="400-incorrect-api-key"),
    pytest.param(401, None, id="401-unauthorized"),
    pytest.param(403, None, id="403-forbidden"),
    pytest.param(404, None, id="404-not-found"),
    pytest.param(405, None, id="405-method-not-allowed"),
    pytest.param(415, None, id="415-unsupported-media-type"),
    pytest.param(422, None, id="422-unprocessable-entity"),
]


@pytest.mark.parametrize(("method", "path"), [("GET", MODELS), ("POST", CHAT)])
@pytest.mark.parametrize(("status", "body"), FATAL_ROWS)
def test_client_error_rows_are_fatal(
    status: int, body: bytes | None, method: str, path: str
) -> None:
    decision = decide(status, method=method, path=path, body=body, headers={"retry-after": "1"})
    assert decision.verdict is Verdict.FATAL
    assert decision.delay is None
    assert decision.reason.startswith(str(status))


@pytest.mark.parametrize(
    ("headers", "delay"),
    [
        pytest.param({"retry-after-ms": "2500"}, 2.5, id="retry-after-ms"),
        pytest.param({"retry-after": "3"}, 3.0, id="retry-after-seconds"),
        pytest.param({"retry-after": http_date(30)}, 30.0, id="retry-after-date"),
        pytest.param(
            {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"},
            1.0,
            id="x-ratelimit-reset-requests",
        ),
        pytest.param({"x-ratelimit-reset-tokens": "6m0s"}, 360.0, id="x-ratelimit-reset-tokens"),
        pytest.param({}, None, id="no-hint"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_429_rate_limit_retries_with_the_server_hint(
    headers: dict[str, str], delay: float | None, method: str
) -> None:
    decision = decide(429, method=method, headers=headers, body=RATE_LIMIT_BODY)
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == delay


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(CREDITS_BODY, id="xai-spent-credits"),
        pytest.param(b'{"error": {"code": "insufficient_quota"}}', id="openai-insufficient-quota"),
    ],
)
def test_429_quota_exhausted_is_fatal_even_if_the_server_says_retry(body: bytes) -> None:
    decision = decide(429, headers={"retry-after": "1", "x-should-retry": "true"}, body=body)
    assert decision.verdict is Verdict.FATAL
    assert "credits" in decision.reason


def test_429_with_unread_body_is_a_rate_limit() -> None:
    assert decide(429, body=None).verdict is Verdict.RETRY


# --- 5xx, 408 and x-should-retry -----------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("status", [500, 502, 503, 504, 529, 408])
def test_transient_statuses_retry(status: int, method: str) -> None:
    decision = decide(status, method=method, headers={"retry-after": "2"})
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == 2.0


@pytest.mark.parametrize("status", [501, 505])
def test_permanent_server_errors_are_fatal(status: int) -> None:
    assert decide(status).verdict is Verdict.FATAL


def test_x_should_retry_true_makes_a_400_retryable() -> None:
    decision = decide(400, headers={"x-should-retry": "true", "retry-after": "1"})
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == 1.0
    assert "x-should-retry" in decision.reason


def test_x_should_retry_false_makes_a_503_fatal() -> None:
    decision = decide(503, headers={"x-should-retry": "false"})
    assert decision.verdict is Verdict.FATAL
    assert "x-should-retry" in decision.reason


@pytest.mark.parametrize(("status", "verdict"), [(400, Verdict.FATAL), (503, Verdict.RETRY)])
def test_unparseable_x_should_retry_defers_to_the_status(status: int, verdict: Verdict) -> None:
    assert decide(status, headers={"x-should-retry": "maybe"}).verdict is verdict


def test_retry_statuses_come_from_the_policy() -> None:
    policy = RetryPolicy(retry_statuses=frozenset({409}))
    assert decide(409, policy=policy).verdict is Verdict.RETRY
    assert decide(429, policy=policy, body=RATE_LIMIT_BODY).verdict is Verdict.FATAL


# --- 2xx and 3xx ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        DEFERRED,
        "/proxy/xai/v1/chat/deferred-completion/abc",
        "/chat/deferred-completion/abc",
        DEFERRED + "/",
    ],
    ids=["v1", "proxy-prefix", "no-prefix", "trailing-slash"],
)
def test_202_on_the_deferred_poll_endpoint_polls(path: str) -> None:
    decision = decide(202, method="GET", path=path)
    assert decision.verdict is Verdict.POLL
    assert decision.delay is None


def test_poll_carries_the_server_hint() -> None:
    assert decide(202, method="GET", path=DEFERRED, headers={"retry-after": "5"}).delay == 5.0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", DEFERRED),
        ("GET", CHAT),
        ("POST", CHAT),
        ("GET", "/v1/videos/abc"),
        ("GET", "/v1/chat/deferred-completion"),
        ("GET", "/v1/chat/deferred-completion/"),
        ("GET", DEFERRED + "/extra"),
    ],
)
def test_202_elsewhere_is_success(method: str, path: str) -> None:
    assert decide(202, method=method, path=path).verdict is Verdict.SUCCESS


@pytest.mark.parametrize(("method", "path"), [("POST", CHAT), ("GET", DEFERRED)])
@pytest.mark.parametrize("status", [100, 200, 201, 204, 301, 302, 304, 307])
def test_other_success_and_redirect_statuses(status: int, method: str, path: str) -> None:
    headers = {"x-should-retry": "true", "retry-after": "1"}
    decision = decide(status, method=method, path=path, headers=headers)
    assert decision.verdict is Verdict.SUCCESS
    assert decision.delay is None


# --- policy switches -------------------------------------------------------------------------


def test_respect_retry_after_false_drops_the_hint() -> None:
    policy = RetryPolicy(respect_retry_after=False)
    hints = {"retry-after-ms": "100", "retry-after": "3", "x-ratelimit-reset-tokens": "1s"}
    retry = decide(429, headers=hints, policy=policy)
    assert (retry.verdict, retry.delay) == (Verdict.RETRY, None)
    poll = decide(202, method="GET", path=DEFERRED, headers=hints, policy=policy)
    assert (poll.verdict, poll.delay) == (Verdict.POLL, None)


@pytest.mark.parametrize("status", [429, 503])
def test_not_replayable_turns_retry_into_fatal(status: int) -> None:
    decision = decide(status, replayable=False)
    assert decision.verdict is Verdict.FATAL
    assert "replayable" in decision.reason


@pytest.mark.parametrize(("status", "verdict"), [(200, Verdict.SUCCESS), (400, Verdict.FATAL)])
def test_not_replayable_leaves_other_verdicts_alone(status: int, verdict: Verdict) -> None:
    assert decide(status, replayable=False).verdict is verdict


# --- exceptions ------------------------------------------------------------------------------


def transport_errors(names: str, *extra: BaseException) -> list[Any]:
    """One instance of each named exception class from httpx and from httpx2, plus ``extra``."""
    errors = [getattr(lib, name)("x") for lib in (httpx, httpx2) for name in names.split()]
    return [
        pytest.param(e, id=f"{type(e).__module__}.{type(e).__name__}") for e in (*errors, *extra)
    ]


UNSENT = transport_errors(
    "ConnectError ConnectTimeout PoolTimeout WriteError WriteTimeout ProxyError",
    ConnectionRefusedError(),
)
SENT = transport_errors(
    "ReadTimeout ReadError RemoteProtocolError", ConnectionResetError(), TimeoutError()
)
NOT_TRANSPORT = transport_errors(
    "LocalProtocolError UnsupportedProtocol",
    ValueError("x"),
    KeyError("x"),
    asyncio.CancelledError(),
    KeyboardInterrupt(),
)


def decide_exc(
    exc: BaseException,
    method: str,
    *,
    policy: RetryPolicy | None = None,
    replayable: bool = True,
) -> Decision:
    policy = policy or RetryPolicy()
    decision = classify_exception(exc, method=method, policy=policy, replayable=replayable)
    assert decision.reason.strip()
    assert decision.delay is None
    return decision


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "POST", "PATCH"])
@pytest.mark.parametrize("exc", UNSENT)
def test_unsent_failures_retry_for_every_method(exc: BaseException, method: str) -> None:
    assert decide_exc(exc, method).verdict is Verdict.RETRY


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "get"])
@pytest.mark.parametrize("exc", SENT)
def test_sent_failures_retry_idempotent_methods(exc: BaseException, method: str) -> None:
    assert decide_exc(exc, method).verdict is Verdict.RETRY


@pytest.mark.parametrize("method", ["POST", "PATCH", "post"])
@pytest.mark.parametrize("exc", SENT)
def test_sent_failures_do_not_resend_a_post_by_default(exc: BaseException, method: str) -> None:
    decision = decide_exc(exc, method)
    assert decision.verdict is Verdict.FATAL
    assert "idempotent_methods" in decision.reason


@pytest.mark.parametrize("exc", SENT)
def test_sent_failures_resend_a_post_when_the_policy_allows(exc: BaseException) -> None:
    assert decide_exc(exc, "POST", policy=POST_IDEMPOTENT).verdict is Verdict.RETRY


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("exc", NOT_TRANSPORT)
def test_non_transport_exceptions_are_fatal(exc: BaseException, method: str) -> None:
    assert decide_exc(exc, method, policy=POST_IDEMPOTENT).verdict is Verdict.FATAL


@pytest.mark.parametrize("exc", [httpx.ConnectError("x"), httpx.ReadTimeout("x")])
def test_not_replayable_exceptions_are_fatal(exc: BaseException) -> None:
    decision = decide_exc(exc, "GET", replayable=False)
    assert decision.verdict is Verdict.FATAL
    assert "replayable" in decision.reason


def test_exception_subclasses_are_classified_by_their_base() -> None:
    class MyConnectError(httpx.ConnectError):
        pass

    class MyReadTimeout(httpx2.ReadTimeout):
        pass

    assert decide_exc(MyConnectError("x"), "POST").verdict is Verdict.RETRY
    assert decide_exc(MyReadTimeout("x"), "POST").verdict is Verdict.FATAL
    assert decide_exc(MyReadTimeout("x"), "GET").verdict is Verdict.RETRY


# --- the public xretry.classify ------------------------------------------------------------


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_classify_reads_method_and_path_from_the_request(lib: ModuleType) -> None:
    deferred = lib.Request("GET", f"{API}/chat/deferred-completion/abc")
    assert xretry.classify(lib.Response(202, request=deferred)).verdict is Verdict.POLL
    chat = lib.Request("POST", f"{API}/chat/completions")
    assert xretry.classify(lib.Response(202, request=chat)).verdict is Verdict.SUCCESS
    limited = lib.Response(429, headers={"Retry-After": "2"}, request=chat)
    assert xretry.classify(limited) == Decision(Verdict.RETRY, "429 Too Many Requests", 2.0)
    assert xretry.classify(lib.Response(401, request=chat)).verdict is Verdict.FATAL


@pytest.mark.parametrize("lib", [httpx, httpx2], ids=["httpx", "httpx2"])
def test_classify_uses_the_body_only_once_read(lib: ModuleType) -> None:
    request = lib.Request("POST", f"{API}/chat/completions")
    read = lib.Response(429, content=CREDITS_BODY, request=request)
    assert xretry.classify(read).verdict is Verdict.FATAL
    unread = lib.Response(429, stream=lib.ByteStream(CREDITS_BODY), request=request)
    assert xretry.classify(unread).verdict is Verdict.RETRY
    unread.read()
    assert xretry.classify(unread).verdict is Verdict.FATAL


def test_classify_method_override_and_clock() -> None:
    request = httpx.Request("GET", f"{API}/chat/deferred-completion/abc")
    response = httpx.Response(202, request=request, headers={"retry-after": http_date(8)})
    assert xretry.classify(response, now=NOW) == Decision(
        Verdict.POLL, "202 Accepted: deferred completion not ready yet", 8.0
    )
    assert xretry.classify(response, method="POST").verdict is Verdict.SUCCESS
    # No request attached: no method or path to go on, so no POLL.
    assert xretry.classify(httpx.Response(503)).verdict is Verdict.RETRY
    assert xretry.classify(httpx.Response(202)).verdict is Verdict.SUCCESS


def test_classify_exceptions() -> None:
    post = httpx.Request("POST", f"{API}/chat/completions")
    get = httpx2.Request("GET", f"{API}/models")
    assert xretry.classify(httpx.ReadTimeout("x", request=post)).verdict is Verdict.FATAL
    assert xretry.classify(httpx2.ReadTimeout("x", request=get)).verdict is Verdict.RETRY
    assert xretry.classify(httpx.ConnectError("x", request=post)).verdict is Verdict.RETRY
    assert xretry.classify(httpx.ReadTimeout("x")).verdict is Verdict.RETRY  # no request: GET
    assert xretry.classify(ConnectionResetError(), method="POST").verdict is Verdict.FATAL
    allowed = xretry.classify(httpx.ReadTimeout("x", request=post), policy=POST_IDEMPOTENT)
    assert allowed.verdict is Verdict.RETRY
    assert xretry.classify(ValueError("x")).verdict is Verdict.FATAL


# --- property ------------------------------------------------------------------------------

RATE_LIMIT_NAMES = [
    f"x-ratelimit-{p}-{k}" for p in ("reset", "remaining") for k in ("requests", "tokens")
]
HEADER_NAMES = ["retry-after", "retry-after-ms", "x-should-retry", *RATE_LIMIT_NAMES]


@given(
    status=st.integers(min_value=100, max_value=599),
    headers=st.dictionaries(st.sampled_from(HEADER_NAMES), st.text()),
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]),
    path=st.sampled_from([CHAT, MODELS, DEFERRED]) | st.text(),
    body=st.none() | st.binary() | st.just(CREDITS_BODY),
    replayable=st.booleans(),
)
def test_classify_response_is_total(
    status: int,
    headers: dict[str, str],
    method: str,
    path: str,
    body: bytes | None,
    replayable: bool,
) -> None:
    decision = decide(
        status, method=method, path=path, headers=headers, body=body, replayable=replayable
    )
    assert decision.delay is None or (
        math.isfinite(decision.delay) and 0.0 <= decision.delay <= MAX_HINT_SECONDS
    )
    if decision.verdict is Verdict.POLL:
        assert (status, method) == (202, "GET")
    if status < 400:
        assert decision.verdict in (Verdict.SUCCESS, Verdict.POLL)
    else:
        assert decision.verdict in (Verdict.RETRY, Verdict.FATAL)


def test_ratelimit_budget_headers_are_no_wait_on_a_503() -> None:
    """OpenAI-style servers send x-ratelimit-* on every response; a 503 must not wait 120 s."""
    headers = {"x-ratelimit-reset-requests": "2m0s", "x-ratelimit-remaining-requests": "0"}
    decision = classify_response("POST", "/v1/chat/completions", 503, headers)
    assert (decision.verdict, decision.delay) == (Verdict.RETRY, None)
    decision = classify_response("POST", "/v1/chat/completions", 429, headers)
    assert decision.delay == 120.0


@pytest.mark.parametrize("value", ["0", "Thu, 01 Jan 1970 00:00:00 GMT"])
def test_a_zero_wait_is_no_hint(value: str) -> None:
    """Used as is, 0 s would burn every attempt at once: backoff decides instead."""
    decision = classify_response("GET", "/v1/models", 429, {"retry-after": value}, now=1e9)
    assert (decision.verdict, decision.delay) == (Verdict.RETRY, None)


def test_quota_phrases_are_anchored() -> None:
    body = b'{"error": "Rate limit reached. Buy credits to raise it."}'
    assert classify_response("POST", "/v1/chat/completions", 429, {}, body).verdict is Verdict.RETRY
