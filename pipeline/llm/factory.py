"""Builds the providers and one fallback chain per task from settings.

The only place that names the concrete provider classes (for `pipeline.wiring` to call). A
provider without its API key is left out of every chain, with a log line saying so. The client
libraries (openai, google-genai: about 1.5 s; ollama and its httpx: about 0.2 s) are imported
only when their provider is built.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from random import Random

from pipeline.errors import ConfigError
from pipeline.llm.base import JsonMode, Provider, Task
from pipeline.llm.chain import FallbackChain, Lane
from pipeline.llm.limits import Clock, Health, RateLimiter, RetryPolicy, Sleep
from pipeline.settings import Settings

log = logging.getLogger(__name__)

PROVIDER_NAMES = ("ollama", "openrouter", "gemini")


@dataclass
class LanguageModels:
    """One chain per task (each is a TextModel and a VisionModel) and the providers they share."""

    prompt: FallbackChain
    description: FallbackChain
    vision: FallbackChain
    caption: FallbackChain
    providers: dict[str, Provider] = field(default_factory=dict)

    def for_task(self, task: Task) -> FallbackChain:
        return {
            Task.PROMPT: self.prompt,
            Task.DESCRIPTION: self.description,
            Task.VISION: self.vision,
            Task.CAPTION: self.caption,
        }[task]

    async def aclose(self) -> None:
        for name, provider in self.providers.items():
            try:
                await provider.aclose()
            except Exception:  # closing one must not keep the others open
                log.exception("closing %s failed", name)


def _models(settings: Settings, prefix: str) -> dict[Task, str]:
    text: str = getattr(settings, f"{prefix}_model")
    models = {Task.VISION: getattr(settings, f"{prefix}_vision_model")}
    for task in (Task.PROMPT, Task.DESCRIPTION, Task.CAPTION):
        models[task] = getattr(settings, f"{prefix}_{task.value}_model") or text
    return models


def _secret(settings: Settings, name: str) -> str:
    value = getattr(settings, name)
    return value.get_secret_value() if value is not None else ""


def build_providers(settings: Settings) -> dict[str, Provider]:
    """Every provider the settings make usable, by name."""
    from pipeline.llm.ollama import OllamaProvider

    providers: dict[str, Provider] = {}
    cap = settings.llm_max_answer_kb * 1024
    ollama_key = _secret(settings, "ollama_api_key")
    providers["ollama"] = OllamaProvider(
        settings.ollama_host,
        api_key=ollama_key or None,
        timeout_s=settings.llm_vision_timeout_s,
        json_mode=JsonMode(settings.ollama_json_mode),
        max_answer_bytes=cap,
    )
    if openrouter_key := _secret(settings, "openrouter_api_key"):
        from pipeline.llm.openai_compat import OpenAICompatProvider

        providers["openrouter"] = OpenAICompatProvider(
            settings.openrouter_base_url,
            openrouter_key,
            timeout_s=settings.llm_vision_timeout_s,
            json_mode=JsonMode(settings.openrouter_json_mode),
            max_answer_bytes=cap,
        )
    else:
        log.info("OPENROUTER_API_KEY is not set: openrouter is left out of the model chains")
    if gemini_key := _secret(settings, "gemini_api_key"):
        from pipeline.llm.gemini import GeminiProvider

        providers["gemini"] = GeminiProvider(
            gemini_key,
            base_url=settings.gemini_base_url or None,
            timeout_s=settings.llm_vision_timeout_s,
            json_mode=JsonMode(settings.gemini_json_mode),
            max_answer_bytes=cap,
        )
    else:
        log.info("GEMINI_API_KEY is not set: gemini is left out of the model chains")
    return providers


def build_models(
    settings: Settings,
    *,
    providers: dict[str, Provider] | None = None,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = time.monotonic,
    rng: Random | None = None,
    burst: int = 1,
) -> LanguageModels:
    """The four task chains from settings (providers may be given, e.g. by tests)."""
    problems = chain_problems(settings, set(providers) if providers is not None else None)
    if problems:
        raise ConfigError("; ".join(problems))
    providers = providers if providers is not None else build_providers(settings)
    # The rate limit is the provider's (shared by its tasks); the failure count is per task,
    # so a vision model that is missing does not cool down the same server's text models.
    limiters = {
        name: RateLimiter(getattr(settings, f"{name}_rpm"), burst=burst, clock=clock, sleep=sleep)
        for name in providers
    }
    policy = RetryPolicy(
        attempts=settings.llm_attempts,
        backoff_s=settings.llm_backoff_s,
        backoff_max_s=settings.llm_backoff_max_s,
        retry_after_max_s=settings.llm_retry_after_max_s,
    )
    rng = rng or Random()

    def chain(task: Task) -> FallbackChain:
        names = [name for name in _chain_names(settings, task) if name in providers]
        lanes = [
            Lane(
                provider=providers[name],
                models=_models(settings, name),
                limiter=limiters[name],
                health=Health(
                    failures_before_cooldown=settings.llm_failures_before_cooldown,
                    cooldown_s=settings.llm_cooldown_s,
                    clock=clock,
                ),
            )
            for name in names
        ]
        timeout = settings.llm_vision_timeout_s if task is Task.VISION else settings.llm_timeout_s
        return FallbackChain(
            task,
            lanes,
            timeout_s=timeout,
            max_tokens=getattr(settings, f"llm_max_tokens_{task.value}"),
            policy=policy,
            sleep=sleep,
            rng=rng,
        )

    return LanguageModels(
        prompt=chain(Task.PROMPT),
        description=chain(Task.DESCRIPTION),
        vision=chain(Task.VISION),
        caption=chain(Task.CAPTION),
        providers=dict(providers),
    )


def chain_problems(settings: Settings, usable: set[str] | None = None) -> list[str]:
    """What is wrong with the chain settings, one sentence each naming its variable: unknown
    provider names, and chains none of whose providers is usable (`usable`: those with a key)."""
    problems: list[str] = []
    variables = {_chain_variable(settings, task): _chain_names(settings, task) for task in Task}
    for variable, names in variables.items():
        unknown = [name for name in names if name not in PROVIDER_NAMES]
        for name in unknown:
            problems.append(
                f"{variable}: unknown provider {name!r} (known: {', '.join(PROVIDER_NAMES)})"
            )
    if problems:
        return problems
    usable = usable if usable is not None else _configured(settings)
    for variable, names in variables.items():
        if not any(name in usable for name in names):
            problems.append(
                f"{variable}: none of its providers is usable "
                "(set OPENROUTER_API_KEY or GEMINI_API_KEY, or put ollama in the chain)"
            )
    return problems


def unused_keys(settings: Settings) -> list[str]:
    """Providers named in a chain whose API key is not set (left out, as a log line says)."""
    named = {name for task in Task for name in _chain_names(settings, task)}
    return [
        f"{name} is in the model chain but {name.upper()}_API_KEY is not set: it is left out"
        for name in ("openrouter", "gemini")
        if name in named and name not in _configured(settings)
    ]


def chain_names(settings: Settings, task: Task) -> list[str]:
    """The providers of `task`'s chain, in order, as the settings name them."""
    return _chain_names(settings, task)


