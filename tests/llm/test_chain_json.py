"""The fallback chain and JSON answers: an answer that holds no readable JSON of the type the
schema asks for is that provider's failure, and the next provider is asked."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from pipeline.captions import CAPTION_SCHEMA
from pipeline.llm import FallbackChain, Lane, RetryPolicy, Task
from pipeline.llm.ollama import OllamaProvider
from tests.fakes.ollama import FakeOllama

GOOD = json.dumps({"text": "A fox in the snow.", "hashtags": ["#fox"]})
MODELS = {task: f"{task.value}-model" for task in Task}


@pytest.fixture
async def two() -> AsyncIterator[tuple[FakeOllama, FakeOllama, FallbackChain]]:
    async with FakeOllama() as first, FakeOllama() as second:
        providers = [
            OllamaProvider(first.url, timeout_s=5),
            OllamaProvider(second.url, timeout_s=5),
        ]
        chain = FallbackChain(
            Task.CAPTION,
            [Lane(provider, MODELS) for provider in providers],
            policy=RetryPolicy(attempts=1),
        )
        try:
            yield first, second, chain
        finally:
            for provider in providers:
                await provider.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        '["#fox", "#snow"]',
        '{"text": "A fox" "oops", "hashtags": ["#fox", "#snow"]}',
        "Here is your caption: A fox in the snow. #fox",
        "[" * 100_000,
        '{"text": "' + "snow " * 200_000,
    ],
    ids=["list-for-object", "list-after-bad-string", "prose", "deep-nesting", "truncated-1mb"],
)
async def test_unreadable_json_moves_on_to_the_next_provider(
    two: tuple[FakeOllama, FakeOllama, FallbackChain], answer: str
) -> None:
    """A caption answer that is not a readable JSON object makes the chain ask the next
    provider, whose good answer is used; the bad one never reaches the caption."""
    first, second, chain = two
    first.reply(answer)
    second.reply(GOOD)
    text = await chain.complete(system="s", prompt="p", schema=CAPTION_SCHEMA)
    assert json.loads(text) == json.loads(GOOD)
    assert len(first.requests) == 1
    assert len(second.requests) == 1


async def test_control_characters_in_strings_are_accepted(
    two: tuple[FakeOllama, FakeOllama, FallbackChain],
) -> None:
    """A grammar-constrained answer with raw tabs and newlines in its strings is the first
    provider's good answer."""
    first, second, chain = two
    answer = '{"text": "A fox\tin the\nsnow.", "hashtags": ["#fox"]}'
    first.reply(answer)
    assert await chain.complete(system="s", prompt="p", schema=CAPTION_SCHEMA) == answer
    assert second.requests == []
