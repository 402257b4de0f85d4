"""A reviewer's actions on a review in the fake Discord, end to end through the real bot and
pipeline against the fake ComfyUI: 🔁 reroll, "more like" the marked image (a plus sign), ⬆️ approve and
upscale. Each is stopped by a restart of the bot while ComfyUI renders it, and the next start
finishes it without queueing a prompt twice; the run publishes once, only what was chosen."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.render import ACTION_EMOJI, APPROVE, MORE_LIKE, NUMBERS, REJECT, REROLL, UPSCALE
from bot.services import Services
from pipeline.models import Platform, Run, RunState
from pipeline.publish.media import find_fitted
from tests.bot.world import World, running_bot
from tests.bot.world import world as world  # the fixture: every fake
from tests.fakes import discord as fd
from tests.fakes.instagram import FakeInstagram
from tests.fakes.x import FakeX
from tests.security.test_secrets import platforms as platforms  # Instagram and X, faked
from tests.security.test_secrets import wait_for_state
from tests.waiting import until

#: text2img for the world's fox: one description, two images in one prompt
IMAGES = 2


async def review_of(world: World, services: Services, *, not_before: int = 0) -> Run:
    """The run in review once its review (a ticket after message `not_before`) offers ❌ and
    its actions."""

    async def posted() -> Run | None:
        runs = await services.store.list_runs(limit=5)
        if not runs:
            return None
        [run] = runs
        if run.state is not RunState.AWAITING_REVIEW or run.ticket is None:
            return None
        last = world.discord.messages.get(run.ticket.message_ids[-1])
        if run.ticket.message_ids[0] <= not_before or last is None:
            return None
        wanted = [REJECT, *(ACTION_EMOJI[kind] for kind in run.offers)]
        return run if all(emoji in last.reactions for emoji in wanted) else None

    run = await until(posted, within=30, what="the review")
    assert run is not None
    return run


def message(world: World, run: Run) -> fd.FakeMessage:
    assert run.ticket is not None
    return world.discord.messages[run.ticket.message_ids[-1]]


async def action_rendering(world: World, prompts: int) -> None:
    """ComfyUI holds `prompts` prompts and renders one of the action's."""
    comfy = world.comfy
    await world.discord.until(
        lambda: len(comfy.prompts) == prompts and len(comfy.jobs) > 1,
        within=30,
        what="the action's prompt rendering",
    )


def published_once(world: World, run: Run, instagram: FakeInstagram, x: FakeX) -> None:
    """One post per platform, carrying exactly the chosen image as fitted for it (X receives
    the file's bytes as they are; Instagram one photo)."""
    assert run.decision is not None
    [chosen] = run.decision.selected
    folder = world.project / "output" / "fox" / run.id
    fitted = find_fitted(folder, Platform.TWITTER, chosen)
    assert fitted is not None
    [upload] = x.uploads.values()
    assert b"".join(upload["chunks"]) == fitted.read_bytes()
    assert len(x.tweets) == 1
    assert len(instagram.photo_uploads) == 1
    assert len(instagram.medias) == 1


@pytest.mark.timeout(90)
async def test_a_reroll_stopped_by_a_restart_shows_the_new_set_and_publishes_the_chosen_once(
    world: World, platforms: tuple[FakeInstagram, FakeX]
) -> None:
    """Bob (no reviewer) reacts 🔁 and nothing happens; Alice's 🔁 closes the review, a restart
    comes while ComfyUI renders attempt 2, the next start posts attempt 2's review (its prompt
    taken over, none queued again), and Alice's 2️⃣ ✅ publishes that image once."""
    comfy = world.comfy
    async with running_bot(world) as services:
        await world.discord.slash("generate", character="fox")
        first = await review_of(world, services)
        review = message(world, first)
        assert {REROLL, MORE_LIKE} <= set(review.reactions)
        assert UPSCALE not in review.reactions  # the fox has no upscale workflow
        await world.discord.react(review, REROLL, fd.BOB)
        comfy.job_seconds = 2.0
        await world.discord.react(review, REROLL, fd.ALICE)
        await action_rendering(world, prompts=2)
        assert "Alice asked for a reroll" in review.content  # Bob's reaction counted for nothing
        asked = await services.store.load_run(first.id)
        assert asked is not None
        assert asked.action is not None  # saved before ComfyUI was asked

    comfy.job_seconds = 0.02
    async with running_bot(world) as services:
        second = await review_of(world, services, not_before=review.id)
        shown = message(world, second)
        assert "attempt 2" in shown.content
        assert len(shown.attachments) == IMAGES
        await world.discord.react(shown, NUMBERS[1], fd.ALICE)
        await world.discord.react(shown, APPROVE, fd.ALICE)
        done = await wait_for_state(services, first.id, {RunState.PUBLISHED, RunState.FAILED})
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(comfy.prompts) == 2
    assert done.attempt == 2
    assert done.decision is not None
    assert done.decision.selected == (second.shown()[1],)
    published_once(world, done, *platforms)


