"""Run leases on SQLite and on MariaDB: one holder at a time, renewed by it, taken by another
only once it expired or its holder is plainly dead, released only by its holder."""

from __future__ import annotations

import asyncio
import os
import socket
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.lease import Leases, Owner
from pipeline.models import utcnow
from pipeline.store import SqlStore, connect
from tests.leases import FakeClock, dead_pid, live_process

RUN = "run-with-a-lease"
HOST = socket.gethostname()


def owner(name: str, *, host: str = "elsewhere", pid: int = 4242) -> Owner:
    return Owner(host=host, pid=pid, token=name)


def later(seconds: float = 60.0) -> datetime:
    return utcnow() + timedelta(seconds=seconds)


async def test_a_free_lease_is_taken_and_renewed_by_its_owner(store: SqlStore) -> None:
    """The first taker holds it; taking it again (a renewal) moves its expiry on."""
    first = await store.take_lease(RUN, "a", later(10))
    assert first.owner == "a"
    renewed = await store.take_lease(RUN, "a", later(60))
    assert renewed.owner == "a"
    assert renewed.expires_at > first.expires_at
    held = await store.lease_of(RUN)
    assert held is not None
    assert held.owner == "a"
    assert held.expires_at == renewed.expires_at


async def test_a_valid_lease_is_refused_to_another_owner(store: SqlStore) -> None:
    """While a's lease holds, b's take answers a's lease and changes nothing."""
    mine = await store.take_lease(RUN, "a", later(60))
    other = await store.take_lease(RUN, "b", later(120))
    assert other == mine
    assert await store.lease_of(RUN) == mine


async def test_an_expired_lease_is_taken_by_another_owner(store: SqlStore) -> None:
    """a's lease ran out: b gets it."""
    await store.take_lease(RUN, "a", utcnow() - timedelta(seconds=1))
    taken = await store.take_lease(RUN, "b", later())
    assert taken.owner == "b"


async def test_a_lease_expires_by_the_takers_clock(store: SqlStore) -> None:
    """Another host's lease of 90 s is refused until the taker's clock passes its expiry, and
    taken (adopted) at that moment, however little wall time went by."""
    clock = FakeClock()
    holder = Leases(store, owner("holder", host="far-away"), 90, clock=clock)
    adopter = Leases(store, owner("adopter"), 90, clock=clock)
    held = await holder.take(RUN)
    clock.now = held.expires_at - timedelta(microseconds=1)
    assert adopter.is_live(await store.lease_of(RUN))
    assert (await adopter.take(RUN)).owner == str(holder.owner)
    clock.now = held.expires_at
    assert not adopter.is_live(await store.lease_of(RUN))
    taken = await adopter.take(RUN)
    assert taken.owner == str(owner("adopter"))
    assert taken.expires_at == held.expires_at + timedelta(seconds=90)


async def test_a_lease_of_a_dead_process_on_this_host_is_taken_at_once(store: SqlStore) -> None:
    """A holder on this host whose pid is gone is stale: another process takes the lease
    although it has not expired; a live pid's lease stays refused."""
    async with live_process() as sleeper:
        alive = owner("alive", host=HOST, pid=sleeper.pid)
        dead = owner("dead", host=HOST, pid=await dead_pid())
        leases = Leases(store, owner("me", host=HOST, pid=os.getpid()), ttl=60)
        await store.take_lease("alive-run", str(alive), later(600))
        await store.take_lease(RUN, str(dead), later(600))
        assert leases.is_ours(await leases.take(RUN))
        refused = await leases.take("alive-run")
        assert refused.owner == str(alive)
        assert await leases.held_elsewhere("alive-run") == refused


async def test_our_pid_under_another_token_is_stale(store: SqlStore) -> None:
    """A container restarted as the same pid: the lease of that pid's former token is taken."""
    before = owner("before", host=HOST, pid=os.getpid())
    await store.take_lease(RUN, str(before), later(600))
    now = Leases(store, owner("after", host=HOST, pid=os.getpid()), ttl=60)
    assert now.is_ours(await now.take(RUN))


async def test_a_renewal_moves_only_the_owners_own_lease_on(store: SqlStore) -> None:
    """a renews its lease, even once expired; b's renewal of it fails; nobody's lease is
    renewed into existence."""
    await store.take_lease(RUN, "a", utcnow() - timedelta(seconds=1))
    assert await store.renew_lease(RUN, "a", later()) is True
    held = await store.lease_of(RUN)
    assert held is not None
    assert held.expires_at > utcnow()
    assert await store.renew_lease(RUN, "b", later(600)) is False
    assert await store.lease_of(RUN) == held
    assert await store.renew_lease("no-lease", "a", later()) is False
    assert await store.lease_of("no-lease") is None


async def test_a_lease_is_released_only_by_its_owner(store: SqlStore) -> None:
    """b cannot release a's lease; a can, and then anyone may take it."""
    await store.take_lease(RUN, "a", later())
    assert await store.release_lease(RUN, "b") is False
    assert (await store.lease_of(RUN)) is not None
    assert await store.release_lease(RUN, "a") is True
    assert await store.lease_of(RUN) is None
    assert (await store.take_lease(RUN, "b", later())).owner == "b"


async def test_of_two_processes_taking_one_lease_at_once_exactly_one_wins(
    store_url: str, tmp_path: Path
) -> None:
    """Two stores on one database (two processes) take the same free lease at once, many
    times: each time exactly one of them holds it."""
    first = await connect(store_url, sqlite_path=tmp_path / "x.db")
    second = await connect(store_url, sqlite_path=tmp_path / "x.db")
    try:
        for attempt in range(10):
            run_id = f"race-{attempt}"
            got = await asyncio.gather(
                first.take_lease(run_id, "first", later()),
                second.take_lease(run_id, "second", later()),
            )
            assert got[0].owner == got[1].owner
            assert got[0].owner in {"first", "second"}
            held = await first.lease_of(run_id)
            assert held is not None
            assert held.owner == got[0].owner
    finally:
        await first.close()
        await second.close()
