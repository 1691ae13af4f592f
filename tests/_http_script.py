"""A scripted HTTP server on 127.0.0.1 that speaks just enough Anthropic and OpenAI for the SDKs.

``ScriptedServer(protocol)`` answers each request with the next scripted :class:`Answer` (an error
status with a body and headers), then with success: a JSON message or, when the request asks for
``"stream": true``, a server-sent-event stream in that API's shape. Every request is counted with
its ``x-stainless-retry-count`` header (the SDKs' mark on their own retries).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Literal

REPLY_WORDS: Final = ("Hello", " from", " loopback")
REPLY: Final = "".join(REPLY_WORDS)

Protocol = Literal["anthropic", "openai"]


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def anthropic_error(status: int, kind: str, message: str, **headers: str) -> Answer:
    return Answer(status, {"type": "error", "error": {"type": kind, "message": message}}, headers)


def openai_error(status: int, kind: str, message: str, **headers: str) -> Answer:
    body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
    return Answer(status, body, headers)


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {text}\n\n")
    return "".join(out).encode()


def _anthropic_message() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 3},
    }


def _anthropic_stream() -> bytes:
    start = {**_anthropic_message(), "content": [], "stop_reason": None}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for word in REPLY_WORDS:
        delta = {"type": "text_delta", "text": word}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": 3},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse(events)


def _openai_completion() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "grok-4",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": REPLY},
                "finish_reason": "stop",
            }
        ],
    }


def _openai_stream() -> bytes:
    events: list[tuple[str | None, dict[str, Any] | str]] = []
    for word in REPLY_WORDS:
        chunk = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "grok-4",
            "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}],
        }
        events.append((None, chunk))
    events.append((None, "[DONE]"))
    return _sse(events)


class ScriptedServer:
    """``with ScriptedServer("anthropic") as server:`` serves on ``server.url`` (a free port)."""

    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self.answers: list[Answer] = []
        self.requests: list[tuple[str, str, int]] = []  # (method, path, x-stainless-retry-count)
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.base_url = f"{self.url}/v1"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def queue(self, *answers: Answer) -> None:
        with self._lock:
            self.answers.extend(answers)

    @property
    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    @property
    def sdk_retries(self) -> int:
        with self._lock:
            return sum(1 for *_, retry in self.requests if retry > 0)

    def _next(self, method: str, path: str, retry: int) -> Answer | None:
        with self._lock:
            self.requests.append((method, path, retry))
            return self.answers.pop(0) if self.answers else None

    def _success(self, streaming: bool) -> tuple[str, bytes]:
        if self.protocol == "anthropic":
            if streaming:
                return "text/event-stream", _anthropic_stream()
            return "application/json", json.dumps(_anthropic_message()).encode()
        if streaming:
            return "text/event-stream", _openai_stream()
        return "application/json", json.dumps(_openai_completion()).encode()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                retry = self.headers.get("x-stainless-retry-count", "0")
                answer = server._next("POST", self.path, int(retry) if retry.isdigit() else 0)
                if answer is not None:
                    payload = json.dumps(answer.body).encode()
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    content_type = "application/json"
                else:
                    content_type, payload = server._success(bool(body.get("stream")))
                    self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
