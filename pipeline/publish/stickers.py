"""Uploading an approved sticker pack to the Discord guild, each sticker at most once.

The guild's free slots (by its boost tier: 5/15/30/60) are counted first and only what fits is
uploaded; the rest is refused with a sentence saying so. Each sticker is saved as UPLOADING on
the run before its upload and UPLOADED with its id after, so a retry never uploads it twice: a
sticker found UPLOADING (the answer was lost) or FAILED (a deadline passed; Discord may have made
it) is looked for in the guild's list first. Speaks to Discord only through `StickerApi`; never
imports bot or discord.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pipeline.errors import PublishError
from pipeline.models import Run, Sticker, StickerState
from pipeline.ports import RunStore
from pipeline.publish.errors import TransientPublishError

log = logging.getLogger(__name__)

#: a guild's sticker slots by its premium (boost) tier (discord.com/developers/docs/resources/
#: guild#guild-object-premium-tier; support.discord.com "Custom Stickers": 5, 15, 30, 60)
SLOTS_BY_TIER = {0: 5, 1: 15, 2: 30, 3: 60}


@dataclass(frozen=True)
class RemoteSticker:
    id: str
    name: str
    tags: str
    description: str


@dataclass(frozen=True)
class GuildStickers:
    """The guild's sticker slots and the stickers it has."""

    slots: int
    stickers: tuple[RemoteSticker, ...]

    @property
    def free(self) -> int:
        return max(0, self.slots - len(self.stickers))


class StickerRefused(PublishError):
    """Discord refused a sticker for good as it was sent; `str()` a user-safe sentence.
    `no_slot` when the guild's slots are full (30039)."""

    def __init__(self, message: str, *, no_slot: bool = False) -> None:
        super().__init__(message, user_message=message)
        self.no_slot = no_slot


class StickerApi(Protocol):
    """The guild's stickers on Discord (pipeline.publish.discord_stickers speaks its REST API)."""

    async def guild_stickers(self) -> GuildStickers:
        """Raises TransientPublishError, or StickerRefused (a token or guild Discord refuses)."""
        ...

    async def create(self, sticker: Sticker, file: Path) -> RemoteSticker:
        """Raises TransientPublishError or StickerRefused."""
        ...


def description_of(sticker: Sticker) -> str:
    """The sticker's description on Discord: empty or 2-100 characters."""
    text = sticker.expression.strip()[:100]
    return text if len(text) >= 2 else ""


def _same(remote: RemoteSticker, sticker: Sticker) -> bool:
    return (
        remote.name == sticker.name
        and remote.tags == sticker.tags
        and remote.description == description_of(sticker)
    )


def chosen_stickers(run: Run) -> list[int]:
    """Indexes into run.stickers of the reviewer's choice, in their order, each once."""
    if run.decision is None:
        return []
    found: list[int] = []
    for index in run.decision.selected:
        if 0 <= index < len(run.media):
            number = run.media[index].description_index
            if 0 <= number < len(run.stickers) and number not in found:
                found.append(number)
    return found


def unfinished(run: Run) -> list[str]:
    """What publishing left undone of a sticker pack, for the run's end state: each chosen
    sticker not uploaded, with why ("Wave (no free sticker slot ...)")."""
    return [
        f"sticker {run.stickers[i].name} ({run.stickers[i].error or run.stickers[i].state.value})"
        for i in chosen_stickers(run)
        if run.stickers[i].state is not StickerState.UPLOADED
    ]


class StickerUploader:
    """The StickerUploads port over a StickerApi and the run store."""

    def __init__(self, api: StickerApi, store: RunStore) -> None:
        self.api = api
        self.store = store

    async def upload(self, run: Run, folder: Path) -> Run:
        todo = [
            i for i in chosen_stickers(run) if run.stickers[i].state is not StickerState.UPLOADED
        ]
        if not todo:
            return run
        try:
            guild = await self.api.guild_stickers()
        except (TransientPublishError, StickerRefused) as exc:
            state = StickerState.REFUSED if isinstance(exc, StickerRefused) else StickerState.FAILED
            reason = exc.user_message
            for index in todo:
                run = _with(run, index, state=state, error=reason)
            await self.store.save_run(run)
            return run
        free = guild.free
        taken = {s.sticker_id for s in run.stickers if s.sticker_id}
        for index in todo:
            sticker = run.stickers[index]
            if sticker.state in _MAYBE_MADE:
                found = _find(guild.stickers, sticker, taken)
                if found is not None:  # the upload went through; its answer was lost
                    log.info("run %s: sticker %s found in the guild", run.id, sticker.name)
                    taken.add(found.id)
                    run = await self._save(run, index, StickerState.UPLOADED, sticker_id=found.id)
                    continue
            if free <= 0:
                run = await self._save(run, index, StickerState.REFUSED, error=_no_slot(guild))
                continue
            run = await self._save(run, index, StickerState.UPLOADING)
            file = folder / run.media[_media_of(run, index)].path
            try:
                remote = await self.api.create(sticker, file)
            except StickerRefused as exc:
                if exc.no_slot:
                    free = 0
                run = await self._save(run, index, StickerState.REFUSED, error=exc.user_message)
                continue
            except TransientPublishError as exc:
                run = await self._save(run, index, StickerState.FAILED, error=exc.user_message)
                continue
            free -= 1
            taken.add(remote.id)
            run = await self._save(run, index, StickerState.UPLOADED, sticker_id=remote.id)
        left = unfinished(run)
        if left:
            log.warning("run %s: not uploaded: %s", run.id, "; ".join(left))
        return run

    async def _save(
        self,
        run: Run,
        index: int,
        state: StickerState,
        *,
        sticker_id: str | None = None,
        error: str | None = None,
    ) -> Run:
        run = _with(run, index, state=state, sticker_id=sticker_id, error=error)
        await self.store.save_run(run)
        return run


#: a sticker in these states may be in the guild already: its upload's answer was lost (a
#: kill), or it failed by a deadline after Discord had made it
_MAYBE_MADE = frozenset({StickerState.UPLOADING, StickerState.FAILED})


def _with(run: Run, index: int, **changes: object) -> Run:
    stickers = list(run.stickers)
    stickers[index] = replace(stickers[index], **changes)  # type: ignore[arg-type]
    return replace(run, stickers=tuple(stickers))


def _media_of(run: Run, sticker: int) -> int:
    return next(i for i, item in enumerate(run.media) if item.description_index == sticker)


def _find(
    remote: Sequence[RemoteSticker], sticker: Sticker, taken: set[str]
) -> RemoteSticker | None:
    return next((r for r in remote if r.id not in taken and _same(r, sticker)), None)


def _no_slot(guild: GuildStickers) -> str:
    return (
        f"no free sticker slot in the guild (all {guild.slots} used; boost the server or delete "
        "stickers, then retry)"
    )
