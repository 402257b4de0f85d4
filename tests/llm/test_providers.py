"""Each provider through its real client library against its fake server."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from pipeline.llm import FailureKind, ModelRequest, Provider, ProviderFailure
from pipeline.llm.base import JsonMode
from pipeline.llm.capped import AnswerTooLarge, capped_hooks
from pipeline.llm.gemini import GeminiProvider
from pipeline.llm.ollama import OllamaProvider
from pipeline.llm.openai_compat import OpenAICompatProvider
from pipeline.ports import ImageData
from tests.fakes.gemini import FakeGemini
from tests.fakes.llm_server import LlmFake, as_mapping, dead_url
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.serving import serve

KEY = "sk-fake-secret-key-1234567890wxyz"
SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"descriptions": {"type": "array", "items": {"type": "string"}}},
    "required": ["descriptions"],
    "additionalProperties": False,
}


@asynccontextmanager
async def ollama_chat() -> AsyncIterator[tuple[LlmFake, Provider]]:
    async with FakeOllama() as fake:
        provider = OllamaProvider(fake.url, timeout_s=5)
        yield fake, provider
        await provider.aclose()


@asynccontextmanager
async def ollama_generate() -> AsyncIterator[tuple[LlmFake, Provider]]:
    async with FakeOllama() as fake:
        provider = OllamaProvider(fake.url, timeout_s=5, api="generate")
        yield fake, provider
        await provider.aclose()


@asynccontextmanager
async def openrouter() -> AsyncIterator[tuple[LlmFake, Provider]]:
    async with FakeOpenAI() as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        yield fake, provider
        await provider.aclose()


@asynccontextmanager
async def gemini() -> AsyncIterator[tuple[LlmFake, Provider]]:
    async with FakeGemini() as fake:
        provider = GeminiProvider(KEY, base_url=fake.url, timeout_s=5)
        yield fake, provider
        await provider.aclose()


Opener = Callable[[], AbstractAsyncContextManager[tuple[LlmFake, Provider]]]
PROVIDERS: list[Opener] = [ollama_chat, ollama_generate, openrouter, gemini]
IDS = ["ollama-chat", "ollama-generate", "openrouter", "gemini"]
providers = pytest.mark.parametrize("opener", PROVIDERS, ids=IDS)


@providers
async def test_text_answer(opener: Opener) -> None:
    """A provider returns the model's text and sends our system prompt, prompt and model."""
    async with opener() as (fake, provider):
        fake.reply("a fox in the snow")
        text = await provider.generate(ModelRequest(model="m1", system="be brief", prompt="fox"))
    assert text == "a fox in the snow"
    [asked] = fake.requests
    assert (asked.model, asked.system, asked.prompt) == ("m1", "be brief", "fox")


@providers
async def test_json_schema_is_sent(opener: Opener) -> None:
    """Structured output: the JSON schema reaches the server in the provider's own field."""
    async with opener() as (fake, provider):
        fake.reply_json({"descriptions": ["a", "b"]})
        text = await provider.generate(
            ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA)
        )
    assert '"descriptions"' in text
    assert fake.requests[0].schema == SCHEMA


@providers
async def test_images_reach_the_model(opener: Opener) -> None:
    """Images go to the model as the bytes we gave, in order."""
    images = (ImageData(b"\xff\xd8first"), ImageData(b"\xff\xd8second"))
    async with opener() as (fake, provider):
        await provider.generate(ModelRequest(model="v", system="s", prompt="p", images=images))
    assert fake.requests[0].images == (b"\xff\xd8first", b"\xff\xd8second")


@providers
async def test_rate_limit_carries_retry_after(opener: Opener) -> None:
    """A 429 is reported as rate-limited with the server's Retry-After."""
    async with opener() as (fake, provider):
        fake.fail(429, retry_after=7)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    assert caught.value.kind is FailureKind.RATE_LIMITED
    assert caught.value.retry_after == 7
    assert caught.value.retryable
    assert len(fake.requests) == 1  # the library did not retry by itself


