"""The ``xretry`` command, run as a user runs it: a subprocess, against the emulator on loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from xretry._cli import main
from xretry.emulator import EmulatorServer, Fault, Scenario

CANARY = "xai-CANARY-cli-5e1d0c9b"


def xretry(
    *args: str, key: str | None = CANARY, timeout: float = 60.0
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XAI_API_KEY", "XAI_BASE_URL")}
    if key is not None:
        env["XAI_API_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "xretry", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    scenario = Scenario(
        ready_after=(0.0, 0.2),
        faults=(Fault("status", status=503, schedule=(1,), endpoints=frozenset({"chat"})),),
    )
    with EmulatorServer(scenario) as running:
        yield running


@pytest.mark.parametrize("command", [[], ["demo"], ["emulate"], ["chat"], ["wait"]])
def test_help_everywhere(command: list[str]) -> None:
    result = xretry(*command, "--help")
    assert result.returncode == 0
    assert "usage: xretry" in result.stdout
    if not command:
        assert "Exit codes" in result.stdout


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["demo"], "rich", "cli"),
        (["demo"], "uvicorn", "cli"),
        (["demo", "--json"], "uvicorn", "emulator"),  # no table: rich is not needed
        (["emulate", "--port", "0"], "uvicorn", "emulator"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    argv: list[str],
    missing: str,
    extra: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)  # `import missing` now fails
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"xretry: `xretry {argv[0]}` needs {missing}, which is not installed: "
        f"pip install 'xretry[{extra}]'\n"
    )


def test_chat_needs_no_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for module in ("rich", "uvicorn", "redis", "httpx2"):
        monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    assert main(["chat", "hi", "--base-url", "http://127.0.0.1:9/v1"]) == 2
    assert "XAI_API_KEY is not set" in capsys.readouterr().err


def test_missing_key_is_one_line_and_exit_2() -> None:
    result = xretry("chat", "hello", "--base-url", "http://127.0.0.1:9/v1", key=None)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "XAI_API_KEY is not set" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_chat_through_a_503_prints_the_reply(server: EmulatorServer) -> None:
    result = xretry("chat", "What is 2+2?", "--base-url", server.base_url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Emulated reply to: What is 2+2?"
    as_json = xretry("chat", "again", "--base-url", server.base_url, "--json")
    assert json.loads(as_json.stdout)["object"] == "chat.completion"
    assert CANARY not in result.stdout + result.stderr + as_json.stdout + as_json.stderr


@pytest.mark.slow
def test_deferred_chat_then_wait_from_the_store(server: EmulatorServer, tmp_path: Path) -> None:
    store = tmp_path / "deferred.db"
    result = xretry(
        "chat", "later", "--deferred", "--store", str(store), "--base-url", server.base_url
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"request id: (\S+)", result.stderr)
    assert match is not None
    request_id = match.group(1)
    assert result.stdout.strip() == "Emulated reply to: later"
    # Fetched once already: the server would answer 404 now, the store still has it, no key needed.
    again = xretry(
        "wait", request_id, "--store", str(store), "--base-url", "http://127.0.0.1:9/v1", key=None
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "Emulated reply to: later"
    assert CANARY.encode() not in store.read_bytes()


def test_wait_for_an_unknown_id_exits_4(server: EmulatorServer) -> None:
    result = xretry("wait", "no-such-id", "--base-url", server.base_url)
    assert result.returncode == 4
    assert "not found" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_bad_request_id_and_bad_scenario_exit_2(tmp_path: Path) -> None:
    assert xretry("wait", "../etc", "--base-url", "http://127.0.0.1:9/v1").returncode == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("rate_limit = 'fast'\n")
    result = xretry("emulate", "--scenario", str(bad), "--port", "0")
    assert result.returncode == 2
    assert "rate_limit" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_network_failure_exits_5() -> None:
    result = xretry("chat", "hi", "--base-url", "http://127.0.0.1:9/v1", timeout=120)
    assert result.returncode == 5
    assert "network failure" in result.stderr


def test_emulate_serves_on_loopback_and_prints_the_base_url(tmp_path: Path) -> None:
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"models": ["grok-test"]}))
    process = subprocess.Popen(
        [sys.executable, "-m", "xretry", "emulate", "--port", "0", "--scenario", str(scenario)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 20
        line = ""
        while time.monotonic() < deadline and "base URL" not in line:
            line = process.stdout.readline()
        match = re.search(r"base URL (http://127\.0\.0\.1:\d+/v1)", line)
        assert match is not None, line
        models = httpx.get(f"{match.group(1)}/models", headers={"authorization": "Bearer k"})
        assert [m["id"] for m in models.json()["data"]] == ["grok-test"]
    finally:
        process.terminate()
        process.communicate(timeout=20)


@pytest.mark.slow
def test_demo_runs_and_reports_json() -> None:
    result = xretry("demo", "--requests", "40", "--concurrency", "8", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    with_x, without = report["runs"]["xretry"], report["runs"]["no retries"]
    assert sum(with_x["calls"].values()) == sum(without["calls"].values()) == 40
    assert with_x["succeeded"] > without["succeeded"]
    assert with_x["requests_at_server"] > 0
