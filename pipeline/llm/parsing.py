"""Reading model answers: reasoning blocks, code fences and trailing prose are noise around the
JSON or the line we asked for.

Pure functions over strings; `AnswerError` says an answer could not be read. Imports nothing
from the project.
"""

from __future__ import annotations

import json
import re

_REASONING = re.compile(
    r"<(think|thinking|reasoning|reflection)>.*?</\1>", re.IGNORECASE | re.DOTALL
)
_OPEN_REASONING = re.compile(r"<(think|thinking|reasoning|reflection)>", re.IGNORECASE)
_CLOSE_REASONING = re.compile(r"</(think|thinking|reasoning|reflection)>", re.IGNORECASE)
_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(.*?)```", re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:prompt|idea|scene|answer)(?:\*\*)?\s*[:\uff1a]\s*", re.IGNORECASE
)


class AnswerError(ValueError):
    """A model's answer did not hold what was asked for; str() quotes a short piece of it."""


def strip_reasoning(text: str) -> str:
    """`text` without `<think>…</think>` (and similar) blocks, or an unclosed one's tail."""
    text = _REASONING.sub("", text)
    closes = list(_CLOSE_REASONING.finditer(text))
    if closes:  # the opening tag was part of the prompt template
        text = text[closes[-1].end() :]
    opened = _OPEN_REASONING.search(text)
    if opened:  # reasoning that never ended: nothing after it is an answer
        text = text[: opened.start()]
    return text.strip()


def _candidates(text: str) -> list[str]:
    fenced = [match.group(1).strip() for match in _FENCE.finditer(text)]
    return [*fenced, text]


def _decode_first(text: str) -> object:
    """The first JSON object or array in `text`, ignoring prose before and after it."""
    decoder = json.JSONDecoder()
    for attempt in (text, _TRAILING_COMMA.sub(r"\1", text)):
        for match in re.finditer(r"[\[{]", attempt):
            try:
                value, _ = decoder.raw_decode(attempt, match.start())
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict | list):
                return value
    raise AnswerError(f"no JSON object or list in the answer: {_excerpt(text)!r}")


def extract_json(answer: str) -> object:
    """The JSON value a model meant, from an answer with reasoning, fences or prose around it."""
    text = strip_reasoning(answer)
    if not text:
        raise AnswerError("the answer was empty (or only reasoning)")
    last_error: AnswerError | None = None
    for candidate in _candidates(text):
        try:
            return _decode_first(candidate)
        except AnswerError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def clean_text(answer: str) -> str:
    """A plain-text answer without reasoning, fences, a leading label or wrapping quotes."""
    text = strip_reasoning(answer)
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    text = _LABEL.sub("", text.strip())
    text = text.strip().strip('"“”「」').strip()
    return text


def _excerpt(text: str, limit: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
