"""A fake Ollama server: `POST /api/chat` and `POST /api/generate`, streamed (NDJSON) or not.

Errors are Ollama's `{"error": "..."}` bodies. `fake.url` is the host to give `ollama.AsyncClient`.
`GET /api/tags` lists `fake.pulled` (by default the settings' default models).
"""

from __future__ import annotations

import base64
import json

from aiohttp import web

from tests.fakes.llm_server import LlmFake, Recorded, Step, as_list, as_mapping

_CREATED = "2025-01-01T00:00:00.000000Z"

_ERRORS = {
    400: "invalid request",
    401: "unauthorized",
    403: "forbidden",
    404: 'model "missing" not found, try pulling it first',
    429: "too many requests",
    500: "llama runner process has terminated: exit status 2",
    503: "server busy, please try again.  maximum pending requests exceeded",
}


class FakeOllama(LlmFake):
    """Ollama's chat and generate endpoints, scripted per test."""

    #: the models `/api/tags` lists; None: the settings' defaults (OLLAMA_MODEL and
    #: OLLAMA_VISION_MODEL)
    pulled: list[str] | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/chat", self._chat)
        app.router.add_post("/api/generate", self._generate)
        app.router.add_get("/api/version", self._version)
        app.router.add_get("/api/tags", self._tags)

    async def _tags(self, request: web.Request) -> web.Response:
        names = self.pulled if self.pulled is not None else ["qwen3:8b", "qwen2.5vl:7b"]
        return web.json_response(
            {
                "models": [
                    {
                        "name": name,
                        "model": name,
                        "modified_at": _CREATED,
                        "size": 5_000_000_000,
                        "digest": "0" * 64,
                        "details": {"format": "gguf", "family": "qwen3"},
                    }
                    for name in names
                ]
            }
        )

    async def _version(self, request: web.Request) -> web.Response:
        return web.json_response({"version": "0.6.0"})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = as_mapping(await request.json())
        messages = [as_mapping(m) for m in as_list(body.get("messages"))]
        system = "\n".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
        users = [m for m in messages if m.get("role") == "user"]
        last = users[-1] if users else {}
        recorded = Recorded(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            model=str(body.get("model", "")),
            system=system,
            prompt=str(last.get("content", "")),
            images=tuple(base64.b64decode(str(i)) for i in as_list(last.get("images"))),
            schema=body.get("format"),
        )
        return await self._answer(request, recorded)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        body = as_mapping(await request.json())
        recorded = Recorded(
            path=request.path,
            headers=dict(request.headers),
            body=body,
            model=str(body.get("model", "")),
            system=str(body.get("system", "")),
            prompt=str(body.get("prompt", "")),
            images=tuple(base64.b64decode(str(i)) for i in as_list(body.get("images"))),
            schema=body.get("format"),
        )
        return await self._answer(request, recorded)

    def error_body(
        self, status: int, message: str | None, retry_after: str | None
    ) -> dict[str, object]:
        return {"error": message or _ERRORS.get(status, "error")}

    async def success(
        self, request: web.Request, recorded: Recorded, text: str, step: Step
    ) -> web.StreamResponse:
        chat = recorded.path == "/api/chat"
        stream = recorded.body.get("stream", True) is not False  # Ollama streams by default

        def part(fragment: str, done: bool) -> dict[str, object]:
            payload: dict[str, object] = {
                "model": recorded.model,
                "created_at": _CREATED,
                "done": done,
            }
            if chat:
                payload["message"] = {"role": "assistant", "content": fragment}
            else:
                payload["response"] = fragment
            if done:
                payload |= {
                    "done_reason": step.finish,
                    "total_duration": 1_000_000,
                    "load_duration": 1_000,
                    "prompt_eval_count": len(recorded.prompt.split()),
                    "eval_count": len(text.split()),
                    "eval_duration": 900_000,
                }
            return payload

        if not stream:
            return await self.send(request, part(text, True), step)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        middle = len(text) // 2
        for fragment in (text[:middle], text[middle:]):
            await response.write((json.dumps(part(fragment, False)) + "\n").encode())
        await response.write((json.dumps(part("", True)) + "\n").encode())
        await response.write_eof()
        return response
