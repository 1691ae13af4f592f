"""The pure classifier: what one outcome (a response or an exception) means for the caller.

``classify`` does no I/O, never sleeps and never raises on what a server sends. It is the single
place that knows the xAI status table (``shared/seed/xai-debugging-errors.txt``): every entry point,
sync or async, transport or decorator, asks it and does what the verdict says.

=========  ==============================================================================
verdict    meaning
=========  ==============================================================================
SUCCESS    hand the response over (2xx, 3xx; a 202 anywhere but the deferred endpoint)
RETRY      transient: wait (``delay`` if the server named one, else backoff) and go again
POLL       the deferred completion is not ready yet: ask again on the polling schedule
FATAL      retrying cannot help: hand the response over, or re-raise the exception
=========  ==============================================================================
"""

from __future__ import annotations

import enum
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from ._headers import parse_should_retry, retry_hint
from ._policy import RetryPolicy

__all__ = [
    "Decision",
    "Verdict",
    "classify",
    "classify_exception",
    "classify_response",
    "error_summary",
    "grpc_status",
    "is_deferred_poll",
    "is_quota_exhausted",
    "needs_body",
    "request_of",
    "response_of",
    "status_text",
]

_DEFAULT_POLICY = RetryPolicy()


class Verdict(enum.Enum):
    """What to do with an outcome. See the module docstring for the table."""

    SUCCESS = "success"
    RETRY = "retry"
    POLL = "poll"
    FATAL = "fatal"


@dataclass(frozen=True, slots=True)
class Decision:
    """A verdict, a reason for humans, and the server's requested wait (seconds) if any."""

    verdict: Verdict
    reason: str
    delay: float | None = None


#: The deferred-completion poll endpoint, under any base path (``/v1`` or a proxy's prefix).
_DEFERRED_PATH = re.compile(r"/chat/deferred-completion/[^/]+/?$")

#: A 429 that means "out of money", not "slow down": xAI's "used all available credits or reached
#: its monthly spending limit", and OpenAI's ``insufficient_quota``. Retrying only burns time.
_QUOTA_BODY = re.compile(
    rb"used all available credits|spending limit|insufficient_quota|exceeded your current quota",
    re.IGNORECASE,
)

#: Only this many bytes of a 429 body are searched: the phrase sits near the start.
_QUOTA_SCAN = 4096


def is_deferred_poll(method: str, path: str) -> bool:
    """True for ``GET .../chat/deferred-completion/{request_id}``, the read-once poll endpoint."""
    return method.upper() == "GET" and _DEFERRED_PATH.search(path) is not None


def is_quota_exhausted(status_code: int, body: bytes | None) -> bool:
    """True for a 429 whose body says the team's credits or spending limit are exhausted."""
    return status_code == 429 and body is not None and bool(_QUOTA_BODY.search(body[:_QUOTA_SCAN]))


def needs_body(status_code: int) -> bool:
    """Whether :func:`classify_response` reads the body for this status (only 429 does)."""
    return status_code == 429


def status_text(status: int) -> str:
    """``"429 Too Many Requests"``; just the number for a status without a standard phrase."""
    try:
        return f"{status} {HTTPStatus(status).phrase}"
    except ValueError:
        return str(status)


