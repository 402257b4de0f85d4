"""Learning (`learn: true`): the weighted picks follow approvals and engagement, within bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import pytest

from pipeline.characters import Character, Characters, pick
from pipeline.learning import FLOOR, Evidence, learned_shares, learned_weights
from pipeline.models import Choices, Decision, Job, Platform, PostRecord, PostState, Run, RunState
from pipeline.ports import PostMetrics
from pipeline.prompts.library import TemplateLibrary
from pipeline.readings import CHECKPOINTS
from pipeline.store import SqlStore
from tests.runs import World

T0 = datetime(2026, 3, 1, tzinfo=UTC)
STYLES = {"pixel_art": 1.0, "watercolor": 1.0, "anime": 2.0}


def _character(tmp_path: Path, *, learn: bool) -> Character:
    root = tmp_path / "project"
    (root / "characters").mkdir(parents=True, exist_ok=True)
    (root / "wf.json").write_text("{}")
    styles = ", ".join(f"{name}: {weight:g}" for name, weight in STYLES.items())
    text = (
        "character:\n  name: Fox\n"
        "generation:\n  generation_type_weights: {text2img: 1}\n"
        "  workflows: {text2img: wf.json}\n"
        f"  style_weights: {{{styles}}}\n"
        f"  learn: {str(learn).lower()}\n"
    )
    path = root / "characters" / "fox.yaml"
    path.write_text(text)
    return Characters(root / "characters", TemplateLibrary.load(), root=root).load("fox")


async def _history(store: SqlStore, style: str, count: int, *, approved: bool, likes: int) -> None:
    """`count` finished runs of `style`; approved ones published to X and read with `likes`."""
    for number in range(count):
        run_id = f"{style[:6]}{number:06d}"
        run = Run.new(Job(character="fox"), run_id=run_id)
        choices = Choices(seed=number, character="fox", generation_type="text2img",
                          prompt_method="arbitrary", template="stable_diffusion_prompt",
                          style=style)  # fmt: skip
        decision = Decision(approved=approved, selected=(0,), by="reviewer", at=T0)
        state = RunState.PUBLISHED if approved else RunState.REJECTED
        await store.save_run(run.advance(state, choices=choices, decision=decision))
        if not approved:
            continue
        await store.record_post(
            PostRecord(
                run_id=run_id,
                platform=Platform.TWITTER,
                account="fox_x",
                state=PostState.POSTED,
                remote_id=f"17{run_id}",
                created_at=T0,
                updated_at=T0,
            )
        )
    await store.plan_readings(CHECKPOINTS[:1], [Platform.TWITTER], 1000)
    now = T0 + timedelta(hours=2)
    for reading in await store.claim_readings("test", now, now + timedelta(hours=1), 1000):
        await store.finish_reading(reading, "test", PostMetrics(likes=likes), now)


async def test_weights_move_toward_what_is_approved_and_liked(
    store: SqlStore, tmp_path: Path
) -> None:
    """Approved and liked pixel_art gains, rejected watercolor loses but keeps its floor."""
    character = _character(tmp_path, learn=True)
    await _history(store, "pixel_art", 12, approved=True, likes=40)
    await _history(store, "anime", 6, approved=True, likes=2)
    await _history(store, "watercolor", 30, approved=False, likes=0)

    weights = await learned_weights(store, character)

    styles = weights["style_weights"]
    prior = {name: w / sum(STYLES.values()) for name, w in STYLES.items()}
    assert styles["pixel_art"] > prior["pixel_art"] + 0.2
    assert styles["watercolor"] < prior["watercolor"]
    assert styles["watercolor"] >= FLOOR * prior["watercolor"] - 1e-9
    assert sum(styles.values()) == pytest.approx(1.0)
    # and the picks follow: the seeded draws land on pixel_art far more often than by the YAML
    learned = character.with_weights(weights)
    picks = [learned.pick_style(Random(seed)) for seed in range(400)]
    yaml_picks = [character.pick_style(Random(seed)) for seed in range(400)]
    assert picks.count("pixel_art") > yaml_picks.count("pixel_art") + 60


async def test_flag_off_uses_the_yaml_weights_exactly(store: SqlStore, tmp_path: Path) -> None:
    """Without `learn: true` the same history changes nothing: the YAML's weights, as written."""
    character = _character(tmp_path, learn=False)
    await _history(store, "pixel_art", 5, approved=True, likes=40)

    assert await learned_weights(store, character) == {}
    unchanged = character.with_weights({})
    assert unchanged.generation.style_weights == STYLES
    assert [unchanged.pick_style(Random(s)) for s in range(50)] == [
        pick(STYLES, Random(s)) for s in range(50)
    ]


