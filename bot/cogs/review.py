"""Feeds reaction events to the DiscordReviewer (raw events: the messages need not be cached).

Touches only `Services.reviewer`.
"""

from __future__ import annotations

import discord
from discord.ext import commands

from bot.services import Services, services_of


class ReviewCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.services.reviewer.reaction_added(payload)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.services.reviewer.reaction_removed(payload)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ReviewCog(services_of(bot)))
