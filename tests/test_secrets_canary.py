"""A canary API key through everything, under every fault: it must never come out anywhere.

One key, ``CANARY``, goes through each way into xretry (the sync and async transports, the sync
and async decorator, the sync and async deferred pollers with an SQLite store, the ``xretry chat``
and ``xretry wait`` commands) against the emulator over loopback sockets, under each fault: 401,
403, 429 (a real token bucket, with every hint header), 500, dropped connections, garbage bodies
and timeouts. Everything that comes out is collected:

* log records of *every* logger at DEBUG (formatted with their tracebacks, and their arguments);
* every exception: ``str``, ``repr``, notes, the whole ``__cause__`` / ``__context__`` chain as
  ``traceback`` prints it, and the pickle of xretry's status errors;
* reprs of the transports, policies, pollers, stores, retry events and each response's
  ``RetryHistory``;
* the bytes of the store's files (the database, its WAL and shared-memory files), while open and
  after closing;
* the commands' stdout and stderr, with DEBUG logging switched on in the command's process.

None of it may hold the key, its distinctive tail, or the ``Authorization`` header's value.

Then the places a hostile or misconfigured server *echoes* the key back (a proxy reflecting the
request headers): xretry masks it wherever it repeats server text, including the three places
this file found unmasked (fixed in 02ad89d): a deferred submission answered without a request id,
a deferred result that is not JSON (stored as failed), and an empty error's reason phrase.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.server
import inspect
import json
import logging
import os
import pickle
import re
import socket
import subprocess
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import xretry
import xretry.httpx2
from xretry.emulator import EmulatorApp, EmulatorServer, Fault, Scenario, serve
from xretry.testing import no_wait

from .conftest import Flavour

CANARY = "xai-CANARY-4f1e9b7c2d5a8e30"
BEARER = f"Bearer {CANARY}"
#: What must never appear: the key, its tail (what survives a cut through it), the header value.
NEEDLES = (CANARY, CANARY[-12:], BEARER)

ALL_ENDPOINTS = frozenset({"chat", "deferred", "other"})
BODY = {"model": "grok-4", "messages": [{"role": "user", "content": "canary"}]}


@dataclass(frozen=True)
class Case:
    scenario: Scenario
    #: The client's timeout (seconds): short where the fault is a slow server.
    timeout: float = 5.0


def faults(*given: Fault) -> Scenario:
    return Scenario(seed=7, ready_after=(0.0, 0.0), faults=given)


def every(step: int, first: int, run: int) -> tuple[tuple[int, int], ...]:
    """Request numbers ``first`` to ``first + run - 1``, then the same ``step`` later, ...: a
    fault on a beat. A run of one is never met twice in a row (the commands back off for real,
    0.5 s and more); a run of two outlasts the in-process policy's two attempts."""
    return tuple((start, start + run - 1) for start in range(first, 5000, step))


def fault(kind: Any, step: int = 2, first: int = 1, run: int = 1, **options: Any) -> Fault:
    return Fault(kind, schedule=every(step, first, run), endpoints=ALL_ENDPOINTS, **options)


CASES = {
    "401": Case(faults(fault("status", status=401))),
    "403": Case(faults(fault("status", status=403))),
    "429": Case(Scenario(seed=7, ready_after=(0.0, 0.0), rate_limit=20, burst=3, hints="full")),
    "500": Case(faults(fault("status", status=500, step=3, run=2))),
    "drops": Case(faults(fault("drop_before", 4, 1), fault("drop_during", 4, 3))),
    "garbage": Case(faults(fault("garbage", 6, 1), fault("html", 6, 3), fault("truncate", 6, 5))),
    "timeouts": Case(faults(fault("latency", step=3, seconds=0.4)), timeout=0.1),
}

#: Two attempts: a run of two faults ends a call in a typed error.
POLICY = xretry.RetryPolicy(max_attempts=2, initial_delay=0.01, max_delay=0.05, max_retry_after=1)
POLL = xretry.PollPolicy(
    first_delay=0.0, interval=0.02, multiplier=1.5, max_interval=0.1, jitter=0.0, timeout=1.5
)


# -- collecting what comes out ----------------------------------------------------------------


