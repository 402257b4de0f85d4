"""The media folder cannot be written, in a real run.

Tests run as root, and root writes through any mode bits (CAP_DAC_OVERRIDE), so `chmod a-w`
proves nothing here; a read-only mount needs privileges a test does not have. What fails for
every user is a path through a *file*: the character's output folder (or a job's download
folder) is a plain file, as after a stray copy or a volume that did not mount. The kernel then
answers ENOTDIR / EEXIST, the same OSError-with-a-file-name path that EACCES, EROFS and ENOSPC
take. The run must fail while generating, naming the folder, and lose nothing else. A full
disk is the kernel's /dev/full linked where the pipeline writes one file.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import shutil
import socket
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from comfy import ComfyPool
from pipeline.errors import disk_reason
from pipeline.models import Job, Platform, Run, RunState
from pipeline.publish.media import fitted_stem
from tests.doubles import RecordingSink
from tests.fakes.comfyui import FakeComfyUI
from tests.faults.support import snapshot
from tests.runs import World
from tests.waiting import until

Comfy = tuple[FakeComfyUI, ComfyPool]


async def assert_failed_naming(world: World, run: Run, folder: str) -> Run:
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == "described"  # the step it stood at: generating its media
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


# ---------------------------------------------------------------------------- a full disk
# /dev/full is the kernel's own full disk: every write to it fails with ENOSPC, for root too.
# A link to it where the pipeline writes a file makes that one write meet a full disk, with
# the errno, and no file name, that a real full disk gives a write.


def full_at(path: Path) -> None:
    """The next write of `path` meets a full disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")


def no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing below DEBUG carries a traceback."""
    shown = [r for r in caplog.records if r.levelno > logging.DEBUG]
    assert [r.getMessage() for r in shown if r.exc_info or "Traceback" in r.getMessage()] == []


async def test_a_full_disk_while_noting_the_units_fails_the_run_naming_the_folder(
    world: World, comfy: Comfy, caplog: pytest.LogCaptureFixture
) -> None:
    """units.json cannot be written (no space left): the run fails at its step with one
    sentence naming the run folder and the reason, nothing is queued on ComfyUI, no
    traceback is logged; with space again, resume publishes."""
    fake, _ = comfy
    run = Run.new(Job("testy", seed=3))
    await world.store.save_run(run)
    folder = world.folder(run)
    full_at(folder / "units.tmp")  # the journal's temporary file before its rename
    with caplog.at_level(logging.INFO):
        failed = await world.pipeline.execute(run, RecordingSink())
    stored = await assert_failed_naming(world, failed, f"output/testy/{run.id}")
    assert stored.failure is not None
    assert "no space left on device" in stored.failure.message
    assert "can be resumed" in stored.failure.message
    assert fake.prompts == []
    no_traceback(caplog)
    (folder / "units.tmp").unlink()
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure


async def test_a_full_disk_while_fitting_media_for_a_platform_keeps_the_run(
    world: World, comfy: Comfy, caplog: pytest.LogCaptureFixture
) -> None:
    """The copy fitted for Instagram cannot be written (no space left): the run fails
    before review naming the folder of the fitted copies and the reason, no half-written
    copy is left, its media stay, and resume carries it on without new ComfyUI work."""
    fake, _ = comfy
    run = Run.new(Job("testy", seed=4))
    await world.store.save_run(run)
    folder = world.folder(run)
    full_at(fitted_stem(folder, Platform.INSTAGRAM, 0).with_suffix(".jpg.part"))
    with caplog.at_level(logging.INFO):
        failed = await world.pipeline.execute(run, RecordingSink())
    assert failed.state is RunState.FAILED
    assert failed.failure is not None
    assert failed.failure.state == "captioned"  # the step that fits and asks for review
    assert failed.failure.message.startswith(
        f"cannot write output/testy/{run.id}/fitted/instagram: no space left on device"
    )
    no_traceback(caplog)
    media = snapshot(folder)
    assert len(media) == 4
    prompts = len(fake.prompts)
    # the half-written copy is gone (here: the link to the full disk), so there is room again
    assert not fitted_stem(folder, Platform.INSTAGRAM, 0).with_suffix(".jpg.part").exists()
    done = await world.pipeline.execute(failed)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) == prompts


def _enospc() -> OSError:
    try:
        with open("/dev/full", "wb") as full:  # noqa: PTH123
            full.write(b"x")
    except OSError as exc:
        return exc
    raise AssertionError("/dev/full took a write")


def _refused() -> OSError:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, never listening: connect is refused
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        except OSError as exc:
            return exc
    raise AssertionError("nothing should listen there")


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_enospc, "no space left on device"),
        (lambda: NotADirectoryError(errno.ENOTDIR, "Not a directory", "out/x"),
         "a part of the path is a file, not a folder"),
        (lambda: OSError(errno.EROFS, "Read-only file system"), "read-only file system"),
        (lambda: OSError(errno.EDQUOT, "Disk quota exceeded"), "disk quota exceeded"),
        (_refused, None),
        (lambda: TimeoutError(), None),
        (lambda: aiohttp.ClientOSError(errno.EACCES, "Permission denied"), None),
        (lambda: OSError(errno.EACCES, "Permission denied"), None),  # no file: a socket's
    ],
    ids=["enospc", "enotdir", "erofs", "quota", "refused", "timeout", "aiohttp", "bare-eacces"],
)  # fmt: skip
def test_a_disk_error_is_never_taken_for_a_network_error(
    make: Callable[[], OSError], reason: str | None
) -> None:
    """A full, read-only or blocked disk is named as such, and a refused or timed-out
    connection never is: the user reads which one failed."""
    assert disk_reason(make()) == reason
