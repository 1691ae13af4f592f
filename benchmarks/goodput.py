"""How much of a rate limit does each retry library turn into completed calls?

The workload (issue 6): ``--calls`` (400) chat completions, ``POST /v1/chat/completions`` with a
small valid body and ``Authorization: Bearer``, ``--concurrency`` (64) at a time (that many worker
tasks, each taking the next call), against the emulator's token bucket of ``--rate-limit`` (40)
requests per second with a ``--burst`` of 10. The ideal is the burst at once and the rest at the
limit: ``(400 - 10) / 40 = 9.75 s``. Each contender runs in each header mode, against a *fresh*
emulator (same scenario, same seed) in a child process (``multiprocessing``, spawn), so the
server's CPU neither slows the client's event loop nor leaks state between runs. The header modes
(``Scenario(hints=...)``):

* ``retry-after``: a 429 carries ``retry-after`` in whole seconds only (always ``1`` here);
* ``full``: ``retry-after-ms`` (1-25 ms here), ``retry-after`` and ``x-ratelimit-*``;
* ``none``: a 429 carries no hint header at all.

The contenders, each configured as the issue names it (all asyncio; their waits are real sleeps):

a. ``httpx-retries``  ``httpx.AsyncClient(transport=httpx_retries.RetryTransport(retry=Retry(
                      total=10, backoff_factor=0.5, allowed_methods=[...defaults, "POST"],
                      status_forcelist=[429, 500, 502, 503, 504])))``; ``raise_for_status()``.
                      Up to 10 retries (11 tries); honours ``retry-after`` (seconds or a date),
                      not ``retry-after-ms``; without POST in ``allowed_methods`` it would not
                      retry a chat completion at all.
b. ``tenacity``       a plain ``httpx.AsyncClient``; per call ``tenacity.AsyncRetrying(wait=
                      wait_random_exponential(multiplier=1, max=60), stop=stop_after_attempt(10),
                      retry=<429, 5xx, transport errors>, reraise=True)`` around ``post`` +
                      ``raise_for_status()`` (full jitter; no hint is read).
c. ``stamina``        a plain ``httpx.AsyncClient``; per call ``stamina.retry_context(on=hook,
                      attempts=10)`` (other arguments default: ``timeout=45``, ``wait_initial=0.1``,
                      ``wait_max=5``, ``wait_jitter=1``) around ``post`` + ``raise_for_status()``;
                      ``hook`` retries 429/5xx and transport errors, and returns ``retry-after``
                      as the wait when the 429 has one (stamina's documented backoff hook: it reads
                      no header by itself). Its on-retry logging hooks are switched off.
d. ``openai SDK``     ``AsyncOpenAI(base_url=..., api_key=..., max_retries=10)`` (openai 3.x, on
                      httpx2, its own default client), ``chat.completions.create``: up to 10
                      retries, honours ``retry-after-ms`` and ``retry-after``.
e. ``xretry defaults`` ``httpx.AsyncClient(transport=xretry.AsyncRetryTransport())``: the
                      default ``RetryPolicy()`` and the transport's own gate, shared by all the
                      calls (shared cooldown, adaptive pacing); ``xretry.raise_for_status``. The
                      gate's learned ``rate`` is sampled every 0.25 s into the JSON.
f. ``gate=False``     the same with ``AsyncRetryTransport(gate=False)``: each request backs off on
                      its own (xretry's retries without the coordination).
g. ``Gate(rate=40)``  the same with the limit given up front: no learning phase.

The httpx clients get a pool of ``--concurrency`` connections (the pool is not the contender);
the openai SDK keeps its own (1000).

Per contender and mode: "of ideal" = ideal time / elapsed time (first call started to last call
finished), failed calls (a call that raised; when a run passes ``--max-seconds`` it is cut off and
every call not yet succeeded counts as failed), 429s per success (the server's ``rate_limited``
over its ``status.200``), and the total requests the server saw. A server-side timeline (requests,
429s and 200s, from ``GET /_stats`` every 0.25 s) and, for the xretry rows, attempts per call go to
the JSON too. Targets from the issue, for xretry with its defaults in all three modes: no failures,
at least 0.95 of ideal, at most 0.1 429s per success. Results go to
``benchmarks/results/goodput.json``; the summary table is printed as Markdown, like the issue's.

Run (the full run takes about 8 minutes: 7 contenders x 3 modes, each at least 9.75 s)::

    .venv/bin/python benchmarks/goodput.py
    .venv/bin/python benchmarks/goodput.py --quick                  # 80 calls: a smoke run
    .venv/bin/python benchmarks/goodput.py --only e,f --modes full  # some contenders and modes
    .venv/bin/python benchmarks/goodput.py --all    # then goodput_processes.py and outage.py
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _report  # benchmarks/_report.py and the others, beside this script
import httpx
from _contenders import (
    PACKAGES,
    Contender,
    Setup,
    open_httpx_retries,
    open_openai,
    open_stamina,
    open_tenacity,
    open_xretry,
)
from _emulator import ChildEmulator
from _goodput import (
    MODES,
    TARGET_429_PER_SUCCESS,
    TARGET_RATIO,
    ideal_seconds,
    meets,
    print_mode_tables,
    scenario,
    summary_cell,
    summary_table,
)
from _report import num

import xretry

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "goodput.json"

#: How often the server's counters (and a gate's rate) are sampled during a run.
SAMPLE_EVERY = 0.25


# -- the contenders ---------------------------------------------------------------------------


CONTENDERS: list[Contender] = [
    Contender(
        "a",
        "httpx-retries (10 retries, factor 0.5)",
        "RetryTransport(retry=Retry(total=10, backoff_factor=0.5, allowed_methods=+POST, "
        "status_forcelist=[429, 5xx]))",
        open_httpx_retries,
    ),
    Contender(
        "b",
        "tenacity (full jitter, 10 tries)",
        "AsyncRetrying(wait_random_exponential(multiplier=1, max=60), stop_after_attempt(10), "
        "429/5xx) per call on a plain httpx.AsyncClient",
        open_tenacity,
    ),
    Contender(
        "c",
        "stamina (honours retry-after)",
        "retry_context(on=hook, attempts=10) per call; hook returns retry-after as the wait",
        open_stamina(honour_retry_after=True),
    ),
    Contender(
        "d",
        "openai SDK (max_retries=10)",
        "AsyncOpenAI(base_url, api_key, max_retries=10).chat.completions.create",
        open_openai(max_retries=10),
    ),
    Contender(
        "e",
        "xretry defaults",
        "httpx.AsyncClient(transport=xretry.AsyncRetryTransport()) + xretry.raise_for_status",
        open_xretry(lambda: None),
        target=True,
    ),
    Contender(
        "f",
        "xretry, gate=False",
        "AsyncRetryTransport(gate=False): each request backs off on its own",
        open_xretry(lambda: False),
    ),
    Contender(
        "g",
        "xretry, limit known (Gate(rate=40))",
        "AsyncRetryTransport(gate=xretry.Gate(rate=40)): the rate given, not learned",
        open_xretry(lambda: xretry.Gate(rate=40.0)),
    ),
]


# -- one contender in one header mode, against a fresh emulator --------------------------------


@dataclass
class Outcome:
    """What one run saw: from the client, and from the server's counters."""

    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False
    elapsed: float = 0.0
    samples: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)


