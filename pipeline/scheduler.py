"""The schedule's tick: start the characters due at a time (`pipeline.schedule` decides).

A slot is claimed in the store together with its new run (one transaction), under the run's
lease: a restart or a second instance never runs it twice, and a stop right after the claim
leaves a run to resume. The tick catches and logs everything. The loop that calls it belongs
to the adapter (the bot's hourly `tasks.loop`, the soak's fast hours). Never imports bot.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import datetime, timedelta
from typing import Protocol

from pipeline.characters import Character, Characters
from pipeline.errors import MediaOverloadError, RunError
from pipeline.models import Job, Run, RunState
from pipeline.ports import RunStore
from pipeline.runner import Runner
from pipeline.schedule import SCHEDULE_REQUESTER, Candidate, decide, slot_key, slot_random

log = logging.getLogger(__name__)


class ScheduleStore(RunStore, Protocol):
    """What the tick reads and claims in the store."""

    async def count_posts(self, platform: str, account: str, since: datetime) -> int: ...

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        """Claim `run.character`'s `slot` and save `run`, in one transaction; False (nothing
        saved) when the slot was claimed already."""
        ...


class Scheduler:
    """Starts the characters due at a tick through `runner`, each slot claimed once."""

    def __init__(
        self,
        characters: Characters,
        store: ScheduleStore,
        runner: Runner,
        *,
        requester: str = SCHEDULE_REQUESTER,
    ) -> None:
        self.characters = characters
        self.store = store
        self.runner = runner
        self.requester = requester

    async def tick(self, now: datetime) -> list[str]:
        """Start the characters due at `now`; the ids of the runs started. Never raises."""
        slot = slot_key(now)
        try:
            characters, problems = await asyncio.to_thread(self.characters.load_all)
            names = set(await asyncio.to_thread(self.characters.names))
        except Exception:
            log.exception("schedule %s: cannot read the characters", slot)
            return []
        if problems:
            log.warning("schedule %s: %d problem(s) in character files", slot, len(problems))
        started: list[str] = []
        for character in characters:
            if character.key not in names or not character.schedule.enabled:
                continue
            try:
                run_id = await self._maybe_start(character, now, slot)
            except MediaOverloadError as exc:  # the store or a disk away: a sentence, no traceback
                log.error("schedule %s: %s failed: %s", slot, character.key, exc.user_message)
                continue
            except Exception:
                log.exception("schedule %s: %s failed", slot, character.key)
                continue
            if run_id is not None:
                started.append(run_id)
        return started

    async def _maybe_start(self, character: Character, now: datetime, slot: str) -> str | None:
        candidate = await self.candidate(character, now)
        verdict = decide(candidate, now, slot_random(character.key, slot))
        if not verdict.due:
            log.debug("schedule %s: %s not due (%s)", slot, character.key, verdict.reason)
            return None
        run = Run.new(Job(character=character.key, requested_by=self.requester))
        # The claim saves the run with it, under the run's lease: no other instance's adoption
        # takes it up before it starts, and a stop right after the claim leaves a `created`
        # run that the next start resumes, never a claimed slot without a run.
        claim = functools.partial(self.store.claim_slot_with_run, slot)
        try:
            if not await self.runner.submit_claimed(run, claim):
                log.info("schedule %s: %s already claimed elsewhere", slot, character.key)
                return None
        except RunError as exc:
            log.warning("run %s: not started now for slot %s: %s", run.id, slot, exc)
            return None
        log.info("run %s: started by the schedule (%s, slot %s)", run.id, character.key, slot)
        return run.id

    async def candidate(self, character: Character, now: datetime) -> Candidate:
        """What `decide` needs of `character` at `now`, read from the store."""
        store = self.store
        schedule = character.schedule
        platforms = character.enabled_platforms()
        since = now - timedelta(hours=24)
        posts = {
            platform: await store.count_posts(platform.value, config.credentials, since)
            for platform, config in platforms.items()
            if platform in schedule.daily_budget
        }
        last = await store.list_runs(character=character.key, limit=1)
        published = await store.list_runs(
            states={RunState.PUBLISHED}, character=character.key, limit=1
        )
        hours = (now - published[0].updated_at).total_seconds() / 3600 if published else None
        return Candidate(
            key=character.key,
            schedule=schedule,
            platforms=tuple(platforms),
            posts_today=posts,
            hours_since_success=hours,
            in_review=bool(last) and last[0].state is RunState.AWAITING_REVIEW,
        )


__all__ = ["ScheduleStore", "Scheduler"]
