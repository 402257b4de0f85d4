"""X: media through the v2 upload endpoints (our own small helper), the post through tweepy.

Both sign with the same OAuth 1.0a user credentials (requests_oauthlib's OAuth1, which tweepy
uses too). Everything blocking runs in a worker thread. HTTP failures become the three kinds of
`pipeline.publish.errors`. Imports domain modules, requests and tweepy; never the store.

Endpoints (https://docs.x.com/x-api/media): POST /2/media/upload/initialize (JSON),
POST /2/media/upload/{id}/append (multipart: segment_index, media), POST .../{id}/finalize,
GET /2/media/upload?command=STATUS&media_id=, POST /2/media/metadata (alt text).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import tweepy
from requests_oauthlib import OAuth1

from pipeline.models import MediaKind, Platform
from pipeline.ports import OutgoingMedia, RemotePost
from pipeline.publish.credentials import TwitterCredentials
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)

log = logging.getLogger(__name__)

MAX_IMAGES = 4
ALT_TEXT_LIMIT = 1000


def _retry_after(headers: Any) -> float | None:
    """Seconds until X's rate limit resets (x-rate-limit-reset is an epoch time)."""
    reset = headers.get("x-rate-limit-reset") if headers is not None else None
    if reset is None:
        retry = headers.get("retry-after") if headers is not None else None
        return float(retry) if retry and str(retry).isdigit() else None
    try:
        return max(0.0, float(reset) - time.time())
    except ValueError:
        return None


