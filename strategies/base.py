"""What every strategy shares: its context, the Protocols it needs, and resumable ComfyUI units.

A strategy turns descriptions into media files through `Generator` (a ComfyPool in production)
and, between stages, a `Scorer`. Work is cut into `Unit`s (one ComfyUI prompt each) that are all
queued at once; a unit whose files are on disk is never generated again, so a resumed run picks
up where it stopped. Never imports `pipeline`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from random import Random
from typing import TYPE_CHECKING, Protocol

from comfy import (
    Cancelled,
    ComfyJob,
    Event,
    ExecutionFailed,
    NodeRunning,
    OutputFile,
    Queued,
    Started,
    Step,
    Workflow,
    WorkflowError,
    new_prompt_id,
)
from strategies.media import MediaKind, media_kind

if TYPE_CHECKING:
    from strategies.narration import NarrationSetup

log = logging.getLogger(__name__)

#: ComfyUI's output kinds (the keys of a node's outputs) that hold media files
IMAGE_KINDS = frozenset({"images"})
VIDEO_KINDS = frozenset({"gifs", "videos"})
AUDIO_KINDS = frozenset({"audio"})

#: the name of a one-stage strategy's only stage
MAIN = "main"


class StrategyError(Exception):
    """A strategy cannot make what was asked; `str()` is one user-safe sentence naming what
    and where (the pipeline fails the run with it)."""


# ---------------------------------------------------------------------------- what it declares


@dataclass(frozen=True)
class Stage:
    """One stage of a strategy, as the strategy declares it.

    `name` is the key of `StrategyContext.stages`, of `Choices.workflows` and, for a two-stage
    strategy, of the character's `additional_params` section (`first_stage`, `second_stage`)."""

    name: str = MAIN
    #: it makes videos: its count per description or input is `videos_per_description`
    video: bool = False
    #: the strategy whose workflow the stage uses when the character names none for it
    borrows: str | None = None


@dataclass(frozen=True)
class Needs:
    """What a strategy needs from the pipeline before it can run; the pipeline reads this and
    never names a strategy. Its final media are videos when its last stage makes videos."""

    stages: tuple[Stage, ...] = (Stage(),)
    #: input images: the job's, else a sample of the character's `input_dir`
    input_images: bool = False
    #: the stage after which a person may pick what goes on (the character's
    #: `review_between_stages`); None: the strategy never stops between stages
    pick_after: str | None = None
    #: a script of scenes (narration and picture each) instead of descriptions, and a voice
    narrated: bool = False
    #: a sticker pack: the language model lists stickers (name, tags, prompt) instead of
    #: writing descriptions, and the strategy gets the character's `StickerSetup`
    stickers: bool = False

    @property
    def video(self) -> bool:
        """Its final media are videos: video templates, a server tagged for video."""
        return self.stages[-1].video

    def stage(self, name: str) -> Stage:
        """The declared stage called `name` (KeyError for one it does not have)."""
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


# ---------------------------------------------------------------------------- what it needs


