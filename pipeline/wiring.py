"""Builds the concrete services from settings: the one place that names them.

`open_pipeline(settings, reviewer=..., notifier=...)` opens the store, the ComfyUI pool and the
language models, wires the Pipeline and its Runner, and closes everything on exit. The command
line and the bot differ only in the Reviewer and Notifier they pass. `build_runner` is the one
way to build a Runner (the bot, the command line and the soak use it).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING

import strategies
from comfy import ComfyError, ComfyPool, ServerSpec
from pipeline.captions import caption_platforms, load_counter, write_captions
from pipeline.characters import Character, Characters
from pipeline.errors import CharacterError, CharacterNotFound
from pipeline.lease import Owner, WallClock, this_process
from pipeline.llm.base import Task
from pipeline.llm.factory import LanguageModels, open_models
from pipeline.longvideo import FfmpegEditor, Narrator
from pipeline.metrics import MetricsCollector
from pipeline.models import MediaKind, Platform, Run, Sticker, utcnow
from pipeline.ports import Notifier, Publisher, PublishNotifier, Reviewer, RunnerStore
from pipeline.prompts.descriptions import write_descriptions
from pipeline.prompts.library import TemplateLibrary
from pipeline.prompts.methods import write_prompt
from pipeline.prompts.sound import write_sound_prompt
from pipeline.prompts.stickers import write_stickers
from pipeline.publish import (
    AttentionBoard,
    PublishService,
    build_publish_service,
    build_publishers,
    fit_run_media,
)
from pipeline.publish.discord_stickers import DiscordStickers
from pipeline.publish.queue import PublishQueue
from pipeline.publish.stickers import StickerUploader
from pipeline.readings import MetricsStore
from pipeline.run import Idea, Pipeline, run_folder
from pipeline.runner import Execute, Runner, Withdraw
from pipeline.settings import Settings
from pipeline.store import SqlStore, open_store
from pipeline.tasks import gather_all
from pipeline.vision import VisionScorer
from strategies.base import Score, unfinished_prompts
from strategies.media import media_kind

if TYPE_CHECKING:
    from pipeline.speech import OpenAISpeaker

log = logging.getLogger(__name__)


@dataclass
class ModelPrompts:
    models: LanguageModels
    store: SqlStore

    async def write(
        self, character: Character, *, method: str | None, subject: str, rng: Random, video: bool
    ) -> Idea:
        written = await write_prompt(
            character,
            model=self.models.for_task(Task.PROMPT),
            store=self.store,
            rng=rng,
            method=method,
            subject=subject,
            video=video,
        )
        return Idea(
            prompt=written.text,
            method=written.method,
            subject=subject,
            partner=written.partner or None,
            news_id=written.news_id,
        )


@dataclass
class ModelDescriber:
    models: LanguageModels
    library: TemplateLibrary

    async def describe(
        self,
        character: Character,
        idea: Idea,
        *,
        template: str,
        style: str,
        count: int,
        video: bool,
    ) -> list[str]:
        return list(
            await write_descriptions(
                idea.prompt,
                model=self.models.for_task(Task.DESCRIPTION),
                library=self.library,
                template=template,
                character=idea.subject,
                about=character.spec.character.description,
                partner=idea.partner,
                style=style,
                count=count,
                video=video,
            )
        )


@dataclass
class ModelSound:
    """The sound prompt of a video run, from the description model."""

    models: LanguageModels

    async def write(self, character: Character, descriptions: Sequence[str]) -> str | None:
        return await write_sound_prompt(descriptions, model=self.models.for_task(Task.DESCRIPTION))


@dataclass
class ModelStickers:
    """The pipeline's StickerWriter over the description model."""

    models: LanguageModels
    library: TemplateLibrary

    async def list_stickers(
        self, character: Character, idea: Idea, *, style: str, count: int
    ) -> list[tuple[Sticker, str]]:
        return await write_stickers(
            idea.prompt,
            model=self.models.for_task(Task.DESCRIPTION),
            character=idea.subject,
            about=character.spec.character.description,
            style=self.library.styles.get(style, "") if style else "",
            count=count,
        )


