"""The gate: shared cooldown after a 429, slow start, and the rate it learns, unit and end to end.

The algorithm (:class:`GateState`) is driven with explicit times, the :class:`Gate` with an injected
:class:`FakeClock`; nothing sleeps. The entry-point tests (transports, the decorator, the deferred
pollers; sync and async on asyncio and trio; httpx and httpx2) inject the clock and sleeper too.
Where two async requests must really overlap in time, :class:`Timeline` wakes each sleeper at its
own time on the fake clock, earliest first, so their waits overlap as real ones do.

The slow-start and measurement constants are read from ``xretry._pacing`` rather than copied, so the
tests describe the behaviour and stay true when the numbers are tuned.
"""

from __future__ import annotations

import email.utils
import functools
import heapq
import itertools
import json
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import anyio
import pytest

import xretry
from xretry import Gate, PollPolicy, RetryPolicy, _pacing
from xretry._gate import own_gate, signals
from xretry._headers import refill_rate, shared_wait
from xretry._pacing import (
    _MIN_SPAN,
    _SLOW_DOUBLING,
    _SLOW_DOUBLINGS_MAX,
    _SLOW_RATE,
    _SLOW_WINDOW,
    GateState,
)
from xretry.backends import GateBackend, GateSettings, MemoryGateBackend

from .conftest import FakeClock, Flavour

URL = "https://api.x.ai/v1/chat/completions"
API = "https://api.x.ai/v1"
RID = "0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"
COMPLETION: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}
#: The default settings: unpaced until the server says otherwise.
S = GateSettings()
#: A policy whose waits are exact: no jitter, 0.5 s first backoff.
EXACT = RetryPolicy(jitter=0.0, initial_delay=0.5)


def send(
    state: GateState,
    settings: GateSettings,
    now: float,
    status: int | None,
    wait: float | None = None,
    rate: float | None = None,
) -> float:
    """One request at ``now``: reserve, then observe its outcome at once; the reservation's wait."""
    waited = state.reserve(settings, now)
    state.observe(settings, now, status, wait, rate)
    return waited


#: A caller told to come back sleeps at least this long, as a real sleep does (on exact fake time a
#: "come back" can be shorter than the clock can count: see the fake-clock test below).
MIN_SLEEP = 1e-6


def send_times(state: GateState, settings: GateSettings, arrivals: list[float]) -> list[float]:
    """When callers arriving at ``arrivals`` are sent, none answered yet: each reserves a slot
    and waits for it; one told to come back (a negative reservation) asks again that much later.
    Returned in the order of the callers."""
    asking = [(at, caller) for caller, at in enumerate(arrivals)]
    heapq.heapify(asking)
    sent = [0.0] * len(arrivals)
    for _ in range(100 * len(arrivals) ** 2 + 100):
        if not asking:
            return sent
        now, caller = heapq.heappop(asking)
        wait = state.reserve(settings, now)
        if wait < 0:
            heapq.heappush(asking, (now + max(-wait, MIN_SLEEP), caller))
        else:
            sent[caller] = now + wait
    pytest.fail("the callers never all got a slot")


# -- GateState: unpaced, slow start ---------------------------------------------------------------


def test_reservations_are_free_while_unpaced() -> None:
    state = GateState()
    assert [state.reserve(S, 0.0) for _ in range(_SLOW_WINDOW)] == [0.0] * _SLOW_WINDOW
    assert state.rate is None
    for _ in range(_SLOW_WINDOW):
        state.observe(S, 0.01, 200, None, None)
    # Answered: the next few are free again.
    assert [state.reserve(S, 0.02) for _ in range(_SLOW_WINDOW)] == [0.0] * _SLOW_WINDOW


def test_one_request_outstanding_at_a_time_is_never_paced() -> None:
    """A sequential client at 1,000 requests a second never has a burst to pace."""
    state = GateState()
    waits = [send(state, S, i / 1000.0, 200) for i in range(3000)]
    assert waits == [0.0] * 3000
    assert state.rate is None


def _slow_gap(at: float) -> float:
    """The slow-start spacing of a slot at ``at`` seconds after the first request."""
    return 1.0 / (_SLOW_RATE * float(2.0 ** (at / _SLOW_DOUBLING)))


