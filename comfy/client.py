"""ComfyClient: one ComfyUI server over one aiohttp session and one shared WebSocket.

Owns queueing (POST /prompt), routing WebSocket messages by prompt_id to their waiters, queue
places, the stall watchdog, cancel, upload, attach and the node list kept per connection. Its
rooms: comfy._wire reads the server's JSON, comfy.watch holds one prompt's state,
comfy.download the bounded downloads, comfy.validation the checks against the node list.
Imports only the standard library, aiohttp and the comfy package (never pipeline/, strategies/
or bot/).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import mimetypes
import uuid
from collections import deque
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, Self, cast

import aiohttp

from comfy._wire import (
    HistoryEntry,
    ObjectInfoJSON,
    PromptJSON,
    PromptRequest,
    UploadJSON,
    merge_output,
    new_prompt_id,
    queue_state,
    rejected,
    remote_files,
    succeeded,
    system_stats,
)
from comfy.download import MB, Downloader, DownloadLimits, mb_text, safe_name
from comfy.errors import (
    Cancelled,
    ComfyError,
    ComfyOffline,
    ComfyTimeout,
    PreflightFailed,
    ProtocolError,
)
from comfy.events import EventHandler, Queued, Started
from comfy.records import Device, OutputFile, Outputs, QueueState, RemoteFile, SystemStats
from comfy.validation import workflow_problems
from comfy.watch import Watch, retrieve
from comfy.workflow import Workflow

log = logging.getLogger(__name__)


async def _open_off_loop(path: Path) -> BinaryIO:
    """Open a file for reading in a thread. A cancel while the thread opens it (a slow disk, a
    FIFO) closes the file once the thread has it, so no handle is left to the collector."""
    opening = asyncio.ensure_future(asyncio.to_thread(_open_for_reading, path))
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


def _open_for_reading(path: Path) -> BinaryIO:
    return path.open("rb")


def _close_opened(opening: asyncio.Future[BinaryIO]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


#: JSON larger than this is parsed in a thread, so the event loop never waits on it
_PARSE_IN_THREAD = 256 * 1024


class ComfyClient:
    """A client of one ComfyUI server. Use as `async with ComfyClient(url) as client:`.

    Many prompts, from many tasks, share one WebSocket: messages are routed by prompt_id. The
    WebSocket reconnects by itself (backoff `reconnect_delay` .. `reconnect_max_delay`) and then
    asks /history for prompts that ended while it was away.

    A submit is one POST /prompt (one at a time per server). The node list (/object_info) is
    read when first needed and kept while the WebSocket stays up; the queue's length comes from
    the WebSocket's `status` messages, and places in it from them too while the server holds
    only our prompts (else one GET /queue per change, for prompts whose handler wants them).

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
        self._watches: dict[str, Watch] = {}
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
        self._posting = asyncio.Lock()  # one POST /prompt at a time (see submit)
        # one queue read at a time for Queued events; `_places_stale` asks for one more
        self._places_task: asyncio.Task[None] | None = None
        self._places_stale = False
        self._retry_now = asyncio.Event()  # cuts a reconnect backoff short (connect() waits)
        self._downloader = Downloader(self.url, parallel_downloads)

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
        too_big = ProtocolError(f"{what} on {self.url} answered more than {mb_text(limit)}")
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
        return queue_state(await self._get("/queue"))

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
        """GET /system_stats: the server's versions and devices."""
        return system_stats(await self._get("/system_stats"))

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
        found = workflow_problems(workflow, await self.object_info(refresh=refresh))
        if found and not fresh:
            found = workflow_problems(workflow, await self.object_info(refresh=True))
        return found

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
        handle = await _open_off_loop(path)
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
        future.add_done_callback(retrieve)
        watch = Watch(
            prompt_id=prompt_id,
            class_types={nid: n["class_type"] for nid, n in prompt.items()},
            handler=on_event,
            future=future,
            submitted_at=now,
            last_activity=now,
            max_files=self.max_outputs,
            url=self.url,
        )
        body: PromptRequest = {
            "prompt": prompt,
            "client_id": self.client_id,
            "prompt_id": prompt_id,
        }
        if front:
            body["front"] = True
        # One POST at a time to a server: the first job starts at once and the others queue
        # behind it while it runs (a burst of POSTs at once holds the server's event loop, which
        # validates each, and opens a connection for each).
        async with self._posting:
            self._watches[prompt_id] = watch
            posting = asyncio.ensure_future(
                self._request("POST", "/prompt", body=body, ok=(200, 400))
            )
            try:
                status, raw = await asyncio.shield(posting)
            except asyncio.CancelledError:
                # Cancelled while the POST was on its way: the server may queue the prompt
                # anyway, and nobody would ever take it off. Wait for the answer and take it
                # back.
                self._unwatch(prompt_id)
                await asyncio.shield(self._spawn(self._take_back(posting, prompt_id), "take back"))
                raise
            except BaseException:
                self._unwatch(prompt_id)
                raise
        if status == 400:
            self._unwatch(prompt_id)
            error = rejected(raw)
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
        if entry is not None and not succeeded(entry):
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outputs] = loop.create_future()
        future.add_done_callback(retrieve)
        now = loop.time()
        watch = Watch(
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

    def _report(self, watch: Watch, position: int | None) -> None:
        if position == 0 and not watch.started:
            watch.started = True
            watch.emit(Started(watch.prompt_id))
        elif position:
            watch.emit(Queued(watch.prompt_id, position))

    async def _follow(self, watch: Watch) -> None:
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
                    merge_output(outputs, node_id, output)
        return outputs

    async def _check_stalled(self, watch: Watch) -> None:
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

    async def _give_up(self, watch: Watch, reason: str) -> None:
        log.warning("prompt %s on %s: %s; cancelling it", watch.prompt_id, self.url, reason)
        try:
            await self.cancel(watch.prompt_id)
        except ComfyError as exc:
            log.warning("could not cancel prompt %s: %s", watch.prompt_id, exc)
        watch.fail(ComfyTimeout(watch.prompt_id, reason))

    def _resolve_from_history(self, watch: Watch, entry: HistoryEntry) -> None:
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
                merge_output(watch.outputs, node_id, output)
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
        return await self._downloader.download(self.session, files, out_dir, self._limits())

    def _limits(self) -> DownloadLimits:
        return DownloadLimits(
            request_timeout=self.request_timeout,
            connect_timeout=self.connect_timeout,
            timeout=self.download_timeout,
            min_rate=self.download_min_rate,
            rate_window=self.download_rate_window,
            max_bytes=self.download_max_bytes,
            max_files=self.max_outputs,
            chunk_size=self.download_chunk_size,
        )

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
        self._downloader.get_ready()  # while the job runs
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
                mb_text(self.ws_max_message_bytes),
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

    async def _settle(self, watch: Watch) -> None:
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