@pytest.mark.timeout(90)
async def test_more_like_stopped_by_a_restart_adds_the_variations_to_the_review(
    world: World, platforms: tuple[FakeInstagram, FakeX]
) -> None:
    """Alice marks 1️⃣ and reacts with the plus sign; after a restart mid-way the new review shows the two
    images and three variations of #1, numbered 3-5, from one prompt queued once."""
    comfy = world.comfy
    async with running_bot(world) as services:
        await world.discord.slash("generate", character="fox")
        first = await review_of(world, services)
        review = message(world, first)
        comfy.job_seconds = 2.0
        await world.discord.react(review, NUMBERS[0], fd.ALICE)
        await world.discord.react(review, MORE_LIKE, fd.ALICE)
        await action_rendering(world, prompts=2)
        assert "more like #1" in review.content

    comfy.job_seconds = 0.02
    async with running_bot(world) as services:
        second = await review_of(world, services, not_before=review.id)
        shown = message(world, second)
        assert len(shown.attachments) == IMAGES + 3
        assert {NUMBERS[4], REROLL} <= set(shown.reactions)
        await world.discord.react(shown, NUMBERS[3], fd.ALICE)
        await world.discord.react(shown, APPROVE, fd.ALICE)
        done = await wait_for_state(services, first.id, {RunState.PUBLISHED, RunState.FAILED})
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(comfy.prompts) == 2
    assert done.decision is not None
    [chosen] = done.decision.selected
    assert done.media[chosen].variation_of == first.shown()[0]
    published_once(world, done, *platforms)


@pytest.mark.timeout(90)
async def test_an_upscale_stopped_by_a_restart_publishes_the_upscaled_image_once(
    world: World, platforms: tuple[FakeInstagram, FakeX]
) -> None:
    """A fox with an upscale workflow: Alice marks 2️⃣ and reacts ⬆️; the run card shows the
    upscale; a restart while ComfyUI upscales, and the next start takes the prompt over and
    publishes the upscaled image, once."""
    path = world.project / "characters" / "fox.yaml"
    path.write_text(
        path.read_text().replace(
            "  descriptions: 1\n",
            "  descriptions: 1\n  upscale: {workflow: workflows/upscale_tile.json}\n",
        )
    )
    comfy = world.comfy
    async with running_bot(world) as services:
        interaction = await world.discord.slash("generate", character="fox")
        card = interaction.original
        assert card is not None
        first = await review_of(world, services)
        review = message(world, first)
        assert UPSCALE in review.reactions
        comfy.job_seconds = 2.0
        await world.discord.react(review, NUMBERS[1], fd.ALICE)
        await world.discord.react(review, UPSCALE, fd.ALICE)
        await action_rendering(world, prompts=2)
        assert "To be upscaled" in review.content
        await world.discord.until(
            lambda: "Step: upscale" in card.content, what="the run card showing the upscale"
        )

    comfy.job_seconds = 0.02
    async with running_bot(world) as services:
        done = await wait_for_state(services, first.id, {RunState.PUBLISHED, RunState.FAILED})
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(comfy.prompts) == 2
    assert "ImageUpscaleWithModel" in str(comfy.prompts[1].prompt)
    assert done.decision is not None
    [chosen] = done.decision.selected
    assert done.media[chosen].upscaled_from is not None
    assert Path(done.media[chosen].path).parts[0] == "upscaled"
    published_once(world, done, *platforms)
