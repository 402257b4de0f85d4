"""text2img: each description -> `images_per_description` images in one ComfyUI prompt."""

from __future__ import annotations

from pathlib import Path

from strategies.base import (
    MAIN,
    Generated,
    Needs,
    StrategyContext,
    Unit,
    finals,
    prepare,
    run_units,
)


async def draw(ctx: StrategyContext, stage: str) -> list[tuple[Path, int]]:
    """Images for every description with the `stage` parameters; (file, description index)."""
    params = ctx.stages[stage]
    units = [
        Unit(
            key=f"{stage}-d{index}",
            stage=stage,
            description_index=index,
            workflow=prepare(
                params, ctx.rng, prompt=text, negative=ctx.negative, batch=params.per_description
            ),
        )
        for index, text in enumerate(ctx.descriptions)
    ]
    files = await run_units(ctx, units)
    return [(path, unit.description_index) for unit in units for path in files[unit.key]]


class Text2Img:
    name = "text2img"
    needs = Needs()

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        return await finals(ctx, await draw(ctx, MAIN))
