"""Runs ready for review, for the bot's review tests (the reviewer, review-once, leases).
Imports the domain models and the typed doubles' PNG writer only."""

from __future__ import annotations

from pathlib import Path

from pipeline.models import Job, MediaItem, MediaKind, Run, RunState
from tests.doubles import write_png


def candidates(folder: Path, count: int, *, size: int = 16, noisy: bool = False) -> Run:
    """A captioned run with `count` images in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    media = []
    for index in range(count):
        name = f"image-{index + 1:02d}.png"
        write_png(folder / name, (size, size), seed=index, noisy=noisy)
        media.append(
            MediaItem(
                path=name,
                kind=MediaKind.IMAGE,
                description_index=0,
                score=0.8,
                reason=f"reason {index + 1}",
            )
        )
    return Run.new(Job("mascot", requested_by="test")).advance(
        RunState.CAPTIONED, media=tuple(media), captions={"instagram": "Hello #pixelbot"}
    )
