"""The seams of the pipeline: small Protocols with domain types in and out.

Each has one real implementation per service (named only in `pipeline.wiring`) and typed
doubles in `tests/doubles.py`. Imports only domain modules, never a concrete service.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from random import Random
from typing import Protocol, runtime_checkable

from pipeline.models import (
    Decision,
    MediaKind,
    Platform,
    PostRecord,
    PostState,
    ReviewAction,
    ReviewTicket,
    Run,
    RunState,
    StagePick,
)


@dataclass(frozen=True)
class CatalogCharacter:
    """A row of `anime_roles`: a character a group's runs can pick, by weight."""

    id: int
    name: str
    group_name: str
    weight: float
    status: int


@dataclass(frozen=True)
class NewsItem:
    """A row of `news`, the material of the `news` prompt method."""

    id: int
    title: str
    keyword: str
    content: str
    publish_date: datetime | None


class RunStore(Protocol):
    async def save_run(self, run: Run) -> None: ...
    async def load_run(self, run_id: str) -> Run | None: ...
    async def list_runs(
        self,
        *,
        states: Collection[RunState] | None = None,
        character: str | None = None,
        updated_before: datetime | None = None,
        limit: int = 50,
    ) -> list[Run]:
        """Runs newest first (by their last update), optionally only those in `states`, of
        `character`, or last updated strictly before `updated_before`."""
        ...


class PostStore(Protocol):
    async def record_post(self, record: PostRecord) -> bool:
        """Insert a new post record; False when (run, platform) already has one."""
        ...

    async def update_post(self, record: PostRecord) -> None: ...
    async def retry_post(self, record: PostRecord) -> bool:
        """Move a FAILED record back to POSTING (as `record` says); True for exactly one caller."""
        ...

    async def posts_for_run(self, run_id: str) -> list[PostRecord]: ...
    async def posts_in_state(self, states: Collection[PostState]) -> list[PostRecord]: ...
    async def count_posts(self, platform: str, account: str, since: datetime) -> int: ...


class SlotStore(Protocol):
    async def claim_slot(self, character: str, slot: str, run_id: str | None = None) -> bool:
        """Claim a schedule slot; exactly one claimant ever gets True."""
        ...

    async def claim_slot_with_run(self, slot: str, run: Run) -> bool:
        """Claim `run.character`'s slot and save `run` in one transaction; exactly one claimant
        ever gets True, and the run is saved exactly when its claim is."""
        ...


class CatalogStore(Protocol):
    async def pick_group_member(
        self, group: str, rng: Random, *, exclude: Collection[str] = ()
    ) -> CatalogCharacter | None: ...
    async def recent_news(
        self, *, character: str, keyword: str | None = None, limit: int = 10
    ) -> list[NewsItem]: ...
    async def mark_news_used(self, character: str, news_id: int) -> None: ...
    async def add_character(
        self, name: str, group_name: str, *, weight: float = 1.0, status: int = 1
    ) -> int: ...
    async def add_news(self, items: Sequence[NewsItem]) -> int: ...
    async def list_characters(self, group: str | None = None) -> list[CatalogCharacter]: ...


@dataclass(frozen=True)
class Lease:
    """Who executes a run (an owner id, see `pipeline.lease.Owner`) and until when."""

    run_id: str
    owner: str
    expires_at: datetime


class LeaseStore(Protocol):
    async def take_lease(
        self,
        run_id: str,
        owner: str,
        until: datetime,
        *,
        replacing: str | None = None,
        now: datetime | None = None,
    ) -> Lease:
        """Take or renew `run_id`'s lease for `owner` until `until`, in one transaction: it is
        taken when nobody holds it, `owner` holds it already, it has expired (at `now`, the
        caller's clock; the current time by default), or its holder is `replacing` (a holder
        the caller found dead). Returns the holder after the attempt, so the caller won
        exactly when `lease.owner == owner`; of concurrent takers one wins."""
        ...

    async def renew_lease(self, run_id: str, owner: str, until: datetime) -> bool:
        """Move `owner`'s lease on to `until` only while `owner` still holds it (expired or
        not); False when someone else holds it or nobody does (never takes a lease)."""
        ...

    async def release_lease(self, run_id: str, owner: str) -> bool:
        """Give the lease up; only its owner can (False when `owner` did not hold it)."""
        ...

    async def lease_of(self, run_id: str) -> Lease | None:
        """The lease's holder as stored (maybe expired), or None when nobody holds one."""
        ...


class RunnerStore(RunStore, PostStore, LeaseStore, Protocol):
    """What the Runner needs: the runs, their posts (a resume that would change nothing is
    refused) and their leases."""


class Store(RunStore, PostStore, SlotStore, CatalogStore, LeaseStore, Protocol):
    """Everything the pipeline keeps: runs, posts, schedule slots, characters, news, leases."""

    async def close(self) -> None: ...


# ---------------------------------------------------------------------------- language models

#: a JSON schema for structured output, as a plain mapping (providers translate it)
JsonSchema = Mapping[str, object]


@dataclass(frozen=True)
class ImageData:
    """An image ready to send to a model: encoded bytes (already downscaled) and their type."""

    data: bytes
    mime_type: str = "image/jpeg"


