"""Keeping secrets out of text: what a request carries, and masking it wherever text is echoed.

Every message, note, log line, event and stored error that may hold server or exception text goes
through :func:`redact` with the request's :func:`request_secrets`; URLs are shown with
:func:`display_url`, which leaves out the query string and userinfo. An exception xretry re-raises
is passed through :func:`scrub` first: its own text (and its causes') is masked in place.

Two layers: the request's known credentials (its auth headers, its query string and the values in
it, a password in its URL), masked wherever they appear; and what *looks* like a credential
whatever its value (a header echoed as ``Authorization: Bearer ...`` or ``Proxy-Authorization:
Basic ...``, an ``api_key=`` parameter, a password in a URL), which covers what the request does
not show xretry: a proxy's credentials, added by the inner transport.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

__all__ = ["display_url", "redact", "request_secrets", "scrub"]

#: Shortest value masked as a secret (shorter ones would mask ordinary words).
_MIN_SECRET = 4


def request_secrets(request: Any) -> list[str]:
    """The credentials a request carries, to be masked wherever server or error text is echoed:
    its auth headers (and their tokens), its query string and each value in it, its URL's
    password. Called on failure paths only."""
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
        secrets.append(value.strip())  # a key read from a file, newline and all
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in {"bearer", "basic", "token"}:
            secrets.append(token.strip())
    secrets += _url_secrets(getattr(request, "url", None))
    # Longest first, so a full header value is masked before its token.
    return sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)


def _url_secrets(url: Any) -> list[str]:
    """A URL's query string (as sent and decoded), each value in it, and its userinfo."""
    found: list[str] = []
    try:
        query = url.query
        if query:
            raw = query.decode("ascii", "replace") if isinstance(query, bytes) else str(query)
            found.append(raw)
            for _, value in url.params.multi_items():
                found.append(str(value))
        password = url.password
        if password:
            found.append(str(password))
        userinfo = url.userinfo
        if userinfo:
            found.append(userinfo.decode("ascii", "replace"))
    except Exception:  # not an httpx URL: nothing known to mask
        return found
    return found


def display_url(request: Any) -> str:
    """Scheme, host, port and path: a query string or userinfo may carry credentials."""
    url = request.url
    port = "" if url.port is None else f":{url.port}"
    return f"{url.scheme}://{url.host}{port}{url.path}"


#: What looks like a credential whatever its value: an echoed auth header (JSON or HTTP style,
#: the scheme kept), a key-like parameter, and the userinfo of a URL.
_LOOKS_SECRET = (
    (
        re.compile(
            r"""(?ix)
            (["']?\b(?:proxy-authorization|authorization|x-api-key|api[-_]?key|access[-_]?token|
                password)["']?\s*[:=]\s*["']?)
            ((?:bearer|basic|token|digest)\s+)?
            [^\s"'&,;}\]\\]+"""
        ),
        r"\1\2***",
    ),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@"), r"\1***@"),
)


def redact(text: str, secrets: list[str]) -> str:
    """``text`` with every occurrence of each secret, and whatever looks like a credential (an
    echoed auth header, an ``api_key=`` parameter, a URL's userinfo), replaced by ``***``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _LOOKS_SECRET:
        text = pattern.sub(replacement, text)
    return text


def scrub(exc: BaseException, secrets: list[str]) -> None:
    """Mask secrets in the text of an exception xretry is about to re-raise, and of its causes.

    The exception keeps its type, attributes and traceback (``except httpx.HTTPStatusError``
    still catches it); only the string arguments its message is built from are replaced with
    masked copies. An exception whose message does not come from its ``args`` is left as it is.
    """
    pending: list[BaseException | None] = [exc]
    seen: set[int] = set()
    while pending and len(seen) < 32:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        args = current.args
        masked = tuple(redact(a, secrets) if isinstance(a, str) else a for a in args)
        if masked != args:
            with contextlib.suppress(Exception):  # one that will not take new args: left as is
                current.args = masked
        pending += [current.__cause__, current.__context__]
