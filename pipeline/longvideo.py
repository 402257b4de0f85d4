"""Narrated long videos (text2longvideo): the script, the joining, and the record of scenes.

The language model writes a script of scenes (narration and picture each), read with the
shared JSON reading and capped at MAX_SCENES; its length is cut to the enabled platforms' limit
(Instagram reels 90 s, X 140 s) and the script says so. Speech comes from an OpenAI-compatible
endpoint (`pipeline.speech`) or from a ComfyUI workflow the strategy runs. ffmpeg (off the loop,
with deadlines) measures speech and joins the clips, speech and burned-in subtitles (libass's
`subtitles` filter: Debian's ffmpeg and imageio-ffmpeg's both have it) into one 1080x1920 reel.
Each finished scene part is saved on the run at once (`scene_recorder`). Never imports bot or
discord.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import ffmpeg

from comfy import Workflow
from pipeline.characters import Character
from pipeline.errors import ModelError, RunError, ServiceError
from pipeline.llm.parsing import (
    AnswerError,
    clean_model_text,
    clip,
    extract_json,
    read_off_loop,
)
from pipeline.models import Platform, Run, Scene, Script, utcnow
from pipeline.ports import JsonSchema, Store, TextModel
from pipeline.prompts.descriptions import MAX_DESCRIPTION_CHARS, apply_style
from pipeline.publish.media import (
    ENCODE_SECONDS,
    PROBE_SECONDS,
    VIDEO_LIMITS,
    MediaError,
    compile_graph,
    ffmpeg_binary,
    run_ffmpeg,
)
from strategies.base import StageSetup
from strategies.narration import Editor, NarrationSetup, Speaker

log = logging.getLogger(__name__)

#: no script has more scenes than this, whatever the length asked: each is three GPU jobs
MAX_SCENES = 30
#: a narration longer than this is cut (at a word): a scene is a few seconds of speech
MAX_NARRATION_CHARS = 500
#: the reel's frame (9:16) and frame rate
FRAME = (1080, 1920)
FPS = 30

SCRIPT_SCHEMA: JsonSchema = {
    "type": "object",
    "properties": {
        "scenes": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"narration": {"type": "string"}, "visual": {"type": "string"}},
                "required": ["narration", "visual"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["scenes"],
    "additionalProperties": False,
}

_NARRATION_KEYS = ("narration", "voiceover", "voice_over", "text", "speech")
_VISUAL_KEYS = ("visual", "description", "image", "picture", "prompt")


# ---------------------------------------------------------------------------- the script


def length_limit(character: Character, asked: float) -> tuple[float, str | None]:
    """The video's length: `asked`, cut to the shortest limit of the character's enabled
    platforms (Instagram reels when none is enabled), with a sentence when it was cut."""
    enabled = [p for p in character.enabled_platforms() if p in VIDEO_LIMITS]
    platforms = enabled or [Platform.INSTAGRAM]
    limit, platform = min((VIDEO_LIMITS[p].max_seconds, p) for p in platforms)
    if asked <= limit:
        return asked, None
    return limit, (
        f"The script was cut to {limit:g} s ({platform.value}'s video limit); "
        f"the character asks for {asked:g} s."
    )


def scene_count(seconds: float, scene_seconds: float) -> int:
    """How many scenes a script of `seconds` has: one per `scene_seconds`, 1..MAX_SCENES."""
    return max(1, min(MAX_SCENES, math.ceil(seconds / scene_seconds - 0.01)))


def render_system(count: int, seconds: float, scene_seconds: float) -> str:
    words = max(4, int(scene_seconds * 2.5))  # people speak about 2.5 words a second
    return (
        "You write the script of a short narrated video for social media (a reel).\n"
        f"Write exactly {count} scenes, about {seconds:g} seconds in all. Each scene has a "
        f"`narration`: one or two spoken sentences of at most {words} words, in English; and a "
        "`visual`: a detailed description of the one still picture shown while it is spoken "
        "(subject, setting, light, camera), written for an image generator.\n"
        'Answer with JSON only, in this shape: {"scenes": [{"narration": "...", "visual": '
        '"..."}]}. No text before or after the JSON.'
    )


def _text(item: dict[str, Any], keys: Sequence[str], limit: int) -> str:
    raw = next((item[k] for k in keys if isinstance(item.get(k), str)), "")
    return clip(clean_model_text(raw[: 4 * limit]), limit)


def parse_script(answer: str, count: int) -> tuple[Scene, ...]:
    """Up to `count` scenes from an answer: an object with a list of scenes, or a bare list;
    each scene's narration and visual cleaned, on one line and cut to their limits; scenes
    missing either are left out. AnswerError when none is left."""
    value = extract_json(answer)
    if isinstance(value, dict):
        lists = [v for v in value.values() if isinstance(v, list)]
        items = value["scenes"] if isinstance(value.get("scenes"), list) else None
        if items is None and len(lists) == 1:
            items = lists[0]
        if items is None:
            raise AnswerError("no list of scenes in the answer")
    else:
        assert isinstance(value, list)
        items = value
    scenes: list[Scene] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        narration = _text(item, _NARRATION_KEYS, MAX_NARRATION_CHARS)
        visual = _text(item, _VISUAL_KEYS, MAX_DESCRIPTION_CHARS)
        if narration and visual:
            scenes.append(Scene(narration=narration, visual=visual))
            if len(scenes) == count:
                break
    if not scenes:
        raise AnswerError("the answer's scenes held no narration and visual")
    return tuple(scenes)


async def write_script(
    character: Character,
    *,
    prompt: str,
    subject: str,
    style_text: str,
    model: TextModel,
    attempts: int = 2,
) -> Script:
    """The script of a narrated video about `prompt`, fitted to the character's length and
    its platforms' limit. ModelError when the answer cannot be read `attempts` times."""
    settings = character.spec.longvideo
    seconds, note = length_limit(character, settings.seconds)
    count = scene_count(seconds, settings.scene_seconds)
    system = render_system(count, seconds, settings.scene_seconds)
    request = f"Idea: {prompt.strip()}\nCharacter: {subject}"
    about = character.spec.character.description
    if about:
        request += f"\nThe character: {about}"
    last: AnswerError | None = None
    for attempt in range(1, attempts + 1):
        asked = request
        if last is not None:
            asked += "\n\nYour last answer could not be read. Answer with the JSON object only."
        answer = await model.complete(system=system, prompt=asked, schema=SCRIPT_SCHEMA)
        try:
            scenes = await read_off_loop(lambda text: parse_script(text, count), answer)
        except AnswerError as exc:
            log.warning("script answer %d of %d unreadable: %s", attempt, attempts, exc)
            last = exc
            continue
        scenes = tuple(replace(s, visual=apply_style(s.visual, style_text)) for s in scenes)
        limit = length_limit(character, math.inf)[0]
        return Script(scenes, seconds, settings.scene_seconds, note, limit=limit)
    raise ModelError(
        f"the script answer could not be read after {attempts} tries: {last}",
        user_message=(
            f"The language model's script could not be read after {attempts} tries. "
            "The run is kept and can be retried."
        ),
    )


