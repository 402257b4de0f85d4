"""Media fitting: every output meets its platform's limits, checked with Pillow and ffmpeg."""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from pipeline.models import MediaKind, Platform
from pipeline.publish.media import (
    INSTAGRAM_VIDEO,
    STDERR_KEEP,
    TWITTER_VIDEO,
    MediaError,
    VideoLimits,
    ffmpeg_binary,
    fit_media,
    probe_video,
    run_ffmpeg,
)
from tests.videos import make_video

WORKFLOW = '{"3": {"class_type": "KSampler", "inputs": {"seed": 42}}}' * 50


def make_png(path: Path, size: tuple[int, int], *, rgba: bool = False) -> Path:
    """A PNG as ComfyUI writes it: the workflow in text chunks."""
    mode = "RGBA" if rgba else "RGB"
    image = Image.new(mode, size, (200, 40, 40, 128) if rgba else (200, 40, 40))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", WORKFLOW)
    info.add_text("workflow", WORKFLOW)
    image.save(path, "PNG", pnginfo=info)
    return path


def make_gif(path: Path, *, frames: int, size: tuple[int, int]) -> Path:
    images = [Image.new("RGB", size, (i * 20 % 255, 80, 160)) for i in range(frames)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
    return path


async def test_instagram_image_is_a_clean_jpeg(tmp_path: Path) -> None:
    """A ComfyUI PNG posted to Instagram carries no workflow, no alpha, and is a JPEG."""
    source = make_png(tmp_path / "in.png", (1024, 1024), rgba=True)
    fitted = await fit_media(source, Platform.INSTAGRAM, tmp_path / "out" / "00")
    with Image.open(fitted.path) as image:
        assert image.format == "JPEG"
        assert image.mode == "RGB"
        assert image.size == (1024, 1024)
        assert "prompt" not in image.info
        assert "workflow" not in image.info
        assert "exif" not in image.info
        assert "icc_profile" not in image.info
    assert b"KSampler" not in fitted.path.read_bytes()


@pytest.mark.parametrize(
    ("size", "fit", "expected"),
    [
        ((1920, 1080), "pad", (1080, 608)),
        ((1800, 600), "pad", (1080, 566)),
        ((1800, 600), "crop", (1080, 566)),
        ((600, 1800), "pad", (1080, 1350)),
        ((600, 1800), "crop", (600, 750)),
    ],
    ids=["16:9-fits", "3:1-pad", "3:1-crop", "1:3-pad", "1:3-crop"],
)
async def test_instagram_image_aspect_is_within_limits(
    tmp_path: Path, size: tuple[int, int], fit: str, expected: tuple[int, int]
) -> None:
    """Wide and tall images are padded or cropped into Instagram's 4:5..1.91:1, 1080 wide."""
    source = make_png(tmp_path / "in.png", size)
    fitted = await fit_media(source, Platform.INSTAGRAM, tmp_path / "00", fit=fit)  # type: ignore[arg-type]
    with Image.open(fitted.path) as image:
        assert 4 / 5 <= image.width / image.height <= 1.91
        assert image.width <= 1080
        assert abs(image.width - expected[0]) <= 1
        assert abs(image.height - expected[1]) <= 1


async def test_padding_keeps_the_whole_picture(tmp_path: Path) -> None:
    """With pad, a 1:3 image keeps all of its content, centred on white bars."""
    source = make_png(tmp_path / "in.png", (600, 1800))
    fitted = await fit_media(source, Platform.INSTAGRAM, tmp_path / "00", fit="pad")
    with Image.open(fitted.path) as image:
        rgb = image.convert("RGB")
        left = rgb.getpixel((5, image.height // 2))
        centre = rgb.getpixel((image.width // 2, image.height // 2))
    assert isinstance(left, tuple)
    assert isinstance(centre, tuple)
    assert min(left) > 240  # a white bar
    assert centre[0] > 150
    assert centre[1] < 100


async def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    """A phone photo stored sideways with an EXIF rotation is posted upright, without EXIF."""
    image = Image.new("RGB", (400, 300), (10, 200, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    source = tmp_path / "phone.jpg"
    image.save(source, "JPEG", exif=exif)
    fitted = await fit_media(source, Platform.TWITTER, tmp_path / "00")
    with Image.open(fitted.path) as out:
        assert out.size == (300, 400)
        assert not out.getexif()


async def test_twitter_keeps_transparency_as_png_under_5_mb(tmp_path: Path) -> None:
    """X gets a transparent PNG as PNG, without the workflow, under 5 MB."""
    source = make_png(tmp_path / "in.png", (800, 2400), rgba=True)
    fitted = await fit_media(source, Platform.TWITTER, tmp_path / "00")
    assert fitted.mime == "image/png"
    assert fitted.path.stat().st_size < 5_000_000
    with Image.open(fitted.path) as image:
        assert image.mode == "RGBA"
        assert image.size == (800, 2400)  # X takes any aspect
        assert "workflow" not in image.info


def _check_mp4(info_path: Path) -> str:
    """ffmpeg's own description of a file's streams."""
    result = subprocess.run(
        [ffmpeg_binary(), "-hide_banner", "-i", str(info_path)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return result.stderr


async def test_webm_becomes_an_instagram_reel(tmp_path: Path) -> None:
    """A 16:9 WebM becomes a 9:16 H.264/AAC MP4 reel with faststart and a cover."""
    source = make_video(tmp_path / "in.webm", seconds=3.5)
    fitted = await fit_media(source, Platform.INSTAGRAM, tmp_path / "00", preset="ultrafast")
    info = await probe_video(fitted.path)
    assert (info.width, info.height) == (1080, 1920)
    assert info.codec == "h264"
    assert info.pix_fmt == "yuv420p"
    assert info.audio_codec == "aac"
    assert INSTAGRAM_VIDEO.min_seconds <= info.duration <= INSTAGRAM_VIDEO.max_seconds
    streams = _check_mp4(fitted.path)
    assert "avc1" in streams
    assert "aac (LC)" in streams
    assert "High 10" not in streams
    head = fitted.path.read_bytes()[:4096]
    assert head.find(b"moov") != -1
    assert head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    assert fitted.cover is not None
    with Image.open(fitted.cover) as cover:
        assert cover.size == (1080, 1920)


async def test_short_gif_is_looped_into_a_reel(tmp_path: Path) -> None:
    """A one-second GIF becomes an MP4 reel of at least Instagram's three seconds."""
    source = make_gif(tmp_path / "in.gif", frames=10, size=(200, 200))
    fitted = await fit_media(source, Platform.INSTAGRAM, tmp_path / "00", preset="ultrafast")
    info = await probe_video(fitted.path)
    assert fitted.mime == "video/mp4"
    assert info.duration >= INSTAGRAM_VIDEO.min_seconds - 0.05


async def test_small_gif_stays_a_gif_on_twitter(tmp_path: Path) -> None:
    """A small GIF goes to X as a GIF, byte for byte."""
    source = make_gif(tmp_path / "in.gif", frames=5, size=(120, 90))
    fitted = await fit_media(source, Platform.TWITTER, tmp_path / "00")
    assert fitted.is_gif
    assert fitted.path.read_bytes() == source.read_bytes()


async def test_long_video_is_trimmed_to_the_limit(tmp_path: Path) -> None:
    """A video over the platform's length limit is cut to the limit."""
    limits = VideoLimits(**{**TWITTER_VIDEO.__dict__, "max_seconds": 2.0})
    source = make_video(tmp_path / "long.mp4", seconds=4, audio=True)
    fitted = await fit_media(
        source, Platform.TWITTER, tmp_path / "00", video_limits=limits, preset="ultrafast"
    )
    info = await probe_video(fitted.path)
    assert 1.9 <= info.duration <= 2.1
    assert info.has_audio


async def test_tall_video_aspect_is_clamped_for_twitter(tmp_path: Path) -> None:
    """A 1:4 video is padded to X's 1:3 limit, with even dimensions."""
    source = make_video(tmp_path / "tall.mp4", seconds=1, size="100x400")
    fitted = await fit_media(source, Platform.TWITTER, tmp_path / "00", preset="ultrafast")
    info = await probe_video(fitted.path)
    assert info.width % 2 == 0
    assert info.height % 2 == 0
    assert 1 / 3 - 0.02 <= info.width / info.height <= 3
    assert fitted.kind is MediaKind.VIDEO


async def test_fitting_does_not_block_the_event_loop(tmp_path: Path) -> None:
    """Other tasks keep running while a video is encoded."""
    source = make_video(tmp_path / "in.mp4", seconds=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await fit_media(source, Platform.INSTAGRAM, tmp_path / "00", preset="ultrafast")
    finally:
        task.cancel()
    assert ticks > 5


def ffmpeg_children() -> list[int]:
    """The ffmpeg processes this test process started that are still there."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended meanwhile
        name, _, rest = stat.partition(") ")
        if int(rest.split()[1]) == os.getpid() and "ffmpeg" in name:
            found.append(int(entry.name))
    return found


async def test_an_encode_past_its_deadline_is_stopped_and_leaves_nothing(tmp_path: Path) -> None:
    """A video that takes longer than the deadline to fit fails in one sentence; ffmpeg is
    stopped and no half-written file is left in the output folder."""
    source = make_video(tmp_path / "long.mp4", seconds=20)
    with pytest.raises(MediaError) as raised:
        await fit_media(
            source, Platform.INSTAGRAM, tmp_path / "out" / "00", preset="slow", encode_timeout=1.0
        )
    assert raised.value.user_message == "Preparing a video took too long and was stopped."
    assert list((tmp_path / "out").iterdir()) == []
    assert ffmpeg_children() == []


async def test_a_failed_encode_leaves_no_half_written_file(tmp_path: Path) -> None:
    """When ffmpeg refuses the job, the error says so in one line and nothing is left behind."""
    source = make_video(tmp_path / "in.mp4", seconds=1)
    with pytest.raises(MediaError) as raised:
        await fit_media(source, Platform.TWITTER, tmp_path / "out" / "00", preset="no-such")
    assert str(raised.value).startswith("ffmpeg failed")
    assert "\n" not in str(raised.value)
    assert list((tmp_path / "out").iterdir()) == []


async def test_a_chatty_ffmpeg_is_read_in_bounded_memory() -> None:
    """ffmpeg's stderr is kept as its head and tail, whatever its length: what it read first
    and how it ended are there, the middle is not."""
    chatty = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-f", "lavfi"]
    chatty += ["-i", "testsrc=duration=20:size=32x32:rate=25", "-vf", "showinfo", "-f", "null", "-"]
    result = await run_ffmpeg(chatty, timeout_s=60)
    assert len(result.stderr) <= 2 * STDERR_KEEP + 5
    assert "Input #0, lavfi" in result.stderr
    assert " n: 499 " in result.stderr
    assert " n: 250 " not in result.stderr


def _video_packets_md5(path: Path) -> str:
    """The MD5 of a file's video packets as stored (ffmpeg's md5 muxer over a stream copy)."""
    args = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v"]
    args += ["-c", "copy", "-f", "md5", "-"]
    done = subprocess.run(args, check=True, capture_output=True, timeout=60, text=True)
    return done.stdout.strip()


async def test_a_reel_that_already_fits_is_copied_not_encoded_again(tmp_path: Path) -> None:
    """A video already made to Instagram's reel (H.264 / AAC, 1080x1920, 30 fps), such as a
    narrated reel, keeps its very frames: its streams are copied into the fitted file, with
    the index first and no metadata, so nothing is lost to a second encode."""
    made = make_video(tmp_path / "in.webm", seconds=3.5)
    reel = await fit_media(made, Platform.INSTAGRAM, tmp_path / "first", preset="ultrafast")
    again = await fit_media(reel.path, Platform.INSTAGRAM, tmp_path / "second", preset="ultrafast")
    assert _video_packets_md5(again.path) == _video_packets_md5(reel.path)
    head = again.path.read_bytes()[:4096]
    assert head.find(b"moov") != -1
    assert head.find(b"mdat") == -1 or head.find(b"moov") < head.find(b"mdat")
    assert again.cover is not None
    # one that does not fit (another frame) is encoded: its packets differ
    small = make_video(tmp_path / "small.mp4", seconds=3.5, audio=True)
    fitted = await fit_media(small, Platform.INSTAGRAM, tmp_path / "third", preset="ultrafast")
    assert _video_packets_md5(fitted.path) != _video_packets_md5(small)
