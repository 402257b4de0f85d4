"""Idea -> a sticker pack's list: names, tags and a prompt per sticker, read from noisy answers
and cut to Discord's limits."""

from __future__ import annotations

import json

import pytest

from pipeline.errors import ModelError
from pipeline.llm.parsing import AnswerError
from pipeline.prompts.stickers import (
    STICKERS_SCHEMA,
    parse_stickers,
    render_system,
    write_stickers,
)
from tests.doubles import ScriptedModel


def item(
    name: str, prompt: str = "fox waving, white background", **more: object
) -> dict[str, object]:
    return {"name": name, "expression": f"{name} face", "tags": "fox, hi", "prompt": prompt, **more}


def test_the_system_prompt_asks_for_the_count_as_json_on_a_plain_background() -> None:
    system = render_system(6)
    assert "exactly 6 different stickers" in system
    assert '{"stickers":' in system
    assert "plain flat white background" in system


@pytest.mark.parametrize(
    "answer",
    [
        json.dumps({"stickers": [item("Wave"), item("Sleepy")]}),
        "Sure! Here you go:\n```json\n" + json.dumps([item("Wave"), item("Sleepy")]) + "\n```",
        json.dumps({"pack": [item("Wave"), item("Sleepy")]}),
    ],
    ids=["object", "fenced-list-after-chatter", "other-key"],
)
def test_the_list_is_read_from_the_answers_models_give(answer: str) -> None:
    found = parse_stickers(answer, 8)
    assert [s.name for s, _ in found] == ["Wave", "Sleepy"]
    assert found[0][0].tags == "fox, hi"
    assert found[0][0].expression == "Wave face"
    assert found[0][1] == "fox waving, white background"


def test_names_tags_and_expressions_are_cut_to_discords_limits() -> None:
    """Name 2-30, tags at most 200 (a list is joined), expression at most 100; control
    characters go; a name too short, a missing prompt or a repeated name is left out."""
    answer = json.dumps(
        {
            "stickers": [
                item("A" * 60, expression="x" * 300, tags=["fox"] * 200),
                item("B"),
                item("No prompt", prompt=""),
                item("Wave\x07"),
                item("wave"),
            ]
        }
    )
    found = parse_stickers(answer, 8)
    names = [s.name for s, _ in found]
    assert len(names[0]) <= 30
    assert names[1:] == ["Wave"]
    first = found[0][0]
    assert len(first.tags) <= 200
    assert first.tags.startswith("fox, fox")
    assert len(first.expression) <= 100


def test_no_more_than_the_count_is_taken() -> None:
    answer = json.dumps({"stickers": [item(f"Face {n}") for n in range(40)]})
    assert len(parse_stickers(answer, 5)) == 5


def test_an_answer_without_a_usable_sticker_is_refused() -> None:
    with pytest.raises(AnswerError):
        parse_stickers(json.dumps({"stickers": [{"name": "x"}]}), 3)


async def test_the_model_is_asked_with_the_schema_then_once_more_then_it_fails() -> None:
    """An unreadable answer is asked for again; two unreadable ones fail as ModelError."""
    model = ScriptedModel.of("no json here", json.dumps({"stickers": [item("Wave")]}))
    found = await write_stickers(
        "a fox's week", model=model, character="Fox", count=3, style="flat"
    )
    assert [s.name for s, _ in found] == ["Wave"]
    assert found[0][1].endswith(", flat")
    assert model.calls[0].schema == STICKERS_SCHEMA
    assert "could not be read" in model.calls[1].prompt
    failing = ScriptedModel.of("nope", "still nope")
    with pytest.raises(ModelError, match="sticker list could not be read after 2 tries"):
        await write_stickers("idea", model=failing, character="Fox")
