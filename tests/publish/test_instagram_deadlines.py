"""Instagram requests have a deadline: a silent answer ends the request instead of the run
waiting for ever, and a post made before the silence is found, never made twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import requests
import responses

from pipeline.characters import Character
from pipeline.models import Platform, PostState
from pipeline.publish import build_publish_service
from pipeline.publish.credentials import CredentialStore, session_path
from pipeline.publish.http import Limits
from pipeline.publish.instagram import InstagramPublisher, _BoundedCurlAdapter
from pipeline.publish.service import PublishService
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.instagram import TRANSPORT, USER_ID, FakeInstagram
from tests.publish.conftest import IG_ENV, RecordingNotifier, photo_run

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

#: the deadline of each Instagram request in these tests, in seconds
DEADLINE = 2.0


@pytest.fixture
def fake_ig() -> Iterator[FakeInstagram]:
    fake = FakeInstagram()
    with responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as mock:
        fake.install(mock)
        yield fake


@pytest.fixture
def service(settings: Settings, store: SqlStore, notifier: RecordingNotifier) -> PublishService:
    publisher = InstagramPublisher(
        CredentialStore(settings, IG_ENV).instagram,
        lambda name: session_path(settings, Platform.INSTAGRAM, name),
        request_delay=0,
        configure_delay=0,
        timeout=DEADLINE,
    )
    quick = settings.model_copy(update={"publish_retries": 1, "publish_backoff_seconds": 0})
    built = build_publish_service(
        quick, store, notifier=notifier, publishers={Platform.INSTAGRAM: publisher}
    )

    async def no_wait(seconds: float) -> None:
        pass

    built.sleep = no_wait
    return built


@pytest.mark.usefixtures("saved_session")
async def test_post_made_then_silence_is_found_on_the_feed(
    fake_ig: FakeInstagram,
    service: PublishService,
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """Instagram makes the post and never answers: the request ends at its deadline and the
    post is found among the account's latest posts, posted once."""
    fake_ig.silence("media/configure")

    [record] = await service.publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.POSTED
    [media] = fake_ig.medias
    assert record.remote_id == media["id"]
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "found"]
    [(connect, rest)] = fake_ig.deadlines
    assert connect + rest == pytest.approx(DEADLINE)
    assert len(fake_ig.configures) == 1


@pytest.mark.usefixtures("saved_session")
async def test_a_silent_upload_is_tried_again(
    fake_ig: FakeInstagram,
    service: PublishService,
    make_character: Callable[..., Character],
    run_dir: Path,
) -> None:
    """An upload that gets no answer ends at the deadline and is simply tried again: nothing
    was posted yet, so the second try posts once."""
    fake_ig.silence("rupload_igphoto")

    [record] = await service.publish_run(
        photo_run(run_dir), make_character(instagram=True), run_dir
    )

    assert record.state is PostState.POSTED
    assert [a.outcome for a in record.attempts] == ["posting", "transient", "posted"]
    assert "Trying again" in record.attempts[1].message
    assert len(fake_ig.configures) == 1
    assert len(fake_ig.deadlines) == 1


@pytest.fixture
async def silent_host() -> AsyncIterator[tuple[str, asyncio.Event]]:
    """A host that accepts connections, reads what comes, and never answers."""
    connected = asyncio.Event()
    writers: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        connected.set()
        while await reader.read(65536):
            pass

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield f"http://127.0.0.1:{port}/api/v1/feed/user/{USER_ID}/", connected
        server.close()
        # Python 3.11's Server.close leaves accepted connections open: close each here, or
        # the closed loop's transport warns in whichever test collects it
        for writer in writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


async def test_the_curl_transport_leaves_a_silent_host_at_the_deadline(
    silent_host: tuple[str, asyncio.Event],
) -> None:
    """instagrapi's own transport (curl, over a real socket), as mounted here, gives up on a
    host that never answers when the deadline passes, where unbounded it would wait for ever."""
    url, connected = silent_host
    session = requests.Session()
    session.mount("http://", _BoundedCurlAdapter(Limits(deadline=0.5)))

    with pytest.raises(requests.Timeout):
        await asyncio.to_thread(session.get, url)

    assert connected.is_set()
    session.close()
