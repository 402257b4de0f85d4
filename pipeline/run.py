"""One run of the pipeline: the steps in order over a Run record saved after each step.

`Pipeline.execute(run, sink)` walks a run from wherever it stands (new, half done, failed,
expired) to its end; a finished step is never redone. Sees services only through Protocols;
`pipeline.wiring` builds the concrete ones. Names no strategy: what one needs (stages, videos,
input images) it reads from the strategy's declaration. Never imports bot or discord.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from random import Random
from typing import Protocol

import strategies
from comfy import ComfyError, ExecutionFailed, OutputNotWritten, Workflow
from pipeline.characters import Character, Characters
from pipeline.errors import (
    ConfigError,
    DiskError,
    MediaOverloadError,
    ReviewUnavailable,
    RunError,
    ServiceError,
    StoreError,
    disk_reason,
)
from pipeline.failures import failure_of
from pipeline.learning import HistoryStore, learned_weights
from pipeline.longvideo import scene_recorder
from pipeline.models import (
    Choices,
    Decision,
    MediaItem,
    Platform,
    PostRecord,
    ReviewAction,
    Run,
    RunState,
    Scene,
    Script,
)
from pipeline.ports import (
    REVIEW_STEP,
    Notifier,
    Progress,
    ProgressSink,
    Reviewer,
    StageReviewer,
    Store,
)
from pipeline.previews import PREVIEW_FOLDER
from pipeline.review_actions import ReviewActions, offers, wants_upscale
from pipeline.stage_pick import RunStagePicker
from pipeline.sticker_pack import StickerUploads, StickerWriter, sticker_setup
from pipeline.vision import ScoringOutcome
from strategies.base import (
    Generated,
    GenerationProgress,
    Generator,
    Scorer,
    StagePicker,
    StageSetup,
    StrategyContext,
    StrategyError,
)
from strategies.media import MediaKind, media_kind
from strategies.narration import NarrationSetup

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- language steps


@dataclass(frozen=True)
class Idea:
    """What the prompt step wrote: the prompt, who is in it, and what it used."""

    prompt: str
    method: str
    subject: str
    #: the second character of a two-character idea
    partner: str | None = None
    #: the news item a news idea is about
    news_id: int | None = None


class PromptWriter(Protocol):
    async def write(
        self, character: Character, *, method: str | None, subject: str, rng: Random, video: bool
    ) -> Idea:
        """A prompt for `character` (named `subject`) by `method` (None: by its weights)."""
        ...


class Describer(Protocol):
    async def describe(
        self,
        character: Character,
        idea: Idea,
        *,
        template: str,
        style: str,
        count: int,
        video: bool,
    ) -> list[str]: ...


class SoundWriter(Protocol):
    async def write(self, character: Character, descriptions: Sequence[str]) -> str | None:
        """A short description of what videos of `descriptions` sound like (None: none)."""
        ...


class MediaScorer(Protocol):
    """Scores a run's media and marks which are kept (pipeline.vision.VisionScorer)."""

    async def score_items(
        self,
        folder: Path,
        items: Sequence[MediaItem],
        descriptions: Sequence[str],
        *,
        threshold: float,
        keep_best: int = 1,
    ) -> ScoringOutcome: ...


class RunPublisher(Protocol):
    """Publishes an approved run once per platform (pipeline.publish.PublishService)."""

    async def publish_run(
        self, run: Run, character: Character, run_dir: Path, *, retry_failed: bool = False
    ) -> list[PostRecord]: ...

    async def run_after_publishing(self, run: Run, character: Character) -> Run:
        """The run's end state by its post records: the publish service's one rule."""
        ...


class Narrator(Protocol):
    """Writes a narrated run's script and sets up its voice and editor (pipeline.longvideo)."""

    async def write_script(
        self, character: Character, *, prompt: str, subject: str, style: str
    ) -> Script: ...

    async def setup(
        self,
        character: Character,
        script: Script,
        record: Callable[[int, Scene], Awaitable[None]],
    ) -> NarrationSetup: ...


class CaptionWriter(Protocol):
    async def write(
        self, character: Character, *, prompt: str, descriptions: Sequence[str], subject: str
    ) -> dict[Platform, str]: ...


