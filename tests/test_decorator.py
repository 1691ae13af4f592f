"""``@xretry.retry``: the call-site decorator, sync and async, on every error family it knows.

The decorated functions raise what real clients raise: httpx and httpx2 errors (from a
``MockTransport`` client or built directly), xretry's typed errors (from the
``xretry.raise_for_status`` event hook), openai-shaped errors (small look-alike classes: openai is
not imported here) and gRPC-shaped errors (an exception whose ``code()`` returns an enum member, as
the xai-sdk's do; grpc is not imported either). Nothing sleeps: waits are recorded by
``xretry.testing.no_wait()`` or go to an injected fake clock.
"""

from __future__ import annotations

import enum
import functools
import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

import httpx
import httpx2
import pytest

import xretry
from xretry import RetryEvent, RetryPolicy
from xretry.testing import no_wait

from .conftest import FakeClock, Flavour

URL = "https://api.x.ai/v1/chat/completions"
MODELS = "https://api.x.ai/v1/models"
CANARY = "xai-CANARY-9b7e4c2a1f0d"
AUTH = {"authorization": f"Bearer {CANARY}"}
HTTP_LIBS = pytest.mark.parametrize("http", [httpx, httpx2], ids=["httpx", "httpx2"])
QUOTA_BODY = (
    b'{"code": "Some resource has been exhausted", "error": "Your team t1 has either used all '
    b'available credits or reached its monthly spending limit."}'
)


@pytest.fixture(autouse=True)
def _no_real_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """A decorator that slept for real here would be a bug in the test (or in no_wait)."""

    def refuse(seconds: float) -> None:
        raise AssertionError(f"a unit test slept for {seconds}s")

    monkeypatch.setattr(time, "sleep", refuse)


# -- look-alikes of the openai SDK's errors (openai is not imported) ------------------------------


class APIConnectionError(Exception):
    """Shaped like ``openai.APIConnectionError``: the request, and the httpx error as __cause__."""

    def __init__(self, request: Any, cause: BaseException) -> None:
        super().__init__("Connection error.")
        self.request = request
        self.__cause__ = cause


class APITimeoutError(APIConnectionError):
    """Shaped like ``openai.APITimeoutError`` (a subclass of APIConnectionError)."""


class APIStatusError(Exception):
    """Shaped like ``openai.APIStatusError``: ``.response``, ``.status_code`` and ``.request``."""

    def __init__(self, message: str, *, response: Any) -> None:
        super().__init__(message)
        self.response = response
        self.status_code: int = response.status_code
        self.request = response.request


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


def sdk_status_error(
    status: int, *, headers: dict[str, str] | None = None, body: bytes = b"{}"
) -> APIStatusError:
    """What openai 3.x raises for a status: the response (body read) on the exception."""
    request = httpx2.Request("POST", URL, headers=AUTH)
    response = httpx2.Response(status, headers=headers, content=body, request=request)
    cls = {429: RateLimitError}.get(
        status, InternalServerError if status >= 500 else APIStatusError
    )
    return cls(f"Error code: {status}", response=response)


def sdk_connection_error(cause: type[Exception], method: str = "POST") -> APIConnectionError:
    request = httpx2.Request(method, URL, headers=AUTH)
    wrapper = APITimeoutError if "Timeout" in cause.__name__ else APIConnectionError
    return wrapper(request, cause("the network is down", request=request))  # type: ignore[call-arg]


# -- look-alikes of the xai-sdk's gRPC errors (grpc is not imported) ------------------------------


class StatusCode(enum.Enum):
    """Like ``grpc.StatusCode``: members whose ``.name`` is the gRPC code."""

    OK = (0, "ok")
    INVALID_ARGUMENT = (3, "invalid argument")
    DEADLINE_EXCEEDED = (4, "deadline exceeded")
    NOT_FOUND = (5, "not found")
    PERMISSION_DENIED = (7, "permission denied")
    RESOURCE_EXHAUSTED = (8, "resource exhausted")
    UNAVAILABLE = (14, "unavailable")
    UNAUTHENTICATED = (16, "unauthenticated")


class RpcError(Exception):
    """Like grpc's ``_InactiveRpcError``: ``code()`` and ``details()`` methods."""

    def __init__(self, code: StatusCode, details: str = "") -> None:
        super().__init__(f"<RpcError status={code.name} details={details!r}>")
        self._code = code
        self._details = details

    def code(self) -> StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


# -- exceptions as raised by the libraries --------------------------------------------------------


