"""Bounded HTTP for the platform clients: every call has one deadline and a cap on its answer.

requests (under tweepy, our X media upload and instagrapi's public session) times each socket
wait only, so an answer that trickles a byte at a time, or never ends, is bounded by nothing.
A `BoundedSession` gives every call one overall deadline, connect, send, wait and read included
(a watchdog shuts the call's socket when it passes), and reads the answer itself up to a cap.
It can also send every URL under some roots to another root (`X_API_URL`).
Imports requests and urllib3 only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import HTTPError


class DeadlineExceeded(requests.exceptions.Timeout):
    """The call did not finish (connect, send, the whole answer) within its deadline."""


class AnswerTooLarge(requests.exceptions.RequestException):
    """The answer was longer than the cap; it was not read further."""


@dataclass(frozen=True)
class Limits:
    """`deadline`: seconds one call may take from connect to the last byte of its answer;
    `max_answer_bytes`: the longest answer read (decoded); `connect`: the connect timeout."""

    deadline: float = 60.0
    max_answer_bytes: int = 8 * 1024 * 1024
    connect: float = 10.0


class _CallDeadline:
    """One call's deadline: when it passes, the sockets the call uses are shut down, which
    ends any read or write blocked on them at once."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._done = False
        self._lock = threading.Lock()
        # duplicates of the call's socket descriptors: shutting one down shuts the socket,
        # whatever became of the object urllib3 holds (wrapped in TLS, say)
        self._sockets: list[socket.socket] = []
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    def attach(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        try:
            twin = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            return  # already closed: nothing left to wait on
        with self._lock:
            self._sockets.append(twin)
            expired = self.expired
        if expired:
            _shut(twin)

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def finish(self) -> None:
        self._timer.cancel()
        with self._lock:
            self._done = True
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            sock.close()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


_current = threading.local()


def _watch_socket(sock: socket.socket | None) -> None:
    watch: _CallDeadline | None = getattr(_current, "watch", None)
    if watch is not None:
        watch.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    """urllib3's connection that shows its socket to the call's watch (new or reused)."""

    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _watch_socket(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> None:
        _watch_socket(self.sock)
        super().request(*args, **kwargs)


class _WatchedHTTPSConnection(_WatchedHTTPConnection, HTTPSConnection):
    """The same over TLS: urllib3's HTTPSConnection is an HTTPConnection, so the watch's two
    methods come first in the order and call on into TLS's."""


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class BoundedAdapter(HTTPAdapter):
    """requests' adapter with a deadline per call and a capped answer; never retries."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        limits = self.limits
        watch = _CallDeadline(limits.deadline)
        outer = getattr(_current, "watch", None)
        _current.watch = watch
        watch.start()
        try:
            response = super().send(
                request,
                stream=True,
                timeout=(min(limits.connect, limits.deadline), limits.deadline),
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
            _read_capped(response, limits.max_answer_bytes)
        except Exception as exc:
            if watch.expired and not isinstance(exc, AnswerTooLarge):
                raise DeadlineExceeded(
                    f"no complete answer within {limits.deadline:g} s", request=request
                ) from None
            if isinstance(exc, HTTPError):  # urllib3's, from reading the answer: cut off
                raise requests.exceptions.ConnectionError(
                    f"the answer was cut off ({type(exc).__name__})", request=request
                ) from None
            raise
        finally:
            watch.finish()
            _current.watch = outer
        return response


def _read_capped(response: requests.Response, cap: int) -> None:
    """Read the whole answer into `response` (as requests would), refusing more than `cap`."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > cap:
        response.close()
        raise AnswerTooLarge(f"an answer of {declared} bytes (the cap is {cap})")
    body = bytearray()
    for chunk in response.raw.stream(64 * 1024, decode_content=True):
        body += chunk
        if len(body) > cap:
            response.close()
            raise AnswerTooLarge(f"an answer of more than {cap} bytes")
    response._content = bytes(body)
    response._content_consumed = True
    response.raw.release_conn()


class BoundedSession(requests.Session):
    """A requests Session whose every call is bounded by `limits`; a URL that starts with a
    key of `moves` is sent under that key's value instead (tests and proxies)."""

    def __init__(self, limits: Limits, *, moves: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.limits = limits
        self.moves = {k.rstrip("/"): v.rstrip("/") for k, v in (moves or {}).items() if k != v}
        adapter = BoundedAdapter(limits)
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    def moved(self, url: str) -> str:
        for root, target in self.moves.items():
            if url == root or url.startswith(root + "/"):
                return target + url[len(root) :]
        return url

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        # moved before preparing, so that an OAuth 1.0a signature covers the URL sent
        if isinstance(request.url, str):
            request.url = self.moved(request.url)
        return super().prepare_request(request)
