"""Review by reactions: what reviewers see in the review channel and how their reactions count."""

from __future__ import annotations

import asyncio
import io
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.render import APPROVE, NUMBERS, REJECT
from pipeline.models import (
    Decision,
    Job,
    MediaItem,
    MediaKind,
    ReviewAction,
    ReviewTicket,
    Run,
    RunState,
    utcnow,
)
from pipeline.store import SqlStore
from tests.bot.conftest import BotUnderTest, StartBot
from tests.bot.reviews import candidates
from tests.fakes import discord as fd


async def post_review(
    under_test: BotUnderTest, run: Run, folder: Path
) -> tuple[asyncio.Task[Decision | None], list[fd.FakeMessage]]:
    """Ask for the review and start waiting on it, as the pipeline does."""
    reviewer = under_test.services.reviewer
    ticket = await reviewer.request(run, folder)

    async def decided() -> Decision | None:
        answer = await reviewer.wait(run, ticket)
        assert not isinstance(answer, ReviewAction), "these reviews offer no actions"
        return answer

    waiting = asyncio.create_task(decided())
    messages = [under_test.fake.messages[i] for i in ticket.message_ids]
    await under_test.fake.until(lambda: REJECT in messages[-1].reactions, what="the reactions")
    return waiting, messages


async def test_a_reviewers_number_and_check_select_that_image(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Alice reacts 2️⃣ then ✅: the decision approves image 2 only, by Alice."""
    under_test = await start_bot()
    run = candidates(tmp_path / "run", 3)
    waiting, [message] = await post_review(under_test, run, tmp_path / "run")
    assert len(message.attachments) == 3
    assert "#2" in message.content
    assert "score 0.80" in message.content
    assert "reason 2" in message.content
    assert message.embeds[0]["description"] == "Hello #pixelbot"
    assert set(message.reactions) == {*NUMBERS[:3], APPROVE, REJECT}
    await fake.react(message, NUMBERS[1], fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.approved
    assert decision.selected == (1,)
    assert decision.by == "Alice"
    await fake.until(lambda: "Approved by Alice: #2" in message.content, what="the closing line")


async def test_a_check_alone_approves_every_image(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """✅ with no number marked approves all the candidates."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 3), tmp_path / "r"
    )
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.selected == (0, 1, 2)


