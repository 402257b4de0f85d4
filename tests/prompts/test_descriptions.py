"""Prompt -> descriptions: templates, the JSON contract, noisy answers and the style."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import ModelError
from pipeline.llm.parsing import AnswerError, clean_model_text
from pipeline.prompts.descriptions import (
    DESCRIPTIONS_SCHEMA,
    MAX_DESCRIPTION_CHARS,
    parse_descriptions,
    render_system,
    write_descriptions,
)
from pipeline.prompts.library import TemplateLibrary
from tests.doubles import ScriptedModel

LIBRARY = TemplateLibrary.load()
TWO = json.dumps({"descriptions": ["Fox on a hill, dawn light", "Fox by a lake, mist"]})


@pytest.mark.parametrize("name", sorted(LIBRARY.image_templates))
def test_every_image_template_renders(name: str) -> None:
    """Each shipped image template becomes a system prompt asking for N descriptions as JSON."""
    system = render_system(LIBRARY, name, video=False, count=3)
    assert LIBRARY.image_templates[name] in system
    assert "exactly 3 different image descriptions" in system
    assert '{"descriptions":' in system


@pytest.mark.parametrize("name", sorted(LIBRARY.video_templates))
def test_every_video_template_renders(name: str) -> None:
    """Each shipped video template becomes a system prompt asking for video descriptions."""
    system = render_system(LIBRARY, name, video=True, count=1)
    assert LIBRARY.video_templates[name] in system
    assert "exactly 1 different video description " in system


def test_issue_templates_are_shipped() -> None:
    """Every template the issue names is in the library."""
    assert {
        "stable_diffusion_prompt",
        "cinematic_stable_diffusion_prompt",
        "warm_scene_description_system_prompt",
        "sticker_prompt_system_prompt",
        "two_character_interaction_generate_system_prompt",
        "conceptual_logo_design_prompt",
        "black_humor_system_prompt",
    } <= set(LIBRARY.image_templates)
    assert {"video_description", "cinematic_video_description"} <= set(LIBRARY.video_templates)


@pytest.mark.parametrize("name", sorted(LIBRARY.image_templates))
async def test_every_template_yields_descriptions(name: str) -> None:
    """With any template, the model's JSON becomes the descriptions, schema attached."""
    model = ScriptedModel.of(TWO)
    found = await write_descriptions(
        "Fox explores", model=model, library=LIBRARY, template=name, character="Fox"
    )
    assert found == ("Fox on a hill, dawn light", "Fox by a lake, mist")
    assert model.calls[0].schema == DESCRIPTIONS_SCHEMA


async def test_style_is_appended() -> None:
    """The chosen style's text ends every description."""
    found = await write_descriptions(
        "Fox explores",
        model=ScriptedModel.of(TWO),
        library=LIBRARY,
        template="stable_diffusion_prompt",
        character="Fox",
        style="watercolor",
    )
    assert all(d.endswith(LIBRARY.styles["watercolor"]) for d in found)


def test_user_template_folder_adds_a_template(tmp_path: Path) -> None:
    """A template file dropped in the user's folder can be used without code."""
    (tmp_path / "image").mkdir()
    (tmp_path / "image" / "haiku_scene.md").write_text("Describe scenes like haiku.")
    library = TemplateLibrary.load(tmp_path)
    system = render_system(library, "haiku_scene", video=False, count=2)
    assert system.startswith("Describe scenes like haiku.")


async def test_noisy_answer_is_read() -> None:
    """Reasoning and a code fence around the JSON do not break the descriptions."""
    noisy = f"<think>two please</think>\n```json\n{TWO}\n```\nEnjoy!"
    found = await write_descriptions(
        "Fox",
        model=ScriptedModel.of(noisy),
        library=LIBRARY,
        template="stable_diffusion_prompt",
        character="Fox",
    )
    assert len(found) == 2


async def test_broken_answer_is_asked_again() -> None:
    """An unreadable answer is asked for again, and the second answer is used."""
    model = ScriptedModel.of('{"descriptions": ["Fox on a hi', TWO)
    found = await write_descriptions(
        "Fox", model=model, library=LIBRARY, template="stable_diffusion_prompt", character="Fox"
    )
    assert len(found) == 2
    assert "could not be read" in model.calls[1].prompt


