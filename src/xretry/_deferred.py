"""Deferred chat completions: submit, poll until ready, deliver every paid-for result exactly once.

``DeferredCompletions(client)`` and ``AsyncDeferredCompletions(client)`` take an httpx (or httpx2)
client whose ``base_url`` is the API root with ``/v1``. They own the retry and poll loop of their
requests: a request they send is marked :data:`OUTER_LOOP`, so an xretry transport inside the client
sends it once and steps aside, and attempts never multiply, whatever the client is built with.

The loop is the transports' own driver (one core), run over the client's ``send``. With a
:class:`DeferredStore`, ids and results are recorded before anyone sees them (see ``_store.py``).
"""

from __future__ import annotations

import contextlib
import json
import re
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
from pathlib import Path
from typing import Any, Literal

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from ._batch import Batch, DeferredOutcome
from ._classify import request_of
from ._core import pause
from ._drivers import anyio_sleep, arun, run
from ._errors import (
    DeferredNotFoundError,
    DeferredResultError,
    DeferredTimeoutError,
    InvalidAPIKeyError,
    XRetryError,
    error_for_response,
)
from ._gate import Gate, own_gate
from ._hooks import RetryHook
from ._outer import OUTER_LOOP
from ._policy import PollPolicy, RetryPolicy, check_policy
from ._redact import redact, request_secrets
from ._store import DeferredStore, SQLiteDeferredStore
from ._transport import AsyncDriver, SyncDriver, TransportOptions

__all__ = ["AsyncDeferredCompletions", "DeferredCompletions", "DeferredOutcome"]

_SUBMIT = "chat/completions"
_POLL = "chat/deferred-completion/{}"

#: What a request id may look like (xAI's are UUIDs): nothing that changes the URL it goes into.
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]{0,255}")


def _check_id(request_id: object) -> None:
    if not isinstance(request_id, str) or not _ID.fullmatch(request_id) or ".." in request_id:
        raise ValueError(
            f"request_id must be an id as returned by submit() (letters, digits, '-', '_', ':', "
            f"'.'), got {request_id!r}"
        )


