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
from tests.bot.conftest import BotUnderTest, StartBot
from tests.doubles import Script

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

    async def claim_slot(self, character: str, slot: str, run_id: str | None = None) -> bool:
        if self.broken:
            raise StoreError("the database is away")
        return await super().claim_slot(character, slot, run_id)


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
    """The database fails during one tick: nothing starts, nothing raises; the next tick works
    and the hourly loop is still running."""
    store = FlakySlots((await connect(f"sqlite:///{tmp_path / 's.db'}", sqlite_path=tmp_path)).db)
    try:
        under_test = await start_bot(store=store, schedule_enabled=True)
        cog = schedule_of(under_test)
        assert cog.hourly.is_running()
        assert await cog.tick(NINE_IN_BERLIN) == []
        assert "schedule 2026-11-25T08: mascot failed" in caplog.text
        await cog.hourly()  # the loop body itself: the real hour, must not raise either
        store.broken = False
        assert len(await cog.tick(NINE_IN_BERLIN)) == 1
        assert cog.hourly.is_running()
    finally:
        await store.close()
