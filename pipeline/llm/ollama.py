"""Ollama through the `ollama` AsyncClient: `/api/chat` (default) or `/api/generate`.

Structured output follows the JSON mode: `format=<JSON schema>` (schema), `format="json"` with
the schema in the prompt (object), or the schema in the prompt only (off); `auto` finds the first
the server takes. Images go as base64 in the message; every call sends `num_predict`, and
`done_reason: length` is a TRUNCATED failure. Answers are read with a size cap
(`pipeline.llm.capped`). The httpx client underneath has no retries of its own. `pulled()` lists
the models the server has (`/api/tags`). `warm_up()` (blocking, in a thread) makes the library
build its types before the first real call. Imports `pipeline.llm.base` and `pipeline.llm.capped`
only.
"""

from __future__ import annotations

import logging
from typing import Literal

import httpx
import ollama

from pipeline.llm import base
from pipeline.llm.base import (
    FailureKind,
    JsonMode,
    ModeFinder,
    ModelRequest,
    ProviderFailure,
    classify_status,
    parse_retry_after,
    redact,
    schema_instruction,
)
from pipeline.llm.capped import AnswerTooLarge, capped_hooks

#: the JSON modes Ollama takes, in the order `auto` tries them (`format` with a schema needs
#: Ollama 0.5; older servers take only "json")
MODES = (JsonMode.SCHEMA, JsonMode.OBJECT, JsonMode.OFF)

log = logging.getLogger(__name__)


class _HttpError(Exception):
    """Raised by our response hook so the status and Retry-After survive the library."""

    def __init__(self, status: int, retry_after: float | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.message = message


async def _raise_for_status(response: httpx.Response) -> None:
    # ollama's ResponseError keeps the status but drops the headers; Retry-After matters to us.
    if response.status_code < 400:
        return
    await response.aread()
    message = response.text
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        message = body["error"]
    raise _HttpError(
        response.status_code, parse_retry_after(response.headers.get("retry-after")), message
    )


#: what the client raises for a failed call (our hook's _HttpError among them)
_CLIENT_ERRORS = (
    _HttpError,
    ollama.ResponseError,
    AnswerTooLarge,
    httpx.TimeoutException,
    ConnectionError,
    httpx.TransportError,
)


class OllamaProvider:
    """TextModel / VisionModel calls to one Ollama server."""

    def __init__(
        self,
        host: str,
        *,
        name: str = "ollama",
        api_key: str | None = None,
        timeout_s: float = 120.0,
        api: Literal["chat", "generate"] = "chat",
        keep_alive: str | None = None,
        json_mode: JsonMode = JsonMode.AUTO,
        max_answer_bytes: int = 256 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (the warm-up answers in memory)."""
        self.name = name
        self.host = host
        self._api = api
        self._keep_alive = keep_alive
        self._modes = ModeFinder(json_mode, MODES, name=name)
        self._secrets = (api_key,) if api_key else ()
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        ask_identity, cap = capped_hooks(max_answer_bytes)
        self._client = ollama.AsyncClient(
            host=host,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            headers=headers,
            # the cap first: our status hook reads error bodies
            event_hooks={"request": [ask_identity], "response": [cap, _raise_for_status]},
            transport=transport,
        )

    def json_mode(self, model: str) -> JsonMode:
        return self._modes.mode(model)

    async def generate(self, request: ModelRequest) -> str:
        return await self._modes.send(request, self._send)

    async def _send(self, request: ModelRequest, mode: JsonMode) -> str:
        images = [image.data for image in request.images]
        system = request.system
        fmt: dict[str, object] | Literal["json"] | None = None
        if request.schema is not None:
            if mode is JsonMode.SCHEMA:
                fmt = dict(request.schema)
            else:
                system = f"{system}\n\n{schema_instruction(request.schema)}".strip()
                fmt = "json" if mode is JsonMode.OBJECT else None
        options = {"num_predict": request.max_tokens} if request.max_tokens else None
        try:
            if self._api == "generate":
                answer = await self._client.generate(
                    model=request.model,
                    prompt=request.prompt,
                    system=system,
                    images=images or None,
                    format=fmt,
                    options=options,
                    stream=False,
                    keep_alive=self._keep_alive,
                )
                text, done_reason = answer.response, answer.done_reason
            else:
                message: dict[str, object] = {"role": "user", "content": request.prompt}
                if images:
                    message["images"] = images
                chat = await self._client.chat(
                    model=request.model,
                    messages=[{"role": "system", "content": system}, message],
                    format=fmt,
                    options=options,
                    stream=False,
                    keep_alive=self._keep_alive,
                )
                text, done_reason = chat.message.content, chat.done_reason
        except _CLIENT_ERRORS as exc:
            raise self._failure(exc) from None
        if done_reason == "length":
            limit = f"num_predict {request.max_tokens}" if request.max_tokens else "its limit"
            raise ProviderFailure(FailureKind.TRUNCATED, f"done_reason length ({limit})")
        if not text or not text.strip():
            raise ProviderFailure(FailureKind.EMPTY, "the answer had no text")
        return text

    def _failure(self, exc: Exception) -> ProviderFailure:
        """The ProviderFailure for what the client raised."""
        if isinstance(exc, _HttpError):
            return ProviderFailure(
                classify_status(exc.status, exc.message),
                redact(exc.message, self._secrets),
                status=exc.status,
                retry_after=exc.retry_after,
            )
        if isinstance(exc, ollama.ResponseError):
            status = exc.status_code if exc.status_code > 0 else None
            kind = classify_status(status, str(exc.error)) if status else FailureKind.SERVER_ERROR
            return ProviderFailure(kind, redact(str(exc.error), self._secrets), status=status)
        if isinstance(exc, AnswerTooLarge):
            return ProviderFailure(FailureKind.TOO_LARGE, str(exc))
        if isinstance(exc, httpx.TimeoutException):
            return ProviderFailure(FailureKind.TIMEOUT, "no answer in time")
        return ProviderFailure(FailureKind.UNREACHABLE, type(exc).__name__)

    async def pulled(self) -> set[str]:
        """The names of the models the server has (`/api/tags`), each with its tag."""
        try:
            listing = await self._client.list()
        except _CLIENT_ERRORS as exc:
            raise self._failure(exc) from None
        return {model.model for model in listing.models if model.model}

    async def ping(self) -> None:
        try:
            await self.pulled()
        except ProviderFailure as failure:
            if failure.kind in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT):
                raise  # anything else was an answer

    async def aclose(self) -> None:
        await self._client.close()  # type: ignore[no-untyped-call]


#: what the warm-up's in-memory server answers: the smallest /api/chat response
_WARM_UP_ANSWER = {
    "model": "warm-up",
    "created_at": "2026-01-01T00:00:00Z",
    "message": {"role": "assistant", "content": "{}"},
    "done": True,
}


def warm_up() -> None:
    """`pipeline.llm.base.warm_up` for the ollama library (blocking: in a thread, once per
    process)."""
    answer = httpx.MockTransport(lambda _: httpx.Response(200, json=_WARM_UP_ANSWER))
    base.warm_up(
        "Ollama",
        lambda: OllamaProvider(
            "http://warm-up.invalid", name="warm-up", json_mode=JsonMode.SCHEMA, transport=answer
        ),
    )
