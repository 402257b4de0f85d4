"""An input image's download, bounded in time and size, against a small server on 127.0.0.1
that misbehaves the ways a CDN or a forged URL can; and stored runs from before the options."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from pipeline.errors import MediaOverloadError, RunError, ServiceError
from pipeline.models import Job, Run
from pipeline.options import ImageLimits, fetch_image
from tests.fakes.serving import serve
from tests.images import png

LIMITS = ImageLimits(max_bytes=64 * 1024, max_pixels=1_000_000, download_seconds=0.5)


async def streamed(request: web.Request) -> web.StreamResponse:
    """A body with no declared length that goes on past any limit."""
    response = web.StreamResponse()
    await response.prepare(request)
    for _ in range(100):
        await response.write(b"\0" * 16 * 1024)
    return response


async def stalled(request: web.Request) -> web.StreamResponse:
    """A few bytes, then nothing until the client gives up (a closed connection ends it)."""
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(png()[:10])
    await asyncio.Event().wait()
    return response


async def image(request: web.Request) -> web.Response:
    return web.Response(body=png(48, 32), content_type="image/png")


async def missing(request: web.Request) -> web.Response:
    raise web.HTTPNotFound()


@pytest.fixture
async def server() -> AsyncIterator[Callable[[str], str]]:
    app = web.Application()
    for path, handler in (
        ("/streamed", streamed),
        ("/stalled", stalled),
        ("/image", image),
        ("/missing", missing),
    ):
        app.router.add_get(path, handler)
    runner, port = await serve(app, shutdown_timeout=0.1)
    yield lambda path: f"http://127.0.0.1:{port}{path}"
    await runner.cleanup()


@pytest.mark.parametrize(
    ("path", "error", "said"),
    [
        ("/streamed", RunError, "The image is over 64 KB, the most that is taken."),
        ("/stalled", ServiceError, "The image took longer than 0.5 s to download; try again."),
        ("/missing", ServiceError, "Discord did not hand over the image; try again."),
    ],
    ids=["endless-body", "stalled", "not-found"],
)
async def test_a_download_that_breaks_a_bound_is_one_sentence_and_leaves_nothing(
    server: Callable[[str], str],
    tmp_path: Path,
    path: str,
    error: type[MediaOverloadError],
    said: str,
) -> None:
    """A body past the size cap, a server that stalls, a missing file: each stops the
    download with one sentence, and the run's folder is gone again."""
    folder = tmp_path / "output" / "run1"
    async with aiohttp.ClientSession() as session:
        with pytest.raises(error) as caught:
            await fetch_image(session, server(path), folder, LIMITS)
    assert caught.value.user_message == said
    assert "127.0.0.1" not in caught.value.user_message
    assert not folder.exists()


async def test_an_image_is_streamed_into_the_runs_folder(
    server: Callable[[str], str], tmp_path: Path
) -> None:
    """A good image lands as input/image.png in the run's folder, byte for byte."""
    folder = tmp_path / "output" / "run1"
    async with aiohttp.ClientSession() as session:
        path = await fetch_image(session, server("/image"), folder, LIMITS)
    assert path == folder / "input" / "image.png"
    assert path.read_bytes() == png(48, 32)
    assert sorted(p.name for p in path.parent.iterdir()) == ["image.png"]


def test_a_run_stored_before_the_options_reads_with_none_of_them() -> None:
    """A run saved by a version without style, count and negative loads, the options unset."""
    data = json.loads(Run.new(Job("fox", seed=3)).to_json())
    for key in ("style", "count", "negative"):
        del data["job"][key]
    job = Run.from_json(json.dumps(data)).job
    assert (job.style, job.count, job.negative, job.seed) == (None, None, None, 3)
