"""Deferred chat completions: submit, poll until ready, deliver every paid-for result exactly once.

``DeferredCompletions(client)`` and ``AsyncDeferredCompletions(client)`` take an httpx (or httpx2)
client whose ``base_url`` is the API root with ``/v1``. They own the retry and poll loop of their
requests: a request they send is marked :data:`OUTER_LOOP`, so an xretry transport inside the client
sends it once and steps aside, and attempts never multiply, whatever the client is built with.

The loop is the transports' own driver (one core), run over the client's ``send``. With a
:class:`DeferredStore`, ids and results are recorded before anyone sees them (see ``_store.py``).

A poll's 200 is read, and recorded, the moment it arrives, inside the poller's own inner
transport and shielded from cancellation: the server hands a result over once. Until it is in the
store (or, without one, handed to the caller), the poller keeps it in memory, so a ``wait()``
that was cancelled, or whose store write failed, leaves it for the next ``wait()`` of that id.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._batch import Batch, DeferredOutcome
from ._classify import Verdict, classify_exception, error_summary, request_of
from ._core import RetryHistory, describe, pause
from ._drivers import anyio_sleep, arun, run
from ._errors import (
    DeferredError,
    DeferredIdError,
    DeferredNotFoundError,
    DeferredPollError,
    DeferredResultError,
    DeferredStoreError,
    DeferredTimeoutError,
    GateTimeoutError,
    InvalidAPIKeyError,
    XRetryError,
    error_for_response,
)
from ._gate import Gate, own_gate
from ._hooks import RetryHook
from ._outer import OUTER_LOOP
from ._policy import PollPolicy, RetryPolicy, check_policy
from ._redact import display_url, redact, request_secrets
from ._store import DeferredStore, SQLiteDeferredStore
from ._transport import AsyncDriver, SyncDriver, TransportOptions

__all__ = ["AsyncDeferredCompletions", "DeferredCompletions", "DeferredOutcome"]

_SUBMIT = "chat/completions"
_POLL = "chat/deferred-completion/{}"
#: A private request extension: the request id a poll asks for (the inner transport records what
#: arrives for it).
_ARRIVING = "xretry.deferred_id"
#: xAI's ids are UUIDs; anything up to this long that fits one path segment is polled.
_MAX_ID = 256

logger = logging.getLogger("xretry")


def _id_problem(request_id: str) -> str | None:
    """Why ``request_id`` cannot be put into the poll URL safely, or ``None``.

    Any id is percent-encoded into its path segment (``AbC+dEf==`` is sent as
    ``AbC%2BdEf%3D%3D``), so ``?``, ``#`` and the like cannot change the URL. What is refused
    cannot be made safe that way: a ``/`` or ``\\`` (servers and proxies decode ``%2F``), a ``.``
    or ``..`` segment, control characters, an empty or over-long id.
    """
    if not request_id:
        return "it is empty"
    if len(request_id) > _MAX_ID:
        return f"it is longer than {_MAX_ID} characters"
    if request_id in (".", ".."):
        return "it is a '.' or '..' path segment"
    if "/" in request_id or "\\" in request_id:
        return "it contains a '/' or '\\', which would not stay one path segment"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in request_id):
        return "it contains control characters"
    return None


def _check_id(request_id: object) -> str:
    """The id's path segment, percent-encoded; ``DeferredIdError`` (a ``ValueError``) if unsafe."""
    if not isinstance(request_id, str):
        raise ValueError(
            f"request_id must be a str as returned by submit(), got {type(request_id).__name__}: "
            f"{request_id!r:.100}"
        )
    problem = _id_problem(request_id)
    if problem is not None:
        raise DeferredIdError(request_id, reason=problem)
    return quote(request_id, safe=":@")


def _xai_shaped(body: bytes) -> bool:
    """An error body as xAI's API writes it: ``{"code": "...", "error": "..."}``. A gateway's HTML
    page or another server's JSON is not the API's word on a job."""
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return (
        isinstance(parsed, dict)
        and isinstance(parsed.get("code"), str)
        and isinstance(parsed.get("error"), str)
    )


