"""ComfyClient against the fake server: queue, watch, download, cancel, recover."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import pytest
from PIL import Image

from comfy import (
    Cached,
    Cancelled,
    ComfyClient,
    ComfyOffline,
    ComfyTimeout,
    Done,
    Event,
    ExecutionFailed,
    NodeRunning,
    PreflightFailed,
    PromptRejected,
    Queued,
    Started,
    Step,
    Workflow,
)
from tests.fakes.comfyui import FakeComfyUI


def embedded_prompt(path: Path) -> dict[str, object]:
    with Image.open(path) as image:
        text = image.info["prompt"]
    assert isinstance(text, str)
    loaded = json.loads(text)
    assert isinstance(loaded, dict)
    return loaded


async def test_one_prompt_end_to_end(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A queued workflow comes back as a real PNG on disk, carrying the prompt that made it."""
    workflow = text2img.with_prompt("a red fox in snow").with_batch_size(2)
    files = await client.run(workflow, out_dir)
    assert [f.kind for f in files] == ["images", "images"]
    assert all(f.path.parent == out_dir and f.path.stat().st_size > 0 for f in files)
    assert embedded_prompt(files[0].path)["6"]["inputs"]["text"] == "a red fox in snow"  # type: ignore[index]
    assert fake.prompts[0].client_id == client.client_id


async def test_progress_events_arrive_in_order(
    client: ComfyClient, text2img: Workflow, out_dir: Path
) -> None:
    """A progress display sees queued, started, each node, sampler steps, then done."""
    events: list[Event] = []
    await client.run(text2img, out_dir, on_event=events.append)
    kinds = [type(e) for e in events]
    assert kinds[0] in (Queued, Started)
    assert Started in kinds
    assert kinds[-1] is Done
    steps = [e for e in events if isinstance(e, Step)]
    assert [(s.node_id, s.value, s.max) for s in steps] == [("3", 1, 2), ("3", 2, 2)]
    running = [e for e in events if isinstance(e, NodeRunning)]
    assert ("3", "KSampler") in [(e.node_id, e.class_type) for e in running]


