"""For lease tests: a live process (a sleeping child), a pid that has ended, and a run that
waits until the test lets it end."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pipeline.models import Run, RunState
from pipeline.ports import REVIEW_STEP, Progress, ProgressSink, RunStore


@asynccontextmanager
async def live_process() -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process that sleeps until the block ends (then it is killed and reaped)."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(300)"
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


async def dead_pid() -> int:
    """The pid of a process that has ended and been reaped on this host."""
    async with live_process() as child:
        pid = child.pid
    return pid


class HeldRun:
    """An `execute` that waits until `go` is set (reporting the review step when `review`),
    then saves the run as expired (which a resume may take up again)."""

    def __init__(self, store: RunStore, *, review: bool = False) -> None:
        self.store = store
        self.review = review
        self.go = asyncio.Event()
        self.started: list[str] = []

    async def __call__(self, run: Run, sink: ProgressSink | None) -> Run:
        self.started.append(run.id)
        if sink is not None and self.review:
            sink.progress(run.id, Progress(step=REVIEW_STEP))
            sink.awaiting_review(run.id, True)
        await self.go.wait()
        ended = run.advance(RunState.EXPIRED)
        await self.store.save_run(ended)
        return ended