@dataclass(slots=True)
class _Arrival:
    """A poll's 200, kept by the poller until the store has it (or, without one, until it is
    handed over): the server will not send it again."""

    #: The completion, or ``None`` when the body is not one (then ``reason`` says why).
    completion: dict[str, Any] | None
    body: bytes
    reason: str
    secrets: list[str]
    stored: bool = False
    error: Exception | None = None


def _parsed(body: bytes) -> tuple[dict[str, Any] | None, str]:
    try:
        completion = json.loads(body)
    except (ValueError, RecursionError) as exc:
        return None, str(exc)
    if not isinstance(completion, dict):
        return None, "not a JSON object"
    return completion, ""


def _masked_bytes(body: bytes, secrets: list[str]) -> bytes:
    """``body`` with the request's credentials masked: what the store may keep of it."""
    for secret in secrets:
        raw = secret.encode("utf-8", "replace")
        if raw in body:
            body = body.replace(raw, b"***")
    return body


class _ClientTransport:
    """An httpx or httpx2 client used as the inner transport of a driver.

    A poll (a request carrying :data:`_ARRIVING`) is sent streaming: a 200's body is then read,
    and handed to ``arrived`` (which records it), shielded from cancellation from the moment its
    headers are in; nothing else is shielded. Every response it returns is read."""

    def __init__(self, client: Any, arrived: Callable[[str, Any], None]) -> None:
        self._client = client
        self._arrived = arrived

    def handle_request(self, request: Any) -> Any:
        request_id = request.extensions.get(_ARRIVING)
        if request_id is None:
            return self._client.send(request)
        response = self._client.send(request, stream=True)
        try:
            response.read()
        except BaseException:
            response.close()
            raise
        if response.status_code == 200:
            self._arrived(request_id, response)
        return response

    async def handle_async_request(self, request: Any) -> Any:
        request_id = request.extensions.get(_ARRIVING)
        if request_id is None:
            return await self._client.send(request)
        response = await self._client.send(request, stream=True)
        # The server has handed a 200 over (once): from here to the store nothing may drop it.
        shielded = response.status_code == 200
        with anyio.CancelScope(shield=shielded):
            try:
                await response.aread()
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await response.aclose()
                raise
            if shielded:
                self._arrived(request_id, response)
        return response


def _buffered_stream(client: Any) -> type:
    """The client library's buffered body class (``httpx.ByteStream`` or httpx2's twin)."""
    module = __import__(type(client).__module__.split(".")[0])
    stream = getattr(module, "ByteStream", None)
    if not isinstance(stream, type):
        raise TypeError(
            f"expected an httpx or httpx2 client, got {type(client).__module__}."
            f"{type(client).__name__}"
        )
    return stream


def _patient(policy: RetryPolicy | None) -> RetryPolicy:
    """The policy for polling a paid-for job: a 429 or 5xx while polling does not end it.

    Errors are retried until the poll timeout (the polling call's deadline) rather than for a
    handful of attempts, which a burst of short rate-limit hints would use up in a fraction of a
    second. Fatal statuses still end the call at once.
    """
    base = RetryPolicy() if policy is None else policy
    # A long server-requested wait is honoured too; the poll timeout still bounds the whole call.
    return base.replace(
        max_attempts=max(base.max_attempts, 10_000),
        max_retry_after=max(base.max_retry_after, 86_400.0),
    )


def _as_store(store: DeferredStore | str | Path | None) -> DeferredStore | None:
    if store is None or isinstance(store, DeferredStore):
        return store
    if isinstance(store, str | Path):
        return SQLiteDeferredStore(store)
    raise ValueError(f"store must be a DeferredStore or a path, got {type(store).__name__}")


