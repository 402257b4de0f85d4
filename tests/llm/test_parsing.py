"""Reading model answers: noise around JSON and plain-text answers, control characters, and
hostile answers (1 MB of broken JSON, deep nesting) that must end fast in one clean error."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.llm import AnswerError, clean_text, extract_json
from pipeline.llm.parsing import (
    MAX_DEPTH,
    Shape,
    clean_model_text,
    clip,
    excerpt,
    strip_reasoning,
)

WANTED = {"descriptions": ["a fox", "a hare"]}
MB = 1_000_000


@pytest.mark.parametrize(
    "answer",
    [
        '{"descriptions": ["a fox", "a hare"]}',
        '<think>They want two. Maybe {"x": 1}?</think>\n{"descriptions": ["a fox", "a hare"]}',
        '```json\n{"descriptions": ["a fox", "a hare"]}\n```',
        'Sure! Here you go:\n{"descriptions": ["a fox", "a hare"]}\nHope this helps [1].',
        '{"descriptions": ["a fox", "a hare",],}',
        'Okay.</think>{"descriptions": ["a fox", "a hare"]}',
        '<THINKING>hmm</THINKING>```\n{"descriptions": ["a fox", "a hare"]}\n```',
        'See [1] and {curly braces}: {"descriptions": ["a fox", "a hare"]}',
    ],
    ids=[
        "plain",
        "think",
        "fence",
        "prose",
        "trailing-comma",
        "half-think",
        "upper-fence",
        "brackets-in-prose",
    ],
)
def test_noise_around_json_is_ignored(answer: str) -> None:
    """Reasoning, code fences, chatter and trailing commas do not hide the JSON."""
    assert extract_json(answer, "object") == WANTED


def test_bare_list_is_read() -> None:
    """A bare JSON list is read as it is."""
    assert extract_json('["a fox", "a hare"]') == ["a fox", "a hare"]


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"text": "a fox\tin\nthe snow", "hashtags": []}', "a fox\tin\nthe snow"),
        (
            '{"text": "a fox\x00\x01\x1b in the snow", "hashtags": []}',
            "a fox\x00\x01\x1b in the snow",
        ),
        ('{"text": "it\\\'s a fox", "hashtags": []}', "it's a fox"),
        ('{"text": "C:\\pics\\quiet", "hashtags": []}', "C:\\pics\\quiet"),
    ],
    ids=["tab-newline", "nul-esc", "escaped-apostrophe", "unknown-escape"],
)
def test_strings_are_read_as_real_servers_send_them(answer: str, expected: str) -> None:
    """Raw control characters inside strings (grammar-constrained output) and escapes JSON does
    not know do not make a caption unreadable."""
    value = extract_json(answer, "object")
    assert isinstance(value, dict)
    assert value["text"] == expected


@pytest.mark.parametrize(
    ("answer", "shape", "expected"),
    [
        ('See [1]. {"text": "a fox"}', "object", {"text": "a fox"}),
        ('{"note": "x"} then ["a fox"]', "array", ["a fox"]),
        (
            '{"text": "a fox", "hashtags": ["#fox"]}',
            "object",
            {"text": "a fox", "hashtags": ["#fox"]},
        ),
        ('{"outer": {"text": "inner"}}', "object", {"outer": {"text": "inner"}}),
    ],
    ids=["object-after-citation", "list-after-object", "list-inside", "object-inside"],
)
def test_the_outermost_value_of_the_shape_asked_for(
    answer: str, shape: Shape, expected: object
) -> None:
    """The reader returns the outermost object or list the task asked for, never an inner one."""
    assert extract_json(answer, shape) == expected


@pytest.mark.parametrize(
    ("answer", "shape"),
    [
        ('{"text": "a fox" "oops", "hashtags": ["#fox", "#snow"]}', "object"),
        ('{"text": "a fox" "oops", "hashtags": ["#fox", "#snow"]}', None),
        ('{"text": "a fox", "hashtags": ["#fox" "#snow"]}', None),
        ('["#fox", "#snow"]', "object"),
        ('{"text": "a fox"}', "array"),
    ],
    ids=[
        "list-after-bad-string",
        "any-shape",
        "object-after-bad-list",
        "list-for-object",
        "object-for-list",
    ],
)
def test_an_inner_value_is_never_taken_for_the_answer(answer: str, shape: Shape | None) -> None:
    """When the outer value cannot be read (or is not the shape asked for), the reader fails
    instead of returning a list or object nested in it, so raw JSON never becomes a caption."""
    with pytest.raises(AnswerError):
        extract_json(answer, shape)


@pytest.mark.parametrize(
    "answer",
    ["", "<think>I will answer soon", "no json here at all", '{"descriptions": ["a fox", '],
    ids=["empty", "unfinished-think", "prose-only", "truncated"],
)
def test_unreadable_answers_raise(answer: str) -> None:
    """An answer with no complete JSON raises AnswerError."""
    with pytest.raises(AnswerError):
        extract_json(answer)


HOSTILE = [
    "[" * 100_000,
    "{" * MB,
    '{"a": ' * (MB // 6),
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1),
    '{"a": [1, {"b": "x[y]"}, ' * (MB // 25),
    '{"descriptions": ["' + "a fox [in] {snow} " * (MB // 18),
    '{"' + '\\"' * (MB // 2),
    "[1] " * (MB // 4),
    "{x} " * (MB // 4),
    "The fox runs. " * (MB // 14),
    "<think>" * (MB // 7),
    "</think>" * (MB // 8),
    "```" * (MB // 3),
    "[" + '"a", ' * (MB // 5),
]
HOSTILE_IDS = [
    "deep-100k",
    "deep-1mb",
    "deep-objects",
    "just-too-deep",
    "broken-nested",
    "truncated-string",
    "escaped-quotes",
    "many-lists",
    "many-braces",
    "prose",
    "open-think",
    "close-think",
    "fences",
    "unclosed-list",
]


@pytest.mark.parametrize("answer", HOSTILE, ids=HOSTILE_IDS)
def test_hostile_answers_end_in_one_sentence(answer: str) -> None:
    """A megabyte of garbled JSON, deep nesting or endless tags ends quickly in an AnswerError of
    one short line (the provider's garbled answer), never a RecursionError or a stalled step."""
    with pytest.raises(AnswerError) as raised:
        extract_json(answer, "object")
    message = str(raised.value)
    assert "\n" not in message
    assert len(message) < 200


def test_a_large_valid_answer_is_read_whole() -> None:
    """A megabyte answer that is valid JSON is read, however many lists it holds."""
    value = {"descriptions": [f"fox number {i} [in] the snow" for i in range(30_000)]}
    assert extract_json("Here:\n" + json.dumps(value), "object") == value


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("A fox skating on a frozen pond", "A fox skating on a frozen pond"),
        ('<think>hmm</think>\n"A fox skating"', "A fox skating"),
        ("Prompt: A fox skating", "A fox skating"),
        ("```\nA fox skating\n```", "A fox skating"),
        ("「狐がスケートをする」", "狐がスケートをする"),
        ("A fox\x00 skating\x1b[31m on ice\x1b[0m", "A fox skating on ice"),
        ("A fox\nskating\ton ice", "A fox skating on ice"),
    ],
    ids=["plain", "think-quotes", "label", "fence", "cjk-quotes", "control", "one-line"],
)
def test_plain_answer_is_cleaned(answer: str, expected: str) -> None:
    """A plain-text answer loses reasoning, labels, fences, wrapping quotes and control
    characters, and is one line."""
    assert clean_text(answer) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("<think>a</think>b", "b"),
        ("x</think>y<think>z", "y"),
        ("<think>a", ""),
        ("<think>a</think>b<think>c</think>d", "bd"),
        ("<think>a<reasoning>b</think>c", "c"),
        ("a</reasoning>b<think>c</think>d", "bd"),
    ],
    ids=[
        "block",
        "template-opened",
        "never-closed",
        "two-blocks",
        "nested-other",
        "close-then-block",
    ],
)
def test_reasoning_is_dropped(answer: str, expected: str) -> None:
    """Reasoning blocks, a tail of unfinished reasoning, and text before a stray closing tag
    are not part of the answer."""
    assert strip_reasoning(answer) == expected


