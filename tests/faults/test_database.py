"""MariaDB restarted in the middle of a real run, on a private server.

The shared server on 3306 is never touched: each test starts its own `mariadbd` (an empty
datadir with `--skip-grant-tables`, so root needs no password and no install step) on a free
port, kills it with SIGKILL while a ComfyUI job runs, and starts it again on the same datadir
and port. Skipped when mariadbd is not installed, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pymysql
import pytest

from comfy import ComfyPool
from pipeline.errors import StoreError
from pipeline.models import Job, PostState, RunState
from pipeline.ports import Lease
from pipeline.runner import Runner
from pipeline.store import SqlStore, connect
from pipeline.store.mysql import MysqlDatabase
from tests.fakes.comfyui import FakeComfyUI
from tests.leases import HeldRun
from tests.runs import World
from tests.waiting import until

pytestmark = pytest.mark.slow

MARIADBD = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class PrivateMariaDB:
    """One mariadbd subprocess on a datadir of our own; stopped and started at will."""

    def __init__(self, binary: str, folder: Path) -> None:
        self.binary = binary
        self.datadir = folder / "data"
        self.datadir.mkdir()
        self.log = folder / "mariadbd.log"
        self.port = _free_port()
        # a socket's path must stay under 108 bytes: a short folder of its own, not tmp_path
        self.socket = Path(tempfile.mkdtemp(prefix="mo-mariadb-")) / "sock"
        self._proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/faults"

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.socket}",
                f"--pid-file={self.datadir / 'mariadbd.pid'}",
                "--skip-grant-tables",
                "--user=root",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=4M",
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        async with asyncio.timeout(30):
            while not await asyncio.to_thread(self._answers):
                if self._proc.returncode is not None:
                    tail = self.log.read_text(errors="replace")[-2000:]
                    pytest.fail(f"mariadbd exited with {self._proc.returncode}:\n{tail}")
                await asyncio.sleep(0.05)

    def _answers(self) -> bool:
        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1, ssl_disabled=True
            ).close()
        except pymysql.err.OperationalError:
            return False
        return True

    def create_database(self) -> None:
        conn = pymysql.connect(
            host="127.0.0.1", port=self.port, user="root", autocommit=True, ssl_disabled=True
        )
        with conn.cursor() as cursor:
            cursor.execute("CREATE DATABASE faults CHARACTER SET utf8mb4")
        conn.close()

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        proc.send_signal(sig)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@pytest.fixture
async def mariadb(tmp_path: Path) -> AsyncIterator[PrivateMariaDB]:
    if MARIADBD is None:
        if os.environ.get("CI"):
            pytest.fail("mariadbd is not installed, and CI must run the database restart test")
        pytest.skip("mariadbd is not installed here (CI installs it)")
    server = PrivateMariaDB(MARIADBD, tmp_path)
    await server.start()
    await asyncio.to_thread(server.create_database)
    try:
        yield server
    finally:
        await server.stop(signal.SIGTERM)
        shutil.rmtree(server.socket.parent, ignore_errors=True)


@pytest.mark.timeout(60)
async def test_a_database_restart_mid_run_costs_a_retry_not_the_run(
    mariadb: PrivateMariaDB,
    project: Path,
    comfy: tuple[FakeComfyUI, ComfyPool],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MariaDB is killed while the images render and comes back while the run is saving: the
    save retries on a fresh connection and the run publishes, its record and posts kept."""
    fake, pool = comfy
    fake.job_seconds = 0.5
    store = await connect(mariadb.url, sqlite_path=tmp_path / "unused.db")
    try:
        world = World(project, store, pool)
        runner = Runner(store, world.pipeline.execute)
        run = await runner.submit(Job("testy", seed=1))
        await until(lambda: len(fake.jobs) >= 1)
        with caplog.at_level(logging.WARNING):
            await mariadb.stop(signal.SIGKILL)
            await fake.wait_idle()
            # the save after the images meets no server, and retries
            await until(lambda: "retry" in caplog.text, what="a save to retry")
            await mariadb.start()
            done = await runner.wait(run.id)
        assert done.state is RunState.PUBLISHED, done.failure
        assert "retry" in "\n".join(r.getMessage() for r in caplog.records)  # it did retry
        stored = await store.load_run(run.id)
        assert stored is not None
        assert stored.state is RunState.PUBLISHED
        posts = await store.posts_for_run(run.id)
        assert sorted(p.state for p in posts) == [PostState.POSTED, PostState.POSTED]
        assert len(fake.prompts) == 2
    finally:
        await store.close()


