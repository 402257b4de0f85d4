"""What a person may add to a run (/generate's and `run`'s options), checked before it starts.

The style, count, negative prompt, type and input image are checked here once for both
adapters; each refusal is one RunError sentence, safe to show. An input image is judged by
its declared type and size, then by its decoded header (Pillow, in a thread); a download is
bounded in time and size and streamed to the run's folder. Never imports bot or discord.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import unicodedata
from dataclasses import dataclass
from io import BufferedWriter
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import aiohttp

import strategies
from pipeline.characters import Character
from pipeline.errors import RunError, ServiceError

if TYPE_CHECKING:
    from pipeline.settings import Settings

#: the longest negative prompt taken: it is a list of things to avoid, not an essay
NEGATIVE_LIMIT = 1000

#: the image formats ComfyUI's LoadImage reads that people send: Pillow's name -> (MIME, suffix)
IMAGE_FORMATS = {
    "PNG": ("image/png", ".png"),
    "JPEG": ("image/jpeg", ".jpg"),
    "WEBP": ("image/webp", ".webp"),
}
_MIME_TYPES = {mime for mime, _ in IMAGE_FORMATS.values()}
_KINDS = "PNG, JPEG or WebP"

#: where a run keeps the input image it was given, inside its folder
INPUT_FOLDER = "input"

_CHUNK = 64 * 1024


@dataclass(frozen=True)
class ImageLimits:
    """How big an input image may be, and how long its download may take."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    download_seconds: float = 60.0

    @classmethod
    def of(cls, settings: Settings) -> ImageLimits:
        return cls(
            max_bytes=int(settings.input_image_max_mb * 1024 * 1024),
            max_pixels=int(settings.input_image_max_megapixels * 1_000_000),
            download_seconds=settings.input_image_download_seconds,
        )

    def refuse_size(self, size: int) -> None:
        if size > self.max_bytes:
            raise RunError(f"The image is {_mb(size)}; at most {_mb(self.max_bytes)} is taken.")

    def refuse_stream(self, received: int) -> None:
        """For a download under way: `received` bytes so far, more may follow."""
        if received > self.max_bytes:
            raise RunError(f"The image is over {_mb(self.max_bytes)}, the most that is taken.")

    def refuse_pixels(self, width: int, height: int) -> None:
        if width * height > self.max_pixels:
            raise RunError(
                f"The image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels); "
                f"at most {self.max_pixels / 1e6:g} megapixels are taken."
            )


@dataclass(frozen=True)
class Options:
    """A run's options after checking: the type to make (chosen for an image when none was
    asked), the style, count and negative prompt (None: the character decides)."""

    generation_type: str | None = None
    style: str | None = None
    count: int | None = None
    negative: str | None = None


def check_options(
    character: Character,
    *,
    generation_type: str | None = None,
    style: str | None = None,
    count: int | None = None,
    negative: str | None = None,
    with_image: bool = False,
    max_count: int = 8,
) -> Options:
    """The options checked against the character; a RunError of one sentence for the first
    wrong one. With an image and no type, the type is the character's heaviest-weighted one
    that starts from an input image."""
    negative = check_text(negative, "negative prompt", NEGATIVE_LIMIT)
    if count is not None and not 1 <= count <= max_count:
        raise RunError(f"The count must be between 1 and {max_count}, not {count}.")
    if style is not None:
        style = style.strip()
        styles = character.generation.style_weights
        if style not in styles:
            offered = ", ".join(s for s in sorted(styles) if s) or "none"
            raise RunError(f"{character.key} has no style {style[:40]!r}; it has: {offered}.")
    if with_image:
        generation_type = _image_type(character, generation_type)
    if generation_type is not None:
        character.refuse_unrunnable(generation_type, with_image=with_image)
    return Options(generation_type, style, count, negative)


def _image_type(character: Character, asked: str | None) -> str:
    """The type that takes the given image: the one asked for, if it starts from an image."""
    if asked is not None:
        if asked in strategies.STRATEGY_NAMES and not strategies.needs(asked).input_images:
            takes = ", ".join(_image_types()) or "none"
            raise RunError(
                f"{asked} does not start from an image; leave the image out or ask for {takes}."
            )
        return asked
    weights = character.generation.generation_type_weights
    usable = [
        name
        for name in _image_types()
        if character.unrunnable_reason(name, with_image=True) is None
    ]
    if not usable:
        raise RunError(
            f"{character.key} has no workflow that starts from an image "
            f"({', '.join(_image_types())}); leave the image out."
        )
    return max(usable, key=lambda name: weights.get(name, 0.0))


def _image_types() -> list[str]:
    return [name for name in strategies.STRATEGY_NAMES if strategies.needs(name).input_images]


def check_text(text: str | None, what: str, limit: int) -> str | None:
    """`text` stripped (None when empty); a RunError when it is too long or holds control
    characters (invisible, and they break logs and terminals)."""
    if text is None:
        return None
    text = text.strip()
    if len(text) > limit:
        raise RunError(f"The {what} is {len(text)} characters long; at most {limit} are allowed.")
    bad = next((ch for ch in text if unicodedata.category(ch) in {"Cc", "Cs"}), None)
    if bad is not None:
        raise RunError(
            f"The {what} holds a control character (U+{ord(bad):04X}); write plain text."
        )
    return text or None


