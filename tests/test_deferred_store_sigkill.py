"""The SQLite store under concurrent writer processes killed at random points, round after round.

``test_deferred_crash.py`` kills one polling process at chosen points; this one has several writers
(``store_writer.py``) race on one store, SIGKILLs some of them at seeded random moments (in a
transaction, between two, while opening the file), and after every round and at the end checks:

* no corruption: ``PRAGMA integrity_check`` is ``ok``, and the store opens again;
* no lost id: every id whose ``add`` returned, in any writer, is in the store;
* no overwritten result: every writer that read an id back saw the same first result, the store
  still holds it, and completing it again in later rounds changed nothing;
* every result complete: each stored result parses and its checksum holds;
* every acknowledgement that returned is still there; every row's state is coherent.

The writers are forked from a ``forkserver`` that has imported xretry once, so a round costs
milliseconds, not an interpreter start per writer.
"""

from __future__ import annotations

import json
import multiprocessing
import random
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path

import pytest

from xretry.backends import SQLiteDeferredStore

from . import store_writer

#: About 6 s of processes killed at random: `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

ROUNDS = 30
WRITERS = 5
NEW_IDS = 12
#: Ids of earlier rounds each writer completes again (they must keep their first result).
OLD_IDS = 4
SEED = 20240611
#: A quarter of the kills land at a random moment of the writer's first this-many seconds (often
#: before or while it opens the store); the others once its log has reached a random line.
EARLY = 0.25
EARLY_WINDOW = 0.1


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [line.split("\t") for line in path.read_text(encoding="utf-8").splitlines() if line]


def kill_at_random_points(
    doomed: Sequence[tuple[BaseProcess, Path]], rng: random.Random, *, lines_per_writer: int
) -> None:
    """SIGKILL each doomed writer at a seeded point of its work (or let it finish first)."""
    start = time.monotonic()
    targets: dict[BaseProcess, tuple[Path, int, float]] = {}
    for process, log in doomed:
        if rng.random() < EARLY:
            targets[process] = (log, 0, start + rng.uniform(0, EARLY_WINDOW))
        else:
            targets[process] = (log, rng.randint(1, lines_per_writer), 0.0)
    while targets:
        now = time.monotonic()
        for process, (log, after_lines, at) in list(targets.items()):
            if not process.is_alive():
                del targets[process]  # it finished first: no kill this time
            elif (after_lines and len(lines(log)) >= after_lines) or (at and now >= at):
                process.kill()
                del targets[process]
        time.sleep(0.0002)


def integrity(db: Path) -> str:
    with sqlite3.connect(db) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_concurrent_writers_killed_at_random_lose_and_overwrite_nothing(tmp_path: Path) -> None:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["xretry", store_writer.__name__])
    db = tmp_path / "deferred.db"
    rng = random.Random(SEED)
    started = time.perf_counter()
    ended: Counter[str] = Counter()  # how each writer's log ends, for killed writers
    kills = 0
    done_ids: list[str] = []
    for round_number in range(ROUNDS):
        ids = [f"r{round_number}-{k}" for k in range(NEW_IDS)]
        ids += rng.sample(done_ids, min(OLD_IDS, len(done_ids)))
        processes = []
        for number in range(WRITERS):
            writer = f"w{round_number}.{number}"
            log = tmp_path / f"{writer}.log"
            process = context.Process(
                target=store_writer.write, args=(str(db), str(log), writer, ids, rng.random())
            )
            process.start()
            processes.append((process, log))
        doomed = rng.sample(processes, rng.randint(1, WRITERS - 1))
        kill_at_random_points(doomed, rng, lines_per_writer=3 * len(ids))
        for process, log in processes:
            process.join(timeout=30)
            assert process.exitcode in (0, -signal.SIGKILL), (process.exitcode, log.name)
            if process.exitcode == -signal.SIGKILL:
                kills += 1
                tail = lines(log)
                ended[tail[-1][0] if tail else "not started"] += 1
        assert integrity(db) == "ok", f"round {round_number}"
        done_ids += ids[:NEW_IDS]
    elapsed = time.perf_counter() - started

    # Every line of every log, against the store.
    winners: dict[str, set[str]] = {}
    added: set[str] = set()
    acked: set[str] = set()
    for log in tmp_path.glob("*.log"):
        for fields in lines(log):
            if fields[0] == "add":
                added.add(fields[1])
            elif fields[0] == "ack":
                acked.add(fields[1])
            elif fields[0] == "done":
                _, request_id, winner, ok = fields
                assert ok == "1", f"{log.name} read back a broken result for {request_id}"
                winners.setdefault(request_id, set()).add(winner)
    with SQLiteDeferredStore(db) as store:  # opens again after the last kills
        pending, unacknowledged = set(store.pending()), set(store.unacknowledged())
    with sqlite3.connect(db) as connection:
        rows = {
            row[0]: row[1:]
            for row in connection.execute(
                "SELECT request_id, state, result, error, acknowledged FROM xretry_deferred"
            )
        }
    print(
        f"\n{ROUNDS} rounds x {WRITERS} writers, {kills} killed ({dict(ended)}), "
        f"{len(rows)} ids, {elapsed:.1f}s"
    )

    assert added <= set(rows), f"lost ids: {sorted(added - set(rows))[:5]}"
    for request_id, seen in winners.items():
        assert len(seen) == 1, f"{request_id} overwritten: writers read {sorted(seen)}"
    for request_id, (state, result, error, acknowledged) in rows.items():
        assert state in ("pending", "done", "failed"), request_id
        if state == "done":
            stored = json.loads(result)
            assert store_writer.intact(stored, request_id), request_id
            if request_id in winners:
                assert {stored["writer"]} == winners[request_id], request_id
        elif state == "failed":
            assert result is None, request_id
            assert error, request_id
        else:
            assert result is None, request_id
            assert not acknowledged, request_id
        if request_id in acked:
            assert acknowledged == 1, f"acknowledgement of {request_id} lost"
    assert set(winners) <= {i for i, (state, *_) in rows.items() if state == "done"}
    assert pending == {i for i, (state, *_) in rows.items() if state == "pending"}
    assert unacknowledged == {i for i, (s, _, _, ack) in rows.items() if s == "done" and not ack}
    # The kills landed where they matter: some mid-work (after opening, before closing).
    assert kills >= ROUNDS
    assert ended["add"] + ended["done"] + ended["fail"] + ended["ack"] > ROUNDS / 2, ended
