"""For lease tests: a clock the test moves on by hand, a live process (a sleeping child), a pid
that has ended, and a run that waits until the test lets it end."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta

from pipeline.models import Run, RunState, utcnow
from pipeline.ports import REVIEW_STEP, Progress, ProgressSink, RunStore


class FakeClock:
    """A `pipeline.lease.WallClock` that stands still until the test moves it on: a lease
    expires when the test says so, not after a wait in real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move time on by `seconds`; the new now."""
        self.now += timedelta(seconds=seconds)
        return self.now


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
    then saves the run as expired (which a resume may take up again); `cancelled` lists the
    runs stopped while they waited."""

    def __init__(self, store: RunStore, *, review: bool = False) -> None:
        self.store = store
        self.review = review
        self.go = asyncio.Event()
        self.started: list[str] = []
        #: runs whose execution was cancelled while they waited: they can save nothing more
        self.cancelled: list[str] = []

    async def __call__(self, run: Run, sink: ProgressSink | None) -> Run:
        self.started.append(run.id)
        if sink is not None and self.review:
            sink.progress(run.id, Progress(step=REVIEW_STEP))
            sink.awaiting_review(run.id, True)
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.cancelled.append(run.id)
            raise
        ended = run.advance(RunState.EXPIRED)
        await self.store.save_run(ended)
        return ended
