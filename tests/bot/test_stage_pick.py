"""A pick between stages on Discord, end to end: /generate with a text2image2image character that
has `review_between_stages: true`, the drafts posted to the review channel, a reviewer's number
and ✅ choosing the draft to refine; also with the bot stopped while the pick waits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.render import APPROVE, NUMBERS
from bot.services import Services
from pipeline.models import Run, RunState, StagePick
from tests.bot.conftest import StartBot
from tests.bot.reviews import candidates
from tests.bot.world import World, running_bot
from tests.bot.world import world as world  # the fixture: every fake
from tests.fakes import discord as fd
from tests.waiting import until

pytestmark = pytest.mark.timeout(90)

CHARACTER = """
character: {name: Fox, description: a small orange fox in a blue scarf}
generation:
  generation_type_weights: {text2image2image: 1}
  workflows:
    text2img: workflows/text2img.json
    text2image2image: workflows/image2image.json
  similarity_threshold: 0.5
  descriptions: 1
  prompt_method_weights: {arbitrary: 1}
social_media:
  default_hashtags: ["#fox"]
  platforms:
    instagram: {enabled: false}
    twitter: {enabled: false}
additional_params:
  general: {images_per_description: 3, images_per_input: 1}
  strategies:
    text2image2image: {keep_top: 1, review_between_stages: true}
"""


def _picking(world: World) -> list[fd.FakeMessage]:
    return [
        m
        for m in world.discord.channel_messages(fd.REVIEW_CHANNEL)
        if m.content.startswith("**Pick drafts")
    ]


def _reviews(world: World) -> list[fd.FakeMessage]:
    return [
        m
        for m in world.discord.channel_messages(fd.REVIEW_CHANNEL)
        if m.content.startswith("**Review run")
    ]


def _prompts_with(world: World, class_type: str) -> int:
    return sum(
        any(node["class_type"] == class_type for node in received.prompt.values())
        for received in world.comfy.prompts
    )


async def _pick_posted(world: World) -> fd.FakeMessage:
    picks = await world.discord.until(lambda: _picking(world), within=40, what="the pick")
    message: fd.FakeMessage = picks[-1]
    await world.discord.until(lambda: APPROVE in message.reactions, what="the pick's reactions")
    return message


async def _approve_and_publish(world: World, services: Services) -> Run:
    """A reviewer approves the final review; the published run."""
    reviews = await world.discord.until(lambda: _reviews(world), within=40, what="the review")
    review = reviews[-1]
    await world.discord.until(lambda: APPROVE in review.reactions, what="the review's reactions")
    await world.discord.react(review, APPROVE, fd.ALICE)

    async def finished() -> Run | None:
        runs = await services.store.list_runs()
        return runs[0] if runs and runs[0].state.finished else None

    run: Run | None = await until(finished, within=40, what="the run finished")
    assert run is not None
    assert run.state is RunState.PUBLISHED, run.failure
    return run


async def test_a_reviewer_picks_the_draft_to_refine(world: World) -> None:
    """The three drafts are posted with numbers; Bob (no reviewer) is not counted, Alice's
    3️⃣ ✅ sends draft 3 alone to the second stage, and the pick says who picked what."""
    (world.project / "characters" / "fox.yaml").write_text(CHARACTER)
    async with running_bot(world) as services:
        await world.discord.slash("generate", character="fox")
        message = await _pick_posted(world)
        assert set(message.reactions) == {*NUMBERS[:3], APPROVE}
        assert len(message.attachments) == 3
        assert "#3" in message.content
        await world.discord.react(message, APPROVE, fd.BOB)
        await world.discord.react(message, NUMBERS[2], fd.ALICE)
        await world.discord.react(message, APPROVE, fd.ALICE)
        await world.discord.until(
            lambda: "Alice picked #3 to refine" in message.content, what="the closing line"
        )
        run = await _approve_and_publish(world, services)
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (2,)
    assert run.stage_pick.by == "Alice"
    assert _prompts_with(world, "LoadImage") == 1
    assert len(run.media) == 1


async def test_a_pick_waiting_at_a_restart_honours_the_answer_given_meanwhile(
    world: World,
) -> None:
    """The bot stops while the pick waits; Alice reacts 2️⃣ ✅ meanwhile; the restarted bot
    refines draft 2 without drawing again or posting the pick again."""
    (world.project / "characters" / "fox.yaml").write_text(CHARACTER)
    async with running_bot(world):
        await world.discord.slash("generate", character="fox")
        message = await _pick_posted(world)
    drawn = _prompts_with(world, "EmptyLatentImage")
    assert drawn == 1
    await world.discord.react(message, NUMBERS[1], fd.ALICE, online=False)
    await world.discord.react(message, APPROVE, fd.ALICE, online=False)
    async with running_bot(world) as services:
        await world.discord.until(
            lambda: "Alice picked #2 to refine" in message.content, what="the pick honoured"
        )
        run = await _approve_and_publish(world, services)
    assert len(_picking(world)) == 1
    assert _prompts_with(world, "EmptyLatentImage") == drawn
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (1,)
    assert _prompts_with(world, "LoadImage") == 1


async def test_a_pick_nobody_answers_lets_the_best_by_score_go_on(world: World) -> None:
    """At the review timeout an unanswered pick says so on the message and the best draft by
    score is refined; the run goes on to its review."""
    (world.project / "characters" / "fox.yaml").write_text(CHARACTER)
    world.settings = world.settings.model_copy(
        update={"review_timeout_minutes": 0.05, "review_reminder_minutes": 0}
    )
    async with running_bot(world) as services:
        await world.discord.slash("generate", character="fox")
        message = await _pick_posted(world)
        await world.discord.until(
            lambda: "Nobody picked in time: the best 1 by score go on" in message.content,
            within=20,
            what="the pick's timeout line",
        )
        reviews = await world.discord.until(lambda: _reviews(world), within=40, what="the review")
        assert reviews
        runs = await services.store.list_runs()
    pick = runs[0].stage_pick
    assert pick is not None
    assert pick.chosen == (0,)
    assert pick.by == "timeout"
    assert _prompts_with(world, "LoadImage") == 1


async def test_a_pick_posted_before_a_stop_is_not_posted_again(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """A bot stopped between posting a pick and saving its ticket finds that pick again
    instead of posting a second one."""
    under_test = await start_bot()
    run = candidates(tmp_path / "run", 2)
    pick = StagePick("first_stage", run.media, keep=1)
    reviewer = under_test.services.reviewer
    first = await reviewer.request_pick(run, tmp_path / "run", pick)
    again = await reviewer.request_pick(run, tmp_path / "run", pick)
    assert again.message_ids == first.message_ids
    [message] = fake.channel_messages(fd.REVIEW_CHANNEL)
    assert message.content.startswith("**Pick drafts")


async def test_a_check_without_a_number_lets_the_best_by_score_go_on(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """✅ alone is no pick: nothing is selected (the best by score go on), and the pick says so."""
    under_test = await start_bot()
    run = candidates(tmp_path / "run", 3)
    pick = StagePick("first_stage", run.media, keep=1)
    reviewer = under_test.services.reviewer
    ticket = await reviewer.request_pick(run, tmp_path / "run", pick)
    waiting = asyncio.create_task(reviewer.wait_pick(run, ticket, pick))
    [message] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: APPROVE in message.reactions, what="the pick's reactions")
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 10)
    assert decision is not None
    assert decision.selected == ()
    await fake.until(
        lambda: "picked the best 1 by score to refine" in message.content, what="the closing line"
    )
