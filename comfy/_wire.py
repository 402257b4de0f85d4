"""TypedDicts of ComfyUI's JSON, as a 0.3.x server sends and accepts it (see comfyui-protocol.md).

Wire shapes only, no behaviour; imports only `typing`. Rich objects (events, errors, outputs)
are built from these in client.py. Keys a server may leave out are NotRequired.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict

# ---------------------------------------------------------------- workflow (API format)

#: a link to another node's output: [node id, output index]
Link = list[str | int]


class NodeJSON(TypedDict):
    class_type: str
    inputs: dict[str, object]
    _meta: NotRequired[dict[str, object]]


#: node id -> node
PromptJSON = dict[str, NodeJSON]


class PromptRequest(TypedDict):
    prompt: PromptJSON
    client_id: str
    prompt_id: NotRequired[str]
    front: NotRequired[bool]


class PromptAccepted(TypedDict):
    prompt_id: str
    number: float
    node_errors: dict[str, object]


class ErrorJSON(TypedDict):
    type: str
    message: str
    details: str
    extra_info: dict[str, object]


class NodeErrorJSON(TypedDict):
    errors: list[ErrorJSON]
    dependent_outputs: list[str]
    class_type: str


class PromptRejectedJSON(TypedDict):
    error: ErrorJSON
    node_errors: dict[str, NodeErrorJSON]


# ---------------------------------------------------------------- outputs


class FileJSON(TypedDict):
    """One file of an `executed` output or a history output."""

    filename: str
    subfolder: str
    type: Literal["output", "temp", "input"] | str
    format: NotRequired[str]


#: the `output` of one node: kind ("images", "gifs", "videos", "audio", ...) -> files, or other
#: lists (e.g. `animated: [true]`, `text: [...]`) that are not files
NodeOutputJSON = dict[str, object]


# ---------------------------------------------------------------- WebSocket messages


class ExecInfo(TypedDict):
    queue_remaining: int


class StatusInner(TypedDict):
    exec_info: ExecInfo


class StatusData(TypedDict):
    status: StatusInner
    sid: NotRequired[str]


class ExecutionStartData(TypedDict):
    prompt_id: str
    timestamp: int


class ExecutionCachedData(TypedDict):
    nodes: list[str]
    prompt_id: str
    timestamp: int


class ExecutingData(TypedDict):
    node: str | None
    display_node: NotRequired[str]
    prompt_id: str


class ProgressData(TypedDict):
    value: int
    max: int
    prompt_id: str
    node: str


class ExecutedData(TypedDict):
    node: str
    display_node: NotRequired[str]
    output: NodeOutputJSON | None
    prompt_id: str


class ExecutionSuccessData(TypedDict):
    prompt_id: str
    timestamp: int


class ExecutionErrorData(TypedDict):
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    exception_message: str
    exception_type: str
    traceback: list[str]
    current_inputs: dict[str, object]
    current_outputs: dict[str, object]


class ExecutionInterruptedData(TypedDict):
    prompt_id: str
    node_id: str
    node_type: str
    executed: list[str]
    timestamp: NotRequired[int]


class Message(TypedDict):
    type: str
    data: dict[str, object]


# ---------------------------------------------------------------- other endpoints


class HistoryStatus(TypedDict):
    status_str: Literal["success", "error"] | str
    completed: bool
    messages: list[list[object]]


class HistoryEntry(TypedDict):
    prompt: list[object]
    outputs: dict[str, NodeOutputJSON]
    status: HistoryStatus
    meta: NotRequired[dict[str, object]]


#: a queue item: [number, prompt id, prompt, extra data, output node ids, (sensitive...)]
QueueItem = list[object]


class QueueJSON(TypedDict):
    queue_running: list[QueueItem]
    queue_pending: list[QueueItem]


class UploadJSON(TypedDict):
    name: str
    subfolder: str
    type: str


class SystemJSON(TypedDict, total=False):
    os: str
    comfyui_version: str
    python_version: str
    pytorch_version: str
    ram_total: int
    ram_free: int


class DeviceJSON(TypedDict, total=False):
    name: str
    type: str
    index: int | None
    vram_total: int
    vram_free: int


class SystemStatsJSON(TypedDict):
    system: SystemJSON
    devices: list[DeviceJSON]


#: class name -> {"input": {"required": {...}, "optional": {...}}, "output": [...], ...}
ObjectInfoJSON = dict[str, dict[str, object]]