# ---------------------------------------------------------------------------- the editor

_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_TIME = re.compile(r"time=(\d+):(\d+):(\d+(?:\.\d+)?)")
#: what a subtitle file's path may hold: it goes inside an ffmpeg filter argument
_SAFE_PATH = re.compile(r"^[A-Za-z0-9_./-]+$")
#: libass's style for the burned-in subtitles (its sizes are in a 288-line-high frame)
SUBTITLE_STYLE = (
    "FontName=DejaVu Sans,FontSize=13,PrimaryColour=&H00FFFFFF,OutlineColour=&H00000000,"
    "BorderStyle=1,Outline=2,Shadow=0,Alignment=2,MarginV=40,MarginL=20,MarginR=20"
)


def _hms(match: tuple[str, str, str]) -> float:
    hours, minutes, seconds = match
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02}:{minutes:02}:{secs:02},{millis:03}"


def scene_lengths(scenes: Sequence[Scene]) -> list[float]:
    """How long each scene lasts in the joined video: its speech and a pause."""
    return [scene.length for scene in scenes]


def subtitles(scenes: Sequence[Scene], max_seconds: float) -> str:
    """An SRT file of the scenes' narrations, each shown while it is spoken, cut at
    `max_seconds`."""
    blocks: list[str] = []
    start = 0.0
    for scene, length in zip(scenes, scene_lengths(scenes), strict=True):
        if start >= max_seconds:
            break
        end = min(start + length, max_seconds)
        # libass reads `{...}` as style overrides and `-->` ends a timing line: neither is ours
        text = scene.narration.replace("-->", "->").replace("{", "(").replace("}", ")")
        blocks.append(f"{len(blocks) + 1}\n{_timestamp(start)} --> {_timestamp(end)}\n{text}\n")
        start += length
    return "\n".join(blocks)


