"""The model doctor: asks each configured provider what `check`, `run` and the bot need to know.

`check_models(settings)` is `python -m pipeline check`'s model part: the chain settings, the
keys, Ollama's pulled models (`/api/tags`), one text call per text model in the JSON mode in
use, and one vision call per vision model with a generated image whose answer it can verify
(two halves of different solid colours), so a text-only model that ignores images is caught.
`examine(settings, models)` does the same on models already open (the bot, at start: warnings).
`require_reachable(models)` is `run`'s question before it creates a run: does every step have a
provider that answers at all (no model call). A provider that does not answer is a note, not a
problem. Imports `pipeline.llm.*`, `pipeline.settings`, `pipeline.errors`; Pillow in a thread.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import random
from dataclasses import dataclass, field

from pipeline.errors import ServiceError
from pipeline.llm.base import FailureKind, JsonMode, ModelRequest, Provider, ProviderFailure, Task
from pipeline.llm.factory import LanguageModels, build_models, chain_problems, unused_keys
from pipeline.ports import ImageData
from pipeline.settings import Settings

log = logging.getLogger(__name__)

#: the failures that mean "did not answer": a note, as for a ComfyUI that is down
_SILENT = frozenset({FailureKind.UNREACHABLE, FailureKind.TIMEOUT})

_TEXT_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"answering": {"type": "boolean"}},
    "required": ["answering"],
    "additionalProperties": False,
}
_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
}
_VISION_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"left": {"type": "string"}, "right": {"type": "string"}},
    "required": ["left", "right"],
    "additionalProperties": False,
}
_VISION_PROMPT = (
    "The image has a left half and a right half, each filled with one solid colour. Name the "
    "colour of each half in one word, one of: " + ", ".join(_COLOURS) + "."
)


@dataclass
class ModelReport:
    """What the doctor found: problems (a check fails on them) and notes (it does not)."""

    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def check_models(settings: Settings) -> ModelReport:
    """`check`'s model part: settings first, then each provider asked (its own clients)."""
    report = ModelReport(notes=unused_keys(settings))
    problems = chain_problems(settings)
    if problems:
        report.problems.extend(problems)
        return report
    models = await asyncio.to_thread(build_models, settings)
    try:
        found = await examine(settings, models)
    finally:
        await models.aclose()
    report.problems.extend(found.problems)
    report.notes.extend(found.notes)
    return report


@dataclass
class _Asked:
    """One provider's models, by the setting that names each."""

    provider: Provider
    text: dict[str, str] = field(default_factory=dict)  # model -> setting
    vision: dict[str, str] = field(default_factory=dict)


def _asked(settings: Settings, models: LanguageModels) -> list[_Asked]:
    found: dict[str, _Asked] = {}
    for task in Task:
        for lane in models.for_task(task).lanes:
            entry = found.setdefault(lane.name, _Asked(lane.provider))
            model = lane.models[task]
            prefix = lane.name.upper()
            if task is Task.VISION:
                entry.vision.setdefault(model, f"{prefix}_VISION_MODEL")
            else:
                specific = getattr(settings, f"{lane.name}_{task.value}_model", "")
                setting = f"{prefix}_{task.value.upper()}_MODEL" if specific else f"{prefix}_MODEL"
                entry.text.setdefault(model, setting)
    return list(found.values())


async def examine(settings: Settings, models: LanguageModels) -> ModelReport:
    """Ask every provider of the chains, at once; each finding one sentence."""
    reports = await asyncio.gather(
        *(_examine_one(settings, asked) for asked in _asked(settings, models))
    )
    total = ModelReport()
    for report in reports:
        total.problems.extend(report.problems)
        total.notes.extend(report.notes)
    return total


def _where(provider: Provider) -> str:
    url = getattr(provider, "host", None) or getattr(provider, "base_url", None)
    return f"{provider.name} at {url}" if url else provider.name


async def _examine_one(settings: Settings, asked: _Asked) -> ModelReport:
    report = ModelReport()
    provider = asked.provider
    where = _where(provider)
    pulled = getattr(provider, "pulled", None)
    if pulled is not None:  # Ollama: are the configured models there?
        try:
            have: set[str] = await pulled()
        except ProviderFailure as failure:
            if failure.kind in _SILENT:
                report.notes.append(f"{where} did not answer ({failure.phrase}); not asked")
                return report
            report.problems.append(f"{where}: listing its models {failure.phrase}")
            return report
        for model, setting in {**asked.text, **asked.vision}.items():
            if _tagged(model) not in {_tagged(name) for name in have}:
                report.problems.append(
                    f"{setting}: {model} is not pulled on {where}: run `ollama pull {model}`"
                )
                asked.text.pop(model, None)
                asked.vision.pop(model, None)
    for model, setting in asked.text.items():
        said = await _ask_text(settings, provider, model)
        if said is None:
            continue
        silent, text = said
        if silent:
            report.notes.append(f"{where} did not answer ({text}); not asked further")
            return report
        report.problems.append(f"{setting} {model} on {where}: {text}")
    for model in asked.text:
        mode = provider.json_mode(model)
        if mode not in (JsonMode.SCHEMA, JsonMode.AUTO):
            report.notes.append(f"{where} is asked for JSON in mode {mode.value} for {model}")
    for model, setting in asked.vision.items():
        said = await _ask_vision(settings, provider, model)
        if said is None:
            continue
        silent, text = said
        if silent:
            report.notes.append(f"{where} did not answer ({text})")
            continue
        report.problems.append(f"{setting} {model} on {where}: {text}")
    return report


