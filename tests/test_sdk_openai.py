"""The real openai SDK through xretry, against the emulator on 127.0.0.1.

Two stacks, one file:

* openai 3.x runs on httpx2: ``httpx2.Client(transport=xretry.httpx2.RetryTransport())``;
* openai 2.x runs on httpx: ``httpx.Client(transport=xretry.RetryTransport())``.

The main environment has openai 3.x; ``make test-openai2`` runs this file again in a separate
virtualenv with openai 2.x. Each test runs on the stack that matches the installed openai and is
skipped on the other. The emulator injects 429s, 503s and dropped connections; its ``/_stats``
endpoint counts what reached the server. Nothing sleeps: xretry's waits are recorded by
``no_wait()`` or go to a fake clock, and the SDK's own backoff (when a test switches its retries on)
is set to zero.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

pytest.importorskip("openai")

import openai

import xretry
import xretry.httpx2
from xretry import RetryPolicy
from xretry.emulator import EmulatorApp, EmulatorServer, Fault, Scenario
from xretry.testing import no_wait

from ._http_script import REPLY as STREAMED
from ._http_script import ScriptedServer, openai_error
from .conftest import FakeClock

OPENAI_MAJOR = int(openai.__version__.split(".")[0])
CANARY = "xai-CANARY-3e8d1c7b5a90"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
REPLY = "Emulated reply to: hi"
#: Resending a POST after a dropped connection may pay for the generation twice: opt in.
POST_TOO = RetryPolicy(idempotent_methods=RetryPolicy().idempotent_methods | {"POST"})
SDK_WARNING = "x-stainless-retry-count"


@dataclass(frozen=True)
class Stack:
    """An openai major version, the HTTP library it runs on, and xretry's transports for it."""

    name: str
    major: int
    http: ModuleType
    RetryTransport: Any
    AsyncRetryTransport: Any


STACKS = {
    "openai3-httpx2": Stack(
        "openai3-httpx2",
        3,
        httpx2,
        xretry.httpx2.RetryTransport,
        xretry.httpx2.AsyncRetryTransport,
    ),
    "openai2-httpx": Stack(
        "openai2-httpx", 2, httpx, xretry.RetryTransport, xretry.AsyncRetryTransport
    ),
}


@pytest.fixture(params=sorted(STACKS))
def stack(request: pytest.FixtureRequest) -> Stack:
    chosen = STACKS[str(request.param)]
    if chosen.major != OPENAI_MAJOR:
        pytest.skip(f"needs openai {chosen.major}.x, this environment has {openai.__version__}")
    return chosen


Serve = Callable[..., EmulatorServer]


@pytest.fixture
def serve() -> Iterator[Serve]:
    """Start an emulator (``serve(*faults, **scenario)`` or ``serve(app=...)``); stopped after."""
    servers: list[EmulatorServer] = []

    def start(*faults: Fault, app: EmulatorApp | None = None, **scenario: Any) -> EmulatorServer:
        server = EmulatorServer(None if app else Scenario(faults=faults, **scenario), app=app)
        servers.append(server.start())
        return server

    yield start
    for server in servers:
        server.stop()


def stats(server: EmulatorServer) -> dict[str, Any]:
    """What reached the server (its own endpoint is not counted)."""
    response = httpx.get(f"{server.url}/_stats")
    response.raise_for_status()
    counters: dict[str, Any] = response.json()
    return counters


def outage() -> Fault:
    return Fault("status", status=503, rate=1.0)


def sync_client(
    stack: Stack,
    server: EmulatorServer,
    *,
    xretry_transport: bool = True,
    policy: RetryPolicy | None = None,
    max_retries: int = 0,
    api_key: str = "xai-test",
) -> openai.OpenAI:
    inner = stack.RetryTransport(policy=policy) if xretry_transport else None
    return openai.OpenAI(
        base_url=server.base_url,
        api_key=api_key,
        http_client=stack.http.Client(transport=inner),
        max_retries=max_retries,
    )


def async_client(
    stack: Stack,
    server: EmulatorServer,
    *,
    xretry_transport: bool = True,
    policy: RetryPolicy | None = None,
    max_retries: int = 0,
    api_key: str = "xai-test",
) -> openai.AsyncOpenAI:
    inner = stack.AsyncRetryTransport(policy=policy) if xretry_transport else None
    return openai.AsyncOpenAI(
        base_url=server.base_url,
        api_key=api_key,
        http_client=stack.http.AsyncClient(transport=inner),
        max_retries=max_retries,
    )


