"""The database schema, versioned: each migration is applied once and recorded.

`anime_roles` and `news` keep the reference design's columns; `runs`, `reviews`, `posts`,
`schedule_slots`, `news_usage` and `run_leases` are the project's own. Times of our own tables
are ISO-8601 UTC text, which sorts correctly on both engines.
"""

from __future__ import annotations

import contextlib

from pipeline.store.db import Database, Dialect, DuplicateKey

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


#: (version, statements for a dialect); append, never edit a released migration
MIGRATIONS = [(1, _v1), (2, _v2)]
LATEST = MIGRATIONS[-1][0]


async def current_version(db: Database) -> int:
    await db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INT NOT NULL PRIMARY KEY)")
    rows = await db.fetchall("SELECT MAX(version) FROM schema_version")
    return int(rows[0][0] or 0) if rows else 0


async def migrate(db: Database) -> int:
    """Bring the schema to the latest version; safe to call at every start, from any process."""
    version = await current_version(db)
    for number, statements in MIGRATIONS:
        if number <= version:
            continue
        for statement in statements(db.dialect):
            try:
                await db.execute(statement)
            except Exception as exc:
                # An index or table made by a concurrent starter is fine; anything else is not.
                if "already exists" in str(exc) or "Duplicate key name" in str(exc):
                    continue
                raise
        # Another process may record this migration at the same moment: that is fine.
        with contextlib.suppress(DuplicateKey):
            await db.execute("INSERT INTO schema_version (version) VALUES (?)", (number,))
        version = number
    return version
