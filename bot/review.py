"""`DiscordReviewer`: the Reviewer port on Discord — candidates posted, answered by reactions.

Posts a run's kept media (10 files a message; a file over the upload limit as the preview the
pipeline's `review_preview` makes, the original untouched), the captions and each image's number,
score and reason; resolves on a reviewer's ✅ or ❌. A review's identity is data the bot wrote for
itself: the ticket on the run (channel, message ids, deadline) and the marker in each message's
button (`bot.marker`), never its text. A review posted by a bot that stopped before its ticket was
saved is found in the channel by those markers and used again (a set cut short is deleted and
posted anew). After a restart `wait` first reads the reactions given while the bot was offline;
caption edits and the reminder are noted on the run in the store, so a restart keeps the one and
never repeats the other. The "Edit caption" button is answered by the review cog. Imports discord
and the pipeline's ports, models and previews; never the bot's services, strategies or comfy.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path

import discord

from bot import render
from bot.access import has_any_role
from bot.marker import MarkerView, ReviewMarker, marker_of
from bot.stage_pick import DiscordStagePicks
from pipeline.errors import StoreError
from pipeline.models import (
    ActionKind,
    Decision,
    MediaItem,
    ReviewAction,
    ReviewNotes,
    ReviewTicket,
    Run,
    RunState,
    StagePick,
    utcnow,
)
from pipeline.ports import RunStore
from pipeline.previews import contact_sheet, review_preview

log = logging.getLogger(__name__)

#: a review of the run posted before a restart is looked for among the review channel's
#: messages from this long before the run's last save on: the review was posted after that save,
#: and the margin covers a clock on this host that is behind Discord's
CLOCK_SKEW = timedelta(minutes=15)


@dataclass(frozen=True)
class ReviewConfig:
    """The review's settings: where, who, how long, and Discord's upload limit in bytes."""

    channel_id: int
    role_ids: Collection[int] = ()
    timeout: timedelta = timedelta(hours=24)
    reminder: timedelta = timedelta(hours=1)
    upload_limit: int = 10 * 1024 * 1024


@dataclass
class _Pending:
    """One review waiting for an answer, in memory; the ticket on the run is its durable form."""

    run: Run
    ticket: ReviewTicket
    #: image number n (1-based) is run.media[media_indexes[n - 1]]
    media_indexes: tuple[int, ...]
    decided: asyncio.Future[Decision | ReviewAction]
    marks: dict[int, set[int]] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)
    #: a reviewer's caption text refused as over a platform's limits: the next form opens with
    #: it, so nothing typed is lost (never part of the decision)
    drafts: dict[str, str] = field(default_factory=dict)
    reminded: bool = False
    #: held while the notes are written, so a decision never overtakes (and is never
    #: overwritten by) a save of the still-open review
    saving: asyncio.Lock = field(default_factory=asyncio.Lock)

    def number(self, message_id: int, emoji: str) -> int | None:
        """The image number a number reaction on one of the review's messages stands for."""
        if emoji not in render.NUMBERS or message_id not in self.ticket.message_ids:
            return None
        part = self.ticket.message_ids.index(message_id)
        number = part * render.FILES_PER_MESSAGE + render.NUMBERS.index(emoji) + 1
        return number if number <= len(self.media_indexes) else None

    def decision(self, *, approved: bool, by: str, upscale: bool = False) -> Decision:
        chosen = sorted(set().union(*self.marks.values())) if self.marks else []
        numbers = chosen or list(range(1, len(self.media_indexes) + 1))
        selected = tuple(self.media_indexes[n - 1] for n in numbers) if approved else ()
        return Decision(
            approved=approved,
            selected=selected,
            by=by,
            at=utcnow(),
            captions=dict(self.captions),
            upscale=upscale and approved,
        )

    def action(self, emoji: str, member_id: int, by: str) -> ReviewAction | None:
        """The action a reviewer's reaction asks for, when the review offers it: 🔁 a reroll,
        the plus sign "more like" the lowest number this reviewer marked (none without one)."""
        if emoji == render.REROLL and ActionKind.REROLL in self.run.offers:
            return ReviewAction(ActionKind.REROLL, by=by, at=utcnow())
        if emoji == render.MORE_LIKE and ActionKind.MORE_LIKE in self.run.offers:
            marked = sorted(self.marks.get(member_id, ()))
            if not marked:
                return None
            index = self.media_indexes[marked[0] - 1]
            return ReviewAction(ActionKind.MORE_LIKE, by=by, at=utcnow(), index=index)
        return None

    def answers(self) -> tuple[str, ...]:
        """The reactions that answer this review, as the last message offers them."""
        offered = tuple(render.ACTION_EMOJI[kind] for kind in self.run.offers)
        return (render.APPROVE, render.REJECT, *offered)


