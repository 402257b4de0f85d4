"""The prompt becomes N image or video descriptions: a template (plus our JSON contract) as the
system prompt, structured output where the provider has it, tolerant parsing, the style applied.

An answer that cannot be read is asked for again, then fails as ModelError. Each description is
cleaned of control characters, put on one line and cut to MAX_DESCRIPTION_CHARS before it is
stored or sent to ComfyUI; a long answer is read in a thread. Imports the template library,
`pipeline.llm.parsing` and the ports; never a concrete provider.
"""

from __future__ import annotations

import logging
import re

from pipeline.errors import ModelError
from pipeline.llm.parsing import (
    AnswerError,
    clean_model_text,
    clip,
    excerpt,
    extract_json,
    read_off_loop,
)
from pipeline.ports import JsonSchema, TextModel
from pipeline.prompts.library import TemplateLibrary

log = logging.getLogger(__name__)

#: what we ask for; strict-mode compatible (every property required, nothing else allowed)
DESCRIPTIONS_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "descriptions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["descriptions"],
    "additionalProperties": False,
}

#: a description longer than this is cut (at a word): text encoders read far less (CLIP 77
#: tokens, T5 512, about 2,000 characters), and the run record shows it whole
MAX_DESCRIPTION_CHARS = 3000

_NUMBERING = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.):])\s*")
_ITEM_KEYS = ("description", "prompt", "text", "scene")


def render_system(library: TemplateLibrary, template: str, *, video: bool, count: int) -> str:
    """The system prompt: the template's text, then how many descriptions and in what shape."""
    kind = "video" if video else "image"
    return (
        library.template(template, video=video).strip()
        + f"\n\nWrite exactly {count} different {kind} description"
        + ("s" if count != 1 else "")
        + " for the idea you are given, in English.\n"
        + 'Answer with JSON only, in this shape: {"descriptions": ["...", "..."]}. '
        + "No text before or after the JSON."
    )


def render_request(
    prompt: str, *, character: str, about: str = "", partner: str | None = None
) -> str:
    """The user message: the idea, and who is in it."""
    lines = [f"Idea: {prompt.strip()}", f"Character: {character}"]
    if about:
        lines.append(f"The character: {about}")
    if partner:
        lines.append(f"Second character: {partner}")
    return "\n".join(lines)


def apply_style(description: str, style: str) -> str:
    """The description with the style text appended (once)."""
    style = style.strip()
    if not style or style.lower() in description.lower():
        return description
    return f"{description.rstrip(' ,.;')}, {style}"


def parse_descriptions(answer: str, count: int) -> tuple[str, ...]:
    """Up to `count` distinct descriptions from an answer: an object with a list, or a bare list
    of strings or of objects with a `description`; each clean, on one line and at most
    MAX_DESCRIPTION_CHARS long. Raises AnswerError when there are none."""
    value = extract_json(answer)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        if "descriptions" in value and isinstance(value["descriptions"], list):
            items: list[object] = value["descriptions"]
        elif len(lists) == 1:
            items = lists[0]
        elif any(isinstance(value.get(k), str) for k in _ITEM_KEYS):
            items = [value]
        else:
            keys = ", ".join(excerpt(str(key), 20) for key in list(value)[:8])
            raise AnswerError(f"no list of descriptions in the answer (keys: {keys})")
    else:
        assert isinstance(value, list)
        items = value
    found: list[str] = []
    seen: set[str] = set()
    for item in items:
        text = item if isinstance(item, str) else None
        if isinstance(item, dict):
            text = next((item[k] for k in _ITEM_KEYS if isinstance(item.get(k), str)), None)
        if text is None:
            continue
        # cleaning only shrinks a text: a few times the limit is all it needs to read
        text = clean_model_text(text[: 4 * MAX_DESCRIPTION_CHARS])
        text = clip(_NUMBERING.sub("", text), MAX_DESCRIPTION_CHARS)
        if text and text.lower() not in seen:
            seen.add(text.lower())
            found.append(text)
            if len(found) == count:
                break
    if not found:
        raise AnswerError("the answer's list held no descriptions")
    return tuple(found)


async def write_descriptions(
    prompt: str,
    *,
    model: TextModel,
    library: TemplateLibrary,
    template: str,
    character: str,
    about: str = "",
    partner: str | None = None,
    style: str = "",
    count: int = 2,
    video: bool = False,
    attempts: int = 2,
) -> tuple[str, ...]:
    """`count` descriptions of `prompt` (fewer only when the model gave fewer distinct ones).

    `style` is a style's name in the library ("" for none); its text is appended to each.
    Raises ModelError when no provider answers or the answer cannot be read `attempts` times.
    """
    system = render_system(library, template, video=video, count=count)
    style_text = library.styles.get(style, "") if style else ""
    request = render_request(prompt, character=character, about=about, partner=partner)
    last: AnswerError | None = None
    for attempt in range(1, attempts + 1):
        asked = request
        if last is not None:
            asked += "\n\nYour last answer could not be read. Answer with the JSON object only."
        answer = await model.complete(system=system, prompt=asked, schema=DESCRIPTIONS_SCHEMA)
        try:
            found = await read_off_loop(lambda text: parse_descriptions(text, count), answer)
        except AnswerError as exc:
            log.warning("description answer %d of %d unreadable: %s", attempt, attempts, exc)
            last = exc
            continue
        if len(found) < count:
            log.info("asked for %d descriptions, the model gave %d", count, len(found))
        return tuple(apply_style(text, style_text) for text in found)
    raise ModelError(
        f"the description answer could not be read after {attempts} tries: {last}",
        user_message=(
            f"The language model's descriptions could not be read after {attempts} tries. "
            "The run is kept and can be retried."
        ),
    )
