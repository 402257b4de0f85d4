"""A fake OpenAI-compatible server (OpenAI, OpenRouter): `POST /v1/chat/completions`.

Errors have OpenAI's `{"error": {"message", "type", "param", "code"}}` shape (the 401 message
quotes part of the key, as OpenAI's does). `fake.url` ends in `/v1`: the client's base URL.
`FakeOpenAI.llama_cpp()` switches on what llama.cpp's server (through llama-cpp-python) does, as
../shared/llm-servers-notes.md records: `json_schema` refused with a 500 and a validation
message, `json_object` with an optional `schema` taken, no `refusal` field, `chatcmpl-<uuid>`
ids; `blind`, `raw_controls` and `reply(..., finish="length")` give a text-only model, raw
control characters inside JSON strings and a cut answer.

`POST /v1/audio/speech` answers as OpenAI's speech endpoint does: real audio of the format asked
(`wav` by the wave module, `mp3` / `flac` / `opus` / `aac` by imageio-ffmpeg), a quarter second a
word, and OpenAI's errors (400 for an unknown voice or empty input, 401 for a wrong key); `speech`
holds the switches (failures to play, a held answer, a body that is not audio, a padded body).
"""

from __future__ import annotations

import array
import asyncio
import base64
import functools
import io
import math
import subprocess
import sys
import tempfile
import uuid
import wave
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from aiohttp import web

from tests.fakes.llm_server import LlmFake, Recorded, Step, as_list, as_mapping

#: OpenAI's answer to `max_tokens` for its reasoning models (o-series, gpt-5)
_NEWER_TOKENS = (
    "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
    "'max_completion_tokens' instead."
)

#: llama-cpp-python 0.3.36's answer to a `json_schema` response_format (HTTP 500)
LLAMA_CPP_REFUSAL = (
    "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format', "
    "'type'), 'msg': \"Input should be 'text' or 'json_object'\", 'input': 'json_schema', "
    "'ctx': {'expected': \"'text' or 'json_object'\"}}\n\n  File \"/srv/llama_cpp/server/"
    'errors.py", line 171, in custom_route_handler\n    response = await original_route_handler('
    "request)\n"
)

_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request: 'messages' is malformed.", "invalid_request_error", None),
    401: (
        "Incorrect API key provided: sk-fake***********wxyz. You can find your API key at "
        "https://platform.openai.com/account/api-keys.",
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: ("You are not allowed to use this model.", "invalid_request_error", None),
    404: ("The model `missing` does not exist.", "invalid_request_error", "model_not_found"),
    429: ("Rate limit reached for requests per min (RPM).", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    503: ("The engine is currently overloaded, please try again later.", "server_error", None),
}


#: the voices OpenAI's speech endpoint knows (a local server may know others)
VOICES = frozenset(
    {"alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse"}
)
SPEECH_FORMATS = frozenset({"mp3", "opus", "aac", "flac", "wav", "pcm"})
_SPEECH_MIME = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}


def speech_seconds(text: str) -> float:
    """How long the fake speaks `text`: a quarter second a word, at least half a second."""
    return max(0.5, 0.25 * len(text.split()))


