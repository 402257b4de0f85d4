"""`python -m pipeline stats` and `collect-metrics` as a user runs them."""

from __future__ import annotations

import asyncio
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from pipeline.models import Choices, Decision, Job, Platform, PostRecord, PostState, Run, RunState
from pipeline.models import utcnow as now
from pipeline.ports import PostMetrics
from pipeline.readings import CHECKPOINTS
from pipeline.store import connect
from tests.cli import ROOT, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


def _seed(project: Path) -> None:
    """Three reviewed mascot runs: two watercolor approved (one posted and read), one storybook
    refused."""

    async def save() -> None:
        path = project / "data" / "mediaoverload.db"
        path.parent.mkdir(exist_ok=True)
        store = await connect(f"sqlite:///{path}", sqlite_path=path)
        try:
            for number, (style, approved) in enumerate(
                [("watercolor", True), ("watercolor", True), ("storybook", False)]
            ):
                made = Run.new(Job("mascot"), run_id=f"run{number:09d}")
                choices = Choices(seed=number, character="mascot", generation_type="text2img",
                                  prompt_method="arbitrary", template="stable_diffusion_prompt",
                                  style=style)  # fmt: skip
                decision = Decision(approved=approved, selected=(0,), by="r", at=now())
                state = RunState.PUBLISHED if approved else RunState.REJECTED
                await store.save_run(made.advance(state, choices=choices, decision=decision))
            posted = now() - timedelta(hours=2)
            await store.record_post(
                PostRecord(
                    run_id="run000000000",
                    platform=Platform.TWITTER,
                    account="m",
                    state=PostState.POSTED,
                    remote_id="1790",
                    created_at=posted,
                    updated_at=posted,
                )
            )
            await store.plan_readings(CHECKPOINTS, [Platform.TWITTER], 10)
            [due] = await store.claim_readings("t", now(), now() + timedelta(minutes=5), 10)
            await store.finish_reading(due, "t", PostMetrics(likes=10, reposts=2, replies=1), now())
        finally:
            await store.close()

    asyncio.run(save())


def test_stats_prints_the_table_and_draws_the_chart(project: Path) -> None:
    """The table shows approval and engagement per style; --chart writes a bounded PNG."""
    _seed(project)

    done = run(["-m", "pipeline", "stats", "mascot", "--chart", "out/mascot.png"], project)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "mascot: 3 runs, 2 of 3 reviewed approved (67%)"
    assert "  watercolor                             2      100%        13.0" in lines
    assert "  storybook                              1        0%           -" in lines
    assert lines[-1] == "chart: out/mascot.png"
    with Image.open(project / "out" / "mascot.png") as chart:
        assert chart.format == "PNG"
        assert chart.width <= 900
        assert chart.height <= 4 * 220


def test_stats_without_runs_says_so_in_one_sentence(project: Path) -> None:
    """A character with no history gets one sentence, no chart, exit 0."""
    done = run(["-m", "pipeline", "stats", "mascot", "--chart", "c.png"], project)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "mascot has no finished runs yet, so there is nothing to show; stats appear once runs "
        "are reviewed."
    ]
    assert not (project / "c.png").exists()


def test_stats_of_an_unknown_character_is_one_sentence(project: Path) -> None:
    """A typo is named, with the exit code of bad input and no traceback."""
    done = run(["-m", "pipeline", "stats", "mascott"], project)

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "mascott" in done.stderr


def test_collect_metrics_with_nothing_due_reports_an_empty_pass(project: Path) -> None:
    """A pass with nothing published reads nothing and says so."""
    done = run(["-m", "pipeline", "collect-metrics"], project)

    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "metrics: 0 read, 0 to try again, 0 missed, 0 skipped (paused accounts), 0 new planned"
    ]
