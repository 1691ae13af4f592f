"""The deferred store in Redis: workers on many hosts share one set of ids and results.

Same contract as :class:`~xretry.backends.SQLiteDeferredStore` (see ``_store.py``); every write
is one Lua script, so it is atomic and one round trip. The keys under ``prefix`` (``P``)::

    P:job:<request_id>   hash     state, result (JSON), error, body (base64: an unusable
                                  200's raw body), submitted_at, completed_at,
                                  acknowledged ("0"/"1"), seq
    P:pending            zset     ids still to poll, scored by seq
    P:unacknowledged     zset     results fetched but not acknowledged, scored by seq
    P:seq                string   the order ids were first seen in (INCR)

``pending()`` and ``unacknowledged()`` read one sorted set each (no SCAN), in the order the ids
were first recorded, like the SQLite store. Only ids, results, error text and timestamps are
stored: never the API key, headers or request bodies.

Errors: redis-py's exceptions are mapped to the built-in ``OSError`` family (the SQLite store
reports a database it cannot open as an ``OSError`` too), with the store's address (never its
credentials), what was being done, and a hint::

    OSError                      the server refused the command (read-only replica, WRONGTYPE, OOM)
     +-- ConnectionError         cannot connect, connection lost, authentication failed
     +-- TimeoutError            no answer within the client's ``socket_timeout``
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, cast

try:
    import redis
    from redis.commands.core import Script
except ImportError as exc:  # pragma: no cover - exercised in a test that hides the package
    raise ImportError(
        "the Redis deferred store needs the redis package: pip install 'xretry[redis]'"
    ) from exc

from ._redis_common import check_ttl, where
from ._store import DeferredRecord, State

__all__ = ["RedisDeferredStore"]

#: Shared by every script: the keys and arguments, in this order, and the two helpers.
_PRELUDE = """
local job, pending, unacked, seq = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local id, now, ttl, payload, body = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]

-- A new record: its submission time and its place in the order.
local function create()
    redis.call('HSET', job, 'submitted_at', now, 'seq', redis.call('INCR', seq),
               'acknowledged', '0')
end

-- Only a record that needs nothing more (failed, or done and acknowledged) may expire.
local function settle()
    local state = redis.call('HGET', job, 'state')
    local acked = redis.call('HGET', job, 'acknowledged')
    if ttl > 0 and (state == 'failed' or (state == 'done' and acked == '1')) then
        redis.call('PEXPIRE', job, ttl)
    else
        redis.call('PERSIST', job)
    end
end
"""

#: add: the first record of an id wins.
_ADD = """
if redis.call('EXISTS', job) == 1 then return 0 end
create()
redis.call('HSET', job, 'state', 'pending')
redis.call('ZADD', pending, redis.call('HGET', job, 'seq'), id)
return 1
"""

#: complete: the first result wins; a result arriving after a failure replaces the failure.
_COMPLETE = """
local state = redis.call('HGET', job, 'state')
if state == 'done' then return 0 end
if not state then create() end
redis.call('HSET', job, 'state', 'done', 'result', payload, 'completed_at', now)
redis.call('HDEL', job, 'error', 'body')
redis.call('ZREM', pending, id)
if redis.call('HGET', job, 'acknowledged') ~= '1' then
    redis.call('ZADD', unacked, redis.call('HGET', job, 'seq'), id)