def no_sdk_backoff(monkeypatch: pytest.MonkeyPatch, client: Any) -> list[int]:
    """Make the SDK's own retry wait zero; returns the list its retries are recorded in."""
    retries: list[int] = []

    def zero(remaining_retries: int, *args: Any, **kwargs: Any) -> float:
        retries.append(remaining_retries)
        return 0.0

    monkeypatch.setattr(client, "_calculate_retry_timeout", zero)
    return retries


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "xretry" and SDK_WARNING in r.getMessage()]


def faults_503_429_drop() -> tuple[Fault, ...]:
    """The first three chat requests: a 503, a 429 (no hint), a dropped connection."""
    return (
        Fault("status", status=503, schedule=(1,)),
        Fault("status", status=429, schedule=(2,)),
        Fault("drop_before", schedule=(3,)),
    )


def assert_saw_the_faults(server: EmulatorServer) -> None:
    seen = stats(server)
    assert seen["requests"] == 4
    assert seen["status.503"] == 1
    assert seen["status.429"] == 1
    assert seen["faults.drop_before"] == 1
    assert seen["status.200"] == 1
    assert seen.get("sdk_retries", 0) == 0  # every retry was xretry's, none the SDK's


# -- the transport under the SDK ----------------------------------------------------------------


def test_chat_completion_succeeds_through_injected_faults(stack: Stack, serve: Serve) -> None:
    server = serve(*faults_503_429_drop())
    with no_wait() as schedule, sync_client(stack, server, policy=POST_TOO) as client:
        reply = client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert reply.choices[0].message.content == REPLY
    assert_saw_the_faults(server)
    assert schedule.delays == [0.5, 1.0, 2.0]


@pytest.mark.anyio
async def test_async_chat_completion_succeeds_through_injected_faults(
    stack: Stack, serve: Serve
) -> None:
    server = serve(*faults_503_429_drop())
    with no_wait() as schedule:
        async with async_client(stack, server, policy=POST_TOO) as client:
            reply = await client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert reply.choices[0].message.content == REPLY
    assert_saw_the_faults(server)
    assert schedule.delays == [0.5, 1.0, 2.0]


def test_rate_limit_hint_is_honoured_through_the_sdk(stack: Stack, serve: Serve) -> None:
    clock = FakeClock()
    server = serve(app=EmulatorApp(Scenario(rate_limit=2.0, burst=1), clock=clock))
    transport = stack.RetryTransport(sleep=clock.sleep, clock=clock)
    with openai.OpenAI(
        base_url=server.base_url,
        api_key="xai-test",
        http_client=stack.http.Client(transport=transport),
        max_retries=0,
    ) as client:
        for _ in range(2):
            client.chat.completions.create(model="grok-4", messages=MESSAGES)
    # The second request found the bucket empty: a 429 saying "wait 500 ms", and xretry did.
    assert clock.slept == [0.5]
    seen = stats(server)
    assert seen["rate_limited"] == 1
    assert seen["requests"] == 3


def test_a_dropped_post_is_not_resent_by_default(stack: Stack, serve: Serve) -> None:
    server = serve(Fault("drop_before", schedule=(1,)))
    with (
        no_wait(),
        sync_client(stack, server) as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server)["requests"] == 1


def test_a_400_surfaces_as_bad_request_after_one_request(stack: Stack, serve: Serve) -> None:
    server = serve(api_keys=("other",))
    with (
        no_wait() as schedule,
        sync_client(stack, server, api_key=CANARY) as client,
        pytest.raises(openai.BadRequestError) as caught,
    ):
        client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert caught.value.status_code == 400
    assert "Incorrect API key" in caught.value.response.json()["error"]
    seen = stats(server)
    assert seen["requests"] == 1
    assert seen["status.400"] == 1
    assert schedule.delays == []


@pytest.mark.anyio
async def test_async_400_surfaces_as_bad_request_after_one_request(
    stack: Stack, serve: Serve
) -> None:
    server = serve(api_keys=("other",))
    with no_wait(), pytest.raises(openai.BadRequestError):
        async with async_client(stack, server) as client:
            await client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server)["requests"] == 1


def test_an_outage_ends_in_the_sdks_error_after_max_attempts(stack: Stack, serve: Serve) -> None:
    server = serve(outage())
    with (
        no_wait(),
        sync_client(stack, server, policy=RetryPolicy(max_attempts=3)) as client,
        pytest.raises(openai.InternalServerError) as caught,
    ):
        client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert caught.value.status_code == 503
    assert stats(server)["requests"] == 3


