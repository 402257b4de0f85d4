"""Every error the comfy package raises, one tree, drawn here.

Imports only the standard library. `str()` of an error is safe to show a user: text that came
from the server and may carry paths (exception messages, tracebacks) lives in attributes for logs.

    ComfyError
    ├── ComfyOffline            the server does not answer (refused, reset, timed out)
    │   └── NoServerAvailable   no server of a pool can take the job
    ├── ProtocolError           the server answered something we cannot read
    ├── PromptRejected          POST /prompt answered 400: `error` plus every node error
    ├── PreflightFailed         /object_info lacks a node class or an installed value
    ├── ExecutionFailed         `execution_error`: node id, node type, message, traceback
    ├── Cancelled               interrupted, or deleted from the queue
    ├── ComfyTimeout            no message for too long (stall), or the overall timeout
    ├── DownloadFailed          an output broke a download limit: too slow, too long, too large,
    │                           or more files than a job may have
    ├── OutputNotWritten        an output could not be saved here: the folder and the reason
    │                           (disk full, over quota, read-only)
    └── WorkflowError           a workflow file or an update to it is wrong
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class ComfyError(Exception):
    """Base of every error raised by the comfy package."""


class ComfyOffline(ComfyError):
    """The server did not answer: connection refused or reset, or no reply in time."""

    def __init__(self, url: str, reason: str = "") -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"ComfyUI at {url} is not answering" + (f" ({reason})" if reason else ""))


class NoServerAvailable(ComfyOffline):
    """No server of a pool is answering and able to run the job."""

    def __init__(self, reason: str) -> None:
        self.url = ""
        self.reason = reason
        ComfyError.__init__(self, f"no ComfyUI server can take the job: {reason}")


class ProtocolError(ComfyError):
    """The server answered, but not in a shape we understand."""


@dataclass(frozen=True)
class NodeError:
    """One entry of a 400 answer's `node_errors`: which node, which input, what is wrong."""

    node_id: str
    class_type: str
    type: str
    message: str
    details: str
    input_name: str | None

    def __str__(self) -> str:
        message = self.message[:1].lower() + self.message[1:] if self.message else self.type
        where = f"node {self.class_type} ({self.node_id})"
        if self.input_name:
            where += f" input {self.input_name}"
        text = f"{where}: {message}"
        # For these types the message alone says it all (details repeat the input name or list
        # every installed model); for the others the details carry the useful part.
        if self.details and self.type not in {"value_not_in_list", "required_input_missing"}:
            text += f" ({self.details})"
        return text


class PromptRejected(ComfyError):
    """ComfyUI refused the prompt (HTTP 400): keeps its `error` and every node error."""

    def __init__(
        self,
        error_type: str,
        message: str,
        details: str,
        node_errors: Sequence[NodeError],
    ) -> None:
        self.error_type = error_type
        self.message = message
        self.details = details
        self.node_errors = tuple(node_errors)
        super().__init__(self._text())

    @property
    def unknown_class(self) -> bool:
        """True when the server has no node class of that name (0.3.x: `invalid_prompt`,
        "Cannot execute because node X does not exist."; newer: `missing_node_type`)."""
        return self.error_type == "missing_node_type" or (
            self.error_type == "invalid_prompt" and "does not exist" in self.message
        )

    def lines(self) -> list[str]:
        """One line per node error, or the overall error when there are none."""
        if self.node_errors:
            return [str(e) for e in self.node_errors]
        return [self.message + (f" ({self.details})" if self.details else "")]

    def _text(self) -> str:
        return f"ComfyUI rejected the prompt: {self.message or self.error_type}\n" + "\n".join(
            self.lines()
        )


class PreflightFailed(ComfyError):
    """The server lacks node classes, or installed values (checkpoints, LoRAs), a workflow uses."""

    def __init__(self, url: str, problems: Sequence[str]) -> None:
        self.url = url
        self.problems = tuple(problems)
        super().__init__(f"ComfyUI at {url} cannot run this workflow:\n" + "\n".join(problems))


class ExecutionFailed(ComfyError):
    """A node raised while the prompt ran (`execution_error`).

    `str()` names the node only: `exception_message` and `traceback` can hold server paths, so
    they are kept for the log.
    """

    def __init__(
        self,
        prompt_id: str,
        node_id: str,
        node_type: str,
        exception_type: str,
        exception_message: str,
        traceback: Sequence[str],
    ) -> None:
        self.prompt_id = prompt_id
        self.node_id = node_id
        self.node_type = node_type
        self.exception_type = exception_type
        self.exception_message = exception_message
        self.traceback = tuple(traceback)
        super().__init__(f"node {node_type} ({node_id}) failed on the ComfyUI server")

    def log_text(self) -> str:
        """The full story for a log: message and the last traceback lines (may hold paths)."""
        tail = "".join(self.traceback[-3:])
        return (
            f"node {self.node_type} ({self.node_id}) raised {self.exception_type}: "
            f"{self.exception_message}\n{tail}"
        )


class Cancelled(ComfyError):
    """The prompt was interrupted or removed from the queue before it finished."""

    def __init__(self, prompt_id: str, reason: str = "cancelled") -> None:
        self.prompt_id = prompt_id
        self.reason = reason
        super().__init__(f"prompt {prompt_id} {reason}")


class ComfyTimeout(ComfyError):
    """A prompt sent no message for too long while running, or ran past its overall limit."""

    def __init__(self, prompt_id: str, reason: str) -> None:
        self.prompt_id = prompt_id
        self.reason = reason
        super().__init__(f"prompt {prompt_id} timed out: {reason}")


class DownloadFailed(ComfyError):
    """An output could not be fetched within the limits: the server sent it too slowly, for too
    long, or too much of it, or reported more files than one job may have."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"could not download the outputs from ComfyUI at {url}: {reason}")


class OutputNotWritten(ComfyError):
    """A download could not be saved: `path` is the folder, `reason` what the system said
    (e.g. "no space left on device"). Nothing partial is left behind."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"cannot write the media folder {path}: {reason}")

    @classmethod
    def from_os_error(cls, path: Path, exc: OSError) -> OutputNotWritten:
        text = exc.strerror or type(exc).__name__
        return cls(path, text[:1].lower() + text[1:])


class WorkflowError(ComfyError):
    """A workflow file cannot be used, or an update does not fit it (names file, node, input)."""
