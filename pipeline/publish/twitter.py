"""X: media through the v2 upload endpoints (our own small helper), the post through tweepy.

Both sign with the same OAuth 1.0a user credentials (requests_oauthlib's OAuth1, which tweepy
uses too) and send through one `BoundedSession` per post or lookup: every call has a deadline
(`X_TIMEOUT_SECONDS`) and a capped answer, and every call goes to `X_API_URL` (tweepy's own
session, which names api.twitter.com and has no timeout, is replaced). Everything blocking runs
in a worker thread. HTTP failures become the kinds of `pipeline.publish.errors`, by X's status,
error code and problem type. Imports domain modules, requests, tweepy and twitter_text; never
the store.

Endpoints (https://docs.x.com/x-api/media): POST /2/media/upload/initialize (JSON),
POST /2/media/upload/{id}/append (multipart: segment_index, media), POST .../{id}/finalize,
GET /2/media/upload?command=STATUS&media_id=, POST /2/media/metadata (alt text); POST /2/tweets;
GET /2/users/me and GET /2/users/:id/tweets (the lookup after a lost answer); GET /2/tweets/:id
with tweet.fields=public_metrics (what a post achieved, `read_metrics`).
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
import tweepy
import twitter_text
from requests_oauthlib import OAuth1
from urllib3.exceptions import NewConnectionError

from pipeline.models import MediaKind, Platform
from pipeline.ports import OutgoingMedia, PostMetrics, RemotePost
from pipeline.publish.credentials import TwitterCredentials
from pipeline.publish.errors import (
    AccessLevelError,
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
    scrub,
)
from pipeline.publish.http import BoundedSession, Limits

log = logging.getLogger(__name__)

MAX_IMAGES = 4
ALT_TEXT_LIMIT = 1000
#: X's roots as tweepy and X's docs name them; `X_API_URL` takes the place of every one
X_ROOTS = ("https://api.x.com", "https://api.twitter.com", "https://upload.twitter.com")
#: X's answers are small JSON (a timeline page of 20 posts is some 20 KB)
MAX_ANSWER_BYTES = 1024 * 1024

# X's error codes (`errors[].code`, https://docs.x.com/x-api/fundamentals/response-codes-and-errors)
#: could not authenticate, invalid or expired token, timestamp out of bounds, bad auth data
_LOGIN_CODES = frozenset({32, 89, 135, 215})
#: "You currently have access to a subset of X API V2 endpoints ...": the app's access level
_ACCESS_CODES = frozenset({453})
#: the app may read but not write (its permission is not "Read and write")
_APP_PERMISSION_CODES = frozenset({261})
#: the account is suspended or locked
_ACCOUNT_CODES = frozenset({64, 326})


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


@dataclass(frozen=True)
class _Refusal:
    """What an X error answer says: its human text, error codes and v2 problem fields."""

    message: str
    codes: frozenset[int]
    problem: str  # the last part of the problem `type` URI, e.g. "client-forbidden"
    reason: str  # e.g. "client-not-enrolled"
    required: str | None  # `required_enrollment`, e.g. "Basic"

    @classmethod
    def of(cls, response: requests.Response) -> _Refusal:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return cls(f"HTTP {response.status_code}", frozenset(), "", "", None)
        parts = [str(body[k]) for k in ("detail", "title") if body.get(k)]
        codes: set[int] = set()
        kinds = [str(body.get("type") or "")]
        for error in body.get("errors") or []:
            if not isinstance(error, dict):
                continue
            if error.get("message"):
                parts.append(str(error["message"]))
            if isinstance(error.get("code"), int):
                codes.add(error["code"])
            kinds.append(str(error.get("type") or ""))
        problem = next((k.rstrip("/").rsplit("/", 1)[-1] for k in kinds if k), "")
        required = body.get("required_enrollment")
        return cls(
            "; ".join(dict.fromkeys(parts)) or f"HTTP {response.status_code}",
            frozenset(codes),
            problem,
            str(body.get("reason") or ""),
            str(required) if required else None,
        )


def classify_response(response: requests.Response, *, step: str, is_post: bool) -> Exception:
    """The publishing error for a failed X response, by its status, codes and problem type.

    401 and the token codes are a refused login (the account is paused). A 403 is read for
    what it means: the app's access level (453, `client-forbidden`) pauses nothing; the app's
    write permission and a suspended or locked account pause the account; anything else is
    a refusal of this post."""
    status = response.status_code
    said = _Refusal.of(response)
    message = scrub(said.message)
    text = f"X {step}: HTTP {status}: {message}"
    if status == 429:
        return TransientPublishError(text, retry_after=_retry_after(response.headers))
    if status >= 500:
        return TransientPublishError(text, maybe_posted=is_post)
    if status == 401:
        return AccountAttentionError(text, reason="X refused the credentials (401)")
    if said.codes & _LOGIN_CODES:
        return AccountAttentionError(text, reason=f"X refused the credentials: {message}")
    if (
        said.codes & _ACCESS_CODES
        or said.problem == "client-forbidden"
        or (said.reason == "client-not-enrolled")
    ):
        return AccessLevelError(text, call=_CALLS.get(step, step), needed=said.required)
    if said.codes & _APP_PERMISSION_CODES or said.problem == "oauth1-permissions":
        return AccountAttentionError(
            text,
            reason="the X app may not post: give it Read and write permission, then generate"
            " its access token again",
        )
    if said.codes & _ACCOUNT_CODES or (
        status == 403 and re.search(r"(?i)\b(suspended|locked)\b", message)
    ):
        return AccountAttentionError(text, reason=f"X refused the account: {message}")
    return ContentRejectedError(text, platform_message=message)


#: how a refused step is named to people
_CALLS = {
    "post": "posting",
    "timeline": "reading the account's posts (GET /2/users/:id/tweets)",
    "me": "looking up the account (GET /2/users/me)",
}


def _classify_tweepy(exc: tweepy.TweepyException, *, step: str, is_post: bool) -> Exception:
    if isinstance(exc, tweepy.HTTPException):
        return classify_response(exc.response, step=step, is_post=is_post)
    return TransientPublishError(f"X {step}: {type(exc).__name__}", maybe_posted=is_post)


def _transport_error(exc: requests.RequestException, *, step: str, is_post: bool) -> Exception:
    """A call that got no (whole) answer: timed out, cut off, too long, or never connected.
    Only a connection that was never made proves the post was not sent."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    never_sent = isinstance(exc, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    return TransientPublishError(
        f"X {step}: {type(exc).__name__}", maybe_posted=is_post and not never_sent
    )


