"""Character files: the shipped ones load, picks replay by seed, broken files say where."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from random import Random

import pytest

from pipeline.characters import Characters, pick
from pipeline.errors import CharacterError, CharacterNotFound
from pipeline.models import Platform
from pipeline.prompts.library import TemplateLibrary

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture
def characters() -> Characters:
    return Characters(PROJECT / "characters", TemplateLibrary.load())


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the shipped characters and workflows to break."""
    shutil.copytree(PROJECT / "characters", tmp_path / "characters")
    shutil.copytree(PROJECT / "workflows", tmp_path / "workflows")
    return tmp_path


def test_every_shipped_character_file_is_valid(characters: Characters) -> None:
    """The example and the two real characters load without a problem."""
    loaded, problems = characters.load_all()
    assert problems == []
    assert {c.key for c in loaded} >= {"example", "mascot", "moonlit_tales"}


def test_names_list_real_characters_but_not_the_example(characters: Characters) -> None:
    """/generate offers the real characters, not the commented example."""
    assert "example" not in characters.names()
    assert {"mascot", "moonlit_tales"} <= set(characters.names())


@pytest.mark.parametrize("name", ["../mascot", "mascot/../../etc", "", "a" * 200, "nobody"])
def test_a_name_that_is_not_one_of_our_files_is_refused(characters: Characters, name: str) -> None:
    """Only files in the characters folder can be loaded, whatever the name says."""
    with pytest.raises(CharacterNotFound):
        characters.load(name)


def test_the_same_seed_replays_the_same_choices(characters: Characters) -> None:
    """A run's seed reproduces its strategy, template and style."""
    mascot = characters.load("mascot")

    def choices(seed: int) -> tuple[str, str, str, str]:
        rng = Random(seed)
        return (
            mascot.pick_generation_type(rng),
            mascot.pick_prompt_method(rng),
            mascot.pick_template(rng, video=False),
            mascot.pick_style(rng),
        )

    assert choices(42) == choices(42)
    assert len({choices(seed) for seed in range(30)}) > 1


def test_picks_follow_the_weights_and_never_take_a_zero() -> None:
    """A weight 3 name comes about three times as often as a weight 1 name; 0 never."""
    rng = Random(7)
    counts = Counter(pick({"a": 3, "b": 1, "c": 0}, rng) for _ in range(8000))
    assert counts["c"] == 0
    assert 2.7 < counts["a"] / counts["b"] < 3.3


def test_pick_does_not_depend_on_key_order() -> None:
    """Reordering a weights block in the file does not change what a seed picks."""
    first = [pick({"x": 1, "y": 2, "z": 3}, Random(s)) for s in range(50)]
    second = [pick({"z": 3, "x": 1, "y": 2}, Random(s)) for s in range(50)]
    assert first == second


def test_strategy_parameters_override_general_ones(characters: Characters) -> None:
    """`additional_params.strategies.<name>` wins over `general`, key by key."""
    example = characters.load("example")
    assert example.params_for("text2img").images_per_description == 2
    refine = example.params_for("text2image2image")
    assert refine.keep_top == 2
    assert refine.review_between_stages is False
    assert refine.denoise == 0.55  # from general
    assert refine.second_stage is not None
    assert refine.second_stage.denoise == 0.45
    updates = example.params_for("text2img").custom_node_updates
    assert updates[0].as_mapping() == {"node_type": "KSampler", "inputs": {"steps": 30, "cfg": 6.0}}


def test_two_stage_strategies_find_both_workflows(characters: Characters) -> None:
    """text2image2image draws with text2img's workflow, then refines with its own."""
    mascot = characters.load("mascot")
    assert mascot.workflow_path("text2image2image", "first_stage").name == "text2img.json"
    assert mascot.workflow_path("text2image2image", "second_stage").name == "image2image.json"


def test_schedule_and_platforms_are_read(characters: Characters) -> None:
    """The schedule and enabled platforms come through as written."""
    moon = characters.load("moonlit_tales")
    assert moon.schedule.every_hours == 6
    assert moon.schedule.quiet_hours is not None
    assert moon.schedule.quiet_hours.contains(3)
    assert not moon.schedule.quiet_hours.contains(12)
    assert moon.schedule.chance is not None
    assert moon.schedule.chance.at(5) == pytest.approx(0.8)
    assert moon.schedule.chance.at(50) == 1.0
    instagram = moon.spec.social_media.platforms[Platform.INSTAGRAM]
    assert (instagram.credentials, instagram.fit) == ("moonlit_instagram", "crop")
    assert moon.enabled_platforms() == {}  # shipped off: a fresh clone has no credentials


MASCOT = (PROJECT / "characters" / "mascot.yaml").read_text()

