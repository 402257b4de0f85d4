"""End to end: the real `python -m bot` process against fake Discord, ComfyUI, Ollama and X.

A member runs /generate, watches the run card move, a reviewer picks image 2 and approves, and
exactly that image is posted once; also with the process killed while the review waits, and in
the middle of a reroll. The subprocess reaches every fake only through settings (URLs, proxy
variables), as in production.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.render import APPROVE, MORE_LIKE, NUMBERS, REJECT, REROLL
from pipeline.models import Platform, PostRecord, PostState, Run, RunState
from pipeline.store import SqlStore, connect
from tests.fakes import discord as fd
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.llm_server import Recorded
from tests.fakes.ollama import FakeOllama
from tests.fakes.x_api import FakeXApi

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]

#: one description, two images of it; only X is enabled
CHARACTER = """
character:
  name: Testy
  description: a small green fox with a red scarf
generation:
  output_dir: output/testy
  generation_type_weights: {text2img: 1}
  workflows:
    text2img: workflows/text2img.json
  similarity_threshold: 0.5
  descriptions: 1
  prompt_method_weights: {arbitrary: 1}
social_media:
  default_hashtags: ["#testy"]
  platforms:
    instagram: {enabled: false}
    twitter: {enabled: true, credentials: testy_x}
additional_params:
  general: {images_per_description: 2}
"""

#: the fake Ollama tells the tasks apart by the model each one is configured with
MODELS = {
    "OLLAMA_PROMPT_MODEL": "e2e-prompt",
    "OLLAMA_DESCRIPTION_MODEL": "e2e-describe",
    "OLLAMA_CAPTION_MODEL": "e2e-caption",
    "OLLAMA_VISION_MODEL": "e2e-vision",
}


def answer(asked: Recorded) -> str:
    """What each task's model writes."""
    if asked.model == MODELS["OLLAMA_PROMPT_MODEL"]:
        return "Testy the fox reads a map on a windy hill at dawn."
    if asked.model == MODELS["OLLAMA_DESCRIPTION_MODEL"]:
        return json.dumps({"descriptions": ["a green fox in a red scarf reading a map, dawn"]})
    if asked.model == MODELS["OLLAMA_VISION_MODEL"]:
        return json.dumps({"score": 0.9, "reason": "a fox with a map"})
    return json.dumps({"text": "Morning maps with Testy", "hashtags": ["#fox"]})


@dataclass
class World:
    """The fakes, the project folder and the environment of the bot process."""

    discord: fd.FakeDiscord
    comfy: FakeComfyUI
    ollama: FakeOllama
    x: FakeXApi
    folder: Path
    env: dict[str, str]
    logs: list[Path] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-6000:] for path in self.logs)

    async def until(self, check: Callable[[], Any], *, within: float = 90, what: str) -> Any:
        """`FakeDiscord.until` that shows the bot's log when it times out (a busy machine may
        take long to start a process, so the waits are generous)."""
        try:
            return await self.discord.until(check, within=within, what=what)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; the bot's log:\n{self.log_text()}") from None

    async def store(self) -> SqlStore:
        return await connect("", sqlite_path=self.folder / "data" / "mediaoverload.db")


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    shutil.copytree(ROOT / "workflows", tmp_path / "workflows")
    (tmp_path / "characters").mkdir()
    (tmp_path / "characters" / "testy.yaml").write_text(CHARACTER)
    async with (
        fd.FakeDiscord() as discord,
        FakeComfyUI(job_seconds=0.6, steps=4) as comfy,
        FakeOllama() as ollama,
        FakeXApi(tmp_path / "x") as x,
    ):
        ollama.respond_with(answer)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("DISCORD_", "OLLAMA_", "LLM_", "DATABASE_", "TESTY_"))
        }
        env |= {
            "PYTHONPATH": str(ROOT),
            "DISCORD_TOKEN": "fake-token",
            "DISCORD_API_BASE": discord.api_base,
            "DISCORD_GUILD_ID": str(fd.GUILD_ID),
            "DISCORD_REVIEW_CHANNEL_ID": str(fd.REVIEW_CHANNEL),
            "DISCORD_NOTIFY_CHANNEL_ID": str(fd.NOTIFY_CHANNEL),
            "DISCORD_GENERATE_ROLE_IDS": str(fd.GENERATE_ROLE),
            "DISCORD_REVIEW_ROLE_IDS": str(fd.REVIEW_ROLE),
            "DISCORD_ADMIN_ROLE_IDS": str(fd.ADMIN_ROLE),
            "DISCORD_CARD_EDIT_SECONDS": "0.2",
            "DISCORD_GUILD_READY_SECONDS": "0.1",  # one guild: no need to wait for more
            "SCHEDULE_ENABLED": "false",
            "SHUTDOWN_GRACE_SECONDS": "2",
            "COMFYUI_SERVERS": comfy.url,
            "LLM_CHAIN": "ollama",
            "OLLAMA_HOST": ollama.url,
            "LLM_ATTEMPTS": "1",
            **MODELS,
            "DATA_DIR": str(tmp_path / "data"),
            "CHARACTERS_DIR": str(tmp_path / "characters"),
            "WORKFLOWS_DIR": str(tmp_path / "workflows"),
            "PUBLISH_RETRIES": "0",
            "LOG_LEVEL": "INFO",
            "VIDEO_PRESET": "ultrafast",
            **x.env,
            **x.credentials_env("testy_x"),
        }
        yield World(discord, comfy, ollama, x, tmp_path, env)
        assert x.errors == []
        assert x.refused == []


