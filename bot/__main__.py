"""`python -m bot`: settings -> logging -> session, store -> Services -> MediaBot, until SIGTERM.

The entry point owns every resource and hands them to the bot (discord.py's advanced_startup).
A missing or wrong setting (a token Discord refuses included) stops it with one sentence and
exit code 1; a Discord that cannot be reached is tried again, one log line per attempt.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import aiohttp

from pipeline import logs
from pipeline.errors import ConfigError, MediaOverloadError
from pipeline.failures import exit_code
from pipeline.settings import Settings, load_settings

if TYPE_CHECKING:
    from bot.app import MediaBot

log = logging.getLogger("bot")


@asynccontextmanager
async def bot_factory(settings: Settings, **options: Any) -> AsyncIterator[Callable[[], MediaBot]]:
    """Every resource a bot needs open (HTTP session, store, ComfyUI pool, models), and a
    maker of bots over them (a fresh one for each try at reaching Discord); they close after.
    `options` go to MediaBot."""
    from bot.app import MediaBot
    from bot.services import Services, build_services
    from pipeline.llm.doctor import warn_about_models
    from pipeline.store import open_store
    from pipeline.wiring import STRATEGY_NAMES, characters_from, open_engine, prompt_withdrawer

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
                queue_factory=engine.queue_for,
                detach=engine.pool.detach,
                withdraw=prompt_withdrawer(settings, characters, engine.pool),
            )

        # each model problem one warning line, while the bot starts; never stops it
        doctor = asyncio.create_task(warn_about_models(settings, engine.models), name="doctor")
        try:
            yield lambda: MediaBot(settings=settings, services_factory=services, **options)
        finally:
            doctor.cancel()
            await asyncio.gather(doctor, return_exceptions=True)


@asynccontextmanager
async def open_bot(settings: Settings, **options: Any) -> AsyncIterator[MediaBot]:
    """The bot with every resource it needs open, not yet logged in; they close after it."""
    async with bot_factory(settings, **options) as make_bot:
        yield make_bot()


async def serve(settings: Settings) -> None:
    """Host the bot until SIGTERM, trying again while Discord cannot be reached."""
    from bot.app import serve_with_retries

    token = settings.discord_token
    assert token is not None, "main() checks DISCORD_TOKEN first"
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopping.set)
    try:
        async with bot_factory(settings) as make_bot:
            await serve_with_retries(make_bot, token.get_secret_value(), stopping)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


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
    except MediaOverloadError as exc:  # a bad setting (1), the database or a service (2)
        print(f"MediaOverload cannot start: {exc.user_message}", file=sys.stderr)
        return exit_code(exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