async def _drive(
    contender: Contender, url: str, base_url: str, args: argparse.Namespace
) -> Outcome:
    out = Outcome()
    async with (
        contender.open(base_url, Setup(connections=args.concurrency)) as session,
        httpx.AsyncClient(trust_env=False, timeout=10.0) as probe,
    ):
        calls = iter(range(args.calls))

        async def worker() -> None:
            for i in calls:  # one shared iterator: each worker takes the next call
                try:
                    await session.call(base_url, i)
                except Exception as exc:
                    out.errors[type(exc).__name__] += 1
                else:
                    out.succeeded += 1

        async def sample(started: float) -> None:
            while True:
                t = round(time.perf_counter() - started, 2)
                row: dict[str, Any] = {"t": t}
                if session.gate is not None:
                    rate = session.gate.rate
                    row["gate_rate"] = None if rate is None else round(rate, 1)
                    row["gate_429s"] = session.gate.rate_limited
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    stats = (await probe.get(f"{url}/_stats")).json()
                    row["requests"] = int(stats.get("requests", 0))
                    row["rate_limited"] = int(stats.get("rate_limited", 0))
                    row["ok"] = int(stats.get("status.200", 0))
                out.samples.append(row)
                await asyncio.sleep(SAMPLE_EVERY)

        started = time.perf_counter()
        sampler = asyncio.create_task(sample(started))
        try:
            async with asyncio.timeout(args.max_seconds), asyncio.TaskGroup() as group:
                for _ in range(min(args.concurrency, args.calls)):
                    group.create_task(worker())
        except TimeoutError:
            out.timed_out = True
        out.elapsed = time.perf_counter() - started
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await asyncio.sleep(0.2)  # let cancelled requests reach (or not) the server
        out.stats = (await probe.get(f"{url}/_stats")).json()
        out.notes = session.notes()
    return out


