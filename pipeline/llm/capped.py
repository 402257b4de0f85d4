"""A size cap on every model answer, at the transport: the client libraries read whole bodies.

openai (on httpx2), ollama and google-genai (on httpx) each read a non-streamed answer whole
before they parse it, and none takes a size limit. Each accepts an httpx transport, so ours
wraps the real one: it asks for an uncompressed answer, refuses one whose Content-Length is over
the cap, and stops reading at the cap (a gzip or deflate body the server sends anyway is
inflated here, bounded, so no small body grows past the cap). Reading past the cap raises
`AnswerTooLarge`, which the libraries let through and the providers turn into TOO_LARGE. The
time a slow (trickling) body takes is bounded by the chain's deadline, not here.
Imports httpx and httpx2 only.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterable, AsyncIterator

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


def _encoding(headers: httpx.Headers | httpx2.Headers) -> str:
    return str(headers.get("content-encoding", "")).strip().lower()


_INFLATABLE = frozenset({"", "identity", "gzip", "x-gzip", "deflate"})


class CappedTransport(httpx.AsyncBaseTransport):
    """An httpx transport (ollama, google-genai) whose answers are at most `limit` bytes."""

    def __init__(self, limit: int, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.limit = limit
        self._inner = inner if inner is not None else httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request.headers["accept-encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        declared, encoding = _declared(response.headers), _encoding(response.headers)
        if encoding not in _INFLATABLE:
            await response.aclose()
            raise AnswerTooLarge(self.limit, encoding=encoding)
        if declared is not None and declared > self.limit and encoding in ("", "identity"):
            await response.aclose()
            raise AnswerTooLarge(self.limit, declared)
        if encoding:
            del response.headers["content-encoding"]
        stream = response.stream
        assert isinstance(stream, AsyncIterable)
        response.stream = _AsyncStream(_CappedBody(stream, self.limit, encoding))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _AsyncStream(httpx.AsyncByteStream):
    def __init__(self, body: _CappedBody) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()


class CappedTransport2(httpx2.AsyncBaseTransport):
    """The same for httpx2 (the openai client's HTTP library)."""

    def __init__(self, limit: int, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.limit = limit
        self._inner = inner if inner is not None else httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        request.headers["accept-encoding"] = "identity"
        response = await self._inner.handle_async_request(request)
        declared, encoding = _declared(response.headers), _encoding(response.headers)
        if encoding not in _INFLATABLE:
            await response.aclose()
            raise AnswerTooLarge(self.limit, encoding=encoding)
        if declared is not None and declared > self.limit and encoding in ("", "identity"):
            await response.aclose()
            raise AnswerTooLarge(self.limit, declared)
        if encoding:
            del response.headers["content-encoding"]
        stream = response.stream
        assert isinstance(stream, AsyncIterable)
        response.stream = _AsyncStream2(_CappedBody(stream, self.limit, encoding))
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _AsyncStream2(httpx2.AsyncByteStream):
    def __init__(self, body: _CappedBody) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._body:
            yield chunk

    async def aclose(self) -> None:
        await self._body.aclose()
