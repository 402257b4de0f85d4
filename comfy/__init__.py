"""An async client for ComfyUI: queue API-format workflows, watch them, fetch their outputs.

Imports only the standard library and aiohttp, so it could be published on its own. The pipeline
uses ComfyPool (submit / run / ComfyJob.result), Workflow and the errors below.
"""

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
from comfy.events import Cached, Done, Event, EventHandler, NodeRunning, Queued, Started, Step
from comfy.pool import ComfyJob, ComfyPool, ServerSpec
from comfy.preflight import ServerPreflight, preflight_servers
from comfy.workflow import Workflow

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
