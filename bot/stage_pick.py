"""A pick between a strategy's stages on Discord: the drafts posted to the review channel with
number reactions; a reviewer's numbers then ✅ choose the drafts to refine.

The DiscordReviewer's `request_pick` / `wait_pick` come here. The messages carry a `PickMarker`
(`mo:pick:1:<run>:<part>:<parts>:<deadline>`, `:closed` once answered), distinct from a final
review's marker, so neither is ever taken for the other. Waiting uses the reviewer's own
machinery: the reactions reach the same `_Pending` through its message table (reviewers only,
the bot's own never count), and after a restart the reactions given meanwhile are read first.
Nobody answering by the review timeout lets the best by score go on, said on the pick.
Imports discord, the bot's render and marker pieces and the pipeline's models; the reviewer
never (it hands its pieces over).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import discord

from bot import render
from bot.marker import PickMarker, find_marker
from pipeline.models import Decision, ReviewAction, ReviewTicket, Run, StagePick, utcnow
from pipeline.previews import review_preview

log = logging.getLogger(__name__)


def pick_marker_of(components: Iterable[discord.Component]) -> PickMarker | None:
    """The pick marker among a message's components (its button), or None."""
    return find_marker(components, PickMarker)


class PickView(discord.ui.View):
    """A pick message's one button: greyed out, it only carries the marker."""

    def __init__(self, marker: PickMarker) -> None:
        super().__init__(timeout=None)
        label = "Pick of drafts" if marker.parts == 1 else f"Drafts, part {marker.part}"
        self.add_item(
            discord.ui.Button(
                label=label,
                style=discord.ButtonStyle.secondary,
                custom_id=marker.custom_id,
                disabled=True,
            )
        )

    def is_dispatchable(self) -> bool:
        return False


def pick_text(
    run: Run, pick: StagePick, lines: Sequence[str], *, part: int, parts: int, deadline: datetime
) -> str:
    """One pick message: a header, its drafts' lines, and on the last part how to answer."""
    header = f"**Pick drafts of run `{run.id}`** \N{MIDDLE DOT} {run.character}"
    if parts > 1:
        header += f" \N{MIDDLE DOT} part {part}/{parts}"
    tail: list[str] = []
    if part == parts:
        tail.append(
            f"React with the numbers of the drafts to refine, then {render.APPROVE} "
            f"(no number: the best {pick.keep} by score)."
        )
        tail.append(
            f"Nobody by <t:{int(deadline.timestamp())}:R>: the best {pick.keep} by score go on."
        )
    room = render.CONTENT_LIMIT - len(header) - sum(len(line) + 1 for line in tail) - 1
    middle = render.clip("\n".join(lines), max(room, 0))
    return render.clip("\n".join([header, middle, *tail]), render.CONTENT_LIMIT)


class OpenAnswer(Protocol):
    """One answer awaited in the review channel (the reviewer's `_Pending`)."""

    run: Run
    ticket: ReviewTicket
    media_indexes: tuple[int, ...]
    decided: asyncio.Future[Decision | ReviewAction]
    #: the numbers each reviewer marked (1-based)
    marks: dict[int, set[int]]


class PickConfig(Protocol):
    """The review settings a pick uses (the reviewer's `ReviewConfig`)."""

    @property
    def channel_id(self) -> int: ...
    @property
    def timeout(self) -> timedelta: ...
    @property
    def upload_limit(self) -> int: ...


A = TypeVar("A", bound=OpenAnswer)


