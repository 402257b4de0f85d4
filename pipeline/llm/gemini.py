"""Google Gemini through `google-genai`'s async client (`client.aio.models.generate_content`).

Structured output is `response_mime_type="application/json"` with `response_json_schema`; images
go as inline bytes. We hand the library our own httpx client (so it neither retries nor opens
sessions we cannot close) and set `attempts=1`. `warm_up()` (blocking, in a thread) makes the
library build its types before the first real call. Imports `pipeline.llm.base` only.
"""

from __future__ import annotations

import logging

import httpx
from google import genai
from google.genai import errors, types

from pipeline.llm import base
from pipeline.llm.base import (
    FailureKind,
    ModelRequest,
    ProviderFailure,
    classify_status,
    parse_retry_after,
    redact,
)

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (the warm-up answers in memory)."""
        self.name = name
        self._secrets = (api_key,)
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)), transport=transport
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

    async def generate(self, request: ModelRequest) -> str:
        parts = [types.Part.from_text(text=request.prompt)]
        parts += [
            types.Part.from_bytes(data=image.data, mime_type=image.mime_type)
            for image in request.images
        ]
        config = types.GenerateContentConfig(system_instruction=request.system)
        if request.schema is not None:
            config.response_mime_type = "application/json"
            config.response_json_schema = dict(request.schema)
        try:
            response = await self._client.aio.models.generate_content(
                model=request.model,
                contents=[types.Content(role="user", parts=parts)],
                config=config,
            )
        except errors.APIError as exc:
            headers = getattr(exc.response, "headers", None)
            retry_after = parse_retry_after(headers.get("retry-after")) if headers else None
            if retry_after is None:
                retry_after = _retry_delay(exc.details)
            message = exc.message if isinstance(exc.message, str) else ""
            raise ProviderFailure(
                classify_status(exc.code),
                redact(f"{exc.status or ''} {message}".strip(), self._secrets),
                status=exc.code,
                retry_after=retry_after,
            ) from None
        except httpx.TimeoutException:
            raise ProviderFailure(FailureKind.TIMEOUT, "no answer in time") from None
        except httpx.TransportError as exc:
            raise ProviderFailure(FailureKind.UNREACHABLE, type(exc).__name__) from None
        text = response.text
        if not text or not text.strip():
            reason = ""
            if response.candidates and response.candidates[0].finish_reason:
                reason = f"finish reason {response.candidates[0].finish_reason}"
            elif response.prompt_feedback and response.prompt_feedback.block_reason:
                reason = f"blocked: {response.prompt_feedback.block_reason}"
            raise ProviderFailure(FailureKind.EMPTY, reason or "the answer had no text")
        return text

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()
        self._client.close()


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
