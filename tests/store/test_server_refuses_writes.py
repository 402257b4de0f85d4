"""A MySQL / MariaDB server that will not write (its disk full, read-only): the store says so
in one sentence, a service failure the runner and the commands report without a traceback,
instead of the driver's error. The real server refuses here: a read-only session."""

from __future__ import annotations

import pytest

from pipeline.errors import StoreError
from pipeline.models import Job, Run
from pipeline.store import SqlStore
from pipeline.store.mysql import MysqlDatabase


async def test_a_server_that_will_not_write_is_one_sentence(mysql_url: str) -> None:
    """The server refuses a save because the session is read-only (as a server started
    --read-only, or out of disk, refuses it): StoreError with a sentence, and nothing saved;
    reads still work."""
    db = await MysqlDatabase.open(mysql_url, max_connections=1)  # one session: the read-only one
    store = SqlStore(db)
    try:
        await store.migrate()
        await db.execute("SET SESSION TRANSACTION READ ONLY")
        run = Run.new(Job("testy"))
        with pytest.raises(StoreError) as caught:
            await store.save_run(run)
        assert caught.value.user_message == (
            "the database server cannot write: it runs read-only (MySQL error 1792)"
        )
        assert await store.load_run(run.id) is None
    finally:
        await store.close()
