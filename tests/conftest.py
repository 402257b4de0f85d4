"""Shared fixtures: settings in a temp folder, and the store on SQLite and on real MariaDB.

The `store` fixture runs each test twice, once per engine; the MySQL run uses a fresh database
on the server named by MEDIAOVERLOAD_TEST_MYSQL_URL (default: root@127.0.0.1:3306). It skips
only when that server is absent outside CI; in CI (CI=true) an absent server fails the run.
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest

from pipeline import logs
from pipeline.store import SqlStore, connect

MYSQL_URL = os.environ.get("MEDIAOVERLOAD_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


def mysql_admin() -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
    """A plain blocking connection to the test server, for setting up and looking from aside."""
    parts = urlsplit(MYSQL_URL)
    return pymysql.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "root",
        password=parts.password or "",
        autocommit=True,
        ssl_disabled=True,  # a local server; a TLS context costs 30 ms of CPU per connection
    )


@functools.cache
def _mysql_available() -> bool:
    try:
        mysql_admin().close()
    except pymysql.err.OperationalError:
        return False
    return True


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """A fresh, empty database on the test server, dropped afterwards."""
    if not _mysql_available():
        if os.environ.get("CI"):
            pytest.fail(f"MariaDB is not reachable at {urlsplit(MYSQL_URL).netloc} in CI")
        pytest.skip("MariaDB is not running here (CI starts it)")
    name = "mo_test_" + secrets.token_hex(4)
    admin = mysql_admin()
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
    parts = urlsplit(MYSQL_URL)
    yield urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))
    with admin.cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test that uses a store runs on both engines, but for one marked `one_engine` (its
    point is a platform's client or an ffmpeg-heavy run, not the store): SQLite alone."""
    if "store_url" in metafunc.fixturenames:
        one = metafunc.definition.get_closest_marker("one_engine") is not None
        metafunc.parametrize("store_url", ["sqlite"] if one else ["sqlite", "mysql"], indirect=True)


@pytest.fixture
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for the engine the test is parametrized with (pytest_generate_tests)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("mysql_url")
    return url


@pytest.fixture
async def store(store_url: str, tmp_path: Path) -> AsyncIterator[SqlStore]:
    s = await connect(store_url, sqlite_path=tmp_path / "unused.db")
    yield s
    await s.close()


@pytest.fixture
def debug_logging(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Logging as `python -m bot` sets it up with LOG_LEVEL=DEBUG, every record also going
    to caplog; the global logging state is put back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    libraries = {name: logging.getLogger(name).level for name in logs.AT_LEAST_INFO}
    logs.configure("DEBUG")
    root.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for name, old in libraries.items():
            logging.getLogger(name).setLevel(old)


@pytest.fixture(autouse=True)
def _command_line_logging_goes_with_its_test() -> Iterator[None]:
    """`main()` run in-process sets the command line's logging up (its stderr handler on the
    root logger, the root's level); both go with the test, so a later test's records are
    neither printed to the terminal nor formatted for it."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, logs.StderrHandler)]:
        root.removeHandler(handler)
    root.setLevel(level)