def test_slow_start_paces_a_deepening_burst_then_stops_pacing() -> None:
    """Beyond the first few outstanding requests, before any 429, each next request goes ``1 /
    rate`` after the previous slot, the rate starting at ``_SLOW_RATE`` and doubling every
    ``_SLOW_DOUBLING`` seconds of slot time; after ``_SLOW_DOUBLINGS_MAX`` doublings, no pacing."""
    state = GateState()
    assert [state.reserve(S, 0.0) for _ in range(_SLOW_WINDOW)] == [0.0] * _SLOW_WINDOW
    slots: list[float] = []
    now = 0.0
    for _ in range(100_000):
        if not state.slow:
            break
        wait = state.reserve(S, now)  # one more caller, none answered: the burst deepens
        if wait < 0:  # not booked yet: come back
            now -= wait
            continue
        now += wait
        slots.append(now)
    else:
        pytest.fail("slow start never ended")
    assert slots[0] == 0.0  # the first paced request has the first slot: now
    assert slots[1] == pytest.approx(1.0 / _SLOW_RATE)
    for earlier, later in itertools.pairwise(slots[:-1]):
        assert later - earlier == pytest.approx(_slow_gap(earlier))
    end = _SLOW_DOUBLING * _SLOW_DOUBLINGS_MAX
    assert slots[-2] < end <= slots[-1] <= end + 1.0 / _SLOW_RATE
    assert state.rate is None  # slow start paces, it learns nothing
    # Past the last doubling: unpaced, however many are outstanding.
    assert [state.reserve(S, now) for _ in range(50)] == [0.0] * 50


def test_a_burst_arriving_at_once_is_paced_first_come_first_served() -> None:
    sent = send_times(GateState(), S, [0.0] * 300)
    assert sent.count(0.0) == _SLOW_WINDOW + 1  # the free few and the first slot
    assert sent == sorted(sent)  # in the order they came
    ordered = sorted(sent)
    assert ordered[_SLOW_WINDOW + 1] == pytest.approx(1.0 / _SLOW_RATE)
    for earlier, later in itertools.pairwise(ordered[_SLOW_WINDOW:]):
        assert later - earlier >= _slow_gap(earlier) * (1 - 1e-9)  # never faster than slow start


def test_a_burst_of_1000_at_once_is_sent_within_slow_start() -> None:
    """The documented promise: doubling by slot time, 1,000 at once are spread over under 3 s."""
    sent = send_times(GateState(), S, [0.0] * 1000)
    assert max(sent) <= _SLOW_DOUBLING * _SLOW_DOUBLINGS_MAX + 1.0 / _SLOW_RATE


# -- GateState: learning a rate -------------------------------------------------------------------


def test_the_first_429_after_a_paced_burst_sets_the_rate_that_got_through() -> None:
    state = GateState()
    send_times(state, S, [0.0] * 40)  # a burst: beyond the first few, paced by slow start
    for k in range(1, 11):  # 10 answers in 0.5 s: 20 requests a second got through
        state.observe(S, k * 0.05, 200, None, None)
    state.observe(S, 0.5, 429, None, None)
    assert state.rate is not None
    assert 20.0 * S.backoff <= state.rate <= 20.0  # what got through (less a margin, if any)
    assert not state.slow


def test_a_light_clients_429_sets_no_rate() -> None:
    """What a client that was never paced got through says nothing about the limit."""
    state = GateState()
    now = 0.0
    for _ in range(50):
        send(state, S, now, 200)
        now += 0.02
    send(state, S, now, 429)
    assert state.rate is None
    assert state.limited == 1
    assert send(state, S, now, 200) == 0.0


def test_a_saturation_episode_measures_the_limit_from_what_gets_through() -> None:
    """429s for at least ``_MIN_SPAN`` s while R requests a second succeed: rate R * backoff."""
    state = GateState()
    t0 = 10.0
    send(state, S, t0, 429)  # the episode begins; a light client: no rate yet
    assert state.rate is None
    r = 20.0
    steps = 10
    for k in range(1, steps + 1):
        now = t0 + k / r
        send(state, S, now, 200)
        if now - t0 < _MIN_SPAN:
            send(state, S, now, 429)
            assert state.rate is None  # too early: the 429s of requests already in flight
    send(state, S, t0 + steps / r, 429)
    assert state.rate == pytest.approx(r * S.backoff)
    assert state.limited >= 2


def test_a_429_right_after_a_cooldown_does_not_collapse_a_known_rate() -> None:
    settings = GateSettings(rate=40.0)
    state = GateState()
    send(state, settings, 0.0, 200)
    send(state, settings, 0.1, 429, wait=1.0)  # everyone pauses until 1.1
    state.observe(settings, 1.11, 429, 0.02, None)  # the first request after the pause: a 429
    assert state.rate is not None
    assert state.rate >= 40.0 * settings.backoff  # at most one decrease, not 40 -> 0.5 req/s


def test_the_x_ratelimit_refill_rate_sets_the_rate_and_paces() -> None:
    state = GateState()
    send(state, S, 0.0, 200, rate=10.0)
    assert state.rate == pytest.approx(10.0 * S.backoff)
    assert not state.slow
    gap = 1.0 / (10.0 * S.backoff)
    sent = sorted(send_times(state, S, [1.0] * 4))
    assert sent[0] == 1.0
    for earlier, later in itertools.pairwise(sent):
        assert gap * (1 - 1e-9) <= later - earlier <= gap * 1.1


