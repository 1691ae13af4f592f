"""Typed errors that say what happened and what to do about it.

::

    XRetryError
     └── APIStatusError                  status_code, code, message, hint, response
          ├── BadRequestError             400 (bad argument, or a wrong API key)
          │    └── InvalidAPIKeyError      400 whose body says the key is wrong
          ├── AuthenticationError         401
          ├── PermissionDeniedError       403
          ├── NotFoundError               404
          ├── MethodNotAllowedError       405
          ├── UnsupportedMediaTypeError   415
          ├── UnprocessableEntityError    422
          ├── RateLimitError              429 (rate limited; retryable)
          ├── QuotaExhaustedError         429 for spent credits (never retried)
          └── ServerError                 5xx
     RetryBudgetExhaustedError           not sent: the server is failing (fail-fast budget)
     GateTimeoutError                    not sent: the gate's wait is longer than the deadline
     DeferredError                       request_id (never retried by @xretry.retry)
      ├── DeferredTimeoutError            not delivered when the poll timeout ran out
      ├── DeferredNotFoundError           unknown, expired (24 h) or already fetched id
      ├── DeferredPollError               a poll failed for good; the job was not resubmitted
      ├── DeferredResultError             the 200 arrived but its body is not a completion
      ├── DeferredStoreError (OSError)    the store could not record an id or a result
      └── DeferredIdError (ValueError)    an id that cannot be put into the poll URL safely

Each ``hint`` is the solution column of xAI's status table, fitted to the host that answered: xAI's
console, key variable and status page for api.x.ai and unknown hosts, Anthropic's or OpenAI's own
for theirs (the same typed errors serve the anthropic and openai SDKs over an xretry transport).
Messages, reprs and notes are built from the response with the request's API key masked out,
whatever the server echoed back.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from ._classify import is_quota_exhausted
from ._classify import status_text as _status_text
from ._redact import display_url, redact, request_secrets

__all__ = [
    "APIStatusError",
    "AuthenticationError",
    "BadRequestError",
    "DeferredError",
    "DeferredIdError",
    "DeferredNotFoundError",
    "DeferredPollError",
    "DeferredResultError",
    "DeferredStoreError",
    "DeferredTimeoutError",
    "GateTimeoutError",
    "InvalidAPIKeyError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExhaustedError",
    "RateLimitError",
    "RetryBudgetExhaustedError",
    "ServerError",
    "UnprocessableEntityError",
    "UnsupportedMediaTypeError",
    "XRetryError",
    "araise_for_status",
    "error_for_response",
    "raise_for_status",
]

STATUS_PAGE = "https://status.x.ai"


@dataclass(frozen=True, slots=True)
class _Provider:
    """Where a user of one API fixes what a hint points at: console, key variable, status page."""

    console_name: str
    console: str
    key: str
    auth: str
    status: str


#: The default for api.x.ai and any host not known to be someone else's (a proxy, the emulator).
_XAI = _Provider(
    "xAI Console",
    "https://console.x.ai",
    "XAI_API_KEY",
    "Authorization: Bearer <XAI_API_KEY>",
    f"{STATUS_PAGE} (RSS: {STATUS_PAGE}/feed.xml)",
)

#: Other providers users reach through the same SDKs and transports, by host suffix.
_PROVIDERS: tuple[tuple[str, _Provider], ...] = (
    (
        "anthropic.com",
        _Provider(
            "the Anthropic Console",
            "https://console.anthropic.com",
            "ANTHROPIC_API_KEY",
            "x-api-key: <ANTHROPIC_API_KEY>",
            "https://status.anthropic.com",
        ),
    ),
    (
        "openai.com",
        _Provider(
            "the OpenAI platform",
            "https://platform.openai.com",
            "OPENAI_API_KEY",
            "Authorization: Bearer <OPENAI_API_KEY>",
            "https://status.openai.com",
        ),
    ),
)


def _provider(host: str | None) -> _Provider:
    host = (host or "").lower().rstrip(".")
    for suffix, provider in _PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return provider
    return _XAI


#: Longest message kept from a body: enough for any real error text, bounded for HTML pages.
_MAX_MESSAGE = 500


class XRetryError(Exception):
    """Base class of every error xretry raises."""


class APIStatusError(XRetryError):
    """A non-success response, with the body's ``code`` and ``message`` and a ``hint`` for the fix.

    ``response`` is the httpx (or httpx2) response; ``request_id`` is the server's ``x-request-id``
    when it sent one (quote it to support).
    """

    status_code: int
    #: Solution column of xAI's status table for this status.
    default_hint: str = "Check the request against the API reference."
    #: The hint with the provider's console, key variable and status page left as ``{fields}``
    #: of ``_Provider``, for the hints that name them; ``default_hint`` is its xAI rendering.
    _hint_template: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_hint_template" in cls.__dict__ and cls._hint_template is not None:
            cls.default_hint = cls.hint_for(None)

    @classmethod
    def hint_for(cls, host: str | None) -> str:
        """This error's hint for a response from ``host``: xAI's for api.x.ai and unknown hosts,
        Anthropic's or OpenAI's console, key variable and status page for their hosts."""
        if cls._hint_template is None:
            return cls.default_hint
        return cls._hint_template.format(**asdict(_provider(host)))

    def __init__(
        self,
        *,
        status_code: int,
        message: str,
        code: str | None = None,
        hint: str | None = None,
        response: Any = None,
        method: str | None = None,
        url: str | None = None,
        attempts: int | None = None,
        stop_reason: str | None = None,
    ) -> None:
        self.status_code = status_code
        self.message = message
        self.code = code
        self.hint = hint if hint is not None else self.default_hint
        self.response = response
        self.method = method
        self.url = url
        self.attempts = attempts
        #: Why xretry stopped retrying (``"max_attempts=5 reached"``), when it gave up.
        self.stop_reason = stop_reason
        self.request_id = _header(response, "x-request-id")
        super().__init__(self._render())

    def _render(self) -> str:
        head = _status_text(self.status_code)
        if self.method and self.url:
            head += f" from {self.method} {self.url}"
        if self.attempts and self.attempts > 1:
            head += f" after {self.attempts} attempts"
        if self.stop_reason:
            head += f" (gave up: {self.stop_reason})"
        text = f"{head}: {self.message}"
        if self.code:
            text += f" (code: {self.code})"
        return f"{text}\nHint: {self.hint}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, "
            f"message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # Everything but the response (not picklable, and it holds the request's headers).
        fields = {
            "status_code": self.status_code,
            "message": self.message,
            "code": self.code,
            "hint": self.hint,
            "method": self.method,
            "url": self.url,
            "attempts": self.attempts,
            "stop_reason": self.stop_reason,
        }
        return (_rebuild, (type(self), fields, self.request_id))


def _rebuild(
    cls: type[APIStatusError], fields: dict[str, Any], request_id: str | None
) -> APIStatusError:
    error = cls(**fields)
    error.request_id = request_id
    return error


class RetryBudgetExhaustedError(XRetryError):
    """A call refused before sending: a fail-fast retry budget says the server is failing.

    Nothing was sent, so nothing was billed; the call may be made again once the server recovers
    (the budget lets a probe through every ``probe_interval`` seconds and refills on its success).
    """

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        self.hint = (
            "The server has been failing (5xx or connection errors); the request was not sent. "
            "Retry later, or check https://status.x.ai. To always send, use a RetryBudget "
            "without fail_fast."
        )
        super().__init__(f"{url}: not sent, {reason}. {self.hint}")


class GateTimeoutError(XRetryError):
    """A call not sent: its gate would hold it longer than its deadline (or poll timeout) allows.

    The gate holds requests after a 429 (the server's cooldown) and paces them under the rate
    limit; when that wait is longer than the call may take, failing now beats failing later.
    Nothing was sent, so nothing was billed.
    """

    def __init__(self, url: str, *, wait: float, limit: float) -> None:
        self.url = url
        self.wait = wait
        self.limit = limit
        self.hint = (
            "The rate limit is saturated: retry later, raise the deadline, or spread the calls "
            "out. See https://console.x.ai for your limits."
        )
        super().__init__(
            f"{url}: not sent, the rate-limit gate holds requests for {wait:.3g}s, longer than "
            f"the call's deadline of {limit:g}s. {self.hint}"
        )


class DeferredError(XRetryError):
    """A deferred completion that could not be delivered; ``request_id`` says which."""

    def __init__(self, message: str, *, request_id: str, hint: str) -> None:
        self.request_id = request_id
        self.hint = hint
        super().__init__(f"{message}\nHint: {hint}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_deferred, (type(self), self.args), self.__dict__)


def _rebuild_deferred(cls: type[DeferredError], args: tuple[Any, ...]) -> DeferredError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    return error


class DeferredTimeoutError(DeferredError):
    """Not delivered when the poll timeout ran out: still pending, or the server kept failing (429s,
    5xx, connection errors: ``last`` says what came last, and ``__cause__`` is that error). The
    result is not lost: wait again later."""

    def __init__(
        self, request_id: str, *, waited: float, polls: int, last: str | None = None
    ) -> None:
        self.waited = waited
        self.polls = polls
        self.last = last
        why = "" if last is None else f"; the last poll got {last}"
        super().__init__(
            f"deferred completion {request_id} not ready after {waited:.1f}s and {polls} polls"
            f"{why}",
            request_id=request_id,
            hint=(
                "The job is still running: call wait() again with this request_id (within 24 "
                "hours of submission), or raise PollPolicy.timeout."
            ),
        )


class DeferredNotFoundError(DeferredError):
    """The server does not know the id: unknown, expired after 24 hours, or already fetched.

    ``status_code`` is what the server answered (404, or 400 for a malformed id).
    """

    def __init__(self, request_id: str, *, status_code: int, message: str) -> None:
        self.status_code = status_code
        super().__init__(
            f"deferred completion {request_id} not found ({status_code}): {message}",
            request_id=request_id,
            hint=(
                "A result can be fetched exactly once, within 24 hours. If this id was fetched "
                "before, look for it in your DeferredStore; otherwise it expired or never existed."
            ),
        )


class DeferredPollError(DeferredError):
    """Polling a submitted job failed for good (a gRPC error the retries could not get past, or a
    FAILED / EXPIRED job). The job was submitted once; it is never submitted again for you.

    ``__cause__`` is the last error; the classifier judges this error FATAL whatever its cause, so
    an outer ``@xretry.retry`` does not run the submission again either.
    """

    def __init__(self, request_id: str, *, reason: str, hint: str | None = None) -> None:
        self.reason = reason
        super().__init__(
            f"polling deferred completion {request_id} failed: {reason}",
            request_id=request_id,
            hint=hint
            or (
                "The job was submitted (and is billed) once. Poll it again with "
                "xretry.xai_sdk.defer(chat, request_id=...) within 24 hours of submission; "
                "calling defer() without request_id would submit a second job."
            ),
        )


class DeferredResultError(DeferredError):
    """The completion was fetched (and paid for) but its body could not be read as JSON.

    The raw body is kept in ``body`` (and in the store, when one is used): the server will not
    send it again.
    """

    def __init__(self, request_id: str, *, body: bytes, reason: str) -> None:
        self.body = body
        super().__init__(
            f"deferred completion {request_id} was fetched but its body is unusable: {reason}",
            request_id=request_id,
            hint="The raw body is on this error's .body attribute; the server won't resend it.",
        )


class DeferredStoreError(DeferredError, OSError):
    """The store could not record what the server handed over: a submitted job's id, or a fetched
    result (a lock held past the busy timeout, a full disk, an unreachable Redis).

    Nothing is lost with it: ``request_id`` is the job's id, ``completion`` the fetched result
    (``None`` for a submission), ``body`` the raw body of a fetched 200 that was not a completion
    (else ``None``), and ``__cause__`` the store's error. The poller keeps a fetched result in
    memory until the store takes it: a later ``wait()`` for the id tries the store again and
    hands it over then. An ``OSError`` too, as the stores' own errors are.
    """

    def __init__(
        self,
        request_id: str,
        *,
        reason: str,
        completion: dict[str, Any] | None = None,
        body: bytes | None = None,
    ) -> None:
        self.completion = completion
        self.body = body
        self.reason = reason
        fetched = completion is not None or body is not None
        what = "fetched (the result is on .completion)" if completion is not None else ""
        if body is not None:
            what = "fetched but unusable (the raw body is on .body)"
        if not fetched:
            what = "submitted (and is billed)"
        super().__init__(
            f"deferred completion {request_id} was {what}, but the store could not record it: "
            f"{reason}",
            request_id=request_id,
            hint=(
                "Free the store (a lock held by another process, a full disk, Redis down), then "
                "wait() for this request_id again: this poller keeps a fetched result in memory "
                "and records it then."
                if fetched
                else "Record this request_id yourself, or wait() for it once the store is back "
                "(within 24 hours): the job is running."
            ),
        )


class DeferredIdError(DeferredError, ValueError):
    """A request id that cannot be put into the poll URL safely (empty, ``.`` or ``..`` path
    segments, control characters, over 256 characters). From ``submit()`` it means the server
    accepted the job and returned such an id: the id is carried here (and logged, and recorded as
    failed in the store), never dropped. A ``ValueError`` too, as any invalid argument is."""

    def __init__(self, request_id: str, *, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"request_id {request_id!r} cannot be polled: {reason}",
            request_id=request_id,
            hint=(
                "Pass an id exactly as submit() returned it. If the server returned this id, the "
                "job was accepted (and is billed): poll it by other means with this id."
            ),
        )


class BadRequestError(APIStatusError):
    """400: an invalid argument in the body or URL (or, on xAI, a wrong API key)."""

    status_code = 400
    default_hint = "Check your request body or request URL."


class InvalidAPIKeyError(BadRequestError):
    """400 whose body says the API key is wrong: xAI answers a bad key with 400, not 401."""

    _hint_template = (
        "The API key was rejected: check the key in {key} (no quotes or whitespace); "
        "you can create a new key on {console_name} ({console})."
    )


class AuthenticationError(APIStatusError):
    """401: no Authorization header, or a malformed token."""

    status_code = 401
    _hint_template = (
        "Supply an '{auth}' header. You can get a new API key on {console_name} ({console})."
    )


class PermissionDeniedError(APIStatusError):
    """403: the key or team lacks permission for this action, or is blocked."""

    status_code = 403
    default_hint = "Ask your team admin for permission."


class NotFoundError(APIStatusError):
    """404: an unknown model in the body, or a misspelled endpoint URL."""

    status_code = 404
    default_hint = "Check your request body and endpoint URL against the API Reference."


class MethodNotAllowedError(APIStatusError):
    """405: e.g. a POST to an endpoint that only supports GET."""

    status_code = 405
    default_hint = "Check your request method against the API Reference."


class UnsupportedMediaTypeError(APIStatusError):
    """415: an empty POST body, or no ``Content-Type: application/json``."""

    status_code = 415
    default_hint = "Add a valid request body and set the 'Content-Type: application/json' header."


class UnprocessableEntityError(APIStatusError):
    """422: a field in the POST body has an invalid format."""

    status_code = 422
    default_hint = "Check your request body against the API Reference."


class RateLimitError(APIStatusError):
    """429: the rate limit was reached (retries ran out, or the wait asked for was too long)."""

    status_code = 429
    _hint_template = (
        "Reduce your request rate or increase your rate limit on {console_name} ({console})."
    )


class QuotaExhaustedError(APIStatusError):
    """429 saying the team's credits or monthly spending limit are used up. Never retried."""

    status_code = 429
    _hint_template = (
        "Your team is out of credits or at its monthly spending limit: add credits or raise the "
        "limit on {console_name} ({console}). Retrying will not help."
    )


class ServerError(APIStatusError):
    """5xx: a failure on the server's side."""

    status_code = 500
    _hint_template = (
        "The API is having trouble; check {status} for an ongoing disruption, and retry later."
    )


_BY_STATUS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    415: UnsupportedMediaTypeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def _header(response: Any, name: str) -> str | None:
    try:
        value = response.headers.get(name)
    except AttributeError:
        return None
    return value if isinstance(value, str) else None


def _request_of(response: Any) -> Any:
    try:
        return response.request
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError when no request is set
        return None


def _parse_body(body: bytes) -> tuple[str | None, str | None]:
    """``(code, message)`` from the error body shapes seen in the wild; never raises."""
    text = body.decode("utf-8", errors="replace").strip()
    if not text:
        return None, None
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested beyond the stack
        data = None
    if isinstance(data, dict):
        error = data.get("error")
        code = data.get("code")
        message: object = None
        if isinstance(error, str):
            message = error  # xAI: {"code": "...", "error": "..."}
        elif isinstance(error, dict):  # OpenAI: {"error": {"message": ..., "code": ...}}
            message = error.get("message")
            code = code if code is not None else (error.get("code") or error.get("type"))
        for key in ("message", "detail", "msg"):
            if message is None and data.get(key) is not None:
                message = data[key]
        if message is not None:
            return (None if code is None else str(code)), str(message)
        return (None if code is None else str(code)), text
    lowered = text[:200].lower()
    if lowered.startswith(("<!doctype html", "<html")) or "<body" in lowered:
        return None, "the server answered with an HTML page (a proxy or gateway error?)"
    if data is None and text[:1] in "{[":
        return None, f"unparseable JSON body: {text}"
    return None, text


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    text = " ".join(text[: limit * 4].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: Longest error body read to build a typed error (the rest is not waited for): a proxy's page or
#: a body that never ends must not hold ``raise_for_status`` forever (as for a 429's body).
_MAX_ERROR_BODY = 64 * 1024


def _body_of(response: Any) -> bytes:
    """The body if it is (or can synchronously be) read, at most about :data:`_MAX_ERROR_BODY`
    bytes of one not read yet; ``b""`` when it cannot be read."""
    try:
        content = response.content
    except Exception:  # not read yet
        _read_at_most(response, _MAX_ERROR_BODY, is_async=False)
        try:
            content = response.read()
        except Exception:  # async stream in a sync call, closed, or the read failed
            return b""
    return content if isinstance(content, bytes) else b""


def _read_at_most(response: Any, limit: int, *, is_async: bool) -> None:
    """Make the next full read of an unread ``response`` stop after about ``limit`` bytes.

    The response's stream (public in httpx and httpx2) is wrapped, so ``read()`` / ``aread()``
    keep the prefix as the response's content (still readable by the caller) and close the
    connection behind it. A body that ends sooner is read whole, as before.
    """
    stream = getattr(response, "stream", None)
    library = sys.modules.get(type(response).__module__.partition(".")[0])
    base = getattr(library, "AsyncByteStream" if is_async else "SyncByteStream", None)
    if not isinstance(base, type) or not isinstance(stream, base):
        return
    try:
        response.stream = _prefix_class(base, is_async)(stream, limit)
    except Exception:  # a response object that will not take it: read as it is
        return


@functools.cache
def _prefix_class(base: type, is_async: bool) -> type:
    """A byte stream of ``base`` (a library's sync or async stream class) giving the first
    ``limit`` bytes of another, then closing it."""

    class Prefix(base):  # type: ignore[misc]
        def __init__(self, inner: Any, limit: int) -> None:
            self._inner = inner
            self._limit = limit

        def __iter__(self) -> Iterator[bytes]:
            taken = 0
            chunks = iter(self._inner)
            try:
                for chunk in chunks:
                    yield chunk
                    taken += len(chunk)
                    if taken >= self._limit:
                        break
            finally:
                close = getattr(chunks, "close", None)
                if callable(close):
                    close()

        async def __aiter__(self) -> AsyncIterator[bytes]:
            # Not a `break` out of the inner stream: its async generators (httpx's, httpcore's)
            # would be left suspended for the collector, which trio reports. The connection is
            # closed instead, and the next read ends the iteration all the way down.
            taken, closed = 0, False
            chunks = self._inner.__aiter__()
            try:
                async for chunk in chunks:
                    if closed:
                        taken += len(chunk)  # what was buffered: not kept
                        if taken >= 2 * self._limit:
                            break  # a stream that goes on after closing: let it be
                        continue
                    yield chunk
                    taken += len(chunk)
                    if taken >= self._limit:
                        closed = True
                        await self._inner.aclose()
            except Exception:
                if not closed:
                    raise
            finally:
                aclose = getattr(chunks, "aclose", None)
                if callable(aclose):
                    await aclose()  # a no-op for a generator that has ended

        def close(self) -> None:
            self._inner.close()

        async def aclose(self) -> None:
            await self._inner.aclose()

    Prefix.__name__ = Prefix.__qualname__ = f"Prefix{'Async' if is_async else 'Sync'}Stream"
    return Prefix


def error_for_response(response: Any, *, body: bytes | None = None) -> APIStatusError | None:
    """The typed error for a non-success ``response`` (httpx or httpx2), or ``None`` for < 400.

    The body is read if it wasn't; pass ``body`` when you already hold it (async code).
    """
    status = int(response.status_code)
    if status < 400:
        return None
    raw = _body_of(response) if body is None else body
    code, message = _parse_body(raw)
    request = _request_of(response)
    secrets = request_secrets(request) if request is not None else []
    # Mask before shortening: a cut through a key would leave a prefix no mask matches.
    message = _shorten(redact(message, secrets)) if message else _empty(response, secrets)
    code = _shorten(redact(code, secrets), 100) if code else None
    method = request.method if request is not None else None
    url = display_url(request) if request is not None else None
    history = _extensions(response).get("xretry")
    attempts = getattr(history, "attempt_count", None)
    stop_reason = getattr(history, "stop_reason", None)
    cls: type[APIStatusError]
    if is_quota_exhausted(status, raw):
        cls = QuotaExhaustedError
    elif status == 400 and "api key" in message.lower():
        cls = InvalidAPIKeyError
    elif status >= 500:
        cls = ServerError
    else:
        cls = _BY_STATUS.get(status, APIStatusError)
    host = getattr(getattr(request, "url", None), "host", None)
    return cls(
        status_code=status,
        message=message,
        code=code,
        hint=cls.hint_for(host if isinstance(host, str) else None),
        response=response,
        method=method,
        url=url,
        attempts=attempts if isinstance(attempts, int) else None,
        stop_reason=stop_reason if isinstance(stop_reason, str) else None,
    )


def _empty(response: Any, secrets: list[str]) -> str:
    """An empty body is described by its reason phrase, which a proxy may have filled in."""
    reason = getattr(response, "reason_phrase", "") or ""
    reason = _shorten(redact(str(reason), secrets))
    return f"empty body{f' ({reason})' if reason else ''}"


def _extensions(response: Any) -> dict[str, Any]:
    extensions = getattr(response, "extensions", None)
    return extensions if isinstance(extensions, dict) else {}


def raise_for_status(response: Any) -> Any:
    """Raise the typed error for a non-success response; return the response otherwise.

    Works as an httpx event hook: ``httpx.Client(event_hooks={"response": [raise_for_status]})``.
    For ``httpx.AsyncClient`` hooks use :func:`araise_for_status`, which reads the body first.
    """
    error = error_for_response(response)
    if error is not None:
        raise error
    return response


async def araise_for_status(response: Any) -> Any:
    """Async twin of :func:`raise_for_status`: reads the body with ``aread()`` before mapping."""
    if int(response.status_code) >= 400:
        try:
            response.content  # noqa: B018 - raises when the body was not read yet
        except Exception:
            _read_at_most(response, _MAX_ERROR_BODY, is_async=True)
        try:
            body = await response.aread()
        except Exception:
            body = b""
        error = error_for_response(response, body=body if isinstance(body, bytes) else b"")
        if error is not None:
            raise error
    return response
