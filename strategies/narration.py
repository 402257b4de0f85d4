"""What a narrated strategy (text2longvideo) needs beyond ComfyUI: its script, a voice, an editor.

A script is a list of scenes, each a narration and a visual description; each finished part of a
scene (its image, its clip, its speech) is recorded at once through `NarrationSetup.record`, so a
resumed run redoes nothing finished. The voice (an OpenAI-compatible speech endpoint) and the
editor (ffmpeg) are Protocols the pipeline fills. Imports only the standard library at run
time (`pipeline.models` stores its records); never `pipeline`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # only for types: the domain records (pipeline.models) import this module
    from strategies.base import StageSetup

#: how a scene's narration becomes speech: an OpenAI-compatible endpoint, or a ComfyUI workflow
SpeechBy = Literal["openai", "comfyui"]

#: silence after each scene's speech, so sentences do not run together; and the shortest scene
PAUSE_SECONDS = 0.3
MIN_SCENE_SECONDS = 1.0


@dataclass(frozen=True)
class Scene:
    """One scene of a script and what is made of it so far (paths relative to the run folder)."""

    narration: str
    visual: str
    image: str | None = None
    clip: str | None = None
    speech: str | None = None
    #: how long the speech lasts: the scene lasts this long, and so does its subtitle
    speech_seconds: float | None = None

    @property
    def length(self) -> float:
        """How long the scene lasts in the reel: its speech and a pause (at least a second)."""
        return max(MIN_SCENE_SECONDS, (self.speech_seconds or 0.0) + PAUSE_SECONDS)


@dataclass(frozen=True)
class Script:
    """What the language model wrote, fitted to the character's length and the platforms'."""

    scenes: tuple[Scene, ...]
    #: the length asked for (after the platforms' limit), and the length of one scene
    seconds: float
    scene_seconds: float
    #: one sentence when the length was cut to a platform's limit ("cut to 90 s: ...")
    note: str | None = None
    #: the longest the reel may be (the enabled platforms' limit): a longer narration is cut
    limit: float | None = None

    def overrun(self) -> str | None:
        """One sentence when the spoken scenes last longer than the reel may, else None."""
        if self.limit is None or not all(s.speech_seconds for s in self.scenes):
            return None
        total = sum(scene.length for scene in self.scenes)
        if total <= self.limit:
            return None
        return (
            f"The narration runs {total:.0f} s; the reel is cut at {self.limit:g} s "
            "(the platforms' limit)."
        )

    def text(self) -> str:
        """The script as a reviewer reads it: what was cut, then numbered scenes, narration
        then picture."""
        lines = [note for note in (self.note, self.overrun()) if note]
        for number, scene in enumerate(self.scenes, 1):
            lines.append(f"{number}. {scene.narration}\n   [{scene.visual}]")
        return "\n".join(lines)


class Speaker(Protocol):
    """Speaks a text into an audio file (an OpenAI-compatible `/audio/speech` endpoint)."""

    async def speak(self, text: str, stem: Path) -> Path:
        """Write the speech of `text` to `stem` with its format's suffix (whole, or not at
        all); the file written."""
        ...


class Editor(Protocol):
    """Measures audio and joins a script's scenes into one video (ffmpeg)."""

    async def seconds(self, audio: Path) -> float:
        """How long an audio file lasts."""
        ...

    async def join(
        self, folder: Path, scenes: Sequence[Scene], dest: Path, *, max_seconds: float
    ) -> None:
        """Write to `dest` the scenes' clips, each as long as its speech, with the speech and
        the narration burned in as subtitles, cut at `max_seconds` (whole, or not at all)."""
        ...


@dataclass(frozen=True)
class NarrationSetup:
    """A narrated run's script and tools, as the pipeline built them for this run."""

    script: Script
    editor: Editor
    #: records a scene's finished part on the run (saved before this returns)
    record: Callable[[int, Scene], Awaitable[None]]
    #: how speech is made: `speaker` for "openai", the `speech_workflow` for "comfyui"
    speech_by: SpeechBy = "openai"
    speaker: Speaker | None = None
    speech_workflow: StageSetup | None = None
    #: the longest the joined video may be (the enabled platforms' limit)
    max_seconds: float = 90.0
