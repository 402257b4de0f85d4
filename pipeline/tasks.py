"""Running a few coroutines at once on a run's path: results in order, and a failure raised as
itself (never an ExceptionGroup, which the run would take for an unexpected error), after the
other coroutines are cancelled and awaited. Imports only the standard library and errors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from typing import Any, TypeVar

from pipeline.errors import MediaOverloadError

T = TypeVar("T")


def first_failure(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The failure to raise for a group: the first of the project's errors, else the first."""
    leaves: list[BaseException] = []
    pending: list[BaseException] = [group]
    while pending:
        current = pending.pop(0)
        if isinstance(current, BaseExceptionGroup):
            pending[:0] = list(current.exceptions)
        else:
            leaves.append(current)
    ours = [leaf for leaf in leaves if isinstance(leaf, MediaOverloadError)]
    return (ours or leaves)[0]


async def gather_all(coros: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
    """Every coroutine's result, in order; on the first failure the others are cancelled and
    awaited (so none is left running or unretrieved) and that failure is raised."""
    tasks: list[asyncio.Task[T]] = []
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            for coro in coros:
                tasks.append(group.create_task(coro))
    except BaseExceptionGroup as failed:
        failure = first_failure(failed)
    if failure is not None:
        # raised outside the handler: its own cause and traceback stay, without the group
        raise failure
    return [task.result() for task in tasks]


__all__ = ["first_failure", "gather_all"]
