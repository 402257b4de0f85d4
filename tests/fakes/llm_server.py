"""What the three language-model fakes share: a scripted aiohttp server on 127.0.0.1.

Each fake answers from a script (text, JSON, slow answers, error statuses with Retry-After, an
answer cut by its token limit, a body sent chunked, trickling or without end), then from its
default; it records every request as a `Recorded` (model, system, prompt, images, schema). The
JSON-mode probe of `auto` (`pipeline.llm.base.ModeFinder`) is answered as a well-behaved model
does, apart from the script, and kept in `probes`; the model doctor's questions are kept in
`checks` and answered by the default, so neither shifts a test's script or request counts.
Switches give the real servers' behaviours (`blind`: a text-only model that ignores images;
`raw_controls`: control characters raw inside JSON strings). Subclasses supply the routes and
the provider's real body shapes.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import socket
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Self

from aiohttp import web

from pipeline.llm.base import PROBE_PROMPT
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
    #: why the answer ended: "stop", or "length" (cut by the token limit, as the provider says it)
    finish: str = "stop"
    #: how the body is sent: "whole" (with Content-Length), "chunked" (none), "trickle" (a byte
    #: every `trickle_s`), "endless" (chunks without end, after the answer's first bytes)
    body: str = "whole"
    trickle_s: float = 0.05


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

#: a \\uXXXX escape of a control character in json.dumps' output
_RAW_ESCAPE = re.compile(r"\\u(00[01][0-9a-fA-F])")


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
        #: the JSON-mode probes `auto` sent (answered apart from the script)
        self.probes: list[Recorded] = []
        #: the model doctor's questions (pipeline/llm/doctor.py): answered by the default (the
        #: responder, `always`, `always_fail`), never from the scripted steps
        self.checks: list[Recorded] = []
        #: a text-only model: images reach the server and are ignored (a 200 all the same)
        self.blind = False
        #: every answer's JSON strings carry their control characters raw (tab, newline, NUL,
        #: ESC), as grammar-constrained models write them
        self.raw_controls = False
        #: 0 picks a free port; a known one brings a stopped fake back at the same URL
        self.port = port

    # ------------------------------------------------------------------ scripting
    def reply(
        self,
        text: str,
        *,
        delay: float = 0.0,
        times: int = 1,
        finish: str = "stop",
        body: str = "whole",
        trickle_s: float = 0.05,
    ) -> Self:
        """Answer the next `times` requests with `text` (after `delay` seconds)."""
        step = Step(text=text, delay=delay, finish=finish, body=body, trickle_s=trickle_s)
        self._script.steps.extend([step] * times)
        return self

    def reply_json(
        self,
        value: object,
        *,
        delay: float = 0.0,
        times: int = 1,
        raw_controls: bool = False,
        finish: str = "stop",
    ) -> Self:
        """Answer with `value` as JSON text; `raw_controls`: control characters inside its
        strings written raw (tab, newline, NUL, ESC), as grammar-constrained models write them."""
        text = json.dumps(value, ensure_ascii=False)
        return self.reply(
            raw_controls_in(text) if raw_controls else text, delay=delay, times=times, finish=finish
        )

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

    def always(self, text: str, *, delay: float = 0.0, finish: str = "stop") -> Self:
        """What to answer once the script is used up."""
        self._script.default = Step(text=text, delay=delay, finish=finish)
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
        if self.api_key is not None and not self.key_matches(request):
            self.requests.append(recorded)
            return self.error(401, None, None)
        probe = recorded.prompt == PROBE_PROMPT
        refusal = self.refuse(recorded)
        if refusal is not None:
            (self.probes if probe else self.requests).append(recorded)
            return refusal
        if probe:
            self.probes.append(recorded)
            return await self.success(request, recorded, '{"ok": true}', Step())
        if self.blind:
            recorded = replace(recorded, images=())
        if doctor_question(recorded) is not None:
            self.checks.append(recorded)
            return await self._play(request, recorded, self._script.default)
        self.requests.append(recorded)
        if self._holding is not None and self._holding(recorded):
            self.held.append(recorded)
            await self._released.wait()
        script = self._script
        step = script.steps.popleft() if script.steps else script.default
        return await self._play(request, recorded, step)

    async def _play(
        self, request: web.Request, recorded: Recorded, step: Step
    ) -> web.StreamResponse:
        script = self._script
        if step.delay:
            await asyncio.sleep(step.delay)
        if step.status != 200:
            return self.error(step.status, step.message, step.retry_after, header=step.header)
        text = step.text
        if script.responder is not None and not step.text:
            text = script.responder(recorded)
        if self.raw_controls:
            text = raw_controls_in(text)
        return await self.success(request, recorded, text, step)

    def error(
        self, status: int, message: str | None, retry_after: str | None, *, header: bool = True
    ) -> web.Response:
        headers = {"Retry-After": retry_after} if retry_after is not None and header else None
        body = self.error_body(status, message, retry_after)
        return web.json_response(body, status=status, headers=headers)

    async def send(
        self, request: web.Request, payload: Mapping[str, object], step: Step
    ) -> web.StreamResponse:
        """`payload` as the JSON body, sent as `step.body` says."""
        data = json.dumps(payload).encode()
        if step.body == "whole":
            return web.json_response(payload)
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        if step.body == "chunked":
            for start in range(0, len(data), 16 * 1024):
                await response.write(data[start : start + 16 * 1024])
        elif step.body == "trickle":
            for index in range(len(data)):
                await response.write(data[index : index + 1])
                await asyncio.sleep(step.trickle_s)
        else:  # endless: the start of an answer, then filler for as long as the client reads
            await response.write(data[: len(data) // 2])
            filler = b" " * (64 * 1024)
            while True:
                await response.write(filler)
        await response.write_eof()
        return response

    # ------------------------------------------------------------------ provider specifics
    def add_routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def refuse(self, recorded: Recorded) -> web.Response | None:
        """An answer the server gives before any model runs (a format it does not take)."""
        return None

    def key_matches(self, request: web.Request) -> bool:
        return request.headers.get("Authorization", "") == f"Bearer {self.api_key}"

    def error_body(
        self, status: int, message: str | None, retry_after: str | None
    ) -> dict[str, object]:
        raise NotImplementedError

    async def success(
        self, request: web.Request, recorded: Recorded, text: str, step: Step
    ) -> web.StreamResponse:
        raise NotImplementedError


@dataclass(frozen=True)
class HealthyModel:
    """A responder (`fake.respond_with(HealthyModel())`) that answers each of the pipeline's
    questions as a well-behaved model does: a verdict for images, descriptions, a caption or a
    sound prompt as JSON where the schema asks for them, else the idea; and the model doctor's questions (the
    colours of the halves it sees, or a guess when the fake is `blind`)."""

    idea: str = "Testy chases snowflakes in a quiet forest"
    descriptions: tuple[str, ...] = ("a fox in the snow", "a fox at dusk")
    caption: str = "Testy found the first snow."
    hashtags: tuple[str, ...] = ("#fox",)
    score: float = 0.8
    reason: str = "the fox is there"
    sound: str = "wind in the pines, soft footsteps on snow"

    def __call__(self, recorded: Recorded) -> str:
        question = doctor_question(recorded)
        if question == "text":
            return json.dumps({"answering": True})
        if question == "vision":  # the colour of each half, or a blind guess
            if not recorded.images:
                return json.dumps({"left": "red", "right": "red"})
            return json.dumps(halves(recorded.images[0]))
        properties = as_mapping(as_mapping(recorded.schema).get("properties"))
        if recorded.images:
            return json.dumps({"score": self.score, "reason": self.reason})
        if "descriptions" in properties:
            return json.dumps({"descriptions": list(self.descriptions)})
        if "hashtags" in properties:
            return json.dumps({"text": self.caption, "hashtags": list(self.hashtags)})
        if "sound" in properties:
            return json.dumps({"sound": self.sound})
        return self.idea


def raw_controls_in(text: str) -> str:
    """JSON text whose escaped control characters (\\t, \\n, \\u0000 ...) are written raw."""
    text = _RAW_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return text.replace("\\t", "\t").replace("\\n", "\n")


def doctor_question(recorded: Recorded) -> str | None:
    """ "text" or "vision" for the model doctor's two questions (pipeline/llm/doctor.py)."""
    if '{"answering": true}' in recorded.prompt:
        return "text"
    if "left half and a right half" in recorded.prompt:
        return "vision"
    return None


_COLOURS = {"red": (255, 0, 0), "green": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}


def halves(image: bytes) -> dict[str, str]:
    """The colour names of an image's left and right halves, as a model that sees says them."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as opened:
        picture = opened.convert("RGB")
        width, height = picture.size
        said = {}
        for side, x in (("left", width // 4), ("right", 3 * width // 4)):
            pixel = picture.getpixel((x, height // 2))
            assert isinstance(pixel, tuple)
            said[side] = min(
                _COLOURS,
                key=lambda name: sum(
                    (a - b) ** 2 for a, b in zip(_COLOURS[name], pixel, strict=False)
                ),
            )
    return said


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
