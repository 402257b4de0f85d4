"""text2video: each description -> `videos_per_description` videos (with the workflow's audio)."""

from __future__ import annotations

from strategies.base import Generated, StrategyContext, Unit, is_video, prepare, relative, run_units


class Text2Video:
    name = "text2video"
    video = True

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        params = ctx.stages["main"]
        # One prompt per video: video workflows rarely batch, and each gets its own seed.
        units = [
            Unit(
                key=f"main-d{index}-v{number}",
                stage="main",
                description_index=index,
                workflow=prepare(params, ctx.rng, prompt=text, negative=ctx.negative),
            )
            for index, text in enumerate(ctx.descriptions)
            for number in range(params.per_description)
        ]
        files = await run_units(ctx, units)
        return [
            Generated(relative(ctx, path), True, unit.description_index, "final")
            for unit in units
            for path in files[unit.key]
            if is_video(path)
        ]