@dataclass
class Evidence:
    """Everything xretry let out, by where it came from."""

    items: list[tuple[str, str | bytes]] = field(default_factory=list)
    errors: int = 0

    def text(self, where: str, value: str | bytes) -> None:
        self.items.append((where, value))

    def event(self, event: xretry.RetryEvent) -> None:
        self.text("retry event", repr(event))

    def exception(self, where: str, exc: BaseException) -> None:
        self.errors += 1
        self.text(f"{where}: traceback", "".join(traceback.format_exception(exc)))
        seen: set[int] = set()
        current: BaseException | None = exc
        while current is not None and id(current) not in seen:
            seen.add(id(current))
            self.text(f"{where}: str", str(current))
            self.text(f"{where}: repr", repr(current))
            self.text(f"{where}: args", repr(current.args))
            self.text(f"{where}: notes", "\n".join(getattr(current, "__notes__", [])))
            if isinstance(current, xretry.APIStatusError):  # pickled without the response
                self.text(f"{where}: pickle", pickle.dumps(current))
            current = current.__cause__ or current.__context__

    def response(self, where: str, response: httpx.Response) -> None:
        self.text(f"{where}: response", repr(response))
        self.text(f"{where}: history", repr(response.extensions.get("xretry")))

    def files(self, where: str, directory: Path) -> None:
        for path in sorted(directory.iterdir()):
            if path.is_file():
                self.text(f"{where}: {path.name}", path.read_bytes())

    def logs(self, records: list[logging.LogRecord]) -> None:
        formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
        for record in records:
            self.text(f"log {record.name}", formatter.format(record))
            self.text(f"log {record.name}: args", repr(record.args))

    def leaks(self) -> list[str]:
        found = []
        for where, value in self.items:
            for needle in NEEDLES:
                hit = needle in value if isinstance(value, str) else needle.encode() in value
                if hit:
                    found.append(f"{where} holds {needle!r}")
        return found


def capture(evidence: Evidence, where: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:
        evidence.exception(where, exc)
        return None


async def acapture(evidence: Evidence, where: str, call: Callable[[], Any]) -> Any:
    try:
        return await call()
    except Exception as exc:
        evidence.exception(where, exc)
        return None


# -- the emulators and the commands -------------------------------------------------------------


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, EmulatorServer]]:
    running = {name: EmulatorServer(case.scenario).start() for name, case in CASES.items()}
    try:
        yield running
    finally:
        for server in running.values():
            server.stop()


#: ``python -m xretry`` as a user runs it, with every logger at DEBUG on stderr.
CLI = (
    "import logging, runpy, sys; "
    "logging.basicConfig(level=logging.DEBUG, format='%(name)s %(levelname)s %(message)s'); "
    "sys.argv[0] = 'xretry'; runpy.run_module('xretry', run_name='__main__', alter_sys=True)"
)