def build_sticker_uploads(settings: Settings, store: SqlStore) -> StickerUploader | None:
    """Sticker packs go to DISCORD_STICKER_GUILD_ID (else DISCORD_GUILD_ID) with the bot's
    token over Discord's REST API, from the bot and the command line alike; None without a
    token or a guild (a sticker pack then fails at publishing, saying which to set)."""
    guild = settings.discord_sticker_guild_id or settings.discord_guild_id
    if settings.discord_token is None or guild is None:
        return None
    api = DiscordStickers(
        token=settings.discord_token, guild_id=guild, api_base=settings.discord_api_base
    )
    return StickerUploader(api, store)


@dataclass
class ModelScorer:
    """The strategies' and the run's Scorer over the vision model."""

    vision: VisionScorer

    async def score(self, items: Sequence[tuple[Path, str]]) -> list[Score]:
        kinds = await asyncio.to_thread(lambda: [media_kind(path) for path, _ in items])
        # one failure cancels and awaits the other calls and reaches the strategy as itself
        verdicts = await gather_all(
            self.vision.score(path, text, kind=kind or MediaKind.IMAGE)
            for (path, text), kind in zip(items, kinds, strict=True)
        )
        return [Score(v.score, v.reason) for v in verdicts]


@dataclass
class ModelCaptions:
    models: LanguageModels

    async def write(
        self, character: Character, *, prompt: str, descriptions: Sequence[str], subject: str
    ) -> dict[Platform, str]:
        return await write_captions(
            character=character,
            prompt=prompt,
            descriptions=descriptions,
            model=self.models.for_task(Task.CAPTION),
            platforms=caption_platforms(character),
        )


@dataclass
class OpenPipeline:
    """What `open_pipeline` gives the command line: built once, closed on exit. (The bot's
    one object is `bot.services.Services`; this is not it.)"""

    settings: Settings
    store: SqlStore
    characters: Characters
    pipeline: Pipeline
    runner: Runner
    pool: ComfyPool
    #: the language models (the command line asks them before a run)
    models: LanguageModels | None = None


def characters_from(settings: Settings) -> Characters:
    return Characters(settings.characters_dir, TemplateLibrary.load(settings.templates_dir))


@dataclass
class Engine:
    """The long-lived parts of a pipeline (store, ComfyUI pool, language models) from settings.

    `pipeline_for(reviewer, notifier)` wires a Pipeline over them: the bot builds its reviewer
    and notifier on the Discord client after the engine is open, the command line before.
    """

    settings: Settings
    store: SqlStore
    characters: Characters
    pool: ComfyPool
    models: LanguageModels
    video_tags: frozenset[str]
    #: the publish queue of each notifier (one per bot): its runs and its loop share one
    #: PublishService, so a post in flight is known to both
    queues: dict[int, PublishQueue] = field(default_factory=dict, repr=False)

    def queue_for(self, notifier: Notifier) -> PublishQueue:
        """The publish queue (and its PublishService) of the pipeline for `notifier`."""
        if id(notifier) not in self.queues:
            self.queues[id(notifier)] = build_publish_queue(
                self.settings, self.store, self.characters, notifier=notifier
            )
        return self.queues[id(notifier)]

    #: the speech endpoint of narrated videos (None without SPEECH_URL)
    speaker: OpenAISpeaker | None = None

    def pipeline_for(self, reviewer: Reviewer, notifier: Notifier) -> Pipeline:
        settings = self.settings
        vision = VisionScorer(
            self.models.for_task(Task.VISION),
            concurrency=settings.vision_concurrency,
            max_side=settings.vision_max_side,
            video_frames=settings.vision_video_frames,
        )
        return Pipeline(
            store=self.store,
            characters=self.characters,
            generator=self.pool,
            prompts=ModelPrompts(self.models, self.store),
            describer=ModelDescriber(self.models, self.characters.library),
            scorer=ModelScorer(vision),
            vision=vision,
            captions=ModelCaptions(self.models),
            reviewer=reviewer,
            notifier=notifier,
            publisher=self.queue_for(notifier),
            fit_media=functools.partial(fit_run_media, preset=settings.video_preset),
            video_tags=self.video_tags,
            learning=self.store,
            sound=ModelSound(self.models),
            narrator=Narrator(
                self.models.for_task(Task.DESCRIPTION),
                self.characters.library.styles,
                speaker=self.speaker,
                editor=FfmpegEditor(preset=settings.video_preset),
            ),
            sticker_writer=ModelStickers(self.models, self.characters.library),
            sticker_uploads=build_sticker_uploads(settings, self.store),
        )

    def execute_for(self, reviewer: Reviewer, notifier: Notifier) -> Execute:
        """The Runner's `execute` around this reviewer and notifier (the bot's factory)."""
        return self.pipeline_for(reviewer, notifier).execute


