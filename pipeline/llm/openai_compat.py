"""OpenRouter, or any OpenAI-compatible server, through `openai.AsyncOpenAI` and a base URL.

Structured output is `response_format={"type": "json_schema", ...}` (switchable off for servers
that do not support it); images go as base64 data URLs. The library's own retries are off
(`max_retries=0`): the fallback chain is the only one retrying. `warm_up()` (blocking, in a
thread) makes the SDK build its types before the first real call. Imports `pipeline.llm.base`
and `pipeline.ports` only.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping

import httpx2
import openai
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONSchema

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


def _server_message(body: object) -> str:
    """The `error.message` of an OpenAI-style error body, else nothing (never the raw body)."""
    if isinstance(body, dict):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, dict) else None
        if isinstance(message, str):
            return message
    return ""


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait from `retry-after-ms` (OpenAI) or `retry-after`."""
    milliseconds = parse_retry_after(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    return parse_retry_after(headers.get("retry-after"))


class OpenAICompatProvider:
    """TextModel / VisionModel calls to one OpenAI-compatible `/chat/completions` endpoint."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        name: str = "openrouter",
        timeout_s: float = 120.0,
        json_schema: bool = True,
        headers: dict[str, str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        self.name = name
        self._json_schema = json_schema
        self._secrets = (api_key,)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            default_headers=headers,
            http_client=(
                openai.DefaultAsyncHttpxClient(transport=transport)
                if transport is not None
                else None
            ),
        )

    def _messages(self, request: ModelRequest) -> list[ChatCompletionMessageParam]:
        if not request.images:
            return [
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.prompt},
            ]
        parts: list[ChatCompletionContentPartParam] = [{"type": "text", "text": request.prompt}]
        for image in request.images:
            encoded = base64.b64encode(image.data).decode("ascii")
            parts.append(
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:{image.mime_type};base64,{encoded}"},
                }
            )
        return [
            {"role": "system", "content": request.system},
            {"role": "user", "content": parts},
        ]

    async def generate(self, request: ModelRequest) -> str:
        messages = self._messages(request)
        try:
            if request.schema is not None and self._json_schema:
                response_format: ResponseFormatJSONSchema = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "answer",
                        "schema": dict(request.schema),
                        "strict": True,
                    },
                }
                completion = await self._client.chat.completions.create(
                    model=request.model, messages=messages, response_format=response_format
                )
            else:
                completion = await self._client.chat.completions.create(
                    model=request.model, messages=messages
                )
        except openai.APIStatusError as exc:
            raise ProviderFailure(
                classify_status(exc.status_code),
                redact(_server_message(exc.body), self._secrets),
                status=exc.status_code,
                retry_after=_retry_after(exc.response.headers),
            ) from None
        except openai.APITimeoutError:
            raise ProviderFailure(FailureKind.TIMEOUT, "no answer in time") from None
        except openai.APIConnectionError:
            raise ProviderFailure(FailureKind.UNREACHABLE, "connection failed") from None
        except openai.APIError as exc:  # e.g. a 200 whose body is not a completion
            raise ProviderFailure(FailureKind.SERVER_ERROR, type(exc).__name__) from None
        if not completion.choices:
            raise ProviderFailure(FailureKind.EMPTY, "no choices in the answer")
        message = completion.choices[0].message
        text = message.content
        if not text or not text.strip():
            detail = "the model refused" if message.refusal else "the answer had no text"
            raise ProviderFailure(FailureKind.EMPTY, detail)
        return text

    async def aclose(self) -> None:
        await self._client.close()


#: what the warm-up's in-memory server answers: the smallest chat completion
_WARM_UP_ANSWER = {
    "id": "warm-up",
    "object": "chat.completion",
    "created": 0,
    "model": "warm-up",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "{}"},
            "finish_reason": "stop",
        }
    ],
}


def warm_up() -> None:
    """`pipeline.llm.base.warm_up` for the OpenAI SDK (blocking: in a thread, once per process)."""
    answer = httpx2.MockTransport(lambda _: httpx2.Response(200, json=_WARM_UP_ANSWER))
    base.warm_up(
        "OpenAI",
        lambda: OpenAICompatProvider(
            "http://warm-up.invalid/v1", "warm-up", name="warm-up", transport=answer
        ),
    )
