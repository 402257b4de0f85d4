"""Language-model faults in a real run: the prompt and description steps go through the real
fallback chain and clients (Ollama, OpenRouter, Gemini) against the fakes. A provider that is
down, rate-limited or answering garbage is passed over; when every one fails the run stops at
that step with a safe message naming what each did, and a resume finishes it."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfy import ComfyPool
from pipeline.llm.factory import LanguageModels, build_models
from pipeline.models import Job, Run, RunState
from pipeline.prompts.library import TemplateLibrary
from pipeline.settings import load_settings
from pipeline.store import SqlStore
from pipeline.wiring import ModelDescriber, ModelPrompts
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.gemini import FakeGemini
from tests.fakes.llm_server import LlmFake, Recorded
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI
from tests.runs import World

KEY = "sk-or-v1-faultfaultfaultfault"
GKEY = "AIzaSyFAULTFAULTFAULTFAULT0"
IDEA = "Testy flies a paper kite over a windy harbour at dawn"
DESCRIPTIONS = ["a red kite above grey water", "Testy holding the kite string, laughing"]
ATTEMPTS = 2  # LLM_ATTEMPTS: tries per provider

#: SQLite only: these faults do not depend on the engine (the ComfyUI faults run on both, the
#: database's own in test_database.py), and a second engine doubles the time
pytestmark = pytest.mark.one_engine


def answer(recorded: Recorded) -> str:
    """What a healthy model says: descriptions as JSON when asked for them, else the idea."""
    if '"descriptions"' in recorded.system:
        return json.dumps({"descriptions": DESCRIPTIONS})
    return IDEA


def describing(recorded: Recorded) -> bool:
    return '"descriptions"' in recorded.system


class Providers:
    """The three fakes, which can go down (stop listening) and come back on the same port."""

    def __init__(self) -> None:
        self.ollama: LlmFake = FakeOllama()
        self.openrouter: LlmFake = FakeOpenAI()
        self.gemini: LlmFake = FakeGemini()

    @property
    def all(self) -> tuple[LlmFake, ...]:
        return (self.ollama, self.openrouter, self.gemini)

    async def up(self) -> None:
        """Start (or restart on their old ports) every fake, answering healthily."""
        self.ollama = FakeOllama(port=self.ollama.port)
        self.openrouter = FakeOpenAI(port=self.openrouter.port)
        self.gemini = FakeGemini(port=self.gemini.port)
        for fake in self.all:
            await fake.__aenter__()
            fake.respond_with(answer)

    async def down(self) -> None:
        for fake in self.all:
            await fake.__aexit__(None, None, None)

    def asked(self, fake: LlmFake, *, descriptions: bool) -> int:
        return sum(describing(r) == descriptions for r in fake.requests)


@pytest.fixture
async def providers() -> AsyncIterator[Providers]:
    lab = Providers()
    await lab.up()
    yield lab
    await lab.down()


@pytest.fixture
async def models(providers: Providers) -> AsyncIterator[LanguageModels]:
    settings = load_settings(
        env_file=None,
        llm_chain="ollama,openrouter,gemini",
        ollama_host=providers.ollama.url,
        openrouter_base_url=providers.openrouter.url,
        openrouter_api_key=KEY,
        gemini_api_key=GKEY,
        gemini_base_url=providers.gemini.url,
        llm_attempts=ATTEMPTS,
        llm_backoff_s=0.01,
        llm_backoff_max_s=0.05,
        llm_timeout_s=5,
        openrouter_rpm=0,  # no spacing of calls: the faults, not the limiter, are under test
        gemini_rpm=0,
    )
    built = build_models(settings)
    yield built
    await built.aclose()


@pytest.fixture
def world(
    project: Path,
    store: SqlStore,
    comfy: tuple[FakeComfyUI, ComfyPool],
    models: LanguageModels,
) -> World:
    """The run with its prompt and description steps on the real model chains."""
    return World(
        project,
        store,
        comfy[1],
        prompts=ModelPrompts(models, store),
        describer=ModelDescriber(models, TemplateLibrary.load()),
    )


async def assert_failed_at(world: World, run: Run, step: str, task: str) -> Run:
    """Failed at `step` with a message naming the task and no secret or address; stored so."""
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == step
    message = run.failure.message
    assert f"No language model answered the {task} step" in message
    assert "can be retried" in message
    for secret in (KEY, GKEY, "127.0.0.1", "http"):
        assert secret not in message
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.FAILED
    assert stored.failure == run.failure
    return stored


async def test_every_provider_down_fails_the_prompt_step_and_resume_finishes(
    world: World, providers: Providers, caplog: pytest.LogCaptureFixture
) -> None:
    """With no model server listening, the run fails at the prompt step saying each could not
    be reached; with them back, resume publishes it."""
    await providers.down()
    with caplog.at_level(logging.INFO):
        run = await world.run(Job("testy", seed=1))
    stored = await assert_failed_at(world, run, "created", "prompt")
    assert run.failure is not None
    for name in ("ollama", "openrouter", "gemini"):
        assert f"{name} could not be reached" in run.failure.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert KEY not in logged
    assert GKEY not in logged
    await providers.up()
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert done.prompt == IDEA
    assert list(done.descriptions) == DESCRIPTIONS


async def test_a_rate_limit_is_waited_out_on_the_same_provider(
    world: World, providers: Providers
) -> None:
    """A 429 with Retry-After is waited out and the same provider then answers; the run
    publishes without asking the others."""
    providers.ollama.fail(429, retry_after=0.3)
    began = time.monotonic()
    run = await world.run(Job("testy", seed=2))
    assert run.state is RunState.PUBLISHED, run.failure
    assert time.monotonic() - began >= 0.3
    assert providers.openrouter.requests == []
    assert providers.gemini.requests == []


async def test_rate_limited_providers_fall_back_to_the_next(
    world: World, providers: Providers
) -> None:
    """Ollama and OpenRouter answer only 429: after their retries, Gemini writes the run."""
    providers.ollama.always_fail(429, retry_after=0.05)
    providers.openrouter.always_fail(429, retry_after=0.05)
    run = await world.run(Job("testy", seed=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert len(providers.ollama.requests) == 2 * ATTEMPTS  # prompt and descriptions
    assert providers.asked(providers.gemini, descriptions=True) == 1


async def test_every_provider_rate_limited_fails_the_describe_step_and_resume_keeps_the_prompt(
    world: World, providers: Providers
) -> None:
    """The idea is written, then every provider answers 429: the run fails at the description
    step; resume writes the descriptions without asking for a new idea."""
    providers.ollama.reply(IDEA)
    for fake in providers.all:
        fake.always_fail(429, retry_after=0.05)
    run = await world.run(Job("testy", seed=4))
    stored = await assert_failed_at(world, run, "prompted", "description")
    assert run.failure is not None
    assert run.failure.message.count("was rate-limited (HTTP 429)") == 3
    assert stored.prompt == IDEA
    for fake in providers.all:
        fake.respond_with(answer)
    ideas_before = sum(providers.asked(f, descriptions=False) for f in providers.all)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert sum(providers.asked(f, descriptions=False) for f in providers.all) == ideas_before
    assert done.prompt == IDEA


async def test_garbage_answers_fall_back_to_the_next_provider(
    world: World, providers: Providers
) -> None:
    """Ollama answers prose instead of JSON and OpenRouter an empty message: Gemini's
    descriptions are used and the run publishes."""
    providers.ollama.reply(IDEA).always("Sure! Here are two lovely pictures of Testy.")
    providers.openrouter.always(" \n ")
    run = await world.run(Job("testy", seed=5))
    assert run.state is RunState.PUBLISHED, run.failure
    assert list(run.descriptions) == DESCRIPTIONS
    assert providers.asked(providers.gemini, descriptions=True) >= 1


async def test_garbage_from_every_provider_fails_the_describe_step_and_resumes(
    world: World, providers: Providers
) -> None:
    """Every provider answers something that is not the JSON asked for: the run fails at the
    description step with a safe message; resume with sane models publishes it."""
    providers.ollama.reply(IDEA)
    for fake in providers.all:
        fake.always('{"descriptions": [')
    run = await world.run(Job("testy", seed=6))
    stored = await assert_failed_at(world, run, "prompted", "description")
    for fake in providers.all:
        fake.respond_with(answer)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert list(done.descriptions) == DESCRIPTIONS
