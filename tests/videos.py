"""Video files for tests, made with the ffmpeg binary the project finds (the publish tests and
the media tests share them). Imports the media module's binary lookup only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pipeline.publish.media import ffmpeg_binary


def make_video(path: Path, *, seconds: float, size: str = "320x180", audio: bool = False) -> Path:
    """A small test-pattern video made with the ffmpeg binary."""
    args = [ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi"]
    args += ["-i", f"testsrc=size={size}:rate=10:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}"]
    if path.suffix == ".webm":
        args += ["-c:v", "libvpx", "-b:v", "200k", "-deadline", "realtime"]
        args += ["-c:a", "libvorbis"] if audio else []
    args.append(str(path))
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return path
