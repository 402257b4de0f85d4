"""A reviewer's actions on an open review, run by the real pipeline against the fake ComfyUI: a
reroll makes the next attempt with new seeds (the run still replays), "more like #N" adds
variations of one image, an upscale puts the chosen images through the upscale workflow before
publishing; each resumes after a restart without queueing a finished prompt again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from comfy import ComfyPool
from pipeline.__main__ import main
from pipeline.models import ActionKind, Decision, Job, ReviewAction, Run, RunState, utcnow
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.doubles import RecordingSink
from tests.fakes.comfyui import FakeComfyUI, ReceivedPrompt
from tests.runs import World
from tests.waiting import until

#: text2img for testy: two descriptions, one prompt each (a batch of two images)
PROMPTS = 2


def with_keys(project: Path, keys: str) -> None:
    """Give testy more `generation` keys (YAML lines indented by two spaces)."""
    path = project / "characters" / "testy.yaml"
    text = path.read_text()
    path.write_text(text.replace("  descriptions: 2\n", f"  descriptions: 2\n{keys}"))


UPSCALE = "  upscale: {workflow: workflows/upscale_tile.json, when: on_request}\n"


def script(*answers: Callable[[Run], Decision | ReviewAction]) -> Callable[[Run], Any]:
    """A reviewer that gives `answers` in turn, one per review."""
    left = list(answers)
    return lambda run: left.pop(0)(run)


def reroll(run: Run) -> ReviewAction:
    return ReviewAction(ActionKind.REROLL, by="tester", at=utcnow())


def more_like(number: int) -> Callable[[Run], ReviewAction]:
    """Variations of the image shown as `number` (1-based)."""
    return lambda run: ReviewAction(
        ActionKind.MORE_LIKE, by="tester", at=utcnow(), index=run.shown()[number - 1]
    )


def approve(*numbers: int, upscale: bool = False) -> Callable[[Run], Decision]:
    """Approve the images shown as `numbers` (1-based)."""
    return lambda run: Decision(
        approved=True,
        selected=tuple(run.shown()[n - 1] for n in numbers),
        by="tester",
        at=utcnow(),
        upscale=upscale,
    )


def seeds(prompts: list[ReceivedPrompt]) -> list[int]:
    return [
        node["inputs"]["seed"]
        for p in prompts
        for node in p.prompt.values()
        if node["class_type"] == "KSampler"
    ]


def texts(prompt: ReceivedPrompt) -> dict[str, Any]:
    return {n.get("_meta", {}).get("title"): n["inputs"] for n in prompt.prompt.values()}


def posted(world: World) -> dict[str, list[tuple[str, ...]]]:
    """What each platform got, for the platforms that got anything."""
    made = {p.value: [m for _, m, _ in pub.posted] for p, pub in world.publishers.items()}
    return {platform: media for platform, media in made.items() if media}


@pytest.mark.timeout(30)
async def test_a_reroll_shows_a_new_set_with_new_seeds_and_publishes_only_the_chosen(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """🔁 then ✅ #1: ComfyUI renders the same descriptions again with new seeds, the review
    shows attempt 2 only (numbered from 1), the old set stays until the decision, and only the
    chosen image of attempt 2 is published, once per platform."""
    fake, _ = comfy
    reviewed: list[tuple[int, tuple[int, ...], int]] = []

    def decide(run: Run) -> Decision | ReviewAction:
        reviewed.append((run.attempt, run.shown(), len(run.media)))
        return reroll(run) if run.attempt == 1 else approve(1)(run)

    world.reviewer.decide = decide
    run = await world.run(Job("testy", seed=7))

    assert run.state is RunState.PUBLISHED, run.failure
    assert reviewed == [(1, (0, 1, 2, 3), 4), (2, (4, 5, 6, 7), 8)]
    assert len(fake.prompts) == 2 * PROMPTS
    first, second = fake.prompts[:PROMPTS], fake.prompts[PROMPTS:]
    assert [texts(p)["Positive Prompt"]["text"] for p in second] == [
        texts(p)["Positive Prompt"]["text"] for p in first
    ]
    assert not set(seeds(first)) & set(seeds(second))
    assert run.attempt == 2
    assert run.decision is not None
    assert run.decision.selected == (4,)
    assert run.media[4].attempt == 2
    assert run.media[4].path.startswith("attempt-2/")
    assert posted(world) == {"instagram": [("04.jpg",)], "twitter": [("04.jpg",)]}
    folder = world.folder(run)
    assert (folder / run.media[4].path).is_file()
    assert not (folder / run.media[0].path).exists()  # the old set goes with the decision


@pytest.mark.timeout(40)
async def test_a_reroll_replays_from_the_runs_seed(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """Two runs with one seed, both rerolled: the second attempts use the same seeds."""
    fake, _ = comfy
    world.reviewer.decide = lambda run: (
        reroll(run) if run.attempt == 1 else Decision(False, (), by="tester", at=utcnow())
    )
    await world.run(Job("testy", seed=11))
    await world.run(Job("testy", seed=11))
    one, two = fake.prompts[: 2 * PROMPTS], fake.prompts[2 * PROMPTS :]
    assert seeds(one) == seeds(two)


@pytest.mark.timeout(30)
async def test_more_like_adds_variations_numbered_after_the_shown_ones(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """More like #2: three images of #2's description with new seeds join the review as #5-#7;
    choosing #6 publishes that variation."""
    fake, _ = comfy
    shown: list[tuple[int, ...]] = []

    def decide(run: Run) -> Decision | ReviewAction:
        shown.append(run.shown())
        return more_like(2)(run) if len(shown) == 1 else approve(6)(run)

    world.reviewer.decide = decide
    run = await world.run(Job("testy", seed=3))

    assert run.state is RunState.PUBLISHED, run.failure
    assert shown == [(0, 1, 2, 3), (0, 1, 2, 3, 4, 5, 6)]
    [variation] = fake.prompts[PROMPTS:]
    source = run.media[1]
    assert texts(variation)["Positive Prompt"]["text"] == run.descriptions[source.description_index]
    assert texts(variation)["Empty Latent Image"]["batch_size"] == 3
    assert [m.variation_of for m in run.media[4:]] == [1, 1, 1]
    assert run.attempt == 1
    assert run.decision is not None
    assert run.decision.selected == (5,)
    assert posted(world)["twitter"] == [("05.jpg",)]


