"""The bot at start when Discord says no or is away: a refused token is one sentence (a bad
setting, exit 1); an unreachable Discord is tried again with a growing pause, one log line per
attempt, until it answers or SIGTERM. The real MediaBot against the fake Discord."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import REFUSED_LOGIN, MediaBot, serve_with_retries
from pipeline.errors import ConfigError
from pipeline.logs import ShortReconnects
from pipeline.store import SqlStore
from tests.bot.conftest import PROJECT, bot_settings, scripted_services
from tests.fakes import discord as fd
from tests.fakes.llm_server import dead_url

MakeBot = Callable[..., Callable[[], MediaBot]]


@pytest.fixture
async def bots(sqlite_store: SqlStore, tmp_path: Path) -> AsyncIterator[MakeBot]:
    """`bots(api_base=...)`: a maker of bots as `python -m bot` has (a fresh one per try)."""
    async with aiohttp.ClientSession() as session:

        def maker(fake: fd.FakeDiscord, **overrides: Any) -> Callable[[], MediaBot]:
            settings = bot_settings(fake, tmp_path / "data", **overrides)
            services = scripted_services(settings, sqlite_store, session, tmp_path / "runs")
            return lambda: MediaBot(
                settings=settings, services_factory=services, guild_ready_timeout=0.1
            )

        yield maker


def attempts(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "Discord cannot be reached" in r.message]


async def test_a_token_discord_refuses_is_a_bad_setting_in_one_sentence(
    bots: MakeBot, fake: fd.FakeDiscord
) -> None:
    """A refused token is not retried: one sentence naming DISCORD_TOKEN, and no gateway."""
    with pytest.raises(ConfigError) as refused:
        await serve_with_retries(bots(fake), "not-the-token", asyncio.Event(), first_delay=0.01)
    assert refused.value.user_message == REFUSED_LOGIN
    assert "DISCORD_TOKEN" in REFUSED_LOGIN
    assert (fake.logins, fake.identifies) == (1, 0)


async def test_a_discord_away_at_start_is_tried_again_until_it_answers(
    bots: MakeBot, fake: fd.FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    """Logins dropped by the network: a warning per try, each with its pause (doubling), then
    the bot connects; SIGTERM's event then ends it cleanly."""
    fake.drop_logins = 4
    stopping = asyncio.Event()
    made: list[MediaBot] = []
    make = bots(fake)

    def make_bot() -> MediaBot:
        made.append(make())
        return made[-1]

    with caplog.at_level(logging.WARNING, logger="bot.app"):
        serving = asyncio.create_task(
            serve_with_retries(make_bot, fd.BOT_TOKEN, stopping, first_delay=0.01)
        )
        await fake.until(lambda: made and made[-1].is_ready(), what="the bot to connect")
        stopping.set()
        await asyncio.wait_for(serving, 10)
    lines = attempts(caplog)
    assert [line.rsplit("trying again", 1)[1] for line in lines][:2] == [
        " in 0.01 s (attempt 1)",
        " in 0.02 s (attempt 2)",
    ]
    assert all("Traceback" not in line and "\n" not in line for line in lines)
    assert (fake.drop_logins, fake.identifies, len(made)) == (0, 1, len(lines) + 1)
    assert all(bot.is_closed() for bot in made)


async def test_an_unreachable_discord_waits_longer_each_time_up_to_the_longest_pause(
    bots: MakeBot, fake: fd.FakeDiscord, caplog: pytest.LogCaptureFixture
) -> None:
    """No Discord at all: one warning per attempt, the pause doubling up to its cap, and the
    wait ends at once when the bot is told to stop."""
    stopping = asyncio.Event()
    make = bots(fake, discord_api_base=f"{dead_url()}/api/v10")
    with caplog.at_level(logging.WARNING, logger="bot.app"):
        serving = asyncio.create_task(
            serve_with_retries(make, "t", stopping, first_delay=0.01, max_delay=0.04)
        )
        await fake.until(lambda: len(attempts(caplog)) >= 4, what="four attempts")
        stopping.set()
        await asyncio.wait_for(serving, 10)
    pauses = [line.split("trying again in ", 1)[1].split(" s ")[0] for line in attempts(caplog)]
    assert pauses[:4] == ["0.01", "0.02", "0.04", "0.04"]
    assert "ClientConnectorError" in attempts(caplog)[0]


