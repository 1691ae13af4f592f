"""xretry: resilient retry middleware for the xAI API (and any OpenAI-style HTTP API).

One policy, one pure classifier, tenacity for the waiting; three ways in (the transports, the
``retry`` decorator and the deferred-completion pollers), one retry loop behind them::

    import httpx, xretry

    client = httpx.Client(base_url="https://api.x.ai/v1", transport=xretry.RetryTransport())
    response = client.post("/chat/completions", json={...})   # 429s and 5xx retried
    xretry.raise_for_status(response)                          # typed error with a hint
"""

from . import testing
from ._budget import RetryBudget
from ._classify import Decision, Verdict, classify
from ._core import AttemptRecord, RetryHistory
from ._decorator import retry
from ._deferred import AsyncDeferredCompletions, DeferredCompletions, DeferredOutcome
from ._errors import (
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    DeferredError,
    DeferredIdError,
    DeferredNotFoundError,
    DeferredPollError,
    DeferredResultError,
    DeferredStoreError,
    DeferredTimeoutError,
    GateTimeoutError,
    InvalidAPIKeyError,
    MethodNotAllowedError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExhaustedError,
    RateLimitError,
    RetryBudgetExhaustedError,
    ServerError,
    UnprocessableEntityError,
    UnsupportedMediaTypeError,
    XRetryError,
    araise_for_status,
    raise_for_status,
)
from ._gate import Gate
from ._hooks import RetryEvent, RetryHook
from ._policy import PollPolicy, RetryPolicy
from ._transport import AsyncRetryTransport, RetryTransport

__version__ = "0.1.0.dev0"


__all__ = [
    "APIStatusError",
    "AsyncDeferredCompletions",
    "AsyncRetryTransport",
    "AttemptRecord",
    "AuthenticationError",
    "BadRequestError",
    "Decision",
    "DeferredCompletions",
    "DeferredError",
    "DeferredIdError",
    "DeferredNotFoundError",
    "DeferredOutcome",
    "DeferredPollError",
    "DeferredResultError",
    "DeferredStoreError",
    "DeferredTimeoutError",
    "Gate",
    "GateTimeoutError",
    "InvalidAPIKeyError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PermissionDeniedError",
    "PollPolicy",
    "QuotaExhaustedError",
    "RateLimitError",
    "RetryBudget",
    "RetryBudgetExhaustedError",
    "RetryEvent",
    "RetryHistory",
    "RetryHook",
    "RetryPolicy",
    "RetryTransport",
    "ServerError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "Verdict",
    "XRetryError",
    "__version__",
    "araise_for_status",
    "classify",
    "raise_for_status",
    "retry",
    "testing",
]

# Tracebacks and reprs name the public path (xretry.AuthenticationError), not the private module.
for _name in __all__:
    _public = globals()[_name]
    if isinstance(_public, type) and issubclass(_public, XRetryError):
        _public.__module__ = "xretry"
del _name, _public


#: Names that moved: the extension points live in :mod:`xretry.backends` (0.1.0); ``OUTER_LOOP``
#: was plumbing between xretry's own loops.
_MOVED = {
    "DeferredRecord": "xretry.backends",
    "DeferredStore": "xretry.backends",
    "GateBackend": "xretry.backends",
    "GateSettings": "xretry.backends",
    "MemoryGateBackend": "xretry.backends",
    "SQLiteDeferredStore": "xretry.backends",
    "OUTER_LOOP": "xretry._outer",
}


def __getattr__(name: str) -> object:
    """Deprecated aliases for the names that moved, with a warning that says where to."""
    where = _MOVED.get(name)
    if where is None:
        raise AttributeError(f"module 'xretry' has no attribute {name!r}")
    import importlib
    import warnings

    if where == "xretry._outer":
        message = "xretry.OUTER_LOOP is internal and will be removed"
    else:
        message = f"xretry.{name} moved to {where}.{name}; import it from there"
    warnings.warn(message, DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(where), name)
