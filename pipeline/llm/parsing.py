"""Reading model answers: reasoning blocks, code fences and trailing prose are noise around the
JSON or the line we asked for; control characters are noise inside it.

Pure functions over strings, each linear in the answer's size (a 1 MB answer is read in tens of
milliseconds; `read_off_loop` moves a long one off the event loop, to one thread for all model
text). `AnswerError` says an answer could not be read: a provider's garbled answer, never a
traceback. Imports nothing from the project.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, ParamSpec, TypeVar

T = TypeVar("T")
P = ParamSpec("P")

#: the JSON shapes a task asks for: the outermost value must be an object, or a list
Shape = Literal["object", "array"]

#: JSON nested deeper than this is not an answer to any task of ours (ours go 3 levels deep);
#: json's own decoder would recurse until a RecursionError
MAX_DEPTH = 64

#: answers longer than this are read in a thread (`read_off_loop`): below it, reading costs the
#: event loop a few milliseconds at worst (4 KB of `[1] [1] ...`), a valid answer 0.02 ms
OFF_LOOP_CHARS = 4096

_TAGS = "think|thinking|reasoning|reflection"
_REASONING_TAG = re.compile(rf"<(/?)({_TAGS})>", re.IGNORECASE)
_FENCE_MARK = "```"
_FENCE_INFO = re.compile(r"[A-Za-z0-9_-]*[ \t]*\n?")
_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:prompt|idea|scene|answer)(?:\*\*)?\s*[:\uff1a]\s*", re.IGNORECASE
)
#: what the outermost-value scanner stops at: a whole string (escapes included), a bracket,
#: a comma, or a quote that opens a string never closed
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},]|"', re.DOTALL)
_OPENERS = re.compile(r"[\[{]")
_OBJECT_START = re.compile(r'\{\s*["}]')  # what a JSON object starts with: a key, or its end
_SPACE = re.compile(r"\s*")
#: an escape JSON does not know (models write \' and Windows paths); one regex pass repairs them
_ESCAPE = re.compile(r'\\(["\\/bfnrt]|u[0-9a-fA-F]{4})|\\(.?)', re.DOTALL)
_DECODER = json.JSONDecoder(strict=False)  # raw control characters inside strings are read

# ---------------------------------------------------------------------------- control characters

#: removed from model text: C0 controls but tab and line breaks, DEL, C1 controls, bidi
#: embeddings, overrides and isolates (they reorder what people read), the BOM, interlinear
#: annotation marks, non-characters, and lone surrogates (which json reads from "\\ud800" and
#: no UTF-8 encoder can write)
_CONTROL = re.compile(
    "\x1b\\[[0-?]*[ -/]*[@-~]"  # a whole ANSI escape sequence (colours, cursor moves)
    "|[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f"
    "\u202a-\u202e\u2066-\u2069\ufeff\ufff9-\ufffb\ufffe\uffff\ud800-\udfff]"
)
_LINE_BREAK = re.compile("\r\n|[\r\x0b\x0c\x85\u2028\u2029]")
_SPACES = re.compile(r"[ \t]{2,}|\t")  # runs only: replacing every space costs 30 ms a MB
_BLANK_LINES = re.compile(r"\n{3,}")


def clean_model_text(text: str, *, multiline: bool = False) -> str:
    """`text` as it may be stored, shown, sent to ComfyUI or published: without control
    characters (NUL, ESC and its colour codes, C1, bidi overrides, lone surrogates), tabs as
    spaces, and stripped. On one line unless `multiline`, which keeps line breaks (as `\\n`, at
    most one blank line in a row) and collapses runs of spaces."""
    text = _CONTROL.sub("", text)
    if not multiline:
        return " ".join(text.split())
    text = _LINE_BREAK.sub("\n", text)
    text = _SPACES.sub(" ", text)
    lines = "\n".join(line.strip() for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", lines).strip()


def clip(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, at the last space when there is one in the
    last fifth (a word is not cut in half), else hard."""
    if len(text) <= limit:
        return text
    cut = text.rfind(" ", limit - limit // 5, limit + 1)
    return text[: cut if cut > 0 else limit].rstrip()


# ---------------------------------------------------------------------------- reasoning, fences


class AnswerError(ValueError):
    """A model's answer did not hold what was asked for; str() quotes a short piece of it."""


def strip_reasoning(text: str) -> str:
    """`text` without `<think>…</think>` (and similar) blocks, or an unclosed one's tail.

    A block ends at the first closing tag of its own name. A closing tag left alone means the
    opening one was part of the prompt template: only what follows the last one is the answer.
    An opening tag left alone is reasoning that never ended: nothing after it is an answer.
    One pass over the tags, so linear however many there are."""
    tags = list(_REASONING_TAG.finditer(text))
    if not tags:
        return text.strip()
    closes: dict[str, list[int]] = {}  # tag name -> the indexes in `tags` of its closing tags
    for index, tag in enumerate(tags):
        if tag.group(1):
            closes.setdefault(tag.group(2).lower(), []).append(index)
    passed = dict.fromkeys(closes, 0)  # per name: how many of its closing tags lie behind
    kept: list[tuple[int, int]] = []  # the spans of `text` between complete blocks
    cursor, stop = 0, len(text)
    index = 0
    while index < len(tags):
        tag = tags[index]
        if tag.group(1):  # a closing tag outside any block: the answer starts after it
            kept, cursor, stop = [], tag.end(), len(text)
            index += 1
            continue
        name = tag.group(2).lower()
        own = closes.get(name, [])
        while passed.get(name, 0) < len(own) and own[passed[name]] < index:
            passed[name] += 1
        if passed.get(name, 0) < len(own):  # a complete block: dropped, with the tags in it
            close = own[passed[name]]
            kept.append((cursor, tag.start()))
            cursor, index = tags[close].end(), close + 1
            continue
        stop = min(stop, tag.start())  # never closed: the answer ends before it
        index += 1
    kept.append((cursor, len(text)))
    return "".join(text[a : min(b, stop)] for a, b in kept if a < stop).strip()


def _fenced(text: str) -> Iterator[str]:
    """The contents of each complete ``` fence, in order (str.find: linear)."""
    position = 0
    while True:
        opened = text.find(_FENCE_MARK, position)
        if opened < 0:
            return
        info = _FENCE_INFO.match(text, opened + len(_FENCE_MARK))
        body = info.end() if info else opened + len(_FENCE_MARK)
        closed = text.find(_FENCE_MARK, body)
        if closed < 0:
            return
        yield text[body:closed].strip()
        position = closed + len(_FENCE_MARK)


# ---------------------------------------------------------------------------- JSON


def _is(value: object, shape: Shape | None) -> bool:
    if shape == "object":
        return isinstance(value, dict)
    if shape == "array":
        return isinstance(value, list)
    return isinstance(value, dict | list)


def _decode(span: str) -> object:
    """The JSON value of `span`, or a ValueError (a JSONDecodeError, or int's digit limit)."""
    value, end = _DECODER.raw_decode(span)
    if span[end:].strip():
        raise ValueError("text after the value")
    return value


def _repair_escape(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return match.group()
    odd = match.group(2)
    return odd if odd == "'" else "\\\\" + odd  # \' is a quote; any other stays a backslash


def _outermost(text: str) -> Iterator[tuple[str, list[int]]]:
    """Each outermost bracketed span of `text` (prose around it ignored), with the positions
    in it of trailing commas (`[1, 2,]`); strings are skipped whole, so a bracket in a string
    does not count. Stops at a span that never closes, and raises AnswerError at one nested
    deeper than MAX_DEPTH. Linear: the regex steps from token to token."""
    position = 0
    while True:
        opener = _OPENERS.search(text, position)
        if opener is None:
            return
        start = opener.start()
        depth = 0
        commas: list[int] = []
        comma = -1  # a comma not yet followed by a value
        for token in _TOKEN.finditer(text, start):
            mark = token.group()
            if mark in "[{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise AnswerError(f"the answer's JSON is nested deeper than {MAX_DEPTH} levels")
            elif mark in "]}":
                if comma >= 0 and not text[comma + 1 : token.start()].strip():
                    commas.append(comma - start)
                depth -= 1
                if depth == 0:
                    yield text[start : token.end()], commas
                    position = token.end()
                    break
            elif mark == ",":
                comma = token.start()
                continue
            elif mark == '"':
                return  # a string that never ends: so does the span
            comma = -1
        else:
            return  # the span never closes


def _read(text: str, shape: Shape | None) -> object | None:
    """The first outermost JSON value of `shape` in `text`, or None."""
    first = _OPENERS.search(text)
    if first is None:
        return None
    value: object
    try:  # the common case, a whole valid answer: one pass of json's C decoder
        value, _ = _DECODER.raw_decode(text, first.start())
    except (ValueError, RecursionError):
        pass
    else:
        if _is(value, shape):
            return value
    for span, commas in _outermost(text):
        if (shape == "object" and span[0] != "{") or (shape == "array" and span[0] != "["):
            continue  # not the shape asked for, whatever it holds
        if span[0] == "{" and not _OBJECT_START.match(span):
            continue  # {braces in prose}: not worth a decoder's error
        attempts = [span]
        if commas:
            ends = zip([-1, *commas], [*commas, len(span)], strict=True)
            attempts.append("".join(span[a + 1 : b] for a, b in ends))
        if "\\" in span:
            attempts += [_ESCAPE.sub(_repair_escape, attempt) for attempt in list(attempts)]
        for attempt in attempts:
            try:
                value = _decode(attempt)
            except (ValueError, RecursionError):
                continue
            if _is(value, shape):
                return value
            break  # JSON of another shape: this span is read, and is not the answer
    return None


def extract_json(answer: str, shape: Shape | None = None) -> object:
    """The JSON value a model meant, from an answer with reasoning, fences or prose around it.

    The value is an outermost one (never one nested in a value that could not be read) of the
    shape asked for (an object or a list; either by default), first in a code fence, else in
    the whole answer. Control characters inside strings are read; trailing commas and unknown
    escapes are forgiven. Raises AnswerError when there is none."""
    text = strip_reasoning(answer)
    if not text:
        raise AnswerError("the answer was empty (or only reasoning)")
    for candidate in [*_fenced(text), text]:
        value = _read(candidate, shape)
        if value is not None:
            return value
    wanted = {"object": "JSON object", "array": "JSON list", None: "JSON object or list"}[shape]
    raise AnswerError(f"no {wanted} in the answer: {excerpt(text)!r}")


def clean_text(answer: str, *, limit: int | None = None) -> str:
    """A plain-text answer on one line, without reasoning, fences, a leading label, wrapping
    quotes or control characters; at most `limit` characters (cut at a word)."""
    text = strip_reasoning(answer)
    fenced = next(_fenced(text), None)
    if fenced is not None:
        text = fenced
    if limit is not None:  # cleaning only shrinks the text: a few times the limit is plenty
        text = text[: 4 * limit]
    text = clean_model_text(text)
    text = _LABEL.sub("", text, count=1)
    text = text.strip().strip('"“”「」').strip()
    return clip(text, limit) if limit is not None else text


def excerpt(text: str, limit: int = 80) -> str:
    """A short, one-line, clean piece of `text` for a log line or an error."""
    flat = clean_model_text(text[: limit * 4])
    return flat if len(flat) <= limit and len(text) <= limit * 4 else flat[: limit - 1] + "…"


@functools.cache
def _reader() -> ThreadPoolExecutor:
    # One thread for all model text: every Python thread that computes takes the interpreter
    # lock from the event loop in turn, so two of them double the loop's lag (measured on a busy
    # machine: one thread p99 30 ms, two 140 ms). The work is milliseconds; queueing is cheap.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="model-text")


async def off_loop(work: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`work(*args, **kwargs)` in the one model-text thread, the event loop free meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_reader(), functools.partial(work, *args, **kwargs))


async def read_off_loop(read: Callable[[str], T], answer: str) -> T:
    """`read(answer)`, in the model-text thread when the answer is long enough to hold the
    event loop (OFF_LOOP_CHARS)."""
    if len(answer) <= OFF_LOOP_CHARS:
        return read(answer)
    return await off_loop(read, answer)
