"""Reading model answers: noise around JSON and plain-text answers."""

from __future__ import annotations

import pytest

from pipeline.llm import AnswerError, clean_text, extract_json

WANTED = {"descriptions": ["a fox", "a hare"]}


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
    ],
    ids=["plain", "think", "fence", "prose", "trailing-comma", "half-think", "upper-fence"],
)
def test_noise_around_json_is_ignored(answer: str) -> None:
    """Reasoning, code fences, chatter and trailing commas do not hide the JSON."""
    assert extract_json(answer) == WANTED


def test_bare_list_is_read() -> None:
    """A bare JSON list is read as it is."""
    assert extract_json('["a fox", "a hare"]') == ["a fox", "a hare"]


@pytest.mark.parametrize(
    "answer",
    ["", "<think>I will answer soon", "no json here at all", '{"descriptions": ["a fox", '],
    ids=["empty", "unfinished-think", "prose-only", "truncated"],
)
def test_unreadable_answers_raise(answer: str) -> None:
    """An answer with no complete JSON raises AnswerError."""
    with pytest.raises(AnswerError):
        extract_json(answer)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("A fox skating on a frozen pond", "A fox skating on a frozen pond"),
        ('<think>hmm</think>\n"A fox skating"', "A fox skating"),
        ("Prompt: A fox skating", "A fox skating"),
        ("```\nA fox skating\n```", "A fox skating"),
        ("「狐がスケートをする」", "狐がスケートをする"),
    ],
    ids=["plain", "think-quotes", "label", "fence", "cjk-quotes"],
)
def test_plain_answer_is_cleaned(answer: str, expected: str) -> None:
    """A plain-text answer loses reasoning, labels, fences and wrapping quotes."""
    assert clean_text(answer) == expected
