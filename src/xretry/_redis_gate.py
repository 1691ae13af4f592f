"""The gate's state in Redis: processes on many hosts share one cooldown and one pacing.

The algorithm is :class:`GateState`'s (``_pacing.py``), unchanged: nothing of it is ported to Lua.
The state lives as :meth:`GateState.dumps` JSON under one key, and every ``reserve``/``observe`` is
one optimistic transaction on it, in three round trips::

    WATCH key
    EVAL "return {GET key, TIME}"        the state and the server's clock, in one round trip
                                         (then GateState.reserve/observe, here, in Python)
    MULTI  SET key <json> PX <ttl>  EXEC  fails if another process wrote the key meanwhile

A transaction that lost the race (``WatchError``) is run again on the fresh state, after a short
random pause; after ``_MAX_CONFLICTS`` losses in a row the gate opens, as when Redis is down. Calls
from one process take turns (a thread lock, or an ``asyncio.Lock`` per event loop), so races are
between processes only. The clock is the Redis server's ``TIME``: hosts whose clocks disagree
still agree on when a cooldown ends.

When the state cannot be used, the gate opens instead of failing the call: Redis unreachable, too
slow (the client's ``socket_timeout``), refusing the command (a read-only replica, ``WRONGTYPE``,
out of memory), or the key holding something that is not a gate's state. ``reserve`` returns 0,
``observe`` learns nothing, one ``WARNING`` on the ``xretry`` logger names the error (never a
password: the address is rebuilt without it), and for ``_RECHECK`` seconds no call tries Redis at
all, so an outage costs at most one timeout per ``_RECHECK`` per process. The first call that
works again logs ``INFO`` and the gate is shared again.

Errors raised (to the caller, not opened)::

    TypeError      a sync call on a redis.asyncio client (pass a redis.Redis: it serves both)
    RuntimeError   a redis.asyncio client used outside asyncio (trio: pass a redis.Redis)
    ValueError     a bad key or ttl (at construction)
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread

try:
    import redis
    import redis.asyncio
except ImportError as exc:  # pragma: no cover - only without the redis extra
    raise ImportError(
        "the Redis gate backend needs the redis package: pip install 'xretry[redis]'"
    ) from exc

from ._pacing import GateSettings, GateState
from ._redis_common import check_ttl, where

__all__ = ["RedisGateBackend"]

logger = logging.getLogger("xretry")

T = TypeVar("T")

#: The state and the server's clock in one round trip (a read: the algorithm stays in Python).
#: A missing key is Lua's ``false``, a nil reply: the table keeps both elements.
_READ = "return {redis.call('GET', KEYS[1]), redis.call('TIME')}"
#: Lost transactions in a row before a call gives up. A loser pauses a random while (the bound
#: doubling from _CONFLICT_PAUSE up to _CONFLICT_PAUSE_MAX), so this many in a row means the key
#: is busier than Redis can serve it.
_MAX_CONFLICTS = 64
_CONFLICT_PAUSE = 0.001
_CONFLICT_PAUSE_MAX = 0.05
#: Seconds the gate stays open without trying Redis after a failure.
_RECHECK = 2.0


class _NotAGateState(ValueError):
    """The key holds something :meth:`GateState.loads` cannot read, or non-numbers."""


def _load(raw: bytes | str | None) -> GateState:
    """The state under the key, checked: every field a finite number, a bool or ``None``."""
    try:
        state = GateState.loads(raw)
    except (ValueError, TypeError, AttributeError, RecursionError) as exc:
        raise _NotAGateState(f"not a gate's state ({type(exc).__name__})") from exc
    for name in GateState.__slots__:
        value = getattr(state, name)
        for item in value if isinstance(value, deque) else (value,):
            if item is None and not isinstance(value, deque):
                continue
            if not isinstance(item, int | float) or not math.isfinite(item):
                raise _NotAGateState(f"not a gate's state (field {name!r})")
    if state.rate is not None and not state.rate > 0:
        raise _NotAGateState("not a gate's state (field 'rate')")
    return state


def _seconds(server_time: Any) -> float:
    """Redis ``TIME`` (``[seconds, microseconds]``, as bytes or str) as float seconds."""
    seconds, micros = server_time
    return int(seconds) + int(micros) / 1e6


def _conflict_pause(attempt: int) -> float:
    """Full jitter, doubling from ``_CONFLICT_PAUSE``: losers of one race do not meet again."""
    return random.uniform(0.0, min(_CONFLICT_PAUSE_MAX, _CONFLICT_PAUSE * 2.0**attempt))


class RedisGateBackend:
    """A :class:`~xretry.backends.GateBackend` in Redis: every process on the same ``key`` shares
    one gate.

    Example::

        import redis, xretry, xretry.redis

        client = redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
        gate = xretry.Gate(backend=xretry.redis.RedisGateBackend(client, key="xretry:gate:team-a"))
        transport = xretry.RetryTransport(gate=gate)      # in every worker, on every host

    Give one ``key`` per rate limit (per API key, or per team and model if the limits are
    per model), never the API key itself: the key is a name, and the value holds only numbers.

    ``client`` is a ``redis.Redis`` or a ``redis.asyncio.Redis``:

    * a ``redis.Redis`` serves sync *and* async callers; async ones (asyncio or trio) run each
      call in a worker thread (``anyio.to_thread``), so the event loop never blocks on Redis;
    * a ``redis.asyncio.Redis`` serves async callers on asyncio only (redis-py's asyncio client
      does not run on trio), with no thread; a sync call on it is a ``TypeError``.

    ``ttl`` (seconds; ``None``: never) is set again on every write, so a key expires only after
    that long without a single request: a fresh state then, as after a restart. Keep it well above
    the gate's ``max_wait`` (60 s), which bounds any cooldown it stores. ``clock`` replaces the
    server's ``TIME`` (tests); every process on a key must use the same clock.

    If Redis is down, the gate opens (no pacing, no shared cooldown) rather than failing calls;
    see the module's docstring. Set short ``socket_timeout`` and ``socket_connect_timeout`` on
    the client (redis-py waits forever by default) and consider ``retry=Retry(NoBackoff(), 1)``
    (redis-py 6+ retries a refused connection for seconds before it reports it).

    ``rate`` and ``rate_limited`` are the values this process last read or wrote (no I/O). The
    client stays yours: close it when done.
    """

    def __init__(
        self,
        client: redis.Redis | redis.asyncio.Redis,
        key: str = "xretry:gate:default",
        *,
        ttl: float | None = 3600.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(client, redis.Redis | redis.asyncio.Redis):
            raise TypeError(
                "client must be a redis.Redis or a redis.asyncio.Redis, got "
                f"{type(client).__module__}.{type(client).__name__}"
            )
        if not isinstance(key, str) or not key:
            raise ValueError(f"key must be a non-empty str, got {key!r}")
        check_ttl(ttl)
        self.client = client
        self.key = key
        self.ttl = ttl
        self._ttl_ms = None if ttl is None else max(1, math.ceil(ttl * 1000))
        self._clock = clock
        self._local_clock = time.monotonic if clock is None else clock
        self._where = where(client)
        self._lock = threading.Lock()
        self._alocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._rate: float | None = None
        self._limited = 0
        #: Fail-open bookkeeping: no call tries Redis before this (local clock); in an outage.
        self._open_until = -math.inf
        self._down = False

    def __repr__(self) -> str:
        return f"RedisGateBackend({self._where!r}, key={self.key!r})"

    @property
    def rate(self) -> float | None:
        """The pacing rate this process last saw in the shared state."""
        return self._rate

    @property
    def rate_limited(self) -> int:
        """The 429s (of every process on the key) this process last saw in the shared state."""
        return self._limited

    # -- the protocol ---------------------------------------------------------------------------

    def reserve(self, settings: GateSettings) -> float:
        return self._run(lambda state, now: state.reserve(settings, now), 0.0)

    def observe(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None:
        self._run(lambda state, now: state.observe(settings, now, status, wait, rate), None)

    async def areserve(self, settings: GateSettings) -> float:
        if isinstance(self.client, redis.Redis):
            return await anyio.to_thread.run_sync(self.reserve, settings)
        return await self._arun(lambda state, now: state.reserve(settings, now), 0.0)

    async def aobserve(
        self, settings: GateSettings, status: int | None, wait: float | None, rate: float | None
    ) -> None:
        if isinstance(self.client, redis.Redis):
            await anyio.to_thread.run_sync(self.observe, settings, status, wait, rate)
            return
        await self._arun(lambda state, now: state.observe(settings, now, status, wait, rate), None)

    # -- one transaction: the sync and the async driver, around the same steps ----------------

    def _run(self, step: Callable[[GateState, float], T], default: T) -> T:
        client = self.client
        if not isinstance(client, redis.Redis):
            raise TypeError(
                "this RedisGateBackend has a redis.asyncio.Redis client, which only async callers "
                "can use; a sync transport or a sync call needs a redis.Redis client (which "
                "serves async callers too, from a worker thread)"
            )
        if self._skipping():
            return default
        with self._lock:
            if self._skipping():
                return default
            try:
                for attempt in range(_MAX_CONFLICTS):
                    with client.pipeline(transaction=True) as typed:
                        pipe: Any = typed  # redis-py's watch() is untyped
                        try:
                            pipe.watch(self.key)
                            reply: Any = pipe.eval(_READ, 1, self.key)
                            state, result, data = self._step(reply, step)
                            pipe.multi()
                            pipe.set(self.key, data, px=self._ttl_ms)
                            pipe.execute()
                        except redis.WatchError:
                            pass  # another process wrote the key: run again on its state
                        else:
                            return self._saw(state, result)
                    time.sleep(_conflict_pause(attempt))
            except (redis.RedisError, OSError, _NotAGateState) as exc:
                return self._opened(exc, default)
            return self._opened(self._contended(), default)

    async def _arun(self, step: Callable[[GateState, float], T], default: T) -> T:
        client = self.client
        assert isinstance(client, redis.asyncio.Redis)
        if self._skipping():
            return default
        async with self._alock():
            if self._skipping():
                return default
            try:
                for attempt in range(_MAX_CONFLICTS):
                    async with client.pipeline(transaction=True) as typed:
                        pipe: Any = typed  # redis.asyncio's watch() and multi() are untyped
                        try:
                            await pipe.watch(self.key)
                            reply: Any = await pipe.eval(_READ, 1, self.key)
                            state, result, data = self._step(reply, step)
                            pipe.multi()
                            pipe.set(self.key, data, px=self._ttl_ms)
                            await pipe.execute()
                        except redis.WatchError:
                            pass  # another process wrote the key: run again on its state
                        else:
                            return self._saw(state, result)
                    await asyncio.sleep(_conflict_pause(attempt))
            except (redis.RedisError, OSError, _NotAGateState) as exc:
                return self._opened(exc, default)
            return self._opened(self._contended(), default)

    def _alock(self) -> asyncio.Lock:
        """This event loop's lock (an ``asyncio.Lock`` must not be shared between loops)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                "a redis.asyncio.Redis client runs on asyncio only; on trio (or anything else) "
                "give RedisGateBackend a redis.Redis client: its calls run in a worker thread"
            ) from None
        lock = self._alocks.get(loop)
        if lock is None:
            lock = self._alocks[loop] = asyncio.Lock()
        return lock

    def _step(self, reply: Any, step: Callable[[GateState, float], T]) -> tuple[GateState, T, str]:
        """The sans-I/O middle of a transaction: the read's reply in, the value to write out."""
        raw, server_time = reply
        now = _seconds(server_time) if self._clock is None else self._clock()
        state = _load(raw)
        result = step(state, now)
        return state, result, state.dumps()

    def _saw(self, state: GateState, result: T) -> T:
        self._rate, self._limited = state.rate, state.limited
        if self._down:
            self._down = False
            logger.info("xretry gate: Redis at %s answers again; the gate is shared", self._where)
        return result

    def _skipping(self) -> bool:
        return self._local_clock() < self._open_until

    def _opened(self, exc: Exception, default: T) -> T:
        self._open_until = self._local_clock() + _RECHECK
        if not self._down:
            self._down = True
            logger.warning(
                "xretry gate: cannot use its state in Redis at %s (key %r): %s: %s. The gate is "
                "open (no pacing, no shared cooldown) until Redis answers again; retried every "
                "%g s",
                self._where,
                self.key,
                type(exc).__name__,
                str(exc).rstrip("."),
                _RECHECK,
            )
        return default

    def _contended(self) -> RuntimeError:
        """Why the gate opened after losing too many races (logged, not raised)."""
        return RuntimeError(
            f"the gate's state in Redis at {self._where} (key {self.key!r}) changed under this "
            f"process {_MAX_CONFLICTS} times in a row: too many processes contend for one key, or "
            "Redis is too slow for them"
        )
