"""The emulator over real loopback sockets (uvicorn in a thread): what in-process tests cannot
show, such as connections really closed under the client. Few and fast: each server costs ~0.1 s.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

import xretry
from xretry import RetryPolicy
from xretry.emulator import EmulatorApp, EmulatorServer, Fault, Scenario

from .conftest import FakeClock, Flavour

KEY = "xai-loopback-key-0123456789"
AUTH = {"authorization": f"Bearer {KEY}"}
CHAT: dict[str, Any] = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}


def test_binds_loopback_and_serves_httpx_and_httpx2(flavour: Flavour) -> None:
    with EmulatorServer() as server:
        assert server.host == "127.0.0.1"
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", server.base_url)
        assert server.port > 0
        assert server._socket is not None
        assert server._socket.getsockname()[0] == "127.0.0.1"
        with flavour.http.Client(base_url=server.base_url, headers=AUTH) as client:
            models = client.get("/models")
            assert models.status_code == 200
            assert "grok-4" in [m["id"] for m in models.json()["data"]]
            reply = client.post("/chat/completions", json=CHAT)
            assert reply.status_code == 200
            assert reply.json()["object"] == "chat.completion"
            assert client.post("/models", json=CHAT).status_code == 405
        with httpx.Client() as plain:
            stats = plain.get(server.url + "/_stats").json()
    assert stats["status.200"] == 2
    assert stats["status.405"] == 1


def test_faults_over_sockets(flavour: Flavour) -> None:
    scenario = Scenario(
        faults=(
            Fault("drop_before", schedule=(1,)),
            Fault("drop_during", schedule=(2,)),
            Fault("truncate", schedule=(3,)),
            Fault("html", schedule=(4,)),
        )
    )
    http = flavour.http
    with (
        EmulatorServer(scenario) as server,
        http.Client(base_url=server.base_url, headers=AUTH) as client,
    ):
        with pytest.raises(http.RemoteProtocolError, match="without sending a response"):
            client.post("/chat/completions", json=CHAT)
        for _ in ("drop_during", "truncate"):
            with client.stream("POST", "/chat/completions", json=CHAT) as response:
                assert response.status_code == 200
                with pytest.raises(http.RemoteProtocolError):
                    response.read()
        page = client.post("/chat/completions", json=CHAT)
        assert page.status_code == 502
        assert page.headers["content-type"] == "text/html"
        assert "502 Bad Gateway" in page.text
        healthy = client.post("/chat/completions", json=CHAT)
        assert healthy.json()["object"] == "chat.completion"
        stats = server.app.stats()
    assert [stats[f"faults.{kind}"] for kind in ("drop_before", "drop_during", "truncate")] == [
        1
    ] * 3


def test_retry_transport_rides_out_503s_and_429s(clock: FakeClock) -> None:
    """Scheduled 503s and a token bucket with full hints: xretry ends in a 200.

    The emulator and xretry share one fake clock that moves only when xretry sleeps (its backoff
    and its gate's waits), so the bucket refills by exactly the waits xretry chose: the run is the
    same every time.
    """
    scenario = Scenario(
        rate_limit=0.5, burst=1, hints="full", faults=(Fault("status", schedule=((1, 2),)),)
    )
    app = EmulatorApp(scenario, clock=clock)
    transport = xretry.RetryTransport(
        policy=RetryPolicy(max_attempts=8, jitter=0.0), sleep=clock.sleep, clock=clock
    )
    with (
        EmulatorServer(app=app) as server,
        httpx.Client(base_url=server.base_url, headers=AUTH, transport=transport) as client,
    ):
        response = client.post("/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    history = response.extensions["xretry"]
    assert [a.status_code for a in history.attempts] == [503, 429, 503, 200]
    stats = app.stats()
    assert stats["requests"] == 4
    assert stats["status.503"] == stats["faults.status"] == 2
    assert stats["status.429"] == stats["rate_limited"] == 1
    assert stats["status.200"] == 1
    # Backoff 0.5 s leaves the bucket a quarter full: the 429 asks for 1.5 s (retry-after-ms),
    # which the gate waits out (its shared cooldown: the 429 itself is not slept on), and the
    # third attempt's backoff (2 s) refills a token for the last try.
    assert clock.slept == pytest.approx([0.5, 1.5, 2.0])


def test_deferred_completion_polled_until_200(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(ready_after=(3.0, 3.0)), clock=clock)
    with (
        EmulatorServer(app=app) as server,
        httpx.Client(base_url=server.base_url, headers=AUTH) as client,
    ):
        submitted = client.post("/chat/completions", json={**CHAT, "deferred": True})
        request_id = submitted.json()["request_id"]
        statuses = []
        for _ in range(10):
            poll = client.get(f"/chat/deferred-completion/{request_id}")
            statuses.append(poll.status_code)
            if poll.status_code == 200:
                break
            assert poll.content == b""
            assert xretry.classify(poll).verdict is xretry.Verdict.POLL
            clock.sleep(1.0)
        assert statuses == [202, 202, 202, 200]
        assert poll.json()["object"] == "chat.completion"
        again = client.get(f"/chat/deferred-completion/{request_id}")
        assert again.status_code == 404
    assert app.stats()["polls"] == 5
    assert app.stats()["deferred_delivered"] == 1


def test_port_after_stop_says_not_running() -> None:
    server = EmulatorServer().start()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.port