def test_the_rate_grows_only_while_pacing_binds() -> None:
    settings = GateSettings(rate=20.0)
    state = GateState()
    now = 0.0
    for _ in range(5):  # a second apart: a 20/s pace never makes anyone wait
        assert send(state, settings, now, 200) == 0.0
        now += 1.0
    assert state.rate == 20.0
    # Back to back: the second waits for its slot, so pacing is the bottleneck: grow.
    assert state.reserve(settings, now) == 0.0
    assert state.reserve(settings, now) == pytest.approx(0.05)
    state.observe(settings, now + 0.01, 200, None, None)
    assert state.rate > 20.0
    after_one = state.rate
    state.observe(settings, now + 0.06, 200, None, None)
    assert state.rate > after_one  # each success while binding: at least probe more
    assert state.rate - after_one >= settings.probe * (1 - 1e-9)
    grown = state.rate
    # Long after pacing last made anyone wait (gate._PACED_FOR): no more growth.
    now += _pacing._PACED_FOR + 0.5
    assert send(state, settings, now, 200) == 0.0
    assert state.rate == grown


def test_no_growth_from_a_success_that_told_its_own_rate() -> None:
    state = GateState()
    send(state, S, 0.0, 200, rate=20.0)
    assert state.reserve(S, 0.0) == 0.0
    assert state.reserve(S, 0.0) > 0  # pacing binds
    state.observe(S, 0.01, 200, None, 20.0)
    assert state.rate == pytest.approx(20.0 * S.backoff)


def test_min_rate_is_the_floor() -> None:
    state = GateState()
    send(state, S, 0.0, 200, rate=0.01)
    assert state.rate == S.min_rate
    floor = GateSettings(min_rate=2.0)
    state = GateState()
    send(state, floor, 0.0, 200, rate=1.0)
    assert state.rate == 2.0


# -- Gate and MemoryGateBackend on a fake clock ---------------------------------------------------


def test_a_429s_wait_is_a_cooldown_for_every_reservation(clock: FakeClock) -> None:
    gate = Gate(clock=clock)
    gate.observe(429, wait=2.0)
    assert [gate.reserve() for _ in range(4)] == [2.0] * 4  # everyone, not only the 429'd
    clock.now += 0.5
    assert gate.reserve() == pytest.approx(1.5)
    clock.now += 1.5
    assert gate.reserve() == 0.0
    assert gate.rate_limited == 1
    assert gate.rate is None


def test_a_shorter_wait_never_shortens_a_cooldown(clock: FakeClock) -> None:
    gate = Gate(clock=clock)
    gate.observe(429, wait=3.0)
    gate.observe(429, wait=0.25)
    assert gate.reserve() == 3.0
    assert gate.rate_limited == 2


@pytest.mark.anyio
async def test_async_reserve_and_observe_share_the_state(clock: FakeClock) -> None:
    gate = Gate(clock=clock)
    await gate.aobserve(429, wait=1.25)
    assert gate.reserve() == 1.25
    assert await gate.areserve() == 1.25
    await gate.aobserve(200, rate=20.0)
    assert gate.rate == pytest.approx(20.0 * gate.settings.backoff)


def test_max_wait_caps_every_wait(clock: FakeClock) -> None:
    gate = Gate(clock=clock, max_wait=5.0)
    gate.observe(429, wait=100.0)
    assert gate.reserve() == 5.0
    clock.now += 5.0
    assert gate.reserve() == 0.0  # the cooldown itself was capped, not just the answer
    # A queue longer than max_wait: no answer, a wait or a "come back", is longer.
    paced = Gate(clock=clock, rate=1.0, max_wait=2.5)
    waits = [paced.reserve() for _ in range(10)]
    assert max(abs(w) for w in waits) <= 2.5


def test_headers_to_rate_end_to_end(clock: FakeClock) -> None:
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "40",
        "x-ratelimit-reset-requests": "6s",
    }
    wait, told = signals(200, headers, now=0.0)
    assert wait is None
    assert told == pytest.approx(59.5 / 6.0)
    gate = Gate(clock=clock)
    gate.observe(200, rate=told)
    assert gate.rate == pytest.approx(59.5 / 6.0 * 0.98)


def test_the_backend_is_pluggable_and_shared(clock: FakeClock) -> None:
    backend = MemoryGateBackend(clock=clock)
    first, second = Gate(backend=backend), Gate(backend=backend, max_wait=1.0)
    first.observe(429, wait=3.0)
    assert second.rate_limited == 1
    assert first.reserve() == 3.0
    assert second.reserve() == 1.0  # each gate's own settings, one state
    assert first.backend is backend
    assert isinstance(backend, GateBackend)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"min_rate": 0}, "min_rate"),
        ({"min_rate": float("inf")}, "min_rate"),
        ({"min_rate": "1"}, "min_rate"),
        ({"max_wait": -1.0}, "max_wait"),
        ({"max_wait": float("nan")}, "max_wait"),
        ({"rate": 0.1}, "rate"),  # below min_rate
        ({"rate": float("inf")}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"backoff": 0.0}, "backoff"),
        ({"backoff": 1.5}, "backoff"),
        ({"probe": 1.0}, "probe"),
        ({"probe": -0.1}, "probe"),
        ({"budget": 10}, "budget"),
        ({"backend": object()}, "backend"),
    ],
)
def test_validation_errors_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field} must"):
        Gate(**kwargs)


