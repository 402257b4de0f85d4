"""The fallback chain over real clients and fakes: retries, backoff, Retry-After, cool-down."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from random import Random

import pytest

from pipeline.errors import ConfigError, ModelError
from pipeline.llm import FallbackChain, Health, Lane, RateLimiter, RetryPolicy, Task
from pipeline.llm.base import PROBE_SCHEMA, JsonMode, Provider
from pipeline.llm.factory import build_models
from pipeline.llm.gemini import GeminiProvider
from pipeline.llm.ollama import OllamaProvider
from pipeline.llm.openai_compat import OpenAICompatProvider
from pipeline.ports import ImageData
from pipeline.settings import load_settings
from tests.doubles import FakeTime
from tests.fakes.gemini import FakeGemini
from tests.fakes.llm_server import LlmFake, as_mapping, dead_url
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI

KEY = "sk-or-v1-secretsecretsecret"
GKEY = "AIzaSyFAKEFAKEFAKEFAKEFAKE"
MODELS = {task: f"{task.value}-model" for task in Task}


@pytest.fixture
def time() -> FakeTime:
    return FakeTime()


@pytest.fixture
async def stack() -> AsyncIterator[AsyncExitStack]:
    async with AsyncExitStack() as s:
        yield s


def lane(provider: Provider, time: FakeTime, *, rpm: float = 0, cooldown_after: int = 3) -> Lane:
    return Lane(
        provider=provider,
        models=MODELS,
        limiter=RateLimiter(rpm, clock=time.clock, sleep=time.sleep),
        health=Health(failures_before_cooldown=cooldown_after, cooldown_s=300, clock=time.clock),
    )


def chain(
    lanes: list[Lane], time: FakeTime, *, attempts: int = 3, timeout_s: float = 5
) -> FallbackChain:
    return FallbackChain(
        Task.DESCRIPTION,
        lanes,
        timeout_s=timeout_s,
        policy=RetryPolicy(attempts=attempts, backoff_s=1, backoff_max_s=30, retry_after_max_s=60),
        sleep=time.sleep,
        rng=Random(1),
    )


async def test_first_down_second_rate_limited_third_answers(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """With Ollama down and OpenRouter rate-limited, the answer comes from Gemini."""
    openrouter = await stack.enter_async_context(FakeOpenAI())
    gemini = await stack.enter_async_context(FakeGemini())
    openrouter.always_fail(429, retry_after=2)
    gemini.reply("from gemini")
    providers: list[Provider] = [
        OllamaProvider(dead_url(), timeout_s=2),
        OpenAICompatProvider(openrouter.url, KEY, timeout_s=2),
        GeminiProvider(GKEY, base_url=gemini.url, timeout_s=2),
    ]
    for provider in providers:
        stack.push_async_callback(provider.aclose)
    lanes = [lane(p, time) for p in providers]

    answer = await chain(lanes, time).complete(system="s", prompt="p")

    assert answer == "from gemini"
    assert len(openrouter.requests) == 3  # tried `attempts` times
    assert all(s >= 2 for s in time.sleeps)  # each wait honoured Retry-After
    assert gemini.requests[0].model == "description-model"


async def test_retry_after_is_honoured_then_same_provider_answers(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """A 429 with Retry-After: 7 waits 7 s, then the same provider answers."""
    fake = await stack.enter_async_context(FakeOpenAI())
    fake.fail(429, retry_after=7).reply("after waiting")
    provider = OpenAICompatProvider(fake.url, KEY, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time).complete(system="s", prompt="p")

    assert answer == "after waiting"
    assert len(time.sleeps) == 1
    assert 7 <= time.sleeps[0] < 8


async def test_server_errors_back_off_exponentially(time: FakeTime, stack: AsyncExitStack) -> None:
    """Two 500s are retried after growing waits (with jitter), then the answer arrives."""
    fake = await stack.enter_async_context(FakeOllama())
    fake.fail(500, times=2).reply("third time lucky")
    provider = OllamaProvider(fake.url, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time).complete(system="s", prompt="p")

    assert answer == "third time lucky"
    first, second = time.sleeps
    assert 1 <= first <= 1.5
    assert 2 <= second <= 3


async def test_bad_key_moves_on_without_retrying(time: FakeTime, stack: AsyncExitStack) -> None:
    """A 401 from one provider is not retried: the next provider answers at once."""
    bad = await stack.enter_async_context(FakeGemini())
    good = await stack.enter_async_context(FakeOllama())
    bad.fail(401)
    good.reply("fine")
    first = GeminiProvider(GKEY, base_url=bad.url, timeout_s=2)
    second = OllamaProvider(good.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain([lane(first, time), lane(second, time)], time).complete(
        system="s", prompt="p"
    )

    assert answer == "fine"
    assert len(bad.requests) == 1
    assert time.sleeps == []


async def test_all_failing_gives_one_safe_error(
    time: FakeTime, stack: AsyncExitStack, caplog: pytest.LogCaptureFixture
) -> None:
    """When every provider fails, one error says what each did, without keys or server text."""
    caplog.set_level("DEBUG")
    openrouter = await stack.enter_async_context(FakeOpenAI())
    gemini = await stack.enter_async_context(FakeGemini())
    openrouter.always_fail(401)
    gemini.always_fail(429, retry_after=1)
    providers: list[Provider] = [
        OllamaProvider(dead_url(), timeout_s=2),
        OpenAICompatProvider(openrouter.url, KEY, timeout_s=2),
        GeminiProvider(GKEY, base_url=gemini.url, timeout_s=2),
    ]
    for provider in providers:
        stack.push_async_callback(provider.aclose)

    with pytest.raises(ModelError) as caught:
        await chain([lane(p, time) for p in providers], time).complete(system="s", prompt="p")

    shown = caught.value.user_message
    assert "ollama could not be reached" in shown
    assert "openrouter refused the credentials (HTTP 401)" in shown
    assert "gemini was rate-limited (HTTP 429)" in shown
    for leak in (KEY, GKEY, "sk-fake", "Incorrect API key", "quota"):
        assert leak not in shown
    for secret in (KEY, GKEY, "sk-fake"):
        assert secret not in str(caught.value)
        assert secret not in caplog.text


async def test_long_retry_after_moves_on(time: FakeTime, stack: AsyncExitStack) -> None:
    """A Retry-After longer than we are willing to wait skips to the next provider at once."""
    limited = await stack.enter_async_context(FakeOpenAI())
    other = await stack.enter_async_context(FakeOllama())
    limited.fail(429, retry_after=3600)
    other.reply("no waiting")
    first = OpenAICompatProvider(limited.url, KEY, timeout_s=2)
    second = OllamaProvider(other.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain([lane(first, time), lane(second, time)], time).complete(
        system="s", prompt="p"
    )

    assert answer == "no waiting"
    assert time.sleeps == []


async def test_slow_provider_times_out_and_next_answers(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """A provider slower than the chain's timeout is given up on; the next one answers."""
    slow = await stack.enter_async_context(FakeOllama())
    fast = await stack.enter_async_context(FakeGemini())
    slow.always("too late", delay=2)
    fast.reply("quick")
    first = OllamaProvider(slow.url, timeout_s=10)
    second = GeminiProvider(GKEY, base_url=fast.url, timeout_s=10)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain(
        [lane(first, time), lane(second, time)], time, attempts=1, timeout_s=0.2
    ).complete(system="s", prompt="p")

    assert answer == "quick"


