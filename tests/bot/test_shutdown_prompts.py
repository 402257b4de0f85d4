"""`python -m bot` stopped mid-generation (a deploy): the bot as bot.__main__ wires it leaves
the run's ComfyUI prompts queued or running for the next start's resume to take over."""

from __future__ import annotations

import pytest

from tests.bot.world import World, running_bot
from tests.bot.world import world as world  # the fixture: every fake


@pytest.mark.timeout(40)
async def test_stopping_the_bot_mid_generation_leaves_its_prompts_on_comfyui(
    world: World,
) -> None:
    """Closing the bot while ComfyUI renders a /generate run neither deletes nor interrupts
    the run's prompts: the GPU goes on with them."""
    comfy = world.comfy
    comfy.job_seconds = 3.0
    async with running_bot(world):
        await world.discord.slash("generate", character="fox")
        await world.discord.until(lambda: bool(comfy.jobs), within=20, what="a prompt running")
    assert comfy.prompts
    assert (comfy.deleted, comfy.interrupts) == ([], [])
    assert comfy.jobs[0].ended is None  # still rendering after the bot closed
