"""X through a real TLS connection: tweepy and our uploader reach the fake X via HTTPS_PROXY,
as a child process (the bot, the command line) does in the end-to-end tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from pipeline.models import MediaKind
from pipeline.ports import OutgoingMedia
from pipeline.publish.credentials import CredentialStore
from pipeline.publish.twitter import TwitterPublisher
from pipeline.settings import Settings
from tests.fakes.x_api import FakeXApi
from tests.publish.conftest import comfy_png


async def test_a_post_goes_through_the_proxy_over_tls(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image posted with the environment a child process gets lands on the fake X."""
    image = comfy_png(tmp_path / "a.png", (320, 240), (200, 10, 10))
    async with FakeXApi(tmp_path / "x") as x:
        for name, value in x.env.items():
            monkeypatch.setenv(name, value)
        publisher = TwitterPublisher(CredentialStore(settings, x.credentials_env("fox_x")).twitter)
        posted = await publisher.post(
            "fox_x",
            [OutgoingMedia(image, MediaKind.IMAGE, "image/png", "a red square")],
            "Hello #fox",
        )
        found = await publisher.find_post(
            "fox_x", "Hello #fox", since=datetime.now(UTC) - timedelta(minutes=1)
        )

    assert x.errors == []
    assert x.refused == []
    [tweet] = x.state.tweets
    assert (posted.remote_id, tweet["text"]) == (tweet["id"], "Hello #fox")
    assert x.state.uploads[tweet["media"]["media_ids"][0]]["alt"] == "a red square"
    assert found is not None
    assert found.remote_id == posted.remote_id


async def test_hosts_other_than_x_are_refused(tmp_path: Path) -> None:
    """The proxy tunnels only to X's hosts, so a test can never reach the internet through it."""
    async with FakeXApi(tmp_path / "x") as x:
        proxies = {"https": x.env["HTTPS_PROXY"]}

        def fetch() -> None:
            requests.get("https://example.com/", proxies=proxies, timeout=5)

        with pytest.raises(requests.exceptions.ProxyError):
            await asyncio.to_thread(fetch)
    assert x.refused == ["CONNECT example.com:443"]
