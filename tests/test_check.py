"""`python -m pipeline check` on credentials and against live ComfyUI servers, as a user runs it.

The command runs as a subprocess; the fake ComfyUI serves /object_info on this test's loop, so
the subprocess is started with asyncio (a blocking wait would starve the fake).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama
from tests.test_cli import ROOT, SHIPPED_CREDENTIALS


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


@pytest.fixture
async def comfyui() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as fake:
        yield fake


@pytest.fixture(autouse=True)
async def language_model(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeOllama]:
    """Every check here asks a healthy model (the model doctor, pipeline/llm/doctor.py)."""
    async with FakeOllama() as fake:
        fake.respond_with(HealthyModel())
        monkeypatch.setenv("LLM_CHAIN", "ollama")
        monkeypatch.setenv("OLLAMA_HOST", fake.url)
        yield fake


def closed_port_url() -> str:
    """A localhost URL nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def check(project: Path, **env: str) -> tuple[int, list[str], str]:
    """Run `python -m pipeline check` in `project`: exit code, stdout lines, stderr."""
    clean = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "DATABASE_URL"}}
    clean |= {"PYTHONPATH": str(ROOT), **SHIPPED_CREDENTIALS, **env}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pipeline", "check",
        cwd=project, env=clean, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 50)
    assert process.returncode is not None
    return process.returncode, out.decode().splitlines(), err.decode()


async def test_shipped_workflows_pass_on_a_server_that_has_their_nodes(
    project: Path, comfyui: FakeComfyUI
) -> None:
    """Every shipped workflow runs on a stock ComfyUI: check is green and says it asked."""
    code, out, err = await check(project, COMFYUI_SERVERS=comfyui.url)

    assert code == 0, "\n".join(out) + err
    assert out == [
        "ok: 3 character file(s) valid, 4 workflow(s) read, 1 of 1 ComfyUI server(s) checked, "
        "0 problem(s)"
    ]


async def test_a_node_the_server_lacks_is_named_per_workflow(
    project: Path, comfyui: FakeComfyUI
) -> None:
    """A workflow using a custom node the server has not installed fails check, by file."""
    custom = json.loads((project / "workflows" / "text2img.json").read_text())
    custom["99"] = {"class_type": "UltimateSDUpscale", "inputs": {"image": ["8", 0]}}
    (project / "workflows" / "upscale.json").write_text(json.dumps(custom))

    code, out, _ = await check(project, COMFYUI_SERVERS=comfyui.url)

    assert code == 1
    assert out[:-1] == [
        f"workflows/upscale.json: ComfyUI at {comfyui.url}: node classes not installed: "
        "UltimateSDUpscale"
    ]
    assert out[-1].startswith("FAILED: ")


async def test_a_server_that_does_not_answer_is_a_note_not_a_failure(
    project: Path, comfyui: FakeComfyUI
) -> None:
    """One server down: check says which one and still passes on the one that answered."""
    down = closed_port_url()

    code, out, _ = await check(project, COMFYUI_SERVERS=f"{comfyui.url},{down}#video")

    assert code == 0
    assert out == [
        f"note: ComfyUI at {down} did not answer (ClientConnectorError); the workflows were "
        "not checked against it",
        "ok: 3 character file(s) valid, 4 workflow(s) read, 1 of 2 ComfyUI server(s) checked, "
        "0 problem(s)",
    ]


async def test_missing_credentials_are_named_by_file_line_and_key_without_values(
    project: Path,
) -> None:
    """An enabled platform without credentials is a problem at its line; no value is shown."""
    env = {k: "" for k in SHIPPED_CREDENTIALS if k.startswith("MASCOT_TWITTER_")}
    env["MASCOT_TWITTER_API_KEY"] = "ck-visible-SECRET"
    env["MASCOT_TWITTER_ACCESS_SECRET"] = "as-hidden-SECRET"

    code, out, err = await check(project, COMFYUI_SERVERS=closed_port_url(), **env)

    assert code == 1
    assert out[0] == (
        "characters/mascot.yaml:31: social_media.platforms.twitter.credentials: "
        "MASCOT_TWITTER_API_SECRET, MASCOT_TWITTER_ACCESS_TOKEN are not set (in the "
        "environment, .env or credentials/mascot_twitter.json)"
    )
    assert out[-1].endswith("1 problem(s)")
    shown = "\n".join(out) + err
    assert "ck-visible-SECRET" not in shown
    assert "as-hidden-SECRET" not in shown


async def test_an_unreadable_session_file_is_a_problem(project: Path) -> None:
    """An Instagram session file that cannot be read is reported at the credentials key."""
    session = project / "data" / "sessions" / "instagram-moonlit_instagram.json"
    session.parent.mkdir(parents=True)
    session.write_text("{cut off")
    session.chmod(0o600)

    code, out, _ = await check(project, COMFYUI_SERVERS=closed_port_url())

    assert code == 1
    assert out[0] == (
        "characters/moonlit_tales.yaml:32: social_media.platforms.instagram.credentials: "
        "session file data/sessions/instagram-moonlit_instagram.json is not readable: delete "
        "it to log in afresh"
    )


async def test_a_misspelt_provider_is_named_with_the_known_ones(
    project: Path, comfyui: FakeComfyUI
) -> None:
    """`LLM_CHAIN=ollam` fails check with one line naming the variable and the known names."""
    code, out, _ = await check(project, COMFYUI_SERVERS=comfyui.url, LLM_CHAIN="ollam")

    assert code == 1
    assert out[0] == (
        "models: LLM_CHAIN: unknown provider 'ollam' (known: ollama, openrouter, gemini)"
    )


async def test_a_vision_model_that_cannot_see_fails_check(
    project: Path, comfyui: FakeComfyUI, language_model: FakeOllama
) -> None:
    """A text-only model set as the vision model is caught: it was shown an image and did not
    see it."""
    language_model.blind = True
    language_model.pulled = ["qwen3:8b", "qwen3:4b"]

    code, out, _ = await check(project, COMFYUI_SERVERS=comfyui.url, OLLAMA_VISION_MODEL="qwen3:4b")

    assert code == 1
    assert out[0].startswith(
        f"models: OLLAMA_VISION_MODEL qwen3:4b on ollama at {language_model.url}: cannot see images"
    )


async def test_a_model_server_that_does_not_answer_is_a_note(
    project: Path, comfyui: FakeComfyUI
) -> None:
    """No model server at OLLAMA_HOST: a note, and check still passes."""
    down = closed_port_url()

    code, out, _ = await check(project, COMFYUI_SERVERS=comfyui.url, OLLAMA_HOST=down)

    assert code == 0
    assert out[0] == f"note: ollama at {down} did not answer (could not be reached); not asked"
