"""The schedule's tick (pipeline.scheduler) over the real store: the characters due start once
per slot, whoever ticks; a character still in review waits; a store that is away costs a log
line, not the loop. The bot's hourly loop around it is tested in tests/bot."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.characters import Characters
from pipeline.errors import StoreError
from pipeline.lease import Owner
from pipeline.models import Job, Run, RunState
from pipeline.prompts.library import TemplateLibrary
from pipeline.runner import Runner
from pipeline.schedule import SCHEDULE_REQUESTER
from pipeline.scheduler import Scheduler
from pipeline.store import SqlStore
from tests.leases import HeldRun

pytestmark = pytest.mark.timeout(30)

PROJECT = Path(__file__).resolve().parents[2]
#: 09:00 in Berlin (mascot is due), 17:00 in Tokyo (moonlit_tales is not)
NINE_IN_BERLIN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def characters() -> Characters:
    return Characters(PROJECT / "characters", TemplateLibrary.load())


class AwayAtClaims(SqlStore):
    """The real store whose slot claims fail while `away` is set."""

    away = True

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        if self.away:
            raise StoreError("the database is away")
        return await super().claim_slot_with_run(slot, run)


async def test_two_ticks_of_one_hour_start_the_due_character_once(store: SqlStore) -> None:
    """Two instances ticking the same hour at once start mascot (due) once and moonlit_tales
    (not due) never; the run is the schedule's and goes on its Runner."""
    runners = [
        Runner(store, HeldRun(store), owner=Owner("host", n, "t"), shutdown_grace=0.0)
        for n in (1, 2)
    ]
    ticks = [Scheduler(characters(), store, runner) for runner in runners]
    try:
        started = await asyncio.gather(*(t.tick(NINE_IN_BERLIN) for t in ticks))
        [run_id] = [*started[0], *started[1]]
        run = await store.load_run(run_id)
        assert run is not None
        assert (run.character, run.job.requested_by) == ("mascot", SCHEDULE_REQUESTER)
        assert sum(r.position(run_id) is not None for r in runners) == 1
        assert await ticks[0].tick(NINE_IN_BERLIN) == []  # the same hour again: claimed
    finally:
        for runner in runners:
            await runner.shutdown()


async def test_a_character_whose_last_run_waits_for_review_is_not_started(
    store: SqlStore,
) -> None:
    """While mascot's last run waits for a reviewer, its hour starts no second run."""
    waiting = Run.new(Job("mascot", requested_by=SCHEDULE_REQUESTER))
    await store.save_run(replace(waiting, state=RunState.AWAITING_REVIEW))
    runner = Runner(store, HeldRun(store), shutdown_grace=0.0)
    try:
        assert await Scheduler(characters(), store, runner).tick(NINE_IN_BERLIN) == []
        assert runner.active() == []
    finally:
        await runner.shutdown()


async def test_a_store_away_at_the_claim_costs_a_log_line_and_the_next_tick_starts_it(
    store: SqlStore, caplog: pytest.LogCaptureFixture
) -> None:
    """The tick never raises: a failed claim is one error line naming the character, and
    the same hour ticked again once the store is back starts the run."""
    flaky = AwayAtClaims(store.db)
    runner = Runner(flaky, HeldRun(flaky), shutdown_grace=0.0)
    tick = Scheduler(characters(), flaky, runner)
    try:
        assert await tick.tick(NINE_IN_BERLIN) == []
        [line] = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert "mascot failed: The database is not answering" in line
        flaky.away = False
        assert len(await tick.tick(NINE_IN_BERLIN)) == 1
    finally:
        await runner.shutdown()
