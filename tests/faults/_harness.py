"""One logical call through any xretry entry point, measured and checked for leaks.

An :class:`Entry` is one way in: the transport inside a client, ``@xretry.retry`` around a plain
client call, or the deferred poller (``submit``, ``wait``, ``as_completed``), with httpx or
httpx2, sync or async (asyncio or trio). :func:`run` makes the call against a server, and hands
back an :class:`Outcome`: the value or the exception, how long it took, whether the same client
could still make a request afterwards (a pool of one connection: a connection held by a
discarded or failed response would make that request time out), and which file descriptors
were left open once the client was closed.

Async entries run under ``anyio.run`` from a plain test function, so one parametrized test
covers sync, asyncio and trio with the same assertions.
"""

from __future__ import annotations

import io
import os
import re
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal

import anyio
import httpx
import httpx2
import pytest

import xretry
import xretry.httpx2
from xretry import PollPolicy, RetryPolicy

from ._raw_server import HEALTH_PATH, RID

__all__ = [
    "AUTH",
    "BODY_KINDS",
    "CHAT",
    "Call",
    "DEFERRED_PATH",
    "Entry",
    "Kind",
    "MODES",
    "OUTAGE_POLICY",
    "OUTAGE_POLL",
    "Outcome",
    "POLICY",
    "POLL",
    "SLACK",
    "TLS",
    "assert_cell",
    "attempts_in_note",
    "budget",
    "entries",
    "leaked_fds",
    "open_fds",
    "or_doomed",
    "rotated",
    "run",
    "shows",
    "UPLOAD",
]

#: ``as_completed`` is given a request id to poll, ``batch`` a body to submit (and then poll).
Kind = Literal["transport", "decorator", "submit", "wait", "as_completed", "batch"]
#: Entry points that exist only for async clients.
ASYNC_ONLY = ("as_completed", "batch")
Mode = Literal["sync", "asyncio", "trio"]

LIBS: dict[str, ModuleType] = {"httpx": httpx, "httpx2": httpx2}
TRANSPORTS: dict[str, tuple[Any, Any]] = {
    "httpx": (xretry.RetryTransport, xretry.AsyncRetryTransport),
    "httpx2": (xretry.httpx2.RetryTransport, xretry.httpx2.AsyncRetryTransport),
}
MODES: tuple[Mode, ...] = ("sync", "asyncio", "trio")

KEY = "xai-fault-matrix-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT: dict[str, Any] = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
DEFERRED_PATH = f"/chat/deferred-completion/{RID}"

#: Waits stay tiny: this is about outcomes over real sockets, not about backoff.
POLICY = RetryPolicy(max_attempts=3, initial_delay=0.001, max_delay=0.005, deadline=2.0)
#: Polls every 10 ms for at most 0.3 s.
POLL = PollPolicy(
    first_delay=0.0, interval=0.01, multiplier=1.0, max_interval=0.01, jitter=0.0, timeout=0.3
)
#: Outages keep the pollers polling until the poll timeout: a short one keeps the suite fast.
OUTAGE_POLL = POLL.replace(timeout=0.08)
#: In an outage, two attempts: a poller must be seen to go past max_attempts within that short
#: poll timeout, even on a loaded machine.
OUTAGE_POLICY = POLICY.replace(max_attempts=2)
#: Generous: "ended within its deadline", not a performance threshold.
SLACK = 1.0
#: A pool of one connection and this pool timeout: a leaked connection fails the health check.
POOL_TIMEOUT = 1.0

#: One TLS context for every client: building one per client costs 50-150 ms (no TLS is used).
TLS = ssl.create_default_context()


@dataclass(frozen=True)
class Entry:
    """One way into xretry."""

    kind: Kind
    lib: str
    mode: Mode
    #: The HTTP method of a transport or decorator call (the pollers choose their own).
    method: str = "POST"

    @property
    def id(self) -> str:
        method = f"-{self.method}" if self.kind in ("transport", "decorator") else ""
        return f"{self.kind}{method}-{self.lib}-{self.mode}"

    @property
    def http(self) -> ModuleType:
        return LIBS[self.lib]

    @property
    def is_async(self) -> bool:
        return self.mode != "sync"

    @property
    def polls(self) -> bool:
        """Whether this entry is given a request id to poll (faults aimed at it strike there)."""
        return self.kind in ("wait", "as_completed")

    @property
    def poll_bounded(self) -> bool:
        """Whether the poll timeout, not the retry policy's deadline, bounds the whole call."""
        return self.kind in ("wait", "as_completed", "batch")


