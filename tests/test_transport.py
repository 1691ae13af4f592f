"""RetryTransport and AsyncRetryTransport, httpx and httpx2: one scenario table, two drivers.

Each scenario is a script of server answers; it runs through the sync and the async transport, over
httpx and over httpx2, with an injected sleeper and clock (nothing sleeps). Behaviours that only
make sense for one driver have tests of their own below the table.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest

import xretry
import xretry.httpx2
from xretry import RetryPolicy, Verdict

from .conftest import FLAVOURS, FakeClock, Flavour

URL = "https://api.x.ai/v1/chat/completions"
MODELS = "https://api.x.ai/v1/models"
CANARY = "xai-CANARY-5f0c1e2d3a4b"


class Tracked:
    """Closing-aware response bodies for both libraries, sync and async."""

    def __init__(self, flavour: Flavour, body: bytes = b"{}") -> None:
        self.flavour = flavour
        self.body = body
        self.closed = False
        self.read = False

    def stream(self) -> Any:
        tracked = self
        http = self.flavour.http

        class Stream(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc,name-defined]
            def __iter__(self) -> Iterator[bytes]:
                tracked.read = True
                yield tracked.body

            async def __aiter__(self) -> Any:
                tracked.read = True
                yield tracked.body

            def close(self) -> None:
                tracked.closed = True

            async def aclose(self) -> None:
                tracked.closed = True

        return Stream()


@dataclass
class Server:
    """Answers from a script: a status, (status, headers), an exception class, or a callable."""

    flavour: Flavour
    script: Sequence[Any]
    requests: list[Any] = field(default_factory=list)
    bodies: list[Tracked] = field(default_factory=list)

    def __call__(self, request: Any) -> Any:
        self.requests.append(request)
        step = self.script[min(len(self.requests), len(self.script)) - 1]
        if isinstance(step, type) and issubclass(step, BaseException):
            if step.__module__.startswith("httpx"):
                raise step("injected", request=request)  # type: ignore[call-arg]
            raise step()
        if callable(step):
            return step(request)
        status, headers = step if isinstance(step, tuple) else (step, {})
        tracked = Tracked(self.flavour, b'{"code": "c", "error": "e"}')
        self.bodies.append(tracked)
        return self.flavour.http.Response(status, headers=headers, stream=tracked.stream())


@dataclass
class Outcome:
    response: Any
    error: BaseException | None
    server: Server
    slept: list[float]


def run_sync(
    flavour: Flavour,
    script: Sequence[Any],
    *,
    policy: RetryPolicy | None = None,
    clock: FakeClock | None = None,
    method: str = "POST",
    url: str = URL,
    gate: Any = None,
    **request: Any,
) -> Outcome:
    clock = clock or FakeClock()
    server = Server(flavour, script)
    transport = flavour.RetryTransport(
        flavour.mock(server), policy=policy, sleep=clock.sleep, clock=clock, gate=gate
    )
    with flavour.http.Client(transport=transport) as client:
        try:
            response = client.request(method, url, **request)
        except Exception as exc:
            return Outcome(None, exc, server, clock.slept)
    return Outcome(response, None, server, clock.slept)


async def run_async(
    flavour: Flavour,
    script: Sequence[Any],
    *,
    policy: RetryPolicy | None = None,
    clock: FakeClock | None = None,
    method: str = "POST",
    url: str = URL,
    gate: Any = None,
    **request: Any,
) -> Outcome:
    clock = clock or FakeClock()
    server = Server(flavour, script)
    transport = flavour.AsyncRetryTransport(
        flavour.mock(server), policy=policy, sleep=clock.asleep, clock=clock, gate=gate
    )
    async with flavour.http.AsyncClient(transport=transport) as client:
        try:
            response = await client.request(method, url, **request)
        except Exception as exc:
            return Outcome(None, exc, server, clock.slept)
    return Outcome(response, None, server, clock.slept)


NO_JITTER = RetryPolicy(jitter=0.0, initial_delay=1.0, multiplier=2.0, max_delay=30.0)


@dataclass(frozen=True)
class Scenario:
    id: str
    script: tuple[Any, ...]
    #: how many requests the server sees
    requests: int = 1
    method: str = "POST"
    policy: RetryPolicy = NO_JITTER
    #: expected status of the returned response, or the exception type raised
    expect: int | type[BaseException] = 200
    slept: tuple[float, ...] = ()
    gave_up: bool = False
    #: ``False``: the transport without a gate (each request honours its own hints as sent).
    gate: bool = True


SCENARIOS = [
    Scenario("first-try-success", (200,)),
    Scenario(
        "429-retry-after-ms", ((429, {"retry-after-ms": "250"}), 200), requests=2, slept=(0.25,)
    ),
    # With the gate, a whole-second retry-after: 3 is "more than 2 s" (it is rounded up): the
    # certain 2 s are everyone's cooldown, then pacing decides. Without one, it is honoured as sent.
    Scenario(
        "429-retry-after-seconds", ((429, {"retry-after": "3"}), 200), requests=2, slept=(2.0,)
    ),
    Scenario(
        "429-retry-after-seconds-no-gate",
        ((429, {"retry-after": "3"}), 200),
        requests=2,
        slept=(3.0,),
        gate=False,
    ),
    Scenario(
        "429-retry-after-1-no-gate",
        ((429, {"retry-after": "1"}), 200),
        requests=2,
        slept=(1.0,),
        gate=False,
    ),
    Scenario(
        "429-retry-after-ms-no-gate",
        ((429, {"retry-after-ms": "250"}), 200),
        requests=2,
        slept=(0.25,),
        gate=False,
    ),
    Scenario(
        "429-ratelimit-reset",
        ((429, {"x-ratelimit-reset-requests": "1s", "x-ratelimit-remaining-requests": "0"}), 200),
        requests=2,
        slept=(1.0,),
    ),
    Scenario("429-no-hint-backoff", (429, 429, 200), requests=3, slept=(1.0, 2.0)),
    Scenario("5xx-burst-recovers", (500, 502, 503, 504, 200), requests=5, slept=(1, 2, 4, 8)),
    Scenario("408-retried", (408, 200), requests=2, slept=(1.0,)),
    Scenario(
        "outage-returns-last-503",
        (503,),
        policy=NO_JITTER.replace(max_attempts=3),
        expect=503,
        requests=3,
        slept=(1.0, 2.0),
        gave_up=True,
    ),
    Scenario(
        "garbage-hints-fall-back-to-backoff",
        ((429, {"retry-after": "soon", "retry-after-ms": "NaN"}), 200),
        requests=2,
        slept=(1.0,),
    ),
    Scenario("x-should-retry-false", ((503, {"x-should-retry": "false"}),), expect=503),
    Scenario(
        "x-should-retry-true", ((409, {"x-should-retry": "true"}), 200), requests=2, slept=(1,)
    ),
    *[Scenario(f"fatal-{s}", (s, 200), expect=s) for s in (400, 401, 403, 404, 405, 415, 422)],
    Scenario("501-not-retried", (501, 200), expect=501),
    Scenario("connect-error-post", ("ConnectError", 200), requests=2, slept=(1.0,)),
    Scenario("read-timeout-get", ("ReadTimeout", 200), method="GET", requests=2, slept=(1.0,)),
    Scenario("read-timeout-post-not-resent", ("ReadTimeout", 200), expect=Exception),
    Scenario(
        "read-timeout-post-allowed",
        ("ReadTimeout", 200),
        policy=NO_JITTER.replace(idempotent_methods={"GET", "POST"}),
        requests=2,
        slept=(1.0,),
    ),
    Scenario(
        "connect-error-exhausted-reraises",
        ("ConnectError",),
        policy=NO_JITTER.replace(max_attempts=2),
        expect=Exception,
        requests=2,
        slept=(1.0,),
        gave_up=True,
    ),
    Scenario("non-transport-error-propagates", (ValueError, 200), expect=ValueError),
    Scenario(
        "hint-above-max-retry-after-stops-now",
        ((429, {"retry-after": "3600"}), 200),
        expect=429,
        gave_up=True,
    ),
    Scenario(
        "huge-hint-stops-now",
        ((429, {"retry-after": "9" * 40}), 200),
        expect=429,
        gave_up=True,
    ),
    Scenario(
        "deadline-stops-before-overshooting",
        (503,),
        policy=NO_JITTER.replace(deadline=5.0),
        expect=503,
        requests=3,
        slept=(1.0, 2.0),  # at 3 s, the next 4 s sleep would end past the 5 s deadline: stop
        gave_up=True,
    ),
    Scenario(
        "hint-longer-than-deadline-stops-now",
        ((429, {"retry-after": "10"}), 200),
        policy=NO_JITTER.replace(deadline=5.0),
        expect=429,
        gave_up=True,
    ),
]


def _resolve(flavour: Flavour, script: Sequence[Any]) -> list[Any]:
    """Exception names in a script become the flavour's own exception classes."""
    return [getattr(flavour.http, s) if isinstance(s, str) else s for s in script]


