"""Instrumentation: a frozen event per retry or give-up, handed to hooks; logging is one hook.

A hook is any callable taking a :class:`RetryEvent`. Hooks run on the retry path only (never on a
first-try success) and a hook that raises is logged and skipped: a broken metrics exporter must not
cost the caller a paid-for response.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

__all__ = ["EventKind", "RetryEvent", "RetryHook", "as_hooks", "emit", "log_event", "logger"]

#: ``"retry"``: an error, about to back off; ``"poll"``: a deferred completion not ready yet, about
#: to ask again; ``"give_up"``: out of attempts, time or patience, returning or raising.
EventKind = Literal["retry", "poll", "give_up"]

#: The ``xretry`` logger: one DEBUG line per retry, one WARNING per give-up. Never logs headers.
logger = logging.getLogger("xretry")


@dataclass(frozen=True, slots=True)
class RetryEvent:
    """What just happened, for metrics and tracing. Never carries headers or bodies."""

    #: ``"retry"``, ``"poll"`` or ``"give_up"`` (see :data:`EventKind`).
    kind: EventKind
    method: str
    #: Scheme, host and path only (no query string, no userinfo).
    url: str
    #: The attempt that just ended (1-based) and the policy's limit.
    attempt: int
    max_attempts: int
    #: The response status, or ``None`` when the attempt raised.
    status_code: int | None
    #: ``"ReadTimeout: ..."`` when the attempt raised, else ``None``.
    error: str | None
    reason: str
    #: Seconds to sleep before the next attempt or poll (0 for ``give_up``).
    delay: float
    #: Seconds since the logical request started.
    elapsed: float


class RetryHook(Protocol):
    """Receives every :class:`RetryEvent`. Must be quick and must not block."""

    def __call__(self, event: RetryEvent, /) -> None: ...


def log_event(event: RetryEvent) -> None:
    """The built-in hook: DEBUG for a retry, WARNING for a give-up."""
    outcome = event.error if event.status_code is None else str(event.status_code)
    if event.kind == "poll":
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "polling %s %s: not ready (poll %d); next poll in %.3fs",
                event.method,
                event.url,
                event.attempt,
                event.delay,
            )
    elif event.kind == "retry":
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "retrying %s %s: attempt %d/%d got %s (%s); sleeping %.3fs",
                event.method,
                event.url,
                event.attempt,
                event.max_attempts,
                outcome,
                event.reason,
                event.delay,
            )
    else:
        logger.warning(
            "giving up on %s %s after %d attempt(s) in %.3fs: last got %s (%s)",
            event.method,
            event.url,
            event.attempt,
            event.elapsed,
            outcome,
            event.reason,
        )


def emit(hooks: Sequence[RetryHook], event: RetryEvent) -> None:
    """Run the logging hook, then each hook in order; a failing hook is logged, not raised."""
    log_event(event)
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("xretry hook %r failed; continuing", hook)


def as_hooks(hooks: Iterable[RetryHook] | None) -> tuple[RetryHook, ...]:
    """Validate and freeze a user's hooks argument."""
    if hooks is None:
        return ()
    try:
        frozen = tuple(hooks)
    except TypeError:
        raise ValueError(
            f"hooks must be a list of callables taking a RetryEvent, got {hooks!r}"
        ) from None
    for hook in frozen:
        if not callable(hook):
            raise ValueError(f"hooks must be callables taking a RetryEvent, got {hook!r}")
    return frozen
