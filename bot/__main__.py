"""`python -m bot`: settings -> logging -> store -> the Discord bot, until SIGTERM or Ctrl-C.

The entry point owns every resource and hands them to the bot (discord.py's advanced_startup).
A missing setting stops it with one sentence naming the variable, and exit code 1.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from pipeline import logs
from pipeline.errors import ConfigError, StoreError
from pipeline.settings import Settings, load_settings

log = logging.getLogger("bot")


async def serve(settings: Settings) -> None:
    from bot.app import run_bot

    await run_bot(settings)


def main() -> int:
    try:
        settings = load_settings()
        settings.require("discord_token")
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
