"""MySQL / MariaDB through aiomysql, chosen by a `mysql://user:pass@host:port/db` URL.

A statement that loses its connection (server gone away, connection killed, restart) is retried
up to three times on a fresh connection, then raises ConnectionLost (a StoreError). Imports only
aiomysql / pymysql, the error tree and the seam; never logs the URL (it may hold the password).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import SplitResult, unquote, urlsplit

import aiomysql
import pymysql

from pipeline.errors import StoreError
from pipeline.store.db import Cursor, Dialect, DuplicateKey, Params, Row

log = logging.getLogger(__name__)

T = TypeVar("T")

# pymysql / MariaDB codes that mean the connection, not the statement, failed:
# 2003 can't connect, 2006 server has gone away, 2013 lost connection during query,
# 1053 server shutdown in progress, 1927 connection was killed, 4031 idle-timeout disconnect.
_CONNECTION_LOST = frozenset({2003, 2006, 2013, 1053, 1927, 4031})
# 1213 deadlock (the server rolled the transaction back), 1205 lock wait timeout: the server
# says "try restarting transaction"; two first saves of new runs meet this way (gap locks).
_TRY_AGAIN = frozenset({1213, 1205})
_DUPLICATE_ENTRY = 1062


class ConnectionLost(StoreError):
    """The connection was lost on every retry: a StoreError (a safe sentence for people, the
    driver's error as its cause) that the store's whole-transaction retry still recognises."""


def _gave_up(exc: BaseException, retries: int) -> ConnectionLost:
    code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
    what = type(exc).__name__ + (f" {code}" if isinstance(code, int) else "")
    return ConnectionLost(f"the database connection failed {retries + 1} times in a row ({what})")


def _lost_connection(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionLost | pymysql.err.InterfaceError):
        return True
    if isinstance(exc, pymysql.err.OperationalError) and exc.args:
        return exc.args[0] in _CONNECTION_LOST
    return isinstance(exc, ConnectionError | asyncio.IncompleteReadError)


def _try_again(exc: BaseException) -> bool:
    """The transaction may simply be run again whole: its connection was lost, or the server
    chose it as a deadlock's victim and rolled it back."""
    if isinstance(exc, pymysql.err.OperationalError) and exc.args and exc.args[0] in _TRY_AGAIN:
        return True
    return _lost_connection(exc)


def describe_connect_error(url: str, exc: BaseException) -> str:
    """Why the database could not be opened, naming host and database but never the password."""
    parts = urlsplit(url)
    where = f"{parts.hostname}:{parts.port or 3306}/{parts.path.lstrip('/')}"
    code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
    reason = {
        1045: "access denied for that user",
        1049: "no such database",
        2003: "no server answers there",
    }.get(
        code if isinstance(code, int) else -1,
        "no answer in time" if isinstance(exc, TimeoutError) else type(exc).__name__,
    )
    return f"cannot open the database at {where}: {reason}"


def _to_pyformat(sql: str) -> str:
    # The project's SQL has no '%' and no '?' inside literals: LIKE patterns travel as params.
    return sql.replace("?", "%s")


#: server codes that mean it cannot write now (its disk, its mode), not that our statement is
#: wrong: 1021 disk full, 1114 table full, 3 error writing a file, 1030 the storage engine
#: failed (ENOSPC among others), 1290 / 1836 / 1792 the server or the transaction is read-only
_CANNOT_WRITE = {
    1021: "its disk is full",
    1114: "a table is full (its disk, or a size limit)",
    3: "it cannot write a file (its disk)",
    1030: "its storage engine failed (often a full disk)",
    1290: "it runs read-only",
    1836: "it runs read-only",
    1792: "it runs read-only",
}


def cannot_write(exc: BaseException) -> StoreError | None:
    """The server's refusal to write as one sentence (a service failure, exit 2), or None."""
    code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
    reason = _CANNOT_WRITE.get(code) if isinstance(code, int) else None
    if reason is None:
        return None
    message = f"the database server cannot write: {reason} (MySQL error {code})"
    return StoreError(message, user_message=message)


class _Tx:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Params = ()) -> int:
        async with self._conn.cursor() as cursor:
            try:
                await cursor.execute(_to_pyformat(sql), tuple(params))
            except pymysql.err.IntegrityError as exc:
                if exc.args and exc.args[0] == _DUPLICATE_ENTRY:
                    raise DuplicateKey(str(exc.args[1] if len(exc.args) > 1 else exc)) from exc
                raise
            except pymysql.err.MySQLError as exc:
                if (refused := cannot_write(exc)) is not None:
                    raise refused from exc
                raise
            return int(cursor.rowcount)

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        async with self._conn.cursor() as cursor:
            try:
                await cursor.execute(_to_pyformat(sql), tuple(params))
            except pymysql.err.MySQLError as exc:
                if (refused := cannot_write(exc)) is not None:
                    raise refused from exc
                raise
            return [tuple(row) for row in await cursor.fetchall()]


