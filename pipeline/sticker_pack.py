"""What the run walker needs for a sticker pack: who lists the stickers, who uploads them, and the
strategy's settings from the character's `stickers` section.

The policies themselves live beside their kin: the list in `pipeline.prompts.stickers`, the
uploads in `pipeline.publish.stickers`, the contact sheet in `pipeline.previews`. Imports domain
modules and `strategies.base`; never a concrete service, never bot or discord.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from comfy import Workflow
from pipeline.models import Run, Sticker
from strategies.base import StageSetup, StickerSetup

if TYPE_CHECKING:
    from pipeline.characters import Character
    from pipeline.run import Idea


class StickerWriter(Protocol):
    async def list_stickers(
        self, character: Character, idea: Idea, *, style: str, count: int
    ) -> list[tuple[Sticker, str]]:
        """Up to `count` stickers for `character`, each with the image prompt it is drawn from."""
        ...


class StickerUploads(Protocol):
    async def upload(self, run: Run, folder: Path) -> Run:
        """Upload the run's selected stickers not uploaded yet, at most once each, saving the
        run before and after each; the run with every sticker's state."""
        ...


def sticker_setup(character: Character) -> StickerSetup:
    """The sticker strategy's settings (blocking: it reads the background workflow's file)."""
    settings = character.spec.stickers
    remove = None
    if settings.background == "comfyui":
        remove = StageSetup(workflow=Workflow.load(character.root / settings.remove_background))
    return StickerSetup(
        background=settings.background,
        animated=settings.animated,
        tolerance=settings.tolerance,
        remove_background=remove,
    )
