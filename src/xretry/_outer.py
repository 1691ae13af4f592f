"""How an outer xretry loop tells the transports inside it to step aside.

Retries must never multiply: when the decorator or a poller owns the retry loop of a call, an xretry
transport inside the client sends each request once and hands back what it got. Two signals, both
set by xretry itself: a context variable while a decorated call runs (:data:`OUTER_CALL`), and a
marker on a request the pollers build (:data:`OUTER_LOOP`). :data:`DEADLINE` carries what an outer
loop has left of its time to the requests it sends.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Final, final

__all__ = ["DEADLINE", "OUTER_CALL", "OUTER_LOOP", "OuterLoop"]

#: Set while an ``@xretry.retry`` call runs: transports inside it send once and step aside.
OUTER_CALL: ContextVar[bool] = ContextVar("xretry_outer_call", default=False)


@final
class OuterLoop:
    """The type of :data:`OUTER_LOOP` (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "xretry.OUTER_LOOP"


#: ``request.extensions["xretry"] = OUTER_LOOP``: an outer xretry loop (a poller) owns this
#: request's retries. An xretry transport inside then sends it once and steps aside.
OUTER_LOOP: Final = OuterLoop()

#: ``request.extensions[DEADLINE] = seconds``: what an outer loop (``as_completed``) has left for
#: this request; it caps the policy's deadline, so the request's retries and timeouts end in time.
DEADLINE: Final = "xretry.deadline"
