"""The records the client hands out: files a node reported and files downloaded, the queue, the
server's system; and a server's address as a pool is given it. Frozen dataclasses; imports only
the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

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


@dataclass(frozen=True)
class ServerSpec:
    """A server URL and its capability tags: parsed from `http://host:8188#video,hq`."""

    url: str
    tags: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, text: str) -> ServerSpec:
        url, _, fragment = text.strip().partition("#")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"not a ComfyUI server URL (want http://host:port): {text!r}")
        tags = frozenset(t.strip() for t in fragment.split(",") if t.strip())
        return cls(url.rstrip("/"), tags)

    def __str__(self) -> str:
        return self.url + (f"#{','.join(sorted(self.tags))}" if self.tags else "")
