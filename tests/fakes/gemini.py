"""A fake Gemini API: `POST /v1beta/models/{model}:generateContent` (key in `x-goog-api-key`).

Errors have Google's `{"error": {"code", "message", "status"}}` shape. A 429 with a
Retry-After also carries Google's `google.rpc.RetryInfo` detail. `fake.url` is the base URL for
`types.HttpOptions(base_url=...)`.
"""

from __future__ import annotations

import base64

from aiohttp import web

from tests.fakes.llm_server import LlmFake, Recorded, Step, as_list, as_mapping

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("API key not valid. Please pass a valid API key.", "INVALID_ARGUMENT"),
    401: (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
        "UNAUTHENTICATED",
    ),
    403: ("Method doesn't allow unregistered callers.", "PERMISSION_DENIED"),
    404: ("models/missing is not found for API version v1beta.", "NOT_FOUND"),
    429: (
        "You exceeded your current quota, please check your plan and billing details.",
        "RESOURCE_EXHAUSTED",
    ),
    500: ("An internal error has occurred. Please retry.", "INTERNAL"),
    503: ("The model is overloaded. Please try again later.", "UNAVAILABLE"),
}


def _b64decode(data: str) -> bytes:
    """Google accepts standard and URL-safe base64 (the Python SDK sends URL-safe)."""
    data = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(data + "=" * (-len(data) % 4))


def _texts(parts: object) -> list[str]:
    return [str(as_mapping(p)["text"]) for p in as_list(parts) if "text" in as_mapping(p)]


class FakeGemini(LlmFake):
    """generateContent, scripted per test."""

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/{version}/models/{action}", self._generate_content)

    def key_matches(self, request: web.Request) -> bool:
        return request.headers.get("x-goog-api-key", "") == self.api_key

    async def _generate_content(self, request: web.Request) -> web.StreamResponse:
        model, _, method = request.match_info["action"].partition(":")
        if method != "generateContent":
            return self.error(404, f"method {method} is not supported by the fake", None)
        body = as_mapping(await request.json())
        contents = [as_mapping(c) for c in as_list(body.get("contents"))]
        parts = as_list(contents[-1].get("parts")) if contents else []
        images = []
        for part in parts:
            inline = as_mapping(
                as_mapping(part).get("inlineData") or as_mapping(part).get("inline_data")
            )
            if inline:
                images.append(_b64decode(str(inline.get("data", ""))))
        config = as_mapping(body.get("generationConfig"))
        recorded = Recorded(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            model=model,
            system="\n".join(_texts(as_mapping(body.get("systemInstruction")).get("parts"))),
            prompt="\n".join(_texts(parts)),
            images=tuple(images),
            schema=config.get("responseJsonSchema") or config.get("responseSchema"),
        )
        return await self._answer(request, recorded)

    def error_body(
        self, status: int, message: str | None, retry_after: str | None
    ) -> dict[str, object]:
        default, state = _ERRORS.get(status, ("Unknown error.", "UNKNOWN"))
        error: dict[str, object] = {"code": status, "message": message or default, "status": state}
        if retry_after is not None:  # Google says when to come back in the body, as RetryInfo
            error["details"] = [
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after}s",
                }
            ]
        return {"error": error}

    async def success(
        self, request: web.Request, recorded: Recorded, text: str, step: Step
    ) -> web.StreamResponse:
        return await self.send(
            request,
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": text}], "role": "model"},
                        "finishReason": "MAX_TOKENS" if step.finish == "length" else "STOP",
                        "index": 0,
                    }
                ],
                "usageMetadata": {
                    "promptTokenCount": len(recorded.prompt.split()),
                    "candidatesTokenCount": len(text.split()),
                    "totalTokenCount": len(recorded.prompt.split()) + len(text.split()),
                },
                "modelVersion": recorded.model,
                "responseId": f"fake-{len(self.requests)}",
            },
            step,
        )
