"""Narrated long videos end to end: a script from the model, each scene drawn and animated on
the fake ComfyUI, spoken by the fake speech endpoint, joined by ffmpeg into one reel; a run
stopped in the middle resumes without making a finished scene again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from comfy import ComfyPool
from pipeline.longvideo import FfmpegEditor, Narrator
from pipeline.models import Job, Platform, PostState, Run, RunState
from pipeline.publish.media import probe_video
from pipeline.speech import OpenAISpeaker
from pipeline.store import SqlStore
from tests.doubles import RecordingSink, ScriptedModel
from tests.fakes.comfyui import FakeComfyUI
from tests.fakes.openai_api import FakeOpenAI, speech_seconds
from tests.runs import ONE_ENGINE, World
from tests.waiting import until

KEY = "sk-voice-0123456789abcdef"
NARRATIONS = ("Testy wakes before the sun.", "The first snow falls on the quiet forest.")
SCRIPT = json.dumps(
    {
        "scenes": [
            {"narration": NARRATIONS[0], "visual": "a fox curled in a den at dawn"},
            {"narration": NARRATIONS[1], "visual": "snow on pine trees, a fox looking up"},
        ]
    }
)
LONG = Job("testy", generation_type="text2longvideo", seed=3)


class Voices:
    """Narrators speaking through the fake speech endpoint; their clients closed at the end."""

    def __init__(self, fake: FakeOpenAI) -> None:
        self.fake = fake
        self.speakers: list[OpenAISpeaker] = []

    def narrator(self, *, key: str = KEY) -> Narrator:
        speaker = OpenAISpeaker.connect(
            self.fake.url, key, model="tts-1", voice="alloy", timeout_s=20
        )
        self.speakers.append(speaker)
        editor = FfmpegEditor(preset="ultrafast")
        return Narrator(ScriptedModel.of(default=SCRIPT), {}, speaker=speaker, editor=editor)


@pytest.fixture
async def voice() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def voices(voice: FakeOpenAI) -> AsyncIterator[Voices]:
    made = Voices(voice)
    yield made
    for speaker in made.speakers:
        await speaker.close()


@pytest.fixture
def narrated(world: World, voices: Voices) -> World:
    world.pipeline.narrator = voices.narrator()
    return world


def fresh_world(project: Path, store: SqlStore, pool: ComfyPool, voices: Voices) -> World:
    """Another process's pipeline over the same store, ComfyUI and project: nothing in memory."""
    again = World(project, store, pool)
    again.pipeline.narrator = voices.narrator()
    return again


@ONE_ENGINE
async def test_a_narrated_run_becomes_one_reel_with_speech_and_posts(
    narrated: World, voice: FakeOpenAI
) -> None:
    """The script's scenes are drawn, animated and spoken; the reel is 9:16, as long as the
    speech, has sound, and is posted to each platform; the run card follows scene by scene."""
    sink = RecordingSink()
    run = Run.new(LONG)
    await narrated.store.save_run(run)
    run = await narrated.pipeline.execute(run, sink)
    assert run.state is RunState.PUBLISHED, run.failure
    assert [m.path for m in run.media] == ["longvideo.mp4"]
    info = await probe_video(narrated.folder(run) / "longvideo.mp4")
    assert (info.width, info.height) == (1080, 1920)
    assert info.has_audio
    spoken = sum(max(1.0, speech_seconds(text) + 0.3) for text in NARRATIONS)
    assert info.duration == pytest.approx(spoken, abs=0.2)
    assert [asked.text for asked in voice.spoken] == list(NARRATIONS)
    assert {asked.authorization for asked in voice.spoken} == {f"Bearer {KEY}"}
    assert run.script is not None
    assert [s.narration for s in run.script.scenes] == list(NARRATIONS)
    assert all(s.image and s.clip and s.speech and s.speech_seconds for s in run.script.scenes)
    details = [u.detail for u in sink.updates if u.step == "generate"]
    for label in ("scene 1/2: image", "scene 1/2: clip", "scene 2/2: speech", "joining"):
        assert any(label in d for d in details), (label, details)
    posts = await narrated.store.posts_for_run(run.id)
    assert {(p.platform, p.state) for p in posts} == {
        (Platform.INSTAGRAM, PostState.POSTED),
        (Platform.TWITTER, PostState.POSTED),
    }


