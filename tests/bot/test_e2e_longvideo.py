"""End to end, narrated: the real `python -m bot` process makes a text2longvideo reel against the
fake Discord, ComfyUI, Ollama (the script), the fake speech endpoint and X; killed while the
second scene is being spoken, the restarted bot makes only that speech, shows the reel and its
script in review, and posts the reel once."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from bot.render import APPROVE
from pipeline.models import Platform, PostState, RunState
from pipeline.publish.media import probe_video
from tests.bot.test_e2e import (
    MODELS,
    BotProcess,
    World,
    answer,
    finished_run,
    published_notice,
    review_message,
)
from tests.bot.test_e2e import processes as processes
from tests.bot.test_e2e import world as world
from tests.fakes import discord as fd
from tests.fakes.llm_server import Recorded
from tests.fakes.openai_api import FakeOpenAI

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

KEY = "sk-e2e-voice-0123456789"
CHARACTER = """
character:
  name: Testy
  description: a small green fox with a red scarf
generation:
  output_dir: output/testy
  generation_type_weights: {text2longvideo: 1}
  workflows:
    text2img: workflows/text2img.json
    text2image2video: workflows/image2video.json
  similarity_threshold: 0.5
  prompt_method_weights: {arbitrary: 1}
social_media:
  platforms:
    twitter: {enabled: true, credentials: testy_x}
longvideo: {seconds: 10, scene_seconds: 5, voice: nova}
"""
NARRATIONS = ("Testy unfolds an old map at dawn.", "The wind carries it over the hill.")


def script_answer(asked: Recorded) -> str:
    if asked.model == MODELS["OLLAMA_DESCRIPTION_MODEL"]:
        scenes = [
            {"narration": NARRATIONS[0], "visual": "a green fox with a map on a hill, dawn"},
            {"narration": NARRATIONS[1], "visual": "a paper map flying over a grassy hill"},
        ]
        return json.dumps({"scenes": scenes})
    return answer(asked)


@pytest.fixture
async def voice(world: World) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as fake:
        (world.folder / "characters" / "testy.yaml").write_text(CHARACTER)
        world.ollama.respond_with(script_answer)
        world.env |= {"SPEECH_URL": fake.url, "SPEECH_API_KEY": KEY, "SPEECH_MODEL": "tts-1"}
        yield fake


async def test_a_narrated_run_killed_mid_scene_resumes_and_posts_its_reel_once(
    world: World, voice: FakeOpenAI, processes: list[BotProcess]
) -> None:
    """SIGKILL while the second scene is spoken; the restarted bot asks only for that speech,
    queues no ComfyUI prompt again, posts the reel and its script for review, and Alice's ✅
    publishes the reel to X once."""
    fake = world.discord
    voice.speech.hold = lambda asked: asked.text == NARRATIONS[1]
    first = await BotProcess.start(world)
    processes.append(first)
    await world.until(lambda: fake.command_syncs, what="the command sync")
    card = (await fake.slash("generate", character="testy")).original
    assert card is not None
    await world.until(lambda: len(voice.spoken) == 2, what="the second scene's speech")
    await world.until(lambda: "scene 2/2: speech" in "\n".join(card.history), what="the card")
    await first.kill()
    voice.speech.released.set()
    killed, _ = await finished_run(world)
    assert killed.state is RunState.DESCRIBED, world.log_text()
    assert killed.script is not None
    assert killed.script.scenes[1].clip is not None
    assert killed.script.scenes[1].speech is None
    queued = len(world.comfy.prompts)
    assert queued == 4  # an image and a clip for each scene

    second = await BotProcess.start(world)
    processes.append(second)
    message = await review_message(world)
    assert [a.filename for a in message.attachments] == ["01-longvideo.mp4"], world.log_text()
    assert f"1. {NARRATIONS[0]}" in message.content
    assert f"2. {NARRATIONS[1]}" in message.content
    await fake.react(message, APPROVE, fd.ALICE)
    await world.until(lambda: published_notice(world), what="published")
    assert await second.stop() == 0, world.log_text()

    run, posts = await finished_run(world)
    assert run.state is RunState.PUBLISHED, world.log_text()
    assert [(p.platform, p.state) for p in posts] == [(Platform.TWITTER, PostState.POSTED)]
    assert len(world.x.state.tweets) == 1
    assert len(world.comfy.prompts) == queued
    assert [asked.text for asked in voice.spoken] == [*NARRATIONS, NARRATIONS[1]]
    assert {asked.voice for asked in voice.spoken} == {"nova"}
    reel = await probe_video(world.folder / "output" / "testy" / run.id / "longvideo.mp4")
    assert (reel.width, reel.height) == (1080, 1920)
    assert reel.has_audio
