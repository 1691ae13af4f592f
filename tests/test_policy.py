"""RetryPolicy: documented defaults, validation that names the field, immutability, coerce()."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xretry import RetryPolicy

# --- defaults --------------------------------------------------------------------------------


def test_defaults() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 5
    assert policy.initial_delay == 0.5
    assert policy.max_delay == 20.0
    assert policy.multiplier == 2.0
    assert policy.jitter == 1.0
    assert policy.deadline is None
    assert policy.max_retry_after == 60.0
    assert policy.retry_statuses == frozenset({408, 429, 500, 502, 503, 504, 529})
    assert policy.idempotent_methods == frozenset(
        {"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}
    )
    assert policy.respect_retry_after is True


def test_default_policy_does_not_resend_posts_after_the_request_may_have_arrived() -> None:
    assert "POST" not in RetryPolicy().idempotent_methods
    assert "PATCH" not in RetryPolicy().idempotent_methods


def test_default_retry_statuses_leave_permanent_errors_out() -> None:
    statuses = RetryPolicy().retry_statuses
    assert not statuses & {400, 401, 403, 404, 405, 415, 422, 501, 505}


# --- validation --------------------------------------------------------------------------------


def make(**changes: Any) -> RetryPolicy:
    return RetryPolicy(**changes)


INVALID = [
    ("max_attempts", 0),
    ("max_attempts", -1),
    ("max_attempts", 1.5),
    ("max_attempts", True),
    ("max_attempts", "3"),
    ("max_attempts", None),
    ("initial_delay", -0.1),
    ("initial_delay", float("nan")),
    ("initial_delay", float("inf")),
    ("initial_delay", "0.5"),
    ("initial_delay", None),
    ("initial_delay", True),
    ("max_delay", -1),
    ("max_delay", float("nan")),
    ("max_delay", float("inf")),
    ("max_delay", "20"),
    ("multiplier", 0.5),
    ("multiplier", 0),
    ("multiplier", float("nan")),
    ("multiplier", "2"),
    ("jitter", 1.01),
    ("jitter", -0.01),
    ("jitter", float("nan")),
    ("jitter", "1"),
    ("deadline", 0),
    ("deadline", -5.0),
    ("deadline", float("nan")),
    ("deadline", float("inf")),
    ("deadline", "30"),
    ("max_retry_after", -1),
    ("max_retry_after", float("nan")),
    ("max_retry_after", "60"),
    ("retry_statuses", {429, 200}),
    ("retry_statuses", {429, 302}),
    ("retry_statuses", {101}),
    ("retry_statuses", {700}),
    ("retry_statuses", {99}),
    ("retry_statuses", {"429"}),
    ("retry_statuses", {True}),
    ("retry_statuses", "429"),
    ("retry_statuses", 429),
    ("idempotent_methods", {"GET", "not a method"}),
    ("idempotent_methods", {"GET", ""}),
    ("idempotent_methods", {"GET", "G3T"}),
    ("idempotent_methods", {"GET", 1}),
    ("idempotent_methods", {"GÉT"}),
    ("idempotent_methods", "GET"),
    ("idempotent_methods", b"GET"),
    ("idempotent_methods", None),
    ("respect_retry_after", "yes"),
    ("respect_retry_after", 1),
]


@pytest.mark.parametrize(
    ("field", "value"), [pytest.param(f, v, id=f"{f}={v!r}") for f, v in INVALID]
)
def test_invalid_values_raise_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=re.escape(field)):
        make(**{field: value})


def test_initial_delay_above_max_delay_names_both() -> None:
    with pytest.raises(ValueError, match="initial_delay") as info:
        make(initial_delay=30, max_delay=20)
    assert "max_delay" in str(info.value)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_attempts": 1},
        {"initial_delay": 0, "max_delay": 0},
        {"initial_delay": 20, "max_delay": 20},
        {"multiplier": 1},
        {"jitter": 0},
        {"jitter": 1},
        {"deadline": 0.001},
        {"max_retry_after": 0},
        {"retry_statuses": set()},
        {"retry_statuses": {400, 409, 599}},
        {"idempotent_methods": set()},
        {"respect_retry_after": False},
    ],
    ids=lambda changes: ",".join(f"{k}={v!r}" for k, v in changes.items()),
)
def test_boundary_values_are_valid(changes: dict[str, Any]) -> None:
    policy = make(**changes)
    for name, value in changes.items():
        assert getattr(policy, name) == value


# --- normalisation -----------------------------------------------------------------------------


def test_methods_are_upper_cased() -> None:
    policy = make(idempotent_methods=["get", "Post", "DELETE"])
    assert policy.idempotent_methods == frozenset({"GET", "POST", "DELETE"})


def generate_statuses() -> Iterator[int]:
    yield from (429, 503)


@pytest.mark.parametrize(
    "statuses",
    [[429, 503, 429], (429, 503), {429, 503}, frozenset({429, 503}), generate_statuses()],
    ids=["list", "tuple", "set", "frozenset", "generator"],
)
def test_collections_become_frozensets(statuses: Any) -> None:
    policy = make(retry_statuses=statuses, idempotent_methods=["get", "put"])
    assert type(policy.retry_statuses) is frozenset
    assert policy.retry_statuses == frozenset({429, 503})
    assert type(policy.idempotent_methods) is frozenset


def test_the_callers_collection_is_not_shared() -> None:
    statuses = {429}
    policy = make(retry_statuses=statuses)
    statuses.add(500)
    assert policy.retry_statuses == frozenset({429})


def test_numbers_become_floats() -> None:
    policy = make(initial_delay=1, max_delay=10, multiplier=3, jitter=0, deadline=30)
    for name in ("initial_delay", "max_delay", "multiplier", "jitter", "deadline"):
        assert type(getattr(policy, name)) is float


# --- immutability ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", [f.name for f in dataclasses.fields(RetryPolicy)])
def test_instances_are_frozen(field: str) -> None:
    policy = RetryPolicy()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(policy, field, getattr(policy, field))


def test_no_new_attributes() -> None:
    policy = RetryPolicy()
    # Field-less names: AttributeError with slots; CPython 3.11's frozen+slots __setattr__
    # raises TypeError instead (python/cpython#90055). Either way the value never lands.
    with pytest.raises((AttributeError, TypeError)):
        policy.surprise = 1  # type: ignore[attr-defined]
    assert not hasattr(policy, "surprise")


def test_instances_are_hashable_and_equal_by_value() -> None:
    a = make(retry_statuses=[429, 503], idempotent_methods=["get"])
    b = make(retry_statuses={503, 429}, idempotent_methods={"GET"})
    assert a == b
    assert hash(a) == hash(b)
    assert len({a, b, RetryPolicy()}) == 2
    assert {a: "cached"}[b] == "cached"


# --- replace -------------------------------------------------------------------------------------


def test_replace_returns_a_changed_copy() -> None:
    policy = RetryPolicy()
    changed = policy.replace(max_attempts=2, idempotent_methods={"get", "post"})
    assert changed.max_attempts == 2
    assert changed.idempotent_methods == frozenset({"GET", "POST"})
    assert changed.max_delay == policy.max_delay
    assert policy == RetryPolicy()


@pytest.mark.parametrize(("field", "value"), [("max_attempts", 0), ("jitter", 2), ("deadline", 0)])
def test_replace_validates(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        RetryPolicy().replace(**{field: value})


def test_replace_rejects_unknown_fields_naming_them() -> None:
    with pytest.raises(ValueError, match="unknown RetryPolicy field") as info:
        RetryPolicy().replace(max_attempt=3, timeout=1, max_delay=5)
    message = str(info.value)
    assert "max_attempt" in message
    assert "timeout" in message
    assert "max_delay" not in message


# --- coerce --------------------------------------------------------------------------------------

BASE = RetryPolicy(max_attempts=7, deadline=30.0, retry_statuses=frozenset({429}))


def test_coerce_passes_a_policy_through() -> None:
    other = RetryPolicy(max_attempts=2)
    assert RetryPolicy.coerce(other, base=BASE) is other


@pytest.mark.parametrize(
    "changes",
    [{"deadline": 5.0}, MappingProxyType({"deadline": 5.0})],
    ids=["dict", "mappingproxy"],
)
def test_coerce_applies_a_mapping_of_changes_to_the_base(changes: Any) -> None:
    policy = RetryPolicy.coerce(changes, base=BASE)
    assert policy == BASE.replace(deadline=5.0)
    assert policy.max_attempts == 7


def test_coerce_empty_mapping_is_the_base() -> None:
    assert RetryPolicy.coerce({}, base=BASE) == BASE


def test_coerce_false_means_one_attempt() -> None:
    policy = RetryPolicy.coerce(False, base=BASE)
    assert policy == BASE.replace(max_attempts=1)


@pytest.mark.parametrize(
    "value",
    [True, None, 0, 1, "False", "max_attempts=1", [("max_attempts", 1)], 3.0, RetryPolicy],
    ids=repr,
)
def test_coerce_rejects_anything_else(value: object) -> None:
    with pytest.raises(ValueError, match="RetryPolicy") as info:
        RetryPolicy.coerce(value, base=BASE)
    message = str(info.value)
    assert "False" in message
    assert type(value).__name__ in message


def test_coerce_mapping_is_validated() -> None:
    with pytest.raises(ValueError, match="bogus"):
        RetryPolicy.coerce({"bogus": 1}, base=BASE)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy.coerce({"max_attempts": 0}, base=BASE)


# --- property ------------------------------------------------------------------------------------

SECONDS = st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False)
METHODS = st.sampled_from(["GET", "get", "Head", "OPTIONS", "PUT", "DELETE", "POST", "PATCH"])
STATUSES = st.integers(400, 599)


@st.composite
def policies(draw: st.DrawFn) -> RetryPolicy:
    max_delay = draw(SECONDS | st.integers(0, 1000))
    return RetryPolicy(
        max_attempts=draw(st.integers(min_value=1, max_value=1000)),
        initial_delay=draw(st.floats(min_value=0, max_value=max_delay)),
        max_delay=max_delay,
        multiplier=draw(st.floats(min_value=1, max_value=100)),
        jitter=draw(st.floats(min_value=0, max_value=1)),
        deadline=draw(st.none() | st.floats(min_value=0.001, max_value=1e6)),
        max_retry_after=draw(SECONDS),
        retry_statuses=draw(st.frozensets(STATUSES)),
        idempotent_methods=draw(st.frozensets(METHODS)),
        respect_retry_after=draw(st.booleans()),
    )


@given(policy=policies())
def test_valid_policies_round_trip_through_replace(policy: RetryPolicy) -> None:
    assert policy.replace() == policy
    every_field = {f.name: getattr(policy, f.name) for f in dataclasses.fields(policy)}
    again = policy.replace(**every_field)
    assert again == policy
    assert hash(again) == hash(policy)
    assert RetryPolicy(**every_field) == policy
    assert RetryPolicy.coerce(every_field, base=RetryPolicy()) == policy
    assert all(m == m.upper() for m in policy.idempotent_methods)