def entries(
    *kinds: Kind,
    methods: tuple[str, ...] = ("POST",),
    modes: tuple[Mode, ...] = MODES,
) -> list[Any]:
    """``pytest.param`` per entry: each kind x library x mode (x method for transport/decorator)."""
    params = []
    for kind in kinds:
        for method in methods if kind in ("transport", "decorator") else ("",):
            for lib in LIBS:
                for mode in modes:
                    if kind in ASYNC_ONLY and mode == "sync":
                        continue
                    entry = Entry(kind, lib, mode, method or "GET")
                    params.append(pytest.param(entry, id=entry.id))
    return params


def rotated(kinds: tuple[Kind, ...], cases: dict[str, Any]) -> list[Any]:
    """``pytest.param(entry, case)`` for each case and kind, the library and mode rotating.

    For faults whose handling does not depend on the library or the event loop (what a status
    or a header value means), every case meets every kind of entry point once, and across the
    cases each kind runs on every library and mode: all pairs covered, at a sixth of the cells.
    """
    params = []
    for index, (name, case) in enumerate(cases.items()):
        for position, kind in enumerate(kinds):
            modes = tuple(m for m in MODES if m != "sync") if kind in ASYNC_ONLY else MODES
            combos = [(lib, mode) for lib in LIBS for mode in modes]
            lib, mode = combos[(index + position) % len(combos)]
            entry = Entry(kind, lib, mode)
            params.append(pytest.param(entry, case, id=f"{name}-{entry.id}"))
    return params


@dataclass(frozen=True)
class Call:
    """What to send, and under which policies."""

    policy: RetryPolicy = POLICY
    poll: PollPolicy = POLL
    #: The client's own httpx timeout (connect, read, write); the pool timeout is POOL_TIMEOUT.
    timeout: float = 5.0
    #: Transport/decorator path under ``/v1``; ``None``: chat completions for POST, models for GET.
    path: str | None = None
    #: Per-request ``extensions`` (transport/decorator calls).
    extensions: Mapping[str, Any] = field(default_factory=dict)
    #: Send the chat body as a one-shot stream (a generator) instead of buffered JSON.
    stream_body: bool = False
    #: Another body kind for a POST (see :data:`BODY_KINDS`); ``None``: JSON (or ``stream_body``).
    body: str | None = None
    #: The client's headers instead of :data:`AUTH` (a key with a trailing newline, say).
    headers: Mapping[str, str] | None = None
    #: A proxy URL for the innermost transport (credentials and all).
    proxy: str | None = None
    #: Give the client xretry's ``raise_for_status`` (``araise_for_status``) as a response hook,
    #: as the README does: it then meets each response before its body is read.
    hook: bool = False
    request_id: str = RID
    #: Make the health check after the call (off when the server cannot answer one).
    health: bool = True
    #: Close the client before the call (the caller's mistake under test).
    closed: bool = False

    def target(self, method: str) -> str:
        if self.path is not None:
            return self.path
        return "/chat/completions" if method == "POST" else "/models"


@dataclass
class Outcome:
    """What one call ended with."""

    entry: Entry
    value: Any = None
    error: BaseException | None = None
    elapsed: float = 0.0
    #: Times the decorated function ran (decorator entries only).
    calls: int = 0
    #: Status of a request made on the same client after the call, or the exception it raised.
    health: int | BaseException | None = None
    #: File descriptors open after the client was closed that were not open before the call.
    leaked: dict[int, str] = field(default_factory=dict)

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error is not None else f"value={self.value!r:.120}"
        return f"Outcome({self.entry.id}, {what}, elapsed={self.elapsed:.3f}, calls={self.calls})"


# -- file descriptors -------------------------------------------------------------------------