def _configured(settings: Settings) -> set[str]:
    names = {"ollama"}
    if _secret(settings, "openrouter_api_key"):
        names.add("openrouter")
    if _secret(settings, "gemini_api_key"):
        names.add("gemini")
    return names


def _chain_names(settings: Settings, task: Task) -> list[str]:
    specific: list[str] = getattr(settings, f"llm_chain_{task.value}")
    return [name.lower() for name in (specific or settings.llm_chain)]


def _chain_variable(settings: Settings, task: Task) -> str:
    return (
        f"LLM_CHAIN_{task.value.upper()}"
        if getattr(settings, f"llm_chain_{task.value}")
        else ("LLM_CHAIN")
    )


@asynccontextmanager
async def open_models(settings: Settings) -> AsyncIterator[LanguageModels]:
    """`build_models` whose providers are closed on exit; built in a thread, since importing
    the client libraries and building their clients takes a second or more."""
    models = await asyncio.to_thread(_build_warm, settings)
    try:
        yield models
    finally:
        await models.aclose()


def _build_warm(settings: Settings) -> LanguageModels:
    """`build_models`, then each client library's one-time warm-up (blocking: in a thread)."""
    from pipeline.llm import ollama

    models = build_models(settings)
    ollama.warm_up()  # always among the providers
    if "openrouter" in models.providers:
        from pipeline.llm import openai_compat

        openai_compat.warm_up()
    if "gemini" in models.providers:
        from pipeline.llm import gemini

        gemini.warm_up()
    return models
