"""Make a test suite that exercises retries run instantly.

Example::

    from xretry.testing import no_wait

    def test_my_client_survives_a_429():
        with no_wait() as schedule:
            result = my_client.call()      # retries, but never sleeps
        assert schedule.delays == [0.5]    # the backoff ceiling, jitter switched off

While the context is active, every xretry entry point (sync or async, in any thread) records each
wait in ``schedule.delays`` instead of sleeping, and jitter is off, so each recorded backoff is its
exact ceiling (``initial_delay * multiplier ** n``, capped at ``max_delay``) and server hints are
recorded as sent. Contexts nest (the innermost records); leaving one, even out of order, leaves
the others on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ._testing import RetrySchedule, push, remove

__all__ = ["RetrySchedule", "no_wait"]


@contextmanager
def no_wait() -> Iterator[RetrySchedule]:
    """Turn every xretry wait into zero and record it (see the module docstring)."""
    schedule = RetrySchedule()
    push(schedule)
    try:
        yield schedule
    finally:
        remove(schedule)