# (id, change to mascot.yaml as (old, new), the expected message after "characters/mascot.yaml:")
BROKEN = [
    (
        "bad-yaml",
        ("  name: Pixel", "  name: [Pixel"),
        "4: invalid YAML: expected ',' or ']', but got ':'",
    ),
    (
        "threshold-above-1",
        ("similarity_threshold: 0.6", "similarity_threshold: 1.6"),
        "14: generation.similarity_threshold: must be between 0 and 1",
    ),
    (
        "threshold-not-a-number",
        ("similarity_threshold: 0.6", "similarity_threshold: high"),
        "14: generation.similarity_threshold: must be a number",
    ),
    (
        "unknown-strategy",
        ("    text2img: 4", "    txt2img: 4"),
        "9: generation.generation_type_weights.txt2img: unknown strategy 'txt2img' (known: "
        "text2img, image2image, text2image2image, text2video, text2image2video, text2longvideo, "
        "sticker_pack)",
    ),
    (
        "negative-weight",
        ("    text2img: 4", "    text2img: -4"),
        "9: generation.generation_type_weights.text2img: weight must not be negative",
    ),
    (
        "all-zero-weights",
        ("    text2img: 4\n    text2image2image: 1", "    text2img: 0\n    text2image2image: 0"),
        "8: generation.generation_type_weights: every weight is 0: give at least one a positive weight",
    ),
    (
        "missing-workflow-file",
        ("text2img: workflows/text2img.json", "text2img: workflows/nope.json"),
        "12: generation.workflows.text2img: workflow file 'workflows/nope.json' does not exist",
    ),
    (
        "weighted-strategy-without-workflow",
        ("    text2img: workflows/text2img.json\n", ""),
        "11: generation.workflows: text2img has weight 4 but no workflow: add generation.workflows.text2img",
    ),
    (
        "wrong-type",
        ("    images_per_description: 2", "    images_per_description: two"),
        "35: additional_params.general.images_per_description: must be a whole number",
    ),
    (
        "unknown-key",
        ("generation:\n", "generation:\n  colour: red\n"),
        "7: generation.colour: unknown key",
    ),
    ("missing-name", ("  name: Pixel\n", ""), "2: character.name: is required"),
    (
        "unknown-time-zone",
        ("Europe/Berlin", "Mars/Olympus"),
        "43: schedule.timezone: unknown time zone 'Mars/Olympus' (use a name like Europe/Berlin)",
    ),
    (
        "duplicate-key",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  similarity_threshold: 0.7\n",
        ),
        "15: generation.similarity_threshold: duplicate key",
    ),
    (
        "unknown-style",
        ("pixel_art: 1", "pixel_artt: 1"),
        "25: generation.style_weights.pixel_artt: unknown style 'pixel_artt'",
    ),
    (
        "unknown-template",
        ("sticker_prompt_system_prompt: 1", "stickers: 1"),
        "21: generation.image_system_prompt_weights.stickers: unknown image template 'stickers'",
    ),
    (
        "unknown-platform",
        (
            "    twitter: {enabled: false, credentials: mascot_twitter}",
            "    myspace: {enabled: false}",
        ),
        "31: social_media.platforms.myspace: must be one of instagram, twitter, bluesky, facebook or threads",
    ),
    (
        "enabled-platform-without-credentials",
        ("{enabled: false, credentials: mascot_twitter}", "{enabled: true}"),
        "31: social_media.platforms.twitter: an enabled platform needs `credentials`",
    ),
    (
        "node-update-without-selector",
        (
            "second_stage: {images_per_input: 1, denoise: 0.4}",
            "custom_node_updates: [{inputs: {steps: 3}}]",
        ),
        "39: additional_params.strategies.text2image2image.custom_node_updates[0]: needs exactly one of node_type, title or id",
    ),
    (
        "pinned-seed-without-selector",
        (
            "second_stage: {images_per_input: 1, denoise: 0.4}",
            "pinned_seeds: [{seed: 5}]",
        ),
        "39: additional_params.strategies.text2image2image.pinned_seeds[0]: needs exactly one of node_type, title or id",
    ),
    (
        "pinned-seed-negative",
        (
            "second_stage: {images_per_input: 1, denoise: 0.4}",
            "pinned_seeds: [{node_type: KSampler, seed: -1}]",
        ),
        "39: additional_params.strategies.text2image2image.pinned_seeds[0].seed: must be at least 0",
    ),
    (
        "pinned-seed-not-a-number",
        (
            "second_stage: {images_per_input: 1, denoise: 0.4}",
            "pinned_seeds: [{title: KSampler, seed: lucky}]",
        ),
        "39: additional_params.strategies.text2image2image.pinned_seeds[0].seed: must be a whole number",
    ),
    (
        "review-between-stages-not-a-choice",
        ("      keep_top: 2", "      keep_top: 2\n      review_between_stages: sometimes"),
        "39: additional_params.strategies.text2image2image.review_between_stages: must be true, false or auto",
    ),
    (
        "hour-out-of-range",
        ("hours: [9, 13, 19]", "hours: [9, 25]"),
        "44: schedule.hours: must be between 0 and 23 (got 25)",
    ),
    (
        "hours-and-every-hours",
        ("hours: [9, 13, 19]", "hours: [9]\n  every_hours: 4"),
        "41: schedule: give either hours or every_hours, not both",
    ),
    (
        "two-character-without-group",
        ("    news: 1", "    two_character: 1"),
        "17: generation.prompt_method_weights.two_character: two_character needs character.group_name",
    ),
    (
        "denoise-out-of-range",
        ("denoise: 0.4", "denoise: 1.4"),
        "39: additional_params.strategies.text2image2image.second_stage.denoise: must be at most 1",
    ),
    (
        "negative-budget",
        ("twitter: 6}", "twitter: -6}"),
        "46: schedule.daily_budget: twitter budget must not be negative",
    ),
    (
        "hashtag-with-space",
        ('"#pixelbot"', '"#pixel bot"'),
        "28: social_media.default_hashtags: hashtag '#pixel bot' must be one word",
    ),
    (
        "variations-unknown-mode",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  variations: {mode: remix}\n",
        ),
        "15: generation.variations.mode: must be 'seed' or 'img2img'",
    ),
    (
        "variations-count-too-high",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  variations: {count: 20}\n",
        ),
        "15: generation.variations.count: must be at most 8",
    ),
    (
        "img2img-variations-without-image2image-workflow",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  variations: {mode: img2img}\n",
        ),
        "15: generation.variations.mode: img2img variations need generation.workflows.image2image",
    ),
    (
        "upscale-workflow-missing",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  upscale: {workflow: workflows/big.json}\n",
        ),
        "15: generation.upscale.workflow: workflow file 'workflows/big.json' does not exist",
    ),
    (
        "upscale-unknown-when",
        (
            "  similarity_threshold: 0.6\n",
            "  similarity_threshold: 0.6\n  upscale: {workflow: workflows/upscale_tile.json, when: later}\n",
        ),
        "15: generation.upscale.when: must be 'on_request' or 'always'",
    ),
    (
        "section-is-a-list",
        ("quiet_hours: {start: 23, end: 7}", "quiet_hours: [23, 7]"),
        "45: schedule.quiet_hours: must be a mapping (key: value lines)",
    ),
]


