"""Character and workflow files fuzzed: whatever a file holds, loading it gives a Character /
Workflow or the project's own error naming the file, never a crash.

Hypothesis draws YAML documents, mutations of the shipped characters/*.yaml and
workflows/*.json, token soups and arbitrary bytes. Runs are small and use no example database.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from random import Random
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies
from comfy import Workflow, WorkflowError
from pipeline.characters import Character, Characters
from pipeline.errors import CharacterError
from pipeline.prompts.library import TemplateLibrary
from pipeline.workflows import check_workflow
from strategies import STRATEGY_NAMES

ROOT = Path(__file__).resolve().parents[2]
CHARACTER_FILES = sorted((ROOT / "characters").glob("*.yaml"))
WORKFLOW_FILES = sorted((ROOT / "workflows").glob("*.json"))
SHOWN = "characters/fuzzed.yaml"

fuzz = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

CHARACTERS = Characters(ROOT / "characters", TemplateLibrary.load())

# ---------------------------------------------------------------------------- generators

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.sampled_from(
        ["text2img", "workflows/text2img.json", "../../etc/passwd", "/etc/passwd", "", "#tag",
         "Europe/Berlin", "mascot/../../x", "a\x00b", "x" * 300]
    ),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
#: fragments that exercise YAML's syntax: anchors, aliases, tags, flow and block structure
YAML_TOKENS = ["&a ", "*a", "[", "]", "{", "}", ": ", "- ", "\n", "  ", "\t", "? ", "!!binary ",
               "!!python/object:os.system ", "!!set ", "%YAML 1.1\n", "---\n", "...\n", "'", '"',
               "#", "|\n", ">\n", ",", "character", "generation", "name", "1e999", ".nan",
               "generation_type_weights", "workflows", "text2img", "<<: *a\n", "\x00", "\ufeff"]  # fmt: skip
yaml_soup = st.lists(st.sampled_from(YAML_TOKENS), max_size=40).map("".join)
JSON_TOKENS = ["{", "}", "[", "]", ":", ",", '"4"', '"class_type"', '"inputs"', '"_meta"',
               '"title"', '"KSampler"', "1", "-0", "1e999", "NaN", "Infinity", "null", "true",
               '"\\ud800"', '"\\u0000"', " ", "\n"]  # fmt: skip
json_soup = st.lists(st.sampled_from(JSON_TOKENS), max_size=40).map("".join)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found += _paths(value, (*prefix, index))
    return found


def similar(value: Any) -> st.SearchStrategy[Any]:
    """A value like `value` (a near miss, as a person editing the file makes), or anything."""
    if isinstance(value, bool):
        like: st.SearchStrategy[Any] = st.booleans()
    elif isinstance(value, int):
        like = st.integers(-3, 30)
    elif isinstance(value, float):
        like = st.floats(-1, 2) | st.sampled_from([math.nan, math.inf, 0.0])
    elif isinstance(value, str):
        like = st.sampled_from(
            ["text2img", "text2video", "arbitrary", "news", "pixel_art", "", "UTC", "Mars/Base",
             "workflows/image2image.json", "workflows/missing.json", value.upper(), value + " "]
        )  # fmt: skip
    else:
        like = values
    return st.one_of(like, values)


@st.composite
def mutated(draw: st.DrawFn, shipped: list[Any]) -> Any:
    """One of the shipped documents with one to three places replaced, removed or added to;
    the place is picked at random (not shrunk toward the first key), so most edits are deep."""
    data = copy.deepcopy(draw(st.sampled_from(shipped)))
    rng = draw(st.randoms(use_true_random=False))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(data)[1:]
        if not paths:
            break
        path = rng.choice(paths)
        parent = data
        for step in path[:-1]:
            parent = parent[step]
        action = draw(st.sampled_from(["replace", "remove", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(similar(parent[path[-1]]))
        elif action == "remove":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[
                draw(st.sampled_from(["text2img", "extra", "instagram", ""]) | st.text(max_size=12))
            ] = draw(values)
        else:
            parent.append(draw(values))
    return data


SHIPPED_CHARACTERS = [yaml.safe_load(p.read_text()) for p in CHARACTER_FILES]
SHIPPED_WORKFLOWS = [json.loads(p.read_text()) for p in WORKFLOW_FILES]

# ---------------------------------------------------------------------------- characters


def load_character_text(text: str) -> None:
    """Parse; a valid character must also make every choice a run makes without an error."""
    try:
        character = CHARACTERS.parse(text, path=ROOT / SHOWN)
    except CharacterError as exc:
        refused = exc
    else:
        check_usable(character)
        return
    assert refused.problems, "a CharacterError lists at least one problem"
    assert all(p.file == SHOWN for p in refused.problems)
    assert all(isinstance(p.line, int | None) for p in refused.problems)
    assert refused.user_message


def check_usable(character: Character) -> None:
    rng = Random(7)
    strategy = character.pick_generation_type(rng)
    assert strategy in STRATEGY_NAMES
    for stage in strategies.needs(strategy).stages:
        assert character.workflow_path(strategy, stage.name).is_relative_to(ROOT)
    character.pick_prompt_method(rng)
    character.pick_template(rng, video=False)
    character.pick_style(rng)
    character.params_for(strategy)
    assert character.schedule.zone is not None
    assert all(math.isfinite(w) for w in character.generation.generation_type_weights.values())


@fuzz
@given(values)
def test_any_yaml_document_loads_or_says_what_is_wrong(data: Any) -> None:
    """Any YAML document is a character or a CharacterError naming the file; no traceback."""
    load_character_text(yaml.safe_dump(data))


@settings(fuzz, max_examples=40)
@given(mutated(SHIPPED_CHARACTERS))
def test_a_changed_shipped_character_loads_or_says_what_is_wrong(data: Any) -> None:
    """mascot.yaml or moonlit_tales.yaml with values changed: loaded, or a clear error."""
    load_character_text(yaml.safe_dump(data, allow_unicode=True))


@fuzz
@given(yaml_soup)
def test_broken_yaml_syntax_says_what_is_wrong(text: str) -> None:
    """Anchors, aliases, tags and brackets in any order: a CharacterError, never a crash."""
    load_character_text(text)


@fuzz
@given(st.binary(max_size=300))
def test_any_bytes_in_a_character_file_say_what_is_wrong(data: bytes) -> None:
    """A character file of arbitrary bytes (not UTF-8, NULs) is refused with the file's name."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "characters" / "fuzzed.yaml"
        path.parent.mkdir()
        path.write_bytes(data)
        characters = Characters(path.parent, CHARACTERS.library)
        try:
            characters.load("fuzzed")
        except CharacterError as exc:
            problems = exc.problems
        else:
            problems = ()
    assert all(p.file == SHOWN for p in problems)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &x [*x]\n", "an alias refers to its own anchor"),
        ("character: " + "[" * 3000 + "]" * 3000, "nested too deeply"),
        (
            "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi", strict=True)
            )
            + "character: {name: x}\n",
            "expands to more than",
        ),
    ],
    ids=["self-alias", "deep", "billion-laughs"],
)
def test_a_yaml_bomb_is_refused_quickly(text: str, message: str) -> None:
    """A file that refers to itself, nests thousands deep or expands to a billion values is
    refused with a sentence instead of hanging or crashing."""
    with pytest.raises(CharacterError) as caught:
        CHARACTERS.parse(text, path=ROOT / SHOWN)
    assert message in str(caught.value)