class Generator(Protocol):
    """Queues a workflow on ComfyUI (comfy.ComfyPool fits)."""

    async def submit(
        self,
        workflow: Workflow,
        out_dir: Path,
        *,
        tags: frozenset[str] = frozenset(),
        on_event: Callable[[Event], None] | None = None,
        images: Mapping[str, Path] | None = None,
        prompt_id: str | None = None,
    ) -> ComfyJob: ...

    async def attach(
        self,
        prompt_id: str,
        out_dir: Path,
        *,
        server: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> ComfyJob | None:
        """The job of a prompt queued earlier, if a server still has it (None: queue again)."""
        ...


@dataclass(frozen=True)
class Score:
    value: float
    reason: str


class Scorer(Protocol):
    """Scores media files against their descriptions, in [0, 1] (a vision model)."""

    async def score(self, items: Sequence[tuple[Path, str]]) -> list[Score]: ...


@dataclass(frozen=True)
class Draft:
    """One result of a stage shown for a pick: its file, its description, its score."""

    path: Path
    description_index: int
    score: Score | None = None


class StagePicker(Protocol):
    """A person picks which drafts of a stage go on to the next (the pipeline keeps the pick
    in the store, so a restart neither asks twice nor loses an answer)."""

    async def pick(self, stage: str, drafts: Sequence[Draft], keep: int) -> Sequence[int]:
        """Indexes into `drafts` (best by score first) of those to go on: at least one; the
        first `keep` when nobody picks."""
        ...


@dataclass(frozen=True)
class StageSetup:
    """One stage ready to run: its workflow and numbers, as the pipeline resolved them from
    the character's settings (`pipeline.characters.StageParams`)."""

    workflow: Workflow
    per_description: int = 1
    per_input: int = 1
    denoise: float | None = None
    updates: tuple[Mapping[str, object], ...] = ()
    #: seeds that stay as the character pinned them: ((`node_type` | `title` | `id`, value),
    #: seed); every other seed is drawn afresh for each prompt
    pinned_seeds: tuple[tuple[tuple[str, str], int], ...] = ()


@dataclass(frozen=True)
class GenerationProgress:
    """What a strategy reports while it works; the pipeline forwards it to the ProgressSink."""

    stage: str
    done: int
    total: int
    queue_position: int | None = None
    step: int | None = None
    steps: int | None = None
    node: str | None = None


@dataclass(frozen=True)
class Generated:
    """One media file a strategy made, relative to the run's folder."""

    path: str
    kind: MediaKind
    description_index: int
    stage: str
    score: Score | None = None


@dataclass(frozen=True)
class StickerSetup:
    """A sticker pack's settings, as the pipeline resolved them from the character's
    `stickers` section: how the background goes, and whether each sticker moves."""

    #: "comfyui": the `remove_background` workflow; "key": a plain background keyed out
    background: str = "key"
    animated: bool = False
    #: how far (0-255 per channel) a pixel may be from the border colour and still be keyed out
    tolerance: int = 40
    remove_background: StageSetup | None = None


@dataclass
class StrategyContext:
    """Everything one strategy run needs; built by the pipeline for each run."""

    generator: Generator
    folder: Path
    descriptions: Sequence[str]
    stages: Mapping[str, StageSetup]
    rng: Random
    scorer: Scorer | None = None
    input_images: Sequence[Path] = ()
    keep_top: int = 1
    negative: str | None = None
    tags: frozenset[str] = frozenset()
    #: a sticker pack's settings (strategies whose needs say `stickers`)
    stickers: StickerSetup | None = None
    report: Callable[[GenerationProgress], None] = field(default=lambda _: None)
    #: asks a person between stages (only for a strategy whose `needs.pick_after` names one,
    #: when the character wants it); None: the best `keep_top` by score go on
    picker: StagePicker | None = None
    #: a narrated strategy's script and tools (`strategies.narration`); None for the others
    narration: NarrationSetup | None = None


class Strategy(Protocol):
    name: str
    #: what it needs from the pipeline (stages, videos, input images)
    needs: Needs

    async def generate(self, ctx: StrategyContext) -> list[Generated]: ...


# ---------------------------------------------------------------------------- units


@dataclass(frozen=True)
class Unit:
    """One ComfyUI prompt: a stable key (its folder), a ready workflow, its input images."""

    key: str
    stage: str
    description_index: int
    workflow: Workflow
    images: Mapping[str, Path] = field(default_factory=dict)


def prepare(
    params: StageSetup,
    rng: Random,
    *,
    prompt: str | None = None,
    negative: str | None = None,
    batch: int | None = None,
    denoise: float | None = None,
) -> Workflow:
    """A fresh copy of the stage's workflow for one job: updates, prompt, seeds, batch, denoise."""
    workflow = params.workflow.apply_updates(params.updates)
    if prompt is not None or negative is not None:
        workflow = workflow.with_prompt(prompt, negative)
    workflow = pin_seeds(workflow.with_random_seeds(rng), params.pinned_seeds)
    if batch is not None and batch > 1:
        workflow = workflow.with_batch_size(batch)
    if denoise is not None:
        workflow = workflow.with_denoise(denoise)
    return workflow


def pin_seeds(workflow: Workflow, pins: Sequence[tuple[tuple[str, str], int]]) -> Workflow:
    """`workflow` with each pinned node's literal `seed` / `noise_seed` set to its pinned
    value; a pin that matches no node, or only nodes without a seed, is a WorkflowError
    naming it (the character's file is to blame, so the run fails as bad input)."""
    for (key, value), seed in pins:
        if key == "id":
            targets = [value] if value in workflow else []
        elif key == "title":
            targets = workflow.find(title=value)
        else:
            targets = workflow.find(class_type=value)
        seeded = workflow.seeds()
        targets = [node for node in targets if node in seeded]
        if not targets:
            raise WorkflowError(
                f"{workflow.source}: pinned_seeds: no node with {key} {value!r} has a seed input"
            )
        for node in targets:
            for name in seeded[node]:
                workflow = workflow.set_by_id(node, name, seed)
    return workflow


class _Journal:
    """`units.json` in the run folder: which prompt each unit is, and the scores given, so a
    resumed run neither queues a unit twice nor scores twice. Written atomically."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "units.json"
        self.data: dict[str, dict[str, object]] = {}
        if self.path.is_file():
            self.data = json.loads(self.path.read_text(encoding="utf-8"))

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True), encoding="utf-8")
        tmp.replace(self.path)

    def prompt_of(self, key: str) -> tuple[str, str | None] | None:
        """The prompt id (and server, once known) noted for a unit."""
        entry = self.data.get("prompts", {}).get(key)
        if not isinstance(entry, dict) or not isinstance(entry.get("prompt_id"), str):
            return None
        server = entry.get("server")
        return entry["prompt_id"], server if isinstance(server, str) else None

    def note_prompt(self, key: str, prompt_id: str, server: str | None) -> None:
        self.data.setdefault("prompts", {})[key] = {"prompt_id": prompt_id, "server": server}
        self.save()


def unfinished_prompts(folder: Path) -> list[tuple[str, str | None]]:
    """(prompt id, server or None) of every unit of the run in `folder` that was queued on
    ComfyUI and has no files yet: what a cancel should take off the servers. Units of work
    kept in a sub-folder with its own journal (a reviewer's reroll, variations, upscale)
    count too."""
    found = []
    journals = [folder] if folder.is_dir() else []
    if journals:
        journals += sorted(p.parent for p in folder.glob("*/units.json"))
    for place in journals:
        journal = _Journal(place)
        for key in journal.data.get("prompts", {}):
            noted = journal.prompt_of(key)
            if noted is not None and not (place / key / ".done").is_file():
                found.append(noted)
    return found


def _files_of(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


async def run_units(ctx: StrategyContext, units: Sequence[Unit]) -> dict[str, list[Path]]:
    """Queue every unit not yet done at once, then collect their files, unit by unit.

    Each unit's files land in `folder/<key>/` with a `.done` marker; done units are skipped.
    """
    done: dict[str, list[Path]] = {}
    todo: list[Unit] = []
    for unit in units:
        unit_dir = ctx.folder / unit.key
        if (unit_dir / ".done").is_file():
            done[unit.key] = _files_of(unit_dir)
        else:
            todo.append(unit)
    if not todo:
        return done
    stage = todo[0].stage
    total = len(units)
    finished = len(done)
    latest: dict[str, GenerationProgress] = {}

    def reporter(unit: Unit) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            update: GenerationProgress | None = None
            if isinstance(event, Queued):
                update = GenerationProgress(stage, finished, total, queue_position=event.position)
            elif isinstance(event, Started):
                update = GenerationProgress(stage, finished, total, queue_position=0)
            elif isinstance(event, NodeRunning):
                update = GenerationProgress(stage, finished, total, node=event.class_type)
            elif isinstance(event, Step):
                update = GenerationProgress(
                    stage, finished, total, step=event.value, steps=event.max
                )
            if update is not None:
                latest[unit.key] = update
                ctx.report(update)

        return on_event

    journal = await asyncio.to_thread(_Journal, ctx.folder)
    jobs: dict[str, ComfyJob] = {}
    attached: set[str] = set()
    try:
        for unit in todo:
            partial = ctx.folder / (unit.key + ".partial")
            await asyncio.to_thread(_reset_dir, partial)
            job = await _attach(ctx, journal, unit, partial, reporter(unit))
            if job is None:
                job = await _queue(ctx, journal, unit, partial, reporter(unit))
            else:
                attached.add(unit.key)
            jobs[unit.key] = job
        ctx.report(GenerationProgress(stage, finished, total))
        for unit in todo:
            try:
                outputs = await jobs[unit.key].result()
            except (Cancelled, ExecutionFailed) as exc:
                if unit.key not in attached:
                    raise
                # taken over from an earlier attempt, then interrupted or failed (that attempt's
                # cancel landing late, its failure still running out): this attempt makes it anew
                log.info(
                    "unit %s: the prompt taken over ended badly (%s); queueing it", unit.key, exc
                )
                attached.discard(unit.key)
                partial = ctx.folder / (unit.key + ".partial")
                await asyncio.to_thread(_reset_dir, partial)
                jobs[unit.key] = await _queue(ctx, journal, unit, partial, reporter(unit))
                outputs = await jobs[unit.key].result()
            files = await asyncio.to_thread(_commit_unit, ctx.folder, unit.key, outputs)
            done[unit.key] = files
            finished += 1
            ctx.report(GenerationProgress(stage, finished, total))
    except BaseException:
        # Whatever stops us (an error, a cancel) takes our queued prompts with it; a shutdown
        # detaches the generator first, so then `cancel` leaves them for the resume to attach.
        pending = [job for key, job in jobs.items() if key not in done]
        if pending:
            await asyncio.shield(_cancel_all(pending))
        raise
    return done


async def _queue(
    ctx: StrategyContext,
    journal: _Journal,
    unit: Unit,
    partial: Path,
    on_event: Callable[[Event], None],
) -> ComfyJob:
    """Queue the unit's prompt. Its id is noted before it is queued and its server right after,
    so a process killed at any point finds the prompt again (`_attach`) instead of queueing
    it twice."""
    prompt_id = new_prompt_id()
    await asyncio.to_thread(journal.note_prompt, unit.key, prompt_id, None)
    job = await ctx.generator.submit(
        unit.workflow,
        partial,
        tags=ctx.tags,
        on_event=on_event,
        images=unit.images,
        prompt_id=prompt_id,
    )
    try:
        await asyncio.to_thread(journal.note_prompt, unit.key, job.prompt_id, job.server)
    except BaseException:  # stopped before the caller holds the job: take the prompt back
        await asyncio.shield(_cancel_all([job]))
        raise
    return job


async def _attach(
    ctx: StrategyContext,
    journal: _Journal,
    unit: Unit,
    partial: Path,
    on_event: Callable[[Event], None],
) -> ComfyJob | None:
    """The unit's prompt from an earlier attempt, when a server still has it waiting, running
    or finished; None when it must be queued (never queued, gone, failed or interrupted)."""
    noted = journal.prompt_of(unit.key)
    if noted is None:
        return None
    prompt_id, server = noted
    job = await ctx.generator.attach(prompt_id, partial, server=server, on_event=on_event)
    if job is not None:
        log.info("unit %s: taking over prompt %s on %s", unit.key, prompt_id, job.server)
    return job


async def _cancel_all(jobs: Sequence[ComfyJob]) -> None:
    results = await asyncio.gather(*(job.cancel() for job in jobs), return_exceptions=True)
    for job, result in zip(jobs, results, strict=True):
        if isinstance(result, Exception):
            log.warning("could not cancel %r: %s", job, type(result).__name__)


def _reset_dir(folder: Path) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)


def _commit_unit(folder: Path, key: str, outputs: Sequence[OutputFile]) -> list[Path]:
    """Move a unit's downloads into place and mark it done (after the files, never before)."""
    partial = folder / (key + ".partial")
    final = folder / key
    if final.exists():
        shutil.rmtree(final)
    keep = {o.path.name for o in outputs if o.kind in IMAGE_KINDS | VIDEO_KINDS | AUDIO_KINDS}
    for path in partial.iterdir():
        if path.name not in keep:
            path.unlink()
    partial.replace(final)
    (final / ".done").write_text("")
    return _files_of(final)


def relative(ctx: StrategyContext, path: Path) -> str:
    return path.relative_to(ctx.folder).as_posix()


async def finals(
    ctx: StrategyContext, made: Sequence[tuple[Path, int]], *, only: MediaKind | None = None
) -> list[Generated]:
    """The final media of a strategy from (file, description index): each file's kind is read
    in a thread (a GIF is looked at); files that are no media, or not of kind `only` (a video
    workflow's preview still), are left out."""
    kinds = await asyncio.to_thread(lambda: [media_kind(path) for path, _ in made])
    return [
        Generated(relative(ctx, path), kind, index, "final")
        for (path, index), kind in zip(made, kinds, strict=True)
        if kind is not None and (only is None or kind is only)
    ]


async def pick_and_keep(
    ctx: StrategyContext, candidates: Sequence[tuple[Path, int]], *, stage: str
) -> list[tuple[Path, int, Score | None]]:
    """The candidates that go on after `stage`: the best `ctx.keep_top` by score, or those a
    person picks when the context has a picker (shown best first)."""
    if ctx.picker is None:
        return await score_and_keep(ctx, candidates, ctx.keep_top, stage=stage)
    ranked = await score_and_keep(ctx, candidates, len(candidates), stage=stage)
    drafts = [Draft(path, index, score) for path, index, score in ranked]
    chosen = await ctx.picker.pick(stage, drafts, ctx.keep_top)
    picked = [ranked[i] for i in dict.fromkeys(chosen) if 0 <= i < len(ranked)]
    return picked or ranked[: ctx.keep_top]


async def score_and_keep(
    ctx: StrategyContext, candidates: Sequence[tuple[Path, int]], keep: int, *, stage: str
) -> list[tuple[Path, int, Score | None]]:
    """The `keep` best candidates by score (all unscored in quick mode), scores journaled."""
    journal = await asyncio.to_thread(_Journal, ctx.folder)
    scores: dict[str, Score] = {}
    stored = journal.data.get("scores", {})
    assert isinstance(stored, dict)
    missing = [(p, i) for p, i in candidates if relative(ctx, p) not in stored]
    if ctx.scorer is not None and missing:
        fresh = await ctx.scorer.score([(p, ctx.descriptions[i]) for p, i in missing])
        for (path, _), score in zip(missing, fresh, strict=True):
            stored[relative(ctx, path)] = {"value": score.value, "reason": score.reason}
        journal.data["scores"] = stored
        await asyncio.to_thread(journal.save)
    for key, value in stored.items():
        if isinstance(value, dict):
            scores[key] = Score(float(value["value"]), str(value["reason"]))
    ranked = [(p, i, scores.get(relative(ctx, p))) for p, i in candidates]
    if ctx.scorer is not None:
        ranked.sort(key=lambda item: -(item[2].value if item[2] else 0.0))
    log.debug("stage %s keeps %d of %d", stage, min(keep, len(ranked)), len(ranked))
    return ranked[:keep]
