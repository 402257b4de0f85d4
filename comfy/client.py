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
from collections.abc import Coroutine, Iterable, Mapping, Sequence
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
    ExecutionFailed,
    NodeError,
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
        unclaimed_messages: int = 512,
        object_info_ttl: float = 300.0,
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
        self.object_info_ttl = object_info_ttl
        self.poll_interval = poll_interval
        self.queue_remaining: int | None = None  # from the last `status` message
        self._session = session
        self._owns_session = session is None
        self._watches: dict[str, _Watch] = {}
        # messages for prompt ids nobody watches yet (a server that ignores our prompt_id)
        self._unclaimed: deque[tuple[str, str, dict[str, object]]] = deque(
            maxlen=unclaimed_messages
        )
        self._ws_task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._detached = False
        self._background: set[asyncio.Task[None]] = set()
        self._object_info: ObjectInfoJSON | None = None
        self._object_info_at = 0.0
        self._object_info_lock = asyncio.Lock()
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

    async def connect(self) -> None:
        """Open the WebSocket now (it also opens on the first submit); ComfyOffline if it can't."""
        if self._ws_task is None or self._ws_task.done():
            self._closing = False
            self._ws_task = asyncio.create_task(self._ws_loop(), name=f"comfy-ws {self.url}")
            self._ws_task.add_done_callback(self._ws_ended)
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
    ) -> tuple[int, object]:
        """One HTTP request; returns (status, parsed JSON or None). ComfyOffline on no answer."""
        try:
            async with self.session.request(
                method,
                self.url + path,
                json=body if data is None and body is not None else None,
                data=data,
                params=params,
                timeout=self._timeout(),
            ) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            # any failure to get a well-formed answer (no connection, a broken response from
            # the server or a proxy in front of it) is "not answering", never aiohttp's own
            raise ComfyOffline(self.url, type(exc).__name__) from exc
        if status not in ok:
            raise ProtocolError(f"{method} {path} on {self.url} answered HTTP {status}")
        if not text.strip():
            return status, None
        try:
            return status, json.loads(text)
        except json.JSONDecodeError as exc:
            raise ProtocolError(f"{method} {path} on {self.url} answered non-JSON") from exc

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

    async def object_info(self, *, refresh: bool = False) -> ObjectInfoJSON:
        """GET /object_info: every node class the server has, with its inputs.

        Cached for `object_info_ttl` seconds (a real server's answer is megabytes); concurrent
        callers share one request.
        """
        async with self._object_info_lock:
            now = asyncio.get_running_loop().time()
            stale = now - self._object_info_at > self.object_info_ttl
            if self._object_info is None or refresh or stale:
                raw = await self._get("/object_info")
                if not isinstance(raw, dict):
                    raise ProtocolError(f"GET /object_info on {self.url} answered no object")
                self._object_info = cast(ObjectInfoJSON, raw)
                self._object_info_at = now
            return self._object_info

    async def problems(self, workflow: Workflow, *, refresh: bool = False) -> list[str]:
        """What stops this server running `workflow`, one line each: node classes it lacks,
        then what its own validation would refuse (links, types, ranges, choices; see
        comfy.validation)."""
        return [text for _, text in await self.problems_at(workflow, refresh=refresh)]

    async def problems_at(
        self, workflow: Workflow, *, refresh: bool = False
    ) -> list[tuple[str | None, str]]:
        """`problems`, each with the id of the node it is at (None: the whole workflow)."""
        info = await self.object_info(refresh=refresh)
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
        problems = await self.problems(workflow, refresh=True)
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
            self._watches.pop(prompt_id, None)
            await asyncio.shield(self._spawn(self._take_back(posting, prompt_id), "take back"))
            raise
        except BaseException:
            self._watches.pop(prompt_id, None)
            raise
        if status == 400:
            self._watches.pop(prompt_id, None)
            error = _rejected(raw)
            log.warning("%s rejected a prompt: %s", self.url, "; ".join(error.lines()))
            raise error
        answered = raw.get("prompt_id") if isinstance(raw, dict) else None
        if not isinstance(answered, str):
            self._watches.pop(prompt_id, None)
            raise ProtocolError(f"POST /prompt on {self.url} answered {raw!r:.100}")
        if answered != prompt_id:  # an older server that picks its own ids
            del self._watches[prompt_id]
            watch.prompt_id = prompt_id = answered
            self._watches[prompt_id] = watch
            for _, kind, data in [m for m in self._unclaimed if m[0] == prompt_id]:
                watch.handle(kind, data, asyncio.get_running_loop().time())
        log.debug("queued prompt %s on %s", prompt_id, self.url)
        if on_event is not None:
            self._spawn(self._report_position(watch), f"queue position of {prompt_id}")
        return prompt_id

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
        watch = _Watch(prompt_id, {}, on_event, future, submitted_at=now, last_activity=now)
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

    async def _report_position(self, watch: _Watch) -> None:
        try:
            state = await self.queue()
        except ComfyError as exc:
            log.info("could not read the queue of %s: %s", self.url, exc)
            return
        position = state.position(watch.prompt_id)
        if position is not None and not watch.started and not watch.future.done():
            watch.emit(Queued(watch.prompt_id, position))

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
        """Stream each file through /view into `out_dir` under a safe, unique name."""
        tasks = [asyncio.ensure_future(self._download_one(f, Path(out_dir))) for f in files]
        try:
            return list(await asyncio.gather(*tasks))
        except BaseException:
            # one failed (or we were cancelled): stop the others, which remove their partial files
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _download_one(self, remote: RemoteFile, out_dir: Path) -> OutputFile:
        params = {"filename": remote.filename, "subfolder": remote.subfolder, "type": remote.type}
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.connect_timeout, sock_read=self.request_timeout
        )
        async with self._downloads:
            try:
                async with self.session.get(
                    self.url + "/view", params=params, timeout=timeout
                ) as resp:
                    if resp.status != 200:
                        raise ProtocolError(
                            f"GET /view on {self.url} answered HTTP {resp.status} "
                            f"for {remote.filename!r}"
                        )
                    name = safe_name(remote.filename)
                    path, handle = await asyncio.to_thread(_create_unique, out_dir, name)
                    try:
                        await self._stream(resp, handle)
                    except BaseException:
                        await asyncio.to_thread(handle.close)
                        await asyncio.to_thread(path.unlink, True)
                        raise
                    await asyncio.to_thread(handle.close)
            except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as exc:
                raise ComfyOffline(self.url, f"download broke: {type(exc).__name__}") from exc
            except TimeoutError as exc:
                raise ComfyOffline(self.url, "download timed out") from exc
        return OutputFile(path=path, node_id=remote.node_id, kind=remote.kind, filename=name)

    async def _stream(self, resp: aiohttp.ClientResponse, handle: IO[bytes]) -> None:
        """Copy the body to disk: chunks gather up to `download_chunk_size`, then one write in a
        thread; so memory stays near one chunk and the loop never waits on the disk."""
        buffer = bytearray()
        async for chunk in resp.content.iter_chunked(1 << 16):
            buffer += chunk
            if len(buffer) >= self.download_chunk_size:
                await asyncio.to_thread(handle.write, buffer)
                buffer = bytearray()
        if buffer:
            await asyncio.to_thread(handle.write, buffer)

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
        outputs = await self.wait(prompt_id, time_limit=time_limit)
        return await self.download(remote_files(outputs), out_dir)

    # ------------------------------------------------------------ WebSocket

    async def _ws_loop(self) -> None:
        delay = self.reconnect_delay
        first = True
        url = f"{self.url}/ws"
        while not self._closing:
            try:
                async with self.session.ws_connect(
                    url,
                    params={"clientId": self.client_id},
                    heartbeat=self.heartbeat,
                    max_msg_size=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=5.0),
                ) as ws:
                    log.info("WebSocket to %s open", self.url)
                    delay = self.reconnect_delay
                    self._connected.set()
                    if not first:
                        self._spawn(self._recover(), f"recover prompts on {self.url}")
                    first = False
                    async for msg in ws:
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            self._on_text(msg.data)
                        elif msg.type == aiohttp.WSMsgType.ERROR:
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
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.reconnect_max_delay)

    def _on_text(self, text: str) -> None:
        try:
            message = json.loads(text)
        except json.JSONDecodeError:
            log.warning("non-JSON WebSocket message from %s: %.100s", self.url, text)
            return
        if not isinstance(message, dict):
            return
        kind, data = message.get("type"), message.get("data")
        if not isinstance(kind, str) or not isinstance(data, dict):
            return
        if kind == "status":
            status = data.get("status")
            with contextlib.suppress(KeyError, TypeError, ValueError):
                self.queue_remaining = int(status["exec_info"]["queue_remaining"])  # type: ignore[index]
            return
        prompt_id = data.get("prompt_id")
        if not isinstance(prompt_id, str):
            return
        watch = self._watches.get(prompt_id)
        if watch is None:
            self._unclaimed.append((prompt_id, kind, data))
            return
        watch.handle(kind, data, asyncio.get_running_loop().time())
        if kind == "executing" and data.get("node") is None and not watch.future.done():
            # The server is done with the prompt, but we missed how it ended (a reconnect, or a
            # server older than `execution_success`): its history, written before this message,
            # says.
            self._spawn(self._settle(watch), f"settle {prompt_id}")

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
