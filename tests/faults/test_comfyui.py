"""ComfyUI faults in a real run: the server down at submit or mid-job, the WebSocket dropped,
a job that stalls, a node that raises, the disk full while its images are saved. Each run ends
failed at a defined step with a safe message (or finishes), keeps its record and finished media,
and a resume completes it without making those media again."""

from __future__ import annotations

import asyncio
import logging

import pytest

from comfy import ComfyPool
from pipeline.models import Job, Run, RunState
from tests.comfy.disk import file_size_limit
from tests.doubles import RecordingSink
from tests.fakes.comfyui import FakeComfyUI
from tests.faults.support import STALL_SECONDS, snapshot
from tests.runs import World
from tests.waiting import until

Comfy = tuple[FakeComfyUI, ComfyPool]


async def assert_failed_and_kept(world: World, run: Run) -> Run:
    """The run failed while generating, with a user-safe message, and is stored so."""
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == "described"  # the step it stood at: generating its media
    assert "ComfyUI" in run.failure.message
    assert "127.0.0.1" not in run.failure.message  # no server address for the user
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.FAILED
    assert stored.failure == run.failure
    assert len(stored.descriptions) == 2  # the language steps are not lost
    return stored


async def start(world: World, job: Job) -> tuple[Run, asyncio.Task[Run]]:
    run = Run.new(job)
    await world.store.save_run(run)
    return run, asyncio.create_task(world.pipeline.execute(run, RecordingSink()))


async def test_comfyui_down_at_submit_fails_the_run_and_resume_finishes_it(
    world: World, comfy: Comfy
) -> None:
    """With ComfyUI not listening the run fails at once, safely; once it is back, resume
    publishes it."""
    fake, _ = comfy
    await fake.go_down()
    run = await world.run(Job("testy", seed=1))
    stored = await assert_failed_and_kept(world, run)
    assert fake.prompts == []
    await fake.come_up()
    done = await world.pipeline.execute(stored)  # at once: not after the pool's retry_after
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) == 2  # one prompt per description


@pytest.mark.timeout(20)
@pytest.mark.parametrize(
    ("restarted", "queued_again"), [(False, 0), (True, 1)], ids=["unreachable", "restarted"]
)
async def test_comfyui_down_mid_job_keeps_the_finished_images(
    world: World, comfy: Comfy, restarted: bool, queued_again: int
) -> None:
    """ComfyUI goes away while the second image job runs: the run fails and the first job's
    images stay. On resume the second job is fetched from ComfyUI's history when the server
    kept it, and queued once more only when a restart made the server forget it."""
    fake, _ = comfy
    fake.job_seconds = 0.3
    run, task = await start(world, Job("testy", seed=2))
    folder = world.folder(run)
    await until(lambda: len(fake.jobs) == 1)
    fake.job_seconds = 1.5  # the second job: long enough to be cut off while it runs,
    fake.steps = 40  # with a progress message every 0.04 s, well inside the stall watchdog
    await until(lambda: (folder / "main-d0" / ".done").is_file() and len(fake.jobs) == 2)
    await fake.go_down()
    failed = await task
    stored = await assert_failed_and_kept(world, failed)
    kept = snapshot(folder)
    assert [name.split("/")[0] for name in kept] == ["main-d0", "main-d0"]
    await fake.wait_idle()
    if restarted:
        fake.history.clear()
    await fake.come_up()
    fake.job_seconds = 0.02
    before = len(fake.prompts)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) - before == queued_again
    assert len(done.media) == 4
    after = snapshot(folder)
    assert {name: after[name] for name in kept} == kept  # the first job's images, untouched


