"""Whole runs through the publish queue (tests/runs.py: the real Pipeline, PublishService and
store, a fake ComfyUI): a character's slots hold its posts in the store until the (injected)
clock reaches them; nothing goes out twice across two instances or a stop mid-way."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.characters import Characters
from pipeline.lease import Owner, this_process
from pipeline.models import Job, Platform, PostRecord, PostState, RunState
from pipeline.prompts.library import TemplateLibrary
from pipeline.publish import AttentionBoard, PublishService
from pipeline.publish.queue import PublishQueue
from pipeline.publish.service import caption_for
from tests.doubles import RecordingNotifier
from tests.leases import dead_pid
from tests.runs import World

#: a Monday, 07:00 UTC
MONDAY = datetime(2026, 6, 1, 7, 0, tzinfo=UTC)

SLOTS = """
publish:
  instagram:
    times: ["09:00", "18:00"]
    min_gap_minutes: 120
  twitter: now
"""


@pytest.fixture
def queued_world(world: World, project: Path) -> World:
    """The world's character with Instagram slots at 09:00 and 18:00 UTC, X at once."""
    path = project / "characters" / "testy.yaml"
    path.write_text(path.read_text() + SLOTS)
    world.clock.now = MONDAY
    return world


def posted(world: World, platform: Platform) -> int:
    return len(world.publishers[platform].posted)


async def test_an_approved_run_waits_for_its_slot_then_publishes(queued_world: World) -> None:
    """X posts on approval; Instagram waits for 09:00, shows it on the run, then goes out and
    the run is published."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    assert run.state is RunState.QUEUED, run.failure
    assert run.queued == {"instagram": MONDAY.replace(hour=9)}
    assert (posted(world, Platform.TWITTER), posted(world, Platform.INSTAGRAM)) == (1, 0)
    assert await world.store.load_run(run.id) == run

    assert await world.queue.publish_due(MONDAY.replace(hour=8, minute=59)) == []
    assert posted(world, Platform.INSTAGRAM) == 0

    world.clock.now = MONDAY.replace(hour=9)
    [record] = await world.queue.publish_due()
    assert record.state is PostState.POSTED
    final = await world.store.load_run(run.id)
    assert final is not None
    assert final.state is RunState.PUBLISHED
    assert final.queued == {}
    assert [state for _, state in world.notifier.events] == [
        "created",
        "awaiting_review",
        "queued",
        "published",
    ]
    assert await world.queue.publish_due(MONDAY.replace(hour=23)) == []
    assert posted(world, Platform.INSTAGRAM) == 1


async def test_two_runs_approved_at_once_get_different_slots(queued_world: World) -> None:
    """Two approvals meet one account: 09:00 and 18:00, and each goes out at its own."""
    world = queued_world
    first, second = await asyncio.gather(
        world.run(Job("testy", seed=1)), world.run(Job("testy", seed=2))
    )
    slots = sorted([first.queued["instagram"], second.queued["instagram"]])
    assert slots == [MONDAY.replace(hour=9), MONDAY.replace(hour=18)]
    assert len(await world.queue.publish_due(MONDAY.replace(hour=9))) == 1
    assert len(await world.queue.publish_due(MONDAY.replace(hour=18))) == 1
    assert posted(world, Platform.INSTAGRAM) == 2


def second_instance(world: World, project: Path, owner: Owner | None = None) -> PublishQueue:
    """Another bot (or cron) on the same store and accounts: its own service and characters."""
    service = PublishService(world.store, world.publishers, AttentionBoard(project / "attention"))
    characters = Characters(project / "characters", TemplateLibrary.load())
    return PublishQueue(service, world.store, characters, notifier=RecordingNotifier(),
                        owner=owner or Owner("cron-host", 1, "cron"), clock=world.clock)  # fmt: skip


async def test_two_instances_post_a_due_post_once(queued_world: World, project: Path) -> None:
    """The bot and cron run the due posts at the same moment: one Instagram post."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    other = second_instance(world, project)
    due = MONDAY.replace(hour=9)
    results = await asyncio.gather(world.queue.publish_due(due), other.publish_due(due))
    assert sorted(len(r) for r in results) == [0, 1]
    assert posted(world, Platform.INSTAGRAM) == 1
    final = await world.store.load_run(run.id)
    assert final is not None
    assert final.state is RunState.PUBLISHED


