"""The publish queue's tables on SQLite and MariaDB alike: each post gets the next free slot of
its account even when bookings race, and a due post is claimed by exactly one of two claimers."""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from pipeline.models import Platform, PostRecord, PostState
from pipeline.slots import PlatformSlots, next_slot
from pipeline.store import SqlStore, connect

NOW = datetime(2026, 6, 1, 6, 0, tzinfo=UTC)  # 08:00 in Berlin
BERLIN = ZoneInfo("Europe/Berlin")
TWICE_A_DAY = PlatformSlots.model_validate({"times": ["09:00", "18:00"], "min_gap_minutes": 120})


def pick(rule: PlatformSlots = TWICE_A_DAY) -> Callable[[list[datetime]], datetime]:
    """The queue's pick: the next free slot of `rule` from NOW."""
    return functools.partial(next_slot, rule, BERLIN, NOW)


async def book(store: SqlStore, run_id: str, account: str = "pixel") -> datetime:
    return await store.book_slot(run_id, "mascot", Platform.INSTAGRAM, account, NOW, pick())


async def test_two_runs_booked_at_once_get_different_slots(store_url: str, tmp_path: Path) -> None:
    """Two processes book for one account at the same moment: 09:00 and 18:00, never both 09:00."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        slots = await asyncio.gather(book(first, "run1"), book(second, "run2"))
        local = sorted(slot.astimezone(BERLIN).strftime("%d %H:%M") for slot in slots)
        assert local == ["01 09:00", "01 18:00"]
        assert {q.run_id for q in await first.queued_posts()} == {"run1", "run2"}
    finally:
        await first.close()
        await second.close()


async def test_many_bookings_keep_the_gap_on_each_account(store: SqlStore) -> None:
    """Eight runs race for one account: eight slots, none closer than the gap; another account
    is booked apart."""
    slots = await asyncio.gather(*(book(store, f"run{i}") for i in range(8)))
    ordered = sorted(slots)
    assert len(set(ordered)) == 8
    assert all(b - a >= timedelta(minutes=120) for a, b in itertools.pairwise(ordered))
    assert (await book(store, "other", account="moon")).astimezone(BERLIN).hour == 9


async def test_booking_again_keeps_the_slot(store: SqlStore) -> None:
    """A run resumed after a stop books again: it keeps its slot and takes no second one."""
    first = await book(store, "run1")
    assert await book(store, "run1") == first
    assert len(await store.queued_posts("run1")) == 1


async def test_the_last_post_of_the_account_counts_for_the_gap(store: SqlStore) -> None:
    """An account that posted at 08:00 waits the gap: its 09:00 slot is not free."""
    posted = PostRecord(
        "old", Platform.INSTAGRAM, "pixel", PostState.POSTED, created_at=NOW, updated_at=NOW
    )
    assert await store.record_post(posted)
    assert (await book(store, "run1")).astimezone(BERLIN).hour == 18


async def test_of_two_claimers_of_a_due_post_one_wins(store_url: str, tmp_path: Path) -> None:
    """The bot and cron look at the same due post: only one claims it."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        due = await book(first, "run1")
        later = due + timedelta(minutes=1)
        assert [q.run_id for q in await second.due_posts(later)] == ["run1"]
        until = later + timedelta(hours=1)
        won = await asyncio.gather(
            first.claim_queued("run1", Platform.INSTAGRAM, "bot", later, until),
            second.claim_queued("run1", Platform.INSTAGRAM, "cron", later, until),
        )
        assert sorted(won) == [False, True]
        assert await first.due_posts(later) == []  # held: nobody else sees it due
    finally:
        await first.close()
        await second.close()


async def test_a_claim_whose_holder_stopped_runs_out(store: SqlStore) -> None:
    """A bot stopped between claim and post: after the claim's time another takes it up."""
    due = await book(store, "run1")
    until = due + timedelta(hours=1)
    assert await store.claim_queued("run1", Platform.INSTAGRAM, "gone", due, until)
    assert not await store.claim_queued(
        "run1", Platform.INSTAGRAM, "new", until - timedelta(1), until
    )
    assert [q.run_id for q in await store.due_posts(until)] == ["run1"]
    assert await store.claim_queued(
        "run1", Platform.INSTAGRAM, "new", until, until + timedelta(hours=1)
    )


async def test_nothing_is_due_before_its_slot(store: SqlStore) -> None:
    """A post waits until its slot, to the second."""
    due = await book(store, "run1")
    assert await store.due_posts(due - timedelta(seconds=1)) == []
    assert len(await store.due_posts(due)) == 1


async def test_taking_off_leaves_a_post_being_made(store: SqlStore) -> None:
    """Unqueue takes off the waiting posts only; one claimed right now stays with its claimer."""
    await store.book_slot("run1", "mascot", Platform.INSTAGRAM, "pixel", NOW, pick())
    due = await store.book_slot("run1", "mascot", Platform.BLUESKY, "pix", NOW, pick())
    assert await store.claim_queued("run1", Platform.BLUESKY, "bot", due, due + timedelta(hours=1))
    assert await store.drop_queued("run1", unclaimed_at=due) == 1
    assert [q.platform for q in await store.queued_posts("run1")] == [Platform.BLUESKY]
    assert await store.drop_queued("run1", owner="someone else") == 0
    assert await store.drop_queued("run1", Platform.BLUESKY, owner="bot") == 1


async def test_a_claim_of_a_holder_known_gone_is_taken_over_at_once(store: SqlStore) -> None:
    """Only the named (dead) holder's claim is taken over before its time, by one claimer."""
    due = await book(store, "run1")
    until = due + timedelta(hours=1)
    assert await store.claim_queued("run1", Platform.INSTAGRAM, "gone", due, until)
    assert [q.owner for q in await store.due_posts(due, held=True)] == ["gone"]
    assert not await store.claim_queued(
        "run1", Platform.INSTAGRAM, "new", due, until, replacing="someone else"
    )
    assert await store.claim_queued("run1", Platform.INSTAGRAM, "new", due, until, replacing="gone")
    assert not await store.claim_queued(
        "run1", Platform.INSTAGRAM, "third", due, until, replacing="gone"
    )