async def test_reactions_of_non_reviewers_and_of_the_bot_never_count(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """The bot's own ✅ and Bob's (no reviewer role) ✅ and 1️⃣ leave the review open; Alice's ❌
    then rejects it."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 2), tmp_path / "r"
    )
    assert fd.BOT_ID in message.reactions[APPROVE]  # the bot's own ✅ reached it as an event
    await fake.react(message, NUMBERS[0], fd.BOB)
    await fake.react(message, APPROVE, fd.BOB)
    assert not waiting.done()
    await fake.react(message, REJECT, fd.ALICE)  # the barrier: Bob's reactions came first
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.by == "Alice"
    assert not decision.approved
    assert decision.selected == ()


async def test_taking_a_number_back_unselects_its_image(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Removing 1️⃣ before ✅ leaves only the other marked image selected."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 3), tmp_path / "r"
    )
    await fake.react(message, NUMBERS[0], fd.ALICE)
    await fake.react(message, NUMBERS[2], fd.ALICE)
    await fake.unreact(message, NUMBERS[0], fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.selected == (2,)


async def test_fourteen_images_are_split_over_two_messages(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """14 candidates come as 10 + 4 files; 3️⃣ on the second message means image 13."""
    under_test = await start_bot()
    run = candidates(tmp_path / "r", 14)
    waiting, messages = await post_review(under_test, run, tmp_path / "r")
    assert [len(m.attachments) for m in messages] == [10, 4]
    assert set(messages[0].reactions) == set(NUMBERS)
    assert set(messages[1].reactions) == {*NUMBERS[:4], APPROVE, REJECT}
    assert "#13" in messages[1].content
    assert "part 2/2" in messages[1].content
    await fake.react(messages[1], NUMBERS[2], fd.ALICE)
    await fake.react(messages[1], APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.selected == (12,)


async def test_an_image_over_the_upload_limit_is_shown_as_a_preview(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """A PNG larger than the upload limit is posted as a smaller JPEG; the original is kept."""
    limit = 60_000
    fake.upload_limit = limit
    under_test = await start_bot(discord_upload_limit_mb=limit / 1024 / 1024)
    folder = tmp_path / "r"
    run = candidates(folder, 2, size=200, noisy=True)
    original = (folder / "image-01.png").read_bytes()
    assert len(original) > limit
    waiting, [message] = await post_review(under_test, run, folder)
    sizes = {a.filename: a.size for a in message.attachments}
    assert sorted(sizes) == ["01-image-01.jpg", "02-image-02.jpg"]
    assert all(size <= limit for size in sizes.values())
    assert fake.refused == []
    assert (folder / "image-01.png").read_bytes() == original
    waiting.cancel()


async def test_a_video_no_preview_can_fit_is_listed_but_not_attached(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """A video over the upload limit that no preview can be made of (here: not a readable
    video) keeps its number and line, with a note that it is too large to show; the image
    beside it is attached."""
    limit = 60_000
    fake.upload_limit = limit
    under_test = await start_bot(discord_upload_limit_mb=limit / 1024 / 1024)
    folder = tmp_path / "r"
    run = candidates(folder, 1)
    (folder / "clip.mp4").write_bytes(bytes(limit + 1))
    video = MediaItem(path="clip.mp4", kind=MediaKind.VIDEO, description_index=0, score=0.7)
    run = run.advance(run.state, media=(*run.media, video))
    waiting, [message] = await post_review(under_test, run, folder)
    assert [a.filename for a in message.attachments] == ["01-image-01.png"]
    assert "#2" in message.content
    assert "#2 is too large to show here" in message.content
    assert set(message.reactions) == {*NUMBERS[:2], APPROVE, REJECT}
    assert fake.refused == []
    waiting.cancel()


async def test_an_unanswered_review_gets_a_reminder_then_expires(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Nobody answers: a reminder comes before the deadline, then the review is expired."""
    under_test = await start_bot(review_timeout_minutes=1.2 / 60, review_reminder_minutes=0.6 / 60)
    assert under_test.services.reviewer.config.reminder == timedelta(seconds=0.6)
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 1), tmp_path / "r"
    )
    assert await asyncio.wait_for(waiting, 5) is None
    reminders = [m for m in fake.channel_messages(fd.REVIEW_CHANNEL) if m.reference_id]
    assert len(reminders) == 1
    assert "expires" in reminders[0].content
    assert "The review expired" in message.content


async def test_an_expired_run_can_be_retried(start_bot: StartBot, fake: fd.FakeDiscord) -> None:
    """/generate, nobody reviews in time: the card says expired; /retry posts the review again."""
    under_test = await start_bot(review_timeout_minutes=0.5 / 60, review_reminder_minutes=0)
    interaction = await fake.slash("generate", character="mascot")
    card = interaction.original
    assert card is not None
    await fake.until(lambda: "review expired" in card.content, what="the expiry")
    run_id = under_test.execute.started[0]
    await fake.slash("retry", run_id=run_id)
    await fake.until(lambda: len(under_test.execute.reviews) == 2, what="a second review")
    run = await under_test.services.store.load_run(run_id)
    assert run is not None
    assert run.state is RunState.AWAITING_REVIEW