async def test_failing_provider_cools_down(time: FakeTime, stack: AsyncExitStack) -> None:
    """After three failed calls in a row a provider is skipped, until its cool-down ends."""
    broken = await stack.enter_async_context(FakeOpenAI())
    backup = await stack.enter_async_context(FakeOllama())
    broken.always_fail(500)
    first = OpenAICompatProvider(broken.url, KEY, timeout_s=2)
    second = OllamaProvider(backup.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)
    models = chain([lane(first, time), lane(second, time)], time, attempts=1)

    for _ in range(3):
        await models.complete(system="s", prompt="p")
    assert len(broken.requests) == 3

    await models.complete(system="s", prompt="p")
    assert len(broken.requests) == 3  # skipped: cooling down

    time.advance(301)
    await models.complete(system="s", prompt="p")
    assert len(broken.requests) == 4  # tried again after the cool-down


async def test_cooling_provider_is_named_when_all_fail(time: FakeTime) -> None:
    """When the only provider is cooling down, the error says so instead of calling it."""
    provider = OllamaProvider(dead_url(), timeout_s=2)
    models = chain([lane(provider, time, cooldown_after=1)], time, attempts=1)
    with pytest.raises(ModelError):
        await models.complete(system="s", prompt="p")
    with pytest.raises(ModelError) as caught:
        await models.complete(system="s", prompt="p")
    await provider.aclose()
    assert "cooling down" in caught.value.user_message


