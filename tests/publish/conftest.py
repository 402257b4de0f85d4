"""Fixtures for publishing: a character, an approved run with real files, settings, a notifier."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest
import responses
from instagrapi import Client
from PIL import Image, PngImagePlugin

from pipeline.characters import Character, Characters
from pipeline.models import Decision, Job, MediaItem, MediaKind, Platform, PostRecord, Run
from pipeline.ports import PostStore, PublishNotifier
from pipeline.prompts.library import TemplateLibrary
from pipeline.publish import PublishService, build_publish_service
from pipeline.publish.credentials import CredentialStore, session_path
from pipeline.publish.instagram import InstagramPublisher
from pipeline.settings import Settings
from tests.fakes.instagram import TRANSPORT, USER_ID, FakeInstagram, instant_instagrapi
from tests.fakes.x import FakeX

X_ENV = {
    "FOX_X_API_KEY": "ck-public",
    "FOX_X_API_SECRET": "cs-SECRET-consumer",
    "FOX_X_ACCESS_TOKEN": "42-at-token",
    "FOX_X_ACCESS_SECRET": "as-SECRET-access",
}
IG_ENV = {
    "FOX_IG_USERNAME": "fox.official",
    "FOX_IG_PASSWORD": "pw-SECRET-123",
    "FOX_IG_TOTP_SECRET": "JBSWY3DPEHPK3PXP",
}
FB_ENV = {"FOX_FB_PAGE_ID": "1029384756", "FOX_FB_PAGE_ACCESS_TOKEN": "EAAB-page-SECRET-token"}
BSKY_ENV = {"FOX_BSKY_HANDLE": "fox.bsky.social", "FOX_BSKY_APP_PASSWORD": "abcd-efgh-ijkl-mnop"}
SECRETS = (
    "cs-SECRET-consumer",
    "as-SECRET-access",
    "pw-SECRET-123",
    "JBSWY3DPEHPK3PXP",
    "abcd-efgh-ijkl-mnop",
    "EAAB-page-SECRET-token",
)


def character_yaml(
    *,
    instagram: bool = False,
    twitter: bool = False,
    bluesky: bool = False,
    facebook: bool = False,
    threads: bool = False,
    budget: dict[str, int] | None = None,
    prefix: str = "",
    fit: str = "pad",
) -> str:
    budget_lines = "".join(f"    {k}: {v}\n" for k, v in (budget or {}).items())
    return (
        "character:\n  name: Fox\n"
        "generation:\n  generation_type_weights: {text2img: 1}\n"
        "  workflows: {text2img: wf.json}\n"
        "social_media:\n  platforms:\n"
        f"    instagram: {{enabled: {str(instagram).lower()}, credentials: fox_ig,"
        f" prefix: '{prefix}', fit: {fit}}}\n"
        f"    twitter: {{enabled: {str(twitter).lower()}, credentials: fox_x,"
        f" prefix: '{prefix}'}}\n"
        f"    bluesky: {{enabled: {str(bluesky).lower()}, credentials: fox_bsky,"
        f" prefix: '{prefix}'}}\n"
        + (
            f"    facebook: {{enabled: true, credentials: fox_fb, prefix: '{prefix}'}}\n"
            if facebook
            else ""
        )
        + (
            f"    threads: {{enabled: true, credentials: fox_th, prefix: '{prefix}'}}\n"
            if threads
            else ""
        )
        + "schedule:\n  timezone: UTC\n"
        + (f"  daily_budget:\n{budget_lines}" if budget_lines else "")
    )


@pytest.fixture
def make_character(tmp_path: Path) -> Callable[..., Character]:
    def make(**options: object) -> Character:
        root = tmp_path / "project"
        (root / "characters").mkdir(parents=True, exist_ok=True)
        (root / "wf.json").write_text("{}")
        path = root / "characters" / "fox.yaml"
        path.write_text(character_yaml(**options))  # type: ignore[arg-type]
        return Characters(root / "characters", TemplateLibrary.load(), root=root).load("fox")

    return make


def comfy_png(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("workflow", '{"nodes": []}')
    Image.new("RGB", size, colour).save(path, "PNG", pnginfo=info, compress_level=1)
    return path


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "output" / "run1"
    folder.mkdir(parents=True)
    return folder


def approved_run(
    run_dir: Path,
    files: list[str],
    *,
    captions: dict[str, str] | None = None,
    run_id: str = "abc123def456",
) -> Run:
    """An approved run selecting every file in `files` (paths relative to `run_dir`)."""
    media = tuple(
        MediaItem(
            path=name,
            kind=MediaKind.VIDEO if name.endswith((".mp4", ".webm")) else MediaKind.IMAGE,
            description_index=0,
        )
        for name in files
    )
    run = Run.new(Job(character="fox"), run_id=run_id)
    return run.advance(
        run.state,
        media=media,
        descriptions=("A small orange fox in a blue scarf",),
        captions=captions or {"twitter": "Autumn walk #fox", "instagram": "Autumn walk #fox"},
        decision=Decision(
            approved=True,
            selected=tuple(range(len(files))),
            by="tester",
            at=datetime(2025, 1, 1, tzinfo=UTC),
        ),
    )


def photo_run(run_dir: Path, run_id: str = "abc123def456") -> Run:
    """An approved run of one square ComfyUI PNG, `a.png`."""
    comfy_png(run_dir / "a.png", (800, 800), (200, 10, 10))
    return approved_run(run_dir, ["a.png"], run_id=run_id)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        credentials_dir=tmp_path / "credentials",
    )


@dataclass
class RecordingNotifier:
    """A PublishNotifier that keeps what it was told."""

    attention: list[tuple[Platform, str, str]] = field(default_factory=list)
    uncertain: list[PostRecord] = field(default_factory=list)

    async def account_needs_attention(self, platform: Platform, account: str, reason: str) -> None:
        self.attention.append((platform, account, reason))

    async def post_uncertain(self, record: PostRecord) -> None:
        self.uncertain.append(record)


@pytest.fixture
def notifier() -> RecordingNotifier:
    return RecordingNotifier()


def no_secrets(*texts: str) -> bool:
    blob = "\n".join(texts)
    return not any(secret in blob for secret in SECRETS)


def dump(records: list[PostRecord]) -> str:
    return json.dumps([repr(r) for r in records])


@pytest.fixture
def fake_x() -> Iterator[FakeX]:
    """X's API answering through `responses`, in this process."""
    fake = FakeX()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        fake.install(mock)
        yield fake


