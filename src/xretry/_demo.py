"""``xretry demo``: a realistic mixed workload against the misbehaving emulator, with and without
xretry, side by side.

The same workload runs twice against a fresh emulator with the same seed: once through xretry's
three entry points (the transport, the decorator, the deferred poller), sharing one Gate, and once
through a plain httpx client with no retries. The summary shows what the retries bought.
"""

from __future__ import annotations

import json
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx

from ._decorator import retry
from ._deferred import AsyncDeferredCompletions
from ._errors import araise_for_status
from ._gate import Gate
from ._hooks import RetryEvent
from ._transport import AsyncRetryTransport
from .emulator import EmulatorServer, Fault, Scenario

__all__ = ["DEMO_SCENARIO", "run_demo"]

#: The demo's emulator: xAI-like rate limit with full hints, plus a few faults every client meets.
DEMO_SCENARIO = Scenario(
    seed=2026,
    rate_limit=40.0,
    burst=10,
    hints="full",
    ready_after=(0.5, 2.0),
    faults=(
        Fault("status", status=503, rate=0.08),
        Fault("html", rate=0.02),
        Fault("status", status=500, rate=0.02, endpoints=frozenset({"deferred"})),
        Fault("drop_before", rate=0.05, endpoints=frozenset({"deferred"})),
        Fault("latency", seconds=0.3, rate=0.05),
    ),
)

KEY = "xai-demo-key"


@dataclass
class Tally:
    """What one run of the workload saw, client side."""

    label: str
    calls: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    server: dict[str, Any] = field(default_factory=dict)

    def hook(self, event: RetryEvent) -> None:
        if event.kind == "retry":
            cause = str(event.status_code) if event.status_code else (event.error or "?")
            self.retries[cause.partition(":")[0]] += 1

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        ok = sum(self.calls.values()) - sum(self.failures.values())
        return {
            "calls": dict(self.calls),
            "succeeded": ok,
            "failed": dict(self.failures),
            "retries_by_cause": dict(self.retries),
            "requests_at_server": self.server.get("requests", 0),
            "rate_limited_429s": self.server.get("rate_limited", 0),
            "polls": self.server.get("polls", 0),
            "latency_p50_s": round(statistics.median(lat), 3) if lat else None,
            "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 3) if lat else None,
            "elapsed_s": round(self.elapsed, 2),
            "successes_per_s": round(ok / self.elapsed, 1) if self.elapsed else None,
        }


def _body(i: int) -> dict[str, Any]:
    return {"model": "grok-4", "messages": [{"role": "user", "content": f"Question {i}?"}]}