def xretry_command(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_BASE_URL", "XRETRY_STORE")}
    env["XAI_API_KEY"] = CANARY
    return subprocess.run(
        [sys.executable, "-c", CLI, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


@dataclass
class CommandRuns:
    runs: list[tuple[list[str], subprocess.CompletedProcess[str]]]
    store: Path


def run_commands(server: EmulatorServer, case: Case, directory: Path) -> CommandRuns:
    """``chat``, ``chat --deferred --store``, then ``wait ID``: a 404 if ``chat`` fetched it."""
    store = directory / "cli.db"
    common = ["--base-url", server.base_url, "--timeout", str(case.timeout)]
    runs = []
    for args in (
        ["chat", "hello", *common],
        ["chat", "later", "--deferred", "--store", str(store), *common],
    ):
        runs.append((args, xretry_command(*args)))
    match = re.search(r"request id: (\S+)", runs[-1][1].stderr)
    args = ["wait", match.group(1) if match else "no-such-id", *common]
    runs.append((args, xretry_command(*args)))
    return CommandRuns(runs, directory)


@pytest.fixture(scope="module")
def commands(
    servers: dict[str, EmulatorServer], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, CommandRuns]:
    """Every case's commands, all cases at once (each command waits on the network, mostly)."""
    with ThreadPoolExecutor(len(CASES)) as pool:
        futures = {
            name: pool.submit(
                run_commands, servers[name], case, tmp_path_factory.mktemp(f"cli-{name}")
            )
            for name, case in CASES.items()
        }
        return {name: future.result() for name, future in futures.items()}


# -- the ways in ---------------------------------------------------------------------------------


def through_the_transport(evidence: Evidence, base_url: str, seconds: float) -> None:
    transport = xretry.RetryTransport(policy=POLICY, hooks=[evidence.event])
    evidence.text("transport repr", repr(transport))
    evidence.text("policy repr", repr(transport.policy))
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": BEARER},
        transport=transport,
        timeout=seconds,
        event_hooks={"response": [xretry.raise_for_status]},
    ) as client:
        for method, path, body in [
            ("POST", "chat/completions", BODY),
            ("POST", "chat/completions", BODY),
            ("GET", "models", None),
            ("GET", "api-key", None),
        ]:
            response = capture(
                evidence, "transport", functools.partial(client.request, method, path, json=body)
            )
            if response is not None:
                evidence.response("transport", response)


async def through_the_async_transport(evidence: Evidence, base_url: str, seconds: float) -> None:
    transport = xretry.AsyncRetryTransport(policy=POLICY, hooks=[evidence.event])
    evidence.text("async transport repr", repr(transport))
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": BEARER},
        transport=transport,
        timeout=seconds,
        event_hooks={"response": [xretry.araise_for_status]},
    ) as client:
        for _ in range(3):
            response = await acapture(
                evidence, "async transport", lambda: client.post("chat/completions", json=BODY)
            )
            if response is not None:
                evidence.response("async transport", response)


def through_the_decorator(evidence: Evidence, base_url: str, seconds: float) -> None:
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": BEARER},
        timeout=seconds,
        event_hooks={"response": [xretry.raise_for_status]},
    ) as client:

        @xretry.retry(policy=POLICY, hooks=[evidence.event])
        def ask() -> Any:
            return client.post("chat/completions", json=BODY).json()

        for _ in range(3):
            capture(evidence, "decorator", ask)


async def through_the_async_decorator(evidence: Evidence, base_url: str, seconds: float) -> None:
    async with httpx.AsyncClient(
        base_url=base_url,
        headers={"Authorization": BEARER},
        timeout=seconds,
        event_hooks={"response": [xretry.araise_for_status]},
    ) as client:

        @xretry.retry(policy=POLICY, hooks=[evidence.event])
        async def ask() -> Any:
            return (await client.get("models")).json()

        for _ in range(2):
            await acapture(evidence, "async decorator", ask)


def through_the_poller(evidence: Evidence, base_url: str, seconds: float, store: Path) -> None:
    with httpx.Client(
        base_url=base_url,
        headers={"Authorization": BEARER},
        transport=xretry.RetryTransport(policy=POLICY),
        timeout=seconds,
    ) as client:
        poller = xretry.DeferredCompletions(
            client, policy=POLICY, poll=POLL, store=store / "deferred.db", hooks=[evidence.event]
        )
        evidence.text("poller repr", repr(poller))
        evidence.text("store repr", repr(poller.store))
        ids = [capture(evidence, "submit", lambda: poller.submit(**BODY)) for _ in range(3)]
        for request_id in [i for i in ids if isinstance(i, str)]:
            capture(evidence, "wait", functools.partial(poller.wait, request_id))
        for outcome in poller.resume(timeout=0.5):
            evidence.text("resume outcome", repr(outcome))
            if outcome.error is not None:
                evidence.exception("resume", outcome.error)
        evidence.files("store (open)", store)


async def through_the_async_poller(
    evidence: Evidence, base_url: str, seconds: float, store: Path
) -> None:
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": BEARER}, timeout=seconds
    ) as client:
        poller = xretry.AsyncDeferredCompletions(
            client, policy=POLICY, poll=POLL, store=store / "async.db", hooks=[evidence.event]
        )
        async with poller.as_completed([BODY, BODY, BODY], concurrency=3) as outcomes:
            async for outcome in outcomes:
                evidence.text("as_completed outcome", repr(outcome))
                if outcome.error is not None:
                    evidence.exception("as_completed", outcome.error)
        evidence.files("async store (open)", store)


