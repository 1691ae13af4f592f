"""How soon, and at what cost, does each polling strategy deliver deferred completions?

Section 1, the schedule. The same workload for every strategy, each against a *fresh* emulator
(same scenario, same seed, so no state leaks between strategies): ``--jobs`` (100) deferred chat
completions submitted at once, each ready 1-4 s after its submission, submit and polls sharing one
token bucket of 40 requests/s with a burst of 10 (``Scenario(rate_limit=40, burst=10,
hints="full", ready_after=(1.0, 4.0))``, so every 429 carries ``retry-after``, ``retry-after-ms``
and ``x-ratelimit-*``). The strategies:

a. ``sdk fixed 1s``       what the official xai-sdk does: each job its own asyncio task on a plain
                          ``httpx.AsyncClient``, submit, poll at once, then every 1.0 s (no jitter)
                          for up to 600 s. The SDK retries gRPC UNAVAILABLE only; its REST
                          equivalent of a 429 here is "try again at the next tick" (1 s later),
                          for the submit and for a poll.
b. ``xAI guide recipe``   xAI's REST example: per job, tenacity
                          ``wait_exponential(multiplier=1, min=1, max=60)`` around each poll, no
                          stop, any non-200 (a 202 or a 429) is retried. The guide does not retry
                          its submit; here a 429 on submit is retried with the same wait.
c. ``xretry per-job``     each job its own task calling ``AsyncDeferredCompletions(client)
                          .create(...)``, a separate poller (so a separate ``Gate``) per job:
                          the default ``PollPolicy`` schedule alone, with no coordination.
d. ``xretry as_completed`` one ``AsyncDeferredCompletions`` with the default ``PollPolicy`` and its
                          shared ``Gate``: ``as_completed(bodies, concurrency=--concurrency)``.
e. ``xretry as_completed, fixed 1s``  the same with ``PollPolicy(multiplier=1, jitter=0)``: the
                          coordination without xretry's schedule.
f.-m. alternatives         ``as_completed`` with one knob turned from the benchmark (xretry's
                          source unchanged), to show which knob moves which number: the gate
                          seeded with ``Gate(rate=38)`` (as if read from
                          ``x-ratelimit-limit-requests``), with ``probe=0``, a
                          ``RetryPolicy(max_attempts=20)``, ``respect_retry_after=False``,
                          concurrency 8, and three ``PollPolicy`` schedules over ``Gate(rate=38)``.

Per strategy: delivered (n / jobs), the mean and max lag from "ready" to "delivered" as the
*server* measures it (``deferred_lag_mean`` / ``deferred_lag_max`` from ``GET /_stats``), polls
per job (polls the server answered, 202 or 200), poll requests per job including the ones answered
429, 429s provoked, 429s as a fraction of all API requests, and wall time (first submit to last
result). Targets from the issue: mean lag under 1 s, at most 3 polls per job, 429s under a tenth
of all requests. The JSON also holds, per strategy, a per-second timeline of what the client sent
and got back (counted with an httpx response hook), and for ``as_completed`` the shared gate's
learned rate every 0.25 s.

Section 2, holding many pending jobs. ``--pending`` (10,000) deferred jobs are submitted (by
``--concurrency`` worker tasks) to an emulator with no rate limit whose jobs become ready only
600-900 s later; then ``as_completed`` runs over all their ids for ``--pending-seconds`` (20 s)
with every one of them still pending, and is left (cancelled). The client runs in a process of
its own (spawned), so its RSS and CPU are its own: RSS from ``/proc/self/status`` (VmRSS sampled
every 0.25 s, VmHWM) and ``resource.getrusage().ru_maxrss``, before, after submitting and during
polling. CPU per poll is the client's ``time.process_time()`` over a polling window divided by
the polls the emulator answered in it; to tell xretry's share from the HTTP client's, the same ids
are then polled by a bare ``httpx`` GET loop over the same number of connections, and both again
over 8 connections (10 s windows). Target from the issue: under 200 MB RSS.

Every emulator runs in a child process (``multiprocessing``, spawn), so the server's CPU neither
slows the client's event loop nor counts as the client's. Results also go to
``benchmarks/results/deferred.json``.

Run (the full run takes a few minutes)::

    .venv/bin/python benchmarks/deferred.py
    .venv/bin/python benchmarks/deferred.py --quick           # 20 jobs, 500 pending: a smoke run
    .venv/bin/python benchmarks/deferred.py --only a,d,f --pending 0   # some strategies
    .venv/bin/python benchmarks/deferred.py --jobs 0                   # section 2 only
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing
import resource
import shlex
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import _report  # benchmarks/_report.py and the others, beside this script
import anyio
import httpx
import tenacity
from _emulator import ChildEmulator
from _report import num

import xretry

DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "deferred.json"
API_KEY = "bench-key"
MODEL = "grok-4"
SUBMIT = "chat/completions"
POLL = "chat/deferred-completion/"

#: The targets of issue 3 ("The polling schedule").
TARGET_LAG = 1.0
TARGET_POLLS = 3.0
TARGET_429_SHARE = 0.1
TARGET_RSS_MB = 200.0

#: What the official xai-sdk does: poll every 1 s (``PollTimer``), give up after 10 minutes.
SDK_INTERVAL = 1.0
SDK_TIMEOUT = 600.0


# -- the emulator, in a child process ---------------------------------------------------------


def _scenario(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "seed": args.seed,
        "rate_limit": args.rate_limit,
        "burst": args.burst,
        "hints": "full",
        "ready_after": (args.ready_min, args.ready_max),
    }


# -- what the client sent and got back --------------------------------------------------------


@dataclass
class Tally:
    """Client-side counts, from an httpx response hook (fires for ``send`` too)."""

    start: float = field(default_factory=time.monotonic)
    timeline: Counter[tuple[int, str]] = field(default_factory=Counter)
    per_job: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)

    async def hook(self, response: httpx.Response) -> None:
        path = response.request.url.path
        kind = "poll" if POLL in path else "submit" if path.endswith(SUBMIT) else "other"
        key = f"{kind}_{response.status_code}"
        self.statuses[key] += 1
        self.timeline[(int(time.monotonic() - self.start), key)] += 1
        if kind == "poll" and response.status_code != 429:
            self.per_job[path.rsplit("/", 1)[-1]] += 1

    def seconds(self) -> list[dict[str, int]]:
        last = max((second for second, _ in self.timeline), default=-1)
        rows = []
        for second in range(last + 1):
            row = {"second": second}
            for (at, key), count in sorted(self.timeline.items()):
                if at == second:
                    row[key] = count
            rows.append(row)
        return rows


@dataclass
class Run:
    """What a strategy reports back, besides what the server and the tally saw."""

    delivered: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    notes: dict[str, Any] = field(default_factory=dict)


Strategy = Callable[[httpx.AsyncClient, list[dict[str, Any]], Run], Awaitable[None]]


def _bodies(n: int) -> list[dict[str, Any]]:
    return [
        {"model": MODEL, "messages": [{"role": "user", "content": f"Benchmark job {i}"}]}
        for i in range(n)
    ]


def _completion(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json().get("object") == "chat.completion"


async def _gather_jobs(jobs: list[Coroutine[Any, Any, None]]) -> None:
    async with asyncio.TaskGroup() as group:
        for job in jobs:
            group.create_task(job)


# -- a. the official SDK's schedule ------------------------------------------------------------


async def sdk_fixed(client: httpx.AsyncClient, bodies: list[dict[str, Any]], run: Run) -> None:
    async def job(body: dict[str, Any]) -> None:
        timer = time.monotonic()  # the SDK's PollTimer starts before the submit
        while True:
            response = await client.post(SUBMIT, json={**body, "deferred": True})
            if response.status_code == 200:
                request_id = response.json()["request_id"]
                break
            if response.status_code != 429:
                run.errors[f"submit {response.status_code}"] += 1
                return
            await asyncio.sleep(SDK_INTERVAL)  # a 429: try again at the next tick
        while True:
            response = await client.get(POLL + request_id)
            if response.status_code == 200:
                run.delivered += _completion(response)
                return
            if response.status_code not in (202, 429):
                run.errors[f"poll {response.status_code}"] += 1
                return
            runtime = time.monotonic() - timer
            if runtime > SDK_TIMEOUT:
                run.errors["timeout"] += 1
                return
            await asyncio.sleep(min(SDK_TIMEOUT - runtime, SDK_INTERVAL))

    await _gather_jobs([job(body) for body in bodies])


# -- b. xAI's REST guide ----------------------------------------------------------------------


class NotReady(Exception):
    """The guide's ``raise Exception("Response not ready yet")`` (and its non-200 branch)."""


