"""The records the client hands out: files a node reported and files downloaded, the queue, the
server's system. Frozen dataclasses; imports only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: node id -> that node's `output` (kind -> list of files or other values; see _wire.NodeOutputJSON)
Outputs = dict[str, dict[str, object]]


@dataclass(frozen=True)
class RemoteFile:
    """A file a node reported; `filename` and `subfolder` are the server's and never trusted."""

    node_id: str
    kind: str
    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class OutputFile:
    """One downloaded output: local `path`, the node and kind it came from, the server's name."""

    path: Path
    node_id: str
    kind: str  # "images", "gifs" (video-combine mp4s), "videos", "audio", or another list name
    filename: str


@dataclass(frozen=True)
class QueueState:
    """Prompt ids on the server: the one(s) running and those pending, in run order."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.running) + len(self.pending)

    def position(self, prompt_id: str) -> int | None:
        order = self.running + self.pending
        return order.index(prompt_id) if prompt_id in order else None


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    os: str
    python_version: str
    pytorch_version: str
    devices: tuple[Device, ...]
