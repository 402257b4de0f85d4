"""Media retention: old failed, expired and cancelled runs lose their folders, nothing else does."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline import retention
from pipeline.characters import Characters
from pipeline.errors import RunError
from pipeline.lease import Leases, Owner, this_process
from pipeline.models import (
    Decision,
    Job,
    MediaItem,
    MediaKind,
    Run,
    RunFailure,
    RunState,
)
from pipeline.ports import ProgressSink
from pipeline.prompts.library import TemplateLibrary
from pipeline.retention import prune_media
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.leases import live_process
from tests.runs import make_project

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
YOUNG = NOW - timedelta(days=3)


@pytest.fixture
def characters(tmp_path: Path) -> Characters:
    project = make_project(tmp_path / "project")
    return Characters(project / "characters", TemplateLibrary.load())


def own(store: SqlStore) -> Leases:
    """The leases of this process, as the command line's prune holds runs through them."""
    return Leases(store, this_process(), ttl=90)


def folder_of(characters: Characters, run: Run) -> Path:
    return characters.load("testy").output_dir / run.id


async def saved_run(
    store: SqlStore,
    characters: Characters,
    state: RunState,
    updated: datetime,
    *,
    files: int = 2,
    selected: tuple[int, ...] = (0,),
) -> Run:
    """A run of testy in `state`, last updated at `updated`, with `files` media on disk."""
    run = Run.new(Job("testy"))
    media = tuple(
        MediaItem(path=f"image_{n}.png", kind=MediaKind.IMAGE, description_index=0)
        for n in range(files)
    )
    decision = (
        Decision(approved=True, selected=selected, by="r", at=updated)
        if state is RunState.PUBLISHED
        else None
    )
    failure = RunFailure(RunState.DESCRIBED, "ComfyUI failed") if state is RunState.FAILED else None
    run = replace(
        run,
        state=state,
        created_at=updated,
        updated_at=updated,
        media=media,
        decision=decision,
        failure=failure,
    )
    if files:
        folder = folder_of(characters, run)
        (folder / "fitted" / "twitter").mkdir(parents=True)
        for item in media:
            (folder / item.path).write_bytes(b"x" * 1000)
        (folder / "fitted" / "twitter" / "image_0.jpg").write_bytes(b"y" * 500)
    await store.save_run(run)
    return run


async def test_prune_removes_exactly_the_old_failed_expired_and_cancelled_folders(
    store: SqlStore, characters: Characters
) -> None:
    """Old failed / expired / cancelled runs lose their folders and are marked; young ones,
    published ones and runs in progress or in review keep every file."""
    gone = [
        await saved_run(store, characters, state, OLD)
        for state in (RunState.FAILED, RunState.EXPIRED, RunState.CANCELLED)
    ]
    kept = [
        await saved_run(store, characters, RunState.FAILED, YOUNG),
        await saved_run(store, characters, RunState.EXPIRED, YOUNG),
        await saved_run(store, characters, RunState.PUBLISHED, OLD),
        await saved_run(store, characters, RunState.AWAITING_REVIEW, OLD),
        await saved_run(store, characters, RunState.GENERATED, OLD),
        await saved_run(store, characters, RunState.APPROVED, OLD),
    ]
    report = await prune_media(store, characters, own(store), days=30, now=NOW)

    assert sorted(item.run_id for item in report.pruned) == sorted(run.id for run in gone)
    assert {item.size for item in report.pruned} == {2500}
    assert report.freed == 3 * 2500
    assert report.skipped == ()
    for run in gone:
        assert not folder_of(characters, run).exists()
        stored = await store.load_run(run.id)
        assert stored is not None
        assert stored.state is run.state
        assert stored.updated_at == run.updated_at  # still says when the run last changed
        mark = stored.pruned
        assert mark is not None
        assert (mark.at, mark.after_days, mark.freed) == (NOW, 30, 2500)
    for run in kept:
        folder = folder_of(characters, run)
        assert sorted(p.name for p in folder.rglob("*.*")) == [
            "image_0.jpg",
            "image_0.png",
            "image_1.png",
        ]
        stored = await store.load_run(run.id)
        assert stored is not None
        assert stored.pruned is None

    again = await prune_media(store, characters, own(store), days=30, now=NOW + timedelta(days=1))
    assert again.pruned == ()
    assert again.skipped == ()


