"""A post waiting in the publish queue: the record the queue's table holds, the bot renders and
the command line prints. Without pydantic, so that opening the store stays light. Imports
domain modules only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pipeline.models import Platform


@dataclass(frozen=True)
class QueuedPost:
    """One post waiting in the publish queue for its slot (a row of `publish_queue`)."""

    run_id: str
    platform: Platform
    account: str
    character: str
    due_at: datetime
    queued_at: datetime
    #: the process posting it now, and until when its claim holds (None: nobody's)
    owner: str | None = None
    claimed_until: datetime | None = None

    def claimed(self, now: datetime) -> bool:
        """True when a process holds it now (its claim has not run out)."""
        return (
            self.owner is not None and self.claimed_until is not None and (self.claimed_until > now)
        )


__all__ = ["QueuedPost"]