@providers
async def test_server_error_is_retryable(opener: Opener) -> None:
    """A 500 is a server error the chain may retry; the library itself does not."""
    async with opener() as (fake, provider):
        fake.fail(500)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    assert (caught.value.kind, caught.value.status) == (FailureKind.SERVER_ERROR, 500)
    assert caught.value.retryable
    assert len(fake.requests) == 1


@providers
async def test_bad_key_is_not_retried_and_not_echoed(opener: Opener) -> None:
    """A 401 is final for that provider, and no key appears in what we report."""
    async with opener() as (fake, provider):
        fake.fail(401)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    failure = caught.value
    assert (failure.kind, failure.status, failure.retryable) == (
        FailureKind.UNAUTHORIZED,
        401,
        False,
    )
    assert KEY not in str(failure)
    assert "sk-fake" not in str(failure)
    assert "refused the credentials" in failure.phrase


@providers
async def test_slow_answer_times_out(opener: Opener) -> None:
    """An answer slower than the client's timeout is reported as a timeout."""
    async with opener() as (fake, _):
        fake.reply("late", delay=2)
        short = _short_timeout(fake)
        with pytest.raises(ProviderFailure) as caught:
            await short.generate(ModelRequest(model="m", system="s", prompt="p"))
        await short.aclose()
    assert caught.value.kind is FailureKind.TIMEOUT


def _short_timeout(fake: LlmFake) -> Provider:
    if isinstance(fake, FakeOllama):
        return OllamaProvider(fake.url, timeout_s=0.3)
    if isinstance(fake, FakeOpenAI):
        return OpenAICompatProvider(fake.url, KEY, timeout_s=0.3)
    assert isinstance(fake, FakeGemini)
    return GeminiProvider(KEY, base_url=fake.url, timeout_s=0.3)


@pytest.mark.parametrize(
    "make",
    [
        lambda url: OllamaProvider(url, timeout_s=2),
        lambda url: OpenAICompatProvider(url + "/v1", KEY, timeout_s=2),
        lambda url: GeminiProvider(KEY, base_url=url, timeout_s=2),
    ],
    ids=["ollama", "openrouter", "gemini"],
)
async def test_server_down_is_unreachable(make: Callable[[str], Provider]) -> None:
    """A server that is down is reported as unreachable (not retried by the chain)."""
    provider = make(dead_url())
    with pytest.raises(ProviderFailure) as caught:
        await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    await provider.aclose()
    assert caught.value.kind is FailureKind.UNREACHABLE
    assert not caught.value.retryable


async def test_ollama_streaming_fake_speaks_ndjson() -> None:
    """The Ollama fake streams NDJSON like the real server when asked to (client stream=True)."""
    import ollama

    async with FakeOllama() as fake:
        fake.reply("hello there")
        client = ollama.AsyncClient(host=fake.url)
        parts = [
            chunk.message.content or ""
            async for chunk in await client.chat(
                model="m", messages=[{"role": "user", "content": "hi"}], stream=True
            )
        ]
        await client._client.aclose()
    assert "".join(parts) == "hello there"


def _make(fake: LlmFake, **options: Any) -> Provider:
    """The provider for `fake`, with `options` (json_mode, max_answer_bytes, timeout_s)."""
    options.setdefault("timeout_s", 5)
    if isinstance(fake, FakeOllama):
        return OllamaProvider(fake.url, **options)
    if isinstance(fake, FakeOpenAI):
        return OpenAICompatProvider(fake.url, KEY, **options)
    assert isinstance(fake, FakeGemini)
    return GeminiProvider(KEY, base_url=fake.url, **options)


