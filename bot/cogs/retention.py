"""Media retention in the bot: once a day (and at start) the media folders of old failed,
expired and cancelled runs are removed, past MEDIA_RETENTION_DAYS.

The work is `pipeline.retention.prune_media`; runs the Runner is working on are left alone.
The tick catches and logs everything, so one failure never stops the daily loop.
"""

from __future__ import annotations

import logging
from datetime import datetime

from discord.ext import commands, tasks

from bot.background import stop_loop
from bot.services import Services, services_of
from pipeline.errors import MediaOverloadError
from pipeline.retention import PruneReport, human_size, prune_media

log = logging.getLogger(__name__)


class RetentionCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    async def cog_load(self) -> None:
        if self.services.settings.media_retention_days > 0:
            self.daily.start()

    async def cog_unload(self) -> None:
        await stop_loop(self.daily)

    @tasks.loop(hours=24)  # its first turn is at start, so a bot restarted daily prunes too
    async def daily(self) -> None:
        await self.tick()

    async def tick(self, now: datetime | None = None) -> PruneReport | None:
        """Prune once; the report, or None when it failed (logged). Never raises."""
        services = self.services
        days = services.settings.media_retention_days
        try:
            report = await prune_media(
                services.store,
                services.characters,
                services.runner.leases,
                days=days,
                now=now,
                busy=services.runner.active,
            )
        except MediaOverloadError as exc:  # the store away: a sentence, no traceback
            log.error("media prune failed; the next one is in a day (%s)", exc.user_message)
            return None
        except Exception:
            log.exception("media prune failed; the next one is in a day")
            return None
        for skipped in report.skipped:
            log.warning("run %s: media not pruned: %s", skipped.run_id, skipped.reason)
        if report.pruned:
            log.info(
                "pruned the media of %d run(s) older than %g days, %s freed",
                len(report.pruned), days, human_size(report.freed),
            )  # fmt: skip
        return report


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(RetentionCog(services_of(bot)))
