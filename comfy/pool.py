"""ComfyPool: several ComfyUI servers behind one submit(); the high-level API the pipeline uses.

Owns server choice (healthy, has the tags and nodes, shortest queue), taking a silent server out
and retrying it later, and ComfyJob (a queued prompt pinned to the server holding its id).
Imports only the standard library, aiohttp and the comfy package.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Self

import aiohttp

from comfy.client import ComfyClient, OutputFile
from comfy.download import MB
from comfy.errors import (
    ComfyError,
    ComfyOffline,
    NoServerAvailable,
    PreflightFailed,
    PromptRejected,
)
from comfy.events import EventHandler
from comfy.records import ServerSpec
from comfy.validation import workflow_problems
from comfy.workflow import Workflow

log = logging.getLogger(__name__)


class _Server:
    def __init__(self, spec: ServerSpec, client: ComfyClient) -> None:
        self.spec = spec
        self.client = client
        self.down_until = 0.0  # loop time before which the server is not tried
        self.choosing = 0  # jobs sent its way whose POST has not landed yet


class ComfyJob:
    """A prompt queued on one server. `await job.result()` waits and downloads its outputs."""

    def __init__(self, server: _Server, prompt_id: str, out_dir: Path) -> None:
        self._server = server
        self.prompt_id = prompt_id
        self.server = server.spec.url
        self.out_dir = out_dir
        self._lock = asyncio.Lock()
        self._files: list[OutputFile] | None = None

    def __repr__(self) -> str:
        return f"ComfyJob({self.prompt_id!r} on {self.server})"

    async def result(self, *, time_limit: float | None = None) -> list[OutputFile]:
        """The downloaded outputs (every node, every kind, no temp previews), in `out_dir`.

        Raises ExecutionFailed, Cancelled, ComfyTimeout (its downloads included), ComfyOffline,
        DownloadFailed or OutputNotWritten. Calling it again returns the same files.
        """
        async with self._lock:
            if self._files is None:
                self._files = await self._server.client.collect(
                    self.prompt_id, self.out_dir, time_limit=time_limit
                )
            return list(self._files)

    async def cancel(self) -> None:
        """Interrupt the prompt if it runs, remove it from the queue if it waits; after the
        pool's `detach()` (a shutdown), leave it there for the next start to attach to."""
        client = self._server.client
        if client.detached:
            log.info("leaving prompt %s on %s for the next start", self.prompt_id, self.server)
            return
        await client.cancel(self.prompt_id)


