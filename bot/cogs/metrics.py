"""Metrics collection in the bot: at start and every few minutes, the due readings of
published posts (1 h, 24 h, 7 days after each went out) are read into the store.

The work is `pipeline.metrics.MetricsCollector`; this cog only loops. The tick catches and logs
everything, so one failure never stops the loop.
"""

from __future__ import annotations

import logging

from discord.ext import commands, tasks

from bot.background import stop_loop
from bot.services import Services, services_of
from pipeline.errors import MediaOverloadError
from pipeline.metrics import CollectReport

log = logging.getLogger(__name__)

#: how often due readings are looked for; the earliest is an hour after a post
COLLECT_MINUTES = 5


class MetricsCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    async def cog_load(self) -> None:
        if self.services.metrics is not None:
            self.collect.start()

    async def cog_unload(self) -> None:
        await stop_loop(self.collect)
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


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(MetricsCog(services_of(bot)))
