"""Metrics collection: what each published post achieved, read 1 h, 24 h and 7 days after it
went out, kept in the store (`post_metrics`).

One pass (`MetricsCollector.collect_once`) plans the readings of newly published posts, claims
the due ones in the store (so two instances never read one twice), reads each through its
platform's `MetricsReader`, and records the counts, a retry later, or a miss. The bot's loop and
`python -m pipeline collect-metrics` call it. Imports domain modules and seams, never a
concrete store or publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from pipeline.errors import ConfigError, PublishError
from pipeline.models import Platform, utcnow
from pipeline.ports import MetricsReader, Publisher, PublishNotifier, Store
from pipeline.publish.attention import AttentionBoard
from pipeline.publish.errors import (
    AccessLevelError,
    AccountAttentionError,
    ContentRejectedError,
    TransientPublishError,
)
from pipeline.readings import CHECKPOINTS, MetricsStore, Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CollectPolicy:
    """How collection treats failures; every limit has a default."""

    #: tries of one reading before it is recorded as missed
    tries: int = 3
    #: wait before the next try, doubled each time (a platform's own retry-after wins if longer)
    backoff: timedelta = timedelta(minutes=10)
    #: how long a claim holds; a collector that died frees its readings after this
    claim_for: timedelta = timedelta(minutes=15)
    #: readings claimed per pass
    batch: int = 50
    #: how long a paused account's readings wait before they are looked at again
    paused_wait: timedelta = timedelta(hours=1)


@dataclass
class CollectReport:
    """What one pass did."""

    planned: int = 0
    read: int = 0
    retried: int = 0
    missed: int = 0
    skipped: int = 0
    notes: list[str] = field(default_factory=list)

    def sentence(self) -> str:
        return (
            f"metrics: {self.read} read, {self.retried} to try again, {self.missed} missed, "
            f"{self.skipped} skipped (paused accounts), {self.planned} new planned"
        )


class MetricsCollector:
    """Reads due metrics through the publishers that are `MetricsReader`s; `clock` is injected
    so tests move time instead of waiting."""

    def __init__(
        self,
        store: MetricsStore,
        publishers: Mapping[Platform, Publisher],
        attention: AttentionBoard,
        *,
        owner: str,
        notifier: PublishNotifier | None = None,
        policy: CollectPolicy | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.readers: dict[Platform, MetricsReader] = {
            platform: publisher
            for platform, publisher in publishers.items()
            if isinstance(publisher, MetricsReader)
        }
        self.attention = attention
        self.owner = owner
        self.notifier = notifier
        self.policy = policy or CollectPolicy()
        self.clock = clock

    async def aclose(self) -> None:
        """Close the readers that keep connections (Bluesky's logged-in clients)."""
        for reader in self.readers.values():
            close = getattr(reader, "aclose", None)
            if close is not None:
                await close()

    async def collect_once(self) -> CollectReport:
        """One pass: plan new readings, claim the due ones, read them. Raises only when the
        store cannot be reached; a platform's failure is recorded on its reading."""
        report = CollectReport()
        policy = self.policy
        report.planned = await self.store.plan_readings(
            CHECKPOINTS, sorted(self.readers), policy.batch * len(CHECKPOINTS)
        )
        now = self.clock()
        claimed = await self.store.claim_readings(
            self.owner, now, now + policy.claim_for, policy.batch
        )
        for reading in claimed:
            await self._read(reading, report)
        return report

    async def _read(self, reading: Reading, report: CollectReport) -> None:
        policy = self.policy
        where = f"{reading.platform.value} post {reading.remote_id} ({reading.checkpoint})"
        reader = self.readers.get(reading.platform)
        if reader is None:  # planned by an instance that had this platform's reader
            await self.store.miss_reading(
                reading, self.owner, f"{reading.platform.value} metrics cannot be read here"
            )
            report.missed += 1
            return
        pause = await asyncio.to_thread(self.attention.paused, reading.platform, reading.account)
        if pause is not None:
            await self.store.postpone_reading(
                reading,
                self.owner,
                self.clock() + policy.paused_wait,
                attempts=reading.attempts,
                note=f"the account is paused: {pause.reason}",
            )
            report.skipped += 1
            return
        try:
            metrics = await reader.read_metrics(reading.account, reading.remote_id)
        except (ContentRejectedError, AccessLevelError) as exc:
            # the post is gone, or this app may not read it: another try will not help
            await self._miss(reading, f"{where}: {exc.user_message}", report)
            return
        except AccountAttentionError as exc:
            await asyncio.to_thread(
                self.attention.pause, reading.platform, reading.account, exc.reason
            )
            if self.notifier is not None:
                await self.notifier.account_needs_attention(
                    reading.platform, reading.account, exc.reason
                )
            await self._again(reading, f"{where}: {exc.user_message}", None, report)
            return
        except TransientPublishError as exc:
            await self._again(reading, f"{where}: {exc.user_message}", exc.retry_after, report)
            return
        except (PublishError, ConfigError) as exc:  # ConfigError: credentials, before any call
            await self._again(reading, f"{where}: {exc.user_message}", None, report)
            return
        except Exception:  # a reader's bug must not stall the readings behind this one
            log.exception("metrics of %s: the reader failed unexpectedly", where)
            await self._again(reading, f"{where}: an unexpected error (see the log)", None, report)
            return
        await self.store.finish_reading(reading, self.owner, metrics, self.clock())
        report.read += 1

    async def _again(
        self, reading: Reading, note: str, retry_after: float | None, report: CollectReport
    ) -> None:
        tries = reading.attempts + 1
        if tries >= self.policy.tries:
            await self._miss(reading, f"{note} (tried {tries} times)", report)
            return
        wait = self.policy.backoff * 2 ** (tries - 1)
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        await self.store.postpone_reading(
            reading, self.owner, self.clock() + wait, attempts=tries, note=note
        )
        log.info("metrics of %s: try %d failed; again in %s", note, tries, wait)
        report.retried += 1

    async def _miss(self, reading: Reading, note: str, report: CollectReport) -> None:
        await self.store.miss_reading(reading, self.owner, note)
        log.warning("metrics missed: %s", note)
        report.missed += 1
        report.notes.append(note)


class StoreWithMetrics(Store, MetricsStore, Protocol):
    """Everything the pipeline keeps, with the post readings: the store the bot holds."""
