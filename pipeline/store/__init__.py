"""The database behind the pipeline: SQLite by default, MySQL/MariaDB by URL.

`open_store` picks the engine from the URL, creates or upgrades the schema, and returns a
`SqlStore`; use it as `async with open_store(...) as store`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import ConfigError
from pipeline.models import build_storage_forms
from pipeline.store.db import Database
from pipeline.store.sql import SqlStore

#: how DATABASE_URL must look; a message about it never quotes the URL (it may hold a password)
_FORMS = "mysql://user:password@host:3306/database or sqlite:////absolute/path.db"


def _bad_url(why: str) -> ConfigError:
    return ConfigError(f"DATABASE_URL is not a valid database URL: {why} (the form is {_FORMS})")


def sqlite_path_of(url: str, default: Path) -> Path:
    """The file a `sqlite://` URL names (empty URL: `default`); ConfigError when it names none."""
    if not url:
        return default
    if not url.startswith("sqlite://"):
        raise _bad_url("it must start with sqlite://, mysql:// or mariadb://")
    rest = url.removeprefix("sqlite://")
    if rest.startswith("//"):  # sqlite:////absolute/path.db
        rest = "/" + rest.lstrip("/")
    else:  # sqlite:///relative/path.db
        rest = rest.removeprefix("/")
    if not rest or rest.endswith("/"):
        raise _bad_url("it names no database file")
    return Path(rest)


def check_mysql_url(url: str) -> None:
    """ConfigError naming DATABASE_URL when the URL cannot be read (never quoting it)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (reading it raises ValueError on a port that is not a number)
    except ValueError:  # its text quotes the URL: raised outside, so it is not even the context
        parts = None
    if parts is None:
        raise _bad_url(
            "its host or port cannot be read; a password with @ : / ? or # in it must be "
            "percent-encoded (%40 for @)"
        )
    if not parts.hostname:
        raise _bad_url("it names no host")
    if parts.query or parts.fragment:
        raise _bad_url("it has a ? or # part; a password with ? or # in it must be percent-encoded")


async def connect(url: str, *, sqlite_path: Path) -> SqlStore:
    """Open the database named by `url` (empty: SQLite at `sqlite_path`) and migrate it.

    A URL that cannot be read is a ConfigError naming DATABASE_URL; a database that cannot
    be opened is a StoreError (a StoreFileError when its file or folder is at fault)."""
    db: Database
    await asyncio.to_thread(build_storage_forms)  # pydantic's schemas, off the event loop
    if url.startswith(("mysql://", "mariadb://", "mysql+aiomysql://")):
        from pipeline.store.mysql import MysqlDatabase

        check_mysql_url(url)
        db = await MysqlDatabase.open(url)
    else:
        from pipeline.store.sqlite import SqliteDatabase

        db = await SqliteDatabase.open(sqlite_path_of(url, sqlite_path))
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
