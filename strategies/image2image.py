"""image2image: each input image -> `images_per_input` variations at the character's denoise."""

from __future__ import annotations

from collections.abc import Sequence
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


async def refine(
    ctx: StrategyContext, stage: str, inputs: Sequence[tuple[Path, int]]
) -> list[tuple[Path, int]]:
    """Variations of each (image, description index) with the `stage` parameters."""
    params = ctx.stages[stage]
    units = [
        Unit(
            key=f"{stage}-i{number}",
            stage=stage,
            description_index=index,
            workflow=prepare(
                params,
                ctx.rng,
                prompt=ctx.descriptions[index] if ctx.descriptions else None,
                negative=ctx.negative,
                batch=params.per_input,
                denoise=params.denoise,
            ),
            images={"Input Image": image},
        )
        for number, (image, index) in enumerate(inputs)
    ]
    files = await run_units(ctx, units)
    return [(path, unit.description_index) for unit in units for path in files[unit.key]]


class Image2Image:
    name = "image2image"
    needs = Needs(input_images=True)

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        if not ctx.input_images:
            raise ValueError("image2image needs an input image (from the job or input_dir)")
        count = max(len(ctx.descriptions), 1)
        inputs = [(image, n % count) for n, image in enumerate(ctx.input_images)]
        return await finals(ctx, await refine(ctx, MAIN, inputs))
