"""The emulator's injected faults (by schedule, rate and seed, time window, endpoint) in-process,
and scenarios: validation, and loading from TOML and JSON files.

Latency and hangs run on trio with an autojumping mock clock: virtual seconds, no real waiting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest
import trio
import trio.testing

import xretry
from xretry.emulator import FAULT_KINDS, Dropped, EmulatorApp, Fault, Scenario

from .conftest import FakeClock
from .test_emulator import CHAT, DEFERRED, POLL, assert_xai_error, call, chat

VIRTUAL_TIME = [("trio", {"clock": trio.testing.MockClock(autojump_threshold=0)})]


async def outcome(app: EmulatorApp, method: str = "POST", path: str = "/chat/completions") -> str:
    """``"200"``-style status, or ``"dropped"`` when the emulator dropped the connection."""
    try:
        response = await call(app, method, path, json=CHAT if method == "POST" else None)
    except Dropped:
        return "dropped"
    return str(response.status_code)


async def outcomes(app: EmulatorApp, count: int) -> list[str]:
    return [await outcome(app) for _ in range(count)]


def test_dropped_is_a_connection_reset() -> None:
    assert issubclass(Dropped, ConnectionResetError)
    assert set(FAULT_KINDS) == {
        *("status", "html", "garbage", "truncate", "drop_before", "drop_during", "latency", "hang")
    }


# -- each kind ------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_status_fault_by_numbers_and_ranges() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("status", status=500, schedule=(2, (4, 5), (7, 7))),)))
    assert await outcomes(app, 8) == ["200", "500", "200", "500", "500", "200", "500", "200"]
    assert app.stats()["faults.status"] == 4
    assert app.stats()["status.500"] == 4


@pytest.mark.anyio
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_status_fault_is_an_xai_shaped_server_error(status: int) -> None:
    app = EmulatorApp(Scenario(faults=(Fault("status", status=status, schedule=(1,)),)))
    assert_xai_error(await chat(app), status, xretry.ServerError)


@pytest.mark.anyio
async def test_status_fault_default_is_503_and_429_is_a_rate_limit() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("status", schedule=(1,)),)))
    assert_xai_error(await chat(app), 503, xretry.ServerError)
    app = EmulatorApp(Scenario(faults=(Fault("status", status=429, schedule=(1,)),)))
    assert_xai_error(await chat(app), 429, xretry.RateLimitError)


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["truncate", "drop_before", "drop_during"])
async def test_drop_faults_raise_dropped_in_process(kind: Any) -> None:
    app = EmulatorApp(Scenario(faults=(Fault(kind, schedule=(2,)),)))
    assert await outcomes(app, 3) == ["200", "dropped", "200"]
    assert app.stats()[f"faults.{kind}"] == 1


@pytest.mark.anyio
async def test_html_fault_is_a_502_page() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("html", schedule=(1,)),)))
    response = await chat(app)
    assert response.status_code == 502
    assert response.headers["content-type"] == "text/html"
    assert response.text.lower().startswith("<!doctype html")
    with pytest.raises(xretry.ServerError, match="HTML"):
        xretry.raise_for_status(response)
    assert app.stats()["faults.html"] == app.stats()["status.502"] == 1


@pytest.mark.anyio
async def test_garbage_fault_is_a_200_that_is_not_json() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("garbage", schedule=(1,)),)))
    response = await chat(app)
    assert response.status_code == 200
    with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
        response.json()
    assert (await chat(app)).json()["object"] == "chat.completion"


@pytest.mark.anyio
async def test_zero_second_latency_fault_answers_normally() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("latency", seconds=0.0, schedule=(1,)),)))
    assert (await chat(app)).json()["object"] == "chat.completion"
    assert app.stats()["faults.latency"] == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", VIRTUAL_TIME)
async def test_latency_delays_the_answer() -> None:
    app = EmulatorApp(
        Scenario(latency=2.0, faults=(Fault("latency", seconds=30.0, schedule=(2,)),))
    )
    timings = []
    for _ in range(2):
        start = trio.current_time()
        assert (await chat(app)).status_code == 200
        timings.append(trio.current_time() - start)
    assert timings[0] == pytest.approx(2.0, abs=0.01)
    assert timings[1] == pytest.approx(32.0, abs=0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", VIRTUAL_TIME)
async def test_hang_does_not_answer_within_its_seconds() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("hang", seconds=600.0, schedule=(1,)),)))
    with anyio.move_on_after(599.0) as scope:
        await chat(app)
    assert scope.cancelled_caught
    assert app.stats()["faults.hang"] == 1
    assert (await chat(app)).status_code == 200


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", VIRTUAL_TIME)
async def test_hang_never_answers_as_documented() -> None:
    app = EmulatorApp(Scenario(faults=(Fault("hang", schedule=(1,)),)))
    with anyio.move_on_after(3600.0) as scope:
        await chat(app)
    assert scope.cancelled_caught


# -- when faults strike ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_rate_faults_follow_the_seed() -> None:
    def app(seed: int, rate: float = 0.3) -> EmulatorApp:
        return EmulatorApp(Scenario(seed=seed, faults=(Fault("status", rate=rate),)))

    first = await outcomes(app(7), 40)
    assert first == await outcomes(app(7), 40)
    assert first != await outcomes(app(8), 40)
    assert 4 <= first.count("503") <= 24
    assert set(await outcomes(app(1, rate=1.0), 5)) == {"503"}
    assert set(await outcomes(app(1, rate=0.0), 5)) == {"200"}


@pytest.mark.anyio
async def test_seed_also_fixes_deferred_request_ids() -> None:
    async def ids(seed: int) -> list[str]:
        app = EmulatorApp(Scenario(seed=seed))
        replies = [await call(app, "POST", "/chat/completions", json=DEFERRED) for _ in range(3)]
        return [r.json()["request_id"] for r in replies]

    assert await ids(5) == await ids(5)
    assert await ids(5) != await ids(6)


@pytest.mark.anyio
async def test_window_faults_follow_the_clock(clock: FakeClock) -> None:
    app = EmulatorApp(Scenario(faults=(Fault("status", window=(10.0, 20.0)),)), clock=clock)
    seen = []
    for at in (0.0, 9.99, 10.0, 19.99, 20.0, 100.0):
        clock.now = 1000.0 + at
        seen.append(await outcome(app))
    assert seen == ["200", "200", "503", "503", "200", "200"]


@pytest.mark.anyio
async def test_endpoints_restrict_faults() -> None:
    scenario = Scenario(
        ready_after=(0.0, 0.0),
        faults=(
            Fault("status", status=500, schedule=(1, 3)),  # default: chat and deferred
            Fault("status", status=502, schedule=(1,), endpoints=frozenset({"other"})),
            Fault("status", status=504, schedule=(2,), endpoints=frozenset({"deferred"})),
        ),
    )
    app = EmulatorApp(scenario)
    assert await outcome(app, "GET", "/models") == "502"
    assert await outcome(app, "GET", "/models") == "200"
    assert await outcome(app) == "500"
    request_id = (await call(app, "POST", "/chat/completions", json=DEFERRED)).json()["request_id"]
    polls = [await outcome(app, "GET", POLL + request_id) for _ in range(4)]
    assert polls == ["500", "504", "200", "404"]
    assert await outcome(app, "GET", "/api-key") == "200"


@pytest.mark.anyio
async def test_schedule_counts_only_requests_past_auth_and_rate_limit(clock: FakeClock) -> None:
    scenario = Scenario(rate_limit=1.0, burst=1, faults=(Fault("status", schedule=(2,)),))
    app = EmulatorApp(scenario, clock=clock)
    assert (await chat(app, key=None)).status_code == 401
    assert await outcome(app) == "200"
    assert await outcome(app) == "429"
    clock.sleep(1.0)
    assert await outcome(app) == "503"


# -- scenarios ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"seed": "7"}, "seed"),
        ({"seed": True}, "seed"),
        ({"api_keys": "one-key"}, "api_keys"),
        ({"blocked_keys": 5}, "blocked_keys"),
        ({"models": ()}, "models"),
        ({"models": "grok-4"}, "models"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": float("inf")}, "rate_limit"),
        ({"rate_limit": "5"}, "rate_limit"),
        ({"burst": 0}, "burst"),
        ({"burst": 2.5}, "burst"),
        ({"hints": "some"}, "hints"),
        ({"ready_after": (3.0, 1.0)}, "ready_after"),
        ({"ready_after": (-1.0, 1.0)}, "ready_after"),
        ({"expire_after": 0}, "expire_after"),
        ({"latency": -1}, "latency"),
        ({"latency": float("nan")}, "latency"),
        ({"ready_after": (1.0, 2.0, 3.0)}, "ready_after"),
        ({"ready_after": 5.0}, "ready_after"),
    ],
)
def test_scenario_rejects_bad_values_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Scenario(**changes)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"kind": "explode"}, "kind"),
        ({"rate": 1.5}, "rate"),
        ({"rate": -0.1}, "rate"),
        ({"schedule": (0,)}, "schedule"),
        ({"schedule": ((1, 2, 3),)}, "schedule"),
        ({"schedule": ("3",)}, "schedule"),
        ({"schedule": (True,)}, "schedule"),
        ({"window": (5.0, 1.0)}, "window"),
        ({"status": 600}, "status"),
        ({"status": 503.0}, "status"),
        ({"seconds": -1.0}, "seconds"),
        ({"endpoints": frozenset()}, "endpoints"),
        ({"endpoints": frozenset({"models"})}, "endpoints"),
        ({"window": (1.0,)}, "window"),
    ],
)
def test_fault_rejects_bad_values_naming_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Fault(**{"kind": "status", **changes})


TOML = """
seed = 7
rate_limit = 40
burst = 12
hints = "retry-after"
ready_after = [0.5, 1.5]
api_keys = ["k1", "k2"]

