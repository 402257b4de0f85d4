"""A run's own options (style, count, negative prompt, input image) and a character's pinned
seeds, as the fake ComfyUI receives them: the real run walker and ComfyUI client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from comfy import ComfyPool
from pipeline.models import Job, RunState
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import World

Comfy = tuple[FakeComfyUI, ComfyPool]


def nodes(
    fake: FakeComfyUI, *, title: str | None = None, class_type: str | None = None
) -> list[dict[str, Any]]:
    """The inputs of every matching node of every prompt the fake received, in order."""
    found: list[dict[str, Any]] = []
    for received in fake.prompts:
        for node in received.prompt.values():
            if class_type is not None and node["class_type"] != class_type:
                continue
            if title is not None and node.get("_meta", {}).get("title") != title:
                continue
            found.append(node["inputs"])
    return found


def seeds(fake: FakeComfyUI) -> list[int]:
    return [inputs["seed"] for inputs in nodes(fake, class_type="KSampler")]


async def test_the_negative_prompt_reaches_the_negative_text_node(
    world: World, comfy: Comfy
) -> None:
    """`negative` replaces the workflow's negative text in every prompt queued."""
    run = await world.run(Job("testy", seed=1, quick=True, negative="hats, umbrellas"))
    assert run.state is RunState.PUBLISHED, run.failure
    negatives = nodes(comfy[0], title="Negative Prompt")
    assert [n["text"] for n in negatives] == ["hats, umbrellas"] * 2


async def test_count_sets_the_images_per_description(world: World, comfy: Comfy) -> None:
    """count 3 makes three images of each of the two descriptions, in one batch each."""
    run = await world.run(Job("testy", seed=2, quick=True, count=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert [n["batch_size"] for n in nodes(comfy[0], class_type="EmptyLatentImage")] == [3, 3]
    assert len(run.media) == 6


async def test_a_given_style_replaces_the_pick_and_keeps_the_other_choices(
    world: World,
) -> None:
    """The style asked for is described; the seed's other choices stay what they were."""
    plain = await world.run(Job("testy", seed=3, quick=True))
    styled = await world.run(Job("testy", seed=3, quick=True, style="anime"))
    assert plain.choices is not None
    assert styled.choices is not None
    assert styled.choices.style == "anime"
    assert all(d.endswith(", anime") for d in styled.descriptions)
    assert {k: v for k, v in vars(styled.choices).items() if k != "style"} == {
        k: v for k, v in vars(plain.choices).items() if k != "style"
    }


async def test_the_given_image_is_uploaded_instead_of_the_input_folder(
    world: World, comfy: Comfy, project: Path, tmp_path: Path
) -> None:
    """image2image starts from the job's image, not a pick from the character's inputs."""
    given = tmp_path / "mine.png"
    Image.new("RGB", (48, 32), "blue").save(given)
    run = await world.run(
        Job("testy", seed=4, quick=True, generation_type="image2image", input_images=(str(given),))
    )
    assert run.state is RunState.PUBLISHED, run.failure
    assert list(comfy[0].uploads.values()) == [given.read_bytes()]
    [loader] = nodes(comfy[0], title="Input Image")
    assert loader["image"] in comfy[0].uploads


async def test_a_given_image_needs_no_input_folder(
    world: World, comfy: Comfy, project: Path, tmp_path: Path
) -> None:
    """A character without input_dir runs image2image from the image a person gave."""
    path = project / "characters" / "testy.yaml"
    path.write_text(path.read_text().replace("image2image: {input_dir: inputs}", "image2image: {}"))
    given = tmp_path / "mine.png"
    Image.new("RGB", (40, 40), "green").save(given)
    run = await world.run(
        Job("testy", seed=5, quick=True, generation_type="image2image", input_images=(str(given),))
    )
    assert run.state is RunState.PUBLISHED, run.failure
    assert list(comfy[0].uploads.values()) == [given.read_bytes()]


async def test_the_same_seed_and_options_make_the_same_prompts(world: World, comfy: Comfy) -> None:
    """A run's seed still replays it with its options: ComfyUI receives the same prompts."""
    job = Job("testy", seed=6, quick=True, count=2, negative="fog", style="anime")
    await world.run(job)
    first = [p.prompt for p in comfy[0].prompts]
    await world.run(job)
    again = [p.prompt for p in comfy[0].prompts[len(first) :]]
    assert again == first
    assert len(set(seeds(comfy[0])[: len(first)])) == len(first)  # drawn afresh per prompt


@pytest.mark.parametrize(
    ("pin", "expected"),
    [
        ("{node_type: KSampler, seed: 1234}", 1234),
        ("{title: KSampler, seed: 77}", 77),
        ('{id: "3", seed: 18446744073709551615}', 2**64 - 1),
    ],
    ids=["by-class", "by-title", "by-id"],
)
async def test_a_pinned_seed_stays_in_every_prompt(
    world: World, comfy: Comfy, project: Path, pin: str, expected: int
) -> None:
    """A character's pinned sampler seed is the same in every prompt, whatever the run seed."""
    path = project / "characters" / "testy.yaml"
    text = path.read_text().replace(
        "general: {images_per_description: 2,",
        f"general: {{pinned_seeds: [{pin}], images_per_description: 2,",
    )
    path.write_text(text)
    for seed in (7, 8):
        run = await world.run(Job("testy", seed=seed, quick=True))
        assert run.state is RunState.PUBLISHED, run.failure
    assert seeds(comfy[0]) == [expected] * 4


async def test_a_pin_that_matches_no_node_fails_the_run_as_bad_input(
    world: World, project: Path
) -> None:
    """A pinned seed for a node the workflow lacks fails the run, naming the pin."""
    path = project / "characters" / "testy.yaml"
    path.write_text(
        path.read_text().replace(
            "general: {images_per_description: 2,",
            "general: {pinned_seeds: [{title: Sampler Two, seed: 1}], images_per_description: 2,",
        )
    )
    run = await world.run(Job("testy", seed=9, quick=True))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.bad_input
    assert "'Sampler Two'" in run.failure.describe()