#: per OpenAI JSON mode: the response_format sent, and whether the schema is in the prompt
OPENAI_MODES = [
    (
        JsonMode.SCHEMA,
        {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": SCHEMA, "strict": True},
        },
        False,
    ),
    (JsonMode.OBJECT_SCHEMA, {"type": "json_object", "schema": SCHEMA}, False),
    (JsonMode.OBJECT, {"type": "json_object"}, True),
    (JsonMode.OFF, None, True),
]


@pytest.mark.parametrize(
    ("mode", "response_format", "in_prompt"), OPENAI_MODES, ids=[m.value for m, *_ in OPENAI_MODES]
)
async def test_openai_json_modes_ask_as_each_server_takes(
    mode: JsonMode, response_format: object, in_prompt: bool
) -> None:
    """Each JSON mode sends the response_format that kind of server takes; where the server
    does not hold the answer to the schema, the schema is in the system prompt."""
    async with FakeOpenAI() as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5, json_mode=mode)
        await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    [asked] = fake.requests
    assert asked.body.get("response_format") == response_format
    assert ('"descriptions"' in asked.system) is in_prompt
    assert fake.probes == []  # a mode that is set is not probed


OTHER_MODES = [
    ("ollama", JsonMode.SCHEMA, SCHEMA, False),
    ("ollama", JsonMode.OBJECT, "json", True),
    ("ollama", JsonMode.OFF, None, True),
    ("gemini", JsonMode.SCHEMA, SCHEMA, False),
    ("gemini", JsonMode.OBJECT, "application/json", True),
    ("gemini", JsonMode.OFF, None, True),
]


@pytest.mark.parametrize(
    ("kind", "mode", "sent", "in_prompt"),
    OTHER_MODES,
    ids=[f"{kind}-{mode.value}" for kind, mode, *_ in OTHER_MODES],
)
async def test_ollama_and_gemini_json_modes_use_their_own_fields(
    kind: str, mode: JsonMode, sent: object, in_prompt: bool
) -> None:
    """Ollama's `format` (a schema or "json") and Gemini's schema or JSON mime type follow the
    mode; `object` and `off` put the schema in the system prompt."""
    fake: LlmFake = FakeOllama() if kind == "ollama" else FakeGemini()
    async with fake:
        provider = _make(fake, json_mode=mode)
        await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    [asked] = fake.requests
    if kind == "ollama":
        assert asked.body.get("format") == sent
    else:
        config = as_mapping(asked.body.get("generationConfig"))
        field = "responseJsonSchema" if mode is JsonMode.SCHEMA else "responseMimeType"
        assert config.get(field) == sent
    assert ('"descriptions"' in asked.system) is in_prompt


async def test_auto_finds_json_object_with_schema_on_llama_cpp_and_remembers_it() -> None:
    """Against llama.cpp's server, `auto` is refused json_schema (HTTP 500, a validation
    message) once, takes json_object with the schema, and asks no more probes after that."""
    async with FakeOpenAI() as fake:
        fake.llama_cpp()
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        for _ in range(2):
            await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    assert provider.json_mode("m") is JsonMode.OBJECT_SCHEMA
    kinds = [as_mapping(p.body.get("response_format")).get("type") for p in fake.probes]
    assert kinds == ["json_schema", "json_object"]
    sent = [r.body.get("response_format") for r in fake.requests]
    assert sent == [{"type": "json_object", "schema": SCHEMA}] * 2


async def test_auto_keeps_json_schema_where_the_server_takes_it() -> None:
    """On a server that takes json_schema (OpenAI, OpenRouter, vLLM), `auto` uses it after one
    probe; requests without a schema need no probe at all."""
    async with FakeOpenAI() as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        assert fake.probes == []
        await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    assert provider.json_mode("m") is JsonMode.SCHEMA
    assert len(fake.probes) == 1
    assert as_mapping(fake.requests[1].body.get("response_format")).get("type") == "json_schema"


