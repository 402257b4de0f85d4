"""The hourly schedule: on the hour (UTC, at the configured minute) the pipeline's tick runs.

What is due and how a slot is claimed with its run are `pipeline.scheduler`'s (the soak runs
the same tick); this cog is the loop only.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time

from discord.ext import commands, tasks

from bot.background import stop_loop
from bot.services import Services, services_of
from pipeline.models import utcnow
from pipeline.scheduler import Scheduler

log = logging.getLogger(__name__)


class ScheduleCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        self.scheduler = Scheduler(services.characters, services.store, services.runner)
        minute = services.settings.schedule_minute
        self.hourly.change_interval(time=[time(hour, minute, tzinfo=UTC) for hour in range(24)])

    async def cog_load(self) -> None:
        if self.services.settings.schedule_enabled:
            self.hourly.start()

    async def cog_unload(self) -> None:
        await stop_loop(self.hourly)

    @tasks.loop(hours=1)  # the times are set in __init__ from settings
    async def hourly(self) -> None:
        await self.tick(utcnow())

    async def tick(self, now: datetime) -> list[str]:
        """Start the characters due at `now`; the ids of the runs started. Never raises (the
        tick catches and logs everything: anything else would stop the loop for good)."""
        return await self.scheduler.tick(now)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ScheduleCog(services_of(bot)))
