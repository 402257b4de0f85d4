"""Fitting media to each platform before review, so the reviewer sees exactly what is posted.

Owns the platform limits for images and videos, the ffmpeg binary lookup and probing, and the
ffmpeg command lines, built as ffmpeg-python graphs. Pillow runs in a thread and ffmpeg as an
asyncio subprocess with a deadline and a cap on what is read back: nothing here blocks the
event loop. Imports only domain modules (models, errors) and ffmpeg-python; never a platform
client.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import math
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import ffmpeg
from PIL import Image, ImageCms, ImageOps

from pipeline.errors import PublishError, disk_reason
from pipeline.models import MediaKind, Platform
from strategies.media import media_kind as kind_of

log = logging.getLogger(__name__)

Fit = Literal["pad", "crop"]

#: the fitter's own outputs, by suffix: what `fit_media` writes and `find_fitted` finds
FITTED_MIME = {".jpg": "image/jpeg", ".png": "image/png", ".mp4": "video/mp4", ".gif": "image/gif"}


class MediaError(PublishError):
    """A file cannot be fitted to a platform (unreadable, no video stream, too large)."""

    user_message = "A media file could not be prepared for posting."


@dataclass(frozen=True)
class ImageLimits:
    """What a platform accepts for a still image."""

    min_aspect: float | None  # width / height; None: any
    max_aspect: float | None
    max_width: int
    max_height: int
    max_bytes: int
    keep_alpha_as_png: bool  # X takes PNG; Instagram's feed takes JPEG only
    min_width: int = 0


@dataclass(frozen=True)
class VideoLimits:
    """What a platform accepts for a video: H.264 / AAC MP4 within these bounds."""

    min_seconds: float
    max_seconds: float
    #: exact output size (Instagram reels: 9:16), or None to keep the aspect within bounds
    frame: tuple[int, int] | None
    min_aspect: float
    max_aspect: float
    max_landscape: tuple[int, int]
    max_portrait: tuple[int, int]
    max_bytes: int
    fps: int = 30
    max_bitrate: str = "8M"
    #: an animated GIF within these is posted as a GIF (X plays it as one); None: always MP4
    gif_max_bytes: int | None = None
    gif_max_size: tuple[int, int] | None = None


# Instagram feed photos: aspect 4:5 .. 1.91:1. instagrapi's `prepare_image` scales every photo
# into 1080x1350 itself, and reports the original size to `media/configure/`, so we fit into
# the same box: what the reviewer sees is then exactly what is uploaded (not only 1440 wide).
INSTAGRAM_IMAGE = ImageLimits(
    min_aspect=4 / 5,
    max_aspect=1.91,
    max_width=1080,
    max_height=1350,
    max_bytes=8 * 1024 * 1024,
    keep_alpha_as_png=False,
    min_width=320,
)
# X: JPEG/PNG under 5 MB (https://docs.x.com/x-api/media/quickstart/best-practices).
TWITTER_IMAGE = ImageLimits(
    min_aspect=None,
    max_aspect=None,
    max_width=4096,
    max_height=4096,
    max_bytes=5 * 1000 * 1000,
    keep_alpha_as_png=True,
)
# Instagram reels: 9:16, 3..90 s (the limits; the app allows longer, the API does not).
INSTAGRAM_VIDEO = VideoLimits(
    min_seconds=3.0,
    max_seconds=90.0,
    frame=(1080, 1920),
    min_aspect=9 / 16,
    max_aspect=9 / 16,
    max_landscape=(1080, 1920),
    max_portrait=(1080, 1920),
    max_bytes=1000 * 1000 * 1000,
)
# X tweet_video: 0.5..140 s, aspect 1:3..3:1, at most 1920x1200 / 1200x1900, 512 MB, <= 60 fps;
# tweet_gif: 15 MB, 1280x1080 (https://docs.x.com/x-api/media/quickstart/best-practices).
TWITTER_VIDEO = VideoLimits(
    min_seconds=0.5,
    max_seconds=140.0,
    frame=None,
    min_aspect=1 / 3,
    max_aspect=3.0,
    max_landscape=(1920, 1200),
    max_portrait=(1200, 1900),
    max_bytes=512 * 1000 * 1000,
    gif_max_bytes=15 * 1000 * 1000,
    gif_max_size=(1280, 1080),
)

# Bluesky: each image a blob of at most 1,000,000 bytes (app.bsky.embed.images, maxSize), any
# aspect ratio; the app shows them at most 2000 px on a side, so nothing larger is sent. JPEG
# only: a PNG that size rarely gets under the byte cap without shrinking a lot.
BLUESKY_IMAGE = ImageLimits(
    min_aspect=None,
    max_aspect=None,
    max_width=2000,
    max_height=2000,
    max_bytes=1000 * 1000,
    keep_alpha_as_png=False,
)
# Bluesky video (app.bsky.embed.video): MP4 up to 3 minutes and 100 MB (the lexicon's former
# blob limit, which every PDS takes; bluesky.py checks the same before uploading).
BLUESKY_VIDEO = VideoLimits(
    min_seconds=0.5,
    max_seconds=180.0,
    frame=None,
    min_aspect=1 / 3,
    max_aspect=3.0,
    max_landscape=(1920, 1080),
    max_portrait=(1080, 1920),
    max_bytes=100 * 1000 * 1000,
)

# Facebook Page photos: JPEG or PNG under 4 MB, any aspect; Facebook shows them at most 2048 px
# wide, so nothing larger is sent (developers.facebook.com/docs/graph-api/reference/page/photos).
FACEBOOK_IMAGE = ImageLimits(
    min_aspect=None,
    max_aspect=None,
    max_width=2048,
    max_height=2048,
    max_bytes=4 * 1000 * 1000,
    keep_alpha_as_png=True,
)
# Facebook Page videos: MP4, up to 240 minutes and 10 GB; the non-resumable upload takes 1 GB.
FACEBOOK_VIDEO = VideoLimits(
    min_seconds=1.0,
    max_seconds=240 * 60.0,
    frame=None,
    min_aspect=9 / 16,
    max_aspect=16 / 9,
    max_landscape=(1920, 1080),
    max_portrait=(1080, 1920),
    max_bytes=1000 * 1000 * 1000,
)

# Threads: JPEG or PNG up to 8 MB, 320 to 1440 px wide, aspect up to 10:1 (Threads' media
# specifications); JPEG here, which every image host and Threads take.
THREADS_IMAGE = ImageLimits(
    min_aspect=0.1,
    max_aspect=10.0,
    max_width=1440,
    max_height=1440 * 4,
    max_bytes=8 * 1000 * 1000,
    keep_alpha_as_png=False,
    min_width=320,
)
# Threads video: MP4 up to 5 minutes and 1 GB. Fitted so the reviewer sees it, but not posted
# yet: the publisher posts text and images (see threads.py).
THREADS_VIDEO = VideoLimits(
    min_seconds=1.0,
    max_seconds=300.0,
    frame=None,
    min_aspect=0.01,
    max_aspect=10.0,
    max_landscape=(1920, 1080),
    max_portrait=(1080, 1920),
    max_bytes=1000 * 1000 * 1000,
)

IMAGE_LIMITS = {
    Platform.INSTAGRAM: INSTAGRAM_IMAGE,
    Platform.TWITTER: TWITTER_IMAGE,
    Platform.BLUESKY: BLUESKY_IMAGE,
    Platform.FACEBOOK: FACEBOOK_IMAGE,
    Platform.THREADS: THREADS_IMAGE,
}
VIDEO_LIMITS = {
    Platform.INSTAGRAM: INSTAGRAM_VIDEO,
    Platform.TWITTER: TWITTER_VIDEO,
    Platform.BLUESKY: BLUESKY_VIDEO,
    Platform.FACEBOOK: FACEBOOK_VIDEO,
    Platform.THREADS: THREADS_VIDEO,
}

#: letterbox colour for "pad" (white, as Instagram's own app pads)
PAD_RGB = (255, 255, 255)


@dataclass(frozen=True)
class FittedMedia:
    """One file ready for one platform, with what was measured on it."""

    path: Path
    kind: MediaKind
    mime: str
    width: int
    height: int
    duration: float | None = None
    #: a JPEG frame of the video (Instagram's reel cover)
    cover: Path | None = None

    @property
    def is_gif(self) -> bool:
        return self.mime == "image/gif"


# ---------------------------------------------------------------------------- ffmpeg


@cache
def ffmpeg_binary() -> str:
    """`ffmpeg` on PATH, else the binary imageio-ffmpeg ships."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return str(imageio_ffmpeg.get_ffmpeg_exe())
    except (ImportError, RuntimeError) as exc:
        raise MediaError(
            "no ffmpeg: install it or the imageio-ffmpeg package",
            user_message="ffmpeg is not installed, so videos cannot be prepared.",
        ) from exc


