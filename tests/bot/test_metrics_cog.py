"""The bot's metrics loop (real tweepy against the fake X API) and /stats in the fake Discord."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from PIL import Image

from pipeline.models import Choices, Decision, Job, Platform, PostRecord, PostState, Run, RunState
from pipeline.models import utcnow as now
from pipeline.store import SqlStore
from tests.bot.conftest import StartBot
from tests.fakes import discord as fd
from tests.fakes.x import NO_METRICS
from tests.fakes.x_api import FakeXApi
from tests.waiting import until


@pytest.fixture
async def xapi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeXApi]:
    async with FakeXApi(tmp_path / "x") as fake:
        for name, value in FakeXApi.credentials_env("mascot_x").items():
            monkeypatch.setenv(name, value)
        yield fake


async def _history(store: SqlStore, *, posted_hours_ago: float = 2) -> None:
    """Two reviewed mascot runs: watercolor approved and posted to X, storybook refused."""
    for number, (style, approved) in enumerate((("watercolor", True), ("storybook", False))):
        run = Run.new(Job("mascot"), run_id=f"run{number:09d}")
        choices = Choices(seed=number, character="mascot", generation_type="text2img",
                          prompt_method="arbitrary", template="stable_diffusion_prompt",
                          style=style)  # fmt: skip
        decision = Decision(approved=approved, selected=(0,), by="r", at=now())
        state = RunState.PUBLISHED if approved else RunState.REJECTED
        await store.save_run(run.advance(state, choices=choices, decision=decision))
    posted = now() - timedelta(hours=posted_hours_ago)
    record = PostRecord(run_id="run000000000", platform=Platform.TWITTER, account="mascot_x",
                        state=PostState.POSTED, remote_id="1790000000000000001",
                        created_at=posted, updated_at=posted)  # fmt: skip
    await store.record_post(record)


async def test_the_loop_reads_a_due_posts_metrics_from_x(
    start_bot: StartBot, sqlite_store: SqlStore, xapi: FakeXApi
) -> None:
    """At start the bot reads the X post that went out two hours ago, through tweepy, once."""
    counts = {**NO_METRICS, "like_count": 21, "retweet_count": 2, "reply_count": 1}
    xapi.state.tweets.append(
        {"id": "1790000000000000001", "text": "Autumn walk", "public_metrics": counts}
    )
    await _history(sqlite_store)

    await start_bot(store=sqlite_store, x_api_url=xapi.url)

    [row] = await until(lambda: sqlite_store.metrics_of("mascot"), what="the 1 h reading")
    assert (row.checkpoint, row.metrics.likes, row.metrics.reposts) == ("1h", 21, 2)
    assert xapi.state.calls.count(("GET", "/2/tweets/1790000000000000001")) == 1
    assert xapi.errors == []


async def test_stats_answers_with_the_table_and_the_chart(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore
) -> None:
    """/stats mascot shows approval per style in a table and attaches the chart."""
    await _history(sqlite_store, posted_hours_ago=0)  # not due yet: nothing read at start
    await start_bot(store=sqlite_store)

    interaction = await fake.slash("stats", character="mascot")
    reply = await until(lambda: interaction.reply, what="the stats")
    assert reply is not None

    assert reply.content.startswith("```\nmascot: 2 runs, 1 of 2 reviewed approved (50%)")
    assert "  watercolor                             1      100%           -" in reply.content
    [chart] = reply.attachments
    assert chart.filename == "mascot.png"
    with Image.open(io.BytesIO(chart.data)) as image:
        assert image.format == "PNG"
        assert image.width <= 900


async def test_stats_without_history_is_one_sentence(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A character with no runs gets one sentence and no chart."""
    await start_bot()

    interaction = await fake.slash("stats", character="mascot")
    reply = await until(lambda: interaction.reply, what="the answer")
    assert reply is not None

    assert reply.content == (
        "mascot has no finished runs yet, so there is nothing to show; stats appear once runs "
        "are reviewed."
    )
    assert reply.attachments == []


async def test_stats_offers_the_characters_as_you_type(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The character option is autocompleted like /generate's."""
    await start_bot()

    choices = await fake.autocomplete("stats", "character", character="masc")

    assert [choice["value"] for choice in choices] == ["mascot"]