def test_own_gate_fresh_none_or_given(clock: FakeClock) -> None:
    fresh = own_gate(None, clock)
    assert isinstance(fresh, Gate)
    assert fresh is not own_gate(None, clock)
    fresh.observe(429, wait=1.0)
    assert fresh.reserve() == 1.0  # it reads the entry point's clock
    assert own_gate(False, clock) is None
    gate = Gate()
    assert own_gate(gate, clock) is gate
    with pytest.raises(ValueError, match="gate must be"):
        own_gate(True, clock)


def test_repr_says_what_matters(clock: FakeClock) -> None:
    gate = Gate(backoff=0.9, clock=clock)
    assert repr(gate) == (
        "Gate(rate=None, backoff=0.9, probe=0.05, budget=None, backend=MemoryGateBackend)"
    )
    gate.observe(200, rate=10.0)
    assert repr(gate).startswith("Gate(rate=9.0, ")


def test_a_starting_rate_is_the_rate_before_the_first_request(clock: FakeClock) -> None:
    gate = Gate(rate=4.0, clock=clock)
    assert gate.rate == 4.0


# -- GateState.dumps / loads ----------------------------------------------------------------------


def _busy_state() -> GateState:
    state = GateState()
    for _ in range(30):
        state.reserve(S, 0.0)
    for k in range(1, 9):
        state.observe(S, k * 0.05, 200, None, None)
    state.observe(S, 0.4, 429, 1.5, None)
    return state


def test_dumps_loads_round_trip() -> None:
    state = _busy_state()
    assert state.rate is not None
    assert state.successes
    text = state.dumps()
    assert json.loads(text)["successes"] == list(state.successes)
    copy = GateState.loads(text)
    assert copy == state
    assert GateState.loads(text.encode()) == state
    # It goes on exactly as the original would.
    assert copy.reserve(S, 0.5) == state.reserve(S, 0.5)
    copy.observe(S, 2.0, 200, None, None)
    state.observe(S, 2.0, 200, None, None)
    assert copy == state


def test_loads_of_nothing_is_fresh_and_unknown_keys_are_ignored() -> None:
    assert GateState.loads(None) == GateState()
    assert GateState.loads("") == GateState()
    data = json.loads(_busy_state().dumps())
    data["from_a_newer_version"] = 1
    assert GateState.loads(json.dumps(data)) == _busy_state()


# -- what responses tell a gate -------------------------------------------------------------------

NOW = 1_700_000_000.0


def _date(offset: float) -> str:
    return email.utils.formatdate(NOW + offset, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "700", "retry-after": "9"}, 0.7),  # the precise one wins
        ({"retry-after-ms": "0"}, None),
        ({"retry-after": "1"}, None),  # "under a second": nothing certain to share
        ({"retry-after": "3"}, 2.0),  # rounded up from more than 2 s
        ({"retry-after": "0"}, None),
        ({"retry-after": "2.5"}, 2.5),  # a fraction was not rounded up: all of it is certain
        ({"retry-after": "0.4"}, 0.4),
        ({"retry-after": "3.0"}, 2.0),  # a whole number, written with a fraction
        ({"retry-after": _date(10)}, 9.0),  # an HTTP date counts like whole seconds
        ({"retry-after": _date(-30)}, None),  # in the past
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "NaN", "retry-after": "-5"}, None),
        ({"retry-after-ms": "garbage", "retry-after": "4"}, 3.0),  # the next good one
        ({"x-ratelimit-reset-requests": "20s", "x-ratelimit-remaining-requests": "0"}, None),
        ({}, None),
    ],
)
def test_shared_wait(headers: dict[str, str], expected: float | None) -> None:
    assert shared_wait(headers, now=NOW) == (None if expected is None else pytest.approx(expected))


