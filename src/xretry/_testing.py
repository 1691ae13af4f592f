"""Global test mode: every wait becomes zero and is recorded; jitter becomes deterministic.

Kept global (not a context variable) on purpose: a user's test may hand the client to a thread or
a task group, and the waits there must be instant too. :mod:`xretry.testing` is the public face.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["RetrySchedule", "active", "swap"]


@dataclass
class RetrySchedule:
    """The waits xretry would have slept while test mode was on, in order."""

    delays: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, delay: float) -> None:
        with self._lock:
            self.delays.append(delay)

    @property
    def total(self) -> float:
        """Seconds that would have been slept."""
        return sum(self.delays)


_active: RetrySchedule | None = None


def active() -> RetrySchedule | None:
    """The schedule being recorded, or ``None`` outside test mode."""
    return _active


def swap(schedule: RetrySchedule | None) -> RetrySchedule | None:
    """Make ``schedule`` the active one (``None`` ends test mode); return the previous one."""
    global _active
    previous, _active = _active, schedule
    return previous
