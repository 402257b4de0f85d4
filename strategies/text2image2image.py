"""text2image2image: draw, keep the best `keep_top` by score (or a person's pick between the
stages), refine them with image-to-image."""

from __future__ import annotations

from strategies.base import Generated, Needs, Stage, StrategyContext, finals, pick_and_keep
from strategies.image2image import refine
from strategies.text2img import draw


class Text2Image2Image:
    name = "text2image2image"
    needs = Needs(
        stages=(Stage("first_stage", borrows="text2img"), Stage("second_stage")),
        pick_after="first_stage",
    )

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        drafts = await draw(ctx, "first_stage")
        best = await pick_and_keep(ctx, drafts, stage="first_stage")
        refined = await refine(ctx, "second_stage", [(path, index) for path, index, _ in best])
        return await finals(ctx, refined)
