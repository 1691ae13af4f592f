"""The emulator in the fault matrix: one uvicorn for the session, a fresh app per cell."""

from __future__ import annotations

from typing import Any

import httpx

from xretry.emulator import EmulatorApp, Fault, Scenario

from ._harness import AUTH, CHAT, TLS, Entry

__all__ = [
    "SwappableApp",
    "aimed",
    "requests_seen",
    "submit_job",
]


class SwappableApp(EmulatorApp):
    """An :class:`EmulatorApp` that hands every HTTP request to ``current``.

    Starting and stopping uvicorn costs ~0.2 s; swapping the app behind one server gives each
    cell a fresh scenario, fault counters and statistics for nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.current = EmulatorApp()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.current(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def _endpoint(entry: Entry) -> str:
    return "deferred" if entry.polls else "chat"


def aimed(entry: Entry, *faults: Fault, endpoint: str | None = None, **settings: Any) -> Scenario:
    """A scenario whose ``faults`` strike where ``entry`` sends (or on ``endpoint``): the poll
    endpoint for the pollers' ``wait`` and ``as_completed``, chat completions for the rest.
    Deferred completions are ready at once unless ``ready_after`` says otherwise."""
    endpoints = frozenset({endpoint or _endpoint(entry)})
    return Scenario(
        faults=tuple(
            Fault(
                f.kind,
                rate=f.rate,
                schedule=f.schedule,
                window=f.window,
                status=f.status,
                seconds=f.seconds,
                endpoints=endpoints,
            )
            for f in faults
        ),
        **{"ready_after": (0.0, 0.0), **settings},
    )


def requests_seen(app: EmulatorApp, entry: Entry) -> int:
    """Requests the app saw on the endpoint ``entry`` sends to."""
    return int(app.stats().get(f"requests.{_endpoint(entry)}", 0))


def submit_job(base_url: str) -> str:
    """Submit a deferred completion outside the call under test; its request id."""
    with httpx.Client(base_url=base_url, headers=AUTH, verify=TLS, trust_env=False) as client:
        response = client.post("/chat/completions", json={**CHAT, "deferred": True})
        response.raise_for_status()
        request_id = response.json()["request_id"]
    assert isinstance(request_id, str)
    return request_id