def status_error(
    http: ModuleType,
    status: int,
    *,
    method: str = "POST",
    headers: dict[str, str] | None = None,
    body: bytes = b"{}",
) -> Exception:
    """The HTTPStatusError that ``response.raise_for_status()`` raises, body already read."""
    request = http.Request(method, URL, headers=AUTH)
    response = http.Response(status, headers=headers, content=body, request=request)
    try:
        response.raise_for_status()
    except http.HTTPStatusError as exc:
        return exc  # type: ignore[no-any-return]
    raise AssertionError(f"{status} did not raise")


def typed_error(http: ModuleType, status: int, headers: dict[str, str] | None = None) -> Exception:
    """The typed error that ``xretry.raise_for_status`` raises."""
    request = http.Request("POST", URL, headers=AUTH)
    body = b'{"code": "c", "error": "something went wrong"}'
    response = http.Response(status, headers=headers, content=body, request=request)
    try:
        xretry.raise_for_status(response)
    except xretry.APIStatusError as exc:
        return exc
    raise AssertionError(f"{status} did not raise")


def transport_error(http: ModuleType, name: str, method: str = "POST") -> Exception:
    request = http.Request(method, URL, headers=AUTH)
    return getattr(http, name)("injected", request=request)  # type: ignore[no-any-return]


Factory = Callable[[], Exception]


def _factories() -> list[Any]:
    """(id, factory, retried) for every error family the decorator judges."""
    rows: list[Any] = []
    for http in (httpx, httpx2):
        lib = http.__name__
        for name in ("ConnectError", "ConnectTimeout", "PoolTimeout", "WriteError"):
            rows.append(
                (f"{lib}-{name}-POST", functools.partial(transport_error, http, name), True)
            )
        for name in ("ReadTimeout", "ReadError", "RemoteProtocolError"):
            rows.append(
                (f"{lib}-{name}-GET", functools.partial(transport_error, http, name, "GET"), True)
            )
            # Sent, answer lost: a billed POST is not resent by default.
            rows.append(
                (f"{lib}-{name}-POST", functools.partial(transport_error, http, name), False)
            )
        rows.append(
            (
                f"{lib}-LocalProtocolError",
                functools.partial(transport_error, http, "LocalProtocolError"),
                False,
            )
        )
        for status in (408, 429, 500, 502, 503, 504):
            rows.append(
                (
                    f"{lib}-HTTPStatusError-{status}",
                    functools.partial(status_error, http, status),
                    True,
                )
            )
        for status in (400, 401, 403, 404, 422, 501):
            rows.append(
                (
                    f"{lib}-HTTPStatusError-{status}",
                    functools.partial(status_error, http, status),
                    False,
                )
            )
        rows.append(
            (
                f"{lib}-HTTPStatusError-429-credits",
                functools.partial(status_error, http, 429, body=QUOTA_BODY),
                False,
            )
        )
        rows.append(
            (
                f"{lib}-HTTPStatusError-503-x-should-retry-false",
                functools.partial(status_error, http, 503, headers={"x-should-retry": "false"}),
                False,
            )
        )
        for status in (429, 500, 503):
            rows.append(
                (f"{lib}-xretry-{status}", functools.partial(typed_error, http, status), True)
            )
        for status in (400, 401, 403, 404):
            rows.append(
                (f"{lib}-xretry-{status}", functools.partial(typed_error, http, status), False)
            )
    rows += [
        (
            "openai-APIConnectionError<-ConnectError",
            lambda: sdk_connection_error(httpx2.ConnectError),
            True,
        ),
        (
            "openai-APIConnectionError<-httpx.ConnectError",
            lambda: sdk_connection_error(httpx.ConnectError),
            True,
        ),
        (
            "openai-APITimeoutError<-ConnectTimeout",
            lambda: sdk_connection_error(httpx2.ConnectTimeout),
            True,
        ),
        (
            "openai-APITimeoutError<-ReadTimeout-GET",
            lambda: sdk_connection_error(httpx2.ReadTimeout, "GET"),
            True,
        ),
        (
            "openai-APITimeoutError<-ReadTimeout-POST",
            lambda: sdk_connection_error(httpx2.ReadTimeout),
            False,
        ),
        (
            "openai-APIConnectionError<-httpx.ReadTimeout-POST",
            lambda: sdk_connection_error(httpx.ReadTimeout),
            False,
        ),
        ("openai-RateLimitError", lambda: sdk_status_error(429), True),
        ("openai-InternalServerError-500", lambda: sdk_status_error(500), True),
        ("openai-InternalServerError-503", lambda: sdk_status_error(503), True),
        ("openai-RateLimitError-credits", lambda: sdk_status_error(429, body=QUOTA_BODY), False),
        ("openai-BadRequestError", lambda: sdk_status_error(400), False),
        ("openai-AuthenticationError", lambda: sdk_status_error(401), False),
        ("openai-PermissionDeniedError", lambda: sdk_status_error(403), False),
        ("openai-NotFoundError", lambda: sdk_status_error(404), False),
        (
            "grpc-RESOURCE_EXHAUSTED",
            lambda: RpcError(StatusCode.RESOURCE_EXHAUSTED, "Rate limit"),
            True,
        ),
        (
            "grpc-UNAVAILABLE",
            lambda: RpcError(StatusCode.UNAVAILABLE, "upstream connect error"),
            True,
        ),
        ("grpc-INVALID_ARGUMENT", lambda: RpcError(StatusCode.INVALID_ARGUMENT), False),
        ("grpc-UNAUTHENTICATED", lambda: RpcError(StatusCode.UNAUTHENTICATED), False),
        ("grpc-PERMISSION_DENIED", lambda: RpcError(StatusCode.PERMISSION_DENIED), False),
        ("grpc-NOT_FOUND", lambda: RpcError(StatusCode.NOT_FOUND), False),
        (
            "grpc-RESOURCE_EXHAUSTED-credits",
            lambda: RpcError(
                StatusCode.RESOURCE_EXHAUSTED,
                "Your team has either used all available credits or reached its monthly "
                "spending limit.",
            ),
            False,
        ),
        ("ValueError", lambda: ValueError("bad argument"), False),
        ("KeyError", lambda: KeyError("choices"), False),
        ("RuntimeError", lambda: RuntimeError("bug"), False),
    ]
    return rows