async def guide_recipe(client: httpx.AsyncClient, bodies: list[dict[str, Any]], run: Run) -> None:
    def retrying(on: type[BaseException]) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(
            wait=tenacity.wait_exponential(multiplier=1, min=1, max=60),
            retry=tenacity.retry_if_exception_type(on),
        )

    async def job(body: dict[str, Any]) -> None:
        request_id = ""
        async for attempt in retrying(NotReady):
            with attempt:
                response = await client.post(SUBMIT, json={**body, "deferred": True})
                if response.status_code == 429:
                    raise NotReady("429 on submit")
                response.raise_for_status()
                request_id = response.json()["request_id"]
        completed = False
        async for attempt in retrying(Exception):  # the guide's @retry: any exception, no stop
            with attempt:
                response = await client.get(POLL + request_id)
                if response.status_code == 200:
                    completed = _completion(response)
                elif response.status_code == 202:
                    raise NotReady("Response not ready yet")
                else:
                    raise NotReady(f"{response.status_code} Error: {response.text}")
        run.delivered += completed

    await _gather_jobs([job(body) for body in bodies])


# -- c.-f. xretry -----------------------------------------------------------------------------


def xretry_per_job(poll: xretry.PollPolicy | None = None) -> Strategy:
    async def strategy(client: httpx.AsyncClient, bodies: list[dict[str, Any]], run: Run) -> None:
        gates: list[xretry.Gate] = []

        async def job(body: dict[str, Any]) -> None:
            poller = xretry.AsyncDeferredCompletions(client, poll=poll)  # its own Gate
            if poller.gate is not None:
                gates.append(poller.gate)
            try:
                completion = await poller.create(**body)
            except Exception as exc:
                run.errors[type(exc).__name__] += 1
                return
            run.delivered += completion.get("object") == "chat.completion"

        await _gather_jobs([job(body) for body in bodies])
        rates = [gate.rate for gate in gates if gate.rate is not None]
        run.notes["gates_that_learned_a_rate"] = len(rates)
        run.notes["learned_rate_sum"] = round(sum(rates), 1) if rates else None

    return strategy


