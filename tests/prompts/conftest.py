"""Characters for prompt tests, parsed from YAML text the way the pipeline loads them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pipeline.characters import Character, Characters
from pipeline.prompts.library import TemplateLibrary

ROOT = Path(__file__).resolve().parents[2]

FOX = """
character:
  name: Fox
  group_name: {group}
  description: a small orange fox with a blue scarf
generation:
  generation_type_weights: {{text2img: 1}}
  workflows: {{text2img: workflows/text2img.json}}
  prompt_method_weights: {methods}
social_media:
  default_hashtags: ["#fox", "#aiart"]
"""


@pytest.fixture
def library() -> TemplateLibrary:
    return TemplateLibrary.load()


@pytest.fixture
def make_character(library: TemplateLibrary) -> Callable[..., Character]:
    def make(*, group: str = "forest", methods: str = "{arbitrary: 1}") -> Character:
        text = FOX.format(group=group or '""', methods=methods)
        folder = Characters(ROOT / "characters", library, root=ROOT)
        return folder.parse(text, path=ROOT / "characters" / "fox.yaml")

    return make


@pytest.fixture
def fox(make_character: Callable[..., Character]) -> Character:
    return make_character()