#: how long one ffmpeg run may take: reading a file's streams, and encoding or decoding a whole
#: video (a 90 s reel at `veryfast` takes about a minute on two busy cores); past it the
#: process is killed, so a stuck input never holds a run for good
PROBE_SECONDS = 60.0
ENCODE_SECONDS = 900.0
#: what is kept of ffmpeg's stderr: its head (the streams it read) and its tail (the error,
#: the last progress line); the middle of a long run's progress lines is dropped as it comes
STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class FfmpegResult:
    """How an ffmpeg run ended: its exit code, stdout (when read) and stderr (head and tail)."""

    returncode: int
    stdout: bytes
    stderr: str


async def run_ffmpeg(
    command: Sequence[str],
    *,
    timeout_s: float,
    stdout_limit: int = 0,
    check: bool = True,
) -> FfmpegResult:
    """Run an ffmpeg command line (from `compile_graph`) as an asyncio subprocess.

    stdout is read only with a `stdout_limit` (bytes), stderr always, in head and tail. A
    MediaError when it runs past `timeout_s` seconds, writes more than the limit, or (with
    `check`) exits non-zero. The process never outlives the call, a cancelled one included.
    """
    process = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE if stdout_limit else asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    stderr = asyncio.ensure_future(_ends(process.stderr, STDERR_KEEP))
    try:
        async with asyncio.timeout(timeout_s):
            stdout = b""
            if stdout_limit:
                assert process.stdout is not None
                stdout = await _capped(process.stdout, stdout_limit)
            text = await stderr
            code = await process.wait()
    except TimeoutError:
        raise MediaError(
            f"ffmpeg ran past its {timeout_s:g} s deadline",
            user_message="Preparing a video took too long and was stopped.",
        ) from None
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
        stderr.cancel()
    if check and code != 0:
        tail = text.strip().splitlines()[-3:]
        raise MediaError(f"ffmpeg failed ({code}): {' | '.join(tail)}")
    return FfmpegResult(code, stdout, text)


