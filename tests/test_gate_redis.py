"""The gate's state in Redis (``xretry.redis.RedisGateBackend``) behaves as the in-memory gate does.

The behavioural tests run over both backends: ``same_key()`` makes another :class:`xretry.Gate` on
one shared state each time it is called; with Redis, each one has a client of its own (another
process, another host). All of them read one :class:`FakeClock` instead of Redis's ``TIME``, so
every wait is exact. The Redis tests use the real ``redis-server`` from ``conftest.py`` and skip,
saying why, when it or the ``redis`` package is missing.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest

import xretry
from xretry import Gate, RetryPolicy
from xretry._gate import GateState
from xretry.backends import GateBackend, GateSettings, MemoryGateBackend
from xretry.emulator import EmulatorApp, EmulatorServer, Scenario

from .conftest import FakeClock

if TYPE_CHECKING:
    import redis
    import redis.asyncio

    from xretry.redis import RedisGateBackend

KEY = "xretry:gate:test"
API_KEY = "xai-gate-redis-secret-0123456789"
CHAT: dict[str, Any] = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}

SameKey = Callable[..., Gate]


def _backend(client: Any, clock: FakeClock | None, **kwargs: Any) -> RedisGateBackend:
    from xretry.redis import RedisGateBackend

    return RedisGateBackend(client, KEY, clock=clock, **kwargs)


@pytest.fixture(params=["memory", "redis"])
def same_key(request: pytest.FixtureRequest, clock: FakeClock) -> SameKey:
    """Each call: another Gate on one shared state (in Redis: with a client of its own)."""
    if request.param == "memory":
        shared = MemoryGateBackend(clock=clock)
        return lambda **settings: Gate(backend=shared, **settings)
    connect: Callable[[], redis.Redis] = request.getfixturevalue("new_redis_client")
    return lambda **settings: Gate(backend=_backend(connect(), clock), **settings)


def _stored(client: redis.Redis) -> dict[str, Any]:
    raw = client.get(KEY)
    assert isinstance(raw, bytes)
    data: dict[str, Any] = json.loads(raw)
    return data


def _shared_state(gate: Gate) -> dict[str, Any]:
    """The state behind a gate, as the JSON it is (or would be) stored as."""
    backend = gate.backend
    if isinstance(backend, MemoryGateBackend):
        data: dict[str, Any] = json.loads(backend.state.dumps())
        return data
    import redis

    from xretry.redis import RedisGateBackend

    assert isinstance(backend, RedisGateBackend)
    assert isinstance(backend.client, redis.Redis)
    return _stored(backend.client)


def _closed_port() -> int:
    """A loopback port with nothing listening on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- the same behaviour on both backends ------------------------------------------------------


def test_unpaced_until_the_server_says_otherwise(same_key: SameKey) -> None:
    a, b = same_key(), same_key()
    assert [a.reserve(), b.reserve(), a.reserve()] == [0.0, 0.0, 0.0]
    assert a.rate is None
    assert b.rate_limited == 0


def test_a_429s_wait_pauses_another_gate_on_the_key(same_key: SameKey, clock: FakeClock) -> None:
    a, b = same_key(), same_key()
    assert a.reserve() == 0.0
    a.observe(429, wait=2.0)
    assert b.reserve() == pytest.approx(2.0)  # "another process": it never saw the 429
    assert b.rate_limited == 1
    clock.now += 0.5
    assert b.reserve() == pytest.approx(1.5)
    clock.now += 1.5
    assert b.reserve() == 0.0


def test_a_rate_from_x_ratelimit_headers_paces_every_gate(same_key: SameKey) -> None:
    a, b = same_key(), same_key()
    a.observe(200, rate=40.0)
    assert b.reserve() == 0.0
    assert b.rate == pytest.approx(40.0 * 0.98)
    step = 1.0 / (40.0 * 0.98)
    assert [a.reserve(), b.reserve(), a.reserve()] == pytest.approx([step, 2 * step, 3 * step])


