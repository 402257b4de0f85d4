"""Notices: started, in review, published with links, failed with the step and a safe reason."""

from __future__ import annotations

from bot.render import APPROVE
from pipeline.models import RunFailure, RunState
from tests.bot.conftest import StartBot
from tests.doubles import Script
from tests.fakes import discord as fd


async def test_a_run_is_announced_from_start_to_published_with_its_link(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """The notice channel says started (by whom, as a mention), waiting for review, then
    published with the post link."""
    await start_bot()
    await fake.slash("generate", character="mascot")
    review = await fake.until(lambda: fake.channel_messages(fd.REVIEW_CHANNEL), what="review")
    await fake.until(lambda: "\N{CROSS MARK}" in review[-1].reactions, what="the reactions")
    await fake.react(review[-1], APPROVE, fd.ALICE)

    def notices() -> list[str]:
        return [m.content for m in fake.channel_messages(fd.NOTIFY_CHANNEL)]

    await fake.until(lambda: any("published" in n for n in notices()), what="published")
    started, in_review, published = notices()
    assert f"started (asked by <@{fd.ALICE.id}>)" in started
    assert "waiting for review" in in_review
    assert "<https://instagram.fake/p/" in published


async def test_a_failure_notice_names_the_step_and_a_safe_reason_through_the_webhook(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """With a webhook set, the failure comes through it and says where and why, politely."""
    await start_bot(
        script=Script(fail_with="ComfyUI did not answer."),
        discord_notify_webhook_url=fake.webhook_url,
    )
    await fake.slash("generate", character="mascot")

    def failed() -> list[fd.FakeMessage]:
        return [m for m in fake.channel_messages(fd.NOTIFY_CHANNEL) if "failed" in m.content]

    [notice] = await fake.until(failed, what="the failure notice")
    assert notice.webhook_id == fd.WEBHOOK_ID
    assert "failed at generate: ComfyUI did not answer." in notice.content
    assert fd.WEBHOOK_TOKEN not in notice.content


async def test_a_failed_run_shows_its_cause_on_the_card_and_in_the_notice(
    start_bot: StartBot, fake: fd.FakeDiscord
) -> None:
    """A workflow ComfyUI refused: the card and the notice both say the step worked on
    (generate, not the state "described"), ComfyUI's node and message, and that a retry will
    not help until it is fixed."""
    failure = RunFailure(
        state=RunState.DESCRIBED,
        message="ComfyUI refused the workflow",
        cause="node CheckpointLoaderSimple (4) input ckpt_name: value not in list",
        retryable=False,
        bad_input=True,
    )
    await start_bot(script=Script(fail_as=failure))
    interaction = await fake.slash("generate", character="mascot")
    card = interaction.original
    assert card is not None
    shown = (
        "failed at generate: ComfyUI refused the workflow: node CheckpointLoaderSimple (4) "
        "input ckpt_name: value not in list. Retrying will not help until that is fixed."
    )
    await fake.until(lambda: shown in card.content, what="the card's failure")

    def failed() -> list[fd.FakeMessage]:
        return [m for m in fake.channel_messages(fd.NOTIFY_CHANNEL) if "failed" in m.content]

    [notice] = await fake.until(failed, what="the failure notice")
    assert shown in notice.content
    assert "described" not in card.content + notice.content