async def test_rate_limiter_spaces_requests(time: FakeTime) -> None:
    """At 60 requests a minute, the third of three quick calls waits two seconds in all."""
    limiter = RateLimiter(60, clock=time.clock, sleep=time.sleep)
    waits = [await limiter.acquire() for _ in range(3)]
    assert waits[0] == 0
    assert sum(waits) == pytest.approx(2.0)


async def test_rate_limit_applies_to_the_provider(time: FakeTime, stack: AsyncExitStack) -> None:
    """A provider limited to 30 a minute makes back-to-back calls wait 2 s each."""
    fake = await stack.enter_async_context(FakeGemini())
    provider = GeminiProvider(GKEY, base_url=fake.url, timeout_s=2)
    stack.push_async_callback(provider.aclose)
    models = chain([lane(provider, time, rpm=30)], time)
    for _ in range(3):
        await models.complete(system="s", prompt="p")
    assert time.sleeps == pytest.approx([2.0, 2.0])


async def test_models_built_from_settings(time: FakeTime, stack: AsyncExitStack) -> None:
    """Settings choose the providers, their order and the model name per task."""
    ollama = await stack.enter_async_context(FakeOllama())
    openrouter = await stack.enter_async_context(FakeOpenAI())
    ollama.always_fail(503)
    settings = load_settings(
        env_file=None,
        llm_chain="ollama,openrouter",
        ollama_host=ollama.url,
        openrouter_base_url=openrouter.url,
        openrouter_api_key=KEY,
        openrouter_model="or-text",
        openrouter_vision_model="or-eyes",
        openrouter_caption_model="or-words",
        gemini_api_key="",
        llm_attempts=1,
    )
    models = build_models(settings, sleep=time.sleep, clock=time.clock)
    stack.push_async_callback(models.aclose)

    await models.description.complete(system="s", prompt="p")
    await models.caption.complete(system="s", prompt="p")
    await models.vision.look(system="s", prompt="p", images=[ImageData(b"img")])

    assert models.description.names == ("ollama", "openrouter")
    assert [r.model for r in openrouter.requests] == ["or-text", "or-words", "or-eyes"]


def test_unknown_provider_in_chain_is_a_config_error() -> None:
    """A typo in LLM_CHAIN is reported with the variable's name."""
    settings = load_settings(env_file=None, llm_chain="ollama,chatgpt")
    with pytest.raises(ConfigError, match="LLM_CHAIN: unknown provider 'chatgpt'"):
        build_models(settings)


def test_chain_without_usable_provider_is_a_config_error() -> None:
    """A chain naming only providers without keys is reported before any call."""
    settings = load_settings(
        env_file=None, llm_chain_vision="gemini", gemini_api_key="", openrouter_api_key=""
    )
    with pytest.raises(ConfigError, match="LLM_CHAIN_VISION"):
        build_models(settings)


SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "hashtags": {"type": "array"}},
    "required": ["text", "hashtags"],
}
CAPTION = {"text": "Testy\tfound\nsnow", "hashtags": ["#fox"]}


