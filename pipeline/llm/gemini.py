"""Google Gemini through `google-genai`'s async client (`client.aio.models.generate_content`).

Structured output follows the JSON mode: `response_mime_type="application/json"` with
`response_json_schema` (schema, what `auto` means here: the Gemini API always takes it), the
JSON mime type with the schema in the prompt (object), or the schema in the prompt only (off).
Images go as inline bytes; every call sends `max_output_tokens` (a thinking model's thoughts
count against it), and finish reason MAX_TOKENS is a TRUNCATED failure. We hand the library our
own httpx client with the size cap's hooks (so it neither retries, nor opens sessions we cannot
close, nor reads an answer of any size) and set `attempts=1`. `warm_up()` (blocking, in a
thread) makes the library build its types before the first real call. Imports
`pipeline.llm.base` and `pipeline.llm.capped` only.
"""

from __future__ import annotations

import logging

import httpx
from google import genai
from google.genai import errors, types

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

#: the JSON modes Gemini takes; `auto` is the first (no probe: the API always takes a schema)
MODES = (JsonMode.SCHEMA,)
ALL_MODES = (JsonMode.SCHEMA, JsonMode.OBJECT, JsonMode.OFF)

log = logging.getLogger(__name__)


def _retry_delay(details: object) -> float | None:
    """Seconds from a `google.rpc.RetryInfo` detail (`"retryDelay": "37s"`) of an error body."""
    error = details.get("error", details) if isinstance(details, dict) else None
    entries = error.get("details") if isinstance(error, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        delay = entry.get("retryDelay") if isinstance(entry, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            return parse_retry_after(delay[:-1])
    return None


class GeminiProvider:
    """TextModel / VisionModel calls to the Gemini API (or a server speaking its REST)."""

    def __init__(
        self,
        api_key: str,
        *,
        name: str = "gemini",
        base_url: str | None = None,
        timeout_s: float = 120.0,
        api_version: str = "v1beta",
        json_mode: JsonMode = JsonMode.AUTO,
        max_answer_bytes: int = 256 * 1024,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (the warm-up answers in memory)."""
        self.name = name
        self.base_url = base_url or "https://generativelanguage.googleapis.com"
        self._secrets = (api_key,)
        # `auto` has one candidate here; a mode set by hand may be any of ALL_MODES
        ModeFinder(json_mode, ALL_MODES, name=name)  # refuses an unknown mode
        self._mode = JsonMode.SCHEMA if json_mode is JsonMode.AUTO else json_mode
        ask_identity, cap = capped_hooks(max_answer_bytes)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            transport=transport,
            event_hooks={"request": [ask_identity], "response": [cap]},
        )
        self._client = genai.Client(
            api_key=api_key,
            http_options=types.HttpOptions(
                base_url=base_url or None,
                api_version=api_version,
                timeout=int(timeout_s * 1000),
                retry_options=types.HttpRetryOptions(attempts=1),
                httpx_async_client=self._http,
            ),
        )

    def json_mode(self, model: str) -> JsonMode:
        return self._mode

    async def generate(self, request: ModelRequest) -> str:
        parts = [types.Part.from_text(text=request.prompt)]
        parts += [
            types.Part.from_bytes(data=image.data, mime_type=image.mime_type)
            for image in request.images
        ]
        system = request.system
        config = types.GenerateContentConfig(max_output_tokens=request.max_tokens)
        if request.schema is not None:
            if self._mode is JsonMode.SCHEMA:
                config.response_json_schema = dict(request.schema)
            else:
                system = f"{system}\n\n{schema_instruction(request.schema)}".strip()
            if self._mode is not JsonMode.OFF:
                config.response_mime_type = "application/json"
        config.system_instruction = system
        try:
            response = await self._client.aio.models.generate_content(
                model=request.model,
                contents=[types.Content(role="user", parts=parts)],
                config=config,
            )
        except _CLIENT_ERRORS as exc:
            raise self._failure(exc) from None
        candidate = response.candidates[0] if response.candidates else None
        if candidate is not None and candidate.finish_reason == types.FinishReason.MAX_TOKENS:
            limit = f"max_output_tokens {request.max_tokens}" if request.max_tokens else "its limit"
            raise ProviderFailure(FailureKind.TRUNCATED, f"finish reason MAX_TOKENS ({limit})")
        text = response.text
        if not text or not text.strip():
            reason = ""
            if candidate is not None and candidate.finish_reason:
                reason = f"finish reason {candidate.finish_reason}"
            elif response.prompt_feedback and response.prompt_feedback.block_reason:
                reason = f"blocked: {response.prompt_feedback.block_reason}"
            raise ProviderFailure(FailureKind.EMPTY, reason or "the answer had no text")
        return text

    def _failure(self, exc: Exception) -> ProviderFailure:
        if isinstance(exc, errors.APIError):
            headers = getattr(exc.response, "headers", None)
            retry_after = parse_retry_after(headers.get("retry-after")) if headers else None
            if retry_after is None:
                retry_after = _retry_delay(exc.details)
            message = exc.message if isinstance(exc.message, str) else ""
            return ProviderFailure(
                classify_status(exc.code, message),
                redact(f"{exc.status or ''} {message}".strip(), self._secrets),
                status=exc.code,
                retry_after=retry_after,
            )
        if isinstance(exc, AnswerTooLarge):
            return ProviderFailure(FailureKind.TOO_LARGE, str(exc))
        if isinstance(exc, httpx.TimeoutException):
            return ProviderFailure(FailureKind.TIMEOUT, "no answer in time")
        return ProviderFailure(FailureKind.UNREACHABLE, type(exc).__name__)

    async def ping(self) -> None:
        try:
            await self._client.aio.models.list(config={"page_size": 1})
        except _CLIENT_ERRORS as exc:
            failure = self._failure(exc)
            if failure.kind in (FailureKind.UNREACHABLE, FailureKind.TIMEOUT):
                raise failure from None  # anything else was an answer

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()
        self._client.close()


#: what the client raises for a failed call
_CLIENT_ERRORS = (errors.APIError, AnswerTooLarge, httpx.TransportError)


#: what the warm-up's in-memory server answers: the smallest generateContent response
_WARM_UP_ANSWER = {
    "candidates": [
        {"content": {"role": "model", "parts": [{"text": "{}"}]}, "finishReason": "STOP"}
    ],
    "modelVersion": "warm-up",
}


def warm_up() -> None:
    """`pipeline.llm.base.warm_up` for google-genai (blocking: in a thread, once per process)."""
    answer = httpx.MockTransport(lambda _: httpx.Response(200, json=_WARM_UP_ANSWER))
    base.warm_up(
        "Gemini",
        lambda: GeminiProvider(
            "warm-up", name="warm-up", base_url="http://warm-up.invalid", transport=answer
        ),
    )
