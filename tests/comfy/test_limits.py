"""ComfyClient against a hostile or broken server: every answer is bounded in time and size.

A /view that trickles or never ends, more output files than a job may have, a WebSocket message
or a JSON answer far over its cap, a disk that fills while saving: each ends in one error with a
sentence, within its limit, with memory near the cap and no file left behind. The caps are set
small through the client's keyword arguments (1 MB against 5 MB answers).
"""

from __future__ import annotations

import asyncio
import logging
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from comfy import (
    ComfyClient,
    ComfyTimeout,
    DownloadFailed,
    OutputNotWritten,
    ProtocolError,
    Workflow,
)
from tests.comfy.disk import file_size_limit
from tests.fakes.comfyui import FakeComfyUI

MB = 2**20


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def made(folder: Path) -> bool:
    """Whether the download folder was created at all (it is, with the first file)."""
    return folder.exists()


@pytest.fixture
async def strict(fake: FakeComfyUI) -> AsyncIterator[ComfyClient]:
    """A client with small limits, so each is reached in well under a second."""
    async with ComfyClient(
        fake.url,
        stall_timeout=2.0,
        reconnect_delay=0.05,
        reconnect_max_delay=0.2,
        download_timeout=5.0,
        download_min_rate=1024,
        download_rate_window=0.2,
        download_max_bytes=1 * MB,
        max_outputs=4,
        ws_max_message_bytes=1 * MB,
        answer_max_bytes=1 * MB,
        object_info_max_bytes=1 * MB,
    ) as client:
        yield client


