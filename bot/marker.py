"""`ReviewMarker` and `PickMarker`: what the bot writes into each review (and pick between
stages) message to know it again after a restart.

The marker is the custom_id of the message's one button,
`mo:review:1:<run>:<part>:<parts>:<deadline>` (`mo:pick:1:...` for a pick; `:closed` added
once it is decided or expired): data the bot wrote for itself that no reader sees, so the
wording of a review can change freely. Pure: no I/O, no state. Imports discord's UI and
component types only.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import ClassVar, Self, TypeVar

import discord

#: the version in every marker: a later format gets a new number and this one stays readable
VERSION = 1
PREFIX = f"mo:review:{VERSION}:"
#: a run id as a marker carries it (Discord allows 100 characters in a custom_id)
RUN_ID = r"[A-Za-z0-9_-]{1,40}"
#: the prefix of a pick between stages' messages (`bot.stage_pick`)
PICK_PREFIX = f"mo:pick:{VERSION}:"


@functools.cache
def _pattern(prefix: str) -> re.Pattern[str]:
    return re.compile(
        re.escape(prefix) + rf"(?P<run_id>{RUN_ID}):(?P<part>\d{{1,3}}):(?P<parts>\d{{1,3}}):"
        r"(?P<deadline>\d{1,12}|-)(?P<closed>:closed)?"
    )


#: the "Edit caption" button: a live review's marker, or the bare form reviews had before
#: markers (`mo:caption:<run>`), whose buttons keep working
CAPTION_BUTTON_TEMPLATE = (
    rf"mo:caption:(?P<legacy>{RUN_ID})"
    rf"|(?P<marker>{re.escape(PREFIX)}{RUN_ID}:\d{{1,3}}:\d{{1,3}}:(?:\d{{1,12}}|-))"
)


@dataclass(frozen=True)
class Marker:
    """One message's identity, carried in its button's custom_id: whose message, which part of
    how many, until when, and whether it is closed. Each kind has its own prefix."""

    #: the custom_id's prefix of this kind of message
    PREFIX: ClassVar[str]

    run_id: str
    part: int
    parts: int
    deadline: datetime | None
    #: answered or expired: never taken up again
    closed: bool = False

    def __post_init__(self) -> None:
        if re.fullmatch(RUN_ID, self.run_id) is None:
            raise ValueError(f"a run id a marker cannot carry: {self.run_id!r}")
        if not 1 <= self.part <= self.parts:
            raise ValueError(f"part {self.part} of {self.parts}")

    @property
    def custom_id(self) -> str:
        deadline = "-" if self.deadline is None else str(int(self.deadline.timestamp()))
        closed = ":closed" if self.closed else ""
        return f"{self.PREFIX}{self.run_id}:{self.part}:{self.parts}:{deadline}{closed}"

    @property
    def last(self) -> bool:
        return self.part == self.parts

    @classmethod
    def parse(cls, custom_id: str) -> Self | None:
        """The marker of this kind a custom_id carries, or None when it is not one."""
        found = _pattern(cls.PREFIX).fullmatch(custom_id)
        if found is None:
            return None
        part, parts = int(found["part"]), int(found["parts"])
        if not 1 <= part <= parts:
            return None
        stamp = found["deadline"]
        return cls(
            run_id=found["run_id"],
            part=part,
            parts=parts,
            deadline=None if stamp == "-" else datetime.fromtimestamp(int(stamp), UTC),
            closed=found["closed"] is not None,
        )


@dataclass(frozen=True)
class ReviewMarker(Marker):
    """A review message's marker."""

    PREFIX: ClassVar[str] = PREFIX


@dataclass(frozen=True)
class PickMarker(Marker):
    """The marker of a pick between stages' message (`bot.stage_pick`)."""

    PREFIX: ClassVar[str] = PICK_PREFIX


M = TypeVar("M", bound=Marker)


def find_marker(components: Iterable[discord.Component], kind: type[M]) -> M | None:
    """The marker of `kind` among a message's components (its buttons), or None."""
    for component in components:
        if isinstance(component, discord.ActionRow):
            found = find_marker(component.children, kind)
            if found is not None:
                return found
        elif isinstance(component, discord.Button) and component.custom_id:
            marker = kind.parse(component.custom_id)
            if marker is not None:
                return marker
    return None


def marker_of(components: Iterable[discord.Component]) -> ReviewMarker | None:
    """The review marker among a message's components (its buttons), or None."""
    return find_marker(components, ReviewMarker)


class MarkerView(discord.ui.View):
    """A review message's button, carrying its marker. Only components: the clicks on "Edit
    caption" are answered by the review cog's DynamicItem, found by the custom_id, so this view
    is never kept listening (it holds no callback)."""

    def __init__(self, marker: ReviewMarker) -> None:
        super().__init__(timeout=None)
        if marker.last:
            button: discord.ui.Button[MarkerView] = discord.ui.Button(
                label="Edit caption",
                style=discord.ButtonStyle.secondary,
                custom_id=marker.custom_id,
                emoji="\N{MEMO}",
                disabled=marker.closed,
            )
        else:  # parts before the last only carry the marker; the answer goes on the last
            button = discord.ui.Button(
                label=f"Part {marker.part} of {marker.parts}",
                style=discord.ButtonStyle.secondary,
                custom_id=marker.custom_id,
                disabled=True,
            )
        self.add_item(button)

    def is_dispatchable(self) -> bool:
        return False
