"""Slash-command arguments and people who may not act: what a Discord member notices.

The real bot in-process against the fake Discord (tests/bot/conftest.py), runs scripted. Path
traversal, huge or invisible text and mentions get a plain sentence and ping nobody; members
without the configured role, and direct messages, change nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import discord
import pytest

from bot.cogs.generate import PROMPT_LIMIT
from bot.render import APPROVE, NUMBERS, REJECT
from pipeline.models import RunState
from tests.bot.conftest import StartBot
from tests.doubles import Script
from tests.fakes import discord as fd


async def error_reply(interaction: fd.FakeInteraction, fake: fd.FakeDiscord) -> str:
    """The sentence the bot refused a command with, seen only by the member who asked."""
    reply: fd.FakeMessage = await fake.until(lambda: interaction.reply, what="the reply")
    assert reply.ephemeral
    return reply.content


def message_versions(fake: fd.FakeDiscord) -> list[tuple[str, object]]:
    """(content, allowed_mentions) of every version of every message the bot sent."""
    return [
        (content, allowed)
        for message in fake.messages.values()
        if message.author.id == fd.BOT_ID
        for content, allowed in zip(message.history, message.allowed_mentions, strict=True)
    ]


# ---------------------------------------------------------------------------- character names


@pytest.mark.parametrize(
    "name",
    ["../etc/passwd", "/etc/passwd", "mascot/../../x", "..\\..\\mascot", "mascot.yaml",
     "../characters/mascot", "mascot\x00", "~root", "a" * 6000],
    ids=["dotdot", "absolute", "walks-out", "backslashes", "suffix", "relative", "nul", "tilde",
         "6000-chars"],
)  # fmt: skip
async def test_a_character_name_that_is_not_one_of_our_files_is_refused(
    start_bot: StartBot, fake: fd.FakeDiscord, name: str
) -> None:
    """/generate with a path for a character says, privately and briefly, no such character
    (never the whole list of characters), starts nothing, and Discord accepts the reply."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", character=name)
    text = await error_reply(interaction, fake)
    assert text.startswith("no character named ")
    assert "moonlit_tales" not in text
    assert len(text) < 120
    assert under_test.execute.started == []
    assert fake.refused == []


# ---------------------------------------------------------------------------- prompts