class MysqlDatabase:
    dialect: Dialect = "mysql"

    def __init__(self, pool: Any, *, retries: int = 3, retry_delay: float = 0.2) -> None:
        self._pool = pool
        self._retries = retries
        self._retry_delay = retry_delay

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        retries: int = 3,
        retry_delay: float = 0.2,
        max_connections: int = 10,
        connect_seconds: float = 15.0,
    ) -> MysqlDatabase:
        parts = urlsplit(url)
        if parts.scheme not in {"mysql", "mariadb", "mysql+aiomysql"}:
            raise ValueError("DATABASE_URL must start with mysql:// or mariadb://")
        try:
            # aiomysql bounds only the TCP connect: a server that accepts and then says nothing
            # would hold the handshake (and the process) for ever
            async with asyncio.timeout(connect_seconds):
                pool = await cls._create_pool(parts, max_connections)
        except (pymysql.err.MySQLError, OSError) as exc:
            message = describe_connect_error(url, exc)
            raise StoreError(message, user_message=message) from None
        return cls(pool, retries=retries, retry_delay=retry_delay)

    @staticmethod
    async def _create_pool(parts: SplitResult, max_connections: int) -> Any:
        return await aiomysql.create_pool(
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 3306,
            user=unquote(parts.username or "root"),
            password=unquote(parts.password or ""),
            db=parts.path.lstrip("/") or "mediaoverload",
            autocommit=True,
            charset="utf8mb4",
            minsize=1,
            maxsize=max_connections,
            pool_recycle=3600,
            # Notes such as "table already exists" from idempotent DDL are not worth a warning.
            init_command="SET SESSION sql_notes = 0",
        )

    async def _with_connection(self, work: Callable[[Any], Awaitable[T]]) -> T:
        for attempt in range(self._retries + 1):
            conn = await self._acquire()
            try:
                return await work(conn)
            except asyncio.CancelledError:
                conn.close()  # cancelled mid-statement: the connection's state is unknown
                raise
            except Exception as exc:
                if not _lost_connection(exc):
                    raise
                conn.close()  # never hand a broken connection back to the pool
                if attempt == self._retries:
                    raise _gave_up(exc, self._retries) from exc
                log.warning(
                    "database connection lost (%s); retry %d of %d",
                    type(exc).__name__,
                    attempt + 1,
                    self._retries,
                )
                await asyncio.sleep(self._retry_delay * 2**attempt)
            finally:
                self._pool.release(conn)
        raise AssertionError("unreachable: the loop returns or raises")

    async def _acquire(self) -> Any:
        for attempt in range(self._retries + 1):
            try:
                return await self._pool.acquire()
            except Exception as exc:
                if not _lost_connection(exc):
                    raise
                if attempt == self._retries:
                    raise _gave_up(exc, self._retries) from exc
                log.warning(
                    "database not answering (%s); retry %d of %d",
                    type(exc).__name__,
                    attempt + 1,
                    self._retries,
                )
                await asyncio.sleep(self._retry_delay * 2**attempt)
        raise AssertionError("unreachable: the loop returns or raises")

    async def execute(self, sql: str, params: Params = ()) -> int:
        return await self._with_connection(lambda conn: _Tx(conn).execute(sql, params))

    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]:
        return await self._with_connection(lambda conn: _Tx(conn).fetchall(sql, params))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Cursor]:
        # A transaction is not retried statement by statement: the caller's unit of work is
        # retried whole by `SqlStore`, since half of it may have been lost with the connection.
        conn = await self._acquire()
        try:
            await conn.begin()
            try:
                yield _Tx(conn)
            except asyncio.CancelledError:
                # A rollback could wait on a reply that never comes; closing rolls back too.
                conn.close()
                raise
            except BaseException:
                if not conn.closed:
                    await conn.rollback()
                raise
            await conn.commit()
        except asyncio.CancelledError:
            conn.close()
            raise
        except Exception as exc:
            if _lost_connection(exc):
                conn.close()
            raise
        finally:
            self._pool.release(conn)

    def is_connection_lost(self, exc: BaseException) -> bool:
        return _lost_connection(exc)

    def is_retryable(self, exc: BaseException) -> bool:
        """True when a failed transaction may be run again whole (see `_try_again`)."""
        return _try_again(exc)

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()
