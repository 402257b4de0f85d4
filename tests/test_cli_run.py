"""`python -m pipeline run | resume` as a user runs them: a real child process against the fake
ComfyUI, the real language-model clients against the LLM fakes and, for publishing, the fake X
behind a TLS proxy; the store on SQLite (and MariaDB). Kills are SIGKILLs of that process."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.lease import Owner
from pipeline.models import Job, PostState, Run, RunState, utcnow
from pipeline.ports import Lease
from pipeline.store import connect
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import HealthyModel, LlmFake, dead_url
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.x_api import FakeXApi
from tests.leases import live_process
from tests.waiting import until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[1]

CHARACTER = """
character: {name: Testy, description: a small orange fox}
generation:
  generation_type_weights: {text2img: 1}
  workflows:
    text2img: WORKFLOW
  similarity_threshold: 0.5
  descriptions: 2
  prompt_method_weights: {arbitrary: 1}
social_media:
  default_hashtags: ["#testy"]
  platforms:
    instagram: {enabled: false}
    twitter: {enabled: true, credentials: testy_x}
additional_params:
  general: {images_per_description: 2}
"""

#: settings the child must not inherit from whoever runs the tests
_SCRUBBED = ("DISCORD_TOKEN", "DATABASE_URL", "COMFYUI_SERVERS", "LLM_CHAIN", "OLLAMA_HOST")


def write_project(folder: Path, workflow: str = "workflows/text2img.json") -> Path:
    shutil.copytree(ROOT / "workflows", folder / "workflows")
    (folder / "characters").mkdir()
    (folder / "characters" / "testy.yaml").write_text(CHARACTER.replace("WORKFLOW", workflow))
    return folder


@dataclass
class Child:
    """A running `python -m pipeline ...`; its output is read as it comes."""

    process: asyncio.subprocess.Process
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def stdout(self) -> str:
        return "".join(self.out)

    @property
    def stderr(self) -> str:
        return "".join(self.err)

    async def finish(self, within: float = 60) -> int:
        code = await asyncio.wait_for(self.process.wait(), within)
        await asyncio.gather(*self.readers)
        return code

    async def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        assert await self.finish() == -signal.SIGKILL


@dataclass
class Cli:
    """Starts the command line in the project folder with the fakes' URLs as its settings."""

    project: Path
    env: dict[str, str]

    async def start(self, *args: str) -> Child:
        # create_subprocess_exec, not subprocess.run: the fakes serve from this event loop
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pipeline",
            *args,
            cwd=self.project,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        child = Child(process)

        async def read(stream: asyncio.StreamReader | None, into: list[str]) -> None:
            assert stream is not None
            while chunk := await stream.read(4096):
                into.append(chunk.decode())

        child.readers = [
            asyncio.create_task(read(process.stdout, child.out)),
            asyncio.create_task(read(process.stderr, child.err)),
        ]
        return child

    async def run(self, *args: str) -> tuple[int, str, str]:
        child = await self.start(*args)
        code = await child.finish()
        return code, child.stdout, child.stderr


def child_env(**settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    return env | {
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
        "VIDEO_PRESET": "ultrafast",
        **settings,
    }


@asynccontextmanager
async def language_model(kind: str) -> AsyncIterator[tuple[LlmFake, dict[str, str]]]:
    """A fake provider answering every task, and the settings that point the chain at it."""
    if kind == "ollama":
        async with FakeOllama() as ollama:
            ollama.respond_with(HealthyModel())
            yield ollama, {"LLM_CHAIN": "ollama", "OLLAMA_HOST": ollama.url}
    else:
        async with FakeOpenAI() as openai:
            openai.respond_with(HealthyModel())
            yield (
                openai,
                {
                    "LLM_CHAIN": "openrouter",
                    "OPENROUTER_BASE_URL": openai.url,
                    "OPENROUTER_API_KEY": "sk-test",
                    "OPENROUTER_RPM": "0",
                },
            )


@pytest.fixture
async def comfy() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.3) as fake:
        yield fake


@pytest.fixture
async def llm() -> AsyncIterator[tuple[LlmFake, dict[str, str]]]:
    async with language_model("ollama") as found:
        yield found


