"""text2video: each description -> `videos_per_description` videos (with the workflow's audio)."""

from __future__ import annotations

from strategies.base import (
    MAIN,
    Generated,
    Needs,
    Stage,
    StrategyContext,
    Unit,
    finals,
    prepare,
    run_units,
)
from strategies.media import MediaKind


class Text2Video:
    name = "text2video"
    needs = Needs(stages=(Stage(MAIN, video=True),))

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        params = ctx.stages[MAIN]
        # One prompt per video: video workflows rarely batch, and each gets its own seed.
        units = [
            Unit(
                key=f"{MAIN}-d{index}-v{number}",
                stage=MAIN,
                description_index=index,
                workflow=prepare(params, ctx.rng, prompt=text, negative=ctx.negative),
            )
            for index, text in enumerate(ctx.descriptions)
            for number in range(params.per_description)
        ]
        files = await run_units(ctx, units)
        made = [(path, unit.description_index) for unit in units for path in files[unit.key]]
        return await finals(ctx, made, only=MediaKind.VIDEO)
