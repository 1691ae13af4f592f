"""The Redis store beyond the shared contract (which ``test_deferred_store.py`` runs on it too):
workers on several hosts, races between them, what lands in Redis, TTLs and errors.

Every test runs against a real ``redis-server`` on a loopback port (the ``redis_url`` and
``new_redis_client`` fixtures in ``conftest.py``); without one, or without the redis package, they
skip. A "host" is a store with a client (a connection pool) of its own.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

import xretry
from xretry import DeferredOutcome, PollPolicy
from xretry.emulator import EmulatorServer, Scenario
from xretry.testing import no_wait

from ._redis import NO_REDIS_PACKAGE, RedisServer
from .conftest import FakeClock, Flavour
from .test_deferred import CHAT, RID, Api, sync_poller
from .test_deferred_store import CANARY, OTHER

try:
    import redis
    import redis.asyncio
    import redis.backoff
    import redis.retry

    from xretry.redis import RedisDeferredStore
except ImportError:  # pragma: no cover - the dev group has it
    pytest.skip(NO_REDIS_PACKAGE, allow_module_level=True)

PREFIX = "test:deferred"
#: redis-py retries a failed connection (with backoff) by default; the error tests need not wait.
NO_RETRY = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
Host = Callable[..., RedisDeferredStore]


@pytest.fixture
def host(new_redis_client: Callable[..., Any]) -> Host:
    """A new "host": a store with a client of its own, on the test's flushed database."""

    def open_host(prefix: str = PREFIX, **kwargs: Any) -> RedisDeferredStore:
        return RedisDeferredStore(new_redis_client(), prefix=prefix, **kwargs)

    return open_host


def everything(client: redis.Redis) -> dict[str, Any]:
    """Every key in the database with its value, read by type (DUMP would compress strings)."""
    readers: dict[str, Callable[[bytes | str], Any]] = {
        "string": client.get,
        "hash": client.hgetall,
        "zset": lambda key: client.zrange(key, 0, -1, withscores=True),
        "set": client.smembers,
        "list": lambda key: client.lrange(key, 0, -1),
    }
    return {_text(key): readers[_text(client.type(key))](key) for key in client.keys("*")}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# -- workers on several hosts ---------------------------------------------------------------------


def test_two_hosts_on_one_prefix_share_their_jobs(host: Host) -> None:
    a, b, elsewhere = host(), host(), host(prefix="another:app")
    a.add("from-a")
    b.add("from-b")
    elsewhere.add("not-ours")
    assert a.pending() == b.pending() == ["from-a", "from-b"]
    b.complete("from-a", {"by": "b"})
    a.complete("from-a", {"by": "a"})  # too late: the first result stays
    record = a.get("from-a")
    assert record is not None
    assert (record.state, record.result) == ("done", {"by": "b"})
    assert (a.pending(), a.unacknowledged()) == (["from-b"], ["from-a"])
    a.acknowledge("from-a")
    assert b.unacknowledged() == []
    assert (elsewhere.pending(), elsewhere.get("from-b")) == (["not-ours"], None)


def test_concurrent_completes_of_one_id_keep_exactly_one_result(host: Host) -> None:
    hosts = [host() for _ in range(4)]
    ids = [f"job-{n}" for n in range(25)]
    threads_per_id = 8
    barrier = threading.Barrier(threads_per_id)
    errors: list[BaseException] = []

    def racer(worker: int) -> None:
        store = hosts[worker % len(hosts)]  # hosts shared by threads, and threads by hosts
        try:
            for request_id in ids:
                barrier.wait()
                store.complete(request_id, {"worker": worker})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=racer, args=(w,)) for w in range(threads_per_id)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    firsts = {request_id: hosts[0].get(request_id) for request_id in ids}
    for request_id, record in firsts.items():
        assert record is not None
        assert record.state == "done"
        assert record.result in [{"worker": w} for w in range(threads_per_id)]
        hosts[1].complete(request_id, {"worker": "late"})
        assert hosts[2].get(request_id) == record  # the one result, never overwritten
    assert hosts[3].unacknowledged() == ids  # each id once, in the order first seen


def test_ids_that_look_like_the_stores_own_keys(host: Host) -> None:
    store = host()
    odd = ["pending", "unacknowledged", "seq", "job", "job:pending", "a:b:c", "x" * 256]
    for request_id in odd:
        store.add(request_id)
    store.complete("seq", {"n": 1})
    assert store.pending() == [i for i in odd if i != "seq"]
    assert store.unacknowledged() == ["seq"]
    keys = sorted(everything(store.client))
    assert all(key.startswith(f"{PREFIX}:") for key in keys)
    assert len(keys) == len(odd) + 3  # a hash per id, the two sets and the counter


