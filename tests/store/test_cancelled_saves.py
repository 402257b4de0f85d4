"""A save cancelled part-way (a /cancel, a shutdown) on SQLite and on MariaDB: the database stays
usable for every later save, and the cancelled save is there whole or not at all."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from pipeline.models import Job, ReviewTicket, Run, RunState, utcnow
from pipeline.store import connect


@pytest.mark.parametrize("steps", range(6), ids=lambda n: f"after-{n}-steps")
async def test_a_save_cancelled_anywhere_leaves_the_database_usable(
    store_url: str, tmp_path: Path, steps: int
) -> None:
    """Cancelling a run while it saves (from BEGIN to COMMIT) never breaks later saves."""
    store = await connect(store_url, sqlite_path=tmp_path / "unused.db")
    ticket = ReviewTicket(channel_id=1, message_ids=(2,), posted_at=utcnow())
    cancelled = Run.new(Job("fox")).advance(RunState.AWAITING_REVIEW, ticket=ticket)
    saving = asyncio.create_task(store.save_run(cancelled))
    for _ in range(steps):
        await asyncio.sleep(0)
    saving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await saving
    later = Run.new(Job("fox"))
    await store.save_run(later)
    await store.close()

    reopened = await connect(store_url, sqlite_path=tmp_path / "unused.db")
    try:
        assert await reopened.load_run(later.id) == later
        assert await reopened.load_run(cancelled.id) in (None, cancelled)
    finally:
        await reopened.close()
