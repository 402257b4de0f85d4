"""Workflow: loading the shipped workflows, deriving per-job copies, refusing broken files."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from comfy import Workflow, WorkflowError
from tests.comfy.conftest import WORKFLOWS

#: the shipped workflows that take an image and no prompt (pipeline.review_actions)
UPSCALE = ["upscale_tile.json"]
#: the shipped workflows that draw or animate (an upscale, a background removal or a speech
#: workflow has no prompt)
SHIPPED = sorted(
    p.name
    for p in WORKFLOWS.glob("*.json")
    if p.name not in UPSCALE
    and p.name != "remove_background.json"
    and not p.stem.endswith("_speech")
)


def test_the_background_removal_workflow_takes_an_image_and_saves_one() -> None:
    """A sticker's background removal: an `Input Image` to set, BRIA RMBG, a saved image."""
    workflow = Workflow.load(WORKFLOWS / "remove_background.json")
    assert workflow.inputs(workflow.resolve("Input Image"))["image"] == "input.png"
    assert workflow.find(class_type="BRIA_RMBG_Zho")
    assert workflow.find(class_type="SaveImage")


@pytest.mark.parametrize("name", SHIPPED, ids=SHIPPED)
def test_shipped_workflow_has_findable_nodes(name: str) -> None:
    """Every shipped workflow takes a prompt, seeds and a batch size."""
    workflow = Workflow.load(WORKFLOWS / name)
    changed = (
        workflow.with_prompt("a lighthouse", "blurry")
        .with_random_seeds(random.Random(1))
        .with_batch_size(2)
    )
    positive = changed.inputs(changed.resolve("Positive Prompt"))
    negative = changed.inputs(changed.resolve("Negative Prompt"))
    assert positive["text"] == "a lighthouse"
    assert negative["text"] == "blurry"
    assert changed.seeds()["3"]["seed"] != workflow.seeds()["3"]["seed"]
    assert changed.inputs(changed.resolve("KSampler"))["denoise"] is not None


@pytest.mark.parametrize("name", UPSCALE)
def test_the_upscale_workflow_takes_the_chosen_image_and_saves_one(name: str) -> None:
    """An upscale workflow has the LoadImage the chosen image goes into and a SaveImage."""
    workflow = Workflow.load(WORKFLOWS / name)
    [loader] = workflow.find(title="Input Image")
    assert workflow.class_type(loader) == "LoadImage"
    assert workflow.find(class_type="SaveImage")
    assert workflow.find(class_type="ImageUpscaleWithModel")


def test_the_speech_workflow_says_the_narration_and_saves_audio() -> None:
    """text2longvideo's speech workflow takes each scene's narration on the node titled
    "Narration" and saves what it says with ComfyUI's SaveAudio."""
    workflow = Workflow.load(WORKFLOWS / "text2longvideo_speech.json")
    said = workflow.set_by_title("Narration", "text", "The first snow falls.")
    assert said.inputs(said.resolve("Narration"))["text"] == "The first snow falls."
    [save] = said.find(class_type="SaveAudio")
    assert said.inputs(save)["audio"] == [said.resolve("Narration"), 0]


@pytest.mark.parametrize("name", ["text2img.json", "text2video.json", "image2video.json"])
def test_size_is_settable(name: str) -> None:
    """Workflows that make a picture from scratch take a width and height."""
    workflow = Workflow.load(WORKFLOWS / name).with_size(768, 512)
    sized = [n for n in workflow if "width" in workflow.inputs(n)]
    assert sized
    assert all(workflow.inputs(n)["width"] == 768 for n in sized)
    assert all(workflow.inputs(n)["height"] == 512 for n in sized)


def test_image_to_image_has_no_size_to_set() -> None:
    """Image-to-image keeps its input's size; asking for another one says so."""
    with pytest.raises(WorkflowError, match="no node has width and height inputs"):
        Workflow.load(WORKFLOWS / "image2image.json").with_size(512, 512)


@pytest.mark.parametrize(
    "name", ["image2image.json", "image2video.json", "image2video_mmaudio.json"]
)
def test_image_workflows_take_an_input_image(name: str) -> None:
    """The image workflows have a LoadImage titled "Input Image" to point at an upload."""
    workflow = Workflow.load(WORKFLOWS / name).with_input_image("upload (1).png")
    node = workflow.resolve("Input Image")
    assert workflow.class_type(node) == "LoadImage"
    assert workflow.inputs(node)["image"] == "upload (1).png"