# -- the tests -------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_the_key_never_comes_out(
    name: str,
    servers: dict[str, EmulatorServer],
    commands: dict[str, CommandRuns],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    case, server = CASES[name], servers[name]
    evidence = Evidence()
    caplog.set_level(logging.DEBUG)  # every logger, every level
    with no_wait():
        through_the_transport(evidence, server.base_url, case.timeout)
        asyncio.run(through_the_async_transport(evidence, server.base_url, case.timeout))
        through_the_decorator(evidence, server.base_url, case.timeout)
        asyncio.run(through_the_async_decorator(evidence, server.base_url, case.timeout))
    # The pollers sleep for real (briefly): test mode would make their polls spin.
    through_the_poller(evidence, server.base_url, case.timeout, tmp_path)
    asyncio.run(through_the_async_poller(evidence, server.base_url, case.timeout, tmp_path))
    evidence.files("stores (closed)", tmp_path)
    evidence.logs(caplog.records)
    cli = commands[name]
    for args, result in cli.runs:
        evidence.text(f"xretry {args[0]}: stdout", result.stdout)
        evidence.text(f"xretry {args[0]}: stderr", result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)
        assert result.returncode in (0, 1, 2, 3, 4, 5), (args, result.returncode)
    evidence.files("command store", cli.store)

    assert not evidence.leaks()
    # The fault really struck, typed errors really came out, and something was logged.
    stats = server.app.stats()
    struck = stats.get("rate_limited", 0) + sum(
        count for key, count in stats.items() if key.startswith("faults.")
    )
    assert struck > 0, stats
    assert evidence.errors > 0
    assert any(where.startswith("log httpx") for where, _ in evidence.items)  # logs were captured
    assert any(where.startswith("xretry chat: stderr") for where, _ in evidence.items)


def test_the_emulator_binds_loopback_by_default() -> None:
    assert inspect.signature(EmulatorServer).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    with EmulatorServer() as server:
        assert server.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(f"{server.url}/_stats").status_code == 200
        address = non_loopback_address()
        if address is not None:  # bound to loopback only: not reachable on another interface
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((address, server.port), 1).close()


def non_loopback_address() -> str | None:
    """This machine's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only, nothing is sent
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


# -- a server that echoes the key ----------------------------------------------------------------


def echoing_client(
    handler: Callable[[httpx.Request], httpx.Response],
    *,
    raise_for_status: bool = False,
    **kwargs: Any,
) -> httpx.Client:
    """A client whose server, ``handler``, is a proxy echoing the request's header."""
    return httpx.Client(
        base_url="https://api.x.ai/v1",
        headers={"Authorization": BEARER},
        transport=xretry.RetryTransport(httpx.MockTransport(handler), **kwargs),
        event_hooks={"response": [xretry.raise_for_status]} if raise_for_status else None,
    )


