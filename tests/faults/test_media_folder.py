"""The media folder cannot be written, in a real run.

Tests run as root, and root writes through any mode bits (CAP_DAC_OVERRIDE), so `chmod a-w`
proves nothing here; a read-only mount needs privileges a test does not have. What fails for
every user is a path through a *file*: the character's output folder (or a job's download
folder) is a plain file, as after a stray copy or a volume that did not mount. The kernel then
answers ENOTDIR / EEXIST, the same OSError-with-a-file-name path that EACCES, EROFS and ENOSPC
take. The run must fail while generating, naming the folder, and lose nothing else.
"""

from __future__ import annotations

import asyncio
import shutil

from comfy import ComfyPool
from pipeline.models import Job, Run, RunState
from tests.doubles import RecordingSink
from tests.fakes.comfyui import FakeComfyUI
from tests.faults.support import snapshot, until
from tests.runs import World

Comfy = tuple[FakeComfyUI, ComfyPool]


async def assert_failed_naming(world: World, run: Run, folder: str) -> Run:
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.step == "described"  # the step it stood at: generating its media
    assert folder in run.failure.message
    assert "Traceback" not in run.failure.message
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.FAILED
    assert stored.failure == run.failure
    assert len(stored.descriptions) == 2
    return stored


async def test_an_output_folder_that_is_a_file_fails_the_run_naming_it(
    world: World, comfy: Comfy
) -> None:
    """The character's output folder is a file: the run fails before any ComfyUI job, saying
    which folder; once it is a folder again, resume publishes."""
    fake, _ = comfy
    blocked = world.characters.load("testy").output_dir
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.write_text("not a folder")
    run = await world.run(Job("testy", seed=1))
    stored = await assert_failed_naming(world, run, "output/testy")
    assert fake.prompts == []
    blocked.unlink()
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(done.media) == 4


async def test_a_download_folder_blocked_mid_run_keeps_the_finished_images(
    world: World, comfy: Comfy
) -> None:
    """The second job's download folder turns into a file while the first job runs: the run
    fails naming it, the first job's images stay, and resume downloads the second from
    ComfyUI's history without queueing anything again."""
    fake, _ = comfy
    fake.job_seconds = 0.3
    run = Run.new(Job("testy", seed=2))
    await world.store.save_run(run)
    task = asyncio.create_task(world.pipeline.execute(run, RecordingSink()))
    folder = world.folder(run)
    partial = folder / "main-d1.partial"
    await until(lambda: partial.is_dir() and len(fake.jobs) == 1)
    shutil.rmtree(partial)
    partial.write_text("not a folder")
    failed = await task
    stored = await assert_failed_naming(world, failed, f"{run.id}/main-d1.partial")
    kept = snapshot(folder)
    assert [name.split("/")[0] for name in kept] == ["main-d0", "main-d0"]
    partial.unlink()
    await fake.wait_idle()
    fake.job_seconds = 0.02
    before = len(fake.prompts)
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) == before
    assert len(done.media) == 4
    after = snapshot(folder)
    assert {name: after[name] for name in kept} == kept