def _limits(limit: str, remaining: str, reset: str) -> dict[str, str]:
    return {
        "x-ratelimit-limit-requests": limit,
        "x-ratelimit-remaining-requests": remaining,
        "x-ratelimit-reset-requests": reset,
    }


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (_limits("100", "40", "6s"), 59.5 / 6.0),  # more than half used: the refill rate
        (_limits("100", "50", "5s"), 49.5 / 5.0),  # exactly half
        (_limits("10", "0", "250ms"), 9.5 / 0.25),
        (_limits("1000", "0", "6m0s"), 999.5 / 360.0),
        (_limits("100", "95", "1s"), None),  # a nearly full bucket: too noisy, no pacing needed
        (_limits("10", "5", "1s"), None),  # fewer than 8 requests down
        (_limits("lots", "0", "1s"), None),
        (_limits("100", "-1", "1s"), None),
        (_limits("100", "0", "soon"), None),
        (_limits("100", "0", "0s"), None),
        (_limits("1e999", "0", "1s"), None),
        ({"x-ratelimit-limit-requests": "100"}, None),
        ({}, None),
    ],
)
def test_refill_rate(headers: dict[str, str], expected: float | None) -> None:
    assert refill_rate(headers) == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [
        (429, {"retry-after-ms": "250"}, (0.25, None)),
        (200, {"retry-after-ms": "250"}, (None, None)),  # a wait only from a 429
        (503, {"retry-after": "3"}, (None, None)),
        (200, _limits("100", "40", "6s"), (None, 59.5 / 6.0)),
        (429, {**_limits("10", "0", "250ms"), "retry-after": "1"}, (None, 9.5 / 0.25)),
        (429, {**_limits("100", "99", "1s"), "retry-after": "2"}, (1.0, None)),
    ],
)
def test_signals(
    status: int, headers: Mapping[str, str], expected: tuple[float | None, float | None]
) -> None:
    wait, rate = signals(status, headers, now=NOW)
    assert (wait, rate) == (
        None if expected[0] is None else pytest.approx(expected[0]),
        None if expected[1] is None else pytest.approx(expected[1]),
    )


# -- entry points: transports ---------------------------------------------------------------------