@pytest.mark.parametrize(
    ("change", "expected"), [(c, e) for _, c, e in BROKEN], ids=[i for i, _, _ in BROKEN]
)
def test_a_broken_file_names_file_line_key_and_problem(
    project: Path, change: tuple[str, str], expected: str
) -> None:
    """Every kind of mistake is reported as `file:line: key: message`."""
    old, new = change
    assert old in MASCOT, f"test case does not apply: {old!r}"
    path = project / "characters" / "mascot.yaml"
    path.write_text(MASCOT.replace(old, new, 1))
    with pytest.raises(CharacterError) as caught:
        Characters(project / "characters", TemplateLibrary.load()).load("mascot")
    messages = [str(p) for p in caught.value.problems]
    assert any(m.startswith("characters/mascot.yaml:" + expected) for m in messages), messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "characters/mascot.yaml:1: the file is empty"),
        ("- a\n- b\n", "characters/mascot.yaml:1: must be a mapping of sections"),
        ("\tcharacter: x", "characters/mascot.yaml:1: invalid YAML"),
    ],
    ids=["empty", "a-list", "tab-indent"],
)
def test_a_file_that_is_not_a_character_at_all(project: Path, text: str, expected: str) -> None:
    """Empty files, lists and unreadable YAML get a message, not a traceback."""
    (project / "characters" / "mascot.yaml").write_text(text)
    with pytest.raises(CharacterError) as caught:
        Characters(project / "characters", TemplateLibrary.load()).load("mascot")
    assert str(caught.value).startswith(expected)


def test_all_problems_of_a_file_are_reported_at_once(project: Path) -> None:
    """Fixing a file does not take one round trip per mistake."""
    broken = MASCOT.replace("similarity_threshold: 0.6", "similarity_threshold: 3").replace(
        "Europe/Berlin", "Nowhere/Town"
    )
    (project / "characters" / "mascot.yaml").write_text(broken)
    with pytest.raises(CharacterError) as caught:
        Characters(project / "characters", TemplateLibrary.load()).load("mascot")
    keys = {p.key for p in caught.value.problems}
    assert keys == {"generation.similarity_threshold", "schedule.timezone"}


