"""A run from character to post records: every strategy through the real ComfyUI client
against the fake, the store on SQLite and MariaDB, language models and review as doubles."""

from __future__ import annotations

import asyncio
import io
import shutil
from dataclasses import replace
from pathlib import Path
from random import Random

import pytest

from comfy import ComfyPool
from pipeline.characters import Character
from pipeline.errors import ReviewUnavailable
from pipeline.models import Decision, Job, Platform, PostState, Run, RunState, utcnow
from pipeline.prompts.library import TemplateLibrary
from pipeline.run import Idea
from pipeline.runner import Runner
from pipeline.store import SqlStore
from tests.doubles import StaticDescriber
from tests.fakes.comfyui import FakeComfyUI
from tests.runs import CHARACTER, World
from tests.waiting import until


@pytest.mark.parametrize(
    ("strategy", "suffix", "files"),
    [
        ("text2img", ".png", 4),
        ("image2image", ".png", 1),
        ("text2image2image", ".png", 2),
        ("text2video", ".mp4", 2),
        ("text2image2video", ".mp4", 1),
    ],
    ids=lambda v: str(v),
)
async def test_every_strategy_runs_from_character_to_posts(
    world: World, strategy: str, suffix: str, files: int
) -> None:
    """Each strategy makes its media on ComfyUI and ends with one post per platform."""
    run = await world.run(Job("testy", generation_type=strategy, seed=5))
    assert run.state is RunState.PUBLISHED, run.failure
    assert [m.path.endswith(suffix) for m in run.media] == [True] * files
    for item in run.media:
        assert (world.folder(run) / item.path).is_file()
    posts = await world.store.posts_for_run(run.id)
    assert {(p.platform, p.state) for p in posts} == {
        (Platform.INSTAGRAM, PostState.POSTED),
        (Platform.TWITTER, PostState.POSTED),
    }
    assert [state for _, state in world.notifier.events] == [
        "created",
        "awaiting_review",
        "published",
    ]


async def test_the_reviewers_choice_is_what_gets_posted(world: World) -> None:
    """Approving image 2 publishes image 2 alone and cleans the others away."""
    world.reviewer.decide = lambda run: Decision(
        approved=True, selected=(1,), by="ana", at=utcnow()
    )
    run = await world.run(Job("testy", seed=1))
    assert run.state is RunState.PUBLISHED
    chosen = Path(run.media[1].path).name
    [(_, media, _)] = world.publishers[Platform.TWITTER].posted
    assert [Path(name).stem for name in media] == ["01"]  # the fitted copy of image 2
    remaining = sorted(p.name for p in world.folder(run).rglob("*.png"))
    assert remaining == [chosen]


async def test_images_under_the_threshold_are_dropped(world: World) -> None:
    """Images the vision model scores low never reach the review."""
    world.rule = lambda description: 0.9 if "picture 1:" in description else 0.1
    run = await world.run(Job("testy", seed=2))
    kept = [m for m in run.media if m.kept]
    assert len(kept) == 2
    assert all("d0" in m.path for m in kept)
    assert all(m.score is not None and m.reason for m in run.media)


async def test_when_nothing_passes_the_best_are_kept(world: World) -> None:
    """With every score under the threshold, the best `keep_best_when_none_pass` go to review."""
    world.rule = lambda description: 0.3 if "picture 2:" in description else 0.1
    run = await world.run(Job("testy", seed=3))
    assert run.state is RunState.PUBLISHED
    assert len([m for m in run.media if m.kept]) == 1


async def test_when_nothing_passes_and_none_may_be_kept_the_run_fails(
    world: World, project: Path
) -> None:
    """keep_best_when_none_pass: 0 fails the run with the threshold in the reason."""
    (project / "characters" / "testy.yaml").write_text(CHARACTER.replace("KEEP", "0"))
    world.rule = lambda description: 0.1
    run = await world.run(Job("testy", seed=3))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == "generated"
    assert "threshold 0.5" in run.failure.message
    assert all((world.folder(run) / m.path).is_file() for m in run.media)  # kept for a retry


async def test_quick_mode_skips_scoring(world: World) -> None:
    """--quick sends everything to review without asking the vision model."""
    run = await world.run(Job("testy", seed=4, quick=True))
    assert run.state is RunState.PUBLISHED
    assert world.model.calls == []