[[faults]]
kind = "status"
status = 502
rate = 0.1

[[faults]]
kind = "drop_before"
schedule = [3, [5, 8]]
window = [10, 20]
endpoints = ["deferred"]
"""

AS_JSON: dict[str, Any] = {
    "seed": 7,
    "rate_limit": 40,
    "burst": 12,
    "hints": "retry-after",
    "ready_after": [0.5, 1.5],
    "api_keys": ["k2", "k1"],
    "faults": [
        {"kind": "status", "status": 502, "rate": 0.1},
        {
            "kind": "drop_before",
            "schedule": [3, [5, 8]],
            "window": [10, 20],
            "endpoints": ["deferred"],
        },
    ],
}


def test_load_toml(tmp_path: Path) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(TOML, encoding="utf-8")
    scenario = Scenario.load(path)
    assert (scenario.seed, scenario.rate_limit, scenario.burst) == (7, 40, 12)
    assert scenario.hints == "retry-after"
    assert scenario.ready_after == (0.5, 1.5)
    assert scenario.api_keys == frozenset({"k1", "k2"})
    assert scenario.faults == (
        Fault("status", status=502, rate=0.1),
        Fault(
            "drop_before",
            schedule=(3, (5, 8)),
            window=(10.0, 20.0),
            endpoints=frozenset({"deferred"}),
        ),
    )
    assert Scenario.load(str(path)) == scenario


def test_load_json_equals_toml(tmp_path: Path) -> None:
    toml_path, json_path = tmp_path / "s.toml", tmp_path / "s.json"
    toml_path.write_text(TOML, encoding="utf-8")
    json_path.write_text(json.dumps(AS_JSON), encoding="utf-8")
    assert Scenario.load(json_path) == Scenario.load(toml_path)


@pytest.mark.parametrize(
    ("text", "suffix", "match"),
    [
        ("seed = 1\nrate_limits = 5\nbogus = 1\n", ".toml", "unknown scenario key(s): bogus, rate"),
        ('[[faults]]\nkind = "status"\nstatuss = 503\n', ".toml", "unknown fault key(s): statuss"),
        ('{"seed": 1, "hint": "full"}', ".json", "unknown scenario key(s): hint"),
        ("seed = \n", ".toml", "not valid toml"),
        ('{"seed": 1,', ".json", "not valid json"),
        ("[1, 2]", ".json", "table/object"),
        ("burst = 0\n", ".toml", "burst"),
        ('faults = "status"\n', ".toml", "faults"),
    ],
)
def test_load_rejects_bad_files_naming_the_file(
    tmp_path: Path, text: str, suffix: str, match: str
) -> None:
    path = tmp_path / f"my-scenario{suffix}"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match="my-scenario") as info:
        Scenario.load(path)
    assert match in str(info.value)


def test_load_missing_file_or_directory_names_it(tmp_path: Path) -> None:
    for path in (tmp_path / "absent.toml", tmp_path):
        with pytest.raises(ValueError, match="cannot read scenario file") as info:
            Scenario.load(path)
        assert str(path) in str(info.value)


def test_load_binary_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe\x00seed = 1")
    with pytest.raises(ValueError, match=r"binary\.toml"):
        Scenario.load(path)


def test_scenario_keyword_arguments_accept_fault_mappings() -> None:
    faults: Any = [{"kind": "html", "schedule": [[1, 2]]}]  # mappings, as the docs allow
    scenario = Scenario(faults=faults)
    assert scenario.faults == (Fault("html", schedule=((1, 2),)),)
    assert scenario.replace(seed=3).faults == scenario.faults
    with pytest.raises(ValueError, match="burst"):
        scenario.replace(burst=0)


def test_defaults_behave_like_a_healthy_api() -> None:
    scenario = Scenario()
    assert scenario.faults == ()
    assert scenario.rate_limit is None
    assert scenario.quota_exhausted is False
    assert scenario.api_keys is None