async def test_auto_finds_the_mode_per_model() -> None:
    """One server may route each model to another backend: `auto` probes once per model."""
    async with FakeOpenAI() as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        for model in ("text", "eyes", "text"):
            await provider.generate(
                ModelRequest(model=model, system="s", prompt="p", schema=SCHEMA)
            )
        await provider.aclose()
    assert [p.model for p in fake.probes] == ["text", "eyes"]


async def test_a_json_schema_refusal_with_500_is_final() -> None:
    """llama.cpp's 500 "validation error" to a json_schema is a refusal: not retryable."""
    async with FakeOpenAI() as fake:
        fake.llama_cpp()
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5, json_mode=JsonMode.SCHEMA)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    assert (caught.value.kind, caught.value.status) == (FailureKind.REFUSED, 500)
    assert not caught.value.retryable
    assert "/srv/llama_cpp" not in caught.value.phrase  # the server's text stays in the log


async def test_a_plain_500_stays_retryable() -> None:
    """A 500 whose message does not say the request is wrong may pass: it is retried."""
    async with FakeOpenAI() as fake:
        fake.fail(500, message="llama_decode returned 1")
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        await provider.aclose()
    assert caught.value.kind is FailureKind.SERVER_ERROR


@providers
async def test_max_tokens_reaches_the_server(opener: Opener) -> None:
    """The task's token limit is sent in each provider's own field."""
    async with opener() as (fake, provider):
        await provider.generate(ModelRequest(model="m", system="s", prompt="p", max_tokens=321))
    body = fake.requests[0].body
    sent = (
        body.get("max_tokens")
        or as_mapping(body.get("options")).get("num_predict")
        or as_mapping(body.get("generationConfig")).get("maxOutputTokens")
    )
    assert sent == 321


async def test_a_model_that_takes_only_max_completion_tokens_gets_it() -> None:
    """OpenAI's reasoning models refuse `max_tokens` (400): the call is sent again with
    `max_completion_tokens`, and that model is sent the newer name from then on."""
    async with FakeOpenAI() as fake:
        fake.completion_tokens_only = True
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        for _ in range(2):
            await provider.generate(ModelRequest(model="o", system="s", prompt="p", max_tokens=99))
        await provider.aclose()
    sent = [(r.body.get("max_tokens"), r.body.get("max_completion_tokens")) for r in fake.requests]
    assert sent == [(99, None), (None, 99), (None, 99)]


@providers
async def test_an_answer_cut_by_the_token_limit_is_a_failure(opener: Opener) -> None:
    """`finish_reason: length` (Ollama's done_reason, Gemini's MAX_TOKENS) fails the call,
    and is not retried: the same limit cuts the same answer."""
    async with opener() as (fake, provider):
        fake.reply('{"descriptions": ["a fox in the', finish="length")
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p", max_tokens=16))
    assert caught.value.kind is FailureKind.TRUNCATED
    assert not caught.value.retryable
    assert "token limit" in caught.value.phrase


@providers
@pytest.mark.parametrize("body", ["whole", "chunked", "endless"])
async def test_an_answer_over_the_size_cap_fails_unread(opener: Opener, body: str) -> None:
    """An answer larger than the cap fails as TOO_LARGE, whether the server declares its size,
    sends it chunked or never stops: reading ends at the cap, not at the deadline."""
    async with opener() as (fake, _):
        fake.reply("x" * 300_000, body=body)
        provider = _make(fake, max_answer_bytes=64 * 1024, timeout_s=20)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        await provider.aclose()
    assert caught.value.kind is FailureKind.TOO_LARGE
    assert not caught.value.retryable


@providers
async def test_an_answer_under_the_cap_sent_chunked_is_whole(opener: Opener) -> None:
    """The cap counts bytes only: a chunked answer under it arrives complete."""
    async with opener() as (fake, provider):
        fake.reply("y" * 100_000, body="chunked")
        text = await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    assert text == "y" * 100_000