def test_an_echoed_key_is_masked_through_retries_notes_events_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """503s echoing the header, retried until given up, through the transport and the decorator:
    the typed error, its note, the retry events and the log lines are all masked."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()

    def handler(request: httpx.Request) -> httpx.Response:
        echoed = request.headers["authorization"]
        body = json.dumps({"code": echoed, "error": f"rejected {echoed}"}).encode()
        return httpx.Response(503, content=body)

    with (
        no_wait(),
        echoing_client(
            handler, raise_for_status=True, policy=POLICY, hooks=[evidence.event]
        ) as client,
    ):
        capture(evidence, "transport", lambda: client.post("chat/completions", json=BODY))

        @xretry.retry(policy=POLICY, hooks=[evidence.event])
        def ask() -> Any:
            return client.get("models", extensions={"xretry": False})

        capture(evidence, "decorator", ask)
    evidence.logs(caplog.records)
    assert evidence.errors == 2
    # each call: a retry event per attempt but the last, and a give-up
    assert sum(where == "retry event" for where, _ in evidence.items) == 2 * POLICY.max_attempts
    assert not evidence.leaks()


def test_a_submission_answer_echoing_the_key_is_masked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=f"echo: {request.headers['authorization']}".encode())

    evidence = Evidence()
    with echoing_client(handler) as client:
        poller = xretry.DeferredCompletions(client)
        capture(evidence, "submit", lambda: poller.submit(**BODY))
    assert evidence.errors == 1
    assert not evidence.leaks()


def test_an_unusable_result_echoing_the_key_is_neither_stored_nor_repeated(
    tmp_path: Path,
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=f"<html>{request.headers['authorization']}</html>".encode()
        )

    evidence = Evidence()
    with echoing_client(handler) as client:
        poller = xretry.DeferredCompletions(client, store=tmp_path / "deferred.db")
        capture(evidence, "first wait", lambda: poller.wait("job-1"))  # DeferredResultError
        capture(evidence, "second wait", lambda: poller.wait("job-1"))  # from the store
        evidence.files("store", tmp_path)
    assert evidence.errors == 2
    assert not evidence.leaks()


def test_a_reason_phrase_echoing_the_key_is_masked() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"].encode()
        return httpx.Response(401, content=b"", extensions={"reason_phrase": header})

    evidence = Evidence()
    with echoing_client(handler, raise_for_status=True) as client:
        capture(evidence, "transport", lambda: client.get("models"))
    assert evidence.errors == 1
    assert not evidence.leaks()


class EchoingEmulator(EmulatorApp):
    """The emulator behind a proxy that answers deferred submissions with the request's headers."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = dict(scope["headers"])
            body = b"headers: " + headers.get(b"authorization", b"")
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await super().__call__(scope, receive, send)


@pytest.mark.slow
def test_the_command_does_not_print_an_echoed_key(tmp_path: Path) -> None:
    with EmulatorServer(app=EchoingEmulator()) as server:
        result = xretry_command(
            "chat",
            "hi",
            "--deferred",
            "--store",
            str(tmp_path / "s.db"),
            "--base-url",
            server.base_url,
        )
    assert result.returncode == 1
    evidence = Evidence()
    evidence.text("stdout", result.stdout)
    evidence.text("stderr", result.stderr)
    assert not evidence.leaks()


# -- secrets the request carries elsewhere: the query string, a proxy's credentials, a bad key -----

#: A secret in the query string, a proxy's password and its ``Proxy-Authorization`` token.
QUERY_SECRET = "qs-CANARY-77e1d0c9b8a6"
PROXY_PASSWORD = "pw-CANARY-3c9d"
PROXY_TOKEN = base64.b64encode(f"user:{PROXY_PASSWORD}".encode()).decode()
ELSEWHERE = (QUERY_SECRET, PROXY_PASSWORD, PROXY_TOKEN, *NEEDLES)