def test_a_429_episode_measures_what_gets_through(same_key: SameKey, clock: FakeClock) -> None:
    """While 429s keep coming, the successes per second of the episode are the limit: 10 in
    0.5 s, whichever gate saw them, is 20/s, paced at 0.98 of it."""
    gates = [same_key(rate=100.0), same_key(rate=100.0)]
    gates[0].observe(429)
    for i in range(10):
        clock.now += 0.05
        gates[i % 2].observe(200)
    gates[1].observe(429)
    gates[0].reserve()  # a call: what this gate ("process") knows is what the last call saw
    assert gates[0].rate == pytest.approx(20.0 * 0.98)
    assert gates[0].rate_limited == 2


def test_the_state_is_gate_states_own(same_key: SameKey, clock: FakeClock) -> None:
    """Not a port: the same calls on a bare GateState give the same waits and the same state."""
    a, b = same_key(rate=5.0), same_key(rate=5.0)
    reference, settings = GateState(), GateSettings(rate=5.0)
    script: list[tuple[Gate, str, dict[str, Any]]] = [
        (a, "reserve", {}),
        (b, "reserve", {}),
        (a, "observe", {"status_code": 200}),
        (b, "observe", {"status_code": 429, "wait": 0.7}),
        (a, "reserve", {}),
        (b, "observe", {"status_code": 200, "rate": 12.0}),
        (b, "reserve", {}),
        (a, "observe", {"status_code": None}),
        (a, "reserve", {}),
        (b, "observe", {"status_code": 429}),
        (a, "reserve", {}),
    ]
    for gate, method, kwargs in script:
        clock.now += 0.125
        if method == "reserve":
            assert gate.reserve() == pytest.approx(reference.reserve(settings, clock.now))
        else:
            gate.observe(**kwargs)
            status, wait, rate = (kwargs.get(k) for k in ("status_code", "wait", "rate"))
            reference.observe(settings, clock.now, status, wait, rate)
    assert _shared_state(a) == json.loads(reference.dumps())


#: Settings that book a slot at any distance (no "come back later"): every reservation is one
#: slot, so the slots show whether any was handed out twice.
BOOK_ANY = GateSettings(rate=20.0, horizon=None)


def test_threads_on_many_hosts_get_distinct_slots(same_key: SameKey) -> None:
    """8 gates ("hosts") x 4 threads reserve at one instant: 32 slots 1/rate apart, none twice."""
    backends = [same_key().backend for _ in range(8)]
    start = threading.Barrier(32)

    def reserve(index: int) -> float:
        start.wait()
        return backends[index % 8].reserve(BOOK_ANY)

    with ThreadPoolExecutor(32) as pool:
        waits = sorted(pool.map(reserve, range(32)))
    assert waits == pytest.approx([i / 20.0 for i in range(32)], abs=1e-6)


# -- Redis only: the key, the clock, contention -----------------------------------------------


def test_the_stored_state_is_numbers_under_one_key_with_a_ttl(
    redis_client: redis.Redis, clock: FakeClock
) -> None:
    gate = Gate(backend=_backend(redis_client, clock))
    gate.reserve()
    gate.observe(429, wait=1.0)
    gate.observe(200, rate=40.0)
    assert redis_client.keys("*") == [KEY.encode()]
    for name, value in _stored(redis_client).items():
        values = value if isinstance(value, list) else [value]
        assert all(v is None or isinstance(v, int | float) for v in values), name
    assert 3_599_000 < redis_client.pttl(KEY) <= 3_600_000


def test_the_ttl_is_refreshed_by_every_write(redis_client: redis.Redis, clock: FakeClock) -> None:
    gate = Gate(backend=_backend(redis_client, clock, ttl=30.0))
    gate.reserve()
    redis_client.pexpire(KEY, 1000)
    gate.observe(200)
    assert 29_000 < redis_client.pttl(KEY) <= 30_000
    Gate(backend=_backend(redis_client, clock, ttl=None)).reserve()
    assert redis_client.pttl(KEY) == -1  # never expires


def test_the_servers_clock_by_default(redis_client: redis.Redis) -> None:
    seconds, micros = redis_client.time()
    gate = Gate(backend=_backend(redis_client, None))
    gate.reserve()
    gate.observe(429, wait=30.0)
    cooldown = _stored(redis_client)["cooldown_until"]
    assert cooldown == pytest.approx(seconds + micros / 1e6 + 30.0, abs=5.0)
    assert 29.0 < Gate(backend=_backend(redis_client, None)).reserve() <= 30.0