# ---------------------------------------------------------------------------- as a process


@dataclass
class BotProcess:
    process: asyncio.subprocess.Process
    reader: asyncio.Task[None]
    #: stderr, line by line as it comes
    lines: list[str] = field(default_factory=list)

    async def finished(self) -> int:
        code = await asyncio.wait_for(self.process.wait(), 30)
        await self.reader
        return code


async def start_bot_process(project: Path, **env: str) -> BotProcess:
    """`python -m bot` in `project`, its stderr read as it comes."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DISCORD_", "DATABASE"))}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        cwd=project,
        env=clean
        | {"PYTHONPATH": str(PROJECT), "DISCORD_REVIEW_CHANNEL_ID": str(fd.REVIEW_CHANNEL)}
        | env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            lines.append(line.decode())

    return BotProcess(process, asyncio.create_task(read()), lines)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(PROJECT / "characters", folder / "characters")
    shutil.copytree(PROJECT / "workflows", folder / "workflows")
    return folder


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_python_m_bot_with_a_refused_token_says_so_in_one_sentence(
    project: Path, fake: fd.FakeDiscord
) -> None:
    """`python -m bot` with a token Discord refuses: one sentence, exit 1, no traceback (the
    log lines before it, at INFO, say what it was doing)."""
    bot = await start_bot_process(
        project, DISCORD_TOKEN="wrong", DISCORD_API_BASE=fake.api_base, LOG_LEVEL="INFO"
    )
    assert await bot.finished() == 1
    assert bot.lines[-1] == f"MediaOverload cannot start: {REFUSED_LOGIN}\n"
    assert "Traceback" not in "".join(bot.lines)
    assert fake.identifies == 0


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_python_m_bot_without_a_network_retries_until_sigterm(
    project: Path, fake: fd.FakeDiscord
) -> None:
    """`python -m bot` with nothing at DISCORD_API_BASE logs one line per attempt and keeps
    trying; SIGTERM ends it with exit 0; never a traceback."""
    bot = await start_bot_process(
        project,
        DISCORD_TOKEN="t",
        DISCORD_API_BASE=f"{dead_url()}/api/v10",
        LOG_LEVEL="INFO",
    )
    await fake.until(
        lambda: sum("Discord cannot be reached" in line for line in bot.lines) >= 2,
        within=20,
        what="two attempts",
    )
    bot.process.send_signal(signal.SIGTERM)
    assert await bot.finished() == 0
    assert "Traceback" not in "".join(bot.lines)
    attempts_logged = [line for line in bot.lines if "Discord cannot be reached" in line]
    first, second = (bot.lines.index(line) for line in attempts_logged[:2])
    between = bot.lines[first + 1 : second]  # one line per attempt: none of discord.py's
    assert not [line for line in between if " discord." in line], between
    assert "(attempt 1)" in attempts_logged[0]
    assert "(attempt 2)" in attempts_logged[1]


def test_a_gateway_reconnect_is_logged_in_one_line() -> None:
    """discord.py's "Attempting a reconnect" record loses its traceback and keeps the error's
    class and text on its one line."""
    try:
        raise aiohttp.ClientConnectionError("Cannot connect to host gateway.discord.gg:443")
    except aiohttp.ClientError:
        record = logging.LogRecord(
            "discord.client", logging.ERROR, __file__, 1, "Attempting a reconnect in %.2fs",
            (1.5,), sys.exc_info(),
        )  # fmt: skip
    assert ShortReconnects().filter(record)
    assert record.exc_info is None
    assert record.getMessage() == (
        "Attempting a reconnect in 1.50s "
        "(ClientConnectionError: Cannot connect to host gateway.discord.gg:443)"
    )
