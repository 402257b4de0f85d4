"""The `post_metrics` table: planned, claimed and finished readings (`pipeline.metrics`).

A mixin of `SqlStore`; the same SQL on SQLite and MySQL. A claim is one guarded UPDATE per
reading, so of two collectors exactly one gets each. Imports domain types and the seam only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from pipeline.models import Platform, PostState
from pipeline.ports import PostMetrics
from pipeline.readings import MetricRow, Reading, ReadingState
from pipeline.store.db import Database, DuplicateKey
from pipeline.store.timestamps import parse_ts, ts

_KEY = "run_id = ? AND platform = ? AND checkpoint = ?"
_CLAIMABLE = "((state = ? AND due_at <= ?) OR (state = ? AND claimed_until <= ?))"


def _key(reading: Reading) -> tuple[str, str, str]:
    return (reading.run_id, reading.platform.value, reading.checkpoint)


def _count(value: Any) -> int | None:
    return None if value is None else int(value)


class MetricsTables:
    """The readings of published posts; mixed into `SqlStore`, which provides `db`."""

    db: Database

    async def plan_readings(
        self,
        checkpoints: Sequence[tuple[str, timedelta]],
        platforms: Sequence[Platform],
        limit: int,
    ) -> int:
        if not platforms:
            return 0
        marks = ", ".join("?" for _ in platforms)
        rows = await self.db.fetchall(
            "SELECT p.run_id, p.platform, p.account, p.remote_id, p.updated_at FROM posts p"  # noqa: S608 (constant SQL, only ? marks)
            f" WHERE p.state = ? AND p.remote_id IS NOT NULL AND p.platform IN ({marks})"
            " AND NOT EXISTS (SELECT 1 FROM post_metrics m"
            " WHERE m.run_id = p.run_id AND m.platform = p.platform)"
            " ORDER BY p.updated_at LIMIT ?",
            (PostState.POSTED.value, *(p.value for p in platforms), int(limit)),
        )
        planned = 0
        for run_id, platform, account, remote_id, posted_at in rows:
            published = parse_ts(posted_at)
            for name, after in checkpoints:
                with contextlib.suppress(DuplicateKey):  # planned meanwhile by another instance
                    await self.db.execute(
                        "INSERT INTO post_metrics (run_id, platform, checkpoint, account,"
                        " remote_id, due_at, state, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, 0)",
                        (run_id, platform, name, account, remote_id, ts(published + after),
                         ReadingState.DUE.value),
                    )  # fmt: skip
                    planned += 1
        return planned

    async def claim_readings(
        self, owner: str, now: datetime, until: datetime, limit: int
    ) -> list[Reading]:
        moment = ts(now)
        claimable = (ReadingState.DUE.value, moment, ReadingState.CLAIMED.value, moment)
        rows = await self.db.fetchall(
            "SELECT run_id, platform, checkpoint, account, remote_id, due_at, attempts"  # noqa: S608 (constant SQL, only ? marks)
            f" FROM post_metrics WHERE {_CLAIMABLE} ORDER BY due_at LIMIT ?",
            (*claimable, int(limit)),
        )
        claimed = []
        for run_id, platform, checkpoint, account, remote_id, due_at, attempts in rows:
            changed = await self.db.execute(
                "UPDATE post_metrics SET state = ?, claimed_by = ?, claimed_until = ?"  # noqa: S608 (constant SQL, only ? marks)
                f" WHERE {_KEY} AND {_CLAIMABLE}",
                (ReadingState.CLAIMED.value, owner, ts(until), run_id, platform, checkpoint,
                 *claimable),
            )  # fmt: skip
            if changed:
                claimed.append(
                    Reading(
                        run_id=run_id,
                        platform=Platform(platform),
                        checkpoint=checkpoint,
                        account=account,
                        remote_id=remote_id,
                        due_at=parse_ts(due_at),
                        state=ReadingState.CLAIMED,
                        attempts=int(attempts),
                    )
                )
        return claimed

    async def finish_reading(
        self, reading: Reading, owner: str, metrics: PostMetrics, now: datetime
    ) -> None:
        await self.db.execute(
            "UPDATE post_metrics SET state = ?, likes = ?, reposts = ?, replies = ?, views = ?,"  # noqa: S608 (constant SQL, only ? marks)
            f" read_at = ?, claimed_by = NULL, claimed_until = NULL, note = NULL WHERE {_KEY}"
            " AND claimed_by = ?",
            (ReadingState.READ.value, metrics.likes, metrics.reposts, metrics.replies,
             metrics.views, ts(now), *_key(reading), owner),
        )  # fmt: skip

    async def postpone_reading(
        self, reading: Reading, owner: str, due_at: datetime, *, attempts: int, note: str
    ) -> None:
        await self.db.execute(
            "UPDATE post_metrics SET state = ?, due_at = ?, attempts = ?, note = ?,"  # noqa: S608 (constant SQL, only ? marks)
            f" claimed_by = NULL, claimed_until = NULL WHERE {_KEY} AND claimed_by = ?",
            (ReadingState.DUE.value, ts(due_at), attempts, note, *_key(reading), owner),
        )

    async def miss_reading(self, reading: Reading, owner: str, note: str) -> None:
        await self.db.execute(
            "UPDATE post_metrics SET state = ?, note = ?, claimed_by = NULL,"  # noqa: S608 (constant SQL, only ? marks)
            f" claimed_until = NULL WHERE {_KEY} AND claimed_by = ?",
            (ReadingState.MISSED.value, note, *_key(reading), owner),
        )

    async def readings_of(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """(platform, checkpoint, state, attempts) of a run's readings, for `show` and tests."""
        rows = await self.db.fetchall(
            "SELECT platform, checkpoint, state, attempts FROM post_metrics WHERE run_id = ?"
            " ORDER BY platform, checkpoint",
            (run_id,),
        )
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    async def recent_run_data(self, character: str, limit: int) -> list[str]:
        """The stored form (JSON) of `character`'s latest `limit` runs, newest first: the
        caller parses them, off the event loop when they are many (`pipeline.learning`)."""
        rows = await self.db.fetchall(
            "SELECT data FROM runs WHERE character_name = ? ORDER BY updated_at DESC, id DESC"
            " LIMIT ?",
            (character, int(limit)),
        )
        return [str(row[0]) for row in rows]

    async def metrics_of(self, character: str) -> list[MetricRow]:
        rows = await self.db.fetchall(
            "SELECT m.run_id, m.platform, m.checkpoint, m.likes, m.reposts, m.replies, m.views"
            " FROM post_metrics m JOIN runs r ON r.id = m.run_id"
            " WHERE r.character_name = ? AND m.state = ? ORDER BY m.run_id, m.platform",
            (character, ReadingState.READ.value),
        )
        return [
            MetricRow(
                run_id=str(r[0]),
                platform=Platform(r[1]),
                checkpoint=str(r[2]),
                metrics=PostMetrics(_count(r[3]), _count(r[4]), _count(r[5]), _count(r[6])),
            )
            for r in rows
        ]