async def test_a_compressed_bomb_is_stopped_at_the_cap() -> None:
    """A gzip body that inflates past the cap is stopped there, however small it was sent (a
    server may compress though the request asked it not to); a small one reads whole."""
    bomb = gzip.compress(b" " * (8 * 1024 * 1024))
    asked: list[str] = []

    async def answer(request: web.Request) -> web.Response:
        asked.append(request.headers["accept-encoding"])
        body = bomb if request.path == "/bomb" else gzip.compress(b"fine")
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    app = web.Application()
    app.router.add_get("/{name}", answer)
    runner, port = await serve(app)
    ask_identity, cap = capped_hooks(64 * 1024)
    try:
        async with httpx.AsyncClient(
            event_hooks={"request": [ask_identity], "response": [cap]}
        ) as client:
            with pytest.raises(AnswerTooLarge):
                await client.get(f"http://127.0.0.1:{port}/bomb")
            assert (await client.get(f"http://127.0.0.1:{port}/small")).text == "fine"
    finally:
        await runner.cleanup()
    assert asked == ["identity", "identity"]


@providers
async def test_raw_control_characters_in_the_answer_reach_the_caller(opener: Opener) -> None:
    """Tabs, newlines, NUL and ESC inside a JSON string (grammar-constrained models write them)
    come through each client as the model wrote them; reading them is the parser's work."""
    value = {"descriptions": ["a fox\tin snow", "line\nbreak\x00and\x1bescape"]}
    async with opener() as (fake, provider):
        fake.reply_json(value, raw_controls=True)
        text = await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
    assert {"\t", "\x00", "\x1b"} <= set(text)
    assert json.loads(text, strict=False) == value


async def test_an_answer_without_a_refusal_field_reads() -> None:
    """llama.cpp's answers carry no `refusal` field (and a uuid id): they read as OpenAI's."""
    async with FakeOpenAI() as fake:
        fake.llama_cpp().reply("plain answer")
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        text = await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        fake.reply("   ")
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        await provider.aclose()
    assert text == "plain answer"
    assert caught.value.kind is FailureKind.EMPTY


@providers
async def test_ping_is_an_answer_of_any_kind(opener: Opener) -> None:
    """A server that answers HTTP passes the ping, with no model call."""
    async with opener() as (fake, provider):
        await provider.ping()
    assert fake.requests == []


@pytest.mark.parametrize(
    "make",
    [
        lambda url: OllamaProvider(url, timeout_s=2),
        lambda url: OpenAICompatProvider(url + "/v1", KEY, timeout_s=2),
        lambda url: GeminiProvider(KEY, base_url=url, timeout_s=2),
    ],
    ids=["ollama", "openrouter", "gemini"],
)
async def test_ping_of_a_server_that_is_down_fails(make: Callable[[str], Provider]) -> None:
    """A server that is down fails the ping as unreachable."""
    provider = make(dead_url())
    with pytest.raises(ProviderFailure) as caught:
        await provider.ping()
    await provider.aclose()
    assert caught.value.kind is FailureKind.UNREACHABLE


async def test_openai_key_is_sent_as_bearer() -> None:
    """The OpenAI-compatible provider authenticates with the configured key."""
    async with FakeOpenAI(api_key=KEY) as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        assert await provider.generate(ModelRequest(model="m", system="s", prompt="p")) == "ok"
        await provider.aclose()


async def test_gemini_key_is_sent_in_header() -> None:
    """The Gemini provider authenticates with x-goog-api-key on the v1beta path."""
    async with FakeGemini(api_key=KEY) as fake:
        provider = GeminiProvider(KEY, base_url=fake.url, timeout_s=5)
        assert await provider.generate(ModelRequest(model="g", system="s", prompt="p")) == "ok"
        await provider.aclose()
    assert fake.requests[0].path == "/v1beta/models/g:generateContent"


async def test_empty_answer_is_a_failure() -> None:
    """A blank answer counts as a failure of that provider, so the chain can move on."""
    async with FakeOpenAI() as fake:
        fake.reply("   ")
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        await provider.aclose()
    assert caught.value.kind is FailureKind.EMPTY


