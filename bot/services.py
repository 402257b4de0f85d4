"""`Services`: the one object cogs touch — runner, characters, store, reviewer, notifier, settings.

`build_services` wires them for a bot; the Runner's `execute` comes from a factory the entry
point gets from the pipeline (tests pass a double). Never imports strategies or comfy.
"""

from __future__ import annotations

import asyncio
import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import aiohttp
import discord

from bot.background import Background
from bot.card import CardBook, CardMessage, RunCard
from bot.notify import DiscordNotifier
from bot.review import DiscordReviewer, ReviewConfig
from pipeline.captions import edited_caption_problems
from pipeline.characters import Character, Characters
from pipeline.errors import CharacterNotFound, ConfigError, MediaOverloadError, Problem, RunError
from pipeline.lease import Owner, WallClock
from pipeline.metrics import MetricsCollector, StoreWithMetrics
from pipeline.models import utcnow
from pipeline.options import ImageLimits, Options, check_declared, check_options, fetch_image
from pipeline.ports import Notifier, PublishNotifier, Reviewer
from pipeline.publish.queue import PublishQueue
from pipeline.runner import Execute, Runner, Withdraw
from pipeline.settings import Settings
from pipeline.wiring import build_runner, metrics_collector

log = logging.getLogger(__name__)

#: on shutdown, how long run cards may take to show that their run stopped (one edit each)
CARD_GRACE = 2.0

#: builds the Runner's `execute` around the bot's reviewer and notifier (the pipeline's wiring)
ExecuteFactory = Callable[[Reviewer, Notifier], Execute]
#: the publish queue of the pipeline around the bot's notifier (`wiring.Engine.queue_for`)
QueueFactory = Callable[[Notifier], PublishQueue]


@dataclass
class Services:
    """Everything a cog may use; nothing else of the pipeline is reachable from the bot."""

    settings: Settings
    store: StoreWithMetrics
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
    #: each character's style names, for /generate's `style` autocomplete
    styles: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: the HTTP session the entry point owns: input images are downloaded with it
    http: aiohttp.ClientSession | None = None
    #: the publish queue (its loop and commands are `bot.cogs.queue`'s); shares its
    #: PublishService with the runs' publish step
    queue: PublishQueue | None = None
    #: reads published posts' metrics (its loop is bot.cogs.metrics)
    metrics: MetricsCollector | None = None

    async def character(self, name: str) -> Character:
        """The character of that name; a short RunError otherwise, with close names but never
        the whole list (the refusal is private, yet the list is not the asker's business)."""
        try:
            return await asyncio.to_thread(self.characters.load, name)
        except CharacterNotFound:
            shown = name.strip()[:40]
            close = difflib.get_close_matches(shown, self.character_names, n=3)
            hint = f"did you mean {', '.join(close)}?" if close else "pick one offered as you type."
            raise RunError(f"no character named {shown!r}; {hint}") from None

    async def refresh_characters(self) -> list[Problem]:
        """Read the characters folder again; the problems of broken files."""
        names = await asyncio.to_thread(self.characters.names)
        loaded, problems = await asyncio.to_thread(self.characters.load_all)
        self.character_names = names
        self.runnable_types = {c.key: c.runnable_types() for c in loaded}
        self.styles = {
            c.key: tuple(sorted(s for s in c.generation.style_weights if s)) for c in loaded
        }
        return problems

    def run_options(
        self,
        character: Character,
        *,
        generation_type: str | None,
        style: str | None,
        count: int | None,
        negative: str | None,
        image: tuple[str | None, int, int | None, int | None] | None,
    ) -> Options:
        """/generate's options checked before anything starts (a RunError of one sentence):
        `image` is what the upload declares of itself (content type, bytes, width, height)."""
        if image is not None:
            content_type, size, width, height = image
            check_declared(
                ImageLimits.of(self.settings),
                content_type=content_type,
                size=size,
                width=width,
                height=height,
            )
        return check_options(
            character,
            generation_type=generation_type,
            style=style,
            count=count,
            negative=negative,
            with_image=image is not None,
            max_count=self.settings.generate_max_count,
        )

    async def input_image(self, character: Character, run_id: str, url: str) -> str:
        """Download an input image into the folder of the run `run_id` (bounded in time and
        size, its header checked off the loop); the path for the job."""
        if self.http is None:
            raise RuntimeError("Services carries no HTTP session")
        from pipeline.options import run_folder_of

        folder = run_folder_of(character, run_id)
        path = await fetch_image(self.http, url, folder, ImageLimits.of(self.settings))
        return str(path)

    async def caption_problems(self, character: str, captions: Mapping[str, str]) -> list[str]:
        """What is over its platform's limits in captions a reviewer wrote, as each would be
        posted (pipeline.captions.edited_caption_problems), worked out off the event loop."""

        def check() -> list[str]:
            try:
                loaded: Character | None = self.characters.load(character)
            except MediaOverloadError:  # its file went away or broke: checked without a prefix
                loaded = None
            return edited_caption_problems(loaded, captions)

        return await asyncio.to_thread(check)

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
    store: StoreWithMetrics,
    session: aiohttp.ClientSession,
    characters: Characters,
    strategy_names: tuple[str, ...],
    execute_factory: ExecuteFactory,
    detach: Callable[[], None] | None = None,
    withdraw: Withdraw | None = None,
    lease_owner: Owner | None = None,
    clock: WallClock = utcnow,
    queue_factory: QueueFactory | None = None,
) -> Services:
    """Reviewer and notifier on `client`, the Runner around the pipeline's `execute`;
    `detach` (the ComfyUI pool's) leaves running runs' prompts queued on shutdown, `withdraw`
    takes a stopped run's prompts off when /cancel ends it.
    `lease_owner` names this instance in run leases (this process by default); `clock` tells
    when they expire (tests move it by hand). `queue_factory` gives the publish queue of the
    pipeline `execute_factory` builds (the same one for the same notifier)."""
    reviewer = DiscordReviewer(client, review_config(settings), store)
    webhook = settings.discord_notify_webhook_url
    notifier = DiscordNotifier(
        client,
        session,
        channel_id=settings.discord_notify_channel_id,
        webhook_url=webhook.get_secret_value() if webhook else None,
    )
    runner = build_runner(
        settings,
        store,
        execute_factory(reviewer, notifier),
        detach=detach,
        withdraw=withdraw,
        owner=lease_owner,
        clock=clock,
    )
    queue = queue_factory(notifier) if queue_factory is not None else None
    return Services(
        settings=settings,
        store=store,
        runner=runner,
        characters=characters,
        reviewer=reviewer,
        notifier=notifier,
        strategy_names=strategy_names,
        cards=CardBook(settings.data_dir / "run-cards.json"),
        http=session,
        queue=queue,
        # the publishers the runs post with, so an account has one client (one instagrapi
        # session) in this process
        metrics=metrics_collector(
            settings,
            store,
            notifier=notifier if isinstance(notifier, PublishNotifier) else None,
            owner=lease_owner,
            publishers=queue.service.publishers if queue is not None else None,
        ),
    )


def services_of(client: discord.Client) -> Services:
    """The Services of the bot an interaction came to."""
    services = getattr(client, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("this client carries no Services; use bot.app.MediaBot")
    return services