# ---------------------------------------------------------------------------- input images


def check_declared(
    limits: ImageLimits,
    *,
    content_type: str | None,
    size: int,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """What an upload says of itself (Discord's attachment: type, bytes, pixels), checked
    before a byte is fetched; the file's own header is checked again after the download."""
    kind = (content_type or "").split(";")[0].strip().lower()
    if kind not in _MIME_TYPES:
        shown = kind[:40] or "of no declared type"
        raise RunError(f"The image must be {_KINDS}; this file is {shown}.")
    limits.refuse_size(size)
    if width is not None and height is not None:
        limits.refuse_pixels(width, height)


def inspect_image(path: Path, limits: ImageLimits) -> str:
    """The suffix for the image at `path` (blocking: call it in a thread), after checking its
    bytes and the pixels its header declares; nothing past the header is decoded."""
    from PIL import Image, UnidentifiedImageError

    limits.refuse_size(path.stat().st_size)
    try:
        with Image.open(path) as image:
            kind = image.format or ""
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise RunError(
            f"The image has too many pixels; at most {limits.max_pixels / 1e6:g} megapixels "
            "are taken."
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise RunError(f"The file is not a readable image; send a {_KINDS} file.") from None
    if kind not in IMAGE_FORMATS:
        raise RunError(f"The image must be {_KINDS}; this file is {kind or 'unknown'}.")
    limits.refuse_pixels(width, height)
    return IMAGE_FORMATS[kind][1]


def input_folder(run_folder: Path) -> Path:
    return run_folder / INPUT_FOLDER


def run_folder_of(character: Character, run_id: str) -> Path:
    """`pipeline.run.run_folder`, imported on use (it loads the strategies and ComfyUI's
    client, which a command that only checks options does not need)."""
    from pipeline.run import run_folder

    return run_folder(character, run_id)


def copy_image(source: Path, run_folder: Path, limits: ImageLimits) -> Path:
    """A checked copy of the image at `source` in the run's folder (blocking: in a thread),
    so the run can be resumed whatever becomes of the original."""
    if not source.is_file():
        raise RunError(f"There is no image file at {source}.")
    suffix = inspect_image(source, limits)
    folder = input_folder(run_folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"image{suffix}"
    shutil.copyfile(source, target)
    return target


async def fetch_image(
    session: aiohttp.ClientSession, url: str, run_folder: Path, limits: ImageLimits
) -> Path:
    """Download the image at `url` into the run's folder, at most `limits.max_bytes` within
    `limits.download_seconds`, streamed to disk; then its header is checked. RunError for an
    image that breaks a limit, ServiceError when the download fails (the URL never shown:
    it may carry a signature)."""
    folder = input_folder(run_folder)
    partial = folder / "download.partial"
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    try:
        async with asyncio.timeout(limits.download_seconds):
            async with session.get(url) as response:
                if response.status != 200:
                    raise ServiceError(
                        f"the image download answered HTTP {response.status}",
                        user_message="Discord did not hand over the image; try again.",
                    )
                if response.content_length is not None:
                    limits.refuse_size(response.content_length)
                handle = await _open_for_writing(partial)
                try:
                    received = 0
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        received += len(chunk)
                        limits.refuse_stream(received)
                        await asyncio.to_thread(handle.write, chunk)
                finally:
                    await asyncio.to_thread(handle.close)
        suffix = await asyncio.to_thread(inspect_image, partial, limits)
        target = folder / f"image{suffix}"
        await asyncio.to_thread(partial.replace, target)
        return target
    except TimeoutError:
        raise ServiceError(
            "the image download timed out",
            user_message=f"The image took longer than {limits.download_seconds:g} s to "
            "download; try again.",
        ) from None
    except aiohttp.ClientError as exc:
        raise ServiceError(
            f"the image download failed: {type(exc).__name__}",
            user_message="The image could not be downloaded; try again.",
        ) from None
    finally:
        await asyncio.to_thread(_tidy, partial, run_folder)


async def _open_for_writing(path: Path) -> BinaryIO:
    """Open in a thread; a cancel (the download's deadline) while the thread opens it closes
    the file once the thread has it, so no handle is left behind."""
    opening = asyncio.ensure_future(asyncio.to_thread(path.open, "wb"))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _close_opened(opening: asyncio.Future[BufferedWriter]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


def _tidy(partial: Path, run_folder: Path) -> None:
    """Remove a download's leftovers: its partial file, and the folders it made if empty."""
    with contextlib.suppress(OSError):
        partial.unlink(missing_ok=True)
        partial.parent.rmdir()  # fails, as it should, when the image is in it
        run_folder.rmdir()


def _mb(size: int) -> str:
    """`20.0 MB`, or `30 KB` under a megabyte."""
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"
