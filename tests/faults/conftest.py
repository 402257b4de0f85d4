"""Fixtures for the fault suite: whole runs (tests/runs.py) with short ComfyUI timeouts, so a
fault shows within a second."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from comfy import ComfyPool
from tests.fakes.comfyui import FakeComfyUI
from tests.faults.support import STALL_SECONDS
from tests.runs import open_comfy, project, world

__all__ = ["comfy", "project", "world"]


@pytest.fixture
async def comfy() -> AsyncIterator[tuple[FakeComfyUI, ComfyPool]]:
    """The fake and a pool whose stall watchdog fires after STALL_SECONDS (other limits as
    in production)."""
    async with open_comfy(stall_timeout=STALL_SECONDS) as pair:
        yield pair
