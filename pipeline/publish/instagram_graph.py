"""Instagram through the official Graph API (content publishing), and the per-account choice
between it and instagrapi.

Instagram fetches media by URL, so each file is first put on the image host
(`pipeline.publish.image_host`) and removed again when the post is done or failed. An image is
one container (`POST /{ig-user-id}/media` with `image_url`), an album one container per image
(`is_carousel_item=true`) and a `CAROUSEL` container of their `children`, a reel a `REELS`
container (`video_url`, `cover_url`); each container is polled (`status_code`) until FINISHED
within `processing_timeout`, then `POST /{ig-user-id}/media_publish` (`creation_id`) posts it.
The lookup reads the account's newest media; metrics read like_count, comments_count and the
`views` insight. Every call goes through `pipeline.publish.graph`, in a worker thread. Imports
domain modules and the publishing helpers; never the store.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline.errors import ConfigError
from pipeline.models import MediaKind, Platform
from pipeline.ports import MetricsReader, OutgoingMedia, PostMetrics, Publisher, RemotePost
from pipeline.publish.credentials import InstagramGraphCredentials
from pipeline.publish.errors import ContentRejectedError, TransientPublishError
from pipeline.publish.graph import (
    GRAPH_URL,
    GRAPH_VERSION,
    HostedMediaPublisher,
    count_of,
    insight_values,
    matching_post,
    publish_container,
)
from pipeline.publish.image_host import HostedFile

log = logging.getLogger(__name__)

#: an Instagram carousel takes 2 to 10 items
MAX_ITEMS = 10
#: how many of the account's newest media are looked through after a lost answer
MEDIA_PAGE = 25


def check_media(media: Sequence[OutgoingMedia]) -> None:
    """A post here is one image, an album of 2 to 10 images, or one reel."""
    if not media:
        raise ContentRejectedError(
            "Instagram: no media", platform_message="Instagram posts need an image or a video"
        )
    if any(m.kind is MediaKind.VIDEO for m in media) and len(media) > 1:
        raise ContentRejectedError(
            "Instagram: a reel with other media", platform_message="a reel is posted alone"
        )
    if len(media) > MAX_ITEMS:
        raise ContentRejectedError(
            f"Instagram: {len(media)} images",
            platform_message=f"an Instagram album takes at most {MAX_ITEMS} images",
        )


class InstagramGraphPublisher(HostedMediaPublisher[InstagramGraphCredentials]):
    """The Publisher (and MetricsReader) for Instagram accounts on the Graph API.

    `host` gives each file its public URL (None: IMAGE_HOST is not set, and every post fails
    saying so); `processing_timeout` bounds the wait for a container to be FINISHED."""

    SERVICE = "Instagram"
    API_URL = GRAPH_URL
    VERSION = GRAPH_VERSION
    platform = Platform.INSTAGRAM

    # ------------------------------------------------------------------ the port
    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        check_media(media)
        if self._host is None:
            raise ConfigError(
                "Instagram through the Graph API needs an image host: set IMAGE_HOST"
                " (cloudinary or s3) and its keys"
            )
        creds = self._credentials(account)
        hosted: list[HostedFile] = []
        try:
            urls: list[tuple[OutgoingMedia, str, str | None]] = []
            for item in media:
                file = await self._host.put(item.path, item.mime)
                hosted.append(file)
                cover_url = None
                if item.kind is MediaKind.VIDEO and item.cover is not None:
                    cover = await self._host.put(item.cover, "image/jpeg")
                    hosted.append(cover)
                    cover_url = cover.url
                urls.append((item, file.url, cover_url))
            return await asyncio.to_thread(self._post_sync, account, creds, urls, caption)
        finally:
            for file in hosted:  # Instagram fetched each when its container was made
                await self._host.remove(file)

    def _post_sync(
        self,
        account: str,
        creds: InstagramGraphCredentials,
        urls: list[tuple[OutgoingMedia, str, str | None]],
        caption: str,
    ) -> RemotePost:
        user = creds.ig_user_id
        with self._api(creds) as api:

            def container(fields: dict[str, str], step: str) -> str:
                answer = api.call("POST", f"{user}/media", step=step, data=fields)
                made = str(answer.get("id") or "")
                if not made:
                    raise TransientPublishError(f"Instagram {step}: an answer without an id")
                api.wait_finished(
                    made, timeout=self._processing_timeout, interval=self._poll_interval, step=step
                )
                return made

            first, url, cover_url = urls[0]
            if first.kind is MediaKind.VIDEO:
                fields = {"media_type": "REELS", "video_url": url, "caption": caption}
                fields["share_to_feed"] = "true"
                if cover_url:
                    fields["cover_url"] = cover_url
                creation = container(fields, "reel")
            elif len(urls) == 1:
                fields = {"image_url": url, "caption": caption}
                if first.alt_text:
                    fields["alt_text"] = first.alt_text[:1000]
                creation = container(fields, "image")
            else:
                children = [
                    container({"image_url": item_url, "is_carousel_item": "true"}, "album item")
                    for _, item_url, _ in urls
                ]
                creation = container(
                    {"media_type": "CAROUSEL", "children": ",".join(children), "caption": caption},
                    "album",
                )
            posted = publish_container(api, f"{user}/media_publish", creation, "Instagram")
            log.info(
                "posted to instagram account %s through the graph api: %s",
                account,
                posted.remote_id,
            )
        return posted

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await asyncio.to_thread(self._find_sync, account, caption, since)

    def _find_sync(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        creds = self._credentials(account)
        with self._api(creds) as api:
            answer = api.call(
                "GET",
                f"{creds.ig_user_id}/media",
                step="media list",
                params={"fields": "id,caption,timestamp,permalink", "limit": str(MEDIA_PAGE)},
            )
        return matching_post(answer, "caption", caption, since)

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        return await asyncio.to_thread(self._metrics_sync, account, remote_id)

    def _metrics_sync(self, account: str, remote_id: str) -> PostMetrics:
        creds = self._credentials(account)
        with self._api(creds) as api:
            fields = api.call(
                "GET",
                remote_id,
                step="media metrics",
                params={"fields": "like_count,comments_count"},
            )
            try:
                insights = api.call(
                    "GET", f"{remote_id}/insights", step="insights", params={"metric": "views"}
                )
                views = insight_values(insights).get("views")
            except ContentRejectedError:  # a media type without that insight
                views = None
        return PostMetrics(
            likes=count_of(fields.get("like_count")),
            replies=count_of(fields.get("comments_count")),
            views=views,
        )


class InstagramByAccount:
    """The Instagram Publisher: each account goes through instagrapi (the default) or, when its
    credentials name a Graph account (`ig_user_id`, `access_token`), the Graph API."""

    platform = Platform.INSTAGRAM

    def __init__(
        self, instagrapi: Publisher, graph: Publisher, backend: Callable[[str], str]
    ) -> None:
        self._instagrapi = instagrapi
        self._graph = graph
        self._backend = backend

    def _for(self, account: str) -> Publisher:
        return self._graph if self._backend(account) == "graph" else self._instagrapi

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await self._for(account).post(account, media, caption)

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await self._for(account).find_post(account, caption, since)

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        chosen = self._for(account)
        if isinstance(chosen, MetricsReader):
            return await chosen.read_metrics(account, remote_id)
        return PostMetrics()  # a backend that reads no counts
