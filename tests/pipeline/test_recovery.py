"""Taking runs up after a stop (pipeline.recovery): at start, which runs go on and which are
left alone; a run another live process holds is left until that process is gone; the
adapter's hook decides how a run goes on. The bot's side (run cards, reactions) is tested in
tests/bot."""

from __future__ import annotations

import socket
from dataclasses import replace
from datetime import timedelta

import pytest

from pipeline.lease import Owner
from pipeline.models import (
    Job,
    MediaItem,
    MediaKind,
    ReviewTicket,
    Run,
    RunState,
    StagePick,
    utcnow,
)
from pipeline.recovery import Hooks, Recovery, review_ticket
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.leases import HeldRun, live_process

pytestmark = pytest.mark.timeout(30)

#: the review channel the adapter's reviewer reads
OURS, ELSEWHERE = 5, 6


def hooks() -> Hooks:
    """The bot's choices: its members' runs, reviews in its review channel."""
    return Hooks(
        owns=lambda run: run.job.requested_by.startswith("discord:"),
        reviews=lambda run: (
            (ticket := review_ticket(run)) is not None and ticket.channel_id == OURS
        ),
    )


async def saved(
    store: SqlStore, state: RunState, *, by: str = "discord:1", channel: int | None = None
) -> Run:
    run = Run.new(Job("testy", requested_by=by))
    ticket = None if channel is None else ReviewTicket(channel, (1, 2), utcnow())
    run = replace(run, state=state, ticket=ticket)
    await store.save_run(run)
    return run


@pytest.mark.parametrize(
    ("state", "by", "channel", "taken_up"),
    [
        (RunState.DESCRIBED, "discord:1", None, True),
        (RunState.PUBLISHING, "another-adapter", None, False),
        (RunState.GENERATED, "cli", None, False),
        (RunState.AWAITING_REVIEW, "cli", OURS, True),
        (RunState.AWAITING_REVIEW, "discord:1", ELSEWHERE, False),
        (RunState.PUBLISHED, "discord:1", None, False),
        (RunState.CANCELLED, "discord:1", None, False),
    ],
    ids=[
        "an-interrupted-run-of-ours-goes-on",
        "a-run-the-adapter-does-not-own-is-left",
        "a-command-line-run-is-left-to-it",
        "a-review-in-our-channel-is-rearmed-whoever-asked",
        "a-review-in-another-channel-is-left",
        "a-published-run-stays-published",
        "a-cancelled-run-stays-cancelled",
    ],
)
async def test_at_start_the_adapters_runs_and_readable_reviews_are_taken_up(
    store: SqlStore, state: RunState, by: str, channel: int | None, taken_up: bool
) -> None:
    """After a restart, a run goes on exactly when it is unfinished and the adapter's: its
    own interrupted runs, and every review its reviewer can read."""
    run = await saved(store, state, by=by, channel=channel)
    work = HeldRun(store)
    runner = Runner(store, work, shutdown_grace=0.0)
    try:
        count = await Recovery(runner, store, hooks()).at_start()
        assert (count, runner.position(run.id) is not None) == (int(taken_up), taken_up)
    finally:
        await runner.shutdown()


@pytest.mark.parametrize(
    ("by", "channel", "taken_up"),
    [("cli", OURS, True), ("discord:1", ELSEWHERE, False)],
    ids=["a-pick-in-our-channel-is-rearmed-whoever-asked", "a-pick-elsewhere-is-left"],
)
async def test_a_run_waiting_for_a_pick_between_stages_is_taken_up_like_a_review(
    store: SqlStore, by: str, channel: int, taken_up: bool
) -> None:
    """A run stopped while its drafts wait for a pick goes on where the pick can be read,
    whoever started it, as a review does."""
    draft = MediaItem(path="first_stage-d0/a.png", kind=MediaKind.IMAGE, description_index=0)
    pick = StagePick(
        stage="first_stage",
        drafts=(draft,),
        keep=1,
        ticket=ReviewTicket(channel, (7,), utcnow()),
    )
    run = replace(Run.new(Job("testy", requested_by=by)), state=RunState.DESCRIBED, stage_pick=pick)
    await store.save_run(run)
    runner = Runner(store, HeldRun(store), shutdown_grace=0.0)
    try:
        count = await Recovery(runner, store, hooks()).at_start()
        assert (count, runner.position(run.id) is not None) == (int(taken_up), taken_up)
    finally:
        await runner.shutdown()


async def test_a_run_another_live_process_holds_is_adopted_once_that_process_is_gone(
    store: SqlStore,
) -> None:
    """A run whose holder on this host still lives is left at start; the adoption beat after
    the holder died takes it up, once."""
    run = await saved(store, RunState.DESCRIBED)
    runner = Runner(store, HeldRun(store), shutdown_grace=0.0)
    recovery = Recovery(runner, store, hooks())
    try:
        async with live_process() as holder:
            owner = Owner(socket.gethostname(), holder.pid, "other")
            await store.take_lease(run.id, str(owner), utcnow() + timedelta(minutes=5))
            assert await recovery.at_start() == 0
            assert await recovery.adopt() == 0
        assert await recovery.adopt() == 1
        assert runner.position(run.id) is not None
        assert await recovery.adopt() == 0  # already ours: not taken up twice
    finally:
        await runner.shutdown()


async def test_the_adapters_hook_is_how_a_run_goes_on(store: SqlStore) -> None:
    """The adapter goes on with each run its own way (the bot: with its run card); the
    recovery counts what the hook took up."""
    interrupted = await saved(store, RunState.CAPTIONED)
    review = await saved(store, RunState.AWAITING_REVIEW, channel=OURS)
    runner = Runner(store, HeldRun(store), shutdown_grace=0.0)
    went_on: list[str] = []

    async def resume(run: Run) -> None:
        went_on.append(run.id)
        await runner.resume(run.id)

    try:
        recovery = Recovery(runner, store, replace(hooks(), resume=resume))
        assert await recovery.at_start() == 2
        assert went_on == [review.id, interrupted.id]  # reviews first: they only wait
    finally:
        await runner.shutdown()


async def test_a_stopped_recovery_adopts_nothing(store: SqlStore) -> None:
    """While the process shuts down, the adoption beat takes no run up."""
    await saved(store, RunState.DESCRIBED)
    runner = Runner(store, HeldRun(store), shutdown_grace=0.0)
    recovery = Recovery(runner, store, hooks())
    recovery.stop()
    try:
        assert await recovery.adopt() == 0
        assert runner.active() == []
    finally:
        await runner.shutdown()
