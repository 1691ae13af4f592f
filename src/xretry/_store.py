"""Durable storage for deferred completions: every request id and every result is paid for.

The poller writes to a store at the two moments that matter:

1. ``add(request_id)`` right after the server answers the submission, before ``submit`` returns;
2. ``complete(request_id, result)`` as soon as the 200 arrives, atomically, before the result is
   handed to the caller (the server will not give it again).

After a crash, ``pending()`` lists the ids to poll again, ``get()`` serves results already fetched,
and ``unacknowledged()`` lists results fetched but not yet acknowledged by the application, so they
can be handed over again. Only ids, results and timestamps are stored: never the API key, headers
or request bodies.

The default implementation is SQLite from the standard library, by path, in WAL mode; safe for
concurrent writers in one process (one connection behind a lock) and across processes (SQLite's
file locking, with a busy timeout).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = ["DeferredRecord", "DeferredStore", "SQLiteDeferredStore"]

State = Literal["pending", "done", "failed"]


@dataclass(frozen=True, slots=True)
class DeferredRecord:
    """What the store knows about one request id."""

    request_id: str
    state: State
    #: The chat completion, once fetched.
    result: dict[str, Any] | None
    #: Why the job failed (expired, unusable body, ...), when it did.
    error: str | None
    submitted_at: float
    completed_at: float | None
    acknowledged: bool


@runtime_checkable
class DeferredStore(Protocol):
    """Where the poller records ids and results so that a crash loses nothing.

    Every method must be durable when it returns (the poller relies on it) and safe to call from
    several threads at once. ``add`` of a known id and ``complete`` of a completed id keep the first
    record: a result is never overwritten.
    """

    def add(self, request_id: str) -> None: ...

    def complete(self, request_id: str, result: Mapping[str, Any]) -> None: ...

    def fail(self, request_id: str, error: str) -> None: ...

    def acknowledge(self, request_id: str) -> None: ...

    def get(self, request_id: str) -> DeferredRecord | None: ...

    def pending(self) -> list[str]: ...

    def unacknowledged(self) -> list[str]: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS xretry_deferred (
    request_id      TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'done', 'failed')),
    result          TEXT,
    error           TEXT,
    submitted_at    REAL NOT NULL,
    completed_at    REAL,
    acknowledged    INTEGER NOT NULL DEFAULT 0
)
"""


class SQLiteDeferredStore:
    """A :class:`DeferredStore` in one SQLite file (created if missing).

    Example::

        store = xretry.backends.SQLiteDeferredStore("deferred.db")
        poller = xretry.DeferredCompletions(client, store=store)

    Commits are ``synchronous=FULL``: a result is on disk before the poller hands it over.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as exc:
            raise OSError(f"cannot open the deferred store at {self.path}: {exc}") from exc

    def __repr__(self) -> str:
        return f"SQLiteDeferredStore({str(self.path)!r})"

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(self, request_id: str) -> None:
        self._write(
            "INSERT OR IGNORE INTO xretry_deferred (request_id, state, submitted_at) "
            "VALUES (?, 'pending', ?)",
            (request_id, time.time()),
        )

    def complete(self, request_id: str, result: Mapping[str, Any]) -> None:
        payload = json.dumps(result, separators=(",", ":"))
        self._write(
            "INSERT INTO xretry_deferred (request_id, state, result, submitted_at, completed_at) "
            "VALUES (?, 'done', ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET state = 'done', result = excluded.result, "
            "completed_at = excluded.completed_at, error = NULL WHERE state != 'done'",
            (request_id, payload, time.time(), time.time()),
        )

    def fail(self, request_id: str, error: str) -> None:
        self._write(
            "INSERT INTO xretry_deferred (request_id, state, error, submitted_at, completed_at) "
            "VALUES (?, 'failed', ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET state = 'failed', error = excluded.error, "
            "completed_at = excluded.completed_at WHERE state = 'pending'",
            (request_id, error, time.time(), time.time()),
        )

    def acknowledge(self, request_id: str) -> None:
        self._write(
            "UPDATE xretry_deferred SET acknowledged = 1 "
            "WHERE request_id = ? AND state != 'pending'",
            (request_id,),
        )

    def get(self, request_id: str) -> DeferredRecord | None:
        with self._lock:
            row = self._db.execute(
                "SELECT request_id, state, result, error, submitted_at, completed_at, acknowledged "
                "FROM xretry_deferred WHERE request_id = ?",
                (request_id,),
            ).fetchone()
        if row is None:
            return None
        return DeferredRecord(
            request_id=row[0],
            state=row[1],
            result=None if row[2] is None else json.loads(row[2]),
            error=row[3],
            submitted_at=row[4],
            completed_at=row[5],
            acknowledged=bool(row[6]),
        )

    def _ids(self, where: str) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                f"SELECT request_id FROM xretry_deferred WHERE {where} ORDER BY submitted_at, rowid"
            ).fetchall()
        return [row[0] for row in rows]

    def pending(self) -> list[str]:
        return self._ids("state = 'pending'")

    def unacknowledged(self) -> list[str]:
        return self._ids("state = 'done' AND acknowledged = 0")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteDeferredStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