async def _capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    data = bytearray()
    while chunk := await stream.read(64 * 1024):
        data += chunk
        if len(data) > limit:
            raise MediaError(f"ffmpeg wrote more than {limit} bytes")
    return bytes(data)


async def _ends(stream: asyncio.StreamReader, keep: int) -> str:
    """The first and last `keep` bytes of a stream, read to its end, as text."""
    head = bytearray()
    tail = bytearray()
    dropped = False
    while chunk := await stream.read(64 * 1024):
        room = keep - len(head)
        head += chunk[:room]
        tail += chunk[room:]
        if len(tail) > keep:
            del tail[: len(tail) - keep]
            dropped = True
    gap = b"\n...\n" if dropped else b""
    return bytes(head + gap + tail).decode("utf-8", "replace")


def compile_graph(graph: Any, binary: str | None = None) -> list[str]:
    """The command line of an ffmpeg-python output graph, with the binary and the options
    every run here takes (no banner, never reading the terminal, overwriting the output)."""
    command = graph.compile(
        cmd=[binary or ffmpeg_binary(), "-hide_banner", "-nostdin"], overwrite_output=True
    )
    return [str(part) for part in command]


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    duration: float
    fps: float | None
    codec: str
    pix_fmt: str
    has_audio: bool
    audio_codec: str | None


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(
    r"Stream #\S+.*?: Video: (\w+)[^,]*, (\w+)(?:\([^)]*\))?[^,]*, (\d{2,5})x(\d{2,5})"
)
_AUDIO = re.compile(r"Stream #\S+.*?: Audio: (\w+)")
_FPS = re.compile(r", (\d+(?:\.\d+)?) fps")
_TIME = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")


