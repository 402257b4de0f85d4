"""SIGTERM: the bot lets runs save and closes; a review in progress stays for the next start."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from bot.app import MediaBot, serve_until_stopped
from pipeline.models import RunState
from pipeline.store import SqlStore
from tests.bot.conftest import bot_settings, scripted_services
from tests.fakes import discord as fd


async def test_sigterm_closes_the_bot_and_keeps_the_pending_review(
    fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """SIGTERM during a review: the process returns cleanly and the run still awaits review."""
    settings = bot_settings(fake, tmp_path / "data")
    async with aiohttp.ClientSession() as session:
        services = scripted_services(settings, sqlite_store, session, tmp_path / "runs")
        bot = MediaBot(settings=settings, services_factory=services, guild_ready_timeout=0.1)
        serving = asyncio.create_task(serve_until_stopped(bot, "fake-token"))
        await fake.until(bot.is_ready, what="the bot")
        await fake.slash("generate", character="mascot")
        await fake.until(bot.services.reviewer.pending_runs, what="the review")
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 10)
    assert bot.is_closed()
    [run] = await sqlite_store.list_runs()
    assert run.state is RunState.AWAITING_REVIEW
    assert run.ticket is not None