def join_graph(
    folder: Path, scenes: Sequence[Scene], srt: Path, dest: Path, *, max_seconds: float, preset: str
) -> Any:
    """The ffmpeg-python graph of the reel: each clip looped to its scene's length, cropped to
    the 9:16 frame, its speech padded to the same length, all in a row, the subtitles burned in,
    cut at `max_seconds`; H.264 / AAC MP4 with the index first."""
    width, height = FRAME
    parts = []
    for scene, length in zip(scenes, scene_lengths(scenes), strict=True):
        assert scene.clip is not None
        assert scene.speech is not None
        video = (
            ffmpeg.input(str(folder / scene.clip), stream_loop=-1)["v:0"]
            .trim(duration=f"{length:.3f}")
            .setpts("PTS-STARTPTS")
            .filter("scale", width, height, force_original_aspect_ratio="increase")
            .crop("(iw-ow)/2", "(ih-oh)/2", width, height)
            .filter("setsar", 1)
            .filter("fps", fps=FPS)
            .filter("format", "yuv420p")
        )
        audio = (
            ffmpeg.input(str(folder / scene.speech))["a:0"]
            .filter("aformat", sample_rates=44100, channel_layouts="stereo")
            .filter("apad", whole_dur=f"{length:.3f}")
            .filter("atrim", duration=f"{length:.3f}")
            .filter("asetpts", "PTS-STARTPTS")
        )
        parts += [video, audio]
    joined = ffmpeg.concat(*parts, v=1, a=1).node
    video = joined[0].filter("subtitles", str(srt), force_style=SUBTITLE_STYLE)
    total = min(sum(scene_lengths(scenes)), max_seconds)
    return ffmpeg.output(
        video,
        joined[1],
        str(dest),
        t=f"{total:.3f}",
        preset=preset,
        crf=21,
        pix_fmt="yuv420p",
        ar=44100,
        ac=2,
        movflags="+faststart",
        map_metadata=-1,
        format="mp4",
        **{"c:v": "libx264", "c:a": "aac", "b:a": "128k"},
    )


def _join_failed(exc: MediaError) -> ServiceError:
    return ServiceError(
        f"joining the scenes failed: {exc}",
        user_message=(
            "Joining the scenes into one video failed; the run is kept and can be retried."
        ),
    )


