"""Publishing to Bluesky through the real atproto client, against a fake PDS over real sockets."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from pipeline.captions import caption_problems, fit_caption, graphemes
from pipeline.characters import Character
from pipeline.models import MediaKind, Platform, PostState
from pipeline.ports import OutgoingMedia
from pipeline.publish import build_publish_service
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.bluesky import BlueskyPublisher
from pipeline.publish.credentials import CredentialStore, check_credentials
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
)
from pipeline.publish.service import PublishService, fit_run_media
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.bluesky import FakeBluesky
from tests.publish.conftest import BSKY_ENV, RecordingNotifier, approved_run, comfy_png, no_secrets
from tests.videos import make_video

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

ALT = "A small orange fox in a blue scarf"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBluesky]:
    server = await FakeBluesky().start()
    yield server
    await server.close()


@pytest.fixture
async def publishers(
    settings: Settings, fake: FakeBluesky
) -> AsyncIterator[Callable[..., BlueskyPublisher]]:
    """New publishers against the fake (as new processes build them), closed at the end."""
    made: list[BlueskyPublisher] = []

    def make(timeout: float = 10.0) -> BlueskyPublisher:
        publisher = BlueskyPublisher(
            CredentialStore(settings, BSKY_ENV).bluesky, service_url=fake.url, timeout=timeout
        )
        made.append(publisher)
        return publisher

    yield make
    for publisher in made:
        await publisher.aclose()


@pytest.fixture
def service(
    settings: Settings,
    store: SqlStore,
    notifier: RecordingNotifier,
    publishers: Callable[..., BlueskyPublisher],
) -> Callable[..., PublishService]:
    waits: list[float] = []

    async def no_wait(seconds: float) -> None:
        waits.append(seconds)

    def build(timeout: float = 10.0) -> PublishService:
        built = build_publish_service(
            settings,
            store,
            notifier=notifier,
            publishers={Platform.BLUESKY: publishers(timeout)},
        )
        built.sleep = no_wait
        built.waits = waits  # type: ignore[attr-defined]
        return built

    return build


def noisy_png(path: Path, size: tuple[int, int]) -> Path:
    """A PNG of noise, which no JPEG compresses much: over Bluesky's blob limit as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.effect_noise(size, 90).convert("RGB").save(path, "PNG")
    return path


