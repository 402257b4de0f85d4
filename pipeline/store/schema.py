"""The database schema, versioned: each migration is applied once and recorded.

`anime_roles` and `news` keep the reference design's columns; `runs`, `reviews`, `posts`,
`schedule_slots`, `news_usage`, `run_leases`, `publish_queue`, `publish_accounts` and
`post_metrics` are the project's own. Times of our own tables are ISO-8601 UTC text, which sorts
correctly on both engines. A migration is statements, or a rewrite of stored data (the runs'
JSON) that SQL cannot say on both engines.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pipeline.models import upgrade_run_data
from pipeline.store.db import Database, Dialect, DuplicateKey

log = logging.getLogger(__name__)

_AUTO_ID = {
    "sqlite": "INTEGER PRIMARY KEY AUTOINCREMENT",
    "mysql": "INT AUTO_INCREMENT PRIMARY KEY",
}
_NOW = {"sqlite": "TEXT DEFAULT CURRENT_TIMESTAMP", "mysql": "TIMESTAMP DEFAULT CURRENT_TIMESTAMP"}
_DATETIME = {"sqlite": "TEXT", "mysql": "DATETIME"}
_LONG = {"sqlite": "TEXT", "mysql": "LONGTEXT"}
_TABLE_END = {"sqlite": "", "mysql": " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"}


def _v1(d: Dialect) -> list[str]:
    end = _TABLE_END[d]
    return [
        f"""CREATE TABLE IF NOT EXISTS anime_roles (
            id {_AUTO_ID[d]},
            role_name_en VARCHAR(255) NOT NULL,
            group_name VARCHAR(255) NOT NULL,
            status TINYINT NOT NULL DEFAULT 1,
            weight FLOAT NOT NULL DEFAULT 1,
            created_at {_NOW[d]}
        ){end}""",
        "CREATE INDEX idx_anime_roles_group ON anime_roles (group_name, status)",
        f"""CREATE TABLE IF NOT EXISTS news (
            id {_AUTO_ID[d]},
            title VARCHAR(512) NOT NULL,
            keyword VARCHAR(255) NOT NULL DEFAULT '',
            content TEXT NOT NULL,
            publish_date {_DATETIME[d]} NULL,
            created_at {_NOW[d]}
        ){end}""",
        "CREATE INDEX idx_news_keyword ON news (keyword)",
        f"""CREATE TABLE IF NOT EXISTS news_usage (
            character_name VARCHAR(255) NOT NULL,
            news_id INT NOT NULL,
            used_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (character_name, news_id)
        ){end}""",
        f"""CREATE TABLE IF NOT EXISTS runs (
            id VARCHAR(32) NOT NULL PRIMARY KEY,
            character_name VARCHAR(255) NOT NULL,
            state VARCHAR(32) NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            updated_at VARCHAR(32) NOT NULL,
            data {_LONG[d]} NOT NULL
        ){end}""",
        "CREATE INDEX idx_runs_state ON runs (state, updated_at)",
        "CREATE INDEX idx_runs_character ON runs (character_name, updated_at)",
        f"""CREATE TABLE IF NOT EXISTS reviews (
            run_id VARCHAR(32) NOT NULL PRIMARY KEY,
            channel_id BIGINT NOT NULL,
            message_ids TEXT NOT NULL,
            state VARCHAR(32) NOT NULL,
            reviewer VARCHAR(255) NULL,
            posted_at VARCHAR(32) NOT NULL,
            deadline VARCHAR(32) NULL,
            decided_at VARCHAR(32) NULL
        ){end}""",
        f"""CREATE TABLE IF NOT EXISTS posts (
            id {_AUTO_ID[d]},
            run_id VARCHAR(32) NOT NULL,
            platform VARCHAR(32) NOT NULL,
            account VARCHAR(255) NOT NULL,
            state VARCHAR(32) NOT NULL,
            remote_id VARCHAR(255) NULL,
            url VARCHAR(1024) NULL,
            error TEXT NULL,
            attempts TEXT NOT NULL,
            created_at VARCHAR(32) NOT NULL,
            updated_at VARCHAR(32) NOT NULL,
            UNIQUE (run_id, platform)
        ){end}""",
        "CREATE INDEX idx_posts_account ON posts (platform, account, created_at)",
        f"""CREATE TABLE IF NOT EXISTS schedule_slots (
            character_name VARCHAR(255) NOT NULL,
            slot VARCHAR(64) NOT NULL,
            run_id VARCHAR(32) NULL,
            claimed_at VARCHAR(32) NOT NULL,
            PRIMARY KEY (character_name, slot)
        ){end}""",
    ]


def _v2(d: Dialect) -> list[str]:
    """`run_leases`: which process executes a run, until when (see `pipeline.lease`)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS run_leases (
            run_id VARCHAR(32) NOT NULL PRIMARY KEY,
            owner VARCHAR(255) NOT NULL,
            expires_at VARCHAR(32) NOT NULL
        ){_TABLE_END[d]}""",
    ]


#: runs rewritten per round trip: a page of runs is all the rewrite holds in memory
_PAGE = 200


async def _v3(db: Database) -> None:
    """Runs in the current form: `extra`'s known keys as fields, a failure's `step` as its
    `state` (`pipeline.models.upgrade_run_data`; `Run.from_json` reads the old form too, for a
    row an older process writes after this ran). A row is rewritten only if it is still what
    was read, so a run saved meanwhile by a process already on the new form is left alone."""
    after, rewritten = "", 0
    while True:
        rows = await db.fetchall(
            "SELECT id, data FROM runs WHERE id > ? ORDER BY id LIMIT ?", (after, _PAGE)
        )
        for run_id, text in rows:
            data = json.loads(text)
            if isinstance(data, dict) and upgrade_run_data(data):
                new = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
                rewritten += await db.execute(
                    "UPDATE runs SET data = ? WHERE id = ? AND data = ?", (new, run_id, text)
                )
        if len(rows) < _PAGE:
            break
        after = str(rows[-1][0])
    if rewritten:
        log.info("schema 3: %d stored run(s) rewritten in the current form", rewritten)


def _v4(d: Dialect) -> list[str]:
    """`publish_queue`: an approved run's posts waiting for their slots, one row per (run,
    platform), each account's slots unique; `publish_accounts`: a row per account that a
    slot's allocation locks, so two allocations never see the same free slot
    (see `pipeline.store.queue`)."""
    end = _TABLE_END[d]
    return [
        f"""CREATE TABLE IF NOT EXISTS publish_queue (
            run_id VARCHAR(32) NOT NULL,
            platform VARCHAR(32) NOT NULL,
            account VARCHAR(255) NOT NULL,
            character_name VARCHAR(255) NOT NULL,
            due_at VARCHAR(32) NOT NULL,
            queued_at VARCHAR(32) NOT NULL,
            owner VARCHAR(255) NULL,
            claimed_until VARCHAR(32) NULL,
            PRIMARY KEY (run_id, platform),
            UNIQUE (platform, account, due_at)
        ){end}""",
        "CREATE INDEX idx_publish_queue_due ON publish_queue (due_at)",
        f"""CREATE TABLE IF NOT EXISTS publish_accounts (
            platform VARCHAR(32) NOT NULL,
            account VARCHAR(255) NOT NULL,
            allocations INT NOT NULL DEFAULT 0,
            PRIMARY KEY (platform, account)
        ){end}""",
    ]


def _v5(d: Dialect) -> list[str]:
    """`post_metrics`: the readings of each published post (1 h, 24 h, 7 days after it went
    out), claimed by one collector at a time (see `pipeline.metrics`)."""
    return [
        f"""CREATE TABLE IF NOT EXISTS post_metrics (
            run_id VARCHAR(32) NOT NULL,
            platform VARCHAR(32) NOT NULL,
            checkpoint VARCHAR(8) NOT NULL,
            account VARCHAR(255) NOT NULL,
            remote_id VARCHAR(255) NOT NULL,
            due_at VARCHAR(32) NOT NULL,
            state VARCHAR(16) NOT NULL,
            attempts INT NOT NULL DEFAULT 0,
            claimed_by VARCHAR(255) NULL,
            claimed_until VARCHAR(32) NULL,
            likes BIGINT NULL,
            reposts BIGINT NULL,
            replies BIGINT NULL,
            views BIGINT NULL,
            read_at VARCHAR(32) NULL,
            note TEXT NULL,
            PRIMARY KEY (run_id, platform, checkpoint)
        ){_TABLE_END[d]}""",
        "CREATE INDEX idx_post_metrics_due ON post_metrics (state, due_at)",
    ]


def _no_statements(_: Dialect) -> list[str]:
    return []


@dataclass(frozen=True)
class Migration:
    """One version of the schema: statements for a dialect, then a rewrite of stored data."""

    version: int
    statements: Callable[[Dialect], list[str]] = _no_statements
    rewrite: Callable[[Database], Awaitable[None]] | None = None


#: append, never edit a released migration
MIGRATIONS = [
    Migration(1, _v1),
    Migration(2, _v2),
    Migration(3, rewrite=_v3),
    Migration(4, _v4),
    Migration(5, _v5),
]
LATEST = MIGRATIONS[-1].version


async def current_version(db: Database) -> int:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL PRIMARY KEY)")
    rows = await db.fetchall("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0) if rows else 0


async def migrate(db: Database) -> int:
    """Bring the schema to the latest version; safe to call at every start, from any process."""
    version = await current_version(db)
    for migration in MIGRATIONS:
        number = migration.version
        if number <= version:
            continue
        for statement in migration.statements(db.dialect):
            try:
                await db.execute(statement)
            except Exception as exc:
                # An index or table made by a concurrent starter is fine; anything else is not.
                if "already exists" in str(exc) or "Duplicate key name" in str(exc):
                    continue
                raise
        if migration.rewrite is not None:  # idempotent, and safe beside a concurrent starter
            await migration.rewrite(db)
        # Another process may record this migration at the same moment: that is fine.
        with contextlib.suppress(DuplicateKey):
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
        version = number
    return version
