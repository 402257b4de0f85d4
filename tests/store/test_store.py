"""The store, on SQLite and on MariaDB alike: runs, posts, slots, characters and news."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from random import Random

import pytest

from pipeline.models import (
    Decision,
    Job,
    Platform,
    PostRecord,
    PostState,
    ReviewTicket,
    Run,
    RunState,
    utcnow,
)
from pipeline.ports import CatalogCharacter, NewsItem
from pipeline.store import SqlStore, connect
from pipeline.store.schema import LATEST

HOSTILE = "Robert'); DROP TABLE anime_roles; -- ? %s %(x)s \\ \" ` 😀"


async def test_a_saved_run_loads_back_equal(store: SqlStore) -> None:
    """A run saved after a step comes back with everything it had."""
    run = Run.new(Job("mascot", prompt="a robot at the beach", seed=7))
    await store.save_run(run)
    later = run.advance(RunState.PROMPTED, prompt="Pixel builds a sandcastle")
    await store.save_run(later)
    assert await store.load_run(run.id) == later
    assert await store.load_run("no-such-run") is None


async def test_runs_are_listed_by_state_and_character_newest_first(store: SqlStore) -> None:
    """`runs --state` shows the matching runs, most recently touched first."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    runs = []
    for i, (character, state) in enumerate(
        [
            ("mascot", RunState.AWAITING_REVIEW),
            ("mascot", RunState.PUBLISHED),
            ("moon", RunState.AWAITING_REVIEW),
            ("mascot", RunState.AWAITING_REVIEW),
        ]
    ):
        run = Run(
            id=f"run{i}",
            job=Job(character),
            character=character,
            state=state,
            created_at=base,
            updated_at=base + timedelta(minutes=i),
        )
        runs.append(run)
        await store.save_run(run)
    waiting = await store.list_runs(states={RunState.AWAITING_REVIEW})
    assert [r.id for r in waiting] == ["run3", "run2", "run0"]
    mine = await store.list_runs(states={RunState.AWAITING_REVIEW}, character="mascot", limit=1)
    assert [r.id for r in mine] == ["run3"]
    assert await store.list_runs(states=set()) == []
    assert len(await store.list_runs()) == 4
    older = await store.list_runs(updated_before=base + timedelta(minutes=2))
    assert [r.id for r in older] == ["run1", "run0"]


async def test_a_review_ticket_is_indexed_in_reviews(store: SqlStore) -> None:
    """A run waiting for review can be found with its channel and messages after a restart."""
    now = utcnow()
    run = Run.new(Job("mascot")).advance(
        RunState.AWAITING_REVIEW,
        ticket=ReviewTicket(channel_id=123, message_ids=(5, 6), posted_at=now),
    )
    await store.save_run(run)
    rows = await store.db.fetchall("SELECT channel_id, message_ids, state FROM reviews")
    assert [(int(r[0]), r[1], r[2]) for r in rows] == [(123, "[5, 6]", "pending")]
    decided = run.advance(
        RunState.APPROVED, decision=Decision(approved=True, selected=(0,), by="ana", at=now)
    )
    await store.save_run(decided)
    rows = await store.db.fetchall("SELECT state, reviewer FROM reviews")
    assert rows == [("approved", "ana")]


async def test_a_post_record_is_unique_per_run_and_platform(store: SqlStore) -> None:
    """A second attempt to post the same run on the same platform is refused by the database."""
    record = PostRecord(
        run_id="r1", platform=Platform.TWITTER, account="pixel", state=PostState.POSTING
    )
    assert await store.record_post(record) is True
    again = PostRecord(
        run_id="r1", platform=Platform.TWITTER, account="pixel", state=PostState.POSTING
    )
    assert await store.record_post(again) is False
    other = PostRecord(
        run_id="r1", platform=Platform.INSTAGRAM, account="pixel", state=PostState.POSTING
    )
    assert await store.record_post(other) is True
    posted = PostRecord(
        run_id="r1",
        platform=Platform.TWITTER,
        account="pixel",
        state=PostState.POSTED,
        remote_id="1789",
        url="https://x.com/pixel/status/1789",
        created_at=record.created_at,
    )
    await store.update_post(posted)
    stored = {p.platform: p for p in await store.posts_for_run("r1")}
    assert stored[Platform.TWITTER].remote_id == "1789"
    assert stored[Platform.TWITTER].state is PostState.POSTED
    assert stored[Platform.INSTAGRAM].state is PostState.POSTING