def classify_response(
    method: str,
    path: str,
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | None = None,
    *,
    policy: RetryPolicy = _DEFAULT_POLICY,
    now: float | None = None,
    replayable: bool = True,
) -> Decision:
    """Classify a response from its parts. ``now`` is wall-clock time for HTTP-date hints.

    ``body`` matters only for a 429 (see :func:`needs_body`); ``replayable=False`` (a one-shot
    streaming request body) turns RETRY into FATAL, since the body cannot be sent again.
    """
    status = status_code
    if status < 400:
        if status == 202 and is_deferred_poll(method, path):
            hint = _hint(headers, policy, now, rate_limited=False)
            return Decision(Verdict.POLL, "202 Accepted: deferred completion not ready yet", hint)
        return Decision(Verdict.SUCCESS, status_text(status))

    text = status_text(status)
    should_retry = parse_should_retry(headers.get("x-should-retry"))
    if is_quota_exhausted(status, body):
        return Decision(Verdict.FATAL, f"{text}: credits or spending limit exhausted")
    if should_retry is False:
        return Decision(Verdict.FATAL, f"{text}: server sent x-should-retry: false")
    if should_retry is None and status not in policy.retry_statuses:
        return Decision(Verdict.FATAL, f"{text}: not retryable")
    if not replayable:
        return Decision(Verdict.FATAL, f"{text}: request body is a one-shot stream, not replayable")
    reason = f"{text}: server sent x-should-retry: true" if should_retry else text
    return Decision(Verdict.RETRY, reason, _hint(headers, policy, now, rate_limited=status == 429))


def _hint(
    headers: Mapping[str, str], policy: RetryPolicy, now: float | None, *, rate_limited: bool
) -> float | None:
    """The server's wait, or ``None``; a zero wait (``retry-after: 0``, a date already past) is
    no hint either: used as is, it would burn every attempt at once (the openai SDK's rule too).
    """
    if not policy.respect_retry_after:
        return None
    hint = retry_hint(headers, now=time.time() if now is None else now, rate_limited=rate_limited)
    return hint if hint is not None and hint > 0 else None


#: Transport failures by class name, for httpx, httpx2 and httpcore alike (they share the names),
#: searched along the exception's MRO so the most specific known class wins.
#: "unsent": the request never fully left, always safe to retry. "sent": the server may have acted.
_FAILURES: dict[str, str] = {
    # Never sent (or not completely): connect, pool, proxy handshake, body upload.
    "ConnectError": "unsent",
    "ConnectTimeout": "unsent",
    "PoolTimeout": "unsent",
    "ProxyError": "unsent",
    "WriteError": "unsent",
    "WriteTimeout": "unsent",
    "ConnectionRefusedError": "unsent",
    # Sent, answer lost: the server may have done (and billed) the work.
    "ReadTimeout": "sent",
    "ReadError": "sent",
    "RemoteProtocolError": "sent",
    "CloseError": "sent",
    "NetworkError": "sent",
    "TimeoutException": "sent",
    "ConnectionError": "sent",
    "TimeoutError": "sent",
    # Our side is wrong: retrying sends the same wrong thing.
    "LocalProtocolError": "fatal",
    "UnsupportedProtocol": "fatal",
    "ProtocolError": "sent",
    # The openai SDK's wrappers, when they carry no httpx cause to judge by.
    "APITimeoutError": "sent",
    "APIConnectionError": "sent",
}

#: gRPC status codes (the xai-sdk's errors), by name: no grpc import needed.
#: DEADLINE_EXCEEDED is "sent": the call may have been processed (and billed) when the deadline
#: struck. A gRPC error names no HTTP method, so it is judged as a billed POST everywhere (the
#: decorator, and ``classify`` without ``method=``): not retried unless POST is idempotent.
_GRPC: dict[str, str] = {
    "UNAVAILABLE": "unsent",  # the server did not take the call; safe for every method
    "RESOURCE_EXHAUSTED": "limited",  # gRPC's 429
    "INTERNAL": "500",  # what an HTTP 500 becomes over gRPC: retried as a 500 is
    "DEADLINE_EXCEEDED": "sent",
    "INVALID_ARGUMENT": "fatal",
    "UNAUTHENTICATED": "fatal",
    "PERMISSION_DENIED": "fatal",
    "NOT_FOUND": "fatal",
    "FAILED_PRECONDITION": "fatal",
    "UNIMPLEMENTED": "fatal",
}


def grpc_status(exc: BaseException) -> tuple[str, str] | None:
    """``(code name, details)`` for a gRPC error (``exc.code()`` returning a StatusCode), or
    ``None`` for anything else. Only the codes the classifier knows count (not OK, say)."""
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    try:
        name = getattr(code(), "name", None)
        details = exc.details() if callable(getattr(exc, "details", None)) else ""  # type: ignore[attr-defined]
    except Exception:
        return None
    if not isinstance(name, str) or name not in _GRPC:
        return None
    return name, details if isinstance(details, str) else ""


