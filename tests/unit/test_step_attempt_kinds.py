"""Which step bodies ``attempt_step`` awaits on the loop (coroutine functions) and which it
calls in a step thread: ``_is_coroutine_function`` says what ``inspect.iscoroutinefunction``
says, for every kind of callable."""

from __future__ import annotations

import functools
import inspect
from typing import Any

import pytest

from stepline.engine._step_attempt import _is_coroutine_function


async def coroutine_function() -> int:
    return 1


def plain_function() -> int:
    return 1


class Holder:
    async def method(self) -> int:
        return 1

    def plain(self) -> int:
        return 1

    async def __call__(self) -> int:
        return 1


CALLABLES: list[Any] = [
    coroutine_function,
    plain_function,
    lambda: 1,
    functools.partial(coroutine_function),
    functools.partial(plain_function),
    Holder().method,
    Holder().plain,
    Holder(),
    print,
    Holder,
]


@pytest.mark.parametrize("fn", CALLABLES)
def test_it_says_what_inspect_says(fn: Any) -> None:
    assert _is_coroutine_function(fn) is inspect.iscoroutinefunction(fn)
