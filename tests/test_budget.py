"""The retry budget: gRPC-style retry throttling in an outage, unit and end to end.

:class:`RetryBudget` is driven directly with an injected clock; then through every entry point
(transports, the decorator, the deferred pollers; sync and async on asyncio and trio; httpx and
httpx2) against scripted outages, with an injected :class:`FakeClock` and sleeper: nothing sleeps.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

import xretry
from xretry import Gate, PollPolicy, RetryBudget, RetryBudgetExhaustedError, RetryPolicy

from .conftest import FakeClock, Flavour

URL = "https://api.x.ai/v1/chat/completions"
API = "https://api.x.ai/v1"
RID = "0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"
COMPLETION: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}
#: Five attempts, exact short backoff (0.1, 0.2, 0.4, 0.8 s).
POLICY = RetryPolicy(max_attempts=5, initial_delay=0.1, multiplier=2.0, jitter=0.0)
ONCE = RetryPolicy(max_attempts=1)
EXHAUSTED = "retry budget exhausted"


def drained(budget: RetryBudget) -> RetryBudget:
    """The budget with every token taken, as after a long outage."""
    while budget.tokens > 0:
        budget.on_failure()
    return budget


# -- RetryBudget ----------------------------------------------------------------------------------


def counts(budget: RetryBudget) -> tuple[float, bool, int]:
    """Tokens left, exhausted, retries denied (read afresh each time)."""
    return round(budget.tokens, 9), budget.exhausted, budget.retries_denied


def test_tokens_failures_and_successes() -> None:
    budget = RetryBudget()
    assert (budget.max_tokens, budget.token_ratio) == (10.0, 0.1)
    assert counts(budget) == (10.0, False, 0)
    # Retries are allowed while more than half the tokens are left; each denial is counted.
    allowed = []
    for _ in range(6):
        budget.on_failure()
        allowed.append(budget.allows_retry())
    assert allowed == [True, True, True, True, False, False]
    assert counts(budget) == (4.0, True, 2)
    budget.on_success()
    assert counts(budget) == (4.1, True, 2)
    for _ in range(10):
        budget.on_success()
    assert counts(budget) == (5.1, False, 2)  # above half again: retries resume
    budget.on_failure()
    assert budget.allows_retry() is False  # 4.1 left: this failure's retry is not
    assert counts(budget) == (4.1, True, 3)


def test_tokens_stay_between_zero_and_max() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=3)
    for _ in range(10):
        budget.on_failure()
    assert budget.tokens == 0.0
    for _ in range(10):
        budget.on_success()
    assert budget.tokens == 4.0


def test_admit_always_without_fail_fast() -> None:
    budget = drained(RetryBudget())
    assert all(budget.admit() for _ in range(100))
    assert budget.calls_refused == 0


def test_fail_fast_admits_one_probe_per_probe_interval(clock: FakeClock) -> None:
    budget = RetryBudget(fail_fast=True, probe_interval=2.0, clock=clock)
    assert all(budget.admit() for _ in range(20))  # not exhausted: every call
    drained(budget)
    assert budget.admit() is True  # the first probe
    assert [budget.admit() for _ in range(5)] == [False] * 5
    clock.now += 1.999
    assert budget.admit() is False
    clock.now += 0.001
    assert budget.admit() is True  # the next probe, probe_interval after the last
    assert budget.admit() is False
    assert budget.calls_refused == 7


def test_a_successful_probe_refills_a_fail_fast_budget(clock: FakeClock) -> None:
    budget = drained(RetryBudget(fail_fast=True, clock=clock))
    assert budget.admit() is True  # the probe
    budget.on_success()  # ... succeeds
    assert not budget.exhausted
    assert budget.admit() is True


def test_concurrent_use_loses_no_update() -> None:
    budget = RetryBudget(max_tokens=1e6, token_ratio=1.0)

    def fail() -> None:
        for _ in range(2000):
            budget.on_failure()

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.tokens == 1e6 - 16_000


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 2e6}, "max_tokens"),
        ({"max_tokens": float("nan")}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"token_ratio": 0}, "token_ratio"),
        ({"token_ratio": 11.0}, "token_ratio"),  # more than max_tokens
        ({"token_ratio": float("inf")}, "token_ratio"),
        ({"probe_interval": 0}, "probe_interval"),
        ({"probe_interval": 3601}, "probe_interval"),
        ({"probe_interval": float("nan")}, "probe_interval"),
    ],
)
def test_validation_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        RetryBudget(**kwargs)


class CanaryClock:
    """A clock whose repr would give it away if a repr printed it."""

    def __call__(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        return "CanaryClock(xai-CANARY-budget)"


def test_repr_and_describe_say_the_numbers_and_nothing_else() -> None:
    budget = RetryBudget(fail_fast=True, clock=CanaryClock())
    assert repr(budget) == "RetryBudget(max_tokens=10, token_ratio=0.1, fail_fast=True, tokens=10)"
    gate = Gate(budget=budget, clock=CanaryClock())
    assert "CANARY" not in repr(gate)
    assert repr(budget) in repr(gate)
    drained(budget)
    assert budget.describe().startswith(
        "retry budget exhausted (0 of 10 tokens left, retries resume above 5)"
    )


def test_the_gate_feeds_its_budget_successes_only(clock: FakeClock) -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=1)
    gate = Gate(budget=budget, clock=clock)
    assert gate.budget is budget
    drained(budget)
    gate.observe(429)  # a rate limit is the gate's business, not a success or a failure
    gate.observe(503)  # failures are counted where the retry is decided (one per failed attempt)
    gate.observe(None)
    assert budget.tokens == 0.0
    gate.observe(200)
    gate.observe(202)
    assert budget.tokens == 2.0


# -- entry points: transports ---------------------------------------------------------------------


class Outage:
    """A server whose every answer is ``status`` (or the flavour's ``ConnectError``)."""

    def __init__(self, flavour: Flavour, status: int | None = 503) -> None:
        self.flavour = flavour
        self.status = status
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        self.requests += 1
        if self.status is None:
            raise self.flavour.http.ConnectError("connection refused", request=request)
        return self.flavour.http.Response(self.status, json={"code": "c", "error": "down"})


def _transport(
    flavour: Flavour, server: Outage, gate: Gate, clock: FakeClock, policy: RetryPolicy = POLICY
) -> Any:
    return flavour.RetryTransport(
        flavour.mock(server), policy=policy, gate=gate, sleep=clock.sleep, clock=clock
    )


def _atransport(
    flavour: Flavour, server: Outage, gate: Gate, clock: FakeClock, policy: RetryPolicy = POLICY
) -> Any:
    return flavour.AsyncRetryTransport(
        flavour.mock(server), policy=policy, gate=gate, sleep=clock.asleep, clock=clock
    )


def _check_throttled(history: xretry.RetryHistory) -> None:
    assert history.attempt_count == 1
    assert history.gave_up
    assert EXHAUSTED in (history.stop_reason or "")


def test_an_outage_stops_retries_once_the_budget_is_spent(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = RetryBudget()
    server = Outage(flavour)
    transport = _transport(flavour, server, Gate(budget=budget), clock)
    with flavour.http.Client(transport=transport) as c:
        assert c.post(URL, json={}).status_code == 503
        assert server.requests == 5  # 10 tokens: the first call's 5 failures leave 5
        assert budget.exhausted
        for _ in range(3):
            response = c.post(URL, json={})
            assert response.status_code == 503
            _check_throttled(response.extensions["xretry"])
    assert server.requests == 5 + 3  # one attempt each, no retry multiplies the outage


@pytest.mark.anyio
async def test_async_an_outage_stops_retries_once_the_budget_is_spent(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = RetryBudget()
    server = Outage(flavour)
    transport = _atransport(flavour, server, Gate(budget=budget), clock)
    async with flavour.http.AsyncClient(transport=transport) as client:
        assert (await client.post(URL, json={})).status_code == 503
        for _ in range(3):
            response = await client.post(URL, json={})
            _check_throttled(response.extensions["xretry"])
    assert server.requests == 5 + 3


def test_connection_errors_count_and_the_note_says_why(flavour: Flavour, clock: FakeClock) -> None:
    budget = RetryBudget(max_tokens=4)
    server = Outage(flavour, status=None)
    transport = _transport(flavour, server, Gate(budget=budget), clock)
    with flavour.http.Client(transport=transport) as client:
        with pytest.raises(flavour.http.ConnectError):
            client.post(URL, json={})
        assert budget.exhausted
        seen = server.requests
        with pytest.raises(flavour.http.ConnectError) as caught:
            client.post(URL, json={})
    assert server.requests == seen + 1
    note = "\n".join(caught.value.__notes__)
    assert "xretry: 1 attempts" in note
    assert EXHAUSTED in note


@pytest.mark.anyio
async def test_async_connection_errors_count_and_the_note_says_why(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = RetryBudget(max_tokens=4)
    server = Outage(flavour, status=None)
    transport = _atransport(flavour, server, Gate(budget=budget), clock)
    async with flavour.http.AsyncClient(transport=transport) as client:
        with pytest.raises(flavour.http.ConnectError):
            await client.post(URL, json={})
        with pytest.raises(flavour.http.ConnectError) as caught:
            await client.post(URL, json={})
    assert EXHAUSTED in "\n".join(caught.value.__notes__)


def test_429s_take_no_tokens(flavour: Flavour, clock: FakeClock) -> None:
    budget = RetryBudget()
    server = Outage(flavour, status=429)
    transport = _transport(flavour, server, Gate(budget=budget), clock)
    with flavour.http.Client(transport=transport) as c:
        for _ in range(4):
            response = c.post(URL, json={})
            assert response.status_code == 429
            assert response.extensions["xretry"].attempt_count == POLICY.max_attempts
    assert server.requests == 4 * POLICY.max_attempts
    assert budget.tokens == budget.max_tokens
    assert budget.retries_denied == 0


@pytest.mark.anyio
async def test_async_429s_take_no_tokens(flavour: Flavour, clock: FakeClock) -> None:
    budget = RetryBudget()
    server = Outage(flavour, status=429)
    transport = _atransport(flavour, server, Gate(budget=budget), clock)
    async with flavour.http.AsyncClient(transport=transport) as client:
        for _ in range(4):
            await client.post(URL, json={})
    assert server.requests == 4 * POLICY.max_attempts
    assert budget.tokens == budget.max_tokens


def test_successes_give_tokens_back(flavour: Flavour, clock: FakeClock) -> None:
    budget = drained(RetryBudget(max_tokens=4, token_ratio=1))
    server = Outage(flavour, status=200)
    transport = _transport(flavour, server, Gate(budget=budget), clock)
    with flavour.http.Client(transport=transport) as c:
        for _ in range(3):
            assert c.post(URL, json={}).status_code == 200
    assert budget.tokens == 3.0
    assert not budget.exhausted


def test_the_last_attempts_failure_is_no_denied_retry(flavour: Flavour, clock: FakeClock) -> None:
    budget = RetryBudget(max_tokens=4)  # 2 failures leave 2 = half: no more retries
    server = Outage(flavour)
    twice = POLICY.replace(max_attempts=2)
    transport = _transport(flavour, server, Gate(budget=budget), clock, twice)
    with flavour.http.Client(transport=transport) as client:
        history = client.post(URL, json={}).extensions["xretry"]
    assert history.attempt_count == 2  # both attempts made: the budget stopped nothing
    assert budget.exhausted
    assert history.stop_reason == "max_attempts=2 reached"
    assert budget.retries_denied == 0


# -- fail fast ------------------------------------------------------------------------------------


def _fail_fast(clock: FakeClock) -> tuple[RetryBudget, Gate]:
    budget = RetryBudget(fail_fast=True, probe_interval=1.0, clock=clock)
    return budget, Gate(budget=budget, clock=clock)


def test_fail_fast_refuses_calls_unsent_except_one_probe_per_interval(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget, gate = _fail_fast(clock)
    server = Outage(flavour)
    with flavour.http.Client(transport=_transport(flavour, server, gate, clock, ONCE)) as client:
        for _ in range(5):  # 5 failed calls: 5 tokens of 10 left, exhausted
            assert client.post(URL, json={}).status_code == 503
        assert budget.exhausted
        assert client.post(URL, json={}).status_code == 503  # the first probe is sent
        assert server.requests == 6
        for _ in range(3):
            with pytest.raises(RetryBudgetExhaustedError) as caught:
                client.post(URL, json={"model": "grok-4"})
        assert server.requests == 6  # refused before sending
        error = caught.value
        assert error.url == URL
        assert "not sent" in str(error)
        assert EXHAUSTED in error.reason
        clock.now += 1.0  # probe_interval later: one more probe
        assert client.post(URL, json={}).status_code == 503
        with pytest.raises(RetryBudgetExhaustedError):
            client.post(URL, json={})
    assert server.requests == 7
    assert budget.calls_refused == 4


@pytest.mark.anyio
async def test_async_fail_fast_refuses_calls_unsent(flavour: Flavour, clock: FakeClock) -> None:
    budget, gate = _fail_fast(clock)
    drained(budget)
    server = Outage(flavour)
    transport = _atransport(flavour, server, gate, clock, ONCE)
    async with flavour.http.AsyncClient(transport=transport) as client:
        assert (await client.post(URL, json={})).status_code == 503  # the probe
        with pytest.raises(RetryBudgetExhaustedError):
            await client.post(URL, json={})
    assert server.requests == 1


def test_a_successful_probe_lets_calls_through_again(flavour: Flavour, clock: FakeClock) -> None:
    budget, gate = _fail_fast(clock)
    drained(budget)
    server = Outage(flavour, status=200)  # the server has recovered
    with flavour.http.Client(transport=_transport(flavour, server, gate, clock, ONCE)) as client:
        assert client.post(URL, json={}).status_code == 200  # the probe succeeds ...
        assert client.post(URL, json={}).status_code == 200  # ... so the next call is sent
    assert server.requests == 2


# -- entry points: the decorator ------------------------------------------------------------------


def status_error(flavour: Flavour, status: int) -> Exception:
    http = flavour.http
    request = http.Request("POST", URL)
    response = http.Response(status, request=request)
    error: Exception = http.HTTPStatusError(f"{status}", request=request, response=response)
    return error


def test_the_decorator_stops_retrying_once_the_budget_is_spent(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = RetryBudget()
    calls: list[float] = []

    @xretry.retry(policy=POLICY, gate=Gate(budget=budget), sleep=clock.sleep, clock=clock)
    def call() -> str:
        calls.append(clock.now)
        raise status_error(flavour, 503)

    with pytest.raises(flavour.http.HTTPStatusError):
        call()
    assert len(calls) == 5
    for _ in range(3):
        with pytest.raises(flavour.http.HTTPStatusError) as caught:
            call()
        note = "\n".join(caught.value.__notes__)
        assert "xretry: 1 attempts" in note
        assert EXHAUSTED in note
    assert len(calls) == 5 + 3


@pytest.mark.anyio
async def test_the_async_decorator_stops_retrying_once_the_budget_is_spent(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = RetryBudget()
    calls: list[float] = []

    @xretry.retry(policy=POLICY, gate=Gate(budget=budget), sleep=clock.asleep, clock=clock)
    async def call() -> str:
        calls.append(clock.now)
        raise status_error(flavour, 503)

    with pytest.raises(flavour.http.HTTPStatusError):
        await call()
    with pytest.raises(flavour.http.HTTPStatusError) as caught:
        await call()
    assert EXHAUSTED in "\n".join(caught.value.__notes__)
    assert len(calls) == 5 + 1


def test_the_decorator_fails_fast_without_calling(flavour: Flavour, clock: FakeClock) -> None:
    budget, gate = _fail_fast(clock)
    drained(budget)
    calls: list[float] = []

    @xretry.retry(policy=POLICY, gate=gate, sleep=clock.sleep, clock=clock)
    def call() -> str:
        calls.append(clock.now)
        raise status_error(flavour, 503)

    with pytest.raises(flavour.http.HTTPStatusError):
        call()  # the probe
    with pytest.raises(RetryBudgetExhaustedError) as caught:
        call()
    assert calls == [1000.0]
    assert "call" in caught.value.url  # the function's qualified name
    clock.now += 1.0
    with pytest.raises(flavour.http.HTTPStatusError):
        call()
    assert len(calls) == 2


@pytest.mark.anyio
async def test_the_async_decorator_fails_fast_without_calling(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget, gate = _fail_fast(clock)
    drained(budget)
    calls: list[float] = []

    @xretry.retry(policy=POLICY, gate=gate, sleep=clock.asleep, clock=clock)
    async def call() -> str:
        calls.append(clock.now)
        raise status_error(flavour, 503)

    with pytest.raises(flavour.http.HTTPStatusError):
        await call()
    with pytest.raises(RetryBudgetExhaustedError):
        await call()
    assert calls == [1000.0]


# -- entry points: deferred polls are never throttled ---------------------------------------------

POLL = PollPolicy(first_delay=2.0, interval=1.0, multiplier=2.0, jitter=0.0, timeout=60.0)
PATIENT = RetryPolicy(max_attempts=4, initial_delay=0.5, multiplier=2.0, jitter=0.0)


class DeferredApi:
    """Polls answer 202, then a 503, then the completion; submissions answer the id."""

    def __init__(self, flavour: Flavour, clock: FakeClock) -> None:
        self.flavour = flavour
        self.clock = clock
        self.polls: list[float] = []

    def __call__(self, request: Any) -> Any:
        http = self.flavour.http
        if request.method == "POST":
            return http.Response(200, json={"request_id": RID})
        self.polls.append(self.clock.now)
        status = (202, 503, 200)[min(len(self.polls), 3) - 1]
        if status == 200:
            return http.Response(200, json=COMPLETION)
        return http.Response(status, json={"code": "c", "error": "e"} if status >= 400 else {})


def _sync_poller(flavour: Flavour, api: DeferredApi, gate: Gate) -> xretry.DeferredCompletions:
    client = flavour.http.Client(base_url=API, transport=flavour.mock(api))
    clock = api.clock
    return xretry.DeferredCompletions(
        client, policy=PATIENT, poll=POLL, gate=gate, sleep=clock.sleep, clock=clock
    )


def _async_poller(
    flavour: Flavour, api: DeferredApi, gate: Gate
) -> xretry.AsyncDeferredCompletions:
    client = flavour.http.AsyncClient(base_url=API, transport=flavour.mock(api))
    clock = api.clock
    return xretry.AsyncDeferredCompletions(
        client, policy=PATIENT, poll=POLL, gate=gate, sleep=clock.asleep, clock=clock
    )


def test_wait_retries_a_503_mid_polling_with_an_exhausted_budget(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = drained(RetryBudget())
    api = DeferredApi(flavour, clock)
    poller = _sync_poller(flavour, api, Gate(budget=budget, clock=clock))
    with poller.client:
        assert poller.wait(RID) == COMPLETION
    # 202, poll gap 1 s, the 503, retried after its 0.5 s backoff, the completion.
    assert api.polls == [1000.0, 1001.0, 1001.5]
    assert budget.tokens == pytest.approx(2 * budget.token_ratio)  # the 503 took no token


@pytest.mark.anyio
async def test_async_wait_retries_a_503_mid_polling_with_an_exhausted_budget(
    flavour: Flavour, clock: FakeClock
) -> None:
    budget = drained(RetryBudget())
    api = DeferredApi(flavour, clock)
    poller = _async_poller(flavour, api, Gate(budget=budget, clock=clock))
    async with poller.client:
        assert await poller.wait(RID) == COMPLETION
    assert api.polls == [1000.0, 1001.0, 1001.5]
    assert budget.tokens == pytest.approx(2 * budget.token_ratio)


async def _as_completed_polls(
    flavour: Flavour, clock: FakeClock, gate: Gate
) -> tuple[list[float], list[xretry.DeferredOutcome]]:
    api = DeferredApi(flavour, clock)
    poller = _async_poller(flavour, api, gate)
    outcomes: list[xretry.DeferredOutcome] = []
    async with poller.client, poller.as_completed([RID]) as results:
        async for outcome in results:
            outcomes.append(outcome)
    return api.polls, outcomes


@pytest.mark.anyio
async def test_as_completed_polls_are_not_throttled_by_the_budget(flavour: Flavour) -> None:
    plain_clock = FakeClock()
    expected, _ = await _as_completed_polls(flavour, plain_clock, Gate(clock=plain_clock))
    clock = FakeClock()
    budget = drained(RetryBudget())
    polls, outcomes = await _as_completed_polls(flavour, clock, Gate(budget=budget, clock=clock))
    assert [o.ok for o in outcomes] == [True]
    assert polls == expected == [1000.0, 1001.0, 1001.5]
    assert budget.tokens == pytest.approx(2 * budget.token_ratio)  # the 503 took no token


def _spent_probe(clock: FakeClock) -> Gate:
    """A fail-fast gate whose budget is exhausted and whose probe was just used."""
    budget, gate = _fail_fast(clock)
    drained(budget)
    assert budget.admit()
    return gate


def test_fail_fast_never_refuses_a_poll(flavour: Flavour, clock: FakeClock) -> None:
    api = DeferredApi(flavour, clock)
    poller = _sync_poller(flavour, api, _spent_probe(clock))
    with poller.client:
        assert poller.wait(RID) == COMPLETION


@pytest.mark.anyio
async def test_fail_fast_never_refuses_an_as_completed_poll(
    flavour: Flavour, clock: FakeClock
) -> None:
    _, outcomes = await _as_completed_polls(flavour, clock, _spent_probe(clock))
    assert [o.error for o in outcomes] == [None]


def test_submissions_are_throttled_like_any_call(flavour: Flavour, clock: FakeClock) -> None:
    """A submission is a new chat completion: a fail-fast budget refuses it unsent."""
    api = DeferredApi(flavour, clock)
    poller = _sync_poller(flavour, api, _spent_probe(clock))
    with poller.client, pytest.raises(RetryBudgetExhaustedError):
        poller.submit(model="grok-4", messages=[])