@pytest.mark.timeout(30)
async def test_img2img_variations_start_from_the_image_at_the_characters_denoise(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool], project: Path
) -> None:
    """With `variations: {mode: img2img}` ComfyUI receives the chosen image itself and the
    character's low denoise."""
    fake, _ = comfy
    with_keys(project, "  variations: {mode: img2img, count: 2, denoise: 0.3}\n")
    shown: list[bytes] = []

    def first(run: Run) -> ReviewAction:
        shown.append((world.folder(run) / run.media[0].path).read_bytes())
        return more_like(1)(run)

    world.reviewer.decide = script(first, approve(5))
    run = await world.run(Job("testy", seed=4))

    assert run.state is RunState.PUBLISHED, run.failure
    [variation] = fake.prompts[PROMPTS:]
    inputs = texts(variation)
    assert inputs["KSampler"]["denoise"] == 0.3
    assert inputs["Batch"]["amount"] == 2
    assert list(fake.uploads.values()) == shown
    assert len(run.media) == 4 + 2


@pytest.mark.timeout(30)
async def test_upscale_puts_the_chosen_images_through_the_upscale_workflow(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool], project: Path
) -> None:
    """⬆️ with #1 and #3: each goes through upscale_tile.json before publishing (the progress
    says so); the posts carry the upscaled files, the originals stay named on the record."""
    fake, _ = comfy
    with_keys(project, UPSCALE)
    world.reviewer.decide = script(approve(1, 3, upscale=True))
    run = Run.new(Job("testy", seed=5))
    await world.store.save_run(run)
    sink = RecordingSink()
    run = await world.pipeline.execute(run, sink)

    assert run.state is RunState.PUBLISHED, run.failure
    upscales = fake.prompts[PROMPTS:]
    assert len(upscales) == 2
    assert all("ImageUpscaleWithModel" in str(p.prompt) for p in upscales)
    assert [run.media[i].upscaled_from is not None for i in range(4)] == [True, False, True, False]
    assert run.media[0].path.startswith("upscaled/")
    assert any(u.step == "upscale" and "2/2" in u.detail for u in sink.updates)
    assert posted(world)["instagram"] == [("00.jpg", "02.jpg")]


@pytest.mark.timeout(30)
async def test_a_failed_upscale_publishes_nothing_and_says_why(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool], project: Path
) -> None:
    """The upscale model node fails: the run fails before publishing, saying the upscale
    failed at which node; no platform is posted to; a retry can help."""
    fake, _ = comfy
    with_keys(project, UPSCALE)

    def decide(run: Run) -> Decision:
        fake.faults.fail_class = "ImageUpscaleWithModel"
        return approve(1, upscale=True)(run)

    world.reviewer.decide = decide
    run = await world.run(Job("testy", seed=6))

    assert run.state is RunState.FAILED
    assert run.failure is not None
    text = run.failure.describe()
    assert text.startswith("failed at publish: Upscaling failed:"), text
    assert "ImageUpscaleWithModel" in text
    assert posted(world) == {}
    assert await world.store.posts_for_run(run.id) == []


# ---------------------------------------------------------------------------- restarts

RESTARTS = [
    # (name, extra character keys, first answer, answer after the restart, prompts of the action)
    ("reroll", "", reroll, approve(2), PROMPTS),
    ("more-like", "", more_like(3), approve(5), 1),
    ("upscale", UPSCALE, approve(1, 2, upscale=True), approve(1), 2),
]


