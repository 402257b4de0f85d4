"""The two entry points as a user runs them: `python -m pipeline ...` and `python -m bot`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with copies of the shipped characters and workflows."""
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "DATABASE_URL"}}
    clean |= {"PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=clean, capture_output=True, text=True, timeout=60
    )


#: credentials of the shipped characters' enabled platforms (check asks for them)
SHIPPED_CREDENTIALS = {
    **{f"MASCOT_INSTAGRAM_{k}": "x" for k in ("USERNAME", "PASSWORD")},
    **{f"MOONLIT_INSTAGRAM_{k}": "x" for k in ("USERNAME", "PASSWORD")},
    **{
        f"MASCOT_TWITTER_{k}": "x"
        for k in ("API_KEY", "API_SECRET", "ACCESS_TOKEN", "ACCESS_SECRET")
    },
    "COMFYUI_SERVERS": "http://127.0.0.1:9",  # nothing answers there: a note, not a problem
}
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
