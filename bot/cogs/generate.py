"""/generate, with a live run card (/runs, /cancel and /retry are in `bot.cogs.runs`).

The command checks what it was asked first (every refusal private to the asker), then defers,
starts the run through the Runner (which queues it under limits) and leaves a run card to
follow it. Touches the pipeline only through `Services`.
"""

from __future__ import annotations

import logging
import unicodedata

import discord
from discord import app_commands
from discord.ext import commands

from bot.access import requester_key
from bot.card import InteractionCard
from bot.cogs._checks import require
from bot.services import Services, services_of
from pipeline.errors import MediaOverloadError, RunError
from pipeline.models import Job, new_run_id

log = logging.getLogger(__name__)

Interaction = discord.Interaction[discord.Client]

#: the longest prompt /generate takes; Discord allows 6,000 characters in an option, but a
#: prompt is an idea for the language model, and a longer one only crowds out the template
PROMPT_LIMIT = 1000


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
    """Starting runs."""

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
            image: discord.Attachment | None = None,
            seed: int | None = None,
            count: int | None = None,
            negative: str | None = None,
            style: str | None = None,
        ) -> None:
            # Every refusal comes before the first answer, so MediaTree.on_error answers it
            # privately: after a public defer, Discord turns the first follow-up into that
            # public message whatever its `ephemeral` flag says. An image is judged by what
            # Discord says of it (type, bytes, width and height) before the defer, and by its
            # own header once downloaded.
            prompt = check_prompt(prompt)
            loaded = await services.character(character)
            declared = (
                None
                if image is None
                else (image.content_type, image.size, image.width, image.height)
            )
            options = services.run_options(
                loaded,
                generation_type=kind,
                style=style,
                count=count,
                negative=negative,
                image=declared,
            )
            await interaction.response.defer(thinking=True)
            run_id = new_run_id()
            images: tuple[str, ...] = ()
            if image is not None:
                try:
                    images = (await services.input_image(loaded, run_id, image.url),)
                except MediaOverloadError as exc:  # after the defer: said in its reply
                    log.info("/generate by %s: the image was refused: %s", interaction.user, exc)
                    await interaction.edit_original_response(
                        content=exc.user_message, allowed_mentions=discord.AllowedMentions.none()
                    )
                    return
            job = Job(
                character=loaded.key,
                requested_by=requester_key(interaction.user),
                prompt=prompt,
                generation_type=options.generation_type,
                seed=seed,
                input_images=images,
                style=options.style,
                count=options.count,
                negative=options.negative,
            )
            card = services.run_card(
                InteractionCard(interaction),
                character=loaded.key,
                generation_type=options.generation_type,
            )
            run = await services.runner.submit(job, sink=card, run_id=run_id)
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

        async def style_names(
            interaction: Interaction, current: str
        ) -> list[app_commands.Choice[str]]:
            """The chosen character's styles (none before one is chosen)."""
            chosen = getattr(interaction.namespace, "character", None)
            offered = services.styles.get(chosen, ()) if isinstance(chosen, str) else ()
            needle = current.lower()
            return [
                app_commands.Choice(name=s[:100], value=s)
                for s in offered
                if needle in s.lower() and len(s) <= 100
            ][:25]

        generate = app_commands.describe(
            character="whose run: a file in the characters folder",
            prompt=f"what to make, up to {PROMPT_LIMIT} characters (else the character decides)",
            kind="how to make it: one the character can make (else its weights decide)",
            image="a picture to start from (PNG, JPEG or WebP): image-to-image",
            seed="the same seed makes the same choices again (a replay)",
            count="images per description (else the character's number)",
            negative="what the pictures should not show (the negative prompt)",
            style="one of the character's styles (else its weights decide)",
        )(generate)
        generate = app_commands.rename(kind="type")(generate)
        generate = app_commands.autocomplete(
            character=character_names, kind=type_names, style=style_names
        )(generate)
        generate = require("discord_generate_role_ids")(generate)
        command: app_commands.Command[commands.Cog, ..., None] = app_commands.Command(
            name="generate",
            description="Make media for a character; you review it before it is posted.",
            callback=generate,
        )
        return command


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(GenerateCog(bot, services_of(bot)))
