"""`SqlStore`: every operation the pipeline needs, as parameterised SQL over a `Database`.

The same code runs on SQLite and MySQL; only `pipeline.store.db` implementations differ.
Imports domain types and the seam, never a driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from random import Random
from typing import Any, TypeVar

from pipeline.errors import StoreError
from pipeline.models import (
    Platform,
    PostRecord,
    PostState,
    Run,
    RunState,
    post_attempts_from_json,
    post_attempts_to_json,
    utcnow,
)
from pipeline.ports import CatalogCharacter, Lease, NewsItem
from pipeline.store.db import Cursor, Database, DuplicateKey
from pipeline.store.metrics import MetricsTables
from pipeline.store.queue import QueueTables
from pipeline.store.schema import migrate
from pipeline.store.timestamps import parse_ts, ts

log = logging.getLogger(__name__)

T = TypeVar("T")


def _as_datetime(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    for fmt in ("%Y-%m-%d %H:%M:%S.%f", "%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=UTC)
        except ValueError:
            continue
    return datetime.fromisoformat(text)


def weighted_pick(rows: Sequence[CatalogCharacter], rng: Random) -> CatalogCharacter | None:
    """One row chosen with probability proportional to its weight (rows in a stable order)."""
    # a NaN or infinite weight (stored before `add_character` refused them) picks nobody
    candidates = [row for row in rows if math.isfinite(row.weight) and row.weight > 0]
    if not candidates:
        return None
    return rng.choices(candidates, weights=[row.weight for row in candidates], k=1)[0]


_LEASE_OF = "SELECT owner, expires_at FROM run_leases WHERE run_id = ?"


def _lease(run_id: str, row: Sequence[Any]) -> Lease:
    """A `_LEASE_OF` row as a Lease."""
    return Lease(run_id=run_id, owner=row[0], expires_at=parse_ts(row[1]))


class SqlStore(QueueTables, MetricsTables):
    """The Store on any `Database` (with the publish queue's tables of `QueueTables` and the
    metrics tables of `MetricsTables`); build it with `pipeline.store.open_store`."""

    def __init__(self, db: Database, *, retries: int = 3) -> None:
        self.db = db
        self._retries = retries

    async def migrate(self) -> int:
        return await migrate(self.db)

    async def close(self) -> None:
        await self.db.close()

    # ------------------------------------------------------------------ plumbing
    async def _in_transaction(self, work: Callable[[Cursor], Awaitable[T]]) -> T:
        """Run `work` in one transaction, again whole when the connection was lost or the
        server rolled it back as a deadlock's victim."""
        retryable = getattr(self.db, "is_retryable", None)
        for attempt in range(self._retries + 1):
            try:
                async with self.db.transaction() as tx:
                    return await work(tx)
            except Exception as exc:
                if retryable is None or not retryable(exc):
                    raise
                if attempt == self._retries:
                    if isinstance(exc, StoreError):  # the database's own retries gave up too
                        raise
                    raise StoreError(
                        f"a transaction failed {attempt + 1} times in a row ({type(exc).__name__})"
                    ) from exc
                log.warning("transaction failed (%s); retry %d", type(exc).__name__, attempt + 1)
                # jittered: transactions that met retry at different moments, not again together
                await asyncio.sleep(0.2 * 2**attempt * random.uniform(0.5, 1.5))
        raise AssertionError("unreachable: the loop returns or raises")

    # ------------------------------------------------------------------ runs
    async def save_run(self, run: Run) -> None:
        async def work(tx: Cursor) -> None:
            await self._write_run(tx, run)

        await self._in_transaction(work)

    async def _write_run(self, tx: Cursor, run: Run) -> None:
        row = (run.character, run.state.value, ts(run.created_at), ts(run.updated_at))
        await self._upsert(
            tx,
            "runs",
            ("character_name", "state", "created_at", "updated_at", "data"),
            (*row, run.to_json()),
            key=("id", run.id),
        )
        if run.ticket is not None:
            await self._save_review(tx, run)

    async def _save_review(self, tx: Cursor, run: Run) -> None:
        assert run.ticket is not None
        ticket = run.ticket
        decision = run.decision
        state = run.state.value if run.state is not RunState.AWAITING_REVIEW else "pending"
        await self._upsert(
            tx,
            "reviews",
            (
                "channel_id",
                "message_ids",
                "state",
                "reviewer",
                "posted_at",
                "deadline",
                "decided_at",
            ),
            (
                ticket.channel_id,
                json.dumps(list(ticket.message_ids)),
                state,
                decision.by if decision else None,
                ts(ticket.posted_at),
                ts(ticket.deadline) if ticket.deadline else None,
                ts(decision.at) if decision else None,
            ),
            key=("run_id", run.id),
        )

    @staticmethod
    async def _upsert(
        tx: Cursor,
        table: str,
        columns: Sequence[str],
        values: Sequence[object],
        *,
        key: tuple[str, str],
    ) -> None:
        """Write one row by its primary key, on both engines. The row is looked for with a
        plain read first, which takes no lock: an UPDATE or DELETE of a row that is not there
        would take a gap lock in InnoDB, and two such transactions inserting next to each other
        deadlock (twenty runs saved at once did, again on every retry). A row another
        transaction inserted meanwhile is updated instead. Table and column names are this
        module's constants, never input."""
        column, value = key
        params = (*values, value)
        sets = ", ".join(f"{name} = ?" for name in columns)
        update = f"UPDATE {table} SET {sets} WHERE {column} = ?"  # noqa: S608
        if await tx.fetchall(f"SELECT 1 FROM {table} WHERE {column} = ?", (value,)):  # noqa: S608
            await tx.execute(update, params)
            return
        marks = ", ".join("?" for _ in params)
        insert = f"INSERT INTO {table} ({', '.join(columns)}, {column}) VALUES ({marks})"  # noqa: S608
        try:
            await tx.execute(insert, params)
        except DuplicateKey:
            await tx.execute(update, params)

    async def load_run(self, run_id: str) -> Run | None:
        rows = await self.db.fetchall("SELECT data FROM runs WHERE id = ?", (run_id,))
        return Run.from_json(rows[0][0]) if rows else None

    async def list_runs(
        self,
        *,
        states: Collection[RunState] | None = None,
        character: str | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        where: list[str] = []
        params: list[Any] = []
        if states is not None:
            if not states:
                return []
            where.append(f"state IN ({', '.join('?' for _ in states)})")
            params.extend(state.value for state in states)
        if character is not None:
            where.append("character_name = ?")
            params.append(character)
        if updated_before is not None:
            where.append("updated_at < ?")
            params.append(ts(updated_before))
        sql = "SELECT data FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, id DESC LIMIT ?"
        params.append(int(limit))
        return [Run.from_json(row[0]) for row in await self.db.fetchall(sql, params)]

    # ------------------------------------------------------------------ posts
    async def record_post(self, record: PostRecord) -> bool:
        values = (
            record.run_id,
            record.platform.value,
            record.account,
            record.state.value,
            record.remote_id,
            record.url,
            record.error,
            post_attempts_to_json(record.attempts),
            ts(record.created_at),
            ts(record.updated_at),
        )
        try:
            await self.db.execute(
                "INSERT INTO posts (run_id, platform, account, state, remote_id, url, error,"
                " attempts, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                values,
            )
        except DuplicateKey:
            # Ours after all when a retried insert finds the row its lost first try wrote.
            existing = await self.db.fetchall(
                "SELECT created_at, account FROM posts WHERE run_id = ? AND platform = ?",
                (record.run_id, record.platform.value),
            )
            return bool(existing) and existing[0] == (ts(record.created_at), record.account)
        return True

    async def update_post(self, record: PostRecord) -> None:
        changed = await self.db.execute(
            "UPDATE posts SET state = ?, remote_id = ?, url = ?, error = ?, attempts = ?,"
            " updated_at = ? WHERE run_id = ? AND platform = ?",
            (
                record.state.value,
                record.remote_id,
                record.url,
                record.error,
                post_attempts_to_json(record.attempts),
                ts(record.updated_at),
                record.run_id,
                record.platform.value,
            ),
        )
        if not changed:
            rows = await self.db.fetchall(
                "SELECT 1 FROM posts WHERE run_id = ? AND platform = ?",
                (record.run_id, record.platform.value),
            )
            if not rows:
                raise StoreError(f"no post record for run {record.run_id} on {record.platform}")

    async def retry_post(self, record: PostRecord) -> bool:
        """Claim a FAILED record for another try: one UPDATE guarded by the state, so of two
        processes retrying the same post only one gets True."""
        changed = await self.db.execute(
            "UPDATE posts SET state = ?, remote_id = ?, url = ?, error = ?, attempts = ?,"
            " updated_at = ? WHERE run_id = ? AND platform = ? AND state = ?",
            (
                record.state.value,
                record.remote_id,
                record.url,
                record.error,
                post_attempts_to_json(record.attempts),
                ts(record.updated_at),
                record.run_id,
                record.platform.value,
                PostState.FAILED.value,
            ),
        )
        return bool(changed)

    _POST_COLUMNS = (
        "run_id, platform, account, state, remote_id, url, error, attempts, created_at, updated_at"
    )

    @staticmethod
    def _post_from_row(row: Sequence[Any]) -> PostRecord:
        return PostRecord(
            run_id=row[0],
            platform=Platform(row[1]),
            account=row[2],
            state=PostState(row[3]),
            remote_id=row[4],
            url=row[5],
            error=row[6],
            attempts=post_attempts_from_json(row[7]),
            created_at=parse_ts(row[8]),
            updated_at=parse_ts(row[9]),
        )

    async def posts_for_run(self, run_id: str) -> list[PostRecord]:
        rows = await self.db.fetchall(
            f"SELECT {self._POST_COLUMNS} FROM posts WHERE run_id = ? ORDER BY platform",  # noqa: S608 (constant columns)
            (run_id,),
        )
        return [self._post_from_row(row) for row in rows]

    async def posts_in_state(self, states: Collection[PostState]) -> list[PostRecord]:
        """Every post record in one of `states`, oldest first (e.g. POSTING after a crash)."""
        if not states:
            return []
        marks = ", ".join("?" for _ in states)
        rows = await self.db.fetchall(
            f"SELECT {self._POST_COLUMNS} FROM posts WHERE state IN ({marks})"  # noqa: S608 (only ? marks)
            " ORDER BY created_at, run_id, platform",
            [state.value for state in states],
        )
        return [self._post_from_row(row) for row in rows]

    async def count_posts(self, platform: str, account: str, since: datetime) -> int:
        rows = await self.db.fetchall(
            "SELECT COUNT(*) FROM posts WHERE platform = ? AND account = ? AND created_at >= ?"
            " AND state IN (?, ?, ?)",
            (
                platform,
                account,
                ts(since),
                PostState.POSTING.value,
                PostState.POSTED.value,
                PostState.UNCERTAIN.value,
            ),
        )
        return int(rows[0][0])

    # ------------------------------------------------------------------ schedule
    async def claim_slot(self, character: str, slot: str, run_id: str | None = None) -> bool:
        claimed_at = ts(utcnow())
        try:
            await self.db.execute(
                "INSERT INTO schedule_slots (character_name, slot, run_id, claimed_at)"
                " VALUES (?, ?, ?, ?)",
                (character, slot, run_id, claimed_at),
            )
        except DuplicateKey:
            rows = await self.db.fetchall(
                "SELECT claimed_at FROM schedule_slots WHERE character_name = ? AND slot = ?",
                (character, slot),
            )
            return bool(rows) and rows[0][0] == claimed_at  # our own retried insert
        return True

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        """Claim `run.character`'s `slot` and save `run` in one transaction: a stop at any
        moment leaves both or neither, so a claimed slot always has its run to resume."""

        async def work(tx: Cursor) -> bool:
            try:
                await tx.execute(
                    "INSERT INTO schedule_slots (character_name, slot, run_id, claimed_at)"
                    " VALUES (?, ?, ?, ?)",
                    (run.character, slot, run.id, ts(utcnow())),
                )
            except DuplicateKey:
                # Another claimant's (nothing of ours is written), or our own commit whose
                # answer was lost and whose transaction is now being run again.
                rows = await tx.fetchall(
                    "SELECT run_id FROM schedule_slots WHERE character_name = ? AND slot = ?",
                    (run.character, slot),
                )
                return bool(rows) and rows[0][0] == run.id
            await self._write_run(tx, run)
            return True

        return await self._in_transaction(work)

    # ------------------------------------------------------------------ leases
    async def take_lease(
        self,
        run_id: str,
        owner: str,
        until: datetime,
        *,
        replacing: str | None = None,
        now: datetime | None = None,
    ) -> Lease:
        """One transaction: a conditional UPDATE (ours, expired, or the dead `replacing`),
        else an INSERT that the primary key lets only one taker make; then the holder is read
        back. Never read-then-write: of two takers at once, exactly one finds itself there.
        Run again whole (a lost commit, a deadlock's victim) it reads its own row: still won."""
        expired_at = ts(now or utcnow())

        async def work(tx: Cursor) -> Lease:
            changed = await tx.execute(
                "UPDATE run_leases SET owner = ?, expires_at = ?"
                " WHERE run_id = ? AND (owner = ? OR owner = ? OR expires_at <= ?)",
                (owner, ts(until), run_id, owner, replacing or owner, expired_at),
            )
            if not changed:
                with contextlib.suppress(DuplicateKey):  # held, and not ours to take
                    await tx.execute(
                        "INSERT INTO run_leases (run_id, owner, expires_at) VALUES (?, ?, ?)",
                        (run_id, owner, ts(until)),
                    )
            rows = await tx.fetchall(_LEASE_OF, (run_id,))
            return _lease(run_id, rows[0])

        return await self._in_transaction(work)

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        async def work(tx: Cursor) -> bool:
            changed = await tx.execute(
                "UPDATE run_leases SET expires_at = ? WHERE run_id = ? AND owner = ?",
                (ts(until), run_id, owner),
            )
            if changed:
                return True
            # MySQL counts an UPDATE that changes nothing (our own retried one) as 0 rows
            rows = await tx.fetchall("SELECT owner FROM run_leases WHERE run_id = ?", (run_id,))
            return bool(rows) and rows[0][0] == owner

        return await self._in_transaction(work)

    async def release_lease(self, run_id: str, owner: str) -> bool:
        deleted = await self.db.execute(
            "DELETE FROM run_leases WHERE run_id = ? AND owner = ?", (run_id, owner)
        )
        return bool(deleted)

    async def lease_of(self, run_id: str) -> Lease | None:
        rows = await self.db.fetchall(_LEASE_OF, (run_id,))
        return _lease(run_id, rows[0]) if rows else None

    # ------------------------------------------------------------------ catalog
    async def list_characters(self, group: str | None = None) -> list[CatalogCharacter]:
        sql = "SELECT id, role_name_en, group_name, weight, status FROM anime_roles"
        params: tuple[Any, ...] = ()
        if group is not None:
            sql += " WHERE group_name = ?"
            params = (group,)
        rows = await self.db.fetchall(sql + " ORDER BY id", params)
        return [
            CatalogCharacter(
                id=int(r[0]), name=r[1], group_name=r[2], weight=float(r[3]), status=int(r[4])
            )
            for r in rows
        ]

    async def pick_group_member(
        self, group: str, rng: Random, *, exclude: Collection[str] = ()
    ) -> CatalogCharacter | None:
        members = [
            member
            for member in await self.list_characters(group)
            if member.status == 1 and member.name not in exclude
        ]
        return weighted_pick(members, rng)

    async def add_character(
        self, name: str, group_name: str, *, weight: float = 1.0, status: int = 1
    ) -> int:
        # NaN, infinities and negatives would make every weighted pick of the group wrong
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"a weight must be a finite number of 0 or more, not {weight!r}")

        async def work(tx: Cursor) -> int:
            await tx.execute(
                "INSERT INTO anime_roles (role_name_en, group_name, status, weight)"
                " VALUES (?, ?, ?, ?)",
                (name, group_name, status, weight),
            )
            rows = await tx.fetchall("SELECT MAX(id) FROM anime_roles")
            return int(rows[0][0])

        return await self._in_transaction(work)

    async def add_news(self, items: Sequence[NewsItem]) -> int:
        async def work(tx: Cursor) -> int:
            for item in items:
                await tx.execute(
                    "INSERT INTO news (title, keyword, content, publish_date) VALUES (?, ?, ?, ?)",
                    (
                        item.title,
                        item.keyword,
                        item.content,
                        item.publish_date.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
                        if item.publish_date
                        else None,
                    ),
                )
            return len(items)

        return await self._in_transaction(work)

    async def recent_news(
        self, *, character: str, keyword: str | None = None, limit: int = 10
    ) -> list[NewsItem]:
        sql = (
            "SELECT id, title, keyword, content, publish_date FROM news WHERE id NOT IN"
            " (SELECT news_id FROM news_usage WHERE character_name = ?)"
        )
        params: list[Any] = [character]
        if keyword is not None:
            sql += " AND keyword = ?"
            params.append(keyword)
        sql += " ORDER BY publish_date DESC, id DESC LIMIT ?"
        params.append(int(limit))
        return [
            NewsItem(
                id=int(r[0]),
                title=r[1],
                keyword=r[2],
                content=r[3],
                publish_date=_as_datetime(r[4]),
            )
            for r in await self.db.fetchall(sql, params)
        ]

    async def mark_news_used(self, character: str, news_id: int) -> None:
        with contextlib.suppress(DuplicateKey):  # marking twice is the same as once
            await self.db.execute(
                "INSERT INTO news_usage (character_name, news_id, used_at) VALUES (?, ?, ?)",
                (character, news_id, ts(utcnow())),
            )
