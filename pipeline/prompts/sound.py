"""The sound prompt of a video run: one short description of what the videos sound like, for the
sound node of a video workflow (MMAudio's sampler has a text prompt of its own).

Asked only for runs whose workflows have such a node: one small call after the descriptions,
its answer read like theirs (bounded, linear, cleaned of control characters, on one line, cut
to MAX_SOUND_CHARS). An answer that cannot be read is asked for again; when none can be had
(unreadable twice, or no provider answers) the run goes on without one (the node then
follows the frames only). Imports `pipeline.llm.parsing` and the
ports; never a concrete provider.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from pipeline.errors import ModelError
from pipeline.llm.parsing import AnswerError, clean_model_text, clip, extract_json, read_off_loop
from pipeline.ports import JsonSchema, TextModel

log = logging.getLogger(__name__)

#: what we ask for; strict-mode compatible (every property required, nothing else allowed)
SOUND_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {"sound": {"type": "string"}},
    "required": ["sound"],
    "additionalProperties": False,
}

#: a sound prompt longer than this is cut at a word: MMAudio reads it through CLIP (77 tokens)
MAX_SOUND_CHARS = 300

SOUND_SYSTEM = (
    "You write sound prompts for a video-to-audio model. You are given the descriptions of "
    "short videos. Describe in one short phrase (at most 20 words) the sounds a listener hears "
    "in them: the sources of sound and the ambience, concrete and audible. No music unless the "
    "videos show music being played, no speech, no visual details, no names.\n"
    'Answer with JSON only, in this shape: {"sound": "..."}. No text before or after the JSON.'
)


def render_request(descriptions: Sequence[str]) -> str:
    """The user message: the videos' descriptions, numbered."""
    lines = [f"{number}. {text}" for number, text in enumerate(descriptions, start=1)]
    return "Video descriptions:\n" + "\n".join(lines)


def parse_sound(answer: str) -> str:
    """The sound prompt in an answer: `{"sound": "..."}`; clean, on one
    line, at most MAX_SOUND_CHARS long. Raises AnswerError when there is none."""
    value = extract_json(answer, "object")
    text = value.get("sound") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise AnswerError('no "sound" text in the answer')
    # cleaning only shrinks a text: a few times the limit is all it needs to read
    text = clip(clean_model_text(text[: 4 * MAX_SOUND_CHARS]), MAX_SOUND_CHARS)
    if not text:
        raise AnswerError("the answer's sound text is empty")
    return text


async def write_sound_prompt(
    descriptions: Sequence[str], *, model: TextModel, attempts: int = 2
) -> str | None:
    """A sound prompt for videos of `descriptions`; None when no provider gave one or its
    answer could not be read `attempts` times: the run goes on without one (the sound is a
    nicety, the videos are not held back for it)."""
    request = render_request(descriptions)
    for attempt in range(1, attempts + 1):
        asked = request
        if attempt > 1:
            asked += "\n\nYour last answer could not be read. Answer with the JSON object only."
        try:
            answer = await model.complete(system=SOUND_SYSTEM, prompt=asked, schema=SOUND_SCHEMA)
        except ModelError as exc:  # no provider gave the JSON: the videos do without
            log.warning("no sound prompt: %s", exc)
            return None
        try:
            return await read_off_loop(parse_sound, answer)
        except AnswerError as exc:
            log.warning("sound answer %d of %d unreadable: %s", attempt, attempts, exc)
    log.warning("no readable sound prompt after %d tries; the videos get the node's own", attempts)
    return None
