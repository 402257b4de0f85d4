"""Times as the store keeps them: UTC text that sorts correctly on both engines."""

from __future__ import annotations

from datetime import UTC, datetime

_TS = "%Y-%m-%d %H:%M:%S.%f"


def ts(moment: datetime) -> str:
    """A UTC timestamp as sortable text."""
    return moment.astimezone(UTC).strftime(_TS)


def parse_ts(text: str) -> datetime:
    return datetime.strptime(text, _TS).replace(tzinfo=UTC)
