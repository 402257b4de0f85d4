"""The review marker: the custom_id a review message's button carries, read back after a restart."""

from __future__ import annotations

from datetime import UTC, datetime

import discord
import pytest

from bot.marker import MarkerView, ReviewMarker, marker_of

DEADLINE = datetime(2026, 12, 3, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "marker",
    [
        ReviewMarker("3f2a9c0d1e2b", 1, 1, DEADLINE),
        ReviewMarker("3f2a9c0d1e2b", 2, 3, DEADLINE),
        ReviewMarker("second000001", 1, 1, None),
        ReviewMarker("3f2a9c0d1e2b", 2, 2, DEADLINE, closed=True),
    ],
    ids=["one-part", "middle-part", "no-deadline", "closed"],
)
async def test_a_marker_reads_back_from_the_message_it_was_posted_on(
    marker: ReviewMarker,
) -> None:
    """What the bot wrote into a review message's button is what it reads after a restart."""
    payload = MarkerView(marker).to_components()
    message_components = [discord.ActionRow(row) for row in payload]  # type: ignore[arg-type]
    assert marker_of(message_components) == marker
    assert len(marker.custom_id) <= 100  # Discord's limit on a custom_id


@pytest.mark.parametrize(
    "custom_id",
    [
        "mo:caption:3f2a9c0d1e2b",
        "mo:review:2:3f2a9c0d1e2b:1:1:1796000000",
        "mo:review:1:3f2a9c0d1e2b:3:2:1796000000",
        "mo:review:1:3f2a9c0d1e2b:0:2:1796000000",
        "mo:review:1:3f2a:9c:1:1:1796000000",
        "mo:review:1:3f2a9c0d1e2b:1:1:soon",
    ],
    ids=[
        "legacy-caption",
        "unknown-version",
        "part-past-parts",
        "part-zero",
        "colon-in-id",
        "bad-deadline",
    ],
)
def test_anything_else_is_not_a_marker(custom_id: str) -> None:
    """A button the bot did not write as a review marker is never taken for one."""
    assert ReviewMarker.parse(custom_id) is None


async def test_only_the_last_part_offers_edit_caption() -> None:
    """Earlier parts of a long review show a greyed "Part 1 of 2"; the last one "Edit caption"."""
    [[first]] = [
        row["components"]
        for row in MarkerView(ReviewMarker("ab12", 1, 2, DEADLINE)).to_components()
    ]
    [[last]] = [
        row["components"]
        for row in MarkerView(ReviewMarker("ab12", 2, 2, DEADLINE)).to_components()
    ]
    assert (first["label"], first["disabled"]) == ("Part 1 of 2", True)
    assert (last["label"], last["disabled"]) == ("Edit caption", False)


def test_a_pick_between_stages_has_its_own_marker() -> None:
    """A pick's marker reads back as itself and is never taken for a final review's."""
    from datetime import UTC, datetime

    from bot.marker import PickMarker, ReviewMarker

    marker = PickMarker("abc123", 1, 2, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert PickMarker.parse(marker.custom_id) == marker
    assert ReviewMarker.parse(marker.custom_id) is None
    assert PickMarker.parse(ReviewMarker("abc123", 1, 2, None).custom_id) is None
