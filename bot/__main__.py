"""`python -m bot`: settings -> logging -> session, store -> Services -> MediaBot, until SIGTERM.

The entry point owns every resource and hands them to the bot (discord.py's advanced_startup).
A missing setting stops it with one sentence naming the variable, and exit code 1.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
from typing import Any

import aiohttp

from pipeline import logs
from pipeline.errors import ConfigError, StoreError
from pipeline.ports import Notifier, Reviewer
from pipeline.runner import Execute
from pipeline.settings import Settings, load_settings

log = logging.getLogger("bot")


def pipeline_wiring() -> Any:
    """`pipeline.wiring`, which builds the run walker from settings (the pipeline issue).

    It must offer `STRATEGY_NAMES` (the /generate type choices) and
    `build_execute(settings, *, store, session, reviewer, notifier) -> Execute`. Imported by
    name so this module type-checks before the wiring lands; a missing one says so."""
    try:
        return importlib.import_module("pipeline.wiring")
    except ModuleNotFoundError as exc:
        raise ConfigError("this build has no pipeline wiring (pipeline/wiring.py)") from exc


async def serve(settings: Settings) -> None:
    from bot.app import MediaBot, serve_until_stopped
    from bot.services import Services, build_services
    from pipeline.characters import Characters
    from pipeline.prompts.library import TemplateLibrary
    from pipeline.store import open_store

    token = settings.discord_token
    assert token is not None, "main() checks DISCORD_TOKEN first"
    wiring = pipeline_wiring()
    strategy_names = tuple(str(name) for name in wiring.STRATEGY_NAMES)
    library = await asyncio.to_thread(TemplateLibrary.load, settings.templates_dir)
    characters = Characters(settings.characters_dir, library)
    url = settings.database_url.get_secret_value()
    async with (
        aiohttp.ClientSession() as session,
        open_store(url, sqlite_path=settings.database_path) as store,
    ):

        def execute_factory(reviewer: Reviewer, notifier: Notifier) -> Execute:
            execute: Execute = wiring.build_execute(
                settings, store=store, session=session, reviewer=reviewer, notifier=notifier
            )
            return execute

        def services(bot: MediaBot) -> Services:
            return build_services(
                bot,
                settings=settings,
                store=store,
                session=session,
                characters=characters,
                strategy_names=strategy_names,
                execute_factory=execute_factory,
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