@pytest.mark.timeout(60)
async def test_a_database_down_past_the_retries_leaves_the_run_at_its_last_step(
    mariadb: PrivateMariaDB,
    project: Path,
    comfy: tuple[FakeComfyUI, ComfyPool],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """MariaDB stays away longer than the retries: the run stops at its last saved step
    without hanging, and the log says so in a sentence (no traceback); with the database back,
    resume publishes it without new images."""
    fake, pool = comfy
    fake.job_seconds = 0.3
    db = await MysqlDatabase.open(mariadb.url, retry_delay=0.05)
    store = SqlStore(db)
    await store.migrate()
    try:
        world = World(project, store, pool)
        runner = Runner(store, world.pipeline.execute)
        run = await runner.submit(Job("testy", seed=2))
        await until(lambda: len(fake.jobs) >= 1)
        await mariadb.stop(signal.SIGKILL)
        await asyncio.wait_for(runner.wait(run.id), 30)  # ends, does not hang
        assert runner.active() == []
        said = [r for r in caplog.records if r.name == "pipeline.runner"]
        [stopped] = [r for r in said if r.levelno >= logging.ERROR]
        # its lease could not be given up either: it runs out by itself
        assert [r for r in said if r.levelno == logging.WARNING] == []
        leases = [r for r in caplog.records if r.name == "pipeline.lease"]
        assert [r.getMessage() for r in leases if r.levelno == logging.WARNING] == [
            f"run {run.id}: lease not released ({StoreError.user_message}); it expires in 90 s"
        ]
        assert "keeps its last saved step and can be resumed" in stopped.getMessage()
        assert stopped.exc_info is None
        with pytest.raises(StoreError) as caught:  # not the driver's error: a safe sentence
            await store.load_run(run.id)
        assert caught.value.user_message == StoreError.user_message
        assert str(mariadb.port) not in str(caught.value)
        await mariadb.start()
        stored = await store.load_run(run.id)
        assert stored is not None
        assert stored.state is RunState.DESCRIBED  # the last step it could save
        prompts = len(fake.prompts)
        await runner.resume(run.id)
        done = await runner.wait(run.id)
        assert done.state is RunState.PUBLISHED, done.failure
        assert len(fake.prompts) == prompts  # the rendered images were kept on disk
    finally:
        await store.close()


@pytest.mark.timeout(60)
async def test_a_database_blip_while_a_run_waits_costs_a_renewal_not_the_run(
    mariadb: PrivateMariaDB, caplog: pytest.LogCaptureFixture
) -> None:
    """MariaDB is killed while a run waits (as for a review): the lease renewals that meet no
    server are logged, the run goes on, and once the server is back the lease is renewed and
    the run ends normally."""
    db = await MysqlDatabase.open(mariadb.url, retry_delay=0.05)
    store = SqlStore(db)
    await store.migrate()
    try:
        work = HeldRun(store, review=True)
        runner = Runner(store, work, lease_ttl=1.5)
        run = await runner.submit(Job("testy"))
        await until(lambda: bool(work.started))
        with caplog.at_level(logging.WARNING):
            await mariadb.stop(signal.SIGKILL)
            await until(lambda: "lease not renewed" in caplog.text, within=20)
            await mariadb.start()
        assert runner.position(run.id) == 0
        before = await store.lease_of(run.id)
        assert before is not None

        async def renewed() -> Lease | None:
            lease = await store.lease_of(run.id)
            return lease if lease is not None and lease.expires_at > before.expires_at else None

        after = await until(renewed, what="a renewal with the server back")
        assert after is not None
        assert after.owner == before.owner
        work.go.set()
        done = await runner.wait(run.id)
        assert done.state is RunState.EXPIRED
        assert await store.lease_of(run.id) is None
    finally:
        await store.close()
