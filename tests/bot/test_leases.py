"""Two bot instances on one store: the second leaves alone the runs the first executes (no
second generation, no second review), and once the first is gone its adoption loop takes them
up, so each run is reviewed once and posted once."""

from __future__ import annotations

import asyncio
import os
import socket
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.render import APPROVE, REJECT
from pipeline.lease import Owner
from pipeline.models import Job, Run, RunState
from pipeline.ports import Lease
from pipeline.store import SqlStore
from tests.bot.conftest import StartBot
from tests.bot.reviews import candidates
from tests.doubles import Script
from tests.fakes import discord as fd
from tests.leases import FakeClock, live_process
from tests.waiting import until

pytestmark = pytest.mark.timeout(60)

HOST = socket.gethostname()


async def test_a_second_instance_leaves_the_first_ones_runs_and_adopts_them_once_it_is_gone(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The first instance resumes a run into generation and re-posts another's review; the
    second starts and, beat after beat, neither generates nor re-arms them. The first one's
    process dies (its pid is gone): the second takes both up, the first stops them unsaved,
    and each run ends published with one review message and one post record."""
    member = f"discord:{fd.ALICE.id}"
    generating = Run.new(Job("mascot", requested_by=member)).advance(
        RunState.PROMPTED, prompt="a robot waves"
    )
    await sqlite_store.save_run(generating)
    reviewing = candidates(tmp_path / "runs" / "staging", 2)
    reviewing = replace(reviewing, job=Job("mascot", requested_by=member))
    (tmp_path / "runs" / "staging").rename(tmp_path / "runs" / reviewing.id)
    await sqlite_store.save_run(reviewing)
    hold = asyncio.Event()
    script = Script(images=2, hold=hold)

    async with live_process() as first_process:
        first = await start_bot(
            script=script,
            owner=Owner(HOST, first_process.pid, "first"),
            run_lease_seconds=1.5,
            run_adopt_seconds=60,
        )
        [review] = await fake.until(
            lambda: fake.channel_messages(fd.REVIEW_CHANNEL), what="the first's review"
        )
        await fake.until(lambda: REJECT in review.reactions, what="the review's reactions")
        await fake.until(
            lambda: sorted(first.execute.started) == sorted([generating.id, reviewing.id]),
            what="the first instance to take both runs up",
        )
        second = await start_bot(
            script=script,
            owner=Owner(HOST, os.getpid(), "second"),
            run_lease_seconds=1.5,
            run_adopt_seconds=0.2,
        )
        leases = {run.id: await sqlite_store.lease_of(run.id) for run in (generating, reviewing)}
        await until(
            lambda: renewed_since(sqlite_store, leases), what="the first to renew its leases"
        )
        for _ in range(2):  # two beats of the second's adoption, driven here
            assert await second.bot.recovery.adopt() == 0
        assert second.execute.started == []
        assert second.services.reviewer.pending_runs() == []
        assert sorted(first.services.runner.active()) == sorted([generating.id, reviewing.id])
    # the first instance's process is gone: its leases are stale

    await fake.until(
        lambda: sorted(second.execute.started) == sorted([generating.id, reviewing.id]),
        what="the second instance to adopt both runs",
    )
    await fake.until(lambda: not first.services.runner.active(), what="the first to stop its runs")
    hold.set()
    reviews = await fake.until(
        lambda: (
            len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 2
            and fake.channel_messages(fd.REVIEW_CHANNEL)
        ),
        what="the generated run's review",
    )
    assert reviews[0] is review
    await fake.until(lambda: REJECT in reviews[1].reactions, what="its reactions")
    for message in reviews:
        await fake.react(message, APPROVE, fd.ALICE)
    for run in (generating, reviewing):
        done = await second.services.runner.wait(run.id)
        assert done.state is RunState.PUBLISHED, done
        assert len(await sqlite_store.posts_for_run(run.id)) == 1
    assert len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 2
    assert first.execute.reviews == [reviewing.id]  # each run was put up for review once
    assert second.execute.reviews == [generating.id]


async def test_a_run_of_an_instance_on_another_host_is_adopted_once_its_lease_expires(
    start_bot: StartBot, sqlite_store: SqlStore
) -> None:
    """An instance on another host left a run half done with a lease running out in seconds:
    the starting bot leaves it (that host may still be working on it), and its adoption loop
    takes it up once the lease expired (the clock moved to its expiry)."""
    run = Run.new(Job("mascot", requested_by=f"discord:{fd.ALICE.id}")).advance(
        RunState.PROMPTED, prompt="a robot waves"
    )
    await sqlite_store.save_run(run)
    gone = Owner("another-host", 1, "gone")
    clock = FakeClock()
    lease = await sqlite_store.take_lease(run.id, str(gone), clock() + timedelta(seconds=4))
    hold = asyncio.Event()
    under_test = await start_bot(script=Script(hold=hold), run_adopt_seconds=0.2, clock=clock)
    assert await under_test.bot.recovery.adopt() == 0  # a beat while the lease holds: left alone
    assert under_test.execute.started == []
    clock.now = lease.expires_at
    await under_test.fake.until(
        lambda: under_test.execute.started == [run.id], within=10, what="the adoption"
    )
    held = await sqlite_store.lease_of(run.id)
    assert held is not None
    assert held.owner != str(gone)


async def renewed_since(store: SqlStore, leases: dict[str, Lease | None]) -> bool:
    """Every one of `leases` is held by its holder still, and runs later than it did."""
    for run_id, before in leases.items():
        now = await store.lease_of(run_id)
        if before is None or now is None or now.owner != before.owner:
            return False
        if now.expires_at <= before.expires_at:
            return False
    return True
