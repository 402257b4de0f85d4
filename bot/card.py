"""`RunCard`: one Discord message edited as a run moves — step, queue place, sampler bar, time.

It is the run's ProgressSink (never blocks: it only notes the latest update) plus a task that
edits the message at most once per `interval`, coalescing updates, and ends with the outcome.
Imports discord and the pipeline's runner types; never strategies or comfy.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import discord

from bot import render
from pipeline.models import PostRecord, Run, RunState
from pipeline.ports import REVIEW_STEP, Progress
from pipeline.runner import Runner

log = logging.getLogger(__name__)

#: interaction tokens last 15 minutes; after 14 the card is edited as a plain channel message
TOKEN_LIFETIME = 14 * 60.0

Edit = Callable[[str], Awaitable[None]]
Posts = Callable[[str], Awaitable[list[PostRecord]]]


class InteractionCard:
    """Edits the deferred reply of an interaction; once its token is about to expire, the same
    message through the channel (the bot wrote it, so it may)."""

    def __init__(self, interaction: discord.Interaction[discord.Client]) -> None:
        self._interaction = interaction
        self._opened = time.monotonic()
        self._message: discord.PartialMessage | None = None

    async def __call__(self, text: str) -> None:
        none = discord.AllowedMentions.none()
        fresh = time.monotonic() - self._opened < TOKEN_LIFETIME
        if self._message is None or fresh:
            message = await self._interaction.edit_original_response(
                content=text, allowed_mentions=none
            )
            if self._message is None:
                channel = self._interaction.client.get_partial_messageable(message.channel.id)
                self._message = channel.get_partial_message(message.id)
        else:
            await self._message.edit(content=text, allowed_mentions=none)


class RunCard:
    """The ProgressSink of one run and the follower that shows it."""

    def __init__(
        self,
        *,
        runner: Runner,
        edit: Edit,
        posts: Posts,
        character: str,
        generation_type: str | None = None,
        review_channel_id: int | None = None,
        interval: float = 1.5,
        refresh: float = 5.0,
        slow_refresh: float = 60.0,
    ) -> None:
        self._runner = runner
        self._edit = edit
        self._posts = posts
        self._character = character
        self._generation_type = generation_type
        self._review_channel_id = review_channel_id
        #: Discord allows about five edits of a message per 5 s; one per 1.5 s leaves room
        self.interval = interval
        self.refresh = refresh
        self.slow_refresh = slow_refresh
        self._latest: Progress | None = None
        self._changed = asyncio.Event()
        self.edits = 0

    # ProgressSink
    def progress(self, run_id: str, update: Progress) -> None:
        self._latest = update
        self._changed.set()

    async def follow(self, run: Run) -> Run:
        """Keep the card current until the run ends, then show the outcome."""
        started = time.monotonic()
        ended = asyncio.ensure_future(self._runner.wait(run.id))
        shown: str | None = None
        try:
            while not ended.done():
                self._changed.clear()
                text = render.run_card(
                    render.CardView(
                        run_id=run.id,
                        character=self._character,
                        generation_type=self._generation_type,
                        position=self._runner.position(run.id),
                        progress=self._latest,
                        elapsed=time.monotonic() - started,
                        review_channel_id=self._review_channel_id,
                    )
                )
                if text != shown:
                    await self._show(text)
                    shown = text
                await asyncio.wait({ended}, timeout=self.interval)
                if ended.done():
                    break
                waiting = self._latest is not None and self._latest.step in _SLOW_STEPS
                changed = asyncio.ensure_future(self._changed.wait())
                await asyncio.wait(
                    {ended, changed},
                    timeout=self.slow_refresh if waiting else self.refresh,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                changed.cancel()
            final = ended.result()
        finally:
            if not ended.done():
                ended.cancel()
        posts = await self._posts(final.id) if final.state is RunState.PUBLISHED else []
        await self._show(render.outcome(final, posts, elapsed=time.monotonic() - started))
        return final

    async def _show(self, text: str) -> None:
        try:
            await self._edit(text)
            self.edits += 1
        except discord.HTTPException as exc:
            log.warning("run card edit failed (%s)", exc.status)


_SLOW_STEPS = frozenset({REVIEW_STEP})
