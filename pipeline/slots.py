"""When a queued post may go out: a character's `publish` block and the pure "next free slot".

No I/O here: the caller (`pipeline.publish.queue`) reads the account's taken times from the
store and claims the slot it is given, under a lock, in one transaction. Imports domain modules
and pydantic only (`pipeline.characters` embeds the block in a character's file).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.models import Platform

Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: how far ahead a free slot is looked for; an account booked beyond it is refused, by name
HORIZON = timedelta(days=366)


class PlatformSlots(BaseModel):
    """One platform's rule: `now`, or local `times` on `days` with a `min_gap_minutes` between
    two posts on the account. No times: as soon as the days and the gap allow."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    now: bool = False
    times: tuple[time, ...] = ()
    days: tuple[Day, ...] = DAYS
    min_gap_minutes: int = Field(default=0, ge=0, le=7 * 24 * 60)

    @model_validator(mode="before")
    @classmethod
    def _now_word(cls, value: Any) -> Any:
        if value == "now":
            return {"now": True}
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ValueError("must be `now` or a mapping with times, days and min_gap_minutes")
        return value

    @field_validator("times", mode="before")
    @classmethod
    def _times(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple):
            raise ValueError('must be a list of local times like ["09:00", "18:30"]')
        parsed = []
        for item in value:
            text = str(item).strip()
            try:
                hours, minutes = text.split(":")
                parsed.append(time(int(hours), int(minutes)))
            except ValueError:
                raise ValueError(f"{text[:16]!r} is not a time like 09:00") from None
        return tuple(sorted(set(parsed)))

    @field_validator("days", mode="before")
    @classmethod
    def _days(cls, value: Any) -> Any:
        if not isinstance(value, list | tuple) or not value:
            raise ValueError("must be a non-empty list of days like [mon, wed, fri]")
        return tuple(str(day).strip().lower()[:3] for day in value)

    @model_validator(mode="after")
    def _alone(self) -> PlatformSlots:
        if self.now and (self.times or self.min_gap_minutes or self.days != DAYS):
            raise ValueError("`now` takes no times, days or gap")
        return self

    @property
    def immediate(self) -> bool:
        """True when a post goes out at once (`now`, or nothing that would hold it)."""
        return self.now or (not self.times and not self.min_gap_minutes and self.days == DAYS)

    @property
    def gap(self) -> timedelta:
        return timedelta(minutes=self.min_gap_minutes)


#: a character's `publish` block: a rule per platform; a platform it does not name posts `now`
PublishBlock = dict[Platform, PlatformSlots]


NOW = PlatformSlots(now=True)


class NoFreeSlot(ValueError):
    """No slot within the horizon (the account is booked a year ahead)."""


def _clash(moment: datetime, busy: Sequence[datetime], gap: timedelta) -> datetime | None:
    """The busy time nearest after which `moment` would be free, or None when it is free: a
    busy time closer than `gap` (or the very same moment)."""
    start = bisect.bisect_right(busy, moment - gap) if gap else bisect.bisect_left(busy, moment)
    clashing = None
    for other in busy[start:]:
        if other - moment >= gap and (gap or other != moment):
            break
        clashing = other
    return clashing


def _local_candidates(rule: PlatformSlots, zone: ZoneInfo, first: date) -> Iterator[datetime]:
    """Each local time on each allowed day from `first` on, in UTC and in order; a time that a
    DST change skips moves forward with the clock (02:30 -> 03:30)."""
    day = first
    last = first + HORIZON
    while day <= last:
        if DAYS[day.weekday()] in rule.days:
            yield from sorted(
                datetime.combine(day, moment, tzinfo=zone).astimezone(UTC) for moment in rule.times
            )
        day += timedelta(days=1)


def _allowed_from(rule: PlatformSlots, zone: ZoneInfo, moment: datetime) -> datetime:
    """`moment`, or local midnight of the next allowed day when its day is not allowed."""
    local = moment.astimezone(zone)
    for ahead in range(8):
        day = local.date() + timedelta(days=ahead)
        if DAYS[day.weekday()] in rule.days:
            if ahead == 0:
                return moment
            return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    raise AssertionError("unreachable: days is never empty")


def next_slot(
    rule: PlatformSlots, zone: ZoneInfo, now: datetime, taken: Iterable[datetime]
) -> datetime:
    """The first moment at or after `now` that `rule` allows and that keeps `rule.gap` from
    every `taken` time of the account (its queued slots and its last post); `now` for `now`.

    Linear in the number of taken times. Raises NoFreeSlot when nothing is free within a year."""
    now = now.astimezone(UTC)
    if rule.now:
        return now
    busy = sorted(moment.astimezone(UTC) for moment in taken)
    gap = rule.gap
    if rule.times:
        for candidate in _local_candidates(rule, zone, now.astimezone(zone).date()):
            if candidate >= now and _clash(candidate, busy, gap) is None:
                return candidate
        raise NoFreeSlot("no free slot within a year")
    candidate = now
    while candidate - now <= HORIZON:
        allowed = _allowed_from(rule, zone, candidate)
        clash = _clash(allowed, busy, gap)
        if clash is None:
            return allowed
        candidate = clash + (gap or timedelta(seconds=1))
    raise NoFreeSlot("no free slot within a year")


__all__ = [
    "DAYS",
    "NOW",
    "NoFreeSlot",
    "PlatformSlots",
    "PublishBlock",
    "next_slot",
]
