"""Guarantees (and their limits) from docs/guarantees.md that no other test file pins down.

* A deadline bounds each socket operation, not an attempt: a server trickling its answer a byte
  at a time holds the call past ``deadline``; ``anyio.fail_after`` is the hard bound.
* A deferred submission is a billed POST: once it may have reached the server (a read timeout,
  a connection dropped after sending), it is not sent again, by ``submit`` or by ``as_completed``.
* A fault ends in a clear error: ``xretry chat`` answered with a body that is not JSON exits 1
  ("the API answered with an error"), not 2 ("bad usage or configuration").
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import httpx
import pytest

import xretry
from xretry.emulator import EmulatorApp, EmulatorServer, Fault, Scenario
from xretry.testing import no_wait

BODY = {"model": "grok-4", "messages": [{"role": "user", "content": "once"}]}
#: The trickle: this many body bytes, one every GAP seconds, each well within any read timeout.
BYTES, GAP = 10, 0.12
DEADLINE = 0.3


@contextmanager
def trickling_server() -> Iterator[str]:
    """A loopback server that sends its headers at once, then the body a byte at a time."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        with connection:
            connection.recv(65536)
            head = f"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {BYTES}\r\n\r\n"
            connection.sendall(head.encode())
            for _ in range(BYTES):
                if stop.wait(GAP):
                    return
                try:
                    connection.sendall(b".")
                except OSError:  # the client gave up
                    return

    thread = threading.Thread(target=serve, name="trickle", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop.set()
        listener.close()
        thread.join(5)


@pytest.mark.slow
def test_a_trickling_server_holds_a_call_past_its_deadline() -> None:
    """The documented limit: each read is within the (capped) timeout, the whole is not."""
    policy = xretry.RetryPolicy(deadline=DEADLINE)
    with (
        trickling_server() as url,
        httpx.Client(transport=xretry.RetryTransport(policy=policy)) as client,
    ):
        started = time.monotonic()
        response = client.get(url)
        elapsed = time.monotonic() - started
    assert response.content == b"." * BYTES
    assert elapsed > DEADLINE * 3  # about BYTES * GAP = 1.2 s: the deadline did not bound it


@pytest.mark.anyio
async def test_fail_after_is_the_hard_bound_on_a_trickling_server() -> None:
    policy = xretry.RetryPolicy(deadline=DEADLINE)
    with trickling_server() as url:
        async with httpx.AsyncClient(transport=xretry.AsyncRetryTransport(policy=policy)) as client:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                with anyio.fail_after(DEADLINE):
                    await client.get(url)
            elapsed = time.monotonic() - started
    assert elapsed < DEADLINE + 0.4  # the trickle alone takes BYTES * GAP = 1.2 s


class AnswerLost(httpx.AsyncBaseTransport):
    """The emulator in-process, but the answer to the first POST is lost after the server acted
    on it (it created the job): what a read timeout looks like from the client."""

    def __init__(self, app: EmulatorApp) -> None:
        self.app = app
        self.inner = httpx.ASGITransport(app=app)
        self.posts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST":
            self.posts += 1
            if self.posts == 1:
                await response.aread()
                raise httpx.ReadTimeout("timed out waiting for the answer", request=request)
        return response


@pytest.mark.anyio
async def test_submit_does_not_resend_a_post_the_server_may_have_acted_on() -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    transport = AnswerLost(app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator/v1", headers={"authorization": "Bearer k"}
    ) as client:
        poller = xretry.AsyncDeferredCompletions(client)
        with no_wait(), pytest.raises(httpx.ReadTimeout):
            await poller.submit(**BODY)
    assert app.stats()["deferred_submitted"] == 1
    assert transport.posts == 1


@pytest.mark.anyio
async def test_as_completed_does_not_resubmit_a_post_the_server_may_have_acted_on() -> None:
    app = EmulatorApp(Scenario(ready_after=(0.0, 0.0)))
    transport = AnswerLost(app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://emulator/v1", headers={"authorization": "Bearer k"}
    ) as client:
        poller = xretry.AsyncDeferredCompletions(client)
        with no_wait():
            async with poller.as_completed([BODY]) as results:
                outcomes = [outcome async for outcome in results]
    assert app.stats()["deferred_submitted"] == 1, "a second job was created (and paid for)"
    assert len(outcomes) == 1
    assert isinstance(outcomes[0].error, httpx.ReadTimeout)


@pytest.mark.slow
def test_the_command_reports_a_garbage_answer_as_the_apis_fault() -> None:
    scenario = Scenario(faults=(Fault("garbage", schedule=(1,), endpoints=frozenset({"chat"})),))
    env = {k: v for k, v in os.environ.items() if k != "XAI_BASE_URL"}
    env["XAI_API_KEY"] = "xai-test"
    with EmulatorServer(scenario) as server:
        result = subprocess.run(
            [sys.executable, "-m", "xretry", "chat", "hi", "--base-url", server.base_url],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    assert "Traceback" not in result.stderr
    assert result.returncode == 1, result.stderr  # 2 would send the user to their own config
    assert "JSON" in result.stderr  # says what was wrong with the answer