async def test_a_dropped_websocket_reconnects_and_the_run_finishes(
    world: World, comfy: Comfy
) -> None:
    """The WebSocket closes halfway through a job: the client reconnects and the run publishes,
    each image made once."""
    fake, _ = comfy
    fake.job_seconds = 0.2
    fake.faults.drop_ws_mid_job = True
    fake.faults.ws_refuse_seconds = 0.2
    run = await world.run(Job("testy", seed=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert fake.ws_connections >= 2
    assert len(fake.prompts) == 2
    assert len(run.media) == 4


@pytest.mark.timeout(20)
async def test_a_websocket_away_longer_than_the_stall_watchdog_does_not_kill_the_job(
    world: World, comfy: Comfy
) -> None:
    """With the WebSocket refused for longer than the stall timeout, a job that is still
    running is not given up: its result comes through /history and the run publishes."""
    fake, _ = comfy
    fake.job_seconds = 3 * STALL_SECONDS
    fake.steps = 40  # a progress message every 0.05 s while the socket is up
    fake.faults.drop_ws_mid_job = True
    fake.faults.ws_refuse_seconds = 3 * STALL_SECONDS
    run = await world.run(Job("testy", seed=4))
    assert run.state is RunState.PUBLISHED, run.failure
    assert fake.interrupts == []
    assert len(fake.prompts) == 2


@pytest.mark.timeout(20)
async def test_a_stalled_job_times_out_into_a_failed_run(world: World, comfy: Comfy) -> None:
    """A job that never finishes is given up after the stall timeout (interrupted on the
    server); the run fails instead of hanging, and resume redoes only that job."""
    fake, _ = comfy
    fake.job_seconds = 0.2
    run, task = await start(world, Job("testy", seed=5))
    await until(lambda: len(fake.jobs) == 1)
    fake.faults.stall_next = True  # the second job goes silent
    failed = await asyncio.wait_for(task, timeout=10 * STALL_SECONDS + 5)
    stored = await assert_failed_and_kept(world, failed)
    assert fake.interrupts  # the stalled prompt was taken off the GPU
    folder = world.folder(run)
    kept = snapshot(folder)
    assert [name.split("/")[0] for name in kept] == ["main-d0", "main-d0"]
    before = len(fake.prompts)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) - before == 1
    after = snapshot(folder)
    assert {name: after[name] for name in kept} == kept


async def test_a_node_error_names_the_node_in_the_log_and_not_the_server_paths_to_the_user(
    world: World, comfy: Comfy, caplog: pytest.LogCaptureFixture
) -> None:
    """An execution_error fails the run: the log names the node, the user's message holds no
    server path or traceback; resume after the node is fixed publishes."""
    fake, _ = comfy
    fake.faults.fail_class = "VAEDecode"
    with caplog.at_level(logging.WARNING):
        run = await world.run(Job("testy", seed=6))
    stored = await assert_failed_and_kept(world, run)
    assert run.failure is not None
    assert "/srv/comfyui" not in run.failure.message
    assert "Saving image" not in run.failure.message
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "VAEDecode" in logged
    assert run.id in logged
    fake.faults.fail_class = None
    before = len(fake.prompts)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) - before == 2


async def test_a_full_disk_while_downloading_fails_the_run_naming_the_folder(
    world: World, comfy: Comfy, caplog: pytest.LogCaptureFixture
) -> None:
    """The disk fills while ComfyUI's images are saved (an OSError with no file name): the run
    fails at generating, saying which folder and why, with no traceback in the log and no
    partial file; with room again, resume publishes."""
    fake, _ = comfy
    fake.faults.view_endless = True  # the download grows until the disk refuses it
    with caplog.at_level(logging.INFO), file_size_limit(2 * 2**20):
        run = await world.run(Job("testy", seed=7))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == "described"
    assert f"{run.id}/main-d0.partial: file too large" in run.failure.message
    assert run.failure.message.startswith("cannot write the media folder ")
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]
    folder = world.folder(run)
    assert list(folder.rglob("*.png")) == []  # nothing partial
    fake.faults.view_endless = False
    stored = await world.store.load_run(run.id)
    assert stored is not None
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(done.media) == 4


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        (None, "node CheckpointLoaderSimple (4) input ckpt_name: value not in list"),
        (
            {
                "error": {
                    "type": "invalid_prompt",
                    "message": "Cannot execute because node NoSuchNode does not exist.",
                    "details": "Node ID '#4'",
                    "extra_info": {},
                },
                "node_errors": {},
            },
            "Cannot execute because node NoSuchNode does not exist. (Node ID '#4')",
        ),
    ],
    ids=["missing-model", "unknown-node"],
)
async def test_a_workflow_comfyui_refuses_says_why_and_that_retrying_cannot_help(
    world: World, comfy: Comfy, body: dict[str, object] | None, shown: str
) -> None:
    """A workflow ComfyUI refuses (an input it lacks, a node it does not know) fails the run
    at generate with ComfyUI's own reason and says a retry will not help."""
    fake, _ = comfy
    fake.reject_next(body)
    run = await world.run(Job("testy", seed=7))
    stored = await assert_failed_and_kept(world, run)
    assert stored.failure is not None
    assert stored.failure.retryable is False
    assert stored.failure.bad_input is True
    text = stored.failure.describe()
    assert text.startswith("failed at generate: ComfyUI refused the workflow: ")
    assert shown in text
    assert "Retrying will not help" in text
    assert "127.0.0.1" not in text


async def test_a_failed_node_is_named_with_its_class_in_the_runs_failure(
    world: World, comfy: Comfy
) -> None:
    """A node that raises is named (class and id) in the stored failure, at the generate
    step; its server paths stay out of it."""
    fake, _ = comfy
    fake.faults.fail_class = "VAEDecode"
    run = await world.run(Job("testy", seed=8))
    stored = await assert_failed_and_kept(world, run)
    assert stored.failure is not None
    text = stored.failure.describe()
    assert text.startswith("failed at generate: A ComfyUI node failed: node VAEDecode (")
    assert "raised Exception" in text
    assert "/srv/comfyui" not in text
    assert "Retrying will not help" in text
