"""`MediaBot`, the commands.Bot subclass, and `serve_with_retries`, which hosts it until SIGTERM.

setup_hook finds the gateway, loads the cogs, re-arms pending reviews and resumes the runs a stop
left half done, starts the adoption loop (the same, later, for runs another instance left),
all through `pipeline.recovery` with the bot's hooks (its runs, its review channel, its run
cards), then syncs the application commands when they changed. The bot never imports strategies or
comfy and reaches the pipeline only through `bot.services.Services`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import discord
import yarl
from discord import app_commands
from discord.ext import commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from bot import render
from bot.access import is_bot_run
from bot.card import ChannelCard
from bot.cogs._checks import NotAllowed
from bot.services import Services
from pipeline.errors import ConfigError, MediaOverloadError, ServiceError, disk_reason
from pipeline.models import Run
from pipeline.recovery import Hooks, Recovery, review_ticket
from pipeline.settings import Settings

log = logging.getLogger(__name__)

COGS: tuple[str, ...] = (
    "bot.cogs.generate",
    "bot.cogs.runs",
    "bot.cogs.retention",
    "bot.cogs.metrics",
    "bot.cogs.stats",
    "bot.cogs.review",
    "bot.cogs.admin",
    "bot.cogs.schedule",
    "bot.cogs.queue",
)


def point_at_api(api_base: str) -> None:
    """Send discord.py's REST calls to `api_base` (DISCORD_API_BASE). discord.py keeps the base
    in a class attribute; the gateway follows in `MediaBot.find_gateway`."""
    Route.BASE = api_base.rstrip("/")


class MediaTree(app_commands.CommandTree[discord.Client]):
    """The command tree with the one place that turns errors into user-safe replies."""

    async def interaction_check(self, interaction: discord.Interaction[discord.Client]) -> bool:
        """Commands work only in our guild: a command sent from a direct message (or another
        guild) is dropped without a reply, so no run starts and nothing is said."""
        wanted = getattr(interaction.client, "settings", None)
        guild_id = wanted.discord_guild_id if isinstance(wanted, Settings) else None
        if interaction.guild_id is None or (guild_id and interaction.guild_id != guild_id):
            log.info(
                "ignored /%s from outside the guild", getattr(interaction.command, "name", "?")
            )
            return False
        return True

    async def on_error(
        self,
        interaction: discord.Interaction[discord.Client],
        error: app_commands.AppCommandError,
    ) -> None:
        original = error.original if isinstance(error, app_commands.CommandInvokeError) else error
        if isinstance(original, MediaOverloadError):
            text = original.user_message
        elif isinstance(original, NotAllowed):
            text = str(original)
        elif isinstance(original, app_commands.CheckFailure):
            text = "You may not use this command here."
        else:
            ref = secrets.token_hex(3)
            command = interaction.command.qualified_name if interaction.command else "?"
            log.error("/%s failed (ref %s)", command, ref, exc_info=original)
            text = f"Something went wrong (ref `{ref}`); it is in the log."
        text = render.clip(text, render.CONTENT_LIMIT)
        none = discord.AllowedMentions.none()
        try:
            if interaction.response.is_done():
                await interaction.followup.send(text, ephemeral=True, allowed_mentions=none)
            else:
                await interaction.response.send_message(text, ephemeral=True, allowed_mentions=none)
        except discord.HTTPException as exc:
            log.warning("could not tell the user about an error (%s)", exc.status)


class MediaBot(commands.Bot):
    """The bot process: minimal intents (guilds for the channels and roles, guild reactions for
    the review; no message content), cogs loaded in setup_hook."""

    def __init__(
        self,
        *,
        settings: Settings,
        services_factory: Callable[[MediaBot], Services],
        guild_ready_timeout: float | None = None,
    ) -> None:
        """`guild_ready_timeout` overrides DISCORD_GUILD_READY_SECONDS."""
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_reactions = True
        # the bot has no voice: discord.py's warnings that its voice libraries are missing are noise
        discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False
        super().__init__(
            command_prefix=commands.when_mentioned,
            intents=intents,
            allowed_mentions=discord.AllowedMentions.none(),
            tree_cls=MediaTree,
            # guild channels only: the commands are not offered in direct messages
            allowed_contexts=app_commands.AppCommandContext(
                guild=True, dm_channel=False, private_channel=False
            ),
            help_command=None,
            guild_ready_timeout=(
                settings.discord_guild_ready_seconds
                if guild_ready_timeout is None
                else guild_ready_timeout
            ),
        )
        self.settings = settings
        point_at_api(settings.discord_api_base)
        self.services = services_factory(self)
        #: re-arms reviews and resumes runs at start, and adopts those other instances left
        self.recovery = Recovery(
            self.services.runner,
            self.services.store,
            Hooks(owns=_is_bot_run, reviews=self._reads_review, resume=self._resume_with_card),
        )
        self._closing = False
        self._adoption: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        await self.find_gateway()
        for name in COGS:
            await self.load_extension(name)
        problems = await self.services.refresh_characters()
        for problem in problems:
            log.warning("character file: %s", problem)
        await self.recovery.at_start()
        self._adoption = self.services.background.spawn(
            self.recovery.adopt_forever(self.settings.run_adopt_seconds), name="adopt-runs"
        )
        await self.sync_commands()

    async def find_gateway(self) -> None:
        """Ask `/gateway/bot` where to connect. discord.py opens an unsharded client's first
        connection to a class attribute, so the API base alone would not move it."""
        _, url, _ = await self.http.get_bot_gateway()
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)

    def _reads_review(self, run: Run) -> bool:
        """A review in the review channel (one of the command line, or of another review
        channel, is not ours to read)."""
        ticket = review_ticket(run)  # a pick between stages waits there too
        channel = self.services.reviewer.config.channel_id
        return ticket is not None and ticket.channel_id == channel and bool(ticket.message_ids)

    async def _resume_with_card(self, run: Run) -> None:
        """Resume `run`; its card, when the bot knows where it is, goes on moving."""
        services = self.services
        where = await services.cards.find(run.id) if services.cards is not None else None
        if where is None:
            await services.runner.resume(run.id)
            return
        card = services.run_card(
            ChannelCard(self, *where),
            character=run.character,
            generation_type=run.job.generation_type,
        )
        resumed = await services.runner.resume(run.id, sink=card)
        services.background.spawn(card.follow(resumed), name=f"card-{run.id}")

    async def sync_commands(self) -> bool:
        """Sync the commands (to DISCORD_GUILD_ID when set) only when they changed since the
        last sync, which is remembered as a hash in the data folder. True when synced."""
        guild_id = self.settings.discord_guild_id
        guild = discord.Object(id=guild_id) if guild_id else None
        if guild is not None:
            self.tree.copy_global_to(guild=guild)
        payload = [command.to_dict(self.tree) for command in self.tree.get_commands(guild=guild)]
        target = f"{self.application_id}/{guild_id or 'global'}"
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        path = self.settings.data_dir / "discord-commands.json"
        synced = await asyncio.to_thread(_read_json, path)
        if synced.get(target) == digest:
            log.info("application commands unchanged; no sync")
            return False
        await self.tree.sync(guild=guild)
        synced[target] = digest
        try:
            await asyncio.to_thread(_write_json, path, synced)
        except OSError as exc:  # the commands are synced: not noting it costs a sync next start
            log.warning("cannot write %s (%s)", path, disk_reason(exc) or type(exc).__name__)
        log.info("synced %d application command(s) to %s", len(payload), target)
        return True

    async def on_ready(self) -> None:
        log.info("connected to Discord as %s", self.user)

    async def close(self) -> None:
        """Stop the cogs (a timer loop's iteration under way ends while the store is open;
        no new /generate starts), let runs save (reviews end as cancelled with their tickets
        kept), then disconnect."""
        if not self._closing:
            self._closing = True
            self.recovery.stop()
            if self._adoption is not None:
                self._adoption.cancel()  # it never ends by itself: no grace to wait out
            await self._unload_cogs()
            await self.services.close()
        await super().close()

    async def _unload_cogs(self) -> None:
        """What discord.py's close does after ours, done before the services close."""
        for extension in tuple(self.extensions):
            try:
                await self.unload_extension(extension)
            except Exception:
                log.exception("cannot unload %s", extension)
        for name in tuple(self.cogs):
            try:
                await self.remove_cog(name)
            except Exception:
                log.exception("cannot remove the cog %s", name)


