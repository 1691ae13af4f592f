"""What does the success path cost? Per-request overhead of retrying, when nothing is retried.

Every contender sends ``GET`` through an ``httpx.Client`` whose innermost transport is an
``httpx.MockTransport`` that always answers 200 with a small, pre-encoded JSON body, so the numbers
are client + retry machinery only, with no network and no sleeping:

1. ``bare``           ``httpx.Client(transport=MockTransport(handler))``
2. ``xretry``         ``httpx.Client(transport=xretry.RetryTransport(MockTransport(handler)))``
   ``xretry deadline`` the same with ``RetryPolicy(deadline=120)`` (timeouts capped per request)
   ``xretry no gate``  the same with ``gate=False`` (what the default gate costs)
3. ``httpx-retries``  ``httpx.Client(transport=httpx_retries.RetryTransport(transport=...))``
4. ``tenacity``       a ``tenacity.Retrying(...)`` built per call around the bare client's ``get``
                      (``for attempt in Retrying(...): with attempt: ...``, as users write it)
5. ``stamina``        ``stamina.retry_context(on=httpx.TransportError, attempts=5)`` per call
                      around the bare client's ``get`` (its on-retry hooks are switched off, so it
                      never logs; nothing is retried here anyway)

How: every contender is warmed up, then timed in rounds. In each round every contender runs one
batch of ``--requests`` requests, in an order shuffled afresh by a seeded ``random.Random``; a batch
is timed with ``time.perf_counter_ns`` after ``gc.collect()`` and with the collector disabled. Per
contender the table shows the median over rounds of microseconds per request and, the headline,
its ratio to ``bare``: the median of the per-round ratios (each round's batch against the same
round's ``bare`` batch, so slow drift of the machine cancels out), with their 25th-75th percentile
as the spread, and the median per-round difference in microseconds. Raw times are noisy on shared
machines; compare ratios. Results also go to ``benchmarks/results/overhead.json``.

Run (the full run takes well under a minute on a 2-core machine)::

    .venv/bin/python benchmarks/overhead.py
    .venv/bin/python benchmarks/overhead.py --quick          # a few-second smoke run
    .venv/bin/python benchmarks/overhead.py --rounds 50 --requests 4000
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _report  # benchmarks/_report.py, beside this script
import httpx
import httpx_retries
import stamina
import tenacity

import xretry

URL = "https://api.example.test/v1/models"
BODY = b'{"object":"list","data":[{"id":"grok-4","object":"model","owned_by":"xai"}]}'
HEADERS = {"content-type": "application/json"}
BASELINE = "bare"
DEFAULT_OUTPUT = Path(__file__).resolve().parent / "results" / "overhead.json"

#: A batch runs ``n`` requests and returns the last response, checked after the clock stops.
Batch = Callable[[int], httpx.Response]


def handler(request: httpx.Request) -> httpx.Response:
    """The mock server: a small 200 JSON response, every time."""
    return httpx.Response(200, headers=HEADERS, content=BODY)


def _client(transport: httpx.BaseTransport) -> httpx.Client:
    # trust_env=False: a *_PROXY variable in the environment would otherwise mount a real proxy
    # transport in front of ours. It is the same for every contender and costs nothing per request.
    return httpx.Client(transport=transport, trust_env=False)


@dataclass(frozen=True)
class Contender:
    name: str
    description: str
    batch: Batch
    client: httpx.Client


def build_contenders() -> list[Contender]:
    """The seven contenders; ``tenacity`` and ``stamina`` share the bare client."""
    stamina.instrumentation.set_on_retry_hooks([])  # no logging/metrics hooks, should one fire

    bare = _client(httpx.MockTransport(handler))
    with_xretry = _client(xretry.RetryTransport(httpx.MockTransport(handler)))
    without_gate = _client(xretry.RetryTransport(httpx.MockTransport(handler), gate=False))
    with_deadline = _client(
        xretry.RetryTransport(
            httpx.MockTransport(handler), policy=xretry.RetryPolicy(deadline=120.0)
        )
    )
    with_httpx_retries = _client(
        httpx_retries.RetryTransport(transport=httpx.MockTransport(handler))
    )

    def through(client: httpx.Client) -> Batch:
        def batch(n: int) -> httpx.Response:
            get = client.get
            response = None
            for _ in range(n):
                response = get(URL)
            assert response is not None
            return response

        return batch

    def tenacity_per_call(n: int) -> httpx.Response:
        get = bare.get
        response = None
        for _ in range(n):
            for attempt in tenacity.Retrying(
                stop=tenacity.stop_after_attempt(5),
                wait=tenacity.wait_random_exponential(multiplier=0.5, max=30),
                retry=tenacity.retry_if_exception_type(httpx.TransportError),
                reraise=True,
            ):
                with attempt:
                    response = get(URL)
        assert response is not None
        return response

    def stamina_per_call(n: int) -> httpx.Response:
        get = bare.get
        response = None
        for _ in range(n):
            for attempt in stamina.retry_context(on=httpx.TransportError, attempts=5):
                with attempt:
                    response = get(URL)
        assert response is not None
        return response

    return [
        Contender(BASELINE, "httpx.Client over MockTransport", through(bare), bare),
        Contender("xretry", "xretry.RetryTransport", through(with_xretry), with_xretry),
        Contender(
            "xretry no gate",
            "xretry.RetryTransport(gate=False)",
            through(without_gate),
            without_gate,
        ),
        Contender(
            "xretry deadline",
            "xretry.RetryTransport, RetryPolicy(deadline=120)",
            through(with_deadline),
            with_deadline,
        ),
        Contender(
            "httpx-retries",
            "httpx_retries.RetryTransport",
            through(with_httpx_retries),
            with_httpx_retries,
        ),
        Contender("tenacity", "tenacity.Retrying per call", tenacity_per_call, bare),
        Contender("stamina", "stamina.retry_context per call", stamina_per_call, bare),
    ]


def check(contender: Contender, response: httpx.Response) -> None:
    """The response really came from the mock, and a retrying transport really saw it."""
    if response.status_code != 200 or response.content != BODY:
        raise RuntimeError(f"{contender.name}: unexpected response {response!r}")
    if contender.name.startswith("xretry"):
        history = response.extensions.get("xretry")
        if not isinstance(history, xretry.RetryHistory) or history.attempt_count != 1:
            raise RuntimeError(f"xretry: expected a first-try history, got {history!r}")
    if contender.name == "httpx-retries" and "retry" not in response.extensions:
        raise RuntimeError("httpx-retries: its transport did not handle the request")


def timed(batch: Batch, n: int) -> tuple[int, httpx.Response]:
    """Nanoseconds for ``n`` requests, with the garbage collector collected and then disabled."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        response = batch(n)
        elapsed = time.perf_counter_ns() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed, response


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), linearly interpolated between the closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no values")
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarize(per_round_us: dict[str, list[float]]) -> dict[str, dict[str, Any]]:
    """Per contender: median µs/request, and per-round ratios and differences to the baseline."""
    base = per_round_us[BASELINE]
    summary: dict[str, dict[str, Any]] = {}
    for name, us in per_round_us.items():
        ratios = [t / b for t, b in zip(us, base, strict=True)]
        deltas = [t - b for t, b in zip(us, base, strict=True)]
        summary[name] = {
            "median_us": statistics.median(us),
            "p25_us": percentile(us, 25),
            "p75_us": percentile(us, 75),
            "min_us": min(us),
            "ratio_median": statistics.median(ratios),
            "ratio_p25": percentile(ratios, 25),
            "ratio_p75": percentile(ratios, 75),
            "ratio_of_medians": statistics.median(us) / statistics.median(base),
            "delta_us_median": statistics.median(deltas),
            "per_round_us": us,
            "per_round_ratio": ratios,
        }
    return summary