def test_sdk_retries_on_top_are_reported(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(outage())
    policy = RetryPolicy(max_attempts=2)
    with no_wait(), sync_client(stack, server, policy=policy, max_retries=2) as client:
        sdk_retries = no_sdk_backoff(monkeypatch, client)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert sdk_retries == [2, 1]  # the SDK did retry, twice, on top of xretry
    seen = stats(server)
    assert seen["requests"] == 3 * policy.max_attempts  # multiplied, hence the warning
    assert seen["sdk_retries"] > 0
    warnings = sdk_warnings(caplog)
    assert warnings, "no warning about the SDK retrying on top of xretry"
    assert all(r.levelno == logging.WARNING for r in warnings)
    assert "max_retries=0" in warnings[0].getMessage()


def test_sdk_retries_on_top_warn_exactly_once_with_one_sdk_retry(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(outage())
    with no_wait(), sync_client(stack, server, max_retries=1) as client:
        no_sdk_backoff(monkeypatch, client)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server)["sdk_retries"] > 0
    assert len(sdk_warnings(caplog)) == 1


def test_sdk_retries_on_top_warn_once(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(outage())
    with no_wait(), sync_client(stack, server, max_retries=2) as client:
        no_sdk_backoff(monkeypatch, client)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server)["sdk_retries"] > 0
    assert len(sdk_warnings(caplog)) == 1


@pytest.mark.anyio
async def test_async_sdk_retries_on_top_are_reported(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(outage())
    with no_wait():
        async with async_client(stack, server, max_retries=1) as client:
            no_sdk_backoff(monkeypatch, client)
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server)["sdk_retries"] > 0
    assert len(sdk_warnings(caplog)) == 1


def test_no_warning_when_the_sdk_does_not_retry(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    server = serve(outage())
    with no_wait(), sync_client(stack, server) as client:
        for _ in range(2):  # failures armed the transport; no marker ever arrives
            with pytest.raises(openai.InternalServerError):
                client.chat.completions.create(model="grok-4", messages=MESSAGES)
    assert stats(server).get("sdk_retries", 0) == 0
    assert sdk_warnings(caplog) == []


# -- the decorator around SDK calls --------------------------------------------------------------


def test_decorator_retries_sdk_calls_through_faults(stack: Stack, serve: Serve) -> None:
    server = serve(*faults_503_429_drop())
    with no_wait() as schedule, sync_client(stack, server, xretry_transport=False) as client:

        @xretry.retry(policy=POST_TOO)
        def ask(prompt: str) -> str | None:
            reply = client.chat.completions.create(
                model="grok-4", messages=[{"role": "user", "content": prompt}]
            )
            return reply.choices[0].message.content

        assert ask("hi") == REPLY
    assert_saw_the_faults(server)
    assert schedule.delays == [0.5, 1.0, 2.0]


@pytest.mark.anyio
async def test_async_decorator_retries_sdk_calls_through_faults(stack: Stack, serve: Serve) -> None:
    server = serve(*faults_503_429_drop())
    with no_wait() as schedule:
        async with async_client(stack, server, xretry_transport=False) as client:

            @xretry.retry(policy=POST_TOO)
            async def ask(prompt: str) -> str | None:
                reply = await client.chat.completions.create(
                    model="grok-4", messages=[{"role": "user", "content": prompt}]
                )
                return reply.choices[0].message.content

            assert await ask("hi") == REPLY
    assert_saw_the_faults(server)
    assert schedule.delays == [0.5, 1.0, 2.0]


def test_decorator_reads_the_rate_limit_hint_from_the_sdk_error(stack: Stack, serve: Serve) -> None:
    clock = FakeClock()
    server = serve(app=EmulatorApp(Scenario(rate_limit=4.0, burst=1), clock=clock))
    with sync_client(stack, server, xretry_transport=False) as client:

        @xretry.retry(sleep=clock.sleep, clock=clock)
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        ask()
        ask()  # the bucket is empty: a RateLimitError whose response says "retry-after-ms: 250"
    assert clock.slept == [0.25]
    assert stats(server)["rate_limited"] == 1


def test_decorator_gives_up_with_the_sdks_exception_and_a_note(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="xretry")
    server = serve(outage())
    policy = RetryPolicy(max_attempts=3)
    with no_wait(), sync_client(stack, server, xretry_transport=False, api_key=CANARY) as client:

        @xretry.retry(policy=policy)
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        with pytest.raises(openai.InternalServerError) as caught:
            ask()
    assert type(caught.value) is openai.InternalServerError
    notes = caught.value.__notes__
    assert len(notes) == 1
    assert notes[0].startswith("xretry: 3 attempts")
    assert notes[0].count("InternalServerError") == 3
    assert CANARY not in notes[0]
    assert CANARY not in caplog.text
    assert stats(server)["requests"] == policy.max_attempts


@pytest.mark.parametrize(
    ("scenario", "error"),
    [
        pytest.param({"api_keys": ("other",)}, openai.BadRequestError, id="400-wrong-key"),
        pytest.param({"blocked_keys": ("xai-test",)}, openai.PermissionDeniedError, id="403"),
        pytest.param({"quota_exhausted": True}, openai.RateLimitError, id="429-credits-spent"),
    ],
)
def test_decorator_does_not_retry_fatal_sdk_errors(
    stack: Stack, serve: Serve, scenario: dict[str, Any], error: type[Exception]
) -> None:
    server = serve(**scenario)
    with no_wait() as schedule, sync_client(stack, server, xretry_transport=False) as client:

        @xretry.retry
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        with pytest.raises(error):
            ask()
    assert stats(server)["requests"] == 1
    assert schedule.delays == []


def test_decorator_does_not_resend_a_dropped_post_by_default(stack: Stack, serve: Serve) -> None:
    server = serve(Fault("drop_before", schedule=(1,)))
    with no_wait(), sync_client(stack, server, xretry_transport=False) as client:

        @xretry.retry
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        with pytest.raises(openai.APIConnectionError):
            ask()
    assert stats(server)["requests"] == 1


def test_decorator_over_an_xretry_transport_stays_within_max_attempts(
    stack: Stack, serve: Serve
) -> None:
    server = serve(outage())
    policy = RetryPolicy(max_attempts=3)
    with no_wait(), sync_client(stack, server) as client:  # the transport's default: 5 attempts

        @xretry.retry(policy=policy)
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        with pytest.raises(openai.InternalServerError):
            ask()
    assert stats(server)["requests"] <= policy.max_attempts
    assert stats(server)["requests"] == policy.max_attempts  # and it did use them all


@pytest.mark.anyio
async def test_async_decorator_over_an_xretry_transport_stays_within_max_attempts(
    stack: Stack, serve: Serve
) -> None:
    server = serve(outage())
    policy = RetryPolicy(max_attempts=3)
    with no_wait():
        async with async_client(stack, server) as client:

            @xretry.retry(policy=policy)
            async def ask() -> None:
                await client.chat.completions.create(model="grok-4", messages=MESSAGES)

            with pytest.raises(openai.InternalServerError):
                await ask()
    assert stats(server)["requests"] == policy.max_attempts


def test_decorator_over_an_xretry_transport_reports_sdk_retries(
    stack: Stack, serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = serve(outage())
    policy = RetryPolicy(max_attempts=3)
    with no_wait(), sync_client(stack, server, max_retries=2) as client:
        no_sdk_backoff(monkeypatch, client)

        @xretry.retry(policy=policy)
        def ask() -> None:
            client.chat.completions.create(model="grok-4", messages=MESSAGES)

        with pytest.raises(openai.InternalServerError):
            ask()
    assert stats(server)["sdk_retries"] > 0
    assert len(sdk_warnings(caplog)) == 1


# -- streaming, on a scripted loopback server ------------------------------------------------------

OVERLOADED_503 = openai_error(503, "server_error", "The server is overloaded")
RATE_LIMITED_429 = openai_error(
    429, "rate_limit_error", "Rate limit reached", **{"retry-after": "1"}
)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    with ScriptedServer("openai") as running:
        yield running


def test_streaming_after_a_503_and_a_429(stack: Stack, scripted: ScriptedServer) -> None:
    scripted.queue(OVERLOADED_503, RATE_LIMITED_429)
    client = sync_client(stack, scripted)  # type: ignore[arg-type]
    with client, no_wait():
        stream = client.chat.completions.create(model="grok-4", messages=MESSAGES, stream=True)
        with stream:
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
    assert text == STREAMED
    assert scripted.count == 3
    assert scripted.sdk_retries == 0


@pytest.mark.anyio
# asyncio only: after "[DONE]" openai's AsyncStream leaves its SSE generators unexhausted, and
# trio's async-generator finalizer reports that as a ResourceWarning (an error in this suite).
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_async_streaming_after_a_503_and_a_429(
    stack: Stack, scripted: ScriptedServer
) -> None:
    scripted.queue(OVERLOADED_503, RATE_LIMITED_429)
    client = async_client(stack, scripted)  # type: ignore[arg-type]
    async with client:
        with no_wait():
            stream = await client.chat.completions.create(
                model="grok-4", messages=MESSAGES, stream=True
            )
            async with stream:
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
    assert text == STREAMED
    assert scripted.count == 3