class BotProcess:
    """One `python -m bot` process; its output goes to a log file the test prints on failure."""

    def __init__(self, world: World, process: asyncio.subprocess.Process) -> None:
        self.world = world
        self.process = process

    @classmethod
    async def start(cls, world: World) -> BotProcess:
        log = world.folder / f"bot-{len(world.logs) + 1}.log"
        world.logs.append(log)
        with log.open("wb") as out:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                cwd=world.folder,
                env=world.env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )
        started = cls(world, process)
        identified = world.discord.identifies + 1
        await world.until(
            lambda: world.discord.identifies >= identified or process.returncode is not None,
            what="the bot process to connect",
        )
        assert process.returncode is None, world.log_text()
        return started

    async def kill(self) -> None:
        """SIGKILL: no chance to save or say goodbye."""
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, as Docker stops it; the exit code."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), 30)


@pytest.fixture
async def processes() -> AsyncIterator[list[BotProcess]]:
    """Every bot process a test starts is gone when it ends."""
    started: list[BotProcess] = []
    yield started
    for bot in started:
        if bot.process.returncode is None:
            await bot.kill()


async def review_message(world: World) -> fd.FakeMessage:
    """The review message, once the bot has added all its reactions."""

    def ready() -> fd.FakeMessage | None:
        for message in world.discord.channel_messages(fd.REVIEW_CHANNEL):
            if REJECT in message.reactions:
                return message
        return None

    message: fd.FakeMessage = await world.until(ready, what="the review")
    return message


def notices(world: World) -> list[str]:
    return [m.content for m in world.discord.channel_messages(fd.NOTIFY_CHANNEL)]


def published_notice(world: World) -> str | None:
    return next((text for text in notices(world) if " published." in text), None)


def colour(data: bytes) -> tuple[int, ...]:
    """The colour in the middle of an image (the fake ComfyUI paints each image one colour)."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        pixel = rgb.getpixel((rgb.width // 2, rgb.height // 2))
    assert isinstance(pixel, tuple)
    return pixel


def close(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Equal but for JPEG's rounding."""
    return all(abs(x - y) <= 8 for x, y in zip(a, b, strict=True))


def assert_posted_image(world: World, message: fd.FakeMessage, number: int) -> None:
    """Exactly one tweet, with one image: the one shown as #`number` in the review."""
    [tweet] = world.x.state.tweets
    [media_id] = tweet["media"]["media_ids"]
    posted = colour(b"".join(world.x.state.uploads[media_id]["chunks"]))
    shown = [colour(a.data) for a in message.attachments]
    assert close(posted, shown[number - 1])
    assert not any(close(posted, other) for i, other in enumerate(shown) if i != number - 1)
    assert "Morning maps with Testy" in tweet["text"]


async def finished_run(world: World) -> tuple[Run, list[PostRecord]]:
    store = await world.store()
    try:
        [run] = await store.list_runs()
        return run, await store.posts_for_run(run.id)
    finally:
        await store.close()


