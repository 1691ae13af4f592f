"""The same transports for httpx2, the httpx fork that openai 3.x and anthropic 2.x run on.

Requires the ``httpx2`` extra (``pip install 'xretry[httpx2]'``). The retry loop is the one in
:mod:`xretry` (shared drivers, classifier and policy); only the base classes and the default inner
transports differ::

    import httpx2, openai, xretry.httpx2

    client = openai.OpenAI(
        http_client=httpx2.Client(transport=xretry.httpx2.RetryTransport()),
        max_retries=0,   # let xretry do the retrying, once
    )
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Unpack

try:
    import httpx2
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "xretry.httpx2 needs the httpx2 package: pip install 'xretry[httpx2]'"
    ) from exc

from ._transport import AsyncDriver, AsyncOptions, SyncDriver, SyncOptions

__all__ = ["AsyncRetryTransport", "RetryTransport"]


class RetryTransport(SyncDriver, httpx2.BaseTransport):
    """:class:`xretry.RetryTransport` for httpx2 (default inner: ``httpx2.HTTPTransport()``)."""

    def __init__(
        self, transport: httpx2.BaseTransport | None = None, **options: Unpack[SyncOptions]
    ) -> None:
        inner = httpx2.HTTPTransport() if transport is None else transport
        super().__init__(inner, httpx2.ByteStream, **options)

    if TYPE_CHECKING:

        def handle_request(self, request: httpx2.Request) -> httpx2.Response: ...


class AsyncRetryTransport(AsyncDriver, httpx2.AsyncBaseTransport):
    """:class:`xretry.AsyncRetryTransport` for httpx2 (default: ``httpx2.AsyncHTTPTransport()``)."""

    def __init__(
        self, transport: httpx2.AsyncBaseTransport | None = None, **options: Unpack[AsyncOptions]
    ) -> None:
        inner = httpx2.AsyncHTTPTransport() if transport is None else transport
        super().__init__(inner, httpx2.ByteStream, **options)

    if TYPE_CHECKING:

        async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response: ...
