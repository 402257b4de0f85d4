"""A size cap on every model answer, in the HTTP client: the client libraries read whole bodies.

openai (on httpx2), ollama and google-genai (on httpx) each read a non-streamed answer whole
before they parse it (`response.aread()` inside `AsyncClient.send`), and none takes a size
limit. Each takes an httpx client or its keyword arguments, so ours carry two event hooks: the
request asks for an uncompressed answer, and the response hook, which httpx runs before it reads
the body (https://www.python-httpx.org/advanced/event-hooks), refuses a Content-Length over the
cap and wraps the body so that reading stops at the cap (a gzip or deflate body the server sends
anyway is inflated here, bounded, so no small body grows past the cap). Hooks rather than a
transport: a client given its own transport ignores the HTTP(S)_PROXY settings. Reading past the
cap raises `AnswerTooLarge`, which the libraries let through and the providers turn into
TOO_LARGE. The time a slow (trickling) body takes is bounded by the chain's deadline, not here.
Imports httpx and httpx2 only.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable

import httpx
import httpx2


class AnswerTooLarge(Exception):
    """An answer was larger than the cap; reading stopped there."""

    def __init__(self, limit: int, declared: int | None = None, *, encoding: str = "") -> None:
        self.limit = limit
        if encoding:
            text = f"the answer came {encoding}-encoded, which cannot be read within a size cap"
        else:
            said = f" (Content-Length {declared})" if declared is not None else ""
            text = f"the answer was larger than {limit // 1024} KB{said}; reading stopped"
        super().__init__(text)


class _CappedBody:
    """The body's bytes, at most `limit` of them (after inflating), else AnswerTooLarge."""

    def __init__(self, inner: AsyncIterable[bytes], limit: int, encoding: str) -> None:
        self._inner = inner
        self._limit = limit
        self._inflate = (
            zlib.decompressobj(zlib.MAX_WBITS | 32)
            if encoding in ("gzip", "x-gzip", "deflate")
            else None
        )
        self._seen = 0

    def _count(self, chunk: bytes) -> bytes:
        self._seen += len(chunk)
        if self._seen > self._limit:
            raise AnswerTooLarge(self._limit)
        return chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for raw in self._inner:
            if self._inflate is None:
                yield self._count(raw)
                continue
            data = raw
            while data:
                # at most one byte past the cap per step: a bomb never unpacks in memory
                chunk = self._inflate.decompress(data, self._limit - self._seen + 1)
                yield self._count(chunk)
                data = self._inflate.unconsumed_tail
        if self._inflate is not None:
            yield self._count(self._inflate.flush())

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            await close()


def _declared(headers: httpx.Headers | httpx2.Headers) -> int | None:
    try:
        return int(headers.get("content-length", ""))
    except ValueError:
        return None


_INFLATABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


def _check(response: httpx.Response | httpx2.Response, limit: int) -> str:
    """The body's content encoding, once the headers allow reading it within `limit`."""
    encoding = str(response.headers.get("content-encoding", "")).strip().lower()
    if encoding not in _INFLATABLE:
        raise AnswerTooLarge(limit, encoding=encoding)
    declared = _declared(response.headers)
    if declared is not None and declared > limit and encoding in ("", "identity"):
        raise AnswerTooLarge(limit, declared)
    if encoding:  # inflated here, so the client must not inflate it again
        del response.headers["content-encoding"]
    return encoding


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, body: _CappedBody) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


class _AsyncStream2(httpx2.AsyncByteStream):
    def __init__(self, body: _CappedBody) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


RequestHook = Callable[[httpx.Request], Awaitable[None]]
ResponseHook = Callable[[httpx.Response], Awaitable[None]]
RequestHook2 = Callable[[httpx2.Request], Awaitable[None]]
ResponseHook2 = Callable[[httpx2.Response], Awaitable[None]]


def capped_hooks(limit: int) -> tuple[RequestHook, ResponseHook]:
    """Event hooks for an `httpx.AsyncClient` (ollama, google-genai): the request asks for an
    uncompressed answer; the response's body is read at most `limit` bytes far. The response
    hook must come first (a later hook may read the body)."""

    async def identity(request: httpx.Request) -> None:
        request.headers["accept-encoding"] = "identity"

    async def cap(response: httpx.Response) -> None:
        try:
            encoding = _check(response, limit)
        except AnswerTooLarge:
            await response.aclose()
            raise
        stream = response.stream
        assert isinstance(stream, AsyncIterable)
        response.stream = _AsyncStream(_CappedBody(stream, limit, encoding))

    return identity, cap


def capped_hooks2(limit: int) -> tuple[RequestHook2, ResponseHook2]:
    """The same for an `httpx2.AsyncClient` (the openai client's)."""

    async def identity(request: httpx2.Request) -> None:
        request.headers["accept-encoding"] = "identity"

    async def cap(response: httpx2.Response) -> None:
        try:
            encoding = _check(response, limit)
        except AnswerTooLarge:
            await response.aclose()
            raise
        stream = response.stream
        assert isinstance(stream, AsyncIterable)
        response.stream = _AsyncStream2(_CappedBody(stream, limit, encoding))

    return identity, cap