#: Longest exception text kept for one attempt in a give-up note.
_SUMMARY = 300

#: An API key echoed in a gRPC error's details (``xai-...``, ``sk-...``): a long run of key
#: characters with at least one digit, so ``xai-sdk-version`` is left alone.
_KEY_LIKE = re.compile(r"\b(?:xai|sk)-(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{16,}")


def error_summary(exc: BaseException) -> str:
    """One line naming an exception for an attempt record: ``Type: first line of str()``.

    A gRPC error's ``str()`` opens with ``<_InactiveRpcError of RPC that terminated with:``,
    which names nothing: its status code and details are used instead. Not redacted: the caller
    masks its secrets.
    """
    grpc = grpc_status(exc)
    if grpc is not None:
        code, details = grpc
        # No request, so no known key to mask: mask anything shaped like an API key instead.
        details = _KEY_LIKE.sub("***", " ".join(details.split()))
        text = f"{code}: {details}" if details else code
    else:
        text = str(exc).partition("\n")[0]
    if len(text) > _SUMMARY:
        text = text[: _SUMMARY - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def classify_exception(
    exc: BaseException,
    *,
    method: str = "GET",
    policy: RetryPolicy = _DEFAULT_POLICY,
    replayable: bool = True,
    _depth: int = 0,
) -> Decision:
    """Classify an exception raised while sending ``method``.

    An exception that carries a response (``httpx.HTTPStatusError``, xretry's own
    :class:`APIStatusError`, an SDK's status error) is classified by that response; a wrapper
    (the openai SDK's ``APIConnectionError``) by the exception it wraps; a gRPC error (the
    xai-sdk's) by its status code: UNAVAILABLE and RESOURCE_EXHAUSTED retry (unless the details say
    the credits are spent), INTERNAL retries as an HTTP 500 does, INVALID_ARGUMENT,
    UNAUTHENTICATED, PERMISSION_DENIED, NOT_FOUND don't. xretry's ``DeferredError`` is FATAL
    whatever it wraps: its job was submitted, and running the call again would submit another.

    Connection failures before the request was sent are retried for every method. Failures after
    it may have reached the server are retried only for ``policy.idempotent_methods`` (POST is not
    among them by default: it is a billed generation). Anything that is not a transport failure is
    FATAL: it is a bug or a caller error, and retrying would repeat it.
    """
    response = response_of(exc)
    if response is not None:  # HTTPStatusError, xretry's APIStatusError, SDK status errors
        request = request_of(response)
        return classify_response(
            method,
            request.url.path if request is not None else "",
            response.status_code,
            response.headers,
            _body_if_read(response),
            policy=policy,
            replayable=replayable,
        )
    name = type(exc).__name__
    kind = "fatal"
    grpc = grpc_status(exc)
    if any(cls.__name__ == "DeferredError" for cls in type(exc).__mro__):
        # xretry's own: a deferred job was submitted (and billed) already. Whatever failed under
        # it (its __cause__), running the call again would submit a second job.
        return Decision(Verdict.FATAL, f"{name}: the deferred job was submitted; not resubmitted")
    if grpc is not None:
        code, details = grpc
        name = f"{name} {code}"
        kind = _GRPC[code]
        if kind == "limited":
            if _QUOTA_BODY.search(details.encode("utf-8", "replace")[:_QUOTA_SCAN]):
                return Decision(Verdict.FATAL, f"{name}: credits or spending limit exhausted")
            kind = "unsent"  # like a 429: the call was not processed
        elif kind == "500":
            if 500 not in policy.retry_statuses:
                return Decision(Verdict.FATAL, f"{name} (HTTP 500): not retryable")
            if not replayable:
                return Decision(
                    Verdict.FATAL, f"{name}: request body is a one-shot stream, not replayable"
                )
            return Decision(Verdict.RETRY, f"{name} (HTTP 500)")
    else:
        for cls in type(exc).__mro__:
            found = _FAILURES.get(cls.__name__)
            if found is not None:
                kind = found
                break
        cause = exc.__cause__
        if (
            isinstance(cause, Exception)
            and _depth < 3
            and (kind == "fatal" or name in ("APIConnectionError", "APITimeoutError"))
        ):
            # A wrapper (the openai SDK's APIConnectionError, say): judge by what it wraps.
            inner = classify_exception(
                cause, method=method, policy=policy, replayable=replayable, _depth=_depth + 1
            )
            if inner.verdict is not Verdict.FATAL or kind == "fatal":
                return Decision(inner.verdict, f"{name} <- {inner.reason}", inner.delay)
    if kind == "fatal":
        return Decision(Verdict.FATAL, f"{name}: not a transient transport failure")
    if not replayable:
        return Decision(Verdict.FATAL, f"{name}: request body is a one-shot stream, not replayable")
    if kind == "unsent":
        return Decision(Verdict.RETRY, f"{name}: request not sent")
    if method.upper() in policy.idempotent_methods:
        return Decision(Verdict.RETRY, f"{name}: {method} is idempotent")
    return Decision(
        Verdict.FATAL,
        f"{name}: {method} may have reached the server; not resent "
        "(add it to RetryPolicy.idempotent_methods to allow)",
    )


def classify(
    outcome: Any,
    *,
    policy: RetryPolicy | None = None,
    method: str | None = None,
    now: float | None = None,
) -> Decision:
    """Classify a response (httpx or httpx2) or an exception.

    For a response, the method and path come from ``response.request`` and the body is used only if
    it was already read; ``method`` overrides or supplies the method (needed for exceptions that
    carry no request).

    Example::

        decision = xretry.classify(response)
        if decision.verdict is xretry.Verdict.RETRY:
            ...
    """
    policy = _DEFAULT_POLICY if policy is None else policy
    if isinstance(outcome, BaseException):
        request = request_of(outcome)
        if method:
            verb = method
        elif request is not None:
            verb = request.method
        else:  # a gRPC call names no method: a billed generation, as the decorator judges it
            verb = "POST" if grpc_status(outcome) is not None else "GET"
        return classify_exception(outcome, method=verb, policy=policy)
    request = request_of(outcome)
    verb = method or (request.method if request is not None else "GET")
    path = request.url.path if request is not None else ""
    return classify_response(
        verb,
        path,
        outcome.status_code,
        outcome.headers,
        _body_if_read(outcome),
        policy=policy,
        now=now,
    )


def response_of(exc: BaseException) -> Any:
    """The response an exception carries (``exc.response`` with an int ``status_code`` and
    headers), if any. A foreign exception's odd ``response`` (a property that raises, no headers)
    is no response: the exception is then judged by its type, never replaced by an AttributeError.
    """
    try:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        headers = getattr(response, "headers", None)
    except Exception:
        return None
    if isinstance(status, int) and not isinstance(status, bool) and headers is not None:
        return response
    return None


def request_of(outcome: Any) -> Any:
    """The request behind a response or an exception (``.request``, else ``.response.request``),
    without tripping httpx's "no request set" RuntimeError; ``None`` when there is none."""
    try:
        sources: tuple[Any, ...] = (outcome, getattr(outcome, "response", None))
    except Exception:  # a foreign exception whose ``response`` property raises
        sources = (outcome,)
    for source in sources:
        try:
            request = source.request
        except (AttributeError, RuntimeError):
            continue
        if request is not None and hasattr(request, "method") and hasattr(request, "url"):
            return request
    return None


def _body_if_read(response: Any) -> bytes | None:
    try:
        content = response.content
    except Exception:  # httpx.ResponseNotRead, or its httpx2 twin
        return None
    return content if isinstance(content, bytes) else None
