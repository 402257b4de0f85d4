"""Publishing to X through tweepy and our v2 media upload, faked at the HTTP boundary."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.characters import Character
from pipeline.models import Platform, PostState
from pipeline.publish import build_publish_service
from pipeline.publish.credentials import CredentialStore
from pipeline.publish.service import PublishService
from pipeline.publish.twitter import TwitterPublisher
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.x import FakeX
from tests.publish.conftest import X_ENV, RecordingNotifier, approved_run, comfy_png, no_secrets
from tests.videos import make_video

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

CHUNK = 4 * 1024  # small, so a one-second test video takes several chunks


@pytest.fixture
def service(
    settings: Settings, store: SqlStore, notifier: RecordingNotifier
) -> Callable[..., PublishService]:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    def build() -> PublishService:
        publisher = TwitterPublisher(
            CredentialStore(settings, X_ENV).twitter, chunk_bytes=CHUNK, sleep=lambda _: None
        )
        built = build_publish_service(
            settings, store, notifier=notifier, publishers={Platform.TWITTER: publisher}
        )
        built.sleep = no_wait
        built.waits = waits  # type: ignore[attr-defined]
        return built

    return build


async def test_images_are_posted_with_alt_text(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
) -> None:
    """Two images go to X as one post with the caption, each with its alt text."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    comfy_png(run_dir / "b.png", (480, 640), (10, 10, 200))
    run = approved_run(run_dir, ["a.png", "b.png"])
    character = make_character(twitter=True, prefix="🦊")

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED
    assert record.remote_id == "1790000000000000001"
    assert record.url == "https://x.com/i/web/status/1790000000000000001"
    [tweet] = fake_x.tweets
    assert tweet["text"] == "🦊 Autumn walk #fox"
    assert tweet["media"] == {"media_ids": ["100", "101"]}
    for index, media_id in enumerate(("100", "101")):
        upload = fake_x.uploads[media_id]
        assert upload["init"]["media_category"] == "tweet_image"
        sent = b"".join(upload["chunks"])
        assert sent == (run_dir / "fitted" / "twitter" / f"{index:02d}.jpg").read_bytes()
        assert b"nodes" not in sent  # the workflow did not travel
        assert upload["alt"] == "A small orange fox in a blue scarf"
    assert (await store.posts_for_run(run.id))[0].state is PostState.POSTED


