"""The two entry points as a user runs them: `python -m pipeline ...` and `python -m bot`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import ROOT, SHIPPED_CREDENTIALS, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with copies of the shipped characters and workflows."""
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


#: no language model answers there either (a note), whatever runs on this machine's 11434
NO_MODELS = {"LLM_CHAIN": "ollama", "OLLAMA_HOST": "http://127.0.0.1:9"}


def test_check_passes_on_the_shipped_files(project: Path) -> None:
    """`python -m pipeline check` is green out of the box once the credentials are set."""
    result = run(["-m", "pipeline", "check"], project, **SHIPPED_CREDENTIALS, **NO_MODELS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].startswith("ok: 3 character file(s) valid")


def test_check_names_file_and_line_of_each_problem(project: Path) -> None:
    """A broken character and a UI-format workflow are listed as file:line, exit 1."""
    mascot = project / "characters" / "mascot.yaml"
    mascot.write_text(
        mascot.read_text().replace("similarity_threshold: 0.6", "similarity_threshold: 2")
    )
    (project / "workflows" / "ui.json").write_text(json.dumps({"nodes": [], "links": []}))
    (project / "workflows" / "broken.json").write_text("{\n")
    result = run(["-m", "pipeline", "check"], project, **SHIPPED_CREDENTIALS, **NO_MODELS)
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert (
        "characters/mascot.yaml:14: generation.similarity_threshold: must be between 0 and 1"
        in lines
    )
    assert (
        "workflows/ui.json: this is a UI-format workflow (it has 'nodes' and 'links'), which "
        "ComfyUI cannot queue; open it in ComfyUI and export it with Save (API Format)"
    ) in lines
    assert (
        "workflows/broken.json:2: not valid JSON (line 2, column 1: Expecting property name enclosed in double quotes)"
        in lines
    )
    assert lines[-1].startswith("FAILED")


def test_the_bot_without_a_token_says_which_setting_is_missing(project: Path) -> None:
    """`python -m bot` on a fresh install stops with one sentence, not a traceback."""
    result = run(["-m", "bot"], project)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        "MediaOverload cannot start: DISCORD_TOKEN is not set: put it in the environment or in "
        "the .env file"
    ]


def test_the_bot_with_a_job_limit_under_the_stall_time_says_which_setting_is_wrong(
    project: Path,
) -> None:
    """A ComfyUI job limit shorter than the stall time stops `python -m bot` with one
    sentence naming the variable, before it connects anywhere."""
    result = run(["-m", "bot"], project, COMFYUI_JOB_TIMEOUT_SECONDS="120")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "MediaOverload cannot start: invalid setting COMFYUI_JOB_TIMEOUT_SECONDS: must be "
        "longer than COMFYUI_STALL_SECONDS (300 s)"
    ]


def test_db_commands_manage_characters_and_news(project: Path) -> None:
    """Group members and news can be added from the terminal into the embedded database."""
    assert run(["-m", "pipeline", "db", "init"], project).stdout.startswith(
        "database ready: SQLite at data/mediaoverload.db"
    )
    added = run(["-m", "pipeline", "db", "add-character", "Luna", "--group", "moonlit"], project)
    assert added.returncode == 0, added.stderr
    listing = run(["-m", "pipeline", "db", "list-characters", "--group", "moonlit"], project)
    assert "Luna" in listing.stdout
    assert listing.stdout.strip().endswith("1 character(s)")
    csv_file = project / "news.csv"
    csv_file.write_text(
        "title,keyword,content,publish_date\n"
        'Comet seen,space,"A bright comet, visible at dusk",2026-11-20 18:00\n'
        "Bake-off,food,Cakes,2026-11-21\n"
    )
    json_file = project / "news.json"
    json_file.write_text(json.dumps([{"title": "Robots", "keyword": "tech", "content": "..."}]))
    assert (
        "imported 2 news item(s)"
        in run(["-m", "pipeline", "db", "import-news", "news.csv"], project).stdout
    )
    assert (
        "imported 1 news item(s)"
        in run(["-m", "pipeline", "db", "import-news", "news.json"], project).stdout
    )