end
settle()
return 1
"""

#: fail: ends a pending (or unknown) job only; a result is never replaced by a failure.
_FAIL = """
local state = redis.call('HGET', job, 'state')
if state and state ~= 'pending' then return 0 end
if not state then create() end
redis.call('HSET', job, 'state', 'failed', 'error', payload, 'completed_at', now)
if body ~= '' then redis.call('HSET', job, 'body', body) end
redis.call('ZREM', pending, id)
settle()
return 1
"""

#: acknowledge: only a finished job, once (acknowledging again does not restart the TTL).
_ACKNOWLEDGE = """
local state = redis.call('HGET', job, 'state')
if not state or state == 'pending' then return 0 end
if redis.call('HGET', job, 'acknowledged') == '1' then return 0 end
redis.call('HSET', job, 'acknowledged', '1')
redis.call('ZREM', unacked, id)
settle()
return 1
"""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _unpacked(stored: str) -> bytes:
    try:
        return base64.b64decode(stored.removeprefix("b64:"), validate=True)
    except (binascii.Error, ValueError):
        return stored.encode()


class RedisDeferredStore:
    """A :class:`~xretry.backends.DeferredStore` in Redis, shared by workers on any number of hosts.

    Example::

        import redis, xretry, xretry.redis

        client = redis.Redis.from_url("redis://localhost:6379/0", socket_timeout=5)
        store = xretry.redis.RedisDeferredStore(client, prefix="myapp:deferred")
        poller = xretry.DeferredCompletions(http_client, store=store)

    Workers given the same server and ``prefix`` see each other's ids: one that crashed is
    resumed by any other (``resume()``, ``as_completed(resume=True)``). ``pending()`` is a list,
    not a queue: two workers resuming at once may both poll an id; the server hands the result to
    one of them, and the store keeps it (a result always beats a failure recorded meanwhile).

    ``ttl`` (seconds, default: keep forever) lets a record expire once it needs nothing more:
    failed, or done *and acknowledged*. A result not yet acknowledged, and a pending id, never
    expire. xAI keeps a result for 24 hours, so a ``ttl`` of a few days is plenty; a record that
    expired is unknown again (a ``wait`` for it would ask the server, which answers 404).

    Durability is the server's: a write is applied when the call returns, and on disk only as the
    server's persistence makes it (``appendonly yes`` with ``appendfsync always``: on disk before
    the reply; ``everysec``, the default with AOF: about a second of writes lost in a crash of
    the server; RDB snapshots only: everything since the last one; neither: a restart loses
    everything). Replication is asynchronous, so a failover can lose the last writes too.

    Each method is one blocking round trip on ``client`` (redis-py's clients are thread-safe).
    The async poller calls its store from the event loop, as it does the SQLite store: a fast
    call on a nearby server, but set ``socket_timeout`` on the client, or a hung server blocks
    the loop for redis-py's default of forever. The client stays yours: close it when done.
    """

    def __init__(
        self, client: redis.Redis, *, prefix: str = "xretry:deferred", ttl: float | None = None
    ) -> None:
        if not isinstance(client, redis.Redis):
            raise TypeError(
                f"client must be a redis.Redis (sync) client, got {type(client).__module__}."
                f"{type(client).__name__}"
            )
        if not isinstance(prefix, str) or not prefix:
            raise ValueError(f"prefix must be a non-empty str, got {prefix!r}")
        check_ttl(ttl)
        self.client = client
        self.prefix = prefix
        self.ttl = ttl
        #: The TTL as the scripts take it: milliseconds, 0 for none.
        self._ttl_ms = 0 if ttl is None else max(1, math.ceil(ttl * 1000))
        self._where = where(client)
        self._pending = f"{prefix}:pending"
        self._unacked = f"{prefix}:unacknowledged"
        self._seq = f"{prefix}:seq"
        self._add, self._complete, self._fail, self._acknowledge = (
            client.register_script(_PRELUDE + body)
            for body in (_ADD, _COMPLETE, _FAIL, _ACKNOWLEDGE)
        )
        with self._reported("open it"):
            client.ping()

    def __repr__(self) -> str:
        return f"RedisDeferredStore({self._where!r}, prefix={self.prefix!r})"

    @contextmanager
    def _reported(self, action: str) -> Iterator[None]:
        """redis-py's errors as the built-in ``OSError`` family, with where and what."""
        try:
            yield
        except redis.ConnectionError as exc:
            hint = (
                "Are the client's username and password right"
                if isinstance(exc, redis.AuthenticationError)
                else "Is redis-server running and reachable from here"
            )
            raise ConnectionError(
                f"cannot reach the deferred store at {self._where} (prefix {self.prefix!r}) to "
                f"{action}: {str(exc).rstrip('.')}. {hint}?"
            ) from exc
        except redis.TimeoutError as exc:
            raise TimeoutError(
                f"the deferred store at {self._where} (prefix {self.prefix!r}) did not answer in "
                f"time to {action}: {exc} (the client's socket_timeout)"
            ) from exc
        except redis.RedisError as exc:
            hint = ""
            if isinstance(exc, redis.ReadOnlyError):
                hint = " (a read-only replica: give the store a client of the primary)"
            elif "WRONGTYPE" in str(exc):
                hint = f" (another application's keys under the prefix {self.prefix!r}?)"
            raise OSError(
                f"the deferred store at {self._where} (prefix {self.prefix!r}) refused to "
                f"{action}: {exc}{hint}"
            ) from exc

    def _run(
        self, script: Script, action: str, request_id: str, payload: str = "", body: str = ""
    ) -> None:
        keys = [self._job(request_id), self._pending, self._unacked, self._seq]
        args: list[str | int] = [request_id, repr(time.time()), self._ttl_ms, payload, body]
        with self._reported(f"{action} {request_id}"):
            script(keys=keys, args=args)

    def _job(self, request_id: str) -> str:
        return f"{self.prefix}:job:{request_id}"

    def add(self, request_id: str) -> None:
        self._run(self._add, "add", request_id)

    def complete(self, request_id: str, result: Mapping[str, Any]) -> None:
        payload = json.dumps(result, separators=(",", ":"))
        self._run(self._complete, "store the result of", request_id, payload)

    def fail(self, request_id: str, error: str, *, body: bytes | None = None) -> None:
        # base64: a raw body need not be UTF-8, and a client with decode_responses=True decodes.
        kept = "" if body is None else "b64:" + base64.b64encode(body).decode()
        self._run(self._fail, "record the failure of", request_id, error, kept)

    def acknowledge(self, request_id: str) -> None:
        self._run(self._acknowledge, "acknowledge", request_id)

    def get(self, request_id: str) -> DeferredRecord | None:
        with self._reported(f"read {request_id}"):
            raw = self.client.hgetall(self._job(request_id))
        if not raw:
            return None
        fields = {_text(name): value for name, value in raw.items()}
        result, error, completed_at = (fields.get(n) for n in ("result", "error", "completed_at"))
        body = fields.get("body")
        return DeferredRecord(
            request_id=request_id,
            state=cast(State, _text(fields["state"])),
            result=None if result is None else json.loads(result),
            error=None if error is None else _text(error),
            submitted_at=float(fields["submitted_at"]),
            completed_at=None if completed_at is None else float(completed_at),
            acknowledged=_text(fields["acknowledged"]) == "1",
            body=None if body is None else _unpacked(_text(body)),
        )

    def _ids(self, key: str, what: str) -> list[str]:
        with self._reported(f"list the {what} ids"):
            members = cast("list[bytes | str]", self.client.zrange(key, 0, -1))
        return [_text(member) for member in members]

    def pending(self) -> list[str]:
        return self._ids(self._pending, "pending")

    def unacknowledged(self) -> list[str]:
        return self._ids(self._unacked, "unacknowledged")