ERRORS = _factories()
RETRIED = [pytest.param(f, id=i) for i, f, retried in ERRORS if retried]
FATAL = [pytest.param(f, id=i) for i, f, retried in ERRORS if not retried]


class Recorder:
    """A hook that keeps every event."""

    def __init__(self, events: list[RetryEvent]) -> None:
        self.events = events

    def __call__(self, event: RetryEvent) -> None:
        self.events.append(event)


class Flaky:
    """A callable that raises ``failures`` fresh exceptions, then returns ``"ok"``."""

    def __init__(self, factory: Factory, failures: int) -> None:
        self.factory = factory
        self.failures = failures
        self.calls = 0
        self.raised: list[Exception] = []

    def __call__(self, *args: Any, **kwargs: Any) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            exc = self.factory()
            self.raised.append(exc)
            raise exc
        return "ok"


# -- what is retried, what is not ----------------------------------------------------------------


@pytest.mark.parametrize("factory", RETRIED)
def test_retryable_errors_are_retried_sync(factory: Factory) -> None:
    flaky = Flaky(factory, failures=2)

    @xretry.retry
    def call() -> str:
        return flaky()

    with no_wait() as schedule:
        assert call() == "ok"
    assert flaky.calls == 3
    assert len(schedule.delays) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("factory", RETRIED)
async def test_retryable_errors_are_retried_async(factory: Factory) -> None:
    flaky = Flaky(factory, failures=2)

    @xretry.retry
    async def call() -> str:
        return flaky()

    with no_wait() as schedule:
        assert await call() == "ok"
    assert flaky.calls == 3
    assert len(schedule.delays) == 2


@pytest.mark.parametrize("factory", FATAL)
def test_fatal_errors_are_raised_after_one_call_sync(factory: Factory) -> None:
    flaky = Flaky(factory, failures=10)

    @xretry.retry(policy=RetryPolicy(max_attempts=4))
    def call() -> str:
        return flaky()

    with no_wait() as schedule, pytest.raises(Exception) as caught:  # noqa: PT011
        call()
    assert flaky.calls == 1
    assert caught.value is flaky.raised[0]
    assert schedule.delays == []


@pytest.mark.anyio
@pytest.mark.parametrize("factory", FATAL)
async def test_fatal_errors_are_raised_after_one_call_async(factory: Factory) -> None:
    flaky = Flaky(factory, failures=10)

    @xretry.retry(policy=RetryPolicy(max_attempts=4))
    async def call() -> str:
        return flaky()

    with no_wait() as schedule, pytest.raises(Exception) as caught:  # noqa: PT011
        await call()
    assert flaky.calls == 1
    assert caught.value is flaky.raised[0]
    assert schedule.delays == []