def _seconds(match: re.Match[str]) -> float:
    hours, minutes, seconds = match.groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


async def probe_video(
    path: Path, *, binary: str | None = None, timeout_s: float = PROBE_SECONDS
) -> VideoInfo:
    """Size, duration, codecs of a video, read from `ffmpeg -i` (ffprobe may be absent)."""
    binary = binary or ffmpeg_binary()
    # no output named, so no graph: ffmpeg reads the streams, prints them and exits 1
    probe = [binary, "-hide_banner", "-nostdin", "-i", str(path)]
    text = (await run_ffmpeg(probe, timeout_s=timeout_s, check=False)).stderr
    video = _VIDEO.search(text)
    if video is None:
        raise MediaError(f"{path.name}: no video stream found")
    audio = _AUDIO.search(text)
    fps = _FPS.search(text[video.start() :])
    duration = _DURATION.search(text)
    seconds = _seconds(duration) if duration else 0.0
    if seconds <= 0:  # some containers (streamed WebM) carry no duration: decode to count it
        decode = ffmpeg.input(str(path))["v:0"].output("-", format="null")
        decoded = await run_ffmpeg(compile_graph(decode, binary), timeout_s=ENCODE_SECONDS)
        times = _TIME.findall(decoded.stderr)
        if times:
            h, m, s = times[-1]
            seconds = int(h) * 3600 + int(m) * 60 + float(s)
    return VideoInfo(
        width=int(video.group(3)),
        height=int(video.group(4)),
        duration=seconds,
        fps=float(fps.group(1)) if fps else None,
        codec=video.group(1),
        pix_fmt=video.group(2),
        has_audio=audio is not None,
        audio_codec=audio.group(1) if audio else None,
    )


# ---------------------------------------------------------------------------- geometry


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def frame_for(width: int, height: int, limits: VideoLimits) -> tuple[int, int]:
    """The output size of a video: the fixed frame, else its aspect clamped and scaled to fit."""
    if limits.frame is not None:
        return limits.frame
    aspect = min(max(width / height, limits.min_aspect), limits.max_aspect)
    box_w, box_h = limits.max_landscape if aspect >= 1 else limits.max_portrait
    # the source size at the clamped aspect (pad and crop give the same proportions)
    w, h = (width, width / aspect) if aspect < width / height else (height * aspect, height)
    scale = min(1.0, box_w / w, box_h / h)
    return _even(w * scale), _even(h * scale)


def image_box(width: int, height: int, limits: ImageLimits, fit: Fit) -> tuple[int, int, int, int]:
    """(canvas width, canvas height, content width, content height) for an image, in source
    pixels: crop cuts the content (and canvas) to the aspect limit, pad grows the canvas."""
    aspect = width / height
    lo = limits.min_aspect or aspect
    hi = limits.max_aspect or aspect
    if lo <= aspect <= hi:
        return width, height, width, height
    target = lo if aspect < lo else hi
    if fit == "crop":
        if aspect < lo:  # too tall: keep the width, cut the height
            return width, math.floor(width / target), width, math.floor(width / target)
        return math.floor(height * target), height, math.floor(height * target), height
    if aspect < lo:  # too tall: widen the canvas
        return math.ceil(height * target), height, width, height
    return width, math.ceil(width / target), width, height


# ---------------------------------------------------------------------------- images