async def test_a_review_pending_at_restart_honours_reactions_given_while_offline(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The bot stops during review; Alice reacts 2️⃣ ✅ meanwhile; the restarted bot publishes
    image 2 without posting the review again."""
    first = await start_bot()
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.reviews and first.execute.reviews[0])
    message = fake.channel_messages(fd.REVIEW_CHANNEL)[-1]
    await fake.until(lambda: REJECT in message.reactions, what="the reactions")
    await first.stop()
    stopped = await first.services.store.load_run(run_id)
    assert stopped is not None
    assert stopped.state is RunState.AWAITING_REVIEW
    await fake.react(message, NUMBERS[1], fd.ALICE, online=False)
    await fake.react(message, APPROVE, fd.ALICE, online=False)
    second = await start_bot()
    run = await second.services.runner.wait(run_id)
    assert run.state is RunState.PUBLISHED
    assert run.decision is not None
    assert run.decision.selected == (1,)
    assert second.execute.reviews == []
    assert len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 1


async def test_a_restarted_bot_keeps_waiting_when_nobody_answered(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """After a restart with no answer yet, a live ✅ still decides the review."""
    first = await start_bot()
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.reviews and first.execute.reviews[0])
    message = fake.channel_messages(fd.REVIEW_CHANNEL)[-1]
    await fake.until(lambda: REJECT in message.reactions, what="the reactions")
    await first.stop()
    second = await start_bot()
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    await fake.react(message, APPROVE, fd.ALICE)
    run = await second.services.runner.wait(run_id)
    assert run.state is RunState.PUBLISHED


async def test_the_run_card_follows_the_run_across_a_restart(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The bot restarts during review; after Alice's ✅ the same card message ends with
    "published"."""
    first = await start_bot()
    interaction = await fake.slash("generate", character="mascot")
    card = interaction.original
    assert card is not None
    await fake.until(lambda: first.execute.reviews, what="the review")
    message = fake.channel_messages(fd.REVIEW_CHANNEL)[-1]
    await fake.until(lambda: REJECT in message.reactions, what="the reactions")
    await fake.until(lambda: "Waiting for review" in card.content, what="the card in review")
    await first.stop()
    await fake.until(lambda: "resumes after a restart" in card.content, what="the stopped card")
    second = await start_bot()
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    await fake.react(message, APPROVE, fd.ALICE)
    await fake.until(lambda: "published" in card.content, what="the outcome on the same card")
    assert "instagram.fake" in card.content


async def test_a_restart_adds_the_reactions_a_stop_left_out(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The bot stopped before its ❌ was on the review: the restarted bot adds it, once."""
    first = await start_bot()
    await fake.slash("generate", character="mascot")
    await fake.until(lambda: first.execute.reviews, what="the review")
    message = fake.channel_messages(fd.REVIEW_CHANNEL)[-1]
    await fake.until(lambda: REJECT in message.reactions, what="the reactions")
    await first.stop()
    await fake.unreact(message, REJECT, fd.BOT)
    before = len(fake.requests)
    second = await start_bot()
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    await fake.until(lambda: message.reactions.get(REJECT), what="the ❌ again")
    assert message.reactions[REJECT] == [fd.BOT_ID]
    added = [
        r.path for r in fake.requests[before:] if r.method == "PUT" and "/reactions/" in r.path
    ]
    assert len(added) == 1


async def test_every_pending_review_is_rearmed_even_over_the_run_limit(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Two reviews are open at a restart with one run allowed at a time: both wait again, and a
    ✅ on the second decides it while the first still waits."""
    first = await start_bot(max_runs=1)
    await fake.slash("generate", character="mascot")
    await fake.until(lambda: len(first.execute.reviews) == 1, what="the first review")
    await fake.slash("generate", character="moonlit_tales", user=fd.BOB)
    await fake.until(lambda: len(first.execute.reviews) == 2, what="the second review")
    messages = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: all(REJECT in m.reactions for m in messages), what="the reactions")
    await first.stop()
    second = await start_bot(max_runs=1)
    await fake.until(
        lambda: len(second.services.reviewer.pending_runs()) == 2, what="both reviews re-armed"
    )
    await fake.react(messages[1], APPROVE, fd.ALICE)
    run = await second.services.runner.wait(first.execute.reviews[1])
    assert run.state is RunState.PUBLISHED
    assert second.services.runner.position(first.execute.reviews[0]) == 0


async def test_a_review_waiting_in_the_terminal_is_left_to_the_terminal(
    start_bot: StartBot, sqlite_store: SqlStore
) -> None:
    """A run awaiting a console review (no Discord messages) is not taken over at start."""
    ticket = ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())
    console = Run.new(Job("mascot", requested_by="cli")).advance(
        RunState.AWAITING_REVIEW, ticket=ticket
    )
    await sqlite_store.save_run(console)
    under_test = await start_bot()
    assert under_test.services.runner.active() == []
    assert under_test.services.reviewer.pending_runs() == []
    kept = await sqlite_store.load_run(console.id)
    assert kept is not None
    assert kept.state is RunState.AWAITING_REVIEW