# ---------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("text", "multiline", "expected"),
    [
        ("a fox\x00 in\x07 snow", False, "a fox in snow"),
        ("\x1b[1;31mred fox\x1b[0m", False, "red fox"),
        ("fox\x1b", False, "fox"),
        ("fox\x85den", False, "fox den"),
        ("fox\x9bden\x7f", False, "foxden"),
        ("fox \u202eden\u202c \u2066x\u2069", False, "fox den x"),
        ("\ufefffox\ud800", False, "fox"),
        ("a\tfox\n\nin  snow", False, "a fox in snow"),
        ("Line one\r\nLine two\rthree", True, "Line one\nLine two\nthree"),
        ("Para one.\n\n\n\n\nPara two.", True, "Para one.\n\nPara two."),
        ("  a\t\tfox  \n  den ", True, "a fox\nden"),
        ("fox\u2028den\x0bhole", True, "fox\nden\nhole"),
        ("👨\u200d👩\u200d👧 fox\ufe0f", False, "👨\u200d👩\u200d👧 fox\ufe0f"),
    ],
    ids=[
        "nul-bell",
        "ansi-colour",
        "lone-esc",
        "next-line",
        "c1-del",
        "bidi",
        "bom-surrogate",
        "one-line",
        "crlf",
        "blank-lines",
        "spaces",
        "line-separators",
        "emoji-joiners-kept",
    ],
)
def test_model_text_is_cleaned_of_control_characters(
    text: str, multiline: bool, expected: str
) -> None:
    """Text stored, shown, published or sent to ComfyUI holds no NUL, ESC, colour codes, C1 or
    bidi controls; line breaks stay only where the text may have them; emoji stay whole."""
    assert clean_model_text(text, multiline=multiline) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(), st.booleans())
