"""`python -m bot`: settings -> logging -> session, store -> Services -> MediaBot, until SIGTERM.

The entry point owns every resource and hands them to the bot (discord.py's advanced_startup).
A missing setting stops it with one sentence naming the variable, and exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp

from pipeline import logs
from pipeline.errors import ConfigError, StoreError
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.app import MediaBot

log = logging.getLogger("bot")


@asynccontextmanager
async def open_bot(settings: Settings, **options: Any) -> AsyncIterator[MediaBot]:
    """The bot with every resource it needs open (HTTP session, store, ComfyUI pool, models),
    not yet logged in; they close after it. `options` go to MediaBot."""
    from bot.app import MediaBot
    from bot.services import Services, build_services
    from pipeline.llm.doctor import warn_about_models
    from pipeline.store import open_store
    from pipeline.wiring import STRATEGY_NAMES, characters_from, open_engine

    characters = await asyncio.to_thread(characters_from, settings)
    url = settings.database_url.get_secret_value()
    async with (
        aiohttp.ClientSession() as session,
        open_store(url, sqlite_path=settings.database_path) as store,
        open_engine(settings, store, characters) as engine,
    ):

        def services(bot: MediaBot) -> Services:
            return build_services(
                bot,
                settings=settings,
                store=store,
                session=session,
                characters=characters,
                strategy_names=STRATEGY_NAMES,
                execute_factory=engine.execute_for,
                detach=engine.pool.detach,
            )

        # each model problem one warning line, while the bot starts; never stops it
        doctor = asyncio.create_task(warn_about_models(settings, engine.models), name="doctor")
        try:
            yield MediaBot(settings=settings, services_factory=services, **options)
        finally:
            doctor.cancel()
            await asyncio.gather(doctor, return_exceptions=True)


async def serve(settings: Settings) -> None:
    from bot.app import serve_until_stopped

    token = settings.discord_token
    assert token is not None, "main() checks DISCORD_TOKEN first"
    async with open_bot(settings) as bot:
        await serve_until_stopped(bot, token.get_secret_value())


def main() -> int:
    try:
        settings = load_settings()
        settings.require("discord_token", "discord_review_channel_id")
    except ConfigError as exc:
        print(f"MediaOverload cannot start: {exc.user_message}", file=sys.stderr)
        return 1
    logs.configure(settings.log_level)
    try:
        asyncio.run(serve(settings))
    except KeyboardInterrupt:
        log.info("stopped")
    except ConfigError as exc:
        print(f"MediaOverload cannot start: {exc.user_message}", file=sys.stderr)
        return 1
    except StoreError as exc:
        print(f"MediaOverload cannot start: {exc.user_message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