def test_a_lost_race_runs_again_on_the_winners_state(
    new_redis_client: Callable[[], redis.Redis],
) -> None:
    """The clock is read between WATCH and EXEC: one that writes the key there is another
    process winning the race. Its write is kept, the loser's call is applied on top of it."""
    other = new_redis_client()
    meddled = 0

    def meddling_clock() -> float:
        nonlocal meddled
        if meddled < 3:
            meddled += 1
            other.set(KEY, GateState(limited=10 + meddled).dumps())
        return 1000.0

    from xretry.redis import RedisGateBackend

    gate = Gate(backend=RedisGateBackend(new_redis_client(), KEY, clock=meddling_clock))
    gate.observe(429)
    assert meddled == 3
    assert _stored(other)["limited"] == 14  # the third meddler's 13, plus this 429
    assert gate.rate_limited == 14


@pytest.mark.slow
def test_endless_conflicts_open_the_gate_with_a_clear_warning(
    new_redis_client: Callable[[], redis.Redis], caplog: pytest.LogCaptureFixture
) -> None:
    other = new_redis_client()

    def meddling_clock() -> float:
        other.set(KEY, GateState().dumps())
        return 1000.0

    from xretry.redis import RedisGateBackend

    gate = Gate(backend=RedisGateBackend(new_redis_client(), KEY, clock=meddling_clock))
    with caplog.at_level(logging.WARNING, logger="xretry"):
        assert gate.reserve() == 0.0  # open: a rate-limit gate never fails the call
    assert "changed under this process 64 times in a row" in caplog.text


