"""What kind of media a file is: the one definition the strategies and the pipeline share.

A file is an image or a video by its type (its suffix, in any case); a GIF is a video when it
moves and an image when it is still, which only the file can tell. Lives in `strategies` so
that both layers may import it; imports the standard library and Pillow, never `pipeline`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path


class MediaKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"


IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"})
VIDEO_SUFFIXES = frozenset({".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v"})
#: still or moving: the file itself says which
GIF_SUFFIX = ".gif"


def media_kind(path: Path) -> MediaKind | None:
    """IMAGE or VIDEO by the file's type, None when it is neither (a text file, a latent).

    Reads only a GIF, and only as far as its second frame: call it in a thread from a
    coroutine. A GIF that cannot be read counts as a still image."""
    suffix = path.suffix.lower()
    if suffix == GIF_SUFFIX:
        return MediaKind.VIDEO if _moves(path) else MediaKind.IMAGE
    if suffix in IMAGE_SUFFIXES:
        return MediaKind.IMAGE
    if suffix in VIDEO_SUFFIXES:
        return MediaKind.VIDEO
    return None


def _moves(path: Path) -> bool:
    from PIL import Image  # here: the kinds are imported by every command, Pillow by few

    try:
        with Image.open(path) as image:
            return bool(getattr(image, "is_animated", False))
    except (OSError, ValueError):
        return False