def _to_srgb(image: Image.Image) -> Image.Image:
    """Convert an embedded colour profile to sRGB; no profile means sRGB already."""
    icc = image.info.get("icc_profile")
    if not icc:
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        srgb = ImageCms.createProfile("sRGB")
        mode = "RGBA" if "A" in image.getbands() else "RGB"
        converted = ImageCms.profileToProfile(image, source, srgb, outputMode=mode)
    except (ImageCms.PyCMSError, OSError, ValueError):
        log.warning("ignored an unreadable colour profile")
        return image
    return converted if converted is not None else image


def _fit_image_sync(source: Path, dest_stem: Path, limits: ImageLimits, fit: Fit) -> FittedMedia:
    try:
        with Image.open(source) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError) as exc:
        raise MediaError(f"{source.name}: not a readable image ({exc})") from exc
    image = _to_srgb(image)
    has_alpha = image.mode in {"RGBA", "LA", "PA"} or (
        image.mode == "P" and "transparency" in image.info
    )
    keep_alpha = has_alpha and limits.keep_alpha_as_png
    image = image.convert("RGBA" if has_alpha else "RGB")
    if has_alpha and not keep_alpha:  # flatten on white: JPEG has no transparency
        flat = Image.new("RGB", image.size, PAD_RGB)
        flat.paste(image, mask=image.getchannel("A"))
        image = flat

    canvas_w, canvas_h, content_w, content_h = image_box(*image.size, limits, fit)
    if (content_w, content_h) != image.size:  # crop around the centre
        left = (image.width - content_w) // 2
        top = (image.height - content_h) // 2
        image = image.crop((left, top, left + content_w, top + content_h))
    if (canvas_w, canvas_h) != image.size:  # pad around the centre
        fill = (*PAD_RGB, 0) if keep_alpha else PAD_RGB
        canvas = Image.new(image.mode, (canvas_w, canvas_h), fill)
        canvas.paste(image, ((canvas_w - image.width) // 2, (canvas_h - image.height) // 2))
        image = canvas

    scale = min(1.0, limits.max_width / image.width, limits.max_height / image.height)
    if limits.min_width and image.width * scale < limits.min_width:
        scale = limits.min_width / image.width
    if scale != 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    image = _clamp_aspect(image, limits)

    suffix, mime = (".png", "image/png") if keep_alpha else (".jpg", "image/jpeg")
    dest = dest_stem.with_suffix(suffix)
    data = _encode(image, keep_alpha)
    while len(data) > limits.max_bytes:  # shrink until under the byte limit
        if image.width < 64:
            raise MediaError(f"{source.name}: cannot get under {limits.max_bytes} bytes")
        image = image.resize(
            (round(image.width * 0.85), round(image.height * 0.85)), Image.Resampling.LANCZOS
        )
        data = _encode(image, keep_alpha)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        partial.write_bytes(data)
    except OSError:
        with contextlib.suppress(OSError):  # half a file is no use to anyone
            partial.unlink()
        raise
    partial.replace(dest)
    return FittedMedia(dest, MediaKind.IMAGE, mime, image.width, image.height)


def _clamp_aspect(image: Image.Image, limits: ImageLimits) -> Image.Image:
    """Rounding can push a border case a pixel outside the aspect limit: trim that pixel."""
    if limits.min_aspect and image.width / image.height < limits.min_aspect:
        return image.crop((0, 0, image.width, math.floor(image.width / limits.min_aspect)))
    if limits.max_aspect and image.width / image.height > limits.max_aspect:
        return image.crop((0, 0, math.floor(image.height * limits.max_aspect), image.height))
    return image


def _encode(image: Image.Image, png: bool) -> bytes:
    """The image as PNG or JPEG with no metadata at all (no EXIF, text chunks or profile)."""
    out = io.BytesIO()
    if png:
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "JPEG", quality=90, optimize=True, progressive=True)
    return out.getvalue()


# ---------------------------------------------------------------------------- videos


#: a silent stereo track for a video without sound: some clients and Instagram expect audio
SILENCE = "anullsrc=channel_layout=stereo:sample_rate=44100"


def fit_video_graph(
    source: Path,
    target: Path,
    info: VideoInfo,
    limits: VideoLimits,
    fit: Fit,
    *,
    preset: str,
) -> Any:
    """The ffmpeg-python graph that makes `source` an H.264/AAC MP4 within `limits`: scaled into
    the frame and cropped or padded to it, at the platform's frame rate, looped up to the
    shortest length and cut at the longest, without metadata, the index first (faststart)."""
    width, height = frame_for(info.width, info.height, limits)
    seconds = min(max(info.duration, limits.min_seconds), limits.max_seconds)
    loops = max(0, math.ceil(limits.min_seconds / info.duration) - 1)
    looped = ffmpeg.input(str(source), **({"stream_loop": loops} if loops else {}))
    video = looped["v:0"]
    if fit == "crop":
        video = video.filter("scale", width, height, force_original_aspect_ratio="increase").crop(
            "(iw-ow)/2", "(ih-oh)/2", width, height
        )
    else:
        video = video.filter("scale", width, height, force_original_aspect_ratio="decrease").filter(
            "pad", width, height, "(ow-iw)/2", "(oh-ih)/2", color="black"
        )
    video = video.filter("setsar", 1).filter("fps", fps=limits.fps).filter("format", "yuv420p")
    audio = looped["a:0"] if info.has_audio else ffmpeg.input(SILENCE, format="lavfi")["a:0"]
    return ffmpeg.output(
        video,
        audio,
        str(target),
        t=f"{seconds:.3f}",
        preset=preset,
        crf=21,
        maxrate=limits.max_bitrate,
        bufsize="16M",
        pix_fmt="yuv420p",
        ar=44100,
        ac=2,
        movflags="+faststart",
        map_metadata=-1,
        **{"c:v": "libx264", "profile:v": "high", "c:a": "aac", "b:a": "128k"},
    )


def _bits_per_second(rate: str) -> float:
    """ffmpeg's rate notation ("8M", "500k", "1200000") in bits per second."""
    scale = {"k": 1e3, "M": 1e6, "G": 1e9}.get(rate[-1:], 1.0)
    return float(rate[:-1] if rate[-1:] in "kMG" else rate) * scale


def goes_as_it_is(info: VideoInfo, limits: VideoLimits, size: int) -> bool:
    """Whether a video already is what `fit_video_graph` would make of it, so its streams are
    copied instead of encoded again (no generation lost, seconds instead of minutes): H.264 in
    yuv420p at exactly the frame the platform gets, at most its frame rate, within its length,
    AAC sound, and within its size and bitrate."""
    width, height = frame_for(info.width, info.height, limits)
    return (
        info.codec == "h264"
        and info.pix_fmt == "yuv420p"
        and (info.width, info.height) == (width, height)
        and info.fps is not None
        and 23 <= info.fps <= limits.fps + 0.01
        and limits.min_seconds <= info.duration <= limits.max_seconds
        and info.has_audio
        and info.audio_codec == "aac"
        and size <= limits.max_bytes
        and size * 8 / info.duration <= _bits_per_second(limits.max_bitrate)
    )


def copy_video_graph(source: Path, target: Path) -> Any:
    """The ffmpeg-python graph that copies `source`'s video and sound into a new MP4, without
    metadata, the index first (faststart)."""
    stream = ffmpeg.input(str(source))
    return ffmpeg.output(
        stream["v:0"],
        stream["a:0"],
        str(target),
        c="copy",
        movflags="+faststart",
        map_metadata=-1,
    )


def cover_graph(video: Path, target: Path, at: float) -> Any:
    """The ffmpeg-python graph of one JPEG frame of `video` at `at` seconds (a reel's cover)."""
    return ffmpeg.input(str(video), ss=f"{at:.3f}").output(
        str(target), map_metadata=-1, **{"frames:v": 1, "q:v": 3}
    )


def frames_graph(video: Path, moments: Sequence[float], max_side: int) -> Any:
    """The ffmpeg-python graph of one JPEG frame of `video` at each of `moments` (seconds), in
    that order, written to stdout one after the other (`split_jpegs` parts them): one process
    for all of them, each input seeking to its moment, each frame made to fit `max_side` on its
    longer side (never enlarged). A moment past the end gives no frame."""
    firsts = [
        ffmpeg.input(str(video), ss=f"{at:.3f}").video.filter("trim", end_frame=1) for at in moments
    ]
    joined = firsts[0] if len(firsts) == 1 else ffmpeg.concat(*firsts, v=1, a=0)
    # one-frame segments may end up with one time stamp: a second apart instead
    fitted = joined.filter("setpts", "N/TB").filter(
        "scale",
        w=f"min(iw,{max_side})",
        h=f"min(ih,{max_side})",
        force_original_aspect_ratio="decrease",
    )
    return fitted.output(
        "pipe:1", format="image2pipe", vcodec="mjpeg", fps_mode="passthrough", **{"q:v": 3}
    )


def split_jpegs(stream: bytes) -> list[bytes]:
    """The JPEG images of `stream`, written one after the other (ffmpeg's image2pipe), each
    from its start to its end marker. The segments are walked by their lengths and the scan
    data by its markers, so bytes inside a table or a scan are never taken for a boundary; a
    cut-short last image is left out. Linear in the stream's length."""
    images: list[bytes] = []
    start, size = 0, len(stream)
    while stream.startswith(b"\xff\xd8", start):
        end = _jpeg_end(stream, start + 2, size)
        if end is None:
            break
        images.append(stream[start:end])
        start = end
    return images


def _jpeg_end(stream: bytes, at: int, size: int) -> int | None:
    """Where the JPEG whose segments start at `at` ends (past its EOI), or None when cut short
    or malformed."""
    while at + 2 <= size and stream[at] == 0xFF:
        marker = stream[at + 1]
        if marker == 0xD9:  # EOI
            return at + 2
        if marker == 0xFF:  # a fill byte before a marker
            at += 1
            continue
        if at + 4 > size:
            return None
        at += 2 + int.from_bytes(stream[at + 2 : at + 4], "big")
        if marker == 0xDA:  # SOS: the scan runs to the next marker that is not FF00 or RSTn
            while True:
                at = stream.find(b"\xff", at)
                if at < 0 or at + 1 >= size:
                    return None
                following = stream[at + 1]
                if following == 0x00 or 0xD0 <= following <= 0xD7:
                    at += 2
                elif following == 0xFF:
                    at += 1
                else:
                    break
    return None


async def _fit_video(
    source: Path,
    dest_stem: Path,
    limits: VideoLimits,
    fit: Fit,
    *,
    preset: str,
    timeout_s: float,
) -> FittedMedia:
    info = await probe_video(source)
    if info.duration <= 0:
        raise MediaError(f"{source.name}: the video has no duration")
    width, height = frame_for(info.width, info.height, limits)
    seconds = min(max(info.duration, limits.min_seconds), limits.max_seconds)
    dest = dest_stem.with_suffix(".mp4")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.stem + ".part.mp4")
    cover = dest.with_name(dest.stem + ".cover.jpg")
    partial_cover = dest.with_name(dest.stem + ".cover.part.jpg")
    try:
        if goes_as_it_is(info, limits, (await asyncio.to_thread(source.stat)).st_size):
            encode = copy_video_graph(source, partial)
        else:
            encode = fit_video_graph(source, partial, info, limits, fit, preset=preset)
        await run_ffmpeg(compile_graph(encode), timeout_s=timeout_s)
        size = partial.stat().st_size
        if size > limits.max_bytes:
            raise MediaError(f"{source.name}: {size} bytes after fitting, over {limits.max_bytes}")
        partial.replace(dest)
        grab = cover_graph(dest, partial_cover, min(1.0, seconds / 2))
        await run_ffmpeg(compile_graph(grab), timeout_s=PROBE_SECONDS)
        partial_cover.replace(cover)
    except BaseException:
        # failed, out of time or cancelled: half a file is no use to anyone
        partial.unlink(missing_ok=True)
        partial_cover.unlink(missing_ok=True)
        raise
    return FittedMedia(dest, MediaKind.VIDEO, "video/mp4", width, height, seconds, cover)


