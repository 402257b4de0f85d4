"""Waiting in tests: the one `until`, which polls another component's state (a fake server's
record, a process's output) until it holds, and fails naming what it waited for. Imports only
the standard library."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: seconds between two looks: short enough to add little to a test, long enough to let the
#: component under watch run
INTERVAL = 0.01


async def until(condition: Callable[[], T], *, within: float = 10.0, what: str = "") -> T:
    """Poll `condition()` until it returns something truthy, and return that value; after
    `within` seconds fail the test, saying `what` it waited for."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = condition()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within:g} s waiting for {what or condition}")
        # polling is the point: the condition is another component's state, with no event
        await asyncio.sleep(INTERVAL)
