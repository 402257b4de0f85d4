"""The fallback chain: one task's providers in order, each with retries, a rate limiter and a
cool-down; it implements TextModel and VisionModel.

Every request carries the task's `max_tokens`. Timeouts (the chain's deadline covers the whole
call, so a server that trickles its answer hits it too), 429 (after its Retry-After) and 5xx
are retried with backoff; a refusal that will repeat (any other 4xx, or a 5xx saying the
request is invalid), an unreachable server, an empty answer, an answer cut by its token limit,
one over the size cap, or (when a schema asked for JSON) one holding no readable JSON of the
schema's type move on to the next provider at once. When every provider fails, one ModelError
says what each did. Imports `pipeline.llm.*`, `pipeline.ports`, errors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from random import Random

from pipeline.errors import ModelError
from pipeline.llm.base import FailureKind, ModelRequest, Provider, ProviderFailure, Task
from pipeline.llm.limits import Health, RateLimiter, RetryPolicy, Sleep
from pipeline.llm.parsing import AnswerError, Shape, extract_json, read_off_loop
from pipeline.ports import ImageData, JsonSchema

log = logging.getLogger(__name__)


@dataclass
class Lane:
    """One provider with its model name per task and the limits shared by all its tasks."""

    provider: Provider
    models: Mapping[Task, str]
    limiter: RateLimiter = field(default_factory=RateLimiter)
    health: Health = field(default_factory=Health)

    @property
    def name(self) -> str:
        return self.provider.name


class FallbackChain:
    """TextModel and VisionModel for one task over an ordered list of lanes."""

    def __init__(
        self,
        task: Task,
        lanes: Sequence[Lane],
        *,
        timeout_s: float = 60.0,
        max_tokens: int | None = None,
        policy: RetryPolicy | None = None,
        sleep: Sleep = asyncio.sleep,
        rng: Random | None = None,
    ) -> None:
        if not lanes:
            raise ValueError(f"the {task} chain needs at least one provider")
        self.task = task
        self.lanes = tuple(lanes)
        self.timeout_s = timeout_s
        self.max_tokens = max_tokens
        self.policy = policy or RetryPolicy()
        self._sleep = sleep
        self._rng = rng or Random()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(lane.name for lane in self.lanes)

    async def complete(self, *, system: str, prompt: str, schema: JsonSchema | None = None) -> str:
        return await self._ask(system=system, prompt=prompt, images=(), schema=schema)

    async def look(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None = None,
    ) -> str:
        return await self._ask(system=system, prompt=prompt, images=images, schema=schema)

    async def _ask(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None,
    ) -> str:
        said: list[tuple[str, str, str]] = []  # (provider, user-safe phrase, log text)
        for lane in self.lanes:
            cooling = lane.health.cooling_for()
            if cooling > 0:
                phrase = f"skipped: cooling down after {lane.health.failures} failures in a row"
                said.append((lane.name, phrase, f"{phrase} ({cooling:.0f} s left)"))
                continue
            request = ModelRequest(
                model=lane.models[self.task],
                system=system,
                prompt=prompt,
                images=tuple(images),
                schema=schema,
                max_tokens=self.max_tokens,
            )
            try:
                text = await self._try_lane(lane, request)
            except ProviderFailure as failure:
                if lane.health.failed():
                    log.warning(
                        "%s: %d failures in a row, skipped for %.0f s",
                        lane.name,
                        lane.health.failures,
                        lane.health.cooldown_s,
                    )
                log.warning("%s for %s: %s; next provider", lane.name, self.task, failure)
                said.append((lane.name, failure.phrase, failure.log_text))
                continue
            lane.health.succeeded()
            return text
        user = "; ".join(f"{name} {phrase}" for name, phrase, _ in said)
        logged = "; ".join(f"{name}: {text}" for name, _, text in said)
        raise ModelError(
            f"every provider failed for the {self.task} step: {logged}",
            user_message=(
                f"No language model answered the {self.task} step ({user}). "
                "The run is kept and can be retried."
            ),
        )

    async def _try_lane(self, lane: Lane, request: ModelRequest) -> str:
        """One provider, with retries; raises the last ProviderFailure."""
        attempt = 0
        while True:
            attempt += 1
            waited = await lane.limiter.acquire()
            if waited:
                log.debug("%s: waited %.1f s for the rate limit", lane.name, waited)
            try:
                async with asyncio.timeout(self.timeout_s):
                    text = await lane.provider.generate(request)
                if request.schema is not None:
                    await _holds_json(text, request.schema)
                return text
            except TimeoutError:
                failure = ProviderFailure(
                    FailureKind.TIMEOUT, f"no answer within {self.timeout_s:g} s"
                )
            except ProviderFailure as exc:
                failure = exc
            if not failure.retryable or attempt >= self.policy.attempts:
                raise failure
            delay = self.policy.delay(attempt, failure.retry_after, self._rng)
            if delay is None:
                raise ProviderFailure(
                    failure.kind,
                    f"{failure.detail}; asked to wait {failure.retry_after:g} s, too long".lstrip(
                        "; "
                    ),
                    status=failure.status,
                    retry_after=failure.retry_after,
                )
            log.info(
                "%s for %s: %s; attempt %d of %d in %.2f s",
                lane.name,
                self.task,
                failure.phrase,
                attempt + 1,
                self.policy.attempts,
                delay,
            )
            await self._sleep(delay)


async def _holds_json(text: str, schema: JsonSchema) -> None:
    """ProviderFailure(GARBLED) when an answer to a JSON request holds no readable JSON of the
    schema's type (an object, a list) as its outermost value: the next provider is asked, since
    asking the same one again mostly gets the same prose. The rest of the shape is the caller's
    to judge. A long answer is read in a thread."""
    kind = schema.get("type")
    shape: Shape | None = "object" if kind == "object" else "array" if kind == "array" else None

    def read(answer: str) -> object:
        return extract_json(answer, shape)

    try:
        await read_off_loop(read, text)
    except AnswerError as exc:
        raise ProviderFailure(FailureKind.GARBLED, str(exc)) from None