async def test_twenty_concurrent_prompts_share_one_websocket(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """Twenty runs at once each get exactly their own images, over a single WebSocket."""
    fake.job_seconds = 0.01

    async def one(index: int) -> tuple[int, list[Path]]:
        workflow = text2img.with_prompt(f"subject number {index}")
        files = await client.run(workflow, tmp_path / f"run{index}")
        return index, [f.path for f in files]

    results = await asyncio.gather(*(one(i) for i in range(20)))
    assert fake.ws_connections == 1
    for index, paths in results:
        assert len(paths) == 1
        assert embedded_prompt(paths[0])["6"]["inputs"]["text"] == f"subject number {index}"  # type: ignore[index]


async def test_websocket_drop_mid_job_still_delivers(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """The result arrives even when the WebSocket drops and the job ends while we are away."""
    fake.job_seconds = 0.2
    fake.faults.drop_ws_mid_job = True
    fake.faults.ws_refuse_seconds = 0.3  # the job finishes before we can reconnect
    files = await client.run(text2img, out_dir)
    assert len(files) == 1
    assert files[0].path.exists()
    assert fake.ws_connections >= 2


async def test_rejected_prompt_lists_every_node_error(
    client: ComfyClient, text2img: Workflow
) -> None:
    """A missing checkpoint and a missing input are both reported, node by node."""
    broken = text2img.set_input("Load Checkpoint", "ckpt_name", "nope.safetensors")
    raw = broken.to_dict()
    del raw["5"]["inputs"]["height"]
    with pytest.raises(PromptRejected) as caught:
        await client.submit(raw)
    error = caught.value
    assert error.error_type == "prompt_outputs_failed_validation"
    assert error.lines() == [
        "node CheckpointLoaderSimple (4) input ckpt_name: value not in list",
        "node EmptyLatentImage (5) input height: required input is missing",
    ]
    assert "nope.safetensors" in error.node_errors[0].details


async def test_unknown_node_class_is_rejected(client: ComfyClient, text2img: Workflow) -> None:
    """A workflow naming a node the server lacks says which one."""
    raw = text2img.to_dict()
    raw["4"]["class_type"] = "NoSuchNode"
    with pytest.raises(PromptRejected) as caught:
        await client.submit(raw)
    assert caught.value.error_type == "invalid_prompt"
    assert caught.value.lines() == [
        "Cannot execute because node NoSuchNode does not exist. (Node ID '#4')"
    ]


async def test_execution_error_names_the_node_not_the_paths(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A node failing on the server names the node; server paths stay out of the message."""
    fake.faults.fail_class = "SaveImage"
    with pytest.raises(ExecutionFailed) as caught:
        await client.run(text2img, out_dir)
    error = caught.value
    assert (error.node_id, error.node_type) == ("9", "SaveImage")
    assert str(error) == "node SaveImage (9) failed on the ComfyUI server"
    assert "/srv" not in str(error)
    assert "outside the output folder" in error.exception_message
    assert "raise Exception(err)" in error.log_text()


async def test_cancel_running_prompt(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """Cancelling a running job interrupts that job on the server."""
    fake.job_seconds = 5.0
    started = asyncio.Event()
    prompt_id = await client.submit(
        text2img, on_event=lambda e: started.set() if isinstance(e, Started) else None
    )
    await asyncio.wait_for(started.wait(), 2)
    await client.cancel(prompt_id)
    with pytest.raises(Cancelled):
        await client.wait(prompt_id)
    assert fake.interrupts == [prompt_id]
    assert fake.jobs[0].outcome == "interrupted"


async def test_cancel_queued_prompt(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """Cancelling a waiting job removes it from the queue; the running one is untouched."""
    fake.job_seconds = 0.3
    first = await client.submit(text2img.with_prompt("first"))
    second = await client.submit(text2img.with_prompt("second"))
    await client.cancel(second)
    with pytest.raises(Cancelled):
        await client.wait(second)
    assert fake.deleted == [second]
    assert fake.interrupts == []
    assert await client.wait(first)
    assert await client.history(second) is None


async def test_stalled_prompt_times_out_and_is_cancelled(
    fake: FakeComfyUI, text2img: Workflow
) -> None:
    """A job that goes silent while running is given up after the stall time, and interrupted."""
    fake.faults.stall_next = True
    async with ComfyClient(fake.url, stall_timeout=0.3) as client:
        prompt_id = await client.submit(text2img)
        with pytest.raises(ComfyTimeout) as caught:
            await client.wait(prompt_id)
    assert "no message" in str(caught.value)
    assert fake.interrupts == [prompt_id]


async def test_overall_time_limit(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """A job running past its overall limit raises a timeout even while it keeps talking."""
    fake.job_seconds = 5.0
    prompt_id = await client.submit(text2img)
    with pytest.raises(ComfyTimeout):
        await client.wait(prompt_id, time_limit=0.2)
    assert fake.interrupts == [prompt_id]


@pytest.mark.slow
async def test_large_output_is_streamed_to_disk(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A 50 MB output lands on disk while memory grows by far less than 50 MB."""
    import tracemalloc

    size = 50 * 2**20
    fake.faults.output_bytes = size
    prompt_id = await client.submit(text2img)
    outputs = await client.wait(prompt_id)
    from comfy.client import remote_files

    tracemalloc.start()
    try:
        files = await client.download(remote_files(outputs), out_dir)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert files[0].path.stat().st_size == size
    assert peak < 8 * 2**20, f"peak {peak / 2**20:.1f} MiB"


async def test_fully_cached_run_still_delivers_outputs(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """Running the very same workflow twice gives files both times, though nothing ran again."""
    first = await client.run(text2img, tmp_path / "a")
    events: list[Event] = []
    second = await client.run(text2img, tmp_path / "b", on_event=events.append)
    assert fake.jobs[-1].outcome == "cached"
    assert any(isinstance(e, Cached) and len(e.nodes) == len(text2img) for e in events)
    assert [f.filename for f in second] == [f.filename for f in first]
    assert second[0].path.read_bytes() == first[0].path.read_bytes()


async def test_temp_previews_are_not_results(
    client: ComfyClient, text2img: Workflow, out_dir: Path
) -> None:
    """A PreviewImage node's temp files are not handed over as results."""
    raw = text2img.to_dict()
    raw["20"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    files = await client.run(raw, out_dir)
    assert [f.node_id for f in files] == ["9"]


async def test_random_seeds_avoid_the_cache(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """Fresh seeds per job make the server really run the job again."""
    rng = random.Random(7)
    await client.run(text2img.with_random_seeds(rng), tmp_path / "a")
    await client.run(text2img.with_random_seeds(rng), tmp_path / "b")
    assert [j.outcome for j in fake.jobs] == ["success", "success"]


async def test_video_output_with_audio_is_an_mp4(client: ComfyClient, out_dir: Path) -> None:
    """The text-to-video workflow yields one mp4 (with its audio track) as a `gifs` output."""
    from tests.comfy.conftest import WORKFLOWS

    workflow = Workflow.load(WORKFLOWS / "text2video.json").with_prompt("waves at dusk")
    files = await client.run(workflow, out_dir)
    assert [(f.kind, f.path.suffix) for f in files] == [("gifs", ".mp4")]
    assert files[0].filename.endswith("-audio.mp4")
    assert files[0].path.read_bytes()[4:8] == b"ftyp"


async def test_upload_then_image_to_image(
    client: ComfyClient, fake: FakeComfyUI, tmp_path: Path
) -> None:
    """An uploaded picture can be used by the image-to-image workflow under the server's name."""
    from tests.comfy.conftest import WORKFLOWS

    picture = tmp_path / "me.png"
    Image.new("RGB", (8, 8), "blue").save(picture)
    name = await client.upload_image(picture)
    assert name == "me.png"
    assert fake.uploads["me.png"] == picture.read_bytes()
    workflow = Workflow.load(WORKFLOWS / "image2image.json").with_input_image(name)
    files = await client.run(workflow, tmp_path / "out")
    assert len(files) == 1


async def test_an_upload_cancelled_while_its_file_opens_leaves_no_open_file(
    client: ComfyClient, tmp_path: Path
) -> None:
    """A run stopped while its input picture is still being opened (a slow disk; here a FIFO
    whose open waits for a writer) closes the file once it opens: no handle is left behind."""
    fifo = tmp_path / "slow.png"
    os.mkfifo(fifo)
    upload = asyncio.create_task(client.upload_image(fifo))
    await asyncio.sleep(0)  # the upload has handed the open to a thread, which waits for a writer
    upload.cancel()
    with pytest.raises(asyncio.CancelledError):
        await upload
    # the writer's open is the barrier: it returns once the reader's open has returned
    writer = await asyncio.to_thread(os.open, fifo, os.O_WRONLY)
    try:
        async with asyncio.timeout(5):
            while True:  # the reader is closed on the loop right after its thread returns
                try:
                    os.write(writer, b"x")
                except BrokenPipeError:
                    break
                await asyncio.sleep(0.01)
    finally:
        os.close(writer)


async def test_missing_input_image_is_rejected(client: ComfyClient) -> None:
    """Image-to-image without uploading the picture first is refused with the file's name."""
    from tests.comfy.conftest import WORKFLOWS

    workflow = Workflow.load(WORKFLOWS / "image2image.json").with_input_image("gone.png")
    with pytest.raises(PromptRejected) as caught:
        await client.submit(workflow)
    assert caught.value.lines() == [
        "node LoadImage (10) input image: custom validation failed for node "
        "(image - Invalid image file: gone.png)"
    ]


async def test_preflight_names_missing_nodes_and_models(
    client: ComfyClient, text2img: Workflow
) -> None:
    """Preflight says which node class and which checkpoint the server does not have."""
    await client.preflight(text2img)
    raw = text2img.set_input("Load Checkpoint", "ckpt_name", "other.safetensors").to_dict()
    raw["30"] = {"class_type": "FancyUpscaler", "inputs": {}}
    with pytest.raises(PreflightFailed) as caught:
        await client.preflight(Workflow(raw))
    assert caught.value.problems == (
        "node classes not installed: FancyUpscaler",
        'node "Load Checkpoint" CheckpointLoaderSimple (4) input ckpt_name: '
        "'other.safetensors' is not installed on the server",
    )


async def test_system_stats(client: ComfyClient) -> None:
    """Health shows the server's version and its GPU."""
    stats = await client.system_stats()
    assert stats.comfyui_version == "0.3.64"
    assert stats.devices[0].type == "cuda"


async def test_server_not_answering_is_offline(fake: FakeComfyUI, text2img: Workflow) -> None:
    """A server that refuses connections raises ComfyOffline, not a raw socket error."""
    await fake.go_down()
    async with ComfyClient(fake.url, connect_timeout=0.3) as client:
        with pytest.raises(ComfyOffline):
            await client.system_stats()
        with pytest.raises(ComfyOffline):
            await client.submit(text2img)


async def test_second_job_reports_its_queue_position(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow
) -> None:
    """A job submitted behind another one is told it waits in position 1."""
    fake.job_seconds = 0.2
    events: list[Event] = []
    first = await client.submit(text2img.with_prompt("one"))
    second = await client.submit(text2img.with_prompt("two"), on_event=events.append)
    await client.wait(first)
    await client.wait(second)
    assert events[0] == Queued(second, 1)


@pytest.mark.parametrize(
    ("server_name", "local"),
    [
        ("ComfyUI_00001_.png", "ComfyUI_00001_.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\boot.ini", "boot.ini"),
        (".bashrc", "bashrc"),
        ("a b/c d;rm -rf.png", "c_d_rm_-rf.png"),
        ("..", "output"),
        ("", "output"),
    ],
    ids=["plain", "dotdot", "backslash", "dotfile", "odd-chars", "only-dots", "empty"],
)
def test_server_file_names_are_made_safe(server_name: str, local: str) -> None:
    """A file name from the server can never place a download outside the output folder."""
    from comfy.client import safe_name

    assert safe_name(server_name) == local


async def test_same_name_twice_gets_a_new_file(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """Downloading into a folder that already holds the name never overwrites it."""
    first = await client.run(text2img, out_dir)
    second = await client.run(text2img, out_dir)  # cached: the server reports the same name
    assert first[0].path != second[0].path
    assert second[0].path.name == first[0].path.stem + "-1.png"


async def test_server_dying_mid_job_is_reported_offline(
    fake: FakeComfyUI, text2img: Workflow
) -> None:
    """A server that disappears while a job runs ends the wait with ComfyOffline."""
    fake.job_seconds = 5.0
    async with ComfyClient(fake.url, stall_timeout=0.2, connect_timeout=0.3) as client:
        prompt_id = await client.submit(text2img)
        await fake.go_down()
        with pytest.raises(ComfyOffline):
            await client.wait(prompt_id)


async def test_server_without_execution_success_still_delivers(
    client: ComfyClient, fake: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """An older server that only says `executing: null` at the end still gives the outputs."""
    fake.faults.send_success = False
    files = await client.run(text2img, out_dir)
    assert len(files) == 1
