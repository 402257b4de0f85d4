"""The Runner executes a run only under its lease: another process (a second Runner with
another owner, on the same store) cannot resume it meanwhile, a review wait keeps it renewed,
an end or a shutdown gives it up, and a run whose lease another process took stops unsaved."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from pipeline.errors import RunError
from pipeline.lease import Owner
from pipeline.models import Job, RunState, utcnow
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.leases import FakeClock, HeldRun
from tests.waiting import until

FIRST = Owner(host="first-host", pid=7, token="a")
SECOND = Owner(host="second-host", pid=8, token="b")

#: a short lease (its renewal beat is a third of it, in real time); the clock moves by hand
TTL = 0.3

pytestmark = pytest.mark.timeout(30)


async def test_a_run_being_executed_is_refused_to_another_process_until_it_ends(
    store: SqlStore,
) -> None:
    """While the first process runs it, the second's resume fails naming pid and host; once
    the run ended there (lease given up), the second resumes it."""
    work = HeldRun(store)
    first = Runner(store, work, owner=FIRST)
    second = Runner(store, HeldRun(store), owner=SECOND, shutdown_grace=0.0)
    run = await first.submit(Job("testy"))
    await until(lambda: work.started, what="the run to start")
    with pytest.raises(RunError) as refused:
        await second.resume(run.id)
    assert "pid 7 on first-host" in refused.value.user_message
    assert "until" in refused.value.user_message
    assert second.active() == []
    work.go.set()
    assert (await first.wait(run.id)).state is RunState.EXPIRED
    assert await store.lease_of(run.id) is None
    resumed = await second.resume(run.id)
    assert resumed.id == run.id
    held = await store.lease_of(run.id)
    assert held is not None
    assert held.owner == str(SECOND)
    await second.shutdown()


async def test_a_run_waiting_for_review_keeps_its_lease_past_the_ttl(store: SqlStore) -> None:
    """Three lease lifetimes later (the clock moved on one TTL at a time), the run parked in
    review is still held (the Runner renewed it after each move) and still refused to another
    process."""
    clock = FakeClock()
    work = HeldRun(store, review=True)
    first = Runner(store, work, owner=FIRST, lease_ttl=TTL, shutdown_grace=0.0, clock=clock)
    second = Runner(store, HeldRun(store), owner=SECOND, lease_ttl=TTL, clock=clock)
    run = await first.submit(Job("testy"))
    await until(lambda: work.started, what="the run to start")
    for _ in range(3):
        clock.advance(TTL)  # the lease runs out at this moment, unless renewed
        await until(lambda: renewed_at(store, run.id, clock()), what="a renewal after the move")
    held = await store.lease_of(run.id)
    assert held is not None
    assert held.owner == str(FIRST)
    assert held.expires_at > clock()
    with pytest.raises(RunError, match="first-host"):
        await second.resume(run.id)
    await first.shutdown()


async def renewed_at(store: SqlStore, run_id: str, now: datetime) -> bool:
    """The lease was renewed at `now` or later (it runs a whole TTL past it)."""
    lease = await store.lease_of(run_id)
    return lease is not None and lease.expires_at >= now + timedelta(seconds=TTL)


async def test_a_shutdown_gives_the_lease_up_so_the_restart_resumes_at_once(
    store: SqlStore,
) -> None:
    """A shutdown cancels the run still going and releases its lease: the next process's
    resume needs no wait for an expiry."""
    first = Runner(store, HeldRun(store), owner=FIRST, shutdown_grace=0.0)
    run = await first.submit(Job("testy"))
    waiting = await first.submit(Job("testy"))  # a second run of one character waits
    assert first.position(waiting.id) == 1
    await first.shutdown()
    assert await store.lease_of(run.id) is None
    assert await store.lease_of(waiting.id) is None
    second = Runner(store, HeldRun(store), owner=SECOND, shutdown_grace=0.0)
    await second.resume(run.id)
    await second.shutdown()


@pytest.mark.parametrize("let_go", [False, True], ids=["held", "taken-and-let-go"])
async def test_a_run_whose_lease_another_process_took_stops_without_saving(
    store: SqlStore, let_go: bool
) -> None:
    """Our lease ran out and another process took the run up (and holds it, or already let it
    go): at the next renewal the run is stopped, and nothing of ours is saved over that
    process's work; the lease is not taken back."""
    work = HeldRun(store)
    first = Runner(store, work, owner=FIRST, lease_ttl=0.6, shutdown_grace=0.0)
    run = await first.submit(Job("testy"))
    await until(lambda: work.started, what="the run to start")
    taken = await store.take_lease(
        run.id, str(SECOND), utcnow().replace(year=2100), replacing=str(FIRST)
    )
    assert taken.owner == str(SECOND)
    if let_go:
        assert await store.release_lease(run.id, str(SECOND))
    await until(lambda: first.position(run.id) is None, what="the run to stop", within=5)
    await until(lambda: work.cancelled == [run.id], what="the run's execution to be cancelled")
    work.go.set()  # too late: the run is no longer executed here
    await first.shutdown()  # barrier: every task of this Runner has ended
    saved = await store.load_run(run.id)
    assert saved is not None
    assert saved.state is RunState.CREATED
    held = await store.lease_of(run.id)
    assert (held.owner if held is not None else None) == (None if let_go else str(SECOND))
