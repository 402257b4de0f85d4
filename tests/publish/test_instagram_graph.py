"""Instagram through the official Graph API, per account, with the files on an image host:
against the fake Graph server and the fake Cloudinary over real sockets."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from PIL import Image
from pydantic import SecretStr

from pipeline.characters import Character
from pipeline.models import MediaKind, Platform, PostState
from pipeline.ports import MetricsReader, OutgoingMedia, PostMetrics
from pipeline.publish import build_publish_service
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore, check_credentials
from pipeline.publish.errors import TransientPublishError
from pipeline.publish.image_host import CloudinaryHost, ImageHost
from pipeline.publish.instagram import InstagramPublisher
from pipeline.publish.instagram_graph import InstagramByAccount, InstagramGraphPublisher
from pipeline.publish.service import PublishService, fit_run_media
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.graph import EXPIRED_TOKEN, IG_TOKEN, IG_USER_ID, FakeGraph
from tests.fakes.image_host import CLOUD, CLOUDINARY_KEY, CLOUDINARY_SECRET, FakeCloudinary
from tests.publish.conftest import (
    IG_ENV,
    RecordingNotifier,
    approved_run,
    comfy_png,
    no_secrets,
)
from tests.videos import make_video

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

GRAPH_ENV = {"FOX_IG_IG_USER_ID": IG_USER_ID, "FOX_IG_ACCESS_TOKEN": IG_TOKEN}
CAPTION = "Autumn walk in the park #fox"


@pytest.fixture
async def fake() -> AsyncIterator[FakeGraph]:
    server = await FakeGraph().start()
    yield server
    await server.close()


@pytest.fixture
async def cloudinary() -> AsyncIterator[FakeCloudinary]:
    server = await FakeCloudinary().start()
    yield server
    await server.close()


@pytest.fixture
def host(cloudinary: FakeCloudinary) -> ImageHost:
    return CloudinaryHost(
        CLOUD, CLOUDINARY_KEY, SecretStr(CLOUDINARY_SECRET), api_url=cloudinary.url, timeout=10
    )


@pytest.fixture
def polls() -> list[float]:
    return []


def graph_publisher(
    settings: Settings, fake: FakeGraph, host: ImageHost | None, polls: list[float]
) -> InstagramGraphPublisher:
    return InstagramGraphPublisher(
        CredentialStore(settings, GRAPH_ENV).instagram_graph,
        host,
        api_url=fake.url,
        timeout=10,
        processing_timeout=60,
        sleep=polls.append,
    )


@pytest.fixture
def service(
    settings: Settings,
    store: SqlStore,
    notifier: RecordingNotifier,
    fake: FakeGraph,
    host: ImageHost,
    polls: list[float],
) -> Callable[..., PublishService]:
    """The Instagram publisher as built for the app: instagrapi by default, the Graph API for
    an account whose credentials name a Graph account (this one)."""

    async def no_wait(seconds: float) -> None:
        pass

    def build(with_host: bool = True) -> PublishService:
        creds = CredentialStore(settings, GRAPH_ENV)
        publisher = InstagramByAccount(
            InstagramPublisher(creds.instagram, lambda name: settings.sessions_dir / name),
            graph_publisher(settings, fake, host if with_host else None, polls),
            creds.instagram_backend,
        )
        built = build_publish_service(
            settings, store, notifier=notifier, publishers={Platform.INSTAGRAM: publisher}
        )
        built.sleep = no_wait
        return built

    return build


def images(run_dir: Path, count: int) -> list[str]:
    names = [f"{i}.png" for i in range(count)]
    for index, name in enumerate(names):
        comfy_png(run_dir / name, (900, 900), (200, 20 * index, 10))
    return names


async def test_one_image_is_posted_from_the_hosts_url_and_removed_there(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An image goes to the host, Instagram fetches it from there, the post is published with
    the caption, and the file is then removed from the host."""
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.published
    assert record.remote_id == post.id
    assert record.url == f"https://www.instagram.com/p/C{post.id}/"
    assert post.text == CAPTION
    assert post.container.data == (run_dir / "fitted/instagram/00.jpg").read_bytes()
    assert len(fake.fetched) == 1
    assert fake.fetched[0].startswith(cloudinary.url)
    assert cloudinary.files == {}
    assert len(cloudinary.removed) == 1


