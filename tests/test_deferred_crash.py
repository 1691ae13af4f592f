"""Nothing lost across SIGKILL: a polling process is killed three times in the middle, restarted.

The emulator serves over loopback sockets in this process; ``deferred_worker.py`` runs as a
subprocess with an SQLite store. The server hands each result over exactly once, so every result
must come from the server exactly once and reach the application at least once: a result being
handed over when the kill landed may be handed over again, so duplicates are at most the kills.

The kills land while the worker handles a result (see the worker's docstring), away from the few
milliseconds between the server sending a 200 and the store committing it: a kill there loses the
result whatever the library does, which no test can demand.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xretry.emulator import EmulatorServer, Scenario

from .deferred_worker import API_KEY

#: About 5 s (a worker process killed and resumed); `make quick` leaves it to `make test`.
pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("deferred_worker.py")
JOBS = 12
#: Seconds of "application work" per delivered line: the kills land in it.
HANDLE = 0.2
#: Per kill: new lines to wait for in this run, then seconds to wait before the SIGKILL.
#: 1) first run, after wait() returned and the line was written; 2) resuming, after the line was
#: written but before the result was acknowledged (handed over again: one duplicate); 3) resuming,
#: after the next result was taken from resume() but before its line was written.
KILLS = ((2, 0.0), (2, 0.0), (2, 0.75 * HANDLE))
DEADLINE = 20.0


def lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def wait_for_lines(path: Path, count: int, process: subprocess.Popen[bytes], end: float) -> None:
    while len(lines(path)) < count:
        if process.poll() is not None:
            pytest.fail(f"the worker exited ({process.returncode}) before {count} lines")
        if time.monotonic() > end:
            pytest.fail(f"no {count} lines within {DEADLINE:g}s: {len(lines(path))}")
        time.sleep(0.005)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX-only")
def test_sigkill_loses_nothing_and_fetches_each_result_once(tmp_path: Path) -> None:
    db, out = tmp_path / "deferred.db", tmp_path / "delivered.tsv"
    end = time.monotonic() + DEADLINE
    kills = runs = 0
    with EmulatorServer(Scenario(ready_after=(0.2, 1.0), seed=20240607)) as server:
        argv = [sys.executable, str(WORKER), server.base_url, str(db), str(out), str(JOBS)]
        while True:
            assert runs < len(KILLS) + 3, "the worker never finished"
            runs += 1
            with (tmp_path / f"worker-{runs}.err").open("wb") as err:
                process = subprocess.Popen([*argv, str(HANDLE)], stderr=err)
            try:
                if kills < len(KILLS):
                    more, pause = KILLS[kills]
                    wait_for_lines(out, len(lines(out)) + more, process, end)
                    time.sleep(pause)
                    os.kill(process.pid, signal.SIGKILL)
                    assert process.wait(timeout=5) == -signal.SIGKILL
                    kills += 1
                    assert len(set(lines(out))) < JOBS, "killed too late: nothing left to resume"
                    continue
                code = process.wait(timeout=max(end - time.monotonic(), 0.1))
            finally:
                if process.poll() is None:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait()
            assert code == 0, (tmp_path / f"worker-{runs}.err").read_text()
            break
        stats = server.app.stats()

    delivered = [tuple(line.split("\t")) for line in lines(out)]
    with sqlite3.connect(db) as connection:
        table = connection.execute(
            "SELECT request_id, state, acknowledged FROM xretry_deferred"
        ).fetchall()
    submitted = {request_id for request_id, _, _ in table}
    by_id: dict[str, set[str]] = {}
    for request_id, completion_id in delivered:
        by_id.setdefault(request_id, set()).add(completion_id)
    duplicates = len(delivered) - len(by_id)
    print(f"\nruns={runs} kills={kills} lines={len(delivered)} duplicates={duplicates}")

    assert kills == len(KILLS)
    assert len(submitted) == JOBS
    assert set(by_id) == submitted  # none lost
    assert {state for _, state, _ in table} == {"done"}
    assert all(acknowledged for _, _, acknowledged in table)
    assert duplicates <= kills  # at-least-once to the application, at most one per kill
    assert all(len(completions) == 1 for completions in by_id.values())  # the same result again
    assert len(set().union(*by_id.values())) == JOBS
    # exactly once from the server: fetched once each, never asked again after the fetch
    assert (stats["deferred_submitted"], stats["deferred_delivered"]) == (JOBS, JOBS)
    for key in ("deferred_fetched", "deferred_missing", "deferred_expired", "status.404"):
        assert key not in stats, stats
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith(db.name))
    assert API_KEY.encode() not in data
