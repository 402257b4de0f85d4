"""The hourly schedule in the bot: one run per character and slot, even with two bots."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from bot.cogs.schedule import ScheduleCog
from pipeline.errors import StoreError
from pipeline.models import Job, Run, RunState
from pipeline.store import SqlStore, connect
from pipeline.store.db import Database
from tests.bot.conftest import BotUnderTest, StartBot
from tests.doubles import Script
from tests.fakes import discord as fd

#: 09:00 in Berlin (mascot is due), 17:00 in Tokyo (moonlit_tales is not)
NINE_IN_BERLIN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def schedule_of(under_test: BotUnderTest) -> ScheduleCog:
    cog = under_test.bot.get_cog("ScheduleCog")
    # load_extension executes the module afresh, so the class is not this module's import
    assert type(cog).__qualname__ == ScheduleCog.__qualname__
    return cast(ScheduleCog, cog)


class FlakySlots(SqlStore):
    """The real store whose slot claims fail while `broken` is set."""

    broken = True

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        if self.broken:
            raise StoreError("the database is away")
        return await super().claim_slot_with_run(slot, run)


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
    """The real store; the process freezes right after a slot's claim commits (until killed)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.claimed = asyncio.Event()

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        won = await super().claim_slot_with_run(slot, run)
        self.claimed.set()
        await asyncio.Event().wait()
        return won


async def test_two_bots_on_one_database_start_a_slot_once(
    start_bot: StartBot, mysql_url: str, tmp_path: Path
) -> None:
    """Two instances ticking the same hour on one MariaDB start mascot's run exactly once."""
    stores = [await connect(mysql_url, sqlite_path=tmp_path / "x.db") for _ in range(2)]
    try:
        bots = [
            await start_bot(store=store, script=Script(hold=asyncio.Event())) for store in stores
        ]
        started = await asyncio.gather(*(schedule_of(b).tick(NINE_IN_BERLIN) for b in bots))
        assert sorted(len(ids) for ids in started) == [0, 1]
        runs = await stores[0].list_runs()
        assert [(run.character, run.job.requested_by) for run in runs] == [("mascot", "schedule")]
        again = await schedule_of(bots[0]).tick(NINE_IN_BERLIN)
        assert again == []
    finally:
        for store in stores:
            await store.close()


async def test_a_character_still_in_review_is_skipped(
    start_bot: StartBot, sqlite_store: SqlStore
) -> None:
    """mascot's last run awaits review, so its hour passes without a new run."""
    under_test = await start_bot()
    waiting = Run.new(Job("mascot")).advance(RunState.AWAITING_REVIEW)
    await sqlite_store.save_run(waiting)
    assert await schedule_of(under_test).tick(NINE_IN_BERLIN) == []


async def test_a_tick_that_fails_is_logged_and_the_next_one_runs(
    start_bot: StartBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database fails during one tick: nothing starts, nothing raises, one line without
    a traceback says so; the next tick works and the hourly loop is still running."""
    store = FlakySlots((await connect(f"sqlite:///{tmp_path / 's.db'}", sqlite_path=tmp_path)).db)
    try:
        under_test = await start_bot(store=store, schedule_enabled=True)
        cog = schedule_of(under_test)
        assert cog.hourly.is_running()
        assert await cog.tick(NINE_IN_BERLIN) == []
        assert "schedule 2026-11-25T08: mascot failed: " in caplog.text
        assert [r for r in caplog.records if r.exc_info] == []  # a sentence, no traceback
        await cog.hourly()  # the loop body itself: the real hour, must not raise either
        store.broken = False
        assert len(await cog.tick(NINE_IN_BERLIN)) == 1
        assert cog.hourly.is_running()
    finally:
        await store.close()


async def test_a_scheduled_run_is_leased_before_it_is_saved_and_a_lost_claim_leaves_no_lease(
    start_bot: StartBot, tmp_path: Path
) -> None:
    """No other instance's adoption can take a scheduled run up between its save (with the
    slot's claim) and its start: the run's lease is this bot's before the claim commits. A
    claim another instance won leaves no lease behind."""
    store = NotesTheLease(
        (await connect(f"sqlite:///{tmp_path / 'bot.db'}", sqlite_path=tmp_path)).db
    )
    under_test: BotUnderTest | None = None
    try:
        under_test = await start_bot(store=store)
        owner = str(under_test.services.runner.leases.owner)
        [started] = await schedule_of(under_test).tick(NINE_IN_BERLIN)
        assert store.leased_at_claim == {started: owner}
        assert await schedule_of(under_test).tick(NINE_IN_BERLIN) == []
        [(lost, holder)] = [(r, o) for r, o in store.leased_at_claim.items() if r != started]
        assert holder == owner
        assert await store.lease_of(lost) is None
        assert [run.id for run in await store.list_runs()] == [started]
    finally:
        if under_test is not None:
            await under_test.stop()  # before its store closes
        await store.close()


async def test_a_stop_right_after_the_claim_leaves_the_run_for_the_next_start(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The bot is killed just after claiming mascot's hour: the next start runs mascot's post
    for that hour, and ticking the hour again starts no second one."""
    frozen = StopsAfterClaim(
        (await connect(f"sqlite:///{tmp_path / 'bot.db'}", sqlite_path=tmp_path)).db
    )
    try:
        first = await start_bot(store=frozen)
        tick = asyncio.create_task(schedule_of(first).tick(NINE_IN_BERLIN))
        await asyncio.wait_for(frozen.claimed.wait(), timeout=10)
        tick.cancel()
        await asyncio.wait({tick})
        await first.stop()
    finally:
        await frozen.close()
    (left,) = await sqlite_store.list_runs()
    assert (left.character, left.state) == ("mascot", RunState.CREATED)
    second = await start_bot()
    await fake.until(lambda: second.execute.started == [left.id], what="the resumed run")
    assert await schedule_of(second).tick(NINE_IN_BERLIN) == []


async def test_a_runner_shutting_down_after_the_claim_leaves_the_run_for_the_next_start(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore
) -> None:
    """The runner refuses the claimed run (SIGTERM arrived meanwhile): the tick starts nothing
    and raises nothing, and the next start runs mascot's post for that hour."""
    first = await start_bot()
    await first.services.runner.shutdown()
    assert await schedule_of(first).tick(NINE_IN_BERLIN) == []
    await first.stop()
    (left,) = await sqlite_store.list_runs()
    assert (left.character, left.job.requested_by, left.state) == (
        "mascot",
        "schedule",
        RunState.CREATED,
    )
    second = await start_bot()
    await fake.until(lambda: second.execute.started == [left.id], what="the resumed run")
    assert await schedule_of(second).tick(NINE_IN_BERLIN) == []