def test_cleaned_text_is_safe_to_store_and_send(text: str, multiline: bool) -> None:
    """Whatever a model sends, the cleaned text encodes as UTF-8, holds no control character
    but line breaks where allowed, and cleaning it again changes nothing."""
    cleaned = clean_model_text(text, multiline=multiline)
    cleaned.encode("utf-8")
    allowed = {"\n"} if multiline else set()
    assert all(ch in allowed or not (ord(ch) < 32 or 0x7F <= ord(ch) <= 0x9F) for ch in cleaned)
    assert clean_model_text(cleaned, multiline=multiline) == cleaned


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_answer_is_read_or_refused_in_one_error(answer: str) -> None:
    """Whatever text a model sends, reading it gives a value or an AnswerError, nothing else."""
    try:
        value = extract_json(answer)
    except AnswerError:
        return
    assert isinstance(value, dict | list)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(st.text(), _JSON, max_size=4),
    st.text(alphabet=st.characters(blacklist_characters="[]{}<`")),
)
def test_an_object_in_prose_is_found(value: dict[str, object], prose: str) -> None:
    """An object written between prose (with any text in its strings) is read back whole."""
    assert extract_json(f"{prose}\n{json.dumps(value)}\n{prose}", "object") == value


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("a fox in the snow", 100, "a fox in the snow"),
        ("a fox in the snow", 12, "a fox in the"),
        ("afoxinthesnow", 5, "afoxi"),
    ],
    ids=["short", "at-a-word", "hard"],
)
def test_clip_cuts_at_a_word(text: str, limit: int, expected: str) -> None:
    """A long idea or description is cut at a word when one ends near the limit."""
    assert clip(text, limit) == expected


def test_excerpt_is_short_and_clean() -> None:
    """An error quoting a megabyte answer shows a short, clean, one-line piece of it."""
    quoted = excerpt("\x1b[31mfox\x00\n" * MB)
    assert len(quoted) <= 80
    assert "\x1b" not in quoted
    assert "\n" not in quoted
