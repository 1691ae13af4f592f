"""What xretry does, in ten seconds, with no API key and no network.

A local mock of the xAI chat-completions endpoint misbehaves the way the real one can: it
rate-limits (429 with ``retry-after-ms``), has a 503 hiccup, rejects a missing key (401) and
reports spent credits (a 429 that must not be retried). xretry's transport retries what is worth
retrying, returns the rest at once, and ``raise_for_status`` turns failures into typed errors with
a hint.

Run it with ``make demo`` (or ``python examples/demo.py`` inside the venv).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable

import httpx

import xretry

COMPLETION = {
    "id": "demo-1",
    "object": "chat.completion",
    "model": "grok-4",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the mock!"}}],
}


def scripted(*answers: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    """A mock endpoint that plays ``answers`` in order, then keeps repeating the last one."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        return httpx.Response(answer.status_code, headers=answer.headers, content=answer.content)

    return handler


def call(title: str, handler: Callable[[httpx.Request], httpx.Response], key: str | None) -> None:
    print(f"\n== {title}")
    transport = xretry.RetryTransport(httpx.MockTransport(handler))
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(
        base_url="https://api.x.ai/v1", transport=transport, headers=headers
    ) as client:
        started = time.perf_counter()
        response = client.post(
            "/chat/completions",
            json={"model": "grok-4", "messages": [{"role": "user", "content": "Hi"}]},
        )
        took = time.perf_counter() - started
    history: xretry.RetryHistory = response.extensions["xretry"]
    for attempt in history.attempts:
        slept = "" if attempt.delay is None else f" -> slept {attempt.delay:.2f}s"
        print(f"   attempt {attempt.number}: {attempt.reason}{slept}")
    try:
        xretry.raise_for_status(response)
    except xretry.APIStatusError as error:
        print(f"   {type(error).__name__}: {error}".replace("\n", "\n   "))
    else:
        content = response.json()["choices"][0]["message"]["content"]
        print(f"   -> {response.status_code} in {took:.2f}s: {content!r}")


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="   [log] %(name)s %(levelname)s %(message)s")
    ok = httpx.Response(200, json=COMPLETION)
    limited = httpx.Response(
        429,
        headers={"retry-after-ms": "300"},
        json={"code": "Too many requests", "error": "Rate limit reached for requests per second"},
    )
    call("rate limited twice, then served", scripted(limited, limited, ok), "xai-demo-key")
    call(
        "a 503 hiccup (backoff with full jitter)",
        scripted(httpx.Response(503, text="upstream unavailable"), ok),
        "xai-demo-key",
    )
    call(
        "no API key: 401 is fatal, returned at once",
        scripted(
            httpx.Response(
                401, json={"code": "Unauthenticated", "error": "No auth token was provided."}
            )
        ),
        None,
    )
    spent = {
        "code": "Some resource has been exhausted",
        "error": "Your team demo has either used all available credits or reached its monthly "
        "spending limit. To continue making API requests, please purchase more credits.",
    }
    call(
        "spent credits: a 429 that retrying cannot fix",
        scripted(httpx.Response(429, json=spent)),
        "xai-demo-key",
    )
    print("\nThe 429s and the 503 were retried; the 401 and the spent-credits 429 were not.")
    print(json.dumps({"xretry": xretry.__version__, "httpx": httpx.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