def _check(scenario: Scenario, flavour: Flavour, outcome: Outcome) -> None:
    assert len(outcome.server.requests) == scenario.requests
    assert outcome.slept == pytest.approx(list(scenario.slept))
    if isinstance(scenario.expect, int):
        assert outcome.error is None, outcome.error
        assert outcome.response.status_code == scenario.expect
        history = outcome.response.extensions["xretry"]
        assert isinstance(history, xretry.RetryHistory)
        assert history.attempt_count == scenario.requests
        assert history.gave_up is scenario.gave_up
        assert [a.delay for a in history.attempts[:-1]] == pytest.approx(list(scenario.slept))
        assert history.attempts[-1].delay is None
        # Every response xretry threw away was closed; the one handed over was not.
        assert all(b.closed for b in outcome.server.bodies[:-1])
    else:
        assert isinstance(outcome.error, scenario.expect), outcome.error
        if scenario.gave_up:
            notes = getattr(outcome.error, "__notes__", [])
            assert any(f"{scenario.requests} attempts" in n for n in notes), notes


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
def test_sync(scenario: Scenario, flavour: Flavour) -> None:
    outcome = run_sync(
        flavour,
        _resolve(flavour, scenario.script),
        policy=scenario.policy,
        method=scenario.method,
        url=MODELS if scenario.method == "GET" else URL,
        gate=None if scenario.gate else False,
        json={"model": "grok-4"} if scenario.method == "POST" else None,
    )
    _check(scenario, flavour, outcome)


