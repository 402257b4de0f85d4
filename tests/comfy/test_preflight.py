"""Preflight of workflows on several servers at once: what each lacks, and who did not answer."""

from __future__ import annotations

from comfy import Workflow, preflight_servers
from tests.comfy.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI


def shipped() -> dict[str, Workflow]:
    return {
        p.name: Workflow.from_json(p.read_text(), source=p.name) for p in WORKFLOWS.glob("*.json")
    }


async def test_a_missing_node_class_is_named_for_its_workflow(fake: FakeComfyUI) -> None:
    """Only the workflow that uses an uninstalled node is reported, with the class name."""
    workflows = shipped()
    custom = Workflow.from_json(
        '{"1": {"class_type": "ReActorFaceSwap", "inputs": {}}}', source="faceswap.json"
    )

    [report] = await preflight_servers([fake.url], {**workflows, "faceswap.json": custom})

    assert report.unreachable is None
    assert dict(report.problems) == {
        "faceswap.json": ["node classes not installed: ReActorFaceSwap"]
    }


async def test_a_server_that_does_not_answer_is_reported_apart(fake: FakeComfyUI) -> None:
    """A server that is down does not hide the answer of the one that is up."""
    await fake.go_down()
    up = FakeComfyUI()
    async with up:
        down_report, up_report = await preflight_servers(
            [fake.url, up.url], shipped(), connect_timeout=1.0
        )

    assert down_report.url == fake.url
    assert down_report.unreachable is not None
    assert up_report.unreachable is None
    assert up_report.problems == {}


async def test_a_check_reads_each_node_list_once(fake: FakeComfyUI) -> None:
    """Checking many workflows, several of them refused, costs the server one node-list read."""
    broken = {
        f"custom{i}.json": Workflow.from_json(
            f'{{"1": {{"class_type": "Missing{i}", "inputs": {{}}}}}}', source=f"custom{i}.json"
        )
        for i in range(3)
    }
    [report] = await preflight_servers([fake.url], {**shipped(), **broken})
    assert sorted(report.problems) == sorted(broken)
    assert fake.count("GET", "/object_info") == 1
