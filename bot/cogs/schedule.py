"""The hourly schedule: on the hour (UTC, at the configured minute) start the characters due.

A slot is claimed in the store together with its new run (one transaction): a restart or a
second instance never runs it twice, and a stop right after the claim leaves a run to resume.
The tick catches and logs everything; decisions are `pipeline.schedule`'s pure functions.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime, time, timedelta

from discord.ext import commands, tasks

from bot.access import SCHEDULE_REQUESTER
from bot.services import Services, services_of
from pipeline.characters import Character
from pipeline.errors import MediaOverloadError, RunError
from pipeline.models import Job, Run, RunState, utcnow
from pipeline.schedule import Candidate, decide, slot_key, slot_random

log = logging.getLogger(__name__)


class ScheduleCog(commands.Cog):
    def __init__(self, services: Services) -> None:
        self.services = services
        minute = services.settings.schedule_minute
        self.hourly.change_interval(time=[time(hour, minute, tzinfo=UTC) for hour in range(24)])

    async def cog_load(self) -> None:
        if self.services.settings.schedule_enabled:
            self.hourly.start()

    async def cog_unload(self) -> None:
        self.hourly.cancel()

    @tasks.loop(hours=1)  # the times are set in __init__ from settings
    async def hourly(self) -> None:
        await self.tick(utcnow())

    async def tick(self, now: datetime) -> list[str]:
        """Start the characters due at `now`; the ids of the runs started. Never raises."""
        slot = slot_key(now)
        try:
            characters, problems = await asyncio.to_thread(self.services.characters.load_all)
            names = set(await asyncio.to_thread(self.services.characters.names))
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
        candidate = await self._candidate(character, now)
        verdict = decide(candidate, now, slot_random(character.key, slot))
        if not verdict.due:
            log.debug("schedule %s: %s not due (%s)", slot, character.key, verdict.reason)
            return None
        run = Run.new(Job(character=character.key, requested_by=SCHEDULE_REQUESTER))
        # The claim saves the run with it, under the run's lease: no other instance's adoption
        # takes it up before it starts, and a stop right after the claim leaves a `created`
        # run that the next start resumes, never a claimed slot without a run.
        claim = functools.partial(self.services.store.claim_slot_with_run, slot)
        try:
            if not await self.services.runner.submit_claimed(run, claim):
                log.info("schedule %s: %s already claimed elsewhere", slot, character.key)
                return None
        except RunError as exc:
            log.warning("run %s: not started now for slot %s: %s", run.id, slot, exc)
            return None
        log.info("run %s: started by the schedule (%s, slot %s)", run.id, character.key, slot)
        return run.id

    async def _candidate(self, character: Character, now: datetime) -> Candidate:
        store = self.services.store
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


async def setup(bot: commands.Bot) -> None:
    await bot.add_cog(ScheduleCog(services_of(bot)))
