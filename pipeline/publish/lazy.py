"""A platform's publisher made when it is first used.

The clients behind the publishers are heavy to import (atproto 1.3 s of CPU, instagrapi and
curl_cffi 0.5 s, tweepy with twitter-text 0.5 s, measured): a bot that never posts to Bluesky
should never load atproto, and none of them should cost its start. The module holding a
publisher is imported in a thread when the platform is first asked for something, so the
event loop never waits on an import. Imports only the ports and models.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable, Sequence
from datetime import datetime

from pipeline.models import Platform
from pipeline.ports import MetricsReader, OutgoingMedia, PostMetrics, Publisher, RemotePost


class LazyPublisher:
    """A Publisher (and MetricsReader) that imports `module` in a thread on first use, then
    asks `make` (which imports from that module, now loaded) for the real one."""

    def __init__(self, platform: Platform, module: str, make: Callable[[], Publisher]) -> None:
        self.platform = platform
        self.module = module
        self._make = make
        self._made: Publisher | None = None
        self._making = asyncio.Lock()

    async def publisher(self) -> Publisher:
        if self._made is None:
            async with self._making:
                if self._made is None:
                    await asyncio.to_thread(importlib.import_module, self.module)
                    self._made = self._make()
        return self._made

    async def post(self, account: str, media: Sequence[OutgoingMedia], caption: str) -> RemotePost:
        return await (await self.publisher()).post(account, media, caption)

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        return await (await self.publisher()).find_post(account, caption, since)

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics:
        publisher = await self.publisher()
        if isinstance(publisher, MetricsReader):
            return await publisher.read_metrics(account, remote_id)
        return PostMetrics()  # a platform that reads no counts

    async def aclose(self) -> None:
        """Close the real publisher's connections, if it was made and keeps any."""
        close = getattr(self._made, "aclose", None)
        if close is not None:
            await close()


__all__ = ["LazyPublisher"]
