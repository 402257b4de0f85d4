"""The bot under test: the real MediaBot and discord.py client, in-process, against FakeDiscord.

`start_bot` builds the bot the way `python -m bot` does (build_services, settings), with a
`ScriptedExecute` in place of the pipeline's run walker. The store is SQLite in tmp_path unless
a test passes its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import MediaBot
from bot.services import Services, build_services
from pipeline.characters import Characters
from pipeline.lease import Owner, WallClock
from pipeline.metrics import StoreWithMetrics
from pipeline.models import utcnow
from pipeline.ports import Notifier, Reviewer
from pipeline.prompts.library import TemplateLibrary
from pipeline.runner import Execute
from pipeline.settings import Settings
from pipeline.store import SqlStore, connect
from tests.doubles import Script, ScriptedExecute
from tests.fakes import discord as fd

PROJECT = Path(__file__).resolve().parents[2]
STRATEGIES = ("text2img", "image2image", "text2image2image", "text2video", "text2image2video")


@dataclass
class BotUnderTest:
    fake: fd.FakeDiscord
    bot: MediaBot
    services: Services
    execute: ScriptedExecute
    task: asyncio.Task[None]

    async def stop(self) -> None:
        await self.bot.close()
        await self.task


def bot_settings(fake: fd.FakeDiscord, data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "discord_token": "fake-token",
        "discord_api_base": fake.api_base,
        "discord_guild_id": fd.GUILD_ID,
        "discord_review_channel_id": fd.REVIEW_CHANNEL,
        "discord_notify_channel_id": fd.NOTIFY_CHANNEL,
        "discord_generate_role_ids": [fd.GENERATE_ROLE],
        "discord_review_role_ids": [fd.REVIEW_ROLE],
        "discord_admin_role_ids": [fd.ADMIN_ROLE],
        "data_dir": data_dir,
        "characters_dir": PROJECT / "characters",
        "schedule_enabled": False,
        "discord_card_edit_seconds": 0.1,
        "shutdown_grace_seconds": 0.2,
        "video_preset": "ultrafast",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


StartBot = Callable[..., Awaitable[BotUnderTest]]


@pytest.fixture
async def fake() -> AsyncIterator[fd.FakeDiscord]:
    async with fd.FakeDiscord() as server:
        yield server


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    store = await connect(f"sqlite:///{tmp_path / 'bot.db'}", sqlite_path=tmp_path / "x.db")
    yield store
    await store.close()


def scripted_services(
    settings: Settings,
    store: StoreWithMetrics,
    session: aiohttp.ClientSession,
    root: Path,
    *,
    made: list[ScriptedExecute] | None = None,
    script: Script | None = None,
    owner: Owner | None = None,
    clock: WallClock = utcnow,
    library: TemplateLibrary | None = None,
) -> Callable[[MediaBot], Services]:
    """The bot's real Services around a scripted pipeline (runs' folders under `root`), as
    the bot's constructor takes them; each ScriptedExecute made is added to `made`."""
    templates = library if library is not None else TemplateLibrary.load()

    def execute_factory(reviewer: Reviewer, notifier: Notifier) -> Execute:
        execute = ScriptedExecute(store, reviewer, notifier, root=root, script=script)
        if made is not None:
            made.append(execute)
        return execute

    def services(bot: MediaBot) -> Services:
        return build_services(
            bot,
            settings=settings,
            store=store,
            session=session,
            characters=Characters(settings.characters_dir, templates),
            strategy_names=STRATEGIES,
            execute_factory=execute_factory,
            lease_owner=owner,
            clock=clock,
        )

    return services


@pytest.fixture
async def start_bot(
    fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> AsyncIterator[StartBot]:
    """Start a bot (several in turn for restart tests); every one is stopped at the end."""
    started: list[BotUnderTest] = []
    library = TemplateLibrary.load()
    async with aiohttp.ClientSession() as session:

        async def start(
            *,
            script: Script | None = None,
            store: StoreWithMetrics | None = None,
            owner: Owner | None = None,
            clock: WallClock = utcnow,
            **overrides: Any,
        ) -> BotUnderTest:
            """`owner` names the instance in run leases: bots of one test process are one
            process to the leases unless they are named apart; `clock` tells when leases
            expire."""
            settings = bot_settings(fake, tmp_path / "data", **overrides)
            made: list[ScriptedExecute] = []
            services = scripted_services(
                settings,
                store if store is not None else sqlite_store,
                session,
                tmp_path / "runs",
                made=made,
                script=script,
                owner=owner,
                clock=clock,
                library=library,
            )
            bot = MediaBot(settings=settings, services_factory=services, guild_ready_timeout=0.1)
            task = asyncio.create_task(bot.start("fake-token"), name="bot-under-test")
            under_test = BotUnderTest(fake, bot, bot.services, made[0], task)
            started.append(under_test)
            await fake.until(
                lambda: bot.is_ready() or task.done(), within=10, what="the bot to be ready"
            )
            if task.done():
                await bot.close()
                task.result()
            return under_test

        yield start
        for under_test in started:
            if not under_test.task.done():
                await under_test.stop()