class TextModel(Protocol):
    """A language model for one task (prompt, description, caption): text in, text out.

    With `schema`, the model is asked for JSON of that shape where the provider supports it;
    the caller still parses and validates the answer. Raises ModelError when no model answers.
    """

    async def complete(
        self, *, system: str, prompt: str, schema: JsonSchema | None = None
    ) -> str: ...


class VisionModel(Protocol):
    """A model that looks at images and answers in text (raises ModelError like TextModel)."""

    async def look(
        self,
        *,
        system: str,
        prompt: str,
        images: Sequence[ImageData],
        schema: JsonSchema | None = None,
    ) -> str: ...


# ---------------------------------------------------------------------------- publishing


@dataclass(frozen=True)
class OutgoingMedia:
    """One fitted file to post (see `pipeline.publish.media`), with its alt text."""

    path: Path
    kind: MediaKind
    mime: str
    alt_text: str = ""
    #: a still of a video (Instagram's reel cover)
    cover: Path | None = None


@dataclass(frozen=True)
class RemotePost:
    """What a platform answered for a post: its id and, when known, its address."""

    remote_id: str
    url: str | None = None


@dataclass(frozen=True)
class PostMetrics:
    """What one published post achieved when it was read; None where the platform does not
    report that count."""

    likes: int | None = None
    reposts: int | None = None
    replies: int | None = None
    views: int | None = None


@runtime_checkable
class MetricsReader(Protocol):
    """A publisher that can read back what one of its posts achieved. Raises the
    `pipeline.publish.errors` kinds, as `Publisher` does."""

    platform: Platform

    async def read_metrics(self, account: str, remote_id: str) -> PostMetrics: ...


class Publisher(Protocol):
    """One platform's remote side. Raises the `pipeline.publish.errors` kinds: transient,
    account-needs-attention, or content-rejected. Exactly-once is the caller's job
    (`pipeline.publish.service`), so a Publisher never retries a post by itself."""

    platform: Platform

    async def post(
        self, account: str, media: Sequence[OutgoingMedia], caption: str
    ) -> RemotePost: ...

    async def find_post(self, account: str, caption: str, since: datetime) -> RemotePost | None:
        """The account's post with this caption made since `since`, or None when none is;
        raises when the platform cannot be asked."""
        ...


@runtime_checkable
class PublishNotifier(Protocol):
    """Tells people what publishing cannot decide alone."""

    async def account_needs_attention(self, platform: Platform, account: str, reason: str) -> None:
        """An account was paused (challenge, login, feedback block): a person must act."""
        ...

    async def post_uncertain(self, record: PostRecord) -> None:
        """A post may or may not be online: a person must look and decide."""
        ...


# ---------------------------------------------------------------------------- review, notices


@dataclass(frozen=True)
class Progress:
    """One progress update of a run: the step, and ComfyUI's queue place / sampler steps."""

    step: str
    detail: str = ""
    queue_position: int | None = None
    value: int | None = None
    maximum: int | None = None


#: the step a run reports while it waits for a person's review (which may take a day): a run
#: card refreshes it rarely (the Runner hears of the wait from `awaiting_review`, not from this)
REVIEW_STEP = "review"


class ProgressSink(Protocol):
    """Whoever shows a run's progress (a terminal bar, a Discord run card, the Runner's handle
    of a run). Must not block: it is called from the pipeline's coroutine; slow displays
    throttle or buffer by themselves."""

    def progress(self, run_id: str, update: Progress) -> None: ...

    def awaiting_review(self, run_id: str, waiting: bool) -> None:
        """The run waits for a person's decision now (True), or no longer (False). The Runner
        counts no waiting run against its limits (a review may take a day)."""
        ...


class Reviewer(Protocol):
    """A person approves or rejects a run's media. Two calls with the ticket saved between them,
    so a restart during review simply calls `wait` again with the saved ticket."""

    async def request(self, run: Run, folder: Path) -> ReviewTicket:
        """Show the run's kept media (paths relative to `folder`), captions and scores."""
        ...

    async def wait(self, run: Run, ticket: ReviewTicket) -> Decision | ReviewAction | None:
        """The decision; a ReviewAction when the reviewer asked for more media instead (one of
        `run.offers`: the review closes, the pipeline makes them and requests a new review);
        None when the review expired (the deadline passed unanswered)."""
        ...


@runtime_checkable
class StageReviewer(Protocol):
    """A Reviewer that can also ask a person which drafts go on between a strategy's stages
    (`review_between_stages`); the same two calls with the ticket saved between them."""

    async def request_pick(self, run: Run, folder: Path, pick: StagePick) -> ReviewTicket:
        """Show `pick.drafts` (paths relative to `folder`, best first), numbered from 1."""
        ...

    async def wait_pick(self, run: Run, ticket: ReviewTicket, pick: StagePick) -> Decision | None:
        """The drafts picked (`selected`: indexes into `pick.drafts`) and by whom; None when
        nobody answered before the deadline (the best by score go on)."""
        ...


class Notifier(Protocol):
    """Tells people about a run's outcome: started, awaiting review, published, failed ..."""

    async def run_changed(self, run: Run, posts: Sequence[PostRecord] = ()) -> None: ...
