"""/runs, /cancel and /retry: the runs a member started (an admin: anyone's).

The Runner does the work (`Runner.cancel` stops a run here or one no process holds, and says
which process holds it otherwise); this cog checks who asks and renders the answer. Touches
the pipeline only through `Services`.
"""

from __future__ import annotations

import logging
import re

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.access import requester_key
from bot.card import InteractionCard
from bot.cogs._checks import allowed, require
from bot.services import Services, services_of
from pipeline.errors import RunError
from pipeline.lease import RunLeased
from pipeline.models import Run, RunState, refuse_if_pruned, utcnow

log = logging.getLogger(__name__)

Interaction = discord.Interaction[discord.Client]

#: run ids are lower-case hex (pipeline.models.new_run_id); anything else is no run of ours
RUN_ID = re.compile(r"^[0-9a-f]{6,32}$")


class RunsCog(commands.Cog):
    """Listing, cancelling and retrying runs."""

    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="runs", description="Active and recent runs.")
    @require("discord_generate_role_ids")
    async def runs(self, interaction: Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        runner = self.services.runner
        recent = await self.services.store.list_runs(limit=15)
        known = {run.id for run in recent}
        for run_id in runner.active():
            if run_id not in known and (run := await self.services.store.load_run(run_id)):
                recent.append(run)
        positions = {run.id: runner.position(run.id) for run in recent}
        await interaction.edit_original_response(
            content=render.runs_list(recent, positions, now=utcnow()),
            allowed_mentions=discord.AllowedMentions.none(),
        )

    @app_commands.command(name="cancel", description="Stop a run that is not finished.")
    @app_commands.describe(run_id="the run's id, as on its card")
    @require("discord_generate_role_ids")
    async def cancel(self, interaction: Interaction, run_id: str) -> None:
        # defer first: a running run may take a moment to stop, and Discord waits only 3 s
        await interaction.response.defer(ephemeral=True, thinking=True)
        run = await self._own_run(interaction, run_id)
        if run.state.finished:
            text = f"Run `{run.id}` is not running or queued; it is {render.state_word(run.state)}."
        else:
            ended = await self.services.runner.cancel(run.id)
            if ended.state is RunState.CANCELLED:
                text = f"Run `{run.id}` is cancelled."
            else:
                text = f"Run `{run.id}` ended first; it is {render.state_word(ended.state)}."
        await interaction.edit_original_response(content=text)

    @app_commands.command(name="retry", description="Resume a failed or expired run.")
    @app_commands.describe(run_id="the run's id, as on its card")
    @require("discord_generate_role_ids")
    async def retry(self, interaction: Interaction, run_id: str) -> None:
        # refusals before the public defer, so they stay private (see /generate)
        run = await self._own_run(interaction, run_id)
        if run.state in {RunState.PUBLISHED, RunState.REJECTED, RunState.CANCELLED}:
            raise RunError(f"run {run.id} is {run.state.value}; there is nothing to retry")
        refuse_if_pruned(run)
        character = await self.services.character(run.character)
        character.refuse_unrunnable_resume(run)
        if run.state is RunState.FAILED:  # only uncertain posts left: a retry would do nothing
            idle = render.nothing_to_retry(run, await self.services.store.posts_for_run(run.id))
            if idle is not None:
                raise RunError(idle)
        held = await self.services.runner.held_elsewhere(run.id)
        if held is not None:
            raise RunLeased(held)
        await interaction.response.defer(thinking=True)
        card = self.services.run_card(
            InteractionCard(interaction),
            character=run.character,
            generation_type=run.job.generation_type,
        )
        resumed = await self.services.runner.resume(run.id, sink=card)
        log.info("run %s: /retry by %s", run.id, requester_key(interaction.user))
        self.services.background.spawn(card.follow(resumed), name=f"card-{run.id}")

    async def _own_run(self, interaction: Interaction, run_id: str) -> Run:
        """The run, when it exists and the member started it or is an admin."""
        wanted = run_id.strip()
        run = await self.services.store.load_run(wanted) if RUN_ID.match(wanted) else None
        if run is None:
            raise RunError(f"no run with id {wanted[:32]!r}")
        mine = run.job.requested_by == requester_key(interaction.user)
        if not mine and not allowed(interaction, "discord_admin_role_ids"):
            raise RunError(f"run {run.id} is not yours; an admin can act on it")
        return run


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(RunsCog(services_of(bot)))