def test_a_bad_news_row_is_named_by_line(project: Path) -> None:
    """An import with a broken row imports nothing and names the row's line."""
    csv_file = project / "news.csv"
    csv_file.write_text(
        "title,keyword,content,publish_date\nOk,a,b,2026-01-01\n,a,b,\nX,a,b,soon\n"
    )
    result = run(["-m", "pipeline", "db", "import-news", "news.csv"], project)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "news.csv:3: title: is required",
        "news.csv:4: publish_date: 'soon' is not a date like 2026-01-31 08:00",
    ]


def test_an_unreachable_database_is_a_service_failure_without_the_password(project: Path) -> None:
    """A MySQL URL that does not answer exits 2 and never prints the password."""
    result = run(
        ["-m", "pipeline", "db", "init"],
        project,
        DATABASE_URL="mysql://bot:pa55word@127.0.0.1:9/mo",
    )
    assert result.returncode == 2
    assert "pa55word" not in result.stdout + result.stderr
    assert (
        result.stderr.strip()
        == "cannot open the database at 127.0.0.1:9/mo: no server answers there"
    )


def one_sentence(result: subprocess.CompletedProcess[str]) -> str:
    """The only line on stderr, once it is sure there is no traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "command",
    [["-m", "bot"], ["-m", "pipeline", "run", "--character", "mascot"]],
    ids=["bot", "pipeline-run"],
)
def test_a_comfyui_url_that_is_not_one_is_one_sentence_naming_the_setting(
    project: Path, command: list[str]
) -> None:
    """COMFYUI_SERVERS=notaurl stops the bot and `run` alike with one sentence naming the
    variable and the value, and exit 1."""
    result = run(command, project, COMFYUI_SERVERS="notaurl", DISCORD_TOKEN="t")
    assert result.returncode == 1
    assert one_sentence(result).endswith(
        "invalid setting COMFYUI_SERVERS: not a ComfyUI server URL (want http://host:port): "
        "'notaurl'"
    )


@pytest.mark.parametrize(
    "args",
    [["run"], ["run", "--character", "mascot", "--type", "text2gif"], ["nonsense"],
     ["runs", "--limit", "many"]],
    ids=["missing-option", "bad-choice", "unknown-command", "not-a-number"],
)  # fmt: skip
def test_a_bad_argument_is_one_line_and_exit_1(project: Path, args: list[str]) -> None:
    """A wrong or missing argument is bad input: exit 1 (the README's code, not argparse's
    2), one line that says what is wrong."""
    result = run(["-m", "pipeline", *args], project)
    assert result.returncode == 1
    assert one_sentence(result).startswith("python -m pipeline")
    assert result.stdout == ""


def test_a_type_the_character_cannot_make_is_refused_before_a_run_is_created(
    project: Path,
) -> None:
    """`run --type text2video` for mascot (no video workflow) says what it can make, exit 1,
    and no run is recorded, so there is nothing to resume that would fail again."""
    result = run(
        ["-m", "pipeline", "run", "--character", "mascot", "--type", "text2video"], project
    )
    assert result.returncode == 1
    assert one_sentence(result) == (
        "mascot cannot make text2video: it names no workflow for text2video; it can make "
        "text2img, text2image2image"
    )
    assert run(["-m", "pipeline", "runs"], project).stdout.strip() == "0 run(s)"


@pytest.mark.parametrize(("level", "shown"), [("DEBUG", True), ("WARNING", False)])
def test_the_command_line_logs_at_log_level(project: Path, level: str, shown: bool) -> None:
    """LOG_LEVEL=DEBUG shows debug records (asyncio names its selector); WARNING hides them.
    aiosqlite's two records per SQL statement are never shown: they would bury the rest."""
    result = run(["-m", "pipeline", "runs"], project, LOG_LEVEL=level)
    assert result.returncode == 0
    assert ("DEBUG" in result.stderr and "asyncio" in result.stderr) is shown
    assert "aiosqlite" not in result.stderr


