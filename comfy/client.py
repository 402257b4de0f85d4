"""ComfyClient: one ComfyUI server over one aiohttp session and one shared WebSocket.

Owns queueing (POST /prompt), routing WebSocket messages by prompt_id to their waiters, the stall
watchdog, cancel, upload, preflight and streamed downloads. Imports only the standard library,
aiohttp and the comfy package (never pipeline/, strategies/ or bot/).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import re
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Self, cast

import aiohttp

from comfy._wire import (
    FileJSON,
    HistoryEntry,
    NodeOutputJSON,
    ObjectInfoJSON,
    PromptJSON,
    PromptRequest,
    QueueJSON,
    SystemStatsJSON,
    UploadJSON,
)
from comfy.errors import (
    Cancelled,
    ComfyError,
    ComfyOffline,
    ComfyTimeout,
    DownloadFailed,
    ExecutionFailed,
    NodeError,
    OutputNotWritten,
    PreflightFailed,
    PromptRejected,
    ProtocolError,
)
from comfy.events import Cached, Done, Event, EventHandler, NodeRunning, Queued, Started, Step
from comfy.validation import validate
from comfy.workflow import Workflow

log = logging.getLogger(__name__)

#: node id -> that node's `output` (kind -> list of files or other values)
Outputs = dict[str, NodeOutputJSON]

MB = 2**20
#: JSON larger than this is parsed in a thread, so the event loop never waits on it
_PARSE_IN_THREAD = 256 * 1024


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class RemoteFile:
    """A file a node reported; `filename` and `subfolder` are the server's and never trusted."""

    node_id: str
    kind: str
    filename: str
    subfolder: str
    type: str


@dataclass(frozen=True)
class OutputFile:
    """One downloaded output: local `path`, the node and kind it came from, the server's name."""

    path: Path
    node_id: str
    kind: str  # "images", "gifs" (video-combine mp4s), "videos", "audio", or another list name
    filename: str


@dataclass(frozen=True)
class QueueState:
    """Prompt ids on the server: the one(s) running and those pending, in run order."""

    running: tuple[str, ...]
    pending: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.running) + len(self.pending)

    def position(self, prompt_id: str) -> int | None:
        order = self.running + self.pending
        return order.index(prompt_id) if prompt_id in order else None


@dataclass(frozen=True)
class Device:
    name: str
    type: str
    vram_total: int
    vram_free: int


@dataclass(frozen=True)
class SystemStats:
    comfyui_version: str
    os: str
    python_version: str
    pytorch_version: str
    devices: tuple[Device, ...]


# ---------------------------------------------------------------- helpers

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str, *, default: str = "output", max_len: int = 120) -> str:
    """A local file name from a server-given one: no directories, a small alphabet, no dotfile."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = _UNSAFE.sub("_", base).lstrip(".-")  # no dotfiles, nothing that reads as an option
    stem, dot, ext = base.rpartition(".")
    if not dot:
        stem, ext = base, ""
    ext = ext[:12]
    stem = stem.rstrip(".")[: max_len - len(ext) - 1] or default
    return f"{stem}.{ext}" if ext else stem


def _mb(size: float) -> str:
    return f"{size / MB:g} MB"


def _discard(handle: IO[bytes] | None, path: Path | None) -> None:
    """Close and remove a download that did not finish (in a thread; never raises)."""
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


async def _remove(handle: IO[bytes] | None, path: Path) -> None:
    """Remove a download that did not finish, in a thread, and wait until it is gone even when
    cancelled meanwhile (the removal is quick; the cancel is passed on once it is done)."""
    removal = asyncio.ensure_future(asyncio.to_thread(_discard, handle, path))
    cancelled = False
    while not removal.done():
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _create_unique(directory: Path, name: str) -> tuple[Path, IO[bytes]]:
    """Create `name` in `directory`, or `stem-1.ext`, `stem-2.ext`... (never overwrites, no
    symlink is followed: O_EXCL). Runs in a thread."""
    directory.mkdir(parents=True, exist_ok=True)
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, ""
    suffix = f".{ext}" if ext else ""
    number = 0
    while True:
        candidate = directory / (name if number == 0 else f"{stem}-{number}{suffix}")
        try:
            return candidate, candidate.open("xb")
        except FileExistsError:
            number += 1


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


def _count_files(outputs: Outputs) -> int:
    return len(remote_files(outputs))


def _merge_output(outputs: Outputs, node_id: str, output: object) -> None:
    if not isinstance(output, dict):
        return
    merged = outputs.setdefault(node_id, {})
    for kind, value in output.items():
        if isinstance(value, list):
            known = merged.get(str(kind))
            merged[str(kind)] = (known if isinstance(known, list) else []) + value


def _rejected(payload: object) -> PromptRejected:
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


def _execution_failed(prompt_id: str, data: Mapping[str, object]) -> ExecutionFailed:
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


def _succeeded(entry: HistoryEntry) -> bool:
    raw = entry.get("status")
    status: Mapping[str, object] = raw if isinstance(raw, dict) else {}
    return status.get("status_str") == "success" or status.get("completed") is True


# ---------------------------------------------------------------- per-prompt state


@dataclass(eq=False)
class _Watch:
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
            if node is not None:  # `node: null` (done, whatever the outcome): see _on_text
                self.started = True
                node_id = str(node)
                self.emit(NodeRunning(pid, node_id, self.class_types.get(node_id, "?")))
        elif kind == "progress":
            value, maximum = data.get("value"), data.get("max")
            if isinstance(value, int | float) and isinstance(maximum, int | float):
                self.emit(Step(pid, str(data.get("node", "")), int(value), int(maximum)))
        elif kind == "executed":
            _merge_output(self.outputs, str(data.get("node", "")), data.get("output"))
            found = _count_files(self.outputs)
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
            error = _execution_failed(pid, data)
            log.warning("prompt %s failed: %s", pid, error.log_text())
            self.fail(error)
        elif kind == "execution_interrupted":
            self.fail(Cancelled(pid, "was interrupted"))


def _retrieve(future: asyncio.Future[Outputs]) -> None:
    """Mark a watch's exception as seen, so an abandoned prompt does not log at GC."""
    if not future.cancelled():
        future.exception()


