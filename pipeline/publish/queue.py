"""The publish queue: an approved run's posts wait in the store for their account's next free
slot (`pipeline.slots`), then go out through the one `PublishService`.

`PublishQueue` is the pipeline's `RunPublisher` (platforms whose rule is `now` post at once, the
others are booked) and the queue's operations for both adapters: what is due and posting it
(`publish_due`: the bot's loop, `python -m pipeline publish-due`), `publish_now`, `unqueue`,
`pending`. A due post is claimed in the store before it is posted, so two instances, or the bot
and cron, never work on one; the post record (`PublishService`) keeps a post from going out
twice even when a claim runs out mid-way. Never imports bot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from pipeline.characters import Character, Characters
from pipeline.errors import MediaOverloadError, RunError
from pipeline.lease import Owner, WallClock, holder_is_gone, this_process
from pipeline.models import Platform, PostRecord, Run, RunFailure, RunState, utcnow
from pipeline.options import run_folder_of
from pipeline.ports import Notifier, PostStore, RunStore
from pipeline.publish.service import PublishService
from pipeline.queued import QueuedPost
from pipeline.slots import next_slot

log = logging.getLogger(__name__)

#: how long a claim on a due post holds: past it, another instance may take the post up (its
#: post record then keeps it from going out twice)
CLAIM_SECONDS = 3600.0


class QueueStore(RunStore, PostStore, Protocol):
    """What the queue reads and writes in the store (`pipeline.store.queue`)."""

    async def book_slot(
        self,
        run_id: str,
        character: str,
        platform: Platform,
        account: str,
        now: datetime,
        pick: Callable[[list[datetime]], datetime],
    ) -> datetime: ...
    async def queued_posts(self, run_id: str | None = None) -> list[QueuedPost]: ...
    async def due_posts(
        self, now: datetime, limit: int = 100, *, held: bool = False
    ) -> list[QueuedPost]: ...
    async def claim_queued(
        self,
        run_id: str,
        platform: Platform,
        owner: str,
        now: datetime,
        until: datetime,
        *,
        replacing: str | None = None,
    ) -> bool: ...
    async def drop_queued(
        self,
        run_id: str,
        platform: Platform | None = None,
        *,
        owner: str | None = None,
        unclaimed_at: datetime | None = None,
    ) -> int: ...


@dataclass(frozen=True)
class Outcome:
    """What `publish_now` or `unqueue` did: the run as it is after, and its post records."""

    run: Run
    posts: tuple[PostRecord, ...] = ()
    #: platforms another process is posting right now (left to it)
    busy: tuple[Platform, ...] = ()


class PublishQueue:
    """Books slots for approved runs and posts what is due, each post claimed once."""

    def __init__(
        self,
        service: PublishService,
        store: QueueStore,
        characters: Characters,
        *,
        notifier: Notifier | None = None,
        owner: Owner | None = None,
        claim_seconds: float = CLAIM_SECONDS,
        clock: WallClock = utcnow,
    ) -> None:
        self.service = service
        self.store = store
        self.characters = characters
        self.notifier = notifier
        self.me = owner or this_process()
        self.owner = str(self.me)
        self.claim = timedelta(seconds=claim_seconds)
        self.clock = clock

    # ------------------------------------------------------------------ the pipeline's step
    async def publish_run(
        self, run: Run, character: Character, run_dir: Path, *, retry_failed: bool = False
    ) -> list[PostRecord]:
        """Post at once to the platforms whose rule is `now` (and those with a record, which
        `PublishService` settles as always); book the next free slot of the others' accounts.
        Booking again is harmless: a post keeps the slot it has."""
        now = self.clock()
        posted = {r.platform for r in await self.store.posts_for_run(run.id)}
        at_once: list[Platform] = []
        for platform, config in character.enabled_platforms().items():
            rule = character.publish_rule(platform)
            if platform in posted or rule.immediate:
                at_once.append(platform)
                continue
            pick = functools.partial(next_slot, rule, character.schedule.zone, now)
            due = await self.store.book_slot(
                run.id, character.key, platform, config.credentials, now, pick
            )
            log.info("run %s: %s queued for %s", run.id, platform.value, due.isoformat())
        if not at_once:
            return []
        return await self.service.publish_run(
            run, character, run_dir, platforms=at_once, retry_failed=retry_failed
        )

    async def run_after_publishing(self, run: Run, character: Character) -> Run:
        """`queued` (with each waiting post's time) while posts wait, else the publish
        service's one rule (`end_state`)."""
        waiting = await self.store.queued_posts(run.id)
        if waiting:
            times = {entry.platform.value: entry.due_at for entry in waiting}
            if run.state is RunState.QUEUED and run.queued == times and run.failure is None:
                return run
            return run.advance(RunState.QUEUED, queued=times, failure=None)
        final = await self.service.run_after_publishing(run, character)
        return replace(final, queued={}) if final.queued else final

    # ------------------------------------------------------------------ the queue's beat
    async def publish_due(self, now: datetime | None = None) -> list[PostRecord]:
        """Post every waiting post whose slot has come and that nobody holds; the records of
        the posts tried. Catches and logs each post's failure (a loop calls it)."""
        now = now or self.clock()
        records: list[PostRecord] = []
        # a claim of a process known to be gone (this host, a dead pid: a restarted bot) is
        # taken over at once rather than after its time
        held = await self.store.due_posts(now, held=True)
        gone = [e for e in held if e.owner and holder_is_gone(e.owner, self.me)]
        for entry in [*gone, *await self.store.due_posts(now)]:
            try:
                records.extend(await self._due_one(entry, now))
            except MediaOverloadError as exc:
                log.error("run %s: queued %s post: %s", entry.run_id, entry.platform.value,
                          exc.user_message)  # fmt: skip
            except Exception:
                log.exception("run %s: queued %s post failed", entry.run_id, entry.platform.value)
        return records

    async def _due_one(self, entry: QueuedPost, now: datetime) -> list[PostRecord]:
        run = await self.store.load_run(entry.run_id)
        if run is None or (run.state.finished and run.state is not RunState.FAILED):
            # its run is gone, cancelled or done: the post never goes out
            await self.store.drop_queued(entry.run_id, entry.platform, unclaimed_at=now)
            return []
        if run.state is not RunState.QUEUED:
            return []  # being published or taken off right now: the next beat looks again
        if not await self.store.claim_queued(
            entry.run_id, entry.platform, self.owner, now, now + self.claim,
            replacing=entry.owner if entry.claimed(now) else None,
        ):  # fmt: skip
            return []  # another instance has it
        if entry.claimed(now):
            log.info("run %s: taking up the %s post of %s, which is gone", run.id,
                     entry.platform.value, entry.owner)  # fmt: skip
        character = await asyncio.to_thread(self.characters.load, run.character)
        try:
            records = await self.service.publish_run(
                run, character, run_folder_of(character, run.id), platforms={entry.platform},
                retry_failed=True,
            )  # fmt: skip
        except MediaOverloadError:  # e.g. the platform was switched off since: not posted
            await self.store.drop_queued(run.id, entry.platform, owner=self.owner)
            await self._settle(run.id, character)
            raise
        # Done: off the queue. (A stop before this line leaves the claim, which runs out or
        # is taken over; the post record then keeps the post from going out twice.)
        await self.store.drop_queued(run.id, entry.platform, owner=self.owner)
        await self._settle(run.id, character)
        return records

    async def _settle(self, run_id: str, character: Character) -> Run | None:
        """Save the run's state once a queued post is out: still queued, or the end state."""
        run = await self.store.load_run(run_id)
        if run is None or run.state is not RunState.QUEUED:
            return run
        final = await self.run_after_publishing(run, character)
        if final is not run:
            await self.store.save_run(final)
            await self._notify(final)
        return final

    # ------------------------------------------------------------------ people's commands
    async def pending(self) -> list[QueuedPost]:
        """What goes out when, soonest first (posts of runs that ended are left out)."""
        entries = await self.store.queued_posts()
        states: dict[str, RunState | None] = {}
        for entry in entries:
            if entry.run_id not in states:
                run = await self.store.load_run(entry.run_id)
                states[entry.run_id] = run.state if run else None
        return [e for e in entries if states[e.run_id] is RunState.QUEUED]

    async def publish_now(self, run_id: str) -> Outcome:
        """Post a queued run (or one taken off the queue, or failed at publishing) at once,
        to every platform not posted yet; a post another process is making is left to it."""
        run = await self._approved(run_id)
        if run.state not in {RunState.QUEUED, RunState.FAILED}:
            raise RunError(
                f"run {run.id} is {run.state.value}; only a queued run (or one taken off the"
                " queue) is posted now"
            )
        character = await asyncio.to_thread(self.characters.load, run.character)
        now = self.clock()
        busy: list[Platform] = []
        for entry in await self.store.queued_posts(run.id):
            if not await self.store.claim_queued(
                run.id, entry.platform, self.owner, now, now + self.claim
            ):
                busy.append(entry.platform)
        wanted = [p for p in character.enabled_platforms() if p not in busy]
        folder = run_folder_of(character, run.id)
        records: list[PostRecord] = []
        try:
            if wanted:
                records = await self.service.publish_run(
                    run, character, folder, platforms=wanted, retry_failed=True
                )
        except MediaOverloadError:
            await self.store.drop_queued(run.id, owner=self.owner)
            raise
        await self.store.drop_queued(run.id, owner=self.owner)
        final = await self.run_after_publishing(run, character)
        if final is not run:
            await self.store.save_run(final)
            await self._notify(final)
        log.info("run %s: published now (%s)", run.id, final.state.value)
        return Outcome(final, tuple(records), tuple(busy))

    async def unqueue(self, run_id: str, by: str) -> Outcome:
        """Take a queued run's waiting posts off: none of them goes out. The run ends failed
        at publishing, saying so; `/retry` (or `resume`) queues it again into the next free
        slots, `/publish-now` posts it at once. A post being made right now is left to finish."""
        run = await self._approved(run_id)
        if run.state is not RunState.QUEUED:
            raise RunError(f"run {run.id} is {run.state.value}, not queued")
        now = self.clock()
        await self.store.drop_queued(run.id, unclaimed_at=now)
        busy = tuple(e.platform for e in await self.store.queued_posts(run.id))
        off = sorted(set(run.queued) - {p.value for p in busy})
        message = (
            f"taken off the publish queue by {by[:64]}; not posted to {', '.join(off) or 'any'}."
            " /retry queues it again, /publish-now posts it now"
        )
        final = run.advance(
            RunState.FAILED,
            queued={},
            failure=RunFailure(state=RunState.PUBLISHING, message=message),
        )
        await self.store.save_run(final)
        await self._notify(final)
        log.info("run %s: unqueued by %s", run.id, by[:64])
        return Outcome(final, (), busy)

    async def _approved(self, run_id: str) -> Run:
        run = await self.store.load_run(run_id)
        if run is None:
            raise RunError(f"no run with id {run_id[:32]!r}")
        if run.decision is None or not run.decision.approved:
            raise RunError(f"run {run.id} is {run.state.value}, not approved")
        return run

    async def _notify(self, run: Run) -> None:
        if self.notifier is None:
            return
        try:
            await self.notifier.run_changed(run, await self.store.posts_for_run(run.id))
        except Exception:  # a notice that fails must not undo the post it reports on
            log.exception("could not send the notice for run %s", run.id)


__all__ = ["CLAIM_SECONDS", "Outcome", "PublishQueue", "QueueStore"]