@pytest.mark.anyio
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.id)
async def test_async(scenario: Scenario, flavour: Flavour) -> None:
    outcome = await run_async(
        flavour,
        _resolve(flavour, scenario.script),
        policy=scenario.policy,
        method=scenario.method,
        url=MODELS if scenario.method == "GET" else URL,
        gate=None if scenario.gate else False,
        json={"model": "grok-4"} if scenario.method == "POST" else None,
    )
    _check(scenario, flavour, outcome)


# -- behaviours beyond the table -------------------------------------------------------------------


def test_quota_429_is_not_retried(flavour: Flavour) -> None:
    body = (
        b'{"code": "x", "error": "Your team t1 has either used all available credits or '
        b'reached its monthly spending limit."}'
    )

    def quota(request: Any) -> Any:
        return flavour.http.Response(429, content=body)

    outcome = run_sync(flavour, [quota, 200], json={})
    assert outcome.response.status_code == 429
    assert len(outcome.server.requests) == 1
    assert outcome.response.extensions["xretry"].attempts[0].verdict is Verdict.FATAL
    with pytest.raises(xretry.QuotaExhaustedError):
        xretry.raise_for_status(outcome.response)


def test_request_body_is_replayed_identically(flavour: Flavour) -> None:
    outcome = run_sync(flavour, [503, 503, 200], json={"model": "grok-4", "messages": []})
    bodies = [r.read() for r in outcome.server.requests]
    assert len(bodies) == 3
    assert bodies[0] == bodies[1] == bodies[2] == b'{"model":"grok-4","messages":[]}'


def test_one_shot_streaming_body_is_never_retried(flavour: Flavour) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"model": '
        yield b'"grok-4"}'

    outcome = run_sync(flavour, [503, 200], content=body())
    assert outcome.response.status_code == 503
    assert len(outcome.server.requests) == 1
    assert "one-shot" in outcome.response.extensions["xretry"].attempts[0].reason


def test_successful_streaming_body_is_not_touched(flavour: Flavour) -> None:
    server = Server(flavour, [200])
    transport = flavour.RetryTransport(flavour.mock(server))
    with (
        flavour.http.Client(transport=transport) as client,
        client.stream("GET", MODELS) as response,
    ):
        assert server.bodies[0].read is False
        assert response.read() == b'{"code": "c", "error": "e"}'


