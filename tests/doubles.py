"""Typed in-memory doubles of the pipeline's seams, for tests about our own logic.

No MagicMock: each double records what it was asked and answers from a small script.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pipeline.errors import ModelError
from pipeline.ports import ImageData, JsonSchema

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
