"""review_between_stages: text2image2image stops after its first stage for a person to pick the
drafts to refine; the pick is kept on the run, so a restart neither asks twice nor draws again."""

from __future__ import annotations

import asyncio
import contextlib
import io
from pathlib import Path

import pytest

from comfy import ComfyPool
from pipeline.console import AutoReviewer, ConsoleReviewer
from pipeline.models import Decision, Job, Run, RunState, StagePick, utcnow
from pipeline.stage_pick import TIMEOUT, pending_pick
from tests.doubles import RecordingSink
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import World
from tests.waiting import until

JOB = Job("testy", generation_type="text2image2image", seed=11)


def _review_between_stages(project: Path, value: str) -> None:
    path = project / "characters" / "testy.yaml"
    text = path.read_text()
    old = "text2image2image: {keep_top: 2}"
    assert old in text
    path.write_text(
        text.replace(old, f"text2image2image: {{keep_top: 2, review_between_stages: {value}}}")
    )


def _prompts_with(fake: FakeComfyUI, class_type: str) -> int:
    """How many prompts ComfyUI received that have a node of `class_type`."""
    return sum(
        any(node["class_type"] == class_type for node in received.prompt.values())
        for received in fake.prompts
    )


def _refined(fake: FakeComfyUI) -> int:
    return _prompts_with(fake, "LoadImage")


def _drawn(fake: FakeComfyUI) -> int:
    return _prompts_with(fake, "EmptyLatentImage")


async def test_the_picked_drafts_are_the_ones_refined(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """With `review_between_stages: true` the reviewer sees every draft, best first, and only
    the one picked (the worst) is refined; the pick and who made it stay on the run."""
    _review_between_stages(project, "true")
    world.rule = lambda description: 0.9 if "picture 1" in description else 0.6
    run = await world.run(JOB)
    assert run.state is RunState.PUBLISHED, run.failure
    pick = run.stage_pick
    assert pick is not None
    assert len(pick.drafts) == 4  # 2 descriptions x 2 images
    scores = [d.score or 0.0 for d in pick.drafts]
    assert scores == sorted(scores, reverse=True)
    assert pick.chosen == (3,)
    assert pick.by == "tester"
    assert world.reviewer.picks == [run.id]
    assert _refined(comfy[0]) == 1
    assert [item.description_index for item in run.media] == [pick.drafts[3].description_index]
    assert pick.drafts[3].description_index == 1  # the worse description's draft


@pytest.mark.parametrize("value", ["false", "auto"])
async def test_without_a_person_the_best_by_score_go_on(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool], value: str
) -> None:
    """`false` and `auto` ask nobody: the best `keep_top` drafts are refined, as before."""
    _review_between_stages(project, value)
    run = await world.run(JOB)
    assert run.state is RunState.PUBLISHED, run.failure
    assert world.reviewer.picks == []
    assert run.stage_pick is None
    assert _refined(comfy[0]) == 2