def test_a_read_timeout_on_post_is_retried_when_the_policy_allows_it() -> None:
    flaky = Flaky(lambda: sdk_connection_error(httpx2.ReadTimeout), failures=2)
    policy = RetryPolicy(idempotent_methods=frozenset({"GET", "POST"}))

    @xretry.retry(policy=policy)
    def call() -> str:
        return flaky()

    with no_wait():
        assert call() == "ok"
    assert flaky.calls == 3


def test_a_call_without_a_request_is_treated_as_a_billed_post() -> None:
    """A bare ReadTimeout (no request to tell the method) may have been billed: not resent."""
    flaky = Flaky(lambda: httpx.ReadTimeout("timed out"), failures=3)

    @xretry.retry
    def call() -> str:
        return flaky()

    with no_wait(), pytest.raises(httpx.ReadTimeout):
        call()
    assert flaky.calls == 1


def test_base_exceptions_pass_through_untouched() -> None:
    calls = 0

    @xretry.retry
    def call() -> None:
        nonlocal calls
        calls += 1
        raise KeyboardInterrupt

    with no_wait(), pytest.raises(KeyboardInterrupt):
        call()
    assert calls == 1


# -- through real clients: MockTransport, raise_for_status, event hooks --------------------------


class Script:
    """A MockTransport handler answering statuses (or raising transport errors) in order."""

    def __init__(self, http: ModuleType, steps: list[Any]) -> None:
        self.http = http
        self.steps = steps
        self.requests: list[Any] = []

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        step = self.steps[min(len(self.requests), len(self.steps)) - 1]
        if isinstance(step, str):
            raise getattr(self.http, step)("injected", request=request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        return self.http.Response(status, headers=headers, json={"code": "c", "error": "e"})


def test_bare_form_retries_status_errors_from_raise_for_status(flavour: Flavour) -> None:
    script = Script(flavour.http, [503, "ConnectError", 502, 200])
    client = flavour.http.Client(transport=flavour.mock(script), headers=AUTH)

    @xretry.retry
    def fetch() -> int:
        response = client.post(URL, json={"model": "grok-4"})
        response.raise_for_status()
        return int(response.status_code)

    with no_wait() as schedule:
        assert fetch() == 200
    assert len(script.requests) == 4
    assert schedule.delays == [0.5, 1.0, 2.0]  # the exact backoff ceilings in test mode


@pytest.mark.anyio
async def test_bare_form_async(flavour: Flavour) -> None:
    script = Script(flavour.http, [503, "ConnectError", 200])
    client = flavour.http.AsyncClient(transport=flavour.mock(script), headers=AUTH)

    @xretry.retry
    async def fetch() -> int:
        response = await client.post(URL, json={"model": "grok-4"})
        response.raise_for_status()
        return int(response.status_code)

    with no_wait() as schedule:
        assert await fetch() == 200
    assert len(script.requests) == 3
    assert schedule.delays == [0.5, 1.0]


def test_arguments_form_follows_its_policy(flavour: Flavour) -> None:
    script = Script(flavour.http, [503])
    client = flavour.http.Client(transport=flavour.mock(script))
    policy = RetryPolicy(max_attempts=3, initial_delay=0.25, multiplier=3.0)

    @xretry.retry(policy=policy)
    def fetch() -> None:
        client.get(MODELS).raise_for_status()

    with no_wait() as schedule, pytest.raises(flavour.http.HTTPStatusError):
        fetch()
    assert len(script.requests) == 3
    assert schedule.delays == [0.25, 0.75]


def test_empty_parentheses_form_uses_the_default_policy(flavour: Flavour) -> None:
    script = Script(flavour.http, [503])
    client = flavour.http.Client(transport=flavour.mock(script))

    @xretry.retry()
    def fetch() -> None:
        client.get(MODELS).raise_for_status()

    with no_wait(), pytest.raises(flavour.http.HTTPStatusError):
        fetch()
    assert len(script.requests) == RetryPolicy().max_attempts


@pytest.mark.anyio
async def test_arguments_form_async(flavour: Flavour) -> None:
    script = Script(flavour.http, [429])
    client = flavour.http.AsyncClient(transport=flavour.mock(script))

    @xretry.retry(policy=RetryPolicy(max_attempts=2))
    async def fetch() -> None:
        (await client.get(MODELS)).raise_for_status()

    with no_wait() as schedule, pytest.raises(flavour.http.HTTPStatusError):
        await fetch()
    assert len(script.requests) == 2
    assert schedule.delays == [0.5]


def test_typed_errors_from_the_event_hook_are_retried(flavour: Flavour) -> None:
    script = Script(flavour.http, [429, 503, 200])
    client = flavour.http.Client(
        transport=flavour.mock(script), event_hooks={"response": [xretry.raise_for_status]}
    )

    @xretry.retry
    def fetch() -> int:
        return int(client.post(URL, json={}).status_code)

    with no_wait():
        assert fetch() == 200
    assert len(script.requests) == 3


@pytest.mark.anyio
async def test_typed_errors_from_the_async_event_hook_are_retried(flavour: Flavour) -> None:
    script = Script(flavour.http, [503, 429, 200])
    client = flavour.http.AsyncClient(
        transport=flavour.mock(script), event_hooks={"response": [xretry.araise_for_status]}
    )

    @xretry.retry
    async def fetch() -> int:
        return int((await client.post(URL, json={})).status_code)

    with no_wait():
        assert await fetch() == 200
    assert len(script.requests) == 3


@pytest.mark.parametrize("status", [400, 401, 404])
def test_typed_fatal_errors_from_the_event_hook_after_one_request(
    flavour: Flavour, status: int
) -> None:
    script = Script(flavour.http, [status, 200])
    client = flavour.http.Client(
        transport=flavour.mock(script), event_hooks={"response": [xretry.raise_for_status]}
    )

    @xretry.retry
    def fetch() -> int:
        return int(client.post(URL, json={}).status_code)

    with no_wait(), pytest.raises(xretry.APIStatusError) as caught:
        fetch()
    assert caught.value.status_code == status
    assert len(script.requests) == 1


# -- Retry-After, read from the exception's response ---------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda h: status_error(httpx, 429, headers=h), id="httpx-HTTPStatusError"),
        pytest.param(lambda h: status_error(httpx2, 429, headers=h), id="httpx2-HTTPStatusError"),
        pytest.param(lambda h: typed_error(httpx, 429, h), id="xretry-RateLimitError"),
        pytest.param(lambda h: typed_error(httpx2, 503, h), id="xretry-ServerError"),
        pytest.param(lambda h: sdk_status_error(429, headers=h), id="openai-RateLimitError"),
        pytest.param(lambda h: sdk_status_error(503, headers=h), id="openai-503"),
    ],
)
@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "1250"}, 1.25),
        ({"retry-after-ms": "700", "retry-after": "9"}, 0.7),  # the more precise header wins
    ],
)
def test_retry_after_is_read_from_the_exceptions_response(
    factory: Callable[[dict[str, str]], Exception], headers: dict[str, str], expected: float
) -> None:
    flaky = Flaky(lambda: factory(headers), failures=2)

    @xretry.retry(gate=False)  # each call honours its hints as sent (the gate: test_gate.py)
    def call() -> str:
        return flaky()

    with no_wait() as schedule:
        assert call() == "ok"
    assert schedule.delays == [expected, expected]


