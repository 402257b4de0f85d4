"""A run waiting for a person's review holds no place under the Runner's limits: the pipeline
says so with its explicit `awaiting_review` signal (not a progress text), so the next run
starts, and takes the place back once the review is answered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from pipeline.models import Decision, Job, ReviewAction, ReviewTicket, Run, RunState
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.doubles import RecordingSink, ScriptedReviewer
from tests.runs import World

pytestmark = pytest.mark.timeout(60)


@dataclass
class HeldReviewer(ScriptedReviewer):
    """A person who answers nothing until `answer` is set; `asked` is set at each request."""

    answer: asyncio.Event = field(default_factory=asyncio.Event)
    asked: asyncio.Event = field(default_factory=asyncio.Event)

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        ticket = await super().request(run, folder)
        self.asked.set()
        return ticket

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | ReviewAction | None:
        await self.answer.wait()
        return await super().wait(run, ticket)


async def test_a_run_waiting_for_review_lets_the_next_run_start(
    world: World, store: SqlStore
) -> None:
    """With room for one run, a second run starts while the first waits for its reviewer;
    both end once the reviewer answers, and the caller's sink heard the wait begin and end."""
    reviewer = HeldReviewer()
    pipeline = replace(world.pipeline, reviewer=reviewer)
    runner = Runner(store, pipeline.execute, max_runs=1, max_per_character=1)
    sink = RecordingSink()
    try:
        first = await runner.submit(Job("testy", seed=1, publish=False), sink=sink)
        await asyncio.wait_for(reviewer.asked.wait(), 20)
        reviewer.asked.clear()
        second = await runner.submit(Job("testy", seed=2, publish=False))
        await asyncio.wait_for(reviewer.asked.wait(), 20)  # it got past the limit of one
        assert reviewer.requests == [first.id, second.id]
        reviewer.answer.set()
        ended = [await runner.wait(first.id), await runner.wait(second.id)]
        assert [run.state for run in ended] == [RunState.APPROVED] * 2
        assert sink.waits[0] is True
        assert sink.waits[-1] is False
    finally:
        await runner.shutdown()
