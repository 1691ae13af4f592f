"""The emulator's ASGI app: an xAI-compatible API that misbehaves on purpose, reproducibly.

Plain ASGI (no framework): the faults need control below what frameworks expose, such as closing
the connection before or in the middle of a response. Served by uvicorn over loopback sockets
(:mod:`._server`) or in-process through ``httpx.ASGITransport``.

Order of checks on the inference endpoints, like a real gateway: method, auth, rate limit, spent
credits, injected faults, then the request itself (415, 400, 422, 404), then the answer.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import anyio
import anyio.lowlevel

from ._scenario import Fault, Scenario

__all__ = ["EmulatorApp"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: gRPC status texts, as xAI puts them in the ``code`` field of an error body.
_CODES = {
    400: "Client specified an invalid argument",
    401: "Unauthenticated",
    403: "Permission denied",
    404: "Some requested entity was not found",
    405: "Method not allowed",
    415: "Unsupported media type",
    422: "Client specified an invalid argument",
    429: "Some resource has been exhausted",
    500: "Internal error",
    502: "Bad gateway",
    503: "The service is currently unavailable",
    504: "Deadline exceeded",
}

_DEFERRED_PREFIX = "/v1/chat/deferred-completion/"
_MAX_BODY = 4 * 1024 * 1024
_HTML = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>"
)


class Dropped(ConnectionResetError):
    """Raised in-process (no socket to close) where the emulator would drop the connection."""


@dataclass
class _Job:
    ready_at: float
    expires_at: float
    completion: dict[str, Any]
    fetched: bool = False


#: The rate-limit headers a request's success carries (set once the request is admitted).
_LIMIT_HEADERS: ContextVar[dict[str, str]] = ContextVar("xretry_emulator_limits", default={})  # noqa: B039


class _Bucket:
    """A token bucket: ``rate`` tokens a second, at most ``burst`` saved up."""

    __slots__ = ("last", "tokens")

    def __init__(self, burst: int, now: float) -> None:
        self.tokens = float(burst)
        self.last = now


class EmulatorApp:
    """An xAI-compatible ASGI app driven by a :class:`Scenario`.

    ``stats()`` returns what was served (also at ``GET /_stats``); ``reset_stats()`` zeroes it
    (also ``POST /_stats/reset``). ``clock`` is injectable for tests (monotonic seconds).
    """

    def __init__(
        self, scenario: Scenario | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.scenario = Scenario() if scenario is None else scenario
        self._clock = clock
        self._lock = threading.Lock()
        self._rng = random.Random(self.scenario.seed)
        self._start = clock()
        self._buckets: dict[str, _Bucket] = {}
        self._fault_counts = [0] * len(self.scenario.faults)
        self._jobs: dict[str, _Job] = {}
        self._counter = 0
        self._stats: Counter[str] = Counter()
        self._lags: list[float] = []

    # -- public -------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters of what was served: requests, statuses, 429s, polls, faults, deferred jobs."""
        with self._lock:
            stats: dict[str, Any] = dict(sorted(self._stats.items()))
            lags = list(self._lags)
            pending = sum(1 for job in self._jobs.values() if not job.fetched)
        stats["deferred_pending"] = pending
        stats["deferred_lag_mean"] = sum(lags) / len(lags) if lags else None
        stats["deferred_lag_max"] = max(lags) if lags else None
        return stats

    def reset_stats(self) -> None:
        with self._lock:
            self._stats.clear()
            self._lags.clear()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":  # pragma: no cover - websockets are not part of the API
            return
        await self._http(scope, receive, send)

    # -- plumbing -----------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._stats[key] += 1

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        method: str = scope["method"]
        path: str = scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        body = await _read_body(receive)
        # The emulator's own endpoints are not API traffic: they are answered uncounted.
        if path == "/_stats" and method == "GET":
            await _json(send, 200, self.stats())
            return
        if path == "/_stats/reset" and method == "POST":
            self.reset_stats()
            await _json(send, 200, {"reset": True})
            return
        endpoint = _endpoint(path)
        self._count("requests", f"requests.{endpoint}")
        _LIMIT_HEADERS.set({})  # in-process (ASGI), the caller's context is ours: start clean
        retry_count = headers.get("x-stainless-retry-count", "0")
        if retry_count.isdigit() and int(retry_count) > 0:
            self._count("sdk_retries")

        allowed = _allowed_methods(path)
        if allowed is None:
            await self._error(send, 404, f"The endpoint {path} does not exist.")
            return
        if method not in allowed:
            await self._error(
                send,
                405,
                f"Method {method} is not allowed on {path}; use {'/'.join(allowed)}.",
                {"allow": ", ".join(allowed)},
            )
            return

        key = await self._authenticate(headers, send)
        if key is None:
            return
        if endpoint in ("chat", "deferred"):
            admitted = await self._admit(key, send)
            if admitted is None:
                return
            _LIMIT_HEADERS.set(admitted)
        if await self._inject(endpoint, send):
            return

        if endpoint == "chat":
            await self._chat(headers, body, send)
        elif endpoint == "deferred":
            await self._poll(path[len(_DEFERRED_PREFIX) :], send)
        elif path == "/v1/models":
            await self._ok(
                send, {"object": "list", "data": [_model(m) for m in self.scenario.models]}
            )
        elif path.startswith("/v1/models/"):
            name = path[len("/v1/models/") :]
            if name not in self.scenario.models:
                await self._error(send, 404, f"The model {name} does not exist.")
            else:
                await self._ok(send, _model(name))
        else:  # /v1/api-key
            masked = f"{key[:4]}***{key[-2:]}" if len(key) > 8 else "***"
            await self._ok(
                send,
                {"redacted_api_key": masked, "api_key_blocked": False, "api_key_disabled": False},
            )

    async def _ok(self, send: Send, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._count("status.200")
        limits = _LIMIT_HEADERS.get()
        await _json(send, 200, payload, {**limits, **headers} if headers else limits)

    async def _error(
        self, send: Send, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        self._count(f"status.{status}")
        payload = {"code": _CODES.get(status, "Unknown"), "error": message}
        await _json(send, status, payload, headers)

    # -- auth and rate limits -------------------------------------------------------------------

    async def _authenticate(self, headers: dict[str, str], send: Send) -> str | None:
        value = headers.get("authorization", "")
        scheme, _, token = value.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            await self._error(
                send, 401, "No auth token was provided or it is malformed: use Bearer <key>."
            )
            return None
        keys = self.scenario.api_keys
        if keys is not None and token not in keys:
            masked = f"{token[:2]}***{token[-2:]}" if len(token) > 4 else "***"
            await self._error(
                send,
                400,
                f"Incorrect API key provided: {masked}. You can obtain an API key from "
                "https://console.x.ai.",
            )
            return None
        if token in self.scenario.blocked_keys:
            await self._error(send, 403, "Your API key or team is blocked.")
            return None
        return token

    async def _admit(self, key: str, send: Send) -> dict[str, str] | None:
        """Spend a token of the key's bucket: the headers for the success, or ``None`` (answered
        with a 429 already)."""
        scenario = self.scenario
        if scenario.quota_exhausted:
            self._count("quota_429")
            await self._error(
                send,
                429,
                "Your team t-emulator has either used all available credits or reached its "
                "monthly spending limit. To continue making API requests, please purchase more "
                "credits or raise your spending limit.",
            )
            return None
        if scenario.rate_limit is None:
            return {}
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = _Bucket(scenario.burst, now)
            bucket.tokens = min(
                float(scenario.burst), bucket.tokens + (now - bucket.last) * scenario.rate_limit
            )
            bucket.last = now
            admitted = bucket.tokens >= 1.0
            if admitted:
                bucket.tokens -= 1.0
            tokens = bucket.tokens
        if admitted:
            return self._budget_headers(tokens)
        wait = (1.0 - tokens) / scenario.rate_limit
        self._count("rate_limited")
        await self._error(
            send,
            429,
            f"Rate limit reached: {scenario.rate_limit:g} requests per second. "
            "Reduce your request rate or increase your rate limit on xAI Console.",
            self._hint_headers(wait, tokens),
        )
        return None

    def _hint_headers(self, wait: float, tokens: float) -> dict[str, str]:
        """A 429's headers: the wait for the next token (whole seconds, and ms in "full" mode)."""
        mode = self.scenario.hints
        if mode == "none":
            return {}
        seconds = max(1, math.ceil(wait))  # delta-seconds are whole numbers (RFC 9110)
        if mode == "retry-after":
            return {"retry-after": str(seconds)}
        return {
            "retry-after": str(seconds),
            "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
            **self._budget_headers(tokens),
        }

    def _budget_headers(self, tokens: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*-requests`` on every response in "full" mode: the bucket's size,
        the whole requests left in it, and the time until it is full again."""
        scenario = self.scenario
        if scenario.hints != "full" or scenario.rate_limit is None:
            return {}
        full_in = max(0.0, scenario.burst - tokens) / scenario.rate_limit
        return {
            "x-ratelimit-limit-requests": str(scenario.burst),
            "x-ratelimit-remaining-requests": str(max(0, math.floor(tokens))),
            "x-ratelimit-reset-requests": f"{math.ceil(full_in * 1000)}ms",
        }

    # -- faults -------------------------------------------------------------------------------

    def _pick_fault(self, endpoint: str) -> Fault | None:
        elapsed = self._clock() - self._start
        chosen: Fault | None = None
        with self._lock:
            for index, fault in enumerate(self.scenario.faults):
                if endpoint not in fault.endpoints:
                    continue
                self._fault_counts[index] += 1
                number = self._fault_counts[index]
                hit = fault.scheduled(number)
                if fault.window is not None and fault.window[0] <= elapsed < fault.window[1]:
                    hit = True
                if fault.rate and self._rng.random() < fault.rate:
                    hit = True
                if hit and chosen is None:
                    chosen = fault
        return chosen

    async def _inject(self, endpoint: str, send: Send) -> bool:
        """Apply a fault if one strikes; True when the request has been answered (or dropped)."""
        if self.scenario.latency:
            await anyio.sleep(self.scenario.latency)
        fault = self._pick_fault(endpoint)
        if fault is None:
            return False
        self._count(f"faults.{fault.kind}")
        kind = fault.kind
        if kind == "latency":
            await anyio.sleep(fault.seconds)
            return False
        if kind == "status":
            await self._error(send, fault.status, "Injected failure: the service is unavailable.")
        elif kind == "html":
            self._count("status.502")
            await _raw(send, 502, _HTML, "text/html")
        elif kind == "garbage":
            self._count("status.200")
            await _raw(send, 200, b"\x00\xffthis is not json{", "application/json")
        elif kind == "truncate":
            self._count("status.200")
            body = json.dumps(_completion("grok-4", "truncated", self._next_id())).encode()
            await _start(send, 200, "application/json", {"content-length": str(len(body))})
            await _part(send, body[: len(body) // 2])
            await _drop(send)
        elif kind == "drop_during":
            await _start(send, 200, "application/json", {"content-length": "4096"})
            await _part(send, b'{"id": "chatcmpl')
            await _drop(send)
        elif kind == "drop_before":
            await _drop(send)
        elif kind == "hang":
            await anyio.sleep_forever()  # until the client gives up or the server stops
        return True

    # -- the API ------------------------------------------------------------------------------

    def _next_id(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    async def _chat(self, headers: dict[str, str], body: bytes, send: Send) -> None:
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if not body:
            await self._error(send, 415, "The request body is empty. Add a valid request body.")
            return
        if content_type != "application/json":
            await self._error(send, 415, "Set the Content-Type: application/json header.")
            return
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            await self._error(send, 400, "The request body is not valid JSON.")
            return
        problem = _validate(data)
        if problem:
            await self._error(send, 422, problem)
            return
        model = data["model"]
        if model not in self.scenario.models:
            await self._error(
                send,
                404,
                f"The model {model} does not exist or your team does not have access to it.",
            )
            return
        prompt = _last_user_message(data["messages"])
        completion = _completion(model, prompt, self._next_id())
        if data.get("deferred") is True:
            low, high = self.scenario.ready_after
            now = self._clock()
            with self._lock:
                request_id = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
                ready_at = now + self._rng.uniform(low, high)
                self._jobs[request_id] = _Job(
                    ready_at, ready_at + self.scenario.expire_after, completion
                )
                self._stats["deferred_submitted"] += 1
            await self._ok(send, {"request_id": request_id})
            return
        await self._ok(send, completion)

    async def _poll(self, request_id: str, send: Send) -> None:
        now = self._clock()
        self._count("polls")
        with self._lock:
            job = self._jobs.get(request_id)
            state = "missing"
            if job is not None:
                if job.fetched:
                    state = "fetched"
                elif now >= job.expires_at:
                    state = "expired"
                elif now < job.ready_at:
                    state = "pending"
                else:
                    state = "ready"
                    job.fetched = True
                    self._lags.append(now - job.ready_at)
                    self._stats["deferred_delivered"] += 1
        if state == "pending":
            self._count("polls_pending", "status.202")
            await _raw(send, 202, b"", None)
        elif state == "ready":
            assert job is not None
            await self._ok(send, job.completion)
        else:
            self._count(f"deferred_{state}")
            await self._error(
                send,
                404,
                f"The deferred completion {request_id} was not found: unknown, expired, "
                "or already fetched.",
            )


# -- helpers -----------------------------------------------------------------------------------


def _endpoint(path: str) -> str:
    if path == "/v1/chat/completions":
        return "chat"
    if path.startswith(_DEFERRED_PREFIX) and len(path) > len(_DEFERRED_PREFIX):
        return "deferred"
    return "other"


def _allowed_methods(path: str) -> tuple[str, ...] | None:
    if path == "/v1/chat/completions":
        return ("POST",)
    if path.startswith(_DEFERRED_PREFIX) and len(path) > len(_DEFERRED_PREFIX):
        return ("GET",)
    if path in ("/v1/models", "/v1/api-key") or path.startswith("/v1/models/"):
        return ("GET",)
    return None


def _validate(data: object) -> str | None:
    if not isinstance(data, dict):
        return "The request body must be a JSON object."
    if not isinstance(data.get("model"), str) or not data["model"]:
        return "Field 'model' must be a non-empty string."
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        return "Field 'messages' must be a non-empty array."
    for message in messages:
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return "Each message must be an object with a string 'role'."
    if "deferred" in data and not isinstance(data["deferred"], bool):
        return "Field 'deferred' must be a boolean."
    temperature = data.get("temperature")
    if temperature is not None and (
        isinstance(temperature, bool) or not isinstance(temperature, int | float)
    ):
        return "Field 'temperature' must be a number."
    return None


def _last_user_message(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        content = message.get("content")
        if message.get("role") == "user" and isinstance(content, str):
            return content
    return ""


def _completion(model: str, prompt: str, number: int) -> dict[str, Any]:
    text = f"Emulated reply to: {prompt[:200]}" if prompt else "Emulated reply."
    prompt_tokens = max(1, len(prompt.split()))
    completion_tokens = len(text.split())
    return {
        "id": f"chatcmpl-emu-{number}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _model(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 1_700_000_000, "owned_by": "xai"}


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= _MAX_BODY:
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _start(
    send: Send, status: int, content_type: str | None, headers: dict[str, str] | None = None
) -> None:
    raw = [(b"server", b"xretry-emulator")]
    if content_type:
        raw.append((b"content-type", content_type.encode()))
    for name, value in (headers or {}).items():
        raw.append((name.encode(), value.encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})


async def _raw(send: Send, status: int, body: bytes, content_type: str | None) -> None:
    await _start(send, status, content_type, {"content-length": str(len(body))})
    await send({"type": "http.response.body", "body": body})


async def _json(
    send: Send, status: int, payload: Any, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps(payload, separators=(",", ":")).encode()
    extra = {"content-length": str(len(body)), **(headers or {})}
    await _start(send, status, "application/json", extra)
    await send({"type": "http.response.body", "body": body})


async def _part(send: Send, body: bytes) -> None:
    await send({"type": "http.response.body", "body": body, "more_body": True})


async def _drop(send: Send) -> None:
    """Close the connection under the request: over uvicorn, the socket; in-process, raise."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "close"):
        raise Dropped("the emulator dropped the connection")
    transport.close()
    # Let the server notice the closed socket before the app returns, so it doesn't try to
    # answer on it.
    for _ in range(3):
        await anyio.lowlevel.checkpoint()