@pytest.mark.parametrize("weight", [".nan", ".inf", "1e999"])
def test_a_weight_that_is_not_a_finite_number_is_refused(weight: str) -> None:
    """`text2img: .nan` as a weight is an error on that key, not a run that picks nothing."""
    text = (
        (ROOT / "characters" / "mascot.yaml")
        .read_text()
        .replace("text2img: 4", f"text2img: {weight}")
    )
    with pytest.raises(CharacterError) as caught:
        CHARACTERS.parse(text, path=ROOT / SHOWN)
    assert any(
        p.key == "generation.generation_type_weights.text2img"
        and p.message == "weight must be a finite number"
        for p in caught.value.problems
    )


@pytest.mark.parametrize(
    "workflow",
    ["../../etc/passwd", "/etc/passwd", "../outside.json", "/srv/outside.json",
     "workflows/../../outside.json", "x" * 5000, "work\x00flows.json"],
    ids=["traversal", "absolute", "parent-json", "absolute-json", "walks-out", "too-long", "nul"],
)  # fmt: skip
def test_a_workflow_path_outside_the_project_is_refused(workflow: str) -> None:
    """`workflows: {text2img: ../../etc/passwd}` is an error on that key: a character file can
    name only workflow files inside the project folder."""
    text = (ROOT / "characters" / "mascot.yaml").read_text()
    text = text.replace("text2img: workflows/text2img.json", f"text2img: {json.dumps(workflow)}")
    with pytest.raises(CharacterError) as caught:
        CHARACTERS.parse(text, path=ROOT / SHOWN)
    [problem] = [p for p in caught.value.problems if p.key == "generation.workflows.text2img"]
    assert problem.line == 12
    assert "inside the project folder" in problem.message or "usable" in problem.message


