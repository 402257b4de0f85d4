"""Waiting in tests: the one `until`, which polls another component's state (a fake server's
record, a process's output, a row in the store) until it holds, and fails naming what it waited
for. Imports only the standard library."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")

#: seconds between two looks: short enough to add little to a test, long enough to let the
#: component under watch run
INTERVAL = 0.01


@overload
async def until(  # an awaitable condition gives its result, not the awaitable
    condition: Callable[[], Awaitable[T]], *, within: float = 10.0, what: str = ""
) -> T: ...


@overload
async def until(condition: Callable[[], T], *, within: float = 10.0, what: str = "") -> T: ...


async def until(condition: Callable[[], object], *, within: float = 10.0, what: str = "") -> object:
    """Poll `condition()` (awaited when it is a coroutine: a store read) until it gives
    something truthy, and return that value; after `within` seconds fail the test, saying
    `what` it waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what or condition}")
        # polling is the point: the condition is another component's state, with no event
        await asyncio.sleep(INTERVAL)
