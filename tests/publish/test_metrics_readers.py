"""Reading back what a post achieved, through each platform's real client against its fake."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.models import Platform
from pipeline.ports import MetricsReader, PostMetrics
from pipeline.publish.bluesky import BlueskyPublisher
from pipeline.publish.credentials import CredentialStore, session_path
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
)
from pipeline.publish.instagram import InstagramPublisher
from pipeline.publish.twitter import TwitterPublisher
from pipeline.settings import Settings
from tests.fakes.bluesky import DID, FakeBluesky, Post
from tests.fakes.instagram import USER_ID, FakeInstagram, media_payload
from tests.fakes.x import FakeX
from tests.publish.conftest import BSKY_ENV, IG_ENV, X_ENV


def _x(settings: Settings) -> TwitterPublisher:
    return TwitterPublisher(CredentialStore(settings, X_ENV).twitter)


def _tweet(fake: FakeX, tweet_id: str, **counts: int) -> None:
    metrics = {"retweet_count": 0, "reply_count": 0, "like_count": 0, "quote_count": 0}
    fake.tweets.append(
        {"id": tweet_id, "text": "Autumn walk", "public_metrics": {**metrics, **counts}}
    )


async def test_x_reads_public_metrics(fake_x: FakeX, settings: Settings) -> None:
    """X's likes, retweets plus quotes, replies and impressions become the post's counts."""
    _tweet(fake_x, "1790000000000000009", like_count=12, retweet_count=3, quote_count=1,
           reply_count=2, impression_count=480)  # fmt: skip
    publisher = _x(settings)
    assert isinstance(publisher, MetricsReader)

    metrics = await publisher.read_metrics("fox_x", "1790000000000000009")

    assert metrics == PostMetrics(likes=12, reposts=4, replies=2, views=480)
    assert fake_x.calls[-1] == ("GET", "/2/tweets/1790000000000000009")


async def test_x_deleted_post_is_refused_for_good(fake_x: FakeX, settings: Settings) -> None:
    """A post X no longer has (200 with a Not Found Error) is not worth another try."""
    with pytest.raises(ContentRejectedError, match="gone"):
        await _x(settings).read_metrics("fox_x", "1790000000000000404")


async def test_x_rate_limit_is_transient(fake_x: FakeX, settings: Settings) -> None:
    """X's 429 is worth another try later."""
    _tweet(fake_x, "1790000000000000009")
    body = json.dumps({"title": "Too Many Requests", "detail": "Too Many Requests", "status": 429})
    fake_x.fail("lookup", (429, {"x-rate-limit-reset": "0"}, body))
    with pytest.raises(TransientPublishError):
        await _x(settings).read_metrics("fox_x", "1790000000000000009")


def _ig(settings: Settings) -> InstagramPublisher:
    return InstagramPublisher(
        CredentialStore(settings, IG_ENV).instagram,
        lambda name: session_path(settings, Platform.INSTAGRAM, name),
        request_delay=0,
        configure_delay=0,
    )


async def test_instagram_reads_a_reels_counts(
    fake_ig: FakeInstagram, settings: Settings, saved_session: Path
) -> None:
    """A reel's likes, comments and plays come from media/{pk}/info/ through instagrapi."""
    reel = media_payload(3100000000000000077, "Autumn walk", media_type=2)
    reel.update(like_count=30, comment_count=4, play_count=900)
    fake_ig.medias.append(reel)

    metrics = await _ig(settings).read_metrics("fox_ig", f"3100000000000000077_{USER_ID}")

    assert metrics == PostMetrics(likes=30, reposts=None, replies=4, views=900)
    assert ("GET", "/api/v1/media/3100000000000000077/info/") in fake_ig.calls


async def test_instagram_photo_has_no_views(
    fake_ig: FakeInstagram, settings: Settings, saved_session: Path
) -> None:
    """A photo reports likes and comments; views are not a photo's count."""
    photo = media_payload(3100000000000000078, "Autumn walk")
    photo.update(like_count=5, comment_count=1)
    fake_ig.medias.append(photo)

    metrics = await _ig(settings).read_metrics("fox_ig", f"3100000000000000078_{USER_ID}")

    assert metrics == PostMetrics(likes=5, replies=1)


async def test_instagram_gone_post_is_refused(
    fake_ig: FakeInstagram, settings: Settings, saved_session: Path
) -> None:
    """A deleted post ("Media not found or unavailable") is not worth another try."""
    with pytest.raises(ContentRejectedError, match="gone"):
        await _ig(settings).read_metrics("fox_ig", f"3100000000000000999_{USER_ID}")


async def test_instagram_login_required_needs_attention(
    fake_ig: FakeInstagram, settings: Settings, saved_session: Path
) -> None:
    """An expired session while reading asks a person, as it does while posting."""
    fake_ig.medias.append(media_payload(3100000000000000079, "Autumn walk"))
    expired = {"message": "login_required", "status": "fail", "logout_reason": 2}
    fake_ig.faults["/media/3100000000000000079/info/"] = (403, {}, json.dumps(expired))
    with pytest.raises(AccountAttentionError):
        await _ig(settings).read_metrics("fox_ig", f"3100000000000000079_{USER_ID}")


@pytest.fixture
async def bsky() -> AsyncIterator[FakeBluesky]:
    server = await FakeBluesky().start()
    yield server
    await server.close()


@pytest.fixture
async def bsky_publisher(settings: Settings, bsky: FakeBluesky) -> AsyncIterator[BlueskyPublisher]:
    publisher = BlueskyPublisher(
        CredentialStore(settings, BSKY_ENV).bluesky, service_url=bsky.url, timeout=10
    )
    yield publisher
    await publisher.aclose()


async def test_bluesky_reads_counts(bsky: FakeBluesky, bsky_publisher: BlueskyPublisher) -> None:
    """likeCount, repostCount plus quoteCount and replyCount from app.bsky.feed.getPosts."""
    post = Post("3lfox0000001", {"text": "Autumn walk", "createdAt": "2025-01-01T00:00:00Z"})
    post.counts.update(likeCount=7, repostCount=2, quoteCount=1, replyCount=3)
    bsky.posts.append(post)

    metrics = await bsky_publisher.read_metrics("fox_bsky", post.uri)

    assert metrics == PostMetrics(likes=7, reposts=3, replies=3, views=None)
    assert "app.bsky.feed.getPosts" in bsky.calls


async def test_bluesky_gone_post_is_refused(bsky_publisher: BlueskyPublisher) -> None:
    """A post the AppView leaves out of its answer is gone: no retry."""
    with pytest.raises(ContentRejectedError, match="gone"):
        await bsky_publisher.read_metrics("fox_bsky", f"at://{DID}/app.bsky.feed.post/3lgone")


async def test_bluesky_rate_limit_is_transient(
    bsky: FakeBluesky, bsky_publisher: BlueskyPublisher
) -> None:
    """A 429 from getPosts is worth another try, after the reset it names."""
    bsky.rate_limited["app.bsky.feed.getPosts"] = 1
    with pytest.raises(TransientPublishError) as caught:
        await bsky_publisher.read_metrics("fox_bsky", f"at://{DID}/app.bsky.feed.post/3lany")
    assert caught.value.retry_after is not None
