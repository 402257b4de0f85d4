"""An async client for ComfyUI: queue API-format workflows, watch them, fetch their outputs.

Imports only the standard library and aiohttp, so it could be published on its own. The pipeline
uses ComfyPool (submit / run / ComfyJob.result), Workflow and the errors below.

The names load with their module on first use (PEP 562): `from comfy import Workflow` or an
error class costs no aiohttp import, so a command that never talks to a server starts quickly.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from comfy.client import (
        ComfyClient,
        Device,
        OutputFile,
        QueueState,
        RemoteFile,
        SystemStats,
        new_prompt_id,
    )
    from comfy.errors import (
        Cancelled,
        ComfyError,
        ComfyOffline,
        ComfyTimeout,
        DownloadFailed,
        ExecutionFailed,
        NodeError,
        NoServerAvailable,
        OutputNotWritten,
        PreflightFailed,
        PromptRejected,
        ProtocolError,
        WorkflowError,
    )
    from comfy.events import (
        Cached,
        Done,
        Event,
        EventHandler,
        NodeRunning,
        Queued,
        Started,
        Step,
    )
    from comfy.pool import ComfyJob, ComfyPool
    from comfy.preflight import ServerPreflight, preflight_servers
    from comfy.records import ServerSpec
    from comfy.workflow import Workflow

#: each public name and the module that defines it
_HOME = {
    **dict.fromkeys(
        ("ComfyClient", "Device", "OutputFile", "QueueState", "RemoteFile", "SystemStats"),
        "comfy.client",
    ),
    "new_prompt_id": "comfy.client",
    **dict.fromkeys(
        (
            "Cancelled",
            "ComfyError",
            "ComfyOffline",
            "ComfyTimeout",
            "DownloadFailed",
            "ExecutionFailed",
            "NodeError",
            "NoServerAvailable",
            "OutputNotWritten",
            "PreflightFailed",
            "PromptRejected",
            "ProtocolError",
            "WorkflowError",
        ),
        "comfy.errors",
    ),
    **dict.fromkeys(
        ("Cached", "Done", "Event", "EventHandler", "NodeRunning", "Queued", "Started", "Step"),
        "comfy.events",
    ),
    **dict.fromkeys(("ComfyJob", "ComfyPool"), "comfy.pool"),
    "ServerSpec": "comfy.records",
    **dict.fromkeys(("ServerPreflight", "preflight_servers"), "comfy.preflight"),
    "Workflow": "comfy.workflow",
}


def __getattr__(name: str) -> object:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'comfy' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # the next lookup is a plain one
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})


__all__ = [
    "Cached",
    "Cancelled",
    "ComfyClient",
    "ComfyError",
    "ComfyJob",
    "ComfyOffline",
    "ComfyPool",
    "ComfyTimeout",
    "Device",
    "Done",
    "DownloadFailed",
    "Event",
    "EventHandler",
    "ExecutionFailed",
    "NoServerAvailable",
    "NodeError",
    "NodeRunning",
    "OutputFile",
    "OutputNotWritten",
    "PreflightFailed",
    "PromptRejected",
    "ProtocolError",
    "QueueState",
    "Queued",
    "RemoteFile",
    "ServerPreflight",
    "ServerSpec",
    "Started",
    "Step",
    "SystemStats",
    "Workflow",
    "WorkflowError",
    "new_prompt_id",
    "preflight_servers",
]
