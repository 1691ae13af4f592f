"""The two drivers: all the I/O of the retry loop, sync and async, and nothing else.

:func:`run` and :func:`arun` answer the steps of a generator from :mod:`xretry._core` until it
returns (or raises) and are the only code that exists twice, once with ``await``. What each step
means is fixed here, the same for every entry point:

* ``SEND``: call ``send()`` once; an ``Exception`` is the answer, not raised (the loop judges it).
  Anything else (a cancellation, ``KeyboardInterrupt``) ends the call at once.
* ``Read``: the response's body, or ``None`` when it cannot be read; on a cancellation the
  response is closed (shielded, in async) before it propagates.
* ``Close``, ``Sleep``, ``RESERVE``, ``Observe``: close, sleep, ``gate.reserve()``,
  ``gate.observe()`` (or their async twins).

However the loop ends, the generator is closed, so its ``finally`` blocks run now, not at garbage
collection.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import anyio

from ._core import RESERVE, SEND, Close, Observe, Read, Sleep, Steps

if TYPE_CHECKING:
    from ._gate import Gate

__all__ = ["anyio_sleep", "arun", "run"]

T = TypeVar("T")


def run(
    steps: Steps[T],
    send: Callable[[], Any] | None,
    sleep: Callable[[float], None],
    gate: Gate | None,
) -> T:
    """Run ``steps`` to the end, doing their I/O synchronously (``send`` and ``gate`` may be
    ``None`` for steps that never send or reserve)."""
    answer: Any = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = None
            if step is SEND:
                assert send is not None
                try:
                    answer = send()
                except Exception as exc:
                    answer = exc
            elif isinstance(step, Read):
                try:
                    answer = step.response.read()
                except Exception:
                    answer = None
                except BaseException:
                    step.response.close()
                    raise
            elif isinstance(step, Close):
                step.response.close()
            elif isinstance(step, Sleep):
                sleep(step.seconds)
            elif step is RESERVE:
                assert gate is not None
                answer = gate.reserve()
            elif isinstance(step, Observe):
                assert gate is not None
                gate.observe(step.status, wait=step.wait, rate=step.rate)
    finally:
        steps.close()


async def arun(
    steps: Steps[T],
    send: Callable[[], Awaitable[Any]] | None,
    sleep: Callable[[float], Awaitable[None]],
    gate: Gate | None,
) -> T:
    """Run ``steps`` to the end, doing their I/O asynchronously (asyncio or trio)."""
    answer: Any = None
    try:
        while True:
            try:
                step = steps.send(answer)
            except StopIteration as done:
                result: T = done.value
                return result
            answer = None
            if step is SEND:
                assert send is not None
                try:
                    answer = await send()
                except Exception as exc:
                    answer = exc
            elif isinstance(step, Read):
                try:
                    answer = await step.response.aread()
                except Exception:
                    answer = None
                except BaseException:
                    with anyio.CancelScope(shield=True):
                        await step.response.aclose()
                    raise
            elif isinstance(step, Close):
                await step.response.aclose()
            elif isinstance(step, Sleep):
                await sleep(step.seconds)
            elif step is RESERVE:
                assert gate is not None
                answer = await gate.areserve()
            elif isinstance(step, Observe):
                assert gate is not None
                await gate.aobserve(step.status, wait=step.wait, rate=step.rate)
    finally:
        steps.close()


async def anyio_sleep(seconds: float) -> None:
    """The default async sleep: asyncio's or trio's, whichever is running."""
    await anyio.sleep(seconds)
