"""`MediaBot`, the commands.Bot subclass, and `run_bot`, which opens what it needs and hosts it.

setup_hook loads the cogs and syncs the application commands; the bot never imports strategies
or comfy and reaches the pipeline only through the resources handed to it.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import discord
from discord.ext import commands

from pipeline.settings import Settings
from pipeline.store import SqlStore, open_store

log = logging.getLogger(__name__)

COGS: tuple[str, ...] = ()


class MediaBot(commands.Bot):
    """The bot process: minimal intents (no message content), cogs loaded in setup_hook."""

    def __init__(self, *, settings: Settings, store: SqlStore) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
        )
        self.settings = settings
        self.store = store

    async def setup_hook(self) -> None:
        for name in COGS:
            await self.load_extension(name)
        await self.tree.sync()

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s", self.user)


async def run_bot(settings: Settings) -> None:
    token = settings.discord_token
    assert token is not None, "the entry point checks DISCORD_TOKEN first"
    url = settings.database_url.get_secret_value()
    async with open_store(url, sqlite_path=settings.database_path) as store:
        bot = MediaBot(settings=settings, store=store)
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stopping.set)
        async with bot:
            runner = asyncio.create_task(bot.start(token.get_secret_value()))
            stopper = asyncio.create_task(stopping.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                stopper.cancel()
                runner.result()  # a login failure surfaces here
            else:
                log.info("SIGTERM: closing")
                await bot.close()
                await runner