def xretry_as_completed(
    poll: xretry.PollPolicy | None = None,
    gate: Callable[[], xretry.Gate] | None = None,
    policy: xretry.RetryPolicy | None = None,
    concurrency: int | None = None,
) -> Strategy:
    async def strategy(client: httpx.AsyncClient, bodies: list[dict[str, Any]], run: Run) -> None:
        limit = concurrency if concurrency is not None else run.notes["concurrency"]
        run.notes["concurrency"] = limit
        poller = xretry.AsyncDeferredCompletions(
            client, poll=poll, policy=policy, gate=None if gate is None else gate()
        )
        samples: list[tuple[float, float | None, int]] = []
        started = time.monotonic()
        the_gate = poller.gate
        assert the_gate is not None

        async def watch_gate() -> None:
            while True:
                elapsed = round(time.monotonic() - started, 2)
                samples.append((elapsed, the_gate.rate, the_gate.rate_limited))
                await anyio.sleep(0.25)

        async with anyio.create_task_group() as group:
            group.start_soon(watch_gate)
            async with poller.as_completed(bodies, concurrency=limit) as results:
                async for outcome in results:
                    if outcome.completion is not None:
                        run.delivered += outcome.completion.get("object") == "chat.completion"
                    else:
                        run.errors[type(outcome.error).__name__] += 1
            group.cancel_scope.cancel()
        run.notes["gate_rate_at_end"] = the_gate.rate
        run.notes["gate_429s_seen"] = the_gate.rate_limited
        run.notes["gate_timeline"] = [
            {"t": t, "rate": None if rate is None else round(rate, 1), "429s": seen}
            for t, rate, seen in samples
        ]

    return strategy


@dataclass(frozen=True)
class Contender:
    key: str
    name: str
    description: str
    strategy: Strategy
    alternative: bool = False