async def test_a_rejected_run_posts_nothing_and_removes_its_media(world: World) -> None:
    """❌ in review: no post, and the candidates are deleted."""
    world.reviewer.decide = lambda run: Decision(approved=False, selected=(), by="ana", at=utcnow())
    run = await world.run(Job("testy", seed=6))
    assert run.state is RunState.REJECTED
    assert await world.store.posts_for_run(run.id) == []
    assert list(world.folder(run).rglob("*.png")) == []


async def test_an_expired_review_can_be_retried(world: World) -> None:
    """A review nobody answered expires; retrying asks again and publishes on approval."""
    world.reviewer.decide = lambda run: None
    run = await world.run(Job("testy", seed=7))
    assert run.state is RunState.EXPIRED
    world.reviewer.decide = lambda run: Decision(approved=True, selected=(), by="b", at=utcnow())
    again = await world.pipeline.execute(run)
    assert again.state is RunState.PUBLISHED
    assert len(world.reviewer.requests) == 2


async def test_a_reviewer_that_cannot_answer_leaves_the_run_awaiting_review(
    world: World,
) -> None:
    """No one can answer (the terminal's input ended): the run is not failed but stays
    awaiting review with its ticket, its media kept; a later resume waits on the same
    review and publishes on approval, making nothing again."""

    def cannot_answer(run: Run) -> Decision | None:
        raise ReviewUnavailable("standard input ended before the review was answered")

    world.reviewer.decide = cannot_answer
    run = await world.run(Job("testy", seed=12))
    assert (run.state, run.failure) == (RunState.AWAITING_REVIEW, None)
    stored = await world.store.load_run(run.id)
    assert stored is not None
    assert stored.state is RunState.AWAITING_REVIEW
    assert stored.ticket is not None
    assert list(world.folder(run).rglob("*.png"))
    world.reviewer.decide = lambda run: Decision(approved=True, selected=(), by="b", at=utcnow())
    done = await world.pipeline.execute(stored)
    assert done.state is RunState.PUBLISHED
    assert len(world.reviewer.requests) == 1


async def test_a_run_is_never_published_twice(world: World) -> None:
    """Executing a published run again (or its publish step) posts nothing more."""
    run = await world.run(Job("testy", seed=8))
    assert run.state is RunState.PUBLISHED
    replay = await world.pipeline.execute(run.advance(RunState.APPROVED))
    assert replay.state is RunState.PUBLISHED
    assert len(world.publishers[Platform.INSTAGRAM].posted) == 1
    assert len(world.publishers[Platform.TWITTER].posted) == 1


