"""The fault matrix: every fault against every entry point, over real loopback sockets.

Each cell makes one logical call through one entry point (``_harness.Entry``: the transport in a
client, ``@xretry.retry`` around a plain client call, the deferred pollers' ``submit``, ``wait``
and ``as_completed``; httpx or httpx2; sync, asyncio or trio) against a server that misbehaves
in one way, and checks the same four things (``_harness.assert_cell``): exactly which outcome
(the value, or exactly which typed xretry/httpx error), that it ended within its deadline (plus a
generous slack), how many requests and connections the server saw, and that nothing leaked (no
file descriptor left open once the client is closed, and the same client, with a pool of one
connection, can still make a request).

============================  =====================================================================
file                          faults
============================  =====================================================================
test_connection_faults.py     refused, resets before/during/after the headers, closes, silence,
                              slow headers and bodies (``_raw_server.RawServer``)
test_status_faults.py         5xx bursts and outages, 429 storms, a real token bucket, spent
                              credits (the emulator, ``xretry.emulator``)
test_hint_faults.py           retry-after / retry-after-ms / x-ratelimit-* values that are garbage
test_body_faults.py           empty, truncated, HTML and wrongly typed bodies on every status
test_deferred_faults.py       202 forever, expired / fetched / unknown ids, broken poll answers
test_caller_faults.py         invalid policies and overrides, one-shot bodies, a closed client
test_deadline_edges.py        where a sleep ends near or past the deadline (injected clock)
============================  =====================================================================

A cell that exposes a defect asserts the correct behaviour and is marked
``xfail(strict=True, reason="DEFECT: ...")``; the few cells whose outcome a known defect makes
timing-dependent accept the defect's outcome too, and name the strict test that pins it.
Run it alone with ``pytest tests/faults``.
"""