def test_injected_sleep_and_clock_receive_the_server_hint(clock: FakeClock) -> None:
    steps = iter([status_error(httpx2, 429, headers={"retry-after": "2"}), sdk_status_error(503)])

    @xretry.retry(sleep=clock.sleep, clock=clock, gate=False)
    def call() -> str:
        step = next(steps, None)
        if step is not None:
            raise step
        return "ok"

    assert call() == "ok"
    # The 429's hint as sent, then jittered backoff for the 503 (at most its 1 s ceiling).
    assert clock.slept[0] == 2.0
    assert len(clock.slept) == 2
    assert 0.0 <= clock.slept[1] <= 1.0


@pytest.mark.anyio
async def test_injected_async_sleep_receives_the_server_hint(clock: FakeClock) -> None:
    flaky = Flaky(lambda: sdk_status_error(429, headers={"retry-after-ms": "1500"}), failures=1)

    @xretry.retry(sleep=clock.asleep, clock=clock)
    async def call() -> str:
        return flaky()

    assert await call() == "ok"
    assert clock.slept == [1.5]


def test_a_deadline_on_the_injected_clock_stops_the_retries(clock: FakeClock) -> None:
    flaky = Flaky(lambda: sdk_status_error(429, headers={"retry-after": "4"}), failures=10)

    @xretry.retry(
        policy=RetryPolicy(max_attempts=10, deadline=10.0),
        sleep=clock.sleep,
        clock=clock,
        gate=False,
    )
    def call() -> str:
        return flaky()

    with pytest.raises(RateLimitError) as caught:
        call()
    # 4 s + 4 s fit in the 10 s deadline; a third 4 s wait would not.
    assert clock.slept == [4.0, 4.0]
    assert flaky.calls == 3
    assert "deadline=10s" in "".join(caught.value.__notes__)