async def test_edit_caption_opens_a_form_and_the_approval_carries_the_new_caption(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Alice presses "Edit caption", changes the text, approves: the decision has her caption."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 1), tmp_path / "r"
    )
    [button] = message.custom_ids()
    opened = await fake.click(message, button)
    fields = [row["components"][0] for row in opened.modal["components"]]
    assert [(f["custom_id"], f["value"]) for f in fields] == [
        ("caption:instagram", "Hello #pixelbot")
    ]
    submitted = await fake.submit(opened, {"caption:instagram": "New words #pixelbot"})
    assert submitted.original is not None
    assert "Caption updated" in submitted.original.content
    assert message.embeds[0]["description"] == "New words #pixelbot"
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.captions == {"instagram": "New words #pixelbot"}


async def test_a_caption_edit_survives_a_restart(start_bot: StartBot, fake: fd.FakeDiscord) -> None:
    """Alice edits the caption, the bot restarts: the form shows her text and the approved run
    carries it."""
    first = await start_bot()
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.reviews and first.execute.reviews[0])
    message = fake.channel_messages(fd.REVIEW_CHANNEL)[-1]
    await fake.until(lambda: REJECT in message.reactions, what="the reactions")
    opened = await fake.click(message, message.custom_ids()[0])
    await fake.submit(opened, {"caption:instagram": "Edited before the restart"})
    await first.stop()
    second = await start_bot()
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    reopened = await fake.click(message, message.custom_ids()[0])
    values = {
        row["components"][0]["custom_id"]: row["components"][0]["value"]
        for row in reopened.modal["components"]
    }
    assert values["caption:instagram"] == "Edited before the restart"
    await fake.react(message, APPROVE, fd.ALICE)
    run = await second.services.runner.wait(run_id)
    assert run.state is RunState.PUBLISHED
    assert run.captions["instagram"] == "Edited before the restart"


