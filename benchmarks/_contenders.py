"""The clients the emulator benchmarks race: httpx-retries, tenacity, stamina, the openai SDK's own
retries, and xretry's transport, each opened the same way for every script that measures them.

A script picks its contenders from these openers with its own settings (``goodput.py`` with real
waits, ``outage.py`` with every configurable wait scaled down; ``goodput_processes.py`` xretry's
transport in each worker) and lists them as :class:`Contender` rows. An opener is an async context
manager giving a :class:`Session`: ``call(base_url, i)`` makes chat completion ``i`` against the
API at ``base_url`` and raises if it failed, so one session can outlive one emulator (``outage.py``
keeps its clients, and what their gates learned, from the outage into the recovery).

Every httpx client sends to absolute URLs, with ``Authorization: Bearer``, ``trust_env=False`` (a
``*_PROXY`` variable would otherwise put a proxy in front of the emulator) and a pool of
``Setup.connections`` connections; the pool is not the contender. The openai SDK keeps its own.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import httpx_retries
import openai
import stamina
import tenacity
from openai.types.chat import ChatCompletionMessageParam

import xretry

__all__ = [
    "API_KEY",
    "MODEL",
    "PACKAGES",
    "Contender",
    "Opener",
    "Session",
    "Setup",
    "body",
    "client",
    "open_httpx_retries",
    "open_openai",
    "open_stamina",
    "open_tenacity",
    "open_xretry",
    "pool",
    "url",
]

API_KEY = "bench-key"
MODEL = "grok-4"

#: The distributions behind the contenders, and the emulator's server: what a report names.
PACKAGES = (
    "xretry",
    "httpx",
    "httpx2",
    "httpx-retries",
    "tenacity",
    "stamina",
    "openai",
    "uvicorn",
)


@dataclass(frozen=True)
class Setup:
    """What a script sets for all its contenders alike."""

    #: Connections in an httpx client's pool.
    connections: int
    #: Multiplies every configurable backoff wait (``outage.py`` scales them down).
    wait_scale: float = 1.0
    #: The user message is ``f"{prompt} {i}"`` for call ``i``.
    prompt: str = "Benchmark call"


@dataclass
class Session:
    """One contender, ready: ``call(base_url, i)`` makes call ``i`` there, raising if it failed.

    ``notes()`` returns what the contender saw since the last ``notes()`` (xretry's attempts per
    call, give-ups, its gate and budget), and starts counting afresh.
    """

    call: Callable[[str, int], Awaitable[None]]
    gate: xretry.Gate | None = None
    notes: Callable[[], dict[str, Any]] = dict


Opener = Callable[[str, Setup], contextlib.AbstractAsyncContextManager[Session]]


@dataclass(frozen=True)
class Contender:
    key: str
    name: str
    description: str
    #: ``open(base_url, setup)``: ``base_url`` is where the first calls go.
    open: Opener
    #: The row a script's targets are for (``goodput.py``).
    target: bool = False
    #: The row the others are compared with (``outage.py``).
    baseline: bool = False


def body(i: int, setup: Setup) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": f"{setup.prompt} {i}"}]}


def url(base_url: str) -> str:
    return f"{base_url}/chat/completions"


def pool(connections: int) -> httpx.AsyncHTTPTransport:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx.AsyncHTTPTransport(limits=limits)


def client(transport: httpx.AsyncBaseTransport) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {API_KEY}"},
        transport=transport,
        timeout=httpx.Timeout(30.0),
        trust_env=False,
    )


def _retryable(exc: BaseException) -> bool:
    """What the issue's tenacity and stamina users retry: 429, 5xx and transport errors."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        return status == 429 or status >= 500
    return isinstance(exc, httpx.TransportError)


def _retry_after_hook(exc: Exception) -> bool | float:
    """Retry 429/5xx and transport errors; a ``retry-after`` in seconds is the wait."""
    if not _retryable(exc):
        return False
    if isinstance(exc, httpx.HTTPStatusError):
        value = exc.response.headers.get("retry-after", "")
        with contextlib.suppress(ValueError):
            return float(value)
    return True


@contextlib.asynccontextmanager
async def open_httpx_retries(base_url: str, setup: Setup) -> AsyncIterator[Session]:
    """``RetryTransport(retry=Retry(total=10, backoff_factor=0.5, allowed_methods=+POST,
    status_forcelist=[429, 5xx]))``: without POST it would not retry a chat completion at all."""
    retry = httpx_retries.Retry(
        total=10,
        backoff_factor=0.5 * setup.wait_scale,
        allowed_methods=[*httpx_retries.Retry.RETRYABLE_METHODS, "POST"],
        status_forcelist=[429, 500, 502, 503, 504],
    )
    transport = httpx_retries.RetryTransport(transport=pool(setup.connections), retry=retry)
    async with client(transport) as http:

        async def call(base_url: str, i: int) -> None:
            (await http.post(url(base_url), json=body(i, setup))).raise_for_status()

        yield Session(call)


