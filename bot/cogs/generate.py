"""/generate (with a live run card), /runs, /cancel and /retry.

The command checks what it was asked first (every refusal private to the asker), then defers,
starts the run through the Runner (which queues it under limits) and leaves a run card to
follow it. Touches the pipeline only through `Services`.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
import re
import unicodedata

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.access import requester_key
from bot.card import InteractionCard
from bot.cogs._checks import allowed, require
from bot.services import Services, services_of
from pipeline.characters import Character
from pipeline.errors import CharacterNotFound, RunError
from pipeline.lease import RunLeased
from pipeline.models import Job, Run, RunState, refuse_if_pruned, utcnow

log = logging.getLogger(__name__)

Interaction = discord.Interaction[discord.Client]

#: the longest prompt /generate takes; Discord allows 6,000 characters in an option, but a
#: prompt is an idea for the language model, and a longer one only crowds out the template
PROMPT_LIMIT = 1000
#: run ids are lower-case hex (pipeline.models.new_run_id); anything else is no run of ours
RUN_ID = re.compile(r"^[0-9a-f]{6,32}$")


def check_prompt(prompt: str | None) -> str | None:
    """The prompt, stripped; a RunError saying what is wrong when it is too long or holds
    control characters (invisible, and they break logs and terminals)."""
    if prompt is None:
        return None
    prompt = prompt.strip()
    if len(prompt) > PROMPT_LIMIT:
        raise RunError(
            f"The prompt is {len(prompt)} characters long; at most {PROMPT_LIMIT} are allowed."
        )
    bad = next((ch for ch in prompt if unicodedata.category(ch) in {"Cc", "Cs"}), None)
    if bad is not None:
        raise RunError(
            f"The prompt holds a control character (U+{ord(bad):04X}); write plain text."
        )
    return prompt or None


class GenerateCog(commands.Cog):
    """Starting, listing, cancelling and retrying runs."""

    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.services = services
        self._generate = self._build_generate()

    async def cog_load(self) -> None:
        self.bot.tree.add_command(self._generate)

    async def cog_unload(self) -> None:
        self.bot.tree.remove_command(self._generate.name)

    def _build_generate(self) -> app_commands.Command[commands.Cog, ..., None]:
        """/generate is built here, not in the class body, because its `type` choices are the
        pipeline's strategy names, known only at run time (the bot may not import them)."""
        services = self.services

        async def generate(
            interaction: Interaction,
            character: str,
            prompt: str | None = None,
            kind: str | None = None,
        ) -> None:
            # Every refusal comes before the first answer, so MediaTree.on_error answers it
            # privately: after a public defer, Discord turns the first follow-up into that
            # public message whatever its `ephemeral` flag says.
            prompt = check_prompt(prompt)
            loaded = await self._character(character)
            if kind is not None:
                loaded.refuse_unrunnable(kind)
            await interaction.response.defer(thinking=True)
            job = Job(
                character=loaded.key,
                requested_by=requester_key(interaction.user),
                prompt=prompt,
                generation_type=kind,
            )
            card = services.run_card(
                InteractionCard(interaction), character=loaded.key, generation_type=kind
            )
            run = await services.runner.submit(job, sink=card)
            log.info("run %s: /generate %s by %s", run.id, loaded.key, job.requested_by)
            services.background.spawn(card.follow(run), name=f"card-{run.id}")

        async def character_names(
            interaction: Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            needle = current.lower()
            names = [n for n in services.character_names if needle in n.lower()]
            return [app_commands.Choice(name=n, value=n) for n in names[:25]]

        async def type_names(
            interaction: Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            """The types the chosen character can run (all of them before one is chosen)."""
            chosen = getattr(interaction.namespace, "character", None)
            if isinstance(chosen, str) and chosen:
                offered = services.runnable_types.get(chosen, ())
            else:
                offered = services.strategy_names
            needle = current.lower()
            return [app_commands.Choice(name=t, value=t) for t in offered if needle in t][:25]

        generate = app_commands.describe(
            character="whose run: a file in the characters folder",
            prompt=f"what to make, up to {PROMPT_LIMIT} characters (else the character decides)",
            kind="how to make it: one the character can make (else its weights decide)",
        )(generate)
        generate = app_commands.rename(kind="type")(generate)
        generate = app_commands.autocomplete(character=character_names, kind=type_names)(generate)
        generate = require("discord_generate_role_ids")(generate)
        command: app_commands.Command[commands.Cog, ..., None] = app_commands.Command(
            name="generate",
            description="Make media for a character; you review it before it is posted.",
            callback=generate,
        )
        return command

    async def _character(self, name: str) -> Character:
        """The character of that name; a short RunError otherwise, with close names but never
        the whole list (the refusal is private, yet the list is not the asker's business)."""
        try:
            return await asyncio.to_thread(self.services.characters.load, name)
        except CharacterNotFound:
            shown = name.strip()[:40]
            close = difflib.get_close_matches(shown, self.services.character_names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "pick one offered as you type."
            raise RunError(f"no character named {shown!r}; {hint}") from None

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

    @app_commands.command(name="cancel", description="Stop a running or queued run.")
    @app_commands.describe(run_id="the run's id, as on its card")
    @require("discord_generate_role_ids")
    async def cancel(self, interaction: Interaction, run_id: str) -> None:
        # defer first: a running run may take a moment to stop, and Discord waits only 3 s
        await interaction.response.defer(ephemeral=True, thinking=True)
        run = await self._own_run(interaction, run_id)
        if await self.services.runner.cancel(run.id):
            text = f"Run `{run.id}` is cancelled."
        else:
            text = f"Run `{run.id}` is not running or queued; it is {render.state_word(run.state)}."
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
        character = await self._character(run.character)
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
    await bot.add_cog(GenerateCog(bot, services_of(bot)))
