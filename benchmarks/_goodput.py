"""What ``goodput.py`` and ``goodput_processes.py`` share: the rate-limited emulator, its header
modes, the ideal time, issue 6's targets, and the tables."""

from __future__ import annotations

import argparse
from typing import Any

from _report import num

__all__ = [
    "MODES",
    "TARGET_429_PER_SUCCESS",
    "TARGET_RATIO",
    "ideal_seconds",
    "meets",
    "print_mode_tables",
    "scenario",
    "summary_cell",
    "summary_table",
]

#: The header modes, in the issue's column order, with its column titles.
MODES: dict[str, str] = {
    "retry-after": "429s with `retry-after` (s)",
    "full": "with ms hints and `x-ratelimit-*`",
    "none": "with no hint headers",
}

#: The targets of issue 6, for xretry with its defaults.
TARGET_RATIO = 0.95
TARGET_429_PER_SUCCESS = 0.1


def scenario(args: argparse.Namespace, hints: str) -> dict[str, Any]:
    return {"seed": args.seed, "rate_limit": args.rate_limit, "burst": args.burst, "hints": hints}


def ideal_seconds(args: argparse.Namespace) -> float:
    """The burst at once, the rest at the limit."""
    return float(max(args.calls - args.burst, 0) / args.rate_limit)


def meets(row: dict[str, Any]) -> dict[str, bool]:
    ratio, per = row["ratio_of_ideal"], row["per_success_429"]
    return {
        "no_failures": row["failed"] == 0,
        "ratio": ratio is not None and ratio >= TARGET_RATIO,
        "per_success_429": per is not None and per <= TARGET_429_PER_SUCCESS,
    }


def _marks(row: dict[str, Any]) -> str:
    return "".join("+" if ok else "-" for ok in row["meets"].values())


def mode_table(rows: dict[str, dict[str, Any]]) -> str:
    width = max(len(f"{row['key']}. {name}") for name, row in rows.items())
    header = (
        f"{'contender':<{width}} {'of ideal':>8} {'elapsed s':>9} {'ok':>5} {'failed':>6} "
        f"{'429s':>6} {'429s/ok':>7} {'requests':>8}  targets"
    )
    lines = [header, "-" * len(header)]
    for name, row in rows.items():
        elapsed = f"{row['elapsed_s']:.1f}" + ("*" if row["timed_out"] else "")
        lines.append(
            f"{row['key'] + '. ' + name:<{width}} {num(row['ratio_of_ideal'], '.2f'):>8} "
            f"{elapsed:>9} {row['succeeded']:>5} {row['failed']:>6} {row['rate_limited']:>6} "
            f"{num(row['per_success_429'], '.2f'):>7} {row['requests']:>8}  {_marks(row)}"
        )
    return "\n".join(lines)


def summary_cell(row: dict[str, Any]) -> str:
    timed_out = " (timed out)" if row["timed_out"] else ""
    return (
        f"{num(row['ratio_of_ideal'], '.2f')}, {row['failed']} failed, "
        f"{num(row['per_success_429'], '.1f')}{timed_out}"
    )


def summary_table(results: dict[str, dict[str, dict[str, Any]]], names: list[str]) -> str:
    modes = list(results)
    lines = [
        "| client | " + " | ".join(MODES[mode] for mode in modes) + " |",
        "|---" * (len(modes) + 1) + "|",
    ]
    for name in names:
        cells = [summary_cell(results[mode][name]) for mode in modes if name in results[mode]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def print_mode_tables(
    results: dict[str, dict[str, dict[str, Any]]], modes: list[str], ideal: float
) -> None:
    """One table per header mode, then what the columns mean."""
    for mode in modes:
        print()
        print(f"Header mode {mode!r}: {MODES[mode]}")
        print(mode_table(results[mode]))
    print()
    print(
        f"of ideal = {ideal:.2f} s / elapsed; 429s/ok = 429s / successes (server-counted); "
        "requests = all the server saw;\n* = cut off at --max-seconds. targets (+ met, - "
        f"missed): no failures, >= {TARGET_RATIO:g} of ideal, <= {TARGET_429_PER_SUCCESS:g} "
        "429s per success."
    )
