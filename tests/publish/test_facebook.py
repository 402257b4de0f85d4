"""Publishing to a Facebook Page through the Graph API, against a fake Graph server over real
sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.characters import Character
from pipeline.models import MediaKind, Platform, PostState
from pipeline.ports import MetricsReader, OutgoingMedia, PostMetrics
from pipeline.publish import build_publish_service
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore, check_credentials
from pipeline.publish.errors import TransientPublishError
from pipeline.publish.facebook import FacebookPublisher
from pipeline.publish.service import PublishService, fit_run_media
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.graph import (
    BLOCKED,
    EXPIRED_TOKEN,
    INVALID_PARAMETER,
    PAGE_ID,
    PAGE_RATE_LIMIT,
    FakeGraph,
)
from tests.publish.conftest import FB_ENV, RecordingNotifier, approved_run, comfy_png, no_secrets
from tests.videos import make_video

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

CAPTION = "Autumn walk in the park #fox"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    server = await FakeGraph().start()
    yield server
    await server.close()


@pytest.fixture
def publisher(settings: Settings, fake: FakeGraph) -> Callable[..., FacebookPublisher]:
    def make(timeout: float = 10.0) -> FacebookPublisher:
        return FacebookPublisher(
            CredentialStore(settings, FB_ENV).facebook,
            api_url=fake.url,
            timeout=timeout,
            upload_timeout=timeout,
        )

    return make


@pytest.fixture
def service(
    settings: Settings,
    store: SqlStore,
    notifier: RecordingNotifier,
    publisher: Callable[..., FacebookPublisher],
) -> Callable[..., PublishService]:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    def build(timeout: float = 10.0) -> PublishService:
        built = build_publish_service(
            settings, store, notifier=notifier, publishers={Platform.FACEBOOK: publisher(timeout)}
        )
        built.sleep = no_wait
        built.waits = waits  # type: ignore[attr-defined]
        return built

    return build


async def test_one_photo_is_a_page_post_with_the_caption(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """One approved image becomes one published Page photo with the caption as its message."""
    comfy_png(run_dir / "a.png", (3000, 2000), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.posts
    assert record.remote_id == post.id
    assert record.url == f"https://www.facebook.com/{post.id}"
    assert post.message == CAPTION
    [photo] = fake.photos.values()
    assert photo.published
    assert photo.data == (run_dir / "fitted/facebook/00.jpg").read_bytes()


async def test_several_photos_are_one_multi_photo_post(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Three images are uploaded unpublished, then attached to one feed post, in order."""
    names = ["a.png", "b.png", "c.png"]
    for index, name in enumerate(names):
        comfy_png(run_dir / name, (800, 600), (200, 10 * index, 10))
    run = approved_run(run_dir, names, captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED
    [post] = fake.posts
    assert post.message == CAPTION
    assert len(post.photos) == 3
    sent = [fake.photos[fbid].data for fbid in post.photos]
    assert sent == [(run_dir / f"fitted/facebook/{i:02d}.jpg").read_bytes() for i in range(3)]
    assert fake.calls.count(f"POST {PAGE_ID}/feed") == 1


async def test_a_video_is_a_page_video_with_the_caption(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An approved clip is uploaded in chunks (the resumable upload) and posted as a Page
    video, described by the caption."""
    fake.video_chunk = 4096  # so the small test clip takes several chunks
    make_video(run_dir / "clip.mp4", seconds=1, size="320x240")
    run = approved_run(run_dir, ["clip.mp4"], captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED
    [post] = fake.posts
    assert post.message == CAPTION
    assert post.video is not None
    assert record.remote_id == post.video
    sent = (run_dir / "fitted/facebook/00.mp4").read_bytes()
    assert fake.videos[post.video] == sent
    chunks = fake.calls.count(f"POST {PAGE_ID}/videos") - 2  # start, transfers, finish
    assert chunks == -(-len(sent) // fake.video_chunk) > 1


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (EXPIRED_TOKEN, "The account needs attention: Facebook refused the access token: Error"),
        (BLOCKED, "The account needs attention: Facebook blocked posting: It looks like you"),
    ],
    ids=["expired-token", "temporarily-blocked"],
)
async def test_a_refused_token_or_a_block_pauses_the_page(
    refusal: tuple[int, int, str, int | None],
    said: str,
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An expired token (190) or a temporary block (368) pauses the page and tells a person;
    the next run posts nothing to it; no token is shown anywhere."""
    caplog.set_level(logging.DEBUG)
    fake.fail_next = {"photos": [refusal]}
    character = make_character(facebook=True)
    run = approved_run(run_dir, ["a.png"], captions={"facebook": CAPTION})
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)
    second = approved_run(run_dir, ["a.png"], captions={"facebook": "x"}, run_id="second00run1")
    [later] = await service().publish_run(second, character, run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert record.error.startswith(said)
    assert [(p, a) for p, a, _ in notifier.attention] == [(Platform.FACEBOOK, "fox_fb")]
    assert AttentionBoard(settings.attention_dir).paused(Platform.FACEBOOK, "fox_fb")
    assert later.state is not PostState.POSTED
    assert fake.calls == [f"POST {PAGE_ID}/photos"]  # never retried, nothing sent while paused
    assert fake.posts == []
    assert no_secrets(caplog.text, repr(record), repr(later), record.error)


async def test_a_lost_answer_is_found_on_the_page_and_not_posted_twice(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
) -> None:
    """A post whose answer never came is found among the page's posts and is not resent."""
    fake.lose_answer = True
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    [post] = fake.posts
    assert record.remote_id == post.id
    assert again == record
    assert fake.calls.count(f"POST {PAGE_ID}/photos") == 1
    assert f"GET {PAGE_ID}/posts" in fake.calls
    assert notifier.uncertain == []


async def test_a_rate_limited_post_waits_as_meta_says_and_posts_once(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A page rate limit (32) waits the minutes the usage header names, then posts once."""
    fake.fail_next = {"photos": [PAGE_RATE_LIMIT]}
    fake.regain_minutes = 2
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)
    built = service()

    [record] = await built.publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED
    assert len(fake.posts) == 1
    assert built.waits == [120.0]  # type: ignore[attr-defined]


async def test_a_refused_post_fails_with_metas_words(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
) -> None:
    """An invalid parameter (100) fails the post at once, not retried, the page not paused."""
    fake.fail_next = {"feed": [INVALID_PARAMETER]}
    for name in ("a.png", "b.png"):
        comfy_png(run_dir / name, (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png", "b.png"], captions={"facebook": CAPTION})
    character = make_character(facebook=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert record.error == "The platform refused the post: (#100) Invalid parameter"
    assert fake.calls.count(f"POST {PAGE_ID}/feed") == 1
    assert not AttentionBoard(settings.attention_dir).paused(Platform.FACEBOOK, "fox_fb")


async def test_a_silent_server_fails_the_post_at_its_deadline_as_maybe_posted(
    fake: FakeGraph, publisher: Callable[..., FacebookPublisher], run_dir: Path
) -> None:
    """A post call that gets no answer by its deadline fails as transient, maybe posted."""
    fake.silent = True
    photo = comfy_png(run_dir / "a.png", (200, 200), (1, 2, 3))
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TransientPublishError) as caught:
        await publisher(timeout=0.5).post(
            "fox_fb", [OutgoingMedia(photo, MediaKind.IMAGE, "image/png")], CAPTION
        )

    assert loop.time() - started < 5
    assert caught.value.maybe_posted is True


async def test_find_post_ignores_other_captions_and_older_posts(
    fake: FakeGraph, publisher: Callable[..., FacebookPublisher]
) -> None:
    """Only a post with this exact message made since the publish started is found."""
    made = await publisher().post("fox_fb", [], "Another day")
    await publisher().post("fox_fb", [], CAPTION)
    fake.posts[1].created -= timedelta(hours=2)

    now = datetime.now(UTC)
    assert await publisher().find_post("fox_fb", CAPTION, now - timedelta(minutes=1)) is None
    found = await publisher().find_post("fox_fb", "Another day", now - timedelta(minutes=1))
    assert found is not None
    assert found.remote_id == made.remote_id


async def test_metrics_are_the_posts_reactions_comments_and_shares(
    fake: FakeGraph, publisher: Callable[..., FacebookPublisher]
) -> None:
    """A post's reactions, comments and shares are read back; shares is 0 before any share."""
    reader = publisher()
    assert isinstance(reader, MetricsReader)
    first = await reader.post("fox_fb", [], CAPTION)
    second = await reader.post("fox_fb", [], "Second")
    fake.posts[0].reactions, fake.posts[0].comments, fake.posts[0].shares = 41, 7, 3

    assert await reader.read_metrics("fox_fb", first.remote_id) == PostMetrics(
        likes=41, reposts=3, replies=7, views=None
    )
    assert await reader.read_metrics("fox_fb", second.remote_id) == PostMetrics(
        likes=0, reposts=0, replies=0, views=None
    )


def test_check_names_a_missing_page_token_at_the_facebook_line(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """`check` names the missing Facebook variable at the platform's line, never a value."""
    character = make_character(facebook=True)

    problems = check_credentials(character, settings, environ={"FOX_FB_PAGE_ID": PAGE_ID})

    assert [str(p) for p in problems] == [
        "characters/fox.yaml:11: social_media.platforms.facebook.credentials: "
        "FOX_FB_PAGE_ACCESS_TOKEN is not set (in the environment, .env or "
        f"{settings.credentials_dir / 'fox_fb.json'})"
    ]


def test_facebook_credentials_come_from_the_json_file(settings: Settings) -> None:
    """A page id and page token in credentials/NAME.json are used and never shown."""
    settings.credentials_dir.mkdir(parents=True)
    (settings.credentials_dir / "fox_fb.json").write_text(
        json.dumps({"page_id": PAGE_ID, "page_access_token": FB_ENV["FOX_FB_PAGE_ACCESS_TOKEN"]})
    )

    creds = CredentialStore(settings, {}).facebook("fox_fb")

    assert creds.page_id == PAGE_ID
    assert creds.page_access_token.get_secret_value() == FB_ENV["FOX_FB_PAGE_ACCESS_TOKEN"]
    assert no_secrets(repr(creds))