async def test_a_run_stopped_mid_scene_resumes_without_making_finished_parts_again(
    narrated: World,
    voice: FakeOpenAI,
    voices: Voices,
    comfy: tuple[FakeComfyUI, ComfyPool],
    store: SqlStore,
    project: Path,
) -> None:
    """Stopped while the second scene is being spoken, the run's record holds every finished
    part; another process resumes it: no image or clip is drawn again, only the missing speech
    is asked for, and the reel is made."""
    fake, pool = comfy
    voice.speech.hold = lambda asked: asked.text == NARRATIONS[1]
    run = Run.new(replace(LONG, publish=False))
    await store.save_run(run)
    task = asyncio.create_task(narrated.pipeline.execute(run, RecordingSink()))
    await until(lambda: len(voice.spoken) == 2, what="the second scene's speech to be asked for")
    task.cancel()  # the process dies here: what it had not saved is gone
    with pytest.raises(asyncio.CancelledError):
        await task
    saved = await store.load_run(run.id)
    assert saved is not None
    assert saved.state is RunState.DESCRIBED
    assert saved.script is not None
    first, second = saved.script.scenes
    assert first.image
    assert first.clip
    assert first.speech
    assert second.image
    assert second.clip
    assert second.speech is None
    made = len(fake.prompts)
    assert made == 4  # an image and a clip for each scene

    voice.speech.released.set()
    again = fresh_world(project, store, pool, voices)
    done = await again.pipeline.execute(saved, RecordingSink())
    assert done.state is RunState.APPROVED, done.failure
    assert len(fake.prompts) == made
    assert [asked.text for asked in voice.spoken[2:]] == [NARRATIONS[1]]
    assert (again.folder(done) / "longvideo.mp4").is_file()


@ONE_ENGINE
async def test_a_refused_voice_fails_the_run_in_one_safe_sentence_and_a_retry_finishes_it(
    world: World, voices: Voices, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """A speech endpoint that refuses the key fails the run at generate with a sentence that
    names the endpoint's answer but never the key; with the key fixed, a retry draws nothing
    again."""
    fake, _ = comfy
    world.pipeline.narrator = voices.narrator(key="sk-wrong-secret-key-zzzz")
    failed = await world.run(replace(LONG, publish=False))
    assert failed.state is RunState.FAILED
    assert failed.failure is not None
    assert failed.failure.state is RunState.DESCRIBED
    assert "HTTP 401" in failed.failure.message
    assert "SPEECH_API_KEY" in failed.failure.message
    assert "sk-wrong" not in failed.to_json()
    drawn = len(fake.prompts)
    assert drawn == 2  # the first scene's image and clip
    world.pipeline.narrator = voices.narrator()
    done = await world.pipeline.execute(failed)
    assert done.state is RunState.APPROVED, done.failure
    assert len(fake.prompts) == drawn + 2  # only the second scene's


async def test_without_a_speech_endpoint_the_run_says_what_to_set(world: World) -> None:
    """A character that speaks through the endpoint, with SPEECH_URL unset, fails naming it."""
    world.pipeline.narrator = Narrator(ScriptedModel.of(default=SCRIPT), {}, speaker=None)
    run = await world.run(LONG)
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert "SPEECH_URL" in run.failure.message


def test_the_script_text_numbers_each_scene_with_its_picture(tmp_path: Path) -> None:
    """What a reviewer reads: the narration of each scene in order, its picture beside it."""
    from pipeline.longvideo import parse_script
    from pipeline.models import Script

    script = Script(parse_script(SCRIPT, 9), 45, 5, note="The script was cut to 90 s.")
    assert script.text().splitlines() == [
        "The script was cut to 90 s.",
        f"1. {NARRATIONS[0]}",
        "   [a fox curled in a den at dawn]",
        f"2. {NARRATIONS[1]}",
        "   [snow on pine trees, a fox looking up]",
    ]


@ONE_ENGINE
async def test_a_character_may_speak_through_a_comfyui_workflow(
    world: World, project: Path, voice: FakeOpenAI, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """With `speech: comfyui` each narration is spoken by the shipped text-to-speech workflow
    on ComfyUI (written to its "Narration" node), not by the speech endpoint."""
    fake, _ = comfy
    testy = project / "characters" / "testy.yaml"
    testy.write_text(testy.read_text() + "longvideo: {speech: comfyui}\n")
    world.pipeline.narrator = Narrator(
        ScriptedModel.of(default=SCRIPT), {}, editor=FfmpegEditor(preset="ultrafast")
    )
    run = await world.run(replace(LONG, publish=False))
    assert run.state is RunState.APPROVED, run.failure
    assert voice.spoken == []
    said = [
        node["inputs"]["text"]
        for received in fake.prompts
        for node in received.prompt.values()
        if node["class_type"] == "KokoroGenerator"
    ]
    assert said == list(NARRATIONS)
    assert len(fake.prompts) == 6  # an image, a clip and the speech of each scene
    info = await probe_video(world.folder(run) / "longvideo.mp4")
    assert info.has_audio
    spoken = sum(max(1.0, speech_seconds(text) + 0.3) for text in NARRATIONS)
    assert info.duration == pytest.approx(spoken, abs=0.2)


MASCOT = (Path(__file__).resolve().parents[2] / "characters" / "mascot.yaml").read_text()
NARRATED = MASCOT.replace(
    "    text2image2image: 1\n", "    text2image2image: 1\n    text2longvideo: 1\n", 1
).replace(
    "    text2image2image: workflows/image2image.json\n",
    "    text2image2image: workflows/image2image.json\n"
    "    text2image2video: workflows/image2video.json\n",
    1,
)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (
            "longvideo:\n  seconds: 45\n  scene_seconds: 1\n",
            (2, "longvideo.scene_seconds: must be at least 2"),
        ),
        (
            "longvideo:\n  speech: aloud\n",
            (1, "longvideo.speech: must be 'openai' or 'comfyui'"),
        ),
        (
            "longvideo:\n  speech: comfyui\n  speech_workflow: workflows/tts.json\n",
            (2, "longvideo.speech_workflow: workflow file 'workflows/tts.json' does not exist"),
        ),
        (
            "longvideo:\n  narrator: Ann\n",
            (1, "longvideo.narrator: unknown key"),
        ),
    ],
    ids=["scene-too-short", "unknown-speech", "missing-speech-workflow", "unknown-key"],
)
def test_check_names_the_line_of_a_wrong_longvideo_key(
    tmp_path: Path, block: str, expected: tuple[int, str]
) -> None:
    """A mistake in a character's `longvideo` block is reported as `file:line: key: message`."""
    import shutil

    from pipeline.characters import Characters
    from pipeline.errors import CharacterError
    from pipeline.prompts.library import TemplateLibrary

    root = Path(__file__).resolve().parents[2]
    shutil.copytree(root / "workflows", tmp_path / "workflows")
    (tmp_path / "characters").mkdir()
    text = NARRATED + block
    (tmp_path / "characters" / "mascot.yaml").write_text(text)
    offset, message = expected
    line = len(NARRATED.splitlines()) + 1 + offset  # `longvideo:` comes after mascot's lines
    with pytest.raises(CharacterError) as caught:
        Characters(tmp_path / "characters", TemplateLibrary.load()).load("mascot")
    messages = [str(p) for p in caught.value.problems]
    assert f"characters/mascot.yaml:{line}: {message}" in messages


