"""What the three language-model fakes share: a scripted aiohttp server on 127.0.0.1.

Each fake answers from a script (text, JSON, slow answers, error statuses with Retry-After),
then from its default; it records every request as a `Recorded` (model, system, prompt, images,
schema). Subclasses supply the routes and the provider's real body shapes.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web

from tests.fakes.serving import serve


@dataclass(frozen=True)
class Step:
    """One scripted answer: text with status 200, or an error status with its message."""

    text: str = ""
    status: int = 200
    retry_after: str | None = None
    delay: float = 0.0
    message: str | None = None
    #: False: Retry-After only where the provider also puts it in the body (Gemini's RetryInfo)
    header: bool = True


@dataclass(frozen=True)
class Recorded:
    """One request as the fake understood it."""

    path: str
    headers: Mapping[str, str]
    body: Mapping[str, object]
    model: str
    system: str
    prompt: str
    images: tuple[bytes, ...] = ()
    schema: object | None = None


Responder = Callable[[Recorded], str]


@dataclass
class _Script:
    steps: deque[Step] = field(default_factory=deque)
    default: Step = field(default_factory=lambda: Step(text="ok"))
    responder: Responder | None = None


class LlmFake:
    """Base of FakeOllama, FakeOpenAI and FakeGemini; use as `async with Fake() as fake`."""

    #: the path under the server root that clients are pointed at ("" or "/v1")
    base_path = ""

    def __init__(self, *, default: str = "ok", api_key: str | None = None, port: int = 0) -> None:
        self._script = _Script(default=Step(text=default))
        self.api_key = api_key
        self.requests: list[Recorded] = []
        #: requests `hold` kept unanswered, in arrival order
        self.held: list[Recorded] = []
        self._holding: Callable[[Recorded], bool] | None = None
        self._released = asyncio.Event()
        self._runner: web.AppRunner | None = None
        #: 0 picks a free port; a known one brings a stopped fake back at the same URL
        self.port = port

    # ------------------------------------------------------------------ scripting
    def reply(self, text: str, *, delay: float = 0.0, times: int = 1) -> Self:
        """Answer the next `times` requests with `text` (after `delay` seconds)."""
        for _ in range(times):
            self._script.steps.append(Step(text=text, delay=delay))
        return self

    def reply_json(self, value: object, *, delay: float = 0.0, times: int = 1) -> Self:
        return self.reply(json.dumps(value, ensure_ascii=False), delay=delay, times=times)

    def fail(
        self,
        status: int,
        *,
        retry_after: float | str | None = None,
        message: str | None = None,
        times: int = 1,
        header: bool = True,
    ) -> Self:
        """Answer the next `times` requests with an error status in the provider's body shape."""
        value = None if retry_after is None else str(retry_after)
        step = Step(status=status, retry_after=value, message=message, header=header)
        self._script.steps.extend([step] * times)
        return self

    def always(self, text: str, *, delay: float = 0.0) -> Self:
        """What to answer once the script is used up."""
        self._script.default = Step(text=text, delay=delay)
        return self

    def always_fail(self, status: int, *, retry_after: float | None = None) -> Self:
        header = None if retry_after is None else str(retry_after)
        self._script.default = Step(status=status, retry_after=header)
        return self

    def respond_with(self, responder: Responder, *, delay: float = 0.0) -> Self:
        """Compute each default answer from the request (e.g. a score from the prompt)."""
        self._script.responder = responder
        self._script.default = Step(delay=delay)
        return self

    def hold(self, which: Callable[[Recorded], bool]) -> Self:
        """Leave the requests `which` picks unanswered (in `held`) until `release`: a model
        that is thinking while its caller is killed."""
        self._holding = which
        self._released.clear()
        return self

    def release(self) -> None:
        """Stop holding; held requests whose callers still wait are answered now."""
        self._holding = None
        self._released.set()

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        """The base URL / host to give the client library."""
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        self.add_routes(app)
        # a client that gave up (a timeout) cancels its handler, so slow steps never hold cleanup
        self._runner, self.port = await serve(
            app, self.port, access_log=None, handler_cancellation=True, shutdown_timeout=0.5
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _answer(self, request: web.Request, recorded: Recorded) -> web.StreamResponse:
        """Record the request, then play the next step of the script."""
        self.requests.append(recorded)
        if self.api_key is not None and not self.key_matches(request):
            return self.error(401, None, None)
        if self._holding is not None and self._holding(recorded):
            self.held.append(recorded)
            await self._released.wait()
        script = self._script
        step = script.steps.popleft() if script.steps else script.default
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status != 200:
            return self.error(step.status, step.message, step.retry_after, header=step.header)
        text = step.text
        if script.responder is not None and not step.text:
            text = script.responder(recorded)
        return await self.success(request, recorded, text)

    def error(
        self, status: int, message: str | None, retry_after: str | None, *, header: bool = True
    ) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None and header else None
        body = self.error_body(status, message, retry_after)
        return web.json_response(body, status=status, headers=headers)

    # ------------------------------------------------------------------ provider specifics
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def key_matches(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    def error_body(
        self, status: int, message: str | None, retry_after: str | None
    ) -> dict[str, object]:
        raise NotImplementedError

    async def success(
        self, request: web.Request, recorded: Recorded, text: str
    ) -> web.StreamResponse:
        raise NotImplementedError


@dataclass(frozen=True)
class HealthyModel:
    """A responder (`fake.respond_with(HealthyModel())`) that answers each of the pipeline's
    questions as a well-behaved model does: a verdict for images, descriptions or a caption as
    JSON where the schema asks for them, else the idea."""

    idea: str = "Testy chases snowflakes in a quiet forest"
    descriptions: tuple[str, ...] = ("a fox in the snow", "a fox at dusk")
    caption: str = "Testy found the first snow."
    hashtags: tuple[str, ...] = ("#fox",)
    score: float = 0.8
    reason: str = "the fox is there"

    def __call__(self, recorded: Recorded) -> str:
        if recorded.images:
            return json.dumps({"score": self.score, "reason": self.reason})
        properties = as_mapping(as_mapping(recorded.schema).get("properties"))
        if "descriptions" in properties:
            return json.dumps({"descriptions": list(self.descriptions)})
        if "hashtags" in properties:
            return json.dumps({"text": self.caption, "hashtags": list(self.hashtags)})
        return self.idea


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a server that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def as_mapping(value: object) -> Mapping[str, object]:
    return value if isinstance(value, dict) else {}


def as_list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
