"""The terminal's reviewer: an answer typed approves or rejects; standard input that ends
first (cron, a pipe, Ctrl-D) leaves the run awaiting review instead of failing it."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from pipeline.console import ConsoleReviewer
from pipeline.errors import ReviewUnavailable
from pipeline.models import Job, MediaItem, MediaKind, ReviewTicket, Run, RunState, utcnow


def in_review() -> tuple[Run, ReviewTicket]:
    media = tuple(MediaItem(f"{n}.png", MediaKind.IMAGE, 0) for n in range(3))
    run = Run.new(Job("mascot")).advance(RunState.AWAITING_REVIEW, media=media)
    return run, ReviewTicket(channel_id=0, message_ids=(), posted_at=utcnow())


@pytest.mark.parametrize(
    ("typed", "approved", "selected"),
    [("y\n", True, (0, 1, 2)), ("1 3\n", True, (0, 2)), ("n\n", False, ())],
    ids=["all", "numbers", "no"],
)
async def test_a_typed_answer_is_the_decision(
    typed: str, approved: bool, selected: tuple[int, ...]
) -> None:
    """y approves every kept file, numbers pick files, n rejects."""
    run, ticket = in_review()
    reviewer = ConsoleReviewer(io.StringIO(), stdin=io.StringIO(typed))
    decision = await reviewer.wait(run, ticket)
    assert (decision.approved, decision.selected) == (approved, selected)


async def test_input_that_ends_before_an_answer_leaves_the_review_open() -> None:
    """At the end of standard input the reviewer says it cannot answer (ReviewUnavailable),
    which leaves the run awaiting review; it never raises EOFError."""
    run, ticket = in_review()
    out = io.StringIO()
    with pytest.raises(ReviewUnavailable) as ended:
        await ConsoleReviewer(out, stdin=io.StringIO("")).wait(run, ticket)
    assert ended.value.user_message == "standard input ended before the review was answered"
    assert out.getvalue().startswith("Approve?")


async def test_a_sticker_pack_is_shown_with_its_names_and_contact_sheet(tmp_path: Path) -> None:
    """In the terminal each sticker's line carries its name, and the contact sheet's path is
    given to open."""
    from PIL import Image

    from pipeline.models import Sticker

    for n in range(2):
        Image.new("RGBA", (320, 320), (200, 0, 0, 255)).save(tmp_path / f"{n}.png")
    media = tuple(MediaItem(f"{n}.png", MediaKind.IMAGE, n) for n in range(2))
    run = Run.new(Job("stickie")).advance(
        RunState.CAPTIONED, media=media, stickers=(Sticker("Wave", "hi"), Sticker("Nap", "zz"))
    )
    out = io.StringIO()
    await ConsoleReviewer(out, stdin=io.StringIO("")).request(run, tmp_path)
    text = out.getvalue()
    assert '"Wave"' in text
    assert '"Nap"' in text
    sheet = tmp_path / "review-previews" / "contact-sheet.png"
    assert f"contact sheet: {sheet}" in text
    with Image.open(sheet) as image:
        assert image.size == (2 * 160, 160 + 22)
