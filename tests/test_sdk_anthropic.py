"""The real anthropic SDK (2.x, on httpx2) through ``xretry.httpx2``, on 127.0.0.1.

Wired as the docs say: ``http_client=httpx2.Client(transport=xretry.httpx2.RetryTransport())``
and ``max_retries=0``. The server (``_http_script.py``) answers Anthropic's error bodies (529
``overloaded_error``, 429 ``rate_limit_error``) and then a message or an event stream. xretry's
waits are recorded by ``no_wait()``; nothing sleeps.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx2
import pytest

pytest.importorskip("anthropic")

import anthropic

import xretry
import xretry.httpx2
from xretry import RetryPolicy
from xretry.testing import no_wait

from ._http_script import REPLY, ScriptedServer, anthropic_error

API_KEY = "sk-ant-CANARY-0123456789abcdef"
MESSAGES: Any = [{"role": "user", "content": "hi"}]
OVERLOADED = anthropic_error(529, "overloaded_error", "Overloaded")
RATE_LIMITED = anthropic_error(429, "rate_limit_error", "Rate limited", **{"retry-after": "2"})


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer("anthropic") as running:
        yield running


def sync_client(server: ScriptedServer, **options: Any) -> anthropic.Anthropic:
    transport = xretry.httpx2.RetryTransport(**options)
    return anthropic.Anthropic(
        api_key=API_KEY,
        base_url=server.url,
        http_client=httpx2.Client(transport=transport),
        max_retries=0,
    )


def async_client(server: ScriptedServer, **options: Any) -> anthropic.AsyncAnthropic:
    transport = xretry.httpx2.AsyncRetryTransport(**options)
    return anthropic.AsyncAnthropic(
        api_key=API_KEY,
        base_url=server.url,
        http_client=httpx2.AsyncClient(transport=transport),
        max_retries=0,
    )


def ask(client: anthropic.Anthropic) -> str:
    message = client.messages.create(model="claude-test", max_tokens=16, messages=MESSAGES)
    block = message.content[0]
    assert block.type == "text"
    return block.text


def text_of(events: Any) -> str:
    return "".join(
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    )


def test_a_529_overloaded_is_retried_by_default(server: ScriptedServer) -> None:
    server.queue(OVERLOADED)
    with sync_client(server) as client, no_wait() as schedule:
        assert ask(client) == REPLY
    assert server.count == 2
    assert len(schedule.delays) == 1


def test_an_overload_outage_ends_in_the_sdks_error_after_max_attempts(
    server: ScriptedServer,
) -> None:
    server.queue(*[OVERLOADED] * 5)
    client = sync_client(server, policy=RetryPolicy(max_attempts=3))
    with client, no_wait(), pytest.raises(anthropic.APIStatusError) as caught:
        ask(client)
    assert caught.value.status_code == 529
    assert server.count == 3


def test_streaming_after_a_529_and_a_429(server: ScriptedServer) -> None:
    server.queue(OVERLOADED, RATE_LIMITED)
    with sync_client(server) as client, no_wait() as schedule:
        stream = client.messages.create(
            model="claude-test", max_tokens=16, messages=MESSAGES, stream=True
        )
        with stream:
            assert text_of(stream) == REPLY
    assert server.count == 3
    assert schedule.delays[0] == 0.5  # the backoff after the 529
    assert schedule.delays[1] >= 0.99  # the 429's retry-after: 2 (the gate's certain part)


@pytest.mark.anyio
async def test_async_streaming_after_a_529_and_a_429(server: ScriptedServer) -> None:
    server.queue(OVERLOADED, RATE_LIMITED)
    client = async_client(server)
    async with client:
        with no_wait():
            stream = await client.messages.create(
                model="claude-test", max_tokens=16, messages=MESSAGES, stream=True
            )
            async with stream:
                text = text_of([event async for event in stream])
    assert text == REPLY
    assert server.count == 3


def test_typed_errors_on_anthropics_bodies_read_message_and_code(server: ScriptedServer) -> None:
    """``raise_for_status`` as an httpx2 event hook, on Anthropic's error shape."""
    server.queue(anthropic_error(400, "invalid_request_error", "max_tokens: field required"))
    http = httpx2.Client(
        base_url=server.url,
        transport=xretry.httpx2.RetryTransport(),
        event_hooks={"response": [xretry.raise_for_status]},
    )
    with http, pytest.raises(xretry.BadRequestError) as caught:
        http.post("/v1/messages", json={"model": "claude-test"}, headers={"x-api-key": API_KEY})
    assert "max_tokens: field required" in caught.value.message
    assert API_KEY not in str(caught.value)
