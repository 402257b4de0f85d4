"""What each strategy declares it needs, and that the run walker asks the declaration instead
of naming strategies."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import strategies
from strategies import STRATEGY_NAMES
from strategies.base import MAIN, Needs, Stage

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "needs"),
    [
        ("text2img", Needs()),
        ("image2image", Needs(input_images=True)),
        (
            "text2image2image",
            Needs(
                stages=(Stage("first_stage", borrows="text2img"), Stage("second_stage")),
                pick_after="first_stage",
            ),
        ),
        ("text2video", Needs(stages=(Stage(MAIN, video=True),))),
        (
            "text2image2video",
            Needs(
                stages=(Stage("first_stage", borrows="text2img"), Stage("second_stage", video=True))
            ),
        ),
        (
            "text2longvideo",
            Needs(
                stages=(
                    Stage("first_stage", borrows="text2img"),
                    Stage("second_stage", video=True, borrows="text2image2video"),
                ),
                narrated=True,
            ),
        ),
        ("sticker_pack", Needs(stickers=True)),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_each_strategy_declares_what_it_needs(name: str, needs: Needs) -> None:
    """A character is asked for what the strategy it runs declares: its stages' workflows, a
    video template and a video server when it ends in videos, an input folder for images."""
    assert strategies.needs(name) == needs
    assert strategies.get(name).name == name


@pytest.mark.parametrize(
    ("name", "video"),
    [("text2img", False), ("image2image", False), ("text2image2image", False),
     ("text2video", True), ("text2image2video", True), ("text2longvideo", True),
     ("sticker_pack", False)],
    ids=["text2img", "image2image", "text2image2image", "text2video", "text2image2video",
         "text2longvideo", "sticker_pack"],
)  # fmt: skip
def test_a_strategy_makes_videos_when_its_last_stage_does(name: str, video: bool) -> None:
    """Videos are what the final stage makes: stills drawn first and animated are videos."""
    assert strategies.needs(name).video is video


def test_every_registered_strategy_is_covered_above() -> None:
    """A strategy added to the registry needs its row in the tables above."""
    assert STRATEGY_NAMES == (
        "text2img",
        "image2image",
        "text2image2image",
        "text2video",
        "text2image2video",
        "text2longvideo",
        "sticker_pack",
    )


def _named_strings(path: Path) -> set[str]:
    """The string constants of a module that are not docstrings."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    }


@pytest.mark.parametrize("module", ["pipeline/run.py", "pipeline/characters.py"])
def test_the_pipeline_names_no_strategy(module: str) -> None:
    """The run walker and the character checks read what a strategy declares: a new strategy
    needs no change there (ARCHITECTURE.md, "the run walker names no strategy")."""
    named = _named_strings(ROOT / module)
    assert sorted(named & set(STRATEGY_NAMES)) == []
    source = (ROOT / module).read_text(encoding="utf-8")
    assert "VIDEO_STRATEGIES" not in source
    assert "TWO_STAGE_STRATEGIES" not in source


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_a_pick_between_stages_comes_after_a_stage_that_has_a_next(name: str) -> None:
    """A strategy that lets a person pick between stages names one of its stages but the last."""
    needs = strategies.needs(name)
    if needs.pick_after is not None:
        assert needs.pick_after in [stage.name for stage in needs.stages[:-1]]
