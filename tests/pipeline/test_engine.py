"""The engine `open_engine` builds from settings: the ComfyUI time and size limits reach the
pool."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from comfy import ComfyTimeout, DownloadFailed, ProtocolError, Workflow
from pipeline.settings import Settings, load_settings
from pipeline.store import open_store
from pipeline.wiring import Engine, open_engine
from tests.fakes.comfyui import FakeComfyUI

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@asynccontextmanager
async def engine_on(
    fake: FakeComfyUI, tmp_path: Path, **overrides: object
) -> AsyncIterator[Engine]:
    settings: Settings = load_settings(
        None,
        comfyui_servers=[fake.url],
        data_dir=tmp_path,
        llm_chain=["ollama"],
        **overrides,
    )
    async with (
        open_store("", sqlite_path=tmp_path / "engine.db") as store,
        open_engine(settings, store) as engine,
    ):
        yield engine


@pytest.mark.timeout(20)
async def test_a_stalled_job_fails_after_the_configured_stall_time(tmp_path: Path) -> None:
    """COMFYUI_STALL_SECONDS decides when a silent ComfyUI job is given up (not 300 s)."""
    async with (
        FakeComfyUI() as fake,
        engine_on(fake, tmp_path, comfyui_stall_seconds=0.3) as engine,
    ):
        fake.faults.stall_next = True
        job = await engine.pool.submit(Workflow.load(WORKFLOWS / "text2img.json"), tmp_path)
        began = time.monotonic()
        with pytest.raises(ComfyTimeout, match=r"no message for 0\.3 s"):
            await job.result()
    assert time.monotonic() - began < 10
    assert fake.interrupts


@pytest.mark.timeout(20)
async def test_a_job_past_the_configured_limit_fails(tmp_path: Path) -> None:
    """COMFYUI_JOB_TIMEOUT_SECONDS ends a job that keeps talking but runs too long."""
    async with (
        FakeComfyUI(job_seconds=30.0) as fake,
        engine_on(
            fake, tmp_path, comfyui_stall_seconds=0.5, comfyui_job_timeout_seconds=1.0
        ) as engine,
    ):
        fake.steps = 300  # a progress message every 0.1 s: never a stall
        job = await engine.pool.submit(Workflow.load(WORKFLOWS / "text2img.json"), tmp_path)
        with pytest.raises(ComfyTimeout):
            await job.result()
    assert fake.interrupts


def _endless(fake: FakeComfyUI) -> None:
    fake.faults.view_endless = True


def _copies(fake: FakeComfyUI) -> None:
    fake.faults.output_copies = 5


def _trickle(fake: FakeComfyUI) -> None:
    fake.faults.output_bytes = 4 * 2**20
    fake.faults.view_trickle = (16 * 1024, 0.01)


@pytest.mark.parametrize(
    ("overrides", "fault", "error"),
    [
        ({"comfyui_download_max_mb": 1}, _endless, "larger than the 1 MB a file may have"),
        ({"comfyui_max_outputs_per_job": 2}, _copies, "more than 2 output files"),
        ({"comfyui_download_timeout_seconds": 0.3}, _trickle, "not sent whole within 0.3 s"),
    ],
    ids=["file-size", "file-count", "file-deadline"],
)
async def test_the_configured_download_limits_reach_the_pool(
    tmp_path: Path, overrides: dict[str, object], fault: Callable[[FakeComfyUI], None], error: str
) -> None:
    """COMFYUI_DOWNLOAD_MAX_MB, COMFYUI_MAX_OUTPUTS_PER_JOB and COMFYUI_DOWNLOAD_TIMEOUT_SECONDS
    bound a job's downloads, as set."""
    async with FakeComfyUI() as fake, engine_on(fake, tmp_path, **overrides) as engine:
        fault(fake)
        job = await engine.pool.submit(Workflow.load(WORKFLOWS / "text2img.json"), tmp_path / "o")
        with pytest.raises(DownloadFailed, match=error):
            await job.result()


async def test_the_configured_answer_cap_reaches_the_pool(tmp_path: Path) -> None:
    """COMFYUI_ANSWER_MAX_MB bounds what is read of ComfyUI's JSON answers."""
    async with (
        FakeComfyUI() as fake,
        engine_on(fake, tmp_path, comfyui_answer_max_mb=1) as engine,
    ):
        fake.faults.huge_answers["/queue"] = 3 * 2**20
        with pytest.raises(ProtocolError, match="answered more than 1 MB"):
            await engine.pool.client(fake.url).queue()