async def test_generate_review_and_publish_exactly_the_chosen_image(
    world: World, processes: list[BotProcess]
) -> None:
    """/generate in Discord: the card moves through the steps, the review shows both images,
    Bob's ✅ is ignored, Alice's 2️⃣ ✅ publishes image 2 once and "published" is announced."""
    fake = world.discord
    bot = await BotProcess.start(world)
    processes.append(bot)
    await world.until(lambda: fake.command_syncs, what="the command sync")
    choices = await fake.autocomplete("generate", "character", character="tes")
    assert [c["value"] for c in choices] == ["testy"]

    interaction = await fake.slash("generate", character="testy")
    card = interaction.original
    assert card is not None
    message = await review_message(world)
    assert len(message.attachments) == 2, world.log_text()
    await world.until(lambda: MORE_LIKE in message.reactions, what="the review's last reaction")
    assert set(message.reactions) == {NUMBERS[0], NUMBERS[1], APPROVE, REJECT, REROLL, MORE_LIKE}
    assert "Morning maps with Testy" in json.dumps(message.embeds)
    await world.until(lambda: "Waiting for review" in card.content, what="the card in review")
    history = "\n".join(card.history)
    assert "Step: generate" in history
    assert "`[" in history  # the sampler bar
    assert card.edits >= 3

    await fake.react(message, APPROVE, fd.BOB)  # no reviewer: Alice's reactions decide

    await fake.react(message, NUMBERS[1], fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    notice = await world.until(lambda: published_notice(world), what="published")
    await world.until(lambda: "published" in card.content, what="the card's outcome")
    assert "Approved by Alice: #2" in message.content  # so Bob's approval before did nothing
    assert await bot.stop() == 0, world.log_text()
    run, posts = await finished_run(world)
    assert run.state is RunState.PUBLISHED, world.log_text()
    assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
    assert posts[0].url is not None
    assert posts[0].url in notice
    assert posts[0].url in card.content
    assert_posted_image(world, message, 2)


async def test_a_review_answered_while_the_bot_was_killed_is_honoured_once(
    world: World, processes: list[BotProcess]
) -> None:
    """SIGKILL during review; Alice reacts 2️⃣ ✅ meanwhile; the restarted bot publishes image 2
    without generating or posting anything a second time."""
    fake = world.discord
    first = await BotProcess.start(world)
    processes.append(first)
    await world.until(lambda: fake.command_syncs, what="the command sync")
    await fake.slash("generate", character="testy")
    message = await review_message(world)
    await first.kill()
    generated = len(world.comfy.prompts)
    assert generated >= 1

    await fake.react(message, NUMBERS[1], fd.ALICE, online=False)
    await fake.react(message, APPROVE, fd.ALICE, online=False)
    second = await BotProcess.start(world)
    processes.append(second)
    await world.until(lambda: published_notice(world), what="published")
    assert "Approved by Alice: #2" in message.content
    assert await second.stop() == 0, world.log_text()
    run, posts = await finished_run(world)
    assert run.state is RunState.PUBLISHED, world.log_text()
    assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
    assert_posted_image(world, message, 2)
    assert len(world.comfy.prompts) == generated
    assert len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 1
    assert len([n for n in notices(world) if "waiting for review" in n]) == 1


#: the run's steps in order, and the model each language-model step asks
STEPS = ("prompt", "describe", "generate", "score", "caption", "review", "publish")
STEP_MODELS = {
    "prompt": MODELS["OLLAMA_PROMPT_MODEL"],
    "describe": MODELS["OLLAMA_DESCRIPTION_MODEL"],
    "score": MODELS["OLLAMA_VISION_MODEL"],
    "caption": MODELS["OLLAMA_CAPTION_MODEL"],
}
#: the state a run killed in that step was last saved in
SAVED_BEFORE = {
    "prompt": {RunState.CREATED},
    "describe": {RunState.PROMPTED},
    "generate": {RunState.DESCRIBED},
    "score": {RunState.GENERATED},
    "caption": {RunState.SCORED},
    "publish": {RunState.APPROVED, RunState.PUBLISHING},
}


@pytest.mark.parametrize("step", [s for s in STEPS if s != "review"])  # review: the test above
async def test_the_bot_killed_at_each_step_finishes_the_run_once_after_a_restart(
    world: World, processes: list[BotProcess], step: str
) -> None:
    """SIGKILL while the run is in `step` (a model thinking, a ComfyUI job running, a tweet
    sent whose answer never came back); the restarted bot carries the run on from there: the
    steps done before are not done again, no image is generated twice, one review is posted,
    and exactly one tweet goes out."""
    fake, ollama, x = world.discord, world.ollama, world.x
    first = await BotProcess.start(world)
    processes.append(first)
    await world.until(lambda: fake.command_syncs, what="the command sync")
    if model := STEP_MODELS.get(step):
        ollama.hold(lambda asked: asked.model == model)
    await fake.slash("generate", character="testy")
    if step == "publish":
        x.hold_answers("POST", "/2/tweets")
        await fake.react(await review_message(world), APPROVE, fd.ALICE)
        await world.until(lambda: x.held, what="the tweet in flight")
    elif step == "generate":
        await world.until(lambda: world.comfy.prompts, what="a ComfyUI job")
    else:
        await world.until(lambda: ollama.held, what=f"the {step} model thinking")
    await first.kill()
    ollama.release()
    x.release()
    killed, posting = await finished_run(world)
    assert killed.state in SAVED_BEFORE[step], world.log_text()
    if step == "publish":
        assert [p.state for p in posting] == [PostState.POSTING]
    asked_before = Counter(asked.model for asked in ollama.requests)
    queued_before = len(world.comfy.prompts)

    second = await BotProcess.start(world)
    processes.append(second)
    if step != "publish":
        await fake.react(await review_message(world), APPROVE, fd.ALICE)
    await world.until(lambda: published_notice(world), what="published")
    assert await second.stop() == 0, world.log_text()
    run, posts = await finished_run(world)
    assert run.state is RunState.PUBLISHED, world.log_text()
    assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
    assert len(x.state.tweets) == 1
    assert len(fake.channel_messages(fd.REVIEW_CHANNEL)) == 1
    asked = Counter(asked.model for asked in ollama.requests)
    for done in STEPS[: STEPS.index(step)]:
        if done in STEP_MODELS:
            assert asked[STEP_MODELS[done]] == asked_before[STEP_MODELS[done]], done
    queued = [json.dumps(p.prompt, sort_keys=True) for p in world.comfy.prompts]
    assert len(set(queued)) == len(queued), "a ComfyUI prompt was queued twice"
    if STEPS.index(step) > STEPS.index("generate"):
        assert len(queued) == queued_before


async def test_a_reroll_killed_mid_render_shows_the_new_set_after_a_restart_and_posts_once(
    world: World, processes: list[BotProcess]
) -> None:
    """Alice reacts 🔁; SIGKILL while ComfyUI renders the new set; the restarted bot takes the
    prompt over (none queued again), posts attempt 2's review, and Alice's 1️⃣ ✅ publishes that
    image of the new set, once."""
    fake = world.discord
    first = await BotProcess.start(world)
    processes.append(first)
    await world.until(lambda: fake.command_syncs, what="the command sync")
    await fake.slash("generate", character="testy")
    old = await review_message(world)
    await world.until(lambda: MORE_LIKE in old.reactions, what="the review's last reaction")
    world.comfy.job_seconds = 3.0
    await fake.react(old, REROLL, fd.ALICE)
    await world.until(lambda: len(world.comfy.jobs) == 2, what="the reroll rendering")
    await first.kill()

    world.comfy.job_seconds = 0.6
    second = await BotProcess.start(world)
    processes.append(second)

    def new_review() -> fd.FakeMessage | None:
        for message in fake.channel_messages(fd.REVIEW_CHANNEL):
            if message.id != old.id and MORE_LIKE in message.reactions:
                return message
        return None

    message: fd.FakeMessage = await world.until(new_review, what="attempt 2's review")
    assert "attempt 2" in message.content
    await fake.react(message, NUMBERS[0], fd.ALICE)
    await fake.react(message, APPROVE, fd.ALICE)
    await world.until(lambda: published_notice(world), what="published")
    assert await second.stop() == 0, world.log_text()
    run, posts = await finished_run(world)
    assert run.state is RunState.PUBLISHED, world.log_text()
    assert run.attempt == 2
    assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
    assert_posted_image(world, message, 1)
    assert len(world.comfy.prompts) == 2
    assert "Alice asked for a reroll" in old.content
