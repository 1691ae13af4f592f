"""``@xretry.retry`` keeps the wrapped signature under ``mypy --strict`` (ParamSpec).

This file is checked by mypy (``tests/`` is in its ``files``; the config is strict, so
``warn_unused_ignores`` is on). The ``assert_type`` calls prove what a decorated function returns;
inside ``if TYPE_CHECKING:`` blocks, calls that mypy must reject carry a narrow
``# type: ignore[...]``: were the signature lost (an ``Any`` or ``...`` parameter list), the
error would vanish and the ignore would be reported as unused, failing the type check.

pytest runs it too: the same decorated functions are called for real, so the file stays honest
at run time as well.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, assert_type

import pytest

import xretry
from xretry import RetryPolicy


@xretry.retry
def bare(count: int, label: str, *, upper: bool = False) -> str:
    text = label * count
    return text.upper() if upper else text


@xretry.retry(policy=RetryPolicy(max_attempts=2))
def configured(count: int, label: str) -> list[str]:
    return [label] * count


@xretry.retry()
def empty_parentheses(value: float) -> float:
    return value * 2


@xretry.retry
async def abare(count: int, label: str) -> str:
    return label * count


@xretry.retry(policy=RetryPolicy(max_attempts=2))
async def aconfigured(values: list[int], /) -> dict[str, int]:
    return {str(v): v for v in values}


class Client:
    @xretry.retry
    def ask(self, prompt: str) -> str:
        return prompt

    @xretry.retry(policy=RetryPolicy(max_attempts=3))
    async def aask(self, prompt: str, *, model: str = "grok-4") -> tuple[str, str]:
        return model, prompt


def test_sync_signatures_survive() -> None:
    assert_type(bare(2, "x"), str)
    assert_type(bare(1, "x", upper=True), str)
    assert_type(configured(3, "y"), list[str])
    assert_type(empty_parentheses(1.5), float)
    assert_type(Client().ask("hi"), str)
    assert bare(2, "x") == "xx"
    assert bare(1, "x", upper=True) == "X"
    assert configured(3, "y") == ["y", "y", "y"]
    assert empty_parentheses(1.5) == 3.0
    assert Client().ask("hi") == "hi"


@pytest.mark.anyio
async def test_async_signatures_survive() -> None:
    pending = assert_type(abare(2, "x"), Coroutine[Any, Any, str])
    assert assert_type(await pending, str) == "xx"
    assert_type(await aconfigured([1, 2]), dict[str, int])
    assert_type(await Client().aask("hi"), tuple[str, str])
    assert await aconfigured([1, 2]) == {"1": 1, "2": 2}
    assert await Client().aask("hi", model="grok-3") == ("grok-3", "hi")


def test_decorated_functions_are_assignable_to_their_precise_callable_types() -> None:
    sync: Callable[[int, str], str] = bare
    configured_: Callable[[int, str], list[str]] = configured
    async_: Callable[[int, str], Coroutine[Any, Any, str]] = abare
    assert sync(1, "a") == "a"
    assert configured_(1, "a") == ["a"]
    assert callable(async_)


def rejected_calls() -> None:
    """Never called: each line is an error mypy must report (else its ignore is unused)."""
    if TYPE_CHECKING:
        bare("2", "x")  # type: ignore[arg-type]
        bare(2, 3)  # type: ignore[arg-type]
        bare(2, "x", upper="yes")  # type: ignore[arg-type]
        configured(1.5, "y")  # type: ignore[arg-type]
        empty_parentheses("1.5")  # type: ignore[arg-type]
        Client().ask(42)  # type: ignore[arg-type]


async def rejected_async_calls() -> None:
    """Never called: the async wrappers keep their parameters too."""
    if TYPE_CHECKING:
        await abare(2, b"x")  # type: ignore[arg-type]
        await aconfigured(["1"])  # type: ignore[list-item]
        await Client().aask("hi", model=3)  # type: ignore[arg-type]


def rejected_results() -> None:
    """Never called: the results keep their precise types, so misuse is an error."""
    if TYPE_CHECKING:
        number: int = bare(2, "x")  # type: ignore[assignment]
        items: list[int] = configured(1, "y")  # type: ignore[assignment]
        text: str = abare(2, "x")  # type: ignore[assignment]
        del number, items, text


async def rejected_async_results() -> None:
    """Never called: awaiting gives the declared type, not Any."""
    if TYPE_CHECKING:
        number: int = await abare(2, "x")  # type: ignore[assignment]
        del number


def test_the_negative_checks_are_type_only() -> None:
    # They run nothing: the calls above live under TYPE_CHECKING.
    rejected_calls()
    rejected_results()
