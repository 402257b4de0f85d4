"""SQLite through aiosqlite: the embedded default, one file under the data folder.

One connection in WAL mode; a lock serialises statements and transactions so concurrent tasks
never interleave inside each other's transaction. Imports only aiosqlite and the seam.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from pipeline.store.db import Cursor, Dialect, DuplicateKey, Params, Row


class _Tx:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        try:
            cursor = await self._conn.execute(sql, tuple(params))
        except sqlite3.IntegrityError as exc:
            raise DuplicateKey(str(exc)) from exc
        return cursor.rowcount

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._conn.execute(sql, tuple(params)) as cursor:
            return [tuple(row) for row in await cursor.fetchall()]


class SqliteDatabase:
    dialect: Dialect = "sqlite"

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self._tx = _Tx(conn)
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> SqliteDatabase:
        if str(path) != ":memory:":
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA busy_timeout=10000")
        await conn.execute("PRAGMA foreign_keys=ON")
        return cls(conn)

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
                # BEGIN inside the try: a cancel landing while it runs in aiosqlite's thread
                # must still roll back, or the connection stays in a transaction for good
                # and every later BEGIN fails ("cannot start a transaction within a
                # transaction"). aiosqlite runs statements in order, so ROLLBACK follows BEGIN.
                await self._conn.execute("BEGIN IMMEDIATE")
                yield self._tx
            except BaseException:
                with contextlib.suppress(sqlite3.OperationalError):  # BEGIN itself failed
                    await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    async def close(self) -> None:
        await self._conn.close()
