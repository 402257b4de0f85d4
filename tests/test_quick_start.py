"""The README's quick start, followed as a new user would on a copy of the project tree: copy
`.env.example` to `.env`, put the fakes' addresses in it (ComfyUI, Ollama), then run the quick
start's own commands, read from the README, as processes: `check`, a first run reviewed on the
console, `new-character` and a run of the new character. Each must do what the README says it
does, so this test fails when the README, `.env.example` or the code drift apart. Not run:
the install (the test's own environment stands for it) and the bot (tests/bot/test_e2e.py
starts `python -m bot` against the fake Discord)."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pipeline.settings import Settings
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[1]

#: what a fresh clone does not have: the developer's own state and caches
_NOT_IN_A_CLONE = shutil.ignore_patterns(
    ".git", ".venv", ".env", "data", "output", "credentials", "__pycache__", "*.egg-info",
    ".mypy_cache", ".ruff_cache", ".pytest_cache",
)  # fmt: skip

#: the review question the README quotes
APPROVE_QUESTION = "Approve? [y = all / n / numbers like 1 3]"


def quick_start() -> str:
    """The README's "Quick start" section, up to the next second-level heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("\n## Quick start\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def commands(section: str) -> list[str]:
    """Every command line of the section's `sh` code blocks, in order."""
    blocks = re.findall(r"^[ \t]*```sh\n(.*?)^[ \t]*```", section, re.MULTILINE | re.DOTALL)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def the_command(lines: list[str], pattern: str) -> str:
    """The one command line matching `pattern` (a regular expression)."""
    found = [line for line in lines if re.search(pattern, line)]
    assert len(found) == 1, f"the quick start should give one command matching {pattern}: {lines}"
    return found[0]


def set_setting(env_file: Path, name: str, value: str) -> None:
    """Uncomment and set `name` in `env_file`, as a user edits it; the line must be there."""
    text = env_file.read_text(encoding="utf-8")
    line = re.compile(rf"^#? ?{re.escape(name)}=.*$", re.MULTILINE)
    assert line.search(text), f"{name} is not in .env.example"
    env_file.write_text(line.sub(f"{name}={value}", text, count=1), encoding="utf-8")


