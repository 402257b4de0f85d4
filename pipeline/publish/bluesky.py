"""Bluesky: images or one video, with alt text, and a text with clickable links and hashtags,
through `atproto`.

One logged-in `AsyncClient` per account is kept for the process (the SDK refreshes its session;
a session the service no longer takes is replaced by one new login). Every call has a deadline
(`BLUESKY_TIMEOUT_SECONDS`, from connect to the last byte) and a capped answer (the httpx
client's hooks of `pipeline.llm.capped`), and goes to `BLUESKY_SERVICE_URL`. Failures become the
kinds of `pipeline.publish.errors` by the XRPC status and error name. Imports domain modules,
the publishing helpers, atproto, httpx and Pillow; never the store.

XRPC calls: com.atproto.server.createSession (and refreshSession, by the SDK),
com.atproto.repo.uploadBlob (each image, or the video: the SDK's `send_video` path, an
app.bsky.embed.video record), com.atproto.repo.createRecord (the post),
app.bsky.feed.getAuthorFeed (the lookup after a lost answer), app.bsky.feed.getPosts (what a
post achieved, `read_metrics`).
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import httpx
import pydantic
from atproto import AsyncClient, AsyncRequest, AtUri, Session, models
from atproto_client import exceptions as at_errors
from atproto_client.models.utils import get_response_model
from atproto_client.utils import facet_detection
from atproto_core.exceptions import AtProtocolError
from PIL import Image

from pipeline.llm.capped import AnswerTooLarge, capped_hooks
from pipeline.models import MediaKind, Platform, utcnow
from pipeline.ports import OutgoingMedia, PostMetrics, RemotePost
from pipeline.publish.credentials import BlueskyCredentials
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)
from pipeline.publish.media import MediaError, probe_video

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Bluesky's limits (lexicons app.bsky.embed.images, app.bsky.embed.video and app.bsky.feed.post)
MAX_IMAGES = 4
MAX_BLOB_BYTES = 1_000_000
ALT_TEXT_LIMIT = 1000
#: a video: one MP4 of at most 100 MB (the lexicon's former limit, which every PDS takes) and
#: 3 minutes (Bluesky's own limit); `pipeline.publish.media.BLUESKY_VIDEO` fits it within them
VIDEO_MIME = "video/mp4"
MAX_VIDEO_BYTES = 100_000_000
MAX_VIDEO_SECONDS = 180.0
#: XRPC answers are small JSON (a feed page of 50 posts is some 100 KB)
MAX_ANSWER_BYTES = 2 * 1024 * 1024
#: how many of the account's newest posts are looked through after a lost answer
FEED_PAGE = 50
#: a post's own time may be a little before the record's (clocks differ)
CLOCK_SLACK = timedelta(minutes=5)

#: XRPC errors of a session the service no longer takes: log in again, once
_STALE_SESSION = frozenset({"ExpiredToken", "InvalidToken", "AuthMissing"})
#: XRPC errors that are the account's, whatever the status: a person must act
_ACCOUNT_ERRORS = frozenset(
    {"AccountTakedown", "AccountDeactivated", "AccountSuspended", "AuthFactorTokenRequired"}
)


#: what a call may fail with, each classified by `classify`
_FAILURES = (
    TimeoutError,
    AnswerTooLarge,
    AtProtocolError,
    pydantic.ValidationError,
    httpx.HTTPError,
)


def _said(exc: at_errors.RequestErrorBase) -> tuple[str, str]:
    """The XRPC error name and message of a failed call ("", "" when it has none)."""
    content = exc.response.content if exc.response is not None else None
    if isinstance(content, models.common.XrpcError):
        return str(content.error or ""), str(content.message or "")
    return "", ""


def _retry_after(exc: at_errors.RateLimitExceededError, now: datetime) -> float | None:
    """Seconds until the rate limit lifts: `retry-after`, else `ratelimit-reset` (epoch)."""
    said: float | None = exc.retry_after
    if said is not None:
        return said
    reset = exc.reset_at
    return max(0.0, (reset - now).total_seconds()) if reset is not None else None


def classify(exc: Exception, *, step: str, is_post: bool, now: datetime) -> Exception:
    """The publishing error for a failed Bluesky call (`exc` itself when it is none of ours).

    No answer (the deadline, a cut connection, an answer over the cap, an odd one) may mean the
    post went through when the call was the post. 429 and 5xx are worth a later try; 401/403,
    a taken-down or deactivated account, and any refused login pause the account; any other
    refusal is of this post."""
    if isinstance(exc, TimeoutError):
        return TransientPublishError(
            f"Bluesky {step}: no whole answer within the deadline", maybe_posted=is_post
        )
    if isinstance(exc, AnswerTooLarge):
        return TransientPublishError(f"Bluesky {step}: {exc}", maybe_posted=is_post)
    if isinstance(exc, httpx.HTTPError):
        # what the SDK passes on unwrapped: a connection cut mid-answer (RemoteProtocolError)
        never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
        return TransientPublishError(
            f"Bluesky {step}: {type(exc).__name__}", maybe_posted=is_post and not never_sent
        )
    if isinstance(exc, at_errors.RequestErrorBase):
        response = exc.response
        if response is None:  # no answer at all: only a connection never made proves no post
            cause = exc.__cause__
            never_sent = isinstance(cause, httpx.ConnectError | httpx.ConnectTimeout)
            name = type(cause or exc).__name__
            return TransientPublishError(
                f"Bluesky {step}: {name}", maybe_posted=is_post and not never_sent
            )
        status = response.status_code
        error, message = _said(exc)
        safe = scrub(message or error or f"HTTP {status}")
        text = f"Bluesky {step}: HTTP {status} {error}: {safe}"
        if isinstance(exc, at_errors.RateLimitExceededError):  # 429
            return TransientPublishError(text, retry_after=_retry_after(exc, now))
        if status >= 500:
            return TransientPublishError(text, maybe_posted=is_post)
        if step == "login" or status in (401, 403) or error in _ACCOUNT_ERRORS:
            what = "the login" if step == "login" else "the account"
            return AccountAttentionError(text, reason=f"Bluesky refused {what}: {safe}")
        if status == 409:  # a repo write raced another: nothing was written
            return TransientPublishError(text)
        return ContentRejectedError(text, platform_message=safe)
    if isinstance(exc, AtProtocolError | pydantic.ValidationError):
        # an answer of another shape than the lexicon's
        return TransientPublishError(
            f"Bluesky {step}: an answer of another shape ({type(exc).__name__})",
            maybe_posted=is_post,
        )
    return exc


def _stale(exc: Exception) -> bool:
    """Whether the service no longer takes this session (its tokens expired or revoked)."""
    return isinstance(exc, at_errors.RequestErrorBase) and _said(exc)[0] in _STALE_SESSION


def post_url(uri: str) -> str:
    """The web address of a post, from its at:// URI."""
    at = AtUri.from_str(uri)
    return f"https://bsky.app/profile/{at.host}/post/{at.rkey}"