async def test_answer_broken_twice_fails_clearly() -> None:
    """Two unreadable answers fail the step with a clear, safe message."""
    model = ScriptedModel.of("I cannot help with that.", "Still no JSON, sorry.")
    with pytest.raises(ModelError) as caught:
        await write_descriptions(
            "Fox",
            model=model,
            library=LIBRARY,
            template="stable_diffusion_prompt",
            character="Fox",
        )
    assert "could not be read after 2 tries" in caught.value.user_message
    assert "sorry" not in caught.value.user_message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('["one", "two", "three"]', ("one", "two")),
        ('{"prompts": ["one", "two"]}', ("one", "two")),
        ('[{"description": "one"}, {"prompt": "two"}]', ("one", "two")),
        ('{"descriptions": ["1. one", "2) two"]}', ("one", "two")),
        ('{"descriptions": ["one", "ONE", "two"]}', ("one", "two")),
        ('{"description": "only one"}', ("only one",)),
    ],
    ids=["bare-list", "other-key", "objects", "numbering", "duplicates", "single-object"],
)
def test_answer_shapes(answer: str, expected: tuple[str, ...]) -> None:
    """Common shapes models answer in all give clean, distinct descriptions."""
    assert parse_descriptions(answer, 2) == expected


def test_descriptions_are_clean_single_lines() -> None:
    """Descriptions sent to ComfyUI hold no control characters or line breaks."""
    answer = json.dumps(
        {"descriptions": ["Fox\x00 on a\nhill,\tdawn\x1b[0m", "Fox by a lake\u202e"]}
    )
    assert parse_descriptions(answer, 2) == ("Fox on a hill, dawn", "Fox by a lake")


def test_a_long_description_is_cut_at_a_word() -> None:
    """A description longer than any text encoder reads is cut, at a word."""
    long = "fox on a hill at dawn, " * 1000
    (found,) = parse_descriptions(json.dumps({"descriptions": [long]}), 1)
    assert len(found) <= MAX_DESCRIPTION_CHARS
    assert long.startswith(found)


def test_a_megabyte_list_gives_the_count_asked_for() -> None:
    """An answer listing 100,000 distinct descriptions gives the two asked for, at once."""
    answer = json.dumps({"descriptions": [f"fox number {i}" for i in range(100_000)]})
    assert parse_descriptions(answer, 2) == ("fox number 0", "fox number 1")


@pytest.mark.parametrize(
    "answer",
    [
        "[" * 1_000_000,
        '{"descriptions": ["' + "fox [on] {a} hill " * 55_000,
        '{"a": [1, {"b": "x[y]"}, ' * 40_000,
        "The fox runs. " * 70_000,
    ],
    ids=["deep-nesting", "truncated", "broken-nested", "prose"],
)
async def test_a_hostile_answer_fails_the_step_cleanly(answer: str) -> None:
    """A megabyte answer that holds no descriptions fails the step with the usual safe sentence
    after two tries, soon, and never with a traceback's text."""
    model = ScriptedModel.of(default=answer)
    with pytest.raises(ModelError) as caught:
        await write_descriptions(
            "Fox", model=model, library=LIBRARY, template="stable_diffusion_prompt", character="Fox"
        )
    assert "could not be read after 2 tries" in caught.value.user_message
    assert len(str(caught.value)) < 300


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(), min_size=1, max_size=8), st.integers(min_value=1, max_value=4))
def test_any_list_gives_clean_distinct_descriptions(items: list[str], count: int) -> None:
    """Whatever strings the model lists, the descriptions are at most the count asked for,
    distinct, non-empty, on one line and free of control characters (or the answer is
    unreadable, a clean error)."""
    try:
        found = parse_descriptions(json.dumps({"descriptions": items}), count)
    except AnswerError:
        return  # nothing but blanks, control characters or bare numbering
    assert 1 <= len(found) <= count
    assert len({text.lower() for text in found}) == len(found)
    for text in found:
        assert text
        assert text == clean_model_text(text)
        assert len(text) <= MAX_DESCRIPTION_CHARS
