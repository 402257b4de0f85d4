"""Everything known about one prompt we queued or attached to, fed by the WebSocket reader.

A Watch turns the prompt's messages into typed events for its handler and settles its future
with the outputs or an error. Imports only the standard library and comfy's own modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from comfy._wire import count_files, execution_failed, merge_output
from comfy.errors import Cancelled, ComfyError, DownloadFailed
from comfy.events import Cached, Done, Event, EventHandler, NodeRunning, Queued, Started, Step
from comfy.records import Outputs

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Watch:
    """Everything known about one prompt we queued; fed by the WebSocket reader."""

    prompt_id: str
    class_types: dict[str, str]
    handler: EventHandler | None
    future: asyncio.Future[Outputs]
    submitted_at: float
    last_activity: float
    started: bool = False
    outputs: Outputs = field(default_factory=dict)
    #: more output files than this fail the prompt at once (0: no cap); `url` names the server
    max_files: int = 0
    url: str = ""
    #: the place last reported in a Queued event (None: none yet)
    position: int | None = None
    #: an attached prompt is followed by polling, not by the queue reads of `status` messages
    polled: bool = False
    #: the server answered our POST, with this place in its run order (None: it gave none)
    posted: bool = False
    number: float | None = None

    def report_place(self, place: int | None) -> None:
        if self.waits_for_place and place is not None and place != self.position:
            self.position = place
            self.emit(Queued(self.prompt_id, place))

    @property
    def waits_for_place(self) -> bool:
        """True while a handler wants to hear this prompt's place in the queue."""
        return (
            self.handler is not None
            and not self.polled
            and not self.started
            and not self.future.done()
        )

    def emit(self, event: Event) -> None:
        if self.handler is None:
            return
        try:
            self.handler(event)
        except Exception:  # a progress display must never break the reader
            log.exception("progress handler failed on %r", event)

    def succeed(self) -> None:
        if not self.future.done():
            self.future.set_result(self.outputs)
            self.emit(Done(self.prompt_id))

    def fail(self, error: ComfyError) -> None:
        if not self.future.done():
            self.future.set_exception(error)

    def handle(self, kind: str, data: Mapping[str, object], now: float) -> None:
        self.last_activity = now
        pid = self.prompt_id
        if kind == "execution_start":
            self.started = True
            self.emit(Started(pid))
        elif kind == "execution_cached":
            nodes = data.get("nodes")
            if isinstance(nodes, list) and nodes:
                self.emit(Cached(pid, tuple(str(n) for n in nodes)))
        elif kind == "executing":
            node = data.get("node")
            if node is not None:  # `node: null` is the end: the client settles it
                self.started = True
                node_id = str(node)
                self.emit(NodeRunning(pid, node_id, self.class_types.get(node_id, "?")))
        elif kind == "progress":
            value, maximum = data.get("value"), data.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float):
                self.emit(Step(pid, str(data.get("node", "")), int(value), int(maximum)))
        elif kind == "executed":
            merge_output(self.outputs, str(data.get("node", "")), data.get("output"))
            found = count_files(self.outputs)
            if self.max_files and found > self.max_files:
                # the list grows with every message: refuse it now, not at download time
                self.outputs.clear()
                self.fail(
                    DownloadFailed(
                        self.url,
                        f"the job reported more than {self.max_files} output files, "
                        "the most one job may have",
                    )
                )
        elif kind == "execution_success":
            self.succeed()
        elif kind == "execution_error":
            error = execution_failed(pid, data)
            log.warning("prompt %s failed: %s", pid, error.log_text())
            self.fail(error)
        elif kind == "execution_interrupted":
            self.fail(Cancelled(pid, "was interrupted"))


def retrieve(future: asyncio.Future[Outputs]) -> None:
    """Mark a watch's exception as seen, so an abandoned prompt does not log at GC."""
    if not future.cancelled():
        future.exception()
