"""SQLite through aiosqlite: the embedded default, one file under the data folder.

One connection in WAL mode; a lock serialises statements and transactions so concurrent tasks
never interleave inside each other's transaction, and a transaction cancelled part-way is
always ended before the lock is let go. Every cursor is made and dropped in aiosqlite's
thread, never left to the collector on the event loop's. A file or folder that cannot be used (not a
database, damaged, read-only, full) is one sentence naming the file and the reason, and the
connection opened for it is closed, so the process can exit. Imports only aiosqlite, the seam
and the error tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from pipeline.errors import StoreError, StoreFileError, disk_reason
from pipeline.store.db import Cursor, Dialect, DuplicateKey, Params, Row

#: SQLite's primary result codes that mean the file or its folder, not the statement, failed:
#: how a person reads each, and whether a person must fix the file (bad input, exit 1) or it
#: may pass by itself (a full disk, another process's lock: a service failure, exit 2)
_FILE_PROBLEMS: dict[str, tuple[str, bool]] = {
    "SQLITE_NOTADB": ("it is not an SQLite database (damaged, or another kind of file)", True),
    "SQLITE_CORRUPT": ("the database file is damaged (truncated or overwritten)", True),
    "SQLITE_CANTOPEN": ("the file cannot be opened or created there", True),
    "SQLITE_READONLY": ("the file or its folder is read-only", True),
    "SQLITE_PERM": ("permission denied", True),
    "SQLITE_AUTH": ("permission denied", True),
    "SQLITE_FULL": ("no space left on device", False),
    "SQLITE_IOERR": (
        "a read or write failed (a full disk, a file size limit, a failing disk)",
        False,
    ),
    "SQLITE_BUSY": ("another process keeps it locked", False),
    "SQLITE_LOCKED": ("another process keeps it locked", False),
}


def _file_problem(exc: sqlite3.Error) -> tuple[str, bool] | None:
    """How a person reads `exc` and whether it is bad input, when it is the file's fault."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    for prefix, problem in _FILE_PROBLEMS.items():  # extended codes: SQLITE_IOERR_WRITE, ...
        if name == prefix or name.startswith(prefix + "_"):
            return problem
    return None


def store_error(path: Path, exc: BaseException) -> StoreError | None:
    """`exc` as one sentence naming the database file and the reason (StoreFileError when a
    person must fix the file or folder), or None when it is not the file's fault."""
    if isinstance(exc, sqlite3.Error) and (problem := _file_problem(exc)) is not None:
        reason, bad_input = problem
    elif (reason_of_disk := disk_reason(exc)) is not None:
        reason, bad_input = reason_of_disk, True
    else:
        return None
    message = f"cannot use the database {path}: {reason}"
    return StoreFileError(message) if bad_input else StoreError(message, user_message=message)


async def _statement(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> int:
    """Run one statement in aiosqlite's thread, where its cursor is made and dropped
    (`execute_fetchall`); the rows it changed (no trigger or cascade here, so the connection's
    total of changes moves by exactly those; the caller holds the lock).

    A cursor handed back and left to the collector would be finalised on the event loop's
    thread, and that resets its statement, which SQLite's statement cache may have given to
    the connection's thread for another query meanwhile. The statement runs in that thread even
    when the caller is cancelled, so the cancel is passed on once it ran (a BEGIN that went
    through unseen would leave the connection inside a transaction nobody ends)."""
    before = conn.total_changes
    running = asyncio.ensure_future(conn.execute_fetchall(sql, tuple(params)))
    running.add_done_callback(_seen)  # its failure is told to whoever awaits it, if anyone
    try:
        await asyncio.shield(running)
    except asyncio.CancelledError:
        with contextlib.suppress(sqlite3.Error):
            await running
        raise
    return conn.total_changes - before


def _seen(task: asyncio.Future[Iterable[sqlite3.Row]]) -> None:
    if not task.cancelled():
        task.exception()


class _Tx:
    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self._conn = conn
        self._path = path

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            return await _statement(self._conn, sql, params)
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        except sqlite3.Error as exc:
            raise _or_itself(store_error(self._path, exc), exc) from None

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            # the cursor is made, read and dropped in aiosqlite's thread
            rows = await self._conn.execute_fetchall(sql, tuple(params))
        except sqlite3.Error as exc:
            raise _or_itself(store_error(self._path, exc), exc) from None
        return [tuple(row) for row in rows]


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection, path: Path | None = None) -> None:
        self.path = path or Path(":memory:")
        self._conn = conn
        self._tx = _Tx(conn, self.path)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        """The database at `path`, created when absent; StoreError (one sentence naming the
        file) when it cannot be used. Its connection (a thread of its own, which would keep
        the process alive) is always closed on the way out of a failure."""
        try:
            if str(path) != ":memory:":
                await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
            conn = await _connected(path)
        except (OSError, sqlite3.Error) as exc:
            raise _or_itself(store_error(path, exc), exc) from None
        try:
            await conn.execute_fetchall("PRAGMA journal_mode=WAL")
            await conn.execute_fetchall("PRAGMA busy_timeout=10000")
            await conn.execute_fetchall("PRAGMA foreign_keys=ON")
        except BaseException as exc:
            await conn.close()
            if isinstance(exc, sqlite3.Error):
                raise _or_itself(store_error(path, exc), exc) from None
            raise
        return cls(conn, path)

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._lock:
            return await self._tx.execute(sql, params)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._lock:
            return await self._tx.fetchall(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursor]:
        async with self._lock:
            try:
                await self._to_the_end("BEGIN IMMEDIATE")
                yield self._tx
            except BaseException:
                await self._roll_back()
                raise
            try:
                await self._to_the_end("COMMIT")
            except BaseException:
                await self._roll_back()
                raise

    async def _to_the_end(self, sql: str) -> None:
        """Run `sql` even when the caller is cancelled meanwhile (`_statement`)."""
        try:
            await _statement(self._conn, sql)
        except sqlite3.Error as exc:
            raise _or_itself(store_error(self.path, exc), exc) from None

    async def _roll_back(self) -> None:
        if self._conn.in_transaction:
            await self._to_the_end("ROLLBACK")

    async def close(self) -> None:
        await self._conn.close()


async def _connected(path: Path) -> aiosqlite.Connection:
    """An aiosqlite connection to `path`, or the error opening it raised once its thread has
    ended. aiosqlite, when its connector fails, queues its thread's stop without waiting for
    it; a process that then exits at once races that thread to the closed loop, which prints a
    traceback. So the connector here keeps the error and opens an in-memory database instead,
    and that connection is closed (and waited for) like any other before the error is raised.
    """
    failures: list[sqlite3.Error] = []

    def connector() -> sqlite3.Connection:
        try:
            return sqlite3.connect(path, isolation_level=None)
        except sqlite3.Error as exc:
            failures.append(exc)
            return sqlite3.connect(":memory:", isolation_level=None)

    conn = await aiosqlite.Connection(connector, iter_chunk_size=64)
    if failures:
        await conn.close()
        raise failures[0]
    return conn


def _or_itself(translated: StoreError | None, exc: BaseException) -> BaseException:
    return exc if translated is None else translated
