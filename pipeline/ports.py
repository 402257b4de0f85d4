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
from typing import Protocol

from pipeline.models import Platform, PostRecord, Run, RunState


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
        limit: int = 50,
    ) -> list[Run]: ...


class PostStore(Protocol):
    async def record_post(self, record: PostRecord) -> bool:
        """Insert a new post record; False when (run, platform) already has one."""
        ...

    async def update_post(self, record: PostRecord) -> None: ...
    async def posts_for_run(self, run_id: str) -> list[PostRecord]: ...
    async def count_posts(self, platform: str, account: str, since: datetime) -> int: ...


class SlotStore(Protocol):
    async def claim_slot(self, character: str, slot: str, run_id: str | None = None) -> bool:
        """Claim a schedule slot; exactly one claimant ever gets True."""
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


class Store(RunStore, PostStore, SlotStore, CatalogStore, Protocol):
    """Everything the pipeline keeps: runs, posts, schedule slots, characters and news."""

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
# (issue 7 refines this)


class Publisher(Protocol):
    """One platform: publish a run's approved media with its caption, exactly once."""

    platform: Platform

    async def publish(
        self, run: Run, *, account: str, media: Sequence[Path], caption: str
    ) -> PostRecord: ...