_LINK = "\x00"


def _shown(text: str) -> list[str]:
    """Text in words, every link (a bare domain, http or https, t.co) one mark: X replaces
    each link with a t.co link and adds one for attached media."""
    text = unicodedata.normalize("NFC", text)
    pieces = []
    at = 0
    for found in twitter_text.extract_urls_with_indices(text):
        start, end = found["indices"]
        pieces.append(text[at:start])
        pieces.append(f" {_LINK} ")
        at = end
    pieces.append(text[at:])
    return "".join(pieces).split()


def same_post(caption: str, tweet_text: str) -> bool:
    """Whether a post on the timeline is this caption as X shows it (its links shortened,
    &<> escaped, perhaps one more link at the end for the media)."""
    wanted, shown = _shown(caption), _shown(html.unescape(tweet_text))
    return shown == wanted or shown == [*wanted, _LINK]


class XMediaUploader:
    """The v2 media upload, chunked, over OAuth 1.0a; synchronous (call it from a thread).
    `session` bounds each call (a `BoundedSession`) and sends it to X_API_URL."""

    def __init__(
        self,
        session: requests.Session,
        auth: OAuth1,
        *,
        api_url: str = "https://api.x.com",
        chunk_bytes: int = 4 * 1024 * 1024,
        processing_timeout: float = 600.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session
        self.auth = auth
        self.api_url = api_url.rstrip("/")
        self.chunk_bytes = chunk_bytes
        self.processing_timeout = processing_timeout
        self.sleep = sleep

    def _call(self, method: str, path: str, *, step: str, **kwargs: Any) -> dict[str, Any]:
        try:
            response = self.session.request(method, self.api_url + path, auth=self.auth, **kwargs)
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
    """The Publisher for X; one per process, credentials looked up by account name.

    `timeout` is the deadline of each X call (X_TIMEOUT_SECONDS), from connect to the last
    byte of the answer; `api_url` (X_API_URL) is where every X call goes."""

    platform = Platform.TWITTER

    def __init__(
        self,
        credentials: Callable[[str], TwitterCredentials],
        *,
        api_url: str = "https://api.x.com",
        chunk_bytes: int = 4 * 1024 * 1024,
        timeout: float = 60.0,
        processing_timeout: float = 600.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self._api_url = api_url.rstrip("/")
        self._limits = Limits(deadline=timeout, max_answer_bytes=max_answer_bytes)
        self._uploader_options: dict[str, Any] = {
            "api_url": self._api_url,
            "chunk_bytes": chunk_bytes,
            "processing_timeout": processing_timeout,
            "sleep": sleep,
        }

    def _session(self) -> BoundedSession:
        """One bounded session for one post or lookup, every X root moved to `api_url`."""
        return BoundedSession(self._limits, moves=dict.fromkeys(X_ROOTS, self._api_url))

    def _parts(self, account: str, session: requests.Session) -> tuple[OAuth1, tweepy.Client]:
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
        # tweepy sends through `client.session` (BaseClient.request) with no timeout: ours
        # bounds each call and moves tweepy's api.twitter.com to X_API_URL
        client.session.close()
        client.session = session
        return auth, client

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await asyncio.to_thread(self._post_sync, account, list(media), caption)

    def _post_sync(self, account: str, media: list[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        with self._session() as session:
            auth, client = self._parts(account, session)
            uploader = XMediaUploader(session, auth, **self._uploader_options)
            media_ids = [uploader.upload(item) for item in media]
            try:
                answer = client.create_tweet(
                    text=caption, media_ids=media_ids or None, user_auth=True
                )
            except tweepy.TweepyException as exc:
                raise _classify_tweepy(exc, step="post", is_post=True) from None
            except requests.RequestException as exc:  # not JSON included: it may have posted
                raise _transport_error(exc, step="post", is_post=True) from None
        data = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(data, dict) or not data.get("id"):
            # X said yes without the id: the post is most likely online, so it is looked for
            raise TransientPublishError("X post: an answer without an id", maybe_posted=True)
        tweet_id = str(data["id"])
        return RemotePost(tweet_id, f"https://x.com/i/web/status/{tweet_id}")

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        with self._session() as session:
            _, client = self._parts(account, session)
            step = "me"
            try:
                me = client.get_me(user_auth=True)
                step = "timeline"
                answer = client.get_users_tweets(
                    me["data"]["id"],
                    user_auth=True,
                    max_results=20,
                    start_time=since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                    tweet_fields=["created_at"],
                )
            except tweepy.TweepyException as exc:
                raise _classify_tweepy(exc, step=step, is_post=False) from None
            except requests.RequestException as exc:
                raise _transport_error(exc, step=step, is_post=False) from None
            except (KeyError, TypeError):
                raise TransientPublishError(f"X {step}: an answer of another shape") from None
        tweets = answer.get("data") if isinstance(answer, dict) else None
        for tweet in tweets if isinstance(tweets, list) else []:
            if isinstance(tweet, dict) and same_post(caption, str(tweet.get("text", ""))):
                tweet_id = str(tweet["id"])
                return RemotePost(tweet_id, f"https://x.com/i/web/status/{tweet_id}")
        return None

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        """The post's public metrics (likes, reposts and quotes, replies, impressions)."""
        return await asyncio.to_thread(self._metrics_sync, account, remote_id)

    def _metrics_sync(self, account: str, remote_id: str) -> PostMetrics:
        with self._session() as session:
            _, client = self._parts(account, session)
            try:
                answer = client.get_tweet(
                    remote_id, tweet_fields=["public_metrics"], user_auth=True
                )
            except tweepy.TweepyException as exc:
                raise _classify_tweepy(exc, step="metrics", is_post=False) from None
            except requests.RequestException as exc:
                raise _transport_error(exc, step="metrics", is_post=False) from None
        return metrics_of_tweet(answer)


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def metrics_of_tweet(answer: object) -> PostMetrics:
    """PostMetrics from X's answer to GET /2/tweets/:id; a deleted post (X answers 200 with a
    `Not Found Error` in `errors`) is refused for good, another shape is worth a retry."""
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict):
        errors = answer.get("errors") if isinstance(answer, dict) else None
        if isinstance(errors, list) and errors:
            said = errors[0].get("title") if isinstance(errors[0], dict) else None
            raise ContentRejectedError(
                "X metrics: the post is gone or hidden",
                platform_message=f"{said or 'an error'}: the post is gone or hidden",
            )
        raise TransientPublishError("X metrics: an answer of another shape")
    public = data.get("public_metrics")
    counts = public if isinstance(public, dict) else {}
    retweets, quotes = _count(counts.get("retweet_count")), _count(counts.get("quote_count"))
    return PostMetrics(
        likes=_count(counts.get("like_count")),
        reposts=None if retweets is None and quotes is None else (retweets or 0) + (quotes or 0),
        replies=_count(counts.get("reply_count")),
        views=_count(counts.get("impression_count")),
    )


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
