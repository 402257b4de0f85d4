"""Readings of published posts as the store keeps them (`post_metrics`): when each is due,
its state, and the counts read. Domain records only; imports models and ports, so the store
can use them without loading the publishers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

from pipeline.models import Platform
from pipeline.ports import PostMetrics

#: when each reading is due, after the post went out
CHECKPOINTS: tuple[tuple[str, timedelta], ...] = (
    ("1h", timedelta(hours=1)),
    ("24h", timedelta(hours=24)),
    ("7d", timedelta(days=7)),
)
CHECKPOINT_ORDER = {name: index for index, (name, _) in enumerate(CHECKPOINTS)}


class ReadingState(StrEnum):
    """A reading's state: due (maybe again, after a failed try), claimed by one collector,
    read, or missed (tried as often as allowed, or not readable at all)."""

    DUE = "due"
    CLAIMED = "claimed"
    READ = "read"
    MISSED = "missed"


@dataclass(frozen=True)
class Reading:
    """One reading of one post at one checkpoint, as the store keeps it."""

    run_id: str
    platform: Platform
    checkpoint: str
    account: str
    remote_id: str
    due_at: datetime
    state: ReadingState = ReadingState.DUE
    attempts: int = 0


@dataclass(frozen=True)
class MetricRow:
    """A reading that was made: the counts of one post of one run at one checkpoint."""

    run_id: str
    platform: Platform
    checkpoint: str
    metrics: PostMetrics


class MetricsStore(Protocol):
    """What collection, stats and learning need of the store (`pipeline.store.SqlStore`)."""

    async def plan_readings(
        self,
        checkpoints: Sequence[tuple[str, timedelta]],
        platforms: Sequence[Platform],
        limit: int,
    ) -> int:
        """Write the due readings of posted posts on `platforms` that have none yet; how many."""
        ...

    async def claim_readings(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[Reading]:
        """Claim up to `limit` readings due at `now` (or claimed by someone whose claim ended)
        for `owner` until `until`; each claimed reading goes to exactly one caller."""
        ...

    async def finish_reading(
        self, reading: Reading, owner: str, metrics: PostMetrics, now: datetime
    ) -> None: ...
    async def postpone_reading(
        self, reading: Reading, owner: str, due_at: datetime, *, attempts: int, note: str
    ) -> None: ...
    async def miss_reading(self, reading: Reading, owner: str, note: str) -> None: ...
    async def recent_run_data(self, character: str, limit: int) -> list[str]:
        """The stored JSON of `character`'s latest `limit` runs (for stats and learning)."""
        ...

    async def metrics_of(self, character: str) -> list[MetricRow]:
        """Every reading made of `character`'s posts."""
        ...
