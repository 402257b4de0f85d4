"""`DiscordNotifier`: the Notifier port — started, waiting for review, published, failed.

Posts to the notify channel, or to a webhook when one is set; a notice that cannot be sent is
logged and never fails the run. Imports discord, aiohttp and the domain; never strategies.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Sequence

import aiohttp
import discord

from bot import render
from pipeline.errors import ConfigError
from pipeline.models import PostRecord, Run, RunState

log = logging.getLogger(__name__)

_WEBHOOK = re.compile(r"/webhooks/(?P<id>\d+)/(?P<token>[^/?#]+)")


def parse_webhook_url(url: str) -> tuple[int, str]:
    """(id, token) of a Discord webhook URL; ConfigError naming the setting otherwise."""
    match = _WEBHOOK.search(url)
    if match is None:
        raise ConfigError(
            "DISCORD_NOTIFY_WEBHOOK_URL is not a Discord webhook URL (…/webhooks/ID/TOKEN)"
        )
    return int(match["id"]), match["token"]


class DiscordNotifier:
    """Sends each announced state of a run once (started, in review, published, failed,
    expired, rejected); other states pass silently. Without a channel or webhook it only logs."""

    def __init__(
        self,
        client: discord.Client,
        session: aiohttp.ClientSession,
        *,
        channel_id: int | None = None,
        webhook_url: str | None = None,
        remember: int = 2000,
    ) -> None:
        self._client = client
        self._channel_id = channel_id
        self._webhook: discord.Webhook | None = None
        if webhook_url:
            webhook_id, token = parse_webhook_url(webhook_url)
            self._webhook = discord.Webhook.partial(webhook_id, token, session=session)
        self._sent: OrderedDict[tuple[str, RunState], None] = OrderedDict()
        self._remember = remember

    async def run_changed(self, run: Run, posts: Sequence[PostRecord] = ()) -> None:
        text = render.notice(run, posts)
        key = (run.id, run.state)
        if text is None or key in self._sent:
            return
        self._sent[key] = None
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        none = discord.AllowedMentions.none()
        try:
            if self._webhook is not None:
                await self._webhook.send(text, allowed_mentions=none)
            elif self._channel_id is not None:
                channel = self._client.get_partial_messageable(self._channel_id)
                await channel.send(text, allowed_mentions=none)
            else:
                log.info("run %s: %s", run.id, run.state.value)
        except (discord.HTTPException, aiohttp.ClientError) as exc:
            log.warning("run %s: the %s notice failed (%r)", run.id, run.state.value, type(exc))
