"""`Services`: the one object cogs touch — runner, characters, store, reviewer, notifier, settings.

`build_services` wires them for a bot; the Runner's `execute` comes from a factory the entry
point gets from the pipeline (tests pass a double). Never imports strategies or comfy.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import discord

from bot.background import Background
from bot.card import CardBook, CardMessage, RunCard
from bot.notify import DiscordNotifier
from bot.review import DiscordReviewer, ReviewConfig
from pipeline.characters import Characters
from pipeline.errors import ConfigError, Problem
from pipeline.lease import Owner, WallClock
from pipeline.models import utcnow
from pipeline.ports import Notifier, Reviewer, Store
from pipeline.runner import Execute, Runner
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: on shutdown, how long run cards may take to show that their run stopped (one edit each)
CARD_GRACE = 2.0

#: builds the Runner's `execute` around the bot's reviewer and notifier (the pipeline's wiring)
ExecuteFactory = Callable[[Reviewer, Notifier], Execute]


@dataclass
class Services:
    """Everything a cog may use; nothing else of the pipeline is reachable from the bot."""

    settings: Settings
    store: Store
    runner: Runner
    characters: Characters
    reviewer: DiscordReviewer
    notifier: DiscordNotifier
    #: the `type` choices of /generate, as the pipeline registers them
    strategy_names: tuple[str, ...]
    #: where each run's card is, so a restart goes on editing it
    cards: CardBook | None = None
    background: Background = field(default_factory=Background)
    #: character keys for autocomplete, read at start and by /reload (no disk on a keystroke)
    character_names: list[str] = field(default_factory=list)
    #: the generation types each character can run, for /generate's `type` autocomplete
    runnable_types: dict[str, tuple[str, ...]] = field(default_factory=dict)

    async def refresh_characters(self) -> list[Problem]:
        """Read the characters folder again; the problems of broken files."""
        names = await asyncio.to_thread(self.characters.names)
        loaded, problems = await asyncio.to_thread(self.characters.load_all)
        self.character_names = names
        self.runnable_types = {c.key: c.runnable_types() for c in loaded}
        return problems

    def run_card(
        self, message: CardMessage, *, character: str, generation_type: str | None
    ) -> RunCard:
        """A run card in `message`, with the settings' edit interval."""
        return RunCard(
            runner=self.runner,
            edit=message,
            posts=self.store.posts_for_run,
            character=character,
            generation_type=generation_type,
            review_channel_id=self.settings.discord_review_channel_id,
            interval=self.settings.discord_card_edit_seconds,
            book=self.cards,
        )

    async def close(self) -> None:
        """Let runs save and stop: reviews end as cancelled (their tickets stay on the runs),
        running runs get the runner's grace period, run cards a moment to say they stopped,
        then side tasks are cancelled."""
        self.reviewer.stop()
        await self.runner.shutdown()
        await self.background.close(grace=CARD_GRACE)


def review_config(settings: Settings) -> ReviewConfig:
    if settings.discord_review_channel_id is None:
        raise ConfigError("DISCORD_REVIEW_CHANNEL_ID is not set: the bot needs a review channel")
    return ReviewConfig(
        channel_id=settings.discord_review_channel_id,
        role_ids=frozenset(settings.discord_review_role_ids),
        timeout=timedelta(minutes=settings.review_timeout_minutes),
        reminder=timedelta(minutes=settings.review_reminder_minutes),
        upload_limit=settings.discord_upload_limit,
    )


def build_services(
    client: discord.Client,
    *,
    settings: Settings,
    store: Store,
    session: aiohttp.ClientSession,
    characters: Characters,
    strategy_names: tuple[str, ...],
    execute_factory: ExecuteFactory,
    detach: Callable[[], None] | None = None,
    lease_owner: Owner | None = None,
    clock: WallClock = utcnow,
) -> Services:
    """Reviewer and notifier on `client`, the Runner around the pipeline's `execute`;
    `detach` (the ComfyUI pool's) leaves running runs' prompts queued on shutdown.
    `lease_owner` names this instance in run leases (this process by default); `clock` tells
    when they expire (tests move it by hand)."""
    reviewer = DiscordReviewer(client, review_config(settings), store)
    webhook = settings.discord_notify_webhook_url
    notifier = DiscordNotifier(
        client,
        session,
        channel_id=settings.discord_notify_channel_id,
        webhook_url=webhook.get_secret_value() if webhook else None,
    )
    runner = Runner(
        store,
        execute_factory(reviewer, notifier),
        max_runs=settings.max_runs,
        max_per_character=settings.max_runs_per_character,
        max_per_requester=settings.max_runs_per_user,
        shutdown_grace=settings.shutdown_grace_seconds,
        detach=detach,
        lease_ttl=settings.run_lease_seconds,
        owner=lease_owner,
        clock=clock,
    )
    return Services(
        settings=settings,
        store=store,
        runner=runner,
        characters=characters,
        reviewer=reviewer,
        notifier=notifier,
        strategy_names=strategy_names,
        cards=CardBook(settings.data_dir / "run-cards.json"),
    )


def services_of(client: discord.Client) -> Services:
    """The Services of the bot an interaction came to."""
    services = getattr(client, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("this client carries no Services; use bot.app.MediaBot")
    return services