async def test_the_reminder_is_sent_once_even_across_a_restart(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The reminder goes out, the bot restarts before the deadline: no second reminder, and the
    review still expires on time."""
    timing = {"review_timeout_minutes": 3 / 60, "review_reminder_minutes": 2.6 / 60}
    first = await start_bot(**timing)
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.reviews and first.execute.reviews[0])

    def reminders() -> list[fd.FakeMessage]:
        return [m for m in fake.channel_messages(fd.REVIEW_CHANNEL) if m.reference_id]

    await fake.until(reminders, what="the reminder")
    await first.stop()
    second = await start_bot(**timing)
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    run = await second.services.runner.wait(run_id)
    assert run.state is RunState.EXPIRED
    assert len(reminders()) == 1


async def test_only_reviewers_may_edit_the_caption(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Bob pressing "Edit caption" is told only reviewers can."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 1), tmp_path / "r"
    )
    pressed = await fake.click(message, message.custom_ids()[0], user=fd.BOB)
    assert pressed.original is not None
    assert "Only reviewers" in pressed.original.content
    waiting.cancel()


async def test_a_dropped_gateway_resumes_and_reactions_still_arrive(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """The connection drops; the bot resumes its session and Alice's ✅ still counts."""
    under_test = await start_bot()
    waiting, [message] = await post_review(
        under_test, candidates(tmp_path / "r", 1), tmp_path / "r"
    )
    await fake.drop_gateway()
    await fake.react(message, APPROVE, fd.ALICE)  # sent while down: replayed on RESUME
    decision = await asyncio.wait_for(waiting, 10)
    assert decision is not None
    assert decision.approved
    assert fake.resumes == 1
    assert fake.identifies == 1


@pytest.mark.parametrize(
    ("platform", "text", "over"),
    [
        pytest.param(
            "instagram",
            "Hello " + " ".join(f"#tag{i}" for i in range(31)),
            "instagram: the caption has 31 hashtags, and Instagram takes 30",
            id="instagram-hashtags-in-text",
        ),
        pytest.param(
            "instagram",
            "a" * 2201,
            "instagram: the caption is 2201 of Instagram's 2200 characters",
            id="instagram-length",
        ),
        pytest.param(
            "twitter",
            "狐" * 141,
            "twitter: the post is 282 of X's 280 characters",
            id="x-weighted-length",
        ),
    ],
)
async def test_a_caption_edit_over_a_platforms_limits_is_refused_privately_and_kept_for_the_form(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path, platform: str, text: str, over: str
) -> None:
    """Alice's caption is over a limit: a private sentence says what is over and nothing is
    saved (the review shows the old caption, the approval carries it); the next form opens with
    her text, and a shorter one is taken."""
    under_test = await start_bot()
    run = replace(
        candidates(tmp_path / "r", 1),
        captions={"instagram": "Hello #pixelbot", "twitter": "Hi #pixelbot"},
    )
    waiting, [message] = await post_review(under_test, run, tmp_path / "r")
    button = message.custom_ids()[0]
    opened = await fake.click(message, button)
    refused = await fake.submit(opened, {f"caption:{platform}": text})
    assert refused.original is not None
    assert refused.original.ephemeral
    assert refused.original.content == (
        f"Not saved: {over}. Shorten it and press Edit caption again: the form opens with "
        "your text."
    )
    shown = {embed["title"]: embed["description"] for embed in message.embeds}
    assert shown[f"Caption \N{MIDDLE DOT} {platform}"] == run.captions[platform]

    reopened = await fake.click(message, button)
    values = {
        row["components"][0]["custom_id"]: row["components"][0]["value"]
        for row in reopened.modal["components"]
    }
    assert values[f"caption:{platform}"] == text[:4000]
    submitted = await fake.submit(reopened, {f"caption:{platform}": "Shorter #pixelbot"})
    assert submitted.original is not None
    assert "Caption updated" in submitted.original.content
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.captions[platform] == "Shorter #pixelbot"


async def test_a_sticker_pack_is_reviewed_as_one_numbered_contact_sheet_and_its_files(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Nine stickers: one message with the contact sheet (a grid of the nine, numbered) and the
    nine files; 2️⃣ and 9️⃣ keep stickers 2 and 9."""
    from PIL import Image

    from pipeline.models import Sticker

    under_test = await start_bot()
    run = candidates(tmp_path / "r", 9)
    run = replace(run, stickers=tuple(Sticker(f"Face {n}", "face") for n in range(9)))
    run = replace(
        run, media=tuple(replace(m, description_index=n) for n, m in enumerate(run.media))
    )
    waiting, [message] = await post_review(under_test, run, tmp_path / "r")
    names = [a.filename for a in message.attachments]
    assert len(names) == 10
    assert names[0] == "00-contact-sheet.png"
    sheet = message.attachments[0].data
    with Image.open(io.BytesIO(sheet)) as image:
        assert image.size == (3 * 160, 3 * (160 + 22))
    assert set(message.reactions) == {*NUMBERS[:9], APPROVE, REJECT}
    await fake.react(message, NUMBERS[1], fd.ALICE)
    await fake.react(message, NUMBERS[8], fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 5)
    assert decision is not None
    assert decision.selected == (1, 8)
