"""Publishing to Instagram through the real instagrapi Client, faked at its HTTP transport."""

from __future__ import annotations

import io
import logging
import stat
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import responses
from PIL import Image

from pipeline.characters import Character
from pipeline.models import Platform, PostRecord, PostState, Run
from pipeline.publish.service import PublishService
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.instagram import TRANSPORT, USER_ID, FakeInstagram
from tests.publish.conftest import (
    RecordingNotifier,
    approved_run,
    comfy_png,
    instagram_service,
    no_secrets,
    photo_run,
)
from tests.videos import make_video

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def fake_ig() -> Iterator[FakeInstagram]:
    fake = FakeInstagram()
    with responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def service(
    settings: Settings, store: SqlStore, notifier: RecordingNotifier, saved_session: Path
) -> Callable[[], PublishService]:
    return lambda: instagram_service(settings, store, notifier)


async def test_photo_is_posted_with_the_saved_session(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    saved_session: Path,
) -> None:
    """A photo goes to the feed as a clean JPEG with the caption, reusing the saved login."""
    comfy_png(run_dir / "a.png", (1600, 900), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"])

    [record] = await service().publish_run(run, make_character(instagram=True), run_dir)

    assert record.state is PostState.POSTED
    assert record.remote_id == f"3100000000000000001_{USER_ID}"
    assert record.url == "https://www.instagram.com/p/C0de3100000000000000001/"
    assert ("GET", "/api/v1/accounts/current_user/") in fake_ig.calls  # session checked
    assert not any("login" in path for _, path in fake_ig.calls)  # no new login
    [(path, form)] = fake_ig.configures
    assert path == "/api/v1/media/configure/"
    assert form["caption"] == "Autumn walk #fox"
    [sent] = fake_ig.photo_uploads
    with Image.open(io.BytesIO(sent)) as image:
        assert image.format == "JPEG"
        assert image.size == (1080, 608)
        assert "workflow" not in image.info
    assert mode_of(saved_session) == 0o600  # rewritten, owner-only


async def test_album_is_one_carousel_post(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Three approved images become one carousel with one caption."""
    for name in ("a.png", "b.png", "c.png"):
        comfy_png(run_dir / name, (800, 1000), (10, 200, 10))
    run = approved_run(run_dir, ["a.png", "b.png", "c.png"])

    [record] = await service().publish_run(run, make_character(instagram=True), run_dir)

    assert record.state is PostState.POSTED
    assert len(fake_ig.photo_uploads) == 3
    [(path, form)] = fake_ig.configures
    assert path == "/api/v1/media/configure_sidecar/"
    assert len(form["children_metadata"]) == 3
    assert form["caption"] == "Autumn walk #fox"


async def test_video_is_a_reel_with_its_cover(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A video is posted as a 9:16 reel: the fitted MP4's bytes, then its cover image."""
    make_video(run_dir / "clip.mp4", seconds=1)
    run = approved_run(run_dir, ["clip.mp4"])

    [record] = await service().publish_run(run, make_character(instagram=True), run_dir)

    assert record.state is PostState.POSTED
    assert fake_ig.video_uploads == [(run_dir / "fitted/instagram/00.mp4").read_bytes()]
    [cover] = fake_ig.photo_uploads
    with Image.open(io.BytesIO(cover)) as image:
        assert image.size == (1080, 1920)
    [(path, form)] = fake_ig.configures
    assert path == "/api/v1/media/configure_to_clips/"
    assert form["caption"] == "Autumn walk #fox"
    assert 3.0 <= float(form["length"]) <= 3.2


async def test_challenge_pauses_the_account_and_notifies(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A challenge on posting pauses the account and tells a person, with no retry loop."""
    caplog.set_level(logging.INFO)
    fake_ig.faults["media/configure"] = (
        400,
        {},
        '{"message": "challenge_required", "challenge": {"url": "https://i.instagram.com/challenge/x/"},'
        ' "status": "fail"}',
    )
    character = make_character(instagram=True)

    [record] = await service().publish_run(photo_run(run_dir), character, run_dir)

    assert record.state is PostState.FAILED
    assert [a.outcome for a in record.attempts] == ["posting", "account"]
    [(platform, account, reason)] = notifier.attention
    assert (platform, account) == (Platform.INSTAGRAM, "fox_ig")
    assert "Challenge" in reason
    assert sum(1 for _, p in fake_ig.calls if p.startswith("/api/v1/media/configure")) == 1
    assert no_secrets(caplog.text, repr(record), reason)


async def test_expired_session_during_post_pauses_the_account(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
) -> None:
    """Instagram logging the account out mid-post pauses it until a person resumes it."""
    fake_ig.faults["media/configure"] = (
        403,
        {},
        '{"message": "login_required", "logout_reason": 8, "status": "fail"}',
    )

    [record] = await service().publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.FAILED
    assert list((settings.attention_dir).glob("instagram-fox_ig.json"))
    assert fake_ig.medias == []


async def test_second_publish_does_nothing(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A run published once is never posted to Instagram again."""
    run = photo_run(run_dir)
    character = make_character(instagram=True)
    await service().publish_run(run, character, run_dir)
    calls = len(fake_ig.calls)

    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert again.state is PostState.POSTED
    assert len(fake_ig.calls) == calls
    assert len(fake_ig.medias) == 1


async def crashed_after_posting(
    service: PublishService, store: SqlStore, run: Run, character: Character, run_dir: Path
) -> PostRecord:
    """Post the run, then leave its record as a crash between the post and saving its id does."""
    await service.publish_run(run, character, run_dir)
    [posted] = await store.posts_for_run(run.id)
    await store.update_post(replace(posted, state=PostState.POSTING, remote_id=None, url=None))
    return posted


async def test_crash_after_posting_is_settled_from_the_recent_posts(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
) -> None:
    """A post left 'posting' by a crash is found among the account's recent posts when the run
    is resumed (or `publish RUN_ID` is run): it is not posted again."""
    run, character = photo_run(run_dir), make_character(instagram=True)
    posted = await crashed_after_posting(service(), store, run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    assert record.remote_id == posted.remote_id
    assert record.url == posted.url
    assert ("GET", f"/api/v1/feed/user/{USER_ID}/") in fake_ig.calls
    assert len(fake_ig.configures) == 1
    [saved] = await store.posts_for_run(run.id)
    assert saved.state is PostState.POSTED


async def test_crash_with_the_post_not_online_is_uncertain_and_reported(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
    notifier: RecordingNotifier,
) -> None:
    """A 'posting' record whose post is not among the recent ones waits for a person."""
    run, character = photo_run(run_dir), make_character(instagram=True)
    await crashed_after_posting(service(), store, run, character, run_dir)
    fake_ig.medias.clear()  # Instagram never made it public

    [record] = await service().recover(run, character)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.UNCERTAIN
    assert [r.run_id for r in notifier.uncertain] == [run.id]
    assert again.state is PostState.UNCERTAIN
    assert len(fake_ig.configures) == 1  # never posted a second time


async def test_crash_when_instagram_cannot_tell_is_uncertain(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
    notifier: RecordingNotifier,
) -> None:
    """If the recent posts cannot be read, the record is 'uncertain' and a person is told."""
    run, character = photo_run(run_dir), make_character(instagram=True)
    await crashed_after_posting(service(), store, run, character, run_dir)
    fake_ig.faults["feed/user/"] = (500, {}, '{"message": "", "status": "fail"}')

    [record] = await service().recover(run, character)

    assert record.state is PostState.UNCERTAIN
    assert "could not check" in (record.error or "")
    [reported] = notifier.uncertain
    assert reported.state is PostState.UNCERTAIN
    assert len(fake_ig.configures) == 1


async def test_a_caption_over_30_hashtags_fails_before_anything_is_sent(
    fake_ig: FakeInstagram,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A caption set by hand with 31 hashtags in its text fails the post at once, saying so;
    nothing is uploaded (Instagram takes 30)."""
    comfy_png(run_dir / "a.png", (1080, 1080), (200, 10, 10))
    tags = " ".join(f"#tag{i}" for i in range(31))
    run = approved_run(run_dir, ["a.png"], captions={"instagram": f"Autumn walk {tags}"})

    [record] = await service().publish_run(run, make_character(instagram=True), run_dir)

    assert record.state is PostState.FAILED
    assert record.error == "the caption has 31 hashtags, and Instagram takes 30"
    assert fake_ig.photo_uploads == []
    assert fake_ig.configures == []