async def test_gemini_retry_info_in_body_is_honoured() -> None:
    """Gemini's RetryInfo in the error body counts as Retry-After when no header is sent."""
    async with FakeGemini() as fake:
        fake.fail(429, retry_after=37, header=False)
        provider = GeminiProvider(KEY, base_url=fake.url, timeout_s=5)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="g", system="s", prompt="p"))
        await provider.aclose()
    assert caught.value.retry_after == 37


async def test_openai_retry_after_ms_is_read() -> None:
    """OpenAI's retry-after-ms header is read in milliseconds."""

    class Precise(FakeOpenAI):
        def error(
            self, status: int, message: str | None, retry_after: str | None, *, header: bool = True
        ) -> web.Response:
            response = super().error(status, message, None)
            response.headers["retry-after-ms"] = "1500"
            return response

    async with Precise() as fake:
        fake.fail(429)
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5)
        with pytest.raises(ProviderFailure) as caught:
            await provider.generate(ModelRequest(model="m", system="s", prompt="p"))
        await provider.aclose()
    assert caught.value.retry_after == 1.5


#: per provider: the settings that make it the only one in the chains (its server dead), and
#: the path of the request its warm-up answers in memory
WARM_UPS = {
    "ollama": ("llm_chain=['ollama'], ollama_host=DEAD", "/api/chat"),
    "openrouter": (
        "llm_chain=['openrouter'], openrouter_api_key='sk-x', openrouter_base_url=DEAD + '/v1'",
        "/v1/chat/completions",
    ),
    "gemini": (
        "llm_chain=['gemini'], gemini_api_key='AIza-x', gemini_base_url=DEAD",
        "/v1beta/models/warm-up:generateContent",
    ),
}


@pytest.mark.parametrize("provider", list(WARM_UPS))
def test_opening_the_models_warms_up_each_client_without_a_request(provider: str) -> None:
    """Opening the model chains makes one call through each client library, answered in
    memory, in its thread: a run's first call then does not hold the event loop for the
    library's first-request work (benchmarks/first_call.py measures that). Nothing is sent to
    the provider's server, and the warm-up's call succeeds."""
    chosen, path = WARM_UPS[provider]
    dead = dead_url()
    probe = (
        "import asyncio, logging, sys\n"
        "from pipeline.llm.factory import open_models\n"
        "from pipeline.settings import load_settings\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "logging.getLogger('httpx').setLevel(logging.DEBUG)  # the warm-up's line shows\n"
        "logging.getLogger('httpx2').setLevel(logging.DEBUG)\n"
        f"DEAD = {dead!r}\n"
        f"settings = load_settings(None, {chosen})\n"
        "async def main():\n"
        "    async with open_models(settings) as models:\n"
        "        print(' '.join(models.providers))\n"
        "        print('anyio._backends._asyncio' in sys.modules)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert done.returncode == 0, done.stderr
    providers, backend_loaded = done.stdout.splitlines()[:2]
    assert provider in providers.split()
    assert backend_loaded == "True", "the transports' asyncio backend is imported already"
    assert f'POST http://warm-up.invalid{path} "HTTP/1.1 200 OK"' in done.stderr
    assert dead not in done.stderr
    assert "warm-up failed" not in done.stderr


@pytest.mark.parametrize(
    "module",
    [
        pytest.param("ollama", id="ollama"),
        pytest.param("openai_compat", id="openai-compatible"),
        pytest.param("gemini", id="gemini"),
    ],
)
def test_the_warm_up_leaves_no_line_in_the_log(
    module: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Starting the bot or a run prints no INFO line about a request to warm-up.invalid."""
    import importlib
    import logging

    warm_up = importlib.import_module(f"pipeline.llm.{module}").warm_up
    with caplog.at_level(logging.INFO):
        warm_up()
    assert [r.getMessage() for r in caplog.records if "warm-up" in r.getMessage()] == []
