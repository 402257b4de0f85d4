"""Typed in-memory doubles of the pipeline's seams, for tests about our own logic.

Each records what it was asked so tests can assert on behaviour a user would notice (which images
were posted, which notices went out). Never doubles the store: tests use the real one.
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from random import Random

from PIL import Image

from pipeline.characters import Character
from pipeline.errors import ModelError
from pipeline.models import (
    Decision,
    MediaItem,
    MediaKind,
    Platform,
    PostRecord,
    PostState,
    ReviewAction,
    ReviewTicket,
    Run,
    RunFailure,
    RunState,
    StagePick,
    utcnow,
)
from pipeline.ports import (
    REVIEW_STEP,
    ImageData,
    JsonSchema,
    Notifier,
    OutgoingMedia,
    Progress,
    ProgressSink,
    RemotePost,
    Reviewer,
    Store,
)
from pipeline.run import Idea

# ---------------------------------------------------------------------------- pipeline steps


class StaticPrompts:
    """Writes a predictable prompt naming the subject and the method."""

    async def write(
        self, character: Character, *, method: str | None, subject: str, rng: Random, video: bool
    ) -> Idea:
        method = method or character.pick_prompt_method(rng)
        return Idea(prompt=f"{subject} on a {method} adventure", method=method, subject=subject)


class StaticDescriber:
    """`count` descriptions derived from the prompt."""

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
        kind = "clip" if video else "picture"
        return [f"{kind} {i + 1}: {idea.prompt}, {style or 'plain'}" for i in range(count)]


class StaticCaptions:
    async def write(
        self, character: Character, *, prompt: str, descriptions: Sequence[str], subject: str
    ) -> dict[Platform, str]:
        return {p: f"{subject}: {prompt} #{p.value}" for p in Platform}


@dataclass
class ScriptedReviewer:
    """Answers every review with `decide(run)`; None means the review expired, a ReviewAction
    asks for more media."""

    decide: Callable[[Run], Decision | ReviewAction | None] = lambda run: Decision(
        approved=True, selected=(), by="tester", at=utcnow()
    )
    requests: list[str] = field(default_factory=list)
    #: answers every pick between stages (None: nobody in time); the last drafts first
    pick: Callable[[Run, StagePick], Decision | None] = lambda run, pick: Decision(
        approved=True, selected=(len(pick.drafts) - 1,), by="tester", at=utcnow()
    )
    picks: list[str] = field(default_factory=list)

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        self.requests.append(run.id)
        return ReviewTicket(channel_id=1, message_ids=(len(self.requests),), posted_at=utcnow())

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | ReviewAction | None:
        return self.decide(run)

    async def request_pick(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        self.picks.append(run.id)
        return ReviewTicket(channel_id=1, message_ids=(100 + len(self.picks),), posted_at=utcnow())

    async def wait_pick(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision | None:
        return self.pick(run, pick)


@dataclass
class RecordingPublisher:
    """A platform that accepts every post and remembers it (the Publisher port)."""

    platform: Platform
    posted: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        self.posted.append((account, tuple(m.path.name for m in media), caption))
        number = len(self.posted)
        return RemotePost(str(number), f"https://{self.platform.value}.example/{number}")

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        for number, (who, _, text) in enumerate(self.posted, start=1):
            if who == account and text == caption:
                return RemotePost(str(number))
        return None


@dataclass
class RecordingNotifier:
    events: list[tuple[str, str]] = field(default_factory=list)

    async def run_changed(self, run: Run, posts: Sequence[PostRecord] = ()) -> None:
        self.events.append((run.id, run.state.value))


@dataclass
class RecordingSink:
    updates: list[Progress] = field(default_factory=list)

    #: every `awaiting_review` signal, in order
    waits: list[bool] = field(default_factory=list)

    def progress(self, run_id: str, update: Progress) -> None:
        self.updates.append(update)

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        self.waits.append(waiting)


# ---------------------------------------------------------------------------- time


class FakeTime:
    """A clock and a sleep that only move when slept: backoff and cool-down tests run at once."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------------- language models


@dataclass(frozen=True)
class Asked:
    """One call a ScriptedModel received."""

    system: str
    prompt: str
    images: tuple[ImageData, ...]
    schema: JsonSchema | None


Answer = str | ModelError | Callable[[Asked], str]


@dataclass
class ScriptedModel:
    """A TextModel and VisionModel answering from a script, then from `default`.

    An answer may be text, a ModelError to raise, or a function of the request. `delay` makes
    every call take that long (on the real event loop); a `gate` holds every call until it is
    set, for concurrency tests that must not depend on timing.
    """

    answers: deque[Answer] = field(default_factory=deque)
    default: Answer = "ok"
    delay: float = 0.0
    gate: asyncio.Event | None = None
    calls: list[Asked] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    @classmethod
    def of(cls, *answers: Answer, default: Answer = "ok", delay: float = 0.0) -> ScriptedModel:
        return cls(answers=deque(answers), default=default, delay=delay)

    async def complete(self, *, system: str, prompt: str, schema: JsonSchema | None = None) -> str:
        return await self._answer(Asked(system, prompt, (), schema))

    async def look(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None = None,
    ) -> str:
        return await self._answer(Asked(system, prompt, tuple(images), schema))

    async def _answer(self, asked: Asked) -> str:
        self.calls.append(asked)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if self.gate is not None:
                await self.gate.wait()
            answer = self.answers.popleft() if self.answers else self.default
            if isinstance(answer, ModelError):
                raise answer
            if callable(answer):
                return answer(asked)
            return answer
        finally:
            self.in_flight -= 1


# ---------------------------------------------------------------------------- bot runs


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
    #: when set, the run fails at generation with this failure (its cause and all)
    fail_as: RunFailure | None = None
    captions: dict[str, str] = field(
        default_factory=lambda: {"instagram": "A robot waves #pixelbot", "twitter": "Hi!"}
    )
    #: when set, publishing records these posts (platform, state, error) in place of one
    #: posted to Instagram, and a post not online fails the run at publishing as the pipeline does
    posts: tuple[tuple[Platform, PostState, str | None], ...] | None = None


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
            if script.fail_as is not None:
                return await self._save(run.advance(RunState.FAILED, failure=script.fail_as))
            if script.fail_with is not None:
                failure = RunFailure(state=RunState.DESCRIBED, message=script.fail_with)
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
            show(Progress(step=REVIEW_STEP, detail="waiting for a reviewer"))
            if sink is not None:
                sink.awaiting_review(run.id, True)
            try:
                decision = await self.reviewer.wait(run, run.ticket)
            finally:
                if sink is not None:
                    sink.awaiting_review(run.id, False)
            if decision is None:
                return await self._save(run.advance(RunState.EXPIRED))
            assert isinstance(decision, Decision), "the scripted pipeline makes no more media"
            if not decision.approved:
                return await self._save(run.advance(RunState.REJECTED, decision=decision))
            captions = {**run.captions, **decision.captions}  # as the pipeline merges edits
            run = await self._save(
                run.advance(RunState.APPROVED, decision=decision, captions=captions)
            )
            if script.posts is not None:
                for platform, state, error in script.posts:
                    await self.store.record_post(
                        PostRecord(run.id, platform, "test", state, error=error)
                    )
                names = [f"{p.value} ({s.value})" for p, s, _ in script.posts if s != "posted"]
                if names:
                    failure = RunFailure(RunState.PUBLISHING, f"not posted: {', '.join(names)}")
                    return await self._save(run.advance(RunState.FAILED, failure=failure))
                return await self._save(run.advance(RunState.PUBLISHED))
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
