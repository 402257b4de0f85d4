"""Accounts that need a person: a paused account is one small JSON file, kept across restarts.

A file `DATA_DIR/attention/<platform>-<account>.json` (reason and time) pauses the account:
nothing is posted to it until `resume` removes the file (after a person solved the challenge,
logged in again, or waited out a block). Imports domain modules only.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pipeline.errors import disk_reason
from pipeline.models import Platform, utcnow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Pause:
    platform: Platform
    account: str
    reason: str
    since: datetime


class AttentionBoard:
    """Paused accounts as files; cheap, synchronous calls (run them in a thread if you like)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: pauses whose file could not be written (a full or read-only disk): they hold in
        #: this process, so an account is never posted to again before a person looked
        self._unwritten: dict[tuple[Platform, str], Pause] = {}

    def _file(self, platform: Platform, account: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", account)
        return self.folder / f"{platform.value}-{safe}.json"

    def paused(self, platform: Platform, account: str) -> Pause | None:
        if (held := self._unwritten.get((platform, account))) is not None:
            return held
        path = self._file(platform, account)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Pause(
                platform, account, str(data["reason"]), datetime.fromisoformat(data["since"])
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            # a damaged marker still pauses: better a question than a post into a blocked account
            return Pause(platform, account, "unreadable attention marker", utcnow())

    def pause(self, platform: Platform, account: str, reason: str) -> Pause:
        pause = Pause(platform, account, reason, utcnow())
        path = self._file(platform, account)
        partial = path.with_name(path.name + ".part")
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            partial.write_text(
                json.dumps({"reason": reason, "since": pause.since.isoformat()}), encoding="utf-8"
            )
            partial.replace(path)
        except OSError as exc:
            self._unwritten[(platform, account)] = pause
            log.error(
                "paused %s account %s: %s; but cannot write %s (%s), so the pause holds only "
                "until this process stops",
                platform.value, account, reason, self.folder,
                disk_reason(exc) or type(exc).__name__,
            )  # fmt: skip
            return pause
        log.warning("paused %s account %s: %s", platform.value, account, reason)
        return pause

    def resume(self, platform: Platform, account: str) -> bool:
        """Lift a pause; True when there was one."""
        if self._unwritten.pop((platform, account), None) is not None:
            log.info("resumed %s account %s", platform.value, account)
            return True
        try:
            self._file(platform, account).unlink()
        except FileNotFoundError:
            return False
        log.info("resumed %s account %s", platform.value, account)
        return True

    def all(self) -> list[Pause]:
        pauses = []
        for path in sorted(self.folder.glob("*.json")) if self.folder.is_dir() else []:
            platform_name, _, account = path.stem.partition("-")
            try:
                platform = Platform(platform_name)
            except ValueError:
                continue
            pause = self.paused(platform, account)
            if pause is not None:
                pauses.append(pause)
        return pauses + [p for p in self._unwritten.values() if p not in pauses]
