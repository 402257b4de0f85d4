"""An Instagram account's own proxy (NAME_PROXY): every request goes through it, unlogged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import responses

from pipeline.characters import Character
from pipeline.models import Platform, PostState
from pipeline.publish import build_publish_service
from pipeline.publish.credentials import CredentialStore, session_path
from pipeline.publish.instagram import InstagramPublisher
from pipeline.settings import Settings
from pipeline.store import SqlStore
from tests.fakes.instagram import TRANSPORT, FakeInstagram
from tests.publish.conftest import IG_ENV, RecordingNotifier, approved_run, comfy_png

#: the platform's client is the point here; the store's side of publishing runs on both
#: engines in test_records.py and test_end_state.py
pytestmark = pytest.mark.one_engine

PROXY = "http://proxyuser:proxy-SECRET-pass@10.9.8.7:3128"


@pytest.fixture
def mock() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as mock:
        FakeInstagram().install(mock)
        yield mock


@pytest.mark.parametrize(
    ("environ", "proxies"),
    [
        ({**IG_ENV, "FOX_IG_PROXY": PROXY}, {"http": PROXY, "https": PROXY}),
        (IG_ENV, {}),
    ],
    ids=["with-proxy", "without"],
)
async def test_every_instagram_request_goes_through_the_accounts_proxy(
    environ: dict[str, str],
    proxies: dict[str, str],
    mock: responses.RequestsMock,
    saved_session: Path,
    settings: Settings,
    store: SqlStore,
    notifier: RecordingNotifier,
    make_character: Callable[..., Character],
    run_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With FOX_IG_PROXY set every request is sent through it, and its password is never logged."""
    caplog.set_level(logging.DEBUG)
    publisher = InstagramPublisher(
        CredentialStore(settings, environ).instagram,
        lambda name: session_path(settings, Platform.INSTAGRAM, name),
        request_delay=0,
        configure_delay=0,
    )
    service = build_publish_service(
        settings, store, notifier=notifier, publishers={Platform.INSTAGRAM: publisher}
    )
    comfy_png(run_dir / "a.png", (1080, 1080), (200, 10, 10))
    run = approved_run(run_dir, ["a.png"])

    [record] = await service.publish_run(run, make_character(instagram=True), run_dir)

    assert record.state is PostState.POSTED
    # responses keeps the keyword arguments each request was sent with (proxies among them)
    sent = [getattr(call.request, "req_kwargs", {}).get("proxies") or {} for call in mock.calls]
    assert sent
    assert all(used == proxies for used in sent)
    session_file = await asyncio.to_thread(saved_session.read_text)
    assert "proxy-SECRET-pass" not in caplog.text + repr(record) + session_file
