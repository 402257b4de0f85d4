"""Role checks for application commands, read from settings at call time.

A refusal is a `NotAllowed` with its own sentence; the tree's error handler shows it.
Imports discord and bot.services only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import discord
from discord import app_commands

from bot.access import has_any_role
from bot.services import services_of

T = TypeVar("T")

RoleSetting = Literal[
    "discord_generate_role_ids", "discord_review_role_ids", "discord_admin_role_ids"
]

_WHO = {
    "discord_generate_role_ids": "the generate role",
    "discord_review_role_ids": "the reviewer role",
    "discord_admin_role_ids": "the admin role",
}


class NotAllowed(app_commands.CheckFailure):
    """The member lacks the role a command needs; str() is safe to show."""


def allowed(interaction: discord.Interaction[discord.Client], setting: RoleSetting) -> bool:
    services = services_of(interaction.client)
    return has_any_role(interaction.user, getattr(services.settings, setting))


def require(setting: RoleSetting) -> Callable[[T], T]:
    """`@require("discord_generate_role_ids")`: only members with one of those roles."""

    async def predicate(interaction: discord.Interaction[discord.Client]) -> bool:
        if allowed(interaction, setting):
            return True
        raise NotAllowed(f"You need {_WHO[setting]} for this command.")

    return app_commands.check(predicate)