def test_per_request_override(flavour: Flavour) -> None:
    outcome = run_sync(flavour, [503], extensions={"xretry": {"max_attempts": 2}}, json={})
    assert len(outcome.server.requests) == 2
    outcome = run_sync(flavour, [503], extensions={"xretry": False}, json={})
    assert len(outcome.server.requests) == 1
    outcome = run_sync(flavour, [503], extensions={"xretry": RetryPolicy(max_attempts=3)}, json={})
    assert len(outcome.server.requests) == 3
    outcome = run_sync(flavour, [503], extensions={"xretry": {"max_atempts": 2}}, json={})
    assert isinstance(outcome.error, ValueError)
    assert "max_atempts" in str(outcome.error)


def test_deadline_caps_each_attempts_timeouts(flavour: Flavour) -> None:
    clock = FakeClock()
    seen: list[dict[str, float]] = []

    def slow_503(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        clock.now += 1.5  # the attempt itself takes 1.5 s of the deadline
        return flavour.http.Response(503)

    policy = NO_JITTER.replace(deadline=10.0, initial_delay=0.5)
    outcome = run_sync(flavour, [slow_503], policy=policy, clock=clock, timeout=30.0, json={})
    assert outcome.response.status_code == 503
    assert seen[0] == {"connect": 10.0, "read": 10.0, "write": 10.0, "pool": 10.0}
    # 1.5 s attempt + 0.5 s sleep: 8 s left for the second attempt, capped below the 30 s timeout.
    assert seen[1]["read"] == pytest.approx(8.0)
    assert clock.now - 1000.0 <= 10.0


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unreadable_429_body_is_still_a_429_and_is_closed(flavour: Flavour, method: str) -> None:
    """A 429 means the server did not process the request: even a POST is retried."""
    http = flavour.http

    class Broken(http.SyncByteStream):  # type: ignore[misc,name-defined]
        closed = False

        def __iter__(self) -> Iterator[bytes]:
            yield b'{"code": '
            raise http.ReadError("connection reset mid-body")

        def close(self) -> None:
            Broken.closed = True

    def broken_429(request: Any) -> Any:
        return http.Response(429, headers={"content-length": "100"}, stream=Broken())

    outcome = run_sync(flavour, [broken_429, 200], method=method, url=MODELS)
    assert outcome.response.status_code == 200
    assert Broken.closed
    first = outcome.response.extensions["xretry"].attempts[0]
    assert (first.status_code, first.verdict) == (429, Verdict.RETRY)


def test_a_large_or_unsized_429_body_is_not_read(flavour: Flavour) -> None:
    tracked: list[Tracked] = []

    def big_429(request: Any) -> Any:
        body = Tracked(flavour, b"x" * 100)
        tracked.append(body)
        headers = {} if len(tracked) == 1 else {"content-length": str(10**9)}
        return flavour.http.Response(429, headers=headers, stream=body.stream())

    outcome = run_sync(flavour, [big_429, big_429, 200], method="GET", url=MODELS)
    assert outcome.response.status_code == 200
    assert [t.read for t in tracked] == [False, False]
    assert all(t.closed for t in tracked)


def test_hooks_get_events_and_a_failing_hook_costs_nothing(
    flavour: Flavour, caplog: pytest.LogCaptureFixture
) -> None:
    events: list[xretry.RetryEvent] = []

    def broken(event: xretry.RetryEvent) -> None:
        raise RuntimeError("metrics exporter down")

    server = Server(flavour, [503, 503])
    clock = FakeClock()
    transport = flavour.RetryTransport(
        flavour.mock(server),
        policy=NO_JITTER.replace(max_attempts=2),
        hooks=[broken, events.append],
        sleep=clock.sleep,
        clock=clock,
    )
    with flavour.http.Client(transport=transport) as client:
        response = client.get(MODELS + "?token=secret-in-query")
    assert response.status_code == 503
    assert [e.kind for e in events] == ["retry", "give_up"]
    retry, give_up = events
    assert (retry.attempt, retry.status_code, retry.delay) == (1, 503, 1.0)
    assert (give_up.attempt, give_up.delay) == (2, 0.0)
    assert "max_attempts=2" in give_up.reason
    assert retry.url == MODELS  # no query string
    assert "metrics exporter down" in caplog.text


def test_logging_one_debug_per_retry_one_warning_on_give_up_and_no_secrets(
    flavour: Flavour, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="xretry")

    def echo_key(request: Any) -> Any:
        raise flavour.http.ConnectError(f"refused for {request.headers['authorization']}")

    outcome = run_sync(
        flavour,
        [echo_key],
        policy=NO_JITTER.replace(max_attempts=3),
        headers={"Authorization": f"Bearer {CANARY}"},
        json={},
    )
    assert outcome.error is not None
    records = [r for r in caplog.records if r.name == "xretry"]
    assert [r.levelname for r in records] == ["DEBUG", "DEBUG", "WARNING"]
    assert CANARY not in caplog.text
    assert CANARY not in "".join(getattr(outcome.error, "__notes__", []))


def test_close_closes_the_inner_transport(flavour: Flavour) -> None:
    closed: list[bool] = []

    class Inner(flavour.http.MockTransport):  # type: ignore[misc,name-defined]
        def close(self) -> None:
            closed.append(True)

    transport = flavour.RetryTransport(Inner(lambda r: flavour.http.Response(200)))
    with flavour.http.Client(transport=transport) as client:
        client.get(MODELS)
    assert closed == [True]


@pytest.mark.anyio
async def test_aclose_closes_the_inner_transport(flavour: Flavour) -> None:
    closed: list[bool] = []

    class Inner(flavour.http.MockTransport):  # type: ignore[misc,name-defined]
        async def aclose(self) -> None:
            closed.append(True)

    transport = flavour.AsyncRetryTransport(Inner(lambda r: flavour.http.Response(200)))
    async with flavour.http.AsyncClient(transport=transport) as client:
        await client.get(MODELS)
    assert closed == [True]


def test_no_wait_records_the_schedule_without_sleeping(flavour: Flavour) -> None:
    def never(seconds: float) -> None:
        raise AssertionError("slept in test mode")

    server = Server(flavour, [503, 503, 503, 200])
    transport = flavour.RetryTransport(flavour.mock(server), sleep=never)
    with xretry.testing.no_wait() as schedule, flavour.http.Client(transport=transport) as c:
        assert c.get(MODELS).status_code == 200
    # Default policy, jitter off in test mode: the exact backoff ceilings.
    assert schedule.delays == [0.5, 1.0, 2.0]


@pytest.mark.anyio
async def test_no_wait_async(flavour: Flavour) -> None:
    async def never(seconds: float) -> None:
        raise AssertionError("slept in test mode")

    server = Server(flavour, [(429, {"retry-after-ms": "1500"}), 200])
    transport = flavour.AsyncRetryTransport(flavour.mock(server), sleep=never)
    with xretry.testing.no_wait() as schedule:
        async with flavour.http.AsyncClient(transport=transport) as client:
            assert (await client.get(MODELS)).status_code == 200
    # The wait is the gate's shared cooldown, read off the real clock: 1.5 s less a few µs.
    assert schedule.delays == pytest.approx([1.5], abs=0.05)


def test_full_jitter_stays_within_the_ceiling(flavour: Flavour) -> None:
    outcome = run_sync(flavour, [503] * 5 + [200], policy=RetryPolicy(max_attempts=6), json={})
    ceilings = [0.5, 1.0, 2.0, 4.0, 8.0]
    assert len(outcome.slept) == 5
    assert all(0.0 <= s <= c for s, c in zip(outcome.slept, ceilings, strict=True))


def test_invalid_constructor_arguments(flavour: Flavour) -> None:
    with pytest.raises(ValueError, match="policy must be a RetryPolicy"):
        flavour.RetryTransport(flavour.mock(lambda r: None), policy={"max_attempts": 2})
    with pytest.raises(ValueError, match="hooks must be callables"):
        flavour.RetryTransport(flavour.mock(lambda r: None), hooks=["not callable"])


def test_default_inner_transport_with_respx() -> None:
    """respx mocks httpx's own HTTPTransport: the default inner transport is really used."""
    import httpx
    import respx

    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(URL).mock(
            side_effect=[httpx.Response(429, headers={"retry-after": "0"}), httpx.Response(200)]
        )
        with xretry.testing.no_wait(), httpx.Client(transport=xretry.RetryTransport()) as client:
            response = client.post(URL, json={"model": "grok-4"})
    assert response.status_code == 200
    assert route.call_count == 2


# -- review findings: each of these was a defect once --------------------------------------------


def test_reraised_exception_is_not_chained_to_the_first_attempts(flavour: Flavour) -> None:
    outcome = run_sync(flavour, ["ConnectError"], policy=NO_JITTER.replace(max_attempts=3), json={})
    assert outcome.error is not None
    assert outcome.error.__context__ is None


def test_no_doomed_attempt_when_a_sleep_overruns_the_deadline(flavour: Flavour) -> None:
    clock = FakeClock()

    def oversleep(seconds: float) -> None:
        clock.sleep(seconds + 5.0)  # the machine stalls: the sleep overruns by 5 s

    server = Server(flavour, [503, 200])
    transport = flavour.RetryTransport(
        flavour.mock(server),
        policy=NO_JITTER.replace(deadline=3.0),
        sleep=oversleep,
        clock=clock,
    )
    with flavour.http.Client(transport=transport) as client:
        response = client.get(MODELS)
    assert len(server.requests) == 1  # no second attempt with zero timeouts
    assert response.status_code == 503
    assert response.content == b""  # its body was not kept; the status and history were
    assert response.extensions["xretry"].gave_up


def test_out_of_order_no_wait_contexts_leave_the_other_one_on() -> None:
    from xretry import _testing

    outer = xretry.testing.no_wait()
    inner = xretry.testing.no_wait()
    a = outer.__enter__()
    b = inner.__enter__()
    outer.__exit__(None, None, None)
    assert _testing.active() is b
    inner.__exit__(None, None, None)
    assert _testing.active() is None
    assert a is not b


def test_a_request_of_the_other_library_is_refused_with_advice(flavour: Flavour) -> None:
    other = FLAVOURS["httpx2" if flavour.name == "httpx" else "httpx"]
    transport = other.RetryTransport(other.mock(lambda r: other.http.Response(200)))
    with (
        flavour.http.Client(transport=transport) as client,
        pytest.raises(TypeError, match="xretry"),
    ):
        client.post(URL, json={"model": "grok-4"})


def test_multipart_uploads_are_replayed(flavour: Flavour) -> None:
    outcome = run_sync(
        flavour, [503, 200], files={"file": ("a.jsonl", b'{"x": 1}\n')}, data={"purpose": "batch"}
    )
    assert outcome.response.status_code == 200
    first, second = (r.read() for r in outcome.server.requests)
    assert first == second
    assert b'{"x": 1}' in first


@pytest.mark.anyio
async def test_a_cancelled_429_body_read_closes_the_response(flavour: Flavour) -> None:
    http = flavour.http
    closed: list[bool] = []

    class Slow(http.AsyncByteStream):  # type: ignore[misc,name-defined]
        async def __aiter__(self) -> Any:
            yield b'{"code": '
            await anyio.sleep_forever()

        async def aclose(self) -> None:
            closed.append(True)

    def slow_429(request: Any) -> Any:
        return http.Response(429, headers={"content-length": "50"}, stream=Slow())

    transport = flavour.AsyncRetryTransport(flavour.mock(slow_429))
    async with http.AsyncClient(transport=transport) as client:
        with anyio.move_on_after(0.05):
            await client.get(MODELS)
    assert closed == [True]


def test_the_four_transports_take_the_same_typed_options() -> None:
    """Typed, not through a Flavour's ``Any``: mypy --strict checks these calls, so an option typed
    apart (httpx2's ``gate`` once took no ``False``) fails the build."""
    clock = FakeClock()
    policy = xretry.RetryPolicy(max_attempts=2)
    hooks: list[xretry.RetryHook] = []
    transports = (
        xretry.RetryTransport(
            policy=policy, poll=False, gate=False, hooks=hooks, sleep=clock.sleep, clock=clock
        ),
        xretry.httpx2.RetryTransport(
            policy=policy, poll=False, gate=False, hooks=hooks, sleep=clock.sleep, clock=clock
        ),
        xretry.AsyncRetryTransport(
            policy=policy, poll=False, gate=False, hooks=hooks, sleep=clock.asleep, clock=clock
        ),
        xretry.httpx2.AsyncRetryTransport(
            policy=policy, poll=False, gate=False, hooks=hooks, sleep=clock.asleep, clock=clock
        ),
    )
    for transport in transports:
        assert transport.gate is None
        assert transport.policy is policy
