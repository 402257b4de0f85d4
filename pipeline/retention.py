"""Media retention: the folders of old failed, expired and cancelled runs are removed.

`prune_media` walks those runs through the RunStore, removes each run's own folder (as
`pipeline.run.run_folder` names it; never a path outside it, never through a symbolic link) and
notes the prune on the run, so it is not pruned twice and a resume refuses it. Never imports bot.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from pipeline.characters import Character, Characters
from pipeline.errors import CharacterError, CharacterNotFound
from pipeline.lease import Leases, describe
from pipeline.models import PrunedMark, Run, RunState, utcnow
from pipeline.ports import RunnerStore, RunStore
from pipeline.run import run_folder

log = logging.getLogger(__name__)

#: the states whose media are kept for a retry, and pruned once old (published runs keep their
#: chosen files for good; runs in progress or awaiting review are never touched)
PRUNABLE = frozenset({RunState.FAILED, RunState.EXPIRED, RunState.CANCELLED})

#: runs read from the store at a time
PAGE = 200


@dataclass(frozen=True)
class PrunedRun:
    """One run whose folder was (or, in a dry run, would be) removed."""

    run_id: str
    character: str
    state: RunState
    age: timedelta
    size: int
    folder: Path


@dataclass(frozen=True)
class Skipped:
    """An old run whose folder was left alone, and why (a sentence without secrets)."""

    run_id: str
    reason: str


@dataclass(frozen=True)
class PruneReport:
    pruned: tuple[PrunedRun, ...] = ()
    skipped: tuple[Skipped, ...] = ()
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return sum(item.size for item in self.pruned)


async def prune_media(
    store: RunnerStore,
    characters: Characters,
    leases: Leases,
    *,
    days: float,
    now: datetime | None = None,
    dry_run: bool = False,
    busy: Callable[[], Collection[str]] = lambda: (),
) -> PruneReport:
    """Remove the folders of runs in PRUNABLE states last updated more than `days` ago and note
    it on each run (its `updated_at` stays: it still says when the run last changed).

    `days` 0 keeps everything. Each folder goes under the run's lease (`leases`, this
    process's), so a run another process executes is left alone, and a resume elsewhere waits
    for the note and then refuses. `busy` names the runs this process's Runner has (they
    share its lease owner): left alone too, since a `/retry` may have just taken one up.
    """
    if days <= 0:
        return PruneReport(dry_run=dry_run)
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    loaded: dict[str, Character | str] = {}
    pruned: list[PrunedRun] = []
    skipped: list[Skipped] = []
    async for run in _old_runs(store, cutoff):
        if run.pruned is not None or run.id in busy():
            continue
        character = await _character(characters, run.job.character, loaded)
        if isinstance(character, str):
            skipped.append(Skipped(run.id, character))
            continue
        folder = run_folder(character, run.id)
        problem = await asyncio.to_thread(_unsafe, folder, character.output_dir)
        if problem == "":
            continue  # no folder: nothing to free, and the run stays resumable
        if problem is not None:
            skipped.append(Skipped(run.id, problem))
            continue
        size = await asyncio.to_thread(folder_size, folder)
        found = PrunedRun(run.id, run.character, run.state, now - run.updated_at, size, folder)
        if dry_run:
            pruned.append(found)
            continue
        # under the run's lease: no process resumes it while its folder goes
        lease = await leases.take(run.id)
        if not leases.is_ours(lease):
            skipped.append(Skipped(run.id, f"being run by {describe(lease.owner)}"))
            continue
        try:
            problem = await _remove(store, run, folder, busy, now=now, days=days, size=size)
        finally:
            if run.id not in busy():  # a Runner of this process may have taken it up since
                await leases.release(run.id)
        if problem is None:
            pruned.append(found)
        elif problem:
            skipped.append(Skipped(run.id, problem))
    return PruneReport(tuple(pruned), tuple(skipped), dry_run)


async def _remove(
    store: RunStore,
    run: Run,
    folder: Path,
    busy: Callable[[], Collection[str]],
    *,
    now: datetime,
    days: float,
    size: int,
) -> str | None:
    """Remove `run`'s folder and note it on the run: None when done, "" when the run moved on
    since it was listed (not old any more), else why the folder stays."""
    latest = await store.load_run(run.id)
    if latest is None or latest.updated_at != run.updated_at or run.id in busy():
        return ""
    try:
        await asyncio.to_thread(shutil.rmtree, folder)
    except OSError as exc:
        log.warning("run %s: its media folder could not be removed: %s", run.id, exc)
        return f"could not remove its folder ({type(exc).__name__})"
    await store.save_run(replace(latest, pruned=PrunedMark(at=now, after_days=days, freed=size)))
    log.info("run %s: media pruned (%s, %d bytes)", run.id, run.state.value, size)
    return None


async def _old_runs(store: RunStore, cutoff: datetime) -> AsyncIterator[Run]:
    """Every run in a PRUNABLE state last updated before `cutoff`, newest first, read a page
    at a time (the next page is what is older than the oldest of the last one; a prune keeps
    `updated_at`, so the pages stay put while it works)."""
    before = cutoff
    while True:
        page = await store.list_runs(states=PRUNABLE, updated_before=before, limit=PAGE)
        for run in page:
            yield run
        if len(page) < PAGE:
            return
        before = page[-1].updated_at


async def _character(
    characters: Characters, key: str, loaded: dict[str, Character | str]
) -> Character | str:
    """The character, or why its run folder cannot be found."""
    if key not in loaded:
        try:
            loaded[key] = await asyncio.to_thread(characters.load, key)
        except CharacterNotFound:
            loaded[key] = f"its character {key!r} has no file; left alone"
        except CharacterError:
            loaded[key] = f"its character file {key!r} has problems (see `check`); left alone"
    return loaded[key]


def _unsafe(folder: Path, output_dir: Path) -> str | None:
    """Why `folder` must not be removed; "" when there is none; None when it may go."""
    try:
        mode = folder.lstat().st_mode
    except FileNotFoundError:
        return ""
    if stat.S_ISLNK(mode):
        return "its run folder is a symbolic link; left alone"
    if not stat.S_ISDIR(mode):
        return "its run folder is not a folder; left alone"
    if folder.resolve().parent != output_dir.resolve():
        return "its run folder is not inside the character's output folder; left alone"
    return None


def folder_size(folder: Path) -> int:
    """Bytes of the regular files under `folder`, not following symbolic links."""
    total = 0
    for root, _dirs, files in os.walk(folder, followlinks=False):
        for name in files:
            try:
                info = (Path(root) / name).lstat()
            except OSError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def human_size(size: int) -> str:
    """`512 B`, `3.4 MB`, `1.2 GB` (powers of 1024)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
