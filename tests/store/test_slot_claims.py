"""A schedule slot claimed together with its run, on SQLite and on MariaDB alike: one winner,
and the run is saved exactly when its claim is, so no claimed hour is left without a run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.models import Job, Run
from pipeline.store import SqlStore, connect
from pipeline.store.db import Cursor

SLOT = "2026-11-25T09"


def scheduled(character: str = "mascot") -> Run:
    return Run.new(Job(character, requested_by="schedule"))


async def test_of_two_bots_claiming_one_slot_one_wins_and_only_its_run_is_saved(
    store_url: str, tmp_path: Path
) -> None:
    """Two processes claim mascot's hour at once: one wins and its run is there; the other's
    run was never saved."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        runs = [scheduled(), scheduled()]
        won = await asyncio.gather(
            first.claim_slot_with_run(SLOT, runs[0]), second.claim_slot_with_run(SLOT, runs[1])
        )
        assert sorted(won) == [False, True]
        saved = [await first.load_run(run.id) for run in runs]
        assert [run is not None for run in saved] == list(won)
    finally:
        await first.close()
        await second.close()


async def test_of_many_concurrent_claims_the_saved_runs_are_exactly_the_winners(
    store: SqlStore,
) -> None:
    """Twenty tasks race for one hour: one run is saved, the winner's, and the store holds no
    other run of that character."""
    runs = [scheduled() for _ in range(20)]
    won = await asyncio.gather(*(store.claim_slot_with_run(SLOT, run) for run in runs))
    assert won.count(True) == 1
    winner = runs[won.index(True)]
    assert [run.id for run in await store.list_runs(character="mascot")] == [winner.id]
    assert await store.load_run(winner.id) == winner


async def test_other_hours_and_characters_are_claimed_apart(store: SqlStore) -> None:
    """Claiming mascot's 09:00 leaves its 10:00 and another character's 09:00 free."""
    assert await store.claim_slot_with_run(SLOT, scheduled()) is True
    assert await store.claim_slot_with_run("2026-11-25T10", scheduled()) is True
    assert await store.claim_slot_with_run(SLOT, scheduled("moon")) is True
    assert await store.claim_slot_with_run(SLOT, scheduled()) is False


async def test_a_claim_repeated_by_its_own_run_still_counts_as_won(store: SqlStore) -> None:
    """A claim run again after its answer was lost (the commit went through) is still the
    winner's, so the schedule starts the run it saved instead of dropping the hour."""
    run = scheduled()
    assert await store.claim_slot_with_run(SLOT, run) is True
    assert await store.claim_slot_with_run(SLOT, run) is True
    assert await store.claim_slot_with_run(SLOT, scheduled()) is False
    assert [saved.id for saved in await store.list_runs(character="mascot")] == [run.id]


class RunWriteFails(SqlStore):
    """The real store whose run write fails inside the claim's transaction."""

    async def _write_run(self, tx: Cursor, run: Run) -> None:
        raise StoreError("the disk is full")


async def test_a_claim_whose_run_cannot_be_saved_leaves_the_slot_free(
    store_url: str, tmp_path: Path
) -> None:
    """Saving the run fails after the slot row was written: neither stays, and the hour can
    still be claimed with a run that saves."""
    plain = await connect(store_url, sqlite_path=tmp_path / "x.db")
    failing = RunWriteFails(plain.db)
    try:
        lost = scheduled()
        with pytest.raises(StoreError):
            await failing.claim_slot_with_run(SLOT, lost)
        assert await plain.load_run(lost.id) is None
        run = scheduled()
        assert await plain.claim_slot_with_run(SLOT, run) is True
        assert await plain.load_run(run.id) == run
    finally:
        await plain.close()
