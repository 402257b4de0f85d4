"""No secret leaks: a full run, and its failures, scanned for every secret value in its settings.

In-process: the real MediaBot against the fake Discord, the real Pipeline (ComfyUI pool, the
real Ollama / OpenRouter / Gemini clients against their fakes, vision, captions), publishing
through the real instagrapi and X clients against the `responses` fakes, the store on SQLite.
Each secret setting holds a distinctive value; the test collects every log record (DEBUG, every
library), every request body the fake Discord received, the runs and posts in the store and
every file written (except the Instagram session file, whose job is to hold a session), and
asserts that no secret value appears in any of them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import responses
from instagrapi import Client

from bot.__main__ import open_bot
from bot.render import APPROVE, REJECT
from bot.services import Services
from pipeline.errors import MediaOverloadError
from pipeline.models import Platform, Run, RunState
from pipeline.publish.credentials import session_path
from pipeline.settings import Settings
from pipeline.store import open_store
from tests.fakes import discord as fd
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.gemini import FakeGemini
from tests.fakes.instagram import TRANSPORT, USER_ID, FakeInstagram
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.x import FakeX
from tests.publish.conftest import IG_ENV, X_ENV

ROOT = Path(__file__).resolve().parents[2]

DISCORD_TOKEN = "MTIz.SECRET-discord-token.Xk9q"
WEBHOOK_TOKEN = "SECRET-webhook-token-Pq7Lm"
OPENROUTER_KEY = "sk-or-v1-SECRET-openrouter-4d8e"
GEMINI_KEY = "AIzaSy-SECRET-gemini-91bZ"
OLLAMA_KEY = "SECRET-ollama-key-55c1"
DB_PASSWORD = "SECRET-db-password-Hn3"
IG_SESSION = f"{USER_ID}%3AsessionSECRET%3A1"
#: every secret value in the run's settings and credentials (the X fake checks the key and the
#: access token by value, so those are the fixture's; they are scanned for like the rest)
SECRETS = {
    "DISCORD_TOKEN": DISCORD_TOKEN,
    "DISCORD_NOTIFY_WEBHOOK_URL": WEBHOOK_TOKEN,
    "OPENROUTER_API_KEY": OPENROUTER_KEY,
    "GEMINI_API_KEY": GEMINI_KEY,
    "OLLAMA_API_KEY": OLLAMA_KEY,
    "DATABASE_URL": DB_PASSWORD,
    "instagram session": "sessionSECRET",
    **{name: value for name, value in {**IG_ENV, **X_ENV}.items() if "USERNAME" not in name},
}

CHARACTER = """
character: {name: Fox, description: a small orange fox in a blue scarf}
generation:
  generation_type_weights: {text2img: 1}
  workflows: {text2img: workflows/text2img.json}
  similarity_threshold: 0.5
  descriptions: 1
  prompt_method_weights: {arbitrary: 1}
social_media:
  default_hashtags: ["#fox"]
  platforms:
    instagram: {enabled: true, credentials: fox_ig}
    twitter: {enabled: true, credentials: fox_x}
additional_params:
  general: {images_per_description: 2}
