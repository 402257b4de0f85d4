"""`RunCard`: one Discord message edited as a run moves — step, queue place, sampler bar, time.

It is the run's ProgressSink (never blocks: it only notes the latest update) plus a task that
edits the message at most once per `interval`, coalescing updates, and ends with the outcome.
`CardBook` remembers where each card is, so a restarted bot goes on editing the same message.
Imports discord and the pipeline's runner types; never strategies or comfy.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import discord

from bot import render
from pipeline.models import PostRecord, Run, RunState, utcnow
from pipeline.ports import REVIEW_STEP, Progress
from pipeline.runner import Runner

log = logging.getLogger(__name__)

#: interaction tokens last 15 minutes; after 14 the card is edited as a plain channel message
TOKEN_LIFETIME = 14 * 60.0

Posts = Callable[[str], Awaitable[list[PostRecord]]]


class CardMessage(Protocol):
    """The message a card is shown in: edited with each new text; where it is, once known."""

    location: tuple[int, int] | None

    async def __call__(self, text: str) -> None: ...


class InteractionCard:
    """Edits the deferred reply of an interaction; once its token is about to expire, the same
    message through the channel (the bot wrote it, so it may)."""

    def __init__(self, interaction: discord.Interaction[discord.Client]) -> None:
        self._interaction = interaction
        self._opened = time.monotonic()
        self._message: discord.PartialMessage | None = None
        self.location: tuple[int, int] | None = None

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
                self.location = (message.channel.id, message.id)
        else:
            await self._message.edit(content=text, allowed_mentions=none)


class ChannelCard:
    """A card found again after a restart: the bot's own message, edited through its channel."""

    def __init__(self, client: discord.Client, channel_id: int, message_id: int) -> None:
        channel = client.get_partial_messageable(channel_id)
        self._message = channel.get_partial_message(message_id)
        self.location: tuple[int, int] | None = (channel_id, message_id)

    async def __call__(self, text: str) -> None:
        await self._message.edit(content=text, allowed_mentions=discord.AllowedMentions.none())


class CardBook:
    """Where each unfinished run's card is (channel and message id), kept in a small JSON file
    in the data folder. Losing it only means a card that stops moving after a restart."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = asyncio.Lock()
        self._cards: dict[str, tuple[int, int]] | None = None

    async def find(self, run_id: str) -> tuple[int, int] | None:
        async with self._lock:
            return (await self._load()).get(run_id)

    async def remember(self, run_id: str, location: tuple[int, int]) -> None:
        async with self._lock:
            cards = await self._load()
            if cards.get(run_id) != location:
                cards[run_id] = location
                await self._write(cards)

    async def forget(self, run_id: str) -> None:
        async with self._lock:
            cards = await self._load()
            if cards.pop(run_id, None) is not None:
                await self._write(cards)

    async def _write(self, cards: dict[str, tuple[int, int]]) -> None:
        try:
            await asyncio.to_thread(_write_cards, self.path, dict(cards))
        except OSError as exc:  # a card that cannot be found again is no reason to stop one
            log.warning("cannot write %s (%s)", self.path, exc.strerror)

    async def _load(self) -> dict[str, tuple[int, int]]:
        if self._cards is None:
            self._cards = await asyncio.to_thread(_read_cards, self.path)
        return self._cards


def _read_cards(path: Path) -> dict[str, tuple[int, int]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    cards: dict[str, tuple[int, int]] = {}
    for run_id, where in data.items():
        if isinstance(where, list) and len(where) == 2 and all(isinstance(i, int) for i in where):
            cards[str(run_id)] = (where[0], where[1])
    return cards


def _write_cards(path: Path, cards: dict[str, tuple[int, int]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps({k: list(v) for k, v in cards.items()}), encoding="utf-8")
    partial.replace(path)


class RunCard:
    """The ProgressSink of one run and the follower that shows it."""

    def __init__(
        self,
        *,
        runner: Runner,
        edit: CardMessage,
        posts: Posts,
        character: str,
        generation_type: str | None = None,
        review_channel_id: int | None = None,
        interval: float = 1.5,
        refresh: float = 5.0,
        slow_refresh: float = 60.0,
        book: CardBook | None = None,
    ) -> None:
        self._runner = runner
        self._book = book
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
        self._noted = False
        self.edits = 0

    # ProgressSink
    def progress(self, run_id: str, update: Progress) -> None:
        self._latest = update
        self._changed.set()

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        """Nothing more to show: the review step's update says it already."""

    async def follow(self, run: Run) -> Run:
        """Keep the card current until the run ends, then show the outcome. Time and, until the
        first update, the step come from the run record, so they go on after a restart."""
        recorded = recorded_step(run)
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
                        progress=self._latest or recorded,
                        elapsed=(utcnow() - run.created_at).total_seconds(),
                        review_channel_id=self._review_channel_id,
                    )
                )
                if text != shown:
                    await self._show(text)
                    shown = text
                    await self._note(run.id)
                await asyncio.wait({ended}, timeout=self.interval)
                if ended.done():
                    break
                latest = self._latest or recorded
                waiting = latest is not None and latest.step in _SLOW_STEPS
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
        shows_posts = final.state in (RunState.PUBLISHED, RunState.FAILED, RunState.QUEUED)
        posts = await self._posts(final.id) if shows_posts else []
        took = (final.updated_at - final.created_at).total_seconds()
        await self._show(render.outcome(final, posts, elapsed=took))
        # a queued run's card is done: the queue's later posts are announced as notices
        if self._book is not None and (final.state.finished or final.state is RunState.QUEUED):
            await self._book.forget(final.id)
        return final

    async def _note(self, run_id: str) -> None:
        """Remember where the card is once it is known (the first edit tells)."""
        location = self._edit.location
        if self._book is not None and location is not None and not self._noted:
            self._noted = True
            await self._book.remember(run_id, location)

    async def _show(self, text: str) -> None:
        try:
            await self._edit(text)
            self.edits += 1
        except discord.HTTPException as exc:
            log.warning("run card edit failed (%s)", exc.status)


_SLOW_STEPS = frozenset({REVIEW_STEP})

#: the step a run in this saved state is in (the pipeline's step names; see pipeline/run.py)
_STEP_OF_STATE = {
    RunState.PROMPTED: "describe",
    RunState.DESCRIBED: "generate",
    RunState.GENERATED: "score",
    RunState.SCORED: "caption",
    RunState.CAPTIONED: REVIEW_STEP,
    RunState.AWAITING_REVIEW: REVIEW_STEP,
    RunState.APPROVED: "publish",
    RunState.PUBLISHING: "publish",
    RunState.QUEUED: "publish",
}


def recorded_step(run: Run) -> Progress | None:
    """The step a run is at by its record (None for a new run: "starting")."""
    step = _STEP_OF_STATE.get(run.state)
    return Progress(step=step, detail="resumed") if step is not None else None
