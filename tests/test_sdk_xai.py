"""The real xai-sdk (gRPC) under xretry, against a scripted gRPC server on 127.0.0.1.

The server (``_xai_grpc.py``) is built from the service stubs inside the ``xai_sdk`` package; the
clients are the SDK's own ``xai_sdk.Client`` and ``AsyncClient``. Unless a test says otherwise the
channel is built as the docs say, with the SDK's own retries off
(``channel_options=[("grpc.enable_retries", 0)]``), so the server's call count is xretry's
attempts. xretry's waits go to a fake clock; nothing sleeps (but the SDK's own channel backoff, in
the one test that shows it, about a second per attempt).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest

pytest.importorskip("xai_sdk")

import xai_sdk
from xai_sdk.chat import user

import xretry
import xretry.xai_sdk
from xretry import PollPolicy, RetryPolicy, Verdict

from ._xai_grpc import API_KEY, CREDITS_SPENT, PENDING, REPLY, REQUEST_ID, Fail, FakeXaiServer
from .conftest import FakeClock

NO_SDK_RETRIES: list[tuple[str, Any]] = [("grpc.enable_retries", 0)]
SDK_WARNING = "grpc.enable_retries"
Code = grpc.StatusCode
#: Only asyncio: the SDK's AsyncClient runs on grpc.aio.
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


@pytest.fixture
def server() -> Iterator[FakeXaiServer]:
    with FakeXaiServer() as running:
        yield running


@pytest.fixture
def client(server: FakeXaiServer) -> Iterator[xai_sdk.Client]:
    with xai_sdk.Client(
        api_key=API_KEY,
        api_host=server.address,
        use_insecure_channel=True,
        channel_options=NO_SDK_RETRIES,
    ) as sdk:
        yield sdk


@pytest.fixture
async def aclient(server: FakeXaiServer) -> AsyncIterator[xai_sdk.AsyncClient]:
    sdk = xai_sdk.AsyncClient(
        api_key=API_KEY,
        api_host=server.address,
        use_insecure_channel=True,
        channel_options=NO_SDK_RETRIES,
    )
    try:
        yield sdk
    finally:
        await sdk.close()


def chat_of(sdk: Any) -> Any:
    chat = sdk.chat.create(model="grok-4")
    chat.append(user("hi"))
    return chat


def sdk_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if SDK_WARNING in r.getMessage()]


# -- sample(): what is retried, what is not -------------------------------------------------------

TRANSIENT = [
    pytest.param(Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"), id="RESOURCE_EXHAUSTED"),
    pytest.param(Fail(Code.UNAVAILABLE, "upstream connect error"), id="UNAVAILABLE"),
    pytest.param(Fail(Code.INTERNAL, "internal error"), id="INTERNAL"),
]

FATAL = [
    pytest.param(Fail(Code.INVALID_ARGUMENT, "Incorrect API key provided"), id="INVALID_ARGUMENT"),
    pytest.param(Fail(Code.UNAUTHENTICATED, "No auth token"), id="UNAUTHENTICATED"),
    pytest.param(Fail(Code.PERMISSION_DENIED, "team is blocked"), id="PERMISSION_DENIED"),
    pytest.param(Fail(Code.NOT_FOUND, "model grok-9 not found"), id="NOT_FOUND"),
    pytest.param(Fail(Code.RESOURCE_EXHAUSTED, CREDITS_SPENT), id="credits-spent"),
    pytest.param(Fail(Code.DEADLINE_EXCEEDED, "deadline exceeded"), id="DEADLINE_EXCEEDED"),
]


@pytest.mark.parametrize("failure", TRANSIENT)
def test_transient_codes_are_retried(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock, failure: Fail
) -> None:
    server.queue("GetCompletion", failure, failure)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock)
    def ask() -> str:
        return str(chat_of(client).sample().content)

    assert ask() == REPLY
    assert server.count("GetCompletion") == 3
    assert len(clock.slept) == 2


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize("failure", TRANSIENT)
async def test_async_transient_codes_are_retried(
    server: FakeXaiServer, aclient: xai_sdk.AsyncClient, clock: FakeClock, failure: Fail
) -> None:
    server.queue("GetCompletion", failure, failure)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.asleep, clock=clock)
    async def ask() -> str:
        return str((await chat_of(aclient).sample()).content)

    assert await ask() == REPLY
    assert server.count("GetCompletion") == 3


@pytest.mark.parametrize("failure", FATAL)
def test_fatal_codes_are_raised_at_once(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock, failure: Fail
) -> None:
    server.queue("GetCompletion", failure)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).sample()

    with pytest.raises(grpc.RpcError) as caught:
        ask()
    assert caught.value.code() is failure.code
    assert server.count("GetCompletion") == 1
    assert clock.slept == []


@pytest.mark.anyio
@asyncio_only
@pytest.mark.parametrize("failure", FATAL)
async def test_async_fatal_codes_are_raised_at_once(
    server: FakeXaiServer, aclient: xai_sdk.AsyncClient, clock: FakeClock, failure: Fail
) -> None:
    server.queue("GetCompletion", failure)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.asleep, clock=clock)
    async def ask() -> Any:
        return await chat_of(aclient).sample()

    with pytest.raises(grpc.RpcError):
        await ask()
    assert server.count("GetCompletion") == 1


@pytest.mark.parametrize("failure", TRANSIENT[:1] + FATAL)
def test_classify_gives_the_decorators_answer(
    server: FakeXaiServer, client: xai_sdk.Client, failure: Fail
) -> None:
    """``xretry.classify(error)`` without ``method=`` agrees with the decorator: a gRPC error
    names no method, so it is judged as the billed call it usually is (DEADLINE_EXCEEDED: FATAL,
    the generation may have run)."""
    server.queue("GetCompletion", failure)
    with pytest.raises(grpc.RpcError) as caught:
        chat_of(client).sample()
    expected = Verdict.RETRY if failure.code is Code.RESOURCE_EXHAUSTED else Verdict.FATAL
    if failure.details == CREDITS_SPENT:
        expected = Verdict.FATAL
    assert xretry.classify(caught.value).verdict is expected


# -- the give-up note -----------------------------------------------------------------------------


def test_give_up_note_names_each_attempts_code_and_details(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue(
        "GetCompletion",
        Fail(Code.UNAVAILABLE, "upstream connect error"),
        Fail(Code.INTERNAL, f"backend echoed Bearer {API_KEY}"),
        Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"),
    )

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).sample()

    with pytest.raises(grpc.RpcError) as caught:
        ask()
    note = "\n".join(caught.value.__notes__)
    assert "1. _InactiveRpcError: UNAVAILABLE: upstream connect error (retry" in note
    assert "2. _InactiveRpcError: INTERNAL: backend echoed Bearer *** (retry" in note
    assert "3. _InactiveRpcError: RESOURCE_EXHAUSTED: rate limit reached (retry)" in note
    assert "of RPC that terminated" not in note
    assert API_KEY not in note
    assert server.count("GetCompletion") == 3


# -- the SDK's own channel retries ----------------------------------------------------------------


def test_an_outage_costs_max_attempts_calls_with_sdk_retries_off(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue("GetCompletion", *[Fail(Code.UNAVAILABLE, "down")] * 10)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).sample()

    with pytest.raises(grpc.RpcError):
        ask()
    assert server.count("GetCompletion") == 3


def test_sdk_channel_retries_multiply_and_are_reported_once(
    server: FakeXaiServer, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The SDK's default channel retries UNAVAILABLE 5 times itself: 2 attempts cost 10 calls,
    and xretry says so, once, naming the fix. (The SDK's channel backoff really waits, ~1 s.)"""
    server.queue("GetCompletion", *[Fail(Code.UNAVAILABLE, "down")] * 20)
    caplog.set_level(logging.WARNING, logger="xretry")
    with xai_sdk.Client(
        api_key=API_KEY, api_host=server.address, use_insecure_channel=True
    ) as default_channel:

        @xretry.retry(policy=RetryPolicy(max_attempts=2), sleep=clock.sleep, clock=clock)
        def ask() -> Any:
            return chat_of(default_channel).sample()

        with pytest.raises(grpc.RpcError):
            ask()
    assert server.count("GetCompletion") == 10
    [warning] = sdk_warnings(caplog)
    assert 'channel_options=[("grpc.enable_retries", 0)]' in warning.getMessage()
    assert API_KEY not in caplog.text


