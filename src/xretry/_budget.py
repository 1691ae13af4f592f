"""The retry budget: when the server is failing, retries stop multiplying the load on it.

A retry is worth sending when failures are rare; in an outage every retry is one more request to a
server that is already down, and five attempts per call make the outage five times louder. The
budget is gRPC's retry throttling (gRFC A6): a token count that starts full at ``max_tokens``;
each server failure (a retryable 5xx or a transport error) takes one token, each success gives back
``token_ratio``; retries are allowed only while more than half the tokens are left. Failures must
therefore stay under about ``token_ratio`` per success (10% by default) for retries to go on; in
a total outage they stop after ``max_tokens / 2`` failures, and the extra load is that handful.

429s are not counted: a rate limit is the gate's business (pacing and cooldown), and throttling
retries during a cold start would turn a slow-down into failures. Nor are the polls of a deferred
completion: that result is paid for, and it is polled until it arrives or the poll timeout ends.

The budget is opt-in (``Gate(budget=RetryBudget())``): shared by many concurrent calls, it turns a
one-second 5xx blip into errors for most of the calls in flight (64 calls failing at once leave
retries for five of them). That is the right trade for a fleet protecting a struggling server,
and the wrong default for one program that wants each of its calls to succeed.

With ``fail_fast=True`` the budget also stops *first* attempts while it is exhausted: calls fail
at once with :class:`~xretry.RetryBudgetExhaustedError` instead of reaching a server known to be
failing, except one probe call every ``probe_interval`` seconds, whose success refills the budget.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["RetryBudget"]


class RetryBudget:
    """gRPC-style retry throttling, shared by every request that passes one :class:`Gate`.

    Example::

        gate = xretry.Gate(budget=xretry.RetryBudget(max_tokens=20, token_ratio=0.2))
        transport = xretry.AsyncRetryTransport(gate=gate)

    The defaults (10 tokens, ratio 0.1) are gRPC's usual ones: a lone request keeps its full
    ``max_attempts``, a server failing more than about one call in ten loses its retries.
    """

    def __init__(
        self,
        *,
        max_tokens: float = 10.0,
        token_ratio: float = 0.1,
        fail_fast: bool = False,
        probe_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not (isinstance(max_tokens, int | float) and 1 <= max_tokens <= 1e6):
            raise ValueError(f"max_tokens must be in [1, 1e6], got {max_tokens!r}")
        if not (isinstance(token_ratio, int | float) and 0 < token_ratio <= max_tokens):
            raise ValueError(f"token_ratio must be in (0, max_tokens], got {token_ratio!r}")
        if not (isinstance(probe_interval, int | float) and 0 < probe_interval <= 3600):
            raise ValueError(f"probe_interval must be in (0, 3600], got {probe_interval!r}")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self.fail_fast = bool(fail_fast)
        self.probe_interval = float(probe_interval)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.max_tokens
        self._next_probe = 0.0
        self._probing = False
        self._denied = 0
        self._refused = 0

    @property
    def tokens(self) -> float:
        """Tokens left; retries are allowed while this is above ``max_tokens / 2``."""
        return self._tokens

    @property
    def exhausted(self) -> bool:
        """True while retries are being withheld."""
        return self._tokens <= self.max_tokens / 2

    @property
    def retries_denied(self) -> int:
        """Retries not made because the budget was exhausted."""
        return self._denied

    @property
    def calls_refused(self) -> int:
        """First attempts refused with ``fail_fast`` (not sent at all)."""
        return self._refused

    def on_success(self) -> None:
        """A response that was not a server failure: give back ``token_ratio`` (all of them
        after a fail-fast probe: the server is back)."""
        if self._tokens < self.max_tokens:  # the common case is full: no lock needed
            with self._lock:
                if self._probing:
                    self._probing = False
                    self._tokens = self.max_tokens
                else:
                    self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def on_failure(self) -> None:
        """A server failure (a retryable 5xx or a transport error): take a token."""
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1.0)
            self._probing = False

    def allows_retry(self) -> bool:
        """May a failed call be retried? Counted as denied when not."""
        if self._tokens > self.max_tokens / 2:
            return True
        with self._lock:
            self._denied += 1
        return False

    def admit(self) -> bool:
        """May a new call be sent? Always, unless ``fail_fast`` and exhausted (then one probe per
        ``probe_interval``)."""
        if not self.fail_fast or self._tokens > self.max_tokens / 2:
            return True
        with self._lock:
            now = self._clock()
            if now >= self._next_probe:
                self._next_probe = now + self.probe_interval
                self._probing = True
                return True
            self._refused += 1
            return False

    def describe(self) -> str:
        """Why retries stopped, for errors and give-up notes."""
        return (
            f"retry budget exhausted ({self._tokens:g} of {self.max_tokens:g} tokens left, "
            f"retries resume above {self.max_tokens / 2:g}): the server is failing, "
            "retrying now would only multiply its load"
        )

    def __repr__(self) -> str:
        return (
            f"RetryBudget(max_tokens={self.max_tokens:g}, token_ratio={self.token_ratio:g}, "
            f"fail_fast={self.fail_fast}, tokens={self._tokens:g})"
        )
