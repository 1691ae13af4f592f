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

import contextlib
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
    #: The raw body of a 200 that was not a completion (a failed job's ``DeferredResultError``
    #: body, the request's credentials masked), kept whole; ``None`` otherwise.
    body: bytes | None = None


@runtime_checkable
class DeferredStore(Protocol):
    """Where the poller records ids and results so that a crash loses nothing.

    Every method must be durable when it returns (the poller relies on it) and safe to call from
    several threads at once. ``add`` of a known id and ``complete`` of a completed id keep the first
    record: a result is never overwritten. A store that cannot write raises (an ``OSError``, for the
    built-in ones): the poller then keeps what it fetched in memory and says so.

    ``fail`` may take a keyword ``body`` (the raw body of an unusable 200, to keep whole); a store
    written before it existed still works, and keeps only the error text.
    """

    def add(self, request_id: str) -> None: ...

    def complete(self, request_id: str, result: Mapping[str, Any]) -> None: ...

    def fail(self, request_id: str, error: str, *, body: bytes | None = None) -> None: ...

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
    acknowledged    INTEGER NOT NULL DEFAULT 0,
    body            BLOB
)
"""

#: Columns added since the first schema, each ``ALTER TABLE``-ed into an older database on open.
_ADDED_COLUMNS = {"body": "BLOB"}


class SQLiteDeferredStore:
    """A :class:`DeferredStore` in one SQLite file (created if missing).

    Example::

        store = xretry.backends.SQLiteDeferredStore("deferred.db")
        poller = xretry.DeferredCompletions(client, store=store)

    Commits are ``synchronous=FULL``: a result is on disk before the poller hands it over. A
    database written by an older xretry is migrated when opened (columns added, nothing rewritten).
    Every failure (a lock held past ``timeout`` seconds, a full disk) is an ``OSError`` naming the
    file, the request id and what was being done; the ``sqlite3`` error is its ``__cause__``.
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
            self._migrate()
        except sqlite3.Error as exc:
            raise OSError(f"cannot open the deferred store at {self.path}: {exc}") from exc

    def _columns(self) -> set[str]:
        return {row[1] for row in self._db.execute("PRAGMA table_info(xretry_deferred)")}

    def _migrate(self) -> None:
        """Add the columns an older database lacks, in one transaction (another process may be
        migrating the same file: the check is repeated under the write lock)."""
        if set(_ADDED_COLUMNS) <= self._columns():
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            present = self._columns()
            for name, kind in _ADDED_COLUMNS.items():
                if name not in present:
                    self._db.execute(f"ALTER TABLE xretry_deferred ADD COLUMN {name} {kind}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _error(self, action: str, request_id: str | None, exc: sqlite3.Error) -> OSError:
        what = action if request_id is None else f"{action} {request_id}"
        return OSError(f"the deferred store at {self.path} could not {what}: {exc}")

    def __repr__(self) -> str:
        return f"SQLiteDeferredStore({str(self.path)!r})"

    def _write(self, action: str, request_id: str, sql: str, params: tuple[Any, ...]) -> None:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:  # locked past the busy timeout, read-only, ...
                raise self._error(action, request_id, exc) from exc
            try:
                self._db.execute(sql, params)
                self._db.execute("COMMIT")
            except BaseException as exc:
                if self._db.in_transaction:  # a failed COMMIT (a full disk) leaves it open
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                if isinstance(exc, sqlite3.Error):
                    raise self._error(action, request_id, exc) from exc
                raise

    @contextlib.contextmanager
    def _reading(self, action: str, request_id: str | None = None) -> Any:
        with self._lock:
            try:
                yield
            except sqlite3.Error as exc:
                raise self._error(action, request_id, exc) from exc

    def add(self, request_id: str) -> None:
        self._write(
            "add",
            request_id,
            "INSERT OR IGNORE INTO xretry_deferred (request_id, state, submitted_at) "
            "VALUES (?, 'pending', ?)",
            (request_id, time.time()),
        )

    def complete(self, request_id: str, result: Mapping[str, Any]) -> None:
        payload = json.dumps(result, separators=(",", ":"))
        self._write(
            "store the result of",
            request_id,
            "INSERT INTO xretry_deferred (request_id, state, result, submitted_at, completed_at) "
            "VALUES (?, 'done', ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET state = 'done', result = excluded.result, "
            "completed_at = excluded.completed_at, error = NULL, body = NULL "
            "WHERE state != 'done'",
            (request_id, payload, time.time(), time.time()),
        )

    def fail(self, request_id: str, error: str, *, body: bytes | None = None) -> None:
        self._write(
            "record the failure of",
            request_id,
            "INSERT INTO xretry_deferred "
            "(request_id, state, error, body, submitted_at, completed_at) "
            "VALUES (?, 'failed', ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO UPDATE SET state = 'failed', error = excluded.error, "
            "body = excluded.body, completed_at = excluded.completed_at WHERE state = 'pending'",
            (request_id, error, None if body is None else bytes(body), time.time(), time.time()),
        )

    def acknowledge(self, request_id: str) -> None:
        self._write(
            "acknowledge",
            request_id,
            "UPDATE xretry_deferred SET acknowledged = 1 "
            "WHERE request_id = ? AND state != 'pending'",
            (request_id,),
        )

    def get(self, request_id: str) -> DeferredRecord | None:
        with self._reading("read", request_id):
            row = self._db.execute(
                "SELECT request_id, state, result, error, submitted_at, completed_at, "
                "acknowledged, body FROM xretry_deferred WHERE request_id = ?",
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
            body=None if row[7] is None else bytes(row[7]),
        )

    def _ids(self, where: str) -> list[str]:
        with self._reading("list the ids"):
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