def test_no_warning_for_other_codes_or_other_grpc_errors(
    server: FakeXaiServer,
    client: xai_sdk.Client,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.queue("GetCompletion", Fail(Code.RESOURCE_EXHAUSTED, "slow down"))
    caplog.set_level(logging.WARNING, logger="xretry")

    @xretry.retry(policy=RetryPolicy(max_attempts=2), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).sample()

    assert ask().content == REPLY
    assert sdk_warnings(caplog) == []


def test_the_warning_is_logged_once_per_decorated_function(
    server: FakeXaiServer,
    client: xai_sdk.Client,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The channel's options can't be read from the error: the warning comes once, then never."""
    server.queue("GetCompletion", *[Fail(Code.UNAVAILABLE, "down")] * 4)
    caplog.set_level(logging.WARNING, logger="xretry")

    @xretry.retry(policy=RetryPolicy(max_attempts=2), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).sample()

    for _ in range(2):
        with pytest.raises(grpc.RpcError):
            ask()
    assert len(sdk_warnings(caplog)) == 1


# -- stream() -------------------------------------------------------------------------------------


def test_stream_is_retried_before_the_first_chunk(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue("GetCompletionChunk", Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"))

    @xretry.retry(sleep=clock.sleep, clock=clock)
    def ask() -> str:
        chunks = [chunk.content for _response, chunk in chat_of(client).stream()]
        return "".join(chunks)

    assert ask().strip() == REPLY
    assert server.count("GetCompletionChunk") == 2


@pytest.mark.anyio
@asyncio_only
async def test_async_stream_is_retried_before_the_first_chunk(
    server: FakeXaiServer, aclient: xai_sdk.AsyncClient, clock: FakeClock
) -> None:
    server.queue("GetCompletionChunk", Fail(Code.UNAVAILABLE, "upstream connect error"))

    @xretry.retry(sleep=clock.asleep, clock=clock)
    async def ask() -> str:
        chunks = [chunk.content async for _response, chunk in chat_of(aclient).stream()]
        return "".join(chunks)

    assert (await ask()).strip() == REPLY
    assert server.count("GetCompletionChunk") == 2


# -- defer(): never submitted twice ---------------------------------------------------------------

POLL = PollPolicy(first_delay=0.5, interval=1.0, multiplier=1.0, jitter=0.0, timeout=60.0)


def test_the_decorator_around_chat_defer_submits_twice(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    """Why :mod:`xretry.xai_sdk` exists: the whole ``defer()`` reruns, the job is paid twice."""
    server.queue("GetDeferredCompletion", Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"))

    @xretry.retry(sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return chat_of(client).defer()

    assert ask().content == REPLY
    assert server.count("StartDeferredCompletion") == 2


def test_defer_submits_once_and_retries_each_poll(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue(
        "GetDeferredCompletion",
        Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"),
        PENDING,
        Fail(Code.UNAVAILABLE, "upstream connect error"),
        Fail(Code.INTERNAL, "internal error"),
        PENDING,
    )
    response = xretry.xai_sdk.defer(chat_of(client), poll=POLL, sleep=clock.sleep, clock=clock)
    assert response.content == REPLY
    assert server.count("StartDeferredCompletion") == 1
    assert server.count("GetDeferredCompletion") == 6
    assert clock.slept[0] == 0.5  # first_delay, then backoffs and poll gaps
    assert clock.slept.count(1.0) >= 2  # the two PENDING answers


@pytest.mark.anyio
@asyncio_only
async def test_async_defer_submits_once_and_retries_each_poll(
    server: FakeXaiServer, aclient: xai_sdk.AsyncClient, clock: FakeClock
) -> None:
    server.queue(
        "GetDeferredCompletion",
        Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"),
        PENDING,
        Fail(Code.UNAVAILABLE, "upstream connect error"),
    )
    response = await xretry.xai_sdk.adefer(
        chat_of(aclient), poll=POLL, sleep=clock.asleep, clock=clock
    )
    assert response.content == REPLY
    assert server.count("StartDeferredCompletion") == 1
    assert server.count("GetDeferredCompletion") == 4


def test_a_submission_that_was_not_processed_is_retried(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue("StartDeferredCompletion", Fail(Code.RESOURCE_EXHAUSTED, "rate limit reached"))
    response = xretry.xai_sdk.defer(chat_of(client), poll=POLL, sleep=clock.sleep, clock=clock)
    assert response.content == REPLY
    assert server.count("StartDeferredCompletion") == 2  # the first was refused, not processed


def test_a_submission_that_may_have_run_is_not_resent(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue("StartDeferredCompletion", Fail(Code.DEADLINE_EXCEEDED, "deadline exceeded"))
    with pytest.raises(grpc.RpcError):
        xretry.xai_sdk.defer(chat_of(client), poll=POLL, sleep=clock.sleep, clock=clock)
    assert server.count("StartDeferredCompletion") == 1


def test_a_failed_poll_raises_with_the_request_id_and_is_never_resubmitted(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    """Even under an outer ``@xretry.retry``: the DeferredPollError is final."""
    server.queue("GetDeferredCompletion", *[Fail(Code.UNAVAILABLE, "down")] * 6)

    @xretry.retry(policy=RetryPolicy(max_attempts=3), sleep=clock.sleep, clock=clock)
    def ask() -> Any:
        return xretry.xai_sdk.defer(
            chat_of(client),
            policy=RetryPolicy(max_attempts=3),
            poll=POLL,
            sleep=clock.sleep,
            clock=clock,
        )

    with pytest.raises(xretry.DeferredPollError) as caught:
        ask()
    assert caught.value.request_id == REQUEST_ID
    assert "UNAVAILABLE: down" in str(caught.value)
    assert isinstance(caught.value.__cause__, grpc.RpcError)
    assert xretry.classify(caught.value).verdict is Verdict.FATAL
    assert server.count("StartDeferredCompletion") == 1
    assert server.count("GetDeferredCompletion") == 3
    assert API_KEY not in str(caught.value)

    # The job is still there: poll it again, without submitting.
    response = xretry.xai_sdk.defer(
        chat_of(client), request_id=REQUEST_ID, poll=POLL, sleep=clock.sleep, clock=clock
    )
    assert response.content == REPLY
    assert server.count("StartDeferredCompletion") == 1


@pytest.mark.anyio
@asyncio_only
async def test_async_a_failed_poll_raises_with_the_request_id(
    server: FakeXaiServer, aclient: xai_sdk.AsyncClient, clock: FakeClock
) -> None:
    server.queue("GetDeferredCompletion", Fail(Code.NOT_FOUND, "unknown request id"))
    with pytest.raises(xretry.DeferredPollError) as caught:
        await xretry.xai_sdk.adefer(chat_of(aclient), poll=POLL, sleep=clock.asleep, clock=clock)
    assert caught.value.request_id == REQUEST_ID
    assert server.count("StartDeferredCompletion") == 1
    assert server.count("GetDeferredCompletion") == 1


def test_a_job_still_pending_at_the_poll_timeout_raises_with_its_id(
    server: FakeXaiServer, client: xai_sdk.Client, clock: FakeClock
) -> None:
    server.queue("GetDeferredCompletion", *[PENDING] * 10)
    poll = POLL.replace(timeout=3.0)
    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        xretry.xai_sdk.defer(chat_of(client), poll=poll, sleep=clock.sleep, clock=clock)
    assert caught.value.request_id == REQUEST_ID
    assert server.count("StartDeferredCompletion") == 1
    assert server.count("GetDeferredCompletion") == 3  # at 0, 1 and 2 s; the next would pass 3


def test_defer_refuses_what_is_not_an_xai_sdk_chat() -> None:
    with pytest.raises(TypeError, match=r"client\.chat\.create"):
        xretry.xai_sdk.defer(object())


def test_defer_refuses_a_chat_without_messages(client: xai_sdk.Client) -> None:
    with pytest.raises(ValueError, match="no messages"):
        xretry.xai_sdk.defer(client.chat.create(model="grok-4"))
