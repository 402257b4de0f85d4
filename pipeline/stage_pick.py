"""A person's pick between a strategy's stages (`review_between_stages: true`), kept in the store.

`RunStagePicker` is the strategies' `StagePicker` for one run: it saves the drafts and the pending
pick on the run before it asks, the ticket once the pick is posted, and the answer once given, so
a restart while waiting waits on the same pick (the Reviewer reads the answers given meanwhile),
and a restart after the pick never asks again (the drafts themselves are never made twice: their
units are done on disk). Nobody answering before the deadline means the best by score go on.
Imports domain models and ports; never bot, discord or a concrete reviewer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from pipeline.models import MediaItem, MediaKind, Run, StagePick
from pipeline.ports import REVIEW_STEP, Progress, ProgressSink, RunStore, StageReviewer
from strategies.base import Draft
from strategies.media import media_kind

log = logging.getLogger(__name__)

#: who a pick is by when nobody answered before its deadline
TIMEOUT = "timeout"


def pending_pick(run: Run) -> StagePick | None:
    """The run's pick between stages when it is posted and not answered yet."""
    pick = run.stage_pick
    if pick is None or pick.chosen is not None or pick.ticket is None:
        return None
    return pick


def best_first(keep: int, drafts: int) -> tuple[int, ...]:
    """What goes on without a person: the first `keep` drafts (they are shown best first)."""
    return tuple(range(min(max(keep, 1), drafts)))


class RunStagePicker:
    """The StagePicker of one run over a StageReviewer; `run` is the latest saved form."""

    def __init__(
        self,
        run: Run,
        folder: Path,
        store: RunStore,
        reviewer: StageReviewer,
        sink: ProgressSink | None = None,
    ) -> None:
        self.run = run
        self.folder = folder
        self.store = store
        self.reviewer = reviewer
        self.sink = sink

    async def pick(self, stage: str, drafts: Sequence[Draft], keep: int) -> Sequence[int]:
        pick = self.run.stage_pick
        items = await asyncio.to_thread(self._items, stage, drafts)
        if pick is None or pick.stage != stage or pick.drafts != items:
            pick = await self._save(StagePick(stage=stage, drafts=items, keep=keep))
        if pick.chosen is not None:
            log.info("run %s: the pick after %s was made already", self.run.id, stage)
            return pick.chosen
        if pick.ticket is None:
            ticket = await self.reviewer.request_pick(self.run, self.folder, pick)
            pick = await self._save(replace(pick, ticket=ticket))
        assert pick.ticket is not None
        self._waiting(True)
        try:
            decision = await self.reviewer.wait_pick(self.run, pick.ticket, pick)
        finally:
            self._waiting(False)
        if decision is None:
            chosen, by = best_first(pick.keep, len(pick.drafts)), TIMEOUT
            log.info("run %s: nobody picked in time; the best by score go on", self.run.id)
        else:
            valid = tuple(i for i in dict.fromkeys(decision.selected) if 0 <= i < len(items))
            chosen, by = valid or best_first(pick.keep, len(pick.drafts)), decision.by
        await self._save(replace(pick, chosen=chosen, by=by))
        return chosen

    def _items(self, stage: str, drafts: Sequence[Draft]) -> tuple[MediaItem, ...]:
        """The drafts as the run keeps them (blocking: a GIF's kind is looked at)."""
        return tuple(
            MediaItem(
                path=draft.path.relative_to(self.folder).as_posix(),
                kind=media_kind(draft.path) or MediaKind.IMAGE,
                description_index=draft.description_index,
                stage=stage,
                score=draft.score.value if draft.score else None,
                reason=draft.score.reason if draft.score else None,
            )
            for draft in drafts
        )

    async def _save(self, pick: StagePick) -> StagePick:
        self.run = self.run.advance(self.run.state, stage_pick=pick)
        await self.store.save_run(self.run)
        return pick

    def _waiting(self, waiting: bool) -> None:
        if self.sink is None:
            return
        self.sink.awaiting_review(self.run.id, waiting)
        if waiting:
            self.sink.progress(
                self.run.id, Progress(step=REVIEW_STEP, detail="waiting for a pick of the drafts")
            )
