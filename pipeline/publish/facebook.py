"""A Facebook Page: a photo, a multi-photo post or a video, through the Graph API.

One photo is `POST /{page-id}/photos` (the file as `source`, the caption as `message`); several
are each uploaded unpublished (`published=false`), then one `POST /{page-id}/feed` attaches
them (`attached_media`); a video is `POST /{page-id}/videos` (`source`, `description`). The
lookup after a lost answer reads the page's newest posts (`GET /{page-id}/posts`); metrics read
the post's reactions, comments and shares. Every call goes through `pipeline.publish.graph`
(deadline, cap, classified errors) in a worker thread. Imports domain modules and the
publishing helpers; never the store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from pipeline.models import MediaKind, Platform
from pipeline.ports import OutgoingMedia, PostMetrics, RemotePost
from pipeline.publish.credentials import FacebookCredentials
from pipeline.publish.errors import ContentRejectedError, TransientPublishError
from pipeline.publish.graph import (
    CLOCK_SLACK,
    GRAPH_URL,
    GRAPH_VERSION,
    MAX_ANSWER_BYTES,
    GraphApi,
    count_of,
    page_of,
    same_message,
)
from pipeline.publish.http import Limits

log = logging.getLogger(__name__)

#: photos in one post here (Facebook takes more; a run's album is at most 10)
MAX_PHOTOS = 10
#: how many of the page's newest posts are looked through after a lost answer
POSTS_PAGE = 25
#: a post's own time may be a little before ours (clocks differ)


def post_url(post_id: str) -> str:
    return f"https://www.facebook.com/{post_id}"


def check_media(media: Sequence[OutgoingMedia]) -> None:
    """A Page post here is text, up to 10 photos, or one video alone: refuse anything else."""
    videos = [m for m in media if m.kind is MediaKind.VIDEO]
    if videos and len(media) > 1:
        raise ContentRejectedError(
            "Facebook: a video with other media",
            platform_message="a video is posted alone on Facebook",
        )
    if len(media) > MAX_PHOTOS:
        raise ContentRejectedError(
            f"Facebook: {len(media)} photos",
            platform_message=f"a Facebook post here takes at most {MAX_PHOTOS} photos",
        )
    for item in media:
        if not item.path.is_file():
            raise ContentRejectedError(
                f"Facebook: missing {item.path.name}", platform_message="a media file is missing"
            )


class FacebookPublisher:
    """The Publisher (and MetricsReader) for Facebook Pages; one per process.

    `api_url` (GRAPH_API_URL) is where every call goes; `timeout` (GRAPH_TIMEOUT_SECONDS) is
    the deadline of each call, `upload_timeout` (GRAPH_UPLOAD_TIMEOUT_SECONDS) of each upload of
    a file."""

    platform = Platform.FACEBOOK

    def __init__(
        self,
        credentials: Callable[[str], FacebookCredentials],
        *,
        api_url: str = GRAPH_URL,
        version: str = GRAPH_VERSION,
        timeout: float = 60.0,
        upload_timeout: float = 600.0,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._credentials = credentials
        self._api_url = api_url
        self._version = version
        self._limits = Limits(deadline=timeout, max_answer_bytes=max_answer_bytes)
        self._upload = Limits(
            deadline=max(timeout, upload_timeout), max_answer_bytes=max_answer_bytes
        )
        self._sleep = sleep

    def _api(self, creds: FacebookCredentials) -> GraphApi:
        return GraphApi(
            "Facebook",
            creds.page_access_token,
            root=self._api_url,
            version=self._version,
            limits=self._limits,
            sleep=self._sleep,
        )

    # ------------------------------------------------------------------ the port
    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await asyncio.to_thread(self._post_sync, account, list(media), caption)

    def _post_sync(self, account: str, media: list[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        creds = self._credentials(account)
        page = creds.page_id
        with self._api(creds) as api:
            if media and media[0].kind is MediaKind.VIDEO:
                video_id = self._upload_video(api, page, media[0], caption)
                log.info("posted a video to facebook page %s: %s", account, video_id)
                return RemotePost(video_id, f"https://www.facebook.com/{page}/videos/{video_id}")
            if len(media) == 1:
                answer = self._upload_file(
                    api, f"{page}/photos", media[0], {"message": caption}, step="photo"
                )
                post_id = str(answer.get("post_id") or "")
            else:
                attached = []
                for item in media:
                    photo = self._upload_file(
                        api,
                        f"{page}/photos",
                        item,
                        {"published": "false"},
                        step="photo upload",
                        is_post=False,
                    )
                    if not photo.get("id"):
                        raise TransientPublishError("Facebook photo upload: an answer without id")
                    attached.append(str(photo["id"]))
                fields = {"message": caption}
                for index, photo_id in enumerate(attached):
                    fields[f"attached_media[{index}]"] = json.dumps({"media_fbid": photo_id})
                answer = api.call("POST", f"{page}/feed", step="post", is_post=True, data=fields)
                post_id = str(answer.get("id") or "")
        if not post_id:
            # said yes without the post's id: most likely online, so it is looked for
            raise TransientPublishError("Facebook post: an answer without an id", maybe_posted=True)
        log.info("posted to facebook page %s: %s", account, post_id)
        return RemotePost(post_id, post_url(post_id))

    def _upload_video(self, api: GraphApi, page: str, item: OutgoingMedia, caption: str) -> str:
        """Graph's resumable video upload: `upload_phase=start` (the size), `transfer` of each
        chunk the answer asks for (`start_offset`..`end_offset`, read from disk one at a time),
        then `finish` with the description, which posts it. The video's id, from the start."""
        path = f"{page}/videos"
        try:
            size = item.path.stat().st_size
            handle = item.path.open("rb")
        except OSError:
            raise ContentRejectedError(
                f"Facebook: cannot read {item.path.name}",
                platform_message="a media file is missing",
            ) from None
        with handle:
            started = api.call(
                "POST",
                path,
                step="video start",
                data={"upload_phase": "start", "file_size": str(size)},
            )
            video_id = str(started.get("video_id") or "")
            session = str(started.get("upload_session_id") or "")
            if not video_id or not session:
                raise TransientPublishError("Facebook video start: an answer without ids")
            offsets = started
            for _ in range(size // 1024 + 2):  # every chunk moves the offset: never loops on
                start, end = int(offsets.get("start_offset", 0)), int(offsets.get("end_offset", 0))
                if start >= end:
                    break
                handle.seek(start)
                chunk = handle.read(end - start)
                offsets = api.call(
                    "POST",
                    path,
                    step="video transfer",
                    data={
                        "upload_phase": "transfer",
                        "upload_session_id": session,
                        "start_offset": str(start),
                    },
                    files={"video_file_chunk": (item.path.name, chunk, "application/octet-stream")},
                    limits=self._upload,
                )
            finished = api.call(
                "POST",
                path,
                step="video finish",
                is_post=True,
                data={
                    "upload_phase": "finish",
                    "upload_session_id": session,
                    "description": caption,
                },
            )
        if finished.get("success") is not True:
            raise TransientPublishError("Facebook video finish: not confirmed", maybe_posted=True)
        return video_id

    def _upload_file(
        self,
        api: GraphApi,
        path: str,
        item: OutgoingMedia,
        fields: dict[str, str],
        *,
        step: str,
        is_post: bool = True,
    ) -> dict[str, Any]:
        """A multipart upload of the file as `source`, streamed from disk."""
        try:
            handle = item.path.open("rb")
        except OSError:
            raise ContentRejectedError(
                f"Facebook: cannot read {item.path.name}",
                platform_message="a media file is missing",
            ) from None
        with handle:
            return api.call(
                "POST",
                path,
                step=step,
                is_post=is_post,
                data=fields,
                files={"source": (item.path.name, handle, item.mime)},
                limits=self._upload,
            )

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        creds = self._credentials(account)
        after = since - CLOCK_SLACK
        with self._api(creds) as api:
            answer = api.call(
                "GET",
                f"{creds.page_id}/posts",
                step="page posts",
                params={
                    "fields": "id,message,created_time,permalink_url",
                    "since": str(int(after.timestamp())),
                    "limit": str(POSTS_PAGE),
                },
            )
        for post in page_of(answer):
            message, made = post.get("message"), post.get("created_time")
            if not isinstance(message, str) or not same_message(caption, message):
                continue
            try:
                when = datetime.strptime(str(made), "%Y-%m-%dT%H:%M:%S%z")
            except ValueError:
                continue
            if when.astimezone(UTC) >= after and post.get("id"):
                post_id = str(post["id"])
                url = post.get("permalink_url")
                return RemotePost(post_id, str(url) if url else post_url(post_id))
        return None

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        return await asyncio.to_thread(self._metrics_sync, account, remote_id)

    def _metrics_sync(self, account: str, remote_id: str) -> PostMetrics:
        creds = self._credentials(account)
        with self._api(creds) as api:
            answer = api.call(
                "GET",
                remote_id,
                step="post metrics",
                params={
                    "fields": "reactions.summary(total_count).limit(0),"
                    "comments.summary(total_count).limit(0),shares"
                },
            )
        return PostMetrics(
            likes=count_of(answer.get("reactions")),
            replies=count_of(answer.get("comments")),
            reposts=count_of(answer.get("shares")) if "shares" in answer else 0,
        )
