"""The one rule for a run's state once publishing is over (`PublishService.run_after_publishing`,
used by the pipeline's publish step and by `publish RUN_ID`): published only when every
enabled platform holds its post; else failed at publishing, naming what is missing."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.characters import Character, Characters
from pipeline.models import Job, Platform, PostRecord, PostState, Run, RunFailure, RunState
from pipeline.prompts.library import TemplateLibrary
from pipeline.publish import AttentionBoard, PublishService
from pipeline.store import SqlStore
from tests.runs import make_project

IG, X = Platform.INSTAGRAM, Platform.TWITTER


@pytest.fixture
def testy(tmp_path: Path) -> Character:
    """A character publishing to Instagram and X."""
    project = make_project(tmp_path)
    return Characters(project / "characters", TemplateLibrary.load()).load("testy")


@pytest.mark.parametrize(
    ("posts", "state", "message"),
    [
        ({IG: PostState.POSTED, X: PostState.POSTED}, RunState.PUBLISHED, None),
        (
            {IG: PostState.POSTED, X: PostState.FAILED},
            RunState.FAILED,
            "not posted: twitter (failed)",
        ),
        (
            {IG: PostState.UNCERTAIN},
            RunState.FAILED,
            "not posted: instagram (uncertain), twitter (not tried)",
        ),
        ({}, RunState.FAILED, "not posted: instagram (not tried), twitter (not tried)"),
    ],
    ids=["all-posted", "one-failed", "uncertain-and-untried", "nothing-tried"],
)
async def test_a_run_is_published_only_when_every_enabled_platform_has_its_post(
    store: SqlStore,
    tmp_path: Path,
    testy: Character,
    posts: dict[Platform, PostState],
    state: RunState,
    message: str | None,
) -> None:
    """Whoever publishes (a run's last step, or `publish RUN_ID` after a fix), the run ends
    published or failed at publishing by the same rule, with the same sentence."""
    run = replace(Run.new(Job("testy")), state=RunState.PUBLISHING)
    await store.save_run(run)
    for platform, post_state in posts.items():
        await store.record_post(PostRecord(run.id, platform, "acct", post_state))
    service = PublishService(store, {}, AttentionBoard(tmp_path / "attention"))
    ended = await service.run_after_publishing(run, testy)
    assert ended.state is state
    expected = None if message is None else RunFailure(state=RunState.PUBLISHING, message=message)
    assert ended.failure == expected


async def test_a_run_already_in_its_end_state_is_returned_as_it_is(
    store: SqlStore, tmp_path: Path, testy: Character
) -> None:
    """A `publish RUN_ID` that changes nothing leaves the run unsaved (the same record)."""
    run = replace(Run.new(Job("testy")), state=RunState.PUBLISHED)
    await store.save_run(run)
    for platform in (IG, X):
        await store.record_post(PostRecord(run.id, platform, "acct", PostState.POSTED))
    service = PublishService(store, {}, AttentionBoard(tmp_path / "attention"))
    assert await service.run_after_publishing(run, testy) is run
