"""The writer process that ``test_deferred_store_sigkill.py`` runs several of at once, and kills.

Each writer opens the one SQLite store and, for every id it is given (in its own seeded order),
does what a poller does: ``add``, sometimes ``fail``, ``complete`` with a result of its own, reads
the record back, sometimes ``acknowledge``. The ids are shared between the writers of a round, so
they race to complete the same ids; old ids (completed in earlier rounds) are completed again.

After each store call *returns*, the writer appends one line to its log (``os.write`` on an
``O_APPEND`` file: on disk as far as a SIGKILL is concerned, no fsync needed). The test then holds
the store to every line: what a writer was told is durable must be there, unchanged.

Log lines, tab-separated::

    open
    add     ID
    fail    ID
    done    ID  WINNER  OK      WINNER: whose result get() returned; OK: 1 if its checksum held
    ack     ID
    closed
"""

from __future__ import annotations

import hashlib
import os
import random
from typing import Any

from xretry.backends import SQLiteDeferredStore

#: Result sizes: a small one, one near a page, one that spills over many overflow pages.
SIZES = (48, 4000, 60_000)


def result_for(writer: str, request_id: str, size: int) -> dict[str, Any]:
    """A completion whose text is checksummed: a torn or mixed-up write cannot pass for whole."""
    unit = f"{writer}|{request_id}|"
    text = (unit * (size // len(unit) + 1))[:size]
    return {
        "id": request_id,
        "writer": writer,
        "text": text,
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }


def intact(result: object, request_id: str) -> bool:
    if not isinstance(result, dict) or result.get("id") != request_id:
        return False
    text = result.get("text")
    if not isinstance(text, str):
        return False
    return hashlib.sha256(text.encode()).hexdigest() == result.get("sha256")


def write(db: str, log: str, writer: str, ids: list[str], seed: float) -> None:
    """The writer's whole life (the target of a ``multiprocessing`` process)."""
    rng = random.Random(seed)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def note(*fields: str) -> None:
        os.write(fd, ("\t".join(fields) + "\n").encode())

    try:
        with SQLiteDeferredStore(db) as store:
            note("open")
            order = list(ids)
            rng.shuffle(order)
            for request_id in order:
                store.add(request_id)
                note("add", request_id)
                if rng.random() < 0.2:
                    store.fail(request_id, f"failed by {writer}")
                    note("fail", request_id)
                store.complete(request_id, result_for(writer, request_id, rng.choice(SIZES)))
                record = store.get(request_id)
                assert record is not None, request_id
                assert record.result is not None, request_id
                ok = intact(record.result, request_id)
                note("done", request_id, str(record.result.get("writer")), str(int(ok)))
                if rng.random() < 0.5:
                    store.acknowledge(request_id)
                    note("ack", request_id)
        note("closed")
    finally:
        os.close(fd)