class Timeline:
    """Virtual time for concurrent tasks on a :class:`FakeClock`.

    A sleeper wakes at its own time, earliest first, once every task is blocked: concurrent waits
    overlap as real ones do, instead of adding up as they would on the plain fake sleeper.
    """

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._sleepers: list[tuple[float, int, anyio.Event]] = []
        self._order = itertools.count()

    async def sleep(self, seconds: float) -> None:
        self.clock.slept.append(seconds)
        wake = anyio.Event()
        heapq.heappush(self._sleepers, (self.clock.now + seconds, next(self._order), wake))
        await wake.wait()

    async def run(self, *calls: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``calls`` concurrently until all are done (10 real seconds at most)."""
        with anyio.fail_after(10):
            async with anyio.create_task_group() as outer:
                outer.start_soon(self._advance)
                async with anyio.create_task_group() as inner:
                    for call in calls:
                        inner.start_soon(call)
                outer.cancel_scope.cancel()

    async def _advance(self) -> None:
        while True:
            await anyio.wait_all_tasks_blocked()
            if self._sleepers:
                wake_at, _, wake = heapq.heappop(self._sleepers)
                self.clock.now = max(self.clock.now, wake_at)
                wake.set()
            else:
                await anyio.sleep(0.001)


@pytest.mark.anyio
async def test_a_429s_cooldown_holds_back_a_concurrent_request(
    flavour: Flavour, clock: FakeClock
) -> None:
    """a and b are in flight together; a gets a 429 with ``retry-after-ms: 1000``, b a 503. b backs
    off 0.25 s, and its next reservation waits out the rest of a's cooldown: both go at 1 s."""
    timeline = Timeline(clock)
    b_in_flight, a_limited = anyio.Event(), anyio.Event()
    seen: list[tuple[str, float]] = []

    async def server(request: Any) -> Any:
        who = request.headers["x-call"]
        seen.append((who, clock.now))
        first = [w for w, _ in seen].count(who) == 1
        if who == "a" and first:
            await b_in_flight.wait()
            return flavour.http.Response(429, headers={"retry-after-ms": "1000"})
        if who == "b" and first:
            b_in_flight.set()
            await a_limited.wait()
            return flavour.http.Response(503)
        return flavour.http.Response(200)

    def on_retry(event: xretry.RetryEvent) -> None:
        if event.status_code == 429:
            a_limited.set()  # the gate has seen a's 429 by now

    transport = flavour.AsyncRetryTransport(
        flavour.mock(server),
        policy=EXACT.replace(initial_delay=0.25),
        hooks=[on_retry],
        sleep=timeline.sleep,
        clock=clock,
    )
    responses: dict[str, Any] = {}
    async with flavour.http.AsyncClient(transport=transport) as client:

        async def call(who: str) -> None:
            responses[who] = await client.post(URL, json={}, headers={"x-call": who})

        await timeline.run(functools.partial(call, "a"), functools.partial(call, "b"))

    assert sorted(seen[:2]) == [("a", 1000.0), ("b", 1000.0)]  # (trio may start either first)
    assert seen[2] == ("a", 1001.0)
    # b backed off 0.25 s, then waited at the gate for the rest of a's cooldown (and, at most, one
    # slow-start slot behind a: after a 429 with others in flight, a burst is paced again).
    who, b_sent = seen[3]
    assert who == "b"
    assert 1001.0 <= b_sent <= 1001.0 + 1.0 / _SLOW_RATE
    assert clock.slept[:2] == [1.0, 0.25]
    assert responses["a"].status_code == responses["b"].status_code == 200
    # b's history: its backoff and the gate's wait, all the time before its second attempt.
    assert responses["b"].extensions["xretry"].attempts[0].delay == pytest.approx(b_sent - 1000.0)
    assert transport.gate.rate_limited == 1


def test_a_request_sent_during_a_cooldown_waits_for_it(flavour: Flavour, clock: FakeClock) -> None:
    """Sync: while a waits out its 429's cooldown, b is sent (from a's sleeper): b waits too."""
    seen: list[tuple[str, float]] = []
    responses: dict[str, Any] = {}

    def server(request: Any) -> Any:
        who = request.headers["x-call"]
        seen.append((who, clock.now))
        if seen == [("a", 1000.0)]:
            return flavour.http.Response(429, headers={"retry-after-ms": "1000"})
        return flavour.http.Response(200)

    def sleep(seconds: float) -> None:
        wake_at = clock.now + seconds
        clock.slept.append(seconds)
        if "b" not in responses:
            responses["b"] = None
            responses["b"] = client.post(URL, json={}, headers={"x-call": "b"})
        clock.now = max(clock.now, wake_at)

    transport = flavour.RetryTransport(flavour.mock(server), sleep=sleep, clock=clock)
    with flavour.http.Client(transport=transport) as client:
        responses["a"] = client.post(URL, json={}, headers={"x-call": "a"})
    assert seen == [("a", 1000.0), ("b", 1001.0), ("a", 1001.0)]
    assert clock.slept == [1.0, 1.0]
    assert responses["a"].status_code == responses["b"].status_code == 200


def _script(flavour: Flavour, *steps: tuple[int, dict[str, str]]) -> Callable[[Any], Any]:
    """A server answering the n-th request with the n-th step (the last one repeats)."""
    seen: list[Any] = []

    def server(request: Any) -> Any:
        seen.append(request)
        status, headers = steps[min(len(seen), len(steps)) - 1]
        return flavour.http.Response(status, headers=headers)

    return server


RETRY_AFTER_1: tuple[tuple[int, dict[str, str]], ...] = ((429, {"retry-after": "1"}), (200, {}))


@pytest.mark.parametrize(
    ("gate", "slept"),
    [
        pytest.param(False, [1.0], id="gate=False-honours-the-hint-as-sent"),
        pytest.param(None, [0.5], id="default-gate-backs-off-instead"),
    ],
)
def test_default_gate_vs_no_gate_on_retry_after_1(
    flavour: Flavour, clock: FakeClock, gate: bool | None, slept: list[float]
) -> None:
    """``retry-after: 1`` says "under a second": with the gate nothing certain is shared, and the
    429'd request backs off as usual (0.5 s here) instead of idling a whole second."""
    transport = flavour.RetryTransport(
        flavour.mock(_script(flavour, *RETRY_AFTER_1)),
        policy=EXACT,
        gate=gate,
        sleep=clock.sleep,
        clock=clock,
    )
    with flavour.http.Client(transport=transport) as client:
        assert client.post(URL, json={}).status_code == 200
    assert clock.slept == slept
    assert (transport.gate is None) is (gate is False)


@pytest.mark.anyio
@pytest.mark.parametrize(("gate", "slept"), [(False, [1.0]), (None, [0.5])])
async def test_async_default_gate_vs_no_gate_on_retry_after_1(
    flavour: Flavour, clock: FakeClock, gate: bool | None, slept: list[float]
) -> None:
    transport = flavour.AsyncRetryTransport(
        flavour.mock(_script(flavour, *RETRY_AFTER_1)),
        policy=EXACT,
        gate=gate,
        sleep=clock.asleep,
        clock=clock,
    )
    async with flavour.http.AsyncClient(transport=transport) as client:
        assert (await client.post(URL, json={})).status_code == 200
    assert clock.slept == slept


def _times(flavour: Flavour, clock: FakeClock, seen: list[float]) -> Callable[[Any], Any]:
    """A server answering 200, noting when each request came."""

    def server(request: Any) -> Any:
        seen.append(clock.now)
        return flavour.http.Response(200)

    return server


LIMITED = (429, {"retry-after-ms": "1500"})
ONCE = RetryPolicy(max_attempts=1)


def test_two_transports_sharing_a_gate_share_the_cooldown(
    flavour: Flavour, clock: FakeClock
) -> None:
    gate = Gate(clock=clock)
    shared_seen: list[float] = []
    own_seen: list[float] = []
    limited = flavour.RetryTransport(
        flavour.mock(_script(flavour, LIMITED)),
        policy=ONCE,
        gate=gate,
        sleep=clock.sleep,
        clock=clock,
    )
    sharing = flavour.RetryTransport(
        flavour.mock(_times(flavour, clock, shared_seen)), gate=gate, sleep=clock.sleep, clock=clock
    )
    alone = flavour.RetryTransport(
        flavour.mock(_times(flavour, clock, own_seen)), sleep=clock.sleep, clock=clock
    )
    with (
        flavour.http.Client(transport=limited) as a,
        flavour.http.Client(transport=sharing) as b,
        flavour.http.Client(transport=alone) as c,
    ):
        assert a.post(URL, json={}).status_code == 429  # one attempt, given up: the gate learnt
        assert c.post(URL, json={}).status_code == 200  # a gate of its own: no wait
        assert b.post(URL, json={}).status_code == 200
    assert own_seen == [1000.0]
    assert shared_seen == [1001.5]
    assert clock.slept == [1.5]
    assert sharing.gate is limited.gate is gate
    assert alone.gate is not gate


@pytest.mark.anyio
async def test_async_transports_sharing_a_gate_share_the_cooldown(
    flavour: Flavour, clock: FakeClock
) -> None:
    gate = Gate(clock=clock)
    seen: list[float] = []
    limited = flavour.AsyncRetryTransport(
        flavour.mock(_script(flavour, LIMITED)),
        policy=ONCE,
        gate=gate,
        sleep=clock.asleep,
        clock=clock,
    )
    sharing = flavour.AsyncRetryTransport(
        flavour.mock(_times(flavour, clock, seen)), gate=gate, sleep=clock.asleep, clock=clock
    )
    async with (
        flavour.http.AsyncClient(transport=limited) as a,
        flavour.http.AsyncClient(transport=sharing) as b,
    ):
        assert (await a.post(URL, json={})).status_code == 429
        assert (await b.post(URL, json={})).status_code == 200
    assert seen == [1001.5]
    assert clock.slept == [1.5]


def test_a_paced_client_on_a_fake_clock_makes_progress(flavour: Flavour, clock: FakeClock) -> None:
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) > 1000:
            raise AssertionError(f"still waiting after 1000 sleeps, the last of {seconds!r} s")
        clock.sleep(seconds)

    seen: list[float] = []
    transport = flavour.RetryTransport(
        flavour.mock(_times(flavour, clock, seen)),
        gate=Gate(rate=10.0, clock=clock),
        sleep=sleep,
        clock=clock,
    )
    with flavour.http.Client(transport=transport) as client:
        for _ in range(3):
            assert client.post(URL, json={}).status_code == 200
    assert seen == pytest.approx([1000.0, 1000.1, 1000.2])