@pytest.mark.timeout(40)
@pytest.mark.parametrize(
    ("keys", "first", "after", "action_prompts"),
    [r[1:] for r in RESTARTS],
    ids=[r[0] for r in RESTARTS],
)
async def test_a_restart_in_the_middle_of_an_action_resumes_it(
    world: World,
    comfy: tuple[FakeComfyUI, ComfyPool],
    store: SqlStore,
    project: Path,
    keys: str,
    first: Callable[[Run], Decision | ReviewAction],
    after: Callable[[Run], Decision],
    action_prompts: int,
) -> None:
    """A shutdown while ComfyUI renders a reviewer's action: the request is on the record, the
    next start takes its prompts over (none queued again), finishes it and publishes once."""
    fake, pool = comfy
    with_keys(project, keys)

    def slow_first(run: Run) -> Decision | ReviewAction:
        fake.job_seconds = 0.8
        return first(run)

    world.reviewer.decide = slow_first
    runner = Runner(store, world.pipeline.execute, shutdown_grace=0.0, detach=pool.detach)
    run = await runner.submit(Job("testy", seed=9))
    total = PROMPTS + action_prompts
    await until(
        lambda: len(fake.prompts) == total and len(fake.jobs) > PROMPTS,
        what="the action's prompts running",
    )
    await runner.shutdown()
    stopped = await store.load_run(run.id)
    assert stopped is not None
    # the request is on the record: an action saved, or the approval (with its upscale)
    assert stopped.action is not None or stopped.state is RunState.APPROVED

    fake.job_seconds = 0.02
    async with ComfyPool([fake.url], poll_interval=0.05) as restarted:
        again = World(project, store, restarted)
        again.reviewer.decide = after
        resumer = Runner(store, again.pipeline.execute, detach=restarted.detach)
        await resumer.resume(run.id)
        done = await asyncio.wait_for(resumer.wait(run.id), 20)
    assert done.state is RunState.PUBLISHED, done.failure
    assert len(fake.prompts) == total  # nothing queued twice
    assert done.action is None
    assert {p.value: len(pub.posted) for p, pub in again.publishers.items() if pub.posted} == {
        "instagram": 1,
        "twitter": 1,
    }


@pytest.mark.timeout(40)
async def test_cancel_of_a_run_stopped_mid_reroll_takes_the_rerolls_prompts_off_comfyui(
    world: World,
    comfy: tuple[FakeComfyUI, ComfyPool],
    store: SqlStore,
    store_url: str,
    project: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A run a shutdown left in the middle of a reroll, cancelled from the terminal: the
    reroll's prompts (journaled in its own folder) stop costing GPU time."""
    fake, pool = comfy

    def slow_reroll(run: Run) -> ReviewAction:
        fake.job_seconds = 5.0  # still at work when the cancel comes
        return reroll(run)

    world.reviewer.decide = slow_reroll
    runner = Runner(store, world.pipeline.execute, shutdown_grace=0.0, detach=pool.detach)
    run = await runner.submit(Job("testy", seed=23))
    await until(
        lambda: len(fake.prompts) == 2 * PROMPTS and len(fake.jobs) > PROMPTS,
        what="the reroll's prompts running",
    )
    await runner.shutdown()
    rerolled = [p.prompt_id for p in fake.prompts[PROMPTS:]]
    for name, value in {
        "DATABASE_URL": store_url,
        "COMFYUI_SERVERS": fake.url,
        "CHARACTERS_DIR": str(project / "characters"),
        "DATA_DIR": str(project / "data"),
    }.items():
        monkeypatch.setenv(name, value)

    code = await asyncio.to_thread(main, ["cancel", run.id])  # its own loop, as from a shell

    assert code == 0
    assert {*fake.interrupts, *fake.deleted} == set(rerolled)


@pytest.mark.parametrize(
    ("generation_type", "offered"),
    [
        ("text2img", True),
        ("text2longvideo", False),
        ("sticker_pack", False),
    ],
)
def test_a_review_offers_reroll_only_for_media_drawn_from_descriptions(
    world: World, generation_type: str, offered: bool
) -> None:
    """A narrated reel or a sticker pack is made from more than its descriptions (a script, a
    sticker list), so its review offers no reroll or variations that would draw it wrongly."""
    from pipeline.models import Choices, MediaItem, MediaKind
    from pipeline.review_actions import offers

    choices = Choices(seed=1, character="testy", generation_type=generation_type,
                      prompt_method="arbitrary", template="t", style="")  # fmt: skip
    run = Run.new(Job("testy")).advance(
        RunState.SCORED,
        choices=choices,
        media=(MediaItem(path="01.png", kind=MediaKind.IMAGE, description_index=0, kept=True),),
    )
    found = offers(run, world.characters.load("testy"))
    assert (ActionKind.REROLL in found) is offered
    assert (ActionKind.MORE_LIKE in found) is offered
