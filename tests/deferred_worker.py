"""The process that ``test_deferred_crash.py`` kills with SIGKILL and starts again.

Usage: ``python tests/deferred_worker.py BASE_URL DB_PATH OUT_PATH N [HANDLE_SECONDS]``

First run (no ``DB_PATH.submitted`` marker yet): submit N deferred jobs through
``DeferredCompletions`` with an ``SQLiteDeferredStore`` at DB_PATH, then ``wait()`` for each in
turn. Every later run: ``resume()``. Each delivered result becomes one line
``request_id<TAB>completion id`` appended to OUT_PATH (flushed and fsynced), with HANDLE_SECONDS of
"application work" around it, where a kill most likely lands: after the line for ``wait()``
(the worker acknowledges the result once its line is written), half before and half after the
line for ``resume()`` (which acknowledges a result only when the next one is asked for).
Exits 0 once every outcome was a completion, 1 if any outcome was an error (printed to stderr).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

from xretry import DeferredCompletions, PollPolicy
from xretry.backends import SQLiteDeferredStore

#: Must never reach the database file (the test reads its bytes).
API_KEY = "xai-CANARY-crash-worker-93c1f0"
POLL = PollPolicy(
    first_delay=0.0, interval=0.05, multiplier=1.5, max_interval=0.25, jitter=0.1, timeout=30.0
)


def deliver(
    out: TextIO, request_id: str, completion: dict[str, Any], before: float, after: float
) -> None:
    time.sleep(before)
    out.write(f"{request_id}\t{completion['id']}\n")
    out.flush()
    os.fsync(out.fileno())
    time.sleep(after)


def main(argv: list[str]) -> int:
    if len(argv) not in (5, 6):
        print(__doc__, file=sys.stderr)
        return 2
    base_url, db_path, out_path, n = argv[1], Path(argv[2]), Path(argv[3]), int(argv[4])
    handle = float(argv[5]) if len(argv) == 6 else 0.0
    marker = db_path.with_name(db_path.name + ".submitted")
    failures = 0
    with (
        SQLiteDeferredStore(db_path) as store,
        httpx.Client(
            base_url=base_url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=10.0
        ) as client,
        out_path.open("a", encoding="utf-8") as out,
    ):
        poller = DeferredCompletions(client, poll=POLL, store=store)
        if not marker.exists():
            ids = [
                poller.submit(model="grok-4", messages=[{"role": "user", "content": f"job {i}"}])
                for i in range(n)
            ]
            marker.touch()
            for request_id in ids:
                deliver(out, request_id, poller.wait(request_id), 0.0, handle)
                poller.acknowledge(request_id)  # saved: resume() need not hand it over again
        else:
            for outcome in poller.resume():
                if outcome.completion is None:
                    print(f"{outcome.request_id}: {outcome.error!r}", file=sys.stderr)
                    failures += 1
                else:
                    deliver(out, outcome.request_id, outcome.completion, handle / 2, handle / 2)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
