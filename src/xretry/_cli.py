"""The ``xretry`` command: ``demo``, ``emulate``, ``chat`` and ``wait``.

Exit codes (the same for every command):

====  =====================================================================================
0     success
1     the API answered with an error (the typed error's message and hint are printed)
2     bad usage or configuration (a missing ``XAI_API_KEY``, a bad scenario file, bad flags,
      an extra the command needs not installed)
3     a deferred completion was not ready before the timeout (the request id is printed)
4     a deferred completion was not found: unknown, expired, or already fetched
5     the network failed (connection refused, timeouts) after every retry
====  =====================================================================================
"""

from __future__ import annotations

import argparse
import importlib
import ipaddress
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from . import __version__
from ._deferred import DeferredCompletions
from ._errors import (
    APIStatusError,
    DeferredIdError,
    DeferredNotFoundError,
    DeferredTimeoutError,
    XRetryError,
    raise_for_status,
)
from ._policy import PollPolicy
from ._store import SQLiteDeferredStore
from ._transport import RetryTransport

__all__ = ["main"]

EXIT_OK, EXIT_API, EXIT_USAGE, EXIT_TIMEOUT, EXIT_NOT_FOUND, EXIT_NETWORK = 0, 1, 2, 3, 4, 5
DEFAULT_BASE_URL = "https://api.x.ai/v1"