# -- entry points: the decorator ------------------------------------------------------------------


def status_error(flavour: Flavour, status: int, headers: dict[str, str]) -> Exception:
    """What ``response.raise_for_status()`` raises, of the flavour's library."""
    http = flavour.http
    request = http.Request("POST", URL)
    response = http.Response(status, headers=headers, request=request)
    error: Exception = http.HTTPStatusError(f"{status}", request=request, response=response)
    return error


def test_the_decorator_learns_from_exceptions_carrying_responses(
    flavour: Flavour, clock: FakeClock
) -> None:
    gate = Gate(clock=clock)
    calls: list[float] = []

    @xretry.retry(policy=ONCE, gate=gate, sleep=clock.sleep, clock=clock)
    def limited() -> str:
        raise status_error(flavour, 429, {"retry-after-ms": "1500"})

    @xretry.retry(gate=gate, sleep=clock.sleep, clock=clock)
    def other() -> str:
        calls.append(clock.now)
        return "ok"

    with pytest.raises(flavour.http.HTTPStatusError):
        limited()
    assert gate.rate_limited == 1
    assert other() == "ok"
    assert calls == [1001.5]  # the other function waited out the cooldown it shares
    assert clock.slept == [1.5]


@pytest.mark.anyio
async def test_the_async_decorator_learns_from_exceptions_carrying_responses(
    flavour: Flavour, clock: FakeClock
) -> None:
    gate = Gate(clock=clock)
    calls: list[float] = []
    failures = [status_error(flavour, 429, {"retry-after-ms": "1500"})]

    @xretry.retry(gate=gate, sleep=clock.asleep, clock=clock)
    async def flaky() -> str:
        calls.append(clock.now)
        if failures:
            raise failures.pop()
        return "ok"

    assert await flaky() == "ok"
    assert calls == [1000.0, 1001.5]  # retried through the gate: its cooldown, no other wait
    assert clock.slept == [1.5]
    assert gate.rate_limited == 1


# -- entry points: the deferred pollers -----------------------------------------------------------

POLL = PollPolicy(first_delay=2.0, interval=1.0, multiplier=2.0, jitter=0.0, timeout=60.0)


def deferred_api(flavour: Flavour, clock: FakeClock, seen: list[tuple[str, float]]) -> Any:
    """Submit: a 429 (0.5 s), then the id; poll: a 429 (0.7 s), then the completion."""

    def server(request: Any) -> Any:
        seen.append((request.method, clock.now))
        if [m for m, _ in seen].count(request.method) == 1:
            wait = "500" if request.method == "POST" else "700"
            return flavour.http.Response(
                429, headers={"retry-after-ms": wait}, json={"code": "c", "error": "slow down"}
            )
        body = {"request_id": RID} if request.method == "POST" else COMPLETION
        return flavour.http.Response(200, json=body)

    return flavour.mock(server)


