"""/reload: read the character files again and say which are broken.

Touches the pipeline only through `Services`.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot import render
from bot.cogs._checks import require
from bot.services import Services, services_of

log = logging.getLogger(__name__)


class AdminCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services

    @app_commands.command(name="reload", description="Read the character files again.")
    @require("discord_admin_role_ids")
    async def reload(self, interaction: discord.Interaction[discord.Client]) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        problems = await self.services.refresh_characters()
        names = self.services.character_names
        lines = [f"{len(names)} characters: {', '.join(names) or 'none'}."]
        if problems:
            lines.append(f"{len(problems)} problem(s) in character files:")
            lines += [f"\N{BULLET} {problem}" for problem in problems]
        log.info("characters reloaded: %d, %d problem(s)", len(names), len(problems))
        await interaction.followup.send(
            render.clip("\n".join(lines), render.CONTENT_LIMIT),
            ephemeral=True,
            allowed_mentions=discord.AllowedMentions.none(),
        )


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(AdminCog(services_of(bot)))
