"""/stats CHARACTER in the bot: approval rate and engagement by choice, and what learning
changed, as a short table and a chart.

The stats, the table and the chart are the pipeline's (`pipeline.stats`,
`pipeline.stats_chart`); this cog only renders them.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs._checks import require
from bot.services import Services, services_of
from pipeline.stats import character_stats, stats_table
from pipeline.stats_chart import draw_chart

log = logging.getLogger(__name__)

Interaction = discord.Interaction[discord.Client]


class StatsCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(
        name="stats", description="What worked for a character: approvals, engagement, learning."
    )
    @app_commands.describe(character="whose stats: a file in the characters folder")
    @require("discord_generate_role_ids")
    async def stats(self, interaction: Interaction, character: str) -> None:
        await interaction.response.defer(thinking=True)
        services = self.services
        loaded = await services.character(character)  # a RunError: one sentence, by on_error
        stats = await character_stats(services.store, loaded)
        table = stats_table(stats)
        none = discord.AllowedMentions.none()
        if stats.empty:
            await interaction.followup.send(table, allowed_mentions=none)
            return
        chart = services.settings.data_dir / "charts" / f"{loaded.key}.png"
        await draw_chart(stats, chart)
        body = render.clip(table, render.CONTENT_LIMIT - 8)
        await interaction.followup.send(
            f"```\n{body}\n```", file=discord.File(chart), allowed_mentions=none
        )

    @stats.autocomplete("character")
    async def _character_names(
        self, interaction: Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        needle = current.lower()
        names = [n for n in self.services.character_names if needle in n.lower()]
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(StatsCog(services_of(bot)))