def open_fds() -> dict[int, str]:
    """This process's open file descriptors and what each points to (``socket:[inode]``, ...)."""
    fds: dict[int, str] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # the directory handle listdir used, closed by now
            continue
    return fds


def leaked_fds(before: Mapping[int, str], settle: float = 2.0) -> dict[int, str]:
    """Descriptors open now that were not open ``before``, after letting them settle.

    The servers run in this process: their end of a connection closes a moment after the client
    closes its end, so a few milliseconds of settling is expected; a real leak never settles.
    """
    limit = time.monotonic() + settle
    while True:
        leaked = {fd: target for fd, target in open_fds().items() if before.get(fd) != target}
        if not leaked or time.monotonic() > limit:
            return leaked
        time.sleep(0.002)


# -- running one call ---------------------------------------------------------------------------


def _chunks() -> Iterator[bytes]:
    yield b'{"model": "grok-4", '
    yield b'"messages": [{"role": "user", "content": "hi"}]}'


async def _achunks() -> AsyncIterator[bytes]:
    for chunk in _chunks():
        yield chunk


class _Reader:
    """A file part that can only be read once (no ``seek``): a socket's or a pipe's reader."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def read(self, size: int = -1) -> bytes:
        size = len(self._data) if size < 0 else size
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk


#: The file part of the multipart bodies: what the server must see whole, every time.
UPLOAD = b'{"custom_id": "fault-matrix", "body": {}}\n' * 64
#: POST body kinds besides JSON: the ``httpx`` request arguments each is built from (afresh for
#: every call, as a caller's function builds it), and whether the transport can send it again.
BODY_KINDS: dict[str, tuple[Callable[[], dict[str, Any]], bool]] = {
    "bytes": (lambda: {"content": UPLOAD}, True),
    "multipart-bytes": (lambda: {"files": {"file": ("batch.jsonl", UPLOAD)}}, True),
    "multipart-file": (lambda: {"files": {"file": ("batch.jsonl", io.BytesIO(UPLOAD))}}, True),
    "multipart-stream": (lambda: {"files": {"file": ("batch.jsonl", _Reader(UPLOAD))}}, False),
}


def _request_kwargs(entry: Entry, call: Call, *, is_async: bool) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"extensions": dict(call.extensions)}
    if entry.method == "POST":
        if call.body is not None:
            kwargs.update(BODY_KINDS[call.body][0]())
        elif call.stream_body:
            kwargs["content"] = _achunks() if is_async else _chunks()
            kwargs["headers"] = {"content-type": "application/json"}
        else:
            kwargs["json"] = CHAT
    return kwargs


def _client_kwargs(entry: Entry, base_url: str, call: Call) -> dict[str, Any]:
    http = entry.http
    return {
        "base_url": base_url,
        "headers": AUTH if call.headers is None else call.headers,
        "event_hooks": {"response": [_hook(entry)]} if call.hook else None,
        "timeout": http.Timeout(call.timeout, pool=POOL_TIMEOUT),
        "trust_env": False,
    }


def _hook(entry: Entry) -> Callable[[Any], Any]:
    return xretry.araise_for_status if entry.is_async else xretry.raise_for_status


def _inner(entry: Entry, call: Call) -> Any:
    http = entry.http
    limits = http.Limits(max_connections=1, max_keepalive_connections=1)
    cls = http.AsyncHTTPTransport if entry.is_async else http.HTTPTransport
    return cls(limits=limits, verify=TLS, trust_env=False, proxy=call.proxy)


def _transport(entry: Entry, call: Call) -> Any:
    inner = _inner(entry, call)
    if entry.kind != "transport":
        return inner
    sync_cls, async_cls = TRANSPORTS[entry.lib]
    cls = async_cls if entry.is_async else sync_cls
    return cls(inner, policy=call.policy, poll=call.poll)


def _health_timeout(http: ModuleType) -> Any:
    """The health check's own timeouts: generous (a loaded machine is no fault), but the pool
    timeout stays short, so a connection the call leaked fails it."""
    return http.Timeout(5.0, pool=POOL_TIMEOUT)


def run(entry: Entry, base_url: str, call: Call | None = None) -> Outcome:
    """Make one call through ``entry`` against ``base_url`` and report how it ended."""
    call = Call() if call is None else call
    before = open_fds()
    if entry.is_async:
        outcome = anyio.run(_run_async, entry, base_url, call, backend=entry.mode)
    else:
        outcome = _run_sync(entry, base_url, call)
    outcome.leaked = leaked_fds(before)
    return outcome


def _run_sync(entry: Entry, base_url: str, call: Call) -> Outcome:
    outcome = Outcome(entry)
    http = entry.http
    kwargs = _client_kwargs(entry, base_url, call)
    with http.Client(transport=_transport(entry, call), **kwargs) as client:
        action = _sync_action(entry, client, call, outcome)
        if call.closed:
            client.close()
        start = time.monotonic()
        try:
            outcome.value = action()
        except Exception as exc:
            outcome.error = exc
        outcome.elapsed = time.monotonic() - start
        if call.health and not call.closed:
            try:
                health = client.get(HEALTH_PATH.removeprefix("/v1"), timeout=_health_timeout(http))
                outcome.health = int(health.status_code)
            except Exception as exc:
                outcome.health = exc
    return outcome


def _sync_action(entry: Entry, client: Any, call: Call, outcome: Outcome) -> Callable[[], Any]:
    method, path = entry.method, call.target(entry.method)

    def send() -> tuple[int, bytes]:
        response = client.request(method, path, **_request_kwargs(entry, call, is_async=False))
        xretry.raise_for_status(response)
        return int(response.status_code), bytes(response.content)

    if entry.kind == "transport":
        return send
    if entry.kind == "decorator":

        @xretry.retry(policy=call.policy)
        def decorated() -> tuple[int, bytes]:
            outcome.calls += 1
            return send()

        return decorated
    poller = xretry.DeferredCompletions(client, policy=call.policy, poll=call.poll)
    if entry.kind == "submit":
        return lambda: poller.submit(**CHAT)
    if entry.kind == "wait":
        return lambda: poller.wait(call.request_id)
    raise ValueError(f"no sync {entry.kind}")


async def _run_async(entry: Entry, base_url: str, call: Call) -> Outcome:
    outcome = Outcome(entry)
    http = entry.http
    kwargs = _client_kwargs(entry, base_url, call)
    async with http.AsyncClient(transport=_transport(entry, call), **kwargs) as client:
        action = _async_action(entry, client, call, outcome)
        if call.closed:
            await client.aclose()
        start = time.monotonic()
        try:
            outcome.value = await action()
        except Exception as exc:
            outcome.error = exc
        outcome.elapsed = time.monotonic() - start
        if call.health and not call.closed:
            try:
                timeout = _health_timeout(http)
                response = await client.get(HEALTH_PATH.removeprefix("/v1"), timeout=timeout)
                outcome.health = int(response.status_code)
            except Exception as exc:
                outcome.health = exc
    return outcome


def _async_action(entry: Entry, client: Any, call: Call, outcome: Outcome) -> Callable[[], Any]:
    method, path = entry.method, call.target(entry.method)

    async def send() -> tuple[int, bytes]:
        kwargs = _request_kwargs(entry, call, is_async=True)
        response = await client.request(method, path, **kwargs)
        await xretry.araise_for_status(response)
        return int(response.status_code), bytes(response.content)

    if entry.kind == "transport":
        return send
    if entry.kind == "decorator":

        @xretry.retry(policy=call.policy)
        async def decorated() -> tuple[int, bytes]:
            outcome.calls += 1
            return await send()

        return decorated
    poller = xretry.AsyncDeferredCompletions(client, policy=call.policy, poll=call.poll)
    if entry.kind == "submit":
        return lambda: poller.submit(**CHAT)
    if entry.kind == "wait":
        return lambda: poller.wait(call.request_id)

    async def first_outcome() -> dict[str, Any] | None:
        job: str | dict[str, Any] = CHAT if entry.kind == "batch" else call.request_id
        async with poller.as_completed([job]) as results:
            outcomes = [o async for o in results]
        assert len(outcomes) == 1, outcomes
        if entry.kind == "as_completed":
            assert outcomes[0].request_id == call.request_id
        if outcomes[0].error is not None:
            raise outcomes[0].error
        return outcomes[0].completion

    return first_outcome


def budget(entry: Entry, poll: PollPolicy = POLL, policy: RetryPolicy = POLICY) -> float:
    """What bounds the call: the poll timeout for the pollers, else the policy's deadline."""
    limit = poll.timeout if entry.poll_bounded else policy.deadline
    assert limit is not None
    return limit