# ---------------------------------------------------------------------------- workflows

UPDATES = st.lists(
    st.dictionaries(
        st.sampled_from(["node_type", "class_type", "title", "id", "inputs"]), values, max_size=3
    ),
    max_size=3,
)


def use_workflow(text: str, updates: list[dict[str, Any]]) -> None:
    """Load and derive a job's copy the way a strategy does; only WorkflowError may come."""
    errors: list[str] = []
    try:
        workflow = Workflow.from_json(text, source="workflows/fuzzed.json")
    except WorkflowError as exc:
        errors.append(str(exc))
    else:
        changes: list[Callable[[Workflow], Workflow]] = [
            lambda w: w.with_prompt("a fox", "blurry"),
            lambda w: w.with_random_seeds(Random(1)),
            lambda w: w.with_batch_size(2),
            lambda w: w.with_size(512, 512),
            lambda w: w.with_denoise(0.5),
            lambda w: w.with_input_image("fox.png"),
            lambda w: w.apply_updates(updates),
        ]
        for change in changes:
            try:
                workflow = change(workflow)
            except WorkflowError as exc:
                errors.append(str(exc))
        json.dumps(workflow.to_dict())
        workflow.class_types()
    assert all(e.startswith("workflows/fuzzed.json: ") for e in errors)


@fuzz
@given(mutated(SHIPPED_WORKFLOWS), UPDATES)
def test_a_changed_shipped_workflow_loads_or_says_what_is_wrong(data: Any, updates: Any) -> None:
    """A shipped workflow with nodes or inputs changed: usable, or a WorkflowError naming it."""
    use_workflow(json.dumps(data), updates)


@fuzz
@given(st.one_of(json_soup, values.map(json.dumps)), UPDATES)
def test_any_json_loads_or_says_what_is_wrong(text: str, updates: Any) -> None:
    """Any JSON text (or broken JSON) as a workflow: a Workflow or a WorkflowError."""
    use_workflow(text, updates)


@fuzz
@given(st.binary(max_size=300))
def test_check_reports_any_bytes_in_a_workflow_file(data: bytes) -> None:
    """`pipeline check` on a workflow file of arbitrary bytes lists problems; it never raises."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "workflows" / "fuzzed.json"
        path.parent.mkdir()
        path.write_bytes(data)
        problems = check_workflow(path, root=Path(folder))
        assert all(p.file == "workflows/fuzzed.json" for p in problems)


def test_a_deeply_nested_workflow_is_refused() -> None:
    """Thousands of nested brackets are a WorkflowError, not a RecursionError."""
    with pytest.raises(WorkflowError, match="nested too deeply"):
        Workflow.from_json('{"1": ' * 5000 + "1" + "}" * 5000, source="workflows/deep.json")
