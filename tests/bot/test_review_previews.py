"""A video over Discord's upload limit in review: a smaller MP4 is posted in its place, made once
and used again after a restart; the original is what publishing posts; a video that cannot be
made small enough is listed without a file, as before."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.render import APPROVE, REJECT
from pipeline.characters import Characters
from pipeline.models import MediaItem, MediaKind, Platform, Run, RunState
from pipeline.previews import PREVIEW_FOLDER, preview_path
from pipeline.prompts.library import TemplateLibrary
from pipeline.publish import AttentionBoard, PublishService
from pipeline.publish.media import find_fitted, probe_video
from pipeline.store import SqlStore
from tests.bot.conftest import StartBot
from tests.bot.reviews import candidates
from tests.bot.test_review import post_review
from tests.doubles import RecordingPublisher
from tests.fakes import discord as fd
from tests.runs import make_project
from tests.videos import make_video

#: a 2 s 1280x720 clip with sound is about 40 KB; the limit leaves it over, its preview under
LIMIT = 36_000


async def with_video(folder: Path, make: Callable[[Path], object]) -> Run:
    """A run of one small image and `clip.mp4` (made by `make` in a thread, so the bot under
    test keeps running), ready for review."""
    run = candidates(folder, 1)
    await asyncio.to_thread(make, folder / "clip.mp4")
    video = MediaItem(path="clip.mp4", kind=MediaKind.VIDEO, description_index=0, score=0.7)
    return run.advance(run.state, media=(*run.media, video), descriptions=("a fox",))


def big_clip(path: Path) -> None:
    make_video(path, seconds=2, size="1280x720", audio=True)


async def test_a_video_over_the_limit_is_posted_as_a_smaller_mp4_and_the_original_published(
    start_bot: StartBot, fake: fd.FakeDiscord, sqlite_store: SqlStore, tmp_path: Path
) -> None:
    """The review carries a playable MP4 under the limit in place of the clip; approved, the
    clip posted to X is made from the untouched original (its full 1280x720), not the preview."""
    fake.upload_limit = LIMIT
    under_test = await start_bot(discord_upload_limit_mb=LIMIT / 1024 / 1024)
    folder = tmp_path / "r"
    run = await with_video(folder, big_clip)
    original = (folder / "clip.mp4").read_bytes()
    assert len(original) > LIMIT
    waiting, [message] = await post_review(under_test, run, folder)
    names = [a.filename for a in message.attachments]
    assert names == ["01-image-01.png", "02-clip.mp4"]
    clip = message.attachments[1]
    assert clip.size <= LIMIT
    assert "too large" not in message.content
    assert fake.refused == []
    preview = preview_path(folder, "clip.mp4", MediaKind.VIDEO)
    assert clip.data == preview.read_bytes()
    shown = await probe_video(preview)
    assert max(shown.width, shown.height) <= 720
    assert shown.has_audio
    assert (folder / "clip.mp4").read_bytes() == original

    await fake.react(message, "2️⃣", fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    decision = await asyncio.wait_for(waiting, 10)
    assert decision is not None
    assert decision.selected == (1,)
    approved = run.advance(RunState.PUBLISHING, decision=decision)
    await sqlite_store.save_run(approved)
    project = make_project(tmp_path / "project")
    testy = Characters(project / "characters", TemplateLibrary.load()).load("testy")
    x = RecordingPublisher(Platform.TWITTER)
    service = PublishService(sqlite_store, {Platform.TWITTER: x}, AttentionBoard(tmp_path / "a"))
    await service.publish_run(approved, testy, folder, platforms={Platform.TWITTER})
    assert [names for _, names, _ in x.posted] == [("01.mp4",)]
    posted = find_fitted(folder, Platform.TWITTER, 1)
    assert posted is not None
    published = await probe_video(posted)
    assert (published.width, published.height) == (1280, 720)


@pytest.mark.parametrize(
    ("make", "limit"),
    [
        (lambda path: path.write_bytes(bytes(LIMIT + 1)), LIMIT),
        # 20 s in 20 KB leaves about 7 kbit/s: no picture worth showing
        (lambda path: make_video(path, seconds=20, size="320x180"), 20_000),
    ],
    ids=["unreadable", "too-long-for-the-limit"],
)
async def test_a_video_that_cannot_be_made_small_enough_is_listed_without_a_file(
    start_bot: StartBot,
    fake: fd.FakeDiscord,
    tmp_path: Path,
    make: Callable[[Path], object],
    limit: int,
) -> None:
    """No preview fits: the clip keeps its number and line with a note, the image beside it is
    attached, and nothing half-made is left in the run folder."""
    fake.upload_limit = limit
    under_test = await start_bot(discord_upload_limit_mb=limit / 1024 / 1024)
    folder = tmp_path / "r"
    run = await with_video(folder, make)
    assert (folder / "clip.mp4").stat().st_size > limit
    waiting, [message] = await post_review(under_test, run, folder)
    assert [a.filename for a in message.attachments] == ["01-image-01.png"]
    assert "#2 is too large to show here" in message.content
    assert fake.refused == []
    previews = folder / PREVIEW_FOLDER
    assert not previews.exists() or list(previews.iterdir()) == []
    waiting.cancel()


async def test_a_preview_made_before_a_restart_is_posted_again_without_encoding(
    start_bot: StartBot, fake: fd.FakeDiscord, tmp_path: Path
) -> None:
    """The review is rejected and the bot restarted; posted again (as /retry does), the clip's
    preview is the same file, not encoded anew."""
    fake.upload_limit = LIMIT
    first = await start_bot(discord_upload_limit_mb=LIMIT / 1024 / 1024)
    folder = tmp_path / "r"
    run = await with_video(folder, big_clip)
    waiting, [message] = await post_review(first, run, folder)
    preview = preview_path(folder, "clip.mp4", MediaKind.VIDEO)
    made = preview.stat()
    await fake.react(message, REJECT, fd.ALICE)
    assert await asyncio.wait_for(waiting, 10) is not None
    await first.stop()

    second = await start_bot(discord_upload_limit_mb=LIMIT / 1024 / 1024)
    waiting, [again] = await post_review(second, run, folder)
    assert again.id != message.id
    assert [a.filename for a in again.attachments] == ["01-image-01.png", "02-clip.mp4"]
    assert again.attachments[1].data == preview.read_bytes()
    kept = preview.stat()
    assert (kept.st_ino, kept.st_mtime_ns) == (made.st_ino, made.st_mtime_ns)
    waiting.cancel()