@pytest.fixture
def cli(tmp_path: Path, comfy: FakeComfyUI, llm: tuple[LlmFake, dict[str, str]]) -> Cli:
    project = write_project(tmp_path / "project")
    return Cli(project, child_env(COMFYUI_SERVERS=comfy.url, **llm[1]))


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# ---------------------------------------------------------------------------- a whole run


@pytest.mark.parametrize(
    ("database", "provider"),
    [("sqlite", "ollama"), ("mysql", "openrouter")],
    ids=["sqlite-ollama", "mariadb-openrouter"],
)
async def test_a_run_shows_its_progress_and_ends_with_a_summary(
    tmp_path: Path,
    comfy: FakeComfyUI,
    database: str,
    provider: str,
    request: pytest.FixtureRequest,
) -> None:
    """`run --review auto --no-publish` prints each step, ComfyUI's queue place and the sampler
    steps, then where the media are, their scores and the captions; exit 0."""
    project = write_project(tmp_path / "project")
    async with language_model(provider) as (model, settings):
        if database == "mysql":
            settings = {**settings, "DATABASE_URL": request.getfixturevalue("mysql_url")}
        cli = Cli(project, child_env(COMFYUI_SERVERS=comfy.url, **settings))
        code, out, err = await cli.run(
            "run", "--character", "testy", "--review", "auto", "--no-publish"
        )
    assert code == 0, out + err
    for step in ("prompt", "describe", "generate", "score", "caption", "review"):
        assert f"] {step} " in err
    assert "queue place 1" in err  # the second description's prompt waits behind the first
    assert "|####################| 4/4" in err  # the sampler's steps, x of y
    run_id = out.split("run ", 1)[1].split(":", 1)[0]
    folder = project / "output" / "testy" / run_id
    assert f"media in {folder}:" in out
    assert out.count("0.80 kept") == 4
    assert "caption [twitter]: Testy found the first snow." in out
    assert len(list(folder.glob("main-d*/*.png"))) == 4
    assert len(comfy.prompts) == 2
    assert {r.model for r in model.requests if r.images} != set()  # the vision model saw them


async def test_a_bad_character_name_is_one_line_and_exit_1(
    cli: Cli, comfy: FakeComfyUI, llm: tuple[LlmFake, dict[str, str]]
) -> None:
    """A name with no character file: one line listing the known ones, nothing started."""
    code, out, err = await cli.run("run", "--character", "nobody", "--review", "auto")
    assert (code, out) == (1, "")
    assert one_line(err) == "no character named 'nobody' (known: testy)"
    assert (comfy.prompts, llm[0].requests) == ([], [])


async def test_a_missing_workflow_file_is_one_line_and_exit_1(
    tmp_path: Path, comfy: FakeComfyUI, llm: tuple[LlmFake, dict[str, str]]
) -> None:
    """A character naming a workflow file that is not there: file, line, key; nothing started."""
    project = write_project(tmp_path / "project", workflow="workflows/gone.json")
    cli = Cli(project, child_env(COMFYUI_SERVERS=comfy.url, **llm[1]))
    code, _, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 1
    assert one_line(err) == (
        "characters/testy.yaml:6: generation.workflows.text2img: "
        "workflow file 'workflows/gone.json' does not exist"
    )
    assert (comfy.prompts, llm[0].requests) == ([], [])


async def test_a_comfyui_that_does_not_answer_is_one_line_and_exit_2(
    tmp_path: Path, llm: tuple[LlmFake, dict[str, str]]
) -> None:
    """No ComfyUI at the configured URL: one line naming it, before any model is asked."""
    down = dead_url()
    cli = Cli(write_project(tmp_path / "project"), child_env(COMFYUI_SERVERS=down, **llm[1]))
    code, _, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 2
    assert one_line(err) == (
        f"no ComfyUI server answers at {down}: start ComfyUI or set COMFYUI_SERVERS; "
        "nothing was started"
    )
    assert llm[0].requests == []


