"""`python -m pipeline prune [--dry-run]` as a user runs it, and what a pruned run says after."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.models import Job, MediaItem, MediaKind, Run, RunFailure, RunState, utcnow
from pipeline.store import connect
from tests.cli import ROOT, run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with copies of the shipped characters and workflows."""
    shutil.copytree(ROOT / "characters", tmp_path / "characters")
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    return tmp_path


def make_run(project: Path, character: str, state: RunState, days: int, sizes: list[int]) -> Run:
    """A run of `character` in `state`, last updated `days` ago, with files of `sizes` bytes
    in its folder (`generation.output_dir` of the shipped file: output/CHARACTER)."""
    base = Run.new(Job(character))
    updated = utcnow() - timedelta(days=days, hours=1)
    media = tuple(
        MediaItem(path=f"image_{n}.png", kind=MediaKind.IMAGE, description_index=0)
        for n in range(len(sizes))
    )
    failure = RunFailure(RunState.DESCRIBED, "ComfyUI failed") if state is RunState.FAILED else None
    made = replace(
        base, state=state, created_at=updated, updated_at=updated, media=media, failure=failure
    )
    folder = project / "output" / character / made.id
    folder.mkdir(parents=True)
    for item, size in zip(media, sizes, strict=True):
        (folder / item.path).write_bytes(b"x" * size)

    async def save() -> None:
        path = project / "data" / "mediaoverload.db"
        path.parent.mkdir(exist_ok=True)
        store = await connect(f"sqlite:///{path}", sqlite_path=path)
        try:
            await store.save_run(made)
        finally:
            await store.close()

    asyncio.run(save())
    return made


def test_prune_lists_what_goes_removes_it_and_a_pruned_run_cannot_be_resumed(
    project: Path,
) -> None:
    """A dry run lists the two old runs and their sizes and removes nothing; the real prune
    removes exactly those and frees what it said; `show` says so and `resume` refuses."""
    failed = make_run(project, "mascot", RunState.FAILED, 40, [1024, 1024, 1024])
    cancelled = make_run(project, "moonlit_tales", RunState.CANCELLED, 31, [2048])
    young = make_run(project, "mascot", RunState.FAILED, 5, [1024])
    published = make_run(project, "mascot", RunState.PUBLISHED, 90, [1024])
    lines = [
        f"{failed.id}  mascot               failed       40 days     3.0 KB  "
        f"output/mascot/{failed.id}",
        f"{cancelled.id}  moonlit_tales        cancelled    31 days     2.0 KB  "
        f"output/moonlit_tales/{cancelled.id}",
    ]

    dry = run(["-m", "pipeline", "prune", "--dry-run"], project)
    assert dry.returncode == 0, dry.stderr
    assert sorted(dry.stdout.splitlines()) == sorted(
        [
            *(f"would remove {line}" for line in lines),
            "dry run: 2 run folder(s) older than 30 days would go, freeing 5.0 KB",
        ]
    )
    for made in (failed, cancelled, young, published):
        assert (project / "output" / made.character / made.id / "image_0.png").exists()

    real = run(["-m", "pipeline", "prune"], project)
    assert real.returncode == 0, real.stderr
    assert sorted(real.stdout.splitlines()) == sorted(
        [
            *(f"removed {line}" for line in lines),
            "2 run folder(s) older than 30 days removed, 5.0 KB freed",
        ]
    )
    assert not (project / "output" / "mascot" / failed.id).exists()
    assert not (project / "output" / "moonlit_tales" / cancelled.id).exists()
    for made in (young, published):
        assert (project / "output" / "mascot" / made.id / "image_0.png").exists()

    today = utcnow().strftime("%Y-%m-%d")
    sentence = f"run {failed.id}'s media were removed on {today} after 30 days; start a new run"
    show = run(["-m", "pipeline", "show", failed.id], project)
    assert f"  pruned: {sentence}" in show.stdout.splitlines()

    resume = run(["-m", "pipeline", "resume", failed.id], project)
    assert resume.returncode == 1
    assert resume.stderr.strip() == sentence

    again = run(["-m", "pipeline", "prune"], project)
    assert again.stdout.splitlines() == ["0 run folder(s) older than 30 days removed, 0 B freed"]


def test_retention_zero_prunes_nothing(project: Path) -> None:
    """MEDIA_RETENTION_DAYS=0 keeps every run's media, however old."""
    old = make_run(project, "mascot", RunState.EXPIRED, 400, [1024])
    result = run(["-m", "pipeline", "prune"], project, MEDIA_RETENTION_DAYS="0")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        "MEDIA_RETENTION_DAYS is 0: media are kept forever; nothing removed"
    ]
    assert (project / "output" / "mascot" / old.id / "image_0.png").exists()
