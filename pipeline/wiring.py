"""Builds the concrete services from settings: the one place that names them.

`open_pipeline(settings, reviewer=..., notifier=...)` opens the store, the ComfyUI pool and the
language models, wires the Pipeline and its Runner, and closes everything on exit. The command
line and the bot differ only in the Reviewer and Notifier they pass.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from random import Random

from comfy import ComfyPool, ServerSpec
from pipeline.captions import write_captions
from pipeline.characters import Character, Characters
from pipeline.llm.base import Task
from pipeline.llm.factory import LanguageModels, open_models
from pipeline.models import MediaKind, Platform
from pipeline.ports import Notifier, Reviewer
from pipeline.prompts.descriptions import write_descriptions
from pipeline.prompts.library import TemplateLibrary
from pipeline.prompts.methods import write_prompt
from pipeline.publish import build_publish_service, fit_run_media
from pipeline.run import Idea, Pipeline
from pipeline.runner import Runner
from pipeline.settings import Settings
from pipeline.store import SqlStore, open_store
from pipeline.vision import VisionScorer
from strategies.base import Score

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
        extra = {}
        if written.partner:
            extra["partner"] = written.partner
        if written.news_id is not None:
            extra["news_id"] = str(written.news_id)
        return Idea(prompt=written.text, method=written.method, subject=subject, extra=extra)


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
                partner=idea.extra.get("partner"),
                style=style,
                count=count,
                video=video,
            )
        )


@dataclass
class ModelScorer:
    """The strategies' and the run's Scorer over the vision model."""

    vision: VisionScorer

    async def score(self, items: Sequence[tuple[Path, str]]) -> list[Score]:
        verdicts = await asyncio.gather(
            *(
                self.vision.score(
                    path,
                    text,
                    kind=MediaKind.VIDEO if path.suffix in {".mp4", ".webm"} else MediaKind.IMAGE,
                )
                for path, text in items
            )
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
            platforms=list(Platform),
        )


@dataclass
class Services:
    """What an adapter (the bot, the command line) holds: built once, closed on exit."""

    settings: Settings
    store: SqlStore
    characters: Characters
    pipeline: Pipeline
    runner: Runner
    pool: ComfyPool


def characters_from(settings: Settings) -> Characters:
    return Characters(settings.characters_dir, TemplateLibrary.load(settings.templates_dir))


@asynccontextmanager
async def open_pipeline(
    settings: Settings, *, reviewer: Reviewer, notifier: Notifier
) -> AsyncIterator[Services]:
    characters = characters_from(settings)
    specs = [ServerSpec.parse(url) for url in settings.comfyui_servers]
    url = settings.database_url.get_secret_value()
    async with (
        open_store(url, sqlite_path=settings.database_path) as store,
        ComfyPool(specs) as pool,
        open_models(settings) as models,
    ):
        vision = VisionScorer(
            models.for_task(Task.VISION),
            concurrency=settings.vision_concurrency,
            max_side=settings.vision_max_side,
            video_frames=settings.vision_video_frames,
        )
        pipeline = Pipeline(
            store=store,
            characters=characters,
            generator=pool,
            prompts=ModelPrompts(models, store),
            describer=ModelDescriber(models, characters.library),
            scorer=ModelScorer(vision),
            vision=vision,
            captions=ModelCaptions(models),
            reviewer=reviewer,
            notifier=notifier,
            publisher=build_publish_service(settings, store),
            fit_media=fit_run_media,
            video_tags=frozenset({"video"})
            if any("video" in s.tags for s in specs)
            else frozenset(),
        )
        runner = Runner(store, pipeline.execute)
        try:
            yield Services(settings, store, characters, pipeline, runner, pool)
        finally:
            await runner.shutdown()


__all__ = ["Services", "characters_from", "open_pipeline"]