async def test_a_model_that_does_not_answer_is_one_line_and_exit_2(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    """No language model at the configured URL: one line naming it, exit 2 (a service
    failed), and no run is created."""
    down = dead_url()
    project = write_project(tmp_path / "project")
    cli = Cli(project, child_env(COMFYUI_SERVERS=comfy.url, LLM_CHAIN="ollama", OLLAMA_HOST=down))
    code, _, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 2
    assert one_line(err) == (
        "no language model answers for the prompt, description, vision, caption step(s) "
        f"(ollama at {down} could not be reached): start the model server or set LLM_CHAIN; "
        "nothing was started"
    )
    assert comfy.prompts == []
    code, out, _ = await cli.run("runs")
    assert (code, out.strip()) == (0, "0 run(s)")


# ---------------------------------------------------------------------------- kill and resume


async def stored_run(project: Path, run_id: str) -> tuple[RunState, list[PostState]]:
    store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
    try:
        run = await store.load_run(run_id)
        assert run is not None
        posts = await store.posts_for_run(run_id)
    finally:
        await store.close()
    return run.state, [p.state for p in posts]


def started_run_id(child: Child) -> str | None:
    for line in child.stderr.splitlines():
        if line.startswith("run ") and " started for " in line:
            return line.split()[1]
    return None


def executions(comfy: FakeComfyUI) -> Mapping[str, int]:
    """How many times the fake ComfyUI ran each prompt it was sent."""
    counts = {p.prompt_id: 0 for p in comfy.prompts}
    for job in comfy.jobs:
        counts[job.prompt_id] = counts.get(job.prompt_id, 0) + 1
    return counts


@pytest.fixture
async def x_api(tmp_path: Path) -> AsyncIterator[FakeXApi]:
    async with FakeXApi(tmp_path / "x") as fake:
        yield fake


@pytest.fixture
def publishing_cli(cli: Cli, x_api: FakeXApi) -> Cli:
    cli.env |= x_api.env | x_api.credentials_env("testy_x")
    return cli


@pytest.mark.parametrize(
    "moment",
    ["first prompt running", "first prompt finished"],
)
async def test_a_run_killed_during_generation_is_resumed_without_generating_twice(
    publishing_cli: Cli, comfy: FakeComfyUI, x_api: FakeXApi, moment: str
) -> None:
    """SIGKILL while ComfyUI works on the run; `resume` takes over the prompts ComfyUI already
    has (none is queued again, none runs twice) and the run is posted once."""
    comfy.job_seconds = 1.5
    child = await publishing_cli.start("run", "--character", "testy", "--review", "auto")
    if moment == "first prompt running":
        await until(
            lambda: len(comfy.prompts) == 2 and bool(comfy.jobs), within=30, what="two prompts"
        )
    else:
        await until(
            lambda: len(comfy.jobs) == 2 and comfy.jobs[0].ended is not None,
            within=30,
            what="the first prompt to finish",
        )
    await child.kill()
    run_id = started_run_id(child)
    assert run_id is not None, child.stderr
    assert (await stored_run(publishing_cli.project, run_id))[0] is RunState.DESCRIBED

    comfy.job_seconds = 0.3
    code, out, err = await publishing_cli.run("resume", run_id, "--review", "auto")
    assert code == 0, out + err
    assert f"run {run_id}: published" in out
    assert len(comfy.prompts) == 2
    assert set(executions(comfy).values()) == {1}
    assert len(x_api.state.tweets) == 1
    assert await stored_run(publishing_cli.project, run_id) == (
        RunState.PUBLISHED,
        [PostState.POSTED],
    )
    folder = publishing_cli.project / "output" / "testy" / run_id
    assert len(list(folder.glob("main-d*/*.png"))) == 4


async def held_run(cli: Cli, holder: asyncio.subprocess.Process) -> tuple[Run, Lease]:
    """A run of the bot in `described`, whose lease `holder` (a live process here) holds."""
    store = await connect("", sqlite_path=cli.project / "data" / "mediaoverload.db")
    try:
        run = Run.new(Job("testy", requested_by="discord:1")).advance(RunState.DESCRIBED)
        await store.save_run(run)
        owner = Owner(host=socket.gethostname(), pid=holder.pid, token="bot")
        lease = await store.take_lease(run.id, str(owner), utcnow() + timedelta(minutes=5))
    finally:
        await store.close()
    return run, lease


def held_by(run: Run, lease: Lease, holder: asyncio.subprocess.Process) -> str:
    until_text = lease.expires_at.strftime("%Y-%m-%d %H:%M:%S UTC")
    return (
        f"run {run.id} is being run by another process (pid {holder.pid} on "
        f"{socket.gethostname()}); its lease holds until {until_text} unless renewed"
    )


async def test_resuming_a_run_another_live_process_holds_is_one_line_and_exit_1(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """The bot (here: a sleeping process on this host) holds the run's lease: `resume` says
    who holds it and until when, exits 1 and sends ComfyUI nothing."""
    async with live_process() as holder:
        run, lease = await held_run(cli, holder)
        code, out, err = await cli.run("resume", run.id, "--review", "auto")
    assert code == 1, out + err
    assert one_line(err) == held_by(run, lease, holder)
    assert comfy.prompts == []
    assert (await stored_run(cli.project, run.id))[0] is RunState.DESCRIBED


async def test_cancelling_a_run_another_live_process_runs_is_refused(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """`cancel` of a run the bot is running would be overwritten by its next step and pull
    its prompts from under it: it says who runs it and where to cancel it, exits 1, and
    leaves the run and ComfyUI alone."""
    async with live_process() as holder:
        run, lease = await held_run(cli, holder)
        code, out, err = await cli.run("cancel", run.id)
    assert code == 1, out + err
    assert one_line(err) == (
        f"{held_by(run, lease, holder)}: cancel it there (/cancel in Discord, or stop that process)"
    )
    assert comfy.interrupts == []
    assert comfy.deleted == []
    assert (await stored_run(cli.project, run.id))[0] is RunState.DESCRIBED


async def test_a_run_stopped_by_sigterm_leaves_its_prompts_for_resume(
    publishing_cli: Cli, comfy: FakeComfyUI, x_api: FakeXApi
) -> None:
    """SIGTERM while ComfyUI works on the run: the command exits 143 naming `resume`, the
    prompts stay on ComfyUI (none deleted, none interrupted) and `resume` queues none again."""
    comfy.job_seconds = 1.5
    publishing_cli.env |= {"SHUTDOWN_GRACE_SECONDS": "0"}
    child = await publishing_cli.start("run", "--character", "testy", "--review", "auto")
    await until(
        lambda: len(comfy.prompts) == 2 and bool(comfy.jobs) and bool(started_run_id(child)),
        within=30,
        what="two prompts",
    )
    child.process.send_signal(signal.SIGTERM)
    assert await child.finish() == 128 + signal.SIGTERM, child.stderr
    run_id = started_run_id(child)
    assert run_id is not None
    assert f"python -m pipeline resume {run_id}" in child.stderr
    assert (comfy.deleted, comfy.interrupts) == ([], [])

    comfy.job_seconds = 0.3
    code, out, err = await publishing_cli.run("resume", run_id, "--review", "auto")
    assert code == 0, out + err
    assert f"run {run_id}: published" in out
    assert len(comfy.prompts) == 2
    assert set(executions(comfy).values()) == {1}


async def test_a_run_killed_while_awaiting_review_is_resumed_and_posted_once(
    publishing_cli: Cli, comfy: FakeComfyUI, x_api: FakeXApi
) -> None:
    """SIGKILL while the console reviewer waits for an answer; `resume --review auto` posts
    the run once, generating nothing again; a second `resume` has nothing left to do."""
    child = await publishing_cli.start("run", "--character", "testy", "--review", "console")
    await until(lambda: "Approve?" in child.stdout, within=30, what="the review question")
    await child.kill()
    run_id = started_run_id(child)
    assert run_id is not None
    assert (await stored_run(publishing_cli.project, run_id))[0] is RunState.AWAITING_REVIEW
    prompts = len(comfy.prompts)

    code, out, err = await publishing_cli.run("resume", run_id, "--review", "auto")
    assert code == 0, out + err
    assert f"run {run_id}: published" in out
    assert "twitter: posted https://" in out
    assert len(comfy.prompts) == prompts == 2
    [tweet] = x_api.state.tweets
    assert tweet["text"].startswith("Testy found the first snow.")

    code, _, err = await publishing_cli.run("resume", run_id, "--review", "auto")
    assert code == 1
    assert one_line(err) == f"run {run_id} is published; there is nothing to resume"
    assert len(x_api.state.tweets) == 1


# ---------------------------------------------------------------------------- edges of a run


async def test_a_console_review_at_the_end_of_input_leaves_the_run_awaiting_review(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """Under cron or a pipe, standard input ends before an answer: one sentence says the run
    is left awaiting review and how to carry it on (exit 1), no traceback; `resume --review
    auto` then approves it without generating anything again."""
    child = await cli.start("run", "--character", "testy", "--no-publish")
    assert child.process.stdin is not None
    child.process.stdin.close()  # as cron's /dev/null, or Ctrl-D
    code = await child.finish()
    run_id = started_run_id(child)
    assert run_id is not None
    assert code == 1, child.stdout + child.stderr
    assert "Traceback" not in child.stderr
    assert child.stderr.strip().splitlines()[-1] == (
        f"run {run_id} is left awaiting review: standard input ended before an answer; "
        f"`python -m pipeline resume {run_id} --review console` in a terminal, or "
        "`--review auto`, carries it on"
    )
    assert (await stored_run(cli.project, run_id))[0] is RunState.AWAITING_REVIEW
    prompts = len(comfy.prompts)

    code, out, err = await cli.run("resume", run_id, "--review", "auto")
    assert code == 0, out + err
    assert f"run {run_id}: approved" in out
    assert len(comfy.prompts) == prompts


async def test_a_type_the_character_cannot_make_starts_nothing(
    cli: Cli, comfy: FakeComfyUI, llm: tuple[LlmFake, dict[str, str]]
) -> None:
    """`run --type text2video` for a character without a video workflow: one line, exit 1,
    no model asked, no prompt queued."""
    code, out, err = await cli.run("run", "--character", "testy", "--type", "text2video")
    assert (code, out) == (1, "")
    assert one_line(err) == (
        "testy cannot make text2video: it names no workflow for text2video; it can make text2img"
    )
    assert (comfy.prompts, llm[0].requests) == ([], [])


async def test_a_model_that_fails_mid_run_is_a_service_failure_exit_2(
    tmp_path: Path, comfy: FakeComfyUI
) -> None:
    """The model server answers the check before the run, then fails every call: the run fails
    at its prompt step, a service failure: exit 2 (not 1, which is for bad input), no traceback."""
    async with FakeOllama() as ollama:
        ollama.always_fail(503)
        env = child_env(COMFYUI_SERVERS=comfy.url, LLM_CHAIN="ollama", OLLAMA_HOST=ollama.url)
        cli = Cli(write_project(tmp_path / "project"), env | {"LLM_ATTEMPTS": "1"})
        code, out, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 2, out + err
    assert "failed at prompt: " in out
    assert "Traceback" not in err


async def test_a_node_that_fails_shows_its_cause_in_the_summary_and_in_show(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """A ComfyUI node that raises: the summary and `show` both say the run failed at generate,
    which node of which class, and that a retry will not help; never the server's paths."""
    comfy.faults.fail_class = "VAEDecode"
    code, out, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 2, out + err
    run_id = out.split("run ", 1)[1].split(":", 1)[0]
    assert f"run {run_id} (testy): failed at generate: A ComfyUI node failed: " in err
    code, shown, _ = await cli.run("show", run_id)
    assert code == 0
    for text in (out, shown):
        assert "failed at generate: A ComfyUI node failed: node VAEDecode (" in text
        assert "Retrying will not help" in text
        assert "/srv/comfyui" not in text


async def test_a_model_comfyui_lacks_shows_its_cause_in_the_summary_and_in_show(
    cli: Cli, comfy: FakeComfyUI
) -> None:
    """ComfyUI lacks the workflow's checkpoint, found before anything is queued: the summary
    and `show` both say the run failed at generate, which node wants which file, and that a
    retry will not help; exit 1 (a setup to fix), nothing queued, never the server's URL."""
    comfy.models["checkpoints"] = ["v1-5-pruned-emaonly.safetensors"]
    code, out, err = await cli.run("run", "--character", "testy", "--review", "auto")
    assert code == 1, out + err
    assert comfy.prompts == []
    run_id = out.split("run ", 1)[1].split(":", 1)[0]
    cause = (
        "failed at generate: ComfyUI cannot run the workflow: "
        'node "Load Checkpoint" CheckpointLoaderSimple (4) input ckpt_name: '
        "'sd_xl_base_1.0.safetensors' is not installed on the server"
    )
    assert f"run {run_id} (testy): {cause}" in err
    code, shown, _ = await cli.run("show", run_id)
    assert code == 0
    for text in (out, shown):
        assert cause in text
        assert "Retrying will not help" in text
        assert comfy.url not in text
    assert "Traceback" not in err
