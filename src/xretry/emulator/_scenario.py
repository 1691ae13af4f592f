"""Scenarios: what the emulator does wrong, and when. Frozen, validated, loadable from TOML or JSON.

Example (TOML)::

    seed = 7
    rate_limit = 40          # requests per second per key (token bucket)
    burst = 10
    hints = "full"           # "none" | "retry-after" | "full"
    ready_after = [1.0, 4.0] # deferred completions become ready 1-4 s after submission

    [[faults]]
    kind = "status"          # a 503 on 10% of inference requests
    status = 503
    rate = 0.1

    [[faults]]
    kind = "drop_before"     # the connection dies before any answer, on requests 5 to 8
    schedule = [[5, 8]]
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

__all__ = ["FAULT_KINDS", "HINT_MODES", "Fault", "Scenario"]

FaultKind = Literal[
    "status", "latency", "drop_before", "drop_during", "truncate", "garbage", "html", "hang"
]
HintMode = Literal["none", "retry-after", "full"]

#: What each fault does to a request it hits.
FAULT_KINDS: dict[str, str] = {
    "status": "answer with `status` (default 503) and an xAI-shaped error body",
    "latency": "wait `seconds` before answering normally",
    "drop_before": "close the connection before sending any response",
    "drop_during": "send the status line and headers, then close the connection mid-body",
    "truncate": "send a 200 whose JSON body is cut short (content-length lies)",
    "garbage": "send a 200 whose body is not JSON",
    "html": "send a 502 with an HTML page, as a proxy or gateway would",
    "hang": "accept the request and never answer (until the client gives up or the server stops)",
}
HINT_MODES = ("none", "retry-after", "full")


def _number(name: str, value: object, *, minimum: float = 0.0, maximum: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum:g} and {maximum:g}, got {value!r}")
    return float(value)


def _pair(name: str, value: object, *, maximum: float = math.inf) -> tuple[float, float]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"{name} must be a pair [min, max] of seconds, got {value!r}")
    return _number(name, value[0], maximum=maximum), _number(name, value[1], maximum=maximum)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: a kind, and when it strikes (a rate, a schedule, a time window, or several).

    ``rate`` is the chance per request; ``schedule`` lists 1-based request numbers or inclusive
    ``[first, last]`` ranges (counted over the requests on the fault's endpoints that passed auth
    and the rate limit); ``window`` is
    ``(start, end)`` seconds since the emulator started. Conditions combine with "or".
    ``endpoints`` limits the fault to ``"chat"`` (POST chat/completions), ``"deferred"`` (the poll
    endpoint) or ``"other"``; default: chat and deferred.
    """

    kind: FaultKind
    rate: float = 0.0
    schedule: tuple[int | tuple[int, int], ...] = ()
    window: tuple[float, float] | None = None
    status: int = 503
    seconds: float = 1.0
    endpoints: frozenset[str] = frozenset({"chat", "deferred"})

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault kind must be one of {sorted(FAULT_KINDS)}, got {self.kind!r}")
        _number("fault rate", self.rate, maximum=1.0)
        schedule: list[int | tuple[int, int]] = []
        given: object = self.schedule
        if not isinstance(given, list | tuple):
            raise ValueError(f"fault schedule must be a list, got {given!r}")
        for item in given:
            if isinstance(item, list | tuple):
                if len(item) != 2 or not all(isinstance(i, int) and i >= 1 for i in item):
                    raise ValueError(f"fault schedule ranges are [first, last], got {item!r}")
                if item[1] < item[0]:
                    raise ValueError(f"fault schedule range ends before it starts: {item!r}")
                schedule.append((int(item[0]), int(item[1])))
            elif isinstance(item, int) and not isinstance(item, bool) and item >= 1:
                schedule.append(item)
            else:
                raise ValueError(f"fault schedule holds {item!r}: use request numbers >= 1")
        object.__setattr__(self, "schedule", tuple(schedule))
        if self.window is not None:
            start, end = _pair("fault window", self.window)
            if end < start:
                raise ValueError(f"fault window ends before it starts: {self.window!r}")
            object.__setattr__(self, "window", (start, end))
        if isinstance(self.status, bool) or not isinstance(self.status, int):
            raise ValueError(f"fault status must be an int, got {self.status!r}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"fault status must be 100-599, got {self.status!r}")
        _number("fault seconds", self.seconds, maximum=3600.0)
        endpoints = frozenset(self.endpoints)
        if not endpoints or not endpoints <= {"chat", "deferred", "other"}:
            raise ValueError(f"fault endpoints must be chat/deferred/other, got {self.endpoints!r}")
        object.__setattr__(self, "endpoints", endpoints)

    def scheduled(self, number: int) -> bool:
        for item in self.schedule:
            if isinstance(item, tuple):
                if item[0] <= number <= item[1]:
                    return True
            elif item == number:
                return True
        return False


@dataclass(frozen=True, slots=True)
class Scenario:
    """Everything the emulator does, with defaults that behave like a healthy API.

    ``api_keys``: the keys accepted (a wrong one gets xAI's 400); ``None`` accepts any bearer token.
    ``blocked_keys``: keys answered 403. ``rate_limit``/``burst``: a token bucket per key, requests
    per second (``None``: unlimited). ``hints``: which headers a 429 carries. ``quota_exhausted``:
    every inference request gets the spent-credits 429. ``ready_after``: a deferred completion is
    ready a uniform random time in this range after submission; ``expire_after``: and discarded
    this long after that. ``seed``: every random choice derives from it.
    """

    seed: int = 0
    api_keys: frozenset[str] | None = None
    blocked_keys: frozenset[str] = frozenset()
    models: tuple[str, ...] = ("grok-4", "grok-4-fast", "grok-3", "grok-3-mini")
    rate_limit: float | None = None
    burst: int = 10
    hints: HintMode = "full"
    quota_exhausted: bool = False
    ready_after: tuple[float, float] = (1.0, 4.0)
    expire_after: float = 24 * 3600.0
    latency: float = 0.0
    faults: tuple[Fault, ...] = field(default=())

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an int, got {self.seed!r}")
        for name in ("api_keys", "blocked_keys"):
            value = getattr(self, name)
            if value is None and name == "api_keys":
                continue
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise ValueError(f"{name} must be a list of keys, got {value!r}")
            object.__setattr__(self, name, frozenset(str(v) for v in value))
        models: object = self.models
        if isinstance(models, str) or not isinstance(models, list | tuple) or not models:
            raise ValueError(f"models must be a non-empty list of names, got {self.models!r}")
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        if self.rate_limit is not None:
            _number("rate_limit", self.rate_limit, minimum=0.001)
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {self.burst!r}")
        if self.hints not in HINT_MODES:
            raise ValueError(f"hints must be one of {HINT_MODES}, got {self.hints!r}")
        low, high = _pair("ready_after", self.ready_after, maximum=86400.0)
        if high < low:
            raise ValueError(f"ready_after is [min, max], got {self.ready_after!r}")
        object.__setattr__(self, "ready_after", (low, high))
        _number("expire_after", self.expire_after, minimum=0.001)
        _number("latency", self.latency, maximum=3600.0)
        given: object = self.faults
        if not isinstance(given, list | tuple):
            raise ValueError(f"faults must be a list of Fault, got {given!r}")
        faults = tuple(_fault(f) for f in given)
        object.__setattr__(self, "faults", faults)

    # -- loading ------------------------------------------------------------------------------

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Scenario:
        """Build from a mapping (as parsed from TOML/JSON); unknown keys are a ``ValueError``."""
        _reject_unknown(cls, data, "scenario")
        values = dict(data)
        if "faults" in values:
            faults = values["faults"]
            if not isinstance(faults, list | tuple):
                raise ValueError("faults must be a list of tables")
            values["faults"] = tuple(_fault(f) for f in faults)
        for name in ("ready_after",):
            if name in values and isinstance(values[name], list):
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def load(cls, path: str | Path) -> Scenario:
        """Read a scenario from a ``.toml`` or ``.json`` file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValueError(f"cannot read scenario file {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise ValueError(f"scenario file {path} is not UTF-8 text: {exc}") from exc
        try:
            data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"scenario file {path} is not valid {path.suffix[1:]}: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"scenario file {path} must hold a table/object at the top")
        try:
            return cls.from_mapping(data)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"scenario file {path}: {exc}") from exc

    def replace(self, **changes: Any) -> Scenario:
        return replace(self, **changes)


def _reject_unknown(cls: type[Any], data: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} key(s): {', '.join(map(str, unknown))}")


def _fault(data: object) -> Fault:
    if isinstance(data, Fault):
        return data
    if not isinstance(data, Mapping):
        raise ValueError(f"each fault must be a table, got {data!r}")
    _reject_unknown(Fault, data, "fault")
    values = dict(data)
    if "schedule" in values:
        values["schedule"] = tuple(
            tuple(i) if isinstance(i, list) else i for i in values["schedule"]
        )
    if "window" in values and values["window"] is not None:
        values["window"] = tuple(values["window"])
    if "endpoints" in values:
        values["endpoints"] = frozenset(values["endpoints"])
    return Fault(**values)
