"""text2longvideo: a narrated video, scene by scene: a still, a clip of it, its speech; then one
video with the speech and subtitles. Each finished part is recorded on the run before the next
begins, so a resumed run makes only what is missing."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

from comfy import WorkflowError
from strategies.base import (
    Generated,
    GenerationProgress,
    Needs,
    Stage,
    StrategyContext,
    Unit,
    prepare,
    relative,
    run_units,
)
from strategies.media import MediaKind, media_kind
from strategies.narration import NarrationSetup, Scene

#: the joined video, in the run folder
FINAL = "longvideo.mp4"
#: the title of the text node a speech workflow's narration is written to
NARRATION_TITLE = "Narration"
#: what a speech file may be called (the ComfyUI workflow's SaveAudio writes FLAC by default)
AUDIO_SUFFIXES = frozenset({".flac", ".wav", ".mp3", ".ogg", ".opus", ".m4a", ".aac"})


class Text2LongVideo:
    name = "text2longvideo"
    needs = Needs(
        stages=(
            Stage("first_stage", borrows="text2img"),
            Stage("second_stage", video=True, borrows="text2image2video"),
        ),
        narrated=True,
    )

    async def generate(self, ctx: StrategyContext) -> list[Generated]:
        setup = ctx.narration
        if setup is None:
            raise WorkflowError("text2longvideo runs only with a script (the pipeline's narration)")
        scenes = list(setup.script.scenes)
        total = len(scenes)
        for index in range(total):
            scenes[index] = await _scene(ctx, setup, index, scenes[index], total)
        final = ctx.folder / FINAL
        if not await asyncio.to_thread(final.is_file):
            ctx.report(GenerationProgress(f"joining {total} scenes", total, total))
            await setup.editor.join(ctx.folder, scenes, final, max_seconds=setup.max_seconds)
        return [Generated(FINAL, MediaKind.VIDEO, 0, "final")]


async def _scene(
    ctx: StrategyContext, setup: NarrationSetup, index: int, scene: Scene, total: int
) -> Scene:
    """The scene with its image, clip and speech, each made only when not made before."""
    label = f"scene {index + 1}/{total}"
    folder = ctx.folder
    if not await _have(folder, scene.image):
        image = await _one(ctx, index, f"{label}: image", "image", "first_stage", MediaKind.IMAGE)
        scene = replace(scene, image=relative(ctx, image))
        await setup.record(index, scene)
    if not await _have(folder, scene.clip):
        assert scene.image is not None
        clip = await _one(
            ctx,
            index,
            f"{label}: clip",
            "clip",
            "second_stage",
            MediaKind.VIDEO,
            images={"Input Image": folder / scene.image},
        )
        scene = replace(scene, clip=relative(ctx, clip))
        await setup.record(index, scene)
    if not await _have(folder, scene.speech) or scene.speech_seconds is None:
        ctx.report(GenerationProgress(f"{label}: speech", index, total))
        speech = await _speech(ctx, setup, index, scene, label)
        seconds = await setup.editor.seconds(speech)
        scene = replace(scene, speech=relative(ctx, speech), speech_seconds=seconds)
        await setup.record(index, scene)
    return scene


async def _have(folder: Path, path: str | None) -> bool:
    return path is not None and await asyncio.to_thread((folder / path).is_file)


async def _one(
    ctx: StrategyContext,
    index: int,
    label: str,
    part: str,
    stage: str,
    kind: MediaKind,
    *,
    images: dict[str, Path] | None = None,
) -> Path:
    """The one file of `kind` a ComfyUI prompt made for scene `index` (resumed when queued)."""
    params = ctx.stages[stage]
    unit = Unit(
        key=f"scene{index:02}-{part}",
        stage=label,
        description_index=index,
        workflow=prepare(params, ctx.rng, prompt=ctx.descriptions[index], negative=ctx.negative),
        images=images or {},
    )
    files = (await run_units(ctx, [unit]))[unit.key]
    kinds = await asyncio.to_thread(lambda: [media_kind(path) for path in files])
    found = [path for path, got in zip(files, kinds, strict=True) if got is kind]
    if not found:
        raise WorkflowError(
            f"{params.workflow.source}: the {part} workflow made no {kind.value} for {label}"
        )
    return found[0]


def _spoken(stem: Path) -> Path | None:
    """The speech file the speaker wrote at `stem` before (its partial files never count)."""
    if not stem.parent.is_dir():
        return None
    found = sorted(
        path
        for path in stem.parent.iterdir()
        if path.stem == stem.name and path.suffix.lower() in AUDIO_SUFFIXES
    )
    return found[0] if found else None


async def _speech(
    ctx: StrategyContext, setup: NarrationSetup, index: int, scene: Scene, label: str
) -> Path:
    """The scene's narration spoken: by the speech endpoint, or by the ComfyUI workflow."""
    if setup.speech_by == "openai":
        assert setup.speaker is not None, "the pipeline gives a speaker for openai speech"
        stem = ctx.folder / f"scene{index:02}-speech" / "speech"
        spoken = await asyncio.to_thread(_spoken, stem)
        if spoken is not None:  # written whole before a stop that came ahead of its record
            return spoken
        await asyncio.to_thread(stem.parent.mkdir, parents=True, exist_ok=True)
        return await setup.speaker.speak(scene.narration, stem)
    params = setup.speech_workflow
    assert params is not None, "the pipeline gives a workflow for comfyui speech"
    workflow = prepare(params, ctx.rng).set_by_title(NARRATION_TITLE, "text", scene.narration)
    unit = Unit(
        key=f"scene{index:02}-speech",
        stage=f"{label}: speech",
        description_index=index,
        workflow=workflow,
    )
    files = (await run_units(ctx, [unit]))[unit.key]
    audio = [path for path in files if path.suffix.lower() in AUDIO_SUFFIXES]
    if not audio:
        raise WorkflowError(f"{params.workflow.source}: the speech workflow made no audio file")
    return audio[0]