def _gif_fits(path: Path, limits: VideoLimits) -> tuple[int, int] | None:
    if limits.gif_max_bytes is None or limits.gif_max_size is None:
        return None
    if path.stat().st_size > limits.gif_max_bytes:
        return None
    with Image.open(path) as image:
        if image.width > limits.gif_max_size[0] or image.height > limits.gif_max_size[1]:
            return None
        return image.size


# ---------------------------------------------------------------------------- the entry points


def media_kind(path: Path) -> MediaKind:
    """IMAGE or VIDEO by `strategies.media.media_kind` (an animated GIF is a video); a
    MediaError for a file that is missing or no media (blocking: call it in a thread)."""
    if not path.is_file():
        raise MediaError(f"{path.name}: no such file")
    kind = kind_of(path)
    if kind is None:
        raise MediaError(f"{path.name}: unknown media type {path.suffix.lower()!r}")
    return kind


async def fit_media(
    source: Path,
    platform: Platform,
    dest_stem: Path,
    *,
    fit: Fit = "pad",
    image_limits: ImageLimits | None = None,
    video_limits: VideoLimits | None = None,
    preset: str = "veryfast",
    encode_timeout: float = ENCODE_SECONDS,
) -> FittedMedia:
    """Fit one file for `platform`; the result is written next to `dest_stem` (its suffix is
    chosen here). Images are re-encoded with no metadata; videos become H.264/AAC MP4, encoded
    within `encode_timeout` seconds (a file cut short by a failure is removed).
    A disk that takes no more (full, quota) is an OSError naming the folder written, which
    the OS leaves out of a failed write."""
    try:
        return await _fit_media(
            source, platform, dest_stem, fit, image_limits, video_limits, preset, encode_timeout
        )
    except OSError as exc:
        if exc.filename is not None or disk_reason(exc) is None:
            raise
        raise OSError(exc.errno, exc.strerror, str(dest_stem.parent)) from exc


