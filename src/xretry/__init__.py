"""xretry: resilient retry middleware for the xAI API (and any OpenAI-style HTTP API).

One policy, one pure classifier, tenacity for the waiting; three ways in (the transport is here
today, the decorator and the deferred-completion poller build on the same core)::

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
from ._gate import Gate, GateBackend, GateSettings, MemoryGateBackend
from ._hooks import RetryEvent, RetryHook
from ._outer import OUTER_LOOP
from ._policy import PollPolicy, RetryPolicy
from ._store import DeferredRecord, DeferredStore, SQLiteDeferredStore
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
    "DeferredRecord",
    "DeferredResultError",
    "DeferredStore",
    "DeferredStoreError",
    "DeferredTimeoutError",
    "Gate",
    "GateBackend",
    "GateSettings",
    "GateTimeoutError",
    "InvalidAPIKeyError",
    "MemoryGateBackend",
    "MethodNotAllowedError",
    "NotFoundError",
    "OUTER_LOOP",
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
    "SQLiteDeferredStore",
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
