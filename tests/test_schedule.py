"""The schedule's pure rules: which characters are due at an hour, by their own clock."""

from __future__ import annotations

from datetime import UTC, datetime
from random import Random

import pytest

from pipeline.characters import Chance, QuietHours, Schedule
from pipeline.models import Platform
from pipeline.schedule import Candidate, decide, due, hour_matches, slot_key, slot_random

WINTER_9_BERLIN = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)  # 09:00 CET


def berlin(**changes: object) -> Schedule:
    values: dict[str, object] = {"enabled": True, "timezone": "Europe/Berlin", "hours": [9, 19]}
    values.update(changes)
    return Schedule.model_validate(values)


def test_a_slot_is_the_utc_hour() -> None:
    """Slots read like 2026-11-25T08 whatever the character's zone."""
    assert slot_key(WINTER_9_BERLIN) == "2026-11-25T08"
    assert slot_key(datetime(2026, 11, 25, 8, 59, 59, tzinfo=UTC)) == "2026-11-25T08"


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (WINTER_9_BERLIN, True),
        (datetime(2026, 11, 25, 9, 0, tzinfo=UTC), False),  # 10:00 in Berlin
        (datetime(2026, 7, 1, 7, 0, tzinfo=UTC), True),  # 09:00 CEST in summer
    ],
    ids=["winter-9", "winter-10", "summer-9"],
)
def test_hours_are_read_in_the_characters_time_zone(moment: datetime, expected: bool) -> None:
    """hours: [9] means nine o'clock where the character lives, summer or winter."""
    assert hour_matches(berlin(), moment) is expected


def test_every_n_hours_counts_from_local_midnight() -> None:
    """every_hours: 6 runs at 0, 6, 12 and 18 local time."""
    schedule = Schedule(enabled=True, timezone="Asia/Tokyo", every_hours=6)
    local_hours = [h for h in range(24) if hour_matches(schedule, _tokyo(h))]
    assert local_hours == [0, 6, 12, 18]


def _tokyo(hour: int) -> datetime:
    return datetime(2026, 11, 25, (hour - 9) % 24, tzinfo=UTC)


def test_quiet_hours_win_over_a_due_hour() -> None:
    """A due hour inside the quiet hours is skipped."""
    schedule = berlin(hours=[9, 23], quiet_hours=QuietHours(start=22, end=7))
    at_23 = datetime(2026, 11, 25, 22, 0, tzinfo=UTC)
    assert not hour_matches(schedule, at_23)
    assert hour_matches(schedule, WINTER_9_BERLIN)


def test_a_character_in_review_is_skipped() -> None:
    """While its last run waits for a reviewer, no new run starts."""
    verdict = decide(Candidate("a", berlin(), in_review=True), WINTER_9_BERLIN, Random(1))
    assert not verdict.due
    assert "review" in verdict.reason


def test_a_used_up_daily_budget_skips_the_run() -> None:
    """X's free tier allows 17 posts a day: at 17 in the last 24 hours, no run starts."""
    schedule = berlin(daily_budget={Platform.TWITTER: 17})
    spent = Candidate(
        "a", schedule, platforms=[Platform.TWITTER], posts_today={Platform.TWITTER: 17}
    )
    room = Candidate(
        "a", schedule, platforms=[Platform.TWITTER], posts_today={Platform.TWITTER: 16}
    )
    assert not decide(spent, WINTER_9_BERLIN, Random(1)).due
    assert decide(room, WINTER_9_BERLIN, Random(1)).due


def test_the_chance_rule_is_the_same_for_every_instance_of_a_slot() -> None:
    """Two instances deciding the same slot draw the same number."""
    schedule = berlin(chance=Chance(base=0.5))
    candidates = [Candidate(f"c{i}", schedule, hours_since_success=0) for i in range(40)]
    first = [v.due for v in due(candidates, WINTER_9_BERLIN)]
    second = [v.due for v in due(candidates, WINTER_9_BERLIN)]
    assert first == second
    assert 5 < sum(first) < 35  # about half


def test_the_chance_grows_with_the_hours_since_the_last_success() -> None:
    """With base 0 and growth 0.1 an hour, ten hours without a post make it certain."""
    schedule = berlin(chance=Chance(base=0.0, growth_per_hour=0.1))
    rng = slot_random("a", "2026-11-25T08")
    assert not decide(Candidate("a", schedule, hours_since_success=0), WINTER_9_BERLIN, rng).due
    assert decide(Candidate("a", schedule, hours_since_success=10), WINTER_9_BERLIN, rng).due


def test_a_disabled_schedule_never_runs() -> None:
    """enabled: false keeps a character out of the schedule."""
    schedule = Schedule(enabled=False, hours=[8])
    assert not decide(Candidate("a", schedule), WINTER_9_BERLIN, Random(1)).due
