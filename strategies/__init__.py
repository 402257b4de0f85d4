"""Generation strategies: how descriptions become media on ComfyUI.

Never imports `pipeline`: what a strategy needs it declares as a Protocol in `strategies.base`.
`get(name)` returns the registered strategy of that name, and `needs(name)` what it declares it
needs (stages, videos, input images): the pipeline asks this and names no strategy itself.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strategies.base import Needs, Strategy

#: every strategy a character may weight, in the order the README documents them
STRATEGY_NAMES = (
    "text2img",
    "image2image",
    "text2image2image",
    "text2video",
    "text2image2video",
    "text2longvideo",
    "sticker_pack",
)

#: the strategy that makes images from an image in one stage: a reviewer's img2img variations
#: ("more like #N") run it from the chosen image, so the pipeline names no strategy itself
IMAGE_FROM_IMAGE = STRATEGY_NAMES[1]


@cache
def _registry() -> dict[str, Strategy]:
    # imported here: the strategies import `strategies.base`, which imports this package first
    from strategies.image2image import Image2Image
    from strategies.sticker_pack import StickerPack
    from strategies.text2image2image import Text2Image2Image
    from strategies.text2image2video import Text2Image2Video
    from strategies.text2img import Text2Img
    from strategies.text2longvideo import Text2LongVideo
    from strategies.text2video import Text2Video

    registry: dict[str, Strategy] = {
        s.name: s
        for s in (
            Text2Img(),
            Image2Image(),
            Text2Image2Image(),
            Text2Video(),
            Text2Image2Video(),
            Text2LongVideo(),
            StickerPack(),
        )
    }
    assert tuple(registry) == STRATEGY_NAMES
    return registry


def get(name: str) -> Strategy:
    """The strategy registered under `name` (KeyError for an unknown one)."""
    return _registry()[name]


def needs(name: str) -> Needs:
    """What the strategy `name` declares it needs (KeyError for an unknown one)."""
    return get(name).needs