def instagram_service(
    settings: Settings, store: PostStore, notifier: PublishNotifier
) -> PublishService:
    """A PublishService with the real InstagramPublisher, as a new process builds them, with
    no pauses between requests."""
    publisher = InstagramPublisher(
        CredentialStore(settings, IG_ENV).instagram,
        lambda name: session_path(settings, Platform.INSTAGRAM, name),
        request_delay=0,
        configure_delay=0,
    )
    return build_publish_service(
        settings, store, notifier=notifier, publishers={Platform.INSTAGRAM: publisher}
    )


@pytest.fixture
def fake_ig() -> Iterator[FakeInstagram]:
    """The account has two-factor on with the configured TOTP secret; no session is saved."""
    fake = FakeInstagram(totp_secret=IG_ENV["FOX_IG_TOTP_SECRET"])
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as private,
        responses.RequestsMock(assert_all_requests_are_fired=False) as public,
    ):
        fake.install(private)
        fake.install_public(public)
        yield fake


@pytest.fixture
def saved_session(settings: Settings) -> Path:
    """A session file as a first login leaves it (made by instagrapi itself)."""
    client = Client()
    client.authorization_data = {
        "ds_user_id": str(USER_ID),
        "sessionid": f"{USER_ID}%3AsessionSECRET%3A1",
        "should_use_header_over_cookies": True,
    }
    path = session_path(settings, Platform.INSTAGRAM, "fox_ig")
    path.parent.mkdir(parents=True)
    client.dump_settings(path)
    return path


@pytest.fixture
def service(
    settings: Settings, store: PostStore, notifier: RecordingNotifier
) -> Callable[[], PublishService]:
    """A new Instagram service and publisher each call, as a new process would build them."""

    return lambda: instagram_service(settings, store, notifier)


__all__ = ["instant_instagrapi"]  # autouse: instagrapi never pauses against the fake
