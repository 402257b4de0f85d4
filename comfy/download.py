"""Bounded downloads of a job's outputs through GET /view, streamed to disk.

Every file is bounded in time, rate and size, saved under a safe unique name, and never left
half-written; the disk's errors are told apart from the network's. Imports only the standard
library, aiohttp and comfy's own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import aiohttp

from comfy.errors import ComfyOffline, DownloadFailed, OutputNotWritten, ProtocolError
from comfy.records import OutputFile, RemoteFile

log = logging.getLogger(__name__)

MB = 2**20


@dataclass(frozen=True)
class DownloadLimits:
    """What bounds one job's downloads (the client's settings of the moment)."""

    request_timeout: float  # for the answer's head, and between two pieces of its body
    connect_timeout: float
    timeout: float  # per file, from the request to the last byte
    min_rate: float  # bytes/s, averaged over each `rate_window`
    rate_window: float
    max_bytes: int  # per file
    max_files: int  # per job (temp previews not counted)
    chunk_size: int  # bytes gathered before one write in a thread


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


def mb_text(size: float) -> str:
    return f"{size / MB:g} MB"


def _discard(handle: IO[bytes] | None, path: Path | None, folder: Path | None = None) -> None:
    """Close and remove a download that did not finish, and `folder` when it is left empty (in
    a thread; never raises)."""
    if handle is not None:
        with contextlib.suppress(OSError):
            handle.close()
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    if folder is not None:
        with contextlib.suppress(OSError):
            folder.rmdir()


async def _remove(handle: IO[bytes] | None, path: Path, folder: Path | None = None) -> None:
    """Remove a download that did not finish (and `folder`, when left empty), in a thread, and
    wait until it is gone even when cancelled meanwhile (the removal is quick; the cancel is
    passed on once it is done)."""
    removal = asyncio.ensure_future(asyncio.to_thread(_discard, handle, path, folder))
    cancelled = False
    while not removal.done():
        try:
            await asyncio.shield(removal)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def _nothing() -> None:
    """A hop to a thread that does nothing (see `Downloader.get_ready`)."""


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


#: a file that declares at most this size (or `download_chunk_size`, when larger) gathers whole
#: and is created, written and closed in one hop to a thread once it came. A hop costs little
#: when the loop is idle, but while the loop reads a body it waits for the interpreter's lock,
#: and on a busy machine each hop waits for a core (profiled: 2-18 ms): one hop per file, as a
#: client that reads the whole answer and then saves it makes. A 1024x1024 PNG is 1-2 MB.
WHOLE_FILE_BYTES = 4 * MB

#: a download still arriving after this long is put on the disk (partial, under its final name)
#: with what came so far, without waiting for a whole chunk: a slow file shows while it comes
FIRST_WRITE_AFTER = 0.2


class _LocalFile:
    """One download's file, made by its first write; each write (the first creating the file,
    the last closing it) is one hop to a thread, which runs while the loop reads on. So a small
    file takes one hop once its last byte came, and a large one keeps at most the chunk being
    written and the chunk gathering in memory.
    """

    def __init__(self, out_dir: Path, name: str) -> None:
        self.out_dir = out_dir
        self.name = name
        self.path: Path | None = None
        self.handle: IO[bytes] | None = None
        self.begun = False  # a write was started: the file is made, or about to be
        self._writing: asyncio.Future[None] | None = None
        self._made_folder = False  # `out_dir` is this download's: removed with it if empty

    def _put(self, data: bytearray, last: bool) -> None:
        """In a thread: make the folder and the file on the first call (noting whether the
        folder is new), append `data`, close the file after the last."""
        if self.handle is None:
            self._made_folder = not self.out_dir.is_dir()
            self.path, self.handle = _create_unique(self.out_dir, self.name)
        self.handle.write(data)
        if last:
            self.handle.close()

    async def write(self, data: bytearray, *, last: bool = False) -> None:
        """Start writing `data` (once the previous write is done) and return at once; the
        last write is waited for. The disk's OSError (full, quota, read-only) becomes
        OutputNotWritten naming the folder, never a network error."""
        await self.settle()
        self.begun = True
        self._writing = asyncio.ensure_future(asyncio.to_thread(self._put, data, last))
        if last:
            await self.settle()

    async def settle(self) -> None:
        """Wait for the write under way. A cancel meanwhile leaves it running (a thread cannot
        be stopped): `discard` waits for it."""
        writing = self._writing
        if writing is None:
            return
        try:
            await asyncio.shield(writing)
        except OSError as exc:
            self._writing = None
            log.warning("cannot write into %s: %s", self.out_dir, exc)
            raise OutputNotWritten.from_os_error(self.out_dir, exc) from exc
        self._writing = None

    async def discard(self) -> None:
        """Remove what was written, after the write under way has ended; finishes even when
        cancelled meanwhile (the cancel is passed on once it is done)."""
        cancelled = False
        writing = self._writing
        while writing is not None and not writing.done():
            try:
                await asyncio.wait([writing])
            except asyncio.CancelledError:
                cancelled = True
        if writing is not None and not writing.cancelled():
            writing.exception()  # retrieved: its failure is told by whoever saw it first
        self._writing = None
        if self.path is not None:
            try:
                await _remove(self.handle, self.path, self.out_dir if self._made_folder else None)
            except asyncio.CancelledError:
                cancelled = True
        if cancelled:
            raise asyncio.CancelledError


class Downloader:
    """Downloads for one server: at most `parallel` files at a time."""

    def __init__(self, url: str, parallel: int) -> None:
        self.url = url
        self._slots = asyncio.Semaphore(parallel)
        self._ready: asyncio.Future[None] | None = None

    def get_ready(self) -> None:
        """Start the loop's worker thread now, while a job runs, if nothing has yet: the first
        hop to a thread starts one, and starting a thread blocks the loop until the system runs
        it (measured: 1-10 ms on a busy machine), which would otherwise delay the first file."""
        if self._ready is None:
            self._ready = asyncio.get_running_loop().run_in_executor(None, _nothing)

    async def download(
        self,
        session: aiohttp.ClientSession,
        files: Sequence[RemoteFile],
        out_dir: Path,
        limits: DownloadLimits,
    ) -> list[OutputFile]:
        """Stream each file through /view into `out_dir` under a safe, unique name.

        All or nothing: when one file fails (or the caller is cancelled) the others stop, and
        no file of the call stays behind, neither partial nor whole. Each file is bounded by
        `download_timeout`, `download_min_rate` and `download_max_bytes` (DownloadFailed); more
        than `max_outputs` files are refused before any is fetched. A file that cannot be saved
        (disk full, over quota, read-only) raises OutputNotWritten.
        """
        if len(files) > limits.max_files:
            raise DownloadFailed(
                self.url,
                f"the job reported {len(files)} output files, more than the "
                f"{limits.max_files} one job may have",
            )
        out_dir = Path(out_dir)
        tasks = [asyncio.ensure_future(self._one(session, f, out_dir, limits)) for f in files]
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

    async def _one(
        self,
        session: aiohttp.ClientSession,
        remote: RemoteFile,
        out_dir: Path,
        limits: DownloadLimits,
    ) -> OutputFile:
        params = {"filename": remote.filename, "subfolder": remote.subfolder, "type": remote.type}
        name = safe_name(remote.filename)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=limits.connect_timeout, sock_read=limits.request_timeout
        )
        async with self._slots:
            local = _LocalFile(out_dir, name)
            overall = asyncio.timeout(limits.timeout)
            try:
                async with overall:
                    # the answer's head within the request timeout (a server may trickle it)
                    async with asyncio.timeout(limits.request_timeout):
                        resp = await session.get(self.url + "/view", params=params, timeout=timeout)
                    async with resp:
                        if resp.status != 200:
                            raise ProtocolError(
                                f"GET /view on {self.url} answered HTTP {resp.status} for {name}"
                            )
                        size = resp.content_length
                        if size is not None and size > limits.max_bytes:
                            raise self._too_large(name, limits)
                        await self._stream(resp, local, name, limits)
            except BaseException as exc:
                # no partial file stays, whatever stopped us (a cancel included)
                await local.discard()
                if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
                    raise ComfyOffline(self.url, f"download broke: {type(exc).__name__}") from exc
                if isinstance(exc, TimeoutError) and overall.expired():
                    raise DownloadFailed(
                        self.url, f"{name} was not sent whole within {limits.timeout:g} s"
                    ) from None
                if isinstance(exc, TimeoutError):
                    raise ComfyOffline(self.url, "download timed out") from exc
                raise
        assert local.path is not None  # the last write made it at the latest
        return OutputFile(path=local.path, node_id=remote.node_id, kind=remote.kind, filename=name)

    def _too_large(self, name: str, limits: DownloadLimits) -> DownloadFailed:
        return DownloadFailed(
            self.url, f"{name} is larger than the {mb_text(limits.max_bytes)} a file may have"
        )

    async def _stream(
        self,
        resp: aiohttp.ClientResponse,
        local: _LocalFile,
        name: str,
        limits: DownloadLimits,
    ) -> None:
        """Copy the body to disk: pieces gather up to `download_chunk_size`, then one write in
        a thread while the next chunk gathers; so memory stays near two chunks and the loop
        never waits on the disk. A file declaring at most `WHOLE_FILE_BYTES` gathers whole and
        is written in one hop at its end; one still coming after `FIRST_WRITE_AFTER` seconds is
        put on the disk with what came so far.

        At most `download_max_bytes`; and each `download_rate_window` seconds must bring at
        least `download_min_rate` bytes a second, so a server that trickles fails in one window.
        """
        loop = asyncio.get_running_loop()
        window = limits.rate_window
        started = loop.time()
        window_end = started + window
        first_write = started + FIRST_WRITE_AFTER
        window_bytes = total = 0
        buffer = bytearray()
        gather = limits.chunk_size
        declared = resp.content_length
        if declared is not None and declared <= max(gather, WHOLE_FILE_BYTES):
            gather = max(gather, WHOLE_FILE_BYTES)
        while True:
            due = min(window_end, first_write) if buffer and not local.begun else window_end
            waiting = asyncio.timeout_at(due)
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
                if total > limits.max_bytes:
                    raise self._too_large(name, limits)
                buffer += chunk
            now = loop.time()
            if len(buffer) >= gather or (buffer and not local.begun and now >= first_write):
                await local.write(buffer)
                buffer = bytearray()
            if now >= window_end:
                if window_bytes < limits.min_rate * window:
                    raise DownloadFailed(
                        self.url,
                        f"{name} came slower than {limits.min_rate / 1024:g} KB/s "
                        f"({window_bytes} bytes in {window:g} s)",
                    )
                window_end, window_bytes = now + window, 0
        await local.write(buffer, last=True)
