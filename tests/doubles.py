"""Typed doubles of the pipeline's seams for tests that need a run without the real pipeline.

`ScriptedExecute` is an `Execute` for the real Runner: it walks a Run through the states,
writes small PNGs in the run's folder, asks the Reviewer and records posts. No MagicMock.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from pipeline.models import (
    MediaItem,
    MediaKind,
    Platform,
    PostRecord,
    PostState,
    Run,
    RunFailure,
    RunState,
)
from pipeline.ports import Notifier, Progress, ProgressSink, Reviewer, Store


@dataclass
class Script:
    """How a scripted run behaves."""

    images: int = 3
    size: tuple[int, int] = (32, 32)
    #: noise instead of a flat colour: a PNG that does not compress (for upload-limit tests)
    noisy: bool = False
    steps: int = 4
    step_delay: float = 0.0
    #: when set, generation waits for it (to hold runs in place for queue tests)
    hold: asyncio.Event | None = None
    #: when set, the run fails at generation with this user-safe sentence
    fail_with: str | None = None
    captions: dict[str, str] = field(
        default_factory=lambda: {"instagram": "A robot waves #pixelbot", "twitter": "Hi!"}
    )


def write_png(path: Path, size: tuple[int, int], *, seed: int, noisy: bool) -> None:
    if noisy:
        rng = random.Random(seed)
        data = bytes(rng.getrandbits(8) for _ in range(size[0] * size[1] * 3))
        image = Image.frombytes("RGB", size, data)
    else:
        image = Image.new("RGB", size, ((seed * 40) % 256, 120, 200))
    image.save(path, "PNG")


class ScriptedExecute:
    """Walks runs through the pipeline's states with the real Reviewer and Notifier."""

    def __init__(
        self,
        store: Store,
        reviewer: Reviewer,
        notifier: Notifier,
        *,
        root: Path,
        script: Script | None = None,
    ) -> None:
        self.store = store
        self.reviewer = reviewer
        self.notifier = notifier
        self.root = root
        self.script = script or Script()
        self.started: list[str] = []
        self.reviews: list[str] = []

    def folder(self, run: Run) -> Path:
        return self.root / run.id

    async def _save(self, run: Run) -> Run:
        await self.store.save_run(run)
        await self.notifier.run_changed(run, await self.store.posts_for_run(run.id))
        return run

    async def __call__(self, run: Run, sink: ProgressSink | None) -> Run:
        script = self.script
        self.started.append(run.id)

        def show(update: Progress) -> None:
            if sink is not None:
                sink.progress(run.id, update)

        if run.state is RunState.CREATED:
            await self.notifier.run_changed(run)
            show(Progress(step="prompt"))
            run = await self._save(run.advance(RunState.PROMPTED, prompt="a robot waves"))
        if run.state in (RunState.PROMPTED, RunState.FAILED):
            for step in range(1, script.steps + 1):
                show(Progress(step="generate", queue_position=0, value=step, maximum=script.steps))
                if script.hold is not None:
                    await script.hold.wait()
                await asyncio.sleep(script.step_delay)
            if script.fail_with is not None:
                failure = RunFailure(step="generate", message=script.fail_with)
                return await self._save(run.advance(RunState.FAILED, failure=failure))
            folder = self.folder(run)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            media = []
            for index in range(script.images):
                name = f"image-{index + 1:02d}.png"
                await asyncio.to_thread(
                    write_png, folder / name, script.size, seed=index, noisy=script.noisy
                )
                media.append(
                    MediaItem(
                        path=name,
                        kind=MediaKind.IMAGE,
                        description_index=0,
                        score=0.9 - index * 0.01,
                        reason=f"matches the character ({index + 1})",
                    )
                )
            run = await self._save(
                run.advance(RunState.CAPTIONED, media=tuple(media), captions=dict(script.captions))
            )
        if run.state in (RunState.CAPTIONED, RunState.EXPIRED):
            ticket = await self.reviewer.request(run, self.folder(run))
            self.reviews.append(run.id)
            run = await self._save(run.advance(RunState.AWAITING_REVIEW, ticket=ticket))
        if run.state is RunState.AWAITING_REVIEW:
            assert run.ticket is not None
            show(Progress(step=RunState.AWAITING_REVIEW.value))
            decision = await self.reviewer.wait(run, run.ticket)
            if decision is None:
                return await self._save(run.advance(RunState.EXPIRED))
            if not decision.approved:
                return await self._save(run.advance(RunState.REJECTED, decision=decision))
            run = await self._save(run.advance(RunState.APPROVED, decision=decision))
            await self.store.record_post(
                PostRecord(
                    run_id=run.id,
                    platform=Platform.INSTAGRAM,
                    account="test",
                    state=PostState.POSTED,
                    remote_id="1",
                    url=f"https://instagram.fake/p/{run.id}",
                )
            )
            return await self._save(run.advance(RunState.PUBLISHED))
        return run
