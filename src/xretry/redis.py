"""The deferred store in Redis, for workers on many hosts sharing one set of jobs.

Requires the ``redis`` extra (``pip install 'xretry[redis]'``)::

    import redis, xretry, xretry.redis

    store = xretry.redis.RedisDeferredStore(redis.Redis.from_url(url, socket_timeout=5))
    poller = xretry.DeferredCompletions(http_client, store=store)
    for outcome in poller.resume():      # any worker picks up what another left pending
        ...

Same contract as :class:`xretry.backends.SQLiteDeferredStore`; see ``docs/deferred.md`` for what
Redis guarantees and what depends on the server's persistence settings.
"""

from __future__ import annotations

from ._redis_gate import RedisGateBackend
from ._redis_store import RedisDeferredStore

__all__ = ["RedisDeferredStore", "RedisGateBackend"]