def _tagged(name: str) -> str:
    """Ollama's name with its tag (`qwen3` is `qwen3:latest`)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


async def _call(provider: Provider, request: ModelRequest, timeout_s: float) -> str:
    try:
        async with asyncio.timeout(timeout_s):
            return await provider.generate(request)
    except TimeoutError:
        raise ProviderFailure(FailureKind.TIMEOUT, f"no answer within {timeout_s:g} s") from None


async def _ask_text(settings: Settings, provider: Provider, model: str) -> tuple[bool, str] | None:
    """None when the model answered with the JSON asked for; else (did not answer, why)."""
    request = ModelRequest(
        model=model,
        system="You are being checked: answer exactly as asked.",
        prompt='Are you answering? Reply with the JSON {"answering": true}.',
        schema=_TEXT_SCHEMA,
        max_tokens=settings.llm_max_tokens_description,
    )
    try:
        answer = await _call(provider, request, settings.llm_timeout_s)
    except ProviderFailure as failure:
        return failure.kind in _SILENT, failure.log_text
    if _json_object(answer) is None:
        mode = provider.json_mode(model).value
        return False, f"answered without the JSON asked for (JSON mode {mode})"
    return None


async def _ask_vision(
    settings: Settings, provider: Provider, model: str
) -> tuple[bool, str] | None:
    """None when the model named both colours; else (did not answer, why)."""
    left, right = random.sample(sorted(_COLOURS), 2)
    image = await asyncio.to_thread(_two_halves, left, right)
    request = ModelRequest(
        model=model,
        system="You are being checked: answer exactly as asked, in JSON.",
        prompt=_VISION_PROMPT,
        images=(image,),
        schema=_VISION_SCHEMA,
        max_tokens=settings.llm_max_tokens_vision,
    )
    try:
        answer = await _call(provider, request, settings.llm_vision_timeout_s)
    except ProviderFailure as failure:
        return failure.kind in _SILENT, failure.log_text
    said = _json_object(answer) or {}
    named = (str(said.get("left", "")).lower(), str(said.get("right", "")).lower())
    if left in named[0] and right in named[1]:
        return None
    return False, (
        f"cannot see images: shown {left} and {right} halves, it answered "
        f"{_short(answer)!r} (a text-only model ignores the image; set a vision model)"
    )


def _two_halves(left: str, right: str) -> ImageData:
    from PIL import Image

    picture = Image.new("RGB", (64, 32), _COLOURS[left])
    picture.paste(_COLOURS[right], (32, 0, 64, 32))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return ImageData(buffer.getvalue(), "image/png")


def _json_object(answer: str) -> dict[str, object] | None:
    """The outermost {...} of an answer, read leniently (control characters allowed)."""
    start, end = answer.find("{"), answer.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(answer[start : end + 1], strict=False)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _short(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


async def require_reachable(models: LanguageModels, *, timeout_s: float = 10.0) -> None:
    """ServiceError unless every step's chain has a provider whose server answers (a ping: no
    model call), so a run is never created with no model to ask."""
    providers = models.providers

    async def ping(provider: Provider) -> str | None:
        try:
            async with asyncio.timeout(timeout_s):
                await provider.ping()
        except TimeoutError:
            return f"no answer within {timeout_s:g} s"
        except ProviderFailure as failure:
            return failure.phrase
        return None

    names = [name for name in providers if _in_a_chain(models, name)]
    said = dict(zip(names, await asyncio.gather(*(ping(providers[n]) for n in names)), strict=True))
    dead_steps = [
        task.value
        for task in Task
        if all(said.get(lane.name) is not None for lane in models.for_task(task).lanes)
    ]
    if not dead_steps:
        return
    down = "; ".join(f"{_where(providers[n])} {why}" for n, why in said.items() if why)
    raise ServiceError(
        f"no language model answers for the {', '.join(dead_steps)} step(s): {down}",
        user_message=(
            f"no language model answers for the {', '.join(dead_steps)} step(s) ({down}): "
            "start the model server or set LLM_CHAIN; nothing was started"
        ),
    )


def _in_a_chain(models: LanguageModels, name: str) -> bool:
    return any(name in models.for_task(task).names for task in Task)


async def warn_about_models(settings: Settings, models: LanguageModels) -> None:
    """The bot at start: `examine`, each finding one warning line; never raises."""
    try:
        report = await examine(settings, models)
    except Exception:  # a doctor's failure must not stop the bot
        log.exception("asking the language models at start failed")
        return
    for line in (*report.problems, *report.notes):
        log.warning("language models: %s", line)


__all__ = ["ModelReport", "check_models", "examine", "require_reachable", "warn_about_models"]
