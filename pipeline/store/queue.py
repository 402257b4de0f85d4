"""The publish queue's tables (`publish_queue`, `publish_accounts`): booking a slot, claiming a
due post, taking posts off. Mixed into `SqlStore`; the policy (which slot, when to post) is
`pipeline.publish.queue`'s and `pipeline.slots`'. Imports domain types and the seam only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from pipeline.models import Platform, PostState
from pipeline.queued import QueuedPost
from pipeline.store.db import Cursor, Database, DuplicateKey
from pipeline.store.timestamps import parse_ts, ts

T = TypeVar("T")

_COLUMNS = "run_id, platform, account, character_name, due_at, queued_at, owner, claimed_until"


def _queued(row: Sequence[Any]) -> QueuedPost:
    return QueuedPost(
        run_id=row[0],
        platform=Platform(row[1]),
        account=row[2],
        character=row[3],
        due_at=parse_ts(row[4]),
        queued_at=parse_ts(row[5]),
        owner=row[6],
        claimed_until=parse_ts(row[7]) if row[7] else None,
    )


class QueueTables:
    """The queue's SQL; `SqlStore` provides `db` and `_in_transaction`."""

    db: Database

    async def _in_transaction(self, work: Callable[[Cursor], Awaitable[T]]) -> T:
        raise NotImplementedError  # SqlStore's

    async def book_slot(
        self,
        run_id: str,
        character: str,
        platform: Platform,
        account: str,
        now: datetime,
        pick: Callable[[list[datetime]], datetime],
    ) -> datetime:
        """The slot of `run_id`'s post on `platform`: the one it has, else `pick(taken)` booked
        for it, where `taken` are the account's queued slots and its last post. One transaction
        that first locks the account's row: two bookings never see the same free slot."""
        key = (platform.value, account)

        async def work(tx: Cursor) -> datetime:
            with contextlib.suppress(DuplicateKey):  # made by another booking: fine
                await tx.execute(
                    "INSERT INTO publish_accounts (platform, account) VALUES (?, ?)",
                    key,
                )
            await tx.execute(  # the lock: held until this transaction ends
                "UPDATE publish_accounts SET allocations = allocations + 1"
                " WHERE platform = ? AND account = ?",
                key,
            )
            mine = await tx.fetchall(
                "SELECT due_at FROM publish_queue WHERE run_id = ? AND platform = ?",
                (run_id, platform.value),
            )
            if mine:
                return parse_ts(mine[0][0])
            rows = await tx.fetchall(
                "SELECT due_at FROM publish_queue WHERE platform = ? AND account = ?", key
            )
            taken = [parse_ts(row[0]) for row in rows]
            last = await tx.fetchall(
                "SELECT MAX(created_at) FROM posts WHERE platform = ? AND account = ?"
                " AND state IN (?, ?, ?)",
                (*key, PostState.POSTING.value, PostState.POSTED.value, PostState.UNCERTAIN.value),
            )
            if last and last[0][0]:
                taken.append(parse_ts(last[0][0]))
            due = pick(taken)
            await tx.execute(
                f"INSERT INTO publish_queue ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, NULL, NULL)",  # noqa: S608 (constant columns)
                (run_id, platform.value, account, character, ts(due), ts(now)),
            )
            return due

        return await self._in_transaction(work)

    async def queued_posts(self, run_id: str | None = None) -> list[QueuedPost]:
        """The waiting posts (of `run_id`, or all), soonest first."""
        where, params = ("WHERE run_id = ? ", (run_id,)) if run_id else ("", ())
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM publish_queue {where}ORDER BY due_at, run_id, platform",  # noqa: S608 (constant parts)
            params,
        )
        return [_queued(row) for row in rows]

    async def due_posts(
        self, now: datetime, limit: int = 100, *, held: bool = False
    ) -> list[QueuedPost]:
        """Posts whose slot has come and that nobody holds now (with `held`: that someone
        holds now), soonest first."""
        claim = "claimed_until > ?" if held else "(claimed_until IS NULL OR claimed_until <= ?)"
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM publish_queue WHERE due_at <= ? AND {claim}"  # noqa: S608 (constant parts)
            " ORDER BY due_at, run_id, platform LIMIT ?",
            (ts(now), ts(now), limit),
        )
        return [_queued(row) for row in rows]

    async def claim_queued(
        self,
        run_id: str,
        platform: Platform,
        owner: str,
        now: datetime,
        until: datetime,
        *,
        replacing: str | None = None,
    ) -> bool:
        """Claim a waiting post for `owner` until `until`: one guarded UPDATE, so of two
        claimers only one gets True. A claim runs out at its time; `replacing` takes over the
        claim of that holder (known to be gone) at once."""
        changed = await self.db.execute(
            "UPDATE publish_queue SET owner = ?, claimed_until = ?"
            " WHERE run_id = ? AND platform = ?"
            " AND (claimed_until IS NULL OR claimed_until <= ? OR owner = ?)",
            (owner, ts(until), run_id, platform.value, ts(now), replacing or owner),
        )
        return bool(changed)

    async def drop_queued(
        self,
        run_id: str,
        platform: Platform | None = None,
        *,
        owner: str | None = None,
        unclaimed_at: datetime | None = None,
    ) -> int:
        """Take waiting posts off (one platform's or all the run's); with `owner`, only those
        it claimed (their post is done); with `unclaimed_at`, only those nobody holds at that
        time. Returns how many went."""
        sql, params = "DELETE FROM publish_queue WHERE run_id = ?", [run_id]
        if platform is not None:
            sql, params = sql + " AND platform = ?", [*params, platform.value]
        if owner is not None:
            sql, params = sql + " AND owner = ?", [*params, owner]
        if unclaimed_at is not None:
            sql += " AND (claimed_until IS NULL OR claimed_until <= ?)"
            params = [*params, ts(unclaimed_at)]
        return await self.db.execute(sql, params)


__all__ = ["QueueTables"]