async def test_posts_are_counted_per_account_for_the_daily_budget(store: SqlStore) -> None:
    """The budget counts today's posts of one account on one platform, failed ones excluded."""
    now = utcnow()
    for i, state in enumerate(
        [PostState.POSTED, PostState.POSTED, PostState.FAILED, PostState.UNCERTAIN]
    ):
        await store.record_post(
            PostRecord(
                run_id=f"r{i}",
                platform=Platform.TWITTER,
                account="pixel",
                state=state,
                created_at=now,
            )
        )
    await store.record_post(
        PostRecord(
            run_id="old",
            platform=Platform.TWITTER,
            account="pixel",
            state=PostState.POSTED,
            created_at=now - timedelta(days=2),
        )
    )
    await store.record_post(
        PostRecord(
            run_id="r9",
            platform=Platform.TWITTER,
            account="other",
            state=PostState.POSTED,
            created_at=now,
        )
    )
    since = now - timedelta(hours=24)
    assert await store.count_posts("twitter", "pixel", since) == 3


async def test_of_many_concurrent_claims_of_one_slot_exactly_one_wins(store: SqlStore) -> None:
    """A scheduled slot runs once even when many tasks race for it."""
    results = await asyncio.gather(
        *(store.claim_slot("mascot", "2026-11-25T09", run_id=f"r{i}") for i in range(20))
    )
    assert results.count(True) == 1
    assert await store.claim_slot("mascot", "2026-11-25T10") is True
    assert await store.claim_slot("moon", "2026-11-25T09") is True


async def test_two_bot_instances_on_one_database_claim_a_slot_once(
    store_url: str, tmp_path: Path
) -> None:
    """Two processes sharing a database never both run the same slot."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        results = await asyncio.gather(
            *(s.claim_slot("mascot", f"slot{n}") for n in range(10) for s in (first, second))
        )
        assert results.count(True) == 10
    finally:
        await first.close()
        await second.close()


async def test_group_members_are_picked_by_weight(store: SqlStore) -> None:
    """Over many seeded draws each active member comes up in proportion to its weight."""
    weights = {"Luna": 1.0, "Sol": 2.0, "Stella": 3.0, "Nova": 4.0}
    for name, weight in weights.items():
        await store.add_character(name, "moonlit", weight=weight)
    await store.add_character("Retired", "moonlit", weight=50, status=0)
    await store.add_character("Elsewhere", "other", weight=50)
    members = await store.list_characters("moonlit")
    rng = Random(2026)
    draws = 4000
    counts: Counter[str] = Counter()
    for _ in range(draws):
        # the rows are read once; the pick itself is what is under test
        from pipeline.store.sql import weighted_pick

        chosen = weighted_pick([m for m in members if m.status == 1], rng)
        assert chosen is not None
        counts[chosen.name] += 1
    total = sum(weights.values())
    chi_square = sum(
        (counts[name] - draws * w / total) ** 2 / (draws * w / total) for name, w in weights.items()
    )
    assert set(counts) == set(weights)
    assert chi_square < 16.27  # 3 degrees of freedom, p = 0.001


@pytest.mark.parametrize("weight", [math.nan, math.inf, -math.inf, -5.0])
async def test_a_weight_that_is_not_a_finite_positive_number_is_refused(
    store: SqlStore, weight: float
) -> None:
    """A member cannot be stored with a NaN, infinite or negative weight: every pick of its
    group would go wrong."""
    with pytest.raises(ValueError, match="a weight must be a finite number of 0 or more"):
        await store.add_character("Luna", "moonlit", weight=weight)
    assert await store.list_characters("moonlit") == []


def test_members_stored_with_an_unusable_weight_are_never_picked() -> None:
    """Rows written before weights were checked (NaN, infinite, negative) are passed over,
    never a crash: the pick is among the members whose weight is a usable number."""
    from pipeline.store.sql import weighted_pick

    rows = [
        CatalogCharacter(id=i, name=name, group_name="moonlit", weight=weight, status=1)
        for i, (name, weight) in enumerate(
            [("Nan", math.nan), ("Inf", math.inf), ("Neg", -5.0), ("Luna", 1.0)]
        )
    ]
    rng = Random(7)
    assert {chosen.name for _ in range(50) if (chosen := weighted_pick(rows, rng))} == {"Luna"}
    assert weighted_pick(rows[:3], rng) is None


async def test_a_second_character_is_never_the_first(store: SqlStore) -> None:
    """two_character picks someone else from the group, and None when nobody else is left."""
    await store.add_character("Luna", "moonlit")
    await store.add_character("Sol", "moonlit")
    rng = Random(1)
    for _ in range(20):
        other = await store.pick_group_member("moonlit", rng, exclude={"Luna"})
        assert other is not None
        assert other.name == "Sol"
    assert await store.pick_group_member("moonlit", rng, exclude={"Luna", "Sol"}) is None
    assert await store.pick_group_member("empty-group", rng) is None


async def test_news_come_newest_first_and_skip_what_a_character_used(store: SqlStore) -> None:
    """The news prompt method gets fresh rows: newest first, by keyword, not reused."""
    day = datetime(2026, 11, 1, 8, tzinfo=UTC)
    await store.add_news(
        [
            NewsItem(0, "Old space story", "space", "...", day),
            NewsItem(0, "New space story", "space", "...", day + timedelta(days=2)),
            NewsItem(0, "Cooking news", "food", "...", day + timedelta(days=1)),
        ]
    )
    titles = [n.title for n in await store.recent_news(character="mascot")]
    assert titles == ["New space story", "Cooking news", "Old space story"]
    space = await store.recent_news(character="mascot", keyword="space")
    assert [n.title for n in space] == ["New space story", "Old space story"]
    assert space[0].publish_date == day + timedelta(days=2)
    await store.mark_news_used("mascot", space[0].id)
    await store.mark_news_used("mascot", space[0].id)  # twice is harmless
    assert [n.title for n in await store.recent_news(character="mascot", keyword="space")] == [
        "Old space story"
    ]
    assert len(await store.recent_news(character="moon", keyword="space")) == 2


async def test_sql_looking_input_is_stored_verbatim(store: SqlStore) -> None:
    """Quotes, placeholders and SQL in names, news and prompts are data, never SQL."""
    await store.add_character(HOSTILE, HOSTILE)
    [member] = await store.list_characters(HOSTILE)
    assert member.name == HOSTILE
    await store.add_news([NewsItem(0, HOSTILE, HOSTILE, HOSTILE, None)])
    [news] = await store.recent_news(character=HOSTILE, keyword=HOSTILE)
    assert (news.title, news.content) == (HOSTILE, HOSTILE)
    run = Run.new(Job(HOSTILE, prompt=HOSTILE)).advance(RunState.PROMPTED, prompt=HOSTILE)
    await store.save_run(run)
    assert await store.load_run(run.id) == run
    assert [r.id for r in await store.list_runs(character=HOSTILE)] == [run.id]
    assert await store.claim_slot(HOSTILE, HOSTILE) is True
    assert len(await store.list_characters()) == 1  # the table is still there


async def test_opening_the_store_again_keeps_data_and_schema(
    store_url: str, tmp_path: Path
) -> None:
    """Every start migrates; a second start changes nothing and loses nothing."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    await first.add_character("Luna", "moonlit")
    await first.close()
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        assert await second.migrate() == LATEST
        assert [c.name for c in await second.list_characters()] == ["Luna"]
    finally:
        await second.close()


