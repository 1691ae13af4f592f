"""Typed errors: status mapping (xAI's status table), body parsing, hints, secrets, hooks, pickling.

The status table with its cause and solution columns is ``shared/seed/xai-debugging-errors.txt``;
the hint fragments asserted below are quoted from its solution column.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
from collections.abc import AsyncIterator, Iterator
from types import ModuleType
from typing import Any

import httpx
import pytest

import xretry

from .conftest import Flavour

URL = "https://api.x.ai/v1/chat/completions?api_key=QUERYSECRET&beta=1"
PATH_URL = "https://api.x.ai/v1/chat/completions"
CANARY = "xai-CANARY-0123456789abcdef"
QUOTA = (
    "Your team abc has either used all available credits or reached its monthly spending limit. "
    "To continue making API requests please purchase more credits or raise your spending limit."
)
HTML = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
log = logging.getLogger("tests.test_errors")


def xai(code: str, error: str) -> bytes:
    return json.dumps({"code": code, "error": error}).encode()


def respond(
    status: int,
    body: bytes = b"",
    *,
    http: ModuleType = httpx,
    method: str = "POST",
    url: str = URL,
    headers: dict[str, str] | None = None,
    response_headers: dict[str, str] | None = None,
) -> Any:
    request = http.Request(method, url, headers=headers or {})
    return http.Response(status, content=body, request=request, headers=response_headers or {})


def error_of(response: Any) -> xretry.APIStatusError:
    with pytest.raises(xretry.APIStatusError) as info:
        xretry.raise_for_status(response)
    return info.value


def error_for(status: int, body: bytes = b"", **kwargs: Any) -> xretry.APIStatusError:
    return error_of(respond(status, body, **kwargs))


# --- status -> class ----------------------------------------------------------------------------

STATUS_TABLE = [
    (400, xai("Client specified an invalid argument", "bad temperature"), xretry.BadRequestError),
    (400, xai("Client invalid", "Incorrect API key provided: ba***na."), xretry.InvalidAPIKeyError),
    (401, b"", xretry.AuthenticationError),
    (403, xai("Permission denied", "team is blocked"), xretry.PermissionDeniedError),
    (404, b'{"detail": "Not Found"}', xretry.NotFoundError),
    (405, b"Method Not Allowed", xretry.MethodNotAllowedError),
    (415, b"", xretry.UnsupportedMediaTypeError),
    (422, b'{"detail": "invalid format"}', xretry.UnprocessableEntityError),
    (429, xai("Too many requests", "rate limit reached"), xretry.RateLimitError),
    (429, xai("Some resource has been exhausted", QUOTA), xretry.QuotaExhaustedError),
    (500, b"internal error", xretry.ServerError),
    (502, HTML, xretry.ServerError),
    (503, b"", xretry.ServerError),
    (504, b"upstream timed out", xretry.ServerError),
    (409, b"conflict", xretry.APIStatusError),
    (418, b"", xretry.APIStatusError),
]


@pytest.mark.parametrize(("status", "body", "cls"), STATUS_TABLE)
def test_status_maps_to_its_class(
    flavour: Flavour, status: int, body: bytes, cls: type[xretry.APIStatusError]
) -> None:
    error = error_of(respond(status, body, http=flavour.http))
    assert type(error) is cls
    assert isinstance(error, xretry.XRetryError)
    assert isinstance(error, xretry.APIStatusError)
    assert error.status_code == status


def test_class_hierarchy() -> None:
    assert issubclass(xretry.InvalidAPIKeyError, xretry.BadRequestError)
    assert not issubclass(xretry.QuotaExhaustedError, xretry.RateLimitError)
    error = error_for(429, xai("Some resource has been exhausted", QUOTA))
    assert not isinstance(error, xretry.RateLimitError)
    assert "monthly spending limit" in error.message


@pytest.mark.parametrize("status", [200, 201, 202, 204, 301, 304, 399])
def test_below_400_returns_the_response_unchanged(flavour: Flavour, status: int) -> None:
    response = respond(status, b'{"error": "not an error"}', http=flavour.http)
    assert xretry.raise_for_status(response) is response


@pytest.mark.anyio
@pytest.mark.parametrize("status", [200, 202])
async def test_async_below_400_returns_the_response_unchanged(status: int) -> None:
    response = respond(status)
    assert await xretry.araise_for_status(response) is response


# --- hints: the solution column -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "fragments"),
    [
        (400, b"bad", ["Check your request body or request URL."]),
        (401, b"", ["Authorization: Bearer <XAI_API_KEY>", "xAI Console"]),
        (403, b"", ["Ask your team admin for permission."]),
        (404, b"", ["Check your request body and endpoint URL against the API Reference."]),
        (405, b"", ["Check your request method against the API Reference."]),
        (415, b"", ["Add a valid request body", "Content-Type: application/json"]),
        (422, b"", ["Check your request body against the API Reference."]),
        (429, b"slow", ["Reduce your request rate", "increase your rate limit on xAI Console"]),
        *[(status, b"", ["https://status.x.ai"]) for status in (500, 502, 503, 504)],
    ],
)
def test_hint_is_the_seed_solution(status: int, body: bytes, fragments: list[str]) -> None:
    error = error_for(status, body)
    for fragment in fragments:
        assert fragment in error.hint
    assert error.hint in str(error)


def test_wrong_key_and_spent_credits_have_their_own_hints() -> None:
    wrong_key = error_for(400, xai("Client specified an invalid argument", "Incorrect API key"))
    assert "XAI_API_KEY" in wrong_key.hint
    spent = error_for(429, xai("exhausted", QUOTA))
    assert "credits" in spent.hint
    assert "Reduce your request rate" not in spent.hint  # slowing down cannot buy credits


def test_str_names_status_method_path_and_hint_but_not_the_query() -> None:
    error = error_for(404, xai("Not found", "no such model"), method="GET")
    text = str(error)
    assert "404 Not Found" in text
    assert f"GET {PATH_URL}" in text
    assert "no such model" in text
    assert error.hint in text
    for leak in ("?", "api_key", "QUERYSECRET", "beta=1"):
        assert leak not in text
        assert leak not in repr(error)
    userinfo = error_for(500, url="https://user:hunter22@api.x.ai/v1/models")
    assert "hunter22" not in str(userinfo)
    assert "https://api.x.ai/v1/models" in str(userinfo)


def test_request_id_kept_and_a_response_without_request_still_maps() -> None:
    assert error_for(500, response_headers={"x-request-id": "r-42"}).request_id == "r-42"
    error = error_of(httpx.Response(503, content=b"down"))
    assert (type(error), error.message, error.method) == (xretry.ServerError, "down", None)


# --- body shapes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (xai("Client specified an invalid argument", "bad n"), "Client specified an invalid argument", "bad n"),  # noqa: E501
        (b'{"error": {"message": "bad model", "type": "invalid_request_error", "code": "model_not_found"}}', "model_not_found", "bad model"),  # noqa: E501
        (b'{"error": {"message": "bad model", "type": "invalid_request_error", "code": null}}', "invalid_request_error", "bad model"),  # noqa: E501
        (b'{"message": "nope"}', None, "nope"),
        (b'{"detail": "Not Found"}', None, "Not Found"),
        (b"upstream connect error", None, "upstream connect error"),
    ],
)  # fmt: skip
def test_code_and_message_are_parsed(body: bytes, code: str | None, message: str) -> None:
    error = error_for(404, body)
    assert (error.status_code, error.code, error.message) == (404, code, message)
    assert message in str(error)
    if code is not None:
        assert code in str(error)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", "empty"),
        (b"  \r\n\t ", "empty"),
        (HTML, "HTML"),
        (b'{"code": "x", "err', "JSON"),
        (b"[1, 2, 3]", "[1, 2, 3]"),
        (b"42", "42"),
        (b"null", "null"),
        (b"\xff\xfe invalid \xc3\x28 utf-8", "invalid"),
        (b'{"error": "bad \xff byte"}', "bad"),
    ],
)
def test_odd_bodies_give_a_clean_typed_error(body: bytes, expected: str) -> None:
    error = error_for(502, body)
    assert type(error) is xretry.ServerError
    assert error.message.strip()
    assert expected in error.message
    assert error.message in str(error)
    str(error).encode("utf-8")  # printable/loggable: no lone surrogates


def test_html_page_is_described_not_dumped() -> None:
    error = error_for(502, HTML)
    assert "proxy" in error.message
    assert "<html" not in str(error).lower()
    assert error.code is None
    truncated = error_for(400, b'{"code": "x", "err')
    assert type(truncated) is xretry.BadRequestError
    assert truncated.code is None  # no code invented from a half-read body


MB = 1_000_000


@pytest.mark.parametrize(
    "body",
    [
        xai("big", "x" * MB),
        b"y " * (MB // 2),
        b'{"error": {"message": "' + b"z" * MB + b'"}}',
        b"[" + b"1," * (MB // 2) + b"1]",
        b"<html><body>" + b"p" * MB,
        b'{"code": "x", "error": "' + b"w" * MB,
    ],
)
def test_a_megabyte_body_gives_a_bounded_message(body: bytes) -> None:
    error = error_for(500, body)
    assert type(error) is xretry.ServerError
    assert 0 < len(error.message) <= 1000
    assert len(str(error)) <= 2000


def test_a_megabyte_code_field_gives_a_bounded_error() -> None:
    error = error_for(500, xai("c" * MB, "boom"))
    assert len(str(error)) <= 2000


def test_deeply_nested_json_gives_a_typed_error() -> None:
    error = error_for(502, b"[" * 100_000)
    assert type(error) is xretry.ServerError


# --- secrets ------------------------------------------------------------------------------------

SECRET_HEADERS = [{"Authorization": f"Bearer {CANARY}"}, {"x-api-key": CANARY}]
ECHOES = [
    xai("Client specified an invalid argument", f"Incorrect API key provided: {CANARY}."),
    xai(CANARY, "bad key"),
    json.dumps({"error": {"message": f"key {CANARY} rejected", "code": f"k:{CANARY}"}}).encode(),
    f"<html><body>Denied for Bearer {CANARY}</body></html>".encode(),
    f"denied: Bearer {CANARY}".encode(),
]


def assert_no_canary(error: xretry.APIStatusError) -> None:
    for text in (str(error), repr(error), error.message, error.code or "", str(error.args)):
        assert CANARY not in text
        assert "CANARY" not in text  # not even the token without its "xai-" prefix


@pytest.mark.parametrize("headers", SECRET_HEADERS, ids=["bearer", "x-api-key"])
@pytest.mark.parametrize("status", [400, 401, 429])
@pytest.mark.parametrize("body", ECHOES, ids=["message", "code", "openai", "html", "text"])
def test_echoed_key_is_masked_everywhere(
    caplog: pytest.LogCaptureFixture, headers: dict[str, str], status: int, body: bytes
) -> None:
    caplog.set_level(logging.DEBUG)
    error = error_for(status, body, headers=headers)
    assert_no_canary(error)
    if not body.startswith(b"<html>"):
        assert "***" in str(error)
    try:
        raise error
    except xretry.APIStatusError as caught:
        log.exception("request failed: %s (%r)", caught, caught)
    assert "request failed" in caplog.text
    assert "Traceback" in caplog.text
    assert CANARY not in caplog.text


def test_key_echoed_through_a_client_hook_is_masked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        return httpx.Response(400, content=xai("Client specified an invalid argument", echoed))

    client = httpx.Client(
        transport=httpx.MockTransport(handler),
        headers={"Authorization": f"Bearer {CANARY}"},
        event_hooks={"response": [xretry.raise_for_status]},
    )
    with client, pytest.raises(xretry.BadRequestError) as info:
        client.post(URL, json={})
    assert_no_canary(info.value)
    assert info.value.message == "***"


def test_key_at_the_truncation_limit_is_not_partly_leaked() -> None:
    body = xai("invalid", "a" * 480 + " " + CANARY + " tail")
    error = error_for(400, body, headers={"Authorization": f"Bearer {CANARY}"})
    assert "xai-CANARY" not in error.message
    assert "xai-CANARY" not in str(error)


# --- as an event hook ---------------------------------------------------------------------------


def chunks(body: bytes) -> Iterator[bytes]:
    yield body[:7]
    yield body[7:]


async def achunks(body: bytes) -> AsyncIterator[bytes]:
    yield body[:7]
    yield body[7:]


BODY_404 = xai("Some requested entity was not found", "The model grok-9 does not exist")


def test_sync_hook_reads_an_unread_body(flavour: Flavour) -> None:
    def handler(request: Any) -> Any:  # streams, not yet read when the hook runs
        if request.method == "GET":
            return flavour.http.Response(200, content=chunks(b'{"ok": true}'))
        return flavour.http.Response(404, content=chunks(BODY_404))

    hooks = {"response": [xretry.raise_for_status]}
    with flavour.http.Client(transport=flavour.mock(handler), event_hooks=hooks) as client:
        assert client.get(URL).json() == {"ok": True}  # successes pass through untouched
        with pytest.raises(xretry.NotFoundError) as info:
            client.post(URL, json={"model": "grok-9"})
    assert info.value.message == "The model grok-9 does not exist"
    assert info.value.code == "Some requested entity was not found"
    assert (info.value.method, info.value.url) == ("POST", PATH_URL)


def test_sync_hook_on_a_streamed_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=chunks(xai("Service unavailable", "overloaded")))

    hooks = {"response": [xretry.raise_for_status]}
    with (
        httpx.Client(transport=httpx.MockTransport(handler), event_hooks=hooks) as client,
        pytest.raises(xretry.ServerError) as info,
        client.stream("POST", URL, json={}),
    ):
        pytest.fail("the hook should have raised before the body was handed over")
    assert info.value.message == "overloaded"


@pytest.mark.anyio
async def test_async_hook_reads_the_body(flavour: Flavour) -> None:
    def handler(request: Any) -> Any:
        return flavour.http.Response(404, content=achunks(BODY_404))

    hooks = {"response": [xretry.araise_for_status]}
    async with flavour.http.AsyncClient(transport=flavour.mock(handler), event_hooks=hooks) as c:
        with pytest.raises(xretry.NotFoundError) as info:
            await c.post(URL, json={"model": "grok-9"})
    assert info.value.message == "The model grok-9 does not exist"
    assert "POST" in str(info.value)


@pytest.mark.anyio
async def test_async_hook_on_a_streamed_response() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, content=achunks(xai("Resource exhausted", QUOTA)))

    hooks = {"response": [xretry.araise_for_status]}
    async with httpx.AsyncClient(transport=httpx.MockTransport(handler), event_hooks=hooks) as c:
        with pytest.raises(xretry.QuotaExhaustedError) as info:
            async with c.stream("POST", URL, json={}):
                pytest.fail("the hook should have raised before the body was handed over")
    assert "spending limit" in info.value.message


# --- pickling -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "body", "cls"), STATUS_TABLE)
def test_pickle_round_trip(status: int, body: bytes, cls: type[xretry.APIStatusError]) -> None:
    error = error_for(status, body)
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls
    got = (copy.status_code, copy.message, copy.code, copy.hint)
    assert got == (error.status_code, error.message, error.code, error.hint)
    custom = xretry.RateLimitError(status_code=429, message="m", code="c", hint="wait a bit")
    copy = pickle.loads(pickle.dumps(custom))
    assert (type(copy), copy.hint, copy.code) == (xretry.RateLimitError, "wait a bit", "c")


def test_pickle_keeps_the_rendered_text() -> None:
    error = error_for(404, b"gone")
    assert str(pickle.loads(pickle.dumps(error))) == str(error)


# --- retry history ------------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [1, 3])
def test_message_counts_the_attempts_of_a_retried_request(attempts: int) -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, content=xai("Service unavailable", "overloaded"))

    transport = xretry.RetryTransport(
        httpx.MockTransport(handler),
        policy=xretry.RetryPolicy(max_attempts=attempts),
        sleep=lambda seconds: None,
    )
    with httpx.Client(transport=transport) as client:
        response = client.get(URL)
    assert len(calls) == attempts
    error = error_of(response)
    assert type(error) is xretry.ServerError
    assert "https://status.x.ai" in str(error)
    if attempts == 1:  # a first-try failure is not announced as a retry
        assert error.attempts in (None, 1)
        assert re.search(r"after \d+ attempt", str(error)) is None
    else:
        assert error.attempts == 3
        assert "after 3 attempts" in str(error)


@pytest.mark.anyio
async def test_async_hook_counts_the_attempts() -> None:
    async def no_sleep(seconds: float) -> None:
        return None

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, content=achunks(b"down"))

    transport = xretry.AsyncRetryTransport(
        httpx.MockTransport(handler), policy=xretry.RetryPolicy(max_attempts=3), sleep=no_sleep
    )
    hooks = {"response": [xretry.araise_for_status]}
    async with httpx.AsyncClient(transport=transport, event_hooks=hooks) as client:
        with pytest.raises(xretry.ServerError) as info:
            await client.get(URL)
    assert "after 3 attempts" in str(info.value)
    assert info.value.message == "down"


# -- an error body that never ends ----------------------------------------------------------------


class Endless:
    """A response body that never ends (1 KiB chunks), counting what was read and whether closed."""

    def __init__(self, flavour: Flavour) -> None:
        self.flavour = flavour
        self.read = 0
        self.closed = False

    def stream(self) -> Any:
        endless = self
        http = self.flavour.http

        class Stream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc,name-defined]
            def __iter__(self) -> Iterator[bytes]:
                while True:
                    endless.read += 1024
                    yield b'{"error": "' + b"x" * 1013

            def __aiter__(self) -> AsyncIterator[bytes]:
                return self  # an iterator object, not an async generator left to the collector

            async def __anext__(self) -> bytes:
                if endless.closed:  # like a connection: closed, it ends the iteration
                    raise StopAsyncIteration
                endless.read += 1024
                return b'{"error": "' + b"x" * 1013

            def close(self) -> None:
                endless.closed = True

            async def aclose(self) -> None:
                endless.closed = True

        return Stream()


@pytest.mark.parametrize("hook", [False, True], ids=["called", "event-hook"])
def test_raise_for_status_reads_a_bounded_prefix_of_an_endless_body(
    flavour: Flavour, hook: bool
) -> None:
    body = Endless(flavour)
    transport = flavour.mock(lambda r: flavour.http.Response(500, stream=body.stream()))
    hooks = {"response": [xretry.raise_for_status]} if hook else {}
    with (
        flavour.http.Client(transport=transport, event_hooks=hooks) as client,
        pytest.raises(xretry.ServerError) as caught,
        client.stream("POST", URL) as response,
    ):
        xretry.raise_for_status(response)
    assert body.read <= 70 * 1024  # the first 64 KiB, not an endless read
    assert body.closed
    assert "unparseable JSON body" in str(caught.value)
    assert len(caught.value.response.content) <= 70 * 1024  # the prefix stays readable


@pytest.mark.parametrize("hook", [False, True], ids=["called", "event-hook"])
@pytest.mark.anyio
async def test_araise_for_status_reads_a_bounded_prefix_of_an_endless_body(
    flavour: Flavour, hook: bool
) -> None:
    body = Endless(flavour)
    transport = flavour.mock(lambda r: flavour.http.Response(503, stream=body.stream()))
    hooks = {"response": [xretry.araise_for_status]} if hook else {}
    async with flavour.http.AsyncClient(transport=transport, event_hooks=hooks) as client:
        with pytest.raises(xretry.ServerError) as caught:
            async with client.stream("POST", URL) as response:
                await xretry.araise_for_status(response)
    assert body.read <= 70 * 1024
    assert body.closed
    assert len(caught.value.response.content) <= 70 * 1024


def test_a_small_unsized_error_body_is_read_whole(flavour: Flavour) -> None:
    def chunked(request: Any) -> Any:
        return flavour.http.Response(500, content=iter([b'{"code": "c", ', b'"error": "boom"}']))

    with (
        flavour.http.Client(transport=flavour.mock(chunked)) as client,
        pytest.raises(xretry.ServerError, match="boom") as caught,
        client.stream("GET", URL) as response,
    ):
        xretry.raise_for_status(response)
    assert caught.value.response.json() == {"code": "c", "error": "boom"}