@functools.cache
def wav_bytes(seconds: float, rate: int = 24_000) -> bytes:
    """A real mono 16-bit WAV of a soft 220 Hz tone, `seconds` long (OpenAI's rate: 24 kHz)."""
    frames = int(seconds * rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        step = 2 * math.pi * 220 / rate
        tone = array.array("h", [int(3000 * math.sin(step * i)) for i in range(frames)])
        if sys.byteorder == "big":
            tone.byteswap()  # WAV samples are little-endian
        out.writeframes(tone.tobytes())
    return buffer.getvalue()


def encoded_audio(wav: bytes, fmt: str) -> bytes:
    """`wav` in another format, by imageio-ffmpeg (blocking: run it in a thread)."""
    import imageio_ffmpeg  # imported here: only those formats need it

    containers = {"mp3": "mp3", "flac": "flac", "opus": "ogg", "aac": "adts"}
    codecs = {"mp3": "libmp3lame", "flac": "flac", "opus": "libopus", "aac": "aac"}
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "in.wav"
        source.write_bytes(wav)
        target = Path(tmp) / f"out.{fmt}"
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-i"]
        cmd += [str(source), "-c:a", codecs[fmt], "-f", containers[fmt], "-y", str(target)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=60)
        return target.read_bytes()


@dataclass
class SpeechSwitches:
    """How the fake speech endpoint misbehaves; change them at any time."""

    #: statuses the next requests are answered with, in order (OpenAI's error bodies)
    fail: deque[int] = field(default_factory=deque)
    #: the status (or None: answer) for each request, after `fail` is used up
    refuse: Callable[[SpeechRequest], int | None] | None = None
    #: the next answer is this body instead of audio (a proxy's HTML page, say)
    not_audio: bytes | None = None
    #: each audio answer is padded to this many bytes (a server sending far too much)
    pad_to: int | None = None
    #: the requests this picks wait until `released` is set (a voice that is still speaking
    #: while its caller is killed)
    hold: Callable[[SpeechRequest], bool] | None = None
    released: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(frozen=True)
class SpeechRequest:
    model: str
    voice: str
    text: str
    response_format: str
    authorization: str


class FakeOpenAI(LlmFake):
    """The chat completions and speech endpoints, scripted per test."""

    base_path = "/v1"

    #: response_format types the server takes (OpenAI, OpenRouter, vLLM: all three)
    formats: frozenset[str] = frozenset({"text", "json_object", "json_schema"})
    #: the answer's message carries `refusal` (OpenAI's) and the choice `logprobs`
    refusal_field = True

    def llama_cpp(self) -> Self:
        """Behave as llama.cpp's server does (see the module docstring)."""
        self.formats = frozenset({"text", "json_object"})
        self.refusal_field = False
        return self

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/audio/speech", self._speech)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's `POST /v1/audio/speech`: JSON in, the audio's bytes out."""
        switches = self.speech
        body = as_mapping(await request.json())
        fmt = str(body.get("response_format") or "mp3")
        asked = SpeechRequest(
            model=str(body.get("model", "")),
            voice=str(body.get("voice", "")),
            text=str(body.get("input", "")),
            response_format=fmt,
            authorization=request.headers.get("Authorization", ""),
        )
        self.spoken.append(asked)
        if self.api_key is not None and not self.key_matches(request):
            return self.error(401, None, None)
        if switches.fail:
            return self.error(switches.fail.popleft(), None, None)
        status = switches.refuse(asked) if switches.refuse is not None else None
        if status is not None:
            return self.error(status, None, None)
        if asked.voice not in VOICES:
            return self.error(
                400,
                f"Invalid value: '{asked.voice[:40]}'. Supported values are: "
                + ", ".join(f"'{v}'" for v in sorted(VOICES))
                + ".",
                None,
            )
        if not asked.text.strip():
            return self.error(400, "[{'type': 'string_too_short', 'loc': ('body', 'input')}]", None)
        if fmt not in SPEECH_FORMATS:
            return self.error(400, f"Invalid value: '{fmt[:20]}'.", None)
        if switches.hold is not None and switches.hold(asked):
            await switches.released.wait()
        if switches.not_audio is not None:
            data, switches.not_audio = switches.not_audio, None
            return web.Response(body=data, content_type="text/html")
        wav = wav_bytes(speech_seconds(asked.text))
        if fmt == "wav":
            data = wav
        elif fmt == "pcm":
            data = wav[44:]
        else:
            data = await asyncio.to_thread(encoded_audio, wav, fmt)
        if switches.pad_to is not None:
            data += bytes(max(0, switches.pad_to - len(data)))
        return web.Response(body=data, headers={"Content-Type": _SPEECH_MIME[fmt]})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "me"}]}
        )

    def __init__(self, *, default: str = "ok", api_key: str | None = None, port: int = 0) -> None:
        super().__init__(default=default, api_key=api_key, port=port)
        #: the speech endpoint's switches, and what it was asked to speak
        self.speech = SpeechSwitches()
        self.spoken: list[SpeechRequest] = []

    #: OpenAI's reasoning models: `max_tokens` refused (400) for `max_completion_tokens`
    completion_tokens_only = False

    def refuse(self, recorded: Recorded) -> web.Response | None:
        if self.completion_tokens_only and "max_tokens" in recorded.body:
            return self.error(400, _NEWER_TOKENS, None)
        kind = as_mapping(recorded.body.get("response_format")).get("type")
        if kind is None or kind in self.formats:
            return None
        return web.json_response(
            {
                "error": {
                    "message": LLAMA_CPP_REFUSAL,
                    "type": "internal_server_error",
                    "param": None,
                    "code": None,
                }
            },
            status=500,
        )

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = as_mapping(await request.json())
        messages = [as_mapping(m) for m in as_list(body.get("messages"))]
        system = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
        users = [m for m in messages if m.get("role") == "user"]
        content = users[-1].get("content", "") if users else ""
        prompt_parts: list[str] = []
        images: list[bytes] = []
        if isinstance(content, str):
            prompt_parts.append(content)
        for part in as_list(content):
            piece = as_mapping(part)
            if piece.get("type") == "text":
                prompt_parts.append(str(piece.get("text", "")))
            elif piece.get("type") == "image_url":
                url = str(as_mapping(piece.get("image_url")).get("url", ""))
                if url.startswith("data:") and ";base64," in url:
                    images.append(base64.b64decode(url.split(";base64,", 1)[1]))
        response_format = as_mapping(body.get("response_format"))
        schema = as_mapping(response_format.get("json_schema")).get("schema") or (
            response_format.get("schema")  # json_object with a schema (llama-cpp-python)
        )
        recorded = Recorded(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            model=str(body.get("model", "")),
            system=system,
            prompt="\n".join(prompt_parts),
            images=tuple(images),
            schema=schema,
        )
        return await self._answer(request, recorded)

    def error_body(
        self, status: int, message: str | None, retry_after: str | None
    ) -> dict[str, object]:
        default, kind, code = _ERRORS.get(status, ("Error.", "server_error", None))
        return {"error": {"message": message or default, "type": kind, "param": None, "code": code}}

    async def success(
        self, request: web.Request, recorded: Recorded, text: str, step: Step
    ) -> web.StreamResponse:
        message: dict[str, object] = {"role": "assistant", "content": text}
        choice: dict[str, object] = {"index": 0, "message": message, "finish_reason": step.finish}
        if self.refusal_field:
            message["refusal"] = None
            choice["logprobs"] = None
        ident = (
            f"chatcmpl-fake{len(self.requests)}"
            if self.refusal_field
            else f"chatcmpl-{uuid.uuid4()}"  # llama.cpp's
        )
        return await self.send(
            request,
            {
                "id": ident,
                "object": "chat.completion",
                "created": 1_735_689_600,
                "model": recorded.model,
                "choices": [choice],
                "usage": {
                    "prompt_tokens": len(recorded.prompt.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(recorded.prompt.split()) + len(text.split()),
                },
            },
            step,
        )
