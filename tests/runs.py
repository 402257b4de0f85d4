"""Whole runs in-process, shared by tests/pipeline and tests/faults: a project folder with one
character and the shipped workflows, a FakeComfyUI behind a real ComfyPool, and `World`, the real
Pipeline wired with doubles for the models and review and real everything else.

Import the fixtures into a conftest (`from tests.runs import comfy, project, world`).
"""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy import ComfyPool
from pipeline.characters import Characters
from pipeline.lease import Owner
from pipeline.models import Job, Platform, Run
from pipeline.prompts.library import TemplateLibrary
from pipeline.publish import AttentionBoard, PublishService, fit_run_media
from pipeline.publish.queue import PublishQueue
from pipeline.run import Describer, Pipeline, PromptWriter, run_folder
from pipeline.store import SqlStore
from pipeline.vision import VisionScorer
from pipeline.wiring import ModelScorer
from tests.doubles import (
    Asked,
    RecordingNotifier,
    RecordingPublisher,
    RecordingSink,
    ScriptedModel,
    ScriptedReviewer,
    StaticCaptions,
    StaticDescriber,
    StaticPrompts,
)
from tests.fakes.comfyui import FakeComfyUI
from tests.leases import FakeClock

ROOT = Path(__file__).resolve().parents[1]

#: the world's process as the publish queue names it (another host: never taken for gone)
WORLD = Owner("world-host", 1, "world")

#: `KEEP` is replaced by keep_best_when_none_pass
CHARACTER = """
character: {name: Testy}
generation:
  generation_type_weights: {text2img: 1}
  workflows:
    text2img: workflows/text2img.json
    image2image: workflows/image2image.json
    text2image2image: workflows/image2image.json
    text2video: workflows/text2video.json
    text2image2video: workflows/image2video.json
  similarity_threshold: 0.5
  keep_best_when_none_pass: KEEP
  descriptions: 2
  prompt_method_weights: {arbitrary: 1}
social_media:
  platforms:
    instagram: {enabled: true, credentials: testy_ig}
    twitter: {enabled: true, credentials: testy_x}
additional_params:
  general: {images_per_description: 2, images_per_input: 1, videos_per_description: 1, denoise: 0.5}
  strategies:
    image2image: {input_dir: inputs}
    text2image2image: {keep_top: 2}
"""


#: for an end-to-end run whose point is not the store (an ffmpeg-heavy one): made once, on
#: the embedded engine; the tests that read a run back after a stop run on both
ONE_ENGINE = pytest.mark.one_engine


def make_project(folder: Path) -> Path:
    """`folder` with workflows/, characters/testy.yaml and inputs/fox.png."""
    shutil.copytree(ROOT / "workflows", folder / "workflows")
    (folder / "characters").mkdir()
    (folder / "characters" / "testy.yaml").write_text(CHARACTER.replace("KEEP", "1"))
    (folder / "inputs").mkdir()
    Image.new("RGB", (64, 64), "orange").save(folder / "inputs" / "fox.png")
    return folder


@asynccontextmanager
async def open_comfy(
    job_seconds: float = 0.02, **pool_options: Any
) -> AsyncIterator[tuple[FakeComfyUI, ComfyPool]]:
    """A FakeComfyUI and a real ComfyPool on it (`pool_options` go to ComfyPool)."""
    async with (
        FakeComfyUI(job_seconds=job_seconds) as fake,
        ComfyPool([fake.url], **pool_options) as pool,
    ):
        yield fake, pool


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path)


@pytest.fixture
async def comfy() -> AsyncIterator[tuple[FakeComfyUI, ComfyPool]]:
    async with open_comfy() as pair:
        yield pair


class World:
    """The pipeline wired with doubles for the models and review, real everything else.

    `prompts` and `describer` may be given (the fault tests pass the real language-model ones).
    """

    def __init__(
        self,
        project: Path,
        store: SqlStore,
        pool: ComfyPool,
        *,
        prompts: PromptWriter | None = None,
        describer: Describer | None = None,
    ) -> None:
        self.characters = Characters(project / "characters", TemplateLibrary.load())
        #: the score the vision model gives an image, by the description it is shown with
        self.rule: Callable[[str], float] = lambda description: 0.9
        self.model = ScriptedModel.of(default=self._verdict)
        vision = VisionScorer(self.model)
        self.reviewer = ScriptedReviewer()
        self.notifier = RecordingNotifier()
        self.publishers = {p: RecordingPublisher(p) for p in Platform}
        publish = PublishService(store, self.publishers, AttentionBoard(project / "attention"))
        #: the time the publish queue sees (tests move it on to a slot)
        self.clock = FakeClock()
        self.queue = PublishQueue(
            publish, store, self.characters, notifier=self.notifier, owner=WORLD, clock=self.clock
        )
        self.store = store
        self.pipeline = Pipeline(
            store=store,
            characters=self.characters,
            generator=pool,
            prompts=prompts or StaticPrompts(),
            describer=describer or StaticDescriber(),
            scorer=ModelScorer(vision),
            vision=vision,
            captions=StaticCaptions(),
            reviewer=self.reviewer,
            notifier=self.notifier,
            publisher=self.queue,
            fit_media=functools.partial(fit_run_media, preset="ultrafast"),
            learning=store,
        )

    def _verdict(self, asked: Asked) -> str:
        return json.dumps({"score": self.rule(asked.prompt), "reason": "as described"})

    async def run(self, job: Job) -> Run:
        run = Run.new(job)
        await self.store.save_run(run)
        return await self.pipeline.execute(run, RecordingSink())

    def folder(self, run: Run) -> Path:
        return run_folder(self.characters.load(run.job.character), run.id)


@pytest.fixture
def world(project: Path, store: SqlStore, comfy: tuple[FakeComfyUI, ComfyPool]) -> World:
    return World(project, store, comfy[1])