STRATEGIES: list[Contender] = [
    Contender(
        "a",
        "sdk fixed 1s",
        "per-job task, plain httpx: submit, poll at once then every 1.0 s, 429 = next tick",
        sdk_fixed,
    ),
    Contender(
        "b",
        "xAI guide recipe",
        "per-job task, tenacity wait_exponential(multiplier=1, min=1, max=60), no stop",
        guide_recipe,
    ),
    Contender(
        "c",
        "xretry per-job",
        "per-job task, AsyncDeferredCompletions(client).create(): own poller and Gate per job",
        xretry_per_job(),
    ),
    Contender(
        "d",
        "xretry as_completed",
        "one poller, default PollPolicy, shared Gate, as_completed(concurrency=C)",
        xretry_as_completed(),
    ),
    Contender(
        "e",
        "xretry as_completed, fixed 1s",
        "as d, PollPolicy(multiplier=1, jitter=0): coordination without xretry's schedule",
        xretry_as_completed(xretry.PollPolicy(multiplier=1, jitter=0)),
    ),
    # Alternatives: the knobs a user (or a new default) could turn, one at a time.
    Contender(
        "f",
        "as_completed, Gate(rate=38)",
        "as d, the gate starts at 38 req/s (as if read from x-ratelimit-limit-requests)",
        xretry_as_completed(gate=lambda: xretry.Gate(rate=38)),
        alternative=True,
    ),
    Contender(
        "g",
        "as_completed, Gate(38, probe=0)",
        "as f, probe=0: a known rate that does not creep above the limit",
        xretry_as_completed(gate=lambda: xretry.Gate(rate=38, probe=0)),
        alternative=True,
    ),
    Contender(
        "h",
        "as_completed, max_attempts=20",
        "as d, RetryPolicy(max_attempts=20): the learning gate, but submits that never give up",
        xretry_as_completed(policy=xretry.RetryPolicy(max_attempts=20)),
        alternative=True,
    ),
    Contender(
        "i",
        "as_completed, hints ignored",
        "as d, RetryPolicy(respect_retry_after=False): jittered backoff, not the 1-25 ms hints",
        xretry_as_completed(policy=xretry.RetryPolicy(respect_retry_after=False)),
        alternative=True,
    ),
    Contender(
        "j",
        "as_completed, concurrency=8",
        "as d with 8 requests in flight instead of 32",
        xretry_as_completed(concurrency=8),
        alternative=True,
    ),
    Contender(
        "k",
        "as_completed, Gate(38), first 2 s",
        "as f, PollPolicy(first_delay=2.0)",
        xretry_as_completed(xretry.PollPolicy(first_delay=2.0), gate=lambda: xretry.Gate(rate=38)),
        alternative=True,
    ),
    Contender(
        "l",
        "as_completed, Gate(38), 0.5 s x1.5",
        "as f, PollPolicy(interval=0.5, multiplier=1.5)",
        xretry_as_completed(
            xretry.PollPolicy(interval=0.5, multiplier=1.5), gate=lambda: xretry.Gate(rate=38)
        ),
        alternative=True,
    ),
    Contender(
        "m",
        "as_completed, Gate(38), fixed 1s",
        "as e, with the gate starting at 38 req/s",
        xretry_as_completed(
            xretry.PollPolicy(multiplier=1, jitter=0), gate=lambda: xretry.Gate(rate=38)
        ),
        alternative=True,
    ),
]


# -- one strategy against a fresh emulator ----------------------------------------------------


async def _drive(
    contender: Contender, base_url: str, jobs: int, max_seconds: float, run: Run
) -> tuple[float, Tally, bool]:
    tally = Tally()
    limits = httpx.Limits(max_connections=jobs, max_keepalive_connections=jobs)
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        limits=limits,
        timeout=httpx.Timeout(30.0),
        trust_env=False,
        event_hooks={"response": [tally.hook]},
    ) as client:
        tally.start = time.monotonic()
        started = time.perf_counter()
        finished = False
        with anyio.move_on_after(max_seconds):
            await contender.strategy(client, _bodies(jobs), run)
            finished = True
        wall = time.perf_counter() - started
    return wall, tally, finished


