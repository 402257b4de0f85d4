"""Publishing to Threads through the Threads API, images through the image host: against the
fake Graph server (which serves Threads' paths) and the fake S3 bucket over real sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from pipeline.captions import caption_problems, fit_caption, threads_length
from pipeline.characters import Character
from pipeline.models import MediaKind, Platform, PostState
from pipeline.ports import MetricsReader, OutgoingMedia, PostMetrics
from pipeline.publish import build_publish_service
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore, check_credentials
from pipeline.publish.errors import ContentRejectedError
from pipeline.publish.image_host import ImageHost, S3Host
from pipeline.publish.service import PublishService, fit_run_media
from pipeline.publish.threads import ThreadsPublisher
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.graph import EXPIRED_TOKEN, THREADS_TOKEN, THREADS_USER_ID, FakeGraph
from tests.fakes.image_host import BUCKET, REGION, S3_KEY_ID, S3_SECRET, FakeS3
from tests.publish.conftest import RecordingNotifier, approved_run, comfy_png, no_secrets

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

TH_ENV = {"FOX_TH_USER_ID": THREADS_USER_ID, "FOX_TH_ACCESS_TOKEN": THREADS_TOKEN}
CAPTION = "Autumn walk in the park #fox"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    server = await FakeGraph().start()
    yield server
    await server.close()


@pytest.fixture
async def bucket() -> AsyncIterator[FakeS3]:
    server = await FakeS3().start()
    yield server
    await server.close()


@pytest.fixture
def host(bucket: FakeS3) -> ImageHost:
    return S3Host(
        BUCKET,
        access_key_id=S3_KEY_ID,
        secret_access_key=SecretStr(S3_SECRET),
        endpoint_url=bucket.url,
        region=REGION,
        timeout=10,
    )


@pytest.fixture
def publisher(settings: Settings, fake: FakeGraph, host: ImageHost) -> ThreadsPublisher:
    return ThreadsPublisher(
        CredentialStore(settings, TH_ENV).threads,
        host,
        api_url=fake.url,
        timeout=10,
        sleep=lambda _: None,
    )


@pytest.fixture
def service(
    settings: Settings, store: SqlStore, notifier: RecordingNotifier, publisher: ThreadsPublisher
) -> Callable[[], PublishService]:
    async def no_wait(seconds: float) -> None:
        pass

    def build() -> PublishService:
        built = build_publish_service(
            settings, store, notifier=notifier, publishers={Platform.THREADS: publisher}
        )
        built.sleep = no_wait
        return built

    return build


def images(run_dir: Path, count: int) -> list[str]:
    names = [f"{i}.png" for i in range(count)]
    for index, name in enumerate(names):
        comfy_png(run_dir / name, (900, 900), (200, 20 * index, 10))
    return names


async def test_a_text_post_needs_no_image_host(
    fake: FakeGraph, settings: Settings, bucket: FakeS3
) -> None:
    """A text-only post is one TEXT container, published, with no image host involved."""
    publisher = ThreadsPublisher(
        CredentialStore(settings, TH_ENV).threads, None, api_url=fake.url, timeout=10
    )

    made = await publisher.post("fox_th", [], CAPTION)

    [post] = fake.published
    assert (post.id, post.text, post.container.media_type) == (made.remote_id, CAPTION, "TEXT")
    assert made.url == f"https://www.threads.net/@fox/post/T{post.id}"
    assert bucket.calls == []


async def test_one_image_goes_through_the_bucket_and_is_removed(
    fake: FakeGraph,
    bucket: FakeS3,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An image is put in the bucket, Threads fetches it by its presigned URL, the post is
    published with the text, and the object is deleted after."""
    run = approved_run(run_dir, images(run_dir, 1), captions={"threads": CAPTION})
    character = make_character(threads=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.published
    assert post.container.media_type == "IMAGE"
    assert post.container.data == (run_dir / "fitted/threads/00.jpg").read_bytes()
    assert "X-Amz-Signature" in fake.fetched[0]
    assert bucket.objects == {}
    assert len(bucket.removed) == 1


async def test_three_images_are_one_carousel(
    fake: FakeGraph,
    bucket: FakeS3,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Three images become three carousel items and one CAROUSEL post with the text."""
    run = approved_run(run_dir, images(run_dir, 3), captions={"threads": CAPTION})
    character = make_character(threads=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.published
    assert (post.container.media_type, post.text) == ("CAROUSEL", CAPTION)
    items = [fake.containers[c].data for c in post.container.children]
    assert items == [(run_dir / f"fitted/threads/{i:02d}.jpg").read_bytes() for i in range(3)]
    assert bucket.objects == {}


async def test_a_lost_publish_answer_is_found_and_not_published_twice(
    fake: FakeGraph,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
) -> None:
    """A threads_publish whose answer never came is found among the user's posts."""
    fake.lose_answer = True
    run = approved_run(run_dir, images(run_dir, 1), captions={"threads": CAPTION})
    character = make_character(threads=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    [post] = fake.published
    assert record.remote_id == post.id
    assert again == record
    assert fake.calls.count(f"POST {THREADS_USER_ID}/threads_publish") == 1
    assert notifier.uncertain == []


async def test_an_expired_token_pauses_the_account(
    fake: FakeGraph,
    service: Callable[[], PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Threads refusing the token (190) pauses the account; the token is shown nowhere."""
    caplog.set_level(logging.DEBUG)
    fake.fail_next = {"threads": [EXPIRED_TOKEN]}
    run = approved_run(run_dir, images(run_dir, 1), captions={"threads": CAPTION})
    character = make_character(threads=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert [(p, a) for p, a, _ in notifier.attention] == [(Platform.THREADS, "fox_th")]
    assert AttentionBoard(settings.attention_dir).paused(Platform.THREADS, "fox_th")
    assert THREADS_TOKEN not in caplog.text + repr(record)
    assert no_secrets(caplog.text)


async def test_a_video_is_refused_before_anything_is_sent(
    fake: FakeGraph, publisher: ThreadsPublisher, bucket: FakeS3, tmp_path: Path
) -> None:
    """Videos are not posted to Threads yet: refused with a reason, nothing uploaded."""
    clip = tmp_path / "a.mp4"
    clip.write_bytes(b"\0" * 10)
    with pytest.raises(ContentRejectedError) as caught:
        await publisher.post("fox_th", [OutgoingMedia(clip, MediaKind.VIDEO, "video/mp4")], "hi")
    assert caught.value.platform_message == "videos are not posted to Threads yet; post images"
    assert (fake.calls, bucket.calls) == ([], [])


async def test_metrics_are_the_posts_insights(fake: FakeGraph, publisher: ThreadsPublisher) -> None:
    """A post's views, likes, replies and reposts are read from its insights."""
    assert isinstance(publisher, MetricsReader)
    made = await publisher.post("fox_th", [], CAPTION)
    post = fake.published[0]
    post.views, post.likes, post.comments, post.reposts = 900, 40, 6, 2

    metrics = await publisher.read_metrics("fox_th", made.remote_id)

    assert metrics == PostMetrics(likes=40, reposts=2, replies=6, views=900)


def test_threads_counts_emoji_by_their_bytes_and_keeps_one_topic_tag() -> None:
    """Threads' 500 counts an emoji as its UTF-8 bytes; a fitted caption keeps one hashtag."""
    assert threads_length("fox 🦊") == 4 + 4
    fitted = fit_caption("🦊 " * 200, ["#fox", "#autumn", "#walk"], platform=Platform.THREADS)
    assert threads_length(fitted) <= 500
    assert fitted.count("#") == 1
    assert caption_problems(Platform.THREADS, "a" * 501) == [
        "the post is 501 of Threads's 500 characters"
    ]
    assert caption_problems(Platform.THREADS, "hi #one #two") == [
        "the caption has 2 hashtags, and Threads takes 1"
    ]


def test_check_names_a_missing_threads_token(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """`check` names the missing Threads variable, never a value."""
    character = make_character(threads=True)

    problems = check_credentials(character, settings, environ={"FOX_TH_USER_ID": THREADS_USER_ID})
    hosted = settings.model_copy(update={"image_host": "s3"})

    assert [p.message for p in problems] == [
        "FOX_TH_ACCESS_TOKEN is not set (in the environment, .env or "
        f"{settings.credentials_dir / 'fox_th.json'})",
        "this account's images are fetched by URL, so IMAGE_HOST must name an image host"
        " (cloudinary or s3; docs/publishing.md#the-image-host)",
    ]
    assert check_credentials(character, hosted, environ=TH_ENV) == []