def test_a_client_that_decodes_responses_works_the_same(redis_url: str, host: Host) -> None:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        store = RedisDeferredStore(client, prefix=PREFIX)
        store.add("a")
        store.complete("a", {"text": "héllo"})
        store.fail("b", "gone")
        assert store.get("a") == host().get("a")
        record = store.get("b")
        assert record is not None
        assert (record.state, record.error) == ("failed", "gone")
        assert (store.pending(), store.unacknowledged()) == ([], ["a"])
    finally:
        client.close()


def test_scripts_are_loaded_again_after_a_script_flush(host: Host) -> None:
    store = host()
    store.add("a")
    store.client.script_flush()  # what a restarted or failed-over server looks like to a client
    store.complete("a", {"n": 1})
    assert store.unacknowledged() == ["a"]


# -- what lands in Redis --------------------------------------------------------------------------


def test_api_key_headers_and_prompts_never_reach_redis(
    flavour: Flavour, clock: FakeClock, host: Host
) -> None:
    store = host()

    def echoing(request: Any) -> Any:  # a server that echoes the credentials back in errors
        if request.url.path.endswith(OTHER):
            text = f"unknown id for key {request.headers['authorization']}"
            return flavour.http.Response(404, json={"code": "x", "error": text})
        return api(request)

    api = Api(flavour, poll=[202, 200])
    poller = sync_poller(flavour, api, clock, store=store, handler=echoing)
    poller.client.headers["authorization"] = f"Bearer {CANARY}"
    poller.client.headers["x-custom-header"] = "HEADER-CANARY"
    assert poller.create(model="grok-4", messages=[{"role": "user", "content": "PROMPT-CANARY"}])
    with pytest.raises(xretry.DeferredNotFoundError, match=r"\*\*\*"):
        poller.wait(OTHER)
    record = store.get(OTHER)
    assert record is not None
    assert record.state == "failed"
    dumped = repr(everything(store.client)).encode()
    assert RID.encode() in dumped  # the ids and results are there...
    for secret in (CANARY, CANARY[4:], "HEADER-CANARY", "PROMPT-CANARY", "Bearer"):
        assert secret.encode() not in dumped  # ...and nothing else


# -- the pollers on it, against the emulator over loopback ----------------------------------------


@pytest.fixture
def emulator() -> Iterator[EmulatorServer]:
    with EmulatorServer(Scenario(ready_after=(0.0, 0.0))) as server:
        yield server


def poller_on(
    server: EmulatorServer, store: RedisDeferredStore, clients: list[httpx.Client]
) -> xretry.DeferredCompletions:
    client = httpx.Client(base_url=server.base_url, headers={"authorization": f"Bearer {CANARY}"})
    clients.append(client)
    poll = PollPolicy(first_delay=0.0, interval=0.01, jitter=0.0, timeout=30.0)
    return xretry.DeferredCompletions(client, store=store, poll=poll)


@pytest.fixture
def http_clients() -> Iterator[list[httpx.Client]]:
    clients: list[httpx.Client] = []
    yield clients
    for client in clients:
        client.close()


def bodies(n: int) -> list[dict[str, Any]]:
    return [{**CHAT, "messages": [{"role": "user", "content": f"job {i}"}]} for i in range(n)]


def test_another_host_resumes_what_a_crashed_one_left(
    emulator: EmulatorServer, host: Host, http_clients: list[httpx.Client]
) -> None:
    first = poller_on(emulator, host(), http_clients)
    with no_wait():
        handed_over = first.submit(**CHAT)
        fetched = first.wait(handed_over)  # returned, then the host died before saving it
        submitted = [first.submit(**body) for body in bodies(5)]  # and these were never polled
        store = host()
        assert (store.unacknowledged(), store.pending()) == ([handed_over], submitted)
        outcomes = list(poller_on(emulator, store, http_clients).resume())
    assert [o.request_id for o in outcomes] == [handed_over, *submitted]
    assert all(o.ok for o in outcomes), [o.error for o in outcomes]
    assert outcomes[0].completion == fetched
    replies = {o.completion["choices"][0]["message"]["content"] for o in outcomes if o.completion}
    assert replies == {"Emulated reply to: hi", *(f"Emulated reply to: job {i}" for i in range(5))}
    assert (store.pending(), store.unacknowledged()) == ([], [])
    stats = emulator.app.stats()
    assert (stats["deferred_submitted"], stats["deferred_delivered"]) == (6, 6)
    assert stats["polls"] == 6  # the result stored by the first host was not asked for again
    assert "status.404" not in stats