@dataclass(frozen=True)
class FfmpegEditor:
    """Measures speech and joins scenes with ffmpeg (a subprocess with a deadline)."""

    preset: str = "veryfast"
    timeout_s: float = ENCODE_SECONDS

    async def seconds(self, audio: Path) -> float:
        probe = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(audio)]
        text = (await run_ffmpeg(probe, timeout_s=PROBE_SECONDS, check=False)).stderr
        found = _DURATION.search(text)
        if found is not None and _hms((found[1], found[2], found[3])) > 0:
            return _hms((found[1], found[2], found[3]))
        decode = ffmpeg.input(str(audio))["a:0"].output("-", format="null")
        try:
            decoded = await run_ffmpeg(compile_graph(decode), timeout_s=PROBE_SECONDS)
        except MediaError as exc:
            raise _speech_unreadable(audio, exc) from None
        times = _TIME.findall(decoded.stderr)
        if not times:
            raise _speech_unreadable(audio, None)
        return _hms(times[-1])

    async def join(
        self, folder: Path, scenes: Sequence[Scene], dest: Path, *, max_seconds: float
    ) -> None:
        partial = dest.with_name(dest.stem + ".part.mp4")
        with tempfile.TemporaryDirectory(prefix="mo-subs-") as tmp:
            srt = Path(tmp) / "subtitles.srt"
            if not _SAFE_PATH.match(str(srt)):
                raise RunError(f"the temporary folder {tmp!r} holds characters ffmpeg cannot take")
            await asyncio.to_thread(
                srt.write_text, subtitles(scenes, max_seconds), encoding="utf-8"
            )
            graph = join_graph(
                folder, scenes, srt, partial, max_seconds=max_seconds, preset=self.preset
            )
            try:
                await run_ffmpeg(compile_graph(graph), timeout_s=self.timeout_s)
                await asyncio.to_thread(partial.replace, dest)
            except MediaError as exc:
                raise _join_failed(exc) from None
            finally:
                await asyncio.to_thread(partial.unlink, missing_ok=True)


def _speech_unreadable(audio: Path, exc: MediaError | None) -> ServiceError:
    return ServiceError(
        f"{audio.name}: no audio could be read{f' ({exc})' if exc else ''}",
        user_message="A scene's speech could not be read; the run is kept and can be retried.",
    )


# ---------------------------------------------------------------------------- the run


def scene_recorder(
    store: Store, run: Run
) -> tuple[Callable[[int, Scene], Awaitable[None]], Callable[[], Run]]:
    """`record(index, scene)`, which saves the run with that scene as given, and `latest()`,
    the run as last saved: a narrated run's record of finished scene parts."""
    current = run

    async def record(index: int, scene: Scene) -> None:
        nonlocal current
        script = current.script
        assert script is not None, "a narrated run has its script"
        scenes = list(script.scenes)
        scenes[index] = scene
        current = replace(
            current, script=replace(script, scenes=tuple(scenes)), updated_at=utcnow()
        )
        await store.save_run(current)

    return record, lambda: current


class VoicedSpeaker(Speaker, Protocol):
    """A Speaker that can speak in another voice (pipeline.speech.OpenAISpeaker)."""

    def with_voice(self, voice: str) -> VoicedSpeaker: ...


@dataclass
class Narrator:
    """What the pipeline needs for narrated runs: the script writer's model, the speaker
    (None without SPEECH_URL: only `speech: comfyui` characters can narrate), the editor."""

    model: TextModel
    styles: Mapping[str, str]
    speaker: VoicedSpeaker | None = None
    editor: Editor = FfmpegEditor()

    async def write_script(
        self, character: Character, *, prompt: str, subject: str, style: str
    ) -> Script:
        return await write_script(
            character,
            prompt=prompt,
            subject=subject,
            style_text=self.styles.get(style, "") if style else "",
            model=self.model,
        )

    async def setup(
        self,
        character: Character,
        script: Script,
        record: Callable[[int, Scene], Awaitable[None]],
    ) -> NarrationSetup:
        """The strategy's narration for one run of `character`: its voice (the endpoint's, or
        the ComfyUI speech workflow, loaded here), the editor and the record of scenes."""
        settings = character.spec.longvideo
        speech_workflow = None
        if settings.speech == "comfyui":
            path = character.root / settings.speech_workflow
            speech_workflow = StageSetup(workflow=await asyncio.to_thread(Workflow.load, path))
        speaker: Speaker | None = None
        if settings.speech == "openai":
            if self.speaker is None:
                raise RunError(
                    f"{character.key} narrates with speech: openai, but SPEECH_URL is not set"
                )
            speaker = self.speaker.with_voice(settings.voice) if settings.voice else self.speaker
        return NarrationSetup(
            script=script,
            editor=self.editor,
            record=record,
            speech_by=settings.speech,
            speaker=speaker,
            speech_workflow=speech_workflow,
            # the speech may run past the length asked: the platforms' limit is the cut
            max_seconds=script.limit or length_limit(character, math.inf)[0],
        )
