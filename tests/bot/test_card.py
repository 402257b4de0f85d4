"""The run card's time and step come from the run record, so a restart does not reset them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.card import RunCard
from pipeline.models import Job, PostRecord, Run, RunState, utcnow
from pipeline.ports import ProgressSink
from pipeline.runner import Runner
from pipeline.store import SqlStore, connect


class Shown:
    """The card's message: every text it was edited to."""

    def __init__(self) -> None:
        self.location: tuple[int, int] | None = None
        self.texts: list[str] = []
        self.changed = asyncio.Event()

    async def __call__(self, text: str) -> None:
        self.texts.append(text)
        self.changed.set()


async def no_posts(run_id: str) -> list[PostRecord]:
    return []


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    opened = await connect(f"sqlite:///{tmp_path / 'runs.db'}", sqlite_path=tmp_path / "runs.db")
    yield opened
    await opened.close()


@pytest.mark.parametrize(
    ("state", "step"),
    [
        pytest.param(RunState.DESCRIBED, "Step: generate · resumed", id="generating"),
        pytest.param(RunState.AWAITING_REVIEW, "Step: review · resumed", id="in-review"),
    ],
)
async def test_a_resumed_run_card_counts_from_the_run_start_and_shows_its_step(
    store: SqlStore, state: RunState, step: str
) -> None:
    """A run begun two hours before a restart shows "Elapsed 2h 00m" and its step at once."""
    began = utcnow() - timedelta(hours=2)
    saved = replace(Run.new(Job("mascot")), state=state, created_at=began, updated_at=began)
    await store.save_run(saved)
    release = asyncio.Event()

    async def execute(run: Run, sink: ProgressSink | None) -> Run:
        await release.wait()
        done = run.advance(RunState.REJECTED)
        await store.save_run(done)
        return done

    runner = Runner(store, execute)
    shown = Shown()
    card = RunCard(
        runner=runner,
        edit=shown,
        posts=no_posts,
        character="mascot",
        review_channel_id=5,
        interval=0.01,
    )
    resumed = await runner.resume(saved.id, sink=card)
    following = asyncio.ensure_future(card.follow(resumed))
    await asyncio.wait_for(shown.changed.wait(), 5)

    first = shown.texts[0].splitlines()
    assert step in first
    assert first[-1] == "Elapsed 2h 00m"
    release.set()
    final = await asyncio.wait_for(following, 5)
    assert final.state is RunState.REJECTED
    assert shown.texts[-1].splitlines()[-1] == "Took 2h 00m"
    await runner.shutdown()