def test_two_hosts_resuming_at_once_lose_no_result(
    emulator: EmulatorServer, host: Host, http_clients: list[httpx.Client]
) -> None:
    submitter = poller_on(emulator, host(), http_clients)
    submitted = [submitter.submit(**body) for body in bodies(20)]
    pollers = [poller_on(emulator, host(), http_clients) for _ in range(2)]
    outcomes: list[list[DeferredOutcome]] = [[], []]
    barrier = threading.Barrier(2)

    def resume(n: int) -> None:
        barrier.wait()
        outcomes[n] = list(pollers[n].resume())

    with no_wait():
        threads = [threading.Thread(target=resume, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    delivered = {o.request_id for run in outcomes for o in run if o.ok}
    assert delivered == set(submitted)  # every result reached one host or the other
    store = host()
    for request_id in submitted:  # and the store kept it, whoever got the 404
        record = store.get(request_id)
        assert record is not None
        assert (record.state, record.error) == ("done", None)
    assert emulator.app.stats()["deferred_delivered"] == 20  # each fetched once from the server
    assert store.pending() == []


# -- expiry ---------------------------------------------------------------------------------------


def test_ttl_applies_only_to_records_that_need_nothing_more(host: Host) -> None:
    store = host(ttl=3 * 86_400)
    ttl_ms = store.client.pttl

    def key(request_id: str) -> str:
        return f"{PREFIX}:job:{request_id}"

    store.add("pending")
    store.complete("done", {"n": 1})
    store.add("failed")
    store.fail("failed", "expired")
    assert ttl_ms(key("pending")) == ttl_ms(key("done")) == -1  # never expire
    assert 0 < ttl_ms(key("failed")) <= 3 * 86_400_000
    store.acknowledge("done")
    assert 0 < ttl_ms(key("done")) <= 3 * 86_400_000
    store.complete("failed", {"n": 2})  # a result after the failure: kept until acknowledged
    assert ttl_ms(key("failed")) == -1
    assert host().get("pending") is not None  # a store without a ttl leaves them as they are
    assert ttl_ms(key("pending")) == -1


@pytest.mark.parametrize("ttl", [0, -1.0, float("inf"), float("nan"), True, "60"])
def test_ttl_must_be_a_positive_number_of_seconds(host: Host, ttl: Any) -> None:
    with pytest.raises(ValueError, match="ttl"):
        host(ttl=ttl)


# -- errors ---------------------------------------------------------------------------------------


def test_the_constructor_checks_its_arguments(redis_client: redis.Redis, redis_url: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        RedisDeferredStore(redis_client, prefix="")
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        RedisDeferredStore(redis.asyncio.Redis())  # type: ignore[arg-type]
    store = RedisDeferredStore(redis_client, prefix="p")
    assert repr(store) == f"RedisDeferredStore({redis_url!r}, prefix='p')"


def test_an_unreachable_server_is_a_connection_error_with_context(
    own_redis_server: RedisServer,
) -> None:
    server = own_redis_server
    client = redis.Redis.from_url(server.url, retry=NO_RETRY)
    store = RedisDeferredStore(client, prefix="app:jobs")
    store.add("a")
    where = f"redis://127.0.0.1:{server.port}/0"
    server.stop()
    try:
        with pytest.raises(ConnectionError) as caught:
            store.complete("a", {"n": 1})
        message = str(caught.value)
        assert f"deferred store at {where} (prefix 'app:jobs')" in message
        assert "store the result of a" in message
        assert "Is redis-server running" in message
        assert isinstance(caught.value.__cause__, redis.ConnectionError)
        closed = redis.Redis(port=server.port, password="SECRET-PW", retry=NO_RETRY)
        with pytest.raises(ConnectionError, match="to open it") as opened:
            RedisDeferredStore(closed)
        assert "SECRET-PW" not in str(opened.value)
        closed.close()
    finally:
        client.close()


def test_a_server_that_does_not_answer_is_a_timeout_error() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        port = silent.getsockname()[1]
        client = redis.Redis("127.0.0.1", port, socket_timeout=0.05, retry=NO_RETRY)
        with pytest.raises(TimeoutError, match=rf"127\.0\.0\.1:{port}/0 .* to open it") as caught:
            RedisDeferredStore(client)
        client.close()
    assert isinstance(caught.value.__cause__, redis.TimeoutError)


def test_another_applications_keys_under_the_prefix_are_reported(host: Host) -> None:
    store = host()
    store.client.set(f"{PREFIX}:pending", "not a sorted set")
    with pytest.raises(OSError, match=r"refused to add a: .*WRONGTYPE.*another application"):
        store.add("a")
    with pytest.raises(OSError, match="refused to list the pending ids"):
        store.pending()
