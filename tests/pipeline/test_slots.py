"""The publish block and the next free slot: local times in the character's zone (across a DST
change), days, the minimum gap per account, `now`; broken blocks name file, line and key."""

from __future__ import annotations

import itertools
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from pipeline.characters import Characters
from pipeline.errors import CharacterError
from pipeline.models import Platform
from pipeline.prompts.library import TemplateLibrary
from pipeline.slots import NOW, NoFreeSlot, PlatformSlots, next_slot

PROJECT = Path(__file__).resolve().parents[2]
BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: ZoneInfo = BERLIN) -> datetime:
    """A local time in `zone` (e.g. "2026-03-27 10:00"), as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=zone).astimezone(UTC)


def rule(**fields: object) -> PlatformSlots:
    return PlatformSlots.model_validate(fields)


CASES = [
    ("now-is-at-once", NOW, "2026-06-01 07:13", [], "2026-06-01 07:13"),
    ("next-time-today", rule(times=["09:00", "18:30"]), "2026-06-01 10:00", [], "2026-06-01 18:30"),
    ("first-time-tomorrow", rule(times=["09:00"]), "2026-06-01 10:00", [], "2026-06-02 09:00"),
    (
        "taken-slot-goes-to-the-next",
        rule(times=["09:00", "18:30"]),
        "2026-06-01 08:00",
        ["2026-06-01 09:00"],
        "2026-06-01 18:30",
    ),
    (
        "only-its-days",  # 2026-06-05 is a Friday
        rule(times=["09:00"], days=["mon", "wed"]),
        "2026-06-05 08:00",
        [],
        "2026-06-08 09:00",
    ),
    (
        "gap-skips-close-slots",
        rule(times=["09:00", "10:00", "18:00"], min_gap_minutes=180),
        "2026-06-01 08:00",
        ["2026-06-01 08:30"],  # the account's last post
        "2026-06-01 18:00",
    ),
    (
        "gap-holds-before-a-later-slot-too",
        rule(times=["09:00", "12:00", "15:00"], min_gap_minutes=240),
        "2026-06-01 08:00",
        ["2026-06-01 12:00"],
        "2026-06-02 09:00",
    ),
    (
        "gap-only-waits-after-the-last",
        rule(min_gap_minutes=60),
        "2026-06-01 10:00",
        ["2026-06-01 09:30", "2026-06-01 10:45"],
        "2026-06-01 11:45",
    ),
    (
        "gap-only-free-account-is-now",
        rule(min_gap_minutes=60),
        "2026-06-01 10:00",
        [],
        "2026-06-01 10:00",
    ),
    (
        "days-only-waits-for-the-day",
        rule(days=["sat"], min_gap_minutes=30),
        "2026-06-05 10:00",
        [],
        "2026-06-06 00:00",
    ),
    (
        "dst-spring-keeps-the-local-hour",  # Berlin moves to summer time on 2026-03-29
        rule(times=["09:00"]),
        "2026-03-28 10:00",
        [],
        "2026-03-29 09:00",
    ),
    (
        "dst-skipped-time-moves-with-the-clock",  # 02:30 does not exist that night
        rule(times=["02:30"]),
        "2026-03-29 00:00",
        [],
        "2026-03-29 03:30",
    ),
    (
        "dst-autumn-keeps-the-local-hour",  # back to winter time on 2026-10-25
        rule(times=["09:00"]),
        "2026-10-24 10:00",
        [],
        "2026-10-25 09:00",
    ),
]


@pytest.mark.parametrize(
    ("slots", "now", "taken", "expected"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_next_slot(slots: PlatformSlots, now: str, taken: list[str], expected: str) -> None:
    """The first local slot from now that the days allow and that keeps the gap."""
    assert next_slot(slots, BERLIN, at(now), [at(t) for t in taken]) == at(expected)


def test_dst_change_moves_the_utc_hour() -> None:
    """09:00 in Berlin is 08:00 UTC in winter and 07:00 UTC in summer."""
    winter = next_slot(rule(times=["09:00"]), BERLIN, at("2026-03-28 10:00"), [])
    assert winter == datetime(2026, 3, 29, 7, tzinfo=UTC)
    assert next_slot(rule(times=["09:00"]), BERLIN, at("2026-03-27 08:00"), []).hour == 8


def test_many_taken_slots_are_walked_past_in_order() -> None:
    """A year's queue of one account fills slot after slot; never one closer than the gap."""
    slots = rule(times=["09:00", "13:00", "19:00"], min_gap_minutes=300)
    now = at("2026-01-01 00:00")
    taken: list[datetime] = []
    for _ in range(200):
        taken.append(next_slot(slots, BERLIN, now, taken))
    ordered = sorted(taken)
    assert all(b - a >= timedelta(minutes=300) for a, b in itertools.pairwise(ordered))
    assert len(set(taken)) == 200