def test_the_script_is_cut_to_the_platforms_limit_and_says_so() -> None:
    """A character asking for more than its platforms take gets a script of the longest they
    take, and the script says why; with no platform enabled, reels' 90 s is the limit."""
    from pipeline.characters import Characters
    from pipeline.longvideo import MAX_SCENES, length_limit, scene_count
    from pipeline.prompts.library import TemplateLibrary

    root = Path(__file__).resolve().parents[2]
    mascot = Characters(root / "characters", TemplateLibrary.load()).load("mascot")
    assert mascot.enabled_platforms() == {}
    seconds, note = length_limit(mascot, 120)
    assert seconds == 90
    assert note is not None
    assert "90 s" in note
    assert "120 s" in note
    assert length_limit(mascot, 45) == (45, None)
    assert scene_count(45, 5) == 9
    assert scene_count(600, 2) == MAX_SCENES
    assert scene_count(3, 5) == 1


async def test_a_scene_spoken_before_a_failure_stays_recorded_and_is_not_spoken_again(
    narrated: World, voice: FakeOpenAI, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """The endpoint fails on the second scene: the failed run still records the first scene's
    speech, and the retry asks only for the second."""
    fake, _ = comfy
    voice.speech.refuse = lambda asked: 503 if asked.text == NARRATIONS[1] else None
    failed = await narrated.run(replace(LONG, publish=False))
    assert failed.state is RunState.FAILED
    assert failed.script is not None
    assert failed.script.scenes[0].speech is not None
    assert failed.script.scenes[1].clip is not None
    assert failed.script.scenes[1].speech is None
    voice.speech.refuse = None
    done = await narrated.pipeline.execute(failed)
    assert done.state is RunState.APPROVED, done.failure
    assert [asked.text for asked in voice.spoken] == [*NARRATIONS, NARRATIONS[1]]
    assert len(fake.prompts) == 4


async def test_speech_written_just_before_a_stop_is_not_asked_for_again(
    narrated: World, voice: FakeOpenAI, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """A process stopped after a speech file was written whole but before the run recorded it:
    the resumed run takes the file instead of asking the endpoint again."""
    fake, _ = comfy
    run = await narrated.run(replace(LONG, publish=False))
    assert run.state is RunState.APPROVED, run.failure
    assert run.script is not None
    first, second = run.script.scenes
    lagging = replace(run.script, scenes=(first, replace(second, speech=None, speech_seconds=None)))
    folder = narrated.folder(run)
    await asyncio.to_thread((folder / "longvideo.mp4").unlink)
    asked, drawn = len(voice.spoken), len(fake.prompts)
    again = await narrated.pipeline.execute(
        run.advance(RunState.DESCRIBED, media=(), script=lagging)
    )
    assert again.state is RunState.APPROVED, again.failure
    assert (len(voice.spoken), len(fake.prompts)) == (asked, drawn)
    assert again.script == run.script
    assert await asyncio.to_thread((folder / "longvideo.mp4").is_file)