async def test_chain_on_llama_cpp_finds_its_json_mode(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """llama.cpp's server refuses json_schema with a 500: the chain neither retries it nor
    gives up on the server; `auto` takes json_object with a schema and the answer is used."""
    llama = await stack.enter_async_context(FakeOpenAI())
    llama.llama_cpp().reply_json(CAPTION)
    provider = OpenAICompatProvider(llama.url, KEY, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time).complete(
        system="s", prompt="p", schema=SCHEMA
    )

    assert json.loads(answer) == CAPTION
    assert [p.body["response_format"] for p in llama.probes] == [
        {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": PROBE_SCHEMA, "strict": True},
        },
        {"type": "json_object", "schema": PROBE_SCHEMA},
    ]
    assert time.sleeps == []


async def test_a_refused_json_schema_moves_on_at_once(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """With json_schema set by hand, llama.cpp's 500 refusal is not retried: the next
    provider answers with no backoff."""
    llama = await stack.enter_async_context(FakeOpenAI())
    backup = await stack.enter_async_context(FakeOllama())
    llama.llama_cpp()
    backup.reply_json(CAPTION)
    first = OpenAICompatProvider(llama.url, KEY, timeout_s=2, json_mode=JsonMode.SCHEMA)
    second = OllamaProvider(backup.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain([lane(first, time), lane(second, time)], time).complete(
        system="s", prompt="p", schema=SCHEMA
    )

    assert json.loads(answer) == CAPTION
    assert len(llama.requests) == 1
    assert time.sleeps == []


@pytest.mark.parametrize("fake_kind", ["openai", "ollama", "gemini"])
async def test_a_cut_answer_is_never_used(
    fake_kind: str, time: FakeTime, stack: AsyncExitStack
) -> None:
    """An answer cut by the token limit fails that provider at once (no retry); the next one's
    whole answer is used. The chain sends its task's max_tokens."""
    cut: LlmFake = {"openai": FakeOpenAI, "ollama": FakeOllama, "gemini": FakeGemini}[fake_kind]()
    await stack.enter_async_context(cut)
    backup = await stack.enter_async_context(FakeOllama())
    cut.reply("Testy walks " * 50, finish="length")
    backup.reply("Testy naps.")
    first: Provider = (
        OpenAICompatProvider(cut.url, KEY, timeout_s=2)
        if isinstance(cut, FakeOpenAI)
        else OllamaProvider(cut.url, timeout_s=2)
        if isinstance(cut, FakeOllama)
        else GeminiProvider(GKEY, base_url=cut.url, timeout_s=2)
    )
    second = OllamaProvider(backup.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)
    models = FallbackChain(
        Task.PROMPT,
        [lane(first, time), lane(second, time)],
        max_tokens=64,
        policy=RetryPolicy(attempts=3),
        sleep=time.sleep,
    )

    answer = await models.complete(system="s", prompt="p")

    assert answer == "Testy naps."
    assert len(cut.requests) == 1
    assert as_mapping(backup.requests[0].body.get("options")).get("num_predict") == 64


async def test_an_oversized_answer_moves_on(time: FakeTime, stack: AsyncExitStack) -> None:
    """An answer over the size cap is that provider's failure; the next provider answers."""
    big = await stack.enter_async_context(FakeOpenAI())
    backup = await stack.enter_async_context(FakeGemini())
    big.reply("z" * 200_000, body="endless")
    backup.reply("small")
    first = OpenAICompatProvider(big.url, KEY, timeout_s=5, max_answer_bytes=32 * 1024)
    second = GeminiProvider(GKEY, base_url=backup.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain([lane(first, time), lane(second, time)], time).complete(
        system="s", prompt="p"
    )

    assert answer == "small"
    assert len(big.requests) == 1


async def test_a_trickling_server_hits_the_deadline(time: FakeTime, stack: AsyncExitStack) -> None:
    """A server that sends its answer a byte at a time never passes a read timeout, but the
    chain's deadline covers the whole call: the next provider answers."""
    slow = await stack.enter_async_context(FakeOpenAI())
    backup = await stack.enter_async_context(FakeOllama())
    slow.reply("a long answer", body="trickle", trickle_s=0.05)
    backup.reply("in time")
    first = OpenAICompatProvider(slow.url, KEY, timeout_s=30)
    second = OllamaProvider(backup.url, timeout_s=2)
    stack.push_async_callback(first.aclose)
    stack.push_async_callback(second.aclose)

    answer = await chain(
        [lane(first, time), lane(second, time)], time, attempts=1, timeout_s=0.5
    ).complete(system="s", prompt="p")

    assert answer == "in time"


async def test_an_answer_without_a_refusal_field_is_used(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """llama.cpp's answer shape (no `refusal`, a uuid id) is an ordinary answer to the chain."""
    llama = await stack.enter_async_context(FakeOpenAI())
    llama.llama_cpp().reply("Testy reads a map.")
    provider = OpenAICompatProvider(llama.url, KEY, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time).complete(system="s", prompt="p")

    assert answer == "Testy reads a map."


async def test_control_characters_inside_json_strings_are_an_answer(
    time: FakeTime, stack: AsyncExitStack
) -> None:
    """A caption whose JSON strings hold raw tabs and newlines (llama.cpp's grammar output) is
    that provider's answer, not garbled: the chain passes it on as the model wrote it."""
    # (Until the tolerant JSON reader of the llmtext branch lands, the chain's JSON check passes
    # this only through the inner hashtag list; with it, through the whole object.)
    llama = await stack.enter_async_context(FakeOpenAI())
    llama.llama_cpp().reply_json(CAPTION)
    llama.raw_controls = True
    provider = OpenAICompatProvider(llama.url, KEY, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time, attempts=1).complete(
        system="s", prompt="p", schema=SCHEMA
    )

    assert json.loads(answer, strict=False) == CAPTION


async def test_a_blind_model_answers_all_the_same(time: FakeTime, stack: AsyncExitStack) -> None:
    """A text-only model ignores the image and answers 200: the chain cannot tell (the model
    doctor can, tests/llm/test_doctor.py), and the image did reach the server."""
    blind = await stack.enter_async_context(FakeOpenAI())
    blind.blind = True
    blind.reply('{"score": 0.9, "reason": "lovely"}')
    provider = OpenAICompatProvider(blind.url, KEY, timeout_s=2)
    stack.push_async_callback(provider.aclose)

    answer = await chain([lane(provider, time)], time).look(
        system="s", prompt="p", images=[ImageData(b"\xff\xd8img")]
    )

    assert json.loads(answer)["score"] == 0.9
    assert blind.requests[0].images == ()


def test_max_tokens_per_task_come_from_settings() -> None:
    """Each task's chain sends its own LLM_MAX_TOKENS_* setting."""
    settings = load_settings(
        env_file=None, llm_chain="ollama", llm_max_tokens_prompt=111, llm_max_tokens_vision=222
    )
    models = build_models(settings)
    assert (models.prompt.max_tokens, models.vision.max_tokens) == (111, 222)
    assert models.description.max_tokens == 4096


@pytest.mark.parametrize(
    ("env", "mode"),
    [
        ({}, "auto"),
        ({"openrouter_json_mode": "object-schema"}, "object-schema"),
        ({"openrouter_json_schema": "false"}, "off"),
        ({"openrouter_json_schema": "false", "openrouter_json_mode": "object"}, "object"),
    ],
    ids=["default", "set", "old-switch-off", "new-wins"],
)
def test_openrouter_json_mode_setting_and_the_old_switch(env: dict[str, str], mode: str) -> None:
    """OPENROUTER_JSON_MODE chooses the mode; the old OPENROUTER_JSON_SCHEMA=false still means
    off when the new setting is left at auto."""
    assert load_settings(env_file=None, **env).openrouter_json_mode == mode