async def test_retention_zero_keeps_everything(store: SqlStore, characters: Characters) -> None:
    """MEDIA_RETENTION_DAYS=0: even a year-old failed run keeps its media."""
    run = await saved_run(store, characters, RunState.FAILED, NOW - timedelta(days=365))
    report = await prune_media(store, characters, own(store), days=0, now=NOW)
    assert report.pruned == ()
    assert (folder_of(characters, run) / "image_0.png").exists()


async def test_a_dry_run_lists_and_removes_nothing(store: SqlStore, characters: Characters) -> None:
    """A dry run names the old run and its size, and leaves its files and record alone."""
    run = await saved_run(store, characters, RunState.EXPIRED, OLD)
    report = await prune_media(store, characters, own(store), days=30, now=NOW, dry_run=True)
    assert [(i.run_id, i.state, i.age.days, i.size) for i in report.pruned] == [
        (run.id, RunState.EXPIRED, 40, 2500)
    ]
    assert (folder_of(characters, run) / "image_1.png").exists()
    stored = await store.load_run(run.id)
    assert stored is not None
    assert stored.pruned is None


async def test_a_run_without_a_folder_stays_resumable(
    store: SqlStore, characters: Characters
) -> None:
    """An old run that failed before it made media has nothing to free: it is not marked."""
    run = await saved_run(store, characters, RunState.FAILED, OLD, files=0)
    report = await prune_media(store, characters, own(store), days=30, now=NOW)
    assert report.pruned == ()
    stored = await store.load_run(run.id)
    assert stored is not None
    assert stored.pruned is None


async def test_a_symlink_inside_a_run_folder_is_removed_without_touching_its_target(
    store: SqlStore, characters: Characters, tmp_path: Path
) -> None:
    """A link to a file and a link to a folder outside go with the run folder; what they
    point at stays, and is not counted in the size."""
    outside = tmp_path / "precious"
    (outside / "deep").mkdir(parents=True)
    (outside / "keep.png").write_bytes(b"k" * 4000)
    (outside / "deep" / "also.png").write_bytes(b"k" * 4000)
    run = await saved_run(store, characters, RunState.FAILED, OLD)
    folder = folder_of(characters, run)
    (folder / "link.png").symlink_to(outside / "keep.png")
    (folder / "fitted" / "linked-folder").symlink_to(outside, target_is_directory=True)

    report = await prune_media(store, characters, own(store), days=30, now=NOW)

    assert [(item.run_id, item.size) for item in report.pruned] == [(run.id, 2500)]
    assert not folder.exists()
    assert (outside / "keep.png").read_bytes() == b"k" * 4000
    assert (outside / "deep" / "also.png").read_bytes() == b"k" * 4000


async def test_a_run_folder_that_is_a_symlink_is_left_alone(
    store: SqlStore, characters: Characters, tmp_path: Path
) -> None:
    """A run folder that is itself a link to elsewhere is not followed: skipped, with why."""
    run = await saved_run(store, characters, RunState.FAILED, OLD, files=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "image_0.png").write_bytes(b"e")
    folder = folder_of(characters, run)
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(elsewhere, target_is_directory=True)

    report = await prune_media(store, characters, own(store), days=30, now=NOW)

    assert report.pruned == ()
    assert [(s.run_id, s.reason) for s in report.skipped] == [
        (run.id, "its run folder is a symbolic link; left alone")
    ]
    assert (elsewhere / "image_0.png").read_bytes() == b"e"


async def test_a_run_a_process_works_on_is_left_alone(
    store: SqlStore, characters: Characters
) -> None:
    """An old failed run that a /retry just took up (the Runner has it) keeps its media."""
    run = await saved_run(store, characters, RunState.FAILED, OLD)
    report = await prune_media(
        store, characters, own(store), days=30, now=NOW, busy=lambda: {run.id}
    )
    assert report.pruned == ()
    assert (folder_of(characters, run) / "image_0.png").exists()