async def test_the_embedded_database_is_created_on_first_use(tmp_path: Path) -> None:
    """A new user needs no server: the SQLite file and its folder appear by themselves."""
    path = tmp_path / "data" / "nested" / "mediaoverload.db"
    store = await connect("", sqlite_path=path)
    try:
        await store.claim_slot("mascot", "s")
    finally:
        await store.close()
    assert path.is_file()


@pytest.mark.parametrize(
    # a save's transaction begins by looking for its row: the write is killed there
    "statement",
    ["SELECT data FROM runs", "SELECT 1 FROM runs"],
    ids=["read", "write"],
)
async def test_a_connection_dropped_mid_query_is_retried_and_nothing_is_lost(
    mysql_url: str, tmp_path: Path, statement: str
) -> None:
    """MariaDB killing our connection in the middle of a statement costs a retry, not data."""
    from tests.conftest import mysql_admin

    store = await connect(mysql_url, sqlite_path=tmp_path / "x.db")
    database = mysql_url.rsplit("/", 1)[1]
    admin = mysql_admin()
    try:
        run = Run.new(Job("mascot"))
        await store.save_run(run)
        with admin.cursor() as cursor:
            cursor.execute(f"USE {database}")
            cursor.execute("LOCK TABLES runs WRITE")  # our statement now waits inside the server
        later = run.advance(RunState.PROMPTED, prompt="kept")
        work = (
            asyncio.ensure_future(store.load_run(run.id))
            if statement.startswith("SELECT data")
            else asyncio.ensure_future(store.save_run(later))
        )
        victim = None
        for _ in range(100):
            await asyncio.sleep(0.02)
            with admin.cursor() as cursor:
                cursor.execute(
                    "SELECT ID FROM information_schema.PROCESSLIST WHERE DB = %s AND INFO LIKE %s",
                    (database, statement + "%"),
                )
                row = cursor.fetchone()
            if row:
                victim = row[0]
                break
        assert victim is not None, "the statement never reached the server"
        with admin.cursor() as cursor:
            cursor.execute(f"KILL CONNECTION {int(victim)}")
            cursor.execute("UNLOCK TABLES")
        result = await asyncio.wait_for(work, 10)
        if statement.startswith("SELECT data"):
            assert result == run
        else:
            assert await store.load_run(run.id) == later
    finally:
        admin.close()
        await store.close()