def test_wrong_clients_and_arguments(redis_url: str) -> None:
    import redis.asyncio

    from xretry.redis import RedisGateBackend

    with pytest.raises(TypeError, match=r"redis\.Redis or a redis\.asyncio\.Redis"):
        RedisGateBackend(object())  # type: ignore[arg-type]
    aclient = redis.asyncio.Redis.from_url(redis_url)
    with pytest.raises(TypeError, match=r"a sync transport or a sync call needs a redis\.Redis"):
        Gate(backend=RedisGateBackend(aclient)).reserve()
    sync = redis.Redis.from_url(redis_url)
    for bad in ({"key": ""}, {"ttl": 0}, {"ttl": float("inf")}, {"ttl": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            RedisGateBackend(sync, **bad)
    backend = RedisGateBackend(sync, "xretry:gate:team-a")
    assert isinstance(backend, GateBackend)
    assert repr(backend) == (
        f"RedisGateBackend('redis://127.0.0.1:{sync.connection_pool.connection_kwargs['port']}/0'"
        ", key='xretry:gate:team-a')"
    )
    sync.close()


# -- fail open --------------------------------------------------------------------------------


def _down_client(**extra: Any) -> redis.Redis:
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis(
        host="127.0.0.1",
        port=_closed_port(),
        password="s3cret-redis-password",
        socket_connect_timeout=0.5,
        socket_timeout=0.5,
        retry=Retry(NoBackoff(), 0),
        **extra,
    )


def test_redis_down_opens_the_gate_with_one_warning(
    redis_url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    client = _down_client()
    gate = Gate(backend=_backend(client, clock))
    with caplog.at_level(logging.WARNING, logger="xretry"):
        assert gate.reserve() == 0.0
        gate.observe(429, wait=5.0)  # learns nothing, raises nothing
        clock.now += 2.5  # past the recheck: Redis is asked again, still down
        assert gate.reserve() == 0.0
        gate.observe(200)
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    assert f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0" in message
    assert "ConnectionError" in message
    assert "The gate is open" in message
    assert "s3cret" not in message
    client.close()


def test_an_outage_ends_when_redis_answers_again(
    redis_client: redis.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Anything that keeps the gate from its state opens it: here the key holds a list
    (WRONGTYPE). The list is left alone; for 2 s nobody asks Redis; then the gate is shared."""
    redis_client.rpush(KEY, "someone else's list")
    gate = Gate(backend=_backend(redis_client, clock))
    with caplog.at_level(logging.INFO, logger="xretry"):
        assert gate.reserve() == 0.0
        gate.observe(429, wait=5.0)
        assert redis_client.lrange(KEY, 0, -1) == [b"someone else's list"]
        redis_client.delete(KEY)
        clock.now += 1.9
        assert gate.reserve() == 0.0
        assert redis_client.exists(KEY) == 0  # still open: no call reached Redis
        clock.now += 1.0
        gate.observe(429, wait=5.0)
        assert Gate(backend=_backend(redis_client, clock)).reserve() == pytest.approx(5.0)
    assert [(r.levelname, "WRONGTYPE" in r.getMessage()) for r in caplog.records] == [
        ("WARNING", True),
        ("INFO", False),
    ]
    assert "answers again" in caplog.records[1].getMessage()


@pytest.mark.parametrize(
    "value",
    [b"hello", b"[1, 2]", b'{"rate": "fast"}', b'{"successes": [null]}', b'{"rate": 1e999}'],
)
def test_a_key_holding_something_else_is_left_alone(
    redis_client: redis.Redis, clock: FakeClock, caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    redis_client.set(KEY, value)
    gate = Gate(backend=_backend(redis_client, clock))
    with caplog.at_level(logging.WARNING, logger="xretry"):
        assert gate.reserve() == 0.0
    assert redis_client.get(KEY) == value
    (record,) = caplog.records
    assert "not a gate's state" in record.getMessage()
    assert value.decode() not in record.getMessage()


# -- async: redis.asyncio on asyncio; a sync client (worker threads) on asyncio and trio ---------

CLIENT_KINDS = ["sync client, worker thread", "redis.asyncio client"]


@asynccontextmanager
async def _clients(kind: str, url: str, backend: str) -> AsyncIterator[Callable[[], Any]]:
    """Make clients of ``kind``; closed at the end."""
    import redis
    import redis.asyncio

    if kind == CLIENT_KINDS[1] and backend == "trio":
        pytest.skip("redis.asyncio runs on asyncio only (its connections are asyncio streams)")
    made: list[Any] = []

    def connect() -> Any:
        cls = redis.Redis if kind == CLIENT_KINDS[0] else redis.asyncio.Redis
        made.append(cls.from_url(url, socket_timeout=10))
        return made[-1]

    try:
        yield connect
    finally:
        for client in made:
            if isinstance(client, redis.asyncio.Redis):
                await client.aclose()
            else:
                client.close()


@pytest.fixture
def flushed_url(redis_url: str, new_redis_client: Callable[[], redis.Redis]) -> str:
    """The session's server, its database flushed for this test."""
    return redis_url


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_async_cooldown_and_distinct_slots(
    kind: str, flushed_url: str, anyio_backend: str, clock: FakeClock
) -> None:
    async with _clients(kind, flushed_url, anyio_backend) as connect:
        a, b = (Gate(backend=_backend(connect(), clock)) for _ in range(2))
        assert await a.areserve() == 0.0
        await a.aobserve(429, wait=1.5)
        assert await b.areserve() == pytest.approx(1.5)
        clock.now += 1.5
        await a.aobserve(200, rate=20.0)
        waits: list[float] = []

        async def reserve(gate: Gate) -> None:
            waits.append(await gate.backend.areserve(replace(BOOK_ANY, rate=None)))

        async with anyio.create_task_group() as group:
            for i in range(16):
                group.start_soon(reserve, (a, b)[i % 2])
        assert sorted(waits) == pytest.approx([i / 19.6 for i in range(16)], abs=1e-6)
        assert a.rate == pytest.approx(19.6)
        assert b.rate_limited == 1


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_async_fail_open(
    kind: str,
    anyio_backend: str,
    redis_url: str,  # not used: it skips the test, saying why, without redis-py
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    if kind == CLIENT_KINDS[1] and anyio_backend == "trio":
        pytest.skip("redis.asyncio runs on asyncio only (its connections are asyncio streams)")
    client: Any = (
        _down_client()
        if kind == CLIENT_KINDS[0]
        else redis.asyncio.Redis(
            host="127.0.0.1",
            port=_closed_port(),
            socket_connect_timeout=0.5,
            retry=Retry(NoBackoff(), 0),
        )
    )
    gate = Gate(backend=_backend(client, clock))
    with caplog.at_level(logging.WARNING, logger="xretry"):
        assert await gate.areserve() == 0.0
        await gate.aobserve(429, wait=5.0)
        assert await gate.areserve() == 0.0
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    if isinstance(client, redis.asyncio.Redis):
        await client.aclose()
    else:
        client.close()


@pytest.mark.anyio
async def test_redis_asyncio_on_trio_says_what_to_pass(anyio_backend: str, redis_url: str) -> None:
    import redis.asyncio

    if anyio_backend != "trio":
        pytest.skip("trio only: redis.asyncio works on asyncio")
    gate = Gate(backend=_backend(redis.asyncio.Redis.from_url(redis_url), None))
    with pytest.raises(RuntimeError, match=r"on trio .* give RedisGateBackend a redis\.Redis"):
        await gate.areserve()


# -- through the transports, against the emulator ---------------------------------------------


@pytest.fixture
def emulator(clock: FakeClock) -> Iterator[EmulatorServer]:
    """1 request/s, burst 1, 429s with ``retry-after-ms``; on the tests' fake clock."""
    app = EmulatorApp(Scenario(rate_limit=1.0, burst=1, hints="full"), clock=clock)
    with EmulatorServer(app=app) as server:
        yield server


def test_two_transports_on_one_key_share_a_cooldown(
    emulator: EmulatorServer, new_redis_client: Callable[[], redis.Redis], clock: FakeClock
) -> None:
    """A's 429 (a 1 s wait) holds B back: B waits it out and gets a 200 at its first try, where
    a transport with its own gate (C) runs straight into a second 429."""

    def client(gate: Gate | None, policy: RetryPolicy | None = None) -> httpx.Client:
        transport = xretry.RetryTransport(policy=policy, gate=gate, sleep=clock.sleep, clock=clock)
        return httpx.Client(
            base_url=emulator.base_url,
            headers={"authorization": f"Bearer {API_KEY}"},
            transport=transport,
        )

    once = RetryPolicy(max_attempts=1)
    with (
        client(Gate(backend=_backend(new_redis_client(), clock)), once) as a,
        client(Gate(backend=_backend(new_redis_client(), clock))) as b,
        client(None, once) as c,
    ):
        assert a.post("/chat/completions", json=CHAT).status_code == 200
        assert a.post("/chat/completions", json=CHAT).status_code == 429
        assert c.post("/chat/completions", json=CHAT).status_code == 429
        assert clock.slept == []
        response = b.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.extensions["xretry"].attempt_count == 1
    assert clock.slept == [pytest.approx(1.0)]  # A's 429: retry-after-ms 1000, shared
    assert emulator.app.stats()["rate_limited"] == 2
    stored = new_redis_client()
    for key in stored.keys("*"):
        value = stored.get(key)
        assert isinstance(key, bytes)
        assert isinstance(value, bytes)
        assert API_KEY.encode() not in key + value


@pytest.mark.anyio
@pytest.mark.parametrize("kind", CLIENT_KINDS)
async def test_async_transports_share_a_cooldown(
    kind: str, flushed_url: str, anyio_backend: str, clock: FakeClock
) -> None:
    app = EmulatorApp(Scenario(rate_limit=1.0, burst=1, hints="full"), clock=clock)
    async with _clients(kind, flushed_url, anyio_backend) as connect:

        def client(policy: RetryPolicy | None = None) -> httpx.AsyncClient:
            transport = xretry.AsyncRetryTransport(
                httpx.ASGITransport(app=app),
                policy=policy,
                gate=Gate(backend=_backend(connect(), clock)),
                sleep=clock.asleep,
                clock=clock,
            )
            auth = {"authorization": f"Bearer {API_KEY}"}
            return httpx.AsyncClient(
                base_url="http://emulator/v1", headers=auth, transport=transport
            )

        async with client(RetryPolicy(max_attempts=1)) as a, client() as b:
            assert (await a.post("/chat/completions", json=CHAT)).status_code == 200
            assert (await a.post("/chat/completions", json=CHAT)).status_code == 429
            response = await b.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.extensions["xretry"].attempt_count == 1
    assert clock.slept == [pytest.approx(1.0)]
    assert app.stats()["rate_limited"] == 1
