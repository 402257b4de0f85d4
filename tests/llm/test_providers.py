"""Each provider through its real client library against its fake server."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest

from pipeline.llm import FailureKind, ModelRequest, Provider, ProviderFailure
from pipeline.llm.gemini import GeminiProvider
from pipeline.llm.ollama import OllamaProvider
from pipeline.llm.openai_compat import OpenAICompatProvider
from pipeline.ports import ImageData
from tests.fakes.gemini import FakeGemini
from tests.fakes.llm_server import LlmFake, dead_url
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI

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


async def test_openrouter_without_json_schema_support() -> None:
    """With json_schema off (a server without structured output), no response_format is sent."""
    async with FakeOpenAI() as fake:
        provider = OpenAICompatProvider(fake.url, KEY, timeout_s=5, json_schema=False)
        await provider.generate(ModelRequest(model="m", system="s", prompt="p", schema=SCHEMA))
        await provider.aclose()
    assert "response_format" not in fake.requests[0].body


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
    from aiohttp import web

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