@pytest.mark.parametrize("shared", [True, False], ids=["given-gate", "own-gate"])
def test_the_pollers_submit_and_polls_pass_one_gate(
    flavour: Flavour, clock: FakeClock, shared: bool
) -> None:
    seen: list[tuple[str, float]] = []
    gate = Gate(clock=clock) if shared else None
    client = flavour.http.Client(base_url=API, transport=deferred_api(flavour, clock, seen))
    poller = xretry.DeferredCompletions(
        client, policy=EXACT, poll=POLL, gate=gate, sleep=clock.sleep, clock=clock
    )
    assert poller.gate is not None
    if gate is not None:
        assert poller.gate is gate
    with client:
        request_id = poller.submit(model="grok-4", messages=[])
        assert poller.wait(request_id) == COMPLETION
    assert poller.gate.rate_limited == 2  # the submission's 429 and the poll's, one gate
    assert clock.slept == pytest.approx([0.5, 0.7])
    assert seen == [("POST", 1000.0), ("POST", 1000.5), ("GET", 1000.5), ("GET", 1001.2)]
    assert xretry.DeferredCompletions(client, gate=False).gate is None


@pytest.mark.anyio
async def test_the_async_pollers_submit_and_polls_pass_one_gate(
    flavour: Flavour, clock: FakeClock
) -> None:
    seen: list[tuple[str, float]] = []
    gate = Gate(clock=clock)
    client = flavour.http.AsyncClient(base_url=API, transport=deferred_api(flavour, clock, seen))
    poller = xretry.AsyncDeferredCompletions(
        client, policy=EXACT, poll=POLL, gate=gate, sleep=clock.asleep, clock=clock
    )
    assert poller.gate is gate
    async with client:
        request_id = await poller.submit(model="grok-4", messages=[])
        assert await poller.wait(request_id) == COMPLETION
    assert gate.rate_limited == 2
    assert clock.slept == pytest.approx([0.5, 0.7])
    assert xretry.AsyncDeferredCompletions(client, gate=False).gate is None


# -- found in review: slow responses, callers that never come back, the first attempt's timeouts


def test_the_rate_grows_again_with_slow_responses() -> None:
    """With LLM latency the success arrives seconds after its slot: pacing still binds."""
    settings = GateSettings(rate=0.5)
    state = GateState()
    now, latency = 0.0, 3.0
    in_flight: list[float] = []  # when each outstanding request's response arrives
    for _ in range(200):
        wait = state.reserve(settings, now)
        while wait < 0:  # told to come back: do so
            now += -wait
            wait = state.reserve(settings, now)
        now += wait
        in_flight.append(now + latency)
        for done in [t for t in in_flight if t <= now]:
            in_flight.remove(done)
            state.observe(settings, done, 200, None, None)
    assert state.rate is not None
    assert state.rate > 2.0


def test_callers_that_never_come_back_leave_no_phantom_queue() -> None:
    settings = GateSettings(rate=10.0)
    state = GateState()
    for _ in range(500):  # each told to come back, none ever does
        state.reserve(settings, 0.0)
    assert state.come_back_at - state.next_slot <= _pacing._SPREAD
    # Later, with the real queue long gone, a newcomer is not sent to the back of a phantom one.
    assert abs(state.reserve(settings, 6.0)) <= 0.1 + _pacing._SPREAD


def test_a_gate_wait_is_taken_off_the_first_attempts_timeouts(
    flavour: Flavour, clock: FakeClock
) -> None:
    seen: list[dict[str, float]] = []

    def handler(request: Any) -> Any:
        seen.append(dict(request.extensions["timeout"]))
        return flavour.http.Response(200, json={})

    gate = Gate(clock=clock)
    gate.observe(429, wait=8.0)  # everyone waits 8 s
    transport = flavour.RetryTransport(
        flavour.mock(handler),
        policy=RetryPolicy(deadline=10.0),
        gate=gate,
        sleep=clock.sleep,
        clock=clock,
    )
    with flavour.http.Client(transport=transport) as client:
        assert client.get(f"{API}/models").status_code == 200
    assert clock.slept == pytest.approx([8.0])
    assert max(seen[0].values()) == pytest.approx(2.0)  # 10 s deadline, 8 s of it spent waiting


def test_a_spent_credits_429_teaches_the_gate_nothing(flavour: Flavour, clock: FakeClock) -> None:
    body = (
        b'{"error": "Your team has either used all available credits or reached its '
        b'monthly spending limit."}'
    )

    def handler(request: Any) -> Any:
        return flavour.http.Response(429, content=body, headers={"retry-after-ms": "5000"})

    gate = Gate(clock=clock)
    transport = flavour.RetryTransport(
        flavour.mock(handler), gate=gate, sleep=clock.sleep, clock=clock
    )
    with flavour.http.Client(transport=transport) as client:
        assert client.post(URL, json={}).status_code == 429
    assert gate.rate_limited == 0
    assert gate.reserve() == 0.0  # no cooldown either
