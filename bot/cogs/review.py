"""How reviewers answer a review: reactions fed to the DiscordReviewer (raw events: the messages
need not be cached) and the "Edit caption" button with its form.

The button is a DynamicItem found by its custom_id (the review marker, `bot.marker`), so it works
on reviews posted before a restart. Touches only `Services.reviewer`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import discord
from discord.ext import commands

from bot import render
from bot.access import has_any_role
from bot.marker import CAPTION_BUTTON_TEMPLATE, ReviewMarker
from bot.review import DiscordReviewer
from bot.services import Services, services_of


class EditCaptionButton(
    discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]],
    template=CAPTION_BUTTON_TEMPLATE,
):
    """ "Edit caption" on a review: its custom_id names the run, so it outlives restarts."""

    def __init__(self, run_id: str, custom_id: str) -> None:
        super().__init__(
            discord.ui.Button(
                label="Edit caption",
                style=discord.ButtonStyle.secondary,
                custom_id=custom_id,
                emoji="\N{MEMO}",
            )
        )
        self.run_id = run_id

    @classmethod
    async def from_custom_id(
        cls,
        interaction: discord.Interaction[discord.Client],
        item: discord.ui.Item[discord.ui.View],
        match: re.Match[str],
        /,
    ) -> EditCaptionButton:
        marker = ReviewMarker.parse(match["marker"]) if match["marker"] else None
        run_id = marker.run_id if marker is not None else match["legacy"]
        return cls(run_id, match.string)

    async def callback(self, interaction: discord.Interaction[discord.Client]) -> None:
        reviewer = services_of(interaction.client).reviewer
        if not has_any_role(interaction.user, reviewer.config.role_ids):
            await interaction.response.send_message(
                "Only reviewers can edit the caption.", ephemeral=True
            )
            return
        captions = reviewer.captions_of(self.run_id)
        if captions is None:
            await interaction.response.send_message(
                f"The review of run `{self.run_id}` is closed.", ephemeral=True
            )
            return
        await interaction.response.send_modal(CaptionModal(reviewer, self.run_id, captions))


class CaptionModal(discord.ui.Modal):
    """One text box per platform's caption, filled with the current text."""

    def __init__(self, reviewer: DiscordReviewer, run_id: str, captions: Mapping[str, str]) -> None:
        super().__init__(title=render.clip(f"Caption of run {run_id}", 45), timeout=15 * 60)
        self._reviewer = reviewer
        self._run_id = run_id
        self._inputs: dict[str, discord.ui.TextInput[CaptionModal]] = {}
        for platform, text in sorted(captions.items())[:5]:  # a modal holds 5 inputs
            box: discord.ui.TextInput[CaptionModal] = discord.ui.TextInput(
                label=platform,
                style=discord.TextStyle.paragraph,
                default=text[:4000],
                max_length=4000,
                custom_id=f"caption:{platform}",
            )
            self._inputs[platform] = box
            self.add_item(box)

    async def interaction_check(self, interaction: discord.Interaction[discord.Client]) -> bool:
        """Only a reviewer's submit counts: a form's id could be replayed by anyone."""
        if has_any_role(interaction.user, self._reviewer.config.role_ids):
            return True
        await interaction.response.send_message(
            "Only reviewers can edit the caption.", ephemeral=True
        )
        return False

    async def on_submit(self, interaction: discord.Interaction[discord.Client]) -> None:
        changes = {platform: box.value for platform, box in self._inputs.items()}
        character = self._reviewer.character_of(self._run_id)
        if character is not None:
            # a person's words are refused when over a limit, never cut at publishing
            problems = await services_of(interaction.client).caption_problems(character, changes)
            if problems:
                self._reviewer.keep_draft(self._run_id, changes)
                await interaction.response.send_message(
                    render.caption_refusal(problems), ephemeral=True
                )
                return
        if await self._reviewer.edit_captions(self._run_id, changes):
            await interaction.response.send_message("Caption updated.", ephemeral=True)
        else:
            await interaction.response.send_message(
                f"The review of run `{self._run_id}` closed meanwhile.", ephemeral=True
            )


class ReviewCog(commands.Cog):
    def __init__(self, bot: commands.Bot, services: Services) -> None:
        self.bot = bot
        self.services = services

    async def cog_load(self) -> None:
        self.bot.add_dynamic_items(EditCaptionButton)

    async def cog_unload(self) -> None:
        self.bot.remove_dynamic_items(EditCaptionButton)

    @commands.Cog.listener()
    async def on_raw_reaction_add(self, payload: discord.RawReactionActionEvent) -> None:
        self.services.reviewer.reaction_added(payload)

    @commands.Cog.listener()
    async def on_raw_reaction_remove(self, payload: discord.RawReactionActionEvent) -> None:
        self.services.reviewer.reaction_removed(payload)


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ReviewCog(bot, services_of(bot)))
