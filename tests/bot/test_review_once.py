"""A run is posted for review once: a bot stopped between posting a review and saving its ticket
finds that review in the channel after the restart instead of posting a second one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot import render
from bot.render import APPROVE, NUMBERS, REJECT
from pipeline.models import Job, ReviewTicket, Run, RunState, utcnow
from pipeline.store import SqlStore
from tests.bot.conftest import BotUnderTest, StartBot
from tests.bot.reviews import candidates
from tests.fakes import discord as fd


async def captioned_run(
    under_test: BotUnderTest, store: SqlStore, tmp_path: Path, count: int
) -> Run:
    """A member's run saved in `captioned`, its images in the folder the pipeline uses."""
    run = candidates(tmp_path / "staging", count)
    run = replace(run, job=Job("mascot", requested_by=f"discord:{fd.ALICE.id}"))
    folder = under_test.execute.folder(run)
    folder.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "staging").rename(folder)
    await store.save_run(run)
    return run


async def test_a_review_posted_before_a_stop_is_not_posted_again(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The bot stops right after posting a review, before its ticket is saved: the restarted
    bot posts no second review, and Alice's 2️⃣ given meanwhile and her ✅ decide on the first."""
    first = await start_bot()
    run = await captioned_run(first, sqlite_store, tmp_path, 3)
    await first.services.reviewer.request(run, first.execute.folder(run))
    await first.stop()  # the ticket was never saved: the run is still `captioned`
    [message] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.react(message, NUMBERS[1], fd.ALICE, online=False)
    second = await start_bot()
    await fake.until(lambda: REJECT in message.reactions, what="the reactions on the review")
    await fake.react(message, APPROVE, fd.ALICE)
    done = await second.services.runner.wait(run.id)
    assert done.state is RunState.PUBLISHED
    assert done.decision is not None
    assert done.decision.selected == (1,)
    assert fake.channel_messages(fd.REVIEW_CHANNEL) == [message]
    assert done.ticket is not None
    assert done.ticket.message_ids == (message.id,)


async def test_a_review_deep_in_a_busy_channel_is_found_after_a_restart(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The bot stops between posting a review and saving its ticket, and the reviewers chat 150
    messages in the review channel before it is back (more than one page of history): the
    review is still found, not posted a second time, and Alice's ✅ decides it."""
    first = await start_bot()
    run = await captioned_run(first, sqlite_store, tmp_path, 2)
    await first.services.reviewer.request(run, first.execute.folder(run))
    await first.stop()
    [message] = fake.channel_messages(fd.REVIEW_CHANNEL)
    for n in range(150):
        await fake.say(fd.BOB, f"what about the other one? ({n})", channel_id=fd.REVIEW_CHANNEL)
    second = await start_bot()
    await fake.until(lambda: REJECT in message.reactions, what="the reactions on the review")
    await fake.react(message, APPROVE, fd.ALICE)
    done = await second.services.runner.wait(run.id)
    assert done.state is RunState.PUBLISHED
    reviews = [m for m in fake.channel_messages(fd.REVIEW_CHANNEL) if m.author.id == fd.BOT_ID]
    assert reviews == [message]


async def test_a_review_cut_short_between_its_messages_is_posted_again_whole(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """14 images: the bot dies after the first of the two review messages; after the restart the
    channel holds one complete review (parts 1/2 and 2/2), the cut-short part deleted."""
    first = await start_bot()
    run = await captioned_run(first, sqlite_store, tmp_path, 14)
    fake.posts_left = 1
    posting = asyncio.create_task(first.services.reviewer.request(run, first.execute.folder(run)))
    [cut_short] = await fake.until(
        lambda: fake.channel_messages(fd.REVIEW_CHANNEL), what="the first part"
    )
    await fake.until(lambda: fake.posts_held, what="the second part on its way")
    posting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await posting
    await first.stop()
    fake.posts_left = None
    fake.posts_released.set()
    assert "part 1/2" in cut_short.content
    second = await start_bot()
    review = await fake.until(
        lambda: (
            second.services.reviewer.pending_runs() and fake.channel_messages(fd.REVIEW_CHANNEL)
        ),
        what="the review posted again",
    )
    await fake.until(lambda: REJECT in review[-1].reactions, what="the reactions")
    assert [m.content.split("\n")[0].rsplit(" ", 1)[-1] for m in review] == ["1/2", "2/2"]
    assert cut_short in fake.deleted
    assert sum(len(m.attachments) for m in review) == 14
    saved = await sqlite_store.load_run(run.id)
    assert saved is not None
    assert saved.ticket is not None
    assert saved.ticket.message_ids == tuple(m.id for m in review)


def test_a_review_too_long_for_one_message_still_shows_its_deadline() -> None:
    """Ten long image lines are cut, but the header and "Expires …" line stay on the message."""
    run = Run.new(Job("mascot", requested_by="test"))
    deadline = utcnow().replace(microsecond=0)
    text = render.review_text(run, ["x" * 300] * 10, part=2, parts=2, deadline=deadline)
    assert len(text) <= render.CONTENT_LIMIT
    lines = text.split("\n")
    assert run.id in lines[0]
    assert "part 2/2" in lines[0]
    assert lines[-1] == f"Expires <t:{int(deadline.timestamp())}:R>."


def reworded(run: Run, lines: Sequence[str], *, part: int, parts: int, **_: object) -> str:
    """A review in other words: no run id, no part number, no deadline in the text."""
    return "\n".join([f"Nouvelles images ({part}) \N{FRAME WITH PICTURE}", *lines])


def reworded_again(run: Run, lines: Sequence[str], **_: object) -> str:
    return "\n".join(["Which of these should we post?", *lines])


async def test_a_reworded_review_is_found_after_a_restart(
    start_bot: StartBot,
    fake: fd.FakeDiscord,
    sqlite_store: SqlStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The review's wording changes (and changes again with the next release) and says neither
    the run nor the deadline: a bot stopped between posting a two-part review and saving its
    ticket still finds both parts after the restart, posts nothing new, and Alice's ✅ decides."""
    monkeypatch.setattr(render, "review_text", reworded)
    first = await start_bot()
    run = await captioned_run(first, sqlite_store, tmp_path, 14)
    await first.services.reviewer.request(run, first.execute.folder(run))
    await first.stop()
    posted = fake.channel_messages(fd.REVIEW_CHANNEL)
    assert [m.content.split("\n")[0] for m in posted] == [
        "Nouvelles images (1) \N{FRAME WITH PICTURE}",
        "Nouvelles images (2) \N{FRAME WITH PICTURE}",
    ]
    assert not any(run.id in m.content or "<t:" in m.content for m in posted)
    monkeypatch.setattr(render, "review_text", reworded_again)
    second = await start_bot()
    await fake.until(lambda: REJECT in posted[-1].reactions, what="the reactions on the review")
    await fake.react(posted[-1], APPROVE, fd.ALICE)
    done = await second.services.runner.wait(run.id)
    assert done.state is RunState.PUBLISHED
    assert fake.channel_messages(fd.REVIEW_CHANNEL) == posted
    assert fake.deleted == []
    assert done.ticket is not None
    assert done.ticket.message_ids == tuple(m.id for m in posted)


async def test_a_closed_review_is_never_taken_up_again(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """A review that was answered keeps its text but its "Edit caption" button is greyed out;
    asked to review the run again before that review's deadline, the bot posts a new one."""
    under_test = await start_bot()
    run = await captioned_run(under_test, sqlite_store, tmp_path, 2)
    reviewer = under_test.services.reviewer
    folder = under_test.execute.folder(run)
    ticket = await reviewer.request(run, folder)
    waiting = asyncio.create_task(reviewer.wait(run, ticket))
    [first] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: REJECT in first.reactions, what="the reactions")
    await fake.react(first, REJECT, fd.ALICE)
    assert await waiting is not None
    await fake.until(lambda: "Rejected by" in first.content, what="the review closed")
    [button] = first.components[0]["components"]
    assert button["disabled"] is True
    again = await reviewer.request(run, folder)
    assert again.message_ids != ticket.message_ids
    assert len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 2


async def test_a_review_posted_by_the_previous_release_is_taken_up(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """A review posted before reviews carried markers (its button `mo:caption:<run>`, its ticket
    saved on the run): after the upgrade its "Edit caption" still opens the form, Alice's ✅
    publishes the run with her caption, and the button is greyed out."""
    run = candidates(tmp_path / "staging", 2)
    run = replace(run, job=Job("mascot", requested_by=f"discord:{fd.ALICE.id}"))
    old = await fake.say(
        fd.BOT,
        f"**Review run `{run.id}`** \N{MIDDLE DOT} mascot\nReact with the numbers …",
        channel_id=fd.REVIEW_CHANNEL,
    )
    old.components = [
        {
            "type": 1,
            "components": [
                {
                    "type": 2,
                    "style": 2,
                    "label": "Edit caption",
                    "custom_id": f"mo:caption:{run.id}",
                }
            ],
        }
    ]
    ticket = ReviewTicket(
        channel_id=fd.REVIEW_CHANNEL,
        message_ids=(old.id,),
        posted_at=utcnow(),
        deadline=utcnow() + timedelta(hours=3),
    )
    run = run.advance(RunState.AWAITING_REVIEW, ticket=ticket)
    under_test = await start_bot()
    folder = under_test.execute.folder(run)
    folder.parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "staging").rename(folder)
    await sqlite_store.save_run(run)
    await under_test.bot.recovery.rearm_reviews()
    await fake.until(lambda: REJECT in old.reactions, what="the bot's reactions")
    opened = await fake.click(old, f"mo:caption:{run.id}")
    await fake.submit(opened, {"caption:instagram": "Upgraded #pixelbot"})
    await fake.react(old, APPROVE, fd.ALICE)
    done = await under_test.services.runner.wait(run.id)
    assert done.state is RunState.PUBLISHED
    assert done.decision is not None
    assert done.decision.captions == {"instagram": "Upgraded #pixelbot"}
    assert [m for m in fake.channel_messages(fd.REVIEW_CHANNEL) if not m.ephemeral] == [old]
    [button] = old.components[0]["components"]
    assert button["disabled"] is True
