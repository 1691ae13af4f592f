"""How much does each retry library add to the load on a server that is down?

The workload (issue 6): ``--calls`` (400) chat completions, ``POST /v1/chat/completions``,
``--concurrency`` (64) at a time (that many worker tasks, each taking the next call), in two
phases against the emulator, each in a child process (``multiprocessing``, spawn):

1. **outage**: every chat completion is answered 503 (``Scenario(faults=[Fault("status",
   status=503, rate=1.0, endpoints={"chat"})])``), a total outage; no rate limit.
2. **recovery** (``--pause`` s later, 1.1 by default: longer than a fail-fast budget's 1 s probe
   interval): the same calls, with the same client objects (so a gate or budget carries over what
   it learned), against a healthy emulator.

The server's request counter (``GET /_stats``, reset before each contender) gives what each
contender sent. The contenders (all asyncio):

a. ``no retries``          ``AsyncRetryTransport(policy=RetryPolicy(max_attempts=1))``: one request
                          per call, the baseline load.
b. ``xretry defaults``     ``AsyncRetryTransport(policy=...)``: the default ``RetryPolicy``
                          (5 attempts) and its default gate, no budget.
c. ``xretry + budget``     ``AsyncRetryTransport(gate=Gate(budget=RetryBudget()))``.
d. ``xretry + fail fast``  ``AsyncRetryTransport(gate=Gate(budget=RetryBudget(fail_fast=True)))``.
e. ``httpx-retries``       ``Retry(total=10, backoff_factor=0.5, allowed_methods=+POST,
                          status_forcelist=[429, 500, 502, 503, 504])``, as in goodput.py.
f. ``tenacity``            ``AsyncRetrying(wait_random_exponential(multiplier=1, max=60),
                          stop_after_attempt(10), 429/5xx/transport errors)``, as in goodput.py.
g. ``stamina``             ``retry_context(on=hook, attempts=10)``, as in goodput.py.
h. ``openai SDK``          ``AsyncOpenAI(max_retries=2)``: the SDK's default. Its backoff (0.5 s
                          doubling to 8 s) cannot be configured, so goodput.py's ``max_retries=10``
                          would take about a minute per call in an outage (11 requests per call).

**Waits are scaled.** Real backoff sleeps would make a 400-call outage last minutes (httpx-retries
alone: 0.5 * (1 + 2 + ... + 512) s per call before jitter). Every configurable wait is multiplied by
``--wait-scale`` (0.005): xretry's ``initial_delay`` and ``max_delay``, httpx-retries'
``backoff_factor``, tenacity's ``multiplier`` and ``max``, stamina's ``wait_initial``, ``wait_max``
and ``wait_jitter``. The openai SDK's waits are its real ones. A budget's ``probe_interval`` is its
default 1 s (real time). In a total outage the number of requests does not depend on the waits
(each call makes all its attempts, or the budget stops it), only the elapsed time does; so the
elapsed column compares the clients' overhead and the budget's early stop, not real-world latency.

**The pool.** The httpx clients (xretry's, httpx-retries', tenacity's and stamina's) share a pool of
``--connections`` (16) connections, calls beyond that waiting for one inside httpcore. With one
connection per call in flight (64), httpcore's pool spends CPU on every request in proportion to
its size (``_assign_requests_to_connections``): measured here, 800 plain POSTs took 5.6 s over 64
connections and 1.2 s over 16, 64 at a time either way. The pool is not the contender; the
openai SDK keeps its own.

Per contender and phase: server-seen requests per call, the ratio to the no-retry baseline
("extra load"), failed calls, elapsed (first call started to last call finished; a phase cut off
at ``--max-seconds`` counts every call not done as failed). For the xretry rows the JSON also holds
attempts per call, give-up reasons, and the budget's tokens, denied retries and refused calls.

Run (about a minute)::

    .venv/bin/python benchmarks/outage.py
    .venv/bin/python benchmarks/outage.py --quick              # 80 calls: a smoke run
    .venv/bin/python benchmarks/outage.py --only a,c,d --no-recovery
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
    Session,
    Setup,
    open_httpx_retries,
    open_openai,
    open_stamina,
    open_tenacity,
    open_xretry,
)
from _emulator import ChildEmulator

import xretry

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "outage.json"
PHASES = ("outage", "recovery")

#: Every chat completion fails: a total outage.
OUTAGE_FAULT = {"kind": "status", "status": 503, "rate": 1.0, "endpoints": ["chat"]}


# -- the contenders ---------------------------------------------------------------------------


def _scaled_policy(setup: Setup) -> xretry.RetryPolicy:
    default = xretry.RetryPolicy()
    return default.replace(
        initial_delay=default.initial_delay * setup.wait_scale,
        max_delay=default.max_delay * setup.wait_scale,
    )


CONTENDERS: list[Contender] = [
    Contender(
        "a",
        "no retries",
        "AsyncRetryTransport(policy=RetryPolicy(max_attempts=1)): the baseline load",
        open_xretry(xretry.Gate, lambda setup: xretry.RetryPolicy(max_attempts=1)),
        baseline=True,
    ),
    Contender(
        "b",
        "xretry defaults",
        "AsyncRetryTransport(): RetryPolicy() (waits scaled), its own Gate(), no budget",
        open_xretry(xretry.Gate, _scaled_policy),
    ),
    Contender(
        "c",
        "xretry + RetryBudget()",
        "AsyncRetryTransport(gate=Gate(budget=RetryBudget())) (waits scaled)",
        open_xretry(lambda: xretry.Gate(budget=xretry.RetryBudget()), _scaled_policy),
    ),
    Contender(
        "d",
        "xretry + RetryBudget(fail_fast=True)",
        "AsyncRetryTransport(gate=Gate(budget=RetryBudget(fail_fast=True))) (waits scaled)",
        open_xretry(lambda: xretry.Gate(budget=xretry.RetryBudget(fail_fast=True)), _scaled_policy),
    ),
    Contender(
        "e",
        "httpx-retries (10 retries)",
        "RetryTransport(retry=Retry(total=10, backoff_factor=0.5*scale, allowed_methods=+POST, "
        "status_forcelist=[429, 5xx]))",
        open_httpx_retries,
    ),
    Contender(
        "f",
        "tenacity (10 tries)",
        "AsyncRetrying(wait_random_exponential(multiplier=scale, max=60*scale), "
        "stop_after_attempt(10), 429/5xx) per call on a plain httpx.AsyncClient",
        open_tenacity,
    ),
    Contender(
        "g",
        "stamina (10 attempts)",
        "retry_context(on=429/5xx, attempts=10, wait_initial/max/jitter * scale) per call",
        open_stamina(honour_retry_after=False),
    ),
    Contender(
        "h",
        "openai SDK (max_retries=2)",
        "AsyncOpenAI(max_retries=2).chat.completions.create: the SDK's default, real waits",
        open_openai(max_retries=2),
    ),
]


# -- one phase ----------------------------------------------------------------------------------


@dataclass
class Phase:
    """What one phase of one contender saw."""

    succeeded: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    timed_out: bool = False
    elapsed: float = 0.0
    requests: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


async def _phase(session: Session, emulator: ChildEmulator, args: argparse.Namespace) -> Phase:
    out = Phase()
    calls = iter(range(args.calls))

    async def worker() -> None:
        for i in calls:  # one shared iterator: each worker takes the next call
            try:
                await session.call(emulator.base_url, i)
            except Exception as exc:
                out.errors[type(exc).__name__] += 1
            else:
                out.succeeded += 1

    started = time.perf_counter()
    try:
        async with asyncio.timeout(args.max_seconds), asyncio.TaskGroup() as group:
            for _ in range(min(args.concurrency, args.calls)):
                group.create_task(worker())
    except TimeoutError:
        out.timed_out = True
    out.elapsed = time.perf_counter() - started
    await asyncio.sleep(0.1)  # let cancelled requests reach (or not) the server
    out.requests = int(emulator.stats().get("requests", 0))
    out.notes = session.notes()
    return out


def _reset(emulator: ChildEmulator) -> None:
    httpx.post(f"{emulator.url}/_stats/reset", trust_env=False, timeout=30).raise_for_status()


async def _drive(
    contender: Contender, emulators: dict[str, ChildEmulator], args: argparse.Namespace
) -> dict[str, Phase]:
    phases: dict[str, Phase] = {}
    setup = Setup(connections=args.connections, wait_scale=args.wait_scale, prompt="Outage call")
    first = emulators[args.phases[0]].base_url
    async with contender.open(first, setup) as session:
        for name in args.phases:
            if phases:
                await asyncio.sleep(args.pause)
            phases[name] = await _phase(session, emulators[name], args)
    return phases


def measure(
    contender: Contender, emulators: dict[str, ChildEmulator], args: argparse.Namespace
) -> dict[str, Any]:
    for emulator in emulators.values():
        _reset(emulator)
    phases = asyncio.run(_drive(contender, emulators, args))
    row: dict[str, Any] = {
        "key": contender.key,
        "description": contender.description,
        "baseline": contender.baseline,
    }
    for name, out in phases.items():
        row[name] = {
            "calls": args.calls,
            "succeeded": out.succeeded,
            "failed": args.calls - out.succeeded,
            "errors": dict(out.errors),
            "timed_out": out.timed_out,
            "elapsed_s": round(out.elapsed, 3),
            "requests": out.requests,
            "requests_per_call": round(out.requests / args.calls, 3),
            "notes": out.notes,
        }
    return row


# -- reporting --------------------------------------------------------------------------------


def _extra_load(row: dict[str, Any], baseline: dict[str, Any] | None) -> str:
    if baseline is None or not baseline["outage"]["requests"]:
        return "-"
    return f"{row['outage']['requests'] / baseline['outage']['requests']:.2f}x"


def _elapsed(phase: dict[str, Any]) -> str:
    return f"{phase['elapsed_s']:.1f}" + (" (cut off)" if phase["timed_out"] else "")


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    baseline = next((row for row in results.values() if row["baseline"]), None)
    recovery = "recovery" in args.phases
    header = "| contender | outage: requests/call | extra load | failed | elapsed s |" + (
        " recovery: requests/call | failed | elapsed s |" if recovery else ""
    )
    lines = [header, "|---" * (header.count("|") - 1) + "|"]
    for name, row in results.items():
        outage = row["outage"]
        cells = [
            f"{row['key']}. {name}",
            f"{outage['requests_per_call']:.2f}",
            _extra_load(row, baseline),
            str(outage["failed"]),
            _elapsed(outage),
        ]
        if recovery:
            back = row["recovery"]
            cells += [f"{back['requests_per_call']:.2f}", str(back["failed"]), _elapsed(back)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def budget_lines(results: dict[str, dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    for name, row in results.items():
        for phase in PHASES:
            notes = row.get(phase, {}).get("notes", {})
            if "attempts_per_call" not in notes:
                continue
            budget = notes.get("budget")
            extra = "" if budget is None else f"; budget at the end: {budget}"
            lines.append(
                f"  {row['key']}. {name} [{phase}]: attempts per call "
                f"{notes['attempts_per_call']}, gave up {notes['gave_up'] or 0}, errors "
                f"{row[phase]['errors'] or 0}{extra}"
            )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Extra load in a total outage (every chat completion a 503): requests per "
        "call for each retry library, with and without xretry's retry budget, then recovery."
    )
    parser.add_argument("--calls", type=int, help="chat completions per phase (400; quick: 80)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight (64)")
    parser.add_argument(
        "--connections",
        type=int,
        default=16,
        help="connections in the httpx clients' pool (16)",
    )
    parser.add_argument(
        "--wait-scale",
        type=float,
        default=0.005,
        help="multiplies every configurable backoff wait (0.005)",
    )
    parser.add_argument(
        "--pause", type=float, default=1.1, help="seconds between outage and recovery (1.1)"
    )
    parser.add_argument("--no-recovery", action="store_true", help="the outage phase only")
    parser.add_argument(
        "--only", default="", help="comma-separated contender keys a-h (default: all)"
    )
    parser.add_argument("--seed", type=int, default=6, help="the emulator's seed (6)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=60.0,
        help="cut a phase off after this long; calls not done count as failed (60)",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 80 calls")
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON results (default benchmarks/results/outage.json)",
    )
    args = parser.parse_args(argv)
    if args.calls is None:
        args.calls = 80 if args.quick else 400
    if args.calls < 1 or args.concurrency < 1 or args.connections < 1:
        parser.error("--calls, --concurrency and --connections must be at least 1")
    if not args.wait_scale > 0 or not args.max_seconds > 0 or args.pause < 0:
        parser.error("--wait-scale and --max-seconds must be > 0, --pause >= 0")
    keys = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = keys - {c.key for c in CONTENDERS}
    if unknown:
        parser.error(f"unknown contender key(s): {', '.join(sorted(unknown))}")
    chosen = [c for c in CONTENDERS if not keys or c.key in keys]
    args.phases = PHASES[:1] if args.no_recovery else PHASES
    # xretry logs one warning per give-up; they are counted from each RetryHistory instead.
    logging.getLogger("xretry").setLevel(logging.ERROR)

    command = shlex.join(sys.orig_argv)
    found = _report.versions(PACKAGES)
    source = _report.source_state()
    _report.print_header(found, source, command)
    print(
        f"setup:    {args.calls} chat completions per phase, {args.concurrency} at a time over "
        f"{args.connections} connections; "
        f"outage: every one a 503; "
        + (f"recovery {args.pause:g} s later: healthy; " if "recovery" in args.phases else "")
        + f"waits scaled by {args.wait_scale:g} (the openai SDK's are real); phases cut off at "
        f"{args.max_seconds:g} s"
    )
    print(f"default:  {xretry.RetryPolicy()!r}")
    print(f"budget:   {xretry.RetryBudget()!r}, probe_interval 1 s")

    scenarios = {"outage": {"seed": args.seed, "faults": [OUTAGE_FAULT]}, "recovery": {}}
    results: dict[str, dict[str, Any]] = {}
    with contextlib.ExitStack() as stack:
        emulators = {
            name: stack.enter_context(
                ChildEmulator({"seed": args.seed, **scenarios[name]}, name=f"{name}-emulator")
            )
            for name in args.phases
        }
        for contender in chosen:
            print(f"  running {contender.key}. {contender.name} ...", end="", flush=True)
            row = measure(contender, emulators, args)
            results[contender.name] = row
            print(
                " "
                + "; ".join(
                    f"{phase}: {row[phase]['requests']} requests, {row[phase]['failed']} failed, "
                    f"{row[phase]['elapsed_s']:.1f} s"
                    for phase in args.phases
                ),
                flush=True,
            )

    print()
    print(
        f"Outage ({args.calls} calls, {args.concurrency} at a time, every chat completion a 503)"
        + (", then recovery (the same calls, healthy server)" if "recovery" in args.phases else "")
    )
    print(table(results, args))
    print()
    print(
        "requests/call = requests the server saw / calls; extra load = the outage's requests / "
        "the no-retry baseline's;\nfailed = calls that raised (or were cut off); elapsed = first "
        f"call started to last call finished, with waits scaled by {args.wait_scale:g}."
    )
    extra = budget_lines(results)
    if extra:
        print()
        print("xretry, per call:")
        print("\n".join(extra))

    _report.write_results(
        args.output,
        "extra load in a total outage: server-seen requests per call for each retry "
        "library, with and without xretry's retry budget, and what happens on recovery",
        command=command,
        found=found,
        source=source,
        settings={
            "calls": args.calls,
            "concurrency": args.concurrency,
            "connections": args.connections,
            "wait_scale": args.wait_scale,
            "pause_s": args.pause,
            "phases": list(args.phases),
            "seed": args.seed,
            "max_seconds": args.max_seconds,
            "quick": args.quick,
            "outage_fault": OUTAGE_FAULT,
            "default_retry_policy": repr(xretry.RetryPolicy()),
            "default_retry_budget": repr(xretry.RetryBudget()),
        },
        contenders={c.name: {"key": c.key, "description": c.description} for c in chosen},
        table=table(results, args),
        results=results,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
