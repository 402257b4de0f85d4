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

from tests.cli import ROOT, SHIPPED_CREDENTIALS
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


@pytest.fixture
async def comfyui() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI() as fake:
        yield fake


def turn_on(character: Path, platform: str) -> None:
    """Enable a platform in a character file, as its comment tells a user to."""
    text = character.read_text()
    old = f"    {platform}: {{enabled: false,"
    assert old in text
    character.write_text(text.replace(old, f"    {platform}: {{enabled: true,"))


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
    return await check_with(project, {**SHIPPED_CREDENTIALS, **env})


async def check_with(project: Path, env: dict[str, str]) -> tuple[int, list[str], str]:
    """`check` with exactly these settings (no shipped credentials unless given)."""
    unset = {"DISCORD_TOKEN", "DATABASE_URL", *SHIPPED_CREDENTIALS}
    clean = {k: v for k, v in os.environ.items() if k not in unset}
    clean |= {"PYTHONPATH": str(ROOT), **env}
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
        "ok: 3 character file(s) valid, 8 workflow(s) read, 1 of 1 ComfyUI server(s) checked, "
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
        "ok: 3 character file(s) valid, 8 workflow(s) read, 1 of 2 ComfyUI server(s) checked, "
        "0 problem(s)",
    ]


async def test_missing_credentials_are_named_by_file_line_and_key_without_values(
    project: Path,
) -> None:
    """An enabled platform without credentials is a problem at its line; no value is shown."""
    turn_on(project / "characters" / "mascot.yaml", "twitter")
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
    turn_on(project / "characters" / "moonlit_tales.yaml", "instagram")
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


async def test_the_shipped_characters_pass_on_a_fresh_clone(project: Path) -> None:
    """With no credentials set at all, the shipped files pass: their platforms are off."""
    code, out, err = await check_with(project, {"COMFYUI_SERVERS": closed_port_url()})

    assert code == 0, "\n".join(out) + err
    assert out[-1].startswith("ok: 3 character file(s) valid")


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param("none", id="no-characters-folder"),
        pytest.param("empty", id="empty-characters-folder"),
    ],
)
async def test_no_character_files_is_a_failure(tmp_path: Path, layout: str) -> None:
    """Check run from the wrong folder says there is nothing to check, and fails."""
    if layout == "empty":
        (tmp_path / "characters").mkdir()

    code, out, _ = await check(tmp_path, COMFYUI_SERVERS=closed_port_url())

    assert code == 1
    assert out == [
        f"FAILED: no character files in {(tmp_path / 'characters').resolve()}: run check in "
        "the project folder (the one holding characters/), or set CHARACTERS_DIR"
    ]


async def test_every_problem_of_a_block_is_listed(project: Path) -> None:
    """A wrong threshold and a misspelt strategy in the same block are both listed."""
    mascot = project / "characters" / "mascot.yaml"
    text = mascot.read_text().replace("similarity_threshold: 0.6", "similarity_threshold: 2")
    mascot.write_text(text.replace("    text2img: 4", "    txt2img: 4"))

    code, out, _ = await check(project, COMFYUI_SERVERS=closed_port_url())

    assert code == 1
    assert out[:2] == [
        "characters/mascot.yaml:14: generation.similarity_threshold: must be between 0 and 1",
        "characters/mascot.yaml:9: generation.generation_type_weights.txt2img: unknown strategy "
        "'txt2img' (known: text2img, image2image, text2image2image, text2video, "
        "text2image2video, text2longvideo, sticker_pack)",
    ]
    assert out[-1].endswith("2 problem(s)")


async def test_a_wrong_publish_slot_is_named_by_file_and_line(project: Path) -> None:
    """A publish block's time that is not a time fails check, with its file, line and key."""
    mascot = project / "characters" / "mascot.yaml"
    lines = mascot.read_text().count("\n")
    mascot.write_text(mascot.read_text() + 'publish:\n  instagram:\n    times: ["9 am"]\n')

    code, out, _ = await check(project, COMFYUI_SERVERS=closed_port_url())

    assert code == 1
    assert out[0] == (
        f"characters/mascot.yaml:{lines + 3}: publish.instagram.times: '9 am' is not a time"
        " like 09:00"
    )


# (node, input, value or None to remove it, what check says after "node ...") for a link and
# a value: what the validation says of every kind of input is tested in
# tests/comfy/test_validation.py; here, that check puts it on the node's file and line
REFUSED = [
    pytest.param(
        "8", "samples", ["99", 0], '"VAE Decode" VAEDecode (8) input samples: links to node 99, '
        "which is not in the workflow",
        id="link-to-a-missing-node",
    ),
    pytest.param(
        "3", "sampler_name", "euler_fast", "KSampler (3) input sampler_name: 'euler_fast' is not "
        "one of the server's choices (euler, euler_ancestral, dpmpp_2m, dpmpp_2m_sde, uni_pc, "
        "lcm)",
        id="not-a-choice",
    ),
    pytest.param(
        "3", "cfg", None, "KSampler (3) input cfg: is required but missing",
        id="missing-required-input",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("node", "name", "value", "said"), REFUSED)
async def test_a_workflow_comfyui_would_refuse_fails_check(
    project: Path, comfyui: FakeComfyUI, node: str, name: str, value: object, said: str
) -> None:
    """What the server's own validation refuses is named by workflow file, line and node."""
    path = project / "workflows" / "text2img.json"
    workflow = json.loads(path.read_text())
    if value is None:
        del workflow[node]["inputs"][name]
    else:
        workflow[node]["inputs"][name] = value
    text = json.dumps(workflow, indent=2)
    path.write_text(text)
    line = text.splitlines().index(f'  "{node}": {{') + 1

    code, out, _ = await check(project, COMFYUI_SERVERS=comfyui.url)

    assert code == 1
    assert out[:-1] == [f"workflows/text2img.json:{line}: ComfyUI at {comfyui.url}: node {said}"]
    assert out[-1].endswith("1 problem(s)")


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
