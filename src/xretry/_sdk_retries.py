"""Noticing an SDK that retries underneath ``@xretry.retry``, where attempts would multiply.

The openai and anthropic SDKs mark their own retries (``x-stainless-retry-count``), which the
transport reads. The xai-sdk's retries leave no mark: its default gRPC channel retries UNAVAILABLE
up to 5 times by itself (a grpc service config), and the error that comes out after the last try
looks exactly like a single failure. Measured on loopback: an outage under
``@xretry.retry(policy=RetryPolicy(max_attempts=3))`` costs 15 server calls with the SDK's default
channel, 3 with ``channel_options=[("grpc.enable_retries", 0)]``.

So the decorator logs one warning per decorated function the first time an UNAVAILABLE comes out
of the xai-sdk: since the channel's options can't be seen from the error, it can't tell whether
the fix is already in, and says so.
"""

from __future__ import annotations

import logging
import threading
import weakref
from types import TracebackType

from ._classify import grpc_status

__all__ = ["check_sdk_retries"]

#: The option that switches the xai-sdk's channel retries off, quoted in the warning.
GRPC_NO_RETRIES = '("grpc.enable_retries", 0)'

logger = logging.getLogger("xretry")

_warned: weakref.WeakSet[object] = weakref.WeakSet()
_lock = threading.Lock()


def _through_xai_sdk(tb: TracebackType | None) -> bool:
    """Whether the exception was raised through the xai-sdk's code (its frames' module names)."""
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__")
        if isinstance(module, str) and (module == "xai_sdk" or module.startswith("xai_sdk.")):
            return True
        tb = tb.tb_next
    return False


def check_sdk_retries(exc: BaseException, owner: object) -> None:
    """Log one warning per ``owner`` (a decorated function's retrier) for an xai-sdk UNAVAILABLE.

    Never raises: it is called on the failure path of every decorated call.
    """
    try:
        status = grpc_status(exc)
        if status is None or status[0] != "UNAVAILABLE":
            return
        if not _through_xai_sdk(exc.__traceback__):
            return
        with _lock:
            if owner in _warned:
                return
            _warned.add(owner)
    except Exception:  # an owner that can't be weakly referenced, an odd traceback: stay quiet
        return
    logger.warning(
        "the xai-sdk answered UNAVAILABLE: unless its client was created with "
        "channel_options=[%s], its gRPC channel already retried that call up to 5 times by "
        "itself, and each of xretry's attempts multiplies them (up to 5 x max_attempts server "
        "calls). Let xretry do the retrying: xai_sdk.Client(..., channel_options=[%s]). "
        "Logged once per decorated function.",
        GRPC_NO_RETRIES,
        GRPC_NO_RETRIES,
    )