async def test_four_images_are_posted_with_alt_text_under_the_blob_limit(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Four images become one Bluesky post, each under 1,000,000 bytes with its alt text."""
    names = [f"{i}.png" for i in range(5)]
    noisy_png(run_dir / names[0], (1600, 1200))  # some 1.3 MB as JPEG: made smaller to fit
    for name in names[1:]:
        comfy_png(run_dir / name, (640, 480), (200, 10, 10))
    run = approved_run(run_dir, names, captions={"bluesky": "Autumn walk #fox"})
    character = make_character(bluesky=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED
    assert record.url is not None
    assert record.url.startswith("https://bsky.app/profile/did:plc:")
    [post] = fake.posts
    assert post.record["text"] == "Autumn walk #fox"
    images = post.record["embed"]["images"]
    assert len(images) == 4  # the fifth approved image is not part of it: Bluesky takes 4
    assert {image["alt"] for image in images} == {ALT}
    sizes = [len(fake.blobs[image["image"]["ref"]["$link"]][0]) for image in images]
    assert all(size <= 1_000_000 for size in sizes)
    assert images[0]["aspectRatio"]["width"] < 1600  # made smaller until under the limit
    assert all(image["image"]["mimeType"] == "image/jpeg" for image in images)
    assert images[0]["aspectRatio"]["width"] / images[0]["aspectRatio"]["height"] == pytest.approx(
        4 / 3, rel=0.01
    )


async def test_links_and_hashtags_are_clickable_at_their_utf8_byte_offsets(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher], tmp_path: Path
) -> None:
    """A link and a hashtag after accented text and an emoji are facets at their exact bytes."""
    caption = "Café crème 🦊 — mehr unter https://example.com/fuchs?x=1 und #Füchse"
    await publishers().post("fox_bsky", [], caption)

    [post] = fake.posts
    raw = post.record["text"].encode("utf-8")
    found = {
        raw[f["index"]["byteStart"] : f["index"]["byteEnd"]].decode(): f["features"][0]
        for f in post.record["facets"]
    }
    assert found["https://example.com/fuchs?x=1"] == {
        "$type": "app.bsky.richtext.facet#link",
        "uri": "https://example.com/fuchs?x=1",
    }
    assert found["#Füchse"] == {"$type": "app.bsky.richtext.facet#tag", "tag": "Füchse"}


@pytest.mark.parametrize(
    ("text", "tags"),
    [
        ("Word " * 70, ["#fox"]),
        ("🦊👨‍👩‍👧🇫🇷 " * 120, ["#fox", "#autumn"]),
        ("秋の散歩" * 100, []),
    ],
    ids=["latin", "emoji-sequences", "cjk"],
)
async def test_a_long_caption_is_fitted_to_300_graphemes_and_accepted(
    text: str, tags: list[str], fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher]
) -> None:
    """A model's caption of more than 300 graphemes is cut to fit, and Bluesky takes it."""
    caption = fit_caption(text, tags, platform=Platform.BLUESKY)

    assert 250 <= graphemes(caption) <= 300
    assert caption_problems(Platform.BLUESKY, caption) == []
    await publishers().post("fox_bsky", [], caption)
    assert [p.record["text"] for p in fake.posts] == [caption]


async def test_a_person_written_caption_of_301_graphemes_is_refused_before_posting(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A caption of 301 graphemes (each a family emoji) fails with the count; nothing is sent."""
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    caption = "👨‍👩‍👧" * 301
    run = approved_run(run_dir, ["a.png"], captions={"bluesky": caption})

    [record] = await service().publish_run(run, make_character(bluesky=True), run_dir)

    assert record.state is PostState.FAILED
    assert record.error == "the post is 301 of Bluesky's 300 characters"
    assert fake.calls == []


async def test_a_refused_app_password_pauses_the_account(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    settings: Settings,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Bluesky refusing the login pauses the account and tells a person; no secret is shown."""
    caplog.set_level(logging.DEBUG)
    fake.refuse_password = True
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"bluesky": "Autumn walk"})

    [record] = await service().publish_run(run, make_character(bluesky=True), run_dir)

    assert record.state is PostState.FAILED
    assert record.error == (
        "The account needs attention: Bluesky refused the login: Invalid identifier or password"
    )
    assert [(p, a) for p, a, _ in notifier.attention] == [(Platform.BLUESKY, "fox_bsky")]
    assert AttentionBoard(settings.attention_dir).paused(Platform.BLUESKY, "fox_bsky")
    assert fake.calls == ["com.atproto.server.createSession"]  # never retried
    assert no_secrets(caplog.text, repr(record))


async def test_a_lost_answer_is_found_on_the_feed_and_not_posted_twice(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
    notifier: RecordingNotifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A post whose answer never came is found among the account's posts and is not resent."""
    fake.lose_post_answer = True
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"bluesky": "Autumn walk #fox"})
    character = make_character(bluesky=True)

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    assert record.remote_id == fake.posts[0].uri
    assert again == record
    assert len(fake.posts) == 1
    assert fake.calls.count("com.atproto.repo.createRecord") == 1
    assert "app.bsky.feed.getAuthorFeed" in fake.calls
    assert notifier.uncertain == []
    assert "oddly" not in caplog.text  # a cut answer is a known kind, not a surprise


