"""A narrated run in review: the reviewer reads the script beside the reel, in the message when
it is short and as an attached script.txt when it is long."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.render import APPROVE
from pipeline.models import Run, Scene, Script
from tests.bot.conftest import StartBot
from tests.bot.reviews import candidates
from tests.bot.test_review import post_review
from tests.fakes import discord as fd


def narrated(folder: Path, scenes: int) -> Run:
    run = candidates(folder, 1)
    script = Script(
        tuple(
            Scene(f"Line {n} of the fox's morning, said slowly.", f"a fox, picture {n}")
            for n in range(1, scenes + 1)
        ),
        seconds=45,
        scene_seconds=5,
    )
    return run.advance(run.state, script=script)


async def test_a_short_script_is_shown_in_the_review_message(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Two scenes: their narration and picture are in the review text, nothing extra attached."""
    under_test = await start_bot()
    waiting, [message] = await post_review(under_test, narrated(tmp_path / "r", 2), tmp_path / "r")
    assert "**Script**" in message.content
    assert "1. Line 1 of the fox's morning, said slowly." in message.content
    assert "[a fox, picture 2]" in message.content
    assert [a.filename for a in message.attachments] == ["01-image-01.png"]
    await fake.react(message, APPROVE, fd.ALICE)
    assert await asyncio.wait_for(waiting, 5) is not None


async def test_a_long_script_is_attached_as_a_text_file(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """Thirty scenes do not fit the message: script.txt carries every scene, the text says so."""
    under_test = await start_bot()
    run = narrated(tmp_path / "r", 30)
    waiting, [message] = await post_review(under_test, run, tmp_path / "r")
    names = [a.filename for a in message.attachments]
    assert names == ["01-image-01.png", "script.txt"]
    text = message.attachments[1].data.decode()
    assert run.script is not None
    assert text == run.script.text()
    assert "30. Line 30 of the fox's morning" in text
    assert "attached as script.txt" in message.content
    assert "Line 30" not in message.content
    await fake.react(message, APPROVE, fd.ALICE)
    assert await asyncio.wait_for(waiting, 5) is not None
