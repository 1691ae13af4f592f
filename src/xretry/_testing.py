"""Global test mode: every wait becomes zero and is recorded; jitter becomes deterministic.

Kept global (not a context variable) on purpose: a user's test may hand the client to a thread or
a task group, and the waits there must be instant too. :mod:`xretry.testing` is the public face.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["RetrySchedule", "active", "push", "remove", "reset", "restore"]


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


_stack: list[RetrySchedule] = []
_lock = threading.Lock()


def active() -> RetrySchedule | None:
    """The schedule being recorded (the innermost active one), or ``None`` outside test mode."""
    return _stack[-1] if _stack else None


def push(schedule: RetrySchedule) -> None:
    with _lock:
        _stack.append(schedule)


def remove(schedule: RetrySchedule) -> None:
    """End one context, even out of order: the others stay active."""
    with _lock:
        for index in range(len(_stack) - 1, -1, -1):
            if _stack[index] is schedule:
                del _stack[index]
                return


def reset() -> list[RetrySchedule]:
    """End test mode entirely; return what was active (for test fixtures to restore)."""
    with _lock:
        saved = list(_stack)
        _stack.clear()
    return saved


def restore(saved: list[RetrySchedule]) -> None:
    with _lock:
        _stack[:] = saved
