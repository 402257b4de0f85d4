"""What the bot logs as it starts: no noise about features it does not use."""

from __future__ import annotations

import logging

import discord
import pytest

from tests.bot.conftest import StartBot
from tests.fakes import discord as fd


async def test_no_voice_warnings_at_start(
    start_bot: StartBot,
    fake: fd.FakeDiscord,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The bot has no voice, so its start does not warn that PyNaCl or davey are missing."""
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as in a fresh process
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    with caplog.at_level(logging.INFO):
        await start_bot()
    assert [r.getMessage() for r in caplog.records if "voice" in r.getMessage()] == []
