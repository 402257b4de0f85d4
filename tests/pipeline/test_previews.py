"""The review-preview policy (`pipeline.previews`): a video over the limit is encoded smaller, a
second time smaller still when the first try is over, or not shown at all; a kept preview stands
until its original changes, and goes with the run's review."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pipeline.models import Decision, Job, MediaKind, Run, utcnow
from pipeline.previews import PREVIEW_FOLDER, PreviewPolicy, VideoPass, review_preview
from pipeline.publish.media import probe_video
from tests.runs import World
from tests.videos import make_video

LIMIT = 36_000
#: a try whose bitrate is forty times the budget: its file is always over the limit
OVER = VideoPass(max_side=720, share=40.0, audio_kbps=64)


@pytest.fixture
async def folder(tmp_path: Path) -> Path:
    """A run folder with `clip.mp4`: 2 s of 1280x720 with sound, about 40 KB."""
    await asyncio.to_thread(
        make_video, tmp_path / "clip.mp4", seconds=2, size="1280x720", audio=True
    )
    return tmp_path


@pytest.mark.parametrize(
    ("policy", "side"),
    [
        (PreviewPolicy(), 720),
        (PreviewPolicy(passes=(OVER, VideoPass(480, share=0.6, audio_kbps=32))), 480),
        (PreviewPolicy(passes=(OVER, OVER)), None),
    ],
    ids=["first-try", "second-try-smaller-when-the-first-is-over", "none-when-every-try-is-over"],
)
async def test_a_video_preview_fits_the_limit_or_there_is_none(
    folder: Path, policy: PreviewPolicy, side: int | None
) -> None:
    """The preview is under the limit, no larger than its try's side and keeps the sound; with
    no try under the limit there is no preview and nothing half-made is left."""
    original = (folder / "clip.mp4").read_bytes()
    assert len(original) > LIMIT
    preview = await review_preview(folder, "clip.mp4", MediaKind.VIDEO, LIMIT, policy=policy)
    assert (folder / "clip.mp4").read_bytes() == original
    if side is None:
        assert preview is None
        assert list((folder / PREVIEW_FOLDER).iterdir()) == []
        return
    assert preview is not None
    assert preview.stat().st_size <= LIMIT
    info = await probe_video(preview)
    assert max(info.width, info.height) == side
    assert info.has_audio
    assert info.duration == pytest.approx(2.0, abs=0.1)


async def test_a_preview_older_than_its_original_is_made_again(folder: Path) -> None:
    """A kept preview is used again while its original is unchanged; once the original is newer
    (written again), a new preview is made."""
    first = await review_preview(folder, "clip.mp4", MediaKind.VIDEO, LIMIT)
    assert first is not None
    made = first.stat()
    again = await review_preview(folder, "clip.mp4", MediaKind.VIDEO, LIMIT)
    assert again == first
    assert first.stat().st_mtime_ns == made.st_mtime_ns
    original = (folder / "clip.mp4").stat().st_mtime_ns
    older = original - 5_000_000_000
    os.utime(first, ns=(older, older))  # as if the clip were written again after its preview
    remade = await review_preview(folder, "clip.mp4", MediaKind.VIDEO, LIMIT)
    assert remade == first
    assert first.stat().st_mtime_ns >= original


async def test_a_file_under_the_limit_is_shown_as_it_is(folder: Path) -> None:
    """Nothing is encoded for a clip the chat takes whole."""
    shown = await review_preview(folder, "clip.mp4", MediaKind.VIDEO, 10 * 1024 * 1024)
    assert shown == folder / "clip.mp4"
    assert not (folder / PREVIEW_FOLDER).exists()


def previewing(world: World, answer: Decision | None) -> None:
    """The world's reviewer leaves a preview in the run folder, as the bot's does, then
    answers `answer` (None: the review expires)."""

    def decide(run: Run) -> Decision | None:
        previews = world.folder(run) / PREVIEW_FOLDER
        previews.mkdir(exist_ok=True)
        (previews / "image.jpg").write_bytes(b"a preview")
        return answer

    world.reviewer.decide = decide


@pytest.mark.parametrize(
    ("answer", "kept"),
    [
        (Decision(approved=True, selected=(0,), by="ana", at=utcnow()), False),
        (Decision(approved=False, selected=(), by="ana", at=utcnow()), False),
        (None, True),
    ],
    ids=["published", "rejected", "expired-kept-for-a-retry"],
)
async def test_review_previews_go_when_the_review_cannot_come_again(
    world: World, answer: Decision | None, kept: bool
) -> None:
    """A published or rejected run's previews are removed; an expired run keeps them, so its
    retry posts the same ones."""
    previewing(world, answer)
    run = await world.run(Job("testy", seed=1))
    assert (world.folder(run) / PREVIEW_FOLDER).exists() is kept
