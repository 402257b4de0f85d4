"""The parts of a narrated video on their own: reading the model's script, the speech endpoint's
answers and failures, the subtitles' timing, and a reel cut at the platforms' limit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pipeline.errors import ModelError, ServiceError
from pipeline.llm.parsing import AnswerError
from pipeline.longvideo import (
    MAX_NARRATION_CHARS,
    FfmpegEditor,
    parse_script,
    subtitles,
    write_script,
)
from pipeline.models import Scene, Script
from pipeline.publish.media import probe_video
from pipeline.speech import OpenAISpeaker
from tests.doubles import ScriptedModel
from tests.fakes.comfyui import _mp4_bytes
from tests.fakes.openai_api import FakeOpenAI

KEY = "sk-voice-key-abcdef0123456789"
ROOT = Path(__file__).resolve().parents[2]

# ---------------------------------------------------------------------------- the script


def scenes_json(count: int) -> str:
    return json.dumps(
        {"scenes": [{"narration": f"Line {n}.", "visual": f"picture {n}"} for n in range(count)]}
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (scenes_json(2), [("Line 0.", "picture 0"), ("Line 1.", "picture 1")]),
        (
            "<think>scenes...</think>\n```json\n" + scenes_json(1) + "\n```\nHope this helps!",
            [("Line 0.", "picture 0")],
        ),
        (
            json.dumps([{"voiceover": "Hi\u001b[31m there.", "description": "a fox\ttail"}]),
            [("Hi there.", "a fox tail")],
        ),
        (
            json.dumps({"script": [{"narration": "Only words."}, {"text": "A.", "image": "B"}]}),
            [("A.", "B")],
        ),
    ],
    ids=["plain", "fenced-with-reasoning", "other-keys-and-controls", "incomplete-scene-left-out"],
)
def test_a_script_is_read_from_what_models_write(
    answer: str, expected: list[tuple[str, str]]
) -> None:
    """Scenes come out clean, on one line each, whatever wraps the JSON."""
    assert [(s.narration, s.visual) for s in parse_script(answer, 9)] == expected


def test_a_script_is_capped_in_scenes_and_in_length() -> None:
    """More scenes than asked are dropped; a narration is cut at its limit."""
    long = json.dumps({"scenes": [{"narration": "word " * 1000, "visual": "v"}] * 50})
    scenes = parse_script(long, 3)
    assert len(scenes) == 3
    assert len(scenes[0].narration) <= MAX_NARRATION_CHARS


@pytest.mark.parametrize("answer", ["no json at all", '{"title": "x"}', '{"scenes": [1, 2]}'])
def test_an_answer_without_scenes_is_an_answer_error(answer: str) -> None:
    with pytest.raises(AnswerError):
        parse_script(answer, 3)


async def test_an_unreadable_script_is_asked_again_then_fails_in_one_sentence() -> None:
    """Two unreadable answers: the run fails with a sentence people can read, no traceback."""
    from pipeline.characters import Characters
    from pipeline.prompts.library import TemplateLibrary

    mascot = Characters(ROOT / "characters", TemplateLibrary.load()).load("mascot")
    model = ScriptedModel.of("I cannot", "still not", default=scenes_json(2))
    with pytest.raises(ModelError) as caught:
        await write_script(mascot, prompt="a walk", subject="Pixel", style_text="", model=model)
    assert "script could not be read after 2 tries" in caught.value.user_message
    model = ScriptedModel.of("I cannot", default=scenes_json(2))
    script = await write_script(
        mascot, prompt="a walk", subject="Pixel", style_text="pixel art", model=model
    )
    assert [s.visual for s in script.scenes] == ["picture 0, pixel art", "picture 1, pixel art"]
    assert script.limit == 90
    assert "Your last answer could not be read" in model.calls[1].prompt


# ---------------------------------------------------------------------------- subtitles


def test_each_subtitle_is_shown_while_its_scene_is_spoken_and_none_past_the_cut() -> None:
    """Subtitles follow the speech (plus the pause); a scene past the cut has none, and the
    last one shown ends at the cut."""
    scenes = [
        Scene("First line.", "v", speech_seconds=1.7),
        Scene("Second --> {\\an8}line.", "v", speech_seconds=0.2),
        Scene("Third line.", "v", speech_seconds=5.0),
    ]
    assert subtitles(scenes, 4.0).split("\n\n") == [
        "1\n00:00:00,000 --> 00:00:02,000\nFirst line.",
        "2\n00:00:02,000 --> 00:00:03,000\nSecond -> (\\an8)line.",
        "3\n00:00:03,000 --> 00:00:04,000\nThird line.\n",
    ]
    assert "Third" not in subtitles(scenes, 3.0)


def test_the_script_says_when_its_narration_runs_past_the_reels_limit() -> None:
    scenes = tuple(Scene(f"n{i}", "v", speech_seconds=10.0) for i in range(10))
    script = Script(scenes, 90, 5, limit=90)
    assert (
        script.overrun()
        == "The narration runs 103 s; the reel is cut at 90 s (the platforms' limit)."
    )
    assert script.text().splitlines()[0] == script.overrun()
    assert Script(scenes[:5], 90, 5, limit=90).overrun() is None


# ---------------------------------------------------------------------------- the voice


async def files_in(folder: Path) -> list[str]:
    return await asyncio.to_thread(lambda: sorted(p.name for p in folder.iterdir()))


@pytest.fixture
async def voice() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@pytest.fixture
async def speaker(voice: FakeOpenAI) -> AsyncIterator[OpenAISpeaker]:
    made = OpenAISpeaker.connect(
        voice.url, KEY, model="tts-1", voice="alloy", timeout_s=5, max_bytes=2**20
    )
    yield made
    await made.close()


async def test_speech_is_written_whole_in_the_format_that_came(
    speaker: OpenAISpeaker, voice: FakeOpenAI, tmp_path: Path
) -> None:
    """WAV is asked for, with the model, voice and key; the audio lasts as long as it says."""
    path = await speaker.speak("one two three four", tmp_path / "speech")
    assert path == tmp_path / "speech.wav"
    [asked] = voice.spoken
    assert (asked.model, asked.voice, asked.response_format) == ("tts-1", "alloy", "wav")
    assert asked.authorization == f"Bearer {KEY}"
    assert await FfmpegEditor().seconds(path) == pytest.approx(1.0, abs=0.05)
    assert await files_in(tmp_path) == ["speech.wav"]  # no partial file left


async def test_a_character_voice_speaks_with_the_same_connection(
    speaker: OpenAISpeaker, voice: FakeOpenAI, tmp_path: Path
) -> None:
    await speaker.with_voice("nova").speak("hello", tmp_path / "s")
    assert voice.spoken[0].voice == "nova"
    assert speaker.voice == "alloy"


@pytest.mark.parametrize(
    ("setup", "log_part", "user_part"),
    [
        (lambda v: v.speech.fail.append(500), "HTTP 500", "(HTTP 500)"),
        (lambda v: v.speech.fail.append(429), "HTTP 429", "(HTTP 429)"),
        (lambda v: setattr(v.speech, "not_audio", b"<html>proxy</html>"), "not audio", "speak"),
        (lambda v: setattr(v.speech, "pad_to", 3 * 2**20), "larger than 1024 KB", "speak"),
    ],
    ids=["server-error", "rate-limited", "not-audio", "too-large"],
)
async def test_a_failed_speech_is_one_safe_sentence_and_nothing_is_written(
    speaker: OpenAISpeaker,
    voice: FakeOpenAI,
    tmp_path: Path,
    setup: object,
    log_part: str,
    user_part: str,
) -> None:
    assert callable(setup)
    setup(voice)
    with pytest.raises(ServiceError) as caught:
        await speaker.speak("hello there", tmp_path / "speech")
    assert log_part in str(caught.value)
    assert user_part in caught.value.user_message
    assert "can be retried" in caught.value.user_message
    assert KEY not in str(caught.value)
    assert await files_in(tmp_path) == []


async def test_a_voice_that_never_answers_fails_at_its_deadline(
    voice: FakeOpenAI, tmp_path: Path
) -> None:
    voice.speech.hold = lambda asked: True
    slow = OpenAISpeaker.connect(voice.url, KEY, model="tts-1", voice="alloy", timeout_s=0.3)
    try:
        with pytest.raises(ServiceError, match=r"did not answer within 0\.3 s"):
            await slow.speak("hello", tmp_path / "speech")
    finally:
        voice.speech.released.set()
        await slow.close()


async def test_an_mp3_from_a_server_that_ignores_the_format_is_taken(
    voice: FakeOpenAI, tmp_path: Path
) -> None:
    """Some local servers send MP3 whatever is asked: it is kept as .mp3 and measured."""
    from tests.fakes.openai_api import encoded_audio, wav_bytes

    mp3 = await asyncio.to_thread(encoded_audio, wav_bytes(1.0), "mp3")
    voice.speech.not_audio = mp3
    speaker = OpenAISpeaker.connect(voice.url, KEY, model="tts-1", voice="alloy")
    try:
        path = await speaker.speak("hello", tmp_path / "speech")
    finally:
        await speaker.close()
    assert path.suffix == ".mp3"
    assert await FfmpegEditor().seconds(path) == pytest.approx(1.0, abs=0.1)


# ---------------------------------------------------------------------------- the joining


async def test_a_reel_longer_than_the_limit_is_cut_there(tmp_path: Path) -> None:
    """Three scenes of 1.3 s with a 3 s limit: the reel is 9:16 and 3 s long, with sound."""
    from tests.fakes.openai_api import wav_bytes

    scenes = []
    for n in range(3):
        (tmp_path / f"c{n}.mp4").write_bytes(await asyncio.to_thread(_mp4_bytes, n == 1))
        (tmp_path / f"s{n}.wav").write_bytes(wav_bytes(1.0))
        scenes.append(
            Scene(f"Line {n}", "v", clip=f"c{n}.mp4", speech=f"s{n}.wav", speech_seconds=1.0)
        )
    dest = tmp_path / "reel.mp4"
    await FfmpegEditor(preset="ultrafast").join(tmp_path, scenes, dest, max_seconds=3.0)
    info = await probe_video(dest)
    assert (info.width, info.height) == (1080, 1920)
    assert info.duration == pytest.approx(3.0, abs=0.1)
    assert info.has_audio
    assert not (tmp_path / "reel.part.mp4").exists()


async def test_a_clip_ffmpeg_cannot_read_fails_the_join_in_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "c.mp4").write_bytes(b"not a video")
    (tmp_path / "s.wav").write_bytes(b"RIFF")
    scene = Scene("Line", "v", clip="c.mp4", speech="s.wav", speech_seconds=1.0)
    with pytest.raises(ServiceError) as caught:
        await FfmpegEditor(preset="ultrafast").join(
            tmp_path, [scene], tmp_path / "reel.mp4", max_seconds=90
        )
    assert caught.value.user_message == (
        "Joining the scenes into one video failed; the run is kept and can be retried."
    )
    assert not (tmp_path / "reel.mp4").exists()


async def test_the_terminal_review_shows_the_script(tmp_path: Path) -> None:
    """`python -m pipeline run` shows a narrated run's script below its reel."""
    import io

    from pipeline.console import ConsoleReviewer
    from pipeline.models import Job, MediaItem, MediaKind, Run, RunState

    script = Script((Scene("Hello, fox.", "a fox waving"),), 45, 5)
    run = Run.new(Job("testy")).advance(
        RunState.CAPTIONED,
        media=(MediaItem("longvideo.mp4", MediaKind.VIDEO, 0),),
        script=script,
    )
    out = io.StringIO()
    await ConsoleReviewer(out, stdin=io.StringIO("y\n")).request(run, tmp_path)
    shown = out.getvalue().splitlines()
    assert shown[-3:] == ["  Script:", "    1. Hello, fox.", "       [a fox waving]"]


async def test_the_engine_speaks_through_the_speech_settings(
    voice: FakeOpenAI, tmp_path: Path
) -> None:
    """SPEECH_* reach the endpoint (model, voice, key); without SPEECH_URL there is none."""
    from pipeline.settings import load_settings
    from pipeline.store import open_store
    from pipeline.wiring import open_engine, speaker_from

    base = {
        "data_dir": tmp_path,
        "llm_chain": ["ollama"],
        "comfyui_servers": ["http://127.0.0.1:9"],
    }
    assert speaker_from(load_settings(None, **base)) is None
    settings = load_settings(
        None,
        **base,
        speech_url=voice.url,
        speech_api_key=KEY,
        speech_model="gpt-4o-mini-tts",
        speech_voice="coral",
    )
    async with (
        open_store("", sqlite_path=tmp_path / "engine.db") as store,
        open_engine(settings, store) as engine,
    ):
        assert engine.speaker is not None
        await engine.speaker.speak("hello", tmp_path / "hello")
    [asked] = voice.spoken
    assert (asked.model, asked.voice) == ("gpt-4o-mini-tts", "coral")
    assert asked.authorization == f"Bearer {KEY}"
    assert KEY not in repr(settings)