def test_a_hint_longer_than_max_retry_after_stops_at_once() -> None:
    flaky = Flaky(lambda: sdk_status_error(429, headers={"retry-after": "600"}), failures=5)

    @xretry.retry
    def call() -> str:
        return flaky()

    with no_wait() as schedule, pytest.raises(RateLimitError) as caught:
        call()
    assert flaky.calls == 1
    assert schedule.delays == []
    assert caught.value is flaky.raised[0]


def test_a_give_up_on_the_first_attempt_still_explains_itself() -> None:
    flaky = Flaky(lambda: sdk_status_error(429, headers={"retry-after": "600"}), failures=5)

    @xretry.retry
    def call() -> str:
        return flaky()

    with no_wait(), pytest.raises(RateLimitError) as caught:
        call()
    notes = getattr(caught.value, "__notes__", [])
    assert any("max_retry_after" in note for note in notes), notes


# -- giving up: the original exception, with a note ------------------------------------------------


@pytest.mark.parametrize(
    "factory",
    [
        pytest.param(lambda: status_error(httpx, 503), id="httpx-HTTPStatusError"),
        pytest.param(lambda: transport_error(httpx2, "ConnectError"), id="httpx2-ConnectError"),
        pytest.param(lambda: typed_error(httpx, 502), id="xretry-ServerError"),
        pytest.param(lambda: sdk_connection_error(httpx2.ConnectError), id="openai-connection"),
        pytest.param(lambda: sdk_status_error(429), id="openai-RateLimitError"),
        pytest.param(lambda: RpcError(StatusCode.UNAVAILABLE), id="grpc-UNAVAILABLE"),
    ],
)
def test_give_up_reraises_the_original_exception_with_a_note(factory: Factory) -> None:
    flaky = Flaky(factory, failures=10)

    @xretry.retry(policy=RetryPolicy(max_attempts=3))
    def call() -> str:
        return flaky()

    with no_wait(), pytest.raises(Exception) as caught:  # noqa: PT011
        call()
    error = caught.value
    assert flaky.calls == 3
    assert error is flaky.raised[-1]  # the very object the last attempt raised
    assert type(error) is type(flaky.raised[0])
    # Re-raised as is: not wrapped, not chained to the earlier attempts.
    assert error.__cause__ is flaky.raised[-1].__cause__
    assert error.__context__ is None or error.__context__ not in flaky.raised[:-1]
    notes = error.__notes__
    assert len(notes) == 1
    lines = notes[0].splitlines()
    assert lines[0].startswith("xretry: 3 attempts")
    assert "max_attempts=3 reached" in lines[0]
    assert [line.split(".")[0].strip() for line in lines[1:]] == ["1", "2", "3"]
    assert all(type(error).__name__ in line for line in lines[1:])
    assert "slept 0.500s" in lines[1]
    assert "slept 1.000s" in lines[2]
    # Earlier attempts' exceptions are left alone: only the raised one carries the note.
    assert all(not hasattr(e, "__notes__") for e in flaky.raised[:-1])


@pytest.mark.anyio
async def test_give_up_async_keeps_the_exception_and_adds_a_note(flavour: Flavour) -> None:
    script = Script(flavour.http, ["ConnectError"])
    client = flavour.http.AsyncClient(transport=flavour.mock(script))

    @xretry.retry(policy=RetryPolicy(max_attempts=2))
    async def fetch() -> None:
        await client.get(MODELS)

    with no_wait(), pytest.raises(flavour.http.ConnectError) as caught:
        await fetch()
    assert type(caught.value) is flavour.http.ConnectError
    assert caught.value.__notes__[0].startswith("xretry: 2 attempts")
    assert len(script.requests) == 2


def test_a_callers_own_notes_are_kept() -> None:
    def failing() -> Exception:
        exc = transport_error(httpx, "ConnectError")
        exc.add_note("added by the caller")
        return exc

    flaky = Flaky(failing, failures=5)

    @xretry.retry(policy=RetryPolicy(max_attempts=2))
    def call() -> str:
        return flaky()

    with no_wait(), pytest.raises(httpx.ConnectError) as caught:
        call()
    assert caught.value.__notes__[0] == "added by the caller"
    assert caught.value.__notes__[1].startswith("xretry: 2 attempts")


# -- secrets ---------------------------------------------------------------------------------------


