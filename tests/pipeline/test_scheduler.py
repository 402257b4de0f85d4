"""The schedule's tick (pipeline.scheduler) over the real store: the characters due start once
per slot, whoever ticks; the run is leased before its claim; a stop right after the claim
leaves the run to the next start; a character still in review waits; a store that is away
costs a log line, not the loop. The bot's hourly loop around it is tested in tests/bot."""

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
from pipeline.recovery import Recovery
from pipeline.runner import Runner
from pipeline.schedule import SCHEDULE_REQUESTER
from pipeline.scheduler import Scheduler
from pipeline.store import SqlStore, connect
from pipeline.store.db import Database
from tests.leases import HeldRun

pytestmark = pytest.mark.timeout(30)

PROJECT = Path(__file__).resolve().parents[2]
#: 09:00 in Berlin (mascot is due), 17:00 in Tokyo (moonlit_tales is not)
NINE_IN_BERLIN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def characters() -> Characters:
    return Characters(PROJECT / "characters", TemplateLibrary.load())


class NotesTheLease(SqlStore):
    """The real store, noting who holds each run's lease when its slot claim is made."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.leased_at_claim: dict[str, str | None] = {}

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        lease = await self.lease_of(run.id)
        self.leased_at_claim[run.id] = lease.owner if lease is not None else None
        return await super().claim_slot_with_run(slot, run)


class StopsAfterClaim(SqlStore):
    """The real store; the process freezes right after a slot's claim commits (until it is
    stopped)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.claimed = asyncio.Event()

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        won = await super().claim_slot_with_run(slot, run)
        self.claimed.set()
        await asyncio.Event().wait()
        return won


class AwayAtClaims(SqlStore):
    """The real store whose slot claims fail while `away` is set."""

    away = True

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        if self.away:
            raise StoreError("the database is away")
        return await super().claim_slot_with_run(slot, run)


async def test_two_instances_ticking_one_hour_start_the_due_character_once(
    store_url: str, tmp_path: Path
) -> None:
    """Two instances (each its own connection and Runner) ticking the same hour at once start
    mascot (due) once and moonlit_tales (not due) never; the same hour again starts nothing."""
    stores = [await connect(store_url, sqlite_path=tmp_path / "x.db") for _ in range(2)]
    runners = [
        Runner(s, HeldRun(s), owner=Owner("host", n, "t"), shutdown_grace=0.0)
        for n, s in enumerate(stores)
    ]
    ticks = [Scheduler(characters(), s, r) for s, r in zip(stores, runners, strict=True)]
    try:
        started = await asyncio.gather(*(t.tick(NINE_IN_BERLIN) for t in ticks))
        assert sorted(len(ids) for ids in started) == [0, 1]
        runs = await stores[0].list_runs()
        assert [(r.character, r.job.requested_by) for r in runs] == [("mascot", SCHEDULE_REQUESTER)]
        assert await ticks[0].tick(NINE_IN_BERLIN) == []
    finally:
        for runner in runners:
            await runner.shutdown()
        for one in stores:
            await one.close()


async def test_a_scheduled_run_is_leased_before_its_claim_and_a_lost_claim_leaves_no_lease(
    store: SqlStore,
) -> None:
    """No other instance's adoption can take a scheduled run up between its save (with the
    slot's claim) and its start: the run's lease is the ticking instance's before the claim
    commits. A claim another instance won leaves no lease behind."""
    notes = NotesTheLease(store.db)
    runner = Runner(notes, HeldRun(notes), shutdown_grace=0.0)
    tick = Scheduler(characters(), notes, runner)
    owner = str(runner.leases.owner)
    try:
        [started] = await tick.tick(NINE_IN_BERLIN)
        assert notes.leased_at_claim == {started: owner}
        assert await tick.tick(NINE_IN_BERLIN) == []
        [(lost, holder)] = [(r, o) for r, o in notes.leased_at_claim.items() if r != started]
        assert holder == owner
        assert await store.lease_of(lost) is None
        assert [run.id for run in await store.list_runs()] == [started]
    finally:
        await runner.shutdown()


async def test_a_stop_right_after_the_claim_leaves_the_run_for_the_next_start(
    store: SqlStore,
) -> None:
    """The process freezes just after claiming mascot's hour and is stopped: the next start's
    recovery runs mascot's post for that hour, and ticking the hour again starts no second."""
    frozen = StopsAfterClaim(store.db)
    first = Runner(frozen, HeldRun(frozen), shutdown_grace=0.0)
    ticking = asyncio.create_task(Scheduler(characters(), frozen, first).tick(NINE_IN_BERLIN))
    await asyncio.wait_for(frozen.claimed.wait(), timeout=10)
    ticking.cancel()
    await asyncio.wait({ticking})
    await first.shutdown()
    (left,) = await store.list_runs()
    assert (left.character, left.state) == ("mascot", RunState.CREATED)
    await next_start_runs(store, left.id)


async def test_a_runner_shutting_down_after_the_claim_leaves_the_run_for_the_next_start(
    store: SqlStore,
) -> None:
    """The Runner refuses the claimed run (SIGTERM arrived meanwhile): the tick starts nothing
    and raises nothing, and the next start runs mascot's post for that hour."""
    first = Runner(store, HeldRun(store), shutdown_grace=0.0)
    await first.shutdown()
    assert await Scheduler(characters(), store, first).tick(NINE_IN_BERLIN) == []
    (left,) = await store.list_runs()
    assert (left.character, left.job.requested_by, left.state) == (
        "mascot",
        SCHEDULE_REQUESTER,
        RunState.CREATED,
    )
    await next_start_runs(store, left.id)


async def next_start_runs(store: SqlStore, run_id: str) -> None:
    """The next process's start (the recovery) runs `run_id`, and its tick of the same hour
    starts nothing more."""
    work = HeldRun(store)
    second = Runner(store, work, shutdown_grace=0.0)
    try:
        assert await Recovery(second, store).at_start() == 1
        assert second.position(run_id) is not None
        assert await Scheduler(characters(), store, second).tick(NINE_IN_BERLIN) == []
    finally:
        await second.shutdown()


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
