"""Preflight of workflows against several ComfyUI servers: what each server lacks to run each.

One GET /object_info per server (all servers at once); a server that does not answer is
reported as unreachable, never as a failure of the workflows. Imports only the standard
library, aiohttp and comfy's own modules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from comfy.client import ComfyClient
from comfy.download import MB
from comfy.errors import ComfyOffline, ProtocolError
from comfy.validation import workflow_problems
from comfy.workflow import Workflow


@dataclass(frozen=True)
class ServerPreflight:
    """One server's answer: None `unreachable` when it answered, else why it did not."""

    url: str
    unreachable: str | None = None
    #: workflow name -> what stops this server running it (missing node classes first)
    problems: Mapping[str, Sequence[str]] = field(default_factory=dict)
    #: workflow name -> the node each of its problems is at, in order (None: the whole workflow)
    nodes: Mapping[str, Sequence[str | None]] = field(default_factory=dict)


async def _one(
    url: str,
    workflows: Mapping[str, Workflow],
    *,
    request_timeout: float,
    connect_timeout: float,
    object_info_max_bytes: int,
) -> ServerPreflight:
    async with ComfyClient(
        url,
        request_timeout=request_timeout,
        connect_timeout=connect_timeout,
        object_info_max_bytes=object_info_max_bytes,
    ) as client:
        try:
            info = await client.object_info()  # read just now: its answers need no second read
            found = {name: workflow_problems(wf, info) for name, wf in workflows.items()}
        except ComfyOffline as exc:
            return ServerPreflight(client.url, unreachable=exc.reason or "no answer")
        except ProtocolError as exc:
            return ServerPreflight(client.url, unreachable=str(exc))
    return ServerPreflight(
        client.url,
        problems={k: [text for _, text in v] for k, v in found.items() if v},
        nodes={k: [node for node, _ in v] for k, v in found.items() if v},
    )


async def preflight_servers(
    urls: Sequence[str],
    workflows: Mapping[str, Workflow],
    *,
    request_timeout: float = 30.0,
    connect_timeout: float = 5.0,
    object_info_max_bytes: int = 128 * MB,
) -> list[ServerPreflight]:
    """Check every workflow against every server (in the order of `urls`)."""
    return list(
        await asyncio.gather(
            *(
                _one(
                    url,
                    workflows,
                    request_timeout=request_timeout,
                    connect_timeout=connect_timeout,
                    object_info_max_bytes=object_info_max_bytes,
                )
                for url in urls
            )
        )
    )