@dataclass
class Shell:
    """Runs the README's command lines in the copy, with an environment that holds no setting
    of whoever runs the tests (the copy's `.env` is all there is)."""

    folder: Path
    env: dict[str, str]

    async def run(self, line: str, *, answer: str | None = None) -> tuple[int, str, str]:
        """Run `line`; with `answer`, type it once the review question is asked."""
        process = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            line,
            cwd=self.folder,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None
        out: list[str] = []
        err: list[str] = []

        asked = asyncio.Event()

        async def read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):
                into.append(chunk.decode())
                if into is out and APPROVE_QUESTION in "".join(out):
                    asked.set()

        readers = [
            asyncio.create_task(read(process.stdout, out)),
            asyncio.create_task(read(process.stderr, err)),
        ]
        if answer is not None:  # typed once asked (or never, when the output ends first)
            question = asyncio.create_task(asked.wait())
            await asyncio.wait({question, readers[0]}, return_when=asyncio.FIRST_COMPLETED)
            question.cancel()
            if asked.is_set():
                process.stdin.write(answer.encode() + b"\n")
                await process.stdin.drain()
        process.stdin.close()
        code = await asyncio.wait_for(process.wait(), 120)
        await asyncio.gather(*readers)
        return code, "".join(out), "".join(err)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A copy of the project tree as a fresh clone has it, with the test's Python as `.venv`
    (the quick start's install step, done once for the whole suite)."""
    folder = tmp_path / "clone"
    shutil.copytree(ROOT, folder, ignore=_NOT_IN_A_CLONE)
    if sys.prefix != sys.base_prefix:  # a virtual environment: the same one, whole
        (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    else:
        (folder / ".venv" / "bin").mkdir(parents=True)
        (folder / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return folder


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeComfyUI, FakeOllama]]:
    async with FakeComfyUI(job_seconds=0.1) as comfy, FakeOllama() as ollama:
        ollama.respond_with(HealthyModel())
        yield comfy, ollama


def clean_env() -> dict[str, str]:
    """This process's environment without any setting (nor a PYTHONPATH into the original)."""
    names = {name.upper() for name in Settings.model_fields} | {"PYTHONPATH"}
    return {k: v for k, v in os.environ.items() if k not in names}


async def test_the_quick_start_works_as_written(
    clone: Path, fakes: tuple[FakeComfyUI, FakeOllama]
) -> None:
    """From a fresh copy: `.env` from the example with the servers' addresses, `check` ends in
    `ok:`, the first run lists its images and asks for the review, and approved it leaves them
    in `output/example/RUN_ID/`; `new-character` writes a file that passes `check` and runs."""
    comfy, ollama = fakes
    section = quick_start()
    lines = commands(section)
    shell = Shell(clone, clean_env())

    # 2. Settings: the copy, then the servers' addresses as docs/comfyui.md and docs/models.md say
    code, out, err = await shell.run(the_command(lines, r"^cp \.env\.example \.env$"))
    assert code == 0, out + err
    set_setting(clone / ".env", "COMFYUI_SERVERS", comfy.url)
    set_setting(clone / ".env", "OLLAMA_HOST", ollama.url)
    # 4. Models: the fake has pulled exactly what the quick start says to pull
    ollama.pulled = [line.split()[-1] for line in lines if line.startswith("ollama pull ")]
    assert ollama.pulled, "the quick start names the models to pull"

    # 5. Check
    check = next(line for line in lines if line.endswith(" -m pipeline check"))
    code, out, err = await shell.run(check)
    assert code == 0, out + err
    verdict = out.strip().splitlines()[-1]
    assert verdict.startswith("ok:"), out + err
    assert "1 of 1 ComfyUI server(s) checked" in verdict  # asked, not a note
    assert "Traceback" not in err

    # 6. First run, reviewed on the console: every kept image approved with `y`
    first = next(line for line in lines if " -m pipeline run " in line)
    assert "--review" not in first  # the console review is the default
    code, out, err = await shell.run(first, answer="y")
    assert code == 0, out + err
    character = shlex.split(first)[shlex.split(first).index("--character") + 1]
    run_id = re.findall(r"^run ([0-9a-f]+): ", out, re.MULTILINE)[-1]
    folder = clone / "output" / character / run_id
    for step in ("prompt", "generate", "review"):  # its steps while ComfyUI works
        assert f"] {step} " in err, err
    assert APPROVE_QUESTION in out
    assert re.search(r"^  \[(instagram|twitter)\] \S", out, re.MULTILINE), out  # the captions
    assert f"run {run_id}: approved" in out  # --no-publish: approved, posted nowhere
    images = sorted(folder.rglob("*.png"))
    assert images, f"no images in {folder}"
    for image in images:  # the review listed each with its score and path
        assert re.search(rf"\d\.\d\d  {re.escape(str(image))}", out), out
    assert comfy.prompts
    assert "Traceback" not in err

    # Your own character: new-character, check, a run
    new = the_command(lines, r" -m pipeline new-character ")
    name = shlex.split(new)[-1]
    code, out, err = await shell.run(new)
    assert code == 0, out + err
    assert f"characters/{name}.yaml" in out
    assert (clone / "characters" / f"{name}.yaml").is_file()
    code, out, err = await shell.run(check)
    assert code == 0, out + err
    files = int(verdict.split()[1])
    assert out.strip().splitlines()[-1].startswith(f"ok: {files + 1} character file(s) valid")
    own = the_command(lines, rf" -m pipeline run --character {re.escape(name)} ")
    code, out, err = await shell.run(own, answer="y")
    assert code == 0, out + err
    run_id = re.findall(r"^run ([0-9a-f]+): ", out, re.MULTILINE)[-1]
    assert f"run {run_id}: approved" in out
    assert sorted((clone / "output" / name / run_id).rglob("*.png"))