class _ClientTransport:
    """An httpx or httpx2 client used as the inner transport of a driver."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def handle_request(self, request: Any) -> Any:
        return self._client.send(request)

    async def handle_async_request(self, request: Any) -> Any:
        return await self._client.send(request)


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
        _check_id(request_id)
        extensions: dict[str, Any] = {"xretry": OUTER_LOOP}
        extensions["xretry.poll"] = poll if isinstance(poll, PollPolicy) else False
        return self.client.build_request("GET", _POLL.format(request_id), extensions=extensions)

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
        if self.store is not None:
            self.store.add(request_id)
        return request_id

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
        """A result fetched earlier (served from the store, never fetched twice)."""
        if self.store is None:
            return None
        record = self.store.get(request_id)
        if record is None or record.state == "pending":
            return None
        if record.state == "done" and record.result is not None:
            return record.result
        raise DeferredNotFoundError(
            request_id, status_code=404, message=f"stored as failed: {record.error}"
        )

    def _answered(self, request_id: str, response: Any) -> dict[str, Any]:
        """The completion from the final poll response, recorded before anyone sees it."""
        status = response.status_code
        if status == 200:
            body = response.content
            try:
                completion = json.loads(body)
                if not isinstance(completion, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, RecursionError) as exc:
                if self.store is not None:  # never the key, even one the server echoed
                    echoed = _masked(body, _secrets_of(response), 2000)
                    self.store.fail(request_id, f"unusable body: {echoed}")
                raise DeferredResultError(request_id, body=body, reason=str(exc)) from None
            if self.store is not None:
                self.store.complete(request_id, completion)
            return completion
        if status == 202:
            history = response.extensions.get("xretry")
            polls = sum(1 for a in getattr(history, "attempts", ()) if a.status_code == 202)
            raise DeferredTimeoutError(
                request_id, waited=getattr(history, "elapsed", 0.0), polls=polls
            )
        error = error_for_response(response)
        if status in (400, 404) and not isinstance(error, InvalidAPIKeyError):
            message = error.message if error is not None else ""
            if self.store is not None:
                self.store.fail(request_id, f"{status}: {message}")
            raise DeferredNotFoundError(request_id, status_code=status, message=message)
        if error is not None:
            raise error
        raise XRetryError(f"unexpected answer {status} for deferred completion {request_id}")


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
                _ClientTransport(client),
                self._stream,
                outer=True,
                sleep=self._sleep,
                **self._driver_options(chosen),
            )
            for chosen in (policy, _patient(policy))
        )

    def submit(self, **body: Any) -> str:
        """Send the chat-completion ``body`` with ``"deferred": true``; return the request id."""
        return self._submitted(self._driver.handle_request(self._submit_request(body)))

    def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until the completion is ready and return it (from the store if already fetched).

        Raises :class:`DeferredTimeoutError` (carrying the id, to resume later) when ``timeout``
        (default ``poll.timeout``) runs out, :class:`DeferredNotFoundError` for an unknown,
        expired or already-fetched id, and the typed status errors for anything else fatal.
        With a store, the result stays unacknowledged (see :meth:`acknowledge`).
        """
        stored = self._stored(request_id)
        if stored is None:
            request = self._poll_request(request_id, self._poll_policy(timeout))
            stored = self._answered(request_id, self._poll_driver.handle_request(request))
        return stored

    def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, with the first poll ``poll.first_delay`` after submitting."""
        request_id = self.submit(**body)
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
                outcome = DeferredOutcome(request_id, self._wait_unacked(request_id, timeout))
            except (XRetryError, OSError) as exc:
                outcome = DeferredOutcome(request_id, error=exc)
            yield outcome
            if outcome.ok:
                self.store.acknowledge(request_id)

    def _wait_unacked(self, request_id: str, timeout: float | None) -> dict[str, Any]:
        stored = self._stored(request_id)
        if stored is not None:
            return stored
        request = self._poll_request(request_id, self._poll_policy(timeout))
        return self._answered(request_id, self._poll_driver.handle_request(request))

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
                _ClientTransport(client),
                self._stream,
                outer=True,
                sleep=self._sleep,
                **self._driver_options(chosen),
            )
            for chosen in (policy, _patient(policy))
        )

    async def submit(self, **body: Any) -> str:
        """Send ``body`` with ``"deferred": true``; return the request id (stored first)."""
        return self._submitted(await self._driver.handle_async_request(self._submit_request(body)))

    async def wait(self, request_id: str, *, timeout: float | None = None) -> dict[str, Any]:
        """Poll until ready; see :meth:`DeferredCompletions.wait`."""
        stored = self._stored(request_id)
        if stored is None:
            request = self._poll_request(request_id, self._poll_policy(timeout))
            response = await self._poll_driver.handle_async_request(request)
            stored = self._answered(request_id, response)
        return stored

    async def create(self, *, timeout: float | None = None, **body: Any) -> dict[str, Any]:
        """``submit`` then ``wait``, first poll ``poll.first_delay`` after submitting."""
        request_id = await self.submit(**body)
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

    async def _acknowledging(
        self, receive: MemoryObjectReceiveStream[DeferredOutcome]
    ) -> AsyncGenerator[DeferredOutcome, None]:
        previous: DeferredOutcome | None = None
        async for outcome in receive:
            if previous is not None and previous.ok and self.store is not None:
                self.store.acknowledge(previous.request_id)
            previous = outcome
            yield outcome
        if previous is not None and previous.ok and self.store is not None:
            self.store.acknowledge(previous.request_id)


def _secrets_of(response: Any) -> list[str]:
    request = request_of(response)
    return [] if request is None else request_secrets(request)


def _masked(body: bytes, secrets: list[str], limit: int) -> str:
    """A body for a message: masked first, then cut (a cut first could split a key in two).

    Only the start is read: its repr is at least as long as the bytes, so nothing past
    ``limit`` bytes can reach the first ``limit`` characters."""
    return redact(repr(body[: limit + 512]), secrets)[:limit]