class _Poller:
    """What the sync and async pollers share: requests, answers, and the store's bookkeeping."""

    _driver: Any

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None,
        poll: PollPolicy | None,
        store: DeferredStore | str | Path | None,
        gate: Gate | Literal[False] | None,
        hooks: Iterable[RetryHook] | None,
        clock: Callable[[], float] | None,
    ) -> None:
        if poll is not None and not isinstance(poll, PollPolicy):
            raise ValueError(f"poll must be a PollPolicy, got {type(poll).__name__}")
        check_policy(policy)
        self.client = client
        self.poll = PollPolicy() if poll is None else poll
        self.store = _as_store(store)
        #: Results that arrived and are not yet safe (in the store, or handed over without one).
        self._kept: dict[str, _Arrival] = {}
        #: A store whose ``fail`` keeps the raw body of an unusable 200 (both built-in ones do).
        self._keeps_bodies = self.store is not None and _takes_body(self.store)
        self._stream = _buffered_stream(client)
        self._policy = policy
        self._hooks = hooks
        self._clock = time.monotonic if clock is None else clock
        #: One gate for submissions and polls alike: they share the chat-completions limit.
        self._gate = own_gate(gate, self._clock)

    @property
    def gate(self) -> Gate | None:
        """The gate every request of this poller passes (shared cooldown, adaptive pacing)."""
        return self._gate

    def _driver_options(self, policy: RetryPolicy | None) -> TransportOptions:
        """What this poller's drivers are built with: its gate, hooks and clock."""
        gate: Gate | Literal[False] = False if self._gate is None else self._gate
        return {
            "policy": policy,
            "poll": self.poll,
            "gate": gate,
            "hooks": self._hooks,
            "clock": self._clock,
        }

    # -- requests -----------------------------------------------------------------------------

    def _submit_request(self, body: Mapping[str, Any]) -> Any:
        payload = {**body, "deferred": True}
        return self.client.build_request(
            "POST", _SUBMIT, json=payload, extensions={"xretry": OUTER_LOOP}
        )

    def _poll_request(self, request_id: str, poll: PollPolicy | bool) -> Any:
        segment = _check_id(request_id)
        extensions: dict[str, Any] = {"xretry": OUTER_LOOP, _ARRIVING: request_id}
        extensions["xretry.poll"] = poll if isinstance(poll, PollPolicy) else False
        return self.client.build_request("GET", _POLL.format(segment), extensions=extensions)

    def _poll_policy(self, timeout: float | None) -> PollPolicy:
        return self.poll if timeout is None else self.poll.replace(timeout=timeout)

    # -- answers ------------------------------------------------------------------------------

    def _submitted(self, response: Any) -> str:
        error = error_for_response(response)
        if error is not None:
            raise error
        try:
            request_id = json.loads(response.content)["request_id"]
        except (ValueError, KeyError, TypeError) as exc:
            echoed = _masked(response.content, _secrets_of(response), 200)
            raise XRetryError(
                f"the deferred submission was accepted ({response.status_code}) but the answer "
                f"has no request_id: {echoed}"
            ) from exc
        if not isinstance(request_id, str) or not request_id:
            shown = redact(repr(request_id), _secrets_of(response))[:200]
            raise XRetryError(f"the deferred submission returned a bad request_id: {shown}")
        problem = _id_problem(request_id)
        if problem is not None:  # accepted and billed: the id is kept, never dropped
            logger.warning(
                "deferred job accepted with request_id %r, which cannot be polled (%s); "
                "recorded as failed",
                request_id,
                problem,
            )
            self._store_write(request_id, "fail", f"unpollable request id: {problem}")
            raise DeferredIdError(request_id, reason=problem)
        if self.store is not None:
            try:
                self.store.add(request_id)
            except Exception as exc:
                reason = redact(str(exc), _secrets_of(response))
                logger.warning(
                    "deferred job %s was accepted (and is billed) but the store could not "
                    "record its id: %s",
                    request_id,
                    reason,
                )
                raise DeferredStoreError(request_id, reason=reason) from exc
        return request_id

    def _store_write(self, request_id: str, action: str, *args: Any, **kwargs: Any) -> bool:
        """A store write whose failure loses nothing (a final 404, an acknowledgement, a bad id):
        logged at WARNING, not raised. True if it was written (or there is no store)."""
        if self.store is None:
            return True
        try:
            getattr(self.store, action)(request_id, *args, **kwargs)
        except Exception as exc:
            logger.warning(
                "the deferred store could not %s %s: %s", action, request_id, error_summary(exc)
            )
            return False
        return True

    def acknowledge(self, request_id: str) -> None:
        """Mark a result as safely used: ``resume()`` will not hand it over again.

        ``wait()`` and ``create()`` leave their result unacknowledged, so that a crash between
        getting it and using it loses nothing; acknowledge once it is saved. ``resume()`` and
        ``as_completed()`` acknowledge each result for you when you ask for the next one.
        """
        _check_id(request_id)
        if self.store is not None:
            self.store.acknowledge(request_id)

    def _stored(self, request_id: str) -> dict[str, Any] | None:
        """A result fetched earlier: kept in memory (not yet recorded, or not yet handed over),
        or served from the store. Never fetched twice."""
        _check_id(request_id)
        if request_id in self._kept:
            return self._handover(request_id, retry=True)
        if self.store is None:
            return None
        record = self.store.get(request_id)
        if record is None or record.state == "pending":
            return None
        if record.state == "done" and record.result is not None:
            return record.result
        error = record.error or ""
        if record.body is not None or error.startswith("unusable body"):
            reason = error.removeprefix("unusable body: ")
            if record.body is None:
                reason += " (the raw body was not kept by this store)"
            raise DeferredResultError(request_id, body=record.body or b"", reason=reason)
        status, _, message = error.partition(": ")
        code = int(status) if status.isdigit() else 404
        raise DeferredNotFoundError(
            request_id, status_code=code, message=f"stored as failed: {message or error}"
        )

    # -- a 200 arrives --------------------------------------------------------------------------

    def _arrived(self, request_id: str, response: Any) -> None:
        """A poll's 200, the moment its body is in: kept, then recorded (see _ClientTransport)."""
        body = bytes(response.content)
        completion, reason = _parsed(body)
        arrival = _Arrival(completion, body, reason, _secrets_of(response))
        self._kept[request_id] = arrival
        self._record(request_id, arrival)

    def _record(self, request_id: str, arrival: _Arrival) -> bool:
        """Write a kept result to the store; on failure keep it in memory and say so."""
        store = self.store
        if store is None or arrival.stored:
            return True
        try:
            if arrival.completion is not None:
                store.complete(request_id, arrival.completion)
            elif self._keeps_bodies:  # never the key, even one the server echoed
                body = _masked_bytes(arrival.body, arrival.secrets)
                store.fail(request_id, f"unusable body: {arrival.reason}", body=body)
            else:
                echoed = _masked(arrival.body, arrival.secrets, 2000)
                store.fail(request_id, f"unusable body: {arrival.reason}: {echoed}")
        except Exception as exc:
            arrival.error = exc
            logger.warning(
                "deferred completion %s was fetched but the store could not record it (%s); "
                "kept in memory until a wait() for it can",
                request_id,
                redact(error_summary(exc), arrival.secrets),
            )
            return False
        arrival.stored, arrival.error = True, None
        return True

    def _handover(self, request_id: str, *, retry: bool) -> dict[str, Any]:
        """The kept result for ``request_id``, once it is safe: recorded, or (without a store)
        handed over now. ``retry``: try the store again first (a later ``wait()``)."""
        arrival = self._kept[request_id]
        if retry:
            self._record(request_id, arrival)
        if not arrival.stored and self.store is not None:
            error = arrival.error
            raise DeferredStoreError(
                request_id,
                reason=redact(error_summary(error) if error else "not recorded", arrival.secrets),
                completion=arrival.completion,
                body=None if arrival.completion is not None else arrival.body,
            ) from error
        self._kept.pop(request_id, None)
        if arrival.completion is None:
            raise DeferredResultError(request_id, body=arrival.body, reason=arrival.reason)
        return arrival.completion

    def _unclaimed(self, outcome: DeferredOutcome) -> None:
        """A result ``as_completed`` fetched but the caller left before taking: without a store
        (with one, it is there, unacknowledged), kept for the next ``wait()`` of its id."""
        if outcome.completion is not None and self.store is None:
            self._kept[outcome.request_id] = _Arrival(outcome.completion, b"", "", [], stored=True)

    # -- the end of a poll ------------------------------------------------------------------------

    def _answered(self, request_id: str, response: Any) -> dict[str, Any]:
        """The completion from the final poll response, recorded before anyone sees it."""
        status = response.status_code
        history = response.extensions.get("xretry")
        if status == 200:
            if request_id not in self._kept:  # (a 200 that did not come through our transport)
                self._arrived(request_id, response)
            return self._handover(request_id, retry=False)
        if status == 202 or getattr(history, "gave_up", False):
            # Not ready, or 429s/5xx until the poll timeout: either way, not delivered in time.
            polls = sum(1 for a in getattr(history, "attempts", ()) if a.status_code == 202)
            error = None if status == 202 else error_for_response(response)
            timeout = DeferredTimeoutError(
                request_id,
                waited=getattr(history, "elapsed", 0.0),
                polls=polls,
                last=None if error is None else f"{type(error).__name__} ({status})",
            )
            if error is not None and isinstance(history, RetryHistory):
                timeout.add_note(describe(history))
            raise timeout from error
        error = error_for_response(response)
        if status in (400, 404) and not isinstance(error, InvalidAPIKeyError):
            message = error.message if error is not None else ""
            if not _xai_shaped(response.content):
                # A gateway's page, a base-URL typo: not the API's word on this job, which stays
                # pending (in the store too).
                raise DeferredPollError(
                    request_id,
                    reason=f"{status} from {display_url(response.request)}, not an answer of the "
                    "xAI API; the job is left pending",
                    hint=(
                        "Check the client's base_url (https://api.x.ai/v1) and any proxy in "
                        "between, then wait() for this request_id again (within 24 hours)."
                    ),
                ) from error
            self._store_write(request_id, "fail", f"{status}: {message}")
            raise DeferredNotFoundError(request_id, status_code=status, message=message)
        if error is not None:
            raise error
        raise XRetryError(f"unexpected answer {status} for deferred completion {request_id}")

    def _poll_failed(self, request_id: str, exc: Exception, started: float) -> Exception:
        """What a poll that raised ends in: a failure the retries were still working through
        (a connection error, a timeout; the gate's wait) means the poll timeout ran out, which is
        ``DeferredTimeoutError`` with the id; anything else is raised as it is."""
        retryable = classify_exception(exc, method="GET").verdict is Verdict.RETRY
        if isinstance(exc, DeferredError) or not (retryable or isinstance(exc, GateTimeoutError)):
            return exc
        timeout = DeferredTimeoutError(
            request_id, waited=self._clock() - started, polls=0, last=type(exc).__name__
        )
        for note in getattr(exc, "__notes__", ()):  # the attempts, as the last error listed them
            timeout.add_note(note)
        return timeout


