"""What people read of the publish queue: a queued run's card and notice give each platform's
time (in the reader's own zone, by Discord's timestamps); /queue groups by account and cuts a
long list at whole lines, saying how many are left out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot import render
from pipeline.models import Job, Platform, Run, RunState
from pipeline.queued import QueuedPost

DUE = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def queued() -> Run:
    run = Run.new(Job("fox"), run_id="abc123def456")
    return run.advance(RunState.QUEUED, queued={"instagram": DUE, "bluesky": DUE - timedelta(1)})


def test_a_queued_runs_card_gives_each_platforms_time() -> None:
    text = render.outcome(queued())
    stamp = int(DUE.timestamp())
    assert "approved and queued" in text
    assert f"instagram: <t:{stamp}:f> (<t:{stamp}:R>)" in text
    assert text.index("bluesky") < text.index("instagram")  # soonest first
    assert "resumes after a restart" not in text


def test_a_queued_run_is_announced_with_its_times() -> None:
    text = render.notice(queued())
    assert text is not None
    assert "is queued" in text
    assert f"<t:{int(DUE.timestamp())}:f>" in text


def entry(number: int, account: str = "fox_ig") -> QueuedPost:
    due = DUE + timedelta(hours=number)
    return QueuedPost(f"run{number:08d}", Platform.INSTAGRAM, account, "fox", due, DUE)


def test_queue_list_groups_by_account() -> None:
    text = render.queue_list([entry(1), entry(2, "moon_ig"), entry(3)])
    lines = text.splitlines()
    assert lines[0] == "**instagram** · fox_ig"
    assert [line.split("`")[1] for line in lines[1:3]] == ["run00000001", "run00000003"]
    assert lines[3] == "**instagram** · moon_ig"


def test_a_long_queue_is_cut_at_whole_lines_with_the_count_left_out() -> None:
    entries = [entry(n) for n in range(100)]
    text = render.queue_list(entries)
    assert len(text) <= render.CONTENT_LIMIT
    shown = text.count("\N{BULLET}")
    assert text.splitlines()[-1] == f"\N{HORIZONTAL ELLIPSIS} and {100 - shown} more post(s)"
    assert 0 < shown < 100


def test_an_empty_queue_says_so() -> None:
    assert "empty" in render.queue_list([])
