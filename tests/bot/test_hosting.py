"""Hosting: the bot logs in to Discord through DISCORD_API_BASE, syncs its commands, and on start
carries on the runs a stop left half done."""

from __future__ import annotations

import asyncio
from pathlib import Path

from pipeline.lease import Owner
from pipeline.models import Job, Run, RunState
from pipeline.store import SqlStore, connect
from tests.bot.conftest import StartBot
from tests.doubles import Script
from tests.fakes import discord as fd


async def test_the_bot_connects_and_syncs_its_commands_to_the_guild(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Starting the bot makes /generate, /runs, /cancel, /retry, /reload, /stats and the
    publish queue's /queue, /publish-now and /unqueue show in the guild."""
    await start_bot()
    assert fake.identifies == 1
    names = {command["name"] for command in fake.commands[fd.GUILD_ID]}
    assert names == {
        "generate",
        "runs",
        "cancel",
        "retry",
        "reload",
        "queue",
        "publish-now",
        "unqueue",
        "stats",
    }


async def test_a_run_stopped_mid_generation_resumes_at_the_next_start(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore
) -> None:
    """The bot stops while a /generate run renders; the next start carries it on from its last
    saved step to review. A half-done run of the command line is left alone."""
    cli_run = Run.new(Job("mascot", requested_by="cli")).advance(RunState.PROMPTED)
    await sqlite_store.save_run(cli_run)
    first = await start_bot(script=Script(hold=asyncio.Event()))
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.started and first.execute.started[0])
    await first.stop()
    stopped = await sqlite_store.load_run(run_id)
    assert stopped is not None
    assert stopped.state is RunState.PROMPTED
    second = await start_bot()
    await fake.until(lambda: second.execute.reviews == [run_id], what="the resumed run's review")
    assert second.execute.started == [run_id]
    left = await sqlite_store.load_run(cli_run.id)
    assert left is not None
    assert left.state is RunState.PROMPTED


async def test_two_bots_starting_on_one_database_resume_a_run_once(
    start_bot: StartBot, fake: fd.FakeDiscord, mysql_url: str, tmp_path: Path
) -> None:
    """A half-done run in a MariaDB shared by two starting bots (two processes, as their
    lease owners say) is resumed by one of them."""
    stores = [await connect(mysql_url, sqlite_path=tmp_path / "x.db") for _ in range(2)]
    try:
        run = Run.new(Job("mascot", requested_by=f"discord:{fd.ALICE.id}"))
        await stores[0].save_run(run.advance(RunState.PROMPTED))
        hold = Script(hold=asyncio.Event())
        owners = [Owner("host-a", 1, "a"), Owner("host-b", 2, "b")]
        bots = [
            await start_bot(store=store, script=hold, owner=owner)
            for store, owner in zip(stores, owners, strict=True)
        ]
        await fake.until(lambda: any(b.execute.started for b in bots), what="a resumed run")
        assert sorted(len(b.execute.started) for b in bots) == [0, 1]
        for bot in bots:  # before their stores close: a stop gives the lease up
            await bot.stop()
    finally:
        for store in stores:
            await store.close()
