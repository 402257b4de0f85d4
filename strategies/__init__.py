"""Generation strategies: how descriptions become media on ComfyUI.

Never imports `pipeline`: what a strategy needs it declares as a Protocol in `strategies.base`.
"""

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
