"""SIGTERM: the bot lets runs save and closes; a review in progress stays for the next start."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import aiohttp

from bot.app import MediaBot, serve_until_stopped
from bot.services import Services, build_services
from pipeline.characters import Characters
from pipeline.models import RunState
from pipeline.ports import Notifier, Reviewer
from pipeline.prompts.library import TemplateLibrary
from pipeline.runner import Execute
from pipeline.store import SqlStore
from tests.bot.conftest import STRATEGIES, bot_settings
from tests.doubles import ScriptedExecute
from tests.fakes import discord as fd


async def test_sigterm_closes_the_bot_and_keeps_the_pending_review(
    fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """SIGTERM during a review: the process returns cleanly and the run still awaits review."""
    settings = bot_settings(fake, tmp_path / "data")
    async with aiohttp.ClientSession() as session:

        def execute_factory(reviewer: Reviewer, notifier: Notifier) -> Execute:
            return ScriptedExecute(sqlite_store, reviewer, notifier, root=tmp_path / "runs")

        def services(bot: MediaBot) -> Services:
            return build_services(
                bot,
                settings=settings,
                store=sqlite_store,
                session=session,
                characters=Characters(settings.characters_dir, TemplateLibrary.load()),
                strategy_names=STRATEGIES,
                execute_factory=execute_factory,
            )

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