async def _fit_media(
    source: Path,
    platform: Platform,
    dest_stem: Path,
    fit: Fit,
    image_limits: ImageLimits | None,
    video_limits: VideoLimits | None,
    preset: str,
    encode_timeout: float,
) -> FittedMedia:
    kind = await asyncio.to_thread(media_kind, source)
    if kind is MediaKind.IMAGE:
        limits = image_limits or IMAGE_LIMITS[platform]
        fitted = await asyncio.to_thread(_fit_image_sync, source, dest_stem, limits, fit)
    else:
        vlimits = video_limits or VIDEO_LIMITS[platform]
        gif_size = (
            await asyncio.to_thread(_gif_fits, source, vlimits)
            if source.suffix.lower() == ".gif"
            else None
        )
        if gif_size is not None:  # the platform plays it as a GIF: post it untouched
            dest = dest_stem.with_suffix(".gif")
            dest.parent.mkdir(parents=True, exist_ok=True)
            await asyncio.to_thread(shutil.copyfile, source, dest)
            fitted = FittedMedia(dest, MediaKind.VIDEO, "image/gif", *gif_size)
        else:
            fitted = await _fit_video(
                source, dest_stem, vlimits, fit, preset=preset, timeout_s=encode_timeout
            )
    log.info(
        "fitted %s for %s: %dx%d %s",
        source.name,
        platform,
        fitted.width,
        fitted.height,
        fitted.mime,
    )
    return fitted


def fitted_stem(run_dir: Path, platform: Platform, index: int) -> Path:
    """Where the fitted copy of a run's media item `index` lives (suffix added by the fitter)."""
    return run_dir / "fitted" / platform.value / f"{index:02d}"


def find_fitted(run_dir: Path, platform: Platform, index: int) -> Path | None:
    """The fitted file of media item `index` if it was made, else None."""
    stem = fitted_stem(run_dir, platform, index)
    for suffix in FITTED_MIME:
        candidate = stem.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    return None