@pytest.mark.parametrize(
    ("weights", "evidence"),
    [
        ({"a": 1.0, "b": 1.0}, {"a": Evidence(reviewed=500, approved=500)}),
        (
            {"a": 10.0, "b": 1.0, "c": 1.0},
            {"a": Evidence(reviewed=900, approved=900), "b": Evidence(reviewed=900)},
        ),
        ({"a": 1.0, "b": 0.0}, {"b": Evidence(reviewed=50, approved=50)}),
    ],
    ids=["one-choice-wins", "three-choices-floor-two", "zero-weight-stays-zero"],
)
def test_shares_stay_within_bounds(
    weights: dict[str, float], evidence: dict[str, Evidence]
) -> None:
    """However one-sided the evidence, every allowed choice keeps its floor; weight 0 stays out."""
    shares = learned_shares(weights, evidence)
    allowed = {name: w for name, w in weights.items() if w > 0}
    total = sum(allowed.values())
    assert set(shares) == set(allowed)
    assert sum(shares.values()) == pytest.approx(1.0)
    for name, weight in allowed.items():
        assert shares[name] >= FLOOR * weight / total - 1e-9


def test_no_evidence_keeps_the_yaml_shares() -> None:
    """A character that just turned learning on draws as its YAML says."""
    assert learned_shares(STYLES, {}) == pytest.approx({"pixel_art": 0.25, "watercolor": 0.25,
                                                        "anime": 0.5})  # fmt: skip


async def test_a_learning_run_records_the_weights_it_drew_from(
    world: World, project: Path, store: SqlStore
) -> None:
    """A run of a learning character keeps its effective weights: its seed and those weights
    make the same picks again, so the run can be replayed and explained."""
    path = project / "characters" / "testy.yaml"
    text = path.read_text().replace(
        "  descriptions: 2\n",
        "  descriptions: 2\n  learn: true\n  style_weights: {pixel_art: 1, watercolor: 1}\n",
    )
    path.write_text(text)
    for number in range(8):  # reviewers liked pixel_art, refused watercolor
        for style, approved in (("pixel_art", True), ("watercolor", False)):
            run = Run.new(Job(character="testy"), run_id=f"{style[:4]}{number:08d}")
            choices = Choices(seed=number, character="testy", generation_type="text2img",
                              prompt_method="arbitrary", template="stable_diffusion_prompt",
                              style=style)  # fmt: skip
            decision = Decision(approved=approved, selected=(0,), by="reviewer", at=T0)
            await store.save_run(run.advance(RunState.REJECTED, choices=choices, decision=decision))

    run = await world.run(Job(character="testy", seed=7, publish=False))

    assert run.choices is not None
    styles = run.choices.weights["style_weights"]
    assert styles["pixel_art"] > 0.8 > 0.5 > styles["watercolor"] >= FLOOR * 0.5
    character = world.characters.load("testy").with_weights(run.choices.weights)
    rng = Random(7)
    drawn = character.pick_generation_type(rng)
    character.pick_template(rng, video=False)
    assert (drawn, character.pick_style(rng)) == ("text2img", run.choices.style)


def test_a_learn_flag_that_is_not_yes_or_no_is_named_with_its_line(tmp_path: Path) -> None:
    """`learn: maybe` is refused with the file, key and line, as every character key is."""
    from pipeline.errors import CharacterError

    folder = tmp_path / "characters"
    folder.mkdir()
    text = (
        "character:\n  name: Fox\n"
        "generation:\n  generation_type_weights: {text2img: 1}\n"
        "  learn: maybe\n"
    )
    with pytest.raises(CharacterError) as caught:
        Characters(folder, TemplateLibrary.load()).parse(text, path=folder / "fox.yaml")
    found = {(problem.line, problem.key) for problem in caught.value.problems}
    assert (5, "generation.learn") in found, caught.value.problems