@pytest.mark.parametrize("name", ["text2video.json", "image2video_mmaudio.json"])
def test_video_workflows_with_mmaudio_feed_its_sound_into_the_video(name: str) -> None:
    """The MMAudio workflows hear the decoded frames and put the sound into the video combine."""
    workflow = Workflow.load(WORKFLOWS / name)
    (sampler,) = workflow.sound_nodes()
    assert (
        workflow.inputs(sampler)["images"]
        == workflow.inputs(workflow.find(class_type="VHS_VideoCombine")[0])["images"]
    )
    combine = workflow.find(class_type="VHS_VideoCombine")[0]
    audio_from = workflow.inputs(combine)["audio"]
    assert isinstance(audio_from, list)
    assert workflow.class_type(str(audio_from[0])) == "MMAudioSampler"
    assert workflow.inputs(combine)["format"] == "video/h264-mp4"


def test_the_sound_prompt_goes_into_mmaudio_only() -> None:
    """The sound prompt lands in MMAudio's own prompt, never in the picture's text encoders."""
    workflow = Workflow.load(WORKFLOWS / "text2video.json")
    changed = workflow.with_sound_prompt("rain on a roof")
    (sampler,) = changed.sound_nodes()
    assert changed.inputs(sampler)["prompt"] == "rain on a roof"
    assert changed.inputs(changed.resolve("Positive Prompt"))["text"] == ""
    assert workflow.inputs(sampler)["prompt"] == ""


def test_a_wired_sound_prompt_is_left_alone_and_no_node_means_no_change() -> None:
    """A sampler whose prompt comes from another node keeps that link; a workflow without a
    sound node comes back as it was."""
    raw = json.loads((WORKFLOWS / "text2video.json").read_text())
    raw["52"]["inputs"]["prompt"] = ["6", 0]
    assert Workflow(raw).with_sound_prompt("x").inputs("52")["prompt"] == ["6", 0]
    plain = Workflow.load(WORKFLOWS / "image2video.json")
    assert plain.sound_nodes() == []
    assert plain.with_sound_prompt("x") == plain


def test_setters_never_change_the_template(text2img: Workflow) -> None:
    """A template loaded once serves many jobs: deriving a job leaves it as it was."""
    before = text2img.to_dict()
    text2img.with_prompt("x").with_random_seeds(random.Random(2)).set_input("3", "steps", 5)
    text2img.apply_updates([{"node_type": "KSampler", "inputs": {"cfg": 2.0}}])
    assert text2img.to_dict() == before
    text2img.to_dict()["3"]["inputs"]["steps"] = 99
    assert text2img.inputs("3")["steps"] == 28


def test_seeds_come_from_the_given_random(text2img: Workflow) -> None:
    """The same seeded Random reproduces the same seeds (so a run can be repeated)."""
    first = text2img.with_random_seeds(random.Random(42)).seeds()
    again = text2img.with_random_seeds(random.Random(42)).seeds()
    assert first == again
    assert first != text2img.with_random_seeds(random.Random(43)).seeds()


def test_noise_seed_is_randomised_too() -> None:
    """KSamplerAdvanced-style `noise_seed` inputs get fresh values as well."""
    workflow = Workflow(
        {"1": {"class_type": "KSamplerAdvanced", "inputs": {"noise_seed": 0, "steps": 4}}}
    )
    assert workflow.with_random_seeds(random.Random(5)).seeds()["1"]["noise_seed"] != 0


def test_prompt_found_through_the_sampler_links_without_titles(text2img: Workflow) -> None:
    """Untitled workflows still get their prompts, found from the sampler's wiring."""
    raw = text2img.to_dict()
    for node in raw.values():
        node.pop("_meta", None)
    changed = Workflow(raw).with_prompt("a cat", "a dog")
    assert changed.inputs("6")["text"] == "a cat"
    assert changed.inputs("7")["text"] == "a dog"


def test_prompt_found_through_image_to_video_conditioning() -> None:
    """In image-to-video the text sits behind WanImageToVideo; it is found there too."""
    raw = Workflow.load(WORKFLOWS / "image2video.json").to_dict()
    for node in raw.values():
        node.pop("_meta", None)
    assert Workflow(raw).with_prompt("a wave").inputs("6")["text"] == "a wave"


def test_set_by_class_exactly_one(text2img: Workflow) -> None:
    """Asking for exactly one node of a class fails when there are two."""
    assert text2img.set_by_class("KSampler", "steps", 8, exactly_one=True).inputs("3")["steps"] == 8
    with pytest.raises(WorkflowError, match="expected exactly one CLIPTextEncode node, found 2"):
        text2img.set_by_class("CLIPTextEncode", "text", "x", exactly_one=True)


