"""The model doctor against the fakes: what `check`, `run` and the bot at start learn from it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from pipeline.errors import ServiceError
from pipeline.llm.doctor import check_models, require_reachable, warn_about_models
from pipeline.llm.factory import build_models
from pipeline.settings import Settings, load_settings
from tests.fakes.gemini import FakeGemini
from tests.fakes.llm_server import HealthyModel, dead_url, doctor_question
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI

KEY = "sk-or-v1-doctordoctordoctor"


@pytest.fixture
async def ollama() -> AsyncIterator[FakeOllama]:
    async with FakeOllama() as fake:
        fake.respond_with(HealthyModel())
        yield fake


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        fake.respond_with(HealthyModel())
        yield fake


def settings(**values: Any) -> Settings:
    values.setdefault("llm_timeout_s", 5)
    values.setdefault("llm_vision_timeout_s", 5)
    return load_settings(env_file=None, **values)


def only_ollama(fake: FakeOllama, **values: Any) -> Settings:
    return settings(llm_chain="ollama", ollama_host=fake.url, **values)


def only_openai(fake: FakeOpenAI, **values: Any) -> Settings:
    return settings(
        llm_chain="openrouter",
        openrouter_base_url=fake.url,
        openrouter_api_key=KEY,
        **values,
    )


async def test_healthy_models_pass_after_one_text_and_one_vision_question(
    ollama: FakeOllama,
) -> None:
    """A server with its models pulled, which answers JSON and sees: nothing to report. It was
    asked one text question per text model and shown one image per vision model."""
    report = await check_models(only_ollama(ollama))

    assert (report.problems, report.notes) == ([], [])
    assert [doctor_question(r) for r in ollama.checks] == ["text", "vision"]
    assert ollama.checks[0].schema is not None  # in the JSON mode the pipeline uses
    assert ollama.requests == []


async def test_a_model_that_cannot_see_is_reported(openai_server: FakeOpenAI) -> None:
    """A text-only model set as the vision model answers 200 and ignores the image: the doctor
    shows it two coloured halves, and its guess gives it away."""
    openai_server.blind = True

    report = await check_models(only_openai(openai_server, openrouter_vision_model="text-only"))

    [problem] = report.problems
    assert problem.startswith(
        f"OPENROUTER_VISION_MODEL text-only on openrouter at {openai_server.url}: cannot see images"
    )
    assert "set a vision model" in problem


async def test_a_model_that_is_not_pulled_is_named_with_its_setting(ollama: FakeOllama) -> None:
    """A configured Ollama model missing from /api/tags is a problem naming the setting and the
    pull command; it is not asked."""
    ollama.pulled = ["qwen3:8b"]

    report = await check_models(only_ollama(ollama, ollama_vision_model="llava"))

    assert report.problems == [
        f"OLLAMA_VISION_MODEL: llava is not pulled on ollama at {ollama.url}: "
        "run `ollama pull llava`"
    ]
    assert [doctor_question(r) for r in ollama.checks] == ["text"]


async def test_a_server_that_does_not_answer_is_a_note() -> None:
    """A model server that is down is a note, not a problem (as a ComfyUI that is down)."""
    down = dead_url()

    report = await check_models(settings(llm_chain="ollama", ollama_host=down))

    assert report.problems == []
    assert report.notes == [f"ollama at {down} did not answer (could not be reached); not asked"]


def test_unknown_provider_names_are_problems_naming_the_variable() -> None:
    """`LLM_CHAIN=ollam` is a problem naming the variable and the known names; each chain
    variable with a typo is named once."""
    import asyncio

    report = asyncio.run(check_models(settings(llm_chain="ollam", llm_chain_vision="gemni")))

    assert report.problems == [
        "LLM_CHAIN: unknown provider 'ollam' (known: ollama, openrouter, gemini)",
        "LLM_CHAIN_VISION: unknown provider 'gemni' (known: ollama, openrouter, gemini)",
    ]


async def test_a_provider_in_the_chain_without_its_key_is_a_note(ollama: FakeOllama) -> None:
    """A chain naming openrouter with no OPENROUTER_API_KEY works without it: a note says so."""
    report = await check_models(
        settings(llm_chain="ollama,openrouter", ollama_host=ollama.url, openrouter_api_key="")
    )

    assert report.problems == []
    assert report.notes == [
        "openrouter is in the model chain but OPENROUTER_API_KEY is not set: it is left out"
    ]


async def test_a_refused_key_is_a_problem_without_the_key() -> None:
    """A provider that refuses the key is a problem (it answered), and the key is not shown."""
    async with FakeGemini(api_key="AIzaRIGHTRIGHTRIGHT") as gemini:
        report = await check_models(
            settings(
                llm_chain="gemini", gemini_base_url=gemini.url, gemini_api_key="AIzaWRONGWRONG1"
            )
        )
    assert report.problems
    assert all("refused the credentials" in p for p in report.problems)
    assert not any("WRONG" in p for p in report.problems)


async def test_llama_cpp_passes_with_the_json_mode_it_takes_noted(
    openai_server: FakeOpenAI,
) -> None:
    """llama.cpp's server refuses json_schema: `auto` finds json_object with a schema, the
    check passes and notes the mode."""
    openai_server.llama_cpp()

    report = await check_models(only_openai(openai_server))

    assert report.problems == []
    assert report.notes == [
        f"openrouter at {openai_server.url} is asked for JSON in mode object-schema for openai/gpt-4o-mini"
    ]


async def test_a_cut_answer_is_a_problem(ollama: FakeOllama) -> None:
    """A model that cannot answer the small JSON question within the token limit is reported."""
    ollama.always('{"answering": tr', finish="length")

    report = await check_models(only_ollama(ollama))

    assert any("stopped at its token limit" in p for p in report.problems)


async def test_run_is_refused_when_a_step_has_no_model_that_answers() -> None:
    """`run` asks each provider's server for any answer first: with none, a ServiceError names
    each and nothing is started."""
    down = dead_url()
    models = build_models(settings(llm_chain="ollama", ollama_host=down))
    try:
        with pytest.raises(ServiceError) as caught:
            await require_reachable(models)
    finally:
        await models.aclose()
    assert caught.value.user_message == (
        "no language model answers for the prompt, description, vision, caption step(s) "
        f"(ollama at {down} could not be reached): start the model server or set LLM_CHAIN; "
        "nothing was started"
    )


async def test_run_goes_ahead_when_each_step_has_one_that_answers(ollama: FakeOllama) -> None:
    """One answering provider per step is enough; pinging makes no model call."""
    models = build_models(
        settings(
            llm_chain="openrouter,ollama",
            ollama_host=ollama.url,
            openrouter_api_key=KEY,
            openrouter_base_url=dead_url() + "/v1",
        )
    )
    try:
        await require_reachable(models)
    finally:
        await models.aclose()
    assert ollama.requests == ollama.checks == []


async def test_the_bot_logs_one_warning_per_problem(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """At start the bot logs each model problem as one warning and goes on."""
    caplog.set_level(logging.WARNING)
    down = dead_url()
    models = build_models(settings(llm_chain="ollama", ollama_host=down))
    try:
        await warn_about_models(models=models, settings=settings(llm_chain="ollama"))
    finally:
        await models.aclose()
    assert [r.getMessage() for r in caplog.records] == [
        f"language models: ollama at {down} did not answer (could not be reached); not asked"
    ]