def measure(contender: Contender, args: argparse.Namespace) -> dict[str, Any]:
    run = Run(notes={"concurrency": args.concurrency})
    with ChildEmulator(_scenario(args), name="deferred-emulator") as emulator:
        wall, tally, finished = asyncio.run(
            _drive(contender, emulator.base_url, args.jobs, args.max_seconds, run)
        )
        stats = emulator.stats()
    api_requests = int(stats.get("requests.chat", 0)) + int(stats.get("requests.deferred", 0))
    rate_limited = int(stats.get("rate_limited", 0))
    polls = int(stats.get("polls", 0))
    jobs = args.jobs
    per_job = list(tally.per_job.values())
    row: dict[str, Any] = {
        "key": contender.key,
        "description": contender.description,
        "alternative": contender.alternative,
        "finished": finished,
        "delivered": run.delivered,
        "delivered_server": int(stats.get("deferred_delivered", 0)),
        "jobs": jobs,
        "lag_mean_s": stats.get("deferred_lag_mean"),
        "lag_max_s": stats.get("deferred_lag_max"),
        "polls_per_job": polls / jobs,
        "poll_requests_per_job": int(stats.get("requests.deferred", 0)) / jobs,
        "polls_per_job_max": max(per_job, default=0),
        "polls_per_job_median": statistics.median(per_job) if per_job else 0,
        "jobs_over_3_polls": sum(1 for n in per_job if n > TARGET_POLLS),
        "rate_limited": rate_limited,
        "api_requests": api_requests,
        "share_429": rate_limited / api_requests if api_requests else 0.0,
        "wall_s": wall,
        "errors": dict(run.errors),
        "notes": run.notes,
        "client_statuses": dict(sorted(tally.statuses.items())),
        "timeline": tally.seconds(),
        "server_stats": stats,
    }
    row["meets"] = {
        "lag": row["lag_mean_s"] is not None and row["lag_mean_s"] < TARGET_LAG,
        "polls": row["polls_per_job"] <= TARGET_POLLS,
        "share_429": row["share_429"] < TARGET_429_SHARE,
        "delivered": row["delivered"] == jobs,
    }
    return row


def schedule_table(rows: dict[str, dict[str, Any]]) -> str:
    width = max(len(f"{row['key']}. {name}") for name, row in rows.items())
    header = (
        f"{'strategy':<{width}} {'delivered':>9} {'lag mean':>8} {'lag max':>7} "
        f"{'polls/job':>9} {'reqs/job':>8} {'max':>3} {'429s':>5} {'429 %':>6} {'wall s':>6}  "
        "targets"
    )
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        meets = row["meets"]
        marks = "".join(
            "+" if meets[key] else "-" for key in ("lag", "polls", "share_429", "delivered")
        )
        delivered = f"{row['delivered']}/{row['jobs']}"
        lines.append(
            f"{row['key'] + '. ' + name:<{width}} {delivered:>9} "
            f"{num(row['lag_mean_s'], '.2f'):>8} {num(row['lag_max_s'], '.2f'):>7} "
            f"{row['polls_per_job']:>9.2f} {row['poll_requests_per_job']:>8.2f} "
            f"{row['polls_per_job_max']:>3} {row['rate_limited']:>5} "
            f"{100 * row['share_429']:>5.1f}% {row['wall_s']:>6.1f}  {marks}"
        )
    return "\n".join(lines)


# -- section 2: many pending jobs in one process ----------------------------------------------


def _rss_kb() -> dict[str, int]:
    found: dict[str, int] = {}
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                found[name] = int(value.split()[0])
    return found


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def _pending_client(base_url: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(60.0),
        trust_env=False,
    )


async def _polls_served(client: httpx.AsyncClient, url: str, reset: bool = False) -> int:
    if reset:
        (await client.post(f"{url}/_stats/reset")).raise_for_status()
        return 0
    return int((await client.get(f"{url}/_stats")).json().get("polls", 0))


async def _cpu_window(
    name: str,
    client: httpx.AsyncClient,
    url: str,
    seconds: float,
    body: Callable[[], Awaitable[None]],
    connections: int,
) -> dict[str, Any]:
    """Run ``body`` for ``seconds``; the client's CPU time per poll the emulator answered."""
    await _polls_served(client, url, reset=True)
    cpu = time.process_time()
    started = time.perf_counter()
    with anyio.move_on_after(seconds):
        await body()
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    polls = await _polls_served(client, url)
    return {
        "run": name,
        "connections": connections,
        "seconds": wall,
        "polls": polls,
        "polls_per_s": polls / wall,
        "cpu_s": cpu,
        "cpu_us_per_poll": cpu / polls * 1e6 if polls else None,
    }


