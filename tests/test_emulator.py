"""The emulator in-process, through ``httpx.ASGITransport``: endpoints, auth, request errors, rate
limits, stats and scenarios. A fake clock drives the token bucket and deferred readiness; nothing
sleeps. Faults are in ``test_emulator_faults.py``, real sockets in ``test_emulator_server.py``.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import Any

import httpx
import pytest

import xretry
from xretry import Verdict
from xretry.emulator import EmulatorApp, Scenario

from .conftest import FakeClock

KEY = "xai-test-key-0123456789abcdef"
CHAT: dict[str, Any] = {"model": "grok-4", "messages": [{"role": "user", "content": "hello"}]}
DEFERRED: dict[str, Any] = {**CHAT, "deferred": True}
POLL = "/chat/deferred-completion/"


async def call(
    app: EmulatorApp,
    method: str,
    path: str,
    *,
    key: str | None = KEY,
    json: Any = None,
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request to ``app`` (relative paths are under /v1), with ``Bearer key`` unless None."""
    sent = {} if key is None else {"authorization": f"Bearer {key}"}
    sent.update(headers or {})
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://emulator/v1/") as client:
        return await client.request(
            method, path.lstrip("/"), json=json, content=content, headers=sent
        )


async def chat(app: EmulatorApp, *, key: str | None = KEY, **extra: Any) -> httpx.Response:
    return await call(app, "POST", "/chat/completions", key=key, json={**CHAT, **extra})


def error_class(response: httpx.Response) -> type[Exception]:
    with pytest.raises(xretry.APIStatusError) as info:
        xretry.raise_for_status(response)
    return type(info.value)


