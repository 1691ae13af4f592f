"""Keeping secrets out of text: what a request carries, and masking it wherever text is echoed.

Every message, note, log line, event and stored error that may hold server or exception text goes
through :func:`redact` with the request's :func:`request_secrets`; URLs are shown with
:func:`display_url`, which leaves out the query string and userinfo.
"""

from __future__ import annotations

from typing import Any

__all__ = ["display_url", "redact", "request_secrets"]


def request_secrets(request: Any) -> list[str]:
    """The credentials a request carries, to be masked wherever server or error text is echoed."""
    try:
        headers = request.headers
    except AttributeError:
        return []
    secrets = []
    for name in ("authorization", "x-api-key", "api-key", "proxy-authorization"):
        value = headers.get(name)
        if not value:
            continue
        secrets.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in {"bearer", "basic", "token"}:
            secrets.append(token.strip())
    # Longest first, so a full header value is masked before its token.
    return sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)


def display_url(request: Any) -> str:
    """Scheme, host, port and path: a query string or userinfo may carry credentials."""
    url = request.url
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}{url.path}"


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    return text
