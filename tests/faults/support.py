"""What the fault tests share besides fixtures: the short stall timeout, `until` to inject a
fault at a chosen point of a run, and `snapshot` of a run folder's media."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

#: seconds without a message before the client asks the server what became of a prompt
STALL_SECONDS = 0.5


async def until(condition: Callable[[], bool], *, within: float = 10.0) -> None:
    """Wait until `condition()` holds (polled every 10 ms); fails the test after `within` s."""
    async with asyncio.timeout(within):
        # polling is the point: the condition is another component's state, with no event
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.01)


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every finished media file under a run folder, by relative path, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in {".png", ".mp4"} and ".partial" not in p.as_posix()
    }