async def test_many_old_runs_are_read_page_by_page(
    store: SqlStore, characters: Characters, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More old runs than a page: every one is pruned, already pruned ones do not block it."""
    monkeypatch.setattr(retention, "PAGE", 2)
    first = [
        await saved_run(store, characters, RunState.FAILED, OLD - timedelta(hours=n))
        for n in range(3)
    ]
    assert len((await prune_media(store, characters, own(store), days=30, now=NOW)).pruned) == 3
    later = [
        await saved_run(store, characters, RunState.CANCELLED, OLD + timedelta(hours=n))
        for n in range(1, 4)
    ]
    report = await prune_media(store, characters, own(store), days=30, now=NOW + timedelta(days=1))
    assert sorted(i.run_id for i in report.pruned) == sorted(r.id for r in later)
    for run in [*first, *later]:
        assert not folder_of(characters, run).exists()


async def _never(run: Run, sink: ProgressSink | None) -> Run:
    raise AssertionError("a pruned run must not be executed")


async def test_the_runner_refuses_to_resume_a_pruned_run(
    store: SqlStore, characters: Characters
) -> None:
    """/retry of a pruned run: one sentence saying when its media went and after how long."""
    run = await saved_run(store, characters, RunState.FAILED, OLD)
    await prune_media(store, characters, own(store), days=30, now=NOW)
    runner = Runner(store, _never)
    with pytest.raises(RunError) as caught:
        await runner.resume(run.id)
    assert caught.value.user_message == (
        f"run {run.id}'s media were removed on 2026-12-01 after 30 days; start a new run"
    )
    assert runner.active() == []


async def test_a_run_whose_character_file_is_gone_is_left_and_named(
    store: SqlStore, characters: Characters
) -> None:
    """Without its character file a run's folder cannot be known: it is skipped, with why."""
    run = replace(Run.new(Job("ghost")), state=RunState.FAILED, updated_at=OLD, character="ghost")
    await store.save_run(run)
    report = await prune_media(store, characters, own(store), days=30, now=NOW)
    assert [(s.run_id, s.reason) for s in report.skipped] == [
        (run.id, "its character 'ghost' has no file; left alone")
    ]


async def test_prune_leaves_a_run_another_live_process_is_running(
    store: SqlStore, characters: Characters
) -> None:
    """An old failed run that another process on this host has just taken up again (it holds
    the run's lease) keeps its folder, and the prune says who has it; once that process is
    gone, the next prune removes the folder and releases the lease."""
    run = await saved_run(store, characters, RunState.FAILED, OLD)
    async with live_process() as child:
        other = Owner(this_process().host, child.pid, "f00d")
        await store.take_lease(run.id, str(other), datetime.now(UTC) + timedelta(minutes=5))
        report = await prune_media(store, characters, own(store), days=30, now=NOW)
        assert report.pruned == ()
        assert [(s.run_id, s.reason) for s in report.skipped] == [
            (run.id, f"being run by pid {child.pid} on {other.host}")
        ]
        assert folder_of(characters, run).is_dir()
    report = await prune_media(store, characters, own(store), days=30, now=NOW)
    assert [item.run_id for item in report.pruned] == [run.id]
    assert not folder_of(characters, run).exists()
    assert await store.lease_of(run.id) is None


async def test_a_resume_waits_out_a_prune_and_then_refuses_the_pruned_run(
    store: SqlStore, characters: Characters
) -> None:
    """While another process's prune holds an old run, a resume of it is refused as held;
    after the prune, it is refused with the pruned sentence (the run is read under the
    resume's lease), nothing runs, and the refused resume leaves no lease behind."""
    run = await saved_run(store, characters, RunState.FAILED, OLD)
    started: list[str] = []

    async def execute(run: Run, sink: ProgressSink | None) -> Run:
        started.append(run.id)
        return run

    pruner = Leases(store, Owner("pruner-host", 1, "a1"), ttl=90)
    await pruner.take(run.id)
    runner = Runner(store, execute, owner=Owner("bot-host", 1, "b2"), lease_ttl=90)
    with pytest.raises(RunError, match="being run by another process"):
        await runner.resume(run.id)  # held by the prune
    await prune_media(store, characters, pruner, days=30, now=NOW)
    with pytest.raises(RunError, match="media were removed"):
        await runner.resume(run.id)
    assert started == []
    assert await store.lease_of(run.id) is None, "the refused resume gave its lease back"
