"""Workflow validation as ComfyUI does it: the fake refuses what the real server refuses, and the
client's preflight (comfy.validation, shared with `check`) finds the same problem first.

Also the fake's per-node cache and its status messages, as comfyui-protocol.md records them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from comfy import Cached, ComfyClient, Event, PromptRejected, Workflow
from tests.fakes.comfyui import FakeComfyUI

Change = Callable[[dict[str, dict[str, object]]], None]


def set_input(node: str, name: str, value: object) -> Change:
    def change(prompt: dict[str, dict[str, object]]) -> None:
        inputs = prompt[node]["inputs"]
        assert isinstance(inputs, dict)
        inputs[name] = value

    return change


def drop_input(node: str, name: str) -> Change:
    def change(prompt: dict[str, dict[str, object]]) -> None:
        inputs = prompt[node]["inputs"]
        assert isinstance(inputs, dict)
        del inputs[name]

    return change


def changed(workflow: Workflow, change: Change) -> Workflow:
    raw: dict[str, dict[str, object]] = json.loads(workflow.to_json())
    change(raw)
    return Workflow(raw)


# (change to text2img, node the server blames, its error type, the preflight's line)
REFUSED = [
    pytest.param(
        set_input("8", "samples", ["99", 0]),
        "8",
        "exception_during_inner_validation",
        'node "VAE Decode" VAEDecode (8) '
        "input samples: links to node 99, which is not in the workflow",
        id="link-to-a-missing-node",
    ),
    pytest.param(
        set_input("9", "images", ["42", 0]),
        "9",
        "exception_during_validation",
        'node "Save Image" SaveImage (9) '
        "input images: links to node 42, which is not in the workflow",
        id="output-links-to-a-missing-node",
    ),
    pytest.param(
        set_input("8", "vae", ["4", 5]),
        "8",
        "exception_during_inner_validation",
        'node "VAE Decode" VAEDecode (8) '
        "input vae: links to output 5 of node 4 (CheckpointLoaderSimple), "
        "which has 3 output(s)",
        id="link-to-a-missing-output",
    ),
    pytest.param(
        set_input("8", "samples", ["4", 0]),
        "8",
        "return_type_mismatch",
        'node "VAE Decode" VAEDecode (8) '
        "input samples: expects LATENT but is linked to MODEL "
        "(output 0 of node 4, CheckpointLoaderSimple)",
        id="linked-type-mismatch",
    ),
    pytest.param(
        set_input("3", "steps", 10001),
        "3",
        "value_bigger_than_max",
        "node KSampler (3) input steps: 10001 is above the maximum 10000",
        id="above-max",
    ),
    pytest.param(
        set_input("5", "width", 8),
        "5",
        "value_smaller_than_min",
        'node "Empty Latent Image" EmptyLatentImage (5) input width: 8 is below the minimum 16',
        id="below-min",
    ),
    pytest.param(
        set_input("5", "batch_size", "two"),
        "5",
        "invalid_input_type",
        'node "Empty Latent Image" EmptyLatentImage (5) '
        "input batch_size: 'two' is not a whole number (INT)",
        id="string-for-an-int",
    ),
    pytest.param(
        set_input("3", "cfg", "strong"),
        "3",
        "invalid_input_type",
        "node KSampler (3) input cfg: 'strong' is not a number (FLOAT)",
        id="string-for-a-float",
    ),
    pytest.param(
        set_input("3", "scheduler", "karas"),
        "3",
        "value_not_in_list",
        "node KSampler (3) input scheduler: 'karas' is not one of the server's choices "
        "(normal, karras, exponential, simple, sgm_uniform, beta)",
        id="not-a-choice",
    ),
    pytest.param(
        set_input("4", "ckpt_name", "dream.safetensors"),
        "4",
        "value_not_in_list",
        'node "Load Checkpoint" CheckpointLoaderSimple (4) input ckpt_name: '
        "'dream.safetensors' is not installed on the server",
        id="model-not-installed",
    ),
    pytest.param(
        drop_input("3", "cfg"),
        "3",
        "required_input_missing",
        "node KSampler (3) input cfg: is required but missing",
        id="missing-required-input",
    ),
]


@pytest.mark.parametrize(("change", "node", "kind", "line"), REFUSED)
async def test_the_fake_refuses_what_comfyui_refuses_and_preflight_says_so_first(
    client: ComfyClient,
    fake: FakeComfyUI,
    text2img: Workflow,
    change: Change,
    node: str,
    kind: str,
    line: str,
) -> None:
    """A broken workflow is refused by the server and named, node and input, by preflight."""
    workflow = changed(text2img, change)

    assert await client.problems(workflow) == [line]
    with pytest.raises(PromptRejected) as caught:
        await client.submit(workflow)
    assert caught.value.error_type == "prompt_outputs_failed_validation"
    assert [(e.node_id, e.type) for e in caught.value.node_errors] == [(node, kind)]
    assert fake.prompts == []


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(set_input("5", "width", "768"), id="number-in-a-string"),
        pytest.param(set_input("3", "cfg", 7), id="int-for-a-float"),
        pytest.param(
            lambda p: p.update({"50": {"class_type": "EmptyLatentImage", "inputs": {}}}),
            id="unused-node-lacking-inputs",
        ),
    ],
)
async def test_what_comfyui_accepts_passes_both(
    client: ComfyClient, text2img: Workflow, change: Change
) -> None:
    """What the real server converts or never runs is no problem for preflight nor the fake."""
    workflow = changed(text2img, change)

    assert await client.problems(workflow) == []
    await client.wait(await client.submit(workflow))


async def test_a_bad_second_output_is_dropped_and_named(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """One good output is enough for the server to run it; preflight names the dropped one."""
    workflow = changed(
        text2img,
        lambda p: p.update({"10": {"class_type": "PreviewImage", "inputs": {"images": ["77", 0]}}}),
    )

    assert await client.problems(workflow) == [
        "node PreviewImage (10) input images: links to node 77, which is not in the workflow"
    ]
    prompt_id = await client.submit(workflow)
    await client.wait(prompt_id)
    assert list(fake.history[prompt_id]["outputs"]) == ["9"]


async def test_only_changed_nodes_run_again(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """A new seed re-runs the sampler and what follows; loaders and prompts come from the cache."""
    first = await client.run(text2img.set_input("3", "seed", 1), tmp_path / "a")
    events: list[Event] = []
    second = await client.run(
        text2img.set_input("3", "seed", 2), tmp_path / "b", on_event=events.append
    )

    cached = [e.nodes for e in events if isinstance(e, Cached)]
    assert [set(nodes) for nodes in cached] == [{"4", "5", "6", "7"}]
    assert fake.jobs[-1].outcome == "success"
    assert [f.filename for f in second] != [f.filename for f in first]


async def test_two_status_messages_follow_a_post(fake: FakeComfyUI, text2img: Workflow) -> None:
    """After POST /prompt the server says twice that one prompt is queued, then starts it."""
    client_id = str(uuid.uuid4())
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(f"{fake.url}/ws?clientId={client_id}") as ws,
    ):
        hello = await ws.receive_json(timeout=5)
        assert hello["data"]["sid"] == client_id
        body = {"prompt": text2img.to_dict(), "client_id": client_id}
        async with session.post(f"{fake.url}/prompt", json=body) as answer:
            assert answer.status == 200
        seen: list[dict[str, object]] = []
        while not seen or seen[-1]["type"] != "execution_start":
            seen.append(await asyncio.wait_for(ws.receive_json(), 5))
    assert [m["type"] for m in seen] == ["status", "status", "execution_start"]
    assert [m["data"] for m in seen[:2]] == [{"status": {"exec_info": {"queue_remaining": 1}}}] * 2


async def test_a_refusal_has_the_real_servers_shape(fake: FakeComfyUI, text2img: Workflow) -> None:
    """The 400 body names the node, its class, the outputs it blocks and the server's reason."""
    prompt = text2img.set_input("9", "images", ["42", 0]).to_dict()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{fake.url}/prompt", json={"prompt": prompt}) as answer,
    ):
        body = await answer.json()
    assert answer.status == 400
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    [(node, entry)] = body["node_errors"].items()
    assert (node, entry["class_type"], entry["dependent_outputs"]) == ("9", "SaveImage", ["9"])
    [error] = entry["errors"]
    assert (error["type"], error["details"]) == ("exception_during_validation", "'42'")
    assert error["extra_info"]["exception_type"] == "KeyError"
    assert error["extra_info"]["traceback"]


async def test_a_workflow_with_no_output_node_is_named(client: ComfyClient) -> None:
    """A workflow that saves nothing is one line of preflight, as the server refuses it whole."""
    workflow = Workflow({"1": {"class_type": "EmptyImage", "inputs": {}}})

    assert await client.problems(workflow) == [
        "the workflow has no output node (such as SaveImage), so ComfyUI would run nothing"
    ]
    with pytest.raises(PromptRejected) as caught:
        await client.submit(workflow)
    assert caught.value.error_type == "prompt_no_outputs"


async def test_a_very_long_chain_of_nodes_is_checked_without_a_crash(client: ComfyClient) -> None:
    """Preflight walks thousands of linked nodes (deeper than Python's recursion limit)."""
    nodes: dict[str, object] = {
        "0": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1}}
    }
    for n in range(1, 3000):
        nodes[str(n)] = {"class_type": "ImageInvert", "inputs": {"image": [str(n - 1), 0]}}
    nodes["out"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["2999", 0], "filename_prefix": "long"},
    }

    assert await client.problems(Workflow(nodes)) == [
        "node EmptyImage (0) input color: is required but missing"
    ]
