"""The bot over every fake, in-process: the real MediaBot as `python -m bot` wires it
(bot.__main__.open_bot), the real pipeline against the fake Discord, ComfyUI and language
models (OpenRouter, Gemini, Ollama), the store on SQLite in the project folder. Every secret
setting holds a distinctive value, so a test can scan what the run left for any of them.
`world` is the fixture (import it by name where needed); `running_bot` logs the bot in."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from instagrapi import Client

from bot.__main__ import open_bot
from bot.services import Services
from pipeline.models import Platform
from pipeline.publish.credentials import session_path
from pipeline.settings import Settings
from tests.fakes import discord as fd
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.gemini import FakeGemini
from tests.fakes.instagram import USER_ID
from tests.fakes.llm_server import HealthyModel
from tests.fakes.ollama import FakeOllama
from tests.fakes.openai_api import FakeOpenAI
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
            video_preset="ultrafast",
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
