"""Fixtures for the comfy tests: a running FakeComfyUI, a client on it, the shipped workflows.

Short job durations and timeouts keep the whole suite to a few seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from comfy import ComfyClient, Workflow
from tests.fakes.comfyui import FakeComfyUI

WORKFLOWS = Path(__file__).resolve().parents[2] / "workflows"


@pytest.fixture
async def fake() -> AsyncIterator[FakeComfyUI]:
    async with FakeComfyUI(job_seconds=0.05, steps=2) as server:
        yield server


@pytest.fixture
async def client(fake: FakeComfyUI) -> AsyncIterator[ComfyClient]:
    async with ComfyClient(
        fake.url, stall_timeout=2.0, reconnect_delay=0.05, reconnect_max_delay=0.2
    ) as comfy:
        yield comfy


@pytest.fixture
def text2img() -> Workflow:
    return Workflow.load(WORKFLOWS / "text2img.json")


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    return tmp_path / "out"
