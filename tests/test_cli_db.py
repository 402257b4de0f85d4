"""`python -m pipeline db ...`, `runs` and `python -m bot` facing a database or a file they
cannot use, as a user sees it: one sentence on stderr, the README's exit code (1 for a bad file,
argument or setting), no traceback, and an exit within seconds (a hang fails the test)."""

from __future__ import annotations

import codecs
import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.store.folders import read_only_folder

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "s3cr3t-Pa55"
#: long enough for a loaded machine to start Python; a process that hangs fails here
DEADLINE = 20


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the shipped characters (the bot loads them before the store)."""
    (tmp_path / "characters").symlink_to(ROOT / "characters")
    return tmp_path


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DISCORD_TOKEN", "DATABASE_URL"}}
    clean |= {"PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=clean,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
    )


def said(result: subprocess.CompletedProcess[str], code: int) -> str:
    """The one line the process printed on stderr, once its exit code and silence elsewhere
    are checked."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


# ---------------------------------------------------------------------------- the database


def spoil(project: Path, how: str) -> None:
    data = project / "data"
    data.mkdir()
    if how == "garbage":
        (data / "mediaoverload.db").write_bytes(os.urandom(8192).replace(b"SQLite", b"sqlite"))
    else:  # a real database cut short, as by a full disk during a copy
        assert run(["-m", "pipeline", "db", "init"], project).returncode == 0
        path = data / "mediaoverload.db"
        whole = path.read_bytes()
        for side in ("-wal", "-shm"):
            (data / f"mediaoverload.db{side}").unlink(missing_ok=True)
        path.write_bytes(whole[: len(whole) // 2])


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("garbage", "it is not an SQLite database (damaged, or another kind of file)"),
        ("truncated", "the database file is damaged (truncated or overwritten)"),
    ],
)
@pytest.mark.parametrize("command", [["db", "init"], ["runs"]], ids=["db-init", "runs"])
def test_a_spoilt_database_file_ends_the_command_with_a_sentence(
    project: Path, how: str, reason: str, command: list[str]
) -> None:
    """A garbage or truncated SQLite file: the command names the file and why, exits 1
    within seconds (it used to print a traceback and never exit)."""
    spoil(project, how)
    result = run(["-m", "pipeline", *command], project)
    assert said(result, 1) == f"cannot use the database data/mediaoverload.db: {reason}"


def test_a_read_only_data_folder_ends_the_command_with_a_sentence(project: Path) -> None:
    """DATA_DIR cannot be written: `db init` names the database file and exits 1."""
    with read_only_folder(project / "data"):
        result = run(["-m", "pipeline", "db", "init"], project)
    assert said(result, 1) == (
        "cannot use the database data/mediaoverload.db: the file cannot be opened or created there"
    )


def test_the_bot_with_a_garbage_database_file_exits_with_a_sentence(project: Path) -> None:
    """`python -m bot` on a damaged SQLite file says so in one sentence and exits 1 before
    it connects to Discord."""
    spoil(project, "garbage")
    result = run(
        ["-m", "bot"],
        project,
        DISCORD_TOKEN="x.y.z",
        DISCORD_REVIEW_CHANNEL_ID="1",
        DISCORD_API_BASE="http://127.0.0.1:9/api",
    )
    assert said(result, 1) == (
        "MediaOverload cannot start: cannot use the database data/mediaoverload.db: "
        "it is not an SQLite database (damaged, or another kind of file)"
    )


@pytest.mark.parametrize(
    "url",
    [f"mysql://bot:{PASSWORD}@db.example:port/mo", f"mysql://bot:{PASSWORD}#1@db.example/mo",
     f"{PASSWORD}@db.example/mo"],
    ids=["port", "hash-in-password", "no-scheme"],
)  # fmt: skip
@pytest.mark.parametrize(
    ("entry", "prefix"),
    [(["-m", "pipeline", "runs"], ""), (["-m", "bot"], "MediaOverload cannot start: ")],
    ids=["pipeline", "bot"],
)
def test_a_malformed_database_url_names_the_variable_never_the_password(
    project: Path, url: str, entry: list[str], prefix: str
) -> None:
    """A DATABASE_URL that cannot be read: one sentence naming DATABASE_URL and the form it
    should have, exit 1, and the password printed nowhere."""
    result = run(
        entry,
        project,
        DATABASE_URL=url,
        DISCORD_TOKEN="x.y.z",
        DISCORD_REVIEW_CHANNEL_ID="1",
        DISCORD_API_BASE="http://127.0.0.1:9/api",
    )
    assert PASSWORD not in result.stdout + result.stderr
    assert said(result, 1).startswith(prefix + "DATABASE_URL is not a valid database URL: ")


