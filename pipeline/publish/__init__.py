"""Fitting media to each platform and publishing to it, exactly once.

The pipeline calls: `fit_run_media` (before review), `build_publish_service` (once, at start),
`PublishService.publish_run` (after approval, and for `publish RUN_ID`), `PublishService.recover`
(at start, for runs left in `publishing`), and `check_credentials` (from `check`).
"""

from __future__ import annotations

from pipeline.models import Platform
from pipeline.ports import PostStore, Publisher, PublishNotifier
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.credentials import CredentialStore, check_credentials, session_path
from pipeline.publish.errors import (
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
)
from pipeline.publish.lazy import LazyPublisher
from pipeline.publish.media import FittedMedia, fit_media
from pipeline.publish.service import PublishService, RetryPolicy, fit_run_media
from pipeline.settings import Settings


def build_publishers(
    settings: Settings, credentials: CredentialStore | None = None
) -> dict[Platform, Publisher]:
    """One Publisher per platform, configured from settings; credentials are read per account
    when it first posts (so a missing one fails that post, not the start). The publishers
    whose client libraries are heavy (instagrapi, tweepy, atproto) are made on first use, their
    modules imported in a thread (`LazyPublisher`)."""
    from pipeline.publish.facebook import FacebookPublisher
    from pipeline.publish.image_host import build_image_host
    from pipeline.publish.instagram_graph import InstagramByAccount, InstagramGraphPublisher
    from pipeline.publish.threads import ThreadsPublisher

    creds = credentials or CredentialStore(settings)
    host = build_image_host(settings)

    def instagrapi() -> Publisher:
        from pipeline.publish.instagram import InstagramPublisher

        return InstagramPublisher(
            creds.instagram,
            lambda name: session_path(settings, Platform.INSTAGRAM, name),
            request_delay=settings.instagram_request_delay,
            configure_delay=settings.instagram_configure_delay,
            timeout=settings.instagram_timeout_seconds,
        )

    def x() -> Publisher:
        from pipeline.publish.twitter import TwitterPublisher

        return TwitterPublisher(
            creds.twitter,
            api_url=settings.x_api_url,
            chunk_bytes=settings.x_chunk_bytes,
            timeout=settings.x_timeout_seconds,
            processing_timeout=settings.x_processing_timeout_seconds,
        )

    def bluesky() -> Publisher:
        from pipeline.publish.bluesky import BlueskyPublisher

        return BlueskyPublisher(
            creds.bluesky,
            service_url=settings.bluesky_service_url,
            timeout=settings.bluesky_timeout_seconds,
        )

    return {
        Platform.INSTAGRAM: InstagramByAccount(
            LazyPublisher(Platform.INSTAGRAM, "pipeline.publish.instagram", instagrapi),
            InstagramGraphPublisher(
                creds.instagram_graph,
                host,
                api_url=settings.graph_api_url,
                timeout=settings.graph_timeout_seconds,
                processing_timeout=settings.graph_processing_timeout_seconds,
            ),
            creds.instagram_backend,
        ),
        Platform.TWITTER: LazyPublisher(Platform.TWITTER, "pipeline.publish.twitter", x),
        Platform.BLUESKY: LazyPublisher(Platform.BLUESKY, "pipeline.publish.bluesky", bluesky),
        Platform.FACEBOOK: FacebookPublisher(
            creds.facebook,
            api_url=settings.graph_api_url,
            timeout=settings.graph_timeout_seconds,
            upload_timeout=settings.graph_upload_timeout_seconds,
        ),
        Platform.THREADS: ThreadsPublisher(
            creds.threads,
            host,
            api_url=settings.threads_api_url,
            timeout=settings.graph_timeout_seconds,
            processing_timeout=settings.graph_processing_timeout_seconds,
        ),
    }


def build_publish_service(
    settings: Settings,
    store: PostStore,
    *,
    notifier: PublishNotifier | None = None,
    publishers: dict[Platform, Publisher] | None = None,
) -> PublishService:
    """The PublishService the bot and the command line use."""
    return PublishService(
        store,
        publishers if publishers is not None else build_publishers(settings),
        AttentionBoard(settings.attention_dir),
        notifier=notifier,
        policy=RetryPolicy(
            retries=settings.publish_retries,
            backoff=settings.publish_backoff_seconds,
            max_wait=settings.publish_max_wait_seconds,
        ),
    )


__all__ = [
    "AccountAttentionError",
    "AttentionBoard",
    "ContentRejectedError",
    "CredentialStore",
    "FittedMedia",
    "LazyPublisher",
    "PublishService",
    "RetryPolicy",
    "TransientPublishError",
    "build_publish_service",
    "build_publishers",
    "check_credentials",
    "fit_media",
    "fit_run_media",
]
