"""Hosting: the bot logs in to Discord through DISCORD_API_BASE, syncs commands once, survives a
dropped gateway."""

from __future__ import annotations

from tests.bot.conftest import StartBot
from tests.fakes import discord as fd


async def test_the_bot_connects_and_syncs_its_commands_to_the_guild(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Starting the bot makes /generate, /runs, /cancel, /retry and /reload show in the guild."""
    await start_bot()
    assert fake.identifies == 1
    names = {command["name"] for command in fake.commands[fd.GUILD_ID]}
    assert names == {"generate", "runs", "cancel", "retry", "reload"}
