"""ComfyUI's JSON as a 0.3.x server sends and accepts it (see comfyui-protocol.md), and reading it.

TypedDicts of the wire shapes (keys a server may leave out are NotRequired), then the pure
functions that turn answers into our records and errors, trusting nothing. Imports only the
standard library, comfy.records and comfy.errors.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Literal, NotRequired, TypedDict, cast

from comfy.errors import ExecutionFailed, NodeError, PromptRejected
from comfy.records import Device, Outputs, QueueState, RemoteFile, SystemStats

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


# ---------------------------------------------------------------- reading answers


def remote_files(outputs: Outputs) -> list[RemoteFile]:
    """Every file of every list under every node's output, except `temp` previews."""
    files = []
    for node_id, output in outputs.items():
        for kind, entries in output.items():
            if not isinstance(entries, list):
                continue
            for entry in entries:
                if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str):
                    continue  # e.g. `animated: [true]` or `text: [...]`: not files
                item = cast(FileJSON, entry)
                if item.get("type") == "temp":
                    continue
                files.append(
                    RemoteFile(
                        node_id=node_id,
                        kind=kind,
                        filename=item["filename"],
                        subfolder=str(item.get("subfolder") or ""),
                        type=str(item.get("type") or "output"),
                    )
                )
    return files


def count_files(outputs: Outputs) -> int:
    return len(remote_files(outputs))


def merge_output(outputs: Outputs, node_id: str, output: object) -> None:
    if not isinstance(output, dict):
        return
    merged = outputs.setdefault(node_id, {})
    for kind, value in output.items():
        if isinstance(value, list):
            known = merged.get(str(kind))
            merged[str(kind)] = (known if isinstance(known, list) else []) + value


def rejected(payload: object) -> PromptRejected:
    """Turn a 400 body from POST /prompt into a typed error keeping every node error."""
    body = payload if isinstance(payload, dict) else {}
    error = body.get("error")
    if isinstance(error, dict):
        error_type = str(error.get("type", ""))
        message = str(error.get("message", ""))
        details = str(error.get("details", ""))
    else:  # very old servers answered {"error": "no prompt"}
        error_type, message, details = "error", str(error or "rejected"), ""
    node_errors: list[NodeError] = []
    raw_nodes = body.get("node_errors")
    if isinstance(raw_nodes, dict):
        for node_id, entry in raw_nodes.items():
            if not isinstance(entry, dict):
                continue
            class_type = str(entry.get("class_type", "?"))
            for err in entry.get("errors") or []:
                if not isinstance(err, dict):
                    continue
                extra = err.get("extra_info")
                input_name = extra.get("input_name") if isinstance(extra, dict) else None
                node_errors.append(
                    NodeError(
                        node_id=str(node_id),
                        class_type=class_type,
                        type=str(err.get("type", "")),
                        message=str(err.get("message", "")),
                        details=str(err.get("details", "")),
                        input_name=str(input_name) if input_name is not None else None,
                    )
                )
    return PromptRejected(error_type, message, details, node_errors)


def execution_failed(prompt_id: str, data: Mapping[str, object]) -> ExecutionFailed:
    traceback = data.get("traceback")
    return ExecutionFailed(
        prompt_id=prompt_id,
        node_id=str(data.get("node_id", "?")),
        node_type=str(data.get("node_type", "?")),
        exception_type=str(data.get("exception_type", "")),
        exception_message=str(data.get("exception_message", "")),
        traceback=[str(line) for line in traceback] if isinstance(traceback, list) else [],
    )


def new_prompt_id() -> str:
    """A fresh prompt id, in the form ComfyUI itself uses (a UUID4)."""
    return str(uuid.uuid4())


def succeeded(entry: HistoryEntry) -> bool:
    raw = entry.get("status")
    status: Mapping[str, object] = raw if isinstance(raw, dict) else {}
    return status.get("status_str") == "success" or status.get("completed") is True


def queue_state(raw: object) -> QueueState:
    """GET /queue's answer: prompt ids running and pending, each in run order."""

    def ids(items: object) -> tuple[str, ...]:
        if not isinstance(items, list):
            return ()
        rows = [i for i in items if isinstance(i, list) and len(i) > 1]
        rows.sort(key=lambda i: i[0] if isinstance(i[0], int | float) else 0)
        return tuple(str(i[1]) for i in rows)

    answer: Mapping[str, object] = raw if isinstance(raw, dict) else {}
    return QueueState(ids(answer.get("queue_running")), ids(answer.get("queue_pending")))


def system_stats(raw: object) -> SystemStats:
    """GET /system_stats's answer; "?" for what a server leaves out."""
    answer = cast(SystemStatsJSON, raw if isinstance(raw, dict) else {})
    system = answer.get("system") or {}
    devices = tuple(
        Device(
            name=str(d.get("name", "?")),
            type=str(d.get("type", "?")),
            vram_total=int(d.get("vram_total") or 0),
            vram_free=int(d.get("vram_free") or 0),
        )
        for d in answer.get("devices") or []
    )
    return SystemStats(
        comfyui_version=str(system.get("comfyui_version", "?")),
        os=str(system.get("os", "?")),
        python_version=str(system.get("python_version", "?")),
        pytorch_version=str(system.get("pytorch_version", "?")),
        devices=devices,
    )
