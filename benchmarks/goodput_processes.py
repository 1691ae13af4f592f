"""Four processes share one API key: does a gate in Redis keep them under its limit together?

The workload of ``goodput.py`` (issue 6), split over processes: ``--calls`` (400) chat completions
by ``--processes`` (4) worker processes (``multiprocessing``, spawn), 100 each, ``--concurrency``
(16) at a time in each, all with one API key, against one emulator (a child process, a fresh one
per run) of ``--rate-limit`` (40) requests per second, ``--burst`` 10: the ideal is still
``(400 - 10) / 40 = 9.75 s``. The workers wait at a barrier, then start together. Each variant
runs in the three header modes of ``goodput.py`` (``retry-after``, ``full``, ``none``):

a. ``own gates``  ``xretry.AsyncRetryTransport()`` in each process: the default, each process its
                  own in-memory gate, nothing shared between them.
b. ``Redis gate`` ``AsyncRetryTransport(gate=xretry.Gate(backend=xretry.redis.RedisGateBackend(
                  redis.asyncio.Redis.from_url(url), key=<unique per run>)))`` in each process:
                  one cooldown and one pacing for the four, through a ``redis-server`` that the
                  script starts on a free loopback port (persistence off), or ``--redis-url``.
c. ``no gate``    ``AsyncRetryTransport(gate=False)`` in each process: each request on its own.

Per variant and mode, as in ``goodput.py``: "of ideal" = 9.75 s / elapsed (barrier to the last
call finished in any process), failed calls, 429s per success (server-counted), requests; and
for the Redis rows the gate's transactions per request (``WATCH`` commands the server counted /
requests; 2.0 is one ``reserve`` and one ``observe`` each, the excess is transactions run again
after losing a race to another process). Results go to
``benchmarks/results/goodput_processes.json``; the summary table is printed as Markdown.

Run (about two minutes: 2 variants x 3 modes, each at least 9.75 s)::

    .venv/bin/python benchmarks/goodput_processes.py
    .venv/bin/python benchmarks/goodput_processes.py --modes full --redis-url redis://host:6379/3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import multiprocessing
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any, Literal

import _report  # benchmarks/_report.py and the others, beside this script
import redis
import redis.asyncio
from _contenders import Setup, open_xretry
from _emulator import ChildEmulator
from _goodput import (
    MODES,
    TARGET_429_PER_SUCCESS,
    TARGET_RATIO,
    ideal_seconds,
    meets,
    print_mode_tables,
    scenario,
    summary_table,
)
from _report import num

import xretry
from xretry.redis import RedisGateBackend

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "goodput_processes.json"

#: The variants: key, name, description.
VARIANTS: dict[str, tuple[str, str, str]] = {
    "own": (
        "a",
        "own gates (default)",
        "AsyncRetryTransport() per process: an in-memory gate each, nothing shared",
    ),
    "redis": (
        "b",
        "one gate in Redis",
        "AsyncRetryTransport(gate=Gate(backend=RedisGateBackend(redis.asyncio client, key)))",
    ),
    "none": (
        "c",
        "no gate (gate=False)",
        "AsyncRetryTransport(gate=False) per process: each request backs off on its own",
    ),
}


# -- a worker process ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """What one worker process does: its share of the calls, with its own client."""

    index: int
    base_url: str
    variant: str
    calls: tuple[int, ...]
    concurrency: int
    redis_url: str | None
    key: str
    max_seconds: float


def _worker(job: Job, start: Barrier, results: Queue[dict[str, Any]]) -> None:
    """Child process: get ready, wait for the others, run the calls, report."""
    # xretry logs one warning per give-up; they are counted from each RetryHistory instead.
    logging.getLogger("xretry").setLevel(logging.ERROR)
    results.put(asyncio.run(_work(job, start)))


async def _work(job: Job, start: Barrier) -> dict[str, Any]:
    store = None
    gate: xretry.Gate | Literal[False] | None = False if job.variant == "none" else None
    if job.variant == "redis":
        assert job.redis_url is not None
        store = redis.asyncio.Redis.from_url(
            job.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0
        )
        await store.ping()  # connected before the start, as the HTTP client is built before it
        gate = xretry.Gate(backend=RedisGateBackend(store, job.key))
    errors: Counter[str] = Counter()
    succeeded = 0
    timed_out = False
    opener = open_xretry(lambda: gate)
    async with opener(job.base_url, Setup(connections=job.concurrency)) as session:
        start.wait()  # blocks the event loop, which has nothing else to do yet
        calls = iter(job.calls)

        async def worker() -> None:
            nonlocal succeeded
            for i in calls:  # one shared iterator: each task takes the next call
                try:
                    await session.call(job.base_url, i)
                except Exception as exc:
                    errors[type(exc).__name__] += 1
                else:
                    succeeded += 1

        try:
            async with asyncio.timeout(job.max_seconds), asyncio.TaskGroup() as group:
                for _ in range(min(job.concurrency, len(job.calls))):
                    group.create_task(worker())
        except TimeoutError:
            timed_out = True
        finished = time.time()
        notes = session.notes()
    if store is not None:
        await store.aclose()
    return {
        "index": job.index,
        "succeeded": succeeded,
        "errors": dict(errors),
        "timed_out": timed_out,
        "finished": finished,
        "attempts_per_call": notes["attempts_per_call"],
        "gate_rate_at_end": notes.get("gate_rate_at_end"),
        "gate_429s_seen": notes.get("gate_429s_seen"),
    }


# -- one variant in one header mode -------------------------------------------------------------


def _watches(server: redis.Redis | None) -> int:
    """``WATCH`` commands the server has run: one per gate transaction (the first or again)."""
    if server is None:
        return 0
    stats: dict[str, Any] = server.info("commandstats")
    return int(stats.get("cmdstat_watch", {}).get("calls", 0))


def measure(
    variant: str, mode: str, args: argparse.Namespace, redis_url: str | None
) -> dict[str, Any]:
    key, _, description = VARIANTS[variant]
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Barrier(args.processes + 1)
    results: Queue[dict[str, Any]] = ctx.Queue()
    gate_key = f"xretry:bench:{uuid.uuid4().hex}"
    server = redis.Redis.from_url(redis_url) if variant == "redis" and redis_url else None
    with ChildEmulator(scenario(args, mode), name="goodput-emulator") as emulator:
        shares = [tuple(range(args.calls))[p :: args.processes] for p in range(args.processes)]
        jobs = [
            Job(
                p,
                emulator.base_url,
                variant,
                shares[p],
                args.concurrency,
                redis_url,
                gate_key,
                args.max_seconds,
            )
            for p in range(args.processes)
        ]
        workers = [
            ctx.Process(target=_worker, args=(job, start, results), name=f"worker-{job.index}")
            for job in jobs
        ]
        for process in workers:
            process.start()
        watches = _watches(server)
        start.wait(timeout=120)
        started = time.time()
        reports = [results.get(timeout=args.max_seconds + 120) for _ in workers]
        for process in workers:
            process.join(30)
        stats = emulator.stats()
        watches = _watches(server) - watches
    if server is not None:
        server.delete(gate_key)
        server.close()
    succeeded = sum(r["succeeded"] for r in reports)
    errors: Counter[str] = Counter()
    for report in reports:
        errors.update(report["errors"])
    elapsed = max(r["finished"] for r in reports) - started
    ok = int(stats.get("status.200", 0))
    rate_limited = int(stats.get("rate_limited", 0))
    requests = int(stats.get("requests", 0))
    ideal = ideal_seconds(args)
    row: dict[str, Any] = {
        "key": key,
        "description": description,
        "mode": mode,
        "calls": args.calls,
        "processes": args.processes,
        "succeeded": succeeded,
        "failed": args.calls - succeeded,
        "errors": dict(errors),
        "timed_out": any(r["timed_out"] for r in reports),
        "elapsed_s": round(elapsed, 3),
        "ideal_s": ideal,
        "ratio_of_ideal": round(ideal / elapsed, 4) if ideal and elapsed else None,
        "server_ok": ok,
        "rate_limited": rate_limited,
        "per_success_429": round(rate_limited / ok, 4) if ok else None,
        "requests": requests,
        "redis_transactions_per_request": (
            round(watches / requests, 3) if server is not None and requests else None
        ),
        "workers": sorted(reports, key=lambda r: r["index"]),
        "server_stats": stats,
    }
    row["meets"] = meets(row)
    return row


# -- redis-server, when no --redis-url is given ---------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """``redis-server`` on a free loopback port, persistence off, in a temporary directory."""
    executable = shutil.which("redis-server")
    if executable is None:
        raise SystemExit(
            "redis-server not found: install it (apt-get install redis-server) or pass --redis-url"
        )
    with tempfile.TemporaryDirectory(prefix="xretry-bench-redis-") as directory:
        port = _free_port()
        argv = [executable, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "no", "--dir", directory, "--logfile", ""]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        try:
            with redis.Redis.from_url(url, socket_connect_timeout=0.5) as probe:
                deadline = time.monotonic() + 10
                while True:
                    with contextlib.suppress(redis.ConnectionError):
                        if probe.ping():
                            break
                    if time.monotonic() > deadline or process.poll() is not None:
                        raise SystemExit(f"redis-server did not start on 127.0.0.1:{port}")
                    time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            process.wait(10)


# -- reporting ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Goodput of 4 processes sharing one rate limit: their own gates, or one "
        "gate in Redis, in three header modes."
    )
    parser.add_argument("--calls", type=int, default=400, help="chat completions in all (400)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes (4)")
    parser.add_argument("--concurrency", type=int, default=16, help="calls in flight each (16)")
    parser.add_argument("--rate-limit", type=float, default=40.0, help="requests/s (40)")
    parser.add_argument("--burst", type=int, default=10, help="token bucket burst (10)")
    parser.add_argument("--seed", type=int, default=6, help="the emulator's seed (6)")
    parser.add_argument(
        "--variants", default=",".join(VARIANTS), help="comma-separated: own,redis,none (all)"
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated header modes (default: {','.join(MODES)})",
    )
    parser.add_argument(
        "--redis-url", help="an existing Redis to use (default: start redis-server on loopback)"
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="cut a run off after this long; calls not done count as failed (120)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON results (default benchmarks/results/goodput_processes.json)",
    )
    args = parser.parse_args(argv)
    if min(args.calls, args.processes, args.concurrency, args.burst) < 1:
        parser.error("--calls, --processes, --concurrency and --burst must be at least 1")
    if not args.rate_limit > 0 or not args.max_seconds > 0:
        parser.error("--rate-limit and --max-seconds must be > 0")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not variants or any(v not in VARIANTS for v in variants):
        parser.error(f"--variants takes {', '.join(VARIANTS)}; got {args.variants!r}")
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes {', '.join(MODES)}; got {args.modes!r}")

    command = shlex.join(sys.orig_argv)
    found = _report.versions(("xretry", "httpx", "redis", "uvicorn"))
    source = _report.source_state()
    _report.print_header(found, source, command)
    ideal = ideal_seconds(args)
    print(
        f"setup:    {args.calls} chat completions by {args.processes} processes (spawn), "
        f"{args.concurrency} at a time each, one API key; one {args.rate_limit:g} req/s bucket "
        f"(burst {args.burst}): ideal {ideal:.2f} s; seed {args.seed}, a fresh emulator per run "
        f"(child process); a fresh Redis key per run"
    )

    with contextlib.ExitStack() as stack:
        redis_url = args.redis_url
        if "redis" in variants and redis_url is None:
            redis_url = stack.enter_context(redis_server())
        print(f"redis:    {'-' if redis_url is None else redis_url}")
        results: dict[str, dict[str, dict[str, Any]]] = {}
        for mode in modes:
            results[mode] = {}
            for variant in variants:
                key, name, _ = VARIANTS[variant]
                print(f"  running {key}. {name} [{mode}] ...", end="", flush=True)
                row = measure(variant, mode, args, redis_url)
                results[mode][name] = row
                print(
                    f" {num(row['ratio_of_ideal'], '.2f')} of ideal ({row['elapsed_s']:.1f} s), "
                    f"{row['failed']} failed, {row['rate_limited']} 429s",
                    flush=True,
                )

    print_mode_tables(results, modes, ideal)
    print()
    names = [VARIANTS[v][1] for v in variants]
    print(
        f"Summary ({args.calls} calls by {args.processes} processes, {args.concurrency} at a time "
        f"each, {args.rate_limit:g} req/s, burst {args.burst}; cell = of ideal, failed, 429s per "
        "success)"
    )
    print(summary_table(results, names))
    print()
    for mode in modes:
        for name, row in results[mode].items():
            per_worker = ", ".join(f"{num(w['gate_rate_at_end'], '.1f')}" for w in row["workers"])
            tx = row["redis_transactions_per_request"]
            extra = "" if tx is None else f"; Redis transactions per request {tx:.2f}"
            print(
                f"  {row['key']}. {name} [{mode}]: gate rate at end per process "
                f"[{per_worker}] req/s{extra}"
            )

    _report.write_results(
        args.output,
        "goodput of processes sharing one rate limit: own in-memory gates, or one "
        "gate in Redis, in three header modes",
        command=command,
        found=found,
        source=source,
        settings={
            "calls": args.calls,
            "processes": args.processes,
            "concurrency": args.concurrency,
            "rate_limit": args.rate_limit,
            "burst": args.burst,
            "seed": args.seed,
            "max_seconds": args.max_seconds,
            "ideal_s": ideal,
            "redis": "given (--redis-url)" if args.redis_url else "started on loopback",
        },
        targets={
            "failed": 0,
            "ratio_of_ideal": TARGET_RATIO,
            "per_success_429": TARGET_429_PER_SUCCESS,
        },
        variants={
            VARIANTS[v][1]: {"key": VARIANTS[v][0], "description": VARIANTS[v][2]} for v in variants
        },
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
