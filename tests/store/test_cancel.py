"""A save cancelled at any moment (a run cancelled, a shutdown) leaves the store usable."""

from __future__ import annotations

import asyncio

from pipeline.models import Job, Run, RunState
from pipeline.store import SqlStore


async def test_a_save_cancelled_at_any_point_leaves_the_store_working(store: SqlStore) -> None:
    """Cancelling a save wherever it stands (its BEGIN, a statement, its COMMIT) never breaks
    the saves after it: the run is saved cancelled, whatever happened to the cut-off save."""
    completed_uncut = False
    for ticks in range(3000):  # until a save finishes uncut; on a busy machine that takes more
        run = Run.new(Job("testy"))
        await store.save_run(run)
        cut = asyncio.create_task(store.save_run(run.advance(RunState.PROMPTED, prompt="x")))
        for _ in range(ticks):
            await asyncio.sleep(0)
        completed_uncut = cut.done()
        cut.cancel()
        await asyncio.gather(cut, return_exceptions=True)
        await asyncio.wait_for(store.save_run(run.advance(RunState.CANCELLED)), 5)
        saved = await store.load_run(run.id)
        assert saved is not None
        assert saved.state is RunState.CANCELLED, f"after a cancel at tick {ticks}"
        if completed_uncut:
            break
    assert completed_uncut, "the save never got to finish: the loop did not cover all of it"