async def test_a_prompt_longer_than_the_limit_gets_a_clear_reply(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A 6,000-character prompt (Discord's maximum) is answered with the limit, not a run and
    not a refused message."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", character="mascot", prompt="a fox " * 1000)
    text = await error_reply(interaction, fake)
    assert text == (f"The prompt is 5999 characters long; at most {PROMPT_LIMIT} are allowed.")
    assert under_test.execute.started == []
    assert fake.refused == []


async def test_a_prompt_at_the_limit_starts_a_run(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A prompt of exactly the limit is taken whole."""
    under_test = await start_bot()
    await fake.slash("generate", character="mascot", prompt="x" * PROMPT_LIMIT)
    run_id = await fake.until(lambda: under_test.execute.started and under_test.execute.started[0])
    run = await under_test.services.store.load_run(run_id)
    assert run is not None
    assert run.job.prompt == "x" * PROMPT_LIMIT


async def test_the_prompt_option_tells_the_member_the_limit(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The prompt option's description, shown while typing, names the limit."""
    await start_bot()
    [option] = [o for o in fake.command("generate")["options"] if o["name"] == "prompt"]
    assert f"up to {PROMPT_LIMIT} characters" in option["description"]


@pytest.mark.parametrize(
    ("prompt", "code"),
    [("\x1b[31mred fox", "001B"), ("fox\x00", "0000"), ("a\x7fb", "007F"), ("a\u0085b", "0085")],
    ids=["ansi-escape", "nul", "delete", "c1-next-line"],
)
async def test_control_characters_in_a_prompt_are_refused(
    start_bot: StartBot, fake: fd.FakeDiscord, prompt: str, code: str
) -> None:
    """Invisible control characters in a prompt get a sentence naming the character."""
    under_test = await start_bot()
    interaction = await fake.slash("generate", character="mascot", prompt=prompt)
    text = await error_reply(interaction, fake)
    assert text == f"The prompt holds a control character (U+{code}); write plain text."
    assert under_test.execute.started == []


@pytest.mark.parametrize(
    "run_id",
    ["../../etc/passwd", "x" * 6000, "\x00", "' OR '1'='1"],
    ids=["path", "long", "nul", "sql"],
)
async def test_cancel_with_a_strange_run_id_says_there_is_no_such_run(
    start_bot: StartBot, fake: fd.FakeDiscord, run_id: str
) -> None:
    """/cancel with a run id that is no id of ours answers "no run with id", nothing more."""
    await start_bot()
    interaction = await fake.slash("cancel", run_id=run_id)
    text = await error_reply(interaction, fake)
    assert text.startswith("no run with id ")
    assert len(text) < 100
    assert "Something went wrong" not in text


# ---------------------------------------------------------------------------- mentions

MENTIONS = f"@everyone @here <@{fd.ALICE.id}> <@!{fd.BOB.id}> <@&{fd.REVIEW_ROLE}>"


async def test_mentions_in_names_prompts_captions_and_failures_never_ping(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """@everyone, user and role mentions that members typed (or a model wrote) show as text in
    every message the bot sends, and notify nobody: every message goes with no mentions allowed."""
    script = Script(captions={"instagram": MENTIONS, "twitter": MENTIONS}, fail_with=None)
    under_test = await start_bot(script=script)
    refused = await fake.slash("generate", character=MENTIONS)
    assert MENTIONS[:20] in await error_reply(refused, fake)
    await fake.slash("generate", character="mascot", prompt=MENTIONS)
    run_id = await fake.until(lambda: under_test.execute.reviews and under_test.execute.reviews[0])
    [review] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: REJECT in review.reactions, what="the reactions")
    opened = await fake.click(review, review.custom_ids()[0])
    await fake.submit(opened, {"caption:instagram": MENTIONS, "caption:twitter": MENTIONS})
    await fake.react(review, APPROVE, fd.ALICE)
    assert (await under_test.services.runner.wait(run_id)).state is RunState.PUBLISHED
    script.fail_with = f"ComfyUI said {MENTIONS}"
    await fake.slash("generate", character="mascot")
    await fake.until(
        lambda: any("ComfyUI said" in m.content for m in fake.messages.values()),
        what="the failure notice",
    )

    versions = message_versions(fake)
    assert any("@everyone" in content for content, _ in versions), "the test must show mentions"
    assert [m.id for m in fake.messages.values() if m.pinged] == []
    for content, allowed in versions:
        if content:
            assert allowed == {"parse": []}, f"a message without allowed_mentions none: {content!r}"


async def test_the_bot_allows_no_mentions_by_default(start_bot: StartBot) -> None:
    """The client-wide default is `AllowedMentions.none()`, so a send that forgets to pass it
    still pings nobody."""
    under_test = await start_bot()
    mentions = under_test.bot.allowed_mentions
    assert mentions is not None
    assert mentions.to_dict() == discord.AllowedMentions.none().to_dict()


# ---------------------------------------------------------------------------- who may act


@pytest.mark.parametrize(
    ("command", "options", "role"),
    [
        ("generate", {"character": "mascot"}, "generate"),
        ("runs", {}, "generate"),
        ("cancel", {"run_id": "abc123def456"}, "generate"),
        ("retry", {"run_id": "abc123def456"}, "generate"),
        ("reload", {}, "admin"),
    ],
    ids=["generate", "runs", "cancel", "retry", "reload"],
)
async def test_a_member_without_the_role_is_refused_every_command(
    start_bot: StartBot, fake: fd.FakeDiscord, command: str, options: dict[str, Any], role: str
) -> None:
    """Mallory (no role) is told which role each command needs; nothing runs or changes."""
    under_test = await start_bot()
    interaction = await fake.slash(command, user=fd.MALLORY, **options)
    assert interaction.original is not None
    assert interaction.original.ephemeral
    assert interaction.original.content == f"You need the {role} role for this command."
    assert under_test.execute.started == []


async def test_reload_needs_the_admin_role_not_the_generate_role(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Bob may generate but not administer: /reload tells him so."""
    await start_bot()
    interaction = await fake.slash("reload", user=fd.BOB)
    assert interaction.original is not None
    assert interaction.original.content == "You need the admin role for this command."


async def test_a_non_reviewer_cannot_submit_a_reviewers_caption_form(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Bob sending the caption form Alice opened (a replayed submit) is told only reviewers
    can edit it; the caption stays."""
    under_test = await start_bot()
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: under_test.execute.reviews and under_test.execute.reviews[0])
    [review] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: REJECT in review.reactions, what="the reactions")
    opened = await fake.click(review, review.custom_ids()[0])
    forged = await fake.submit(opened, {"caption:instagram": "Bob was here"}, user=fd.BOB)
    assert forged.original is not None
    assert forged.original.content == "Only reviewers can edit the caption."
    assert under_test.services.reviewer.captions_of(run_id) == Script().captions
    assert all("Bob was here" not in str(e) for e in review.embeds)


async def test_non_reviewer_reactions_given_while_offline_change_nothing(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Bob's ✅ and 1️⃣, given while the bot was down, do not decide the review after the
    restart; Alice's later ✅ still approves every image."""
    first = await start_bot()
    await fake.slash("generate", character="mascot")
    run_id = await fake.until(lambda: first.execute.reviews and first.execute.reviews[0])
    [review] = fake.channel_messages(fd.REVIEW_CHANNEL)
    await fake.until(lambda: REJECT in review.reactions, what="the reactions")
    await first.stop()
    await fake.react(review, NUMBERS[0], fd.BOB, online=False)
    await fake.react(review, APPROVE, fd.MALLORY, online=False)
    second = await start_bot()
    await fake.until(lambda: second.services.reviewer.pending_runs(), what="the re-armed review")
    run = await second.services.store.load_run(run_id)
    assert run is not None
    assert run.state is RunState.AWAITING_REVIEW
    await fake.react(review, APPROVE, fd.ALICE)
    done = await second.services.runner.wait(run_id)
    assert done.decision is not None
    assert done.decision.by == "Alice"  # the review was still open when she approved
    assert done.decision.selected == (0, 1, 2)


# ---------------------------------------------------------------------------- direct messages


async def test_a_command_from_a_direct_message_does_nothing(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """/generate sent from a DM gets no reply and starts no run, even for a member with the
    role (roles exist only in the guild)."""
    under_test = await start_bot()
    before = len(fake.messages)
    interaction = await fake.slash(
        "generate", character="mascot", user=fd.ALICE, channel_id=fd.DM_CHANNEL, answer_within=None
    )
    await fake.barrier()  # answered in the guild: the DM was taken in before it
    assert interaction.response is None
    assert len(fake.messages) == before
    assert under_test.execute.started == []


async def test_a_direct_message_to_the_bot_does_nothing(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Writing "/generate mascot" or mentioning the bot in a DM gets no answer and no run."""
    under_test = await start_bot()
    before = len(fake.requests)
    await fake.direct_message(fd.ALICE, "/generate mascot")
    await fake.direct_message(fd.ALICE, f"<@{fd.BOT_ID}> generate mascot")
    barrier = await fake.barrier()  # answered in the guild: the DMs were taken in before it
    assert [r for r in fake.requests[before:] if f"/interactions/{barrier.id}/" not in r.path] == []
    assert under_test.execute.started == []


async def test_the_commands_are_offered_only_in_the_guild(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """Discord is told the commands work in guild channels only, so DMs do not list them."""
    await start_bot()
    for name in ("generate", "runs", "cancel", "retry", "reload"):
        assert fake.command(name)["contexts"] == [0], name


@pytest.mark.parametrize(
    ("allowed", "pinged"),
    [
        (None, {"everyone", f"user:{fd.ALICE.id}", f"user:{fd.BOB.id}", f"role:{fd.REVIEW_ROLE}"}),
        ({"parse": []}, set()),
        ({"parse": ["users"]}, {f"user:{fd.ALICE.id}", f"user:{fd.BOB.id}"}),
        ({"parse": [], "roles": [str(fd.REVIEW_ROLE)]}, {f"role:{fd.REVIEW_ROLE}"}),
    ],
    ids=["default", "none", "users", "one-role"],
)
def test_the_fake_notifies_as_discord_does(allowed: fd.JSON | None, pinged: set[str]) -> None:
    """The fake's ping rule (which the mention test relies on): without allowed_mentions every
    mention notifies; with it, only what it allows."""
    assert fd.pings(MENTIONS, allowed) == pinged
