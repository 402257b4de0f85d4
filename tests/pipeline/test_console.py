"""The terminal's reviewer: an answer typed approves or rejects; standard input that ends
first (cron, a pipe, Ctrl-D) leaves the run awaiting review instead of failing it."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.console import ConsoleReviewer
from pipeline.errors import ReviewUnavailable
from pipeline.models import (
    ActionKind,
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
    assert isinstance(decision, Decision)
    assert (decision.approved, decision.selected) == (approved, selected)


def offering(*kinds: ActionKind) -> tuple[Run, ReviewTicket]:
    """A review of attempt 2 whose first file is attempt 1's: numbers count the shown set."""
    run, ticket = in_review()
    media = (MediaItem("old.png", MediaKind.IMAGE, 0), *(replace(m, attempt=2) for m in run.media))
    return replace(run, media=media, attempt=2, offers=kinds), ticket


ALL = (ActionKind.REROLL, ActionKind.MORE_LIKE, ActionKind.UPSCALE)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("r\n", ReviewAction(ActionKind.REROLL, by="console", at=utcnow())),
        ("m 2\n", ReviewAction(ActionKind.MORE_LIKE, by="console", at=utcnow(), index=2)),
        ("u 1\n", Decision(True, (1,), by="console", at=utcnow(), upscale=True)),
        ("3\n", Decision(True, (3,), by="console", at=utcnow())),
    ],
    ids=["reroll", "more-like-2", "upscale-1", "number-of-the-shown-set"],
)
async def test_the_console_offers_the_review_actions(typed: str, expected: object) -> None:
    """r rerolls, m N asks for more like N, u N approves N upscaled; numbers count the files
    shown (the current attempt's), and the question names the actions."""
    run, ticket = offering(*ALL)
    out = io.StringIO()
    answer = await ConsoleReviewer(out, stdin=io.StringIO(typed)).wait(run, ticket)
    assert replace(answer, at=expected.at) == expected  # type: ignore[attr-defined]
    assert "r = reroll / m N = more like N / u [numbers] = approve and upscale" in out.getvalue()


async def test_an_action_the_review_does_not_offer_is_asked_again() -> None:
    """u without an upscale workflow is not taken as a rejection: the console asks again."""
    run, ticket = offering(ActionKind.REROLL)
    out = io.StringIO()
    answer = await ConsoleReviewer(out, stdin=io.StringIO("u\ny\n")).wait(run, ticket)
    assert isinstance(answer, Decision)
    assert answer.approved
    assert answer.selected == (1, 2, 3)
    assert "cannot do that" in out.getvalue()


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
