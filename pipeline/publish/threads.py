"""Threads: a text post with no, one or up to ten images, through the Threads API.

Threads fetches images by URL, so each goes to the image host first and is removed after. A
post is a container (`POST /{threads-user-id}/threads`, `media_type` TEXT or IMAGE with
`image_url`; an album is one IMAGE container per image with `is_carousel_item=true` and a
CAROUSEL container of their `children`), polled (`status`) until FINISHED, then `POST
/{threads-user-id}/threads_publish` (`creation_id`). The lookup reads the user's newest posts;
metrics read the post's insights (views, likes, replies, reposts). Every call goes through
`pipeline.publish.graph` (deadline, cap, classified errors) in a worker thread. Imports domain
modules and the publishing helpers; never the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import datetime

from pipeline.errors import ConfigError
from pipeline.models import MediaKind, Platform
from pipeline.ports import OutgoingMedia, PostMetrics, RemotePost
from pipeline.publish.credentials import ThreadsCredentials
from pipeline.publish.errors import ContentRejectedError, TransientPublishError
from pipeline.publish.graph import (
    THREADS_URL,
    THREADS_VERSION,
    HostedMediaPublisher,
    insight_values,
    matching_post,
    publish_container,
)
from pipeline.publish.image_host import HostedFile

log = logging.getLogger(__name__)

MAX_IMAGES = 10
POSTS_PAGE = 25
#: the container status fields as Threads names them
_STATUS_FIELDS = "status,error_message"


def check_media(media: Sequence[OutgoingMedia]) -> None:
    """Threads posts here are text with up to 10 images; videos are not posted yet."""
    if any(m.kind is MediaKind.VIDEO for m in media):
        raise ContentRejectedError(
            "Threads: a video",
            platform_message="videos are not posted to Threads yet; post images",
        )
    if len(media) > MAX_IMAGES:
        raise ContentRejectedError(
            f"Threads: {len(media)} images",
            platform_message=f"Threads takes at most {MAX_IMAGES} images",
        )


class ThreadsPublisher(HostedMediaPublisher[ThreadsCredentials]):
    """The Publisher (and MetricsReader) for Threads; one per process.

    `api_url` (THREADS_API_URL) is where every call goes; `host` gives each image its URL."""

    SERVICE = "Threads"
    API_URL = THREADS_URL
    VERSION = THREADS_VERSION
    platform = Platform.THREADS

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        if media and self._host is None:
            raise ConfigError(
                "Threads posts with images need an image host: set IMAGE_HOST (cloudinary or s3)"
                " and its keys"
            )
        creds = self._credentials(account)
        hosted: list[HostedFile] = []
        try:
            for item in media:
                assert self._host is not None
                hosted.append(await self._host.put(item.path, item.mime))
            urls = [file.url for file in hosted]
            return await asyncio.to_thread(self._post_sync, account, creds, urls, caption)
        finally:
            for file in hosted:  # Threads fetched each when its container was made
                assert self._host is not None
                await self._host.remove(file)

    def _post_sync(
        self, account: str, creds: ThreadsCredentials, urls: list[str], caption: str
    ) -> RemotePost:
        user = creds.user_id
        with self._api(creds) as api:

            def container(fields: dict[str, str], step: str) -> str:
                answer = api.call("POST", f"{user}/threads", step=step, data=fields)
                made = str(answer.get("id") or "")
                if not made:
                    raise TransientPublishError(f"Threads {step}: an answer without an id")
                api.wait_finished(
                    made,
                    timeout=self._processing_timeout,
                    interval=self._poll_interval,
                    step=step,
                    fields=_STATUS_FIELDS,
                )
                return made

            if not urls:
                creation = container({"media_type": "TEXT", "text": caption}, "text")
            elif len(urls) == 1:
                creation = container(
                    {"media_type": "IMAGE", "image_url": urls[0], "text": caption}, "image"
                )
            else:
                children = [
                    container(
                        {"media_type": "IMAGE", "image_url": url, "is_carousel_item": "true"},
                        "album item",
                    )
                    for url in urls
                ]
                creation = container(
                    {"media_type": "CAROUSEL", "children": ",".join(children), "text": caption},
                    "album",
                )
            posted = publish_container(api, f"{user}/threads_publish", creation, "Threads")
            log.info("posted to threads account %s: %s", account, posted.remote_id)
        return posted

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        creds = self._credentials(account)
        with self._api(creds) as api:
            answer = api.call(
                "GET",
                f"{creds.user_id}/threads",
                step="posts",
                params={"fields": "id,text,timestamp,permalink", "limit": str(POSTS_PAGE)},
            )
        return matching_post(answer, "text", caption, since)

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        return await asyncio.to_thread(self._metrics_sync, account, remote_id)

    def _metrics_sync(self, account: str, remote_id: str) -> PostMetrics:
        creds = self._credentials(account)
        with self._api(creds) as api:
            answer = api.call(
                "GET",
                f"{remote_id}/insights",
                step="insights",
                params={"metric": "views,likes,replies,reposts"},
            )
        values = insight_values(answer)
        return PostMetrics(
            likes=values.get("likes"),
            reposts=values.get("reposts"),
            replies=values.get("replies"),
            views=values.get("views"),
        )
