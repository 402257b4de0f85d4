"""The bot fixtures of tests/bot, for the security tests that drive the bot in-process."""

from tests.bot.conftest import fake, sqlite_store, start_bot

__all__ = ["fake", "sqlite_store", "start_bot"]