MB = 2**20


def comfy_pool(settings: Settings, specs: Sequence[ServerSpec]) -> ComfyPool:
    """A ComfyPool on `specs` with the time and size limits from settings (not yet started)."""
    return ComfyPool(
        specs,
        stall_timeout=settings.comfyui_stall_seconds,
        job_timeout=settings.comfyui_job_timeout_seconds,
        download_timeout=settings.comfyui_download_timeout_seconds,
        download_min_rate=settings.comfyui_download_min_kb_per_second * 1024,
        download_max_bytes=int(settings.comfyui_download_max_mb * MB),
        max_outputs=settings.comfyui_max_outputs_per_job,
        ws_max_message_bytes=int(settings.comfyui_ws_max_message_mb * MB),
        answer_max_bytes=int(settings.comfyui_answer_max_mb * MB),
        object_info_max_bytes=int(settings.comfyui_object_info_max_mb * MB),
    )


@asynccontextmanager
async def open_engine(
    settings: Settings, store: SqlStore, characters: Characters | None = None
) -> AsyncIterator[Engine]:
    """Open the ComfyUI pool and the language models over an open store; close them on exit."""
    specs = [ServerSpec.parse(url) for url in settings.comfyui_servers]
    await asyncio.to_thread(load_counter)  # off the loop, before the first run's captions
    video_tags = frozenset({"video"}) if any("video" in s.tags for s in specs) else frozenset()
    speaker = speaker_from(settings)
    try:
        async with comfy_pool(settings, specs) as pool, open_models(settings) as models:
            yield Engine(
                settings,
                store,
                characters if characters is not None else characters_from(settings),
                pool,
                models,
                video_tags,
                speaker=speaker,
            )
    finally:
        if speaker is not None:
            await speaker.close()


def speaker_from(settings: Settings) -> OpenAISpeaker | None:
    """The speech endpoint of narrated videos from the SPEECH_* settings; None without a URL."""
    if not settings.speech_url:
        return None
    from pipeline.speech import OpenAISpeaker  # the openai client is heavy: only when used

    key = settings.speech_api_key.get_secret_value() if settings.speech_api_key else ""
    return OpenAISpeaker.connect(
        settings.speech_url,
        key,
        model=settings.speech_model,
        voice=settings.speech_voice,
        timeout_s=settings.speech_timeout_seconds,
        max_bytes=int(settings.speech_max_mb * MB),
    )


@asynccontextmanager
async def open_pipeline(
    settings: Settings, *, reviewer: Reviewer, notifier: Notifier
) -> AsyncIterator[OpenPipeline]:
    """Store, engine, Pipeline and Runner for the command line; the runner drains on exit."""
    url = settings.database_url.get_secret_value()
    async with (
        open_store(url, sqlite_path=settings.database_path) as store,
        open_engine(settings, store) as engine,
    ):
        pipeline = engine.pipeline_for(reviewer, notifier)
        runner = build_runner(
            settings,
            store,
            pipeline.execute,
            detach=engine.pool.detach,
            withdraw=prompt_withdrawer(settings, engine.characters, engine.pool),
        )
        try:
            yield OpenPipeline(
                settings, store, engine.characters, pipeline, runner, engine.pool, engine.models
            )
        finally:
            await runner.shutdown()


def build_runner(
    settings: Settings,
    store: RunnerStore,
    execute: Execute,
    *,
    detach: Callable[[], None] | None = None,
    withdraw: Withdraw | None = None,
    owner: Owner | None = None,
    shutdown_grace: float | None = None,
    clock: WallClock = utcnow,
) -> Runner:
    """The one way to build a Runner: its limits, grace and lease time from settings.
    `detach` and `withdraw` come from the ComfyUI pool (see `Runner`); `owner` names another
    process in leases (tests), `shutdown_grace` overrides SHUTDOWN_GRACE_SECONDS (the soak),
    `clock` tells when leases expire (tests move it by hand)."""
    return Runner(
        store,
        execute,
        max_runs=settings.max_runs,
        max_per_character=settings.max_runs_per_character,
        max_per_requester=settings.max_runs_per_user,
        shutdown_grace=(
            settings.shutdown_grace_seconds if shutdown_grace is None else shutdown_grace
        ),
        detach=detach,
        withdraw=withdraw,
        lease_ttl=settings.run_lease_seconds,
        owner=owner,
        clock=clock,
    )