class UsageError(Exception):
    """A one-line problem with how the command was called; exit code 2."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xretry",
        description="Resilient retries for the xAI API: a demo, an emulator, and a few calls.",
        epilog="Exit codes: 0 ok, 1 API error, 2 usage, 3 deferred timeout, 4 deferred not found, "
        "5 network failure.",
    )
    parser.add_argument("--version", action="version", version=f"xretry {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="run a mixed workload against a misbehaving local emulator and show what xretry did",
        description="Start the emulator on a free loopback port, run chat completions through "
        "the transport, the decorator and the deferred poller with faults injected, then the "
        "same workload with no retries, and print a summary.",
    )
    demo.add_argument("--requests", type=int, default=240, help="logical calls (default 240)")
    demo.add_argument("--concurrency", type=int, default=16, help="calls in flight (default 16)")
    demo.add_argument(
        "--duration", type=float, default=45.0, help="stop starting new calls after this (s)"
    )
    demo.add_argument("--scenario", type=Path, help="a scenario TOML/JSON file for the emulator")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument("--no-progress", action="store_true", help="no live progress display")

    emulate = commands.add_parser(
        "emulate",
        help="serve the emulator for your own app to talk to",
        description="Serve the xAI-compatible emulator until interrupted (Ctrl-C).",
    )
    emulate.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    emulate.add_argument("--port", type=int, default=8000, help="default 8000; 0 picks a free one")
    emulate.add_argument("--scenario", type=Path, help="a scenario TOML/JSON file")
    emulate.add_argument("--log-level", default="info", help="uvicorn's log level")

    chat = commands.add_parser(
        "chat",
        help="one chat completion through xretry (key from XAI_API_KEY)",
        description="Send one chat completion through xretry's transport; the API key comes "
        "from the XAI_API_KEY environment variable.",
    )
    chat.add_argument("prompt", help="the user message")
    chat.add_argument("--model", default="grok-4", help="default grok-4")
    chat.add_argument("--deferred", action="store_true", help="submit deferred and poll")
    chat.add_argument("--store", type=Path, help="SQLite deferred store (with --deferred)")
    chat.add_argument("--base-url", default=None, help=f"default {DEFAULT_BASE_URL}")
    chat.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    chat.add_argument("--json", action="store_true", help="print the whole response as JSON")

    wait = commands.add_parser(
        "wait",
        help="fetch a deferred completion by request id (from the store when it has it)",
        description="Poll for a deferred completion until it is ready; with --store, a result "
        "already fetched is served from the store instead.",
    )
    wait.add_argument("request_id")
    wait.add_argument("--store", type=Path, default=_env_path("XRETRY_STORE"))
    wait.add_argument("--base-url", default=None, help=f"default {DEFAULT_BASE_URL}")
    wait.add_argument("--timeout", type=float, default=600.0, help="seconds (default 600)")
    wait.add_argument("--json", action="store_true", help="print the whole completion as JSON")
    return parser


def _env_path(name: str) -> Path | None:
    value = os.environ.get(name)
    return Path(value) if value else None


def _api_key() -> str:
    key = os.environ.get("XAI_API_KEY", "").strip()
    if not key:
        raise UsageError(
            "XAI_API_KEY is not set: export XAI_API_KEY=<your key> (get one on "
            "https://console.x.ai), or point --base-url at `xretry emulate` with any key."
        )
    return key


def _base_url(given: str | None) -> str:
    return given or os.environ.get("XAI_BASE_URL") or DEFAULT_BASE_URL


def _client(base_url: str, timeout: float) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {_api_key()}"},
        transport=RetryTransport(),
        timeout=httpx.Timeout(min(timeout, 120.0), connect=10.0),
    )


def _print_completion(completion: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(completion, indent=2))
        return
    try:
        print(completion["choices"][0]["message"]["content"])
    except (KeyError, IndexError, TypeError):
        print(json.dumps(completion, indent=2))


def _chat(args: argparse.Namespace) -> int:
    body = {"model": args.model, "messages": [{"role": "user", "content": args.prompt}]}
    with _client(_base_url(args.base_url), args.timeout) as client:
        if args.deferred:
            store = SQLiteDeferredStore(args.store) if args.store else None
            poller = DeferredCompletions(client, store=store, poll=PollPolicy(timeout=args.timeout))
            request_id = poller.submit(**body)
            print(f"request id: {request_id}", file=sys.stderr)
            completion = poller.wait(request_id)
            poller.acknowledge(request_id)
        else:
            response = client.post("chat/completions", json=body)
            raise_for_status(response)
            completion = _completion_of(response)
    _print_completion(completion, args.json)
    return EXIT_OK


def _completion_of(response: httpx.Response) -> dict[str, Any]:
    """The chat completion a 200 carries; a body that is not one is the API's fault (exit 1),
    not a usage error."""
    try:
        completion = response.json()
    except ValueError:
        completion = None
    if not isinstance(completion, dict):
        raise XRetryError(
            f"the API answered {response.status_code} but its body ({len(response.content)} "
            "bytes) is not a JSON chat completion; try again, or check the --base-url"
        )
    return completion


def _wait(args: argparse.Namespace) -> int:
    store = SQLiteDeferredStore(args.store) if args.store else None
    if store is not None:
        record = store.get(args.request_id)
        if record is not None and record.state == "done" and record.result is not None:
            _print_completion(record.result, args.json)  # no key needed: nothing is fetched
            return EXIT_OK
    with _client(_base_url(args.base_url), args.timeout) as client:
        poller = DeferredCompletions(client, store=store, poll=PollPolicy(timeout=args.timeout))
        completion = poller.wait(args.request_id)
        poller.acknowledge(args.request_id)
    _print_completion(completion, args.json)
    return EXIT_OK


def _emulate(args: argparse.Namespace) -> int:
    from .emulator import Scenario, serve

    scenario = Scenario.load(args.scenario) if args.scenario else None
    if not _is_loopback(args.host):
        print(
            f"warning: binding {args.host}: the emulator is reachable from other machines",
            file=sys.stderr,
        )

    def ready(base_url: str) -> None:
        print(f"xretry emulator: base URL {base_url}  (any bearer key; Ctrl-C to stop)")
        print(f"  stats: {base_url.removesuffix('/v1')}/_stats", flush=True)

    serve(scenario, host=args.host, port=args.port, log_level=args.log_level, on_ready=ready)
    return EXIT_OK


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    if args.requests < 1 or args.concurrency < 1 or args.duration <= 0:
        raise UsageError("--requests and --concurrency must be >= 1, --duration > 0")
    return run_demo(
        requests=args.requests,
        concurrency=args.concurrency,
        duration=args.duration,
        scenario_path=args.scenario,
        as_json=args.json,
        progress=not args.no_progress,
    )


_COMMANDS = {"demo": _demo, "emulate": _emulate, "chat": _chat, "wait": _wait}


def _extra(args: argparse.Namespace) -> tuple[str, tuple[str, ...]] | None:
    """The extra a command needs and the modules it brings, or ``None``: ``pip install xretry``
    alone runs ``chat`` and ``wait``; the emulator needs uvicorn, the demo's table rich."""
    if args.command == "emulate" or (args.command == "demo" and args.json):
        return "emulator", ("uvicorn",)
    if args.command == "demo":
        return "cli", ("rich", "uvicorn")
    return None


def _check_extra(args: argparse.Namespace) -> None:
    """Fail before doing anything, in one line naming the extra to install, rather than with
    an ``ImportError`` halfway through a run."""
    needed = _extra(args)
    if needed is None:
        return
    extra, modules = needed
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError:
            raise UsageError(
                f"`xretry {args.command}` needs {module}, which is not installed: "
                f"pip install 'xretry[{extra}]'"
            ) from None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``xretry`` command line; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        _check_extra(args)
        return _COMMANDS[args.command](args)
    except UsageError as exc:
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DeferredTimeoutError as exc:
        print(f"xretry: {exc}", file=sys.stderr)
        print(f"resume with: xretry wait {exc.request_id}", file=sys.stderr)
        return EXIT_TIMEOUT
    except DeferredNotFoundError as exc:
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_NOT_FOUND
    except DeferredIdError as exc:  # a request id that cannot be polled: the caller's to fix
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (APIStatusError, XRetryError) as exc:
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_API
    except ValueError as exc:  # bad scenario files, bad request ids
        print(f"xretry: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except httpx.TransportError as exc:
        print(f"xretry: network failure: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_NETWORK
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
