"""Processes for lease tests: a live one (a sleeping child) and a pid that has ended."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


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
