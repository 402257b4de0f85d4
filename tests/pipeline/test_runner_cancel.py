"""`Runner.cancel` for runs this process does not run: a stopped, unfinished run is cancelled
under its lease with its ComfyUI prompts withdrawn; a run another live process holds is
refused, naming that process; an unknown or finished (failed included) run is a one-sentence
refusal. (A running run's cancel is
in test_run.py, a queued one's in tests/bot/test_generate.py.)"""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.errors import RunError
from pipeline.lease import Owner, RunLeased
from pipeline.models import Job, ReviewTicket, Run, RunState, utcnow
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.leases import HeldRun, live_process

pytestmark = pytest.mark.timeout(30)


class Withdrawals:
    """The Runner's `withdraw`: notes each run whose prompts it was asked to take off."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, RunState]] = []

    async def __call__(self, run: Run) -> int:
        self.runs.append((run.id, run.state))
        return 2


async def saved(store: SqlStore, state: RunState, ticket: ReviewTicket | None = None) -> Run:
    run = replace(Run.new(Job("testy")), state=state, ticket=ticket)
    await store.save_run(run)
    return run


@pytest.mark.parametrize(
    ("state", "ticket"),
    [
        (RunState.GENERATED, None),
        (RunState.PUBLISHING, None),
        (RunState.AWAITING_REVIEW, ReviewTicket(5, (1,), utcnow())),
    ],
    ids=["interrupted-generating", "interrupted-publishing", "review-no-one-waits-on"],
)
async def test_a_stopped_run_is_cancelled_and_its_prompts_withdrawn(
    store: SqlStore, state: RunState, ticket: ReviewTicket | None
) -> None:
    """Cancelling a run no process runs saves it as cancelled, takes its unfinished ComfyUI
    prompts off, and leaves no lease behind (no process holds a finished run)."""
    run = await saved(store, state, ticket)
    withdrawals = Withdrawals()
    runner = Runner(store, HeldRun(store), withdraw=withdrawals)
    cancelled = await runner.cancel(run.id)
    assert cancelled.state is RunState.CANCELLED
    stored = await store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.CANCELLED
    assert withdrawals.runs == [(run.id, RunState.CANCELLED)]
    assert await store.lease_of(run.id) is None
    assert runner.active() == []


async def test_a_run_another_live_process_holds_is_refused_naming_it(store: SqlStore) -> None:
    """A run another live process runs is not cancelled here (that process would write over
    it): the refusal names the process, and the run and its prompts are left alone."""
    run = await saved(store, RunState.DESCRIBED)
    withdrawals = Withdrawals()
    runner = Runner(store, HeldRun(store), withdraw=withdrawals)
    async with live_process() as holder:
        owner = Owner(socket.gethostname(), holder.pid, "other")
        await store.take_lease(run.id, str(owner), utcnow() + timedelta(minutes=5))
        with pytest.raises(RunLeased) as refused:
            await runner.cancel(run.id)
    assert f"pid {holder.pid} on {socket.gethostname()}" in refused.value.user_message
    stored = await store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.DESCRIBED
    assert withdrawals.runs == []


@pytest.mark.parametrize(
    ("state", "says"),
    [
        (None, "no run with id"),
        (RunState.PUBLISHED, "is already published"),
        (RunState.FAILED, "is already failed"),
        (RunState.CANCELLED, "is already cancelled"),
    ],
    ids=["unknown", "published", "failed", "cancelled-already"],
)
async def test_a_run_that_cannot_be_cancelled_gets_one_sentence(
    store: SqlStore, state: RunState | None, says: str
) -> None:
    """An unknown id or a finished run is refused with a sentence; nothing is withdrawn."""
    run_id = "0123456789ab" if state is None else (await saved(store, state)).id
    withdrawals = Withdrawals()
    runner = Runner(store, HeldRun(store), withdraw=withdrawals)
    with pytest.raises(RunError) as refused:
        await runner.cancel(run_id)
    assert says in refused.value.user_message
    assert withdrawals.runs == []
