"""Who may do what: role ids from settings checked against a member's roles.

An empty list of role ids means every member of the guild. Imports discord and the pipeline's
schedule (whose requester name a scheduled run carries) only.
"""

from __future__ import annotations

from collections.abc import Collection

import discord

from pipeline.schedule import SCHEDULE_REQUESTER


def has_any_role(user: discord.abc.User | None, role_ids: Collection[int]) -> bool:
    """True when `role_ids` is empty, or the member holds one of them. Bots never qualify."""
    if user is None or user.bot:
        return False
    if not role_ids:
        return True
    if not isinstance(user, discord.Member):
        return False
    return any(role.id in role_ids for role in user.roles)


__all__ = ["SCHEDULE_REQUESTER", "has_any_role", "is_bot_run", "requester_key"]


def requester_key(user: discord.abc.User) -> str:
    """How a Discord user is written in `Job.requested_by` (limits per person use it)."""
    return f"discord:{user.id}"


def is_bot_run(requested_by: str) -> bool:
    """True for a run the bot started: by a member, or by the schedule (not the command line)."""
    return requested_by.startswith("discord:") or requested_by == SCHEDULE_REQUESTER