async def test_a_trickling_download_fails_with_a_sentence_within_one_window(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A /view sending one byte every 50 ms (under the minimum rate) fails after one rate
    window, saying so, and leaves no partial file."""
    fake.faults.view_trickle = (1, 0.05)
    began = time.monotonic()
    with pytest.raises(DownloadFailed) as caught:
        await strict.run(text2img, out_dir)
    assert time.monotonic() - began < 2.0
    assert "came slower than 1 KB/s" in str(caught.value)
    assert files_in(out_dir) == []


async def test_a_download_longer_than_its_deadline_fails(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A file sent fast enough, but for longer than the per-file deadline, fails at the
    deadline (no other limit is near) and leaves nothing."""
    fake.faults.output_bytes = 8 * MB
    fake.faults.view_trickle = (16 * 1024, 0.01)  # about 1.6 MB/s: 5 s for the file
    async with ComfyClient(fake.url, download_timeout=0.3, download_rate_window=0.1) as client:
        began = time.monotonic()
        with pytest.raises(DownloadFailed) as caught:
            await client.run(text2img, out_dir)
    assert time.monotonic() - began < 2.0
    assert "was not sent whole within 0.3 s" in str(caught.value)
    assert files_in(out_dir) == []


async def test_the_job_time_limit_covers_its_downloads(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A job whose outputs are still downloading at its overall time limit times out then,
    however long the per-file deadline is."""
    fake.faults.output_bytes = 8 * MB
    fake.faults.view_trickle = (16 * 1024, 0.01)
    async with ComfyClient(fake.url, download_timeout=600, download_rate_window=0.1) as client:
        began = time.monotonic()
        with pytest.raises(ComfyTimeout) as caught:
            await client.run(text2img, out_dir, time_limit=0.6)
    assert time.monotonic() - began < 2.0
    assert "still downloading" in str(caught.value)
    assert files_in(out_dir) == []


async def test_an_endless_download_stops_at_the_size_cap(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A /view that streams without end (and without a length) stops at the per-file cap; the
    disk holds nothing of it afterwards."""
    fake.faults.view_endless = True
    with pytest.raises(DownloadFailed) as caught:
        await strict.run(text2img, out_dir)
    assert "larger than the 1 MB a file may have" in str(caught.value)
    assert files_in(out_dir) == []


async def test_a_declared_size_over_the_cap_is_refused_before_writing(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A file whose Content-Length is over the cap is refused before a byte is saved."""
    fake.faults.output_bytes = 2 * MB
    with pytest.raises(DownloadFailed):
        await strict.run(text2img, out_dir)
    assert not made(out_dir)


async def test_more_output_files_than_a_job_may_have_are_refused_before_any_download(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A server listing a file 50 times (cap 4) fails the job as soon as it says so; nothing
    is downloaded. A batch at the cap is fine."""
    files = await strict.run(text2img.with_batch_size(4), out_dir / "ok")
    assert len(files) == 4
    fake.faults.output_copies = 50
    with pytest.raises(DownloadFailed) as caught:
        await strict.run(text2img.with_prompt("again"), out_dir / "flood")
    assert "more than 4 output files" in str(caught.value)
    assert not made(out_dir / "flood")


async def test_more_output_files_than_the_cap_in_a_history_are_refused(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """The cap holds for outputs read from /history too (a job taken over after a restart)."""
    fake.faults.output_copies = 50
    async with ComfyClient(fake.url) as gone:
        prompt_id = await gone.submit(text2img)
    await fake.wait_idle()
    assert await strict.attach(prompt_id) is True
    with pytest.raises(DownloadFailed, match="50 output files, more than the 4"):
        await strict.collect(prompt_id, out_dir)
    assert not made(out_dir)


async def test_a_websocket_message_over_the_cap_reconnects_and_the_job_still_finishes(
    strict: ComfyClient,
    fake: FakeComfyUI,
    text2img: Workflow,
    out_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Binary previews of 5 MB (cap 1 MB) are refused: the client says so, reconnects, and
    the job's files still arrive."""
    fake.faults.preview_bytes = 5 * MB
    with caplog.at_level(logging.WARNING, logger="comfy"):
        files = await strict.run(text2img, out_dir)
    assert len(files) == 1
    assert fake.ws_connections >= 2
    assert "WebSocket message over the 1 MB limit; reconnecting" in caplog.text


async def test_previews_under_the_cap_are_ignored(
    strict: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """Previews of a real server's size (100 KB) cost nothing: one WebSocket, the files."""
    fake.faults.preview_bytes = 100 * 1024
    files = await strict.run(text2img, out_dir)
    assert len(files) == 1
    assert fake.ws_connections == 1


Call = Callable[[ComfyClient], Awaitable[object]]


async def _history(client: ComfyClient) -> object:
    return await client.history("some-prompt")


async def _queue(client: ComfyClient) -> object:
    return await client.queue()


async def _object_info(client: ComfyClient) -> object:
    return await client.object_info()


async def _system_stats(client: ComfyClient) -> object:
    return await client.system_stats()


async def _rejected_prompt(client: ComfyClient) -> object:
    return await client.submit({"1": {"class_type": "NoSuchNode", "inputs": {}}})


ANSWERS = [
    ("/history", _history),
    ("/queue", _queue),
    ("/object_info", _object_info),
    ("/system_stats", _system_stats),
    ("/prompt", _rejected_prompt),
]
ANSWER_IDS = ["history", "queue", "object_info", "system_stats", "error-400"]


@pytest.mark.parametrize(("path", "call"), ANSWERS, ids=ANSWER_IDS)
async def test_a_json_answer_over_the_cap_is_refused_with_memory_near_the_cap(
    strict: ComfyClient, fake: FakeComfyUI, path: str, call: Call
) -> None:
    """A 5 MB answer, streamed without a length (cap 1 MB), is a ProtocolError naming the cap,
    and reading it never holds much more than the cap."""
    await strict.connect()
    fake.faults.huge_answers[path] = 5 * MB
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolError, match="answered more than 1 MB"):
            await call(strict)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 3 * MB, f"peak {peak / MB:.1f} MB"


@pytest.mark.parametrize(("path", "call"), ANSWERS[:4], ids=ANSWER_IDS[:4])
async def test_a_json_answer_under_the_cap_is_read(
    strict: ComfyClient, fake: FakeComfyUI, path: str, call: Call
) -> None:
    """An answer of 600 KB (under the 1 MB cap, parsed off the event loop) reads as usual."""
    fake.faults.huge_answers[path] = 600 * 1024
    await call(strict)


async def test_the_default_caps_leave_room_for_a_large_object_info(
    client: ComfyClient, fake: FakeComfyUI
) -> None:
    """/object_info of a server with many custom nodes and files is megabytes: 20 MB passes the
    default caps."""
    fake.faults.huge_answers["/object_info"] = 20 * MB
    info = await client.object_info()
    assert "KSampler" in info


async def test_a_full_disk_while_saving_names_the_folder_and_leaves_nothing(
    fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """Writing a download fails for want of room (an OSError without a file name): a distinct
    error naming the folder and the reason, not a network error, and no partial file."""
    fake.faults.view_endless = True
    async with ComfyClient(fake.url, download_max_bytes=64 * MB) as client:
        with file_size_limit(2 * MB), pytest.raises(OutputNotWritten) as caught:
            await client.run(text2img, out_dir)
    error = caught.value
    assert error.path == out_dir
    assert error.reason == "file too large"
    assert str(error) == f"cannot write the media folder {out_dir}: file too large"
    assert files_in(out_dir) == []


async def test_a_cancelled_download_leaves_no_file(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """Cancelling a run while its files arrive removes what had arrived of them."""
    fake.faults.view_trickle = (64, 0.02)
    task = asyncio.create_task(client.run(text2img.with_batch_size(2), out_dir))
    async with asyncio.timeout(5):
        while not files_in(out_dir):  # noqa: ASYNC110 - the file is another task's doing
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert files_in(out_dir) == []