def test_the_api_key_never_reaches_notes_logs_or_hooks(
    flavour: Flavour, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="xretry")
    events: list[RetryEvent] = []

    def echo_key(request: Any) -> Any:
        # A server (or proxy) that echoes the credentials into its errors.
        raise flavour.http.ConnectError(f"refused: {request.headers['authorization']}")

    client = flavour.http.Client(
        transport=flavour.mock(echo_key), headers=AUTH, params={"api_key": CANARY}
    )

    @xretry.retry(policy=RetryPolicy(max_attempts=3), hooks=[Recorder(events)])
    def fetch() -> None:
        client.post(URL, json={"key": CANARY})

    with no_wait(), pytest.raises(flavour.http.ConnectError) as caught:
        fetch()
    # The exception keeps its type, but its own text is masked as it passes through xretry...
    assert str(caught.value) == "refused: ***"
    notes = "\n".join(caught.value.__notes__)
    assert "refused: ***" in notes  # ...and so is everything xretry writes
    assert CANARY not in notes
    assert caplog.records, "the retries and the give-up are logged"
    assert CANARY not in caplog.text
    assert len(events) == 3
    assert all(CANARY not in repr(event) for event in events)
    assert events[0].url == URL  # no query string


def test_the_api_key_is_masked_in_notes_for_sdk_errors(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="xretry")

    def echoing() -> Exception:
        error = sdk_status_error(503)
        error.args = (f"Error code: 503 - invalid key {CANARY}",)
        return error

    flaky = Flaky(echoing, failures=5)

    @xretry.retry(policy=RetryPolicy(max_attempts=2))
    def call() -> str:
        return flaky()

    with no_wait(), pytest.raises(InternalServerError) as caught:
        call()
    assert CANARY not in "".join(caught.value.__notes__)
    assert CANARY not in caplog.text


# -- hooks and logging -------------------------------------------------------------------------


def test_hooks_and_logs_name_the_request_or_the_function(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="xretry")
    events: list[RetryEvent] = []

    @xretry.retry(policy=RetryPolicy(max_attempts=2), hooks=[Recorder(events)])
    def grpc_call() -> None:
        raise RpcError(StatusCode.UNAVAILABLE)

    with no_wait(), pytest.raises(RpcError):
        grpc_call()
    assert [e.kind for e in events] == ["retry", "give_up"]
    assert events[0].method == "CALL"
    assert events[0].url.endswith(
        "test_hooks_and_logs_name_the_request_or_the_function.<locals>.grpc_call"
    )
    assert [r.levelname for r in caplog.records if r.name == "xretry"] == ["DEBUG", "WARNING"]

    events.clear()

    @xretry.retry(policy=RetryPolicy(max_attempts=2), hooks=[Recorder(events)])
    def http_call() -> None:
        raise status_error(httpx, 503, method="PUT")

    with no_wait(), pytest.raises(httpx.HTTPStatusError):
        http_call()
    # The method and URL come from the exception's request; an attempt that raised has no
    # status_code (the status is in the reason).
    assert [(e.kind, e.method, e.url) for e in events] == [
        ("retry", "PUT", URL),
        ("give_up", "PUT", URL),
    ]
    assert all(e.status_code is None for e in events)
    assert all((e.error or "").startswith("HTTPStatusError") for e in events)
    assert all(e.reason.startswith("503 Service Unavailable") for e in events)


def test_first_try_success_costs_no_events() -> None:
    events: list[RetryEvent] = []

    @xretry.retry(hooks=[Recorder(events)])
    def call() -> str:
        return "ok"

    assert call() == "ok"
    assert events == []


# -- what the decorator refuses, and what it keeps -------------------------------------------------


def test_a_generator_function_is_refused() -> None:
    def items() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*items"):
        xretry.retry(items)
    with pytest.raises(TypeError, match="generator"):
        xretry.retry(policy=RetryPolicy())(items)


def test_an_async_generator_function_is_refused() -> None:
    async def items() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=r"generator function .*items"):
        xretry.retry(items)
    with pytest.raises(TypeError, match="generator"):
        xretry.retry()(items)


def test_invalid_arguments_are_refused() -> None:
    def call() -> None:
        pass

    with pytest.raises(ValueError, match="policy"):
        xretry.retry(policy={"max_attempts": 2})(call)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="gate"):
        xretry.retry(gate=object())(call)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="hooks"):
        xretry.retry(hooks=[42])(call)  # type: ignore[list-item]