@dataclass
class Publishing:
    """What `python -m pipeline publish` needs: the characters and the publisher over an open
    store; no ComfyUI pool and no language models."""

    characters: Characters
    service: PublishService
    #: the publish queue over `service` (`queue`, `publish-due`, `publish-now`, `unqueue`)
    queue: PublishQueue
    #: a sticker pack's uploads to the guild (None: DISCORD_TOKEN or the guild is not set)
    stickers: StickerUploader | None = None


def publishing_for(
    settings: Settings, store: SqlStore, *, notifier: PublishNotifier | None = None
) -> Publishing:
    """The characters, a PublishService and the publish queue over `store`, for publishing
    approved runs again and for the queue's commands."""
    characters = characters_from(settings)
    service = build_publish_service(settings, store, notifier=notifier)
    queue = PublishQueue(service, store, characters, claim_seconds=settings.publish_claim_seconds)
    return Publishing(characters, service, queue, build_sticker_uploads(settings, store))


def build_publish_queue(
    settings: Settings,
    store: SqlStore,
    characters: Characters,
    *,
    notifier: Notifier | None = None,
    owner: Owner | None = None,
    clock: WallClock = utcnow,
) -> PublishQueue:
    """The publish queue and its PublishService: the pipeline's publisher and the bot's loop."""
    attention = notifier if isinstance(notifier, PublishNotifier) else None
    service = build_publish_service(settings, store, notifier=attention)
    return PublishQueue(
        service,
        store,
        characters,
        notifier=notifier,
        owner=owner,
        claim_seconds=settings.publish_claim_seconds,
        clock=clock,
    )


def metrics_collector(
    settings: Settings,
    store: MetricsStore,
    *,
    notifier: PublishNotifier | None = None,
    owner: Owner | None = None,
    publishers: Mapping[Platform, Publisher] | None = None,
) -> MetricsCollector:
    """The MetricsCollector over `store` with every platform's publisher that reads metrics
    (`publishers`, those the runs post with, else new ones); `owner` names this instance in
    its claims (this process by default)."""
    return MetricsCollector(
        store,
        publishers if publishers is not None else build_publishers(settings),
        AttentionBoard(settings.attention_dir),
        owner=str(owner or this_process()),
        notifier=notifier,
    )


def prompt_withdrawer(
    settings: Settings, characters: Characters, pool: ComfyPool | None = None
) -> Withdraw:
    """The Runner's `withdraw`: takes a stopped run's unfinished ComfyUI prompts off their
    servers (through `pool`, else a pool opened for it: a cancel from the terminal) and says
    how many there were. A run whose character file is gone keeps its prompts (its folder is
    not known), with a warning."""

    async def withdraw(run: Run) -> int:
        try:
            character = await asyncio.to_thread(characters.load, run.job.character)
        except (CharacterError, CharacterNotFound):
            log.warning("run %s: its character file is gone, so its ComfyUI prompts were "
                        "left alone", run.id)  # fmt: skip
            return 0
        prompts = await asyncio.to_thread(unfinished_prompts, run_folder(character, run.id))
        if not prompts:
            return 0
        try:
            async with AsyncExitStack() as stack:
                if pool is None:
                    specs = [ServerSpec.parse(url) for url in settings.comfyui_servers]
                    using = await stack.enter_async_context(comfy_pool(settings, specs))
                else:
                    using = pool
                # the last queued first: a waiting prompt is deleted before the one ahead of
                # it is interrupted, so the server never starts it in between
                for prompt_id, server in reversed(prompts):
                    await using.withdraw(prompt_id, server=server)
        except (ComfyError, OSError) as exc:  # the run is cancelled all the same
            log.warning("run %s: its ComfyUI prompts were not withdrawn: %s", run.id, exc)
            return 0
        return len(prompts)

    return withdraw


#: the strategy names, for choices (the /generate `type`, the command line's --type)
STRATEGY_NAMES: tuple[str, ...] = tuple(strategies.STRATEGY_NAMES)

__all__ = [
    "STRATEGY_NAMES",
    "Engine",
    "OpenPipeline",
    "Publishing",
    "build_publish_queue",
    "build_runner",
    "characters_from",
    "metrics_collector",
    "open_engine",
    "open_pipeline",
    "prompt_withdrawer",
    "publishing_for",
]