def same_text(caption: str, text: str) -> bool:
    """Whether a post's text is this caption (Bluesky keeps the text as it was sent)."""
    return (
        unicodedata.normalize("NFC", caption).strip() == unicodedata.normalize("NFC", text).strip()
    )


def facets_of(text: str) -> list[Any]:
    """The links and hashtags of `text` as facets (UTF-8 byte ranges), so they are clickable;
    found as Bluesky's own apps find them (atproto's port of @atproto/api's detectFacets)."""
    return list(facet_detection.detect_facets(text))


@dataclass
class _Account:
    """One account's logged-in client, on the event loop it was made on."""

    client: AsyncClient
    did: str
    loop: asyncio.AbstractEventLoop


def _image_bytes(media: OutgoingMedia) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes (under Bluesky's blob limit, so small) and its size in pixels
    (blocking: call it in a thread)."""
    try:
        length = media.path.stat().st_size
        if length > MAX_BLOB_BYTES:  # the fitter keeps images under it: never read a larger one
            raise ContentRejectedError(
                f"Bluesky: {media.path.name} is {length} bytes",
                platform_message=f"an image is over Bluesky's {MAX_BLOB_BYTES} bytes",
            )
        data = media.path.read_bytes()
        with Image.open(media.path) as image:
            size = image.size
    except (OSError, ValueError):
        raise ContentRejectedError(
            f"Bluesky: cannot read {media.path.name}", platform_message="a media file is missing"
        ) from None
    return data, size


def _video_bytes(media: OutgoingMedia) -> bytes:
    """The video's bytes, never more than Bluesky takes (blocking: call it in a thread)."""
    try:
        length = media.path.stat().st_size
        if length > MAX_VIDEO_BYTES:  # the fitter keeps videos under it: never read a larger one
            raise ContentRejectedError(
                f"Bluesky: {media.path.name} is {length} bytes",
                platform_message=f"the video is over Bluesky's {MAX_VIDEO_BYTES // 1_000_000} MB",
            )
        return media.path.read_bytes()
    except OSError:
        raise ContentRejectedError(
            f"Bluesky: cannot read {media.path.name}", platform_message="a media file is missing"
        ) from None


def check_media(media: Sequence[OutgoingMedia]) -> None:
    """Bluesky posts here take up to 4 images, or one MP4 video alone: refuse anything else
    before logging in."""
    videos = [item for item in media if item.kind is MediaKind.VIDEO]
    if videos and (len(media) > 1 or videos[0].mime != VIDEO_MIME):
        raise ContentRejectedError(
            f"Bluesky: {len(videos)} videos among {len(media)} files ({videos[0].mime})",
            platform_message="Bluesky takes one MP4 video alone in a post",
        )
    if len(media) > MAX_IMAGES:
        raise ContentRejectedError(
            f"Bluesky: {len(media)} images",
            platform_message=f"Bluesky takes at most {MAX_IMAGES} images",
        )


class BlueskyPublisher:
    """The Publisher for Bluesky; one per process, one logged-in client per account.

    `service_url` (BLUESKY_SERVICE_URL) is where every call goes; `timeout`
    (BLUESKY_TIMEOUT_SECONDS) is the deadline of each call; `clock` reads rate-limit resets."""

    platform = Platform.BLUESKY

    def __init__(
        self,
        credentials: Callable[[str], BlueskyCredentials],
        *,
        service_url: str = "https://bsky.social",
        timeout: float = 60.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._credentials = credentials
        self._service_url = service_url.rstrip("/")
        self._timeout = timeout
        self._max_answer_bytes = max_answer_bytes
        self._clock = clock or utcnow
        self._accounts: dict[str, _Account] = {}
        self._locks: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = {}

    # ------------------------------------------------------------------ session
    def _new_client(self) -> AsyncClient:
        identity, cap = capped_hooks(self._max_answer_bytes)
        request = AsyncRequest(
            timeout=httpx.Timeout(self._timeout, connect=min(10.0, self._timeout)),
            event_hooks={"request": [identity], "response": [cap]},
        )
        return AsyncClient(base_url=self._service_url, request=request)

    async def _account(self, account: str) -> _Account:
        """The account's logged-in client: kept from an earlier post, else a new login."""
        loop = asyncio.get_running_loop()
        held = self._locks.get(account)
        if held is None or held[0] is not loop:  # one login at a time, per account and loop
            held = self._locks[account] = (loop, asyncio.Lock())
        async with held[1]:
            kept = self._accounts.get(account)
            if kept is not None and kept.loop is loop:
                return kept
            creds = self._credentials(account)
            client = self._new_client()
            try:
                async with asyncio.timeout(self._timeout):
                    await client.login(
                        creds.handle,
                        creds.app_password.get_secret_value(),
                        fetch_bsky_profile=False,
                    )
                session = Session.decode(client.export_session_string())
            except _FAILURES as exc:
                await client.request.close()
                raise classify(exc, step="login", is_post=False, now=self._clock()) from None
            except BaseException:
                await client.request.close()
                raise
            log.info("bluesky account %s is logged in", account)
            self._accounts[account] = _Account(client, session.did, loop)
            return self._accounts[account]

    async def _forget(self, account: str) -> None:
        kept = self._accounts.pop(account, None)
        if kept is not None and kept.loop is asyncio.get_running_loop():
            await kept.client.request.close()

    async def aclose(self) -> None:
        """Close every kept client (their connections); the next post logs in again."""
        for account in list(self._accounts):
            await self._forget(account)

    async def _call(
        self,
        account: str,
        step: str,
        action: Callable[[_Account], Awaitable[T]],
        *,
        is_post: bool = False,
    ) -> T:
        """One call within the deadline, classified; a session the service no longer takes is
        replaced by one new login and the call made again (it was refused, so never made)."""
        for fresh in (False, True):
            kept = await self._account(account)
            try:
                async with asyncio.timeout(self._timeout):
                    return await action(kept)
            except _FAILURES as exc:
                if not fresh and _stale(exc):
                    log.info("bluesky account %s: session refused; logging in again", account)
                    await self._forget(account)
                    continue
                raise classify(exc, step=step, is_post=is_post, now=self._clock()) from None
        raise AssertionError("unreachable: the second try returns or raises")

    # ------------------------------------------------------------------ the port
    async def _upload(self, account: str, step: str, data: bytes, mime: str) -> Any:
        """com.atproto.repo.uploadBlob: the blob reference of `data`."""

        async def upload(kept: _Account) -> Any:
            # by hand: the SDK's upload_blob hands the bytes to httpx as `data=`, which httpx
            # deprecates for raw bytes
            response = await kept.client.invoke_procedure(
                "com.atproto.repo.uploadBlob",
                data=None,
                content=data,
                headers={"Content-Type": mime},
                output_encoding="application/json",
            )
            return get_response_model(response, models.ComAtprotoRepoUploadBlob.Response)

        return (await self._call(account, step, upload)).blob

    async def _video_embed(self, account: str, item: OutgoingMedia) -> Any:
        """The app.bsky.embed.video of one fitted MP4 (as the SDK's `send_video` makes it): its
        blob, alt text and aspect ratio; a video Bluesky would refuse is refused here first."""
        data = await asyncio.to_thread(_video_bytes, item)
        try:
            info = await probe_video(item.path)
        except MediaError as exc:
            raise ContentRejectedError(
                f"Bluesky: {exc}", platform_message="the video cannot be read"
            ) from None
        if info.duration > MAX_VIDEO_SECONDS:
            raise ContentRejectedError(
                f"Bluesky: {item.path.name} lasts {info.duration:.0f} s",
                platform_message=f"Bluesky takes videos of at most {MAX_VIDEO_SECONDS:.0f} s",
            )
        blob = await self._upload(account, "video upload", data, VIDEO_MIME)
        return models.AppBskyEmbedVideo.Main(
            video=blob,
            alt=item.alt_text[:ALT_TEXT_LIMIT],
            aspect_ratio=models.AppBskyEmbedDefs.AspectRatio(width=info.width, height=info.height),
        )

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        embed: Any = None
        if media and media[0].kind is MediaKind.VIDEO:
            embed = await self._video_embed(account, media[0])
        images = []
        for item in media if embed is None else ():
            data, (width, height) = await asyncio.to_thread(_image_bytes, item)
            blob = await self._upload(account, "image upload", data, item.mime)
            images.append(
                models.AppBskyEmbedImages.Image(
                    alt=item.alt_text[:ALT_TEXT_LIMIT],
                    image=blob,
                    aspect_ratio=models.AppBskyEmbedDefs.AspectRatio(width=width, height=height),
                )
            )
        if images:
            embed = models.AppBskyEmbedImages.Main(images=images)
        facets = facets_of(caption)

        async def send(kept: _Account) -> Any:
            return await kept.client.send_post(
                caption, profile_identify=kept.did, embed=embed, facets=facets or None
            )

        answer = await self._call(account, "post", send, is_post=True)
        uri = str(getattr(answer, "uri", "") or "")
        if not uri.startswith("at://"):
            # said yes without the record's address: most likely online, so it is looked for
            raise TransientPublishError("Bluesky post: an answer without a URI", maybe_posted=True)
        log.info("posted to bluesky account %s: %s", account, uri)
        return RemotePost(uri, post_url(uri))

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        """The post's counts from app.bsky.feed.getPosts (reposts include quotes)."""

        async def views(kept: _Account) -> Any:
            return await kept.client.app.bsky.feed.get_posts(
                models.AppBskyFeedGetPosts.Params(uris=[remote_id])
            )

        answer = await self._call(account, "metrics", views)
        for post in getattr(answer, "posts", None) or []:
            if str(post.uri) == remote_id:
                reposts, quotes = post.repost_count, post.quote_count
                return PostMetrics(
                    likes=post.like_count,
                    reposts=None
                    if reposts is None and quotes is None
                    else (reposts or 0) + (quotes or 0),
                    replies=post.reply_count,
                )
        raise ContentRejectedError(
            "Bluesky metrics: the post is gone (not in the answer)",
            platform_message="the post is gone or hidden",
        )

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        async def feed(kept: _Account) -> Any:
            return await kept.client.app.bsky.feed.get_author_feed(
                models.AppBskyFeedGetAuthorFeed.Params(
                    actor=kept.did, filter="posts_no_replies", limit=FEED_PAGE
                )
            )

        answer = await self._call(account, "feed", feed)
        for item in getattr(answer, "feed", None) or []:
            if getattr(item, "reason", None) is not None:  # a repost of someone else's
                continue
            post = item.post
            record = post.record
            text = getattr(record, "text", None)
            made = getattr(record, "created_at", None)
            if isinstance(record, dict):
                text, made = record.get("text"), record.get("createdAt")
            if not isinstance(text, str) or not same_text(caption, text):
                continue
            try:
                when = datetime.fromisoformat(str(made).replace("Z", "+00:00"))
            except ValueError:
                continue
            if when.tzinfo is not None and when >= since - CLOCK_SLACK:
                return RemotePost(str(post.uri), post_url(str(post.uri)))
        return None
