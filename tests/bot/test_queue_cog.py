"""The publish queue in Discord, the bot as `python -m bot` wires it (tests/bot/world.py) with X
answering through its fake: the loop posts a due post once, `/queue` lists what goes out when,
and only reviewers `/publish-now` or `/unqueue` a run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import cast

from bot.__main__ import open_bot
from bot.app import MediaBot
from bot.cogs.queue import QueueCog
from pipeline.models import Platform, Run, RunState, utcnow
from pipeline.store import connect
from tests.bot.world import DISCORD_TOKEN, SECRETS, World
from tests.bot.world import world as world  # the fixture: every fake
from tests.fakes import discord as fd
from tests.fakes.x import FakeX
from tests.publish.conftest import approved_run, comfy_png
from tests.publish.conftest import fake_x as fake_x  # X's API, in this process

RUN_ID = "abc123def456"

FOX = """
character: {name: Fox, description: a small orange fox in a blue scarf}
generation:
  generation_type_weights: {text2img: 1}
  workflows: {text2img: workflows/text2img.json}
  prompt_method_weights: {arbitrary: 1}
social_media:
  platforms:
    instagram: {enabled: false, credentials: fox_ig}
    twitter: {enabled: true, credentials: fox_x}
publish:
  twitter:
    times: ["09:00", "21:00"]
"""


async def queued_run(world: World, due: datetime) -> Run:
    """An approved run of the fox whose X post waits in the queue for `due`."""
    (world.project / "characters" / "fox.yaml").write_text(FOX)
    folder = world.project / "output" / "fox" / RUN_ID
    comfy_png(folder / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(folder, ["a.png"], run_id=RUN_ID)
    run = run.advance(RunState.QUEUED, queued={"twitter": due})
    store = await connect(world.settings.database_url.get_secret_value(), sqlite_path=world.project)
    try:
        await store.save_run(run)
        await store.book_slot(RUN_ID, "fox", Platform.TWITTER, "fox_x", due, lambda _: due)
    finally:
        await store.close()
    return run


@asynccontextmanager
async def bot_of(world: World) -> AsyncIterator[MediaBot]:
    """The bot as `python -m bot` wires it, logged in to the fake Discord."""
    async with open_bot(world.settings, guild_ready_timeout=0.1) as bot:
        task = asyncio.create_task(bot.start(DISCORD_TOKEN), name="bot-under-test")
        await world.discord.until(lambda: bot.is_ready() or task.done(), within=10)
        try:
            yield bot
        finally:
            await bot.close()
            await task


def queue_cog(bot: MediaBot) -> QueueCog:
    cog = bot.get_cog("QueueCog")
    # load_extension executes the module afresh, so the class is not this module's import
    assert type(cog).__qualname__ == QueueCog.__qualname__
    return cast(QueueCog, cog)


async def state_of(bot: MediaBot) -> RunState | None:
    run = await bot.services.store.load_run(RUN_ID)
    return run.state if run else None


async def test_the_loop_posts_a_due_post_once_and_announces_it(world: World, fake_x: FakeX) -> None:
    """A post whose slot passed while the bot was away goes out at the bot's first beat; the
    run is published and the notice says so; a later beat posts nothing more."""
    await queued_run(world, utcnow() - timedelta(minutes=5))
    async with bot_of(world) as bot:
        notices = world.discord.channel_messages
        notice = await world.discord.until(
            lambda: [m for m in notices(fd.NOTIFY_CHANNEL) if "published" in m.content],
            within=10,
            what="the published notice",
        )
        assert f"Run `{RUN_ID}`" in notice[0].content
        cog = queue_cog(bot)
        assert await cog.tick(utcnow() + timedelta(days=2)) == []
        assert await state_of(bot) is RunState.PUBLISHED
    assert len(fake_x.tweets) == 1


async def test_queue_lists_what_goes_out_when(world: World, fake_x: FakeX) -> None:
    """/queue, for anyone with the generate role: the account, the time and the run, privately."""
    due = utcnow() + timedelta(days=1)
    await queued_run(world, due)
    async with bot_of(world):
        interaction = await world.discord.slash("queue", user=fd.BOB)
        reply = await world.discord.until(lambda: interaction.reply, what="the answer")
        await world.discord.until(lambda: not interaction.loading, what="the edit")
        assert reply.ephemeral
        assert "**twitter** · fox_x" in reply.content
        assert f"<t:{int(due.timestamp())}:f>" in reply.content
        assert f"`{RUN_ID}`" in reply.content
    assert fake_x.tweets == []


async def test_publish_now_is_for_reviewers_and_posts_at_once(world: World, fake_x: FakeX) -> None:
    """Bob (no reviewer role) is refused and nothing goes out; Alice posts it now."""
    await queued_run(world, utcnow() + timedelta(days=1))
    async with bot_of(world) as bot:
        refused = await world.discord.slash("publish-now", user=fd.BOB, run_id=RUN_ID)
        said = await world.discord.until(lambda: refused.reply, what="the refusal")
        assert said.content == "You need the reviewer role for this command."
        await world.discord.barrier()
        assert fake_x.tweets == []

        done = await world.discord.slash("publish-now", user=fd.ALICE, run_id=RUN_ID)
        await world.discord.until(lambda: not done.loading, within=10, what="the answer")
        assert done.reply is not None
        assert done.reply.content.startswith(f"Run `{RUN_ID}` — published.")
        assert "https://x.com/i/web/status/" in done.reply.content
        assert await state_of(bot) is RunState.PUBLISHED
    assert len(fake_x.tweets) == 1


async def test_unqueue_keeps_it_off_and_says_how_to_bring_it_back(
    world: World, fake_x: FakeX
) -> None:
    """/unqueue by a reviewer: the reply names /retry and /publish-now; the slot passes and
    nothing goes out."""
    due = utcnow() + timedelta(days=1)
    await queued_run(world, due)
    async with bot_of(world) as bot:
        interaction = await world.discord.slash("unqueue", user=fd.ALICE, run_id=RUN_ID)
        await world.discord.until(lambda: not interaction.loading, what="the answer")
        assert interaction.reply is not None
        text = interaction.reply.content
        assert "is off the publish queue" in text
        assert f"/retry {RUN_ID}" in text
        assert f"/publish-now {RUN_ID}" in text
        cog = queue_cog(bot)
        assert await cog.tick(due + timedelta(minutes=1)) == []
        run = await bot.services.store.load_run(RUN_ID)
        assert run is not None
        assert run.state is RunState.FAILED
        assert run.failure is not None
        assert "taken off the publish queue by Alice" in run.failure.message

        again = await world.discord.slash("unqueue", user=fd.ALICE, run_id=RUN_ID)
        await world.discord.until(lambda: again.reply and not again.loading, what="refusal")
        assert again.reply is not None
        assert f"run {RUN_ID} is failed, not queued" in again.reply.content
    assert fake_x.tweets == []
    assert not any(secret in text for secret in SECRETS.values())