# ---------------------------------------------------------------------------- the pipeline


#: the description template of an idea with two characters, for pictures and for videos
TWO_CHARACTER_TEMPLATES = {
    False: "two_character_interaction_generate_system_prompt",
    True: "two_character_video_interaction",
}


def run_folder(character: Character, run_id: str) -> Path:
    """Where a run's media live: one folder per run under the character's output folder."""
    return character.output_dir / run_id


@dataclass
class Pipeline:
    """The services one run needs; `execute` is what the Runner runs."""

    store: Store
    characters: Characters
    generator: Generator
    prompts: PromptWriter
    describer: Describer
    #: scores between a strategy's stages
    scorer: Scorer
    #: scores the final media against the character's threshold
    vision: MediaScorer
    captions: CaptionWriter
    reviewer: Reviewer
    notifier: Notifier
    publisher: RunPublisher
    #: fits the kept media to each platform before review, so the reviewer sees what is posted
    fit_media: Callable[[Run, Character, Path], Awaitable[object]] | None = None
    #: ComfyUI capability tags a video job needs (wiring sets {"video"} when a server has it)
    video_tags: frozenset[str] = frozenset()
    #: where a character with `learn: true` reads its history (pipeline.learning); None: nowhere,
    #: so its picks follow the YAML weights
    learning: HistoryStore | None = None
    #: writes the sound prompt of a run whose workflows have a sound node (None: never asked)
    sound: SoundWriter | None = None
    #: the pick between stages of each run generating now: a failure keeps what it saved
    _picks: dict[str, RunStagePicker] = field(default_factory=dict, init=False, repr=False)
    #: scripts, speech and joining for narrated strategies (pipeline.longvideo.Narrator)
    narrator: Narrator | None = None
    #: lists a sticker pack's stickers (a strategy whose needs say `stickers`)
    sticker_writer: StickerWriter | None = None
    #: uploads an approved sticker pack to the Discord guild (None: not configured)
    sticker_uploads: StickerUploads | None = None

    async def execute(self, run: Run, sink: ProgressSink | None = None) -> Run:
        """Walk `run` to its end, saving after every step."""
        run = _reopen(run)
        try:
            character = await asyncio.to_thread(self.characters.load, run.job.character)
        except MediaOverloadError as exc:  # the file broke or went away since the run began
            failed = await self._fail(run, run.state, exc)
            await self.store.save_run(failed)
            await self._notify(failed)
            return failed
        folder = run_folder(character, run.id)
        notify_states = {RunState.AWAITING_REVIEW, RunState.QUEUED, *_FINAL}
        steps: dict[RunState, Callable[[Run], Awaitable[Run]]] = {
            RunState.CREATED: lambda r: self._prompt(r, character, sink),
            RunState.PROMPTED: lambda r: self._describe(r, character, sink),
            RunState.DESCRIBED: lambda r: self._generate(r, character, folder, sink),
            RunState.GENERATED: lambda r: self._score(r, character, folder, sink),
            RunState.SCORED: lambda r: self._caption(r, character, sink),
            RunState.CAPTIONED: lambda r: self._request_review(r, character, folder, sink),
            RunState.AWAITING_REVIEW: lambda r: self._await_review(r, character, folder, sink),
            RunState.APPROVED: lambda r: self._publish(r, character, folder, sink),
            RunState.PUBLISHING: lambda r: self._publish(r, character, folder, sink),
        }
        if run.state is RunState.CREATED:
            await self._notify(run)
        try:
            while run.state in steps:
                if run.state is RunState.APPROVED and not run.job.publish:
                    break
                step_state = run.state
                try:
                    run = await steps[step_state](run)
                except ReviewUnavailable as exc:  # left in review, as saved, for a resume
                    log.info("run %s is left awaiting review: %s", run.id, exc)
                    run = self._kept_pick(run)
                    break
                except (MediaOverloadError, ComfyError) as exc:
                    run = await self._fail(run, step_state, exc)
                except OSError as exc:  # the disk's (full, read-only): a failure to resume
                    disk = _disk_error(exc, character, folder)
                    if not isinstance(disk, DiskError):
                        raise  # a socket's error is not the disk's
                    run = await self._fail(run, step_state, disk)
                await self.store.save_run(run)
                if run.state in notify_states:
                    await self._notify(run)
        finally:
            self._picks.pop(run.id, None)
            if run.state in _FINAL:
                try:
                    await asyncio.to_thread(_cleanup, folder, run)
                except OSError as exc:  # tidying is not worth the run's outcome
                    log.warning("run %s: %s", run.id, _disk_error(exc, character, folder))
        return run

    # ------------------------------------------------------------------ steps
    async def _prompt(self, run: Run, character: Character, sink: ProgressSink | None) -> Run:
        _progress(sink, run, "prompt", "writing the idea")
        job = run.job
        seed = job.seed if job.seed is not None else secrets.randbelow(2**31)
        rng = Random(seed)
        learned = await learned_weights(self.learning, character)
        character = character.with_weights(learned)
        strategy = job.generation_type or character.pick_generation_type(rng)
        character.refuse_unrunnable(strategy, with_image=bool(job.input_images))
        needs = strategies.needs(strategy)
        video = needs.video
        template = character.pick_template(rng, video=video)
        style = character.pick_style(rng)  # drawn even when given: the later picks stay
        if job.style is not None:
            style = job.style
        subject = character.name
        if character.group_name:
            member = await self.store.pick_group_member(character.group_name, rng)
            if member is None:
                raise RunError(f"group {character.group_name!r} has no active member")
            subject = member.name
        if job.prompt is not None:
            idea = Idea(prompt=job.prompt, method="given", subject=subject)
        else:
            idea = await self.prompts.write(
                character, method=job.prompt_method, subject=subject, rng=rng, video=video
            )
        if idea.method == "two_character" and idea.partner:
            template = TWO_CHARACTER_TEMPLATES[video]  # the weighted pick is for one character
        choices = Choices(
            seed=seed,
            character=character.key,
            generation_type=strategy,
            prompt_method=idea.method,
            template=template,
            style=style,
            weights=learned,
            workflows={
                stage.name: str(character.workflow_path(strategy, stage.name))
                for stage in needs.stages
            },
        )
        return run.advance(
            RunState.PROMPTED,
            choices=choices,
            prompt=idea.prompt,
            subject=idea.subject,
            partner=idea.partner,
            news_id=idea.news_id,
        )

    async def _describe(self, run: Run, character: Character, sink: ProgressSink | None) -> Run:
        _progress(sink, run, "describe", "writing descriptions")
        choices = _choices(run)
        idea = Idea(
            prompt=run.prompt or "",
            method=choices.prompt_method,
            subject=run.subject or character.name,
            partner=run.partner,
            news_id=run.news_id,
        )
        if strategies.needs(choices.generation_type).narrated:
            script = await self._narrator().write_script(
                character, prompt=idea.prompt, subject=idea.subject, style=choices.style
            )
            visuals = tuple(scene.visual for scene in script.scenes)
            return run.advance(RunState.DESCRIBED, descriptions=visuals, script=script)
        if strategies.needs(choices.generation_type).stickers:
            if self.sticker_writer is None:
                raise RunError("this process cannot list stickers (no sticker writer is wired)")
            listed = await self.sticker_writer.list_stickers(
                character, idea, style=choices.style, count=character.spec.stickers.count
            )
            return run.advance(
                RunState.DESCRIBED,
                descriptions=tuple(prompt for _, prompt in listed),
                stickers=tuple(sticker for sticker, _ in listed),
            )
        descriptions = await self.describer.describe(
            character,
            idea,
            template=choices.template,
            style=choices.style,
            count=character.generation.descriptions,
            video=strategies.needs(choices.generation_type).video,
        )
        if not descriptions:
            raise ServiceError(
                "the language model wrote no description",
                user_message="The language model wrote no description; the run can be retried.",
            )
        sound: str | None = None
        if self.sound is not None and await asyncio.to_thread(_has_sound_node, choices):
            _progress(sink, run, "describe", "writing the sound prompt")
            sound = await self.sound.write(character, descriptions)
        return run.advance(RunState.DESCRIBED, descriptions=tuple(descriptions), sound_prompt=sound)

    async def _generate(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        choices = _choices(run)
        _progress(sink, run, "generate", f"{choices.generation_type} on ComfyUI")
        picker = self._picker(run, character, folder, sink)
        if picker is not None:
            self._picks[run.id] = picker
        record, latest = scene_recorder(self.store, run)
        generated = await self.make(
            run,
            character,
            folder,
            sink,
            strategy=choices.generation_type,
            descriptions=run.descriptions,
            rng=Random(f"{choices.seed}:generate"),
            picker=picker,
            narration=await self._narration(character, run, record),
        )
        self._picks.pop(run.id, None)
        # the run as the step saved it meanwhile: with the pick, or a narrated run's scenes
        run = picker.run if picker is not None else latest()
        media = tuple(
            MediaItem(
                path=item.path,
                kind=item.kind,
                description_index=item.description_index,
                stage=item.stage,
            )
            for item in generated
        )
        return run.advance(RunState.GENERATED, media=media)

    async def make(
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
        picker: StagePicker | None = None,
        narration: NarrationSetup | None = None,
    ) -> list[Generated]:
        """Media from `strategy` into `folder` (paths relative to it): the run's own generation
        (with a person's pick between stages, `picker`, when the character asks for one), or a
        reviewer's reroll or variations (`pipeline.review_actions`). The run's type uses the
        workflows chosen at its start; another type the character's current ones."""
        choices = _choices(run)
        if strategy != choices.generation_type:
            choices = replace(
                choices,
                generation_type=strategy,
                workflows={
                    stage.name: str(character.workflow_path(strategy, stage.name))
                    for stage in strategies.needs(strategy).stages
                },
            )
        chosen = strategies.get(strategy)
        stages = await asyncio.to_thread(
            _stage_setups,
            character,
            choices,
            run.job.count if count is None else count,
            run.sound_prompt,
        )
        if denoise is not None:
            stages = {name: replace(setup, denoise=denoise) for name, setup in stages.items()}
        ctx = StrategyContext(
            generator=self.generator,
            folder=folder,
            descriptions=descriptions,
            stages=stages,
            rng=rng,
            scorer=None if run.job.quick else self.scorer,
            input_images=(
                list(inputs)
                if inputs is not None
                else await asyncio.to_thread(_input_images, character, run, rng)
            ),
            keep_top=character.params_for(strategy).keep_top or 1,
            negative=run.job.negative,
            tags=self.video_tags if chosen.needs.video else frozenset(),
            stickers=(
                await asyncio.to_thread(sticker_setup, character) if chosen.needs.stickers else None
            ),
            report=lambda update: _generation_progress(sink, run, update),
            picker=picker,
            narration=narration,
        )
        try:
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            generated = await chosen.generate(ctx)
        except StrategyError as exc:  # what was made cannot become what was asked for
            raise RunError(str(exc)) from exc
        except OutputNotWritten as exc:  # a download ComfyUI sent could not be saved
            raise DiskError(f"the media folder {_shown(character, exc.path)}", exc.reason) from exc
        except OSError as exc:
            disk = _disk_error(exc, character, folder)
            if isinstance(disk, DiskError):
                raise disk from exc
            if exc.filename is None:  # a socket's error, not the disk's
                raise
            raise RunError(
                f"cannot use {_shown(character, exc.filename)}: "
                f"{exc.strerror or type(exc).__name__}"
            ) from exc
        if not generated:
            raise ServiceError(
                "ComfyUI returned no media for this run",
                user_message="ComfyUI returned no media for this run; the run can be retried.",
            )
        return generated

    def _picker(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> RunStagePicker | None:
        """A person's pick between the strategy's stages when the character asks for one
        (`review_between_stages: true`) and the reviewer can ask it; else None (the best by
        score go on, as with `auto` or `false`)."""
        strategy = _choices(run).generation_type
        if strategies.needs(strategy).pick_after is None:
            return None
        if character.params_for(strategy).review_between_stages is not True:
            return None
        if not isinstance(self.reviewer, StageReviewer):
            log.info("run %s: this reviewer cannot pick between stages; best by score", run.id)
            return None
        return RunStagePicker(run, folder, self.store, self.reviewer, sink)

    def _narrator(self) -> Narrator:
        if self.narrator is None:
            raise RunError("narrated videos are not set up in this process (no narrator wired)")
        return self.narrator

    async def _narration(
        self, character: Character, run: Run, record: Callable[[int, Scene], Awaitable[None]]
    ) -> NarrationSetup | None:
        """A narrated run's script and tools for its strategy; None for other strategies."""
        if run.script is None:
            return None
        return await self._narrator().setup(character, run.script, record)

    async def _score(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        if run.job.quick:
            return run.advance(RunState.SCORED)
        _progress(sink, run, "score", f"scoring {len(run.media)} file(s)")
        outcome = await self.vision.score_items(
            folder,
            run.media,
            run.descriptions,
            threshold=character.generation.similarity_threshold,
            keep_best=character.generation.keep_best_when_none_pass,
        )
        return run.advance(RunState.SCORED, media=outcome.items, scoring_note=outcome.note)

    async def _caption(self, run: Run, character: Character, sink: ProgressSink | None) -> Run:
        _progress(sink, run, "caption", "writing captions")
        captions = await self.captions.write(
            character,
            prompt=run.prompt or "",
            descriptions=run.descriptions,
            subject=run.subject or character.name,
        )
        return run.advance(
            RunState.CAPTIONED,
            captions={platform.value: text for platform, text in captions.items()},
        )

    async def _request_review(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        if self.fit_media is not None and run.job.publish:
            _progress(sink, run, "fit", "fitting media to each platform")
            await self.fit_media(run, character, folder)
        return await self._post_review(run, character, folder, sink)

    async def _post_review(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        _awaiting_review(sink, run, True)
        _progress(sink, run, REVIEW_STEP, _waiting(run))
        run = replace(run, offers=offers(run, character))
        ticket = await self.reviewer.request(run, folder)
        return run.advance(RunState.AWAITING_REVIEW, ticket=ticket)

    async def _await_review(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        if run.action is not None:  # a reviewer's reroll or variations, saved before the work
            run = await self.actions().carry_out(run, character, folder, sink)
            await self.store.save_run(run)
        if run.ticket is None:  # the review of the new set (made by an action) is posted
            run = await self._post_review(run, character, folder, sink)
            await self.store.save_run(run)
        assert run.ticket is not None, "a run awaiting review has a ticket"
        _awaiting_review(sink, run, True)
        _progress(sink, run, REVIEW_STEP, _waiting(run))
        try:
            decision = await self.reviewer.wait(run, run.ticket)
        finally:
            _awaiting_review(sink, run, False)
        if decision is None:
            return run.advance(RunState.EXPIRED)
        if isinstance(decision, ReviewAction):  # saved by the walker before the work starts
            log.info("run %s: %s asked for %s", run.id, decision.by, decision.kind.value)
            return run.advance(RunState.AWAITING_REVIEW, action=decision, ticket=None)
        if not decision.approved:
            return run.advance(RunState.REJECTED, decision=decision)
        decision = _valid_selection(run, decision)
        captions = {**run.captions, **decision.captions}
        return run.advance(RunState.APPROVED, decision=decision, captions=captions)

    async def _publish(
        self, run: Run, character: Character, folder: Path, sink: ProgressSink | None
    ) -> Run:
        # A run found in `publishing` was stopped mid-way or failed there: its FAILED posts are
        # tried again and its POSTING ones checked against the account, never posted blind.
        retry = run.state is RunState.PUBLISHING
        if run.state is RunState.APPROVED and wants_upscale(run, character):
            run = await self.actions().upscale(run, character, folder, sink)
            if run.state is RunState.FAILED:  # nothing is published; the run says why
                return run
            await self.store.save_run(run)
        run = run.advance(RunState.PUBLISHING)
        await self.store.save_run(run)
        _progress(sink, run, "publish", "publishing")
        if run.stickers:
            if self.sticker_uploads is None:
                raise ConfigError(
                    "a sticker pack is uploaded to Discord: set DISCORD_TOKEN and "
                    "DISCORD_STICKER_GUILD_ID (or publish nothing with --no-publish)"
                )
            run = await self.sticker_uploads.upload(run, folder)
        await self.publisher.publish_run(run, character, folder, retry_failed=retry)
        return await self.publisher.run_after_publishing(run, character)

    def actions(self) -> ReviewActions:
        """The reviewer's actions (reroll, variations, upscale) over this pipeline's services."""
        return ReviewActions(
            generator=self.generator,
            make=self.make,
            vision=self.vision,
            fit_media=self.fit_media,
        )

    # ------------------------------------------------------------------ outcomes
    async def _fail(self, run: Run, step: RunState, exc: BaseException) -> Run:
        run = self._kept_pick(run)
        if run.script is not None:  # a narrated run saved its finished scenes as it went
            run = await _with_saved_scenes(self.store, run)
        failure = failure_of(exc, step)
        log_text = exc.log_text() if isinstance(exc, ExecutionFailed) else str(exc)
        log.warning("run %s failed at %s: %s", run.id, failure.doing, log_text)
        return run.advance(RunState.FAILED, failure=failure)

    def _kept_pick(self, run: Run) -> Run:
        """`run` with the pick between stages its step saved before it stopped (posted or
        made), so the record saved next does not lose it."""
        picker = self._picks.pop(run.id, None)
        return run if picker is None else replace(run, stage_pick=picker.run.stage_pick)

    async def _notify(self, run: Run) -> None:
        try:
            posts = await self.store.posts_for_run(run.id)
            await self.notifier.run_changed(run, posts)
        except Exception:  # a notice that fails must not fail the run it reports on
            log.exception("could not send the notice for run %s", run.id)


async def _with_saved_scenes(store: Store, run: Run) -> Run:
    """`run` with the script as last saved: the scenes a failed step finished stay recorded."""
    try:
        saved = await store.load_run(run.id)
    except StoreError:
        return run
    if saved is None or saved.script is None or saved.state is not run.state:
        return run
    return replace(run, script=saved.script)


_FINAL = frozenset(
    {RunState.PUBLISHED, RunState.REJECTED, RunState.FAILED, RunState.EXPIRED, RunState.CANCELLED}
)


def _reopen(run: Run) -> Run:
    """A failed run goes back to the step that failed; an expired one back to review."""
    if run.state is RunState.FAILED and run.failure is not None:
        if run.failure.state.finished:  # no step to go back to
            return run
        return replace(run, state=run.failure.state, failure=None)
    if run.state is RunState.EXPIRED:
        return replace(run, state=RunState.CAPTIONED, ticket=None)
    return run


def _disk_error(exc: OSError, character: Character, folder: Path) -> OSError | DiskError:
    """`exc` as a DiskError naming the path (the run folder when the OS named none), or
    `exc` itself when it is a socket's error rather than the disk's."""
    reason = disk_reason(exc)
    if reason is None:
        return exc
    return DiskError(_shown(character, exc.filename or folder), reason)


def _shown(character: Character, filename: object) -> str:
    """A path as people see it: relative to the character's project folder when inside it."""
    path = Path(str(filename))
    return (
        str(path.relative_to(character.root)) if path.is_relative_to(character.root) else str(path)
    )


def _choices(run: Run) -> Choices:
    if run.choices is None:
        raise RunError(f"run {run.id} has no choices yet")
    return run.choices


def _has_sound_node(choices: Choices) -> bool:
    """Whether a workflow of the run has a sound node (MMAudio) to write a prompt for; a
    workflow that cannot be read has none here (generating names its fault). Blocking."""
    for path in choices.workflows.values():
        try:
            if Workflow.load(path).sound_nodes():
                return True
        except (OSError, ComfyError):
            continue
    return False


def _stage_setups(
    character: Character,
    choices: Choices,
    count: int | None = None,
    sound: str | None = None,
) -> dict[str, StageSetup]:
    """Each stage's workflow (loaded once, from the paths chosen at the start) and numbers: a
    stage that makes videos counts them with `videos_per_description`. A job's `count`
    replaces the first stage's numbers (per description, and per input image); the run's
    sound prompt goes into the sound nodes (the character's `custom_node_updates` still win)."""
    params = character.params_for(choices.generation_type)
    result: dict[str, StageSetup] = {}
    for number, stage in enumerate(strategies.needs(choices.generation_type).stages):
        own = params.section(stage.name)
        per_description = (own.images_per_description if own else None) or (
            params.videos_per_description if stage.video else params.images_per_description
        )
        per_input = (own.images_per_input if own else None) or (
            params.videos_per_description if stage.video else params.images_per_input
        )
        if count is not None and number == 0:
            per_description = per_input = count
        updates = [*params.custom_node_updates, *(own.custom_node_updates if own else [])]
        pins = [*params.pinned_seeds, *(own.pinned_seeds if own else [])]
        workflow = Workflow.load(choices.workflows[stage.name])
        if sound:
            workflow = workflow.with_sound_prompt(sound)
        result[stage.name] = StageSetup(
            workflow=workflow,
            per_description=per_description or 1,
            per_input=per_input or 1,
            denoise=(own.denoise if own else None) or params.denoise,
            updates=tuple(u.as_mapping() for u in updates),
            pinned_seeds=tuple((pin.selector(), pin.seed) for pin in pins),
        )
    return result


def _input_images(character: Character, run: Run, rng: Random) -> list[Path]:
    """Input images for a strategy that needs them: the job's, else one per description from
    the character's input_dir (blocking: it lists a folder)."""
    if run.job.input_images:
        return [Path(p) for p in run.job.input_images]
    strategy = _choices(run).generation_type
    if not strategies.needs(strategy).input_images:
        return []
    params = character.params_for(strategy)
    if not params.input_dir:
        raise RunError(f"{strategy} needs input images: set additional_params input_dir")
    folder = character.root / params.input_dir
    images = sorted(p for p in folder.glob("*") if media_kind(p) is MediaKind.IMAGE)
    if not images:
        raise RunError(f"no input images in {params.input_dir}")
    return rng.sample(images, k=min(len(images), max(len(run.descriptions), 1)))


def _valid_selection(run: Run, decision: Decision) -> Decision:
    """Only media the review showed (kept, of the current attempt) can be chosen; an approval
    with no valid choice takes every one shown."""
    kept = run.shown()
    selected = tuple(i for i in decision.selected if i in kept) or tuple(kept)
    return replace(decision, selected=selected)


def _progress(sink: ProgressSink | None, run: Run, step: str, detail: str) -> None:
    if sink is not None:
        sink.progress(run.id, Progress(step=step, detail=detail))


def _waiting(run: Run) -> str:
    """The run card's words while a review waits: which attempt it shows after a reroll."""
    return "waiting for a reviewer" + (f" (attempt {run.attempt})" if run.attempt > 1 else "")


def _awaiting_review(sink: ProgressSink | None, run: Run, waiting: bool) -> None:
    if sink is not None:
        sink.awaiting_review(run.id, waiting)


def _generation_progress(sink: ProgressSink | None, run: Run, update: GenerationProgress) -> None:
    if sink is None:
        return
    detail = f"{update.stage}: {update.done}/{update.total} prompt(s) done"
    if run.attempt > 1:
        detail = f"attempt {run.attempt} · {detail}"
    if update.node:
        detail += f", running {update.node}"
    sink.progress(
        run.id,
        Progress(
            step="generate",
            detail=detail,
            queue_position=update.queue_position,
            value=update.step,
            maximum=update.steps,
        ),
    )


def _cleanup(folder: Path, run: Run) -> None:
    """Temporary files always go; a rejected run's media go; approved media and everything of
    a failed or expired run stay (it may be retried). Review previews go once the review can
    never be posted again (rejected, cancelled, published)."""
    if not folder.is_dir():
        return
    for partial in folder.glob("*.partial"):
        shutil.rmtree(partial, ignore_errors=True)
    if run.state in (RunState.REJECTED, RunState.CANCELLED, RunState.PUBLISHED):
        shutil.rmtree(folder / PREVIEW_FOLDER, ignore_errors=True)
    if run.state is RunState.REJECTED or run.state is RunState.CANCELLED:
        for item in run.media:
            (folder / item.path).unlink(missing_ok=True)
    elif run.state is RunState.PUBLISHED and run.decision is not None:
        chosen = {run.media[i].path for i in run.decision.selected}
        for item in run.media:
            if item.path not in chosen:
                (folder / item.path).unlink(missing_ok=True)
