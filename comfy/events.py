"""Typed progress events of one prompt, built from ComfyUI's WebSocket messages.

Frozen dataclasses only; imports only the standard library. The client turns `status`,
`execution_start`, `execution_cached`, `executing`, `progress` and `execution_success` into these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Queued:
    """The prompt waits on the server; `position` 0 means it is next (or already running)."""

    prompt_id: str
    position: int


@dataclass(frozen=True)
class Started:
    """The server began executing the prompt (`execution_start`)."""

    prompt_id: str


@dataclass(frozen=True)
class Cached:
    """These nodes will not run again: their results are cached (`execution_cached`)."""

    prompt_id: str
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class NodeRunning:
    """A node started running (`executing`); `class_type` comes from the workflow we sent."""

    prompt_id: str
    node_id: str
    class_type: str


@dataclass(frozen=True)
class Step:
    """A sampler-like node reported step `value` of `max` (`progress`)."""

    prompt_id: str
    node_id: str
    value: int
    max: int


@dataclass(frozen=True)
class Done:
    """The server finished the prompt (`execution_success`); outputs may still be downloading."""

    prompt_id: str


Event = Queued | Started | Cached | NodeRunning | Step | Done

#: called for every event of a prompt, in order, from the WebSocket reader: it must return fast
#: (put the event on an asyncio.Queue to do slow work); an exception it raises is logged
EventHandler = Callable[[Event], None]