def test_an_account_booked_a_year_ahead_has_no_free_slot() -> None:
    """A slot is looked for a year ahead, not forever."""
    slots = rule(times=["09:00"], days=["mon"])
    now = at("2026-01-01 00:00")
    taken: list[datetime] = []
    for _ in range(52):
        taken.append(next_slot(slots, BERLIN, now, taken))
    with pytest.raises(NoFreeSlot):
        next_slot(slots, BERLIN, now, taken)


@pytest.mark.parametrize(
    ("value", "immediate"),
    [("now", True), ({}, True), ({"times": ["09:00"]}, False), ({"min_gap_minutes": 5}, False)],
    ids=["now", "empty", "times", "gap"],
)
def test_what_posts_at_once(value: object, immediate: bool) -> None:
    """`now` and an empty rule post at once; times or a gap wait in the queue."""
    assert PlatformSlots.model_validate(value).immediate is immediate


# ---------------------------------------------------------------------------- the character file


@pytest.fixture
def project(tmp_path: Path) -> Path:
    shutil.copytree(PROJECT / "characters", tmp_path / "characters")
    shutil.copytree(PROJECT / "workflows", tmp_path / "workflows")
    return tmp_path


def _with_publish(project: Path, block: str) -> Characters:
    path = project / "characters" / "mascot.yaml"
    path.write_text(path.read_text() + "\npublish:\n" + block)
    return Characters(project / "characters", TemplateLibrary.load())


def test_no_publish_block_posts_everywhere_now() -> None:
    """Today's behaviour: without a block every platform is `now`."""
    mascot = Characters(PROJECT / "characters", TemplateLibrary.load()).load("mascot")
    assert all(mascot.publish_rule(p).immediate for p in Platform)


def test_the_block_is_read(project: Path) -> None:
    """Times sorted, day names in any case, unnamed platforms `now`."""
    block = '  instagram:\n    times: ["18:30", "09:00"]\n    days: [Mon, fri]\n  twitter: now\n'
    mascot = _with_publish(project, block).load("mascot")
    insta = mascot.publish_rule(Platform.INSTAGRAM)
    assert [t.strftime("%H:%M") for t in insta.times] == ["09:00", "18:30"]
    assert insta.days == ("mon", "fri")
    assert mascot.publish_rule(Platform.TWITTER).now
    assert mascot.publish_rule(Platform.BLUESKY).now


#: the line of `publish:` appended to mascot.yaml (after a blank line)
LINES = (PROJECT / "characters" / "mascot.yaml").read_text().count("\n") + 2

BROKEN = [
    (
        "bad-time",
        '  instagram:\n    times: ["25:00"]\n',
        2,
        "publish.instagram.times",
        "'25:00' is not a time like 09:00",
    ),
    ("bad-word", "  twitter: later\n", 1, "publish.twitter", "must be `now` or a mapping"),
    (
        "bad-day",
        "  twitter:\n    times: ['09:00']\n    days: [someday]\n",
        3,
        "publish.twitter.days[0]",
        "must be 'mon'",
    ),
    ("unknown-platform", "  myspace: now\n", 1, "publish.myspace", "must be one of"),
    (
        "negative-gap",
        "  bluesky:\n    min_gap_minutes: -5\n",
        2,
        "publish.bluesky.min_gap_minutes",
        "at least 0",
    ),
    ("unknown-key", "  bluesky:\n    gap: 5\n", 2, "publish.bluesky.gap", "unknown key"),
]


@pytest.mark.parametrize(
    ("block", "line", "key", "words"),
    [c[1:] for c in BROKEN],
    ids=[c[0] for c in BROKEN],
)
def test_a_broken_block_names_file_line_and_key(
    project: Path, block: str, line: int, key: str, words: str
) -> None:
    with pytest.raises(CharacterError) as caught:
        _with_publish(project, block).load("mascot")
    messages = [str(p) for p in caught.value.problems]
    assert any(
        m.startswith(f"characters/mascot.yaml:{LINES + line}: {key}:") and words in m
        for m in messages
    ), messages
