"""Prompt methods with the real store (SQLite and MariaDB) and a scripted model."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from random import Random

import pytest

from pipeline.characters import Character
from pipeline.errors import ModelError, RunError
from pipeline.ports import NewsItem
from pipeline.prompts.methods import write_prompt
from pipeline.store import SqlStore
from tests.doubles import ScriptedModel


def news(title: str, day: int) -> NewsItem:
    return NewsItem(
        id=0,
        title=title,
        keyword="space",
        content=f"{title}. The full story, with details.",
        publish_date=datetime(2025, 3, day, tzinfo=UTC),
    )


async def test_arbitrary_writes_a_fresh_idea(fox: Character, store: SqlStore) -> None:
    """An arbitrary prompt is the model's idea about the character, cleaned of noise."""
    model = ScriptedModel.of("<think>hmm</think>\nFox flies a paper kite over a windy hill.")
    written = await write_prompt(fox, model=model, store=store, rng=Random(1), method="arbitrary")
    assert written.text == "Fox flies a paper kite over a windy hill."
    assert written.method == "arbitrary"
    assert "Fox" in model.calls[0].prompt
    assert "blue scarf" in model.calls[0].prompt


async def test_news_becomes_a_scene_and_is_marked_used(fox: Character, store: SqlStore) -> None:
    """A news prompt uses an unused story, and that story is not offered to the fox again."""
    await store.add_news([news("Comet visible tonight", 1)])
    model = ScriptedModel.of("Fox watches a comet from a rooftop with a telescope.")

    written = await write_prompt(fox, model=model, store=store, rng=Random(1), method="news")

    assert written.method == "news"
    assert written.news_id is not None
    assert "Comet visible tonight" in model.calls[0].prompt
    assert await store.recent_news(character=fox.key) == []


async def test_news_stays_unused_for_other_characters(fox: Character, store: SqlStore) -> None:
    """A story used by one character is still there for another."""
    await store.add_news([news("Comet visible tonight", 1)])
    await write_prompt(
        fox, model=ScriptedModel.of("idea"), store=store, rng=Random(1), method="news"
    )
    assert len(await store.recent_news(character="hare")) == 1


async def test_news_not_marked_when_the_model_fails(fox: Character, store: SqlStore) -> None:
    """When no model answers, the story stays unused for the next run."""
    await store.add_news([news("Comet visible tonight", 1)])
    failing = ScriptedModel.of(ModelError("all down"))
    with pytest.raises(ModelError):
        await write_prompt(fox, model=failing, store=store, rng=Random(1), method="news")
    assert len(await store.recent_news(character=fox.key)) == 1


async def test_news_asked_for_without_news_fails_clearly(fox: Character, store: SqlStore) -> None:
    """Asking for a news prompt when there is no unused news says so."""
    with pytest.raises(RunError, match="no unused news"):
        await write_prompt(fox, model=ScriptedModel(), store=store, rng=Random(1), method="news")


async def test_news_by_weight_without_news_falls_back(
    make_character: Callable[..., Character], store: SqlStore
) -> None:
    """A news prompt picked by weight falls back to a fresh idea when there is no news."""
    fox = make_character(methods="{news: 1}")
    written = await write_prompt(fox, model=ScriptedModel.of("idea"), store=store, rng=Random(1))
    assert written.method == "arbitrary"


async def test_two_characters_meet(fox: Character, store: SqlStore) -> None:
    """A two-character prompt brings in another active member of the group, never the fox."""
    await store.add_character("Fox", "forest")
    await store.add_character("Hare", "forest")
    await store.add_character("Owl", "forest", status=0)
    await store.add_character("Shark", "sea")
    model = ScriptedModel.of("Fox and Hare share a picnic under an oak.")

    written = await write_prompt(
        fox, model=model, store=store, rng=Random(3), method="two_character"
    )

    assert written.partner == "Hare"
    assert written.method == "two_character"
    assert "Second character: Hare" in model.calls[0].prompt


async def test_two_characters_alone_in_group_fails_clearly(fox: Character, store: SqlStore) -> None:
    """Asking for two characters when the group has no one else says so."""
    await store.add_character("Fox", "forest")
    with pytest.raises(RunError, match="no other active member"):
        await write_prompt(
            fox, model=ScriptedModel(), store=store, rng=Random(1), method="two_character"
        )


async def test_method_follows_the_weights(
    make_character: Callable[..., Character], store: SqlStore
) -> None:
    """Without a method named by the job, the character's weights choose it."""
    fox = make_character(methods="{two_character: 1}")
    await store.add_character("Hare", "forest")
    written = await write_prompt(fox, model=ScriptedModel.of("idea"), store=store, rng=Random(1))
    assert written.method == "two_character"


async def test_unknown_method_is_refused(fox: Character, store: SqlStore) -> None:
    """A job naming a method that does not exist is refused with the known names."""
    with pytest.raises(RunError, match="arbitrary, news, two_character"):
        await write_prompt(fox, model=ScriptedModel(), store=store, rng=Random(1), method="poem")


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Fox\x00 flies a \x1b[31mkite\x1b[0m.", "Fox flies a kite."),
        ("Fox flies\na kite\r\nover\tthe hill.", "Fox flies a kite over the hill."),
        ("Fox \u202eflies\u202c a kite\ufeff.", "Fox flies a kite."),
    ],
    ids=["nul-and-colours", "line-breaks", "bidi-and-bom"],
)
async def test_the_idea_is_clean_text_on_one_line(
    fox: Character, store: SqlStore, answer: str, expected: str
) -> None:
    """The idea stored on the run, shown in its summary and sent on holds no control
    characters and no line breaks."""
    written = await write_prompt(
        fox, model=ScriptedModel.of(answer), store=store, rng=Random(1), method="arbitrary"
    )
    assert written.text == expected


async def test_a_megabyte_idea_is_cut_at_a_word(fox: Character, store: SqlStore) -> None:
    """A model that rambles for a megabyte gives an idea of at most 1,000 characters, whole words."""
    answer = "Fox flies a paper kite over a windy hill. " * 25_000
    written = await write_prompt(
        fox, model=ScriptedModel.of(answer), store=store, rng=Random(1), method="arbitrary"
    )
    assert 900 <= len(written.text) <= 1000
    assert answer.startswith(written.text + " ")


async def test_endless_reasoning_is_no_idea(fox: Character, store: SqlStore) -> None:
    """A megabyte of unfinished reasoning tags is an empty idea: the step fails, retryable."""
    model = ScriptedModel.of(default="<think>" * 150_000)
    with pytest.raises(ModelError):
        await write_prompt(fox, model=model, store=store, rng=Random(1), method="arbitrary")