def _is_bot_run(run: Run) -> bool:
    """The bot resumes its own runs (its members' and the schedule's); the command line's
    are left to it."""
    return is_bot_run(run.job.requested_by)


def _read_json(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _write_json(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")


#: what a Discord that cannot be reached raises at login: no network or name, a refused or
#: dropped connection, a timeout, or Discord's 5xx after discord.py's own retries
UNREACHABLE: tuple[type[BaseException], ...] = (
    OSError,
    aiohttp.ClientError,
    asyncio.TimeoutError,
    discord.GatewayNotFound,
    discord.DiscordServerError,
)

REFUSED_LOGIN = (
    "Discord refused DISCORD_TOKEN: reset the token in the developer portal (Bot, Reset Token) "
    "and set DISCORD_TOKEN to the new one"
)


class DiscordUnreachable(Exception):
    """Discord could not be reached while the bot logged in; `reason` is short and holds no
    secret (the error's class and text: a host and port at most)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _start_failure(exc: BaseException) -> BaseException:
    """What a failed `bot.start` means: a bad setting (ConfigError), an unreachable Discord
    (DiscordUnreachable, to be tried again), or the error itself."""
    if isinstance(exc, discord.LoginFailure):
        return ConfigError(REFUSED_LOGIN)
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return ConfigError("Discord refused the bot's intents: enable them in the developer portal")
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:  # the gateway's "authentication failed"
            return ConfigError(REFUSED_LOGIN)
        return DiscordUnreachable(f"the gateway closed the connection with code {exc.code}")
    if isinstance(exc, discord.HTTPException) and not isinstance(exc, UNREACHABLE):
        return ServiceError(
            f"Discord answered {exc.status} at login",
            user_message=f"Discord refused the login ({exc.status} {exc.text[:100]})",
        )
    if isinstance(exc, UNREACHABLE):
        text = " ".join(str(exc).split())[:200]
        return DiscordUnreachable(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return exc


async def serve_until_stopped(
    bot: MediaBot, token: str, *, stopping: asyncio.Event | None = None
) -> None:
    """Run `bot` until it stops by itself or `stopping` is set (by default, on SIGTERM); then
    close it cleanly. A token Discord refuses raises ConfigError, a Discord that cannot be
    reached DiscordUnreachable; the bot is closed either way."""
    loop = asyncio.get_running_loop()
    own = stopping is None
    stop = asyncio.Event() if stopping is None else stopping
    if own:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    try:
        async with bot:
            running = asyncio.create_task(bot.start(token), name="discord")
            stopper = asyncio.create_task(stop.wait(), name="sigterm")
            done, _ = await asyncio.wait({running, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if running in done:
                stopper.cancel()
                if (error := running.exception()) is not None:
                    raise _start_failure(error) from None
            else:
                log.info("SIGTERM: letting runs save, then closing")
                await bot.close()
                await running
    finally:
        if own:
            loop.remove_signal_handler(signal.SIGTERM)


async def serve_with_retries(
    make_bot: Callable[[], MediaBot],
    token: str,
    stopping: asyncio.Event,
    *,
    first_delay: float = 1.0,
    max_delay: float = 60.0,
) -> None:
    """Host a bot until `stopping` is set. While Discord cannot be reached at start (no
    network, an outage), a fresh bot tries again after `first_delay` seconds, doubling up to
    `max_delay`, with one warning per attempt: a long-running host outlives an outage. After
    login, discord.py reconnects by itself. A refused token raises ConfigError."""
    attempt = 0
    while not stopping.is_set():
        try:
            await serve_until_stopped(make_bot(), token, stopping=stopping)
            return
        except DiscordUnreachable as exc:
            attempt += 1
            delay = min(first_delay * 2 ** (attempt - 1), max_delay)
            log.warning(
                "Discord cannot be reached (%s); trying again in %g s (attempt %d)",
                exc.reason, delay, attempt,
            )  # fmt: skip
            try:
                await asyncio.wait_for(stopping.wait(), delay)
            except TimeoutError:
                continue