async def test_a_video_is_posted_as_an_mp4_with_alt_text_and_its_aspect_ratio(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An approved WebM clip is fitted to MP4 and posted as Bluesky's video embed, with the
    description as alt text and the clip's 16:9 shape."""
    make_video(run_dir / "clip.webm", seconds=1.5, size="320x180", audio=True)
    run = approved_run(run_dir, ["clip.webm"], captions={"bluesky": "Autumn walk #fox"})
    character = make_character(bluesky=True)
    await fit_run_media(run, character, run_dir)

    [record] = await service().publish_run(run, character, run_dir)

    assert record.state is PostState.POSTED, record.error
    [post] = fake.posts
    embed = post.record["embed"]
    assert embed["$type"] == "app.bsky.embed.video"
    assert embed["alt"] == ALT
    assert embed["aspectRatio"]["width"] / embed["aspectRatio"]["height"] == pytest.approx(16 / 9)
    data, mime = fake.blobs[embed["video"]["ref"]["$link"]]
    assert mime == embed["video"]["mimeType"] == "video/mp4"
    assert data[4:8] == b"ftyp"  # an MP4 file, not the WebM that was approved
    assert post.record["text"] == "Autumn walk #fox"


async def test_a_lost_answer_to_a_video_post_is_found_on_the_feed_and_not_posted_twice(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A video post whose answer never came is found among the account's posts: neither the
    post nor the video is sent again, even when the run is published once more."""
    fake.lose_post_answer = True
    make_video(run_dir / "clip.mp4", seconds=1.0, size="180x320")
    run = approved_run(run_dir, ["clip.mp4"], captions={"bluesky": "Night walk"})
    character = make_character(bluesky=True)

    [record] = await service().publish_run(run, character, run_dir)
    [again] = await service().publish_run(run, character, run_dir, retry_failed=True)

    assert record.state is PostState.POSTED
    assert record.remote_id == fake.posts[0].uri
    assert again == record
    assert len(fake.posts) == 1
    assert fake.calls.count("com.atproto.repo.uploadBlob") == 1
    assert fake.calls.count("com.atproto.repo.createRecord") == 1
    ratio = fake.posts[0].record["embed"]["aspectRatio"]
    assert (ratio["width"], ratio["height"]) == (180, 320)


async def test_a_video_over_the_servers_limit_fails_with_its_sentence(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A server that takes smaller videos than the lexicon refuses the post (BlobTooLarge):
    the post fails with Bluesky's sentence and is not retried."""
    fake.video_max_bytes = 1000
    make_video(run_dir / "clip.mp4", seconds=1.0)
    run = approved_run(run_dir, ["clip.mp4"], captions={"bluesky": "Autumn walk"})

    [record] = await service().publish_run(run, make_character(bluesky=True), run_dir)

    assert record.state is PostState.FAILED
    assert record.error is not None
    assert record.error.startswith("The platform refused the post: This file is too large.")
    assert fake.posts == []
    assert fake.calls.count("com.atproto.repo.createRecord") == 1


async def test_a_video_over_three_minutes_is_refused_before_it_is_sent(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher], tmp_path: Path
) -> None:
    """A clip of 181 s (longer than Bluesky plays) is refused with the limit; nothing is
    uploaded."""
    clip = make_video(tmp_path / "long.mp4", seconds=181, size="64x36")
    media = [OutgoingMedia(clip, MediaKind.VIDEO, "video/mp4", ALT)]

    with pytest.raises(ContentRejectedError) as caught:
        await publishers().post("fox_bsky", media, "hello")

    assert caught.value.platform_message == "Bluesky takes videos of at most 180 s"
    assert "com.atproto.repo.uploadBlob" not in fake.calls


async def test_a_rate_limited_post_waits_as_bluesky_says_and_posts_once(
    fake: FakeBluesky,
    service: Callable[..., PublishService],
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """A 429 on the post waits until Bluesky's ratelimit-reset, then posts exactly once."""
    fake.rate_limited = {"com.atproto.repo.createRecord": 1}
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"], captions={"bluesky": "Autumn walk"})
    built = service()

    [record] = await built.publish_run(run, make_character(bluesky=True), run_dir)

    assert record.state is PostState.POSTED
    assert len(fake.posts) == 1
    [wait] = built.waits  # type: ignore[attr-defined]
    assert 20 <= wait <= 31


async def test_the_session_is_reused_and_renewed_when_bluesky_drops_it(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher]
) -> None:
    """Two posts log in once; after the service revoked the session, the next logs in again."""
    publisher = publishers()
    await publisher.post("fox_bsky", [], "one")
    await publisher.post("fox_bsky", [], "two")
    assert fake.logins == 1

    fake.expire_sessions()
    await publisher.post("fox_bsky", [], "three")

    assert fake.logins == 2
    assert [p.record["text"] for p in fake.posts] == ["one", "two", "three"]


async def test_a_session_near_its_end_is_refreshed_not_logged_in_again(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher]
) -> None:
    """An access token about to run out is renewed with refreshSession; the password is sent once."""
    fake.access_lifetime = 60  # the client renews 15 minutes before the end: at once
    publisher = publishers()
    await publisher.post("fox_bsky", [], "one")
    await publisher.post("fox_bsky", [], "two")

    assert fake.logins == 1
    assert fake.calls.count("com.atproto.server.refreshSession") >= 2
    assert [p.record["text"] for p in fake.posts] == ["one", "two"]


async def test_a_silent_server_fails_the_call_at_its_deadline(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher]
) -> None:
    """A service that never answers fails the post as a transient error at the deadline."""
    fake.silent = True
    loop = asyncio.get_running_loop()
    started = loop.time()

    with pytest.raises(TransientPublishError, match="within the deadline") as caught:
        await publishers(timeout=0.5).post("fox_bsky", [], "hello")

    assert loop.time() - started < 5
    assert caught.value.maybe_posted is False  # the login, not the post, went unanswered
    assert fake.posts == []


