"""What every benchmark says about itself: the versions measured, the source's git state, and
the opening of its JSON results."""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Iterable
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

__all__ = ["num", "print_header", "source_state", "versions", "write_results"]


def versions(packages: Iterable[str]) -> dict[str, str]:
    """Python's version and each package's installed version (or "not installed")."""
    found = {"python": platform.python_version()}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def source_state() -> str:
    """The git commit of the xretry being measured, ``+dirty`` if its source has local changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def num(value: float | None, spec: str) -> str:
    """``value`` formatted for a table, ``-`` where there is none."""
    return "-" if value is None else format(value, spec)


def print_header(found: dict[str, str], source: str, command: str) -> None:
    """The first lines every benchmark prints: what was measured, at which commit, how run."""
    print("versions: " + ", ".join(f"{name} {v}" for name, v in found.items()))
    print(f"source:   xretry at {source}")
    print(f"command:  {command}")


def write_results(
    output: Path,
    question: str,
    *,
    command: str,
    found: dict[str, str],
    source: str,
    **sections: Any,
) -> None:
    """Write a benchmark's JSON results: what every report opens with (the question, when, how
    run, the versions and commit measured, the platform), then its own ``sections``."""
    report = {
        "question": question,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "versions": found,
        "xretry_source": source,
        "platform": platform.platform(),
        **sections,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"results:  {output}")