def review_notes(run: Run, ticket: ReviewTicket) -> tuple[dict[str, str], bool]:
    """The caption edits and the reminder flag saved on `run` for this ticket."""
    notes = run.review_notes
    if notes is None or notes.message_id not in ticket.message_ids[:1]:
        return {}, False
    return dict(notes.captions), notes.reminded


def kept_media(run: Run) -> tuple[int, ...]:
    """Indexes into run.media of the candidates shown, in order: image n is the n-th of these
    (the current attempt's, variations included)."""
    return run.shown()


class DiscordReviewer:
    """The Reviewer port on a review channel. One instance per bot; reactions are fed to
    `reaction_added` / `reaction_removed` by the review cog."""

    def __init__(self, client: discord.Client, config: ReviewConfig, store: RunStore) -> None:
        self._client = client
        self.config = config
        self._store = store
        self._pending: dict[str, _Pending] = {}
        self._by_message: dict[int, _Pending] = {}
        self._picks = DiscordStagePicks(
            client,
            config,
            self._by_message,
            self._catch_up,
            self._message,
            lambda run, ticket, indexes: _Pending(
                run=run,
                ticket=ticket,
                media_indexes=indexes,
                decided=asyncio.get_running_loop().create_future(),
            ),
            CLOCK_SKEW,
        )

    # ------------------------------------------------------------------ the port
    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        indexes = kept_media(run)
        chunks = [
            indexes[i : i + render.FILES_PER_MESSAGE]
            for i in range(0, len(indexes), render.FILES_PER_MESSAGE)
        ] or [()]
        channel = self._client.get_partial_messageable(self.config.channel_id)
        posted = await self._posted_before(run, channel, len(chunks))
        if posted is not None:
            # not armed here: `wait` reads the reactions given meanwhile and adds the bot's own
            log.info("run %s: the review posted before a restart is used again", run.id)
            return posted
        deadline = utcnow() + self.config.timeout
        # a sticker pack is shown as one numbered contact sheet too, before its files
        sheet = await contact_sheet(folder, run)
        messages: list[discord.Message] = []
        for part, chunk in enumerate(chunks, start=1):
            first = (part - 1) * render.FILES_PER_MESSAGE + 1
            files, lines, notes = await self._attachments(run, folder, chunk, first)
            if sheet is not None and part == 1 and len(files) < render.FILES_PER_MESSAGE:
                files.insert(0, discord.File(sheet, filename=f"00-{sheet.name}"))
            last = part == len(chunks)
            if last:
                files, notes = _with_script(run, files, notes)
            text = render.review_text(
                run, lines, part=part, parts=len(chunks), deadline=deadline, notes=notes
            )
            # the marker, not the text, is how a restarted bot knows this message again
            view = MarkerView(ReviewMarker(run.id, part, len(chunks), deadline))
            message = await channel.send(
                content=text,
                files=files,
                embeds=render.caption_embeds(run.captions) if last else [],
                view=view,
                allowed_mentions=discord.AllowedMentions.none(),
            )
            messages.append(message)
        ticket = ReviewTicket(
            channel_id=self.config.channel_id,
            message_ids=tuple(m.id for m in messages),
            posted_at=utcnow(),
            deadline=deadline,
        )
        self._arm(run, ticket)
        # the reactions come in `wait`, after the pipeline saved the ticket: a review that
        # offers ✅ is always one a restart can find again
        log.info("run %s: review posted in %d message(s)", run.id, len(messages))
        return ticket

    async def _posted_before(
        self, run: Run, channel: discord.PartialMessageable, parts: int
    ) -> ReviewTicket | None:
        """The ticket of this run's open review already in the channel (posted by a bot that
        stopped before the ticket was saved), or None. A set of review messages cut short by a
        stop is deleted, so it is posted again whole."""
        await self._client.wait_until_ready()
        me = self._client.user
        since = run.updated_at - CLOCK_SKEW
        try:
            # oldest first, every page: parts 1, 2, … in posting order, however busy the channel
            recent = [message async for message in channel.history(limit=None, after=since)]
        except discord.HTTPException as exc:
            log.warning("run %s: cannot read the review channel (%s)", run.id, exc.status)
            return None
        sets: list[list[tuple[discord.Message, ReviewMarker]]] = []
        for message in recent:
            if me is None or message.author.id != me.id:
                continue
            marker = marker_of(message.components)
            if marker is None or marker.run_id != run.id:
                continue
            if not sets or marker.part != len(sets[-1]) + 1 or not _same_review(sets[-1], marker):
                sets.append([])
            sets[-1].append((message, marker))
        found: ReviewTicket | None = None
        now = utcnow()
        for found_set in sets:
            messages = [message for message, _ in found_set]
            last = found_set[-1][1]
            if [m.part for _, m in found_set] != list(range(1, last.parts + 1)):
                await self._delete(run, messages)
                continue
            deadline = last.deadline
            live = not last.closed and deadline is not None and deadline > now
            if live and len(messages) == parts:
                found = ReviewTicket(
                    channel_id=self.config.channel_id,
                    message_ids=tuple(message.id for message in messages),
                    posted_at=messages[0].created_at,
                    deadline=deadline,
                )
            # an older complete set is a review that closed: it stays as the record of that
        return found

    async def _delete(self, run: Run, messages: Sequence[discord.Message]) -> None:
        log.info("run %s: deleting a review cut short by a stop, to post it again", run.id)
        for message in messages:
            try:
                await message.delete()
            except discord.NotFound:
                pass
            except discord.HTTPException as exc:
                log.warning("run %s: could not delete a partial review (%s)", run.id, exc.status)

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | ReviewAction | None:
        pending = self._pending.get(run.id)
        if pending is None or pending.ticket != ticket:
            pending = self._arm(run, ticket)
            present = await self._catch_up(pending)
        else:
            present = {message_id: set() for message_id in ticket.message_ids}
        try:
            await self._add_reactions(pending, present)
            while not pending.decided.done():
                now = utcnow()
                deadline = ticket.deadline
                if deadline is not None and now >= deadline:
                    log.info("run %s: the review expired", run.id)
                    await self._close_review(pending, f"{render.REJECT} The review expired.")
                    return None
                timeout = None if deadline is None else (deadline - now).total_seconds()
                if deadline is not None and not pending.reminded and self.config.reminder:
                    remind_at = deadline - self.config.reminder
                    if now >= remind_at:
                        # noted before it is sent: a crash in between loses one reminder,
                        # where the other order could send it twice
                        pending.reminded = True
                        await self._save_notes(pending)
                        await self._remind(pending)
                        continue
                    timeout = (remind_at - now).total_seconds()
                await asyncio.wait({pending.decided}, timeout=timeout)
            decision = pending.decided.result()
            if isinstance(decision, ReviewAction):
                number = (
                    pending.media_indexes.index(decision.index) + 1
                    if decision.index in pending.media_indexes
                    else None
                )
                await self._close_review(pending, render.action_line(decision, number))
                return decision
            numbers = [pending.media_indexes.index(i) + 1 for i in decision.selected]
            line = render.decision_line(decision.approved, decision.by, numbers)
            if decision.upscale:
                line += f" {render.UPSCALE} To be upscaled before publishing."
            await self._close_review(pending, line)
            return decision
        finally:
            async with pending.saving:  # a caption edit being saved lands before the decision
                self._forget(pending)

    # ------------------------------------------------------------------ picks between stages
    async def request_pick(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        """Post the drafts of a pick between stages (`bot.stage_pick`)."""
        return await self._picks.request(run, folder, pick)

    async def wait_pick(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision | None:
        """The drafts a reviewer picked; None when nobody did by the deadline."""
        return await self._picks.wait(run, ticket, pick)

    # ------------------------------------------------------------------ reactions
    def reaction_added(self, payload: discord.RawReactionActionEvent) -> None:
        """A live reaction: count it when it is a reviewer's on one of our review messages."""
        pending = self._by_message.get(payload.message_id)
        if pending is None or self._is_me(payload.user_id):
            return
        if not has_any_role(payload.member, self.config.role_ids):
            log.debug("run %s: ignored a reaction of a non-reviewer", pending.run.id)
            return
        assert payload.member is not None  # has_any_role is False without a member
        self._apply(pending, payload.message_id, str(payload.emoji), payload.member)

    def reaction_removed(self, payload: discord.RawReactionActionEvent) -> None:
        """A number taken back no longer selects its image."""
        pending = self._by_message.get(payload.message_id)
        if pending is None:
            return
        number = pending.number(payload.message_id, str(payload.emoji))
        if number is not None:
            pending.marks.get(payload.user_id, set()).discard(number)

    def _apply(
        self, pending: _Pending, message_id: int, emoji: str, member: discord.Member
    ) -> None:
        if pending.decided.done():
            return
        by = member.display_name
        if emoji == render.APPROVE:
            pending.decided.set_result(pending.decision(approved=True, by=by))
        elif emoji == render.REJECT:
            pending.decided.set_result(pending.decision(approved=False, by=by))
        elif emoji == render.UPSCALE and ActionKind.UPSCALE in pending.run.offers:
            pending.decided.set_result(pending.decision(approved=True, by=by, upscale=True))
        elif (action := pending.action(emoji, member.id, by)) is not None:
            pending.decided.set_result(action)
        else:
            number = pending.number(message_id, emoji)
            if number is not None:
                pending.marks.setdefault(member.id, set()).add(number)

    # ------------------------------------------------------------------ captions
    def captions_of(self, run_id: str) -> dict[str, str] | None:
        """The captions a reviewer sees now (edits included), or None when not in review here."""
        pending = self._pending.get(run_id)
        if pending is None or pending.decided.done():
            return None
        return pending.run.captions | pending.captions | pending.drafts

    def character_of(self, run_id: str) -> str | None:
        """The character of the run in review here, or None when its review is closed."""
        pending = self._pending.get(run_id)
        return None if pending is None or pending.decided.done() else pending.run.character

    def keep_draft(self, run_id: str, captions: Mapping[str, str]) -> None:
        """Remember refused caption text for the next form (memory only; a restart drops it)."""
        pending = self._pending.get(run_id)
        if pending is not None and not pending.decided.done():
            pending.drafts.update(captions)

    async def edit_captions(self, run_id: str, captions: Mapping[str, str]) -> bool:
        """Change captions before approval; shown on the review at once. False when closed."""
        pending = self._pending.get(run_id)
        if pending is None or pending.decided.done():
            return False
        pending.captions.update(captions)
        pending.drafts.clear()
        await self._save_notes(pending)
        last = self._message(pending, pending.ticket.message_ids[-1])
        try:
            await last.edit(embeds=render.caption_embeds(pending.run.captions | pending.captions))
        except discord.HTTPException as exc:
            log.warning("run %s: could not show the edited caption (%s)", run_id, exc.status)
        return True

    # ------------------------------------------------------------------ life cycle
    def pending_runs(self) -> list[str]:
        return list(self._pending)

    def stop(self) -> None:
        """On shutdown: every wait ends as cancelled; the runs keep their tickets for later."""
        for pending in list(self._pending.values()):
            pending.decided.cancel()
        self._picks.stop()

    # ------------------------------------------------------------------ machinery
    def _arm(self, run: Run, ticket: ReviewTicket) -> _Pending:
        old = self._pending.get(run.id)
        if old is not None:
            self._forget(old)
        future: asyncio.Future[Decision | ReviewAction] = asyncio.get_running_loop().create_future()
        captions, reminded = review_notes(run, ticket)
        pending = _Pending(
            run=run,
            ticket=ticket,
            media_indexes=kept_media(run),
            decided=future,
            captions=captions,
            reminded=reminded,
        )
        self._pending[run.id] = pending
        for message_id in ticket.message_ids:
            self._by_message[message_id] = pending
        return pending

    def _forget(self, pending: _Pending) -> None:
        if self._pending.get(pending.run.id) is pending:
            del self._pending[pending.run.id]
        for message_id in pending.ticket.message_ids:
            if self._by_message.get(message_id) is pending:
                del self._by_message[message_id]

    async def _save_notes(self, pending: _Pending) -> None:
        """Write the caption edits and the reminder flag on the run while its review is open
        (best effort: a failure is logged and the review goes on from memory)."""
        async with pending.saving:
            if self._pending.get(pending.run.id) is not pending or pending.decided.done():
                return
            try:
                latest = await self._store.load_run(pending.run.id)
                if (
                    latest is None
                    or latest.state is not RunState.AWAITING_REVIEW
                    or latest.ticket != pending.ticket
                ):
                    return  # not saved as in review yet (or no longer): memory holds it
                notes = ReviewNotes(
                    message_id=pending.ticket.message_ids[0],
                    captions=dict(pending.captions),
                    reminded=pending.reminded,
                )
                await self._store.save_run(replace(latest, review_notes=notes))
            except StoreError as exc:
                log.warning("run %s: review notes not saved: %s", pending.run.id, exc)

    def _is_me(self, user_id: int) -> bool:
        me = self._client.user
        return me is not None and me.id == user_id

    def _message(self, pending: _Pending, message_id: int) -> discord.PartialMessage:
        channel = self._client.get_partial_messageable(pending.ticket.channel_id)
        return channel.get_partial_message(message_id)

    async def _add_reactions(self, pending: _Pending, present: Mapping[int, set[str]]) -> None:
        """Give each review message the bot's reactions it lacks: its images' numbers, and ✅ ❌
        on the last one. `present`: the bot's reactions per readable message."""
        count = len(pending.media_indexes)
        last = pending.ticket.message_ids[-1]
        for part, message_id in enumerate(pending.ticket.message_ids):
            if message_id not in present:
                continue  # unreadable (deleted?): nothing to add to
            shown = min(render.FILES_PER_MESSAGE, count - part * render.FILES_PER_MESSAGE)
            wanted = list(render.NUMBERS[: max(shown, 0)])
            if message_id == last:
                wanted += pending.answers()
            message = self._message(pending, message_id)
            for emoji in wanted:
                if emoji in present[message_id]:
                    continue
                try:
                    await message.add_reaction(emoji)
                except discord.HTTPException as exc:
                    log.warning("run %s: could not add %s (%s)", pending.run.id, emoji, exc.status)

    async def _catch_up(self, pending: _Pending) -> dict[int, set[str]]:
        """Read the reactions given while the bot was away: numbers first, then the answers (when
        both were given, ❌ wins: publishing needs an unambiguous yes). Returns the bot's own
        reactions per message it could read."""
        await self._client.wait_until_ready()
        channel = self._client.get_channel(pending.ticket.channel_id)
        guild = getattr(channel, "guild", None)
        answers: list[tuple[int, str, discord.Member]] = []
        mine: dict[int, set[str]] = {}
        for message_id in pending.ticket.message_ids:
            try:
                message = await self._message(pending, message_id).fetch()
            except discord.HTTPException as exc:
                log.warning(
                    "run %s: cannot read review message %d (%s)",
                    pending.run.id,
                    message_id,
                    exc.status,
                )
                continue
            mine[message_id] = {str(r.emoji) for r in message.reactions if r.me}
            for reaction in message.reactions:
                emoji = str(reaction.emoji)
                answer = emoji in pending.answers()
                interesting = answer or pending.number(message_id, emoji)
                if not interesting or reaction.count <= (1 if reaction.me else 0):
                    continue
                async for user in reaction.users(limit=100):
                    if self._is_me(user.id):
                        continue
                    member = await _member(guild, user.id)
                    if not has_any_role(member, self.config.role_ids):
                        continue
                    assert member is not None
                    if answer:
                        answers.append((message_id, emoji, member))
                    else:
                        self._apply(pending, message_id, emoji, member)
        # ❌ first, then ✅ / ⬆️, then the actions: publishing needs an unambiguous yes, and a
        # decision given meanwhile ends the review before any request for more
        order = (render.REJECT, render.APPROVE, render.UPSCALE, render.REROLL, render.MORE_LIKE)
        answers.sort(key=lambda answer: order.index(answer[1]) if answer[1] in order else 9)
        for message_id, emoji, member in answers:
            self._apply(pending, message_id, emoji, member)
        if answers:
            log.info("run %s: honoured a review answer given while offline", pending.run.id)
        return mine

    async def _remind(self, pending: _Pending) -> None:
        deadline = pending.ticket.deadline
        assert deadline is not None
        channel = self._client.get_partial_messageable(pending.ticket.channel_id)
        try:
            await channel.send(
                render.reminder_text(pending.run, deadline),
                reference=discord.MessageReference(
                    message_id=pending.ticket.message_ids[0],
                    channel_id=pending.ticket.channel_id,
                    fail_if_not_exists=False,
                ),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            log.warning("run %s: the review reminder failed (%s)", pending.run.id, exc.status)

    async def _close_review(self, pending: _Pending, line: str) -> None:
        """Say on the review what became of it and grey its button out (best effort)."""
        ticket = pending.ticket
        last = self._message(pending, ticket.message_ids[-1])
        parts = len(ticket.message_ids)
        closed = ReviewMarker(pending.run.id, parts, parts, ticket.deadline, closed=True)
        try:
            message = await last.fetch()
            await last.edit(
                content=render.clip(f"{message.content}\n{line}", render.CONTENT_LIMIT),
                # the button greyed out, its marker kept: the set stays whole and is never
                # taken up again
                view=MarkerView(closed),
                allowed_mentions=discord.AllowedMentions.none(),
            )
        except discord.HTTPException as exc:
            log.warning("run %s: could not mark the review closed (%s)", pending.run.id, exc.status)

    async def _attachments(
        self, run: Run, folder: Path, chunk: Sequence[int], first: int
    ) -> tuple[list[discord.File], list[str], list[str]]:
        files: list[discord.File] = []
        lines: list[str] = []
        notes: list[str] = []
        for offset, index in enumerate(chunk):
            item = run.media[index]
            number = first + offset
            lines.append(render.image_line(number, render.NUMBERS[offset], item))
            path = await self._uploadable(run, folder, item, number)
            if path is None:
                notes.append(f"#{number} is too large to show here; it is kept for publishing.")
                continue
            files.append(discord.File(path, filename=f"{number:02d}-{path.name}"))
        return files, lines, notes

    async def _uploadable(
        self, run: Run, folder: Path, item: MediaItem, number: int
    ) -> Path | None:
        """The file to attach: the original when small enough, else its preview (the pipeline's
        policy: a JPEG, or a smaller MP4 for a video; the original stays for publishing); None
        for a video that cannot be shown under the limit."""
        path = await review_preview(folder, item.path, item.kind, self.config.upload_limit)
        if path is None:
            log.info("run %s: #%d is listed without a file", run.id, number)
        return path


def _with_script(
    run: Run, files: list[discord.File], notes: list[str]
) -> tuple[list[discord.File], list[str]]:
    """The last review message's files and notes with a narrated run's script: in the text, or
    as an attached file when long (and there is room for one more file)."""
    note, data = render.script_note(run)
    if note is None:
        return files, notes
    if data is not None:
        if len(files) >= render.FILES_PER_MESSAGE:
            return files, notes  # a narrated run has one reel: this is not reached
        files = [*files, discord.File(io.BytesIO(data), filename=render.SCRIPT_FILE)]
    return files, [*notes, note]


def _same_review(
    found: Sequence[tuple[discord.Message, ReviewMarker]], marker: ReviewMarker
) -> bool:
    """Whether `marker` belongs to the posting of `found` (same size, same deadline)."""
    first = found[0][1]
    return (first.parts, first.deadline) == (marker.parts, marker.deadline)


async def _member(guild: discord.Guild | None, user_id: int) -> discord.Member | None:
    if guild is None:
        return None
    member = guild.get_member(user_id)
    if member is not None:
        return member
    try:
        return await guild.fetch_member(user_id)
    except discord.HTTPException:
        return None