async def test_three_images_are_one_carousel(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Three images become three carousel items and one CAROUSEL container, published once."""
    run = approved_run(run_dir, images(run_dir, 3), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.published
    assert post.container.media_type == "CAROUSEL"
    items = [fake.containers[child].data for child in post.container.children]
    assert items == [(run_dir / f"fitted/instagram/{i:02d}.jpg").read_bytes() for i in range(3)]
    assert cloudinary.files == {}


async def test_a_reel_waits_for_processing_and_carries_its_cover(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    polls: list[float],
) -> None:
    """A clip is a REELS container with its cover, polled until FINISHED, then published."""
    make_video(run_dir / "clip.mp4", seconds=1, size="320x240")
    run = approved_run(run_dir, ["clip.mp4"], captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.published
    assert post.container.media_type == "REELS"
    assert post.container.data == (run_dir / "fitted/instagram/00.mp4").read_bytes()
    assert post.container.cover == (run_dir / "fitted/instagram/00.cover.jpg").read_bytes()
    assert polls == [5.0, 5.0]  # twice IN_PROGRESS, then FINISHED
    assert cloudinary.files == {}
    assert len(cloudinary.removed) == 2


async def test_a_container_instagram_cannot_process_fails_the_post(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A container that ends in ERROR fails the post with Instagram's words; nothing is
    published and the host keeps nothing."""
    fake.container_error = True
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "Instagram could not process the media" in record.error
    assert fake.published == []
    assert cloudinary.files == {}


async def test_a_url_instagram_cannot_fetch_fails_like_instagram_says(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A host URL Instagram cannot reach fails the post with its 'Media download has failed'."""
    cloudinary.unreachable = True
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert "Media download has failed" in record.error
    assert fake.published == []


async def test_without_an_image_host_the_post_fails_naming_the_setting(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A Graph account with IMAGE_HOST unset fails before any call, saying what to set."""
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service(with_host=False).publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert record.error.startswith(
        "Instagram through the Graph API needs an image host: set IMAGE_HOST"
    )
    assert fake.calls == []


async def test_a_lost_publish_answer_is_found_and_not_published_twice(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
) -> None:
    """A media_publish whose answer never came is found among the account's media."""
    fake.lose_answer = True
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    [post] = fake.published
    assert record.remote_id == post.id
    assert again == record
    assert fake.calls.count(f"POST {IG_USER_ID}/media_publish") == 1
    assert f"GET {IG_USER_ID}/media" in fake.calls
    assert notifier.uncertain == []


async def test_an_expired_token_pauses_the_account(
    fake: FakeGraph,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Instagram refusing the token (190) pauses the account; no token is shown anywhere."""
    caplog.set_level(logging.DEBUG)
    fake.fail_next = {"media": [EXPIRED_TOKEN]}
    run = approved_run(run_dir, images(run_dir, 1), captions={"instagram": CAPTION})
    character = make_character(instagram=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.FAILED
    assert [(p, a) for p, a, _ in notifier.attention] == [(Platform.INSTAGRAM, "fox_ig")]
    assert AttentionBoard(settings.attention_dir).paused(Platform.INSTAGRAM, "fox_ig")
    assert no_secrets(caplog.text, repr(record))
    assert IG_TOKEN not in caplog.text + repr(record)


async def test_metrics_are_likes_comments_and_views(
    fake: FakeGraph,
    host: ImageHost,
    settings: Settings,
    polls: list[float],
    run_dir: Path,
) -> None:
    """A media's like_count, comments_count and views insight are read back."""
    photo = run_dir / "a.jpg"
    comfy_png(run_dir / "a.png", (320, 320), (1, 2, 3))
    with Image.open(run_dir / "a.png") as image:
        image.convert("RGB").save(photo, "JPEG")
    publisher = graph_publisher(settings, fake, host, polls)
    assert isinstance(publisher, MetricsReader)
    made = await publisher.post(
        "fox_ig", [OutgoingMedia(photo, MediaKind.IMAGE, "image/jpeg")], CAPTION
    )
    post = fake.published[0]
    post.likes, post.comments, post.views = 12, 3, 480

    metrics = await publisher.read_metrics("fox_ig", made.remote_id)

    assert metrics == PostMetrics(likes=12, reposts=None, replies=3, views=480)


def test_the_backend_is_chosen_per_account_by_its_credentials(settings: Settings) -> None:
    """An account with a username and password stays on instagrapi; one with an ig_user_id and
    access token goes through the Graph API."""
    both = {**IG_ENV, "FOX2_IG_IG_USER_ID": IG_USER_ID, "FOX2_IG_ACCESS_TOKEN": IG_TOKEN}
    creds = CredentialStore(settings, both)

    assert creds.instagram_backend("fox_ig") == "instagrapi"
    assert creds.instagram_backend("fox2_ig") == "graph"
    assert creds.instagram_graph("fox2_ig").ig_user_id == IG_USER_ID


def test_check_names_a_graph_accounts_missing_token(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """`check` names the missing access token of a Graph account, not a username."""
    character = make_character(instagram=True)

    hosted = settings.model_copy(update={"image_host": "cloudinary"})

    problems = check_credentials(character, hosted, environ={"FOX_IG_IG_USER_ID": IG_USER_ID})

    assert [p.message for p in problems] == [
        "FOX_IG_ACCESS_TOKEN is not set (in the environment, .env or "
        f"{settings.credentials_dir / 'fox_ig.json'})"
    ]
    assert [p.message for p in check_credentials(character, settings, environ=GRAPH_ENV)] == [
        "this account's images are fetched by URL, so IMAGE_HOST must name an image host"
        " (cloudinary or s3; docs/publishing.md#the-image-host)"
    ]
    assert check_credentials(character, settings, environ=IG_ENV) == []  # instagrapi: no host


async def test_a_container_still_processing_at_the_deadline_is_tried_later(
    fake: FakeGraph,
    cloudinary: FakeCloudinary,
    host: ImageHost,
    settings: Settings,
    run_dir: Path,
) -> None:
    """A reel Instagram is still processing when the processing deadline passes fails as
    transient (not maybe posted: nothing was published), and the host keeps nothing."""
    fake.video_polls = 10**6
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    publisher = InstagramGraphPublisher(
        CredentialStore(settings, GRAPH_ENV).instagram_graph,
        host,
        api_url=fake.url,
        timeout=10,
        processing_timeout=12,
        sleep=sleep,
        clock=lambda: now[0],
    )
    clip = make_video(run_dir / "clip.mp4", seconds=1, size="320x240")

    with pytest.raises(TransientPublishError, match="still IN_PROGRESS after 12 s") as caught:
        await publisher.post("fox_ig", [OutgoingMedia(clip, MediaKind.VIDEO, "video/mp4")], "x")

    assert caught.value.maybe_posted is False
    assert now[0] == 12
    assert fake.published == []
    assert cloudinary.files == {}
