"""Hints fit the host that answered: xAI's console, key variable and status page for api.x.ai and
unknown hosts; Anthropic's and OpenAI's own for theirs (the anthropic and openai SDKs reach them
through the same transports and typed errors)."""

from __future__ import annotations

import json

import pytest

import xretry

from .conftest import Flavour

ANTHROPIC_401 = {
    "type": "error",
    "error": {"type": "authentication_error", "message": "invalid x-api-key"},
}


def error_for(flavour: Flavour, url: str, status: int, body: object) -> xretry.APIStatusError:
    request = flavour.http.Request("POST", url)
    response = flavour.http.Response(status, content=json.dumps(body).encode(), request=request)
    with pytest.raises(xretry.APIStatusError) as caught:
        xretry.raise_for_status(response)
    return caught.value


@pytest.mark.parametrize(
    ("host", "console", "key", "status_page"),
    [
        ("api.x.ai", "https://console.x.ai", "XAI_API_KEY", "https://status.x.ai"),
        ("llm-proxy.internal", "https://console.x.ai", "XAI_API_KEY", "https://status.x.ai"),
        (
            "api.anthropic.com",
            "https://console.anthropic.com",
            "ANTHROPIC_API_KEY",
            "https://status.anthropic.com",
        ),
        (
            "api.openai.com",
            "https://platform.openai.com",
            "OPENAI_API_KEY",
            "https://status.openai.com",
        ),
    ],
)
def test_hints_name_the_answering_hosts_console_key_and_status_page(
    flavour: Flavour, host: str, console: str, key: str, status_page: str
) -> None:
    others = {"XAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"} - {key}
    url = f"https://{host}/v1/messages"
    auth = error_for(flavour, url, 401, ANTHROPIC_401)
    assert type(auth) is xretry.AuthenticationError
    assert key in auth.hint
    assert console in auth.hint
    limited = error_for(flavour, url, 429, {"error": {"message": "slow down"}})
    assert console in limited.hint
    overloaded = error_for(flavour, url, 529, {"error": {"type": "overloaded_error"}})
    assert type(overloaded) is xretry.ServerError
    assert status_page in overloaded.hint
    for error in (auth, limited, overloaded):
        assert not any(other in str(error) for other in others)


def test_anthropics_error_body_gives_its_message(flavour: Flavour) -> None:
    error = error_for(flavour, "https://api.anthropic.com/v1/messages", 401, ANTHROPIC_401)
    assert error.message == "invalid x-api-key"
    assert "x-api-key: <ANTHROPIC_API_KEY>" in error.hint


def test_default_hints_stay_xais() -> None:
    assert "XAI_API_KEY" in xretry.AuthenticationError.default_hint
    assert xretry.ServerError.hint_for("api.anthropic.com") != xretry.ServerError.default_hint
    assert xretry.NotFoundError.hint_for("api.anthropic.com") == xretry.NotFoundError.default_hint
