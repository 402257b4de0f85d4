"""What the fault tests share besides fixtures: the short stall timeout and `snapshot` of a run
folder's media (`tests.waiting.until` injects a fault at a chosen point of a run)."""

from __future__ import annotations

from pathlib import Path

#: seconds without a message before the client asks the server what became of a prompt
STALL_SECONDS = 0.5


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every finished media file under a run folder, by relative path, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.suffix in {".png", ".mp4"} and ".partial" not in p.as_posix()
    }
