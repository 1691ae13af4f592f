"""What the Redis store and the Redis gate share: naming the server, checking a TTL."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

__all__ = ["check_ttl", "where"]


def where(client: Any) -> str:
    """The server's address for messages: scheme, host, port and db, never the credentials."""
    pool = client.connection_pool
    kwargs: Mapping[str, Any] = pool.connection_kwargs
    db = kwargs.get("db", 0)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={db}"
    if "host" not in kwargs:
        return f"a {type(pool).__name__}"  # Sentinel and custom pools: the pool knows the host
    # Sync and asyncio clients have SSL connection classes of their own: go by the name.
    tls = "SSL" in getattr(pool.connection_class, "__name__", "")
    host = str(kwargs["host"])
    host = f"[{host}]" if ":" in host else host
    return f"{'rediss' if tls else 'redis'}://{host}:{kwargs.get('port', 6379)}/{db}"


def check_ttl(ttl: object) -> float | None:
    """A TTL in seconds (> 0, finite) or ``None``; anything else is a ``ValueError``."""
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, int | float) or not (0 < ttl < math.inf):
        raise ValueError(f"ttl must be a number of seconds > 0, or None, got {ttl!r}")
    return float(ttl)
