"""The database behind the pipeline: SQLite by default, MySQL/MariaDB by URL.

`open_store` picks the engine from the URL, creates or upgrades the schema, and returns a
`SqlStore`; use it as `async with open_store(...) as store`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from pipeline.errors import ConfigError
from pipeline.store.db import Database
from pipeline.store.sql import SqlStore


async def connect(url: str, *, sqlite_path: Path) -> SqlStore:
    """Open the database named by `url` (empty: SQLite at `sqlite_path`) and migrate it."""
    db: Database
    if not url or url.startswith("sqlite"):
        from pipeline.store.sqlite import SqliteDatabase

        path = Path(url.split("://", 1)[1].lstrip("/")) if "://" in url else sqlite_path
        if url.startswith("sqlite:////"):
            path = Path("/" + url.split("://", 1)[1].lstrip("/"))
        db = await SqliteDatabase.open(path)
    elif url.startswith(("mysql://", "mariadb://", "mysql+aiomysql://")):
        from pipeline.store.mysql import MysqlDatabase

        db = await MysqlDatabase.open(url)
    else:
        raise ConfigError("DATABASE_URL must start with sqlite://, mysql:// or mariadb://")
    store = SqlStore(db)
    try:
        await store.migrate()
    except BaseException:
        await db.close()
        raise
    return store


@asynccontextmanager
async def open_store(url: str, *, sqlite_path: Path) -> AsyncIterator[SqlStore]:
    store = await connect(url, sqlite_path=sqlite_path)
    try:
        yield store
    finally:
        await store.close()


__all__ = ["SqlStore", "connect", "open_store"]
