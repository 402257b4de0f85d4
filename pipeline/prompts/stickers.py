"""A sticker pack's list: the language model names N expressions or poses of the character, each
with a sticker name, tags and an image prompt; read tolerantly, bounded and cleaned.

Names are cut to Discord's 2-30 characters, tags to its 200, the expression (the sticker's
description on Discord) to 100; a prompt is cleaned as a description is. An answer that cannot
be read is asked for again, then fails as ModelError. Imports the parsing helpers and the ports;
never a concrete provider.
"""

from __future__ import annotations

import logging

from pipeline.errors import ModelError
from pipeline.llm.parsing import AnswerError, clean_model_text, clip, extract_json, read_off_loop
from pipeline.models import Sticker
from pipeline.ports import JsonSchema, TextModel
from pipeline.prompts.descriptions import MAX_DESCRIPTION_CHARS, apply_style, render_request

log = logging.getLogger(__name__)

#: Discord's limits on a sticker (discord.com/developers/docs/resources/sticker)
NAME_MIN, NAME_MAX = 2, 30
TAGS_MAX = 200
EXPRESSION_MAX = 100

STICKERS_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "stickers": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "expression": {"type": "string"},
                    "tags": {"type": "string"},
                    "prompt": {"type": "string"},
                },
                "required": ["name", "expression", "tags", "prompt"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["stickers"],
    "additionalProperties": False,
}

SYSTEM = """You design a sticker pack for a chat server: the same character, each sticker a \
different expression or pose (happy, sad, laughing, thumbs up, sleepy, surprised, waving...).
For each sticker write:
- name: a short sticker name, 2 to 30 characters;
- expression: what it shows, one short sentence;
- tags: a few words people would type to find it, separated by commas;
- prompt: an image prompt for a text-to-image model showing the character with that expression \
or pose, full body or bust, centered, die-cut sticker style, bold outline, on a plain flat white \
background, no text."""


def render_system(count: int) -> str:
    return (
        SYSTEM
        + f"\n\nList exactly {count} different sticker"
        + ("s" if count != 1 else "")
        + ", in English.\n"
        + 'Answer with JSON only, in this shape: {"stickers": [{"name": "...", "expression": '
        + '"...", "tags": "...", "prompt": "..."}]}. No text before or after the JSON.'
    )


def _text(item: dict[str, object], key: str, limit: int) -> str:
    value = item.get(key)
    if isinstance(value, list):  # tags as a list of words
        value = ", ".join(str(v) for v in value[:50] if isinstance(v, str | int))
    if not isinstance(value, str):
        return ""
    # cleaning only shrinks a text: a few times the limit is all it needs to read
    return clip(clean_model_text(value[: 4 * limit]), limit)


def parse_stickers(answer: str, count: int) -> list[tuple[Sticker, str]]:
    """Up to `count` stickers with distinct names, each with its prompt, from an answer: an
    object with a list, or a bare list of objects. Items without a usable name or prompt are
    left out. Raises AnswerError when none is left."""
    value = extract_json(answer)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if isinstance(value.get("stickers"), list):
            items: list[object] = value["stickers"]
        elif len(lists) == 1:
            items = lists[0]
        else:
            raise AnswerError("no list of stickers in the answer")
    else:
        assert isinstance(value, list)
        items = value
    found: list[tuple[Sticker, str]] = []
    names: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            continue
        name = _text(item, "name", NAME_MAX)
        prompt = _text(item, "prompt", MAX_DESCRIPTION_CHARS) or _text(
            item, "description", MAX_DESCRIPTION_CHARS
        )
        if len(name) < NAME_MIN or not prompt or name.lower() in names:
            continue
        names.add(name.lower())
        sticker = Sticker(
            name=name,
            tags=_text(item, "tags", TAGS_MAX) or name,
            expression=_text(item, "expression", EXPRESSION_MAX),
        )
        found.append((sticker, prompt))
        if len(found) == count:
            break
    if not found:
        raise AnswerError("the answer's list held no sticker with a name and a prompt")
    return found


async def write_stickers(
    idea: str,
    *,
    model: TextModel,
    character: str,
    about: str = "",
    style: str = "",
    count: int = 8,
    attempts: int = 2,
) -> list[tuple[Sticker, str]]:
    """`count` stickers (fewer only when the model gave fewer usable ones) with their prompts,
    `style` (a style's text) appended to each prompt. Raises ModelError when no provider
    answers or the answer cannot be read `attempts` times."""
    system = render_system(count)
    request = render_request(idea, character=character, about=about)
    last: AnswerError | None = None
    for attempt in range(1, attempts + 1):
        asked = request
        if last is not None:
            asked += "\n\nYour last answer could not be read. Answer with the JSON object only."
        answer = await model.complete(system=system, prompt=asked, schema=STICKERS_SCHEMA)
        try:
            found = await read_off_loop(lambda text: parse_stickers(text, count), answer)
        except AnswerError as exc:
            log.warning("sticker list answer %d of %d unreadable: %s", attempt, attempts, exc)
            last = exc
            continue
        if len(found) < count:
            log.info("asked for %d stickers, the model gave %d", count, len(found))
        return [(sticker, apply_style(prompt, style)) for sticker, prompt in found]
    raise ModelError(
        f"the sticker list could not be read after {attempts} tries: {last}",
        user_message=(
            f"The language model's sticker list could not be read after {attempts} tries. "
            "The run is kept and can be retried."
        ),
    )
