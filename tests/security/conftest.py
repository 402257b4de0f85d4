"""The bot fixtures of tests/bot, for the security tests that drive the bot in-process, and
instagrapi without its pauses (the secrets test posts to the fake Instagram)."""

from tests.bot.conftest import fake, sqlite_store, start_bot
from tests.fakes.instagram import instant_instagrapi

__all__ = ["fake", "instant_instagrapi", "sqlite_store", "start_bot"]