async def test_a_silent_post_call_is_checked_not_retried(
    fake: FakeBluesky, publishers: Callable[..., BlueskyPublisher]
) -> None:
    """A post call that gets no answer by its deadline may have posted: it says so."""
    publisher = publishers(timeout=0.5)
    await publisher.post("fox_bsky", [], "first")  # logged in
    fake.silent = True

    with pytest.raises(TransientPublishError) as caught:
        await publisher.post("fox_bsky", [], "second")

    assert caught.value.maybe_posted is True


async def test_a_missing_app_password_is_a_config_error_not_a_pause(
    settings: Settings, fake: FakeBluesky
) -> None:
    """Credentials without the app password fail before any call, naming the variable."""
    publisher = BlueskyPublisher(
        CredentialStore(settings, {"FOX_BSKY_HANDLE": "fox.bsky.social"}).bluesky,
        service_url=fake.url,
    )
    with pytest.raises(Exception, match="FOX_BSKY_APP_PASSWORD is not set") as caught:
        await publisher.post("fox_bsky", [], "hello")
    assert not isinstance(caught.value, AccountAttentionError)
    assert fake.calls == []


async def test_a_feed_answer_over_the_cap_is_not_read(
    fake: FakeBluesky, settings: Settings
) -> None:
    """A lookup whose answer is larger than the cap fails as transient, unread past the cap."""
    fake.feed_padding = 4 * 1024 * 1024
    publisher = BlueskyPublisher(
        CredentialStore(settings, BSKY_ENV).bluesky,
        service_url=fake.url,
        max_answer_bytes=256 * 1024,
    )
    try:
        with pytest.raises(TransientPublishError, match="larger than 256 KB"):
            await publisher.find_post("fox_bsky", "hello", datetime.now(UTC))
    finally:
        await publisher.aclose()


@pytest.mark.parametrize(
    ("files", "said"),
    [
        (
            [("a.mp4", MediaKind.VIDEO, 10), ("b.jpg", MediaKind.IMAGE, 10)],
            "Bluesky takes one MP4 video alone in a post",
        ),
        ([("a.jpg", MediaKind.IMAGE, 10)] * 5, "Bluesky takes at most 4 images"),
        ([("a.jpg", MediaKind.IMAGE, 1_000_001)], "an image is over Bluesky's 1000000 bytes"),
    ],
    ids=["video-with-an-image", "five-images", "image-over-the-blob-limit"],
)
async def test_media_bluesky_would_refuse_fails_before_anything_is_sent(
    files: list[tuple[str, MediaKind, int]],
    said: str,
    fake: FakeBluesky,
    publishers: Callable[..., BlueskyPublisher],
    tmp_path: Path,
) -> None:
    """A video with an image, a fifth image or an image over 1,000,000 bytes is refused with a
    reason."""
    media = []
    for name, kind, size in files:
        path = tmp_path / name
        path.write_bytes(b"\0" * size)
        media.append(OutgoingMedia(path, kind, "image/jpeg", ALT))

    with pytest.raises(ContentRejectedError) as caught:
        await publishers().post("fox_bsky", media, "hello")

    assert caught.value.platform_message == said
    assert "com.atproto.repo.createRecord" not in fake.calls


def test_check_names_a_missing_app_password_at_the_bluesky_line(
    settings: Settings, make_character: Callable[..., Character]
) -> None:
    """`check` names the missing Bluesky variable at the platform's line, never a value."""
    character = make_character(bluesky=True)

    problems = check_credentials(
        character, settings, environ={"FOX_BSKY_HANDLE": "fox.bsky.social"}
    )

    assert [str(p) for p in problems] == [
        "characters/fox.yaml:10: social_media.platforms.bluesky.credentials: "
        "FOX_BSKY_APP_PASSWORD is not set (in the environment, .env or "
        f"{settings.credentials_dir / 'fox_bsky.json'})"
    ]


def test_bluesky_credentials_come_from_the_json_file(settings: Settings) -> None:
    """A handle and app password in credentials/NAME.json are used; the @ is dropped."""
    settings.credentials_dir.mkdir(parents=True)
    (settings.credentials_dir / "fox_bsky.json").write_text(
        json.dumps({"handle": "@fox.bsky.social", "app_password": "abcd-efgh-ijkl-mnop"})
    )

    creds = CredentialStore(settings, {}).bluesky("fox_bsky")

    assert creds.handle == "fox.bsky.social"
    assert creds.app_password.get_secret_value() == "abcd-efgh-ijkl-mnop"
    assert no_secrets(repr(creds))
