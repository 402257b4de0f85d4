"""The publish queue in Discord: the loop that posts what is due, `/queue`, and for reviewers
`/publish-now` and `/unqueue`.

What is due, claiming it and posting it are `pipeline.publish.queue`'s (cron runs the same
code with `python -m pipeline publish-due`); this cog is the loop and the rendering only.
"""

from __future__ import annotations

import logging
from datetime import datetime

import discord
from discord import app_commands
from discord.ext import commands, tasks

from bot import render
from bot.background import stop_loop
from bot.cogs._checks import require
from bot.services import Services, services_of
from pipeline.errors import RunError
from pipeline.models import PostRecord
from pipeline.publish.queue import PublishQueue

log = logging.getLogger(__name__)

Interaction = discord.Interaction[discord.Client]

_NONE = discord.AllowedMentions.none()


class QueueCog(commands.Cog):
    """Runs the publish queue's beat and answers its commands."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.beat.change_interval(seconds=services.settings.publish_queue_seconds)

    async def cog_load(self) -> None:
        if self.services.queue is not None:
            self.beat.start()

    async def cog_unload(self) -> None:
        await stop_loop(self.beat)

    @tasks.loop(seconds=60)  # the interval is set in __init__ from settings
    async def beat(self) -> None:
        await self.tick()

    async def tick(self, now: datetime | None = None) -> list[PostRecord]:
        """Post what is due at `now` (the queue's clock when None). Never raises: anything but
        a network error would stop the loop for good."""
        queue = self.services.queue
        if queue is None:
            return []
        try:
            return await queue.publish_due(now)
        except Exception:
            log.exception("the publish queue's beat failed")
            return []

    def _queue(self) -> PublishQueue:
        if self.services.queue is None:
            raise RunError("this bot has no publish queue")
        return self.services.queue

    @app_commands.command(name="queue", description="What the publish queue posts when.")
    @require("discord_generate_role_ids")
    async def show_queue(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        entries = await self._queue().pending()
        await interaction.edit_original_response(
            content=render.queue_list(entries), allowed_mentions=_NONE
        )

    @app_commands.command(name="publish-now", description="Post a queued run now, slots or not.")
    @app_commands.describe(run_id="the run's id, as on its card or in /queue")
    @require("discord_review_role_ids")
    async def publish_now(self, interaction: Interaction, run_id: str) -> None:
        # the posts may take a while (uploads, a platform's retries): defer first
        await interaction.response.defer(ephemeral=True, thinking=True)
        outcome = await self._queue().publish_now(run_id.strip())
        run = outcome.run
        lines = [f"Run `{run.id}` \N{EM DASH} {render.state_word(run.state)}."]
        lines += render.post_lines(outcome.posts)
        lines += [f"{p.value}: another instance is posting it right now." for p in outcome.busy]
        log.info("run %s: /publish-now by %s", run.id, interaction.user.id)
        await interaction.edit_original_response(
            content=render.clip("\n".join(lines), render.CONTENT_LIMIT), allowed_mentions=_NONE
        )

    @app_commands.command(name="unqueue", description="Take a queued run's posts off the queue.")
    @app_commands.describe(run_id="the run's id, as on its card or in /queue")
    @require("discord_review_role_ids")
    async def unqueue(self, interaction: Interaction, run_id: str) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        by = interaction.user.display_name
        outcome = await self._queue().unqueue(run_id.strip(), by)
        run = outcome.run
        lines = [
            f"Run `{run.id}` is off the publish queue: its waiting posts do not go out."
            f" `/retry {run.id}` queues it again, `/publish-now {run.id}` posts it now."
        ]
        lines += [f"{p.value}: already being posted; that one goes out." for p in outcome.busy]
        log.info("run %s: /unqueue by %s", run.id, interaction.user.id)
        await interaction.edit_original_response(content="\n".join(lines), allowed_mentions=_NONE)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(QueueCog(services_of(bot)))
