"""Many runs saved at the same moment (several runs, the schedule and /generate at once), on
SQLite and on MariaDB: every save is kept, none fails because two transactions met."""

from __future__ import annotations

import asyncio

from pipeline.models import Job, ReviewTicket, Run, RunState, utcnow
from pipeline.store import SqlStore


async def test_runs_saved_at_the_same_moment_are_all_kept(store: SqlStore) -> None:
    """Twenty new runs saved at once, then all sent to review at once: all of them are saved."""
    runs = [Run.new(Job("fox")) for _ in range(20)]
    await asyncio.gather(*(store.save_run(run) for run in runs))
    ticket = ReviewTicket(channel_id=1, message_ids=(2,), posted_at=utcnow())
    waiting = [run.advance(RunState.AWAITING_REVIEW, ticket=ticket) for run in runs]
    await asyncio.gather(*(store.save_run(run) for run in waiting))
    assert [await store.load_run(run.id) for run in runs] == waiting
