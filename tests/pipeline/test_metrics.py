"""Metrics collection: each published post read at 1 h, 24 h and 7 days, once, on both engines."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.metrics import CollectPolicy, MetricsCollector
from pipeline.models import Job, Platform, PostRecord, PostState, Run, RunState
from pipeline.ports import PostMetrics
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.bluesky import BlueskyPublisher
from pipeline.publish.credentials import CredentialStore
from pipeline.publish.errors import ContentRejectedError, TransientPublishError
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.bluesky import FakeBluesky, Post
from tests.publish.conftest import BSKY_ENV

POSTED_AT = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Clock:
    now: datetime = POSTED_AT

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ScriptedReader:
    """A MetricsReader answering from a script (counts or errors), then with `then`."""

    platform: Platform = Platform.TWITTER
    script: deque[PostMetrics | Exception] = field(default_factory=deque)
    then: PostMetrics = field(default_factory=lambda: PostMetrics(likes=1))
    calls: list[tuple[str, str]] = field(default_factory=list)

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        self.calls.append((account, remote_id))
        answer = self.script.popleft() if self.script else self.then
        if isinstance(answer, Exception):
            raise answer
        return answer


async def _published(store: SqlStore, run_id: str = "run000000001", *, character: str = "fox",
                     platform: Platform = Platform.TWITTER, remote_id: str = "1790",
                     account: str = "fox_x") -> None:  # fmt: skip
    run = Run.new(Job(character=character), run_id=run_id)
    await store.save_run(run.advance(RunState.PUBLISHED))
    record = PostRecord(run_id=run_id, platform=platform, account=account, state=PostState.POSTED,
                        remote_id=remote_id, created_at=POSTED_AT, updated_at=POSTED_AT)  # fmt: skip
    assert await store.record_post(record)


def _collector(store: SqlStore, reader: object, clock: Clock, tmp_path: Path, *,
               owner: str = "one", policy: CollectPolicy | None = None) -> MetricsCollector:  # fmt: skip
    platform = getattr(reader, "platform", Platform.TWITTER)
    return MetricsCollector(
        store,
        {platform: reader},  # type: ignore[dict-item]  # a double of the MetricsReader side only
        AttentionBoard(tmp_path / "attention"),
        owner=owner,
        clock=clock,
        policy=policy,
    )


async def test_each_checkpoint_is_read_once_when_due(store: SqlStore, tmp_path: Path) -> None:
    """Nothing is read before the hour; then the 1 h, 24 h and 7 d readings, each once."""
    await _published(store)
    reader = ScriptedReader(script=deque([PostMetrics(likes=3), PostMetrics(likes=9)]))
    clock = Clock(POSTED_AT + timedelta(minutes=59))
    collector = _collector(store, reader, clock, tmp_path)

    first = await collector.collect_once()
    assert (first.planned, first.read, reader.calls) == (3, 0, [])

    clock.now = POSTED_AT + timedelta(hours=1)
    assert (await collector.collect_once()).read == 1
    assert (await collector.collect_once()).read == 0  # read already: not again
    clock.now = POSTED_AT + timedelta(days=8)
    assert (await collector.collect_once()).read == 2
    assert reader.calls == [("fox_x", "1790")] * 3
    readings = await store.readings_of("run000000001")
    assert [(c, s) for _, c, s, _ in readings] == [("1h", "read"), ("24h", "read"), ("7d", "read")]
    rows = await store.metrics_of("fox")
    assert {(row.checkpoint, row.metrics.likes) for row in rows} == {
        ("1h", 3),
        ("24h", 9),
        ("7d", 1),
    }


async def test_two_collectors_never_read_one_post_twice(store: SqlStore, tmp_path: Path) -> None:
    """Two instances running a pass at the same moment read each due reading exactly once."""
    for number in range(6):
        await _published(store, f"run00000000{number}", remote_id=f"17{number}")
    clock = Clock(POSTED_AT + timedelta(days=8))
    reader = ScriptedReader()
    one = _collector(store, reader, clock, tmp_path, owner="one")
    two = _collector(store, reader, clock, tmp_path, owner="two")

    reports = await asyncio.gather(one.collect_once(), two.collect_once())

    assert sum(report.read for report in reports) == 18
    assert sorted(reader.calls) == sorted([("fox_x", f"17{n}") for n in range(6)] * 3)


async def test_failed_reading_is_retried_then_missed(store: SqlStore, tmp_path: Path) -> None:
    """A busy platform is asked again after the backoff, and given up after the last try."""
    await _published(store)
    busy = TransientPublishError("X HTTP 503")
    reader = ScriptedReader(script=deque([busy, busy, busy]))
    clock = Clock(POSTED_AT + timedelta(hours=1))
    policy = CollectPolicy(tries=3, backoff=timedelta(minutes=10))
    collector = _collector(store, reader, clock, tmp_path, policy=policy)

    assert (await collector.collect_once()).retried == 1
    assert (await collector.collect_once()).retried == 0  # not before the backoff
    clock.now += timedelta(minutes=10)
    assert (await collector.collect_once()).retried == 1
    clock.now += timedelta(minutes=20)
    last = await collector.collect_once()

    assert last.missed == 1
    assert "tried 3 times" in last.notes[0]
    assert len(reader.calls) == 3
    [first, *_] = await store.readings_of("run000000001")
    assert first[1:] == ("1h", "missed", 2)


async def test_gone_post_is_missed_at_once(store: SqlStore, tmp_path: Path) -> None:
    """A deleted post is recorded as missed without another try."""
    await _published(store)
    gone = ContentRejectedError("gone", platform_message="the post is gone or hidden")
    reader = ScriptedReader(script=deque([gone]))
    collector = _collector(store, reader, Clock(POSTED_AT + timedelta(hours=2)), tmp_path)

    report = await collector.collect_once()

    assert (report.missed, len(reader.calls)) == (1, 1)
    assert "gone" in report.notes[0]


async def test_paused_account_is_skipped(store: SqlStore, tmp_path: Path) -> None:
    """A paused account is not asked; its readings wait, and are read once it is resumed."""
    await _published(store)
    reader = ScriptedReader()
    clock = Clock(POSTED_AT + timedelta(hours=2))
    collector = _collector(store, reader, clock, tmp_path)
    collector.attention.pause(Platform.TWITTER, "fox_x", "login expired")

    assert (await collector.collect_once()).skipped == 1
    assert reader.calls == []

    collector.attention.resume(Platform.TWITTER, "fox_x")
    clock.now += timedelta(hours=1)
    assert (await collector.collect_once()).read == 1


async def test_abandoned_claim_is_taken_over(store: SqlStore, tmp_path: Path) -> None:
    """A reading claimed by a collector that died is read by another after the claim ends."""
    await _published(store)
    now = POSTED_AT + timedelta(hours=2)
    assert await store.plan_readings((("1h", timedelta(hours=1)),), [Platform.TWITTER], 10) == 1
    assert len(await store.claim_readings("dead", now, now + timedelta(minutes=15), 10)) == 1
    reader = ScriptedReader()
    clock = Clock(now + timedelta(minutes=5))
    collector = _collector(store, reader, clock, tmp_path)
    assert (await collector.collect_once()).read == 0
    clock.now = now + timedelta(minutes=16)
    assert (await collector.collect_once()).read == 1


@pytest.fixture
async def bsky() -> AsyncIterator[FakeBluesky]:
    server = await FakeBluesky().start()
    yield server
    await server.close()


async def test_bluesky_post_is_read_through_atproto(
    store: SqlStore, tmp_path: Path, bsky: FakeBluesky
) -> None:
    """End to end: a Bluesky post's counts reach the store through the real client."""
    post = Post("3lfox0000001", {"text": "Autumn walk", "createdAt": "2026-03-01T12:00:00Z"})
    post.counts.update(likeCount=4, repostCount=1, replyCount=2)
    bsky.posts.append(post)
    await _published(store, platform=Platform.BLUESKY, remote_id=post.uri, account="fox_bsky")
    creds = CredentialStore(Settings(_env_file=None, data_dir=tmp_path / "data"), BSKY_ENV)
    publisher = BlueskyPublisher(creds.bluesky, service_url=bsky.url, timeout=10)
    try:
        collector = _collector(store, publisher, Clock(POSTED_AT + timedelta(hours=1)), tmp_path)
        assert (await collector.collect_once()).read == 1
    finally:
        await publisher.aclose()
    [row] = await store.metrics_of("fox")
    assert row.metrics == PostMetrics(likes=4, reposts=1, replies=2)


async def test_missing_credentials_do_not_stall_the_other_readings(
    store: SqlStore, tmp_path: Path
) -> None:
    """A reading whose credentials are missing is tried again later, and the readings behind it
    are read in the same pass."""
    await _published(store, "run000000001", remote_id="1")
    await _published(store, "run000000002", remote_id="2")
    missing = ConfigError("X credentials 'fox_x': FOX_X_API_KEY is not set")
    reader = ScriptedReader(script=deque([missing]))
    collector = _collector(store, reader, Clock(POSTED_AT + timedelta(hours=1)), tmp_path)

    report = await collector.collect_once()

    assert (report.read, report.retried) == (1, 1)