def _message(response: requests.Response) -> str:
    """The human part of an X error body: detail, title or the errors' messages."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if isinstance(body, dict):
        parts = [str(body[k]) for k in ("detail", "title") if body.get(k)]
        for error in body.get("errors") or []:
            if isinstance(error, dict) and error.get("message"):
                parts.append(str(error["message"]))
        if parts:
            return "; ".join(dict.fromkeys(parts))
    return f"HTTP {response.status_code}"


def classify_response(response: requests.Response, *, step: str, is_post: bool) -> Exception:
    """The publishing error for a failed X response."""
    status = response.status_code
    message = scrub(_message(response))
    text = f"X {step}: HTTP {status}: {message}"
    if status == 429:
        return TransientPublishError(text, retry_after=_retry_after(response.headers))
    if status >= 500:
        return TransientPublishError(text, maybe_posted=is_post)
    if status == 401:
        return AccountAttentionError(text, reason="X refused the credentials (401)")
    if status == 403 and re.search(r"(?i)permission|oauth|suspend|locked", message):
        return AccountAttentionError(text, reason=f"X refused the account: {message}")
    return ContentRejectedError(text, platform_message=message)


def _classify_tweepy(exc: tweepy.TweepyException, *, is_post: bool) -> Exception:
    if isinstance(exc, tweepy.HTTPException):
        return classify_response(exc.response, step="post", is_post=is_post)
    return TransientPublishError(f"X: {type(exc).__name__}", maybe_posted=is_post)


def _normal(text: str) -> str:
    """Tweet text as compared: X shortens links and escapes &<>; compare what remains."""
    text = html.unescape(text)
    text = re.sub(r"https?://\S+", "", text)
    return " ".join(text.split())


class XMediaUploader:
    """The v2 media upload, chunked, over OAuth 1.0a; synchronous (call it from a thread)."""

    def __init__(
        self,
        session: requests.Session,
        auth: OAuth1,
        *,
        api_url: str = "https://api.x.com",
        chunk_bytes: int = 4 * 1024 * 1024,
        timeout: float = 60.0,
        processing_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.auth = auth
        self.api_url = api_url.rstrip("/")
        self.chunk_bytes = chunk_bytes
        self.timeout = timeout
        self.processing_timeout = processing_timeout
        self.sleep = sleep

    def _call(self, method: str, path: str, *, step: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(
                method, self.api_url + path, auth=self.auth, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as exc:
            raise TransientPublishError(f"X {step}: {type(exc).__name__}") from None
        if not response.ok:
            raise classify_response(response, step=step, is_post=False)
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError:
            raise TransientPublishError(f"X {step}: answer is not JSON") from None
        return body if isinstance(body, dict) else {}

    def upload(self, media: OutgoingMedia) -> str:
        """Upload one file; its media id once X has processed it."""
        if media.mime == "image/gif":
            category = "tweet_gif"
        elif media.kind is MediaKind.VIDEO:
            category = "tweet_video"
        else:
            category = "tweet_image"
        total = media.path.stat().st_size
        init = self._call(
            "POST",
            "/2/media/upload/initialize",
            step="media initialize",
            json={"media_type": media.mime, "total_bytes": total, "media_category": category},
        )
        media_id = str(init["data"]["id"])
        with media.path.open("rb") as file:
            index = 0
            while chunk := file.read(self.chunk_bytes):
                self._call(
                    "POST",
                    f"/2/media/upload/{media_id}/append",
                    step="media append",
                    data={"segment_index": str(index)},
                    files={"media": ("blob", chunk, "application/octet-stream")},
                )
                index += 1
        final = self._call("POST", f"/2/media/upload/{media_id}/finalize", step="media finalize")
        self._wait_processed(media_id, (final.get("data") or {}).get("processing_info"))
        if media.alt_text and (media.kind is MediaKind.IMAGE or media.mime == "image/gif"):
            self._call(
                "POST",
                "/2/media/metadata",
                step="media alt text",
                json={
                    "id": media_id,
                    "metadata": {"alt_text": {"text": media.alt_text[:ALT_TEXT_LIMIT]}},
                },
            )
        log.info("uploaded %s to X as media %s", media.path.name, media_id)
        return media_id

    def _wait_processed(self, media_id: str, info: dict[str, Any] | None) -> None:
        """Poll STATUS as X asks (check_after_secs) until the media is usable."""
        waited = 0.0
        while info:
            state = info.get("state")
            if state == "succeeded":
                return
            if state == "failed":
                error = info.get("error") or {}
                message = error.get("message") or error.get("name") or "processing failed"
                raise ContentRejectedError(
                    f"X refused media {media_id}: {scrub(message)}", platform_message=message
                )
            delay = float(info.get("check_after_secs") or 1)
            if waited + delay > self.processing_timeout:
                raise TransientPublishError(f"X still processing media {media_id}")
            self.sleep(delay)
            waited += delay
            status = self._call(
                "GET",
                "/2/media/upload",
                step="media status",
                params={"command": "STATUS", "media_id": media_id},
            )
            info = (status.get("data") or {}).get("processing_info")


class TwitterPublisher:
    """The Publisher for X; one per process, credentials looked up by account name."""

    platform = Platform.TWITTER

    def __init__(
        self,
        credentials: Callable[[str], TwitterCredentials],
        *,
        api_url: str = "https://api.x.com",
        chunk_bytes: int = 4 * 1024 * 1024,
        timeout: float = 60.0,
        processing_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self._uploader_options: dict[str, Any] = {
            "api_url": api_url,
            "chunk_bytes": chunk_bytes,
            "timeout": timeout,
            "processing_timeout": processing_timeout,
            "sleep": sleep,
        }
        self._timeout = timeout

    def _parts(self, account: str) -> tuple[OAuth1, tweepy.Client]:
        creds = self._credentials(account)
        keys = (
            creds.api_key.get_secret_value(),
            creds.api_secret.get_secret_value(),
            creds.access_token.get_secret_value(),
            creds.access_secret.get_secret_value(),
        )
        auth = OAuth1(keys[0], client_secret=keys[1], resource_owner_key=keys[2],
                      resource_owner_secret=keys[3], decoding=None)  # fmt: skip
        client = tweepy.Client(
            consumer_key=keys[0],
            consumer_secret=keys[1],
            access_token=keys[2],
            access_token_secret=keys[3],
            return_type=dict,
            wait_on_rate_limit=False,
        )
        return auth, client

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await asyncio.to_thread(self._post_sync, account, list(media), caption)

    def _post_sync(self, account: str, media: list[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        auth, client = self._parts(account)
        with requests.Session() as session:
            uploader = XMediaUploader(session, auth, **self._uploader_options)
            media_ids = [uploader.upload(item) for item in media]
        try:
            answer = client.create_tweet(text=caption, media_ids=media_ids or None, user_auth=True)
        except tweepy.TweepyException as exc:
            raise _classify_tweepy(exc, is_post=True) from None
        except requests.ConnectionError as exc:
            # refused before sending is safe; a broken or timed-out exchange may have posted
            safe = isinstance(exc, requests.ConnectTimeout)
            raise TransientPublishError(
                f"X post: {type(exc).__name__}", maybe_posted=not safe
            ) from None
        except requests.RequestException as exc:
            raise TransientPublishError(
                f"X post: {type(exc).__name__}", maybe_posted=True
            ) from None
        tweet_id = str(answer["data"]["id"])
        return RemotePost(tweet_id, f"https://x.com/i/web/status/{tweet_id}")

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        _, client = self._parts(account)
        try:
            me = client.get_me(user_auth=True)
            answer = client.get_users_tweets(
                me["data"]["id"],
                user_auth=True,
                max_results=20,
                start_time=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                tweet_fields=["created_at"],
            )
        except tweepy.TweepyException as exc:
            raise _classify_tweepy(exc, is_post=False) from None
        except requests.RequestException as exc:
            raise TransientPublishError(f"X timeline: {type(exc).__name__}") from None
        wanted = _normal(caption)
        for tweet in answer.get("data") or []:
            if _normal(str(tweet.get("text", ""))) == wanted:
                tweet_id = str(tweet["id"])
                return RemotePost(tweet_id, f"https://x.com/i/web/status/{tweet_id}")
        return None


def check_media(media: Sequence[OutgoingMedia]) -> None:
    """X takes up to 4 images, or 1 video, or 1 GIF: refuse anything else before uploading."""
    videos = [m for m in media if m.kind is MediaKind.VIDEO]
    if videos and len(media) > 1:
        raise ContentRejectedError(
            "X: a video or GIF must be posted alone",
            platform_message="a video or GIF must be posted alone on X",
        )
    if len(media) > MAX_IMAGES:
        raise ContentRejectedError(
            f"X: {len(media)} images", platform_message=f"X takes at most {MAX_IMAGES} images"
        )
    for item in media:
        if not Path(item.path).is_file():
            raise ContentRejectedError(
                f"X: missing {item.path.name}", platform_message="a media file is missing"
            )
