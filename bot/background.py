"""`Background`: fire-and-forget tasks that stay referenced and log their failure.

The bot's run cards, reminders and similar side work start here, never through a bare
`asyncio.create_task`; `stop_loop` ends a cog's timer loop. Imports only the standard library.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

log = logging.getLogger(__name__)


class Background:
    """A set of tasks kept alive until they finish; `close` cancels what is left."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("background task %s failed", task.get_name(), exc_info=error)

    def __len__(self) -> int:
        return len(self._tasks)

    async def close(self, grace: float = 0.0) -> None:
        """Give the tasks `grace` seconds to end by themselves, then cancel the rest and wait
        for them to end."""
        tasks = list(self._tasks)
        if tasks and grace > 0:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            tasks = list(pending)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)


class _Loop(Protocol):
    """What `stop_loop` needs of a `discord.ext.tasks.Loop`."""

    def get_task(self) -> asyncio.Task[None] | None: ...
    def cancel(self) -> None: ...


async def stop_loop(loop: _Loop) -> None:
    """Cancel a cog's timer loop and wait until its task has ended: an iteration under way (a
    schedule tick inside a store transaction) unwinds while what it uses is still open. The
    loop's own `cancel` only asks."""
    task = loop.get_task()
    loop.cancel()
    if task is not None and not task.done():
        await asyncio.wait({task})
