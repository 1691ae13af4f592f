"""Deferred completions: the transport's polling, and the sync and async pollers, httpx and httpx2.

Every server here is a scripted ``MockTransport`` handler; an injected FakeClock and sleeper (or
``xretry.testing.no_wait()``) stand in for time, so nothing sleeps. The durable store, resuming and
``as_completed`` against the emulator are in ``test_deferred_store.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

import xretry
from xretry import PollPolicy, RetryPolicy
from xretry.testing import no_wait

from .conftest import FakeClock, Flavour

API = "https://api.x.ai/v1"
RID = "0b4e2a1c-9f0e-4d6b-8a57-3c1d2e9f7a10"
AUTH = {"authorization": "Bearer xai-test-key-0123456789"}
CHAT: dict[str, Any] = {"model": "grok-4", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION: dict[str, Any] = {"id": "chatcmpl-1", "object": "chat.completion", "choices": []}
POLL = PollPolicy(
    first_delay=2.0, interval=1.0, multiplier=2.0, max_interval=8.0, jitter=0.0, timeout=60.0
)
POLICY = RetryPolicy(max_attempts=4, initial_delay=0.5, multiplier=2.0, jitter=0.0)
QUOTA = "Your team t1 has either used all available credits or reached its monthly spending limit."
BAD_KEY = (
    "Incorrect API key provided: xa***89. You can obtain an API key from https://console.x.ai."
)


@dataclass(frozen=True)
class Reply:
    status: int
    #: JSON-able payload, raw bytes, or None for the route's default (id, completion, error, "")
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


Step = int | Reply


@dataclass
class Api:
    """A scripted xAI API: the n-th submit (or poll) gets the n-th step; the last one repeats."""

    flavour: Flavour
    submit: Sequence[Step] = (200,)
    poll: Sequence[Step] = (200,)
    clock: FakeClock | None = None
    seen: list[tuple[str, str, float]] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)

    def count(self, method: str) -> int:
        return sum(1 for m, _, _ in self.seen if m == method)

    def __call__(self, request: Any) -> Any:
        path = request.url.path
        self.seen.append((request.method, path, self.clock.now if self.clock else 0.0))
        if request.method == "POST" and path == "/v1/chat/completions":
            self.bodies.append(json.loads(request.content))
            script, default = self.submit, {"request_id": RID}
        elif request.method == "GET" and path.startswith("/v1/chat/deferred-completion/"):
            script, default = self.poll, COMPLETION
        else:
            script, default = (404,), None
        step = script[min(self.count(request.method), len(script)) - 1]
        reply = step if isinstance(step, Reply) else Reply(step)
        body = reply.body
        if body is None:
            body = default if reply.status == 200 else b""
            if reply.status >= 400:
                body = {"code": "Some error", "error": f"injected {reply.status}"}
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.flavour.http.Response(reply.status, headers=reply.headers, content=content)


def sync_poller(
    flavour: Flavour,
    api: Api,
    clock: FakeClock,
    *,
    inner: bool = False,
    handler: Callable[[Any], Any] | None = None,
    **kwargs: Any,
) -> xretry.DeferredCompletions:
    api.clock = clock
    transport = flavour.mock(api if handler is None else handler)
    if inner:  # the client already retries: the poller must not multiply attempts
        transport = flavour.RetryTransport(
            transport, policy=POLICY, poll=POLL, sleep=clock.sleep, clock=clock
        )
    client = flavour.http.Client(base_url=API, transport=transport, headers=AUTH)
    kwargs = {"policy": POLICY, "poll": POLL, **kwargs}
    return xretry.DeferredCompletions(client, sleep=clock.sleep, clock=clock, **kwargs)


def async_poller(
    flavour: Flavour, api: Api, clock: FakeClock, *, inner: bool = False, **kwargs: Any
) -> xretry.AsyncDeferredCompletions:
    api.clock = clock
    transport = flavour.mock(api)
    if inner:
        transport = flavour.AsyncRetryTransport(
            transport, policy=POLICY, poll=POLL, sleep=clock.asleep, clock=clock
        )
    client = flavour.http.AsyncClient(base_url=API, transport=transport, headers=AUTH)
    kwargs = {"policy": POLICY, "poll": POLL, "gate": xretry.Gate(clock=clock), **kwargs}
    return xretry.AsyncDeferredCompletions(client, sleep=clock.asleep, clock=clock, **kwargs)


# -- the transport polls the deferred endpoint ----------------------------------------------------


def transport_get(
    flavour: Flavour, script: Sequence[Step], poll: PollPolicy | None = POLL, **request: Any
) -> tuple[Any, Api, FakeClock]:
    clock = FakeClock()
    api = Api(flavour, poll=script, clock=clock)
    transport = flavour.RetryTransport(
        flavour.mock(api), policy=POLICY, poll=poll, sleep=clock.sleep, clock=clock
    )
    with flavour.http.Client(base_url=API, transport=transport) as client:
        response = client.get(f"chat/deferred-completion/{RID}", **request)
        response.read()
    return response, api, clock


def test_transport_polls_until_the_200(flavour: Flavour) -> None:
    response, api, clock = transport_get(flavour, [202, 202, 202, 200])
    assert response.status_code == 200
    assert response.json() == COMPLETION
    assert [t for _, _, t in api.seen] == [1000.0, 1001.0, 1003.0, 1007.0]
    assert clock.slept == [1.0, 2.0, 4.0]


def test_transport_returns_the_last_202_when_the_poll_timeout_runs_out(flavour: Flavour) -> None:
    response, api, clock = transport_get(flavour, [202], poll=POLL.replace(timeout=10.0))
    assert response.status_code == 202
    # polls at 0, 1, 3, 7 s; the next gap (8 s) would end at 15 s > 10 s: stop, don't oversleep
    assert [t - 1000.0 for _, _, t in api.seen] == [0.0, 1.0, 3.0, 7.0]
    assert clock.slept == [1.0, 2.0, 4.0]
    history = response.extensions["xretry"]
    assert history.gave_up
    assert "poll timeout" in (history.stop_reason or "")


@pytest.mark.anyio
async def test_async_transport_polls_until_the_200(flavour: Flavour) -> None:
    clock = FakeClock()
    api = Api(flavour, poll=[202, 202, 200], clock=clock)
    transport = flavour.AsyncRetryTransport(
        flavour.mock(api), policy=POLICY, poll=POLL, sleep=clock.asleep, clock=clock
    )
    async with flavour.http.AsyncClient(base_url=API, transport=transport) as client:
        response = await client.get(f"chat/deferred-completion/{RID}")
    assert response.status_code == 200
    assert clock.slept == [1.0, 2.0]
    assert api.count("GET") == 3


def test_429_and_503_mid_polling_are_retried_and_do_not_end_polling(flavour: Flavour) -> None:
    script: list[Step] = [202, Reply(429, headers={"retry-after-ms": "250"}), 202, 503, 200]
    response, api, clock = transport_get(flavour, script)
    assert response.status_code == 200
    assert api.count("GET") == 5
    # poll gap 1 s, the 429's hint, the second poll gap 2 s, the 503's first backoff
    assert clock.slept == pytest.approx([1.0, 0.25, 2.0, 0.5])


def test_each_202_starts_a_fresh_run_of_error_attempts(flavour: Flavour) -> None:
    # 3 errors in a row twice: 6 errors in all, more than max_attempts=4, yet polling goes on
    script: list[Step] = [202, 503, 503, 503, 202, 503, 503, 503, 200]
    response, api, _ = transport_get(flavour, script)
    assert response.status_code == 200
    assert api.count("GET") == 9


def test_an_outage_mid_polling_ends_with_the_last_error(flavour: Flavour) -> None:
    response, api, _ = transport_get(flavour, [202, 503])
    assert response.status_code == 503
    assert api.count("GET") == 1 + POLICY.max_attempts


def test_poll_schedule_grows_by_multiplier_up_to_max_interval(flavour: Flavour) -> None:
    poll = POLL.replace(interval=0.5, multiplier=3.0, max_interval=6.0)
    _, _, clock = transport_get(flavour, [202] * 6 + [200], poll=poll)
    assert clock.slept == pytest.approx([0.5, 1.5, 4.5, 6.0, 6.0, 6.0])


def test_poll_gaps_are_jittered_within_bounds(flavour: Flavour) -> None:
    poll = POLL.replace(interval=2.0, multiplier=1.0, max_interval=2.0, jitter=0.25, timeout=None)
    _, _, clock = transport_get(flavour, [202] * 40 + [200], poll=poll)
    assert len(clock.slept) == 40
    assert all(1.5 <= gap <= 2.5 for gap in clock.slept), clock.slept
    assert len(set(clock.slept)) > 30  # really spread, not one fixed gap


def test_no_wait_records_the_exact_poll_gaps(flavour: Flavour) -> None:
    poll = POLL.replace(jitter=0.5)
    with no_wait() as schedule:
        _, _, clock = transport_get(flavour, [202, 202, 202, 200], poll=poll)
    assert clock.slept == []
    assert schedule.delays == [1.0, 2.0, 4.0]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "5"}, [5.0, 2.0]),  # longer than the gap: honoured
        ({"retry-after-ms": "100"}, [1.0, 2.0]),  # shorter than the gap: the gap stands
    ],
)
def test_retry_after_on_a_202_is_a_floor(
    flavour: Flavour, headers: dict[str, str], expected: list[float]
) -> None:
    _, _, clock = transport_get(flavour, [Reply(202, headers=headers), 202, 200])
    assert clock.slept == pytest.approx(expected)


def test_poll_false_extension_returns_the_first_202(flavour: Flavour) -> None:
    response, api, clock = transport_get(flavour, [202, 200], extensions={"xretry.poll": False})
    assert response.status_code == 202
    assert api.count("GET") == 1
    assert clock.slept == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "chat/completions"),
        ("GET", "models"),
        ("GET", "chat/deferred-completion"),
        ("POST", f"chat/deferred-completion/{RID}"),
    ],
)
def test_202_elsewhere_is_a_success(flavour: Flavour, method: str, path: str) -> None:
    clock = FakeClock()
    calls: list[Any] = []

    def handler(request: Any) -> Any:
        calls.append(request)
        return flavour.http.Response(202 if len(calls) == 1 else 200)

    transport = flavour.RetryTransport(
        flavour.mock(handler), poll=POLL, sleep=clock.sleep, clock=clock
    )
    with flavour.http.Client(base_url=API, transport=transport) as client:
        assert client.request(method, path).status_code == 202
    assert len(calls) == 1


# -- the sync poller ------------------------------------------------------------------------------


def test_submit_sends_deferred_true_and_returns_the_id(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour)
    poller = sync_poller(flavour, api, clock)
    assert poller.submit(**CHAT, temperature=0.5, deferred=False) == RID
    assert api.bodies == [{**CHAT, "temperature": 0.5, "deferred": True}]
    assert api.seen[0][:2] == ("POST", "/v1/chat/completions")


@pytest.mark.parametrize("inner", [False, True], ids=["plain-client", "retrying-client"])
@pytest.mark.parametrize(
    ("submit", "poll", "posts", "gets"),
    [
        pytest.param([503, 503, 200], [200], 3, 1, id="submit-503-503-200"),
        pytest.param([Reply(429, headers={"retry-after": "1"}), 200], [200], 2, 1, id="submit-429"),
        pytest.param([200], [202, 202, 200], 1, 3, id="poll-202-202-200"),
        pytest.param([200], [500, 202, 502, 200], 1, 4, id="poll-5xx-mixed"),
    ],
)
def test_sync_requests_are_never_multiplied(
    flavour: Flavour,
    clock: FakeClock,
    inner: bool,
    submit: list[Step],
    poll: list[Step],
    posts: int,
    gets: int,
) -> None:
    api = Api(flavour, submit=submit, poll=poll)
    poller = sync_poller(flavour, api, clock, inner=inner)
    assert poller.create(**CHAT) == COMPLETION
    assert (api.count("POST"), api.count("GET")) == (posts, gets)


@pytest.mark.parametrize("inner", [False, True], ids=["plain-client", "retrying-client"])
def test_sync_outages_cost_exactly_max_attempts(
    flavour: Flavour, clock: FakeClock, inner: bool
) -> None:
    api = Api(flavour, submit=[503])
    with pytest.raises(xretry.ServerError):
        sync_poller(flavour, api, clock, inner=inner).submit(**CHAT)
    assert api.count("POST") == POLICY.max_attempts
    # A paid-for job is not given up on after max_attempts: a 5xx run while polling is retried
    # until the poll timeout, one request per attempt whatever the client has inside, and ends
    # in DeferredTimeoutError with the id (the last 503 its cause).
    api = Api(flavour, poll=[503])
    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        sync_poller(flavour, api, clock, inner=inner).wait(RID)
    assert caught.value.request_id == RID
    assert isinstance(caught.value.__cause__, xretry.ServerError)
    elapsed, attempts = 0.0, 1
    while elapsed + min(POLICY.initial_delay * 2 ** (attempts - 1), POLICY.max_delay) < 60.0:
        elapsed += min(POLICY.initial_delay * 2 ** (attempts - 1), POLICY.max_delay)
        attempts += 1
    assert attempts > POLICY.max_attempts
    assert api.count("GET") == attempts


def test_wait_polls_at_once_and_returns_the_completion(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour, poll=[202, 202, 200])
    assert sync_poller(flavour, api, clock).wait(RID) == COMPLETION
    assert [(m, p, t - 1000.0) for m, p, t in api.seen] == [
        ("GET", f"/v1/chat/deferred-completion/{RID}", t) for t in (0.0, 1.0, 3.0)
    ]


def test_create_first_polls_after_first_delay(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour, poll=[202, 200])
    assert sync_poller(flavour, api, clock).create(**CHAT) == COMPLETION
    assert [(m, t - 1000.0) for m, _, t in api.seen] == [("POST", 0), ("GET", 2.0), ("GET", 3.0)]


def test_create_under_no_wait_records_first_delay_then_gaps(
    flavour: Flavour, clock: FakeClock
) -> None:
    api = Api(flavour, poll=[202, 202, 200])
    with no_wait() as schedule:
        assert sync_poller(flavour, api, clock).create(**CHAT) == COMPLETION
    assert schedule.delays == [2.0, 1.0, 2.0]
    assert clock.slept == []


@pytest.mark.anyio
async def test_sync_and_async_create_record_the_same_waits_under_no_wait(
    flavour: Flavour, clock: FakeClock
) -> None:
    """One pause for both pollers: a zero first_delay is no wait, sync and async alike (the async
    poller once recorded a 0.0 the sync one did not)."""
    poll = POLL.replace(first_delay=0.0)
    with no_wait() as sync_schedule:
        api = Api(flavour, poll=[202, 200])
        assert sync_poller(flavour, api, clock, poll=poll).create(**CHAT) == COMPLETION
    with no_wait() as async_schedule:
        api = Api(flavour, poll=[202, 200])
        assert await async_poller(flavour, api, clock, poll=poll).create(**CHAT) == COMPLETION
    schedules = [sync_schedule.delays, async_schedule.delays]
    assert schedules[0] == schedules[1] == [1.0]


@pytest.mark.parametrize(
    ("timeout", "polls", "waited"), [(None, 4, 7.0), (3.0, 2, 1.0), (0.5, 1, 0.0)]
)
def test_sync_timeout_raises_with_the_request_id(
    flavour: Flavour, clock: FakeClock, timeout: float | None, polls: int, waited: float
) -> None:
    api = Api(flavour, poll=[202])
    poller = sync_poller(flavour, api, clock, poll=POLL.replace(timeout=10.0))
    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        poller.wait(RID, timeout=timeout)
    assert caught.value.request_id == RID
    assert RID in str(caught.value)
    assert (caught.value.polls, caught.value.waited) == (polls, waited)
    assert api.count("GET") == polls


NOT_FOUND = [
    pytest.param(Reply(404), 404, id="404"),
    pytest.param(Reply(400, {"code": "bad", "error": "Invalid request id"}), 400, id="400"),
]

FATAL = [
    pytest.param(Reply(400, {"code": "c", "error": BAD_KEY}), xretry.InvalidAPIKeyError, id="key"),
    pytest.param(Reply(401), xretry.AuthenticationError, id="401"),
    pytest.param(Reply(403), xretry.PermissionDeniedError, id="403"),
    pytest.param(Reply(422), xretry.UnprocessableEntityError, id="422"),
    pytest.param(Reply(429, {"code": "c", "error": QUOTA}), xretry.QuotaExhaustedError, id="quota"),
    pytest.param(Reply(501), xretry.ServerError, id="501"),
]


@pytest.mark.parametrize(("reply", "status"), NOT_FOUND)
def test_sync_unknown_id_raises_not_found(
    flavour: Flavour, clock: FakeClock, reply: Reply, status: int
) -> None:
    api = Api(flavour, poll=[reply, 200])
    with pytest.raises(xretry.DeferredNotFoundError) as caught:
        sync_poller(flavour, api, clock).wait(RID)
    assert (caught.value.request_id, caught.value.status_code) == (RID, status)
    assert api.count("GET") == 1


@pytest.mark.parametrize(("reply", "error"), FATAL)
def test_sync_fatal_poll_statuses_raise_typed_errors(
    flavour: Flavour, clock: FakeClock, reply: Reply, error: type[Exception]
) -> None:
    api = Api(flavour, poll=[reply, 200])
    with pytest.raises(error) as caught:
        sync_poller(flavour, api, clock).wait(RID)
    assert not isinstance(caught.value, xretry.DeferredNotFoundError)
    assert api.count("GET") == 1


@pytest.mark.parametrize(
    ("reply", "error"), [*FATAL, pytest.param(Reply(404), xretry.NotFoundError)]
)
def test_sync_fatal_submit_statuses_raise_typed_errors(
    flavour: Flavour, clock: FakeClock, reply: Reply, error: type[Exception]
) -> None:
    api = Api(flavour, submit=[reply, 200])
    with pytest.raises(error):
        sync_poller(flavour, api, clock).submit(**CHAT)
    assert api.count("POST") == 1


@pytest.mark.parametrize("body", [{"id": "x"}, {"request_id": ""}, b"not json", [RID]])
def test_submit_answer_without_a_request_id_is_an_error(
    flavour: Flavour, clock: FakeClock, body: Any
) -> None:
    api = Api(flavour, submit=[Reply(200, body)])
    with pytest.raises(xretry.XRetryError, match="request_id"):
        sync_poller(flavour, api, clock).submit(**CHAT)


@pytest.mark.parametrize("body", [b"\x00\xffnot json{", b"[1, 2]", b'{"id": "chatcmpl'])
def test_unusable_200_raises_result_error_with_the_body(
    flavour: Flavour, clock: FakeClock, body: bytes
) -> None:
    api = Api(flavour, poll=[Reply(200, body)])
    with pytest.raises(xretry.DeferredResultError) as caught:
        sync_poller(flavour, api, clock).wait(RID)
    assert (caught.value.request_id, caught.value.body) == (RID, body)


@pytest.mark.parametrize("request_id", ["", "a/b", "/", f"{RID}/", None, 42])
def test_invalid_request_ids_raise_value_error(
    flavour: Flavour, clock: FakeClock, request_id: Any
) -> None:
    api = Api(flavour)
    with pytest.raises(ValueError, match="request_id"):
        sync_poller(flavour, api, clock).wait(request_id)
    assert api.seen == []


@pytest.mark.parametrize("request_id", ["..", ".", "a\\b", "a\nb", "x" * 257, f"{RID}/../models"])
def test_request_ids_that_cannot_stay_one_path_segment_are_rejected(
    flavour: Flavour, clock: FakeClock, request_id: str
) -> None:
    api = Api(flavour)
    with pytest.raises(xretry.DeferredIdError, match="request_id") as caught:
        sync_poller(flavour, api, clock).wait(request_id)
    assert isinstance(caught.value, ValueError)
    assert caught.value.request_id == request_id
    assert api.seen == []


@pytest.mark.parametrize(
    ("request_id", "raw_path"),
    [
        ("AbC+dEf==", "AbC%2BdEf%3D%3D"),
        (f"{RID}?x=1", f"{RID}%3Fx%3D1"),
        (f"{RID}#frag", f"{RID}%23frag"),
        ("id:with@colon", "id:with@colon"),
        ("caf\u00e9", "caf%C3%A9"),
    ],
)
def test_any_id_is_percent_encoded_into_its_own_path_segment(
    flavour: Flavour, clock: FakeClock, request_id: str, raw_path: str
) -> None:
    """submit() and wait() agree on what an id is: whatever the server returned is polled,
    percent-encoded, and cannot change the URL it goes into."""
    paths: list[bytes] = []
    api = Api(flavour, submit=[Reply(200, {"request_id": request_id})])

    def handler(request: Any) -> Any:
        paths.append(request.url.raw_path)
        return api(request)

    poller = sync_poller(flavour, api, clock, handler=handler)
    assert poller.submit(**CHAT) == request_id
    assert poller.wait(request_id) == COMPLETION
    assert paths[-1] == f"/v1/chat/deferred-completion/{raw_path}".encode()


# -- the async poller (asyncio and trio) ----------------------------------------------------------


@pytest.mark.anyio
async def test_async_submit_wait_create(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour, poll=[202, 200, 202, 200])
    poller = async_poller(flavour, api, clock)
    assert await poller.submit(**CHAT) == RID
    assert await poller.wait(RID) == COMPLETION
    assert api.bodies == [{**CHAT, "deferred": True}]
    start = clock.now
    assert await poller.create(**CHAT) == COMPLETION
    assert [(m, t - start) for m, _, t in api.seen[3:]] == [("POST", 0), ("GET", 2.0), ("GET", 3.0)]
    with no_wait() as schedule:
        assert await poller.create(**CHAT) == COMPLETION
    assert schedule.delays == [2.0]


@pytest.mark.anyio
@pytest.mark.parametrize("inner", [False, True], ids=["plain-client", "retrying-client"])
async def test_async_requests_are_never_multiplied(
    flavour: Flavour, clock: FakeClock, inner: bool
) -> None:
    api = Api(flavour, submit=[503, 503, 200], poll=[202, 202, 200])
    assert await async_poller(flavour, api, clock, inner=inner).create(**CHAT) == COMPLETION
    assert (api.count("POST"), api.count("GET")) == (3, 3)
    api = Api(flavour, submit=[503], poll=[503])
    poller = async_poller(flavour, api, clock, inner=inner)
    with pytest.raises(xretry.ServerError):
        await poller.submit(**CHAT)
    with pytest.raises(xretry.DeferredTimeoutError):
        await poller.wait(RID)
    # Polling a paid-for job retries until the poll timeout (8 attempts fit in 60 s here), once
    # per attempt whatever the client has inside.
    assert (api.count("POST"), api.count("GET")) == (POLICY.max_attempts, 8)


@pytest.mark.anyio
async def test_async_timeout_raises_with_the_request_id(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour, poll=[202])
    poller = async_poller(flavour, api, clock)
    with pytest.raises(xretry.DeferredTimeoutError) as caught:
        await poller.wait(RID, timeout=10.0)
    assert (caught.value.request_id, caught.value.polls) == (RID, 4)
    assert api.count("GET") == 4


@pytest.mark.anyio
@pytest.mark.parametrize(("reply", "status"), NOT_FOUND)
async def test_async_unknown_id_raises_not_found(
    flavour: Flavour, clock: FakeClock, reply: Reply, status: int
) -> None:
    api = Api(flavour, poll=[reply, 200])
    with pytest.raises(xretry.DeferredNotFoundError) as caught:
        await async_poller(flavour, api, clock).wait(RID)
    assert (caught.value.request_id, caught.value.status_code) == (RID, status)


@pytest.mark.anyio
@pytest.mark.parametrize(("reply", "error"), FATAL)
async def test_async_fatal_statuses_raise_typed_errors(
    flavour: Flavour, clock: FakeClock, reply: Reply, error: type[Exception]
) -> None:
    api = Api(flavour, submit=[reply, 200], poll=[reply, 200])
    poller = async_poller(flavour, api, clock)
    with pytest.raises(error):
        await poller.submit(**CHAT)
    with pytest.raises(error) as caught:
        await poller.wait(RID)
    assert not isinstance(caught.value, xretry.DeferredNotFoundError)
    assert (api.count("POST"), api.count("GET")) == (1, 1)


@pytest.mark.anyio
async def test_async_unusable_200_and_bad_ids(flavour: Flavour, clock: FakeClock) -> None:
    api = Api(flavour, poll=[Reply(200, b"<html>")])
    poller = async_poller(flavour, api, clock)
    with pytest.raises(xretry.DeferredResultError) as caught:
        await poller.wait(RID)
    assert caught.value.body == b"<html>"
    for bad in ("", "a/b"):
        with pytest.raises(ValueError, match="request_id"):
            await poller.wait(bad)
    assert api.count("GET") == 1


def test_a_long_rate_limit_wait_mid_polling_does_not_end_the_job(
    flavour: Flavour, clock: FakeClock
) -> None:
    """The poll timeout, not max_retry_after, bounds how long a paid-for job is waited on."""
    slow_down = Reply(429, headers={"retry-after": "120"})
    api = Api(flavour, poll=[202, slow_down, 200])
    poller = sync_poller(flavour, api, clock, poll=POLL.replace(timeout=600.0))
    assert poller.wait(RID) == COMPLETION
    assert api.count("GET") == 3
    assert clock.slept[-1] == 120.0


def test_a_202_elsewhere_takes_the_success_path(flavour: Flavour) -> None:
    transport = flavour.RetryTransport(flavour.mock(lambda r: flavour.http.Response(202)))
    with flavour.http.Client(transport=transport) as client:
        response = client.post(f"{API}/batches", json={})
    assert response.status_code == 202
    assert response.extensions["xretry"].attempts[0].reason == "first try"
