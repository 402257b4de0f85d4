"""A resume that would change nothing is refused with one sentence, from any adapter: the
terminal's `resume` and the bot's `/retry` both go through `Runner.resume`."""

from __future__ import annotations

import pytest

from pipeline.errors import RunError
from pipeline.models import Job, Platform, PostRecord, PostState, Run, RunFailure, RunState
from pipeline.ports import ProgressSink
from pipeline.runner import Runner
from pipeline.store import SqlStore


async def _executed(run: Run, sink: ProgressSink | None) -> Run:
    return run.advance(RunState.PUBLISHED)


def _failed_at_publishing() -> Run:
    return Run.new(Job("mascot")).advance(
        RunState.FAILED,
        failure=RunFailure(state=RunState.PUBLISHING, message="not posted: twitter (uncertain)"),
    )


async def test_a_run_whose_only_unposted_post_is_uncertain_is_not_resumed(
    store: SqlStore,
) -> None:
    """Its uncertain post is never posted again by itself, so a resume would only fail the
    same way: refused, naming the platform and where to read what a person does."""
    run = _failed_at_publishing()
    await store.save_run(run)
    await store.record_post(PostRecord(run.id, Platform.INSTAGRAM, "a", PostState.POSTED))
    await store.record_post(PostRecord(run.id, Platform.TWITTER, "b", PostState.UNCERTAIN))
    runner = Runner(store, _executed)
    with pytest.raises(RunError) as caught:
        await runner.resume(run.id)
    assert caught.value.user_message == (
        f"run {run.id} failed at publishing and its twitter post is uncertain: it may be "
        "online already and is never posted again by itself, so there is nothing to resume; "
        'look at the account and settle it (README, "Paused accounts and uncertain posts")'
    )
    assert runner.active() == []
    stored = await store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.FAILED


async def test_a_run_with_a_failed_post_beside_an_uncertain_one_is_resumed(
    store: SqlStore,
) -> None:
    """A failed post is tried again, so the resume goes ahead (the uncertain one is left)."""
    run = _failed_at_publishing()
    await store.save_run(run)
    await store.record_post(PostRecord(run.id, Platform.TWITTER, "b", PostState.UNCERTAIN))
    await store.record_post(PostRecord(run.id, Platform.INSTAGRAM, "a", PostState.FAILED))
    runner = Runner(store, _executed)
    queued = await runner.resume(run.id)
    assert queued.id == run.id
    finished = await runner.wait(run.id)
    assert finished.state is RunState.PUBLISHED