@dataclass
class DiscordStagePicks(Generic[A]):
    """The DiscordReviewer's picks between stages, over the reviewer's pieces: its client and
    settings, its table of messages awaiting reactions, how it reads the reactions given
    while offline, how it reaches a message, how it makes an open answer, its clock margin."""

    client: discord.Client
    config: PickConfig
    by_message: dict[int, A]
    catch_up: Callable[[A], Awaitable[dict[int, set[str]]]]
    message: Callable[[A, int], discord.PartialMessage]
    open_answer: Callable[[Run, ReviewTicket, tuple[int, ...]], A]
    #: how far before the run's last save a pick posted after it is looked for (the review's
    #: margin for a clock on this host behind Discord's)
    clock_skew: timedelta

    def __post_init__(self) -> None:
        #: the picks waiting here (a shutdown cancels their waits)
        self._live: list[A] = []

    async def request(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        per = render.FILES_PER_MESSAGE
        numbers = list(range(len(pick.drafts)))
        chunks = [numbers[i : i + per] for i in range(0, len(numbers), per)] or [[]]
        channel = self.client.get_partial_messageable(self.config.channel_id)
        posted = await self._posted_before(run, channel, len(chunks))
        if posted is not None:
            log.info("run %s: the pick posted before a restart is used again", run.id)
            return posted
        deadline = utcnow() + self.config.timeout
        messages: list[discord.Message] = []
        for part, chunk in enumerate(chunks, start=1):
            files: list[discord.File] = []
            lines: list[str] = []
            for offset, index in enumerate(chunk):
                item = pick.drafts[index]
                lines.append(render.image_line(index + 1, render.NUMBERS[offset], item))
                path = await review_preview(folder, item.path, item.kind, self.config.upload_limit)
                if path is not None:
                    files.append(discord.File(path, filename=f"{index + 1:02d}-{path.name}"))
            text = pick_text(run, pick, lines, part=part, parts=len(chunks), deadline=deadline)
            messages.append(
                await channel.send(
                    content=text,
                    files=files,
                    view=PickView(PickMarker(run.id, part, len(chunks), deadline)),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
            )
        log.info("run %s: %d draft(s) posted for a pick", run.id, len(pick.drafts))
        return ReviewTicket(
            channel_id=self.config.channel_id,
            message_ids=tuple(m.id for m in messages),
            posted_at=utcnow(),
            deadline=deadline,
        )

    async def _posted_before(
        self, run: Run, channel: discord.PartialMessageable, parts: int
    ) -> ReviewTicket | None:
        """The ticket of this run's open pick already in the channel (posted by a bot that
        stopped before the ticket was saved), or None; a set cut short by a stop is deleted,
        so it is posted again whole. The pending pick was saved just before it was posted, so
        the messages are newer than the run's last save (less the review's clock margin)."""
        await self.client.wait_until_ready()
        me = self.client.user
        try:
            recent = [
                m async for m in channel.history(limit=None, after=run.updated_at - self.clock_skew)
            ]
        except discord.HTTPException as exc:
            log.warning("run %s: cannot read the review channel (%s)", run.id, exc.status)
            return None
        found: list[tuple[discord.Message, PickMarker]] = []
        for message in recent:
            marker = pick_marker_of(message.components)
            if me is None or message.author.id != me.id or marker is None:
                continue
            if marker.run_id == run.id and not marker.closed:
                found.append((message, marker))
        whole = [m.part for _, m in found] == list(range(1, parts + 1))
        deadline = found[-1][1].deadline if found else None
        if whole and deadline is not None and deadline > utcnow():
            return ReviewTicket(
                channel_id=self.config.channel_id,
                message_ids=tuple(message.id for message, _ in found),
                posted_at=found[0][0].created_at,
                deadline=deadline,
            )
        for message, _ in found:  # cut short (or stale): posted again whole
            try:
                await message.delete()
            except discord.HTTPException as exc:
                log.warning("run %s: could not delete a partial pick (%s)", run.id, exc.status)
        return None

    async def wait(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision | None:
        pending = self.open_answer(run, ticket, tuple(range(len(pick.drafts))))
        for message_id in ticket.message_ids:
            self.by_message[message_id] = pending
        self._live.append(pending)
        try:
            present = await self.catch_up(pending)  # the answers given while offline
            await self._add_reactions(pending, present)
            while not pending.decided.done():
                now = utcnow()
                if ticket.deadline is not None and now >= ticket.deadline:
                    await self._close(
                        pending,
                        f"\N{ALARM CLOCK} Nobody picked in time: the best {pick.keep} by score "
                        "go on.",
                    )
                    return None
                timeout = (
                    None if ticket.deadline is None else (ticket.deadline - now).total_seconds()
                )
                await asyncio.wait({pending.decided}, timeout=timeout)
            answer = pending.decided.result()
            decision = (  # a review's action (reroll, more like) is no pick
                answer
                if isinstance(answer, Decision)
                else Decision(approved=False, selected=(), by=answer.by, at=answer.at)
            )
            if not decision.approved or not any(pending.marks.values()):
                # ✅ without a number, or ❌: no pick, the best by score go on
                decision = Decision(approved=True, selected=(), by=decision.by, at=decision.at)
            chosen = [i + 1 for i in decision.selected]
            said = ", ".join(f"#{n}" for n in chosen) or f"the best {pick.keep} by score"
            await self._close(pending, f"{render.APPROVE} {decision.by} picked {said} to refine.")
            return decision
        finally:
            self._live.remove(pending)
            for message_id in ticket.message_ids:
                if self.by_message.get(message_id) is pending:
                    del self.by_message[message_id]

    def stop(self) -> None:
        """On shutdown: every wait ends as cancelled; the runs keep their tickets."""
        for pending in list(self._live):
            pending.decided.cancel()

    async def _add_reactions(self, pending: A, present: dict[int, set[str]]) -> None:
        """The drafts' numbers on each message, ✅ on the last, where the bot has not yet."""
        count = len(pending.media_indexes)
        last = pending.ticket.message_ids[-1]
        for part, message_id in enumerate(pending.ticket.message_ids):
            if message_id not in present:
                continue
            shown = min(render.FILES_PER_MESSAGE, count - part * render.FILES_PER_MESSAGE)
            wanted = list(render.NUMBERS[: max(shown, 0)])
            if message_id == last:
                wanted.append(render.APPROVE)
            message = self.message(pending, message_id)
            for emoji in wanted:
                if emoji in present[message_id]:
                    continue
                try:
                    await message.add_reaction(emoji)
                except discord.HTTPException as exc:
                    log.warning("run %s: could not add %s (%s)", pending.run.id, emoji, exc.status)

    async def _close(self, pending: A, line: str) -> None:
        """Say on the pick what became of it and mark it closed (best effort)."""
        ticket = pending.ticket
        last = self.message(pending, ticket.message_ids[-1])
        parts = len(ticket.message_ids)
        closed = PickMarker(pending.run.id, parts, parts, ticket.deadline, closed=True)
        try:
            message = await last.fetch()
            await last.edit(
                content=render.clip(f"{message.content}\n{line}", render.CONTENT_LIMIT),
                view=PickView(closed),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            log.warning("run %s: could not mark the pick closed (%s)", pending.run.id, exc.status)