async def _hold_pending(
    base_url: str, url: str, n: int, seconds: float, concurrency: int
) -> dict[str, Any]:
    report: dict[str, Any] = {"jobs": n, "concurrency": concurrency, "cpu": []}
    async with _pending_client(base_url, concurrency) as client:
        poller = xretry.AsyncDeferredCompletions(client)
        report["rss_before_kb"] = _rss_kb()["VmRSS"]
        report["maxrss_before_kb"] = _maxrss_kb()

        ids: list[str] = []
        body = _bodies(1)[0]

        async def submit(count: int) -> None:  # one of `concurrency` lanes, one task each
            for _ in range(count):
                ids.append(await poller.submit(**body))

        cpu = time.process_time()
        started = time.perf_counter()
        async with anyio.create_task_group() as group:
            for lane in range(concurrency):
                group.start_soon(submit, n // concurrency + (lane < n % concurrency))
        report["submit_s"] = time.perf_counter() - started
        report["submit_cpu_us_each"] = (time.process_time() - cpu) / n * 1e6
        report["rss_after_submit_kb"] = _rss_kb()["VmRSS"]

        samples: list[int] = []
        outcomes = 0

        async def hold(poller: xretry.AsyncDeferredCompletions, limit: int) -> None:
            nonlocal outcomes
            async with poller.as_completed(ids, concurrency=limit) as results:
                async for _outcome in results:
                    outcomes += 1

        async def sample() -> None:
            while True:
                samples.append(_rss_kb()["VmRSS"])
                await anyio.sleep(0.25)

        async with anyio.create_task_group() as group:
            group.start_soon(sample)
            report["cpu"].append(
                await _cpu_window(
                    "xretry as_completed",
                    client,
                    url,
                    seconds,
                    functools.partial(hold, poller, concurrency),
                    concurrency,
                )
            )
            group.cancel_scope.cancel()
        report["rss_after_kb"] = _rss_kb()["VmRSS"]
        report["rss_during_peak_kb"] = max(samples, default=0)
        report["rss_during_mean_kb"] = statistics.fmean(samples) if samples else 0.0
        report["rss_samples_mb"] = [round(kb / 1024, 1) for kb in samples]
        report["vmhwm_kb"] = _rss_kb()["VmHWM"]
        report["maxrss_kb"] = _maxrss_kb()
        report["outcomes_during_window"] = outcomes
        stats = (await client.get(f"{url}/_stats")).json()
        report["server_pending"] = int(stats.get("deferred_pending", 0))

    # The same polls without xretry, and both again with fewer connections: how much of the CPU
    # per poll is xretry's, and how much the HTTP client's (httpcore's pool scans every
    # connection on each request and each release).
    short = min(seconds, 10.0)
    for connections in dict.fromkeys((concurrency, 8)):
        async with _pending_client(base_url, connections) as client:

            async def bare(client: httpx.AsyncClient = client, lanes: int = connections) -> None:
                async def lane(first: int) -> None:
                    while True:
                        for request_id in ids[first::lanes]:
                            (await client.get(POLL + request_id)).raise_for_status()

                async with anyio.create_task_group() as group:
                    for first in range(lanes):
                        group.start_soon(lane, first)

            if connections != concurrency:
                other = xretry.AsyncDeferredCompletions(client)
                report["cpu"].append(
                    await _cpu_window(
                        "xretry as_completed",
                        client,
                        url,
                        short,
                        functools.partial(hold, other, connections),
                        connections,
                    )
                )
            report["cpu"].append(
                await _cpu_window("bare httpx GET loop", client, url, short, bare, connections)
            )
    return report


def _pending_child(
    base_url: str, url: str, n: int, seconds: float, concurrency: int, conn: Connection
) -> None:
    """Child process: hold ``n`` pending jobs in ``as_completed``; send the report back."""
    conn.send(asyncio.run(_hold_pending(base_url, url, n, seconds, concurrency)))


#: Long enough that no job is ready while section 2 runs (submitting 10,000 takes a while).
PENDING_READY_AFTER = (600.0, 900.0)


def measure_pending(args: argparse.Namespace) -> dict[str, Any]:
    scenario: dict[str, Any] = {
        "seed": args.seed,
        "rate_limit": None,
        "ready_after": PENDING_READY_AFTER,
    }
    with ChildEmulator(scenario) as emulator:
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(
            target=_pending_child,
            args=(
                emulator.base_url,
                emulator.url,
                args.pending,
                args.pending_seconds,
                args.concurrency,
                child,
            ),
            name="deferred-pending-client",
        )
        process.start()
        timeout = 600.0 + 2 * args.pending_seconds
        if not parent.poll(timeout):
            process.kill()
            process.join(5)
            raise RuntimeError(f"the pending-jobs client gave no report within {timeout:g} s")
        report: dict[str, Any] = parent.recv()
        process.join(30)
    report["scenario"] = {**scenario, "ready_after": list(PENDING_READY_AFTER)}
    return report


def pending_table(report: dict[str, Any]) -> str:
    def mb(key: str) -> str:
        return f"{report[key] / 1024:.1f} MB"

    rows = [
        ("jobs pending (server, after)", f"{report['server_pending']:,} of {report['jobs']:,}"),
        ("outcomes during the window", f"{report['outcomes_during_window']}"),
        ("submit all (wall)", f"{report['submit_s']:.1f} s"),
        ("client CPU per submit", f"{report['submit_cpu_us_each']:.0f} µs"),
        ("RSS before (imports + client)", mb("rss_before_kb")),
        ("RSS after submitting", mb("rss_after_submit_kb")),
        ("RSS during as_completed, peak", mb("rss_during_peak_kb")),
        ("RSS during as_completed, mean", mb("rss_during_mean_kb")),
        ("peak RSS (VmHWM)", mb("vmhwm_kb")),
        ("peak RSS (ru_maxrss)", mb("maxrss_kb")),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'measure':<{width}}  value", "-" * (width + 20)]
    lines += [f"{name:<{width}}  {value}" for name, value in rows]
    lines.append("")
    header = (
        f"{'polling run':<20} {'connections':>11} {'seconds':>7} {'polls':>7} {'polls/s':>7} "
        f"{'CPU s':>6} {'CPU µs/poll':>11}"
    )
    lines += [header, "-" * len(header)]
    for run in report["cpu"]:
        lines.append(
            f"{run['run']:<20} {run['connections']:>11} {run['seconds']:>7.1f} "
            f"{run['polls']:>7,} {run['polls_per_s']:>7.0f} {run['cpu_s']:>6.2f} "
            f"{num(run['cpu_us_per_poll'], '.0f'):>11}"
        )
    return "\n".join(lines)


# -- reporting --------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Deferred completions: lag, polls and 429s per polling strategy; memory "
        "and CPU with many pending jobs."
    )
    parser.add_argument(
        "--jobs", type=int, help="jobs per strategy (100; quick: 20; 0 skips section 1)"
    )
    parser.add_argument("--rate-limit", type=float, default=40.0, help="requests/s (40)")
    parser.add_argument("--burst", type=int, default=10, help="token bucket burst (10)")
    parser.add_argument("--ready-min", type=float, default=1.0, help="ready after, min s (1)")
    parser.add_argument("--ready-max", type=float, default=4.0, help="ready after, max s (4)")
    parser.add_argument("--seed", type=int, default=3, help="the emulator's seed (3)")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="as_completed concurrency (default 16)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=300.0, help="give a strategy up after (300 s)"
    )
    parser.add_argument(
        "--only", default="", help="comma-separated strategy keys to run (default: all)"
    )
    parser.add_argument(
        "--pending", type=int, help="pending jobs in section 2 (10000; quick: 500; 0 skips it)"
    )
    parser.add_argument(
        "--pending-seconds", type=float, help="section 2's polling window (20 s; quick: 5 s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="a fast smoke run: 20 jobs, 500 pending for 5 s"
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON results (default benchmarks/results/deferred.json)",
    )
    args = parser.parse_args(argv)
    for name, full, quick in (
        ("jobs", 100, 20),
        ("pending", 10_000, 500),
        ("pending_seconds", 20.0, 5.0),
    ):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if args.jobs < 0 or args.pending < 0 or args.concurrency < 1:
        parser.error("--concurrency must be at least 1, --jobs and --pending at least 0")
    keys = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = keys - {c.key for c in STRATEGIES}
    if unknown:
        parser.error(f"unknown strategy key(s): {', '.join(sorted(unknown))}")
    chosen = [c for c in STRATEGIES if args.jobs and (not keys or c.key in keys)]

    command = shlex.join(sys.orig_argv)
    found = _report.versions(("xretry", "httpx", "tenacity", "anyio", "uvicorn"))
    source = _report.source_state()
    _report.print_header(found, source, command)
    print(
        f"setup:    {args.jobs} jobs submitted at once, ready {args.ready_min:g}-"
        f"{args.ready_max:g} s after submission, one {args.rate_limit:g} req/s bucket (burst "
        f"{args.burst}) for submit and polls, seed {args.seed}, a fresh emulator per strategy "
        f"(child process); as_completed concurrency {args.concurrency}"
    )
    print(f"default:  {xretry.PollPolicy()!r}")

    rows: dict[str, dict[str, Any]] = {}
    for contender in chosen:
        print(f"  running {contender.key}. {contender.name} ...", flush=True)
        rows[contender.name] = measure(contender, args)

    if rows:
        main_rows = {n: r for n, r in rows.items() if not r["alternative"]}
        other_rows = {n: r for n, r in rows.items() if r["alternative"]}
        print()
        print("Section 1: the polling schedule")
        if main_rows:
            print(schedule_table(main_rows))
        if other_rows:
            print()
            print("Alternatives (xretry's knobs, set from the benchmark; source unchanged)")
            print(schedule_table(other_rows))
        print()
        print(
            "lag = server-measured time from ready to delivered (s); polls/job = polls the server "
            "answered (202/200) per job;\nreqs/job = poll requests per job including those "
            "answered 429; max = most polls of one job; 429 % = 429s / all API requests;\n"
            f"targets (+ met, - missed): mean lag < {TARGET_LAG:g} s, polls/job <= "
            f"{TARGET_POLLS:g}, 429 share < {100 * TARGET_429_SHARE:g}%, all delivered."
        )
        for name, row in rows.items():
            if row["errors"] or not row["finished"]:
                print(f"  {name}: errors {row['errors']}, finished {row['finished']}")
        for name, row in rows.items():
            timeline = row["notes"].get("gate_timeline")
            if timeline and not row["alternative"]:
                rates = ", ".join(f"{s['t']:g} s: {num(s['rate'], '.0f')}" for s in timeline[:12:2])
                print(f"  {name}: the gate's rate (req/s) at {rates}")

    pending: dict[str, Any] | None = None
    if args.pending:
        print()
        print(
            f"  holding {args.pending:,} pending jobs for {args.pending_seconds:g} s ...",
            flush=True,
        )
        pending = measure_pending(args)
        print()
        print(
            f"Section 2: {args.pending:,} pending jobs in one async process (the client process "
            f"alone; emulator in another, no rate limit, ready after "
            f"{PENDING_READY_AFTER[0]:g}-{PENDING_READY_AFTER[1]:g} s)"
        )
        print(pending_table(pending))
        print(
            f"target: RSS under {TARGET_RSS_MB:g} MB: "
            f"{'met' if pending['vmhwm_kb'] / 1024 < TARGET_RSS_MB else 'MISSED'}"
        )

    _report.write_results(
        args.output,
        "deferred completions: lag, polls and 429s per polling strategy; memory and "
        "CPU with many pending jobs",
        command=command,
        found=found,
        source=source,
        settings={
            "jobs": args.jobs,
            "scenario": {**_scenario(args), "ready_after": [args.ready_min, args.ready_max]},
            "concurrency": args.concurrency,
            "max_seconds": args.max_seconds,
            "pending": args.pending,
            "pending_seconds": args.pending_seconds,
            "quick": args.quick,
            "default_poll_policy": repr(xretry.PollPolicy()),
        },
        targets={
            "lag_mean_s": TARGET_LAG,
            "polls_per_job": TARGET_POLLS,
            "share_429": TARGET_429_SHARE,
            "rss_mb": TARGET_RSS_MB,
        },
        strategies=rows,
        pending=pending,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
