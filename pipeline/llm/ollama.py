"""Ollama through the `ollama` AsyncClient: `/api/chat` (default) or `/api/generate`.

Structured output is Ollama's `format=<JSON schema>`; images go as base64 in the message. The
httpx client underneath has no retries of its own. `warm_up()` (blocking, in a thread) makes the
library build its types before the first real call. Imports `pipeline.llm.base` only.
"""

from __future__ import annotations

import logging
from typing import Literal

import httpx
import ollama

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
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (the warm-up answers in memory)."""
        self.name = name
        self._api = api
        self._keep_alive = keep_alive
        self._secrets = (api_key,) if api_key else ()
        headers = {"authorization": f"Bearer {api_key}"} if api_key else None
        self._client = ollama.AsyncClient(
            host=host,
            timeout=httpx.Timeout(timeout_s, connect=min(10.0, timeout_s)),
            headers=headers,
            event_hooks={"response": [_raise_for_status]},
            transport=transport,
        )

    async def generate(self, request: ModelRequest) -> str:
        images = [image.data for image in request.images]
        fmt = dict(request.schema) if request.schema is not None else None
        try:
            if self._api == "generate":
                answer = await self._client.generate(
                    model=request.model,
                    prompt=request.prompt,
                    system=request.system,
                    images=images or None,
                    format=fmt,
                    stream=False,
                    keep_alive=self._keep_alive,
                )
                text = answer.response
            else:
                message: dict[str, object] = {"role": "user", "content": request.prompt}
                if images:
                    message["images"] = images
                chat = await self._client.chat(
                    model=request.model,
                    messages=[{"role": "system", "content": request.system}, message],
                    format=fmt,
                    stream=False,
                    keep_alive=self._keep_alive,
                )
                text = chat.message.content
        except _HttpError as exc:
            raise ProviderFailure(
                classify_status(exc.status),
                redact(exc.message, self._secrets),
                status=exc.status,
                retry_after=exc.retry_after,
            ) from None
        except ollama.ResponseError as exc:
            status = exc.status_code if exc.status_code > 0 else None
            kind = classify_status(status) if status else FailureKind.SERVER_ERROR
            raise ProviderFailure(
                kind, redact(str(exc.error), self._secrets), status=status
            ) from None
        except httpx.TimeoutException:
            raise ProviderFailure(FailureKind.TIMEOUT, "no answer in time") from None
        except (ConnectionError, httpx.TransportError) as exc:
            raise ProviderFailure(FailureKind.UNREACHABLE, type(exc).__name__) from None
        if not text or not text.strip():
            raise ProviderFailure(FailureKind.EMPTY, "the answer had no text")
        return text

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
        lambda: OllamaProvider("http://warm-up.invalid", name="warm-up", transport=answer),
    )
