"""A database that cannot be opened: a damaged or foreign SQLite file, a data folder that
cannot be written, a DATABASE_URL that cannot be read, a MySQL port where nothing greets. Each
is one sentence naming the file or the variable (never the password), and nothing is left
running that would keep the process alive. The processes themselves (exit codes, no
traceback) are in tests/test_cli_db.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.errors import ConfigError, StoreError, StoreFileError
from pipeline.store import connect
from pipeline.store.mysql import MysqlDatabase
from tests.store.folders import read_only_folder

PASSWORD = "s3cr3t-Pa55"


def a_real_database(path: Path) -> bytes:
    """The bytes of a real SQLite database with a few pages."""
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 1000,)] * 200)
    conn.commit()
    conn.close()
    return path.read_bytes()


@pytest.fixture
def threads_after() -> Iterator[None]:
    """No thread (aiosqlite's connection thread, for one) outlives the test: such a thread
    keeps the process from exiting."""
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(timeout=2)
    assert [t.name for t in left if t.is_alive()] == []


def garbage(path: Path) -> None:
    path.write_bytes(b"\x8f" * 4096)


def foreign(path: Path) -> None:
    path.write_text("title,keyword\nnot,a database\n")


def truncated(path: Path) -> None:
    whole = a_real_database(path.with_name("whole.db"))
    path.write_bytes(whole[: len(whole) // 3])


@pytest.mark.usefixtures("threads_after")
@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (garbage, "it is not an SQLite database (damaged, or another kind of file)"),
        (foreign, "it is not an SQLite database (damaged, or another kind of file)"),
        (truncated, "the database file is damaged (truncated or overwritten)"),
    ],
    ids=["garbage", "a-csv-file", "truncated"],
)
async def test_a_spoilt_database_file_is_one_sentence_naming_it(
    tmp_path: Path, spoil: object, reason: str
) -> None:
    """The SQLite file is garbage, another kind of file or cut short: opening it says which
    file and why (bad input), and closes what it opened."""
    path = tmp_path / "data" / "mediaoverload.db"
    path.parent.mkdir()
    assert callable(spoil)
    spoil(path)
    with pytest.raises(StoreFileError) as caught:
        await connect("", sqlite_path=path)
    assert caught.value.user_message == f"cannot use the database {path}: {reason}"


@pytest.mark.usefixtures("threads_after")
async def test_a_data_folder_that_cannot_be_written_is_named(tmp_path: Path) -> None:
    """A read-only data folder: opening the database names the file and says it cannot be
    made there (bad input: a person fixes the folder or DATA_DIR)."""
    with read_only_folder(tmp_path / "data") as folder, pytest.raises(StoreFileError) as caught:
        await connect("", sqlite_path=folder / "mediaoverload.db")
    assert caught.value.user_message == (
        f"cannot use the database {folder / 'mediaoverload.db'}: "
        "the file cannot be opened or created there"
    )


def test_a_failed_open_has_ended_its_thread_when_it_is_raised(tmp_path: Path) -> None:
    """A process that exits as soon as the database cannot be opened prints nothing more:
    the connection thread is done with the event loop before the error reaches the caller,
    so closing the loop at once leaves that thread nothing to fail on (it used to, in about
    two opens of five). Twenty opens, each on a loop closed right after it."""
    failures: list[BaseException] = []
    before = set(threading.enumerate())
    hook = threading.excepthook
    threading.excepthook = lambda args: failures.append(args.exc_value or Exception())
    try:
        for _ in range(20):
            loop = asyncio.new_event_loop()
            with pytest.raises(StoreFileError):
                loop.run_until_complete(connect("", sqlite_path=tmp_path))  # a folder
            loop.close()
        for thread in set(threading.enumerate()) - before:
            thread.join(timeout=2)
    finally:
        threading.excepthook = hook
    assert failures == []


@pytest.mark.usefixtures("threads_after")
async def test_a_data_folder_that_is_a_file_is_named(tmp_path: Path) -> None:
    """DATA_DIR names a file: the sentence names the database file and the reason."""
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(StoreFileError) as caught:
        await connect("", sqlite_path=tmp_path / "data" / "mediaoverload.db")
    message = caught.value.user_message
    assert message.startswith(f"cannot use the database {tmp_path / 'data' / 'mediaoverload.db'}: ")
    assert message.endswith(
        ("a part of the path is a file, not a folder", "a file of that name is in the way")
    )


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://bot:{PASSWORD}@db.example:notaport/mo",
        f"mysql://bot:{PASSWORD}@db.example:99999/mo",
        f"mysql://bot:{PASSWORD}@[::1/mo",
        f"mysql://bot:{PASSWORD}#x@db.example/mo",
        f"mysql://bot:{PASSWORD}?x@db.example/mo",
        f"mysql://bot:{PASSWORD}@/mo",
        f"postgres://bot:{PASSWORD}@db.example/mo",
        f"{PASSWORD}",
        "sqlite://",
        "sqlite:////tmp/",
    ],
    ids=["port-text", "port-range", "ipv6", "hash-in-password", "question-mark", "no-host",
         "postgres", "no-scheme", "sqlite-no-file", "sqlite-folder"],
)  # fmt: skip
async def test_a_malformed_database_url_names_the_variable_not_the_password(
    url: str, tmp_path: Path
) -> None:
    """A DATABASE_URL that cannot be read is one sentence naming DATABASE_URL and the form
    it should have; the password appears nowhere, not even in the error's chain."""
    with pytest.raises(ConfigError) as caught:
        await connect(url, sqlite_path=tmp_path / "unused.db")
    error = caught.value
    assert error.user_message.startswith("DATABASE_URL is not a valid database URL: ")
    chain = [error, error.__cause__, error.__context__]
    assert all(PASSWORD not in repr(e) and PASSWORD not in str(e) for e in chain)
    assert "\n" not in error.user_message


async def test_a_server_that_accepts_and_says_nothing_fails_within_the_deadline() -> None:
    """Something listens on the MySQL port but never greets (a hung server, another
    service): opening gives up at its deadline with a sentence, instead of waiting for ever."""
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep the connection open, say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with asyncio.timeout(5):  # the test's own bound: a hang fails here
            with pytest.raises(StoreError) as caught:
                await MysqlDatabase.open(
                    f"mysql://bot:{PASSWORD}@127.0.0.1:{port}/mo", connect_seconds=0.3
                )
        assert caught.value.user_message == (
            f"cannot open the database at 127.0.0.1:{port}/mo: no answer in time"
        )
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