def test_users_add_templates_and_styles_without_code(project: Path, tmp_path: Path) -> None:
    """A template file and a styles.yaml in TEMPLATES_DIR become valid names."""
    user = tmp_path / "templates"
    (user / "image").mkdir(parents=True)
    (user / "image" / "haiku_prompt.md").write_text("Write a haiku-like scene.")
    (user / "styles.yaml").write_text("ukiyo_e: woodblock print, flat colours\n")
    text = MASCOT.replace("sticker_prompt_system_prompt: 1", "haiku_prompt: 1").replace(
        "pixel_art: 1", "ukiyo_e: 1"
    )
    (project / "characters" / "mascot.yaml").write_text(text)
    library = TemplateLibrary.load(user)
    mascot = Characters(project / "characters", library).load("mascot")
    assert mascot.generation.style_weights["ukiyo_e"] == 1
    assert library.template("haiku_prompt") == "Write a haiku-like scene."


def test_a_character_runs_only_the_types_it_has_workflows_for(characters: Characters) -> None:
    """mascot names workflows for text2img and text2image2image only: those are what it can
    make, and asking it for a video is refused in one sentence that says what it can make."""
    from pipeline.errors import RunError

    mascot = characters.load("mascot")
    assert mascot.runnable_types() == ("text2img", "text2image2image")
    with pytest.raises(RunError) as refused:
        mascot.refuse_unrunnable("text2video")
    assert refused.value.user_message == (
        "mascot cannot make text2video: it names no workflow for text2video; "
        "it can make text2img, text2image2image"
    )
    mascot.refuse_unrunnable("text2img")


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param(
            [
                ("similarity_threshold: 0.6", "similarity_threshold: 1.6"),
                ("text2img: 4", "txt2img: 4"),
            ],
            {"generation.similarity_threshold", "generation.generation_type_weights.txt2img"},
            id="threshold-and-misspelt-strategy",
        ),
        pytest.param(
            [
                ("images_per_description: 2", "images_per_description: two"),
                ("pixel_art: 1", "pixel_artt: 1"),
            ],
            {
                "additional_params.general.images_per_description",
                "generation.style_weights.pixel_artt",
            },
            id="wrong-type-and-unknown-style",
        ),
        pytest.param(
            [
                ("Europe/Berlin", "Mars/Olympus"),
                ("text2img: workflows/text2img.json", "text2img: workflows/nope.json"),
            ],
            {"schedule.timezone", "generation.workflows.text2img"},
            id="time-zone-and-missing-workflow",
        ),
    ],
)
def test_a_wrong_value_does_not_hide_a_wrong_name(
    project: Path, changes: list[tuple[str, str]], expected: set[str]
) -> None:
    """A value out of range and a misspelt name in the same file are both reported at once."""
    text = MASCOT
    for old, new in changes:
        assert old in text, f"test case does not apply: {old!r}"
        text = text.replace(old, new, 1)
    (project / "characters" / "mascot.yaml").write_text(text)
    with pytest.raises(CharacterError) as caught:
        Characters(project / "characters", TemplateLibrary.load()).load("mascot")
    assert {p.key for p in caught.value.problems} == expected


@pytest.mark.parametrize(
    ("stickers", "expected"),
    [
        ("stickers:\n  count: 12\n", "3: stickers.count"),
        ("stickers:\n  background: magic\n", "3: stickers.background"),
        ("stickers:\n  animated: maybe\n", "3: stickers.animated"),
        ("stickers:\n  colour: red\n", "3: stickers.colour"),
        (
            "stickers:\n  background: comfyui\n  remove_background: workflows/nope.json\n",
            "4: stickers.remove_background: workflow file 'workflows/nope.json' does not exist",
        ),
    ],
    ids=["count-over-9", "unknown-background", "not-a-bool", "unknown-key", "missing-workflow"],
)
def test_a_wrong_sticker_setting_names_file_line_and_key(
    project: Path, stickers: str, expected: str
) -> None:
    """The `stickers` section is checked like the rest: file, line, key, what is wrong."""
    text = (
        "character: {name: Stickie}\n" + stickers + "generation:\n"
        "  generation_type_weights: {sticker_pack: 1}\n"
        "  workflows: {sticker_pack: workflows/text2img.json}\n"
    )
    (project / "characters" / "stickie.yaml").write_text(text)
    with pytest.raises(CharacterError) as caught:
        Characters(project / "characters", TemplateLibrary.load()).load("stickie")
    messages = [str(p) for p in caught.value.problems]
    assert any(m.startswith("characters/stickie.yaml:" + expected) for m in messages), messages


def test_a_sticker_pack_needs_its_own_workflow_entry(characters: Characters) -> None:
    """A character runs sticker packs only when it names a workflow for them (the shipped
    example does, at weight 0), not merely because it draws with text2img."""
    example = characters.load("example")
    assert "sticker_pack" in example.runnable_types()
    assert "sticker_pack" not in characters.load("mascot").runnable_types()
    assert example.spec.stickers.count == 8
