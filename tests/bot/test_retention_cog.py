"""The bot's daily media prune, and /retry of a run whose media were pruned."""

from __future__ import annotations

import shutil
from collections.abc import Collection
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import cast

import pytest

from bot.cogs.retention import RetentionCog
from pipeline.errors import StoreError
from pipeline.models import Job, Run, RunFailure, RunState, utcnow
from pipeline.store import SqlStore, connect
from tests.bot.conftest import PROJECT, BotUnderTest, StartBot
from tests.fakes import discord as fd


def retention_of(under_test: BotUnderTest) -> RetentionCog:
    cog = under_test.bot.get_cog("RetentionCog")
    # load_extension executes the module afresh, so the class is not this module's import
    assert type(cog).__qualname__ == RetentionCog.__qualname__
    return cast(RetentionCog, cog)


@pytest.fixture
def characters_dir(tmp_path: Path) -> Path:
    """A copy of the shipped characters: run folders land in tmp_path/output/CHARACTER."""
    shutil.copytree(PROJECT / "characters", tmp_path / "characters")
    shutil.copytree(PROJECT / "workflows", tmp_path / "workflows")
    return tmp_path / "characters"


async def old_failed_run(store: SqlStore, characters_dir: Path, *, days: int = 40) -> Path:
    """A mascot run of Alice's that failed `days` ago, with one image; its folder."""
    run = Run.new(Job("mascot", requested_by=f"discord:{fd.ALICE.id}"))
    when = utcnow() - timedelta(days=days)
    run = replace(
        run,
        state=RunState.FAILED,
        updated_at=when,
        failure=RunFailure(RunState.DESCRIBED, "ComfyUI failed"),
    )
    folder = characters_dir.parent / "output" / "mascot" / run.id
    folder.mkdir(parents=True)
    (folder / "image_0.png").write_bytes(b"x" * 100)
    await store.save_run(run)
    return folder


class FlakyListing(SqlStore):
    """The real store whose listing of old runs (the prune's) fails while `broken` is set."""

    broken = True

    async def list_runs(
        self,
        *,
        states: Collection[RunState] | None = None,
        character: str | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        if self.broken and updated_before is not None:
            raise StoreError("the database is away")
        return await super().list_runs(
            states=states, character=character, updated_before=updated_before, limit=limit
        )


async def test_the_bot_prunes_at_start_and_each_tick(
    start_bot: StartBot, sqlite_store: SqlStore, characters_dir: Path
) -> None:
    """An old failed run's folder is gone soon after the bot starts; one that turns old later
    goes at the next tick, and the run says its media were pruned."""
    first = await old_failed_run(sqlite_store, characters_dir)
    under_test = await start_bot(characters_dir=characters_dir)
    cog = retention_of(under_test)
    assert cog.daily.is_running()
    await under_test.fake.until(lambda: not first.exists(), what="the prune at start")

    second = await old_failed_run(sqlite_store, characters_dir, days=31)
    report = await cog.tick()
    assert report is not None
    assert [item.run_id for item in report.pruned] == [second.name]
    assert not second.exists()
    stored = await sqlite_store.load_run(second.name)
    assert stored is not None
    assert stored.pruned is not None


async def test_a_tick_that_fails_is_logged_and_the_loop_goes_on(
    start_bot: StartBot, tmp_path: Path, characters_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The database fails during a prune: nothing raises, one line without a traceback says
    so, the loop keeps running and the next tick prunes."""
    store = FlakyListing((await connect(f"sqlite:///{tmp_path / 's.db'}", sqlite_path=tmp_path)).db)
    try:
        under_test = await start_bot(store=store, characters_dir=characters_dir)
        cog = retention_of(under_test)
        folder = await old_failed_run(store, characters_dir)
        assert await cog.tick() is None
        assert "media prune failed; the next one is in a day (" in caplog.text
        assert [r for r in caplog.records if r.exc_info] == []  # a sentence, no traceback
        await cog.daily()  # the loop body itself must not raise either
        assert cog.daily.is_running()
        assert folder.exists()
        store.broken = False
        report = await cog.tick()
        assert report is not None
        assert [item.run_id for item in report.pruned] == [folder.name]
        assert cog.daily.is_running()
    finally:
        await store.close()


async def test_retention_zero_starts_no_loop(start_bot: StartBot, characters_dir: Path) -> None:
    """MEDIA_RETENTION_DAYS=0: the bot never prunes."""
    under_test = await start_bot(characters_dir=characters_dir, media_retention_days=0)
    assert not retention_of(under_test).daily.is_running()


async def test_retry_of_a_pruned_run_says_its_media_are_gone(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, characters_dir: Path
) -> None:
    """/retry of a run whose media were pruned answers one sentence; nothing starts."""
    folder = await old_failed_run(sqlite_store, characters_dir)
    under_test = await start_bot(characters_dir=characters_dir)
    await fake.until(lambda: not folder.exists(), what="the prune at start")
    retry = await fake.slash("retry", run_id=folder.name)
    await fake.until(lambda: retry.reply, what="the refusal")
    today = utcnow().strftime("%Y-%m-%d")
    assert retry.reply is not None
    assert retry.reply.ephemeral
    assert retry.reply.content == (
        f"run {folder.name}'s media were removed on {today} after 30 days; start a new run"
    )
    assert under_test.execute.started == []
