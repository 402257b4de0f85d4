"""text2image2video: draw stills, keep the best `keep_top` by score, animate them to video."""

from __future__ import annotations

from strategies.base import (
    Generated,
    Needs,
    Stage,
    StrategyContext,
    Unit,
    finals,
    prepare,
    run_units,
    score_and_keep,
)
from strategies.media import MediaKind
from strategies.text2img import draw


class Text2Image2Video:
    name = "text2image2video"
    needs = Needs(
        stages=(Stage("first_stage", borrows="text2img"), Stage("second_stage", video=True))
    )

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        stills = await draw(ctx, "first_stage")
        best = await score_and_keep(ctx, stills, ctx.keep_top, stage="first_stage")
        params = ctx.stages["second_stage"]
        units = [
            Unit(
                key=f"second_stage-i{number}-v{take}",
                stage="second_stage",
                description_index=index,
                workflow=prepare(
                    params, ctx.rng, prompt=ctx.descriptions[index], negative=ctx.negative
                ),
                images={"Input Image": still},
            )
            for number, (still, index, _) in enumerate(best)
            for take in range(params.per_input)
        ]
        files = await run_units(ctx, units)
        made = [(path, unit.description_index) for unit in units for path in files[unit.key]]
        return await finals(ctx, made, only=MediaKind.VIDEO)
