"""A fake OpenAI-compatible server (OpenAI, OpenRouter): `POST /v1/chat/completions`.

Errors have OpenAI's `{"error": {"message", "type", "param", "code"}}` shape (the 401 message
quotes part of the key, as OpenAI's does). `fake.url` ends in `/v1`: the client's base URL.
"""

from __future__ import annotations

import base64

from aiohttp import web

from tests.fakes.llm_server import LlmFake, Recorded, as_list, as_mapping

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


class FakeOpenAI(LlmFake):
    """The chat completions endpoint, scripted per test."""

    base_path = "/v1"

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)

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
        schema = as_mapping(response_format.get("json_schema")).get("schema")
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
        self, request: web.Request, recorded: Recorded, text: str
    ) -> web.StreamResponse:
        return web.json_response(
            {
                "id": f"chatcmpl-fake{len(self.requests)}",
                "object": "chat.completion",
                "created": 1_735_689_600,
                "model": recorded.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text, "refusal": None},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {
                    "prompt_tokens": len(recorded.prompt.split()),
                    "completion_tokens": len(text.split()),
                    "total_tokens": len(recorded.prompt.split()) + len(text.split()),
                },
            }
        )