def test_functools_wraps_metadata_is_kept() -> None:
    def ask(prompt: str, *, model: str = "grok-4") -> str:
        """Ask Grok."""
        return f"{model}: {prompt}"

    async def aask(prompt: str, *, model: str = "grok-4") -> str:
        """Ask Grok, asynchronously."""
        return f"{model}: {prompt}"

    for original, decorated in [
        (ask, xretry.retry(ask)),
        (ask, xretry.retry(policy=RetryPolicy(max_attempts=2))(ask)),
        (aask, xretry.retry(aask)),
    ]:
        assert decorated is not original
        assert decorated.__name__ == original.__name__
        assert decorated.__qualname__ == original.__qualname__
        assert decorated.__doc__ == original.__doc__
        assert decorated.__module__ == original.__module__
        assert decorated.__wrapped__ is original  # type: ignore[attr-defined]
        assert inspect.signature(decorated) == inspect.signature(original)
    assert not inspect.iscoroutinefunction(xretry.retry(ask))
    assert inspect.iscoroutinefunction(xretry.retry(aask))  # frameworks look at this
    assert xretry.retry(ask)("hi", model="grok-3") == "grok-3: hi"


def test_methods_can_be_decorated() -> None:
    class Client:
        def __init__(self) -> None:
            self.calls = 0

        @xretry.retry
        def ask(self, prompt: str) -> str:
            self.calls += 1
            if self.calls == 1:
                raise RpcError(StatusCode.UNAVAILABLE)
            return prompt.upper()

    client = Client()
    with no_wait():
        assert client.ask("hi") == "HI"
    assert client.calls == 2


# -- retries never multiply ------------------------------------------------------------------------


def test_decorator_over_a_retry_transport_makes_at_most_max_attempts(flavour: Flavour) -> None:
    script = Script(flavour.http, [503])
    transport = flavour.RetryTransport(flavour.mock(script), policy=RetryPolicy(max_attempts=4))
    client = flavour.http.Client(transport=transport)
    policy = RetryPolicy(max_attempts=3)

    @xretry.retry(policy=policy)
    def fetch() -> None:
        client.get(MODELS).raise_for_status()

    with no_wait() as schedule, pytest.raises(flavour.http.HTTPStatusError):
        fetch()
    assert len(script.requests) == policy.max_attempts
    assert len(schedule.delays) == policy.max_attempts - 1  # only the decorator waited

    # Outside a decorated call the same transport retries again, on its own policy.
    script.requests.clear()
    with no_wait():
        assert client.get(MODELS).status_code == 503
    assert len(script.requests) == 4


def test_decorator_over_a_retry_transport_with_the_typed_event_hook(flavour: Flavour) -> None:
    script = Script(flavour.http, [429])
    client = flavour.http.Client(
        transport=flavour.RetryTransport(flavour.mock(script)),
        event_hooks={"response": [xretry.raise_for_status]},
    )

    @xretry.retry
    def fetch() -> None:
        client.post(URL, json={})

    with no_wait(), pytest.raises(xretry.RateLimitError):
        fetch()
    assert len(script.requests) == RetryPolicy().max_attempts


@pytest.mark.anyio
async def test_async_decorator_over_a_retry_transport_makes_at_most_max_attempts(
    flavour: Flavour,
) -> None:
    script = Script(flavour.http, [503])
    transport = flavour.AsyncRetryTransport(
        flavour.mock(script), policy=RetryPolicy(max_attempts=4)
    )
    client = flavour.http.AsyncClient(transport=transport)
    policy = RetryPolicy(max_attempts=3)

    @xretry.retry(policy=policy)
    async def fetch() -> None:
        (await client.get(MODELS)).raise_for_status()

    with no_wait(), pytest.raises(flavour.http.HTTPStatusError):
        await fetch()
    assert len(script.requests) == policy.max_attempts

    script.requests.clear()
    with no_wait():
        assert (await client.get(MODELS)).status_code == 503
    assert len(script.requests) == 4


def test_the_transport_steps_aside_even_when_the_call_fails_with_a_connection_error(
    flavour: Flavour,
) -> None:
    script = Script(flavour.http, ["ConnectError"])
    client = flavour.http.Client(transport=flavour.RetryTransport(flavour.mock(script)))

    @xretry.retry(policy=RetryPolicy(max_attempts=2))
    def fetch() -> None:
        client.get(MODELS)

    with no_wait(), pytest.raises(flavour.http.ConnectError) as caught:
        fetch()
    assert len(script.requests) == 2
    # One note, the decorator's: the transport did not retry (nor annotate) inside the call.
    assert len(caught.value.__notes__) == 1


def test_nested_decorated_calls_do_not_multiply_attempts() -> None:
    calls = 0

    @xretry.retry
    def inner() -> None:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    @xretry.retry
    def outer() -> None:
        inner()

    with no_wait(), pytest.raises(httpx.ConnectError):
        outer()
    assert calls <= RetryPolicy().max_attempts
