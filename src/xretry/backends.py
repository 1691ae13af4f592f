"""Extension points: where a gate keeps its state, and where the pollers keep their jobs.

Most programs never import this module: every entry point makes a gate of its own in memory, and
``DeferredCompletions(client, store="jobs.db")`` opens a SQLite store from a path. Import from
here to share state in another way, or to implement a backend of your own::

    from xretry.backends import DeferredStore, GateBackend, GateSettings, GateState

* a **gate backend** (:class:`GateBackend`) makes each step of the pacing algorithm
  (:class:`GateState`, tuned by :class:`GateSettings`) atomic wherever the state lives:
  :class:`MemoryGateBackend` (the default), :class:`xretry.redis.RedisGateBackend`;
* a **deferred store** (:class:`DeferredStore`, one :class:`DeferredRecord` per job) records ids
  and results before anyone sees them: :class:`SQLiteDeferredStore`,
  :class:`xretry.redis.RedisDeferredStore`.

See ``docs/rate-limits.md`` and ``docs/deferred.md``.
"""

from __future__ import annotations

from ._gate import GateBackend, MemoryGateBackend
from ._pacing import GateSettings, GateState
from ._store import DeferredRecord, DeferredStore, SQLiteDeferredStore

__all__ = [
    "DeferredRecord",
    "DeferredStore",
    "GateBackend",
    "GateSettings",
    "GateState",
    "MemoryGateBackend",
    "SQLiteDeferredStore",
]
