"""What a reviewer's actions on an open review do to a run: 🔁 a reroll (the next attempt: new
media for the same descriptions with new seeds), "more like #N" (variations of one image, added to
the review) and ⬆️ the upscale of the chosen images before publishing.

The policy lives here once; the bot and the console only forward a `ReviewAction` or a
`Decision(upscale=True)`. An action is saved on the run (`Run.action`) before its work starts; its
ComfyUI prompts are journaled units in their own folder of the run (`attempt-<n>/`,
`more-<attempt>-<round>/`, `upscaled/`), so a restart takes over the queued prompts and never
queues a finished one again. Seeds come from the run's seed and the attempt (or round), so a run
still replays. Never imports bot or discord.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Protocol

import strategies
from comfy import ComfyError, Workflow
from pipeline.errors import MediaOverloadError, ServiceError
from pipeline.failures import failure_of
from pipeline.models import ActionKind, MediaItem, Run, RunState
from pipeline.ports import Progress, ProgressSink
from pipeline.publish.media import find_fitted
from strategies.base import (
    Generated,
    GenerationProgress,
    Generator,
    StageSetup,
    StrategyContext,
    Unit,
    prepare,
    run_units,
)
from strategies.media import MediaKind

if TYPE_CHECKING:
    from pipeline.characters import Character
    from pipeline.run import MediaScorer

log = logging.getLogger(__name__)

#: the title of the upscale workflow's LoadImage node that receives the chosen image
UPSCALE_INPUT = "Input Image"
#: the folder of a run's upscaled files
UPSCALE_FOLDER = "upscaled"


class Maker(Protocol):
    """Makes media with a strategy into a folder (`Pipeline.make`)."""

    async def __call__(
        self,
        run: Run,
        character: Character,
        folder: Path,
        sink: ProgressSink | None,
        *,
        strategy: str,
        descriptions: Sequence[str],
        rng: Random,
        count: int | None = None,
        inputs: Sequence[Path] | None = None,
        denoise: float | None = None,
    ) -> list[Generated]: ...


def offers(run: Run, character: Character) -> tuple[ActionKind, ...]:
    """What a review of `run` offers besides ✅ / ❌: a reroll always; variations of an image
    (img2img variations only of images); ⬆️ when the character upscales on request. A run made
    from more than descriptions (a narrated script, a sticker list) offers none: its media
    cannot be drawn again from the descriptions alone."""
    if run.choices is not None:
        needs = strategies.needs(run.choices.generation_type)
        if needs.narrated or needs.stickers:
            return ()
    found = [ActionKind.REROLL]
    images = any(run.media[i].kind is MediaKind.IMAGE for i in run.shown())
    if images or character.generation.variations.mode == "seed":
        found.append(ActionKind.MORE_LIKE)
    upscale = character.generation.upscale
    if upscale is not None and upscale.when == "on_request" and images:
        found.append(ActionKind.UPSCALE)
    return tuple(found)


def wants_upscale(run: Run, character: Character) -> bool:
    """Whether an approved run's chosen images go through the upscale workflow first: the
    reviewer asked (⬆️), or the character upscales always."""
    upscale = character.generation.upscale
    if upscale is None or run.decision is None:
        return False
    return upscale.when == "always" or run.decision.upscale


@dataclass
class ReviewActions:
    """Carries out a run's saved action, and upscales an approved run's chosen images."""

    generator: Generator
    make: Maker
    vision: MediaScorer
    #: fits media to each platform before review (`Pipeline.fit_media`)
    fit_media: Callable[[Run, Character, Path], Awaitable[object]] | None = None

    async def carry_out(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        """`run` with its action done: the new media added, the action cleared, no ticket (the
        pipeline posts the review of the new set)."""
        action = run.action
        assert action is not None
        if action.kind is ActionKind.REROLL:
            return await self._reroll(run, character, folder, sink)
        if action.kind is ActionKind.MORE_LIKE and action.index is not None:
            return await self._more_like(run, character, folder, sink, action.index)
        log.warning("run %s: ignoring an action it cannot do (%s)", run.id, action.kind)
        return replace(run, action=None, ticket=None)

    async def _reroll(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        attempt = run.attempt + 1
        seed = _seed(run)
        sub = f"attempt-{attempt}"
        _progress(sink, run, "generate", f"reroll: attempt {attempt} on ComfyUI")
        choices = run.choices
        assert choices is not None
        made = await self.make(
            replace(run, attempt=attempt),  # the progress on the run card names the attempt
            character,
            folder / sub,
            sink,
            strategy=choices.generation_type,
            descriptions=run.descriptions,
            rng=Random(f"{seed}:generate:{attempt}"),
        )
        items = [_item(sub, g, attempt=attempt) for g in made]
        if not run.job.quick:
            _progress(sink, run, "score", f"scoring {len(items)} file(s) of attempt {attempt}")
            outcome = await self.vision.score_items(
                folder,
                items,
                run.descriptions,
                threshold=character.generation.similarity_threshold,
                keep_best=character.generation.keep_best_when_none_pass,
            )
            items = list(outcome.items)
        first = len(run.media)
        run = replace(run, media=(*run.media, *items), attempt=attempt, action=None, ticket=None)
        await self._fit(run, character, folder, range(first, len(run.media)))
        log.info("run %s: attempt %d made %d file(s)", run.id, attempt, len(items))
        return run

    async def _more_like(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None, index: int
    ) -> Run:
        if not 0 <= index < len(run.media):
            log.warning("run %s: no media #%d to vary", run.id, index)
            return replace(run, action=None, ticket=None)
        source = run.media[index]
        spec = character.generation.variations
        # the round is fixed by what the record holds, so a resumed action uses the same
        # folder (and its journal) and the same seeds
        rounds = {m.path.split("/", 1)[0] for m in run.media if m.variation_of is not None}
        sub = f"more-{run.attempt}-{len(rounds) + 1}"
        rng = Random(f"{_seed(run)}:{sub}")
        description = run.descriptions[source.description_index]
        _progress(sink, run, "generate", f"{spec.count} more like #{_number(run, index)}")
        if spec.mode == "img2img" and source.kind is MediaKind.IMAGE:
            made = await self.make(
                run,
                character,
                folder / sub,
                sink,
                strategy=strategies.IMAGE_FROM_IMAGE,
                descriptions=[description],
                rng=rng,
                count=spec.count,
                inputs=[folder / source.path],
                denoise=spec.denoise,
            )
        else:
            choices = run.choices
            assert choices is not None
            made = await self.make(
                run,
                character,
                folder / sub,
                sink,
                strategy=choices.generation_type,
                descriptions=[description],
                rng=rng,
                count=spec.count,
            )
        items = [
            replace(
                _item(sub, g, attempt=run.attempt),
                description_index=source.description_index,
                variation_of=index,
            )
            for g in made
        ]
        first = len(run.media)
        run = replace(run, media=(*run.media, *items), action=None, ticket=None)
        await self._fit(run, character, folder, range(first, len(run.media)))
        return run

    async def upscale(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        """`run` with its chosen images replaced by their upscaled files (the originals kept,
        named in `upscaled_from`), refitted for each platform; or the run failed at publishing
        with the upscale's cause, so nothing is published."""
        spec = character.generation.upscale
        assert spec is not None
        assert run.decision is not None
        todo = [
            i
            for i in run.decision.selected
            if run.media[i].kind is MediaKind.IMAGE and run.media[i].upscaled_from is None
        ]
        if not todo:
            return run
        seed = _seed(run)
        total = len(todo)

        def report(update: GenerationProgress) -> None:
            detail = f"upscaling: {update.done}/{update.total} image(s) done"
            if update.node:
                detail += f", running {update.node}"
            if sink is not None:
                sink.progress(
                    run.id,
                    Progress(
                        step="upscale",
                        detail=detail,
                        queue_position=update.queue_position,
                        value=update.step,
                        maximum=update.steps,
                    ),
                )

        _progress(sink, run, "upscale", f"upscaling {total} image(s)")
        try:
            workflow = await asyncio.to_thread(Workflow.load, character.root / spec.workflow)
            setup = StageSetup(workflow=workflow)
            units = [
                Unit(
                    key=f"u{index:02d}",
                    stage="upscale",
                    description_index=run.media[index].description_index,
                    workflow=prepare(setup, Random(f"{seed}:upscale:{index}")),
                    images={UPSCALE_INPUT: folder / run.media[index].path},
                )
                for index in todo
            ]
            ctx = StrategyContext(
                generator=self.generator,
                folder=folder / UPSCALE_FOLDER,
                descriptions=run.descriptions,
                stages={},
                rng=Random(seed),
                report=report,
            )
            await asyncio.to_thread(ctx.folder.mkdir, parents=True, exist_ok=True)
            files = await run_units(ctx, units)
            media = list(run.media)
            for index, unit in zip(todo, units, strict=True):
                images = [p for p in files[unit.key] if p.suffix.lower() in _IMAGE_SUFFIXES]
                if not images:
                    raise ServiceError(
                        f"the upscale workflow saved no image for #{index}",
                        user_message=(
                            "The upscale workflow saved no image; check its SaveImage node."
                        ),
                    )
                item = media[index]
                media[index] = replace(
                    item,
                    path=images[0].relative_to(folder).as_posix(),
                    upscaled_from=item.path,
                )
            upscaled = replace(run, media=tuple(media))
            await asyncio.to_thread(_drop_fitted, upscaled, character, folder, todo)
            await self._fit(upscaled, character, folder, todo)
        except (MediaOverloadError, ComfyError) as exc:
            failure = failure_of(exc, RunState.APPROVED)
            failure = replace(failure, message=f"Upscaling failed: {failure.message}")
            log.warning("run %s: the upscale failed: %s", run.id, exc)
            return run.advance(RunState.FAILED, failure=failure)
        _progress(sink, run, "upscale", f"{total} image(s) upscaled")
        return upscaled

    async def _fit(
        self, run: Run, character: Character, folder: Path, indexes: Sequence[int] | range
    ) -> None:
        """Fit only `indexes` to each platform (the rest were fitted before)."""
        if self.fit_media is None or not run.job.publish:
            return
        wanted = set(indexes)
        only = replace(
            run,
            media=tuple(replace(m, kept=m.kept and i in wanted) for i, m in enumerate(run.media)),
        )
        await self.fit_media(only, character, folder)


_IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp"})


def _seed(run: Run) -> int:
    assert run.choices is not None, "a run in review has its choices"
    return run.choices.seed


def _item(sub: str, made: Generated, *, attempt: int) -> MediaItem:
    return MediaItem(
        path=f"{sub}/{made.path}",
        kind=made.kind,
        description_index=made.description_index,
        stage=made.stage,
        attempt=attempt,
    )


def _number(run: Run, index: int) -> int:
    """The number the review shows media `index` with (1-based), or index + 1 when hidden."""
    shown = run.shown()
    return shown.index(index) + 1 if index in shown else index + 1


def _drop_fitted(run: Run, character: Character, folder: Path, indexes: Sequence[int]) -> None:
    """Remove the fitted copies of `indexes` (made from the originals) before refitting."""
    for platform in character.enabled_platforms():
        for index in indexes:
            found = find_fitted(folder, platform, index)
            if found is not None:
                found.unlink(missing_ok=True)


def _progress(sink: ProgressSink | None, run: Run, step: str, detail: str) -> None:
    if sink is not None:
        sink.progress(run.id, Progress(step=step, detail=detail))