def or_doomed(entry: Entry, error: type[BaseException]) -> tuple[type[BaseException], ...]:
    """``error``, or the timeout of a last attempt started with too little of the deadline left
    (a known defect: test_deadline_edges.py::test_a_doomed_last_poll_does_not_hide_the_last_answer).

    Only for the pollers' outages, where the poll timeout, not max_attempts, ends the call.
    """
    http = entry.http
    return (error, http.ReadTimeout, http.ConnectTimeout, http.WriteTimeout, http.PoolTimeout)


# -- checking -----------------------------------------------------------------------------------


def assert_cell(
    outcome: Outcome,
    error: type[BaseException] | tuple[type[BaseException], ...] | None,
    *,
    budget: float,
    match: str | None = None,
) -> None:
    """The common checks of every cell: exactly this outcome, in time, nothing leaked.

    ``error=None`` means success; a class means exactly that class (not a subclass); a tuple of
    classes is for the few cells where a known defect makes the outcome depend on timing (each
    such use names the defect's test). ``budget`` is the deadline (or poll timeout) that bounds
    the call; it must end within it plus :data:`SLACK`.
    """
    if error is None:
        assert outcome.error is None, f"expected success, got {outcome.error!r}"
    else:
        allowed = error if isinstance(error, tuple) else (error,)
        names = " or ".join(e.__name__ for e in allowed)
        found = outcome.error
        if (
            outcome.entry.kind == "wait"
            and type(found) is xretry.DeferredTimeoutError
            and type(found) not in allowed
        ):
            # wait() reaching its poll timeout through failures ends in DeferredTimeoutError with
            # the id, the last failure its cause (docs/deferred.md): the cell checks that cause.
            assert found.request_id, f"no request id on {outcome!r}"
            found = found.__cause__
        assert type(found) in allowed, f"expected {names}, got {outcome!r}"
        if match is not None:
            assert match in str(outcome.error), f"{match!r} not in {outcome.error}"
    assert outcome.elapsed <= budget + SLACK, f"{outcome!r} took longer than {budget} + {SLACK}"
    assert outcome.leaked == {}, f"file descriptors left open: {outcome.leaked}"
    assert not _shows_key(outcome), f"the API key shows in {outcome!r}"
    if outcome.health is not None:
        assert outcome.health == 200, f"the client is unusable after the call: {outcome.health!r}"


def _shows_key(outcome: Outcome) -> bool:
    """The canary: the key in the error (message, repr, notes, the chain of causes) or in the
    returned value's repr and attempt history."""
    return shows(outcome, (KEY, KEY[-12:]))


def shows(outcome: Outcome, needles: tuple[str, ...]) -> bool:
    """Whether any of ``needles`` is in the outcome's error (message, repr, args, notes, the chain
    of causes) or in the returned value's repr and attempt history."""
    texts: list[str] = []
    error: BaseException | None = outcome.error
    seen = 0
    while error is not None and seen < 10:
        texts += [str(error), repr(error), repr(error.args), *getattr(error, "__notes__", [])]
        error = error.__cause__ or error.__context__
        seen += 1
    value = outcome.value
    texts.append(repr(value))
    extensions = getattr(value, "extensions", None)
    if isinstance(extensions, dict):
        texts.append(repr(extensions.get("xretry")))
    return any(needle in text for needle in needles for text in texts)


def attempts_in_note(error: BaseException | None) -> int:
    """The attempt count in xretry's note on a re-raised exception (0 without a note)."""
    for note in getattr(error, "__notes__", []):
        found = re.match(r"xretry: (\d+) attempts", note)
        if found:
            return int(found.group(1))
    return 0