# ---------------------------------------------------------------- the client


class ComfyClient:
    """A client of one ComfyUI server. Use as `async with ComfyClient(url) as client:`.

    Many prompts, from many tasks, share one WebSocket: messages are routed by prompt_id. The
    WebSocket reconnects by itself (backoff `reconnect_delay` .. `reconnect_max_delay`) and then
    asks /history for prompts that ended while it was away.

    Every answer is bounded in time and size: JSON answers by `request_timeout` and
    `answer_max_bytes` (`object_info_max_bytes` for /object_info, which lists every node and
    installed file and is megabytes on a server with many custom nodes); WebSocket messages by
    `ws_max_message_bytes` (real servers send previews of a few hundred KB, and a full-size PNG
    from a "send image over WebSocket" node is tens of MB at most); each output file by
    `download_timeout`, `download_min_rate` and `download_max_bytes`; a job by `max_outputs`
    files and by its overall time limit, its downloads included.
    """

    def __init__(
        self,
        url: str,
        *,
        session: aiohttp.ClientSession | None = None,
        client_id: str | None = None,
        request_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        stall_timeout: float = 300.0,
        job_timeout: float = 6 * 3600.0,
        reconnect_delay: float = 0.2,
        reconnect_max_delay: float = 15.0,
        heartbeat: float = 30.0,
        download_chunk_size: int = 1 << 20,
        parallel_downloads: int = 4,
        download_timeout: float = 1800.0,
        download_min_rate: float = 32 * 1024,
        download_rate_window: float = 30.0,
        download_max_bytes: int = 2048 * MB,
        max_outputs: int = 100,
        ws_max_message_bytes: int = 64 * MB,
        answer_max_bytes: int = 64 * MB,
        object_info_max_bytes: int = 128 * MB,
        unclaimed_messages: int = 512,
        unclaimed_max_bytes: int = 8 * MB,
        poll_interval: float = 1.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.stall_timeout = stall_timeout
        self.job_timeout = job_timeout
        self.reconnect_delay = reconnect_delay
        self.reconnect_max_delay = reconnect_max_delay
        self.heartbeat = heartbeat
        self.download_chunk_size = download_chunk_size
        self.download_timeout = download_timeout  # per file, from the request to the last byte
        self.download_min_rate = download_min_rate  # bytes/s, averaged over each window
        self.download_rate_window = download_rate_window
        self.download_max_bytes = download_max_bytes  # per file
        self.max_outputs = max_outputs  # files per job (temp previews not counted)
        self.ws_max_message_bytes = ws_max_message_bytes
        self.answer_max_bytes = answer_max_bytes  # any JSON answer but /object_info's
        self.object_info_max_bytes = object_info_max_bytes
        self.unclaimed_max_bytes = unclaimed_max_bytes
        self.poll_interval = poll_interval
        self.queue_remaining: int | None = None  # from the last `status` message
        self._session = session
        self._owns_session = session is None
        self._watches: dict[str, _Watch] = {}
        # messages for prompt ids nobody watches yet (a server that ignores our prompt_id)
        self._unclaimed: deque[tuple[str, str, dict[str, object], int]] = deque()
        self._unclaimed_bytes = 0
        self.unclaimed_messages = unclaimed_messages
        self._ws_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._detached = False
        self._background: set[asyncio.Task[None]] = set()
        # the node list, kept while the WebSocket stays up (dropped on a reconnect, when the
        # server may have restarted with other nodes, and when it refuses a node class)
        self._object_info: ObjectInfoJSON | None = None
        self._object_info_lock = asyncio.Lock()
        # one queue read at a time for Queued events; `_places_stale` asks for one more
        self._places_task: asyncio.Task[None] | None = None
        self._places_stale = False
        self._retry_now = asyncio.Event()  # cuts a reconnect backoff short (connect() waits)
        self._downloads = asyncio.Semaphore(parallel_downloads)

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def detached(self) -> bool:
        """True after `detach()`: our jobs' cancellations leave their prompts on the server."""
        return self._detached

    def detach(self) -> None:
        """From now on leave our queued prompts in place when the work waiting on them stops
        (a shutdown): `ComfyJob.cancel` and the take-back of a half-sent prompt do nothing, so
        the server goes on and a later `attach` (the next start's resume) takes them over.
        An explicit `cancel(prompt_id)` still cancels."""
        self._detached = True

    def open(self) -> None:
        """Start opening the WebSocket in the background (it reconnects by itself from then on)."""
        if self._ws_task is None or self._ws_task.done():
            self._closing = False
            self._ws_task = asyncio.create_task(self._ws_loop(), name=f"comfy-ws {self.url}")
            self._ws_task.add_done_callback(self._ws_ended)

    async def connect(self) -> None:
        """Open the WebSocket now (it also opens on the first submit); ComfyOffline if it can't."""
        self.open()
        if not self.connected:
            self._retry_now.set()  # a reconnect waiting out its backoff tries at once
        try:
            # asyncio.timeout, not wait_for: 3.11's wait_for drops a cancel that lands as the
            # wait ends, and a cancelled run would then go on waiting for its job
            async with asyncio.timeout(self.connect_timeout):
                await self._connected.wait()
        except TimeoutError:
            raise ComfyOffline(self.url, "no WebSocket connection") from None

    async def close(self) -> None:
        """Stop the WebSocket; prompts still awaited fail with Cancelled (they stay queued)."""
        self._closing = True
        tasks = [t for t in (self._ws_task, *self._background) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._ws_task = None
        for watch in self._watches.values():
            watch.fail(Cancelled(watch.prompt_id, "was abandoned: the client closed"))
        self._watches.clear()
        self._connected.clear()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def _ws_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("WebSocket reader of %s died", self.url, exc_info=task.exception())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run a background coroutine, keep a reference and log its failure."""
        task = asyncio.create_task(coro, name=name)
        self._background.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", name, exc_info=t.exception())

        task.add_done_callback(finished)
        return task

    # ------------------------------------------------------------ HTTP

    def _timeout(self) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(total=self.request_timeout, connect=self.connect_timeout)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: object = None,
        data: aiohttp.FormData | None = None,
        params: Mapping[str, str] | None = None,
        ok: Iterable[int] = (200,),
        limit: int | None = None,
    ) -> tuple[int, object]:
        """One HTTP request; returns (status, parsed JSON or None). ComfyOffline on no answer,
        ProtocolError on another status or an answer over `limit` bytes (`answer_max_bytes`)."""
        limit = self.answer_max_bytes if limit is None else limit
        try:
            async with self.session.request(
                method,
                self.url + path,
                json=body if data is None and body is not None else None,
                data=data,
                params=params,
                timeout=self._timeout(),
            ) as resp:
                status = resp.status
                if status not in ok:  # its body is not read: it may be anything, of any size
                    raise ProtocolError(f"{method} {path} on {self.url} answered HTTP {status}")
                raw = await self._read_capped(resp, f"{method} {path}", limit)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # any failure to get a well-formed answer (no connection, a broken response from
            # the server or a proxy in front of it) is "not answering", never aiohttp's own
            raise ComfyOffline(self.url, type(exc).__name__) from exc
        if not raw.strip():
            return status, None
        try:
            if len(raw) > _PARSE_IN_THREAD:
                return status, await asyncio.to_thread(json.loads, raw)
            return status, json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            raise ProtocolError(f"{method} {path} on {self.url} answered non-JSON") from exc

    async def _read_capped(self, resp: aiohttp.ClientResponse, what: str, limit: int) -> bytes:
        """The body, read piece by piece from the stream and never past `limit` bytes."""
        too_big = ProtocolError(f"{what} on {self.url} answered more than {_mb(limit)}")
        if resp.content_length is not None and resp.content_length > limit:
            raise too_big
        body = bytearray()
        while chunk := await resp.content.readany():
            body += chunk
            if len(body) > limit:
                raise too_big
        return bytes(body)

    async def _get(self, path: str) -> object:
        return (await self._request("GET", path))[1]

    async def queue(self) -> QueueState:
        """GET /queue: which prompts run and which wait."""
        raw = cast(QueueJSON, await self._get("/queue"))

        def ids(items: object) -> tuple[str, ...]:
            if not isinstance(items, list):
                return ()
            rows = [i for i in items if isinstance(i, list) and len(i) > 1]
            rows.sort(key=lambda i: i[0] if isinstance(i[0], int | float) else 0)
            return tuple(str(i[1]) for i in rows)

        return QueueState(ids(raw.get("queue_running")), ids(raw.get("queue_pending")))

    async def queue_remaining_now(self) -> int:
        """GET /prompt: how many prompts the server still has to run (a cheap health check)."""
        raw = await self._get("/prompt")
        try:
            return int(cast(dict[str, dict[str, int]], raw)["exec_info"]["queue_remaining"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ProtocolError(f"GET /prompt on {self.url} answered {raw!r:.100}") from exc

    async def history(self, prompt_id: str) -> HistoryEntry | None:
        """GET /history/{id}: the finished prompt's record, or None while unknown or pending."""
        raw = await self._get(f"/history/{prompt_id}")
        if isinstance(raw, dict) and isinstance(raw.get(prompt_id), dict):
            return cast(HistoryEntry, raw[prompt_id])
        return None

    async def system_stats(self) -> SystemStats:
        raw = cast(SystemStatsJSON, await self._get("/system_stats"))
        system = raw.get("system") or {}
        devices = tuple(
            Device(
                name=str(d.get("name", "?")),
                type=str(d.get("type", "?")),
                vram_total=int(d.get("vram_total") or 0),
                vram_free=int(d.get("vram_free") or 0),
            )
            for d in raw.get("devices") or []
        )
        return SystemStats(
            comfyui_version=str(system.get("comfyui_version", "?")),
            os=str(system.get("os", "?")),
            python_version=str(system.get("python_version", "?")),
            pytorch_version=str(system.get("pytorch_version", "?")),
            devices=devices,
        )

    @property
    def known_object_info(self) -> ObjectInfoJSON | None:
        """The node list read on this connection, or None when it is not (or no longer) known."""
        return self._object_info

    def forget_object_info(self) -> None:
        """Drop the node list: the next use reads it again (after a reconnect or a refusal)."""
        self._object_info = None

    async def object_info(self, *, refresh: bool = False) -> ObjectInfoJSON:
        """GET /object_info: every node class the server has, with its inputs.

        Read once per connection (a real server's answer is megabytes, and it builds it on its
        own event loop) and kept while the WebSocket stays up; concurrent callers share one
        request. `refresh` reads it again unless another caller just did.
        """
        known = self._object_info
        async with self._object_info_lock:
            if self._object_info is None or (refresh and self._object_info is known):
                _, raw = await self._request(
                    "GET", "/object_info", limit=self.object_info_max_bytes
                )
                if not isinstance(raw, dict):
                    raise ProtocolError(f"GET /object_info on {self.url} answered no object")
                self._object_info = cast(ObjectInfoJSON, raw)
            return self._object_info

    async def problems(self, workflow: Workflow, *, refresh: bool = False) -> list[str]:
        """What stops this server running `workflow`, one line each: node classes it lacks,
        then what its own validation would refuse (links, types, ranges, choices; see
        comfy.validation)."""
        return [text for _, text in await self.problems_at(workflow, refresh=refresh)]

    async def problems_at(
        self, workflow: Workflow, *, refresh: bool = False
    ) -> list[tuple[str | None, str]]:
        """`problems`, each with the id of the node it is at (None: the whole workflow).

        The kept node list is trusted when it says yes; a no is checked once more against a
        fresh list (a model installed since it was read), so only a refusal costs a request.
        """
        fresh = refresh or self._object_info is None
        found = self.problems_in(workflow, await self.object_info(refresh=refresh))
        if found and not fresh:
            found = self.problems_in(workflow, await self.object_info(refresh=True))
        return found

    @staticmethod
    def problems_in(workflow: Workflow, info: ObjectInfoJSON) -> list[tuple[str | None, str]]:
        """`problems_at` against a given node list (no request)."""
        problems: list[tuple[str | None, str]] = []
        missing = sorted(workflow.class_types() - set(info))
        if missing:
            first = next(n for n in workflow if workflow.class_type(n) in missing)
            problems.append((first, f"node classes not installed: {', '.join(missing)}"))
        for found in validate(workflow.to_dict(), info):
            if found.node_id is None:
                problems.append((None, f"the workflow {found.message}"))
                continue
            where = f"node {workflow.describe(found.node_id)}"
            if found.input_name is not None:
                where += f" input {found.input_name}"
            problems.append((found.node_id, f"{where}: {found.message}"))
        return problems

    async def preflight(self, workflow: Workflow) -> None:
        """Raise PreflightFailed if the server lacks a node class or an installed value."""
        problems = await self.problems(workflow)
        if problems:
            raise PreflightFailed(self.url, problems)

    async def upload_image(
        self, path: str | Path, *, subfolder: str = "", overwrite: bool = False
    ) -> str:
        """POST /upload/image; returns the name to put in LoadImage's `image` input."""
        path = Path(path)
        handle = await asyncio.to_thread(path.open, "rb")
        try:
            form = aiohttp.FormData()
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            # aiohttp reads file payloads in its executor, not on the event loop
            form.add_field("image", handle, filename=path.name, content_type=ctype)
            form.add_field("overwrite", "true" if overwrite else "false")
            if subfolder:
                form.add_field("subfolder", subfolder)
            _, raw = await self._request("POST", "/upload/image", data=form)
        finally:
            await asyncio.to_thread(handle.close)
        answer = cast(UploadJSON, raw)
        if not isinstance(raw, dict) or not isinstance(answer.get("name"), str):
            raise ProtocolError(f"POST /upload/image on {self.url} answered {raw!r:.100}")
        folder = answer.get("subfolder") or ""
        return f"{folder}/{answer['name']}" if folder else answer["name"]

    # ------------------------------------------------------------ prompts

    async def submit(
        self,
        workflow: Workflow | Mapping[str, object],
        *,
        on_event: EventHandler | None = None,
        front: bool = False,
        prompt_id: str | None = None,
    ) -> str:
        """Queue a workflow; returns its prompt id. PromptRejected on a 400 answer.

        The prompt id is chosen here (or by the caller, who may note it down before queueing,
        to `attach` to the prompt after a crash) and sent along, so no message can arrive
        before we watch.
        """
        if not isinstance(workflow, Workflow):
            workflow = Workflow(workflow)
        await self.connect()
        prompt: PromptJSON = workflow.to_dict()
        prompt_id = prompt_id or new_prompt_id()
        now = asyncio.get_running_loop().time()
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        watch = _Watch(
            prompt_id=prompt_id,
            class_types={nid: n["class_type"] for nid, n in prompt.items()},
            handler=on_event,
            future=future,
            submitted_at=now,
            last_activity=now,
            max_files=self.max_outputs,
            url=self.url,
        )
        self._watches[prompt_id] = watch
        body: PromptRequest = {
            "prompt": prompt,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
        }
        if front:
            body["front"] = True
        posting = asyncio.ensure_future(self._request("POST", "/prompt", body=body, ok=(200, 400)))
        try:
            status, raw = await asyncio.shield(posting)
        except asyncio.CancelledError:
            # Cancelled while the POST was on its way: the server may queue the prompt anyway,
            # and nobody would ever take it off. Wait for the answer and take it back.
            self._unwatch(prompt_id)
            await asyncio.shield(self._spawn(self._take_back(posting, prompt_id), "take back"))
            raise
        except BaseException:
            self._unwatch(prompt_id)
            raise
        if status == 400:
            self._unwatch(prompt_id)
            error = _rejected(raw)
            log.warning("%s rejected a prompt: %s", self.url, "; ".join(error.lines()))
            if error.unknown_class:  # the kept node list is out of date: read it again
                self.forget_object_info()
            raise error
        answered = raw.get("prompt_id") if isinstance(raw, dict) else None
        if not isinstance(answered, str):
            self._unwatch(prompt_id)
            raise ProtocolError(f"POST /prompt on {self.url} answered {raw!r:.100}")
        if answered != prompt_id:  # an older server that picks its own ids
            del self._watches[prompt_id]
            watch.prompt_id = prompt_id = answered
            self._watches[prompt_id] = watch
            for _, kind, data, _ in [m for m in self._unclaimed if m[0] == prompt_id]:
                watch.handle(kind, data, asyncio.get_running_loop().time())
        number = raw.get("number") if isinstance(raw, dict) else None
        watch.number = float(number) if isinstance(number, int | float) else None
        watch.posted = True
        self._place_prompts()
        log.debug("queued prompt %s on %s", prompt_id, self.url)
        return prompt_id

    def _unwatch(self, prompt_id: str) -> None:
        """Forget a prompt whose POST did not queue it (places waiting on its answer go on)."""
        self._watches.pop(prompt_id, None)
        self._place_prompts()

    async def attach(self, prompt_id: str, *, on_event: EventHandler | None = None) -> bool:
        """Watch a prompt queued earlier, perhaps by a process that has died since.

        True when the server has it waiting, running or finished with success: `wait` then
        gives its outputs. False when the server does not know it, or it failed or was
        interrupted there (queue it again). ComfyUI sends a prompt's messages only to the
        client that queued it, so an attached prompt is followed by asking /history and /queue
        every `poll_interval` seconds.
        """
        if prompt_id in self._watches:
            return True
        entry = await self.history(prompt_id)
        position: int | None = None
        if entry is None:
            position = (await self.queue()).position(prompt_id)
            if position is None:
                entry = await self.history(prompt_id)  # it may have ended between the reads
                if entry is None:
                    return False
        if entry is not None and not _succeeded(entry):
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        future.add_done_callback(_retrieve)
        now = loop.time()
        watch = _Watch(
            prompt_id,
            {},
            on_event,
            future,
            submitted_at=now,
            last_activity=now,
            max_files=self.max_outputs,
            url=self.url,
            polled=True,
            posted=True,
        )
        self._watches[prompt_id] = watch
        log.info("attached to prompt %s on %s", prompt_id, self.url)
        if entry is not None:
            self._resolve_from_history(watch, entry)
        else:
            self._report(watch, position)
            self._spawn(self._follow(watch), f"follow {prompt_id}")
        return True

    def _report(self, watch: _Watch, position: int | None) -> None:
        if position == 0 and not watch.started:
            watch.started = True
            watch.emit(Started(watch.prompt_id))
        elif position:
            watch.emit(Queued(watch.prompt_id, position))

    async def _follow(self, watch: _Watch) -> None:
        """Poll for an attached prompt until it ends: its place in the queue, then its end."""
        pid = watch.prompt_id
        last: int | None = None
        while not watch.future.done():
            await asyncio.sleep(self.poll_interval)
            position: int | None = None
            try:
                entry = await self.history(pid)
                if entry is None:
                    position = (await self.queue()).position(pid)
                    if position is None:
                        entry = await self.history(pid)
                        if entry is None:
                            watch.fail(Cancelled(pid, "is no longer on the server"))
                            return
            except ComfyError as exc:  # the stall watchdog in `wait` decides when to give up
                log.info("cannot follow prompt %s on %s: %s", pid, self.url, exc)
                continue
            if entry is not None:
                self._resolve_from_history(watch, entry)
                return
            watch.last_activity = asyncio.get_running_loop().time()
            if position != last:
                self._report(watch, position)
                last = position

    async def _take_back(self, posting: asyncio.Future[tuple[int, object]], prompt_id: str) -> None:
        """Cancel a prompt whose POST was abandoned, once the server has answered it."""
        try:
            status, _ = await posting
            if status == 200 and self._detached:
                log.info("leaving prompt %s on %s for a later attach", prompt_id, self.url)
            elif status == 200:
                await self.cancel(prompt_id)
        except ComfyError as exc:
            log.info("could not take back prompt %s from %s: %s", prompt_id, self.url, exc)

    @property
    def load(self) -> int:
        """Prompts this server still has to run, as far as we know without asking: the last
        `status` message's count, or ours not yet ended when that is higher (it lags a POST)."""
        ours = sum(1 for w in self._watches.values() if not w.future.done())
        return max(self.queue_remaining or 0, ours)

    def _on_status(self, remaining: int) -> None:
        """A `status` message: the queue's length changed (or not)."""
        changed = remaining != self.queue_remaining
        self.queue_remaining = remaining
        if changed:
            self._place_prompts()

    def _place_prompts(self) -> None:
        """Tell prompts waiting for their place where they stand, after the queue changed.

        When every prompt the server holds is ours (its `status` count equals our prompts not
        yet ended), their places follow from the numbers the server gave them: no request.
        Otherwise the queue is read, one read at a time; changes during it ask for one more.
        """
        if not any(w.waits_for_place for w in self._watches.values()):
            return
        active = [w for w in self._watches.values() if not w.future.done()]
        if any(not w.posted for w in active):
            return  # a POST on its way: its answer comes back here
        numbers = [w.number for w in active]
        if self.queue_remaining == len(active) and None not in numbers:
            for place, watch in enumerate(sorted(active, key=lambda w: w.number or 0.0)):
                watch.report_place(place)
            return
        self._places_stale = True
        if self._places_task is None or self._places_task.done():
            self._places_task = self._spawn(self._read_places(), f"queue places on {self.url}")

    async def _read_places(self) -> None:
        while self._places_stale:
            self._places_stale = False
            if not any(w.waits_for_place for w in self._watches.values()):
                return
            try:
                state = await self.queue()
            except ComfyError as exc:
                log.info("could not read the queue of %s: %s", self.url, exc)
                return
            for watch in list(self._watches.values()):
                watch.report_place(state.position(watch.prompt_id))

    async def wait(self, prompt_id: str, *, time_limit: float | None = None) -> Outputs:
        """Wait for a prompt queued by this client; its outputs by node id.

        Raises ExecutionFailed, Cancelled, ComfyTimeout (stall, or past `time_limit`, default
        `job_timeout`, counted from submit), or ComfyOffline when the server is gone.
        """
        watch = self._watches.get(prompt_id)
        if watch is None:
            raise ComfyError(f"prompt {prompt_id} was not queued by this client")
        loop = asyncio.get_running_loop()
        deadline = watch.submitted_at + (self.job_timeout if time_limit is None else time_limit)
        try:
            while not watch.future.done():
                now = loop.time()
                wake = min(watch.last_activity + self.stall_timeout, deadline)
                if wake > now:
                    await asyncio.wait([watch.future], timeout=wake - now)
                    continue
                if now >= deadline:
                    await self._give_up(watch, "it ran past its overall time limit")
                else:
                    await self._check_stalled(watch)
            outputs = watch.future.result()
        finally:
            if watch.future.done():
                self._watches.pop(prompt_id, None)
        if not outputs:
            # A fully cached run on a server that sends no `executed`, or an end learned some
            # other way: the history has the outputs.
            entry = await self.history(prompt_id)
            if entry is not None:
                for node_id, output in (entry.get("outputs") or {}).items():
                    _merge_output(outputs, node_id, output)
        return outputs

    async def _check_stalled(self, watch: _Watch) -> None:
        """No message for `stall_timeout`: ask /history and /queue what became of the prompt."""
        pid = watch.prompt_id
        entry = await self.history(pid)
        if entry is not None:
            log.info("prompt %s ended without us hearing it; taking its history", pid)
            self._resolve_from_history(watch, entry)
            return
        state = await self.queue()
        if pid in state.pending:
            watch.last_activity = asyncio.get_running_loop().time()  # waiting its turn
            return
        if pid in state.running:
            if not self.connected:
                # The silence is ours (no WebSocket), not the server's: the job still runs, so
                # wait on (bounded by the overall time limit); a reconnect restarts the count.
                watch.last_activity = asyncio.get_running_loop().time()
                return
            await self._give_up(watch, f"no message for {self.stall_timeout:g} s while running")
            return
        watch.fail(Cancelled(pid, "is no longer on the server"))

    async def _give_up(self, watch: _Watch, reason: str) -> None:
        log.warning("prompt %s on %s: %s; cancelling it", watch.prompt_id, self.url, reason)
        try:
            await self.cancel(watch.prompt_id)
        except ComfyError as exc:
            log.warning("could not cancel prompt %s: %s", watch.prompt_id, exc)
        watch.fail(ComfyTimeout(watch.prompt_id, reason))

    def _resolve_from_history(self, watch: _Watch, entry: HistoryEntry) -> None:
        raw_status = entry.get("status")
        status: Mapping[str, object] = raw_status if isinstance(raw_status, dict) else {}
        messages = status.get("messages")
        for message in messages if isinstance(messages, list) else []:
            if not (isinstance(message, list) and len(message) == 2):
                continue
            kind, data = message
            if kind in ("execution_error", "execution_interrupted") and isinstance(data, dict):
                watch.handle(str(kind), cast(dict[str, object], data), watch.last_activity)
        for node_id, output in (entry.get("outputs") or {}).items():
            if node_id not in watch.outputs:
                _merge_output(watch.outputs, node_id, output)
        if status.get("status_str") == "success" or status.get("completed"):
            watch.succeed()
        elif not watch.future.done():
            watch.fail(Cancelled(watch.prompt_id, "did not complete"))

    async def cancel(self, prompt_id: str) -> None:
        """Interrupt the prompt if it runs, delete it from the queue if it waits."""
        state = await self.queue()
        if prompt_id in state.pending:
            await self._request("POST", "/queue", body={"delete": [prompt_id]})
            state = await self.queue()
            if prompt_id not in state.running and prompt_id not in state.pending:
                watch = self._watches.get(prompt_id)
                if watch is not None and await self.history(prompt_id) is None:
                    watch.fail(Cancelled(prompt_id, "was removed from the queue"))
                log.info("removed prompt %s from the queue of %s", prompt_id, self.url)
                return
        if prompt_id in state.running:
            # ComfyUI >= 0.3.4x interrupts only the named prompt (older ones: whatever runs,
            # which we just checked is ours)
            await self._request("POST", "/interrupt", body={"prompt_id": prompt_id})
            log.info("interrupted prompt %s on %s", prompt_id, self.url)

    async def download(self, files: Sequence[RemoteFile], out_dir: Path) -> list[OutputFile]:
        """Stream each file through /view into `out_dir` under a safe, unique name.

        All or nothing: when one file fails (or the caller is cancelled) the others stop, and
        no file of the call stays behind, neither partial nor whole. Each file is bounded by
        `download_timeout`, `download_min_rate` and `download_max_bytes` (DownloadFailed); more
        than `max_outputs` files are refused before any is fetched. A file that cannot be saved
        (disk full, over quota, read-only) raises OutputNotWritten.
        """
        if len(files) > self.max_outputs:
            raise DownloadFailed(
                self.url,
                f"the job reported {len(files)} output files, more than the "
                f"{self.max_outputs} one job may have",
            )
        out_dir = Path(out_dir)
        tasks = [asyncio.ensure_future(self._download_one(f, out_dir)) for f in files]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # one failed (or we were cancelled): stop the others, which remove their partial
            # files, then remove the files that did arrive
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
            arrived = [r.path for r in results if isinstance(r, OutputFile)]
            for path in arrived:
                await _remove(None, path)
            raise

    async def collect(
        self, prompt_id: str, out_dir: Path, *, time_limit: float | None = None
    ) -> list[OutputFile]:
        """Wait for a prompt queued (or attached) by this client, then download its outputs.

        The whole stays within the job's overall time limit (`time_limit`, default
        `job_timeout`, counted from submit): downloads still running then raise ComfyTimeout.
        """
        loop = asyncio.get_running_loop()
        watch = self._watches.get(prompt_id)
        started = watch.submitted_at if watch is not None else loop.time()
        deadline = started + (self.job_timeout if time_limit is None else time_limit)
        outputs = await self.wait(prompt_id, time_limit=time_limit)
        budget = asyncio.timeout_at(deadline)
        try:
            async with budget:
                return await self.download(remote_files(outputs), out_dir)
        except TimeoutError:
            if not budget.expired():
                raise
            reason = "its outputs were still downloading when it reached its overall time limit"
            log.warning("prompt %s on %s: %s", prompt_id, self.url, reason)
            raise ComfyTimeout(prompt_id, reason) from None

    async def _download_one(self, remote: RemoteFile, out_dir: Path) -> OutputFile:
        params = {"filename": remote.filename, "subfolder": remote.subfolder, "type": remote.type}
        name = safe_name(remote.filename)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout, sock_read=self.request_timeout
        )
        async with self._downloads:
            path: Path | None = None
            handle: IO[bytes] | None = None
            overall = asyncio.timeout(self.download_timeout)
            try:
                async with overall:
                    # the answer's head within the request timeout (a server may trickle it)
                    async with asyncio.timeout(self.request_timeout):
                        resp = await self.session.get(
                            self.url + "/view", params=params, timeout=timeout
                        )
                    async with resp:
                        if resp.status != 200:
                            raise ProtocolError(
                                f"GET /view on {self.url} answered HTTP {resp.status} for {name}"
                            )
                        size = resp.content_length
                        if size is not None and size > self.download_max_bytes:
                            raise self._too_large(name)
                        path, handle = await self._create(out_dir, name)
                        await self._stream(resp, handle, out_dir, name)
                        await self._on_disk(handle.close, out_dir)
            except BaseException as exc:
                # no partial file stays, whatever stopped us (a cancel included)
                if path is not None:
                    await _remove(handle, path)
                if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
                    raise ComfyOffline(self.url, f"download broke: {type(exc).__name__}") from exc
                if isinstance(exc, TimeoutError) and overall.expired():
                    raise DownloadFailed(
                        self.url, f"{name} was not sent whole within {self.download_timeout:g} s"
                    ) from None
                if isinstance(exc, TimeoutError):
                    raise ComfyOffline(self.url, "download timed out") from exc
                raise
        return OutputFile(path=path, node_id=remote.node_id, kind=remote.kind, filename=name)

    def _too_large(self, name: str) -> DownloadFailed:
        return DownloadFailed(
            self.url, f"{name} is larger than the {_mb(self.download_max_bytes)} a file may have"
        )

    async def _create(self, out_dir: Path, name: str) -> tuple[Path, IO[bytes]]:
        """Create the local file in a thread. A cancel while the thread runs cannot stop it:
        the file it still makes is removed before the cancel goes on, so no empty file stays."""
        creating = asyncio.ensure_future(asyncio.to_thread(_create_unique, out_dir, name))
        try:
            return await asyncio.shield(creating)
        except asyncio.CancelledError:
            while not creating.done():
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.shield(creating)
            if creating.exception() is None:
                path, handle = creating.result()
                await _remove(handle, path)
            raise
        except OSError as exc:
            raise OutputNotWritten.from_os_error(out_dir, exc) from exc

    @staticmethod
    async def _on_disk(write: Callable[..., object], out_dir: Path, *args: object) -> None:
        """A file operation in a thread; the disk's OSError (full, quota, read-only) becomes
        OutputNotWritten naming the folder, never a network error."""
        try:
            await asyncio.to_thread(write, *args)
        except OSError as exc:
            log.warning("cannot write into %s: %s", out_dir, exc)
            raise OutputNotWritten.from_os_error(out_dir, exc) from exc

    async def _stream(
        self, resp: aiohttp.ClientResponse, handle: IO[bytes], out_dir: Path, name: str
    ) -> None:
        """Copy the body to disk: chunks gather up to `download_chunk_size`, then one write in a
        thread; so memory stays near one chunk and the loop never waits on the disk.

        At most `download_max_bytes`; and each `download_rate_window` seconds must bring at
        least `download_min_rate` bytes a second, so a server that trickles fails in one window.
        """
        loop = asyncio.get_running_loop()
        window = self.download_rate_window
        window_end = loop.time() + window
        window_bytes = total = 0
        buffer = bytearray()
        while True:
            waiting = asyncio.timeout_at(window_end)
            chunk: bytes | None = None
            try:
                async with waiting:
                    chunk = await resp.content.readany()
            except TimeoutError:
                if not waiting.expired():
                    raise
            if chunk == b"":  # the end of the body
                break
            if chunk is not None:
                total += len(chunk)
                window_bytes += len(chunk)
                if total > self.download_max_bytes:
                    raise self._too_large(name)
                buffer += chunk
                if len(buffer) >= self.download_chunk_size:
                    await self._on_disk(handle.write, out_dir, buffer)
                    buffer = bytearray()
            now = loop.time()
            if now >= window_end:
                if window_bytes < self.download_min_rate * window:
                    raise DownloadFailed(
                        self.url,
                        f"{name} came slower than {self.download_min_rate / 1024:g} KB/s "
                        f"({window_bytes} bytes in {window:g} s)",
                    )
                window_end, window_bytes = now + window, 0
        if buffer:
            await self._on_disk(handle.write, out_dir, buffer)

    async def run(
        self,
        workflow: Workflow | Mapping[str, object],
        out_dir: Path,
        *,
        on_event: EventHandler | None = None,
        time_limit: float | None = None,
    ) -> list[OutputFile]:
        """Submit, wait, download: the whole job on this one server."""
        prompt_id = await self.submit(workflow, on_event=on_event)
        return await self.collect(prompt_id, out_dir, time_limit=time_limit)

    # ------------------------------------------------------------ WebSocket

    async def _ws_loop(self) -> None:
        delay = self.reconnect_delay
        first = True
        url = f"{self.url}/ws"
        while not self._closing:
            self._retry_now.clear()  # this attempt answers every connect() waiting so far
            try:
                async with self.session.ws_connect(
                    url,
                    params={"clientId": self.client_id},
                    heartbeat=self.heartbeat,
                    # a cap, never 0 (unbounded): aiohttp refuses a longer message from its
                    # header, before buffering it, and the socket is then reconnected
                    max_msg_size=self.ws_max_message_bytes,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                ) as ws:
                    log.info("WebSocket to %s open", self.url)
                    delay = self.reconnect_delay
                    self._connected.set()
                    if not first:
                        # the server may have restarted meanwhile, with other nodes installed
                        self.forget_object_info()
                        self._spawn(self._recover(), f"recover prompts on {self.url}")
                    first = False
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            await self._on_text(msg.data)
                        elif msg.type == aiohttp.WSMsgType.ERROR:
                            self._ws_error(msg.data)
                            break
                        # binary frames are previews: not wanted
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.debug("WebSocket to %s failed: %r", self.url, exc)
            was_connected = self.connected
            self._connected.clear()
            if self.closing:
                break
            # one warning per loss; the retries after it only at debug level
            log.log(
                logging.WARNING if was_connected else logging.DEBUG,
                "WebSocket to %s lost; retrying in %.2f s",
                self.url,
                delay,
            )
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._retry_now.wait()
            delay = min(delay * 2, self.reconnect_max_delay)

    def _ws_error(self, error: object) -> None:
        if (
            isinstance(error, aiohttp.WebSocketError)
            and error.code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
        ):
            log.warning(
                "ComfyUI at %s sent a WebSocket message over the %s limit; reconnecting",
                self.url,
                _mb(self.ws_max_message_bytes),
            )
        else:
            log.info("WebSocket to %s broke: %r", self.url, error)

    async def _on_text(self, text: str) -> None:
        """One text message: parsed (in a thread when large), then routed by prompt_id. The
        reader awaits it, so messages are still handled in the order they came."""
        try:
            if len(text) > _PARSE_IN_THREAD:
                message = await asyncio.to_thread(json.loads, text)
            else:
                message = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            log.warning("non-JSON WebSocket message from %s: %.100s", self.url, text)
            return
        self._on_message(message, len(text))

    def _on_message(self, message: object, size: int) -> None:
        if not isinstance(message, dict):
            return
        kind, data = message.get("type"), message.get("data")
        if not isinstance(kind, str) or not isinstance(data, dict):
            return
        if kind == "status":
            status = data.get("status")
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self._on_status(int(status["exec_info"]["queue_remaining"]))  # type: ignore[index]
            return
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return
        watch = self._watches.get(prompt_id)
        if watch is None:
            self._keep_unclaimed(prompt_id, kind, data, size)
            return
        watch.handle(kind, data, asyncio.get_running_loop().time())
        if kind == "executing" and data.get("node") is None and not watch.future.done():
            # The server is done with the prompt, but we missed how it ended (a reconnect, or a
            # server older than `execution_success`): its history, written before this message,
            # says.
            self._spawn(self._settle(watch), f"settle {prompt_id}")

    def _keep_unclaimed(
        self, prompt_id: str, kind: str, data: dict[str, object], size: int
    ) -> None:
        """Keep a message for a prompt nobody watches yet (the newest `unclaimed_messages`, at
        most `unclaimed_max_bytes` of them), in case an older server renames our prompt."""
        self._unclaimed.append((prompt_id, kind, data, size))
        self._unclaimed_bytes += size
        while self._unclaimed and (
            len(self._unclaimed) > self.unclaimed_messages
            or self._unclaimed_bytes > self.unclaimed_max_bytes
        ):
            self._unclaimed_bytes -= self._unclaimed.popleft()[3]

    async def _settle(self, watch: _Watch) -> None:
        try:
            entry = await self.history(watch.prompt_id)
        except ComfyError as exc:
            log.info("history of %s not readable: %s", watch.prompt_id, exc)
            return  # the stall watchdog asks again later
        if entry is not None:
            self._resolve_from_history(watch, entry)

    async def _recover(self) -> None:
        """After a reconnect: prompts that ended while we were away are read from /history."""
        for watch in list(self._watches.values()):
            if watch.future.done():
                continue
            try:
                entry = await self.history(watch.prompt_id)
            except ComfyError as exc:
                log.info("history of %s not readable after reconnect: %s", watch.prompt_id, exc)
                continue
            if entry is not None:
                self._resolve_from_history(watch, entry)
            else:
                watch.last_activity = asyncio.get_running_loop().time()


__all__ = [
    "ComfyClient",
    "Device",
    "OutputFile",
    "Outputs",
    "QueueState",
    "RemoteFile",
    "SystemStats",
    "new_prompt_id",
    "remote_files",
    "safe_name",
]
