"""The sound prompt of a video run: written by the language model, kept on the run, set into
the MMAudio sampler of the workflow, heard in the video; no call for a workflow without one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from comfy import ComfyPool
from pipeline.models import Decision, Job, RunState, utcnow
from pipeline.prompts.sound import MAX_SOUND_CHARS, SOUND_SYSTEM, parse_sound, write_sound_prompt
from pipeline.publish.media import probe_video
from pipeline.wiring import ModelSound
from tests.doubles import Asked, ScriptedModel
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import ONE_ENGINE, World

SOUND = "waves breaking on rocks, gulls crying, wind"


class _Models:
    """LanguageModels as ModelSound sees it: one model for every task."""

    def __init__(self, model: ScriptedModel) -> None:
        self.model = model

    def for_task(self, task: object) -> ScriptedModel:
        return self.model


@pytest.fixture(autouse=True)
def _x_only(project: Path) -> None:
    """Testy posts to X alone here: X keeps the fake's small clips as they are, while
    Instagram's reel frame would encode each one again at 1080x1920 (tests/publish covers
    that), which is not what these tests are about."""
    path = project / "characters" / "testy.yaml"
    text = path.read_text()
    old = "instagram: {enabled: true,"
    assert old in text
    path.write_text(text.replace(old, "instagram: {enabled: false,"))


def _answer(asked: Asked) -> str:
    return json.dumps({"sound": SOUND})


def _sound_model(world: World) -> ScriptedModel:
    model = ScriptedModel.of(default=_answer)
    world.pipeline.sound = ModelSound(_Models(model))  # type: ignore[arg-type]
    return model


def _use_workflow(project: Path, strategy: str, workflow: str) -> None:
    path = project / "characters" / "testy.yaml"
    text = path.read_text()
    old = {"text2video": "text2video: workflows/text2video.json"}.get(
        strategy, "text2image2video: workflows/image2video.json"
    )
    assert old in text
    path.write_text(text.replace(old, f"{strategy}: workflows/{workflow}"))


def _sound_nodes(fake: FakeComfyUI) -> list[str]:
    """The prompt of every MMAudio sampler ComfyUI received, in order."""
    return [
        node["inputs"]["prompt"]
        for received in fake.prompts
        for node in received.prompt.values()
        if node["class_type"] == "MMAudioSampler"
    ]


@pytest.mark.parametrize(
    ("strategy", "workflow"),
    [("text2video", "text2video.json"), ("text2image2video", "image2video_mmaudio.json")],
    ids=["text2video", "text2image2video"],
)
@ONE_ENGINE
async def test_the_sound_prompt_reaches_mmaudio_and_the_video_has_sound(
    world: World,
    project: Path,
    comfy: tuple[FakeComfyUI, ComfyPool],
    strategy: str,
    workflow: str,
) -> None:
    """A video workflow with an MMAudio node gets the model's sound prompt, the run keeps it,
    and the video it makes carries a sound track."""
    _use_workflow(project, strategy, workflow)
    model = _sound_model(world)
    run = await world.run(Job("testy", generation_type=strategy, seed=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert run.sound_prompt == SOUND
    assert [asked.system for asked in model.calls] == [SOUND_SYSTEM]
    assert "clip 1:" in model.calls[0].prompt  # it heard the descriptions
    fake, _ = comfy
    sent = _sound_nodes(fake)
    assert sent
    assert set(sent) == {SOUND}
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.sound_prompt == SOUND
    for item in run.media:
        info = await probe_video(world.folder(run) / item.path)
        assert info.has_audio


@ONE_ENGINE
async def test_a_workflow_without_mmaudio_costs_no_call_and_stays_silent(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """image2video.json has no sound node: no sound prompt is asked for, none kept, no sound."""
    model = _sound_model(world)
    run = await world.run(Job("testy", generation_type="text2image2video", seed=3))
    assert run.state is RunState.PUBLISHED, run.failure
    assert model.calls == []
    assert run.sound_prompt is None
    assert _sound_nodes(comfy[0]) == []
    info = await probe_video(world.folder(run) / run.media[0].path)
    assert not info.has_audio


async def test_a_resumed_run_keeps_its_sound_prompt(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """A run stopped after its descriptions is not asked for a sound prompt again."""
    model = _sound_model(world)
    world.reviewer.decide = lambda run: None  # the review expires: the run stops there
    run = await world.run(Job("testy", generation_type="text2video", seed=3))
    assert run.state is RunState.EXPIRED
    assert len(model.calls) == 1
    world.reviewer.decide = lambda run: Decision(
        approved=True, selected=(), by="tester", at=utcnow()
    )
    again = await world.pipeline.execute(run)
    assert again.state is RunState.PUBLISHED
    assert len(model.calls) == 1
    assert again.sound_prompt == SOUND


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('{"sound": "  rain on\\na tin roof \\u001b[31m"}', "rain on a tin roof"),
        ('Sure! ```json\n{"sound": "crackling fire"}\n```', "crackling fire"),
    ],
    ids=["cleaned", "fenced"],
)
def test_the_sound_answer_is_read_cleaned(answer: str, expected: str) -> None:
    """Control characters go, the text is on one line, fences and prose around are read past."""
    assert parse_sound(answer) == expected


def test_a_long_sound_answer_is_cut() -> None:
    """A rambling answer is cut at a word, so the node never gets a page."""
    text = parse_sound(json.dumps({"sound": "loud thunder " * 500}))
    assert len(text) <= MAX_SOUND_CHARS
    assert text.endswith("thunder")


async def test_an_unreadable_sound_answer_is_asked_again_then_left_out() -> None:
    """Two unreadable answers: the run goes on without a sound prompt (the node keeps its own)."""
    model = ScriptedModel.of("no idea", '{"noise": 1}')
    assert await write_sound_prompt(["a storm"], model=model) is None
    assert len(model.calls) == 2
    assert "could not be read" in model.calls[1].prompt


def test_the_review_shows_the_sound_prompt() -> None:
    """A reviewer reads what the videos were asked to sound like, on the review's first part."""
    from bot import render
    from pipeline.models import Run

    run = Run.new(Job("testy"))
    run = run.advance(RunState.CAPTIONED, sound_prompt=SOUND)
    first = render.review_text(run, ["#1"], part=1, parts=2, deadline=None)
    second = render.review_text(run, ["#11"], part=2, parts=2, deadline=None)
    assert SOUND in first
    assert SOUND not in second


async def test_no_provider_answering_leaves_the_videos_without_a_sound_prompt() -> None:
    """The sound is a nicety: a model that cannot give one does not fail the run."""
    from pipeline.errors import ModelError

    model = ScriptedModel.of(ModelError("ollama answered without the JSON asked for"))
    assert await write_sound_prompt(["a storm"], model=model) is None