async def test_nobody_picking_in_time_lets_the_best_by_score_go_on(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """A pick that expires unanswered is not the end of the run: the best by score go on."""
    _review_between_stages(project, "true")
    world.reviewer.pick = lambda run, pick: None
    run = await world.run(JOB)
    assert run.state is RunState.PUBLISHED, run.failure
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (0, 1)
    assert run.stage_pick.by == TIMEOUT
    assert _refined(comfy[0]) == 2


async def test_auto_review_keeps_the_best_by_score(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """`--review auto` answers the pick at once with the best by score."""
    _review_between_stages(project, "true")
    world.pipeline.reviewer = AutoReviewer()
    run = await world.run(JOB)
    assert run.state is RunState.PUBLISHED, run.failure
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (0, 1)
    assert run.stage_pick.by == "auto"


async def test_the_console_reviewer_asks_for_the_drafts(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """In the terminal the drafts are listed best first and the numbers typed are refined."""
    _review_between_stages(project, "true")
    out = io.StringIO()
    world.pipeline.reviewer = ConsoleReviewer(out=out, stdin=io.StringIO("2\ny\n"))
    run = await world.run(JOB)
    assert run.state is RunState.PUBLISHED, run.failure
    assert "Drafts of run" in out.getvalue()
    assert "Refine which drafts?" in out.getvalue()
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (1,)
    assert run.stage_pick.by == "console"
    assert _refined(comfy[0]) == 1


async def test_a_closed_terminal_leaves_the_pick_waiting_for_resume(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """Standard input ended: the run waits for its pick, and a resume asks again without
    drawing again."""
    _review_between_stages(project, "true")
    world.pipeline.reviewer = ConsoleReviewer(out=io.StringIO(), stdin=io.StringIO(""))
    run = await world.run(JOB)
    assert run.state is RunState.DESCRIBED
    assert pending_pick(run) is not None
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.stage_pick is not None
    drawn = _drawn(comfy[0])
    world.pipeline.reviewer = ConsoleReviewer(out=io.StringIO(), stdin=io.StringIO("1\ny\n"))
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED, done.failure
    assert _drawn(comfy[0]) == drawn
    assert done.stage_pick is not None
    assert done.stage_pick.chosen == (0,)


async def test_a_restart_while_waiting_waits_on_the_same_pick(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """Stopped while the pick is open: the restarted run neither draws again nor posts the
    pick again; the answer given then is what is refined."""
    _review_between_stages(project, "true")
    answered = asyncio.Event()
    reviewer = world.reviewer

    async def wait_pick(run: Run, ticket: object, pick: StagePick) -> Decision | None:
        await answered.wait()
        return Decision(approved=True, selected=(2,), by="ana", at=utcnow())

    reviewer.wait_pick = wait_pick  # type: ignore[method-assign]
    run = Run.new(JOB)
    await world.store.save_run(run)
    sink = RecordingSink()
    task = asyncio.create_task(world.pipeline.execute(run, sink))

    async def waiting() -> Run | None:
        # the pick saved as posted, then the Runner told the run waits for a person
        if not sink.waits or sink.waits[-1] is not True:
            return None
        stored = await world.store.load_run(run.id)
        return stored if stored is not None and pending_pick(stored) is not None else None

    found = await until(waiting, what="the pick saved as posted and the run said to wait")
    assert found is not None
    stored: Run = found
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    drawn = _drawn(comfy[0])
    assert drawn == 2
    answered.set()
    done = await world.pipeline.execute(stored, RecordingSink())
    assert done.state is RunState.PUBLISHED, done.failure
    assert reviewer.picks == [run.id]  # posted once
    assert _drawn(comfy[0]) == drawn
    assert done.stage_pick is not None
    assert done.stage_pick.chosen == (2,)
    assert done.stage_pick.by == "ana"
    assert _refined(comfy[0]) == 1


async def test_a_restart_after_the_pick_does_not_ask_again(
    world: World, project: Path, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """The refining fails after the pick; the retry refines the same pick without asking."""
    _review_between_stages(project, "true")
    fake = comfy[0]

    def pick_then_break(run: Run, pick: StagePick) -> Decision:
        fake.faults.fail_class = "VAEEncode"  # only the second stage encodes an image
        return Decision(approved=True, selected=(1,), by="ana", at=utcnow())

    world.reviewer.pick = pick_then_break
    run = await world.run(JOB)
    assert run.state is RunState.FAILED
    assert run.stage_pick is not None
    assert run.stage_pick.chosen == (1,)
    fake.faults.fail_class = None
    drawn = _drawn(fake)
    world.reviewer.pick = lambda run, pick: pytest.fail("asked again")
    done = await world.pipeline.execute(run, RecordingSink())
    assert done.state is RunState.PUBLISHED, done.failure
    assert world.reviewer.picks == [run.id]
    assert _drawn(fake) == drawn
    assert done.stage_pick is not None
    assert done.stage_pick.chosen == (1,)