class _Echo(http.server.BaseHTTPRequestHandler):
    """Any request: a 502 whose body is the request's headers, as a broken proxy sends them."""

    def _echo(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.rfile.read(length)
        body = f"upstream failed for {self.path}\n{self.headers}".encode()
        self.send_response(502)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _echo

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def echo_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def own_records(records: list[logging.LogRecord]) -> list[logging.LogRecord]:
    """Every record but the HTTP libraries' own: httpx logs each request's URL, query string
    included, at INFO, and httpcore a refused header's value at DEBUG, before xretry sees anything
    (docs/guarantees.md, section 6, "Limits")."""
    return [r for r in records if not r.name.startswith(("httpx", "httpcore"))]


def leaks_of(evidence: Evidence, needles: tuple[str, ...] = ELSEWHERE) -> list[str]:
    found = []
    for where, value in evidence.items:
        for needle in needles:
            if (needle in value) if isinstance(value, str) else (needle.encode() in value):
                found.append(f"{where} holds {needle!r}")
    return found


def _entries(
    http: Any, retry_transport: Any, inner: Any, evidence: Evidence, *, typed: bool = False
) -> dict[str, Any]:
    """A transport call and a decorated call (a plain client, and the library's own
    ``raise_for_status``, or xretry's typed errors with ``typed``)."""
    transport = retry_transport(inner(), policy=POLICY, hooks=[evidence.event])
    through_transport = http.Client(
        transport=transport, event_hooks={"response": [xretry.raise_for_status]}
    )
    plain = http.Client(transport=inner())

    def transport_call(url: str, **kwargs: Any) -> Any:
        return through_transport.get(url, **kwargs)

    @xretry.retry(policy=POLICY, hooks=[evidence.event])
    def decorated_call(url: str, **kwargs: Any) -> Any:
        response = plain.get(url, **kwargs)
        return xretry.raise_for_status(response) if typed else response.raise_for_status()

    return {"transport": (transport_call, through_transport), "decorator": (decorated_call, plain)}


@pytest.mark.parametrize("entry", ["transport", "decorator"])
def test_a_query_string_secret_never_comes_out(
    flavour: Flavour, entry: str, echo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``?api_key=...``: httpx's own messages carry the whole URL; xretry's logs, events, notes
    and the re-raised exception must not."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    calls = _entries(flavour.http, flavour.RetryTransport, flavour.http.HTTPTransport, evidence)
    call, client = calls[entry]
    with no_wait(), client:
        capture(evidence, entry, lambda: call(f"{echo_url}/v1/models?api_key={QUERY_SECRET}"))
    evidence.logs(own_records(caplog.records))
    assert evidence.errors == 1
    assert any(where == "retry event" for where, _ in evidence.items)
    assert not leaks_of(evidence)


@pytest.mark.parametrize("entry", ["transport", "decorator"])
def test_a_proxys_credentials_never_come_out(
    flavour: Flavour, entry: str, echo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The inner transport adds ``Proxy-Authorization`` (xretry never sees it on the request);
    the proxy echoes it in its 502 page: masked as what it looks like."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    proxy = echo_url.replace("http://", f"http://user:{PROXY_PASSWORD}@")

    def inner() -> Any:
        return flavour.http.HTTPTransport(proxy=proxy, trust_env=False)

    calls = _entries(flavour.http, flavour.RetryTransport, inner, evidence, typed=True)
    call, client = calls[entry]
    with no_wait(), client:
        capture(evidence, entry, lambda: call("http://api.x.ai.test/v1/models"))
    evidence.logs(own_records(caplog.records))
    assert evidence.errors == 1
    texts = [value for where, value in evidence.items if where.endswith(": str")]
    assert any("Proxy-Authorization: Basic ***" in str(text) for text in texts), texts
    assert not leaks_of(evidence)


def test_a_key_with_a_trailing_newline_never_comes_out(
    flavour: Flavour, echo_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A key read from a file, newline and all: h11 refuses the header with the value in its
    message, through every entry point (the exception's text is masked in place)."""
    caplog.set_level(logging.DEBUG)
    evidence = Evidence()
    headers = {"Authorization": f"Bearer {CANARY}\n"}
    http = flavour.http
    with no_wait():
        for entry, transport in [
            ("transport", flavour.RetryTransport(http.HTTPTransport(), policy=POLICY)),
            ("decorator", http.HTTPTransport()),
        ]:
            with http.Client(transport=transport, headers=headers) as client:

                @xretry.retry(policy=POLICY, hooks=[evidence.event])
                def decorated() -> Any:
                    return client.get(f"{echo_url}/v1/models")

                call = decorated if entry == "decorator" else decorated.__wrapped__  # type: ignore[attr-defined]
                capture(evidence, entry, call)
        with http.Client(base_url=f"{echo_url}/v1", headers=headers) as client:
            poller = xretry.DeferredCompletions(client, policy=POLICY, store=tmp_path / "s.db")
            capture(evidence, "submit", lambda: poller.submit(**BODY))
            capture(evidence, "wait", lambda: poller.wait("job-1"))
            evidence.files("store", tmp_path)

        async def asynchronously() -> None:
            transport = flavour.AsyncRetryTransport(http.AsyncHTTPTransport(), policy=POLICY)
            async with http.AsyncClient(transport=transport, headers=headers) as client:
                await acapture(evidence, "async transport", lambda: client.get(echo_url))

        asyncio.run(asynchronously())
    evidence.logs(own_records(caplog.records))
    assert evidence.errors == 5
    assert all(
        "LocalProtocolError" in str(value)
        for where, value in evidence.items
        if "traceback" in where
    )
    assert not leaks_of(evidence)