def test_batch_size_uses_repeat_latent_batch_when_there_is_no_batch_size() -> None:
    """Image-to-image's batch is the RepeatLatentBatch amount."""
    workflow = Workflow.load(WORKFLOWS / "image2image.json").with_batch_size(3)
    assert workflow.inputs("12")["amount"] == 3


def test_denoise(text2img: Workflow) -> None:
    """Denoise is set on the sampler."""
    assert text2img.with_denoise(0.4).inputs("3")["denoise"] == 0.4


def test_custom_node_updates_by_type_title_and_id(text2img: Workflow) -> None:
    """A character's custom_node_updates change the nodes they name."""
    changed = text2img.apply_updates(
        [
            {"node_type": "KSampler", "inputs": {"steps": 12, "cfg": 4.0}},
            {
                "title": "Load Checkpoint",
                "inputs": {"ckpt_name": "v1-5-pruned-emaonly.safetensors"},
            },
            {"id": "5", "inputs": {"width": 640}},
        ]
    )
    assert changed.inputs("3")["steps"] == 12
    assert changed.inputs("4")["ckpt_name"] == "v1-5-pruned-emaonly.safetensors"
    assert changed.inputs("5")["width"] == 640


@pytest.mark.parametrize(
    ("update", "message"),
    [
        (
            {"node_type": "LoraLoader", "inputs": {"strength_model": 0.5}},
            "update 1 (node_type 'LoraLoader'): no node has class_type 'LoraLoader'",
        ),
        (
            {"title": "Sampler", "inputs": {"steps": 1}},
            "update 1 (title 'Sampler'): no node is titled 'Sampler'",
        ),
        (
            {"node_type": "KSampler", "inputs": {"cfg_scale": 7}},
            "update 1 (node_type 'KSampler'): node KSampler (3) has no input 'cfg_scale'",
        ),
        (
            {"inputs": {"steps": 1}},
            "update 1 must name exactly one of node_type, title or id",
        ),
    ],
    ids=["no-such-type", "no-such-title", "no-such-input", "no-selector"],
)
def test_bad_update_names_node_and_input(
    text2img: Workflow, update: dict[str, object], message: str
) -> None:
    """An update that fits no node, or no input, says which update, node and input."""
    with pytest.raises(WorkflowError, match=message.replace("(", r"\(").replace(")", r"\)")):
        text2img.apply_updates([update])


def test_ui_format_is_refused_with_the_way_out(tmp_path: Path) -> None:
    """A workflow saved in the UI format is refused, telling how to export the API format."""
    path = tmp_path / "ui.json"
    path.write_text(json.dumps({"last_node_id": 9, "nodes": [], "links": [], "version": 0.4}))
    with pytest.raises(WorkflowError) as caught:
        Workflow.load(path)
    assert str(path) in str(caught.value)
    assert "export it with Save (API Format)" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON (line 1, column 2"),
        ("[1, 2]", "a workflow must be a JSON object of nodes"),
        ("{}", "the workflow has no nodes"),
        ('{"1": {"inputs": {}}}', "node '1' has no class_type"),
        ('{"1": {"class_type": "X", "inputs": []}}', "node '1' (X): inputs must be an object"),
    ],
    ids=["bad-json", "not-object", "empty", "no-class", "bad-inputs"],
)
def test_broken_file_errors_name_the_file(tmp_path: Path, text: str, message: str) -> None:
    """A broken workflow file is refused with its path and what is wrong."""
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(WorkflowError) as caught:
        Workflow.load(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    """A workflow path that does not exist is named in the error."""
    with pytest.raises(WorkflowError, match=r"nowhere\.json: cannot read"):
        Workflow.load(tmp_path / "nowhere.json")


def test_prompt_node_missing_is_explained() -> None:
    """A workflow with no prompt node says how to mark one."""
    workflow = Workflow({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}})
    with pytest.raises(WorkflowError, match="no positive prompt node found"):
        workflow.with_prompt("x")


def test_setting_an_input_the_node_lacks(text2img: Workflow) -> None:
    """Setting an unknown input names the node and lists the inputs it has."""
    with pytest.raises(WorkflowError, match=r"node KSampler \(3\) has no input 'stepz'"):
        text2img.set_input("KSampler", "stepz", 3)


def test_class_types(text2img: Workflow) -> None:
    """Preflight asks the workflow which node classes it needs."""
    assert text2img.class_types() == {
        "CheckpointLoaderSimple",
        "EmptyLatentImage",
        "CLIPTextEncode",
        "KSampler",
        "VAEDecode",
        "SaveImage",
    }
