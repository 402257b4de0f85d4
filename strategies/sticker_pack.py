"""sticker_pack: one image per listed sticker, its background removed, cut to Discord's format.

Each description (the prompt the language model wrote for one sticker) is drawn once with the
text2img workflow; its background is removed by the `remove_background` workflow on ComfyUI, or
keyed out here; then it becomes `stickers/NN.png` (320x320, under 512 KB; APNG when animated).
A sticker file on disk is never made again, and the ComfyUI units are resumable, so a resumed
run redoes nothing finished. Never imports `pipeline`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from strategies.base import (
    MAIN,
    Generated,
    Needs,
    StickerSetup,
    StrategyContext,
    StrategyError,
    Unit,
    prepare,
    relative,
    run_units,
)
from strategies.media import MediaKind
from strategies.sticker_image import make_sticker

#: where the finished stickers go, inside the run's folder
STICKER_FOLDER = "stickers"


def sticker_file(index: int) -> str:
    """The sticker of description `index`, relative to the run's folder."""
    return f"{STICKER_FOLDER}/{index + 1:02d}.png"


async def _drawn(ctx: StrategyContext) -> list[Path]:
    """One image per description, as drawn (the first file of each prompt)."""
    params = ctx.stages[MAIN]
    units = [
        Unit(
            key=f"{MAIN}-d{index}",
            stage=MAIN,
            description_index=index,
            workflow=prepare(params, ctx.rng, prompt=text, negative=ctx.negative),
        )
        for index, text in enumerate(ctx.descriptions)
    ]
    files = await run_units(ctx, units)
    return [_first(files[unit.key], f"sticker {unit.description_index + 1}") for unit in units]


async def _cut_out(ctx: StrategyContext, setup: StickerSetup, drawn: list[Path]) -> list[Path]:
    """Each drawn image with its background removed by the `remove_background` workflow."""
    params = setup.remove_background
    if params is None:
        raise StrategyError("stickers: background comfyui needs the remove_background workflow")
    units = [
        Unit(
            key=f"background-d{index}",
            stage="background",
            description_index=index,
            workflow=prepare(params, ctx.rng),
            images={"Input Image": image},
        )
        for index, image in enumerate(drawn)
    ]
    files = await run_units(ctx, units)
    return [_first(files[unit.key], f"sticker {unit.description_index + 1}") for unit in units]


def _first(files: list[Path], what: str) -> Path:
    images = [path for path in files if path.suffix.lower() == ".png"]
    if not images:
        raise StrategyError(f"{what}: ComfyUI returned no PNG image")
    return images[0]


class StickerPack:
    name = "sticker_pack"
    needs = Needs(stickers=True)

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        setup = ctx.stickers or StickerSetup()
        targets = [ctx.folder / sticker_file(i) for i in range(len(ctx.descriptions))]
        missing = await asyncio.to_thread(lambda: [not path.is_file() for path in targets])
        if any(missing):
            drawn = await _drawn(ctx)
            key = setup.background != "comfyui"
            sources = drawn if key else await _cut_out(ctx, setup, drawn)
            await asyncio.to_thread((ctx.folder / STICKER_FOLDER).mkdir, exist_ok=True)
            for index, (source, target) in enumerate(zip(sources, targets, strict=True)):
                if missing[index]:
                    await asyncio.to_thread(
                        make_sticker,
                        source,
                        target,
                        what=f"sticker {index + 1}",
                        key=key,
                        tolerance=setup.tolerance,
                        animated=setup.animated,
                    )
        return [
            Generated(relative(ctx, path), MediaKind.IMAGE, index, "final")
            for index, path in enumerate(targets)
        ]