def assert_xai_error(response: httpx.Response, status: int, cls: type[Exception]) -> str:
    """The status, xAI's ``{"code": str, "error": str}`` body, and xretry's typed error class."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"code", "error"}
    assert isinstance(body["code"], str)
    assert isinstance(body["error"], str)
    assert body["code"]
    assert body["error"]
    assert error_class(response) is cls
    return str(body["error"])


# -- endpoints ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_chat_completion_answers_like_xai() -> None:
    response = await chat(EmulatorApp(), model="grok-3")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "grok-3"
    message = body["choices"][0]["message"]
    assert message["role"] == "assistant"
    assert "hello" in message["content"]
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


@pytest.mark.anyio
async def test_deferred_completion_202_until_ready_then_200_once_then_404(
    clock: FakeClock,
) -> None:
    app = EmulatorApp(Scenario(ready_after=(2.0, 2.0)), clock=clock)
    submitted = await call(app, "POST", "/chat/completions", json={**DEFERRED, "model": "grok-3"})
    assert submitted.status_code == 200
    assert set(submitted.json()) == {"request_id"}
    request_id = submitted.json()["request_id"]
    uuid.UUID(request_id)

    pending = await call(app, "GET", POLL + request_id)
    assert pending.status_code == 202
    assert pending.content == b""
    clock.sleep(1.99)
    assert (await call(app, "GET", POLL + request_id)).status_code == 202

    clock.sleep(0.01)
    ready = await call(app, "GET", POLL + request_id)
    assert ready.status_code == 200
    assert ready.json()["object"] == "chat.completion"
    assert ready.json()["model"] == "grok-3"
    assert "hello" in ready.json()["choices"][0]["message"]["content"]

    gone = await call(app, "GET", POLL + request_id)
    assert request_id in assert_xai_error(gone, 404, xretry.NotFoundError)
    stats = app.stats()
    assert stats["polls"] == 4
    assert stats["polls_pending"] == 2
    assert stats["deferred_submitted"] == stats["deferred_delivered"] == 1


@pytest.mark.anyio
async def test_deferred_ready_time_is_spread_over_ready_after(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(ready_after=(1.0, 3.0), seed=3), clock=clock)
    replies = [await call(app, "POST", "/chat/completions", json=DEFERRED) for _ in range(8)]
    ids = [r.json()["request_id"] for r in replies]
    assert len(set(ids)) == 8

    async def poll_all() -> list[int]:
        return [(await call(app, "GET", POLL + i)).status_code for i in ids]

    clock.sleep(0.999)
    assert set(await poll_all()) == {202}
    clock.sleep(1.001)
    halfway = await poll_all()
    assert set(halfway) == {200, 202}  # uniform over [1, 3]: some ready at 2 s, some not
    clock.sleep(1.0)
    assert await poll_all() == [404 if status == 200 else 200 for status in halfway]


@pytest.mark.anyio
async def test_deferred_unknown_and_expired_ids_are_404(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(ready_after=(2.0, 2.0), expire_after=10.0), clock=clock)
    first, second = [
        (await call(app, "POST", "/chat/completions", json=DEFERRED)).json()["request_id"]
        for _ in range(2)
    ]
    clock.sleep(11.5)  # 9.5 s after ready: still there
    assert (await call(app, "GET", POLL + first)).status_code == 200
    clock.sleep(0.5)  # 10 s after ready: discarded, never delivered
    assert_xai_error(await call(app, "GET", POLL + second), 404, xretry.NotFoundError)
    unknown = await call(app, "GET", POLL + str(uuid.uuid4()))
    assert_xai_error(unknown, 404, xretry.NotFoundError)
    assert app.stats()["deferred_delivered"] == 1


@pytest.mark.anyio
async def test_models_list_and_one_model() -> None:
    app = EmulatorApp(Scenario(models=("grok-a", "grok-b")))
    listing = await call(app, "GET", "/models")
    assert listing.status_code == 200
    assert listing.json()["object"] == "list"
    assert [m["id"] for m in listing.json()["data"]] == ["grok-a", "grok-b"]
    one = await call(app, "GET", "/models/grok-b")
    assert one.status_code == 200
    assert one.json()["id"] == "grok-b"
    assert one.json()["object"] == "model"
    assert_xai_error(await call(app, "GET", "/models/grok-z"), 404, xretry.NotFoundError)


@pytest.mark.anyio
@pytest.mark.parametrize("key", [KEY, "short-k", "abcdefghi"])
async def test_api_key_endpoint_never_echoes_the_key(key: str) -> None:
    response = await call(EmulatorApp(), "GET", "/api-key", key=key)
    assert response.status_code == 200
    body = response.json()
    assert "***" in body["redacted_api_key"]
    assert key not in response.text
    assert body["api_key_blocked"] is False


# -- auth -----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer   ", "Basic " + KEY, KEY, "Token " + KEY]
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/chat/completions"), ("GET", "/models"), ("GET", "/api-key"), ("GET", POLL + "x")],
)
async def test_missing_or_malformed_authorization_is_401(
    authorization: str | None, method: str, path: str
) -> None:
    headers = {} if authorization is None else {"authorization": authorization}
    body = CHAT if method == "POST" else None
    response = await call(EmulatorApp(), method, path, key=None, json=body, headers=headers)
    assert_xai_error(response, 401, xretry.AuthenticationError)


@pytest.mark.anyio
@pytest.mark.parametrize("wrong", ["xai-WRONG-9f8e7d6c5b4a3", "abcde", "abc"])
async def test_wrong_key_is_400_incorrect_api_key_without_the_key(wrong: str) -> None:
    app = EmulatorApp(Scenario(api_keys=frozenset({KEY})))
    assert (await chat(app)).status_code == 200
    response = await chat(app, key=wrong)
    message = assert_xai_error(response, 400, xretry.InvalidAPIKeyError)
    assert message.startswith("Incorrect API key provided: ")
    assert wrong not in response.text
    assert (await call(app, "GET", "/models", key=wrong)).status_code == 400


@pytest.mark.anyio
async def test_blocked_key_is_403() -> None:
    app = EmulatorApp(Scenario(blocked_keys=frozenset({"blocked-key-1"})))
    assert_xai_error(await chat(app, key="blocked-key-1"), 403, xretry.PermissionDeniedError)
    assert (await chat(app, key="other-key-22")).status_code == 200


# -- request errors -------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b"", {"content-type": "application/json"}),
        (b"", {}),
        (json.dumps(CHAT).encode(), {}),
        (json.dumps(CHAT).encode(), {"content-type": "text/plain"}),
    ],
    ids=["empty-body", "empty-no-type", "no-content-type", "text-plain"],
)
async def test_empty_body_or_non_json_content_type_is_415(
    content: bytes, headers: dict[str, str]
) -> None:
    response = await call(
        EmulatorApp(), "POST", "/chat/completions", content=content, headers=headers
    )
    assert_xai_error(response, 415, xretry.UnsupportedMediaTypeError)


@pytest.mark.anyio
async def test_json_content_type_with_charset_is_accepted() -> None:
    headers = {"content-type": "Application/JSON; charset=utf-8"}
    content = json.dumps(CHAT).encode()
    response = await call(
        EmulatorApp(), "POST", "/chat/completions", content=content, headers=headers
    )
    assert response.status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("content", [b"{not json", b'{"model": "grok-4",', b"\xff\xfe"])
async def test_invalid_json_is_400(content: bytes) -> None:
    headers = {"content-type": "application/json"}
    response = await call(
        EmulatorApp(), "POST", "/chat/completions", content=content, headers=headers
    )
    assert_xai_error(response, 400, xretry.BadRequestError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {**CHAT, "messages": "hello"},
        {**CHAT, "messages": []},
        {**CHAT, "messages": ["hello"]},
        {**CHAT, "model": 4},
        {"messages": CHAT["messages"]},
        {**CHAT, "temperature": "hot"},
        {**CHAT, "temperature": True},
        {**CHAT, "deferred": "yes"},
        [CHAT],
    ],
)
async def test_malformed_field_is_422(body: Any) -> None:
    response = await call(EmulatorApp(), "POST", "/chat/completions", json=body)
    assert_xai_error(response, 422, xretry.UnprocessableEntityError)


@pytest.mark.anyio
async def test_unknown_model_and_unknown_path_are_404() -> None:
    app = EmulatorApp()
    message = assert_xai_error(await chat(app, model="grok-99"), 404, xretry.NotFoundError)
    assert "grok-99" in message
    for path in ("/chat/complete", "/v2/models", "/model", POLL):
        assert_xai_error(await call(app, "GET", path), 404, xretry.NotFoundError)
    assert_xai_error(await call(app, "GET", "http://emulator/nope"), 404, xretry.NotFoundError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/chat/completions"),
        ("PUT", "/chat/completions"),
        ("POST", "/models"),
        ("DELETE", "/api-key"),
        ("POST", POLL + "abc"),
    ],
)
async def test_wrong_method_is_405(method: str, path: str) -> None:
    response = await call(EmulatorApp(), method, path, json=CHAT if method != "GET" else None)
    assert_xai_error(response, 405, xretry.MethodNotAllowedError)


# -- rate limits ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_token_bucket_per_key_bursts_then_429_then_refills(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=2.0, burst=3), clock=clock)
    assert [(await chat(app)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert_xai_error(await chat(app), 429, xretry.RateLimitError)
    assert [(await chat(app, key="second-key")).status_code for _ in range(4)] == [200] * 3 + [429]
    assert (await call(app, "GET", "/models")).status_code == 200  # not an inference endpoint
    clock.sleep(0.5)  # one token at 2/s
    assert [(await chat(app)).status_code for _ in range(2)] == [200, 429]
    clock.sleep(60.0)  # never more than the burst saved up
    assert [(await chat(app)).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert app.stats()["rate_limited"] == 5


@pytest.mark.anyio
async def test_deferred_polls_share_the_bucket(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=1.0, burst=2, ready_after=(0.0, 0.0)), clock=clock)
    request_id = (await call(app, "POST", "/chat/completions", json=DEFERRED)).json()["request_id"]
    assert (await call(app, "GET", POLL + request_id)).status_code == 200
    assert_xai_error(await call(app, "GET", POLL + request_id), 429, xretry.RateLimitError)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("hints", "expected"),
    [
        ("none", set()),
        ("retry-after", {"retry-after"}),
        (
            "full",
            {
                "retry-after",
                "retry-after-ms",
                "x-ratelimit-limit-requests",
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            },
        ),
    ],
)
async def test_hint_modes(hints: Any, expected: set[str], clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=4.0, burst=1, hints=hints), clock=clock)
    await chat(app)
    clock.sleep(0.125)  # half a token saved: 0.125 s to wait
    limited = await chat(app)
    assert limited.status_code == 429
    present = {n for n in limited.headers if n.startswith(("retry-after", "x-ratelimit"))}
    assert present == expected
    if "retry-after" in expected:
        assert limited.headers["retry-after"] == "1"  # whole seconds, rounded up
    if hints == "full":
        assert limited.headers["retry-after-ms"] == "125"
        assert limited.headers["x-ratelimit-limit-requests"] == "1"  # the bucket, as OpenAI
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert limited.headers["x-ratelimit-reset-requests"] == "125ms"
        assert xretry.classify(limited).delay == pytest.approx(0.125)


@pytest.mark.anyio
@pytest.mark.parametrize("rate", [0.5, 3.0, 7.0, 10.0])
async def test_hint_matches_the_refill_time(rate: float, clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=rate, burst=1, hints="full"), clock=clock)
    await chat(app)
    limited = await chat(app)
    wait_ms = int(limited.headers["retry-after-ms"])
    assert wait_ms == math.ceil(1000 / rate)
    assert int(limited.headers["retry-after"]) == max(1, math.ceil(1 / rate))
    decision = xretry.classify(limited)
    assert decision.verdict is Verdict.RETRY
    assert decision.delay == pytest.approx(wait_ms / 1000)
    clock.sleep((wait_ms - 2) / 1000)  # a little early: still limited
    early = await chat(app)
    assert early.status_code == 429
    clock.sleep(int(early.headers["retry-after-ms"]) / 1000)  # the new hint is enough
    assert (await chat(app)).status_code == 200


@pytest.mark.anyio
async def test_retry_after_seconds_is_enough(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=0.4, burst=1, hints="retry-after"), clock=clock)
    await chat(app)
    limited = await chat(app)
    assert limited.headers["retry-after"] == "3"  # 2.5 s, rounded up
    clock.sleep(3.0)
    assert (await chat(app)).status_code == 200


@pytest.mark.anyio
async def test_quota_exhausted_is_the_fatal_spent_credits_429() -> None:
    app = EmulatorApp(Scenario(quota_exhausted=True))
    response = await chat(app)
    message = assert_xai_error(response, 429, xretry.QuotaExhaustedError)
    assert "credits" in message
    assert xretry.classify(response).verdict is Verdict.FATAL
    assert (await call(app, "POST", "/chat/completions", json=DEFERRED)).status_code == 429
    assert (await call(app, "GET", "/models")).status_code == 200
    assert app.stats()["quota_429"] == 2


# -- stats ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_stats_count_what_was_served_and_reset(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(rate_limit=1.0, burst=2), clock=clock)
    await chat(app)
    await chat(app, key=None)
    for retry_count in ("1", "2"):
        retried = {"x-stainless-retry-count": retry_count}
        await call(app, "POST", "/chat/completions", json=CHAT, headers=retried)
    await call(app, "GET", "/models", headers={"x-stainless-retry-count": "0"})
    stats = (await call(app, "GET", "http://emulator/_stats", key=None)).json()
    assert stats["status.200"] == 3
    assert stats["status.401"] == 1
    assert stats["status.429"] == stats["rate_limited"] == 1
    assert stats["requests.chat"] == 4
    assert stats["sdk_retries"] == 2
    reset = await call(app, "POST", "http://emulator/_stats/reset", key=None)
    assert reset.status_code == 200
    after = app.stats()
    assert not any(k.startswith(("status.", "requests.")) for k in after)
    assert after.get("rate_limited", 0) == after.get("sdk_retries", 0) == 0
    assert (await chat(app)).status_code == 429  # only the counters reset, not the bucket
    clock.sleep(1.0)
    assert (await chat(app)).status_code == 200


@pytest.mark.anyio
async def test_stats_endpoint_does_not_count_itself() -> None:
    app = EmulatorApp()
    await chat(app)
    await chat(app)
    await call(app, "POST", "http://emulator/_stats/reset", key=None)
    await chat(app)
    stats = (await call(app, "GET", "http://emulator/_stats", key=None)).json()
    assert stats["requests"] == 1