async def test_video_is_uploaded_in_chunks_and_processed(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A video goes up in chunks of the configured size, waits for processing, then posts."""
    make_video(run_dir / "clip.mp4", seconds=1, size="320x240")
    fake_x.processing_polls = 2
    run = approved_run(run_dir, ["clip.mp4"])

    built = service()
    [record] = await built.publish_run(run, make_character(twitter=True), run_dir)

    assert record.state is PostState.POSTED
    upload = fake_x.uploads["100"]
    assert upload["init"]["media_type"] == "video/mp4"
    assert upload["init"]["media_category"] == "tweet_video"
    sizes = [len(chunk) for chunk in upload["chunks"]]
    assert len(sizes) >= 2
    assert all(size == CHUNK for size in sizes[:-1])
    assert 0 < sizes[-1] <= CHUNK
    assert b"".join(upload["chunks"]) == (run_dir / "fitted/twitter/00.mp4").read_bytes()
    assert [c for c in fake_x.calls if c[1] == "/2/media/upload"] == [
        ("GET", "/2/media/upload")
    ] * 2
    assert fake_x.tweets[0]["media"] == {"media_ids": ["100"]}


async def test_second_publish_of_a_run_does_nothing(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Publishing the same run again, even from a new process, posts nothing more."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"])
    character = make_character(twitter=True)
    [first] = await service().publish_run(run, character, run_dir)
    calls = len(fake_x.calls)

    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert len(fake_x.tweets) == 1
    assert len(fake_x.calls) == calls
    assert again.remote_id == first.remote_id


async def test_rate_limit_then_success_posts_once(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A 429 from X is waited out and the post goes through once; the wait is on the record."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    fake_x.fail(
        "tweet",
        (429, {"x-rate-limit-reset": "0"}, '{"title": "Too Many Requests", "status": 429}'),
    )
    built = service()

    [record] = await built.publish_run(
        approved_run(run_dir, ["a.png"]), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.POSTED
    assert len(fake_x.tweets) == 1
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "posted"]
    assert built.waits == [0.0]  # type: ignore[attr-defined]


async def test_unauthorized_pauses_the_account_and_notifies(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 401 pauses the account, tells a person, and later runs do not even try."""
    caplog.set_level(logging.DEBUG)
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    fake_x.fail("initialize", (401, {}, '{"title": "Unauthorized", "status": 401}'))
    character = make_character(twitter=True)

    [record] = await service().publish_run(approved_run(run_dir, ["a.png"]), character, run_dir)
    [later] = await service().publish_run(
        approved_run(run_dir, ["a.png"], run_id="second000000"), character, run_dir
    )

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "needs attention" in record.error
    assert notifier.attention == [(Platform.TWITTER, "fox_x", "X refused the credentials (401)")]
    assert later.state is PostState.FAILED
    assert later.error is not None
    assert "paused" in later.error
    assert fake_x.tweets == []
    assert sum(1 for c in fake_x.calls if c[1].endswith("initialize")) == 1
    assert no_secrets(caplog.text, repr(record), repr(later))


async def test_caption_over_the_limit_fails_without_a_call(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A caption longer than X allows fails at once, saying why, and nothing is sent."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"twitter": "fox " * 100})

    [record] = await service().publish_run(run, make_character(twitter=True), run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "280" in record.error
    assert fake_x.calls == []


async def test_media_rejected_fails_at_once_with_the_platform_message(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """X refusing the media fails the post at once with X's own words, without retrying."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    fake_x.fail(
        "initialize",
        (400, {}, '{"errors": [{"message": "media type unrecognized."}], "title": "Invalid"}'),
    )
    built = service()

    [record] = await built.publish_run(
        approved_run(run_dir, ["a.png"]), make_character(twitter=True), run_dir
    )

    assert record.state is PostState.FAILED
    assert record.error == "The platform refused the post: Invalid; media type unrecognized."
    assert built.waits == []  # type: ignore[attr-defined]


async def test_daily_budget_stops_posting(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Once the day's budget of posts is used, the next run is not posted."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    character = make_character(twitter=True, budget={"twitter": 1})
    built = service()
    await built.publish_run(approved_run(run_dir, ["a.png"]), character, run_dir)

    [second] = await built.publish_run(
        approved_run(run_dir, ["a.png"], run_id="second000000"), character, run_dir
    )

    assert second.state is PostState.FAILED
    assert second.error is not None
    assert "budget" in second.error
    assert len(fake_x.tweets) == 1


async def test_crash_after_posting_is_settled_from_the_timeline(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    store: SqlStore,
) -> None:
    """A post left 'posting' by a crash is found on the account's timeline: no second post."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"])
    character = make_character(twitter=True)
    await service().publish_run(run, character, run_dir)
    [posted] = await store.posts_for_run(run.id)
    # what a crash between the remote call and saving its id leaves behind
    await store.update_post(replace(posted, state=PostState.POSTING, remote_id=None, url=None))

    [record] = await service().recover(run, character)

    assert record.state is PostState.POSTED
    assert record.remote_id == posted.remote_id
    assert len(fake_x.tweets) == 1


async def test_crash_with_no_trace_leaves_an_uncertain_record(
    fake_x: FakeX,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
) -> None:
    """When the timeline cannot be read after a crash, the post is 'uncertain', never redone."""
    comfy_png(run_dir / "a.png", (640, 480), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"])
    character = make_character(twitter=True)
    fake_x.fail("tweet", (503, {}, '{"title": "Service Unavailable"}'))
    fake_x.fail("timeline", (503, {}, '{"title": "Service Unavailable"}'))

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.UNCERTAIN
    assert [r.run_id for r in notifier.uncertain] == [run.id]
    assert again.state is PostState.UNCERTAIN
    assert sum(1 for c in fake_x.calls if c == ("POST", "/2/tweets")) == 1
