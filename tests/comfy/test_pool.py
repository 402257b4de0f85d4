"""ComfyPool: choosing servers, failover, pipelining, input images on the right server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from comfy import ComfyPool, NoServerAvailable, PreflightFailed, ServerSpec, Workflow
from tests.comfy.conftest import WORKFLOWS
from tests.fakes.comfyui import FakeComfyUI


@pytest.fixture
async def second() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.05, steps=2) as server:
        yield server


def test_server_spec_parses_tags() -> None:
    """A server setting may carry capability tags after '#'."""
    assert ServerSpec.parse(" http://gpu:8188/#video, hq ") == ServerSpec(
        "http://gpu:8188", frozenset({"video", "hq"})
    )
    assert ServerSpec.parse("http://gpu:8188").tags == frozenset()
    with pytest.raises(ValueError, match="not a ComfyUI server URL"):
        ServerSpec.parse("gpu:8188")


async def test_job_runs_and_downloads(fake: FakeComfyUI, text2img: Workflow, out_dir: Path) -> None:
    """pool.run queues, waits and hands back the downloaded files."""
    async with ComfyPool([fake.url]) as pool:
        job = await pool.submit(text2img, out_dir)
        assert job.server == fake.url
        assert job.prompt_id == fake.prompts[0].prompt_id
        files = await job.result()
        assert files == await job.result()  # asking again gives the same files
    assert [f.kind for f in files] == ["images"]


async def test_server_down_in_a_pool_of_two(
    fake: FakeComfyUI, second: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """With one of two servers down, jobs go to the other and still finish."""
    await fake.go_down()
    async with ComfyPool([fake.url, second.url], probe_timeout=1.0, retry_after=60) as pool:
        files = await pool.run(text2img, out_dir)
        assert not pool.is_up(fake.url)
        assert pool.is_up(second.url)
    assert len(files) == 1
    assert len(second.prompts) == 1
    assert fake.prompts == []


async def test_server_that_comes_back_is_used_again(
    fake: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """A server left out after not answering is tried again once the retry time has passed."""
    await fake.go_down()
    async with ComfyPool([fake.url], probe_timeout=1.0, retry_after=0.1) as pool:
        with pytest.raises(NoServerAvailable):
            await pool.run(text2img, tmp_path / "a")
        await fake.come_up()
        await asyncio.sleep(0.15)
        assert len(await pool.run(text2img, tmp_path / "b")) == 1


async def test_shortest_queue_wins(
    fake: FakeComfyUI, second: FakeComfyUI, text2img: Workflow, tmp_path: Path
) -> None:
    """Jobs submitted together spread over the servers instead of piling on one."""
    fake.job_seconds = second.job_seconds = 0.2
    async with ComfyPool([fake.url, second.url]) as pool:
        jobs = await asyncio.gather(
            *(pool.submit(text2img.with_prompt(f"p{i}"), tmp_path / str(i)) for i in range(6))
        )
        assert sorted(j.server for j in jobs).count(fake.url) == 3
        await asyncio.gather(*(j.result() for j in jobs))


async def test_tags_pick_the_server(
    fake: FakeComfyUI, second: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A job that needs the `video` tag only goes to a server that has it."""
    async with ComfyPool([fake.url, f"{second.url}#video"]) as pool:
        job = await pool.submit(text2img, out_dir, tags=frozenset({"video"}))
        assert job.server == second.url
        await job.result()
        with pytest.raises(NoServerAvailable, match="no server has the tags gpu2"):
            await pool.submit(text2img, out_dir, tags=frozenset({"gpu2"}))


async def test_server_without_the_model_is_skipped(
    second: FakeComfyUI, text2img: Workflow, out_dir: Path
) -> None:
    """A job goes to the server that has its checkpoint, not to one that lacks it."""
    async with FakeComfyUI(models={"checkpoints": []}) as bare:
        async with ComfyPool([bare.url, second.url]) as pool:
            job = await pool.submit(text2img, out_dir)
            assert job.server == second.url
            await job.result()
        async with ComfyPool([bare.url]) as pool:
            with pytest.raises(PreflightFailed, match=r"'sd_xl_base_1\.0\.safetensors' is not"):
                await pool.submit(text2img, out_dir)


async def test_input_image_is_uploaded_to_the_server_that_runs_the_job(
    fake: FakeComfyUI, second: FakeComfyUI, tmp_path: Path
) -> None:
    """Image-to-image uploads its picture to the very server chosen for the job."""
    picture = tmp_path / "face.png"
    Image.new("RGB", (8, 8), "red").save(picture)
    workflow = Workflow.load(WORKFLOWS / "image2image.json")
    fake.job_seconds = 0.3
    async with ComfyPool([fake.url, second.url]) as pool:
        busy = await pool.submit(Workflow.load(WORKFLOWS / "text2img.json"), tmp_path / "t")
        job = await pool.submit(workflow, tmp_path / "i", images={"Input Image": picture})
        assert job.server != busy.server
        chosen = second if job.server == second.url else fake
        assert list(chosen.uploads) == ["face.png"]
        assert chosen.prompts[-1].prompt["10"]["inputs"]["image"] == "face.png"
        assert len(await job.result()) == 1
        await busy.result()


async def test_cancel_through_the_job(fake: FakeComfyUI, text2img: Workflow, out_dir: Path) -> None:
    """job.cancel() stops a queued job on the server that holds it."""
    from comfy import Cancelled

    fake.job_seconds = 0.3
    async with ComfyPool([fake.url]) as pool:
        first = await pool.submit(text2img.with_prompt("a"), out_dir)
        queued = await pool.submit(text2img.with_prompt("b"), out_dir)
        await queued.cancel()
        with pytest.raises(Cancelled):
            await queued.result()
        await first.result()
    assert fake.deleted == [queued.prompt_id]


@pytest.mark.parametrize(
    "name", ["text2img.json", "image2image.json", "text2video.json", "image2video.json"]
)
async def test_every_shipped_workflow_runs_on_the_fake(
    fake: FakeComfyUI, name: str, tmp_path: Path
) -> None:
    """Each shipped workflow passes preflight and yields its media (picture or mp4)."""
    picture = tmp_path / "start.png"
    Image.new("RGB", (8, 8), "green").save(picture)
    workflow = Workflow.load(WORKFLOWS / name).with_prompt("a test scene")
    images = {"Input Image": picture} if "LoadImage" in workflow.class_types() else None
    async with ComfyPool([fake.url]) as pool:
        await pool.client(fake.url).preflight(workflow)
        files = await pool.run(workflow, tmp_path / "out", images=images)
    expected = ".mp4" if "video" in name else ".png"
    assert [f.path.suffix for f in files] == [expected]


async def test_a_server_answering_broken_http_counts_as_not_answering() -> None:
    """A server (or a proxy in front of it) that answers malformed HTTP is reported as not
    answering, like one that is down, instead of an aiohttp error escaping the pool."""

    async def garbled(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nnot-a-chunk\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbled, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    try:
        async with ComfyPool([url], probe_timeout=2.0) as pool:
            assert await pool.answering() == []
    finally:
        server.close()
        await server.wait_closed()