async def test_a_stop_between_claim_and_post_is_taken_up_once(
    queued_world: World, project: Path
) -> None:
    """A bot claimed the post, sent it and stopped before it saved the remote id: after its
    claim runs out, another instance finds the post online instead of posting it again."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    due = MONDAY.replace(hour=9)
    store = world.store
    # the stopped bot: its claim, its POSTING record and the post itself, nothing after
    assert await store.claim_queued(
        run.id, Platform.INSTAGRAM, "gone", due, due + timedelta(hours=1)
    )
    record = PostRecord(run.id, Platform.INSTAGRAM, "testy_ig", PostState.POSTING, created_at=due)
    assert await store.record_post(record)
    caption = caption_for(run, world.characters.load("testy"), Platform.INSTAGRAM)
    world.publishers[Platform.INSTAGRAM].posted.append(("testy_ig", ("00.jpg",), caption))

    other = second_instance(world, project)
    assert await other.publish_due(due + timedelta(minutes=30)) == []  # still claimed
    [settled] = await other.publish_due(due + timedelta(hours=1))
    assert settled.state is PostState.POSTED
    assert posted(world, Platform.INSTAGRAM) == 1
    final = await store.load_run(run.id)
    assert final is not None
    assert final.state is RunState.PUBLISHED


async def test_unqueue_keeps_it_off_until_publish_now(queued_world: World) -> None:
    """/unqueue: the slot passes and nothing goes out; the run says why; /publish-now posts it."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    off = await world.queue.unqueue(run.id, "ana")
    assert off.run.state is RunState.FAILED
    assert off.run.failure is not None
    assert "taken off the publish queue by ana" in off.run.failure.message
    assert await world.queue.publish_due(MONDAY.replace(hour=10)) == []
    assert await world.queue.pending() == []
    assert posted(world, Platform.INSTAGRAM) == 0

    now = await world.queue.publish_now(run.id)
    assert now.run.state is RunState.PUBLISHED
    assert posted(world, Platform.INSTAGRAM) == 1
    assert posted(world, Platform.TWITTER) == 1  # posted on approval, not again


async def test_a_retry_after_unqueue_queues_it_again(queued_world: World) -> None:
    """A retried unqueued run takes the next free slot again."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    await world.queue.unqueue(run.id, "ana")
    world.clock.now = MONDAY.replace(hour=10)
    again = await world.pipeline.execute(await world.store.load_run(run.id) or run)
    assert again.state is RunState.QUEUED
    assert again.queued == {"instagram": MONDAY.replace(hour=18)}


async def test_publish_now_posts_a_queued_run_at_once(queued_world: World) -> None:
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    outcome = await world.queue.publish_now(run.id)
    assert outcome.run.state is RunState.PUBLISHED
    assert [r.platform for r in outcome.posts] == [Platform.INSTAGRAM, Platform.TWITTER]
    assert await world.queue.pending() == []
    assert await world.queue.publish_due(MONDAY.replace(hour=9)) == []
    assert posted(world, Platform.INSTAGRAM) == 1


async def test_a_cancelled_queued_run_never_posts(queued_world: World) -> None:
    """A queued run cancelled (by /cancel) loses its slot: nothing goes out at its time."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    await world.store.save_run(run.advance(RunState.CANCELLED))
    assert await world.queue.publish_due(MONDAY.replace(hour=9)) == []
    assert await world.store.queued_posts(run.id) == []
    assert posted(world, Platform.INSTAGRAM) == 0


async def test_without_a_publish_block_everything_posts_at_once(world: World) -> None:
    """Today's behaviour: no block, no queue."""
    run = await world.run(Job("testy", seed=1))
    assert run.state is RunState.PUBLISHED
    assert await world.store.queued_posts() == []


async def test_a_restarted_bot_takes_up_its_dead_claim_at_once(
    queued_world: World, project: Path
) -> None:
    """A bot on this host claimed the post and died; the bot started after it (same host) sees
    the dead pid and posts it without waiting for the claim to run out."""
    world = queued_world
    run = await world.run(Job("testy", seed=1))
    due = MONDAY.replace(hour=9)
    gone = Owner(this_process().host, await dead_pid(), "old")
    until = due + timedelta(hours=1)
    assert await world.store.claim_queued(run.id, Platform.INSTAGRAM, str(gone), due, until)
    assert await world.queue.publish_due(due) == []  # another host: cannot tell, waits
    restarted = second_instance(world, project, this_process())
    [record] = await restarted.publish_due(due + timedelta(minutes=1))
    assert record.state is PostState.POSTED
    assert posted(world, Platform.INSTAGRAM) == 1
