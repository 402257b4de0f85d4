"""`python -m comfy` as a real subprocess against the fake server: output and exit codes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from tests.comfy.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


async def cli(*args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("COMFYUI_SERVERS", None)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "comfy",
        *args,
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_run_saves_outputs_and_prints_paths(fake: FakeComfyUI, tmp_path: Path) -> None:
    """A successful run prints the saved files' paths and exits 0."""
    code, out, err = await cli(
        "run", str(WORKFLOWS / "text2img.json"), "--server", fake.url,
        "--set", "Positive Prompt.text=a quiet harbour", "--set", "5.batch_size=2",
        "--seed", "3", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    paths = [Path(line) for line in out.splitlines()]
    assert len(paths) == 2
    assert all(p.parent == tmp_path and p.exists() for p in paths)
    assert "step 2/2" in err
    assert fake.prompts[0].prompt["6"]["inputs"]["text"] == "a quiet harbour"


async def test_rejected_prompt_prints_each_node_error_and_exits_1(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    """A workflow the server refuses lists each node error on its own line, exit code 1."""
    code, _, err = await cli(
        "run", str(WORKFLOWS / "text2img.json"), "--server", fake.url,
        "--set", "Load Checkpoint.ckpt_name=nope.safetensors", "--set", "3.sampler_name=fast",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 1
    lines = err.splitlines()
    # our preflight finds both before the server is even asked
    assert any("ckpt_name: 'nope.safetensors' is not installed" in line for line in lines)
    assert any("sampler_name: 'fast' is not one of the server's choices" in line for line in lines)
    assert fake.prompts == []


async def test_server_rejection_exits_1(fake: FakeComfyUI, tmp_path: Path) -> None:
    """A 400 from the server itself prints its node errors, exit code 1."""
    fake.reject_next()
    code, _, err = await cli(
        "run", str(WORKFLOWS / "text2img.json"), "--server", fake.url, "--out", str(tmp_path)
    )
    assert code == 1
    assert "node CheckpointLoaderSimple (4) input ckpt_name: value not in list" in err.splitlines()


async def test_execution_error_exits_2(fake: FakeComfyUI, tmp_path: Path) -> None:
    """A node failing on the server prints the node and its message, exit code 2."""
    fake.faults.fail_class = "VAEDecode"
    code, _, err = await cli(
        "run", str(WORKFLOWS / "text2img.json"), "--server", fake.url, "--out", str(tmp_path)
    )
    assert code == 2
    assert "node VAEDecode (8) failed: **** ERROR" in err


async def test_server_not_answering_exits_3(fake: FakeComfyUI, tmp_path: Path) -> None:
    """No server answering gives exit code 3."""
    await fake.go_down()
    code, _, err = await cli(
        "run", str(WORKFLOWS / "text2img.json"), "--server", fake.url, "--out", str(tmp_path),
        "--timeout", "1",
    )  # fmt: skip
    assert code == 3, err


async def test_ui_format_file_exits_1(tmp_path: Path) -> None:
    """A UI-format file is refused before any server is asked."""
    path = tmp_path / "ui.json"
    path.write_text('{"nodes": [], "links": []}')
    code, _, err = await cli("run", str(path), "--out", str(tmp_path))
    assert code == 1
    assert "export it with Save (API Format)" in err


async def test_info_shows_version_devices_and_queue(fake: FakeComfyUI) -> None:
    """`info` prints the server's version, GPU and queue."""
    code, out, _ = await cli("info", "--server", fake.url)
    assert code == 0
    assert "ComfyUI 0.3.64" in out
    assert "cuda" in out
    assert "queue: 0 running, 0 pending" in out


async def test_a_job_without_output_files_exits_2(fake: FakeComfyUI, tmp_path: Path) -> None:
    """A workflow that only previews finishes on the server, but the run says it made no files
    and exits 2, not 0."""
    workflow = json.loads((WORKFLOWS / "text2img.json").read_text())
    workflow["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    path = tmp_path / "preview-only.json"
    path.write_text(json.dumps(workflow))
    code, out, err = await cli("run", str(path), "--server", fake.url, "--out", str(tmp_path / "o"))
    assert code == 2, err
    assert out == ""
    assert "finished without output files" in err
    assert "Traceback" not in err


async def test_ctrl_c_while_downloading_leaves_no_file_in_out(
    fake: FakeComfyUI, tmp_path: Path
) -> None:
    """Ctrl-C while the outputs arrive stops the run with 130 and leaves no partial or empty
    file in --out."""
    fake.faults.view_trickle = (16, 0.05)
    out_dir = tmp_path / "out"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "comfy", "run", str(WORKFLOWS / "text2img.json"),
        "--server", fake.url, "--set", "5.batch_size=2", "--out", str(out_dir),
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    async with asyncio.timeout(20):
        while not files_in(out_dir):  # noqa: ASYNC110 - the file is another process's doing
            await asyncio.sleep(0.02)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 130, err.decode()
    assert files_in(out_dir) == []
    assert "Traceback" not in err.decode()


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