class DeferredCompletions(_Poller):
    """Deferred chat completions over a sync ``httpx.Client`` (or ``httpx2.Client``).

    Example::

        client = httpx.Client(base_url="https://api.x.ai/v1", headers={"Authorization": ...})
        deferred = xretry.DeferredCompletions(client, store="deferred.db")
        completion = deferred.create(model="grok-4", messages=[{"role": "user", "content": "Hi"}])

    ``submit`` and each poll are retried on 429/5xx under ``policy``; polling follows ``poll``.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        store: DeferredStore | str | Path | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            client, policy=policy, poll=poll, store=store, gate=gate, hooks=hooks, clock=clock
        )
        self._sleep = time.sleep if sleep is None else sleep
        self._driver, self._poll_driver = (
            SyncDriver(
                _ClientTransport(client, self._arrived),
                self._stream,
                outer=True,
                sleep=self._sleep,
                **self._driver_options(chosen),
            )
            for chosen in (policy, _patient(policy))
        )

    def submit(self, **body: Any) -> str:
        """Send the chat-completion ``body`` with ``"deferred": true``; return the request id.

        With a store, the id is recorded before it is returned; if the store cannot record it,
        :class:`DeferredStoreError` carries it (and a WARNING names it): the job was accepted.
        """
        response = self._driver.handle_request(self._submit_request(body))
        return self._submitted(response)

    def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the completion is ready and return it (from the store if already fetched).

        Raises :class:`DeferredTimeoutError` (carrying the id, to resume later) when ``timeout``
        (default ``poll.timeout``) runs out, whether the job was still pending or the server kept
        failing; :class:`DeferredNotFoundError` for an id the API says is unknown, expired or
        already fetched; :class:`DeferredStoreError` (carrying the result) when the store cannot
        record it; and the typed status errors for anything else fatal.
        With a store, the result stays unacknowledged (see :meth:`acknowledge`).
        """
        stored = self._stored(request_id)
        if stored is not None:
            return stored
        request = self._poll_request(request_id, self._poll_policy(timeout))
        started = self._clock()
        try:
            response = self._poll_driver.handle_request(request)
        except Exception as exc:
            failed = self._poll_failed(request_id, exc, started)
            if failed is exc:
                raise
            raise failed from exc
        return self._answered(request_id, response)

    def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, with the first poll ``poll.first_delay`` after submitting."""
        try:
            request_id = self.submit(**body)
        except DeferredStoreError as exc:
            request_id = exc.request_id  # accepted (and logged): its result is recorded with it
        self._pause(self.poll.first_delay)
        return self.wait(request_id, timeout=timeout)

    def resume(self, *, timeout: float | None = None) -> Iterator[DeferredOutcome]:
        """After a crash: yield the results fetched but not acknowledged, then finish pending ids.

        Each outcome is acknowledged when you ask for the next one, so one you were handling when
        the process died is handed over again; key your side effects by ``request_id``.
        """
        if self.store is None:
            raise ValueError("resume() needs a store: DeferredCompletions(client, store=...)")
        for request_id in [*self.store.unacknowledged(), *self.store.pending()]:
            try:
                outcome = DeferredOutcome(request_id, self.wait(request_id, timeout=timeout))
            except Exception as exc:  # one id's failure (a bad id, a store error) stops no other
                outcome = DeferredOutcome(request_id, error=exc)
            yield outcome
            if outcome.ok:  # handed over: if this write fails, it is handed over again later
                self._store_write(request_id, "acknowledge")

    def _pause(self, seconds: float) -> None:
        run(pause(seconds), None, self._sleep, None)


class AsyncDeferredCompletions(_Poller):
    """Deferred chat completions over an ``httpx.AsyncClient`` (or httpx2's), asyncio or trio.

    Besides ``submit`` / ``wait`` / ``create``, :meth:`as_completed` runs many jobs at once with
    bounded concurrency, all polls on one shared schedule and one shared :class:`Gate`, so
    thousands of pending jobs don't flood the rate limit.
    """

    def __init__(
        self,
        client: Any,
        *,
        policy: RetryPolicy | None = None,
        poll: PollPolicy | None = None,
        store: DeferredStore | str | Path | None = None,
        gate: Gate | Literal[False] | None = None,
        hooks: Iterable[RetryHook] | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(
            client,
            policy=policy,
            poll=poll,
            store=store,
            gate=gate,
            hooks=hooks,
            clock=clock,
        )
        self._sleep = anyio_sleep if sleep is None else sleep
        self._driver, self._poll_driver = (
            AsyncDriver(
                _ClientTransport(client, self._arrived),
                self._stream,
                outer=True,
                sleep=self._sleep,
                **self._driver_options(chosen),
            )
            for chosen in (policy, _patient(policy))
        )

    async def submit(self, **body: Any) -> str:
        """Send ``body`` with ``"deferred": true``; return the request id (stored first); see
        :meth:`DeferredCompletions.submit`."""
        return self._submitted(await self._driver.handle_async_request(self._submit_request(body)))

    async def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until ready; see :meth:`DeferredCompletions.wait`.

        Cancellable (``anyio.fail_after``) anywhere but while a 200 is being read and recorded:
        that result is kept (in the store, or in this poller's memory for the next ``wait``).
        """
        stored = self._stored(request_id)
        if stored is not None:
            return stored
        request = self._poll_request(request_id, self._poll_policy(timeout))
        started = self._clock()
        try:
            response = await self._poll_driver.handle_async_request(request)
        except Exception as exc:
            failed = self._poll_failed(request_id, exc, started)
            if failed is exc:
                raise
            raise failed from exc
        return self._answered(request_id, response)

    async def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, first poll ``poll.first_delay`` after submitting."""
        try:
            request_id = await self.submit(**body)
        except DeferredStoreError as exc:
            request_id = exc.request_id  # accepted (and logged): its result is recorded with it
        await self._pause(self.poll.first_delay)
        return await self.wait(request_id, timeout=timeout)

    async def _pause(self, seconds: float) -> None:
        await arun(pause(seconds), None, self._sleep, None)

    @asynccontextmanager
    async def as_completed(
        self,
        jobs: Iterable[str | Mapping[str, Any]] = (),
        *,
        concurrency: int = 16,
        timeout: float | None = None,
        resume: bool = False,
    ) -> AsyncIterator[AsyncIterator[DeferredOutcome]]:
        """Run many jobs; iterate their outcomes in the order they complete.

        ``jobs`` are request ids (already submitted) or chat-completion bodies (submitted here).
        ``resume=True`` adds the store's unacknowledged results and pending ids. At most
        ``concurrency`` requests are in flight; every poll follows one shared schedule (each job's
        own ``PollPolicy`` gaps, dispatched in due order) through one shared gate. Each outcome is
        acknowledged in the store when you ask for the next one. Leaving the block early cancels
        the rest (their ids stay pending in the store, to resume).

        Example::

            async with deferred.as_completed(bodies, concurrency=16) as results:
                async for outcome in results:
                    print(outcome.request_id, outcome.completion or outcome.error)
        """
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an int >= 1, got {concurrency!r}")
        ids: list[str] = []
        bodies: list[Mapping[str, Any]] = []
        for job in jobs:
            (ids if isinstance(job, str) else bodies).append(job)  # type: ignore[arg-type]
        if resume:
            if self.store is None:
                raise ValueError("resume=True needs a store")
            ids = [*self.store.unacknowledged(), *self.store.pending(), *ids]
        runner = Batch(self, concurrency, self._poll_policy(timeout))
        send, receive = anyio.create_memory_object_stream[DeferredOutcome](max_buffer_size=1 << 30)
        async with anyio.create_task_group() as group, receive:
            group.start_soon(runner.run, list(dict.fromkeys(ids)), bodies, send)
            try:
                async with contextlib.aclosing(self._acknowledging(receive)) as outcomes:
                    yield outcomes
            finally:
                group.cancel_scope.cancel()
                while True:  # outcomes fetched but never asked for: kept for a later wait()
                    try:
                        self._unclaimed(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                        break

    async def _acknowledging(
        self, receive: MemoryObjectReceiveStream[DeferredOutcome]
    ) -> AsyncGenerator[DeferredOutcome, None]:
        previous: DeferredOutcome | None = None
        async for outcome in receive:
            if previous is not None and previous.ok:
                self._store_write(previous.request_id, "acknowledge")
            previous = outcome
            yield outcome
        if previous is not None and previous.ok:
            self._store_write(previous.request_id, "acknowledge")


def _takes_body(store: DeferredStore) -> bool:
    """Whether ``store.fail`` takes ``body=`` (a store written before it existed does not)."""
    try:
        parameters = inspect.signature(store.fail).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "body" or p.kind is p.VAR_KEYWORD for p in parameters)


def _secrets_of(response: Any) -> list[str]:
    request = request_of(response)
    return [] if request is None else request_secrets(request)


def _masked(body: bytes, secrets: list[str], limit: int) -> str:
    """A body for a message: masked first, then cut (a cut first could split a key in two).

    Only the start is read: its repr is at least as long as the bytes, so nothing past
    ``limit`` bytes can reach the first ``limit`` characters."""
    return redact(repr(body[: limit + 512]), secrets)[:limit]