async def test_a_run_resumes_after_comfyui_was_down_without_redoing_work(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """ComfyUI down mid-run fails the run cleanly; `resume` finishes it, generating each
    description's images once."""
    fake, _ = comfy
    fake.faults.fail_class = "VAEDecode"
    run = await world.run(Job("testy", seed=9))
    assert run.state is RunState.FAILED
    assert run.failure is not None
    assert run.failure.state == "described"
    assert "ComfyUI" in run.failure.message
    fake.faults.fail_class = None
    before = len(fake.prompts)
    done = await world.pipeline.execute(run)
    assert done.state is RunState.PUBLISHED
    assert len(fake.prompts) - before == 2  # one prompt per description, no more


async def test_a_half_generated_run_keeps_finished_units(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """Files a unit already delivered are reused on resume; a unit whose prompt ComfyUI has
    forgotten is the only one generated again."""
    fake, _ = comfy
    run = await world.run(Job("testy", seed=10, publish=False))
    assert run.state is RunState.APPROVED
    folder = world.folder(run)
    # as if the process died after the first unit, and ComfyUI restarted since
    shutil.rmtree(folder / "main-d1")
    fake.history.clear()
    rewind = run.advance(RunState.DESCRIBED, media=())
    before = len(fake.prompts)
    again = await world.pipeline.execute(rewind)
    assert again.state is RunState.APPROVED
    assert len(fake.prompts) - before == 1
    assert len(again.media) == 4


async def test_a_resumed_run_takes_the_files_of_prompts_comfyui_finished(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool]
) -> None:
    """A run stopped after ComfyUI made its media but before they were saved downloads them
    on resume from ComfyUI's history: nothing is generated again."""
    fake, _ = comfy
    run = await world.run(Job("testy", seed=12, publish=False))
    folder = world.folder(run)
    for unit in ("main-d0", "main-d1"):
        shutil.rmtree(folder / unit)
    before = len(fake.prompts)
    again = await world.pipeline.execute(run.advance(RunState.DESCRIBED, media=()))
    assert again.state is RunState.APPROVED
    assert len(fake.prompts) == before
    assert len(again.media) == 4
    assert all((folder / item.path).is_file() for item in again.media)


@pytest.mark.timeout(30)
async def test_the_runner_cancels_a_run_and_its_comfyui_jobs(
    world: World, comfy: tuple[FakeComfyUI, ComfyPool], store: SqlStore
) -> None:
    """/cancel stops the run, takes its prompts off ComfyUI and saves it as cancelled."""
    fake, _ = comfy
    fake.faults.stall_next = True
    runner = Runner(store, world.pipeline.execute)
    run = await runner.submit(Job("testy", seed=11))
    await until(lambda: fake.prompts, what="the run to reach ComfyUI")
    try:
        cancelled = await asyncio.wait_for(runner.cancel(run.id), 10)
        assert cancelled.state is RunState.CANCELLED
    except TimeoutError:
        [task] = [t for t in asyncio.all_tasks() if t.get_name() == f"run-{run.id}"]
        stack = io.StringIO()
        task.print_stack(file=stack)
        raise AssertionError(
            f"the cancel did not end the run; it hangs at:\n{stack.getvalue()}"
        ) from None
    saved = await store.load_run(run.id)
    assert saved is not None
    assert saved.state is RunState.CANCELLED
    assert fake.interrupts or fake.deleted


class PairPrompts:
    """Writes a two-character idea with a partner, as the two_character method does."""

    async def write(
        self, character: Character, *, method: str | None, subject: str, rng: Random, video: bool
    ) -> Idea:
        return Idea(
            prompt=f"{subject} and Sol share an umbrella",
            method="two_character",
            subject=subject,
            partner="Sol",
        )


class TemplateRecorder(StaticDescriber):
    def __init__(self) -> None:
        self.asked: list[tuple[str, str | None]] = []

    async def describe(
        self,
        character: Character,
        idea: Idea,
        *,
        template: str,
        style: str,
        count: int,
        video: bool,
    ) -> list[str]:
        self.asked.append((template, idea.partner))
        return await super().describe(
            character, idea, template=template, style=style, count=count, video=video
        )


@pytest.mark.parametrize(
    ("strategy", "template"),
    [
        ("text2img", "two_character_interaction_generate_system_prompt"),
        ("text2video", "two_character_video_interaction"),
    ],
    ids=["picture", "video"],
)
async def test_a_two_character_idea_is_described_with_the_two_character_template(
    world: World, project: Path, strategy: str, template: str
) -> None:
    """An idea with a second character is turned into descriptions by the template written
    for two characters (pictures or clips), with the partner named, whatever the weights."""
    yaml_text = CHARACTER.replace("KEEP", "1").replace(
        "character: {name: Testy}", "character: {name: Testy, group_name: moonlit}"
    )
    (project / "characters" / "testy.yaml").write_text(yaml_text)
    await world.store.add_character("Luna", "moonlit")
    recorder = TemplateRecorder()
    world.pipeline = replace(world.pipeline, prompts=PairPrompts(), describer=recorder)
    run = await world.run(Job("testy", generation_type=strategy, seed=13, publish=False))
    assert run.state is RunState.APPROVED, run.failure
    assert run.choices is not None
    assert run.choices.template == template
    assert recorder.asked == [(template, "Sol")]
    assert TemplateLibrary.load().template(template, video=strategy == "text2video")


async def test_a_one_character_idea_keeps_the_weighted_template(world: World) -> None:
    """Without a second character the description template is the character's weighted pick."""
    recorder = TemplateRecorder()
    world.pipeline = replace(world.pipeline, describer=recorder)
    run = await world.run(Job("testy", seed=14, publish=False))
    assert run.choices is not None
    assert [t for t, _ in recorder.asked] == [run.choices.template]
    assert not run.choices.template.startswith("two_character")