class ComfyPool:
    """Several ComfyUI servers; `async with ComfyPool(["http://a:8188", "http://b:8188#video"])`.

    Each job goes to a server that answers, has the wanted tags and every node class and model
    the workflow names, and has the shortest queue. A server that does not answer is left out for
    `retry_after` seconds, unless every server fitting the job is: then all are tried again. Jobs
    are queued at once (pipelining): the server runs them back to back while we download earlier
    results.
    """

    def __init__(
        self,
        servers: Iterable[str | ServerSpec],
        *,
        session: aiohttp.ClientSession | None = None,
        retry_after: float = 30.0,
        probe_timeout: float = 5.0,
        request_timeout: float = 30.0,
        stall_timeout: float = 300.0,
        job_timeout: float = 6 * 3600.0,
        poll_interval: float = 1.0,
        download_timeout: float = 1800.0,
        download_min_rate: float = 32 * 1024,
        download_max_bytes: int = 2048 * MB,
        max_outputs: int = 100,
        ws_max_message_bytes: int = 64 * MB,
        answer_max_bytes: int = 64 * MB,
        object_info_max_bytes: int = 128 * MB,
    ) -> None:
        specs = [s if isinstance(s, ServerSpec) else ServerSpec.parse(s) for s in servers]
        if not specs:
            raise ValueError("a ComfyPool needs at least one server")
        self.retry_after = retry_after
        self.probe_timeout = probe_timeout
        self._request_timeout = request_timeout
        self._stall_timeout = stall_timeout
        self._job_timeout = job_timeout
        self._poll_interval = poll_interval
        # each server's client gets these (see ComfyClient for what each bounds)
        self._download_timeout = download_timeout
        self._download_min_rate = download_min_rate
        self._download_max_bytes = download_max_bytes
        self._max_outputs = max_outputs
        self._ws_max_message_bytes = ws_max_message_bytes
        self._answer_max_bytes = answer_max_bytes
        self._object_info_max_bytes = object_info_max_bytes
        self._specs = specs
        self._session = session
        self._owns_session = session is None
        self._servers: list[_Server] = []
        self._detached = False

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        if self._servers:
            return
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._servers = [
            _Server(
                spec,
                ComfyClient(
                    spec.url,
                    session=self._session,
                    request_timeout=self._request_timeout,
                    connect_timeout=self.probe_timeout,
                    stall_timeout=self._stall_timeout,
                    job_timeout=self._job_timeout,
                    poll_interval=self._poll_interval,
                    download_timeout=self._download_timeout,
                    download_min_rate=self._download_min_rate,
                    download_max_bytes=self._download_max_bytes,
                    max_outputs=self._max_outputs,
                    ws_max_message_bytes=self._ws_max_message_bytes,
                    answer_max_bytes=self._answer_max_bytes,
                    object_info_max_bytes=self._object_info_max_bytes,
                ),
            )
            for spec in self._specs
        ]
        for server in self._servers:
            server.client.open()  # the first job then finds its server's WebSocket open
        if self._detached:
            self.detach()

    async def close(self) -> None:
        for server in self._servers:
            await server.client.close()
        self._servers = []
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    def detach(self) -> None:
        """From now on a cancelled job leaves its prompt on its server instead of taking it off
        (for a shutdown: the GPUs go on, and the next start's `attach` takes the prompts over).
        A person's cancel must come before this; it cannot be undone."""
        self._detached = True
        for server in self._servers:
            server.client.detach()
        if self._servers:
            log.info("leaving queued prompts on ComfyUI for the next start")

    @property
    def servers(self) -> list[ServerSpec]:
        return list(self._specs)

    def client(self, url: str) -> ComfyClient:
        """The client of one server of the pool (for info, preflight, uploads)."""
        for server in self._running():
            if server.spec.url == url.rstrip("/"):
                return server.client
        raise KeyError(url)

    def is_up(self, url: str) -> bool:
        """False while the server is left out after not answering."""
        loop = asyncio.get_running_loop()
        return any(
            s.spec.url == url.rstrip("/") and s.down_until <= loop.time() for s in self._running()
        )

    async def answering(self) -> list[ServerSpec]:
        """The servers that answer right now (GET /prompt within `probe_timeout`): a quick
        check before starting work that needs one. Leaves no server out for later."""
        servers = self._running()

        async def answers(server: _Server) -> bool:
            try:
                async with asyncio.timeout(self.probe_timeout):
                    await server.client.queue_remaining_now()
            except (ComfyError, TimeoutError) as exc:
                log.debug("%s does not answer: %s", server.spec.url, exc)
                return False
            return True

        found = await asyncio.gather(*(answers(s) for s in servers))
        return [s.spec for s, ok in zip(servers, found, strict=True) if ok]

    # ------------------------------------------------------------ jobs

    async def submit(
        self,
        workflow: Workflow,
        out_dir: Path,
        *,
        tags: frozenset[str] = frozenset(),
        on_event: EventHandler | None = None,
        images: Mapping[str, Path] | None = None,
        prompt_id: str | None = None,
    ) -> ComfyJob:
        """Queue `workflow` on the best server; returns at once with a ComfyJob.

        `images` maps a LoadImage node (title or id, e.g. "Input Image") to a local file: it is
        uploaded to the chosen server and the node set to the uploaded name, so an
        image-to-image job finds its input on the server that runs it. `prompt_id` (default:
        a fresh one) lets the caller note the id down before queueing, to `attach` later.
        """
        attempts = len(self._running())
        last_error: ComfyError | None = None
        refused: dict[_Server, PreflightFailed] = {}
        for _ in range(max(attempts, 1)):
            server = await self._choose(workflow, tags, refused)
            server.choosing += 1
            try:
                job_workflow = workflow
                for node, path in (images or {}).items():
                    name = await server.client.upload_image(path)
                    job_workflow = job_workflow.with_input_image(name, node=node)
                queued = await server.client.submit(
                    job_workflow, on_event=on_event, prompt_id=prompt_id
                )
            except ComfyOffline as exc:
                self._mark_down(server, exc)
                last_error = exc
                continue
            except PromptRejected as exc:
                # Say it as preflight would, from the server's node list; another server may
                # have what this one lacks. A refusal our check does not explain stays as is.
                problems = await self._explain(server, job_workflow)
                if not problems:
                    raise
                refused[server] = PreflightFailed(server.spec.url, problems)
                last_error = exc
                continue
            finally:
                server.choosing -= 1
            log.info("queued prompt %s on %s", queued, server.spec.url)
            return ComfyJob(server, queued, Path(out_dir))
        if refused:
            raise list(refused.values())[-1]
        raise NoServerAvailable(f"every server failed to take the job ({last_error})")

    async def _explain(self, server: _Server, workflow: Workflow) -> list[str]:
        """What the node list says stops `server` running a workflow it refused ([] when it
        cannot say). Read when not known, or no longer (a refused node class drops it); a
        kept list that says no is read again first."""
        try:
            async with asyncio.timeout(self.probe_timeout):
                return await server.client.problems(workflow)
        except (ComfyError, TimeoutError) as exc:
            log.info("%s: node list not readable: %s", server.spec.url, exc)
            return []

    async def attach(
        self,
        prompt_id: str,
        out_dir: Path,
        *,
        server: str | None = None,
        on_event: EventHandler | None = None,
    ) -> ComfyJob | None:
        """Take over a prompt queued earlier (by this process or one that died), asking
        `server` first, then the others: a ComfyJob when a server has it waiting, running or
        finished with success; None when none does (or it failed there), so queue it again.

        A server that does not answer counts as not having it: the caller queues the work
        elsewhere rather than wait for that server to come back.
        """
        servers = sorted(self._running(), key=lambda s: s.spec.url != (server or "").rstrip("/"))
        for candidate in servers:
            try:
                found = await candidate.client.attach(prompt_id, on_event=on_event)
            except ComfyError as exc:
                log.info(
                    "%s cannot say whether it has prompt %s: %s", candidate.spec.url, prompt_id, exc
                )
                continue
            if found:
                return ComfyJob(candidate, prompt_id, Path(out_dir))
        return None

    async def withdraw(self, prompt_id: str, *, server: str | None = None) -> int:
        """Take a prompt queued earlier (by any process) off every server that answers: deleted
        if it waits, interrupted if it runs, nothing if it is done or unknown. Returns how many
        servers were asked; one that does not answer is skipped."""
        asked = 0
        servers = sorted(self._running(), key=lambda s: s.spec.url != (server or "").rstrip("/"))
        for candidate in servers:
            try:
                await candidate.client.cancel(prompt_id)
            except ComfyError as exc:
                log.info("%s could not be asked to drop %s: %s", candidate.spec.url, prompt_id, exc)
                continue
            asked += 1
        return asked

    async def run(
        self,
        workflow: Workflow,
        out_dir: Path,
        *,
        tags: frozenset[str] = frozenset(),
        on_event: EventHandler | None = None,
        images: Mapping[str, Path] | None = None,
    ) -> list[OutputFile]:
        """submit() then result()."""
        job = await self.submit(workflow, out_dir, tags=tags, on_event=on_event, images=images)
        return await job.result()

    async def upload_image(self, path: Path, *, server: str) -> str:
        """Upload an input image to one server (prefer `submit(..., images=...)`)."""
        return await self.client(server).upload_image(path)

    # ------------------------------------------------------------ choice

    def _running(self) -> list[_Server]:
        if not self._servers:
            raise RuntimeError("use the pool inside `async with ComfyPool(...)`")
        return self._servers

    def _mark_down(self, server: _Server, error: BaseException) -> None:
        loop = asyncio.get_running_loop()
        if server.down_until <= loop.time():
            log.warning(
                "%s is not answering (%s); leaving it out for %g s",
                server.spec.url,
                error,
                self.retry_after,
            )
        # a little jitter so that several pools do not knock together
        server.down_until = loop.time() + self.retry_after * random.uniform(0.9, 1.1)

    async def _reach(self, server: _Server) -> bool:
        """The server's WebSocket is open (or opens within `probe_timeout`); left out if not."""
        if server.client.connected:
            return True
        try:
            async with asyncio.timeout(self.probe_timeout):
                await server.client.connect()
        except (ComfyOffline, TimeoutError) as exc:
            self._mark_down(server, exc)
            return False
        return True

    async def _check(
        self, server: _Server, workflow: Workflow, *, refresh: bool
    ) -> list[str] | None:
        """What stops the server running the workflow, from its node list (read once per
        connection; again with `refresh`); None when the list cannot be read (left out)."""
        try:
            async with asyncio.timeout(self.probe_timeout):
                info = await server.client.object_info(refresh=refresh)
        except (ComfyOffline, TimeoutError) as exc:
            self._mark_down(server, exc)
            return None
        except ComfyError as exc:
            log.warning("%s answered strangely (%s); leaving it out", server.spec.url, exc)
            self._mark_down(server, exc)
            return None
        return [text for _, text in workflow_problems(workflow, info)]

    async def _choose(
        self,
        workflow: Workflow,
        tags: frozenset[str],
        refused: Mapping[_Server, PreflightFailed] | None = None,
    ) -> _Server:
        """The server for a job: reachable, able to run it, the shortest queue.

        Costs no request once the servers' WebSockets are open and their node lists known: the
        queue lengths come from the WebSockets' `status` messages. One server alone is not
        checked against an unknown node list (its own validation answers the POST); with
        several, each list is read once per connection. A list that says no is read again
        before the job is refused (a model may have been installed since).
        """
        refused = refused or {}
        tagged = [s for s in self._running() if tags <= s.spec.tags and s not in refused]
        if not tagged:
            if refused:
                raise list(refused.values())[-1]
            raise NoServerAvailable(f"no server has the tags {', '.join(sorted(tags))}")
        now = asyncio.get_running_loop().time()
        # With every fitting server left out, trying them costs little and a job need not
        # fail for `retry_after` seconds after the servers are back (a retry right away).
        live = [s for s in tagged if s.down_until <= now] or tagged
        if any(not s.client.connected for s in live):
            await asyncio.gather(*(self._reach(s) for s in live))
        up = [s for s in live if s.client.connected]
        if not up:
            raise NoServerAvailable("no server is answering; retrying them later")
        verdicts: list[list[str] | None] = []
        if len(up) == 1 and up[0].client.known_object_info is None:
            verdicts = [[]]
        elif all(s.client.known_object_info is not None for s in up):
            verdicts = [
                [text for _, text in workflow_problems(workflow, s.client.known_object_info)]
                for s in up
                if s.client.known_object_info is not None
            ]
        else:
            verdicts = list(
                await asyncio.gather(*(self._check(s, workflow, refresh=False) for s in up))
            )
        fit = [s for s, found in zip(up, verdicts, strict=True) if found == []]
        if not fit:
            unfit = [s for s, found in zip(up, verdicts, strict=True) if found]
            again = await asyncio.gather(*(self._check(s, workflow, refresh=True) for s in unfit))
            fit = [s for s, found in zip(unfit, again, strict=True) if found == []]
            if not fit:
                for server, found in zip(unfit, again, strict=True):
                    if found:
                        raise PreflightFailed(server.spec.url, found)
                raise NoServerAvailable("no server is answering; retrying them later")
        return min(fit, key=lambda s: (s.client.load + s.choosing, self._servers.index(s)))


__all__ = ["ComfyJob", "ComfyPool"]
