"""One definition of media kinds: by the file's type in any case, a GIF by whether it moves;
the strategies, the scorer and the publisher all use it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from random import Random

import pytest
from PIL import Image

from comfy import ComfyJob, Event, Workflow
from pipeline.models import MediaKind as PipelineMediaKind
from pipeline.publish.media import MediaError
from pipeline.publish.media import media_kind as publish_kind
from strategies.base import StrategyContext, finals
from strategies.media import MediaKind, media_kind


def write_gif(path: Path, frames: int) -> Path:
    images = [Image.new("RGB", (16, 16), (n * 60 % 256, 0, 0)) for n in range(frames)]
    images[0].save(path, save_all=frames > 1, append_images=images[1:], duration=100, loop=0)
    return path


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("a.png", MediaKind.IMAGE),
        ("A.PNG", MediaKind.IMAGE),
        ("b.JPG", MediaKind.IMAGE),
        ("c.jpeg", MediaKind.IMAGE),
        ("d.webp", MediaKind.IMAGE),
        ("e.TIFF", MediaKind.IMAGE),
        ("clip.mp4", MediaKind.VIDEO),
        ("clip.MP4", MediaKind.VIDEO),
        ("clip.webm", MediaKind.VIDEO),
        ("clip.MOV", MediaKind.VIDEO),
        ("clip.mkv", MediaKind.VIDEO),
        ("clip.avi", MediaKind.VIDEO),
        ("clip.m4v", MediaKind.VIDEO),
        ("notes.txt", None),
        ("latent.latent", None),
        ("no-suffix", None),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_file_is_an_image_or_a_video_by_its_type_in_any_case(
    name: str, kind: MediaKind | None
) -> None:
    """`.MOV` from a camera-style workflow is a video like `.mp4`; a text file is no media."""
    assert media_kind(Path(name)) is kind


@pytest.mark.parametrize(
    ("frames", "kind"), [(1, MediaKind.IMAGE), (3, MediaKind.VIDEO)], ids=["still", "moving"]
)
def test_a_gif_is_a_video_only_when_it_moves(tmp_path: Path, frames: int, kind: MediaKind) -> None:
    """A still GIF is posted as a picture, an animated one as a video, wherever it is asked."""
    gif = write_gif(tmp_path / "anim.GIF", frames)
    assert media_kind(gif) is kind
    assert publish_kind(gif) is kind


def test_the_pipeline_and_the_publisher_share_the_definition(tmp_path: Path) -> None:
    """The run record's kinds are the strategies' kinds; the publisher refuses only what the
    definition calls no media."""
    assert PipelineMediaKind is MediaKind
    clip = tmp_path / "clip.MOV"
    clip.write_bytes(b"\0")
    assert publish_kind(clip) is MediaKind.VIDEO
    notes = tmp_path / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(MediaError, match="unknown media type"):
        publish_kind(notes)


class NoGenerator:
    """A Generator the test never reaches: `finals` only looks at files on disk."""

    async def submit(
        self,
        workflow: Workflow,
        out_dir: Path,
        *,
        tags: frozenset[str] = frozenset(),
        on_event: Callable[[Event], None] | None = None,
        images: Mapping[str, Path] | None = None,
        prompt_id: str | None = None,
    ) -> ComfyJob:
        raise AssertionError("not queued")

    async def attach(
        self,
        prompt_id: str,
        out_dir: Path,
        *,
        server: str | None = None,
        on_event: Callable[[Event], None] | None = None,
    ) -> ComfyJob | None:
        raise AssertionError("not attached")


async def test_a_video_strategy_keeps_its_videos_in_any_case_and_drops_the_preview(
    tmp_path: Path,
) -> None:
    """A video workflow that writes `CLIP.MP4` beside its preview still ends with the clip."""
    unit = tmp_path / "main-d0-v0"
    unit.mkdir()
    (unit / "CLIP.MP4").write_bytes(b"\0")
    Image.new("RGB", (8, 8)).save(unit / "preview.png")
    (unit / "workflow.json").write_text("{}")
    ctx = StrategyContext(
        generator=NoGenerator(),
        folder=tmp_path,
        descriptions=["a clip"],
        stages={},
        rng=Random(1),
    )
    made = [(path, 0) for path in sorted(unit.iterdir())]
    videos = await finals(ctx, made, only=MediaKind.VIDEO)
    assert [(g.path, g.kind) for g in videos] == [("main-d0-v0/CLIP.MP4", MediaKind.VIDEO)]
    every = await finals(ctx, made)
    assert [g.path for g in every] == ["main-d0-v0/CLIP.MP4", "main-d0-v0/preview.png"]