def test_resuming_a_run_whose_type_the_character_cannot_make_is_refused(project: Path) -> None:
    """A run that failed because its type had no workflow is not run into the same failure by
    `resume`: one line saying what the character can make, exit 1, the run left as it was."""
    import asyncio

    from pipeline.models import Job, Run, RunFailure, RunState
    from pipeline.store import connect

    failed = Run.new(Job("mascot", generation_type="text2video")).advance(
        RunState.FAILED, failure=RunFailure(state=RunState.CREATED, message="an unexpected error")
    )

    async def save() -> None:
        store = await connect("", sqlite_path=project / "data" / "mediaoverload.db")
        try:
            await store.save_run(failed)
        finally:
            await store.close()

    asyncio.run(save())
    result = run(["-m", "pipeline", "resume", failed.id], project)
    assert result.returncode == 1
    assert one_sentence(result) == (
        "mascot cannot make text2video: it names no workflow for text2video; it can make "
        "text2img, text2image2image"
    )
    shown = run(["-m", "pipeline", "show", failed.id], project)
    assert "failed at prompt: an unexpected error" in shown.stdout


def test_new_character_writes_a_commented_file_that_passes_check(project: Path) -> None:
    """`new-character luna` makes characters/luna.yaml from the example, ready for check."""
    result = run(["-m", "pipeline", "new-character", "luna"], project)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "wrote characters/luna.yaml from the example: edit it, then run `python -m pipeline check`"
    )
    text = (project / "characters" / "luna.yaml").read_text()
    assert "  name: luna" in text
    assert "output_dir: output/luna" in text
    assert text.count("#") > 40  # the example's comments came along
    checked = run(["-m", "pipeline", "check"], project, COMFYUI_SERVERS="http://127.0.0.1:9")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.splitlines()[-1].startswith("ok: 4 character file(s) valid")


@pytest.mark.parametrize(
    ("name", "said"),
    [
        pytest.param("mascot", "characters/mascot.yaml already exists", id="existing-name"),
        pytest.param("../evil", "'../evil' is not a usable character name", id="path-in-name"),
        pytest.param("example", "'example' is not a usable character name", id="the-example"),
        pytest.param("two words", "'two words' is not a usable character name", id="space"),
    ],
)
def test_new_character_refuses_a_taken_or_bad_name(project: Path, name: str, said: str) -> None:
    """A name already in use or not usable as a file name is refused in one sentence, exit 1."""
    before = sorted(p.name for p in (project / "characters").iterdir())

    result = run(["-m", "pipeline", "new-character", name], project)

    assert result.returncode == 1
    assert result.stderr.startswith(said)
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (project / "characters").iterdir()) == before


def test_show_lists_the_folder_each_file_with_its_score_the_captions_and_the_posts(
    project: Path,
) -> None:
    """`show RUN_ID` says where the media are, each file with its score, and what was posted."""
    import asyncio
    from dataclasses import replace

    from pipeline.models import (
        Job,
        MediaItem,
        MediaKind,
        Platform,
        PostRecord,
        PostState,
        Run,
        RunState,
        StagePick,
    )
    from pipeline.store import connect

    media = (
        MediaItem("image_1.png", MediaKind.IMAGE, 0, score=0.81, reason="on model"),
        MediaItem("image_2.png", MediaKind.IMAGE, 0, score=0.32, reason="blurry", kept=False),
    )
    made = replace(
        Run.new(Job("mascot")),
        state=RunState.PUBLISHED,
        media=media,
        captions={"twitter": "Pixel waves hello\n#pixelbot"},
        sound_prompt="soft chiptune beeps",
        stage_pick=StagePick("first_stage", media, keep=1, chosen=(1,), by="Alice"),
    )
    post = PostRecord(
        made.id, Platform.TWITTER, "mascot_twitter", PostState.POSTED, "42", "https://x.com/p/42"
    )

    async def save() -> None:
        path = project / "data" / "mediaoverload.db"
        path.parent.mkdir(exist_ok=True)
        store = await connect(f"sqlite:///{path}", sqlite_path=path)
        try:
            await store.save_run(made)
            await store.record_post(post)
        finally:
            await store.close()

    asyncio.run(save())

    result = run(["-m", "pipeline", "show", made.id], project)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    start = lines.index(f"  media in output/mascot/{made.id}:")
    assert lines[start + 1 : start + 3] == [
        "     1. 0.81 kept    image_1.png  on model",
        "     2. 0.32 dropped image_2.png  blurry",
    ]
    assert "  caption [twitter]: Pixel waves hello" in lines
    assert "  twitter: posted https://x.com/p/42" in lines
    assert "  sound: soft chiptune beeps" in lines
    assert "  picked after first_stage: #2 of 2 by Alice" in lines
