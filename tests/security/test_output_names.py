"""Names from ComfyUI never choose where files go: whatever filename or subfolder a server
reports (`../../evil.png`, an absolute path, a dotfile), the download lands in the run's folder.

The real ComfyClient against the fake server, which reports and serves hostile names.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfy import ComfyClient, Workflow
from tests.fakes.comfyui import FakeComfyUI

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"

HOSTILE = [
    ("", "../../evil.png"),
    ("../../..", "evil.png"),
    ("", "/tmp/evil.png"),  # noqa: S108  (a name the server reports, never a path we use)
    ("/etc", "passwd"),
    ("", "..\\..\\evil.png"),
    ("", ".bashrc"),
    ("", "..."),
    ("", ""),
    ("", "a/../../../b.png"),
    ("", "x" * 400 + ".png"),
    ("", "evil\x00.png"),
    ("", "-rf.png"),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.02, steps=1) as server:
        yield server


@pytest.fixture
async def client(fake: FakeComfyUI) -> AsyncIterator[ComfyClient]:
    async with ComfyClient(fake.url, stall_timeout=2.0) as comfy:
        yield comfy


def files_under(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("subfolder", "filename"), HOSTILE, ids=[repr(n) for n in HOSTILE])
async def test_a_hostile_output_name_is_written_inside_the_run_folder(
    fake: FakeComfyUI, client: ComfyClient, tmp_path: Path, subfolder: str, filename: str
) -> None:
    """The file arrives, with a plain name, directly in the run folder; nothing else on disk
    changes."""
    run_folder = tmp_path / "project" / "output" / "mascot" / "run1"
    before = files_under(tmp_path)
    fake.faults.report_as = [(subfolder, filename)]
    workflow = Workflow.load(WORKFLOWS / "text2img.json").with_prompt("a fox")
    [output] = await client.run(workflow, run_folder)
    assert output.path.parent == run_folder
    assert output.path.read_bytes().startswith(b"\x89PNG")
    name = output.path.name
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,119}", name), name
    assert files_under(tmp_path) - before == {output.path}


async def test_two_outputs_reported_under_one_name_do_not_overwrite_each_other(
    fake: FakeComfyUI, client: ComfyClient, tmp_path: Path
) -> None:
    """A server naming two files alike (or a file that exists) never replaces a file: the
    second gets its own name."""
    run_folder = tmp_path / "run1"
    run_folder.mkdir()
    (run_folder / "evil.png").write_bytes(b"ours")
    fake.faults.report_as = [("a", "../evil.png"), ("b", "../evil.png")]
    workflow = Workflow.load(WORKFLOWS / "text2img.json").with_batch_size(2)
    outputs = await client.run(workflow, run_folder)
    assert (run_folder / "evil.png").read_bytes() == b"ours"
    assert sorted(o.path.name for o in outputs) == ["evil-1.png", "evil-2.png"]


async def test_a_symlink_in_the_run_folder_is_not_followed(
    fake: FakeComfyUI, client: ComfyClient, tmp_path: Path
) -> None:
    """A link planted under the reported name is left alone; the download takes a new name
    instead of writing through the link."""
    run_folder = tmp_path / "run1"
    run_folder.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    (run_folder / "evil.png").symlink_to(outside)
    fake.faults.report_as = [("", "evil.png")]
    workflow = Workflow.load(WORKFLOWS / "text2img.json")
    [output] = await client.run(workflow, run_folder)
    assert outside.read_text() == "keep me"
    assert output.path == run_folder / "evil-1.png"
