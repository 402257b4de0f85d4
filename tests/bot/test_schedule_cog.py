"""The hourly schedule in the bot: the loop runs the pipeline's tick and survives its failures.

What the tick decides and claims (one run per slot, even with two instances; the lease before
the claim; a stop right after it) is tested at the pipeline layer: tests/pipeline/test_scheduler.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from bot.cogs.schedule import ScheduleCog
from pipeline.errors import StoreError
from pipeline.models import Run
from pipeline.store import SqlStore, connect
from pipeline.store.db import Database
from tests.bot.conftest import BotUnderTest, StartBot

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


class HeldRuns(SqlStore):
    """The real store whose first read of runs waits until it is cancelled, then reads the
    store once more on its way out (as a transaction's rollback does)."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.reading = asyncio.Event()
        self.unwound: list[int] = []

    async def list_runs(self, **criteria: Any) -> list[Run]:
        if not self.reading.is_set():
            self.reading.set()
            try:
                await asyncio.Event().wait()  # until the tick is cancelled
            finally:
                self.unwound.append(len(await super().list_runs(limit=1)))
        return await super().list_runs(**criteria)


async def test_closing_the_bot_mid_tick_lets_the_tick_end_before_anything_closes(
    start_bot: StartBot, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The bot is closed while the hourly loop's tick waits on the store: the close returns
    only once the tick has unwound, its last store call answered (the store was still open),
    and no tick failure is logged."""
    connected = await connect(f"sqlite:///{tmp_path / 's.db'}", sqlite_path=tmp_path)
    store = HeldRuns(connected.db)
    try:
        under_test = await start_bot(store=store)
        cog = schedule_of(under_test)
        cog.hourly.change_interval(seconds=3600)  # relative: the first turn is now
        cog.hourly.start()
        await asyncio.wait_for(store.reading.wait(), timeout=10)
        await under_test.stop()
        assert store.unwound == [0]
        assert not cog.hourly.is_running()
        assert "failed" not in caplog.text
    finally:
        await store.close()