def table(summary: dict[str, dict[str, Any]]) -> str:
    header = (
        f"{'contender':<14} {'median µs/req':>13} {'ratio to bare':>13} "
        f"{'ratio p25-p75':>15} {'Δ µs/req':>9}"
    )
    lines = [header, "-" * len(header)]
    for name, row in summary.items():
        spread = f"{row['ratio_p25']:.3f}-{row['ratio_p75']:.3f}"
        lines.append(
            f"{name:<14} {row['median_us']:>13.2f} {row['ratio_median']:>12.3f}x "
            f"{spread:>15} {row['delta_us_median']:>+9.2f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Success-path overhead of xretry and other retry layers over bare httpx."
    )
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument(
        "--requests", type=int, default=2000, help="requests per contender per round (default 2000)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1000, help="untimed requests per contender first (1000)"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed for the round orders")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a fast smoke run: 3 rounds of 200 requests, 100 warm-up",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=DEFAULT_OUTPUT,
        help="where to write the JSON results (default benchmarks/results/overhead.json)",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.requests, args.warmup = 3, 200, 100
    if args.rounds < 1 or args.requests < 1 or args.warmup < 0:
        parser.error("--rounds and --requests must be at least 1, --warmup at least 0")

    command = shlex.join(sys.orig_argv)
    found = _report.versions(("xretry", "httpx", "tenacity", "httpx-retries", "stamina"))
    source = _report.source_state()
    _report.print_header(found, source, command)
    print(
        f"method:   {args.rounds} rounds x {args.requests} requests per contender, "
        f"{args.warmup} warm-up, shuffled order (seed {args.seed}), gc off while timing"
    )

    contenders = build_contenders()
    by_name = {c.name: c for c in contenders}
    for contender in contenders:
        if args.warmup:
            check(contender, contender.batch(args.warmup))
        check(contender, contender.batch(1))

    rng = random.Random(args.seed)
    per_round_us: dict[str, list[float]] = {c.name: [] for c in contenders}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for name in rng.sample(list(by_name), k=len(by_name)):
            contender = by_name[name]
            elapsed_ns, response = timed(contender.batch, args.requests)
            check(contender, response)
            per_round_us[name].append(elapsed_ns / args.requests / 1000)
    wall = time.perf_counter() - started

    for client in {id(c.client): c.client for c in contenders}.values():
        client.close()

    summary = summarize(per_round_us)
    print()
    print(table(summary))
    print()
    print(
        "ratio = median over rounds of (contender / bare in the same round); p25-p75 is the "
        f"spread of those ratios; Δ = median per-round difference. Timed for {wall:.1f} s."
    )

    _report.write_results(
        args.output,
        "per-request cost of the success path (200 on the first try) over bare httpx",
        command=command,
        found=found,
        source=source,
        implementation=platform.python_implementation(),
        settings={
            "rounds": args.rounds,
            "requests": args.requests,
            "warmup": args.warmup,
            "seed": args.seed,
            "quick": args.quick,
            "url": URL,
            "response_bytes": len(BODY),
        },
        timed_seconds=wall,
        contenders={c.name: {"description": c.description, **summary[c.name]} for c in contenders},
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
