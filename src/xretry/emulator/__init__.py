"""An xAI-compatible API server that misbehaves on purpose, for demos, tests and benchmarks.

No API key, no network, no bill: chat completions (normal and deferred), models, api-key, with
rate limits, spent credits, 5xx bursts, slow and dropped connections and broken bodies, all driven
by a seeded :class:`Scenario`. Bound to 127.0.0.1 unless told otherwise.

In-process (nothing but httpx)::

    app = EmulatorApp(Scenario(rate_limit=5))
    client = httpx.Client(transport=httpx.ASGITransport(app), base_url="http://emulator/v1")

Over loopback sockets (needs ``xretry[emulator]``)::

    with EmulatorServer(Scenario(faults=[Fault("status", status=503, rate=0.2)])) as server:
        client = httpx.Client(base_url=server.base_url, transport=xretry.RetryTransport())

Or from a shell: ``xretry emulate --scenario my.toml``. See ``docs/emulator.md``.
"""

from ._app import Dropped, EmulatorApp
from ._scenario import FAULT_KINDS, HINT_MODES, Fault, Scenario
from ._server import EmulatorServer, serve

__all__ = [
    "Dropped",
    "EmulatorApp",
    "EmulatorServer",
    "FAULT_KINDS",
    "Fault",
    "HINT_MODES",
    "Scenario",
    "serve",
]
