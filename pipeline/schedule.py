"""What the hourly schedule starts: pure functions of a character's schedule, the time and counts.

No I/O here: the caller (`pipeline.scheduler`'s tick) passes the counts (posts in the last 24
hours, last success, whether a review is pending) and claims the slot in the store. Imports
domain modules only.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from random import Random

from pipeline.characters import Schedule
from pipeline.models import Platform

#: who a scheduled run is requested by (it has its own limit of runs at once)
SCHEDULE_REQUESTER = "schedule"


def slot_key(moment: datetime) -> str:
    """The hour a tick belongs to, in UTC, e.g. `2026-11-25T09`: one run per character per slot."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H")


def slot_random(character: str, slot: str) -> Random:
    """The Random of a character's slot: every instance draws the same chance for it."""
    return Random(f"{slot}/{character}")


@dataclass(frozen=True)
class Candidate:
    """What the schedule needs to know of one character at a tick."""

    key: str
    schedule: Schedule
    #: the platforms the character publishes to
    platforms: Collection[Platform] = ()
    #: posts per platform in the last 24 hours (the budget is a rolling day, as X counts it)
    posts_today: Mapping[Platform, int] = field(default_factory=dict)
    hours_since_success: float | None = None
    #: its last run is still waiting for a reviewer
    in_review: bool = False


@dataclass(frozen=True)
class Verdict:
    """Whether a character is due at a tick, and why (for the log)."""

    key: str
    due: bool
    reason: str


def hour_matches(schedule: Schedule, moment: datetime) -> bool:
    """True when the local hour (in the character's zone) is one of its hours or a multiple
    of `every_hours` since local midnight, and not in its quiet hours."""
    local = moment.astimezone(schedule.zone)
    if schedule.quiet_hours is not None and schedule.quiet_hours.contains(local.hour):
        return False
    if schedule.hours is not None:
        return local.hour in schedule.hours
    if schedule.every_hours is not None:
        return local.hour % schedule.every_hours == 0
    return False


def budget_left(candidate: Candidate) -> Platform | None:
    """The first platform whose daily budget is used up, or None when every one has room."""
    for platform in sorted(candidate.platforms):
        budget = candidate.schedule.daily_budget.get(platform)
        if budget is not None and candidate.posts_today.get(platform, 0) >= budget:
            return platform
    return None


def decide(candidate: Candidate, moment: datetime, rng: Random) -> Verdict:
    """Is `candidate` due at `moment`? The chance rule draws from `rng` only when all else says
    yes, so the same seed gives the same answer."""
    schedule = candidate.schedule
    key = candidate.key
    if not schedule.enabled:
        return Verdict(key, False, "schedule disabled")
    if not hour_matches(schedule, moment):
        return Verdict(key, False, "not one of its hours")
    if candidate.in_review:
        return Verdict(key, False, "its last run is still in review")
    spent = budget_left(candidate)
    if spent is not None:
        return Verdict(key, False, f"{spent.value} daily budget used up")
    if schedule.chance is not None:
        chance = schedule.chance.at(candidate.hours_since_success)
        if rng.random() >= chance:
            return Verdict(key, False, f"chance {chance:.0%} said no")
    return Verdict(key, True, "due")


def due(candidates: Collection[Candidate], moment: datetime) -> list[Verdict]:
    """A verdict for each candidate at `moment`, each with its own slot's Random."""
    slot = slot_key(moment)
    return [decide(c, moment, slot_random(c.key, slot)) for c in candidates]
