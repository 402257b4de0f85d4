"""A detached pool (a shutdown): cancelling its jobs leaves their prompts on the server, running
or waiting, and a pool started later takes them over and gets their files."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comfy import ComfyClient, ComfyPool, Workflow
from tests.fakes.comfyui import FakeComfyUI


async def test_a_detached_pools_cancel_leaves_its_prompts_for_the_next_pool(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """After detach, cancelling a running and a waiting job leaves both on ComfyUI: a new pool
    attaches to them and downloads their files, nothing queued twice."""
    fake.job_seconds = 0.3
    async with ComfyPool([fake.url]) as pool:
        running = await pool.submit(text2img, out_dir / "a")
        waiting = await pool.submit(text2img.with_prompt("b"), out_dir / "b")
        pool.detach()
        await running.cancel()
        await waiting.cancel()
    assert fake.deleted == []
    assert fake.interrupts == []
    async with ComfyPool([fake.url], poll_interval=0.05) as later:
        jobs = [
            await later.attach(j.prompt_id, j.out_dir, server=j.server) for j in (running, waiting)
        ]
        assert None not in jobs
        files = [await job.result() for job in jobs if job is not None]
    assert [len(f) for f in files] == [1, 1]
    assert [p.prompt_id for p in fake.prompts] == [running.prompt_id, waiting.prompt_id]


async def test_a_pool_detached_before_it_starts_leaves_its_prompts(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """detach() before `async with` holds for the servers the pool opens."""
    fake.job_seconds = 0.3
    pool = ComfyPool([fake.url])
    pool.detach()
    async with pool:
        job = await pool.submit(text2img, out_dir)
        await job.cancel()
    assert (fake.deleted, fake.interrupts) == ([], [])


async def test_a_detached_submit_cancelled_on_the_way_leaves_the_prompt(
    fake: FakeComfyUI, client: ComfyClient, text2img: Workflow
) -> None:
    """A shutdown landing while the POST is on its way leaves the prompt the server took."""
    fake.job_seconds = 0.3
    await client.connect()
    client.detach()
    submitting = asyncio.create_task(client.submit(text2img))
    while not fake.prompts:  # noqa: ASYNC110 - the fake offers no event for "received"
        await asyncio.sleep(0)
    submitting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submitting
    await fake.wait_idle()
    [sent] = fake.prompts
    assert (fake.deleted, fake.interrupts) == ([], [])
    assert [j.prompt_id for j in fake.jobs] == [sent.prompt_id]


async def test_an_explicit_cancel_still_cancels_after_detach(
    fake: FakeComfyUI, client: ComfyClient, text2img: Workflow
) -> None:
    """detach() spares only the jobs' own cancellation: `client.cancel(id)` still takes it off."""
    fake.job_seconds = 2
    prompt_id = await client.submit(text2img)
    client.detach()
    await client.cancel(prompt_id)
    assert prompt_id in fake.deleted or prompt_id in fake.interrupts