def _timeline(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per whole second of the run: requests, 429s and 200s the server counted in it."""
    rows: list[dict[str, Any]] = []
    last = {"requests": 0, "rate_limited": 0, "ok": 0}
    second = 1
    for sample in samples:
        if "requests" not in sample or sample["t"] < second:
            continue
        while sample["t"] >= second + 1:  # a gap in the samples: count it in the later second
            second += 1
        row: dict[str, Any] = {"second": second}
        for key in last:
            row[key] = sample[key] - last[key]
            last[key] = sample[key]
        rows.append(row)
        second += 1
    return rows


def measure(contender: Contender, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    with ChildEmulator(scenario(args, mode), name="goodput-emulator") as emulator:
        out = asyncio.run(_drive(contender, emulator.url, emulator.base_url, args))
    stats, elapsed = out.stats, out.elapsed
    failed = args.calls - out.succeeded
    ok = int(stats.get("status.200", 0))
    rate_limited = int(stats.get("rate_limited", 0))
    ideal = ideal_seconds(args)
    row: dict[str, Any] = {
        "key": contender.key,
        "description": contender.description,
        "target_row": contender.target,
        "mode": mode,
        "calls": args.calls,
        "succeeded": out.succeeded,
        "failed": failed,
        "errors": dict(out.errors),
        "timed_out": out.timed_out,
        "elapsed_s": round(elapsed, 3),
        "ideal_s": ideal,
        "ratio_of_ideal": round(ideal / elapsed, 4) if ideal and elapsed else None,
        "server_ok": ok,
        "rate_limited": rate_limited,
        "per_success_429": round(rate_limited / ok, 4) if ok else None,
        "requests": int(stats.get("requests", 0)),
        "notes": out.notes,
        "timeline": _timeline(out.samples),
        "samples": out.samples,
        "server_stats": stats,
    }
    row["meets"] = meets(row)
    return row


# -- reporting --------------------------------------------------------------------------------


def _series(values: list[Any], spec: str) -> str:
    return ", ".join(num(v, spec) for v in values)


def evidence(name: str, row: dict[str, Any], seconds: int = 16) -> list[str]:
    """The xretry rows: attempts per call, and what the server (and the gate) did per second."""
    lines = [f"  {row['key']}. {name} [{row['mode']}]:"]
    notes = row["notes"]
    lines.append(
        f"    attempts per call {notes.get('attempts_per_call')}, gave up "
        f"{notes.get('gave_up') or 0}, errors {row['errors'] or 0}, "
        f"retry sleeps {notes.get('retry_sleep_s_total')} s in all"
    )
    timeline = row["timeline"][:seconds]
    lines.append("    200s per second:    " + _series([s["ok"] for s in timeline], "d"))
    lines.append("    429s per second:    " + _series([s["rate_limited"] for s in timeline], "d"))
    gated = [s for s in row["samples"] if "gate_rate" in s]
    if gated:
        by_second = [
            next((s["gate_rate"] for s in gated if s["t"] >= second), None)
            for second in range(1, 1 + min(seconds, int(gated[-1]["t"])))
        ]
        lines.append("    gate rate at 1 s, 2 s, ...: " + _series(by_second, ".1f"))
        lines.append(
            f"    gate: rate at end {num(notes.get('gate_rate_at_end'), '.1f')} req/s, "
            f"429s seen {notes.get('gate_429s_seen')}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Goodput under a rate limit: each retry library's share of the ideal time, "
        "failures and 429s, in three header modes."
    )
    parser.add_argument("--calls", type=int, help="chat completions per run (400; quick: 80)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (64)")
    parser.add_argument("--rate-limit", type=float, default=40.0, help="requests/s (40)")
    parser.add_argument("--burst", type=int, default=10, help="token bucket burst (10)")
    parser.add_argument("--seed", type=int, default=6, help="the emulator's seed (6)")
    parser.add_argument(
        "--only", default="", help="comma-separated contender keys a-f (default: all)"
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help=f"comma-separated header modes (default: {','.join(MODES)})",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=120.0,
        help="cut a run off after this long; calls not done count as failed (120)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 80 calls")
    parser.add_argument(
        "--all",
        action="store_true",
        help="then the 4-process run (goodput_processes.py) and the outage run (outage.py)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON results (default benchmarks/results/goodput.json)",
    )
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = 80 if args.quick else 400
    if args.calls < 1 or args.concurrency < 1 or args.burst < 1:
        parser.error("--calls, --concurrency and --burst must be at least 1")
    if not args.rate_limit > 0 or not args.max_seconds > 0:
        parser.error("--rate-limit and --max-seconds must be > 0")
    keys = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = keys - {c.key for c in CONTENDERS}
    if unknown:
        parser.error(f"unknown contender key(s): {', '.join(sorted(unknown))}")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        parser.error(f"--modes takes {', '.join(MODES)}; got {args.modes!r}")
    chosen = [c for c in CONTENDERS if not keys or c.key in keys]
    # xretry logs one warning per give-up; they are counted from each RetryHistory instead.
    logging.getLogger("xretry").setLevel(logging.ERROR)

    command = shlex.join(sys.orig_argv)
    found = _report.versions(PACKAGES)
    source = _report.source_state()
    _report.print_header(found, source, command)
    ideal = ideal_seconds(args)
    print(
        f"setup:    {args.calls} chat completions, {args.concurrency} at a time, one "
        f"{args.rate_limit:g} req/s bucket (burst {args.burst}): ideal {ideal:.2f} s; seed "
        f"{args.seed}, a fresh emulator per run (child process), runs cut off at "
        f"{args.max_seconds:g} s"
    )
    print(f"default:  {xretry.RetryPolicy()!r}")

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for mode in modes:
        results[mode] = {}
        for contender in chosen:
            print(f"  running {contender.key}. {contender.name} [{mode}] ...", end="", flush=True)
            row = measure(contender, mode, args)
            results[mode][contender.name] = row
            print(
                f" {num(row['ratio_of_ideal'], '.2f')} of ideal ({row['elapsed_s']:.1f} s), "
                f"{row['failed']} failed, {row['rate_limited']} 429s",
                flush=True,
            )

    print_mode_tables(results, modes, ideal)
    print()
    print(
        f"Summary ({args.calls} calls, {args.concurrency} at a time, {args.rate_limit:g} req/s, "
        f"burst {args.burst}; cell = of ideal, failed, 429s per success)"
    )
    print(summary_table(results, [c.name for c in chosen]))

    print()
    print("xretry, per second (server-counted) and per call:")
    for mode in modes:
        for name, row in results[mode].items():
            if "attempts_per_call" in row["notes"]:  # the xretry rows
                print("\n".join(evidence(name, row)))
    verdicts: list[str] = []
    for mode in modes:
        for name, row in results[mode].items():
            if row["target_row"]:
                met = all(row["meets"].values())
                missed = [k for k, ok in row["meets"].items() if not ok]
                verdicts.append(
                    f"  {name} [{mode}]: "
                    + ("met" if met else "MISSED (" + ", ".join(missed) + ")")
                )
    if verdicts:
        print()
        print("targets for xretry with its defaults:")
        print("\n".join(verdicts))

    _report.write_results(
        args.output,
        "goodput under a rate limit: share of the ideal time, failures and 429s per "
        "retry library, in three header modes",
        command=command,
        found=found,
        source=source,
        settings={
            "calls": args.calls,
            "concurrency": args.concurrency,
            "rate_limit": args.rate_limit,
            "burst": args.burst,
            "seed": args.seed,
            "max_seconds": args.max_seconds,
            "quick": args.quick,
            "ideal_s": ideal,
            "sample_every_s": SAMPLE_EVERY,
            "default_retry_policy": repr(xretry.RetryPolicy()),
        },
        targets={
            "failed": 0,
            "ratio_of_ideal": TARGET_RATIO,
            "per_success_429": TARGET_429_PER_SUCCESS,
        },
        contenders={c.name: {"key": c.key, "description": c.description} for c in chosen},
        summary={
            name: {mode: summary_cell(results[mode][name]) for mode in modes}
            for name in (c.name for c in chosen)
        },
        results=results,
    )
    if args.all:  # the rest of issue 6's benchmark, each script with its own defaults
        import goodput_processes
        import outage

        for script in (goodput_processes, outage):
            print(f"\n{'=' * 20} {script.__name__}.py {'=' * 20}", flush=True)
            code = script.main([])
            if code:
                return int(code)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
