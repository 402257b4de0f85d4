"""/generate, /runs, /cancel, /retry and /reload as a member sees them in Discord."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any

import pytest

from pipeline.models import Job, Platform, PostState, Run, RunState
from pipeline.store import SqlStore
from tests.bot.conftest import StartBot
from tests.doubles import Script
from tests.fakes import discord as fd


async def review_posted(fake: fd.FakeDiscord, count: int = 1) -> list[fd.FakeMessage]:
    """The review messages, once `count` reviews carry their ✅."""

    def ready() -> list[fd.FakeMessage]:
        messages = fake.channel_messages(fd.REVIEW_CHANNEL)
        finished = [m for m in messages if "\N{CROSS MARK}" in m.reactions]
        return messages if len(finished) >= count else []

    result: list[fd.FakeMessage] = await fake.until(ready, what="the review")
    return result


async def test_character_autocomplete_offers_the_character_files(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Typing "mas" in the character option offers "mascot", and never the example file."""
    await start_bot()
    choices = await fake.autocomplete("generate", "character", character="mas")
    assert [c["value"] for c in choices] == ["mascot"]
    everything = await fake.autocomplete("generate", "character", character="")
    assert "example" not in [c["value"] for c in everything]


async def test_the_type_and_character_options_autocomplete(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Both options are offered as the member types (the types follow the character)."""
    await start_bot()
    options = {o["name"]: o for o in fake.command("generate")["options"]}
    assert options["type"]["autocomplete"] is True
    assert options["character"]["autocomplete"] is True


async def test_generate_shows_a_run_card_that_moves_and_ends_with_the_outcome(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The reply is one message: it shows the step and a sampler bar, then "published"."""
    under_test = await start_bot(script=Script(steps=3, step_delay=0.3))
    interaction = await fake.slash("generate", character="mascot")
    assert interaction.response is not None
    assert interaction.response["type"] == 5
    card = interaction.original
    assert card is not None
    messages = await review_posted(fake)
    await fake.until(lambda: "Waiting for review" in card.content, what="the card in review")
    await fake.react(messages[-1], "\N{WHITE HEAVY CHECK MARK}", fd.ALICE)
    await fake.until(lambda: "published" in card.content, what="the outcome")
    history = "\n".join(card.history)
    assert "Step: generate" in history
    assert "`[" in history
    assert "/3" in history
    assert "instagram.fake" in card.content
    runs = await under_test.services.store.list_runs()
    assert [run.state for run in runs] == [RunState.PUBLISHED]
    assert card.edits <= len(card.history)  # one message, edited; no new messages per step
    assert interaction.followups == []


async def test_the_run_card_is_edited_at_most_once_per_interval(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """40 sampler steps in about a second become a handful of card edits (Discord rate-limits
    message edits); the card still shows the bar and ends on the latest step."""
    started = time.monotonic()
    await start_bot(script=Script(steps=40, step_delay=0.025), discord_card_edit_seconds=0.5)
    interaction = await fake.slash("generate", character="mascot")
    card = interaction.original
    assert card is not None
    await review_posted(fake)
    await fake.until(lambda: "Waiting for review" in card.content, what="the card in review")
    elapsed = time.monotonic() - started
    assert card.edits <= 3 + elapsed / 0.5
    assert any("/40" in text for text in card.history)  # the sampler bar was shown


async def test_a_run_over_the_limit_waits_and_says_its_place(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """With one run allowed at a time, a second /generate says it is queued, then starts when
    the first ends."""
    under_test = await start_bot(script=Script(hold=asyncio.Event()), max_runs=1)
    first = await fake.slash("generate", character="mascot")
    await fake.until(lambda: under_test.execute.started, what="the first run")
    second = await fake.slash("generate", character="moonlit_tales", user=fd.BOB)
    card = second.original
    assert card is not None
    await fake.until(lambda: "1st in line" in card.content, what="the queue place")
    assert len(under_test.execute.started) == 1
    await fake.slash("cancel", run_id=under_test.execute.started[0])
    await fake.until(lambda: len(under_test.execute.started) == 2, what="the second run")
    first_card = first.original
    assert first_card is not None
    await fake.until(lambda: "cancelled" in first_card.content, what="the first card's end")


async def test_a_run_waiting_for_review_leaves_its_place_to_the_next(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """One run at a time in all, per character and per person: Alice's second mascot run
    starts as soon as her first waits for review, and reaches review too."""
    under_test = await start_bot(max_runs=1, max_runs_per_character=1, max_runs_per_user=1)
    await fake.slash("generate", character="mascot")
    await review_posted(fake, count=1)
    second = await fake.slash("generate", character="mascot")
    await review_posted(fake, count=2)
    assert len(under_test.execute.reviews) == 2
    card = second.original
    assert card is not None
    assert not any("in line" in text for text in card.history)


async def test_cancel_stops_a_running_run(start_bot: StartBot, fake: fd.FakeDiscord) -> None:
    """/cancel on your own run stops it; its card says cancelled."""
    under_test = await start_bot(script=Script(hold=asyncio.Event()))
    interaction = await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: under_test.execute.started and under_test.execute.started[0])
    cancel = await fake.slash("cancel", run_id=run_id)
    await fake.until(lambda: any("is cancelled" in t for t in cancel.texts()), what="the reply")
    card = interaction.original
    assert card is not None
    await fake.until(lambda: "cancelled" in card.content, what="the card's end")
    run = await under_test.services.store.load_run(run_id)
    assert run is not None
    assert run.state is RunState.CANCELLED


async def test_cancel_takes_a_queued_run_out_of_the_line(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Bob cancels his queued run: its card says cancelled and it never starts, even once the
    run ahead of it is done."""
    hold = asyncio.Event()
    under_test = await start_bot(script=Script(hold=hold), max_runs=1)
    await fake.slash("generate", character="mascot")
    await fake.until(lambda: under_test.execute.started, what="the first run")
    queued = await fake.slash("generate", character="moonlit_tales", user=fd.BOB)
    card = queued.original
    assert card is not None
    await fake.until(lambda: "1st in line" in card.content, what="the queue place")
    [queued_id] = [
        r for r in under_test.services.runner.active() if r not in under_test.execute.started
    ]
    cancel = await fake.slash("cancel", run_id=queued_id, user=fd.BOB)
    await fake.until(lambda: any("is cancelled" in t for t in cancel.texts()), what="the reply")
    await fake.until(lambda: "cancelled" in card.content, what="the card's end")
    hold.set()
    await review_posted(fake)
    assert queued_id not in under_test.execute.started
    run = await under_test.services.store.load_run(queued_id)
    assert run is not None
    assert run.state is RunState.CANCELLED


async def test_someone_elses_run_cannot_be_cancelled(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Bob cannot cancel Alice's run; an admin can."""
    under_test = await start_bot(script=Script(hold=asyncio.Event()))
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: under_test.execute.started and under_test.execute.started[0])
    refused = await fake.slash("cancel", run_id=run_id, user=fd.BOB)
    await fake.until(lambda: any("not yours" in text for text in refused.texts()), what="refusal")
    done = await fake.slash("cancel", run_id=run_id, user=fd.CAROL)
    await fake.until(lambda: any("is cancelled" in t for t in done.texts()), what="the reply")


async def test_cancel_ends_a_run_no_process_is_running(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore
) -> None:
    """An admin's /cancel of a run that a stop left half done (the command line's, so no
    one resumed it) saves it as cancelled; it never starts."""
    left = replace(Run.new(Job("mascot", requested_by="cli")), state=RunState.GENERATED)
    await sqlite_store.save_run(left)
    under_test = await start_bot()
    done = await fake.slash("cancel", run_id=left.id, user=fd.CAROL)
    await fake.until(lambda: any("is cancelled" in t for t in done.texts()), what="the reply")
    run = await sqlite_store.load_run(left.id)
    assert run is not None
    assert run.state is RunState.CANCELLED
    assert under_test.execute.started == []


async def test_an_unknown_character_gets_a_short_private_sentence(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """/generate for a missing character answers only the asker, with the close names and not
    the whole list; nothing is said in the channel and no run starts."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", character="mascott")
    assert interaction.response is not None
    assert interaction.response["type"] == 4  # answered at once, not deferred
    reply = interaction.reply
    assert reply is not None
    assert reply.ephemeral
    assert reply.content == "no character named 'mascott'; did you mean mascot?"
    assert interaction.followups == []
    assert under_test.execute.started == []


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"character": "mascot", "type": "text2video"},
         "mascot cannot make text2video: it names no workflow for text2video; it can make "
         "text2img, text2image2image"),
        ({"character": "mascot", "prompt": "a fox\x07"},
         "The prompt holds a control character (U+0007); write plain text."),
        ({"character": "nobody"}, "no character named 'nobody'; pick one offered as you type."),
    ],
    ids=["type-it-cannot-make", "bad-prompt", "no-such-character"],
)  # fmt: skip
async def test_every_generate_refusal_is_seen_only_by_the_asker(
    start_bot: StartBot, fake: fd.FakeDiscord, options: dict[str, Any], said: str
) -> None:
    """A refused /generate is answered with one private sentence before anything public is
    posted (a public "thinking" message would turn the refusal public), and no run is made."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", **options)
    assert interaction.response is not None
    assert interaction.response["type"] == 4
    reply = interaction.reply
    assert reply is not None
    assert (reply.ephemeral, reply.content) == (True, said)
    assert [m for m in fake.messages.values() if not m.ephemeral] == []
    assert await under_test.services.store.list_runs() == []


async def test_the_type_option_offers_what_the_chosen_character_can_make(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """With mascot chosen, `type` offers only mascot's types; before a character is chosen,
    every type."""
    await start_bot()
    offered = await fake.autocomplete("generate", "type", character="mascot", type="")
    assert [c["value"] for c in offered] == ["text2img", "text2image2image"]
    offered = await fake.autocomplete("generate", "type", type="video")
    assert [c["value"] for c in offered] == ["text2video", "text2image2video"]


async def test_a_failed_run_says_where_and_why_and_retry_resumes_it(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A failure shows the step and a safe reason with the run id; /retry runs it again."""
    script = Script(fail_with="ComfyUI did not answer.")
    under_test = await start_bot(script=script)
    interaction = await fake.slash("generate", character="mascot")
    card = interaction.original
    assert card is not None
    await fake.until(lambda: "failed at generate" in card.content, what="the failure")
    run_id = under_test.execute.started[0]
    assert "ComfyUI did not answer." in card.content
    assert f"/retry {run_id}" in card.content
    script.fail_with = None
    retry = await fake.slash("retry", run_id=run_id)
    await review_posted(fake)
    retried = retry.original
    assert retried is not None
    await fake.until(lambda: "review" in retried.content, what="the retried run's card")


async def test_a_member_without_the_generate_role_is_refused(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Mallory (no role) is told she needs the generate role; no run starts."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", character="mascot", user=fd.MALLORY)
    assert interaction.original is not None
    assert interaction.original.ephemeral
    assert "need the generate role" in interaction.original.content
    assert under_test.execute.started == []


async def test_runs_lists_active_and_recent_runs(start_bot: StartBot, fake: fd.FakeDiscord) -> None:
    """/runs shows a running run with its id."""
    under_test = await start_bot(script=Script(hold=asyncio.Event()))
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: under_test.execute.started and under_test.execute.started[0])
    listing = await fake.slash("runs")
    reply = listing.original
    assert reply is not None
    assert reply.ephemeral
    await fake.until(lambda: f"`{run_id}` mascot" in reply.content, what="the listing")
    assert "running" in reply.content


async def test_reload_reports_the_characters(start_bot: StartBot, fake: fd.FakeDiscord) -> None:
    """An admin's /reload lists the characters it found."""
    await start_bot()
    reply = await fake.slash("reload", user=fd.CAROL)
    await fake.until(lambda: reply.reply, what="the reload reply")
    assert reply.reply is not None
    assert reply.reply.ephemeral
    assert "mascot" in reply.reply.content


async def test_commands_are_synced_only_when_they_changed(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A restart with the same commands does not sync them again."""
    first = await start_bot()
    await first.stop()
    await start_bot()
    assert fake.command_syncs == [fd.GUILD_ID]


async def test_retry_of_a_run_its_character_can_no_longer_make_is_refused_privately(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """/retry of a run whose type has no workflow now answers one private sentence; nothing
    public is posted and the run does not start (it would only fail again)."""
    from pipeline.models import Job, Run, RunFailure

    under_test = await start_bot()
    failed = Run.new(
        Job("mascot", requested_by=f"discord:{fd.ALICE.id}", generation_type="text2video")
    ).advance(
        RunState.FAILED, failure=RunFailure(state=RunState.CREATED, message="an unexpected error")
    )
    await under_test.services.store.save_run(failed)
    retry = await fake.slash("retry", run_id=failed.id)
    reply = retry.reply
    assert reply is not None
    assert (reply.ephemeral, reply.content) == (
        True,
        "mascot cannot make text2video: it names no workflow for text2video; it can make "
        "text2img, text2image2image",
    )
    assert under_test.execute.started == []


_UNCERTAIN = (
    Platform.TWITTER,
    PostState.UNCERTAIN,
    "may or may not be online: look at the test account on X; it is not posted again by itself",
)
_GAVE_UP = (
    Platform.INSTAGRAM,
    PostState.FAILED,
    "Instagram is busy. Gave up after 4 tries; nothing retries it by itself",
)


@pytest.mark.parametrize(
    ("posts", "says", "never"),
    [
        pytest.param(
            (_UNCERTAIN,),
            ["twitter: uncertain · may or may not be online", "`/retry RUN` changes nothing"],
            ["resumes it", "tries twitter again"],
            id="uncertain",
        ),
        pytest.param(
            (_GAVE_UP,),
            ["instagram: failed · Instagram is busy", "`/retry RUN` tries instagram again"],
            ["resumes it", "changes nothing"],
            id="failed",
        ),
        pytest.param(
            (_GAVE_UP, _UNCERTAIN),
            ["`/retry RUN` tries instagram again", "A retry leaves twitter alone:"],
            ["resumes it", "changes nothing"],
            id="failed-and-uncertain",
        ),
    ],
)
async def test_a_run_failed_at_publishing_says_what_a_retry_does_to_each_post(
    start_bot: StartBot,
    fake: fd.FakeDiscord,
    posts: tuple[tuple[Platform, PostState, str], ...],
    says: list[str],
    never: list[str],
) -> None:
    """Approved, a post ends failed or uncertain: the card and the notice name each post with
    its reason and say what `/retry` will do to it (try a failed one again; an uncertain one
    never, it waits for a person)."""
    under_test = await start_bot(script=Script(posts=posts))
    card = (await fake.slash("generate", character="mascot")).original
    assert card is not None
    [review] = await review_posted(fake)
    await fake.react(review, "\N{WHITE HEAVY CHECK MARK}", fd.ALICE)
    await fake.until(lambda: "failed at publish" in card.content, what="the card's outcome")
    run_id = under_test.execute.started[0]

    def failed_notice() -> str | None:
        texts = [m.content for m in fake.channel_messages(fd.NOTIFY_CHANNEL)]
        return next((text for text in texts if "failed at publish" in text), None)

    notice = await fake.until(failed_notice, what="the failure notice")
    for text in (card.content, notice):
        for expected in says:
            assert expected.replace("RUN", run_id) in text
        for wrong in never:
            assert wrong not in text


async def test_retry_of_a_run_whose_only_unposted_post_is_uncertain_is_refused_privately(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """/retry of a run that failed at publishing with only an uncertain post left answers
    privately that a retry changes nothing and what a person does instead; nothing starts."""
    from pipeline.models import Job, PostRecord, Run, RunFailure

    under_test = await start_bot()
    failed = Run.new(Job("mascot", requested_by=f"discord:{fd.ALICE.id}")).advance(
        RunState.FAILED,
        failure=RunFailure(state=RunState.PUBLISHING, message="not posted: twitter (uncertain)"),
    )
    store = under_test.services.store
    await store.save_run(failed)
    await store.record_post(PostRecord(failed.id, Platform.TWITTER, "test", PostState.UNCERTAIN))
    retry = await fake.slash("retry", run_id=failed.id)
    reply = retry.reply
    assert reply is not None
    assert reply.ephemeral
    assert reply.content.startswith(
        f"Run {failed.id} failed at publishing. `/retry {failed.id}` changes nothing: the "
        "twitter post may be online already, so it is never posted again by itself."
    )
    assert "sets the post's record to posted if it is there, else to failed" in reply.content
    assert under_test.execute.started == []
