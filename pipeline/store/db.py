"""The narrow seam under the store: run one statement, fetch rows, run a transaction.

Two implementations (SQLite and MySQL) differ only here; all SQL lives in `pipeline.store.sql`
and is written with `?` placeholders. Imports no driver.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Literal, Protocol

Row = tuple[Any, ...]
Params = Sequence[Any]
Dialect = Literal["sqlite", "mysql"]


class DuplicateKey(Exception):
    """An insert hit a unique key."""


class Cursor(Protocol):
    """Statements inside one transaction."""

    async def execute(self, sql: str, params: Params = ()) -> int: ...
    async def fetchall(self, sql: str, params: Params = ()) -> list[Row]: ...


class Database(Cursor, Protocol):
    """One database: statements in autocommit, or several inside `transaction()`."""

    dialect: Dialect

    def transaction(self) -> AbstractAsyncContextManager[Cursor]: ...
    async def close(self) -> None: ...