"""


#: what each language model says, by task
answer = HealthyModel(
    idea="Fox walks through autumn leaves.",
    descriptions=("A small orange fox in a blue scarf on a hill",),
    caption="An autumn walk.",
    hashtags=("#autumn",),
    score=0.9,
    reason="a fox in a blue scarf",
)


@pytest.fixture
def platforms() -> Iterator[tuple[FakeInstagram, FakeX]]:
    """Instagram and X, faked at the requests boundary their client libraries send through."""
    instagram, x = FakeInstagram(), FakeX()
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False, target=TRANSPORT) as ig,
        responses.RequestsMock(assert_all_requests_are_fired=False) as xm,
    ):
        instagram.install(ig)
        x.install(xm)
        yield instagram, x


@dataclass
class World:
    """Everything the scan reads afterwards."""

    discord: fd.FakeDiscord
    settings: Settings
    project: Path
    llms: tuple[FakeOpenAI, FakeGemini, FakeOllama]
    comfy: FakeComfyUI


@pytest.fixture
async def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    for name, value in {**IG_ENV, **X_ENV}.items():
        monkeypatch.setenv(name, value)
    project = tmp_path / "project"
    shutil.copytree(ROOT / "workflows", project / "workflows")
    (project / "characters").mkdir()
    (project / "characters" / "fox.yaml").write_text(CHARACTER)
    async with (
        fd.FakeDiscord(token=DISCORD_TOKEN, webhook_token=WEBHOOK_TOKEN) as discord,
        FakeComfyUI(job_seconds=0.02, steps=2) as comfy,
        FakeOpenAI(api_key=OPENROUTER_KEY) as openrouter,
        FakeGemini(api_key=GEMINI_KEY) as gemini,
        FakeOllama(api_key=OLLAMA_KEY) as ollama,
    ):
        for fake in (openrouter, gemini, ollama):
            fake.respond_with(answer)
        data = project / "data"
        settings = Settings(
            _env_file=None,
            data_dir=data,
            characters_dir=project / "characters",
            workflows_dir=project / "workflows",
            database_url=f"sqlite:///{data / 'mediaoverload.db'}",
            comfyui_servers=[comfy.url],
            discord_token=DISCORD_TOKEN,
            discord_api_base=discord.api_base,
            discord_guild_id=fd.GUILD_ID,
            discord_review_channel_id=fd.REVIEW_CHANNEL,
            discord_notify_webhook_url=discord.webhook_url,
            discord_generate_role_ids=[fd.GENERATE_ROLE],
            discord_review_role_ids=[fd.REVIEW_ROLE],
            discord_admin_role_ids=[fd.ADMIN_ROLE],
            discord_card_edit_seconds=0.1,
            schedule_enabled=False,
            shutdown_grace_seconds=0.5,
            llm_chain_prompt=["openrouter", "gemini"],
            llm_chain_description=["gemini"],
            llm_chain_vision=["ollama"],
            llm_chain_caption=["openrouter", "gemini"],
            llm_backoff_s=0,
            openrouter_rpm=0,
            gemini_rpm=0,
            llm_attempts=1,
            llm_timeout_s=5,
            ollama_host=ollama.url,
            ollama_api_key=OLLAMA_KEY,
            openrouter_base_url=openrouter.url,
            openrouter_api_key=OPENROUTER_KEY,
            gemini_api_key=GEMINI_KEY,
            gemini_base_url=gemini.url,
            publish_retries=0,
            instagram_request_delay=0,
            instagram_configure_delay=0,
        )
        # the Instagram session a first login leaves (instagrapi's own file)
        client = Client()
        client.authorization_data = {
            "ds_user_id": str(USER_ID),
            "sessionid": IG_SESSION,
            "should_use_header_over_cookies": True,
        }
        session_file = session_path(settings, Platform.INSTAGRAM, "fox_ig")
        session_file.parent.mkdir(parents=True)
        client.dump_settings(session_file)
        yield World(discord, settings, project, (openrouter, gemini, ollama), comfy)


@asynccontextmanager
async def running_bot(world: World) -> AsyncIterator[Services]:
    """The bot as `python -m bot` wires it (bot.__main__.open_bot), logged in to the fake."""
    async with open_bot(world.settings, guild_ready_timeout=0.1) as bot:
        task = asyncio.create_task(bot.start(DISCORD_TOKEN), name="bot-under-test")
        await world.discord.until(lambda: bot.is_ready() or task.done(), within=10)
        try:
            yield bot.services
        finally:
            await bot.close()
            await task


def leaks(where: str, text: str | bytes) -> list[tuple[str, str]]:
    """(where, which secret) for every secret value found in `text`."""
    blob = text if isinstance(text, bytes) else text.encode("utf-8", "backslashreplace")
    return [(where, name) for name, value in SECRETS.items() if value.encode() in blob]


def log_texts(records: list[logging.LogRecord]) -> list[tuple[str, str]]:
    formatter = logging.Formatter()
    texts = []
    for record in records:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + formatter.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + record.stack_info
        texts.append((f"log {record.name} {record.levelname}", text))
    return texts


async def wait_for_state(services: Services, run_id: str, states: set[RunState]) -> Run:
    deadline = time.monotonic() + 20
    while True:
        run = await services.store.load_run(run_id)
        if run is not None and run.state in states:
            return run
        assert time.monotonic() < deadline, f"run {run_id} never reached {states}"
        await asyncio.sleep(0.05)


async def new_run(services: Services, *, besides: set[str]) -> str:
    """The id of the first run in the store that is not one of `besides`."""
    deadline = time.monotonic() + 20
    while True:
        fresh = [r.id for r in await services.store.list_runs(limit=10) if r.id not in besides]
        if fresh:
            return fresh[0]
        assert time.monotonic() < deadline, "the second /generate never started a run"
        await asyncio.sleep(0.02)


async def test_a_full_run_and_its_failures_leak_no_secret(
    world: World,
    platforms: tuple[FakeInstagram, FakeX],
    debug_logging: pytest.LogCaptureFixture,
) -> None:
    """Publish once (Instagram posts, X answers 401), with a provider that echoes the key it
    refused and a ComfyUI naming files `../../evil.png`, then a run whose every model is down,
    then a database that refuses its password: the media stay in the run folder, and no token,
    key, password or session value appears in a log record, a Discord message, an exception
    text, a run or post record, or a file."""
    instagram, x = platforms
    openrouter, gemini, _ = world.llms
    discord = world.discord
    # OpenAI's API quotes the key it refused in its 401; an OpenAI-compatible server may too
    openrouter.fail(401, message=f"Incorrect API key provided: {OPENROUTER_KEY}.")
    unauthorized = {"title": "Unauthorized", "type": "about:blank", "status": 401,
                    "detail": "Unauthorized"}  # fmt: skip
    x.fail("tweet", (401, {}, json.dumps(unauthorized)))
    # and a ComfyUI that names its outputs to climb out of the run folder
    world.comfy.faults.report_as = [("../../..", "../../evil.png"), ("/etc", "/etc/evil.png")]

    async with running_bot(world) as services:
        first = await discord.slash("generate", character="fox")
        [review] = await discord.until(
            lambda: [
                m for m in discord.channel_messages(fd.REVIEW_CHANNEL) if REJECT in m.reactions
            ],
            within=30,
            what="the review",
        )
        [run] = await services.store.list_runs(limit=5)
        await discord.react(review, APPROVE, fd.ALICE)
        published = await wait_for_state(services, run.id, {RunState.PUBLISHED, RunState.FAILED})
        openrouter.always_fail(401)
        gemini.always_fail(500)
        await discord.slash("generate", character="fox")
        # a run whose models are all down fails within milliseconds: found in the store, not
        # by sampling the runner while it is active
        second_id = await new_run(services, besides={run.id})
        failed = await wait_for_state(services, second_id, {RunState.FAILED})
        runs = await services.store.list_runs(limit=10)
        posts = [post for r in runs for post in await services.store.posts_for_run(r.id)]

    errors: list[tuple[str, str]] = []
    try:
        async with open_store(
            f"mysql://mediaoverload:{DB_PASSWORD}@127.0.0.1:9/mediaoverload",
            sqlite_path=world.settings.database_path,
        ):
            pass
    except MediaOverloadError as exc:
        errors.append(("database error", f"{exc}\n{exc.user_message}\n{exc!r}"))

    # the run went where the test says, so every path was taken
    assert instagram.medias, "Instagram got its post"
    assert ("POST", "/2/tweets") in x.calls, "X was asked, and refused"
    assert openrouter.requests, "the provider that echoes its key was asked"
    assert published.state in {RunState.PUBLISHED, RunState.FAILED}
    assert failed.state is RunState.FAILED
    assert errors, "the refused database password raised the project's error"
    assert first.original is not None

    run_folder = world.project / "output" / "fox" / run.id
    media = [(run_folder / item.path).resolve() for item in published.media]
    assert sorted(path.name for path in media) == ["evil-1.png", "evil.png"]
    assert all(path.is_relative_to(run_folder) for path in media)
    evil = set(world.project.parent.rglob("evil*"))
    assert evil, "the media were written"
    assert all(path.is_relative_to(run_folder) for path in evil), evil

    session_file = session_path(world.settings, Platform.INSTAGRAM, "fox_ig")
    assert leaks("session", session_file.read_bytes()), "the scan finds what is there"

    debug_from = {r.name for r in debug_logging.records if r.levelno == logging.DEBUG}
    assert {"discord.http", "aiosqlite"} <= debug_from, "library DEBUG records are scanned too"

    found: list[tuple[str, str]] = []
    for where, text in log_texts(debug_logging.records):
        found += leaks(where, text)
    for request in discord.requests:
        found += leaks(f"discord {request.method} body", json.dumps(request.body, default=str))
    for message in discord.messages.values():
        for attachment in message.attachments:
            found += leaks(f"discord attachment {attachment.filename}", attachment.data)
    for where, text in errors:
        found += leaks(where, text)
    for r in runs:
        found += leaks(f"run {r.id}", repr(r))
        if r.failure is not None:
            found += leaks(f"run {r.id} failure", r.failure.message)
    for post in posts:
        found += leaks(f"post {post.platform.value}", repr(post))
    for path in sorted(world.project.rglob("*")):
        if path.is_file() and path != session_file:
            found += leaks(f"file {path.relative_to(world.project)}", path.read_bytes())
    assert sorted(set(found)) == [], "\n".join(map(str, sorted(set(found))))


@pytest.mark.parametrize("server", ["refusing", "absent"], ids=["wrong-password", "no-server"])
async def test_a_database_password_never_shows_in_the_error(
    server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A DATABASE_URL whose password the server refuses (or with no server there) fails with
    the project's error naming host and database, never the password."""
    if server == "refusing":
        from tests.conftest import _mysql_available

        if not _mysql_available():
            pytest.skip("MariaDB is not running here (CI starts it)")
        url = f"mysql://root:{DB_PASSWORD}@127.0.0.1:3306/mediaoverload"
    else:
        url = f"mysql://mediaoverload:{DB_PASSWORD}@127.0.0.1:9/mediaoverload"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(MediaOverloadError) as caught:
        async with open_store(url, sqlite_path=tmp_path / "unused.db"):
            pass
    text = "".join(traceback.format_exception(caught.value))
    assert "cannot open the database at 127.0.0.1" in caught.value.user_message
    assert DB_PASSWORD not in text + caught.value.user_message
    assert all(DB_PASSWORD not in t for _, t in log_texts(caplog.records))