def test_a_database_that_cannot_grow_is_a_service_failure_and_imports_nothing(
    project: Path,
) -> None:
    """The database file cannot grow (the process's file size limit, as a full disk stops it):
    `db import-news` says which file and why in one sentence, exits 2, and the news table is
    as it was."""
    assert run(["-m", "pipeline", "db", "init"], project).returncode == 0
    rows = [{"title": f"t{i}", "content": "x" * 60_000} for i in range(200)]
    (project / "news.json").write_text(json.dumps(rows))

    def at_most_a_megabyte() -> None:  # in the child, before it starts Python
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))

    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "db", "import-news", "news.json"],
        cwd=project,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=DEADLINE,
        check=False,
        preexec_fn=at_most_a_megabyte,
    )
    assert said(result, 2) == (
        "cannot use the database data/mediaoverload.db: a read or write failed (a full disk, "
        "a file size limit, a failing disk)"
    )
    conn = sqlite3.connect(project / "data" / "mediaoverload.db")
    assert conn.execute("SELECT COUNT(*) FROM news").fetchone() == (0,)
    conn.close()


# ---------------------------------------------------------------------------- db commands


@pytest.mark.parametrize("weight", ["nan", "inf", "-inf", "-5"])
def test_a_weight_that_is_not_a_finite_positive_number_is_refused(
    project: Path, weight: str
) -> None:
    """`db add-character --weight nan` (or inf, or -5) is one sentence and exit 1, and
    nothing is stored."""
    result = run(
        [
            "-m",
            "pipeline",
            "db",
            "add-character",
            "Luna",
            "--group",
            "moonlit",
            f"--weight={weight}",
        ],
        project,
    )
    assert (
        said(result, 1) == f"--weight must be a finite number of 0 or more, not {float(weight):g}"
    )
    listing = run(["-m", "pipeline", "db", "list-characters"], project)
    assert listing.stdout.strip().splitlines()[-1] == "0 character(s)"


HEADER = "title,keyword,content,publish_date\n"


def test_a_news_file_that_cannot_be_imported_is_one_sentence(project: Path) -> None:
    """`db import-news` on a file in another encoding: one sentence naming the file and row,
    exit 1, the database not even opened (every kind of refusal: tests/pipeline/test_news.py)."""
    text = HEADER + "Caf\u00e9 news,food,Cr\u00e8me,2026-01-01\n"
    (project / "latin1.csv").write_bytes(text.encode("latin-1"))
    result = run(["-m", "pipeline", "db", "import-news", "latin1.csv"], project)
    assert said(result, 1) == (
        "latin1.csv:2: is not UTF-8 text (byte 0xe9); save it as UTF-8 (in Excel: CSV UTF-8); "
        "latin-1 and Windows-1252 files are not guessed"
    )
    assert not (project / "data").exists()  # refused before the database was opened


def test_a_news_file_with_a_byte_order_mark_is_read_in_its_encoding(project: Path) -> None:
    """UTF-16 with its byte-order mark (as Excel's "Unicode text" saves it) imports."""
    text = HEADER + "Caf\u00e9 opens,food,Cr\u00e8me br\u00fbl\u00e9e,2026-01-01\n"
    (project / "news.csv").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    result = run(["-m", "pipeline", "db", "import-news", "news.csv"], project)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported 1 news item(s) from news.csv"


# ---------------------------------------------------------------------------- the data folder


def test_a_data_folder_that_cannot_be_changed_is_named_not_taken_for_the_network(
    project: Path,
) -> None:
    """`accounts resume` cannot remove a pause because the data folder is read-only: one
    sentence naming the file and the reason, exit 1 (a person fixes the folder) — never
    "cannot reach a service"."""
    attention = project / "data" / "attention"
    attention.mkdir(parents=True)
    (attention / "twitter-fox_x.json").write_text(
        json.dumps({"reason": "401", "since": "2026-01-01T00:00:00+00:00"})
    )
    with read_only_folder(attention):
        result = run(["-m", "pipeline", "accounts", "resume", "fox_x"], project)
    line = said(result, 1)
    assert line.startswith("cannot use data/attention/twitter-fox_x.json: ")
    assert line.endswith(("operation not permitted", "permission denied"))
