"""The bounded HTTP every platform call goes through, against raw hostile servers on real
sockets: whatever a server does, a call ends by its deadline or at its size cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import requests

from pipeline.publish.http import AnswerTooLarge, BoundedSession, DeadlineExceeded, Limits

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _trickle_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok":
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(0.05)


async def _cut_off(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{"data":')
    await writer.drain()


async def _too_long(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n{")
    await writer.drain()
    await reader.read()  # until the caller hangs up


async def _moved(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    path = head.split(b" ")[1]
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(path), path))
    await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    """Start a raw server answering with a handler; its URL. Hung handlers end with it."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[None]] = set()
    writers: list[asyncio.StreamWriter] = []

    async def start(handler: Handler) -> str:
        async def run(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            writers.append(writer)
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        started = await asyncio.start_server(run, "127.0.0.1", 0)
        servers.append(started)
        return f"http://127.0.0.1:{started.sockets[0].getsockname()[1]}"

    yield start
    for started in servers:
        started.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    # each handler closed its writer; let the transports finish closing on this loop
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def test_an_answer_whose_head_trickles_ends_at_the_deadline(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A server that sends its status line a byte at a time, each within the read timeout,
    never finishes the call: the deadline does."""
    url = await server(_trickle_head)
    session = BoundedSession(Limits(deadline=0.3))

    with pytest.raises(DeadlineExceeded):
        await asyncio.to_thread(session.get, url + "/")


async def test_an_answer_over_its_declared_cap_is_not_read(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    """An answer declaring more bytes than the cap is refused before its body is read."""
    url = await server(_too_long)
    session = BoundedSession(Limits(deadline=30, max_answer_bytes=1000))

    with pytest.raises(AnswerTooLarge):
        await asyncio.to_thread(session.get, url + "/")


async def test_an_answer_cut_off_is_a_connection_error(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    """An answer that stops half-way is a connection error the platforms' code knows (a
    transient failure), not an odd one from deep inside urllib3."""
    url = await server(_cut_off)
    session = BoundedSession(Limits(deadline=30))

    with pytest.raises(requests.ConnectionError):
        await asyncio.to_thread(session.get, url + "/")


async def test_calls_under_a_moved_root_go_to_its_new_root(
    server: Callable[[Handler], Awaitable[str]],
) -> None:
    """A URL under a moved root (X_API_URL) is sent to the new root with its path kept;
    others are left alone."""
    url = await server(_moved)
    session = BoundedSession(Limits(deadline=5), moves={"https://api.twitter.com": url})

    answer = await asyncio.to_thread(session.get, "https://api.twitter.com/2/tweets?x=1")

    assert answer.text == "/2/tweets?x=1"
    assert session.moved("https://api.twitter.community/2") == "https://api.twitter.community/2"
