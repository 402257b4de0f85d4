"""`python -m bot`: settings -> logging -> session, store -> Services -> MediaBot, until SIGTERM.

The entry point owns every resource and hands them to the bot (discord.py's advanced_startup).
A missing setting stops it with one sentence naming the variable, and exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import aiohttp

from pipeline import logs
from pipeline.errors import ConfigError, StoreError
from pipeline.settings import Settings, load_settings

log = logging.getLogger("bot")


async def serve(settings: Settings) -> None:
    from bot.app import MediaBot, serve_until_stopped
    from bot.services import Services, build_services
    from pipeline.store import open_store
    from pipeline.wiring import STRATEGY_NAMES, characters_from, open_engine

    token = settings.discord_token
    assert token is not None, "main() checks DISCORD_TOKEN first"
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
            )

        bot = MediaBot(settings=settings, services_factory=services)
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
