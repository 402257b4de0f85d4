"""Which approved files one post carries: X takes four images or one clip, Instagram ten."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipeline.models import Decision, Job, MediaItem, MediaKind, Platform, Run
from pipeline.publish.service import postable


def approved(kinds: str, selected: tuple[int, ...]) -> Run:
    """A run whose media are `kinds` (i = image, v = video), with `selected` approved."""
    media = tuple(
        MediaItem(path=f"{n}.{'mp4' if k == 'v' else 'png'}",
                  kind=MediaKind.VIDEO if k == "v" else MediaKind.IMAGE, description_index=0)
        for n, k in enumerate(kinds)
    )  # fmt: skip
    run = Run.new(Job(character="fox"))
    decision = Decision(approved=True, selected=selected, by="r", at=datetime.now(UTC))
    return run.advance(run.state, media=media, decision=decision)


@pytest.mark.parametrize(
    ("kinds", "selected", "platform", "posted"),
    [
        ("iiiiii", (0, 1, 2, 3, 4, 5), Platform.TWITTER, (0, 1, 2, 3)),
        ("iiiiii", (0, 1, 2, 3, 4, 5), Platform.INSTAGRAM, (0, 1, 2, 3, 4, 5)),
        ("i" * 12, tuple(range(12)), Platform.INSTAGRAM, tuple(range(10))),
        ("iiii", (3, 1), Platform.TWITTER, (3, 1)),
        ("vv", (0, 1), Platform.TWITTER, (0,)),
        ("vv", (1, 0), Platform.INSTAGRAM, (1,)),
        ("ivi", (0, 1, 2), Platform.TWITTER, (0, 2)),
        ("vi", (0, 1), Platform.INSTAGRAM, (0,)),
    ],
    ids=[
        "x-four-of-six", "ig-all-six", "ig-ten-of-twelve", "reviewer-order", "x-first-clip",
        "ig-first-clip", "images-skip-the-clip", "clip-first-goes-alone",
    ],
)  # fmt: skip
def test_a_post_carries_what_the_platform_takes(
    kinds: str, selected: tuple[int, ...], platform: Platform, posted: tuple[int, ...]
) -> None:
    """Approving more than a platform takes still posts: the first files that fit, in order."""
    assert postable(approved(kinds, selected), platform) == posted
