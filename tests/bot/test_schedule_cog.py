"""The hourly schedule in the bot: the loop runs the pipeline's tick and survives its failures.

What the tick decides and claims (one run per slot, even with two instances; the lease before
the claim; a stop right after it) is tested at the pipeline layer: tests/pipeline/test_scheduler.py."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest

from bot.cogs.schedule import ScheduleCog
from pipeline.errors import StoreError
from pipeline.models import Run
from pipeline.store import SqlStore, connect
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
