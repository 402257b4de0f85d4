"""text2image2image: draw, keep the best `keep_top` by score, refine them with image-to-image."""

from __future__ import annotations

from strategies.base import Generated, StrategyContext, is_video, relative, score_and_keep
from strategies.image2image import refine
from strategies.text2img import draw


class Text2Image2Image:
    name = "text2image2image"
    video = False

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        drafts = await draw(ctx, "first_stage")
        best = await score_and_keep(ctx, drafts, ctx.keep_top, stage="first_stage")
        refined = await refine(ctx, "second_stage", [(path, index) for path, index, _ in best])
        return [
            Generated(relative(ctx, path), is_video(path), index, "final")
            for path, index in refined
        ]