@contextlib.asynccontextmanager
async def open_tenacity(base_url: str, setup: Setup) -> AsyncIterator[Session]:
    """Per call, ``AsyncRetrying(wait_random_exponential(multiplier=1, max=60),
    stop_after_attempt(10), 429/5xx/transport errors, reraise=True)`` on a plain client."""
    scale = setup.wait_scale
    async with client(pool(setup.connections)) as http:

        async def call(base_url: str, i: int) -> None:
            async for attempt in tenacity.AsyncRetrying(
                wait=tenacity.wait_random_exponential(multiplier=1 * scale, max=60 * scale),
                stop=tenacity.stop_after_attempt(10),
                retry=tenacity.retry_if_exception(_retryable),
                reraise=True,
            ):
                with attempt:
                    (await http.post(url(base_url), json=body(i, setup))).raise_for_status()

        yield Session(call)


def open_stamina(*, honour_retry_after: bool) -> Opener:
    """Per call, ``retry_context(on=..., attempts=10)`` on a plain client, stamina's default waits
    (``wait_initial=0.1``, ``wait_max=5``, ``wait_jitter=1``, times ``wait_scale``). ``on``
    retries 429/5xx and transport errors; with ``honour_retry_after`` it also returns a 429's
    ``retry-after`` as the wait (stamina's backoff hook: it reads no header by itself)."""
    on = _retry_after_hook if honour_retry_after else _retryable

    @contextlib.asynccontextmanager
    async def opener(base_url: str, setup: Setup) -> AsyncIterator[Session]:
        stamina.instrumentation.set_on_retry_hooks([])  # no logging of a few thousand retries
        scale = setup.wait_scale
        async with client(pool(setup.connections)) as http:

            async def call(base_url: str, i: int) -> None:
                async for attempt in stamina.retry_context(
                    on=on,
                    attempts=10,
                    wait_initial=0.1 * scale,
                    wait_max=5.0 * scale,
                    wait_jitter=1.0 * scale,
                ):
                    with attempt:
                        (await http.post(url(base_url), json=body(i, setup))).raise_for_status()

            yield Session(call)

    return opener


def open_openai(*, max_retries: int) -> Opener:
    """``AsyncOpenAI(base_url, api_key, max_retries=...).chat.completions.create`` (openai 3.x, on
    httpx2, its own default client). Its waits are its own: ``wait_scale`` does not reach them."""

    @contextlib.asynccontextmanager
    async def opener(base_url: str, setup: Setup) -> AsyncIterator[Session]:
        async with openai.AsyncOpenAI(
            base_url=base_url, api_key=API_KEY, max_retries=max_retries
        ) as first:
            by_url: dict[str, openai.AsyncOpenAI] = {base_url: first}

            async def call(base_url: str, i: int) -> None:
                sdk = by_url.get(base_url)
                if sdk is None:  # another emulator: the same client (and pool), another URL
                    sdk = by_url[base_url] = first.with_options(base_url=base_url)
                messages: list[ChatCompletionMessageParam] = [
                    {"role": "user", "content": f"{setup.prompt} {i}"}
                ]
                await sdk.chat.completions.create(model=MODEL, messages=messages)

            yield Session(call)

    return opener


def open_xretry(
    gate: Callable[[], xretry.Gate | Literal[False] | None] = lambda: None,
    policy: Callable[[Setup], xretry.RetryPolicy | None] = lambda setup: None,
) -> Opener:
    """``httpx.AsyncClient(transport=xretry.AsyncRetryTransport(policy=..., gate=...))`` and
    ``xretry.raise_for_status``. ``gate`` and ``policy`` are called afresh per opening; ``None``
    is the transport's default (its own gate; ``RetryPolicy()``)."""

    @contextlib.asynccontextmanager
    async def opener(base_url: str, setup: Setup) -> AsyncIterator[Session]:
        transport = xretry.AsyncRetryTransport(
            pool(setup.connections), policy=policy(setup), gate=gate()
        )
        own = transport.gate
        attempts: Counter[int] = Counter()
        stops: Counter[str] = Counter()
        slept = 0.0
        async with client(transport) as http:

            async def call(base_url: str, i: int) -> None:
                nonlocal slept
                response = await http.post(url(base_url), json=body(i, setup))
                history = response.extensions.get("xretry")
                if isinstance(history, xretry.RetryHistory):
                    attempts[history.attempt_count] += 1
                    slept += history.total_delay
                    if history.gave_up:
                        stops[(history.stop_reason or "gave up").split(" (")[0]] += 1
                xretry.raise_for_status(response)

            def notes() -> dict[str, Any]:
                nonlocal slept
                found: dict[str, Any] = {
                    "attempts_per_call": dict(sorted(attempts.items())),
                    "gave_up": dict(stops),
                    "retry_sleep_s_total": round(slept, 2),
                }
                attempts.clear()
                stops.clear()
                slept = 0.0
                if own is not None:
                    found["gate_rate_at_end"] = own.rate
                    found["gate_429s_seen"] = own.rate_limited
                    if own.budget is not None:
                        found["budget"] = {
                            "tokens": round(own.budget.tokens, 2),
                            "exhausted": own.budget.exhausted,
                            "retries_denied": own.budget.retries_denied,
                            "calls_refused": own.budget.calls_refused,
                        }
                return found

            yield Session(call, gate=own, notes=notes)

    return opener
