"""A restart (a deploy) mid-generation: the runner's shutdown leaves the run's ComfyUI prompts
queued or running, and the resume after it takes them over; a person's cancel still takes them
off (tests/pipeline/test_run.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from comfy import ComfyPool
from pipeline.__main__ import main
from pipeline.models import Job, RunState
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import World
from tests.waiting import until

#: text2img for testy: two descriptions, one prompt each (a batch of two images)
PROMPTS = 2


@pytest.mark.timeout(30)
async def test_a_shutdown_leaves_the_prompts_and_the_resume_takes_them_over(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool], store: SqlStore, project: Path
) -> None:
    """A runner shut down mid-generation leaves its prompts on ComfyUI (the GPU goes on); the
    next start's resume finishes the run with their images and queues nothing new."""
    fake, pool = comfy
    fake.job_seconds = 0.6
    runner = Runner(store, world.pipeline.execute, shutdown_grace=0.0, detach=pool.detach)
    run = await runner.submit(Job("testy", seed=21))
    await until(
        lambda: len(fake.prompts) == PROMPTS and fake.jobs, what="the run's prompts running"
    )
    await runner.shutdown()
    queued = [p.prompt_id for p in fake.prompts]
    assert (fake.deleted, fake.interrupts) == ([], [])
    state = await pool.client(fake.url).queue()
    assert set(queued) <= set(state.running) | set(state.pending) | set(fake.history)
    stopped = await store.load_run(run.id)
    assert stopped is not None
    assert not stopped.state.finished

    async with ComfyPool([fake.url], poll_interval=0.05) as restarted:
        again = World(project, store, restarted)
        resumer = Runner(store, again.pipeline.execute, detach=restarted.detach)
        await resumer.resume(run.id)
        done = await asyncio.wait_for(resumer.wait(run.id), 20)
    assert done.state is RunState.PUBLISHED, done.failure
    assert [p.prompt_id for p in fake.prompts] == queued
    assert sorted(j.prompt_id for j in fake.jobs) == sorted(queued)
    assert len(done.media) == 2 * PROMPTS
    assert all((again.folder(done) / item.path).is_file() for item in done.media)


@pytest.mark.timeout(30)
async def test_cancel_from_the_terminal_takes_the_left_prompts_off_comfyui(
    world: World,
    comfy: tuple[FakeComfyUI, ComfyPool],
    store: SqlStore,
    store_url: str,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run a shutdown left on ComfyUI, cancelled with `python -m pipeline cancel`, stops
    costing GPU time: its running prompt is interrupted and its waiting one deleted."""
    fake, pool = comfy
    fake.job_seconds = 5.0  # still at work when the cancel comes
    runner = Runner(store, world.pipeline.execute, shutdown_grace=0.0, detach=pool.detach)
    run = await runner.submit(Job("testy", seed=22))
    await until(
        lambda: len(fake.prompts) == PROMPTS and fake.jobs, what="the run's prompts running"
    )
    await runner.shutdown()
    running, waiting = fake.jobs[0].prompt_id, fake.prompts[1].prompt_id
    for name, value in {
        "DATABASE_URL": store_url,
        "COMFYUI_SERVERS": fake.url,
        "CHARACTERS_DIR": str(project / "characters"),
        "DATA_DIR": str(project / "data"),
    }.items():
        monkeypatch.setenv(name, value)

    code = await asyncio.to_thread(main, ["cancel", run.id])  # its own loop, as from a shell

    assert code == 0
    assert fake.interrupts == [running]
    assert fake.deleted == [waiting]
    cancelled = await store.load_run(run.id)
    assert cancelled is not None
    assert cancelled.state is RunState.CANCELLED
