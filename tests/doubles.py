"""Typed in-memory doubles of the pipeline's seams, for tests about our own logic.

Each records what it was asked so tests can assert on behaviour a user would notice (which images
were posted, which notices went out). Never doubles the store: tests use the real one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from random import Random

from pipeline.characters import Character
from pipeline.errors import ModelError
from pipeline.models import Decision, Platform, PostRecord, ReviewTicket, Run, utcnow
from pipeline.ports import ImageData, JsonSchema, OutgoingMedia, Progress, RemotePost
from pipeline.run import Idea
from strategies.base import Score

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


@dataclass
class ListScorer:
    """Scores files by a rule on their path (default: all 0.9); records every file it saw."""

    rule: Callable[[Path], float] = lambda _: 0.9
    seen: list[Path] = field(default_factory=list)

    async def score(self, items: Sequence[tuple[Path, str]]) -> list[Score]:
        self.seen.extend(path for path, _ in items)
        return [Score(self.rule(path), f"looks like {text[:20]}") for path, text in items]


class StaticCaptions:
    async def write(
        self, character: Character, *, prompt: str, descriptions: Sequence[str], subject: str
    ) -> dict[Platform, str]:
        return {p: f"{subject}: {prompt} #{p.value}" for p in Platform}


@dataclass
class ScriptedReviewer:
    """Answers every review with `decide(run)`; None means the review expired."""

    decide: Callable[[Run], Decision | None] = lambda run: Decision(
        approved=True, selected=(), by="tester", at=utcnow()
    )
    requests: list[str] = field(default_factory=list)

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        self.requests.append(run.id)
        return ReviewTicket(channel_id=1, message_ids=(len(self.requests),), posted_at=utcnow())

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | None:
        return self.decide(run)


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

    def progress(self, run_id: str, update: Progress) -> None:
        self.updates.append(update)


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
    every call take that long (on the real event loop), for concurrency tests.
    """

    answers: deque[Answer] = field(default_factory=deque)
    default: Answer = "ok"
    delay: float = 0.0
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
            answer = self.answers.popleft() if self.answers else self.default
            if isinstance(answer, ModelError):
                raise answer
            if callable(answer):
                return answer(asked)
            return answer
        finally:
            self.in_flight -= 1
