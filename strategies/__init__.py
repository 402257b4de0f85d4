"""Generation strategies: how descriptions become media on ComfyUI.

Never imports `pipeline`: what a strategy needs it declares as a Protocol in `strategies.base`.
`get(name)` returns the registered strategy of that name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strategies.base import Strategy

#: every strategy a character may weight, in the order the README documents them
STRATEGY_NAMES = (
    "text2img",
    "image2image",
    "text2image2image",
    "text2video",
    "text2image2video",
)

#: strategies whose final media are videos
VIDEO_STRATEGIES = frozenset({"text2video", "text2image2video"})

#: strategies with a first and a second stage
TWO_STAGE_STRATEGIES = frozenset({"text2image2image", "text2image2video"})


def stages(name: str) -> tuple[str | None, ...]:
    """The stages of a strategy: ("first_stage", "second_stage") or (None,) for one stage."""
    return ("first_stage", "second_stage") if name in TWO_STAGE_STRATEGIES else (None,)


def get(name: str) -> Strategy:
    """The strategy registered under `name` (KeyError for an unknown one)."""
    from strategies.image2image import Image2Image
    from strategies.text2image2image import Text2Image2Image
    from strategies.text2image2video import Text2Image2Video
    from strategies.text2img import Text2Img
    from strategies.text2video import Text2Video

    registry: dict[str, Strategy] = {
        s.name: s
        for s in (Text2Img(), Image2Image(), Text2Image2Image(), Text2Video(), Text2Image2Video())
    }
    assert tuple(registry) == STRATEGY_NAMES
    return registry[name]
