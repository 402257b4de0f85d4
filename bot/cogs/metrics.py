"""What worked, in the bot: the loop that reads published posts' metrics (at start and every
few minutes), and /stats CHARACTER (the table and the chart).

The work is the pipeline's (`pipeline.metrics`, `pipeline.stats`, `pipeline.stats_chart`);
this cog only runs the loop and renders. The tick catches and logs everything, so one failure
never stops the loop.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import render
from bot.cogs._checks import require
from bot.services import Services, services_of
from pipeline.errors import MediaOverloadError
from pipeline.metrics import CollectReport
from pipeline.stats import character_stats, stats_table
from pipeline.stats_chart import draw_chart

log = logging.getLogger(__name__)

#: how often due readings are looked for; the earliest is an hour after a post
COLLECT_MINUTES = 5

Interaction = discord.Interaction[discord.Client]


class MetricsCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    async def cog_load(self) -> None:
        if self.services.metrics is not None:
            self.collect.start()

    async def cog_unload(self) -> None:
        self.collect.cancel()
        if self.services.metrics is not None:
            await self.services.metrics.aclose()

    @tasks.loop(minutes=COLLECT_MINUTES)
    async def collect(self) -> None:
        await self.tick()

    async def tick(self) -> CollectReport | None:
        """One collection pass; its report, or None when it failed (logged). Never raises."""
        collector = self.services.metrics
        if collector is None:
            return None
        try:
            report = await collector.collect_once()
        except MediaOverloadError as exc:  # the store away: a sentence, no traceback
            log.error("metrics collection failed; trying again later (%s)", exc.user_message)
            return None
        except Exception:
            log.exception("metrics collection failed; trying again later")
            return None
        if report.read or report.missed or report.retried:
            log.info("%s", report.sentence())
        return report

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
    await bot.add_cog(MetricsCog(services_of(bot)))