async def _run(
    server: EmulatorServer,
    *,
    retrying: bool,
    requests: int,
    concurrency: int,
    duration: float,
    advance: Callable[[str], None],
) -> Tally:
    tally = Tally("xretry" if retrying else "no retries")
    n_deferred = max(1, requests * 15 // 100)
    n_decorated = max(1, requests * 25 // 100)
    n_transport = max(1, requests - n_deferred - n_decorated)
    gate = Gate()
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency * 2)
    transport: httpx.AsyncBaseTransport = (
        AsyncRetryTransport(httpx.AsyncHTTPTransport(limits=limits), gate=gate, hooks=[tally.hook])
        if retrying
        else httpx.AsyncHTTPTransport(limits=limits)
    )
    deadline = time.monotonic() + duration
    limiter = anyio.CapacityLimiter(concurrency)
    started = time.monotonic()
    async with (
        httpx.AsyncClient(
            base_url=server.base_url, headers=headers, transport=transport, timeout=30.0
        ) as through_transport,
        httpx.AsyncClient(
            base_url=server.base_url,
            headers=headers,
            timeout=30.0,
            limits=limits,
            event_hooks={"response": [araise_for_status]},
        ) as plain,
    ):

        async def complete(client: httpx.AsyncClient, i: int) -> None:
            response = await client.post("chat/completions", json=_body(i))
            await araise_for_status(response)

        async def decorated_call(i: int) -> None:
            await plain.post("chat/completions", json=_body(i))

        call_decorated: Callable[[int], Awaitable[None]] = (
            retry(hooks=[tally.hook], gate=gate)(decorated_call) if retrying else decorated_call
        )

        async def one(kind: str, call: Callable[[], Awaitable[None]]) -> None:
            if time.monotonic() > deadline:
                return
            async with limiter:
                t0 = time.monotonic()
                tally.calls[kind] += 1
                try:
                    await call()
                except Exception as exc:
                    tally.failures[f"{kind}: {type(exc).__name__}"] += 1
                else:
                    tally.latencies.append(time.monotonic() - t0)
                advance(kind)

        async def deferred_jobs() -> None:
            bodies = [_body(10_000 + i) for i in range(n_deferred)]
            tally.calls["deferred"] += len(bodies)
            if retrying:
                poller = AsyncDeferredCompletions(plain, gate=gate, hooks=[tally.hook])
                async with poller.as_completed(bodies, concurrency=concurrency) as outcomes:
                    async for outcome in outcomes:
                        if not outcome.ok:
                            kind = f"deferred: {type(outcome.error).__name__}"
                            tally.failures[kind] += 1
                        advance("deferred")
                return
            async with anyio.create_task_group() as group:
                for body in bodies:
                    group.start_soon(_naive_deferred, plain, body, tally, advance)

        async with anyio.create_task_group() as group:
            group.start_soon(deferred_jobs)
            for i in range(max(n_transport, n_decorated)):
                if i < n_transport:
                    group.start_soon(one, "transport", _bind(complete, through_transport, i))
                if i < n_decorated:
                    group.start_soon(one, "decorator", _bind1(call_decorated, i))
    tally.elapsed = time.monotonic() - started
    async with httpx.AsyncClient() as stats:
        tally.server = (await stats.get(f"{server.url}/_stats")).json()
    return tally


def _bind(
    fn: Callable[[httpx.AsyncClient, int], Awaitable[None]], client: httpx.AsyncClient, i: int
) -> Callable[[], Awaitable[None]]:
    return lambda: fn(client, i)


def _bind1(fn: Callable[[int], Awaitable[None]], i: int) -> Callable[[], Awaitable[None]]:
    return lambda: fn(i)


async def _naive_deferred(
    client: httpx.AsyncClient,
    body: dict[str, Any],
    tally: Tally,
    advance: Callable[[str], None],
) -> None:
    """What people write without a poller: submit, then GET every second until it's there."""
    try:
        response = await client.post("chat/completions", json={**body, "deferred": True})
        request_id = response.json()["request_id"]
        for _ in range(60):
            await anyio.sleep(1.0)
            response = await client.get(f"chat/deferred-completion/{request_id}")
            if response.status_code == 200:
                break
        else:
            raise TimeoutError("not ready after 60 polls")
    except Exception as exc:
        tally.failures[f"deferred: {type(exc).__name__}"] += 1
    advance("deferred")


def run_demo(
    *,
    requests: int,
    concurrency: int,
    duration: float,
    scenario_path: Path | None,
    as_json: bool,
    progress: bool,
) -> int:
    """Run the workload with xretry, then without; print the comparison. Returns 0."""
    scenario = Scenario.load(scenario_path) if scenario_path else DEMO_SCENARIO
    tallies: list[Tally] = []
    for retrying in (True, False):
        with EmulatorServer(scenario) as server:
            if progress and not as_json:
                tallies.append(_with_progress(server, retrying, requests, concurrency, duration))
            else:

                async def quietly(
                    server: EmulatorServer = server, retrying: bool = retrying
                ) -> Tally:
                    return await _run(
                        server,
                        retrying=retrying,
                        requests=requests,
                        concurrency=concurrency,
                        duration=duration,
                        advance=lambda kind: None,
                    )

                tallies.append(anyio.run(quietly))
    summaries = {t.label: t.summary() for t in tallies}
    if as_json:
        print(json.dumps({"scenario": _describe(scenario), "runs": summaries}, indent=2))
    else:
        _print_table(scenario, summaries)
    return 0


def _with_progress(
    server: EmulatorServer, retrying: bool, requests: int, concurrency: int, duration: float
) -> Tally:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    label = "with xretry" if retrying else "no retries"
    n_deferred = max(1, requests * 15 // 100)
    n_decorated = max(1, requests * 25 // 100)
    totals = {
        "transport": max(1, requests - n_deferred - n_decorated),
        "decorator": n_decorated,
        "deferred": n_deferred,
    }
    with Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        tasks = {k: bar.add_task(f"{label}: {k}", total=v) for k, v in totals.items()}
        return anyio.run(
            lambda: _run(
                server,
                retrying=retrying,
                requests=requests,
                concurrency=concurrency,
                duration=duration,
                advance=lambda kind: bar.advance(tasks[kind]),
            )
        )


def _describe(scenario: Scenario) -> dict[str, Any]:
    return {
        "rate_limit_per_s": scenario.rate_limit,
        "burst": scenario.burst,
        "hints": scenario.hints,
        "faults": [
            f"{f.kind}{'/' + str(f.status) if f.kind == 'status' else ''} {f.rate:.0%}"
            for f in scenario.faults
        ],
    }


def _print_table(scenario: Scenario, runs: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    with_x, without = runs["xretry"], runs["no retries"]
    table = Table(title="Same workload, same misbehaving emulator (seeded)")
    table.add_column("")
    table.add_column("with xretry", justify="right")
    table.add_column("no retries", justify="right")

    def row(name: str, key: str, fmt: Callable[[Any], str] = str) -> None:
        table.add_row(name, fmt(with_x.get(key)), fmt(without.get(key)))

    total = sum(with_x["calls"].values())
    table.add_row("logical calls", str(total), str(sum(without["calls"].values())))
    row("succeeded", "succeeded")
    table.add_row(
        "failed",
        str(sum(with_x["failed"].values())),
        str(sum(without["failed"].values())),
    )
    row("requests seen by the server", "requests_at_server")
    row("429s provoked", "rate_limited_429s")
    row("deferred polls", "polls")
    row("latency p50 (s)", "latency_p50_s")
    row("latency p95 (s)", "latency_p95_s")
    row("wall time (s)", "elapsed_s")
    rate = scenario.rate_limit
    table.add_row(
        "successes/s" + (f" (limit {rate:g} req/s)" if rate else ""),
        str(with_x["successes_per_s"]),
        str(without["successes_per_s"]),
    )
    console.print(table)
    causes = ", ".join(f"{k}: {v}" for k, v in sorted(with_x["retries_by_cause"].items())) or "-"
    console.print(f"xretry retried by cause: {causes}")
    if without["failed"]:
        lost = ", ".join(f"{k} x{v}" for k, v in sorted(without["failed"].items()))
        console.print(f"without retries, lost: {lost}")
    if with_x["failed"]:
        lost = ", ".join(f"{k} x{v}" for k, v in sorted(with_x["failed"].items()))
        console.print(f"[yellow]with xretry, still failed: {lost}[/yellow]")
    console.print(
        "Faults injected: "
        + "; ".join(_describe(scenario)["faults"])
        + ". Point your own app at the same server: `xretry emulate`."
    )
