"""OpenRouter, or any OpenAI-compatible server, through `openai.AsyncOpenAI` and a base URL.

Structured output follows the JSON mode (`pipeline.llm.base.JsonMode`): `json_schema`,
`json_object` with a `schema` (llama-cpp-python), `json_object` with the schema in the prompt,
or nothing; `auto` finds the first the server takes. Images go as base64 data URLs; every call
sends `max_tokens` (`max_completion_tokens` to a model that refuses the older name), and
`finish_reason: length` is a TRUNCATED failure. Answers are read
with a size cap (`pipeline.llm.capped`). The library's own retries are off
(`max_retries=0`): the fallback chain is the only one retrying. `warm_up()` (blocking, in a
thread) makes the SDK build its types before the first real call. Imports `pipeline.llm.base`,
`pipeline.llm.capped` and `pipeline.ports` only.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping

import httpx2
import openai
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam
from openai.types.shared_params import ResponseFormatJSONObject, ResponseFormatJSONSchema

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
from pipeline.llm.capped import AnswerTooLarge, capped_hooks2

#: the JSON modes an OpenAI-compatible server may take, in the order `auto` tries them
MODES = (JsonMode.SCHEMA, JsonMode.OBJECT_SCHEMA, JsonMode.OBJECT, JsonMode.OFF)

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
        json_mode: JsonMode = JsonMode.AUTO,
        max_answer_bytes: int = 256 * 1024,
        headers: dict[str, str] | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (the warm-up answers in memory)."""
        self.name = name
        self.base_url = base_url
        self._modes = ModeFinder(json_mode, MODES, name=name)
        #: models that refused `max_tokens` for `max_completion_tokens` (OpenAI's newer ones)
        self._completion_tokens: set[str] = set()
        self._secrets = (api_key,)
        ask_identity, cap = capped_hooks2(max_answer_bytes)
        self._client = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=0,
            default_headers=headers,
            http_client=openai.DefaultAsyncHttpxClient(
                transport=transport,
                event_hooks={"request": [ask_identity], "response": [cap]},
            ),
        )

    def json_mode(self, model: str) -> JsonMode:
        return self._modes.mode(model)

    def _messages(self, request: ModelRequest, system: str) -> list[ChatCompletionMessageParam]:
        if not request.images:
            return [
                {"role": "system", "content": system},
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
            {"role": "system", "content": system},
            {"role": "user", "content": parts},
        ]

    async def generate(self, request: ModelRequest) -> str:
        return await self._modes.send(request, self._send)

    async def _send(self, request: ModelRequest, mode: JsonMode) -> str:
        system = request.system
        extra_body: dict[str, object] | None = None
        response_format: ResponseFormatJSONSchema | ResponseFormatJSONObject | None = None
        schema = dict(request.schema) if request.schema is not None else None
        if schema is not None:
            if mode is JsonMode.SCHEMA:
                response_format = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": schema, "strict": True},
                }
            elif mode is JsonMode.OBJECT_SCHEMA:  # not in the SDK's types: sent as it is
                extra_body = {"response_format": {"type": "json_object", "schema": schema}}
            else:
                system = f"{system}\n\n{schema_instruction(schema)}".strip()
                if mode is JsonMode.OBJECT:
                    response_format = {"type": "json_object"}
        messages = self._messages(request, system)
        tokens = _omit(request.max_tokens)
        newer = request.model in self._completion_tokens
        try:
            completion = await self._client.chat.completions.create(
                model=request.model,
                messages=messages,
                response_format=response_format if response_format is not None else openai.omit,
                max_tokens=openai.omit if newer else tokens,
                max_completion_tokens=tokens if newer else openai.omit,
                extra_body=extra_body,
            )
        except openai.APIStatusError as exc:
            message = _server_message(exc.body)
            if exc.status_code == 400 and "max_completion_tokens" in message and not newer:
                # OpenAI's reasoning models (o-series, gpt-5) take only the newer name
                self._completion_tokens.add(request.model)
                return await self._send(request, mode)
            raise ProviderFailure(
                classify_status(exc.status_code, message),
                redact(message, self._secrets),
                status=exc.status_code,
                retry_after=_retry_after(exc.response.headers),
            ) from None
        except AnswerTooLarge as exc:
            raise ProviderFailure(FailureKind.TOO_LARGE, str(exc)) from None
        except openai.APITimeoutError:
            raise ProviderFailure(FailureKind.TIMEOUT, "no answer in time") from None
        except openai.APIConnectionError:
            raise ProviderFailure(FailureKind.UNREACHABLE, "connection failed") from None
        except openai.APIError as exc:  # e.g. a 200 whose body is not a completion
            raise ProviderFailure(FailureKind.SERVER_ERROR, type(exc).__name__) from None
        if not completion.choices:
            raise ProviderFailure(FailureKind.EMPTY, "no choices in the answer")
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            limit = f"max_tokens {request.max_tokens}" if request.max_tokens else "its limit"
            raise ProviderFailure(FailureKind.TRUNCATED, f"finish_reason length ({limit})")
        text = choice.message.content
        if not text or not text.strip():
            refused = getattr(choice.message, "refusal", None)
            detail = "the model refused" if refused else "the answer had no text"
            raise ProviderFailure(FailureKind.EMPTY, detail)
        return text

    async def ping(self) -> None:
        try:
            await self._client.models.list()
        except openai.APIStatusError:
            return  # it answered
        except AnswerTooLarge:
            return
        except openai.APITimeoutError:
            raise ProviderFailure(FailureKind.TIMEOUT, "no answer in time") from None
        except openai.APIConnectionError:
            raise ProviderFailure(FailureKind.UNREACHABLE, "connection failed") from None
        except openai.APIError:
            return  # an answer, if not a model list

    async def aclose(self) -> None:
        await self._client.close()


def _omit(value: int | None) -> int | openai.Omit:
    return value if value is not None else openai.omit


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
            "http://warm-up.invalid/v1",
            "warm-up",
            name="warm-up",
            json_mode=JsonMode.SCHEMA,
            transport=answer,
        ),
    )
