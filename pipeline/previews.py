"""Review previews: a file over a chat's upload limit gets a smaller copy to show a reviewer.

Owns the preview policy: a JPEG for an image, an H.264 MP4 at a bitrate the clip's length
allows for a video (two tries, then none: the reviewer lists it instead). Previews are made once
into the run folder's `review-previews/` and used again after a restart; publishing never reads
them (it fits the originals). Imports the media module's ffmpeg helpers and Pillow only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg
from PIL import Image, ImageDraw, ImageFont, ImageOps

from pipeline.models import MediaKind, Run
from pipeline.publish.media import (
    MediaError,
    VideoInfo,
    compile_graph,
    probe_video,
    run_ffmpeg,
)

log = logging.getLogger(__name__)

#: the folder of a run's previews, beside its media
PREVIEW_FOLDER = "review-previews"


@dataclass(frozen=True)
class VideoPass:
    """One try at a video preview: the longest side, and shares of the byte budget."""

    max_side: int
    #: the share of the budget's bitrate the video stream is given (x264 overshoots a little)
    share: float
    audio_kbps: int


@dataclass(frozen=True)
class PreviewPolicy:
    """How previews are made. The budget is the limit less `headroom` (the container's own
    bytes and the encoder's overshoot); a pass whose video bitrate would fall under
    `min_video_kbps` is not tried (a picture that blurry shows a reviewer nothing)."""

    headroom: float = 0.1
    min_video_kbps: int = 40
    passes: tuple[VideoPass, ...] = (
        VideoPass(max_side=720, share=0.9, audio_kbps=64),
        VideoPass(max_side=480, share=0.6, audio_kbps=32),
    )
    preset: str = "veryfast"
    #: how long one encode may take: a 2 s 1280x720 clip takes a quarter of a second here, so
    #: this only ends an input that stalls ffmpeg (the review waits on it)
    encode_seconds: float = 300.0


DEFAULT_POLICY = PreviewPolicy()


def preview_path(folder: Path, relative: str, kind: MediaKind) -> Path:
    """Where the preview of the run's media file `relative` is kept."""
    suffix = ".mp4" if kind is MediaKind.VIDEO else ".jpg"
    return (folder / PREVIEW_FOLDER / relative).with_suffix(suffix)


async def review_preview(
    folder: Path,
    relative: str,
    kind: MediaKind,
    limit: int,
    *,
    policy: PreviewPolicy = DEFAULT_POLICY,
) -> Path | None:
    """A file of at most `limit` bytes that shows the run's media file `relative` (in
    `folder`): the original when small enough, else its preview (made now, or kept from
    before). None when a video cannot be made to fit (too long for the limit, unreadable, no
    ffmpeg): the reviewer lists it without a file. The original is never changed."""
    source = folder / relative
    shown = f"run {folder.name}: {relative}"  # the run folder is named by the run's id
    stat = await asyncio.to_thread(source.stat)
    if stat.st_size <= limit:
        return source
    target = preview_path(folder, relative, kind)
    if await asyncio.to_thread(_usable, target, stat.st_mtime_ns, limit):
        log.info("%s: the preview made before is used again", shown)
        return target
    await asyncio.to_thread(target.parent.mkdir, parents=True, exist_ok=True)
    log.info(
        "%s is %d bytes, over the upload limit of %d: making a preview",
        shown,
        stat.st_size,
        limit,
    )
    if kind is MediaKind.IMAGE:
        return await asyncio.to_thread(_image_preview, source, target, limit)
    try:
        return await _video_preview(source, target, limit, policy, shown)
    except MediaError as exc:
        log.warning("%s: no preview (%s)", shown, exc)
        return None


def _usable(target: Path, source_mtime_ns: int, limit: int) -> bool:
    """Whether a preview kept from before still stands for the original and fits."""
    try:
        kept = target.stat()
    except FileNotFoundError:
        return False
    return kept.st_size <= limit and kept.st_mtime_ns >= source_mtime_ns


def _image_preview(source: Path, target: Path, limit: int) -> Path:
    """A JPEG of `source` under `limit` bytes (blocking: call it in a thread)."""
    with Image.open(source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    partial = target.with_name(target.stem + ".part.jpg")
    side, quality = 2048, 85
    try:
        while True:
            copy = image.copy()
            copy.thumbnail((side, side))
            copy.save(partial, "JPEG", quality=quality, optimize=True)
            if partial.stat().st_size <= limit or side <= 128:
                break
            side, quality = int(side * 0.7), max(quality - 10, 40)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    partial.replace(target)
    return target


def video_budget_kbps(limit: int, seconds: float, headroom: float) -> float:
    """The average bitrate (kbit/s, audio included) that keeps `seconds` of video under
    `limit` bytes with `headroom` (a share) to spare."""
    return limit * 8 * (1 - headroom) / seconds / 1000


def preview_graph(
    source: Path, target: Path, info: VideoInfo, step: VideoPass, video_kbps: int, preset: str
) -> Any:
    """The ffmpeg-python graph of one preview try: H.264 at `video_kbps` (capped, so a busy
    scene cannot blow the budget), scaled down to `step.max_side`, AAC at `step.audio_kbps`
    when the clip has sound, no metadata, the index first (it plays while it loads)."""
    source_input = ffmpeg.input(str(source))
    side = step.max_side
    video = (
        source_input["v:0"]
        .filter(
            "scale",
            f"min({side},iw)",
            f"min({side},ih)",
            force_original_aspect_ratio="decrease",
            force_divisible_by=2,
        )
        .filter("format", "yuv420p")
    )
    streams = [video, source_input["a:0"]] if info.has_audio else [video]
    rate = f"{video_kbps}k"
    options: dict[str, Any] = {
        "c:v": "libx264",
        "b:v": rate,
        "maxrate": rate,
        "bufsize": f"{video_kbps * 2}k",
        "preset": preset,
        "movflags": "+faststart",
        "map_metadata": -1,
    }
    if info.has_audio:
        options |= {"c:a": "aac", "b:a": f"{step.audio_kbps}k", "ac": 2}
    return ffmpeg.output(*streams, str(target), **options)


async def _video_preview(
    source: Path, target: Path, limit: int, policy: PreviewPolicy, shown: str
) -> Path | None:
    info = await probe_video(source)
    if info.duration <= 0:
        raise MediaError(f"{source.name}: the video has no duration")
    budget = video_budget_kbps(limit, info.duration, policy.headroom)
    partial = target.with_name(target.stem + ".part.mp4")
    try:
        for step in policy.passes:
            audio = step.audio_kbps if info.has_audio else 0
            video_kbps = int((budget - audio) * step.share)
            if video_kbps < policy.min_video_kbps:
                continue
            encode = preview_graph(source, partial, info, step, video_kbps, policy.preset)
            await run_ffmpeg(compile_graph(encode), timeout_s=policy.encode_seconds)
            size = (await asyncio.to_thread(partial.stat)).st_size
            if size <= limit:
                await asyncio.to_thread(partial.replace, target)
                log.info(
                    "%s: a %d-byte preview at %d kbit/s, at most %d px",
                    shown,
                    size,
                    video_kbps,
                    step.max_side,
                )
                return target
            log.info("%s: a preview of %d bytes is still over %d", shown, size, limit)
    finally:
        # failed, over the limit, out of time or cancelled: half a file is no use to anyone
        with contextlib.suppress(OSError):
            partial.unlink(missing_ok=True)
    log.warning(
        "%s: %.1f s of video cannot be shown in %d bytes; it is listed without a file",
        shown,
        info.duration,
        limit,
    )
    return None


# ------------------------------------------------------------ a sticker pack's contact sheet
#: a contact sheet's cell (a sticker is 320x320: half size still shows it) and its columns
SHEET_CELL = 160
SHEET_COLUMNS = 3
SHEET_NAME = "contact-sheet.png"


async def contact_sheet(folder: Path, run: Run) -> Path | None:
    """A sticker pack's kept stickers as one image, a grid numbered as the review numbers them
    (1 is the first kept file), on a checkerboard that shows their transparency; made into
    the run's `review-previews/`. None for a run that is no sticker pack, or has nothing kept."""
    if not run.stickers:
        return None
    kept = [item for item in run.media if item.kept]
    if not kept:
        return None
    names = [
        run.stickers[item.description_index].name
        if 0 <= item.description_index < len(run.stickers)
        else ""
        for item in kept
    ]
    target = folder / PREVIEW_FOLDER / SHEET_NAME
    files = [folder / item.path for item in kept]
    return await asyncio.to_thread(_draw_sheet, files, names, target)


def _checkerboard(size: int, square: int = 10) -> Image.Image:
    board = Image.new("RGB", (size, size), (255, 255, 255))
    draw = ImageDraw.Draw(board)
    for y in range(0, size, square):
        for x in range(0, size, square):
            if (x // square + y // square) % 2:
                draw.rectangle((x, y, x + square - 1, y + square - 1), fill=(220, 220, 220))
    return board


def _draw_sheet(files: list[Path], names: list[str], target: Path) -> Path:
    columns = min(SHEET_COLUMNS, len(files))
    rows = -(-len(files) // columns)
    label = 22
    sheet = Image.new("RGB", (columns * SHEET_CELL, rows * (SHEET_CELL + label)), "white")
    board = _checkerboard(SHEET_CELL)
    font = ImageFont.load_default(size=14)
    draw = ImageDraw.Draw(sheet)
    for number, (path, name) in enumerate(zip(files, names, strict=True), start=1):
        x = (number - 1) % columns * SHEET_CELL
        y = (number - 1) // columns * (SHEET_CELL + label)
        sheet.paste(board, (x, y))
        try:
            with Image.open(path) as opened:
                opened.thumbnail((SHEET_CELL, SHEET_CELL))
                cell = opened.convert("RGBA")
        except OSError:  # a sticker gone from the disk is shown as an empty cell
            cell = Image.new("RGBA", (1, 1), (0, 0, 0, 0))
        sheet.paste(
            cell, (x + (SHEET_CELL - cell.width) // 2, y + (SHEET_CELL - cell.height) // 2), cell
        )
        draw.text((x + 4, y + SHEET_CELL + 3), f"{number}. {name}"[:24], fill="black", font=font)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    sheet.save(partial, format="PNG", optimize=True)
    partial.replace(target)
    return target
